// External pool policy: reserved and excluded ports, parity, paired pooling, block
// leases and shards, and FILTERs exposed for the dataplane.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { PacketEngine } from "../../src/engine/packet-engine.js";
import type { Config } from "../../src/config/schema.js";
import { engineConfig, engineFrom, merge, unchecked, type DeepPartial } from "../helpers/engine-config.js";
import { CLIENT, assigned, filter, mapRequest, serveOne } from "../helpers/packets.js";

const T0 = 50;
/** `pool`: the pool section, and which of how many shards this engine is. */
function engineWith(pool: DeepPartial<Config["pool"]> & { shards?: number; shard?: number } = {}, over: DeepPartial<Config> = {}): PacketEngine {
  const { shards, shard, ...layout } = pool;
  return engineFrom(engineConfig(merge<DeepPartial<Config>>(over, { pool: { addresses: ["203.0.113.1", "203.0.113.2"], ...layout } })), T0, {
    seed: 3n,
    shards,
    shard,
  });
}
const client = (i: number) => `10.0.${i >> 8}.${i & 255}`;

describe("external pool", () => {
  it("never hands out ports below portMin or in the excluded list", () => {
    const excluded = Array.from({ length: 64 }, (_, i) => 2048 + i);
    const e = engineWith({ portMin: 2048, blockSize: 128, excludedPorts: excluded });
    for (let i = 0; i < 300; i++) {
      const o = serveOne(e, mapRequest({ client: client(i), internalPort: 1000 + i }), T0, { source: client(i) });
      expect(o.result).toBe(0);
      const { port } = assigned(o);
      expect(port).toBeGreaterThanOrEqual(2048);
      expect(excluded).not.toContain(port);
    }
  });

  it("keeps the internal port's parity when configured", () => {
    const e = engineWith({}, { parity: true });
    for (let p = 5000; p < 5040; p++) expect(assigned(serveOne(e, mapRequest({ internalPort: p }), T0)).port % 2).toBe(p % 2);
  });

  it("pairs every mapping of a subscriber with one external address (RFC 6888 REQ-2)", () => {
    const e = engineWith({ blockSize: 16, maxBlocksPerSubscriber: 8 });
    const seen = new Set<string>();
    for (let p = 1; p <= 60; p++) seen.add(assigned(serveOne(e, mapRequest({ internalPort: p }), T0)).address);
    expect(seen.size).toBe(1);
    expect(e.subscriberUsage(CLIENT).blocks).toBeGreaterThan(1);
  });

  it("refuses a suggestion on another pool address than the subscriber's (paired pooling)", () => {
    const e = engineWith();
    const a = assigned(serveOne(e, mapRequest({ internalPort: 1 }), T0));
    const other = a.address === "203.0.113.1" ? "203.0.113.2" : "203.0.113.1";
    const o = serveOne(e, mapRequest({ internalPort: 2, externalAddress: other, externalPort: 30000 }), T0);
    expect(assigned(o).address).toBe(a.address);
  });

  it("port-block exhaustion: USER_EX_QUOTA at the subscriber's block limit, NO_RESOURCES when the pool is empty", () => {
    const e = engineWith(
      { addresses: ["203.0.113.1"], portMin: 64512, blockSize: 256, maxBlocksPerSubscriber: 1 },
      { quotas: { mappingsPerSubscriber: 1000 } },
    );
    // 4 blocks of 256 ports in all.
    for (let p = 1; p <= 256; p++) expect(serveOne(e, mapRequest({ internalPort: p }), T0).result).toBe(0);
    expect(serveOne(e, mapRequest({ internalPort: 999 }), T0).result).toBe(W.RESULT_USER_EX_QUOTA);
    for (let i = 1; i <= 3; i++) expect(serveOne(e, mapRequest({ client: client(i), internalPort: 1 }), T0, { source: client(i) }).result).toBe(0);
    expect(serveOne(e, mapRequest({ client: client(9), internalPort: 1 }), T0, { source: client(9) }).result).toBe(W.RESULT_NO_RESOURCES);
    expect(e.engineStats().blocks).toBe(4n);
  });

  it("reports free blocks per address and finds a mapping by its external address:port", () => {
    const e = engineWith({ blockSize: 1024 });
    const before = e.poolUsage();
    expect(before).toEqual([
      { address: "203.0.113.1", freeBlocks: 63, retired: false },
      { address: "203.0.113.2", freeBlocks: 63, retired: false },
    ]);
    const a = assigned(serveOne(e, mapRequest(), T0));
    expect(e.poolUsage().reduce((n, p) => n + p.freeBlocks, 0)).toBe(125);
    expect(e.lookupExternal(a.address, 6, a.port)).toMatchObject({ internalAddress: CLIENT, internalPort: 8080 });
    expect(e.lookupExternal(a.address, 17, a.port)).toBeUndefined();
  });

  it("table full → NO_RESOURCES, nothing evicted", () => {
    const e = engineWith({}, { capacity: { mappings: 10 } });
    for (let p = 1; p <= 10; p++) expect(serveOne(e, mapRequest({ internalPort: p }), T0).result).toBe(0);
    const o = serveOne(e, mapRequest({ internalPort: 11 }), T0);
    expect(o.result).toBe(W.RESULT_NO_RESOURCES);
    expect(e.engineStats().mappings).toBe(10n);
  });

  it("shards lease disjoint blocks: two engines never hand out the same address:port", () => {
    const shards = [0, 1].map((shard) => engineWith({ blockSize: 64, shards: 2, shard }));
    const taken = new Map<string, number>();
    for (let i = 0; i < 400; i++) {
      const shard = i % 2;
      const o = serveOne(shards[shard], mapRequest({ client: client(i), internalPort: 7 }), T0, { source: client(i) });
      expect(o.result).toBe(0);
      const a = assigned(o);
      const key = `${a.address}:${a.port}`;
      expect(taken.has(key)).toBe(false);
      taken.set(key, shard);
      expect(Math.floor((a.port - 1024) / 64) % 2).toBe(shard);
    }
  });

  it("rejects an invalid pool layout with a message naming it", () => {
    const e = new PacketEngine("debug");
    // The schema refuses it first; the engine's own check stays as the backstop.
    expect(() => e.initEngine(unchecked(engineConfig(), { pool: { blockSize: 0 } }), 0)).toThrow(/blockSize 0/);
  });

  it("exposes each mapping's FILTERs for the dataplane", () => {
    const e = engineWith();
    serveOne(e, mapRequest({}, [filter(120, "198.51.100.0", 443), filter(128, "2001:db8::7")]), T0);
    const m = e.lookup(CLIENT, 6, 8080)!;
    expect(e.filters(m.mapping)).toEqual(
      expect.arrayContaining([
        { prefixLength: 120, port: 443, address: "198.51.100.0" },
        { prefixLength: 128, port: 0, address: "2001:db8::7" },
      ]),
    );
  });
});

