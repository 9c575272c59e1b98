// Epoch Time (checklist §3.11): seconds from a monotonic source.
import { afterEach, describe, expect, it, vi } from "vitest";
import { MonotonicClock, TestTime, testClockFromEnv, timeFrom, systemTime, wallSeconds } from "../../src/core/clock.js";

afterEach(() => vi.useRealTimers());

describe("Epoch", () => {
  it("item 124: two requests 10 s apart see Epochs 10 apart", () => {
    let ns = 5_000_000_000n;
    const clock = new MonotonicClock(0, () => ns);
    const first = clock.epoch();
    ns += 10_000_000_000n;
    expect(clock.epoch() - first).toBe(10);
  });

  it("item 128: a step of the wall clock does not move the Epoch", () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(new Date("2026-01-01T00:00:00Z"));
    const clock = new MonotonicClock(); // the real monotonic source
    vi.setSystemTime(new Date("2030-01-01T00:00:00Z")); // NTP step forward
    expect(clock.epoch()).toBeLessThanOrEqual(1);
    vi.setSystemTime(new Date("2020-01-01T00:00:00Z")); // and back
    expect(clock.epoch()).toBeLessThanOrEqual(1);
  });

  it("item 125/127: counts from its base (0 after state loss) and wraps at 2^32", () => {
    let ns = 0n;
    expect(new MonotonicClock().epoch()).toBeLessThanOrEqual(1);
    const restored = new MonotonicClock(0xffffffff, () => ns);
    ns = 2_000_000_000n;
    expect(restored.epoch()).toBe(1);
  });
});

describe("Epoch reset with state kept", () => {
  it("item 126: resetEpoch restarts the Epoch at 0 while engine time runs on", () => {
    let ns = 0n;
    const clock = new MonotonicClock(0, () => ns);
    ns = 50_000_000_000n;
    clock.resetEpoch();
    expect(clock.epoch()).toBe(0);
    expect(clock.seconds()).toBe(50);
    ns += 3_000_000_000n;
    expect(clock.epoch()).toBe(3);
  });
});

it("item 126: the reset Epoch counts whole seconds from the moment of the reset", () => {
  let ns = 1_900_000_000n;
  const clock = new MonotonicClock(0, () => ns);
  clock.resetEpoch();
  ns += 900_000_000n; // 0.9 s later, engine time has passed a second boundary
  expect(clock.epoch()).toBe(0);
  ns += 100_000_000n;
  expect(clock.epoch()).toBe(1);
});

describe("the test clock (tests only: PCPD_TEST_CLOCK, startServer's testClock)", () => {
  it("moves engine time, Epoch and wall-clock time forward together, for every holder of its buffer", () => {
    const time = new TestTime();
    const other = timeFrom(time.buffer); // as a worker wraps the cell it was sent
    const clock = new MonotonicClock(0, () => other.monotonicNs());
    const wall = wallSeconds(other);
    time.advance(3600);
    expect(clock.seconds()).toBeGreaterThanOrEqual(3600);
    expect(clock.seconds()).toBeLessThanOrEqual(3601);
    expect(clock.epoch()).toBe(clock.seconds());
    expect(wallSeconds(other) - wall).toBeGreaterThanOrEqual(3600);
    expect(wallSeconds(other) - wall).toBeLessThanOrEqual(3601);
    expect(time.aheadSeconds).toBe(3600);
  });

  it("only moves forward", () => {
    const time = new TestTime(TestTime.allocate(5));
    expect(() => time.advance(-1)).toThrow(RangeError);
    expect(() => time.advance(Number.NaN)).toThrow(RangeError);
    expect(time.aheadSeconds).toBe(5);
  });

  it("is off unless PCPD_TEST_CLOCK is set; its value is how far ahead it starts; anything else is refused", () => {
    expect(testClockFromEnv(undefined)).toBeUndefined();
    expect(testClockFromEnv("")).toBeUndefined();
    expect(timeFrom(undefined)).toBe(systemTime);
    expect(testClockFromEnv("0")?.aheadSeconds).toBe(0);
    const ahead = testClockFromEnv("7200")!;
    expect(ahead.aheadSeconds).toBe(7200);
    expect(wallSeconds(ahead) - wallSeconds()).toBeGreaterThanOrEqual(7199);
    for (const bad of ["1.5", "-3", "yes", "1e3", " 1"]) expect(() => testClockFromEnv(bad), bad).toThrow(/PCPD_TEST_CLOCK/);
  });
});
