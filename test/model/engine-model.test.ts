// Hand-written scenarios for the engine model (test/model/engine-model.ts): the model is
// only useful as an oracle if it is right, so its rules are pinned down here, each with the
// docs/engine.md section (or M-decision) it follows.
import { describe, expect, it } from "vitest";
import {
  CODEC_ERROR_LIFETIME,
  EngineModel,
  NATPMP_RESULT,
  RESULT,
  STATIC_LIFETIME,
  ZERO_NONCE,
  canonicalAddress,
  isPending,
  type Allocation,
  type MapInput,
  type ModelConfig,
  type Outcome,
  type Pending,
  type PeerInput,
} from "./engine-model.js";

const T0 = 1000;
const A1 = "203.0.113.1";
const A2 = "203.0.113.2";
const SUB = "192.0.2.1";
const SUB2 = "192.0.2.2";
const N1 = "0102030405060708090a0b0c";
const N2 = "ffffffffffffffffffffffff";

const BASE: ModelConfig = {
  minLifetime: 120,
  maxLifetime: 86400,
  peerMinLifetime: 120,
  holdDown: 120,
  mappingsPerSubscriber: 64,
  maxBlocksPerSubscriber: 8,
  blockSize: 512,
  portMin: 1024,
  excludedPorts: [],
  filtersPerMapping: 4,
  maxMappings: 1000,
  maxPeers: 1000,
  noncePolicy: "strict",
  protocols: [6, 17],
  parity: false,
  pool: [A1, A2],
};
const model = (over: Partial<ModelConfig> = {}) => new EngineModel({ ...BASE, ...over });

const mapReq = (over: Partial<MapInput> = {}): MapInput => ({
  now: T0,
  subscriber: SUB,
  protocol: 6,
  internalPort: 8080,
  lifetime: 3600,
  nonce: N1,
  suggestedPort: 0,
  suggestedAddress: "0.0.0.0",
  preferFailure: false,
  filters: [],
  ...over,
});
const peerReq = (over: Partial<PeerInput> = {}): PeerInput => ({
  now: T0,
  subscriber: SUB,
  protocol: 17,
  internalPort: 5000,
  lifetime: 600,
  nonce: N1,
  suggestedPort: 0,
  suggestedAddress: "0.0.0.0",
  remoteAddress: "198.51.100.9",
  remotePort: 3478,
  ...over,
});

/** The first legal allocation (pool order, ascending ports), as a conforming engine might choose. */
function firstLegal(p: Pending, pool = BASE.pool): Allocation {
  for (const address of pool) {
    for (let port = 1; port <= 65535; port++) {
      const a = { externalAddress: address, externalPort: port };
      if (p.check(a) === null) return a;
    }
  }
  throw new Error("no legal allocation");
}
/** Resolve an operation: commit the given allocation or the first legal one. */
function settle(r: Outcome | Pending, a?: Allocation, pool?: string[]): Outcome {
  if (!isPending(r)) return r;
  const choice = a ?? firstLegal(r, pool);
  expect(r.check(choice)).toBeNull();
  return r.commit(choice);
}
function pending(r: Outcome | Pending): Pending {
  if (!isPending(r)) throw new Error(`expected an allocation, got ${JSON.stringify(r)}`);
  return r;
}
function determined(r: Outcome | Pending): Outcome {
  if (isPending(r)) throw new Error("expected a determined outcome, got an allocation");
  return r;
}

describe("addresses", () => {
  it("canonical text: v4-mapped → dotted quad, IPv6 per RFC 5952", () => {
    expect(canonicalAddress("::ffff:203.0.113.1")).toBe("203.0.113.1");
    expect(canonicalAddress("::FFFF:cb00:7101")).toBe("203.0.113.1");
    expect(canonicalAddress("2001:0db8:0:0:0:0:0:1")).toBe("2001:db8::1");
    expect(canonicalAddress("2001:db8:0:1:0:0:0:1")).toBe("2001:db8:0:1::1");
    expect(canonicalAddress("::")).toBe("::");
    expect(canonicalAddress("::ffff:0:0")).toBe("0.0.0.0");
    expect(() => canonicalAddress("1.2.3")).toThrow();
  });
});

