// A log sink's bounded queue and counters. Records arrive on the main thread from the
// shards' event messages (never on a packet thread); a sink sends them in batches from a
// timer. A full queue drops the newest records and counts them: the engine never waits
// for a collector (docs/logging.md).
import type { LogRecord } from "./record.js";

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
    const out = this.queue.slice(this.head, this.head + n);
    this.head += out.length;
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return out;
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
