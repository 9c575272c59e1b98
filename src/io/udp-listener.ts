// UDP front end: one socket per configured address (never a wildcard), so every reply
// leaves from the address its request was sent to — unicast, secondary or anycast
// (RFC 6887 §14.1.3, RFC 7723 §2.2). Datagrams that arrive in one event-loop turn are
// served as one batch through the engine.
import dgram from "node:dgram";
import { isIPv6 } from "node:net";
import * as W from "../wire.generated.js";
import { toAddress16 } from "../net/address.js";
import type { MappingRecords, PacketEngine } from "../engine/packet-engine.js";
import type { MonotonicClock } from "../core/clock.js";
import type { RateLimiter } from "../core/rate-limit.js";
import type { PaServer } from "../auth/pa-server.js";
import { withoutCommonTag } from "../auth/pa-wire.js";

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

export interface Endpoint {
  address: string;
  /** 0 binds an ephemeral port (tests); a restarted worker rebinds the port it had. */
  port: number;
}

export interface ListenerOptions {
  endpoints: Endpoint[];
  engine: PacketEngine;
  clock: MonotonicClock;
  /** INGRESS_* bits for a source address (the interface/subnet policy). */
  classify: (source: string) => number;
  /** Receives the engine's mapping events after every batch, as records (decodeRecords). */
  onEvents?: (events: MappingRecords) => void;
  /** Whether onEvents wants them now; if not they are dropped uncopied (the hot path). */
  wantsEvents?: () => boolean;
  /** Runs after the engine served a batch, before its replies are sent, and after expiry: counters and journal (the events are still pending). */
  afterBatch?: () => void;
  /** Makes the batch's journal records durable now; replies to check-pointed requests wait for it [RFC 7767]. */
  durable?: () => Promise<void>;
  /** Expiry work per second (wheel entries visited). */
  expiryBudget?: number;
  /** Marks datagrams of sources over their rate as overloaded. */
  limiter?: RateLimiter;
  /**
   * SO_RCVBUF asked for each socket, bytes (0 or absent: the kernel default, about 208 KiB,
   * which a burst of a few hundred requests overflows — clients coming back after an Epoch
   * reset). The kernel caps it at net.core.rmem_max and reports twice what it keeps.
   */
  receiveBuffer?: number;
  /** Told once per socket what the kernel granted (for the log). */
  onReceiveBuffer?: (r: ReceiveBuffer) => void;
  /**
   * HA (src/shard/tasks.ts ShardHaSpec.gate): a monotonic time (ns, `monotonicNs`) until
   * which this listener may answer — its node's lease as last renewed, minus a safety
   * margin; 0: never. Read before every batch: a closed gate drops the batch (gateDrops).
   */
  gate?: BigInt64Array;
  /** The time source the gate is written in (the shard's TimeSource). */
  monotonicNs?: () => bigint;
  /**
   * PCP authentication [RFC 7652] for sources with INGRESS_AUTH: tags checked before the
   * engine, replies tagged, AUTHENTICATION messages handed over. Sources without it pay one
   * flag test per datagram.
   */
  auth?: PaServer;
}

export interface ReceiveBuffer {
  address: string;
  port: number;
  /** Bytes asked for (0: none, the kernel default stands). */
  requested: number;
  /** What getsockopt(SO_RCVBUF) reports: on Linux twice the bytes kept, which rmem_max caps. */
  granted: number;
  /** The kernel kept less than asked (raise net.core.rmem_max). */
  capped: boolean;
}

/** A source's 16-byte form and classification, cached: parsing the text costs more than serving. */
interface Source {
  address16: Uint8Array;
  ingress: number;
  aggregate: boolean;
  /** INGRESS_AUTH: authentication on for this source (auth.* policy). */
  auth: boolean;
}

const SOURCE_CACHE = 65_536;

interface Pending {
  socket: dgram.Socket;
  payload: Buffer;
  address: string;
  port: number;
}

export class UdpListener {
  private readonly sockets: dgram.Socket[] = [];
  private queue: Pending[] = [];
  private scheduled = false;
  private timer: NodeJS.Timeout | undefined;
  private ticks = 0;
  private readonly sources = new Map<string, Source>();
  /**
   * Datagrams and replies dropped because the gate was closed (HA: the lease not provably
   * held) or the listener stopped (a reply whose request was served before).
   */
  gateDrops = 0;
  /** Sends the kernel refused (reported as the socket's 'error', which would otherwise be uncaught). */
  sendErrors = 0;
  /** stop() was called: nothing is served or sent any more (a handover, a fence, shutdown). */
  private closed = false;
  /** Per slot of the current batch: the SA whose tag was verified (0: none); written only for INGRESS_AUTH sources. */
  private readonly authSa = new Uint32Array(W.SLOT_COUNT);