describe("MAP create / refresh (docs/engine.md MAP 3–4)", () => {
  it("a new mapping is a free allocation; check() names illegal choices; commit() records it", () => {
    const m = model();
    const p = pending(m.map(mapReq({ protocol: 17, internalPort: 5351 })));
    expect(p.check({ externalAddress: A1, externalPort: 80 })).toMatch(/reserved/);
    expect(p.check({ externalAddress: A1, externalPort: 5351 })).toMatch(/reserved/);
    expect(p.check({ externalAddress: "198.51.100.1", externalPort: 3000 })).toMatch(/not a pool address/);
    expect(p.check({ externalAddress: "::ffff:203.0.113.1", externalPort: 3000 })).toBeNull();
    const o = p.commit({ externalAddress: A1, externalPort: 3000 });
    expect(o).toEqual({ result: 0, lifetime: 3600, externalAddress: A1, externalPort: 3000 });
    expect(m.liveMappings()).toBe(1);
    expect(m.invariants()).toEqual([]);
  });

  it("granted lifetime = clamp(L, 120, 86400)", () => {
    const m = model();
    expect(settle(m.map(mapReq({ internalPort: 1, lifetime: 10 }))).lifetime).toBe(120);
    expect(settle(m.map(mapReq({ internalPort: 2, lifetime: 1_000_000 }))).lifetime).toBe(86400);
  });

  it("refresh with the same nonce and another suggestion → same external, expiry now + L", () => {
    const m = model();
    const a = settle(m.map(mapReq({ lifetime: 600 })));
    const b = determined(m.map(mapReq({ now: T0 + 100, lifetime: 900, suggestedPort: 9999 })));
    expect(b).toEqual({ ...a, lifetime: 900 });
    expect(m.lookup(SUB, 6, 8080)?.mapExpiry).toBe(T0 + 100 + 900);
    // a refresh may also shorten (inbound expiry = now + clamp(L))
    determined(m.map(mapReq({ now: T0 + 200, lifetime: 200 })));
    expect(m.lookup(SUB, 6, 8080)?.mapExpiry).toBe(T0 + 400);
  });

  it("strict nonce: another nonce → NOT_AUTHORIZED with exactly the remaining lifetime, mapping untouched", () => {
    const m = model();
    const a = settle(m.map(mapReq({ lifetime: 600 })));
    expect(m.map(mapReq({ now: T0 + 250, nonce: N2 }))).toEqual({ result: RESULT.NOT_AUTHORIZED, lifetime: 350 });
    expect(m.lookup(SUB, 6, 8080)).toMatchObject({ externalPort: a.externalPort, mapExpiry: T0 + 600, nonce: N1 });
  });

  it("relaxed nonce: the new nonce replaces the old one and the mapping is refreshed", () => {
    const m = model({ noncePolicy: "relaxed" });
    const a = settle(m.map(mapReq({ lifetime: 600 })));
    expect(m.map(mapReq({ now: T0 + 10, nonce: N2 }))).toEqual({ ...a, lifetime: 3600 });
    expect(m.lookup(SUB, 6, 8080)?.nonce).toBe(N2);
  });

  it("nonces compare case-insensitively (hex text)", () => {
    const m = model();
    settle(m.map(mapReq({ nonce: N2 })));
    expect(determined(m.map(mapReq({ nonce: N2.toUpperCase() }))).result).toBe(0);
  });

  it("unsupported protocol, all-ports and DMZ → UNSUPP_PROTOCOL; an external family the pool lacks → UNSUPP_PROTOCOL", () => {
    const m = model();
    for (const r of [
      mapReq({ protocol: 132 }),
      mapReq({ protocol: 17, internalPort: 0 }),
      mapReq({ protocol: 0, internalPort: 0 }),
      mapReq({ suggestedAddress: "::" }),
    ]) {
      expect(m.map(r)).toEqual({ result: RESULT.UNSUPP_PROTOCOL, lifetime: CODEC_ERROR_LIFETIME });
    }
    expect(m.liveMappings()).toBe(0);
  });

  it("one mapping per family: `::` selects the IPv6 external address; deleting with `::` leaves the IPv4 one", () => {
    const m = model({ pool: [A1, "2001:db8::1"] });
    const v4 = settle(m.map(mapReq()), undefined, [A1]);
    const p6 = pending(m.map(mapReq({ suggestedAddress: "::" })));
    expect(p6.check({ externalAddress: A1, externalPort: 4000 })).toMatch(/family IPv6/);
    const v6 = p6.commit({ externalAddress: "2001:0db8::1", externalPort: 4000 });
    expect(v6.externalAddress).toBe("2001:db8::1");
    expect(m.map(mapReq({ lifetime: 0, suggestedAddress: "::" }))).toEqual({ result: 0, lifetime: 0, externalAddress: "::", externalPort: 0 });
    expect(m.lookup(SUB, 6, 8080, 6)).toBeUndefined();
    expect(m.lookup(SUB, 6, 8080, 4)?.externalPort).toBe(v4.externalPort);
  });
});

