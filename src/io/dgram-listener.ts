// The dgram path (the fallback where the batched addon is not built or not wanted; docs/io.md):
// one Node dgram socket per configured address, so every reply leaves from the address its
// request was sent to — unicast, secondary or anycast (RFC 6887 §14.1.3, RFC 7723 §2.2).
// Datagrams that arrive in one event-loop turn are served as one batch through the engine.
import dgram from "node:dgram";
import { isIPv6 } from "node:net";
import * as W from "../wire.generated.js";
import { toAddress16 } from "../net/address.js";
import { ListenerBase, SOURCE_CACHE, socketLabel, type Endpoint, type SocketIoStats, type Source } from "./listener-base.js";
import { ERRNO_CLASSES, type ErrnoClass, type NativeStats } from "./native.js";
import { procUdpKey, udpDrops, UdpDropsReader, type ProcUdpKey } from "./proc-udp.js";

/** The batched path's counters that Node's dgram lets us see (no recvmmsg; receive-queue drops from /proc: src/io/proc-udp.ts). */
type DgramCounters = Omit<NativeStats, "rxqDrops" | "recvCalls">;

function errnoClass(error: Error): ErrnoClass {
  const code = (error as NodeJS.ErrnoException).code ?? "";
  return (ERRNO_CLASSES as readonly string[]).includes(code) ? (code as ErrnoClass) : code === "EWOULDBLOCK" ? "EAGAIN" : "other";
}

/** One socket and its counters, with the one send callback all its replies share (no closure per reply). */
class Counted {
  readonly counters = Object.fromEntries(
    ["received", "sent", "truncated", ...ERRNO_CLASSES.flatMap((c) => [`recvErrors.${c}`, `unsent.${c}`])].map((k) => [k, 0]),
  ) as DgramCounters;
  /** Where the kernel counts this socket's receive-queue drops, and its count at bind (set once bound). */
  proc?: ProcUdpKey;
  dropsAtBind = 0;
  /** The last drop count read (undefined: never found in /proc, no series). */
  rxqDrops?: number;
  constructor(
    readonly socket: dgram.Socket,
    private readonly refused: () => void,
  ) {}
  readonly onSent = (error: Error | null): void => {
    if (!error) this.counters.sent++;
    else {
      this.counters[`unsent.${errnoClass(error)}`]++;
      this.refused();
    }
  };
}

/**
 * Every address a socket sends to or binds is a literal (a request's source, a configured
 * address): resolved at once. Node's default lookup answers even a literal on the next
 * tick, so socket.send() would reach the kernel one tick after it was called — after the
 * gate's last read (HA), a window in which a process frozen by SIGSTOP keeps replies it
 * then sends on SIGCONT. With this, send() hands the datagram to the kernel before it returns.
 */
export function literalLookup(address: string, _options: unknown, callback: (error: Error | null, address: string, family: number) => void): void {
  callback(null, address, isIPv6(address) ? 6 : 4);
}

/** The reply in a slot copy (engine.holdReply): its data area, SLOT_RESP_LEN bytes. */
function replyOf(slot: Uint8Array): Buffer {
  const length = slot[W.SLOT_RESP_LEN] | (slot[W.SLOT_RESP_LEN + 1] << 8);
  return Buffer.from(slot.buffer, slot.byteOffset + W.SLOT_DATA, length);
}

interface Pending {
  socket: dgram.Socket;
  counted: Counted;
  /** The socket's local address, 16-byte form (SLOT_DST_ADDR). */
  local: Uint8Array;
  payload: Buffer;
  address: string;
  port: number;
}

export class DgramListener extends ListenerBase {
  readonly path = "dgram" as const;
  private readonly sockets: dgram.Socket[] = [];
  private readonly counted: Counted[] = [];
  /** The sockets' receive-queue drops from /proc, read when the counters are published. */
  private drops?: UdpDropsReader;
  private queue: Pending[] = [];
  private scheduled = false;
  private readonly sources = new Map<string, Source>();

  protected clearSources(): void {
    this.sources.clear();
  }

  private source(address: string): Source {
    let s = this.sources.get(address);
    if (!s) {
      if (this.sources.size >= SOURCE_CACHE) this.sources.clear();
      s = this.makeSource(address, toAddress16(address));
      this.sources.set(address, s);
    }
    return s;
  }