  constructor(private o: ListenerOptions) {}

  /** Swaps the source policy (classification, rate limits) between batches: SIGHUP reload. */
  setPolicy(policy: Pick<ListenerOptions, "classify" | "limiter">): void {
    this.o = { ...this.o, ...policy };
    this.sources.clear();
  }

  private source(address: string): Source {
    let s = this.sources.get(address);
    if (!s) {
      if (this.sources.size >= SOURCE_CACHE) this.sources.clear();
      const ingress = this.o.classify(address);
      s = { address16: toAddress16(address), ingress, aggregate: (ingress & W.INGRESS_THIRD_PARTY) !== 0, auth: (ingress & W.INGRESS_AUTH) !== 0 };
      this.sources.set(address, s);
    }
    return s;
  }

  async start(): Promise<void> {
    for (const { address, port } of this.o.endpoints) {
      const socket = dgram.createSocket({ type: isIPv6(address) ? "udp6" : "udp4", ipv6Only: isIPv6(address), lookup: literalLookup });
      socket.on("message", (payload, rinfo) => this.enqueue({ socket, payload, address: rinfo.address, port: rinfo.port }));
      await new Promise<void>((resolve, reject) => {
        socket.once("error", reject);
        socket.bind(port, address, () => {
          socket.off("error", reject);
          resolve();
        });
      });
      // A send that fails in the kernel (unreachable, EPERM) must not become an uncaught 'error'.
      socket.on("error", () => this.sendErrors++);
      this.sockets.push(socket);
      this.sizeReceiveBuffer(socket);
    }
    this.timer = setInterval(() => this.expire(), 1000);
    this.timer.unref();
  }

  private sizeReceiveBuffer(socket: dgram.Socket): void {
    const requested = this.o.receiveBuffer ?? 0;
    // SO_RCVBUF, not SO_RCVBUFFORCE: the operator's rmem_max is respected, and reported.
    if (requested > 0) socket.setRecvBufferSize(requested);
    const granted = socket.getRecvBufferSize();
    const { address, port } = socket.address();
    // Linux doubles the value set (bookkeeping overhead) and reports the double.
    this.o.onReceiveBuffer?.({ address, port, requested, granted, capped: requested > 0 && granted < requested * (process.platform === "linux" ? 2 : 1) });
  }

  /** What the kernel reports for each socket's receive buffer (SO_RCVBUF). */
  receiveBufferSizes(): number[] {
    return this.sockets.map((s) => s.getRecvBufferSize());
  }

  /**
   * Closes the sockets. Datagrams not yet served and replies still held for `durable` are
   * dropped (counted in gateDrops): a shard that stopped answering (handover, fence) never
   * answers later, whatever its gate says by then.
   */
  async stop(): Promise<void> {
    this.closed = true;
    this.gateDrops += this.queue.length;
    this.queue = [];
    clearInterval(this.timer);
    await Promise.all(this.sockets.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    this.sockets.length = 0;
  }

  /** Local address:port of each socket (tests bind port 0). */
  boundAddresses(): Endpoint[] {
    return this.sockets.map((s) => {
      const { address, port } = s.address();
      return { address, port };
    });
  }

  /** The socket bound to `local` (unsolicited messages leave from a listen address). */
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

  /** Whether the gate is closed now (HA); no gate: never. */
  private gateClosed(): boolean {
    const gate = this.o.gate;
    // Atomics: the main thread's lease keeper writes the cell while this thread serves.
    return gate !== undefined && (this.o.monotonicNs ?? process.hrtime.bigint)() >= Atomics.load(gate, 0);
  }

  /**
   * One reply out, unless the listener stopped or (HA) the gate closed since its request was
   * admitted: read again right before the send, so a process frozen (SIGSTOP) between the
   * batch's check and its sends, or a reply held for the stream, never answers once the
   * lease may be someone else's. Never throws (a socket closed under a held reply).
   */
  private send(p: Pending, reply: Buffer): void {
    if (this.closed || this.gateClosed()) {
      this.gateDrops++;
      return;
    }
    try {
      p.socket.send(reply, p.port, p.address);
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
        engine.loadSlot(i, p.payload, s.address16, p.port, s.ingress, limiter ? !limiter.allow(p.address, now, s.aggregate) : false);
        if (s.auth) authed = this.admit(i, p) || authed; // the unauthenticated fast path's only cost
      }
      engine.serve(batch.length, clock.epoch(), clock.seconds());
      this.o.afterBatch?.();
      let waiting: { p: Pending; reply: Buffer; signed: boolean }[] | undefined;
      for (let i = 0; i < batch.length; i++) {
        const reply = engine.reply(i);
        if (!reply) {
          if (authed && engine.verdict(i) === W.VERDICT_AUTH) this.o.auth?.onMessage(batch[i].payload, batch[i].address, batch[i].port, batch[i].socket);
          continue;
        }
        let copy: Buffer = Buffer.from(reply); // a copy: the slot is reused
        const signed = authed && this.authSa[i] !== 0;
        if (authed) {
          const tagged = this.authReply(i, copy, batch[i]);
          if (!tagged) continue;
          copy = tagged;
        }
        if (this.o.durable && engine.replyWaitsForDisk(i)) (waiting ??= []).push({ p: batch[i], reply: copy, signed });
        else this.send(batch[i], copy);
      }
      if (waiting) {
        const send = () => {
          // RFC 6887 §8.5: a response carries the server's Epoch Time when it is sent. A reply
          // held here (seconds while JetStream elects a new stream leader) still has the Epoch
          // of its batch: sent as it is, it runs behind the replies answered meanwhile and
          // its client sees a reset (and re-creates all its mappings) for state never lost.
          const epoch = clock.epoch();
          for (const w of waiting!) {
            // (A tagged reply keeps its batch's Epoch: rewriting it would break the MAC, RFC 7652 §6.1.)
            if (w.reply[0] === W.PCP_VERSION && !w.signed) w.reply.writeUInt32BE(epoch, W.HDR_EPOCH);
            this.send(w.p, w.reply);
          }
        };
        // A failed write leaves the mapping in memory only: the client is not told it is safe.
        this.o.durable!().then(send, () => undefined);
      }
      this.deliverEvents();
    }
  }

