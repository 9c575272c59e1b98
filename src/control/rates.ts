// Rates for stats.get: the counters sampled every interval, the last two samples kept;
// sums over the shards (a shard restart in the interval can make one negative: reported
// as 0). Sampling reads shared memory only (no task reaches a shard).
import type { RunningServer } from "../server/server.js";
import type { Results } from "./protocol.js";

/** Sampling interval of the rates in stats.get. */
export const RATE_INTERVAL_MS = 10_000;

type Sample = { at: number; packets: number; created: number; refreshed: number; deleted: number; expired: number };

export const totalPackets = (stats: ReturnType<RunningServer["stats"]>) => stats.shards.reduce((n, s) => n + Number(s.codec.packets), 0);

export class RateSampler {
  private readonly samples: Sample[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly server: Pick<RunningServer, "stats">,
    intervalMs = RATE_INTERVAL_MS,
  ) {
    this.timer = setInterval(() => this.sample(), intervalMs);
    this.timer.unref();
    this.sample();
  }

  private sample(): void {
    try {
      const st = this.server.stats();
      const n = (k: string) => Number(st.engine[k] ?? 0n);
      this.samples.push({
        at: performance.now(),
        packets: totalPackets(st),
        created: n("created"),
        refreshed: n("refreshed"),
        deleted: n("deleted"),
        expired: n("expired"),
      });
      if (this.samples.length > 2) this.samples.shift();
    } catch {
      // a failed read skips this sample; the rates come from the next two
    }
  }

  /** Per second over the last interval; null until two samples exist. */
  rates(): Results["stats.get"]["rates"] {
    if (this.samples.length < 2) return null;
    const [a, b] = this.samples;
    const seconds = (b.at - a.at) / 1000;
    const per = (k: Exclude<keyof Sample, "at">) => Math.max(0, (b[k] - a[k]) / seconds);
    return {
      intervalSeconds: Math.round(seconds * 10) / 10,
      packets: per("packets"),
      created: per("created"),
      refreshed: per("refreshed"),
      deleted: per("deleted"),
      expired: per("expired"),
    };
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
