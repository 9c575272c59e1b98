// Traffic-driven lifetimes, host side (the engine's part: assembly/activity.ts). A decision
// in a shard's engine (an expiry, a MAP delete, a short renewal) queues a query for one
// mapping; the shard posts the batch's queries to the main thread; here queries arriving
// together become one read of the backend ("how long will the traffic seen so far keep
// each of these endpoints?"), and the answers go back to the shard, which applies them
// and serves the waiting requests again. Nothing of this runs per packet: the dataplane
// keeps per-packet state itself (nftables: a dynamic set with timeouts, updated by the
// packets of mapped flows), and it is read only when a decision needs it.
import type { Endpoint } from "./ops.js";

/** One mapping a decision waits on: its id in the shard's engine and its endpoints. */
export interface ActivityQuery {
  mapping: number;
  protocol: number;
  family: 4 | 6;
  internal: Endpoint;
  external: Endpoint;
}

/** Answers queries: per query, seconds the traffic already seen keeps the mapping (0: idle). */
export type ActivitySource = (queries: ActivityQuery[]) => Promise<number[]>;

/**
 * Coalesces the queries of every shard that arrive within one turn of the event loop into
 * one backend read (an nftables listing costs the same for one key or many; an event-stream
 * consumer answers one notification). One read at a time: queries arriving while one runs
 * wait for the next, which answers them all, so a slow read is never run side by side.
 */
export class ActivityBatcher {
  private waiting: { queries: ActivityQuery[]; resolve: (r: number[]) => void; reject: (e: Error) => void }[] = [];
  private scheduled = false;
  private reading = false;
  reads = 0;
  queries = 0;

  constructor(private readonly source: ActivitySource) {}

  ask(queries: ActivityQuery[]): Promise<number[]> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ queries, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.reading || this.waiting.length === 0) return;
    this.scheduled = true;
    setImmediate(() => void this.read());
  }

  private async read(): Promise<void> {
    const batch = this.waiting;
    this.waiting = [];
    this.scheduled = false;
    this.reading = true;
    const all = batch.flatMap((b) => b.queries);
    this.reads++;
    this.queries += all.length;
    try {
      const answers = await this.source(all);
      let at = 0;
      for (const b of batch) {
        b.resolve(answers.slice(at, at + b.queries.length));
        at += b.queries.length;
      }
    } catch (e) {
      for (const b of batch) b.reject(e as Error);
    } finally {
      this.reading = false;
      this.schedule();
    }
  }
}
