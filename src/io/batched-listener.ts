// The batched path (docs/io.md): the addon (native/udp_batch.c) reads up to SLOT_COUNT
// datagrams with one recvmmsg straight into the engine's slots — payload, source, source
// port, real length and the destination address they were sent to (IP_PKTINFO) — and sends
// the replies with one sendmmsg from the same slots, each from the address its request was
// sent to (RFC 6887 §14.1.3, RFC 7723 §2.2; also on a wildcard socket). Per datagram JS only
// classifies the source (a cached lookup keyed by its bytes: no string, no object) and sets
// two slot bytes. One JS callback per readable event of the worker's loop; it drains
// batch after batch until the socket is empty or MAX_BATCHES were served (level-triggered:
// what is left raises the next event, so timers and tasks are not starved).
import * as W from "../wire.generated.js";
import { formatAddress16 } from "../net/address.js";
import {
  ListenerBase,
  SOURCE_CACHE,
  socketLabel,
  type Endpoint,
  type ListenerOptions,
  type SocketIoStats,
  type Source,
  type UnsolicitedSocket,
} from "./listener-base.js";
import { nativeStats, type NativeAddon, type NativeSocket } from "./native.js";

/** A filled slot's payload length (the real length, cut at the slot's capacity). */
function wireLength(bytes: Uint8Array, at: number): number {
  return Math.min(bytes[at + W.SLOT_WIRE_LEN] | (bytes[at + W.SLOT_WIRE_LEN + 1] << 8), W.SLOT_DATA_CAP);
}

/** Batches served per readable event before yielding to the loop (256 datagrams each). */
const MAX_BATCHES = 16;

interface Bound {
  socket: NativeSocket;
  address: string;
  port: number;
  /** An adopted reuseport member's descriptor (kept, so a replacement worker adopts it again). */
  fd?: number;
  unsolicited: UnsolicitedSocket;
  /** Bound to 0.0.0.0 or ::: what leaves one by one names its source (sendTo's `from`). */
  wildcard: boolean;
}

export class BatchedListener extends ListenerBase {
  readonly path = "batched" as const;
  private readonly bound: Bound[] = [];
  /**
   * Sources by their 16 bytes, direct-mapped: a hash of the address's four words picks the
   * entry, the words kept beside it confirm a hit (no string, no Map lookup per datagram);
   * a collision replaces the entry (classified again on its next datagram).
   */
  private readonly sourceWords = new Int32Array(SOURCE_CACHE * 4);
  private readonly sources: (Source | undefined)[] = new Array<Source | undefined>(SOURCE_CACHE).fill(undefined);
  /** The engine's memory as words (the slots' source addresses are 4-byte aligned); remade when the memory grew. */
  private words: Int32Array = new Int32Array(0);

  constructor(
    o: ListenerOptions,
    private readonly addon: NativeAddon,
  ) {
    super(o);
  }

  protected clearSources(): void {
    this.sources.fill(undefined);
    this.sourceWords.fill(0);
  }

  async start(): Promise<void> {
    const { addon } = this;
    // source() reads each slot's address as four aligned words.
    if (this.o.engine.slotAddress(0) % 4 !== 0 || W.SLOT_SIZE % 4 !== 0) throw new Error("batched path: slots are not 4-byte aligned");
    const requested = this.o.receiveBuffer ?? 0;
    for (const e of this.o.endpoints) {
      let socket: NativeSocket;
      if (e.fd !== undefined) socket = addon.adopt(e.fd);
      else {
        try {
          socket = addon.open(e.address, e.port, requested, false);
        } catch (cause) {
          const error = cause as Error & { code?: string };
          throw Object.assign(new Error(`bind ${e.address}:${e.port}: ${error.message}`, { cause }), { code: error.code });
        }
      }
      const [address, port] = addon.local(socket);
      const b: Bound = { socket, address, port, fd: e.fd, unsolicited: this.route(socket), wildcard: address === "0.0.0.0" || address === "::" };
      this.bound.push(b);
      this.reportReceiveBuffer(address, port, addon.rcvbuf(socket));
      addon.start(socket, () => this.drain(b));
    }
    this.startExpiry();
  }

  receiveBufferSizes(): number[] {
    return this.bound.map((b) => this.addon.rcvbuf(b.socket));
  }

  async stop(): Promise<void> {
    if (this.closed) return;
    this.stopExpiry();
    for (const b of this.bound) this.addon.close(b.socket);
    this.bound.length = 0;
  }

  boundAddresses(): Endpoint[] {
    return this.bound.map(({ address, port, fd }) => (fd === undefined ? { address, port } : { address, port, fd }));
  }

