// The event fan-out writes each event's JSON directly (noticeJson); it must be exactly
// JSON.stringify of the notice the rest of the channel builds (toNotice), for any record.
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { readEvent } from "../../src/engine/packet-engine.js";
import { toAddress16 } from "../../src/net/address.js";
import { noticeJson, toNotice } from "../../src/control/views.js";

const record = fc.record({
  kind: fc.integer({ min: 0, max: 7 }),
  protocol: fc.integer({ min: 0, max: 255 }),
  flags: fc.integer({ min: 0, max: 255 }),
  family: fc.integer({ min: 0, max: 1 }),
  internal: fc.oneof(fc.ipV4(), fc.ipV6()),
  internalPort: fc.integer({ min: 0, max: 65535 }),
  externalPort: fc.integer({ min: 0, max: 65535 }),
  pool: fc.integer({ min: 0, max: 3 }),
  mapExpiry: fc.nat(),
  outExpiry: fc.nat(),
  mapping: fc.nat(),
  time: fc.nat(),
  shard: fc.integer({ min: 0, max: 63 }),
});

describe("noticeJson", () => {
  it("equals JSON.stringify(toNotice(…)) for any record, byte for byte", () => {
    const pool = ["203.0.113.1", "2001:db8::1", "198.51.100.7"]; // index 3: unnamed (pool#3)
    fc.assert(
      fc.property(record, (r) => {
        const bytes = new Uint8Array(W.EVENT_SIZE);
        const view = new DataView(bytes.buffer);
        view.setUint8(W.EV_KIND, r.kind);
        view.setUint8(W.EV_PROTOCOL, r.protocol);
        view.setUint8(W.EV_FLAGS, r.flags);
        view.setUint8(W.EV_FAMILY, r.family);
        view.setUint16(W.EV_INTERNAL_PORT, r.internalPort, true);
        view.setUint16(W.EV_EXTERNAL_PORT, r.externalPort, true);
        view.setUint16(W.EV_POOL_INDEX, r.pool, true);
        view.setUint32(W.EV_MAP_EXPIRY, r.mapExpiry, true);
        view.setUint32(W.EV_OUT_EXPIRY, r.outExpiry, true);
        view.setUint32(W.EV_MAPPING, r.mapping, true);
        view.setUint32(W.EV_TIME, r.time, true);
        bytes.set(toAddress16(r.internal), W.EV_INTERNAL_ADDR);
        const e = readEvent(view, bytes, 0, (i) => pool[i] ?? `pool#${i}`);
        expect(noticeJson(r.shard, e)).toBe(JSON.stringify(toNotice(r.shard, e)));
      }),
      { numRuns: 2000 },
    );
  });
});
