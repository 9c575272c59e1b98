// Mapping state out of one engine and into another: a journal of what each batch changed
// (persistPending before the events are drained), snapshots taken in chunks while the
// traffic goes on, and restore() of snapshot + journal into a fresh engine must give the
// same table — every live mapping, hold-down, FILTER and PEER by external key, times
// carried over as wall-clock — less what expired while "down".
import { describe, expect, it } from "vitest";
import fc from "fast-check";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import type { Config } from "../../src/config/schema.js";
import type { HostValues } from "../../src/config/region.js";
import { engineConfig, engineFrom, merge, type ConfigInput } from "../helpers/engine-config.js";
import { formatAddress16 } from "../../src/net/address.js";
import { filter, mapRequest, nonceOf, peerRequest, serveOne, thirdParty, thirdPartyId } from "../helpers/packets.js";

const POOL = ["203.0.113.1", "203.0.113.2", "2001:db8:ff::1"];
const CLIENTS = ["192.0.2.1", "192.0.2.2", "192.0.2.3", "2001:db8::5"];
/** Every refresh journaled (persistence.refreshes "every"): the restored table is exact (coalescing: its own test). */
const roundtrip = (over: ConfigInput = {}): Config =>
  engineConfig(
    merge<ConfigInput>(
      { lifetimes: { holdDown: 120 }, pool: { addresses: POOL, blockSize: 64, maxBlocksPerSubscriber: 4 }, persistence: { enabled: true, refreshes: "every" } },
      over,
    ),
  );
const CONFIG = roundtrip();
const COALESCED: ConfigInput = { persistence: { refreshes: "coalesced" } };

function engine(now: number, config = CONFIG, host: Omit<HostValues, "start"> = {}): PacketEngine {
  return engineFrom(config, now, { seed: 9n, ...host });
}

interface Row {
  key: string;
  internal: string;
  flags: number;
  mapExpiry: number;
  outExpiry: number;
  filters: string[];
}

/** The table by external key, times as wall-clock seconds. */
/**
 * The engine's table in wall-clock times at `wallNow`. A PEER part that has ended while its
 * mapping lives on (a MAP part still running) keeps its old expiry in the live engine —
 * the engine ends it lazily: every reader treats an expiry at or before now as no PEER part
 * (assembly/peer.ts, assembly/lifecycle.ts) — while restore clears it eagerly; both read as 0.
 */
function table(e: PacketEngine, wallOffset: number, wallNow: number): Map<string, Row> {
  const out = new Map<string, Row>();
  const wall = (t: number) => (t === 0 ? 0 : t + wallOffset);
  const running = (t: number) => (wall(t) <= wallNow ? 0 : wall(t));
  for (let m = 1; m <= e.mappingsUsed(); m++) {
    const d = e.describe(m);
    if (!d) continue;
    out.set(`${d.externalAddress}/${d.protocol}/${d.externalPort}`, {
      key: `${d.externalAddress}/${d.protocol}/${d.externalPort}`,
      internal: `${d.internalAddress}/${d.protocol}/${d.internalPort}/${d.family}`,
      flags: d.flags,
      mapExpiry: wall(d.mapExpiry),
      outExpiry: running(d.outExpiry),
      filters: e
        .filters(m)
        .map((f) => `${f.address}/${f.prefixLength}:${f.port}`)
        .sort(),
    });
  }
  return out;
}

type Op =
  | { t: "map"; client: number; protocol: number; port: number; lifetime: number; filters: number }
  | { t: "peer"; client: number; port: number; remote: number }
  | { t: "static"; client: number; port: number; external: number }
  | { t: "tick"; seconds: number }
  | { t: "snapshot" };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      t: fc.constant("map" as const),
      client: fc.nat(3),
      protocol: fc.constantFrom(W.PROTO_TCP, W.PROTO_UDP),
      port: fc.integer({ min: 1, max: 12 }),
      lifetime: fc.constantFrom(0, 150, 600, 3600),
      filters: fc.nat(2),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("peer" as const), client: fc.nat(3), port: fc.integer({ min: 1, max: 12 }), remote: fc.nat(3) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("static" as const), client: fc.nat(2), port: fc.integer({ min: 20, max: 25 }), external: fc.nat(40) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant("tick" as const), seconds: fc.integer({ min: 1, max: 400 }) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("snapshot" as const) }) },
);