describe("suggestions and PREFER_FAILURE (docs/engine.md MAP 3–4; M6, M7)", () => {
  it("an honourable suggestion is granted exactly, without allocation freedom", () => {
    const m = model();
    expect(determined(m.map(mapReq({ suggestedPort: 33333, suggestedAddress: A2 })))).toEqual({
      result: 0,
      lifetime: 3600,
      externalAddress: A2,
      externalPort: 33333,
    });
    // same subscriber, same block, other internal port
    expect(determined(m.map(mapReq({ internalPort: 1, suggestedPort: 33334, suggestedAddress: "0.0.0.0" })))).toMatchObject({
      externalAddress: A2,
      externalPort: 33334,
    });
  });

  it("all-zeros address + port for a subscriber without an address: any pool address where the port is free", () => {
    const m = model();
    const p = pending(m.map(mapReq({ suggestedPort: 40000 })));
    expect(p.check({ externalAddress: A1, externalPort: 40001 })).toMatch(/honourable/);
    expect(p.check({ externalAddress: A2, externalPort: 40000 })).toBeNull();
    expect(p.commit({ externalAddress: A2, externalPort: 40000 }).externalPort).toBe(40000);
  });

  it("PREFER_FAILURE on a free port → exactly it; on a port of another subscriber → CANNOT_PROVIDE_EXTERNAL, nothing created", () => {
    const m = model();
    const other = determined(m.map(mapReq({ subscriber: SUB2, suggestedPort: 20000, suggestedAddress: A1 })));
    expect(m.map(mapReq({ suggestedPort: 20000, suggestedAddress: A1, preferFailure: true }))).toEqual({
      result: RESULT.CANNOT_PROVIDE_EXTERNAL,
      lifetime: CODEC_ERROR_LIFETIME,
    });
    // even a free port in the other subscriber's block is not honourable
    expect(determined(m.map(mapReq({ suggestedPort: 20001, suggestedAddress: A1, preferFailure: true }))).result).toBe(RESULT.CANNOT_PROVIDE_EXTERNAL);
    expect(m.lookup(SUB, 6, 8080)).toBeUndefined();
    // without PREFER_FAILURE: success elsewhere; the other subscriber's block is illegal
    const p = pending(m.map(mapReq({ suggestedPort: 20000, suggestedAddress: A1 })));
    expect(p.check({ externalAddress: A1, externalPort: 20000 })).toMatch(/in use|owned by/);
    expect(p.check({ externalAddress: A1, externalPort: 20002 })).toMatch(/owned by subscriber 192.0.2.2/);
    expect(other.result).toBe(0);
  });

  it("PREFER_FAILURE on an existing mapping: other port → CANNOT_PROVIDE_EXTERNAL; its own → SUCCESS", () => {
    const m = model();
    const a = settle(m.map(mapReq()));
    const other = a.externalPort === 60000 ? 60001 : 60000;
    expect(determined(m.map(mapReq({ suggestedPort: other, suggestedAddress: a.externalAddress, preferFailure: true }))).result).toBe(
      RESULT.CANNOT_PROVIDE_EXTERNAL,
    );
    expect(m.map(mapReq({ suggestedPort: a.externalPort!, suggestedAddress: "0.0.0.0", preferFailure: true }))).toEqual({ ...a });
  });

  it("paired pooling: a suggestion on another pool address is not honoured; a new mapping stays on the subscriber's address", () => {
    const m = model();
    const a = settle(m.map(mapReq({ internalPort: 1 })));
    const other = a.externalAddress === A1 ? A2 : A1;
    const p = pending(m.map(mapReq({ internalPort: 2, suggestedPort: 30000, suggestedAddress: other })));
    expect(p.check({ externalAddress: other, externalPort: 30000 })).toMatch(/paired address/);
    expect(p.check({ externalAddress: a.externalAddress!, externalPort: a.externalPort! + 1 })).toBeNull();
    expect(determined(m.map(mapReq({ internalPort: 3, suggestedPort: 30000, suggestedAddress: other, preferFailure: true }))).result).toBe(
      RESULT.CANNOT_PROVIDE_EXTERNAL,
    );
  });

  it("the first block comes from an address with the most free blocks", () => {
    const m = model();
    determined(m.map(mapReq({ subscriber: SUB2, suggestedPort: 2000, suggestedAddress: A1 })));
    const p = pending(m.map(mapReq()));
    expect(p.check({ externalAddress: A1, externalPort: 40000 })).toMatch(/most free blocks/);
    expect(p.check({ externalAddress: A2, externalPort: 40000 })).toBeNull();
  });

  it("a new block is leased only when the subscriber's blocks are full", () => {
    const m = model({ blockSize: 16, portMin: 1024 });
    determined(m.map(mapReq({ internalPort: 1, suggestedPort: 1024, suggestedAddress: A1 })));
    const p = pending(m.map(mapReq({ internalPort: 2 })));
    expect(p.check({ externalAddress: A1, externalPort: 1040 })).toMatch(/new block was leased/);
    expect(p.check({ externalAddress: A1, externalPort: 1039 })).toBeNull();
    p.commit({ externalAddress: A1, externalPort: 1039 });
    for (let port = 1025; port < 1039; port++) determined(m.map(mapReq({ internalPort: port, suggestedPort: port, suggestedAddress: A1 })));
    const q = pending(m.map(mapReq({ internalPort: 9 })));
    expect(q.check({ externalAddress: A1, externalPort: 1040 })).toBeNull();
    expect(q.check({ externalAddress: A2, externalPort: 1040 })).toMatch(/paired address/);
    expect(m.invariants()).toEqual([]);
  });

  it("parity: a free allocation keeps the internal port's parity; a suggested port need not", () => {
    const m = model({ parity: true });
    const p = pending(m.map(mapReq({ internalPort: 5001 })));
    expect(p.check({ externalAddress: A1, externalPort: 40000 })).toMatch(/parity/);
    expect(p.check({ externalAddress: A1, externalPort: 40001 })).toBeNull();
    expect(determined(m.map(mapReq({ internalPort: 5003, suggestedPort: 40002, suggestedAddress: A1 }))).externalPort).toBe(40002);
  });

  it("excluded ports are never legal", () => {
    const m = model({ excludedPorts: [40000] });
    const p = pending(m.map(mapReq({ suggestedPort: 40000, suggestedAddress: A1 })));
    expect(p.check({ externalAddress: A1, externalPort: 40000 })).toMatch(/reserved/);
  });
});

