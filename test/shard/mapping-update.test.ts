// Mapping Update transmission (checklist 120): three copies, 250 ms then 500 ms apart
// (each timed from when the previous copy left), the current Epoch in each, none after a cancel.
import { afterEach, describe, expect, it, vi } from "vitest";
import * as W from "../../src/wire.generated.js";
import { MappingUpdater } from "../../src/shard/mapping-update.js";

afterEach(() => vi.useRealTimers());

describe("MappingUpdater", () => {
  it("sends three copies: at once, ≥ 250 ms after the first left, ≥ 500 ms and twice the first gap after the second left, each with the Epoch of its moment", () => {
    vi.useFakeTimers();
    const sent: { at: number; epoch: number }[] = [];
    const t0 = Date.now();
    const send = (m: { payload: Uint8Array }, left: () => void) => {
      sent.push({ at: Date.now() - t0, epoch: new DataView(m.payload.buffer).getUint32(W.HDR_EPOCH) });
      setTimeout(left, 20); // the socket's send callback, 20 ms later
      return true;
    };
    const u = new MappingUpdater(send, () => Math.floor((Date.now() - t0) / 100));
    u.schedule(7, [{ address: "192.0.2.1", port: 4000, payload: new Uint8Array(60) }]);
    expect(u.size).toBe(1);
    vi.advanceTimersByTime(5000);
    expect(sent).toEqual([
      { at: 0, epoch: 0 },
      { at: 270, epoch: 2 },
      { at: 870, epoch: 8 },
    ]); // 20 + 250; 290 + 2 × 290
    expect(u.size).toBe(0);
  });

  it("a cancel (the client refreshed) stops the remaining copies; a new schedule replaces the old", () => {
    vi.useFakeTimers();
    let n = 0;
    const u = new MappingUpdater(
      (_m, left) => (n++, setTimeout(left, 0), true),
      () => 0,
    );
    u.schedule(1, [{ address: "192.0.2.1", port: 4000, payload: new Uint8Array(60) }]);
    vi.advanceTimersByTime(300);
    u.cancel(1);
    vi.advanceTimersByTime(5000);
    expect(n).toBe(2);
    u.schedule(2, [{ address: "192.0.2.1", port: 4000, payload: new Uint8Array(60) }]);
    u.schedule(2, [{ address: "192.0.2.1", port: 4000, payload: new Uint8Array(60) }]);
    vi.advanceTimersByTime(5000);
    expect(n).toBe(2 + 1 + 3); // the first schedule's first copy, then the replacement's three
  });
});
