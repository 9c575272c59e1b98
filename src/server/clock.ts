// Engine time and PCP Epoch Time from a monotonic source: neither jumps when the wall
// clock is stepped (NTP), as RFC 6887 §8.5 requires of the Epoch.

export class MonotonicClock {
  private readonly origin: bigint;
  /** When the Epoch last started counting from epochBase. */
  private epochOrigin: bigint;

  /**
   * @param epochBase Epoch value at start: 0 after state loss; previous + downtime when state was restored.
   * @param source nanoseconds from a monotonic source (process.hrtime; tests substitute one).
   */
  constructor(private epochBase = 0, private readonly source: () => bigint = process.hrtime.bigint) {
    this.origin = source();
    this.epochOrigin = this.origin;
  }

  /** Whole seconds since this clock started. */
  seconds(): number {
    return Number((this.source() - this.origin) / 1_000_000_000n);
  }

  /** Seconds since this clock started, with the fraction (rate limiting). */
  fractionalSeconds(): number {
    return Number(this.source() - this.origin) / 1e9;
  }

  /** Epoch back to 0 now, engine time running on (the external addresses changed, state kept). */
  resetEpoch(): void {
    this.epochBase = 0;
    this.epochOrigin = this.source();
  }

  /** The Epoch goes on from `base` now (state restored from disk: previous Epoch + downtime). */
  continueEpoch(base: number): void {
    this.epochBase = base >>> 0;
    this.epochOrigin = this.source();
  }

  /** What another thread needs to compute epoch() itself (src/server/stats-board.ts). */
  epochState(): { base: number; origin: bigint } {
    return { base: this.epochBase, origin: this.epochOrigin };
  }

  /** Epoch Time for replies [RFC 6887 §8.5]: counts seconds from the base, wraps at 2^32. */
  epoch(): number {
    return (this.epochBase + Number((this.source() - this.epochOrigin) / 1_000_000_000n)) >>> 0;
  }
}
