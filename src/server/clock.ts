// Engine time and PCP Epoch Time from a monotonic source: neither jumps when the wall
// clock is stepped (NTP), as RFC 6887 §8.5 requires of the Epoch.

export class MonotonicClock {
  private readonly origin: bigint;

  /**
   * @param epochBase Epoch value at start: 0 after state loss; previous + downtime when state was restored.
   * @param source nanoseconds from a monotonic source (process.hrtime; tests substitute one).
   */
  constructor(private readonly epochBase = 0, private readonly source: () => bigint = process.hrtime.bigint) {
    this.origin = source();
  }

  /** Whole seconds since this clock started. */
  seconds(): number {
    return Number((this.source() - this.origin) / 1_000_000_000n);
  }

  /** Seconds since this clock started, with the fraction (rate limiting). */
  fractionalSeconds(): number {
    return Number(this.source() - this.origin) / 1e9;
  }

  /** Epoch Time for replies [RFC 6887 §8.5]: counts seconds from the base, wraps at 2^32. */
  epoch(): number {
    return (this.epochBase + this.seconds()) >>> 0;
  }
}