const T0 = 1000;
const WALL_A = 1_700_000_000; // wall clock at engine time 0, first run

describe("persistence round trip through the engine", () => {
  it("snapshot + journal restored into a new engine give the same table (less what expired meanwhile)", () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 80 }), fc.integer({ min: 0, max: 700 }), fc.integer({ min: 1, max: 7 }), (ops, downtime, chunk) => {
        const a = engine(T0);
        let now = T0;
        let snapshot: Uint8Array[] = [];
        let journal: Uint8Array[] = [];
        let staticPort = 0;
        const capture = () => {
          journal.push(...a.persistPending(WALL_A));
          a.drainEvents();
        };
        for (const o of ops) {
          const client = CLIENTS[o.t === "tick" || o.t === "snapshot" ? 0 : o.client];
          if (o.t === "map") {
            const fs = Array.from({ length: o.filters }, (_, i) => filter(128, `198.51.100.${10 + i}`, 443));
            serveOne(a, mapRequest({ client, protocol: o.protocol, internalPort: o.port, lifetime: o.lifetime, nonce: nonceOf(o.port) }, fs), now, {
              source: client,
            });
          } else if (o.t === "peer") {
            serveOne(
              a,
              peerRequest({
                client,
                internalPort: o.port,
                lifetime: 600,
                nonce: nonceOf(o.port),
                remoteAddress: `198.51.100.${o.remote + 1}`,
                remotePort: 3478,
              }),
              now,
              { source: client },
            );
          } else if (o.t === "static") {
            a.addStatic(client, W.PROTO_UDP, o.port, POOL[0], 60000 + o.external + staticPort++);
          } else if (o.t === "tick") {
            now += o.seconds;
            a.expire(now);
          } else {
            // A fuzzy snapshot: the journal restarts with it, and traffic runs between its chunks.
            capture();
            journal = [];
            snapshot = [];
            let from = 1;
            do {
              const part = a.persistTable(from, chunk, WALL_A);
              snapshot.push(part.bytes);
              from = part.next;
              serveOne(a, mapRequest({ client: CLIENTS[1], internalPort: 30 + (from % 3), nonce: nonceOf(30) }), now, { source: CLIENTS[1] });
              capture();
            } while (from !== 0);
          }
          capture();
        }
        // Down for `downtime` seconds; the new run's engine time starts again at T0.
        const wallNow = now + WALL_A + downtime;
        const wallB = wallNow - T0;
        const b = engine(T0);
        for (const part of [...snapshot, ...journal]) expect(b.restore(part, wallB, T0)).toBe(part.length);
        a.expire(now + downtime); // what ended while down, seen from the first run
        a.drainEvents();
        const want = table(a, WALL_A, wallNow);
        const got = table(b, wallB, wallNow);
        expect([...got.values()].sort((x, y) => x.key.localeCompare(y.key))).toEqual([...want.values()].sort((x, y) => x.key.localeCompare(y.key)));
        expect(b.engineStats()).toMatchObject({
          mappings: a.engineStats().mappings,
          held: a.engineStats().held,
          filters: a.engineStats().filters,
          subscribers: a.engineStats().subscribers,
          blocks: a.engineStats().blocks,
        });
        expect(b.restoreDropped().malformed).toBe(0);
      }),
      { numRuns: 200 },
    );
    // 200 runs take about 20 s of CPU; on a loaded 2-core machine the wall time has reached
    // 80 s. The limit only guards against a hang.
  }, 240_000);

  it("a restored mapping answers its client's refresh with the same external port; a hold-down is kept for its nonce only", () => {
    const a = engine(T0);
    const c = CLIENTS[0];
    const live = serveOne(a, mapRequest({ client: c, internalPort: 80, lifetime: 3600, nonce: nonceOf(1) }), T0, { source: c });
    const gone = serveOne(a, mapRequest({ client: c, internalPort: 81, lifetime: 3600, nonce: nonceOf(2) }), T0, { source: c });
    serveOne(a, mapRequest({ client: c, internalPort: 81, lifetime: 0, nonce: nonceOf(2) }), T0 + 5, { source: c }); // held for 120 s
    const records = a.persistPending(WALL_A);
    const b = engine(T0);
    const wallB = WALL_A + 30; // restarted 30 s later (engine time T0 again)
    for (const r of records) b.restore(r, wallB, T0);
    const port = (o: { response: Uint8Array }) => new DataView(o.response.buffer, o.response.byteOffset).getUint16(W.MP_EXTERNAL_PORT);
    const refreshed = serveOne(b, mapRequest({ client: c, internalPort: 80, lifetime: 3600, nonce: nonceOf(1) }), T0, { source: c });
    expect(refreshed.result).toBe(W.RESULT_SUCCESS);
    expect(port(refreshed)).toBe(port(live));
    expect(b.drainEvents().map((e) => e.kind)).toEqual(["refresh"]);
    // The held port comes back to its nonce; a different nonce gets another port.
    const other = serveOne(b, mapRequest({ client: c, internalPort: 81, lifetime: 600, nonce: nonceOf(3), externalPort: port(gone) }), T0, { source: c });
    expect(port(other)).not.toBe(port(gone));
    const back = serveOne(b, mapRequest({ client: c, internalPort: 82, lifetime: 600, nonce: nonceOf(2) }), T0, { source: c });
    expect(back.result).toBe(W.RESULT_SUCCESS);
  });

  it("coalesced refreshes: only a refresh that moves the expiry by an eighth of the lifetime left (≥ 60 s), or changes FILTERs or PEERs, is journaled; restored, the mapping ends at most that much early", () => {
    const a = engine(T0, roundtrip(COALESCED));
    const c = CLIENTS[0];
    const journal: Uint8Array[] = [];
    const take = () => {
      const parts = a.persistPending(WALL_A);
      a.drainEvents();
      journal.push(...parts);
      return parts.reduce((k, r) => k + r.length, 0);
    };
    const refresh = (now: number, fs: ReturnType<typeof filter>[] = []) => {
      serveOne(a, mapRequest({ client: c, internalPort: 80, lifetime: 3600, nonce: nonceOf(1) }, fs), now, { source: c });
      return take();
    };
    expect(refresh(T0)).toBe(W.PREC_HEADER_SIZE); // created: journaled (expiry T0 + 3600)
    expect(refresh(T0 + 100)).toBe(0); // +100 s < 3600/8
    expect(refresh(T0 + 440)).toBe(0); // +440 s < 450
    expect(refresh(T0 + 460)).toBe(W.PREC_HEADER_SIZE); // +460 s ≥ an eighth of what is left
    expect(refresh(T0 + 470, [filter(128, "198.51.100.9", 0)])).toBe(W.PREC_HEADER_SIZE + W.PREC_FILTER_SIZE); // FILTERs: always
    expect(refresh(T0 + 480)).toBe(0);
    serveOne(
      a,
      peerRequest({ client: c, internalPort: 80, protocol: W.PROTO_TCP, remoteAddress: "203.0.113.5", remotePort: 443, nonce: nonceOf(1) }),
      T0 + 490,
      { source: c },
    );
    expect(take()).toBe(W.PREC_HEADER_SIZE + W.PREC_FILTER_SIZE + W.PREC_PEER_SIZE); // a new PEER: always
    expect(refresh(T0 + 800)).toBe(0); // +310 s < 3600/8
    const b = engine(T0);
    for (const r of journal) b.restore(r, WALL_A, T0 + 800);
    const actual = a.lookup(c, W.PROTO_TCP, 80)!.mapExpiry;
    const restored = b.lookup(c, W.PROTO_TCP, 80)!.mapExpiry;
    expect(restored).toBeLessThan(actual);
    expect(actual - restored).toBeLessThanOrEqual(Math.max(60, (actual - (T0 + 800)) / 8));
  });

  it("drops what cannot come back and says why: expired, not in the pool, another shard's block, malformed", () => {
    const a = engine(T0);
    serveOne(a, mapRequest({ client: CLIENTS[0], internalPort: 80, lifetime: 200 }), T0, { source: CLIENTS[0] });
    serveOne(a, mapRequest({ client: CLIENTS[1], internalPort: 80, lifetime: 3600 }), T0, { source: CLIENTS[1] });
    const records = a.persistPending(WALL_A);
    const bytes = Uint8Array.from(records.flatMap((r) => [...r]));

    const later = engine(T0);
    later.restore(bytes, WALL_A + 1000, T0); // 1000 s later: the 200 s mapping expired
    expect(later.restoreDropped()).toMatchObject({ expired: 1, malformed: 0 });
    expect(later.engineStats().mappings).toBe(1n);

    const renumbered = engine(T0, roundtrip({ pool: { addresses: ["198.51.100.77"] } }));
    renumbered.restore(bytes, WALL_A, T0);
    expect(renumbered.restoreDropped().notInPool).toBe(2);

    // A shard (of 1000) that owns neither record's block.
    const blocks = new Set([1, 2].map((m) => Math.floor((a.describe(m)!.externalPort - CONFIG.pool.portMin) / CONFIG.pool.blockSize) % 1000));
    const shard = [0, 1, 2].find((s) => !blocks.has(s))!;
    const sharded = engine(T0, CONFIG, { shards: 1000, shard });
    sharded.restore(bytes, WALL_A, T0);
    expect(sharded.restoreDropped().conflict).toBe(2);

    const broken = bytes.slice();
    broken[W.PREC_KIND] = 9;
    const b = engine(T0);
    expect(b.restore(broken, WALL_A, T0)).toBe(0);
    expect(b.restoreDropped().malformed).toBe(1);
  });
});