  /** The socket bound to `local`; else a wildcard socket of its family (the kernel picks the source). */
  socket(local: string): UnsolicitedSocket | undefined {
    if (this.closed) return undefined;
    const v6 = local.includes(":");
    const b = this.bound.find((x) => x.address === local) ?? this.bound.find((x) => (v6 ? x.address === "::" : x.address === "0.0.0.0"));
    return b?.unsolicited;
  }

  ioStats(): SocketIoStats[] {
    return this.bound.map((b) => ({ socket: socketLabel(b.address, b.port), counters: nativeStats(this.addon, b.socket) }));
  }

  /**
   * Sends one datagram at a time from `socket`; `from` (16 bytes): the address the request
   * being answered was sent to, the source on a wildcard socket (IP_PKTINFO / IPV6_PKTINFO).
   */
  private route(socket: NativeSocket, from?: Uint8Array): UnsolicitedSocket {
    const { addon } = this;
    return {
      send: (payload, toPort, to, callback) => {
        const errno = this.closed ? -1 : addon.sendTo(socket, payload, to, toPort, from);
        // Asynchronous, as dgram's: the caller's bookkeeping runs before its callback.
        queueMicrotask(() => callback(errno === 0 ? null : new Error(errno < 0 ? "socket closed" : `send failed (errno ${errno})`)));
      },
      setMulticastInterface: (a) => addon.multicastInterface(socket, a),
    };
  }

  /** The engine's memory as words, remade when it grew (once per batch: a typed array's buffer getter is a call into V8). */
  private wordsOf(bytes: Uint8Array): Int32Array {
    if (this.words.buffer !== bytes.buffer) this.words = new Int32Array(bytes.buffer);
    return this.words;
  }

  /** Source of the datagram whose 16 address bytes are at `at` of the engine's memory (`words`: wordsOf it), from the cache or classified now. */
  private source(bytes: Uint8Array, words: Int32Array, at: number): Source {
    const { sourceWords } = this;
    const w = at >> 2;
    const a = words[w];
    const b = words[w + 1];
    const c = words[w + 2];
    const d = words[w + 3];
    let x = a ^ Math.imul(b, 0x9e3779b1) ^ Math.imul(c, 0x85ebca6b) ^ Math.imul(d, 0xc2b2ae35);
    x = Math.imul(x ^ (x >>> 15), 0x2c1b3c6d);
    const e = (x ^ (x >>> 13)) & (SOURCE_CACHE - 1);
    const k = e << 2;
    const hit = this.sources[e];
    if (hit !== undefined && sourceWords[k] === a && sourceWords[k + 1] === b && sourceWords[k + 2] === c && sourceWords[k + 3] === d) return hit;
    const address16 = bytes.slice(at, at + 16);
    const s = this.makeSource(formatAddress16(address16), address16);
    this.sources[e] = s;
    sourceWords[k] = a;
    sourceWords[k + 1] = b;
    sourceWords[k + 2] = c;
    sourceWords[k + 3] = d;
    return s;
  }

  /** Serves the socket until it is empty, stopped, or MAX_BATCHES batches were served. */
  private drain(b: Bound): void {
    const { engine, clock } = this.o;
    const { socket } = b;
    const addon = this.addon;
    const base = engine.slotAddress(0);
    for (let round = 0; round < MAX_BATCHES && !this.closed; round++) {
      // Taken anew each time: the engine's memory may have grown (the old buffer detached).
      let bytes = engine.memoryBytes();
      const n = addon.recv(socket, bytes, base, W.SLOT_COUNT);
      if (n === 0) return;
      if (this.gateClosed()) {
        this.gateDrops += n;
        continue;
      }
      const limiter = this.o.limiter;
      const now = limiter ? clock.fractionalSeconds() : 0;
      let authed = false;
      const words = this.wordsOf(bytes);
      for (let i = 0, at = base; i < n; i++, at += W.SLOT_SIZE) {
        const s = this.source(bytes, words, at + W.SLOT_SRC_ADDR);
        engine.setSlotHost(i, s.ingress, limiter && !limiter.allow(s.text, now, s.aggregate) ? W.HOST_OVERLOADED : 0);
        if (s.auth) authed = this.admit(i, bytes.subarray(at + W.SLOT_DATA, at + W.SLOT_DATA + wireLength(bytes, at)), s.text) || authed; // the unauthenticated fast path's only cost
      }
      let replies = engine.serve(n, clock.epoch(), clock.seconds());
      this.o.afterBatch?.();
      if (replies < n) for (let i = 0; i < n; i++) this.parkIfWaiting(i, 0, (slot) => this.sendSlot(socket, slot));
      if (authed) replies -= this.authPass(n, b);
      let held: Uint8Array[] | undefined;
      if (this.o.durable) {
        for (let i = 0; i < n; i++) {
          if (!engine.replyWaitsForDisk(i)) continue;
          const copy = engine.holdReply(i);
          if (copy) {
            (held ??= []).push(copy);
            replies--;
          }
        }
      }
      // The gate read again right before the send (a process frozen since the batch's check).
      if (!this.maySend()) this.gateDrops += replies;
      else {
        bytes = engine.memoryBytes();
        const sent = addon.send(socket, bytes, base, n);
        this.sendErrors += replies - sent;
      }
      if (held) this.sendHeld(socket, held);
      this.deliverEvents();
    }
  }