  async start(): Promise<void> {
    for (const { address, port } of this.o.endpoints) {
      const socket = dgram.createSocket({ type: isIPv6(address) ? "udp6" : "udp4", ipv6Only: isIPv6(address), lookup: literalLookup });
      const local = toAddress16(address);
      const counted = new Counted(socket, () => this.sendErrors++);
      socket.on("message", (payload, rinfo) => {
        counted.counters.received++;
        // The batched path's MSG_TRUNC: longer than a slot, cut when loaded.
        if (payload.length > W.SLOT_DATA_CAP) counted.counters.truncated++;
        this.enqueue({ socket, counted, local, payload, address: rinfo.address, port: rinfo.port });
      });
      await new Promise<void>((resolve, reject) => {
        socket.once("error", reject);
        socket.bind(port, address, () => {
          socket.off("error", reject);
          resolve();
        });
      });
      // Replies report through their callback (Counted.onSent); what still comes as 'error'
      // (a receive error, an unsolicited send without a callback) must not be uncaught.
      socket.on("error", (error) => {
        this.sendErrors++;
        counted.counters[`recvErrors.${errnoClass(error)}`]++;
      });
      // Counted from bind (a fresh socket starts at 0; so does one reopened on an Epoch reset).
      counted.proc = procUdpKey(socket);
      counted.dropsAtBind = udpDrops([counted.proc])[0] ?? 0;
      this.sockets.push(socket);
      this.counted.push(counted);
      // SO_RCVBUF, not SO_RCVBUFFORCE: the operator's rmem_max is respected, and reported.
      if ((this.o.receiveBuffer ?? 0) > 0) socket.setRecvBufferSize(this.o.receiveBuffer!);
      const bound = socket.address();
      this.reportReceiveBuffer(bound.address, bound.port, socket.getRecvBufferSize());
    }
    this.startExpiry();
  }

  receiveBufferSizes(): number[] {
    return this.sockets.map((s) => s.getRecvBufferSize());
  }

  ioStats(): SocketIoStats[] {
    this.drops ??= new UdpDropsReader(this.counted.map((c) => c.proc!));
    const drops = this.drops.poll();
    return this.counted.map((c, i) => {
      const { address, port } = c.socket.address();
      if (drops[i] !== undefined) c.rxqDrops = drops[i] - c.dropsAtBind;
      return { socket: socketLabel(address, port), counters: c.rxqDrops === undefined ? { ...c.counters } : { ...c.counters, rxqDrops: c.rxqDrops } };
    });
  }

  async stop(): Promise<void> {
    this.stopExpiry();
    this.gateDrops += this.queue.length;
    this.queue = [];
    await Promise.all(this.sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    this.sockets.length = 0;
    this.counted.length = 0;
    this.drops = undefined;
  }

  boundAddresses(): Endpoint[] {
    return this.sockets.map((s) => {
      const { address, port } = s.address();
      return { address, port };
    });
  }

  socket(local: string): dgram.Socket | undefined {
    if (this.closed) return undefined; // closing: a send would throw
    return this.sockets.find((s) => s.address().address === local);
  }

  private enqueue(p: Pending): void {
    this.queue.push(p);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /**
   * One reply out, unless the listener stopped or (HA) the gate closed since its request was
   * admitted: read again right before the send, so a process frozen (SIGSTOP) between the
   * batch's check and its sends, or a reply held for the stream, never answers once the
   * lease may be someone else's. Never throws (a socket closed under a held reply).
   */
  private send(p: Pending, reply: Buffer): void {
    if (!this.maySend()) {
      this.gateDrops++;
      return;
    }
    try {
      p.socket.send(reply, p.port, p.address, p.counted.onSent);
    } catch {
      this.gateDrops++; // ERR_SOCKET_DGRAM_NOT_RUNNING: closed meanwhile
    }
  }

  private flush(): void {
    this.scheduled = false;
    const { engine, clock } = this.o;
    while (this.queue.length > 0 && !this.closed) {
      const batch = this.queue.splice(0, W.SLOT_COUNT);
      if (this.gateClosed()) {
        this.gateDrops += batch.length;
        continue;
      }
      const now = clock.fractionalSeconds();
      const limiter = this.o.limiter;
      let authed = false;
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i];
        const s = this.source(p.address);
        engine.loadSlot(i, p.payload, s.address16, p.port, s.ingress, limiter ? !limiter.allow(p.address, now, s.aggregate) : false, p.local);
        if (s.auth) authed = this.admit(i, p.payload, p.address) || authed; // the unauthenticated fast path's only cost
      }
      engine.serve(batch.length, clock.epoch(), clock.seconds());
      this.o.afterBatch?.();
      let waiting: { p: Pending; reply: Buffer; signed: boolean }[] | undefined;
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i];
        const reply = engine.reply(i);
        if (!reply) {
          if (authed) this.authHandOver(i, () => p.payload, p.address, p.port, p.socket);
          this.parkIfWaiting(i, 0, (slot) => this.send(p, replyOf(slot)));
          continue;
        }
        const signed = authed && this.signed(i);
        const copy = authed ? this.authReply(i, reply, p.address, p.port, p.socket) : Buffer.from(reply); // a copy: the slot is reused
        if (!copy) continue;
        if (this.o.durable && engine.replyWaitsForDisk(i)) (waiting ??= []).push({ p, reply: copy, signed });
        else this.send(p, copy);
      }
      if (waiting) {
        const send = () => {
          const epoch = clock.epoch();
          for (const w of waiting!) {
            // (A tagged reply keeps its batch's Epoch: rewriting it would break the MAC, RFC 7652 §6.1.)
            if (!w.signed) this.restamp(w.reply, epoch);
            this.send(w.p, w.reply);
          }
        };
        // A failed write leaves the mapping in memory only: the client is not told it is safe.
        this.o.durable!().then(send, () => undefined);
      }
      this.deliverEvents();
    }
  }
}