describe("deletion (docs/engine.md MAP L = 0)", () => {
  it("own mapping → SUCCESS, lifetime 0, suggestion echoed; the port goes into hold-down", () => {
    const m = model();
    settle(m.map(mapReq()));
    expect(m.map(mapReq({ now: T0 + 5, lifetime: 0 }))).toEqual({ result: 0, lifetime: 0, externalAddress: "0.0.0.0", externalPort: 0 });
    expect(m.lookup(SUB, 6, 8080)).toBeUndefined();
    expect(m.stats()).toMatchObject({ mappings: 0, held: 1, blocks: 1 });
  });

  it("a mapping that does not exist, and wildcard deletes → SUCCESS, lifetime 0", () => {
    const m = model();
    expect(m.map(mapReq({ lifetime: 0 }))).toEqual({ result: 0, lifetime: 0, externalAddress: "0.0.0.0", externalPort: 0 });
    expect(determined(m.map(mapReq({ lifetime: 0, protocol: 0, internalPort: 0 }))).result).toBe(0);
    expect(determined(m.map(mapReq({ lifetime: 0, protocol: 17, internalPort: 0 }))).result).toBe(0);
    expect(determined(m.map(mapReq({ lifetime: 0, protocol: 132 }))).result).toBe(0);
    expect(m.stats().held).toBe(0);
  });

  it("another nonce: strict → NOT_AUTHORIZED with the remaining lifetime; relaxed → deleted", () => {
    const strict = model();
    settle(strict.map(mapReq({ lifetime: 600 })));
    expect(strict.map(mapReq({ now: T0 + 100, lifetime: 0, nonce: N2 }))).toEqual({ result: RESULT.NOT_AUTHORIZED, lifetime: 500 });
    expect(strict.liveMappings()).toBe(1);
    const relaxed = model({ noncePolicy: "relaxed" });
    settle(relaxed.map(mapReq({ lifetime: 600 })));
    expect(determined(relaxed.map(mapReq({ now: T0 + 100, lifetime: 0, nonce: N2 }))).result).toBe(0);
    expect(relaxed.liveMappings()).toBe(0);
  });

  it("static → NOT_AUTHORIZED; PEER-only → NOT_AUTHORIZED", () => {
    const m = model();
    expect(m.addStatic(SUB, 6, 8080, A2, 4443)).toBe(0);
    expect(m.map(mapReq({ lifetime: 0 }))).toEqual({ result: RESULT.NOT_AUTHORIZED, lifetime: CODEC_ERROR_LIFETIME });
    settle(m.peer(peerReq({ protocol: 6, internalPort: 9000 })));
    expect(determined(m.map(mapReq({ internalPort: 9000, lifetime: 0 }))).result).toBe(RESULT.NOT_AUTHORIZED);
    expect(m.liveMappings()).toBe(2);
  });

  it("deleting the inbound part of a mapping with PEERs keeps the mapping (no hold)", () => {
    const m = model();
    const a = settle(m.map(mapReq({ protocol: 17, internalPort: 5000 })));
    expect(determined(m.peer(peerReq())).externalPort).toBe(a.externalPort);
    expect(determined(m.map(mapReq({ protocol: 17, internalPort: 5000, lifetime: 0 }))).result).toBe(0);
    expect(m.lookup(SUB, 17, 5000)).toMatchObject({ mapExpiry: null, peers: 1, externalPort: a.externalPort });
    expect(m.stats().held).toBe(0);
  });
});

describe("static mappings (docs/engine.md MAP 3)", () => {
  it("answer with their external and lifetime 0xFFFFFFFF; the nonce is not stored; PREFER_FAILURE elsewhere fails", () => {
    const m = model();
    expect(m.addStatic(SUB, 6, 8080, A2, 4443)).toBe(0);
    for (const nonce of [N1, N2]) {
      expect(m.map(mapReq({ nonce }))).toEqual({ result: 0, lifetime: STATIC_LIFETIME, externalAddress: A2, externalPort: 4443 });
    }
    expect(m.lookup(SUB, 6, 8080)?.nonce).toBe(ZERO_NONCE);
    expect(determined(m.map(mapReq({ suggestedPort: 4444, suggestedAddress: A2, preferFailure: true }))).result).toBe(RESULT.CANNOT_PROVIDE_EXTERNAL);
    m.expire(T0 + 10_000_000);
    expect(m.liveMappings()).toBe(1);
  });
});

