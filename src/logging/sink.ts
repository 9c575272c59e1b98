// A log sink's bounded queue and counters. Records arrive on the main thread from the
// shards' event messages (never on a packet thread); a sink sends them in batches from a
// timer. A full queue drops the newest records and counts them: the engine never waits
// for a collector (docs/logging.md).
import { constants } from "node:os";
import type { LogRecord } from "./record.js";

/**
 * A UDP transport that sends one datagram synchronously, without a callback or an
 * allocation per send: the batched I/O addon's sendto (src/server/log-datagrams.ts), so a
 * flush is one send loop. `send` answers 0 or the errno of a refused send.
 */
export interface Datagrams {
  send(bytes: Uint8Array): number;
  close(): void;
}
/** Opens a Datagrams to a collector; undefined (no addon): the sink uses node:dgram. */
export type DatagramOpener = (collector: string, port: number) => Datagrams | undefined;

/** The socket's send buffer is full: what is left waits for the next flush (the queue stays bounded). */
export const isFull = (errno: number) => errno === constants.errno.EAGAIN || errno === constants.errno.ENOBUFS;

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
