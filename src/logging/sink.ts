// A log sink's bounded queue and counters. Records arrive on the main thread from the
// shards' event messages (never on a packet thread); a sink sends them in batches from a
// timer. A full queue drops the newest records and counts them: the engine never waits
// for a collector (docs/logging.md).
import type { LogRecord } from "./record.js";

/**
 * A UDP transport that sends a run of datagrams in one synchronous call, without a callback
 * or an allocation per datagram: the batched I/O addon's sendmmsg
 * (src/server/log-datagrams.ts), so a flush costs one system call per up to 1024 datagrams.
 */
export interface Datagrams {
  /**
   * Sends `packed`'s datagrams in order; answers how many were taken. Fewer than
   * `packed.count`: the socket's send buffer is full (EAGAIN, ENOBUFS), the rest was not sent
   * and waits (the queue stays bounded). A taken datagram the kernel refused (a collector's
   * ICMP error, EMSGSIZE) has its length set to 0.
   */
  sendMany(packed: Packed): number;
  close(): void;
}

/** Datagrams packed back to back in one reused buffer (Datagrams.sendMany's input). */
export class Packed {
  readonly bytes: Buffer;
  /** Each datagram's length (0 after sendMany: refused). */
  readonly lengths: Uint32Array;
  /** Each datagram's log records (a sink's sent and dropped counters). */
  readonly records: Uint32Array;
  count = 0;
  /** Bytes filled: where the next datagram starts. */
  used = 0;

  constructor(bytes: number, datagrams: number) {
    this.bytes = Buffer.allocUnsafe(bytes);
    this.lengths = new Uint32Array(datagrams);
    this.records = new Uint32Array(datagrams);
  }

  /** Room for another datagram of up to `bytes`. */
  fits(bytes: number): boolean {
    return this.count < this.lengths.length && this.used + bytes <= this.bytes.length;
  }

  /** The datagram of `length` bytes just written at `used`, holding `records` records. */
  add(length: number, records: number): void {
    this.lengths[this.count] = length;
    this.records[this.count++] = records;
    this.used += length;
  }

  reset(): void {
    this.count = 0;
    this.used = 0;
  }

  /**
   * Sends through `out` and counts the taken datagrams' records sent or dropped (refused);
   * answers how many datagrams were taken (fewer than `count`: the send buffer is full).
   */
  sendThrough(out: Datagrams, counters: SinkCounters): number {
    const taken = out.sendMany(this);
    for (let i = 0; i < taken; i++)
      if (this.lengths[i] === 0) {
        counters.errors++;
        counters.dropped += this.records[i];
      } else counters.sent += this.records[i];
    return taken;
  }
}

/** Opens a Datagrams to a collector; undefined (no addon): the sink uses node:dgram. */
export type DatagramOpener = (collector: string, port: number) => Datagrams | undefined;

export interface SinkCounters {
  /** Records handed to the transport (written to the socket). */
  sent: number;
  /** Records lost: queue full, or a send that failed. */
  dropped: number;
  /** Transport errors (failed sends, refused or broken connections). */
  errors: number;
  /** Records waiting now. */
  queued: number;
}

export abstract class Sink {
  protected queue: LogRecord[] = [];
  protected head = 0;
  readonly counters: SinkCounters = { sent: 0, dropped: 0, errors: 0, queued: 0 };

  constructor(
    readonly name: string,
    private readonly capacity: number,
  ) {}

  /** Queues a record, or counts it dropped when the queue is full. */
  push(r: LogRecord): void {
    if (this.queue.length - this.head >= this.capacity) {
      this.counters.dropped++;
      return;
    }
    this.queue.push(r);
  }

  /** Up to `n` queued records, taken off the queue. */
  protected take(n: number): LogRecord[] {
    const out = this.peek(n);
    this.advance(out.length);
    return out;
  }

  /** Up to `n` queued records, left on the queue (advance() takes them). */
  protected peek(n: number): LogRecord[] {
    return this.queue.slice(this.head, this.head + n);
  }

  /** Takes `n` records off the queue (after peek). */
  protected advance(n: number): void {
    this.head += Math.min(n, this.pending());
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
  }

  protected pending(): number {
    return this.queue.length - this.head;
  }

  stats(): SinkCounters {
    return { ...this.counters, queued: this.pending() };
  }

  /** Sends what the transport can take now (called from the flush timer). */
  abstract flush(): void;
  abstract close(): Promise<void>;
}