describe("quotas and capacity (docs/engine.md MAP 4, State)", () => {
  it("mappingsPerSubscriber live mappings → USER_EX_QUOTA (other subscribers unaffected)", () => {
    const m = model({ mappingsPerSubscriber: 3 });
    for (let p = 1; p <= 3; p++) expect(settle(m.map(mapReq({ internalPort: p }))).result).toBe(0);
    expect(m.map(mapReq({ internalPort: 4 }))).toEqual({ result: RESULT.USER_EX_QUOTA, lifetime: CODEC_ERROR_LIFETIME });
    expect(determined(m.map(mapReq({ internalPort: 4, suggestedPort: 50000, suggestedAddress: A1, preferFailure: true }))).result).toBe(RESULT.USER_EX_QUOTA);
    expect(settle(m.map(mapReq({ subscriber: SUB2, internalPort: 4 }))).result).toBe(0);
    // refreshes are not new mappings
    expect(determined(m.map(mapReq({ internalPort: 1 }))).result).toBe(0);
    expect(m.invariants()).toEqual([]);
  });

  it("block exhaustion: USER_EX_QUOTA at maxBlocksPerSubscriber, NO_RESOURCES when the pool is empty", () => {
    // One address, 4 blocks of 4 ports.
    const m = model({ pool: [A1], portMin: 65520, blockSize: 4, maxBlocksPerSubscriber: 1 });
    for (let p = 1; p <= 4; p++) expect(settle(m.map(mapReq({ internalPort: p })), undefined, [A1]).result).toBe(0);
    expect(determined(m.map(mapReq({ internalPort: 5 }))).result).toBe(RESULT.USER_EX_QUOTA);
    for (const c of ["10.0.0.1", "10.0.0.2", "10.0.0.3"]) expect(settle(m.map(mapReq({ subscriber: c })), undefined, [A1]).result).toBe(0);
    expect(determined(m.map(mapReq({ subscriber: "10.0.0.9" }))).result).toBe(RESULT.NO_RESOURCES);
    expect(m.stats().blocks).toBe(4);
    expect(m.invariants()).toEqual([]);
  });

  it("table full (holds included) → NO_RESOURCES, nothing evicted", () => {
    const m = model({ maxMappings: 3 });
    for (let p = 1; p <= 3; p++) settle(m.map(mapReq({ internalPort: p })));
    expect(determined(m.map(mapReq({ internalPort: 4 }))).result).toBe(RESULT.NO_RESOURCES);
    m.map(mapReq({ internalPort: 3, lifetime: 0 })); // a hold still takes a record
    expect(determined(m.map(mapReq({ internalPort: 4 }))).result).toBe(RESULT.NO_RESOURCES);
    expect(isPending(m.map(mapReq({ now: T0 + 120, internalPort: 4 })))).toBe(true);
  });

  it("FILTERs: prefix 0 clears, identical ones count once, too many → EXCESSIVE_REMOTE_PEERS with no change", () => {
    const m = model({ filtersPerMapping: 2 });
    const f = (prefixLength: number, address: string, port = 0) => ({ prefixLength, address, port });
    settle(m.map(mapReq({ filters: [f(120, "198.51.100.0")] })));
    expect(determined(m.map(mapReq({ filters: [f(120, "198.51.100.0"), f(128, "203.0.113.200")] }))).result).toBe(0);
    expect(m.lookup(SUB, 6, 8080)?.filters).toHaveLength(2);
    expect(m.map(mapReq({ now: T0 + 50, filters: [f(128, "203.0.113.201")] }))).toEqual({
      result: RESULT.EXCESSIVE_REMOTE_PEERS,
      lifetime: CODEC_ERROR_LIFETIME,
    });
    expect(m.lookup(SUB, 6, 8080)).toMatchObject({ mapExpiry: T0 + 3600 });
    expect(m.lookup(SUB, 6, 8080)?.filters).toHaveLength(2);
    expect(determined(m.map(mapReq({ filters: [f(0, "::"), f(104, "192.0.2.0")] }))).result).toBe(0);
    expect(m.lookup(SUB, 6, 8080)?.filters).toEqual([{ prefixLength: 104, port: 0, address: "192.0.2.0" }]);
    // a new mapping with too many FILTERs is not created
    expect(determined(m.map(mapReq({ internalPort: 2, filters: [f(128, "1.1.1.1"), f(128, "1.1.1.2"), f(128, "1.1.1.3")] }))).result).toBe(
      RESULT.EXCESSIVE_REMOTE_PEERS,
    );
    expect(m.liveMappings()).toBe(1);
  });
});

describe("hold-down (docs/engine.md State; RFC 6887 §15; M2, M4, M5)", () => {
  const small = () => model({ blockSize: 64, maxBlocksPerSubscriber: 1 });

  it("another internal port of the same subscriber cannot take a held port; the same client reclaims it", () => {
    const m = small();
    const a = settle(m.map(mapReq({ internalPort: 1 })));
    expect(determined(m.map(mapReq({ now: T0 + 1, internalPort: 1, lifetime: 0 }))).result).toBe(0);
    const p = pending(m.map(mapReq({ now: T0 + 2, internalPort: 2, nonce: N2, suggestedPort: a.externalPort!, suggestedAddress: a.externalAddress! })));
    expect(p.check({ externalAddress: a.externalAddress!, externalPort: a.externalPort! })).toMatch(/hold-down/);
    expect(
      determined(m.map(mapReq({ now: T0 + 2, internalPort: 2, suggestedPort: a.externalPort!, suggestedAddress: a.externalAddress!, preferFailure: true })))
        .result,
    ).toBe(RESULT.CANNOT_PROVIDE_EXTERNAL);
    // same client, no suggestion at all: the held port comes back
    expect(m.map(mapReq({ now: T0 + 3, internalPort: 1 }))).toEqual({ ...a, lifetime: 3600 });
    expect(m.stats().held).toBe(0);
  });

  it("same endpoint with another nonce is not the same client: new port, the hold runs on", () => {
    const m = small();
    const a = settle(m.map(mapReq()));
    m.map(mapReq({ now: T0 + 1, lifetime: 0 }));
    const p = pending(m.map(mapReq({ now: T0 + 2, nonce: N2 })));
    expect(p.check({ externalAddress: a.externalAddress!, externalPort: a.externalPort! })).toMatch(/hold-down/);
    settle(p);
    expect(m.stats()).toMatchObject({ mappings: 1, held: 1 });
  });

  it("reclaim with PREFER_FAILURE naming another port → CANNOT_PROVIDE_EXTERNAL", () => {
    const m = small();
    const a = settle(m.map(mapReq()));
    m.map(mapReq({ now: T0 + 1, lifetime: 0 }));
    const other = a.externalPort! + 1;
    expect(determined(m.map(mapReq({ now: T0 + 2, suggestedPort: other, suggestedAddress: A1, preferFailure: true }))).result).toBe(
      RESULT.CANNOT_PROVIDE_EXTERNAL,
    );
    expect(m.map(mapReq({ now: T0 + 2, suggestedPort: other, suggestedAddress: A1 }))).toMatchObject({ externalPort: a.externalPort });
  });

  it("the hold ends holdDown seconds after the mapping ended; then the port and its block are free", () => {
    const m = small();
    const a = settle(m.map(mapReq({ lifetime: 200 })));
    m.expire(T0 + 200);
    expect(m.stats()).toMatchObject({ mappings: 0, held: 1, blocks: 1 });
    m.expire(T0 + 319);
    expect(m.stats().held).toBe(1);
    m.expire(T0 + 320);
    expect(m.stats()).toMatchObject({ held: 0, blocks: 0, subscribers: 0 });
    // another subscriber may now have it
    expect(determined(m.map(mapReq({ now: T0 + 320, subscriber: SUB2, suggestedPort: a.externalPort!, suggestedAddress: a.externalAddress! })))).toMatchObject({
      externalPort: a.externalPort,
    });
  });

  it("a late expire() ends the mapping and its hold at once (times count from the expiry, M2)", () => {
    const m = small();
    settle(m.map(mapReq({ lifetime: 200 })));
    m.expire(T0 + 1000);
    expect(m.stats()).toMatchObject({ mappings: 0, held: 0, blocks: 0 });
  });

  it("a refresh that arrives after expiry reclaims the same port (same nonce)", () => {
    const m = small();
    const a = settle(m.map(mapReq({ lifetime: 200 })));
    expect(m.map(mapReq({ now: T0 + 250, lifetime: 200 }))).toEqual({ ...a, lifetime: 200 });
  });
});