describe("capacity", () => {
  it("a capacity that does not fit in WebAssembly memory is a configuration error, not a trap", () => {
    const e = new PacketEngine("release");
    expect(() => e.initEngine(unchecked(engineConfig(), { capacity: { mappings: 40_000_000 } }), 0)).toThrow(/capacity does not fit.*maxMappings 40000000/);
    expect(() => new PacketEngine("release").initEngine(unchecked(engineConfig(), { capacity: { filters: 0 } }), 0)).toThrow(/capacity/);
  });

  it("an engine is initialised once", () => {
    const e = new PacketEngine("debug");
    e.initEngine(engineConfig(), 0);
    expect(() => e.initEngine(engineConfig(), 0)).toThrow(/already initialised/);
  });
});

describe("regressions", () => {
  it("a client resending the same FILTER with every refresh never reaches the filter limit", () => {
    const e = engineWith({}, { quotas: { filtersPerMapping: 2 } });
    for (let i = 0; i < 10; i++) {
      expect(serveOne(e, mapRequest({}, [filter(120, "198.51.100.0"), filter(120, "198.51.100.0")]), T0 + i).result).toBe(0);
    }
    expect(e.engineStats().filters).toBe(1n);
  });

  it("the same client (endpoint + nonce) gets its held port back without suggesting it", () => {
    const e = engineWith();
    const a = assigned(serveOne(e, mapRequest({ internalPort: 7 }), T0));
    serveOne(e, mapRequest({ internalPort: 7, lifetime: 0 }), T0 + 1);
    expect(assigned(serveOne(e, mapRequest({ internalPort: 7 }), T0 + 2))).toEqual(a);
    expect(e.engineStats()).toMatchObject({ mappings: 1n, held: 0n });
  });

  it("pairing is per family: one subscriber maps on an IPv4 and an IPv6 pool address", () => {
    const e = engineWith({ addresses: ["203.0.113.1", "2001:db8::1"] });
    const v4 = serveOne(e, mapRequest({ internalPort: 1 }), T0);
    const v6 = serveOne(e, mapRequest({ internalPort: 2, externalAddress: "::" }), T0);
    const v4b = serveOne(e, mapRequest({ internalPort: 3 }), T0);
    expect([assigned(v4).address, assigned(v6).address, assigned(v4b).address]).toEqual(["203.0.113.1", "2001:db8::1", "203.0.113.1"]);
    expect(e.subscriberUsage(CLIENT).blocks).toBe(2);
  });

  it("the last, shorter block of an address is used too", () => {
    const e = engineWith({ addresses: ["203.0.113.1"], portMin: 65000, blockSize: 500 });
    const o = serveOne(e, mapRequest({ externalAddress: "203.0.113.1", externalPort: 65535 }, []), T0);
    expect(assigned(o)).toEqual({ port: 65535, address: "203.0.113.1" });
  });
});
