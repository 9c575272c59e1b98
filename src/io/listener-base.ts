// What both UDP paths share (src/io/udp-listener.ts chooses one): the options, the source
// cache (classification and rate limit), the HA gate, events after a batch, the expiry tick.
// The paths differ only in how datagrams reach the slots and replies leave them:
// dgram-listener.ts (Node's dgram: one JS callback and copy per datagram) and
// batched-listener.ts (the addon: recvmmsg into the slots, sendmmsg from them; docs/io.md).
import * as W from "../wire.generated.js";
import type { MappingRecords, PacketEngine } from "../engine/packet-engine.js";
import type { MonotonicClock } from "../core/clock.js";
import type { RateLimiter } from "../core/rate-limit.js";
import type { IoChoice, IoPath, NativeStats } from "./native.js";
import type { PaServer } from "../auth/pa-server.js";
import { withoutCommonTag } from "../auth/pa-wire.js";

export interface Endpoint {
  address: string;
  /** 0 binds an ephemeral port (tests); a restarted worker rebinds the port it had. */
  port: number;
  /**
   * A socket the main thread bound (listen.reusePort: one member of the address's
   * SO_REUSEPORT group per worker, bound in shard order so the steering program's index is
   * the shard): the worker adopts the descriptor instead of binding (batched path only).
   */
  fd?: number;
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
  /** The I/O path (default: this process's ioChoice(), src/io/native.ts). */
  io?: IoChoice;
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

/** A socket unsolicited messages (ANNOUNCE, Mapping Update) leave from; dgram.Socket is one. */
export interface UnsolicitedSocket {
  send(payload: Uint8Array, port: number, address: string, callback: (error: Error | null) => void): void;
  setMulticastInterface(address: string): void;
}

/**
 * One socket's I/O counters (/metrics pcpd_io_*; src/io/native.ts NATIVE_STATS names them).
 * The dgram path has no recvmmsg calls, and its receive-queue drops only where /proc shows
 * its socket (src/io/proc-udp.ts): what a path lacks is absent.
 */
export interface SocketIoStats {
  /** The socket's local address:port ("[v6]:port" for IPv6). */
  socket: string;
  counters: Partial<NativeStats>;
}

/** "address:port" of a socket, IPv6 in brackets. */
export function socketLabel(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

/** A source's 16-byte form and classification, cached: parsing the text costs more than serving. */
export interface Source {
  text: string;
  address16: Uint8Array;
  ingress: number;
  aggregate: boolean;
  /** INGRESS_AUTH: authentication on for this source (auth.* policy). */
  auth: boolean;
}

/** Sources cached per listener (a power of two: the batched path's cache is direct-mapped). */
export const SOURCE_CACHE = 65_536;

/**
 * A request waiting for the dataplane's activity answer (VERDICT_WAIT, assembly/activity.ts):
 * its whole slot, copied out (the slot is reused), and how its reply leaves (from the socket
 * and address it came in on) once resume() served it again.
 */
export interface Parked {
  slot: Uint8Array;
  waits: number;
  /** Sends the reply in `slot` (a served copy: SLOT_DATA, SLOT_RESP_LEN bytes). */
  send(slot: Uint8Array): void;
}

/** A request served again this often at most waits no more (dropped: its client retransmits). */
const MAX_WAITS = 3;

export abstract class ListenerBase {
  /** Which path this listener runs on. */
  abstract readonly path: IoPath;
  private timer: NodeJS.Timeout | undefined;
  private ticks = 0;
  /**
   * Datagrams and replies dropped because the gate was closed (HA: the lease not provably
   * held) or the listener stopped (a reply whose request was served before).
   */
  gateDrops = 0;
  /** Sends the kernel refused (counted; never thrown per packet). */
  sendErrors = 0;
  /** Requests dropped after waiting MAX_WAITS times for the dataplane's activity answer. */
  activityDrops = 0;
  /** stop() was called: nothing is served or sent any more (a handover, a fence, shutdown). */
  protected closed = false;
  /** Requests waiting for the dataplane's activity answer, served again by resume(). */
  private parked: Parked[] = [];
  /** Per slot of the current batch: the SA whose tag was verified (0: none); written only for INGRESS_AUTH sources. */
  private readonly authSa = new Uint32Array(W.SLOT_COUNT);

  constructor(protected o: ListenerOptions) {}

  /** Binds (or adopts) the sockets and starts serving. */
  abstract start(): Promise<void>;
  /**
   * Closes the sockets. Datagrams not yet served and replies still held for `durable` are
   * dropped (counted in gateDrops): a shard that stopped answering (handover, fence) never
   * answers later, whatever its gate says by then.
   */
  abstract stop(): Promise<void>;
  /** Local address:port of each socket (tests bind port 0). */
  abstract boundAddresses(): Endpoint[];
  /** What the kernel reports for each socket's receive buffer (SO_RCVBUF). */
  abstract receiveBufferSizes(): number[];
  /** Each socket's I/O counters: datagrams, errors by errno class, truncations, drops. */
  abstract ioStats(): SocketIoStats[];
  /** The socket bound to `local` (unsolicited messages leave from a listen address). */
  abstract socket(local: string): UnsolicitedSocket | undefined;
  /** Drops cached sources (the policy changed). */
  protected abstract clearSources(): void;

  /** Swaps the source policy (classification, rate limits) between batches: SIGHUP reload. */
  setPolicy(policy: Pick<ListenerOptions, "classify" | "limiter">): void {
    this.o = { ...this.o, ...policy };
    this.clearSources();
  }

  protected makeSource(text: string, address16: Uint8Array): Source {
    const ingress = this.o.classify(text);
    return { text, address16, ingress, aggregate: (ingress & W.INGRESS_THIRD_PARTY) !== 0, auth: (ingress & W.INGRESS_AUTH) !== 0 };
  }

  protected startExpiry(): void {
    this.timer = setInterval(() => this.expire(), 1000);
    this.timer.unref();
  }

  protected stopExpiry(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.gateDrops += this.parked.length;
    this.parked = [];
  }

  /** Parks slot `index` of the batch just served if it waits for the dataplane (true: parked or dropped). */
  protected parkIfWaiting(index: number, waits: number, send: (slot: Uint8Array) => void): boolean {
    const slot = this.o.engine.takeWaiting(index);
    if (!slot) return false;
    if (waits + 1 > MAX_WAITS) this.activityDrops++;
    else this.parked.push({ slot, waits: waits + 1, send });
    return true;
  }

  /**
   * Serves the requests that waited for the dataplane's activity answer again (it has been
   * applied), in batches through the same engine path; their replies leave as they came in.
   */
  resume(): void {
    const { engine, clock } = this.o;
    // Those parked again while served here wait for the next answer, not for this loop.
    const all = this.parked;
    this.parked = [];
    while (all.length > 0 && !this.closed) {
      const batch = all.splice(0, W.SLOT_COUNT);
      if (this.gateClosed()) {
        this.gateDrops += batch.length;
        continue;
      }
      for (let i = 0; i < batch.length; i++) engine.putSlot(i, batch[i].slot);
      engine.serve(batch.length, clock.epoch(), clock.seconds());
      this.o.afterBatch?.();
      let held: { slot: Uint8Array; send: (slot: Uint8Array) => void }[] | undefined;
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i];
        if (this.parkIfWaiting(i, p.waits, p.send)) continue;
        const slot = engine.holdReply(i);
        if (!slot) continue;
        if (this.o.durable && engine.replyWaitsForDisk(i)) (held ??= []).push({ slot, send: p.send });
        else if (this.maySend()) p.send(slot);
        else this.gateDrops++;
      }
      if (held) {
        const send = () => {
          const epoch = clock.epoch();
          for (const h of held!) {
            if (!this.maySend()) {
              this.gateDrops++;
              continue;
            }
            this.restamp(h.slot.subarray(W.SLOT_DATA), epoch);
            h.send(h.slot);
          }
        };
        this.o.durable!().then(send, () => undefined);
      }
      this.deliverEvents();
    }
    this.gateDrops += all.length; // stopped meanwhile
  }