describe("expiry (docs/engine.md Expiry)", () => {
  it("a mapping lives while its expiry is in the future", () => {
    const m = model();
    settle(m.map(mapReq({ lifetime: 300 })));
    m.expire(T0 + 299);
    expect(m.liveMappings()).toBe(1);
    m.expire(T0 + 300);
    expect(m.liveMappings()).toBe(0);
    expect(m.stats().held).toBe(1);
  });

  it("an operation at `now` sees expired mappings as gone even without expire()", () => {
    const m = model();
    settle(m.map(mapReq({ lifetime: 300 })));
    expect(determined(m.map(mapReq({ now: T0 + 300, lifetime: 0 }))).result).toBe(0);
    expect(isPending(m.map(mapReq({ now: T0 + 300, nonce: N2 })))).toBe(true); // no NOT_AUTHORIZED
  });

  it("a mapping with MAP and PEER parts ends when the later part ends; the hold counts from then", () => {
    const m = model();
    settle(m.map(mapReq({ protocol: 17, internalPort: 5000, lifetime: 200 })));
    determined(m.peer(peerReq({ lifetime: 500 })));
    m.expire(T0 + 200);
    expect(m.lookup(SUB, 17, 5000)).toMatchObject({ mapExpiry: null, peers: 1 });
    m.expire(T0 + 500);
    expect(m.stats()).toMatchObject({ mappings: 0, held: 1 });
    m.expire(T0 + 619);
    expect(m.stats().held).toBe(1);
    m.expire(T0 + 620);
    expect(m.stats().held).toBe(0);
  });
});

describe("PEER (docs/engine.md PEER; M12)", () => {
  it("creates a mapping with a free allocation; lifetime ≥ peerMinLifetime", () => {
    const m = model({ peerMinLifetime: 240 });
    const o = settle(m.peer(peerReq({ lifetime: 30 })));
    expect(o).toMatchObject({ result: 0, lifetime: 240 });
    expect(m.lookup(SUB, 17, 5000)).toMatchObject({ mapExpiry: null, peers: 1, peerExpiry: T0 + 240 });
  });

  it("extend with the same nonce: never shortened; lifetime 0 reports the remaining lifetime", () => {
    const m = model();
    const a = settle(m.peer(peerReq({ lifetime: 600 })));
    expect(m.peer(peerReq({ now: T0 + 100, lifetime: 120 }))).toEqual({ ...a, lifetime: 500 });
    expect(m.peer(peerReq({ now: T0 + 100, lifetime: 0 }))).toEqual({ ...a, lifetime: 500 });
    expect(m.peer(peerReq({ now: T0 + 100, lifetime: 1000 }))).toEqual({ ...a, lifetime: 1000 });
    expect(m.lookup(SUB, 17, 5000)?.peerExpiry).toBe(T0 + 1100);
    // a short remainder is raised to the minimum even by L = 0
    expect(determined(m.peer(peerReq({ now: T0 + 1050, lifetime: 0 }))).lifetime).toBe(120);
  });

  it("another nonce on a live record → NOT_AUTHORIZED with its remaining lifetime (strict)", () => {
    const m = model();
    settle(m.peer(peerReq({ lifetime: 600 })));
    expect(m.peer(peerReq({ now: T0 + 100, nonce: N2 }))).toEqual({ result: RESULT.NOT_AUTHORIZED, lifetime: 500 });
  });

  it("relaxed: another nonce refreshes the record, and the new nonce is the one that counts", () => {
    const m = model({ noncePolicy: "relaxed" });
    const a = settle(m.peer(peerReq({ lifetime: 600 })));
    expect(m.peer(peerReq({ now: T0 + 100, nonce: N2, lifetime: 1000 }))).toEqual({ ...a, lifetime: 1000 });
    expect(m.peer(peerReq({ now: T0 + 200, nonce: N2, lifetime: 0 }))).toEqual({ ...a, lifetime: 900 });
  });

  it("another remote on the same endpoint shares the external; the suggestion is ignored", () => {
    const m = model();
    const a = settle(m.peer(peerReq()));
    expect(m.peer(peerReq({ remotePort: 9, nonce: N2, suggestedPort: 50000, suggestedAddress: A2 }))).toEqual({ ...a, lifetime: 600 });
    expect(m.lookup(SUB, 17, 5000)?.peers).toBe(2);
    expect(m.liveMappings()).toBe(1);
  });

  it("on an existing MAP mapping → its external; a MAP on a PEER-only mapping reuses the PEER's external", () => {
    const m = model();
    const a = settle(m.map(mapReq({ protocol: 17, internalPort: 5000 })));
    expect(m.peer(peerReq({ suggestedPort: 9999, suggestedAddress: A2 }))).toMatchObject({
      result: 0,
      externalPort: a.externalPort,
      externalAddress: a.externalAddress,
    });
    const p = settle(m.peer(peerReq({ protocol: 6, internalPort: 7000 })));
    expect(m.map(mapReq({ internalPort: 7000, nonce: N2 }))).toEqual({ ...p, lifetime: 3600 });
    expect(m.lookup(SUB, 6, 7000)).toMatchObject({ nonce: N2, peers: 1 });
  });

  it("a new 5-tuple whose suggestion cannot be honoured → CANNOT_PROVIDE_EXTERNAL, nothing created", () => {
    const m = model();
    const other = determined(m.map(mapReq({ subscriber: SUB2, suggestedPort: 20000, suggestedAddress: A1 })));
    expect(m.peer(peerReq({ suggestedPort: other.externalPort!, suggestedAddress: A1 }))).toEqual({
      result: RESULT.CANNOT_PROVIDE_EXTERNAL,
      lifetime: CODEC_ERROR_LIFETIME,
    });
    expect(m.lookup(SUB, 17, 5000)).toBeUndefined();
    expect(determined(m.peer(peerReq({ suggestedPort: 30000, suggestedAddress: A2 })))).toMatchObject({ externalAddress: A2, externalPort: 30000 });
  });

  it("maxPeers → NO_RESOURCES", () => {
    const m = model({ maxPeers: 1 });
    settle(m.peer(peerReq()));
    expect(determined(m.peer(peerReq({ remotePort: 9 }))).result).toBe(RESULT.NO_RESOURCES);
    expect(determined(m.peer(peerReq({ internalPort: 6000 }))).result).toBe(RESULT.NO_RESOURCES);
  });

  it("protocol / family support", () => {
    const m = model();
    expect(determined(m.peer(peerReq({ protocol: 132 }))).result).toBe(RESULT.UNSUPP_PROTOCOL);
    expect(determined(m.peer(peerReq({ suggestedAddress: "::" }))).result).toBe(RESULT.UNSUPP_PROTOCOL);
  });
});

