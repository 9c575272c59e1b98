// Per-source and global token buckets in front of the engine: a source over its rate is
// marked overloaded (the codec then drops it or answers NO_RESOURCES, as configured), so
// one flooding client cannot starve the others [RFC 6887 §8.2, §17.2; RFC 6888 REQ-4].

export interface Bucket {
  /** Tokens added per second. */
  rate: number;
  /** Bucket size: the burst a quiet source may send at once. */
  burst: number;
}

interface State {
  tokens: number;
  last: number;
}

export class RateLimiter {
  private readonly sources = new Map<string, State>();
  private readonly global: State;

  /** @param maxSources sources tracked at once; beyond that, idle ones are forgotten first. */
  constructor(
    private readonly perSource: Bucket,
    private readonly all: Bucket,
    private readonly maxSources = 1_000_000,
  ) {
    this.global = { tokens: all.burst, last: 0 };
  }

  private take(s: State, b: Bucket, now: number): boolean {
    s.tokens = Math.min(b.burst, s.tokens + (now - s.last) * b.rate);
    s.last = now;
    if (s.tokens < 1) return false;
    s.tokens -= 1;
    return true;
  }

  /**
   * One datagram from `source` at `now` (seconds, fractional): true if it may be served.
   * `aggregate` sources (trusted THIRD_PARTY proxies, which speak for many subscribers)
   * are held to the global rate only.
   */
  allow(source: string, now: number, aggregate = false): boolean {
    if (aggregate) return this.take(this.global, this.all, now);
    let s = this.sources.get(source);
    if (!s) {
      if (this.sources.size >= this.maxSources) this.forgetIdle(now);
      s = { tokens: this.perSource.burst, last: now };
      this.sources.set(source, s);
    }
    // A source over its own rate does not consume global tokens.
    return this.take(s, this.perSource, now) && this.take(this.global, this.all, now);
  }

  /** Drops sources whose bucket has refilled (they would start full anyway). */
  forgetIdle(now: number): void {
    const full = this.perSource.burst / this.perSource.rate;
    for (const [k, s] of this.sources) if (now - s.last >= full) this.sources.delete(k);
    // Still full of busy sources: forget the oldest half rather than grow without bound.
    if (this.sources.size >= this.maxSources) {
      let n = this.sources.size / 2;
      for (const k of this.sources.keys()) {
        if (n-- <= 0) break;
        this.sources.delete(k);
      }
    }
  }

  get tracked(): number {
    return this.sources.size;
  }
}
