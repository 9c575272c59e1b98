// Mapping records as they leave the engine's thread: listings selected inside the engine
// (listRecords) against a filter over every record's description, event records against
// the decoded event ring (including a ring that wraps), lookups with their FILTERs.
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import * as W from "../../src/wire.generated.js";
import { decodeRecords, recordKinds, type PacketEngine, type MappingEvent, type RecordSelector } from "../../src/engine/packet-engine.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { filter, mapRequest, nonceOf, serveOne } from "../helpers/packets.js";

const POOL = ["203.0.113.1", "203.0.113.2"];
const T0 = 1000;
const CLIENTS = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::7"];
const KINDS = ["dynamic", "static", "held"] as const;

function engine(maxMappings = 10_000, blockSize = 64): PacketEngine {
  return engineFrom(
    engineConfig({
      capacity: { mappings: maxMappings },
      quotas: { mappingsPerSubscriber: 1000 },
      pool: { addresses: POOL, blockSize, maxBlocksPerSubscriber: 8 },
    }),
    T0,
    { seed: 5n },
  );
}

const kindOf = (m: MappingEvent) => (m.flags & W.MAPF_STATIC ? "static" : m.flags & W.MAPF_HELD ? "held" : "dynamic");

/** What a listing must return: every described record the selector accepts, by id. */
function expected(e: PacketEngine, s: RecordSelector): MappingEvent[] {
  const out = [];
  for (let m = 1; m <= e.mappingsUsed(); m++) {
    const d = e.describe(m);
    if (!d) continue;
    if (s.internalAddress !== undefined && d.internalAddress !== s.internalAddress) continue;
    if (s.pool !== undefined && d.externalAddress !== POOL[s.pool]) continue;
    if (s.protocol !== undefined && d.protocol !== s.protocol) continue;
    if (s.kind !== undefined && kindOf(d) !== s.kind) continue;
    out.push(d);
  }
  return out;
}

/** Pages through the whole table with bounded scans. */
function listAll(e: PacketEngine, s: RecordSelector, limit: number, scan: number): MappingEvent[] {
  const out: MappingEvent[] = [];
  let from = 1;
  for (let pages = 0; pages < 100_000; pages++) {
    const { records, next } = e.listRecords(from, limit, scan, s, T0);
    const page = decodeRecords(records);
    expect(page.length).toBeLessThanOrEqual(limit);
    out.push(...page);
    if (next === 0) return out;
    expect(next).toBeGreaterThan(from); // always progresses
    from = next;
  }
  throw new Error("listing did not end");
}

const op = fc.oneof(
  fc.record({
    t: fc.constant("map" as const),
    client: fc.constantFrom(...CLIENTS),
    protocol: fc.constantFrom(W.PROTO_TCP, W.PROTO_UDP),
    port: fc.integer({ min: 1, max: 40 }),
    lifetime: fc.constantFrom(0, 600, 3600),
  }),
  fc.record({
    t: fc.constant("static" as const),
    client: fc.constantFrom(...CLIENTS.slice(0, 3)),
    protocol: fc.constantFrom(W.PROTO_TCP, W.PROTO_UDP),
    port: fc.integer({ min: 41, max: 60 }),
    pool: fc.integer({ min: 0, max: 1 }),
    external: fc.integer({ min: 100, max: 900 }),
  }),
);

