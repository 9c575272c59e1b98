// Engine time and PCP Epoch Time from a monotonic source: neither jumps when the wall
// clock is stepped (NTP), as RFC 6887 §8.5 requires of the Epoch.
//
// Every reading of time in the server (engine seconds, Epoch, the wall-clock seconds the
// persisted records carry) goes through a TimeSource. Production uses systemTime. Tests
// use a TestTime: the real clocks plus an offset in shared memory that the main thread
// advances and every shard's worker reads, so Epoch and lifetime tests move time forward
// instead of sleeping (docs/architecture-host.md, "The test clock"). The CLI switches it
// on only when PCPD_TEST_CLOCK is set (src/cli/pcp-server.ts).

export interface TimeSource {
  /** Nanoseconds from a monotonic source (engine time, Epoch). */
  monotonicNs(): bigint;
  /** Wall-clock milliseconds since 1970 (persisted records: downtime across restarts). */
  wallMs(): number;
}

export const systemTime: TimeSource = {
  monotonicNs: () => process.hrtime.bigint(),
  wallMs: () => Date.now(),
};

/** Whole wall-clock seconds of `time`. */
export const wallSeconds = (time: TimeSource = systemTime): number => Math.floor(time.wallMs() / 1000);

/**
 * The real clocks moved forward by an offset that only grows (a monotonic source must not
 * go back). The offset lives in a SharedArrayBuffer so one TestTime can be handed to the
 * worker threads (ShardSpec.time) and advanced from the main thread: every thread sees
 * the same jump at once. Never used unless a test asks for it.
 */
export class TestTime implements TimeSource {
  /** Offset in ns, [0] of a BigInt64Array over the shared buffer. */
  private readonly offset: BigInt64Array;

  /** @param buffer an offset cell from TestTime.allocate() (a worker wraps the one it was sent). */
  constructor(readonly buffer: SharedArrayBuffer = TestTime.allocate()) {
    this.offset = new BigInt64Array(buffer, 0, 1);
  }

  static allocate(seconds = 0): SharedArrayBuffer {
    const buffer = new SharedArrayBuffer(8);
    new BigInt64Array(buffer)[0] = BigInt(Math.round(seconds * 1e9));
    return buffer;
  }

  /** Moves both clocks forward by `seconds` (≥ 0) for every thread holding this buffer. */
  advance(seconds: number): void {
    if (!(seconds >= 0)) throw new RangeError(`test clock: cannot advance by ${seconds} s (time only moves forward)`);
    // Atomics: the workers read the cell while the main thread moves it.
    Atomics.add(this.offset, 0, BigInt(Math.round(seconds * 1e9)));
  }

  /** Seconds the clocks are ahead of the real ones. */
  get aheadSeconds(): number {
    return Number(Atomics.load(this.offset, 0)) / 1e9;
  }

  monotonicNs(): bigint {
    return process.hrtime.bigint() + Atomics.load(this.offset, 0);
  }

  wallMs(): number {
    return Date.now() + Number(Atomics.load(this.offset, 0) / 1_000_000n);
  }
}

/**
 * The test clock PCPD_TEST_CLOCK asks for, or undefined (unset or empty: the system's
 * clocks, always in production). Its value is how many whole seconds ahead of the real
 * clocks the test clock starts, "0" included: a test that restarts the server gives the
 * new process the downtime it simulates, and the Epoch check sees it [RFC 6887 §8.5].
 */
export function testClockFromEnv(value: string | undefined): TestTime | undefined {
  if (value === undefined || value === "") return undefined;
  if (!/^\d{1,10}$/.test(value))
    throw new RangeError(`PCPD_TEST_CLOCK: want whole seconds ≥ 0 (the test clock's start ahead of the real one), got ${JSON.stringify(value)}`);
  return new TestTime(TestTime.allocate(Number(value)));
}

/** The time source a worker uses: the test clock it was sent, else the system's. */
export const timeFrom = (testClock: SharedArrayBuffer | undefined): TimeSource => (testClock ? new TestTime(testClock) : systemTime);

export class MonotonicClock {
  private readonly origin: bigint;
  /** When the Epoch last started counting from epochBase. */
  private epochOrigin: bigint;

  /**
   * @param epochBase Epoch value at start: 0 after state loss; previous + downtime when state was restored.
   * @param source nanoseconds from a monotonic source (a TimeSource's monotonicNs; tests substitute one).
   */
  constructor(
    private epochBase = 0,
    private readonly source: () => bigint = systemTime.monotonicNs,
  ) {
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

  /** What another thread needs to compute epoch() itself (src/shard/stats-board.ts), on the same time source. */
  epochState(): { base: number; origin: bigint } {
    return { base: this.epochBase, origin: this.epochOrigin };
  }

  /** Epoch Time for replies [RFC 6887 §8.5]: counts seconds from the base, wraps at 2^32. */
  epoch(): number {
    return (this.epochBase + Number((this.source() - this.epochOrigin) / 1_000_000_000n)) >>> 0;
  }
}