  /** Tells onReceiveBuffer what the kernel granted a socket. */
  protected reportReceiveBuffer(address: string, port: number, granted: number): void {
    const requested = this.o.receiveBuffer ?? 0;
    // Linux doubles the value set (bookkeeping overhead) and reports the double.
    this.o.onReceiveBuffer?.({ address, port, requested, granted, capped: requested > 0 && granted < requested * (process.platform === "linux" ? 2 : 1) });
  }

  /** Whether the gate is closed now (HA); no gate: never. */
  protected gateClosed(): boolean {
    const gate = this.o.gate;
    // Atomics: the main thread's lease keeper writes the cell while this thread serves.
    return gate !== undefined && (this.o.monotonicNs ?? process.hrtime.bigint)() >= Atomics.load(gate, 0);
  }

  /** Whether a reply may leave now: not stopped, gate open (read right before each send). */
  protected maySend(): boolean {
    return !this.closed && !this.gateClosed();
  }

  /**
   * RFC 6887 §8.5: a response carries the server's Epoch Time when it is sent. A reply held
   * for the disk (seconds while JetStream elects a new stream leader) still has the Epoch of
   * its batch: sent as it is, it runs behind the replies answered meanwhile and its client
   * sees a reset (and re-creates all its mappings) for state never lost.
   */
  protected restamp(reply: Uint8Array, epoch: number): void {
    if (reply[0] === W.PCP_VERSION) new DataView(reply.buffer, reply.byteOffset, reply.byteLength).setUint32(W.HDR_EPOCH, epoch);
  }

