// The shard's side of traffic-driven lifetimes (src/dataplane/activity.ts has the whole
// picture): after every batch and expiry run, the activity queries the engine queued go
// to the main thread as one message; its answer (the `activity` task) is applied to the
// engine, and the requests that waited for it are served again. An answer that does not
// come within dataplane.activity.requestWaitMs counts as "idle" for every query of the
// message: each decision is then made as without tracking, so nothing waits forever.
import type { Logger } from "pino";
import { decodeRecords, type PacketEngine } from "../engine/packet-engine.js";
import type { ActivityQuery } from "../dataplane/activity.js";
import type { ActivityMessage } from "./tasks.js";

export interface ActivityAskerOptions {
  shard: number;
  waitMs: number;
  engine: () => PacketEngine;
  /** Engine seconds now. */
  now: () => number;
  post: (m: ActivityMessage) => void;
  /** After answers were applied: counters, journal, dataplane and events out, then the waiting requests served again. */
  answered: () => void;
  log: Logger;
}

export class ActivityAsker {
  private next = 0;
  private readonly outstanding = new Map<number, { queries: ActivityQuery[]; timer: NodeJS.Timeout }>();
  /** Messages whose answer did not come in time. */
  timeouts = 0;

  constructor(private readonly o: ActivityAskerOptions) {}

  /** Posts the queries the engine queued since the last call (none: nothing, no allocation). */
  collect(): void {
    const engine = this.o.engine();
    const bytes = engine.takeActivityQueries();
    if (!bytes) return;
    const queries: ActivityQuery[] = decodeRecords({ bytes }, engine.poolList()).map((e) => ({
      mapping: e.mapping,
      protocol: e.protocol,
      family: e.family,
      internal: { address: e.internalAddress, port: e.internalPort },
      external: { address: e.externalAddress, port: e.externalPort },
    }));
    const id = ++this.next;
    const timer = setTimeout(() => {
      this.timeouts++;
      this.o.log.warn({ queries: queries.length, waitMs: this.o.waitMs }, "dataplane activity not answered in time: decided as idle");
      this.answer(id, []);
    }, this.o.waitMs);
    timer.unref();
    this.outstanding.set(id, { queries, timer });
    this.o.post({ pcpdActivity: true, shard: this.o.shard, id, queries });
  }

  /** Applies the answers of message `id` (a missing one: idle); how many mappings they reached. */
  answer(id: number, remaining: number[]): number {
    const pending = this.outstanding.get(id);
    if (!pending) return 0; // answered already (timed out)
    clearTimeout(pending.timer);
    this.outstanding.delete(id);
    const engine = this.o.engine();
    const now = this.o.now();
    let applied = 0;
    pending.queries.forEach((q, i) => {
      if (engine.activityAnswer(now, q.mapping, q.protocol, q.external.port, remaining[i] ?? 0)) applied++;
    });
    this.o.answered();
    return applied;
  }

  stop(): void {
    for (const { timer } of this.outstanding.values()) clearTimeout(timer);
    this.outstanding.clear();
  }
}
