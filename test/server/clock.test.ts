// Epoch Time (checklist §3.11): seconds from a monotonic source.
import { afterEach, describe, expect, it, vi } from "vitest";
import { MonotonicClock } from "../../src/server/clock.js";

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
