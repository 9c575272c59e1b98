// THIRD_PARTY_ID (RFC 7843): a tunnel/session identifier names the realm of a THIRD_PARTY
// address, so overlapping internal addresses of different subscribers (DS-Lite softwires
// behind one AFTR) stay apart in mappings, quotas, listings and persistence. Checklist 153
// (the unknown-identifier part; the codec's part is in checklist-parse-rules).
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { decodeRecords, type PacketEngine } from "../../src/engine/packet-engine.js";
import type { Config } from "../../src/config/schema.js";
import { engineConfig, engineFrom, merge, type DeepPartial } from "../helpers/engine-config.js";
import { assigned, mapRequest, nonceOf, serveOne, thirdParty, thirdPartyId } from "../helpers/packets.js";

const AFTR = "192.0.2.200";
const TP = W.INGRESS_SUBSCRIBER | W.INGRESS_THIRD_PARTY;
const T0 = 100;
const WALL = 1_700_000_000;

function engine(ids: string[] | "any", capacity = 16, over: DeepPartial<Config> = {}): PacketEngine {
  const base: DeepPartial<Config> = { pcp: { thirdPartyId: { enabled: true, ids } }, capacity: { realms: capacity }, quotas: { mappingsPerSubscriber: 2 } };
  return engineFrom(engineConfig(merge<DeepPartial<Config>>(base, over)), T0);
}

const map = (e: PacketEngine, internal: string, id: number[] | undefined, port: number, lifetime = 3600) =>
  serveOne(e, mapRequest({ client: AFTR, internalPort: port, lifetime, nonce: nonceOf(port) }, [thirdParty(internal), ...(id ? [thirdPartyId(id)] : [])]), T0, {
    source: AFTR,
    ingress: TP,
  });

describe("§3.13 THIRD_PARTY_ID (RFC 7843)", () => {
  it("item 153: an identifier the server does not know → THIRD_PARTY_ID_UNKNOWN; a known one → served and echoed", () => {
    const e = engine(["0a01", "0a02"]);
    expect(map(e, "10.0.0.1", [0x0a, 0x09], 80).result).toBe(W.RESULT_THIRD_PARTY_ID_UNKNOWN);
    const ok = map(e, "10.0.0.1", [0x0a, 0x01], 80);
    expect(ok.result).toBe(W.RESULT_SUCCESS);
    const options = ok.response.subarray(W.PCP_HEADER_SIZE + W.MAP_PAYLOAD_SIZE);
    expect([options[0], options[20]]).toEqual([W.OPTION_THIRD_PARTY, W.OPTION_THIRD_PARTY_ID]);
    expect(Array.from(options.subarray(24, 26))).toEqual([0x0a, 0x01]);
  });

  it("the same internal address in two realms: two subscribers — own mappings, own quota, own deletes", () => {
    const e = engine("any");
    const a = map(e, "10.0.0.1", [1], 80);
    const b = map(e, "10.0.0.1", [2], 80);
    const none = map(e, "10.0.0.1", undefined, 80); // realm 0: a third subscriber
    for (const o of [a, b, none]) expect(o.result).toBe(W.RESULT_SUCCESS);
    expect(new Set([a, b, none].map((o) => assigned(o).port)).size).toBe(3);
    expect(e.engineStats()).toMatchObject({ mappings: 3n, subscribers: 3n });
    // Quota of 2 per subscriber, counted per realm.
    expect(map(e, "10.0.0.1", [1], 81).result).toBe(W.RESULT_SUCCESS);
    expect(map(e, "10.0.0.1", [1], 82).result).toBe(W.RESULT_USER_EX_QUOTA);
    expect(map(e, "10.0.0.1", [2], 81).result).toBe(W.RESULT_SUCCESS);
    // Deleting realm 1's port 80 leaves realm 2's alone; refreshing realm 2's finds its own.
    expect(map(e, "10.0.0.1", [1], 80, 0).result).toBe(W.RESULT_SUCCESS);
    expect(assigned(map(e, "10.0.0.1", [2], 80)).port).toBe(assigned(b).port);
    expect(e.lookupRecords("10.0.0.1", W.PROTO_TCP, 80, 4, T0, "02").bytes.length).toBe(W.EVENT_SIZE);
    expect(e.lookupRecords("10.0.0.1", W.PROTO_TCP, 80, 4, T0, "01").bytes.length).toBe(0); // deleted: only its hold-down is left
  });

  it('listings name each mapping\'s identifier; with "any" a full table answers THIRD_PARTY_ID_UNKNOWN', () => {
    const e = engine("any", 2);
    map(e, "10.0.0.1", [1], 80);
    map(e, "10.0.0.1", [2], 80);
    expect(map(e, "10.0.0.1", [3], 80).result).toBe(W.RESULT_THIRD_PARTY_ID_UNKNOWN); // room for 2 realms
    const page = e.listRecords(1, 10, 100, {}, T0);
    expect(decodeRecords(page.records).map((m) => m.internalAddress)).toEqual(["10.0.0.1", "10.0.0.1"]);
    expect(page.records.thirdPartyIds).toEqual({ 0: "01", 1: "02" });
  });

  it("persistence carries the identifier, not the realm number; a restore drops realms no longer configured", () => {
    const a = engine("any");
    map(a, "10.0.0.1", [0xbe, 0xef], 80);
    map(a, "10.0.0.1", [0x01], 80);
    const records = Uint8Array.from(a.persistPending(WALL).flatMap((r) => [...r]));
    a.drainEvents();
    const b = engine(["01", "beef"]); // registered in another order: other realm numbers
    expect(b.restore(records, WALL, T0)).toBe(records.length);
    expect(decodeRecords(b.lookupRecords("10.0.0.1", W.PROTO_TCP, 80, 4, T0, "beef")).map((m) => m.externalPort)).toEqual(
      decodeRecords(a.lookupRecords("10.0.0.1", W.PROTO_TCP, 80, 4, T0, "beef")).map((m) => m.externalPort),
    );
    const c = engine(["01"]);
    c.restore(records, WALL, T0);
    expect(c.restoreDropped().conflict).toBe(1);
    expect(c.engineStats().mappings).toBe(1n);
  });
});