  /**
   * The authentication gate for slot `i`, a datagram of an INGRESS_AUTH source [7652 §6.2]:
   * its tag verified (HOST_AUTHENTICATED), unknown (HOST_AUTH_UNKNOWN_SESSION: the codec
   * answers UNKNOWN_SESSION_ID) or bad (dropped before the engine: ingress cleared). True:
   * the batch needs the authentication pass over its replies (authReply, authHandOver).
   */
  protected admit(i: number, payload: Uint8Array, address: string): boolean {
    const auth = this.o.auth;
    this.authSa[i] = 0;
    if (!auth) return false;
    const check = auth.checkCommon(payload, address);
    if (check.status === "ok") {
      this.authSa[i] = check.sa;
      this.o.engine.addHostFlags(i, W.HOST_AUTHENTICATED);
    } else if (check.status === "unknown") this.o.engine.addHostFlags(i, W.HOST_AUTH_UNKNOWN_SESSION);
    else if (check.status === "drop") this.o.engine.setIngress(i, 0); // silently discarded [7652 §6.2]
    return true;
  }

  /** Slot `i` (no reply) was an AUTHENTICATION message the codec handed over: the authenticator takes it (a copy). */
  protected authHandOver(i: number, request: () => Buffer, address: string, port: number, socket: UnsolicitedSocket): void {
    if (this.o.engine.verdict(i) === W.VERDICT_AUTH) this.o.auth?.onMessage(request(), address, port, socket);
  }

  /** Whether slot `i`'s reply is signed (its request's tag was verified). */
  protected signed(i: number): boolean {
    return this.authSa[i] !== 0;
  }

  /**
   * Slot `i`'s reply in a batch with authenticated sources: tagged when its request was
   * [7652 §6.1]; an UNKNOWN_SESSION_ID answer without the request's tag; after
   * AUTHENTICATION_REQUIRED the PA-Server message that starts a session [7652 §3.1.2].
   * Undefined: not to be sent.
   */
  protected authReply(i: number, reply: Uint8Array, address: string, port: number, socket: UnsolicitedSocket): Buffer | undefined {
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
        if (!this.closed) auth.startFor(address, port, socket);
      });
    }
    return Buffer.from(reply);
  }

  /**
   * authReply for the batched path, whose replies leave from their slots with one sendmmsg:
   * "keep" when slot `i`'s reply can stay in the batch's send as the slot now holds it —
   * unsigned and as the engine wrote it (an untagged request from a source where
   * authentication is optional, or AUTHENTICATION_REQUIRED, whose PA-Server message then
   * follows), or signed and written back into the slot (a PCP message is at most 1100 bytes,
   * less than a slot holds); "own": authReply must make it and it leaves on its own (an
   * UNKNOWN_SESSION_ID answer loses the request's tag; an SA gone meanwhile: not sent).
   * Sending these replies one by one cost an untagged request from an optional source five
   * times the CPU of one from an `off` source (bench/results/auth-2026-12-05*.json).
   */
  protected authInSlot(i: number, reply: Uint8Array, address: string, port: number, socket: () => UnsolicitedSocket): "keep" | "own" {
    const auth = this.o.auth!;
    const sa = this.authSa[i];
    if (sa !== 0) {
      const tagged = auth.tagReply(reply, sa);
      if (!tagged) return "own";
      this.authSa[i] = 0;
      this.o.engine.setReply(i, tagged);
      return "keep";
    }
    const result = reply[0] === W.PCP_VERSION ? this.o.engine.resultCode(i) : 0;
    if (result === W.RESULT_UNKNOWN_SESSION_ID) return "own";
    if (result === W.RESULT_AUTHENTICATION_REQUIRED) {
      setImmediate(() => {
        if (!this.closed) auth.startFor(address, port, socket());
      });
    }
    return "keep";
  }

  /** Sends one datagram from `socket` unless the listener stopped or (HA) the gate is closed (authentication's messages). */
  sendFrom(socket: UnsolicitedSocket, payload: Uint8Array, port: number, address: string): void {
    if (!this.maySend()) {
      this.gateDrops++;
      return;
    }
    try {
      socket.send(payload, port, address, (error) => {
        if (error) this.sendErrors++;
      });
    } catch {
      this.gateDrops++; // closed meanwhile
    }
  }

  /** After engine work outside a batch (a control task): counters, journal and events as after a batch. */
  settle(): void {
    this.o.afterBatch?.();
    this.deliverEvents();
  }

  protected deliverEvents(): void {
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