  /**
   * The batch's slots from INGRESS_AUTH sources [RFC 7652]: AUTHENTICATION messages handed
   * to the authenticator; replies kept in the batch's sendmmsg (tagged in their slots, or
   * as they are: authInSlot), or else taken out and sent one by one as authReply says.
   * Returns how many replies it took out.
   */
  private authPass(n: number, b: Bound): number {
    const { engine } = this.o;
    const { socket } = b;
    let taken = 0;
    let later: { reply: Buffer; port: number; address: string; signed: boolean; route: UnsolicitedSocket }[] | undefined;
    for (let i = 0; i < n; i++) {
      const bytes = engine.memoryBytes();
      const at = engine.slotAddress(i);
      const s = this.source(bytes, this.wordsOf(bytes), at + W.SLOT_SRC_ADDR);
      if (!s.auth) continue;
      const port = bytes[at + W.SLOT_SRC_PORT] | (bytes[at + W.SLOT_SRC_PORT + 1] << 8);
      // On a wildcard socket every message of this exchange (the tagged reply, the
      // authenticator's answers) leaves from the address the request was sent to [6887 §14.1.3].
      // (Made only when a message leaves on its own: a reply kept in the batch needs none.)
      const route = () => (b.wildcard ? this.route(socket, bytes.slice(at + W.SLOT_DST_ADDR, at + W.SLOT_DST_ADDR + 16)) : b.unsolicited);
      const reply = engine.reply(i);
      if (!reply) {
        this.authHandOver(i, () => Buffer.from(bytes.subarray(at + W.SLOT_DATA, at + W.SLOT_DATA + wireLength(bytes, at))), s.text, port, route());
        continue;
      }
      const signed = this.signed(i);
      const waits = this.o.durable !== undefined && engine.replyWaitsForDisk(i);
      // A signed reply held for the disk leaves later as it is (its Epoch is not restamped: the MAC covers it).
      if (!(signed && waits) && this.authInSlot(i, reply, s.text, port, route) === "keep") continue;
      const from = route();
      const out = this.authReply(i, reply, s.text, port, from);
      engine.holdReply(i); // out of the batch's send
      taken++;
      if (!out) continue;
      if (waits) (later ??= []).push({ reply: out, port, address: s.text, signed, route: from });
      else this.sendFrom(from, out, port, s.text);
    }
    if (later) {
      const send = () => {
        const epoch = this.o.clock.epoch();
        for (const l of later!) {
          // (A tagged reply keeps its batch's Epoch: rewriting it would break the MAC, RFC 7652 §6.1.)
          if (!l.signed) this.restamp(l.reply, epoch);
          this.sendFrom(l.route, l.reply, l.port, l.address);
        }
      };
      this.o.durable!().then(send, () => undefined);
    }
    return taken;
  }

  /** One reply out of a slot copy (held, or served again after a wait), from the address its request was sent to. */
  private sendSlot(socket: NativeSocket, slot: Uint8Array): void {
    if (this.addon.send(socket, slot, 0, 1) !== 1) this.sendErrors++;
  }

  /** Replies to check-pointed requests, once their mappings are durable [RFC 7767]: one slot each. */
  private sendHeld(socket: NativeSocket, held: Uint8Array[]): void {
    const send = () => {
      const epoch = this.o.clock.epoch();
      for (const slot of held) {
        if (!this.maySend()) {
          this.gateDrops++;
          continue;
        }
        this.restamp(slot.subarray(W.SLOT_DATA), epoch);
        this.sendSlot(socket, slot);
      }
    };
    // A failed write leaves the mapping in memory only: the client is not told it is safe.
    this.o.durable!().then(send, () => undefined);
  }
}