describe("NAT-PMP (docs/engine.md NAT-PMP; M14)", () => {
  const nat = (over: Partial<{ now: number; subscriber: string; protocol: 6 | 17; internalPort: number; suggestedPort: number; lifetime: number }> = {}) => ({
    now: T0,
    subscriber: SUB,
    protocol: 6 as 6 | 17,
    internalPort: 80,
    suggestedPort: 0,
    lifetime: 7200,
    ...over,
  });

  it("map → allocation; a repeat with another suggestion → the assigned port; lifetime never above the request, at most maxLifetime", () => {
    const m = model();
    const a = settle(m.natPmpMap(nat()));
    expect(a).toMatchObject({ result: 0, lifetime: 7200 });
    expect(m.natPmpMap(nat({ suggestedPort: 40000, lifetime: 100 }))).toEqual({ ...a, lifetime: 100 });
    expect(determined(m.natPmpMap(nat({ lifetime: 1_000_000 }))).lifetime).toBe(86400);
  });

  it("no nonce checks: NAT-PMP refreshes a PCP mapping, and PCP with the zero nonce matches a NAT-PMP one", () => {
    const m = model();
    const a = settle(m.map(mapReq({ internalPort: 80 })));
    expect(m.natPmpMap(nat())).toMatchObject({ result: 0, externalPort: a.externalPort });
    expect(m.lookup(SUB, 6, 80)?.nonce).toBe(N1);
    settle(m.natPmpMap(nat({ internalPort: 81 })));
    expect(determined(m.map(mapReq({ internalPort: 81, nonce: N2 }))).result).toBe(RESULT.NOT_AUTHORIZED);
    expect(determined(m.map(mapReq({ internalPort: 81, nonce: ZERO_NONCE }))).result).toBe(0);
  });

  it("delete → 0, external port 0, lifetime 0, same when repeated; the same endpoint reclaims its held port", () => {
    const m = model();
    const a = settle(m.natPmpMap(nat({ protocol: 17, internalPort: 5000 })));
    for (let k = 0; k < 2; k++)
      expect(m.natPmpDelete({ now: T0, subscriber: SUB, protocol: 17, internalPort: 5000 })).toEqual({ result: 0, lifetime: 0, externalPort: 0 });
    expect(m.lookup(SUB, 17, 5000)).toBeUndefined();
    expect(m.natPmpMap(nat({ now: T0 + 1, protocol: 17, internalPort: 5000, suggestedPort: 1 }))).toEqual({ ...a });
  });

  it("map with lifetime 0 is a delete", () => {
    const m = model();
    settle(m.natPmpMap(nat()));
    expect(m.natPmpMap(nat({ lifetime: 0 }))).toEqual({ result: 0, lifetime: 0, externalPort: 0 });
    expect(m.liveMappings()).toBe(0);
  });

  it("delete-all (internal port 0) removes all the subscriber's mappings of that protocol; a static one → 2", () => {
    const m = model();
    settle(m.natPmpMap(nat({ internalPort: 80 })));
    settle(m.natPmpMap(nat({ internalPort: 81 })));
    settle(m.map(mapReq({ internalPort: 82 })));
    settle(m.natPmpMap(nat({ protocol: 17, internalPort: 80 })));
    settle(m.natPmpMap(nat({ subscriber: SUB2, internalPort: 80 })));
    expect(m.natPmpDelete({ now: T0, subscriber: SUB, protocol: 6, internalPort: 0 })).toEqual({ result: 0, lifetime: 0, externalPort: 0 });
    expect(m.liveMappings()).toBe(2);
    expect(m.lookup(SUB, 17, 80)).toBeDefined();
    expect(m.addStatic(SUB, 6, 443, A1, 4443)).toBe(0);
    settle(m.natPmpMap(nat({ internalPort: 80 })));
    expect(m.natPmpDelete({ now: T0, subscriber: SUB, protocol: 6, internalPort: 0 }).result).toBe(NATPMP_RESULT.REFUSED);
    expect(m.lookup(SUB, 6, 80)).toBeUndefined();
    expect(m.lookup(SUB, 6, 443)).toBeDefined();
    expect(m.natPmpDelete({ now: T0, subscriber: SUB, protocol: 6, internalPort: 443 }).result).toBe(NATPMP_RESULT.REFUSED);
  });

  it("failures: quota → 4, internal port 0 → 2, no IPv4 pool → 3 (all with port 0, lifetime 0)", () => {
    const m = model({ mappingsPerSubscriber: 1 });
    settle(m.natPmpMap(nat()));
    expect(m.natPmpMap(nat({ internalPort: 81 }))).toEqual({ result: NATPMP_RESULT.OUT_OF_RESOURCES, lifetime: 0, externalPort: 0 });
    expect(m.natPmpMap(nat({ internalPort: 0 }))).toEqual({ result: NATPMP_RESULT.REFUSED, lifetime: 0, externalPort: 0 });
    expect(model({ pool: ["2001:db8::1"] }).natPmpMap(nat())).toEqual({ result: NATPMP_RESULT.NETWORK_FAILURE, lifetime: 0, externalPort: 0 });
  });

  it("TCP P of one client keeps UDP P from every other subscriber; the companion is not created", () => {
    const m = model({ pool: [A1] });
    const a = settle(m.natPmpMap(nat({ internalPort: 8080 })));
    const p = pending(m.natPmpMap(nat({ subscriber: SUB2, protocol: 17, internalPort: 8080, suggestedPort: a.externalPort! })));
    expect(p.check({ externalAddress: a.externalAddress!, externalPort: a.externalPort! })).toMatch(/owned by/);
    settle(p);
    expect(m.lookup(SUB, 17, 8080)).toBeUndefined();
  });
});