  /**
   * The authentication gate for one datagram of an INGRESS_AUTH source [7652 §6.2]: its
   * tag verified (HOST_AUTHENTICATED), unknown (HOST_AUTH_UNKNOWN_SESSION: the codec answers
   * UNKNOWN_SESSION_ID) or bad (dropped before the engine: ingress cleared). True: the
   * batch needs the authentication pass over its replies.
   */
  private admit(i: number, p: Pending): boolean {
    const auth = this.o.auth;
    this.authSa[i] = 0;
    if (!auth) return false;
    const check = auth.checkCommon(p.payload, p.address);
    if (check.status === "ok") {
      this.authSa[i] = check.sa;
      this.o.engine.addHostFlags(i, W.HOST_AUTHENTICATED);
    } else if (check.status === "unknown") this.o.engine.addHostFlags(i, W.HOST_AUTH_UNKNOWN_SESSION);
    else if (check.status === "drop") this.o.engine.setIngress(i, 0); // silently discarded [7652 §6.2]
    return true;
  }

  /** A reply of a batch with authenticated sources: tagged when its request was [7652 §6.1]; AUTHENTICATION_REQUIRED starts a session [7652 §3.1.2]. */
  private authReply(i: number, reply: Buffer, p: Pending): Buffer | undefined {
    const auth = this.o.auth!;
    const sa = this.authSa[i];
    this.authSa[i] = 0;
    if (sa !== 0) return auth.tagReply(reply, sa);
    const result = reply[0] === W.PCP_VERSION ? this.o.engine.resultCode(i) : 0;
    // The request's tag, copied into the error reply [6887 §8.2], is not ours to repeat unsigned.
    if (result === W.RESULT_UNKNOWN_SESSION_ID) return withoutCommonTag(reply);
    if (result === W.RESULT_AUTHENTICATION_REQUIRED) {
      // The refusal first, then the unsolicited PA-Server message that starts authentication.
      setImmediate(() => {
        if (!this.closed) auth.startFor(p.address, p.port, p.socket);
      });
    }
    return reply;
  }

  /** Sends one datagram from `socket` unless the listener stopped or (HA) the gate is closed (authentication's messages). */
  sendFrom(socket: dgram.Socket, payload: Buffer, port: number, address: string): void {
    this.send({ socket, payload, address, port }, payload);
  }

  /** After engine work outside a batch (a control task): counters, journal and events as after a batch. */
  settle(): void {
    this.o.afterBatch?.();
    this.deliverEvents();
  }

  private deliverEvents(): void {
    const { engine, onEvents, wantsEvents } = this.o;
    if (!onEvents || (wantsEvents && !wantsEvents())) {
      engine.discardEvents();
      return;
    }
    const events = engine.drainRecords();
    if (events.bytes.length > 0) onEvents(events);
  }

  private expire(): void {
    const { engine, clock } = this.o;
    engine.expire(clock.seconds(), this.o.expiryBudget ?? 100_000);
    this.o.afterBatch?.();
    if (++this.ticks % 10 === 0) this.o.limiter?.forgetIdle(clock.fractionalSeconds());
    this.deliverEvents();
  }
}
