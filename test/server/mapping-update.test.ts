// Mapping Update transmission (checklist 120): three copies, 250 ms then 500 ms apart
// (each timed from the previous send), the current Epoch in each, none after a cancel.
import { afterEach, describe, expect, it, vi } from "vitest";
import * as W from "../../src/wire.generated.js";
import { MappingUpdater } from "../../src/server/mapping-update.js";

afterEach(() => vi.useRealTimers());

describe("MappingUpdater", () => {
  it("sends three copies at 0, +251 ms, +502 ms, each with the Epoch of its moment", () => {
    vi.useFakeTimers();
    const sent: { at: number; epoch: number }[] = [];
    const t0 = Date.now();
    const u = new MappingUpdater((m) => sent.push({ at: Date.now() - t0, epoch: new DataView(m.payload.buffer).getUint32(W.HDR_EPOCH) }), () => Math.floor((Date.now() - t0) / 100));
    u.schedule(7, [{ address: "192.0.2.1", port: 4000, payload: new Uint8Array(60) }]);
    expect(u.size).toBe(1);
    vi.advanceTimersByTime(5000);
    expect(sent).toEqual([{ at: 0, epoch: 0 }, { at: 251, epoch: 2 }, { at: 752, epoch: 7 }]);
    expect(u.size).toBe(0);
  });

  it("a cancel (the client refreshed) stops the remaining copies; a new schedule replaces the old", () => {
    vi.useFakeTimers();
    let n = 0;
    const u = new MappingUpdater(() => n++, () => 0);
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