describe("THIRD_PARTY requester (issue #12 item 13)", () => {
  const TP = W.INGRESS_SUBSCRIBER | W.INGRESS_THIRD_PARTY;
  const REALMS: ConfigInput = { pool: { addresses: ["203.0.113.1"] }, pcp: { thirdPartyId: { enabled: true, ids: "any" } }, capacity: { realms: 16 } };
  const withRealms = (now: number) => {
    return engine(now, roundtrip(REALMS));
  };

  it("the requester (latest address:port) is carried by journal and snapshot records and restored; Mapping Update goes there", () => {
    const a = withRealms(T0);
    const ask = (source: string, sourcePort: number, options: ReturnType<typeof thirdParty>[]) =>
      serveOne(a, mapRequest({ client: source, internalPort: 80, lifetime: 3600, nonce: nonceOf(4) }, options), T0, { source, sourcePort, ingress: TP });
    // In a realm (its THIRD_PARTY_ID precedes the requester in the record) and in none.
    expect(ask("192.0.2.200", 42000, [thirdParty("10.0.0.3"), thirdPartyId([0xab, 0xcd])]).result).toBe(W.RESULT_SUCCESS);
    expect(ask("192.0.2.200", 42000, [thirdParty("10.0.0.4")]).result).toBe(W.RESULT_SUCCESS);
    // The latest request came from elsewhere: that is where updates go.
    expect(ask("192.0.2.201", 43000, [thirdParty("10.0.0.4")]).result).toBe(W.RESULT_SUCCESS);
    const journal = a.persistPending(WALL_A);
    const snapshot = a.persistTable(1, 1000, WALL_A).bytes;
    const view = new DataView(snapshot.buffer, snapshot.byteOffset);
    expect(snapshot[W.PREC_REQUESTER]).toBe(1);
    expect(snapshot.length).toBe(2 * (W.PREC_HEADER_SIZE + W.PREC_REQUESTER_SIZE) + 2); // two records, one with a 2-byte THIRD_PARTY_ID
    expect(view.getUint16(W.PREC_HEADER_SIZE + view.getUint8(W.PREC_REALM_ID_LENGTH) + W.PREC_REQUESTER_PORT, true)).toBeGreaterThan(0);
    for (const records of [journal, [snapshot]]) {
      const b = withRealms(T0);
      for (const r of records) expect(b.restore(r, WALL_A, T0)).toBe(r.length);
      expect(b.restoreDropped()).toEqual({ expired: 0, notInPool: 0, conflict: 0, noResources: 0, malformed: 0 });
      expect(b.lookupRecords("10.0.0.3", W.PROTO_TCP, 80, 4, T0, "abcd").bytes.length).toBe(W.EVENT_SIZE);
      expect(b.addPoolAddress("203.0.113.9")).toBe(true);
      b.retirePoolAddress("203.0.113.1", T0 + 10);
      const messages = b.rehome(T0 + 10, 5, 100).updates.flatMap((u) => u.messages);
      const to = messages.map((m) => `${m.address}:${m.port}/${formatAddress16(m.payload.slice(64, 80))}`).sort();
      expect(to).toEqual(["192.0.2.200:42000/10.0.0.3", "192.0.2.201:43000/10.0.0.4"]);
      // In the realm, THIRD_PARTY_ID follows THIRD_PARTY [RFC 7843].
      const inRealm = messages.find((m) => m.port === 42000)!;
      expect(inRealm.payload.length).toBe(W.MAP_MIN_SIZE + 20 + 8);
      expect([inRealm.payload[80], Array.from(inRealm.payload.slice(84, 86))]).toEqual([W.OPTION_THIRD_PARTY_ID, [0xab, 0xcd]]);
    }
  });

  it("a renewal from another requester is journaled even when its refresh alone would wait (coalesced refreshes)", () => {
    const a = engine(T0, roundtrip(merge(REALMS, COALESCED))); // refreshes coalesced: the default
    const ask = (source: string, sourcePort: number) =>
      serveOne(a, mapRequest({ client: source, internalPort: 81, lifetime: 3600, nonce: nonceOf(5) }, [thirdParty("10.0.0.5")]), T0, {
        source,
        sourcePort,
        ingress: TP,
      });
    const take = () => {
      const parts = a.persistPending(WALL_A);
      a.drainEvents();
      return parts;
    };
    expect(ask("192.0.2.200", 42000).result).toBe(W.RESULT_SUCCESS);
    expect(take().reduce((n, p) => n + p.length, 0)).toBeGreaterThan(0); // the creation
    expect(ask("192.0.2.200", 42000).result).toBe(W.RESULT_SUCCESS);
    expect(take().reduce((n, p) => n + p.length, 0)).toBe(0); // same requester: the refresh waits
    expect(ask("192.0.2.201", 43000).result).toBe(W.RESULT_SUCCESS);
    const [record] = take();
    expect(record.length).toBe(W.PREC_HEADER_SIZE + W.PREC_REQUESTER_SIZE);
    expect(new DataView(record.buffer, record.byteOffset).getUint16(W.PREC_HEADER_SIZE + W.PREC_REQUESTER_PORT, true)).toBe(43000);
  });

  // capacity.requesters 1: room for one requester of its own, beside the shared ones.
  const oneOwn = (pool: string) => roundtrip({ capacity: { requesters: 1 }, pool: { addresses: [pool], blockSize: 128 }, ...COALESCED });
  /** A MAP for internal port 80 of `internal` through the proxy 192.0.2.200, sent from its `sourcePort`: the result. */
  const viaProxy =
    (a: PacketEngine) =>
    (internal: string, sourcePort: number, lifetime = 3600) =>
      serveOne(a, mapRequest({ client: "192.0.2.200", internalPort: 80, lifetime, nonce: nonceOf(4) }, [thirdParty(internal)]), T0, {
        source: "192.0.2.200",
        sourcePort,
        ingress: TP,
      }).result;
  /** The Mapping Updates of moving every mapping from pool address `from` to `to` at `now`. */
  const renumbered = (a: PacketEngine, from: string, to: string, now: number) => {
    a.addPoolAddress(to);
    a.retirePoolAddress(from, now);
    return a.rehome(now, 5, 1000).updates.flatMap((u) => u.messages);
  };
  const portsByInternal = (messages: ReturnType<typeof renumbered>) => new Map(messages.map((m) => [formatAddress16(m.payload.slice(64, 80)), m.port]));

  it("one requester is kept once for all its mappings; past REQUESTERS_SHARED distinct ones a mapping gets its own entry, then none (served, not told); an ended mapping frees what it held", () => {
    const a = engine(T0, oneOwn("203.0.113.1"));
    const ask = viaProxy(a);
    const told = new Map<string, number>(); // internal address → requester port its update goes to
    for (let i = 0; i < 3; i++) expect(ask(`10.1.0.${i}`, 40000)).toBe(W.RESULT_SUCCESS); // one requester, three mappings
    // The other REQUESTERS_SHARED - 1 shared ones, a port each: the shared table is full.
    for (let i = 0; i < W.REQUESTERS_SHARED - 1; i++) expect(ask(`10.2.${i >> 8}.${i & 255}`, 41000 + i)).toBe(W.RESULT_SUCCESS);
    expect(ask("10.3.0.1", 50001)).toBe(W.RESULT_SUCCESS); // its own entry
    expect(ask("10.3.0.2", 50002)).toBe(W.RESULT_SUCCESS); // no room left: served, not recorded
    expect(a.engineStats()).toMatchObject({ requestersShared: BigInt(W.REQUESTERS_SHARED), requestersUnrecorded: 1n });
    expect(ask("10.3.0.1", 50001, 0)).toBe(W.RESULT_SUCCESS); // deleted: frees its own entry
    expect(ask("10.3.0.3", 50003)).toBe(W.RESULT_SUCCESS); // takes it
    expect(ask("10.2.0.0", 41000, 0)).toBe(W.RESULT_SUCCESS); // deleted: its shared requester (port 41000) had no other mapping
    expect(ask("10.3.0.2", 50002)).toBe(W.RESULT_SUCCESS); // renewed: recorded now, in the shared entry just freed
    expect(a.engineStats()).toMatchObject({ requestersShared: BigInt(W.REQUESTERS_SHARED), requestersUnrecorded: 1n });
    for (let i = 0; i < 3; i++) told.set(`10.1.0.${i}`, 40000);
    for (let i = 1; i < W.REQUESTERS_SHARED - 1; i++) told.set(`10.2.${i >> 8}.${i & 255}`, 41000 + i);
    told.set("10.3.0.3", 50003);
    told.set("10.3.0.2", 50002);
    const messages = renumbered(a, "203.0.113.1", "203.0.113.9", T0 + 10);
    expect(messages.length).toBe(told.size);
    expect(portsByInternal(messages)).toEqual(told);
    // Snapshot records carry each recorded requester, whichever table holds it.
    const snapshot = a.persistTable(1, 10_000, WALL_A).bytes;
    const b = engine(T0 + 10, oneOwn("203.0.113.9"));
    expect(b.restore(snapshot, WALL_A, T0 + 10)).toBe(snapshot.length);
    expect(portsByInternal(renumbered(b, "203.0.113.9", "203.0.113.1", T0 + 20))).toEqual(told);
  });

  it("property: whatever the renewals from changing ports and the deletions, a shared requester is freed with its last mapping (then REQUESTERS_SHARED + 1 new ones are all recorded again)", () => {
    const config = oneOwn("203.0.113.1");
    const step = fc.record({ internal: fc.integer({ min: 0, max: 9 }), port: fc.integer({ min: 0, max: 5 }), remove: fc.boolean() });
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const a = engine(T0, config);
        const ask = viaProxy(a);
        for (const s of steps) expect(ask(`10.9.0.${s.internal}`, 30000 + s.port, s.remove ? 0 : 3600)).toBe(W.RESULT_SUCCESS);
        for (let i = 0; i < 10; i++) expect(ask(`10.9.0.${i}`, 30000, 0)).toBe(W.RESULT_SUCCESS); // every mapping gone
        expect(a.engineStats().requestersShared).toBe(0n);
        // Room again for every shared requester and the one of its own.
        for (let i = 0; i <= W.REQUESTERS_SHARED; i++) expect(ask(`10.8.${i >> 8}.${i & 255}`, 40000 + i)).toBe(W.RESULT_SUCCESS);
        expect(renumbered(a, "203.0.113.1", "203.0.113.9", T0 + 10).length).toBe(W.REQUESTERS_SHARED + 1);
      }),
      { numRuns: 25 },
    );
  });
});