describe("listRecords: selection inside the engine", () => {
  it("returns exactly the records a filter over every description keeps, in id order, across pages and bounded scans", () => {
    fc.assert(
      fc.property(
        fc.array(op, { maxLength: 120 }),
        fc.record({
          internalAddress: fc.option(fc.constantFrom(...CLIENTS, "192.0.2.99"), { nil: undefined }),
          pool: fc.option(fc.integer({ min: 0, max: 1 }), { nil: undefined }),
          protocol: fc.option(fc.constantFrom(W.PROTO_TCP, W.PROTO_UDP, 132), { nil: undefined }),
          kind: fc.option(fc.constantFrom(...KINDS), { nil: undefined }),
        }),
        fc.integer({ min: 1, max: 30 }),
        fc.integer({ min: 1, max: 50 }),
        (ops, select, limit, scan) => {
          const e = engine();
          let n = 0;
          for (const o of ops) {
            if (o.t === "map")
              serveOne(e, mapRequest({ client: o.client, protocol: o.protocol, internalPort: o.port, lifetime: o.lifetime, nonce: nonceOf(o.port) }), T0, {
                source: o.client,
              });
            else e.addStatic(o.client, o.protocol, o.port, POOL[o.pool], 30000 + o.external + n++);
          }
          const s = Object.fromEntries(Object.entries(select).filter(([, v]) => v !== undefined)) as RecordSelector;
          expect(listAll(e, s, limit, scan)).toEqual(expected(e, s));
        },
      ),
      { numRuns: 150 },
    );
  });

  it("carries each record's FILTERs and the pool's names; a page never exceeds LIST_MAX", () => {
    const e = engine();
    serveOne(e, mapRequest({ client: CLIENTS[0], internalPort: 80 }, [filter(128, "198.51.100.9", 443)]), T0, { source: CLIENTS[0] });
    serveOne(e, mapRequest({ client: CLIENTS[1], internalPort: 81 }), T0, { source: CLIENTS[1] });
    const { records, next } = e.listRecords(1, 5000, 100, {}, T0 + 7);
    expect(next).toBe(0);
    expect(records.pool).toEqual(POOL);
    expect(records.now).toBe(T0 + 7);
    const list = decodeRecords(records);
    expect(list.map((m) => m.internalPort)).toEqual([80, 81]);
    expect(records.filters).toEqual({ 0: [{ prefixLength: 128, port: 443, address: "198.51.100.9" }] });

    for (let i = 0; i < W.LIST_MAX + 10; i++)
      serveOne(e, mapRequest({ client: `10.0.${i >> 6}.1`, protocol: W.PROTO_UDP, internalPort: 1 + i }), T0, { source: `10.0.${i >> 6}.1` });
    expect(decodeRecords(e.listRecords(1, 5000, 50_000, {}, T0).records)).toHaveLength(W.LIST_MAX);
  });

  it("lookups return one record (or none) with its FILTERs", () => {
    const e = engine();
    serveOne(e, mapRequest({ client: CLIENTS[0], internalPort: 80 }, [filter(120, "198.51.100.0", 0)]), T0, { source: CLIENTS[0] });
    const found = e.lookupRecords(CLIENTS[0], W.PROTO_TCP, 80, 4, T0);
    const [m] = decodeRecords(found);
    expect(m).toMatchObject({ internalAddress: CLIENTS[0], internalPort: 80, protocol: W.PROTO_TCP });
    expect(found.filters?.[0]).toEqual([{ prefixLength: 120, port: 0, address: "198.51.100.0" }]);
    expect(decodeRecords(e.lookupExternalRecords(m.externalAddress, W.PROTO_TCP, m.externalPort, T0))).toEqual([m]);
    expect(e.lookupRecords(CLIENTS[0], W.PROTO_UDP, 80, 4, T0).bytes).toHaveLength(0);
    expect(e.lookupExternalRecords("198.51.100.1", W.PROTO_TCP, m.externalPort, T0).bytes).toHaveLength(0); // not a pool address
  });
});

describe("drainRecords: the event ring as records", () => {
  it("decodes to what drainEvents returns, also when the ring wraps", () => {
    const a = engine(60_000, 512);
    const b = engine(60_000, 512);
    // 50k creates then 30k more events: the second drain crosses the ring's end (EVENT_CAPACITY 65536).
    const client = (i: number) => `10.1.0.${1 + Math.floor(i / 1000)}`;
    const map = (i: number, lifetime: number) => {
      for (const e of [a, b])
        serveOne(e, mapRequest({ client: client(i), protocol: W.PROTO_UDP, internalPort: 1 + (i % 1000), lifetime, nonce: nonceOf(i) }), T0, {
          source: client(i),
        });
    };
    for (let i = 0; i < 50_000; i++) map(i, 3600);
    const pool = a.poolList();
    expect(decodeRecords(a.drainRecords(), pool)).toEqual(b.drainEvents());
    for (let i = 50_000; i < 60_000; i++) map(i, 3600);
    for (let i = 0; i < 20_000; i++) map(i, 0);
    const records = a.drainRecords();
    const events = b.drainEvents();
    expect(events).toHaveLength(30_000);
    expect(decodeRecords(records, pool)).toEqual(events);
    expect(recordKinds(records).map((k) => k.mapping)).toEqual(events.map((e) => e.mapping));
    expect(a.drainRecords().bytes).toHaveLength(0);
  });
});