describe("model plumbing", () => {
  it("commit refuses illegal allocations and stale offers", () => {
    const m = model();
    const p = pending(m.map(mapReq()));
    expect(() => p.commit({ externalAddress: A1, externalPort: 80 })).toThrow(/illegal/);
    const q = pending(m.map(mapReq({ internalPort: 1 })));
    settle(m.map(mapReq({ internalPort: 2 })));
    expect(() => q.commit(firstLegal(q))).toThrow(/changed/);
  });

  it("a random operation sequence keeps the invariants", () => {
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const m = model({
      blockSize: 16,
      maxBlocksPerSubscriber: 2,
      mappingsPerSubscriber: 20,
      maxMappings: 200,
      maxPeers: 50,
      holdDown: 30,
      filtersPerMapping: 1,
    });
    let now = T0;
    for (let step = 0; step < 600; step++) {
      now += rnd(20);
      const subscriber = `10.0.0.${rnd(6)}`;
      const internalPort = 1 + rnd(12);
      const nonce = rnd(4) ? N1 : N2;
      const suggestedPort = rnd(3) ? 0 : 1024 + rnd(96);
      const suggestedAddress = rnd(2) ? "0.0.0.0" : [A1, A2][rnd(2)];
      let r: Outcome | Pending;
      switch (rnd(5)) {
        case 0:
          r = m.map(
            mapReq({
              now,
              subscriber,
              internalPort,
              nonce,
              lifetime: rnd(4) ? 60 + rnd(400) : 0,
              suggestedPort,
              suggestedAddress,
              preferFailure: suggestedPort !== 0 && rnd(3) === 0,
            }),
          );
          break;
        case 1:
          r = m.peer(peerReq({ now, subscriber, internalPort, nonce, lifetime: rnd(400), suggestedPort, suggestedAddress, remotePort: 1 + rnd(3) }));
          break;
        case 2:
          r = m.natPmpMap({ now, subscriber, protocol: 17, internalPort, suggestedPort, lifetime: rnd(5) ? 100 + rnd(400) : 0 });
          break;
        case 3:
          r = m.natPmpDelete({ now, subscriber, protocol: rnd(2) ? 6 : 17, internalPort: rnd(3) ? internalPort : 0 });
          break;
        default:
          m.expire(now);
          continue;
      }
      if (isPending(r)) {
        // a random legal choice: scan from a random start
        const start = rnd(1200);
        let chosen: Allocation | undefined;
        for (let k = 0; k < 2 * 65536 && !chosen; k++) {
          const port = 1024 + ((start + k) % 64512);
          const address = [A1, A2][k < 65536 ? 0 : 1];
          if (r.check({ externalAddress: address, externalPort: port }) === null) chosen = { externalAddress: address, externalPort: port };
        }
        expect(chosen).toBeDefined();
        r.commit(chosen!);
      }
      expect(m.invariants()).toEqual([]);
    }
    expect(m.stats().mappings).toBeGreaterThan(0);
  });
});
