// Property tests: random and mutated datagrams never trap the engine, every reply is
// well-formed, and the WASM codec agrees byte for byte with the slow TypeScript reference
// parser written straight from the specification (test/reference/pcp-reference.ts).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { toAddress16 } from "../../src/net/address.js";
import type { SlotOutcome } from "../../src/engine/packet-engine.js";
import type { Config } from "../../src/config/schema.js";
import type { HostValues } from "../../src/config/region.js";
import { codecEngine, engineConfig, engineFrom, unchecked } from "../helpers/engine-config.js";
import { referenceEngineError, referenceProcess, referenceSuccess, type RefConfig, type RefOutcome } from "../reference/pcp-reference.js";
import { announceRequest, hexOf, mapRequest, natPmpMap, peerRequest, type Option } from "../helpers/packets.js";

const SOURCES = ["192.0.2.1", "10.0.0.7", "2001:db8::5", "::1", "0.0.0.0"].map(toAddress16);
const RUNS = Number(process.env.PCPD_PROPERTY_RUNS ?? 4000);

interface Case {
  payload: Uint8Array;
  source: Uint8Array;
  ingress: number;
  overloaded: boolean;
  epoch: number;
  config: RefConfig;
}

const refConfigArb: fc.Arbitrary<RefConfig> = fc.record({
  flags: fc.oneof(fc.constant(11), fc.integer({ min: 0, max: 31 })),
  enabledOptions: fc.oneof(fc.constant(W.OPTBIT_CORE), fc.constant(W.OPTBIT_ALL), fc.integer({ min: 0, max: 255 })),
  shortErrorLifetime: fc.oneof(fc.constant(30), fc.nat()),
  longErrorLifetime: fc.oneof(fc.constant(1800), fc.nat()),
  thirdPartyIdMaxLen: fc.integer({ min: 1, max: 40 }),
});

/**
 * The reference's codec settings over `base`, unvalidated (the properties range beyond what
 * a document may say), with the raw option mask (some masks no document can express).
 */
function toConfig(c: RefConfig, base: Config): [Config, HostValues] {
  const config = unchecked(base, {
    pcp: {
      map: (c.flags & W.CFG_MAP_ENABLED) !== 0,
      peer: (c.flags & W.CFG_PEER_ENABLED) !== 0,
      overload: (c.flags & W.CFG_OVERLOAD_REPLY) !== 0 ? "no-resources" : "drop",
      shortErrorLifetime: c.shortErrorLifetime,
      longErrorLifetime: c.longErrorLifetime,
      thirdPartyId: { maxLength: c.thirdPartyIdMaxLen },
    },
    natPmp: c.flags & W.CFG_NATPMP_SILENT ? "silent" : c.flags & W.CFG_NATPMP_ENABLED ? "enabled" : "disabled",
  });
  return [config, { options: c.enabledOptions }];
}

// ---- structured requests, then mutations of them ----
const optionCodes = [1, 2, 3, 4, 5, 13, 50, 127, 128, 129, 130, 192, 200, 255, 0];
const optionArb: fc.Arbitrary<Option> = fc.record({
  code: fc.constantFrom(...optionCodes),
  data: fc.oneof(
    fc.uint8Array({ maxLength: 24 }),
    fc.constantFrom(new Uint8Array(0), new Uint8Array(16), new Uint8Array(20), new Uint8Array(5), new Uint8Array(14)),
  ),
});
const portArb = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 65535 }));
const requestArb = fc.oneof(
  fc
    .record({
      opts: fc.array(optionArb, { maxLength: 6 }),
      lifetime: fc.oneof(fc.constant(0), fc.nat()),
      protocol: fc.constantFrom(0, 6, 17, 132),
      internalPort: portArb,
      externalPort: portArb,
    })
    .map(({ opts, ...f }) => mapRequest(f, opts)),
  fc
    .record({
      opts: fc.array(optionArb, { maxLength: 4 }),
      protocol: fc.constantFrom(0, 6, 17),
      internalPort: portArb,
      remotePort: portArb,
      remoteAddress: fc.constantFrom("198.51.100.7", "127.0.0.1", "::", "ff02::1", "2001:db8::9", "224.0.0.1"),
    })
    .map(({ opts, ...f }) => peerRequest(f, opts)),
  fc.array(optionArb, { maxLength: 4 }).map((opts) => announceRequest({}, opts)),
  fc.record({ op: fc.integer({ min: 0, max: 255 }), a: portArb, b: portArb, l: fc.nat() }).map(({ op, a, b, l }) => natPmpMap(op, a, b, l)),
);

type Mutation =
  | { kind: "flip"; at: number; value: number }
  | { kind: "cut"; at: number }
  | { kind: "grow"; bytes: Uint8Array }
  | { kind: "setLength"; at: number; value: number };
const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant("cut" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("grow" as const), bytes: fc.uint8Array({ maxLength: 1200 }) }),
  fc.record({ kind: fc.constant("setLength" as const), at: fc.nat(), value: fc.integer({ min: 0, max: 65535 }) }),
);

function mutate(p: Uint8Array, mutations: Mutation[]): Uint8Array {
  let out = p.slice();
  for (const m of mutations) {
    if (out.length === 0) break;
    if (m.kind === "flip") out[m.at % out.length] = m.value;
    else if (m.kind === "cut") out = out.slice(0, m.at % (out.length + 1));
    else if (m.kind === "grow") out = Uint8Array.from([...out, ...m.bytes]);
    else if (out.length >= 62) {
      // overwrite a plausible option length field (options start at 24, 60 or 80)
      const at = 24 + 2 + 4 * (m.at % Math.floor((out.length - 26) / 4));
      out[at] = m.value >> 8;
      out[at + 1] = m.value & 0xff;
    }
  }
  return out;
}

const baseCase = (payloadArb: fc.Arbitrary<Uint8Array>) =>
  fc
    .record({
      payload: payloadArb,
      sourceIndex: fc.nat({ max: SOURCES.length - 1 }),
      matchClient: fc.boolean().chain((b) => (b ? fc.constant(true) : fc.boolean())),
      ingress: fc.oneof(fc.constant(W.INGRESS_SUBSCRIBER), fc.integer({ min: 0, max: 3 })),
      overloaded: fc.oneof({ weight: 5, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
      epoch: fc.nat(),
      config: refConfigArb,
    })
    .map(({ payload, sourceIndex, matchClient, ...rest }): Case => {
      const source = SOURCES[sourceIndex];
      const p = payload.slice();
      // Most cases carry the right client address so they reach the deeper rows.
      if (matchClient && p.length >= 24 && p[0] === 2) p.set(source, 8);
      return { payload: p, source, ...rest };
    });

const randomCase = baseCase(fc.uint8Array({ maxLength: 1200 }));
const mutatedCase = baseCase(fc.tuple(requestArb, fc.array(mutationArb, { maxLength: 3 })).map(([p, ms]) => mutate(p, ms)));
const validCase = baseCase(requestArb);

// ---- checks ----
const engine = codecEngine();
const codecBase = engineConfig();

function runCase(c: Case): SlotOutcome {
  engine.reconfigure(...toConfig(c.config, codecBase));
  engine.load(0, { payload: c.payload, source: c.source, sourcePort: 5000, ingress: c.ingress, overloaded: c.overloaded });
  engine.processBatch(1, c.epoch);
  const o = engine.outcome(0);
  return { ...o, response: o.response.slice() };
}

function expectWellFormed(o: SlotOutcome): void {
  if (o.verdict !== "reply") return;
  const r = o.response;
  expect(r.length).toBeLessThanOrEqual(W.PCP_MAX_MESSAGE);
  expect(r[1] & W.R_BIT).toBe(W.R_BIT);
  if (r[0] === W.PCP_VERSION) {
    expect(r.length % 4).toBe(0);
    expect(r.length).toBeGreaterThanOrEqual(W.PCP_HEADER_SIZE);
    expect(r[2]).toBe(0);
    expect(r[3]).toBe(o.result);
  } else {
    expect(r[0]).toBe(W.NATPMP_VERSION);
    expect(r.length).toBeGreaterThanOrEqual(4);
  }
}

function expectAgreement(c: Case, o: SlotOutcome, ref: RefOutcome): void {
  const where = `case ${hexOf(c.payload).slice(0, 200)} ingress=${c.ingress} overloaded=${c.overloaded} config=${JSON.stringify(c.config)}`;
  expect(o.verdict, where).toBe(ref.verdict);
  if (ref.verdict === "drop") expect(o.dropReason, where).toBe(ref.dropReason);
  if (ref.verdict === "reply") {
    expect(o.result, where).toBe(ref.result);
    expect(hexOf(o.response), where).toBe(hexOf(ref.response));
  }
  if (ref.verdict === "parsed") {
    expect(
      { version: o.version, opcode: o.opcode, lifetime: o.lifetime, options: o.options, parseFlags: o.parseFlags, filterCount: o.filterCount },
      where,
    ).toEqual({
      version: ref.version,
      opcode: ref.opcode,
      lifetime: ref.lifetime,
      options: ref.options,
      parseFlags: ref.parseFlags,
      filterCount: ref.filterCount,
    });
  }
}

function check(c: Case): void {
  const o = runCase(c); // a trap throws PcpdError(ENGINE_TRAPPED) and fails the property
  expectWellFormed(o);
  expectAgreement(c, o, referenceProcess({ data: c.payload, src: c.source, ingress: c.ingress, overloaded: c.overloaded, epoch: c.epoch }, c.config));
}

describe("properties of the codec", () => {
  it("random datagrams: no trap, well-formed replies, agreement with the reference", () => {
    fc.assert(fc.property(randomCase, check), { numRuns: RUNS });
  });

  it("mutated valid requests: no trap, well-formed replies, agreement with the reference", () => {
    fc.assert(fc.property(mutatedCase, check), { numRuns: RUNS * 2 });
  });

  it("random and mutated datagrams through codec and engine: no trap, every request finished, every reply well-formed", () => {
    const base = engineConfig({
      capacity: { mappings: 2000, subscribers: 200, peers: 500, filters: 500 },
      lifetimes: { holdDown: 30 },
      pool: { addresses: ["198.18.0.1", "2001:db8::1"], blockSize: 64 },
    });
    const served = engineFrom(base, 0, { seed: 9n });
    let now = 0;
    fc.assert(
      fc.property(fc.oneof(mutatedCase, validCase, randomCase), fc.nat({ max: 40 }), (c, dt) => {
        now += dt;
        served.reconfigure(...toConfig({ ...c.config, enabledOptions: c.config.enabledOptions & W.OPTBIT_CORE }, base));
        served.load(0, { payload: c.payload, source: c.source, sourcePort: 5000, ingress: c.ingress, overloaded: c.overloaded });
        served.serve(1, c.epoch, now);
        served.expire(now);
        served.drainEvents();
        const o = served.outcome(0);
        expect(o.verdict).not.toBe("parsed"); // the engine finishes every parsed request
        expectWellFormed({ ...o, response: o.response.slice() });
      }),
      { numRuns: RUNS * 2 },
    );
  });

  it("success and engine-error encoders agree with the reference for every parsed PCP request", () => {
    const finishArb = fc.record({
      lifetime: fc.nat(),
      echo: fc.integer({ min: 0, max: 255 }),
      port: fc.integer({ min: 0, max: 65535 }),
      addr: fc.constantFrom(...SOURCES),
      error: fc.boolean(),
      result: fc.constantFrom(2, 8, 9, 10, 11, 13, 24),
    });
    fc.assert(
      fc.property(validCase, finishArb, (c, f) => {
        const o = runCase(c);
        fc.pre(o.verdict === "parsed" && o.version === W.PCP_VERSION);
        const request = c.payload;
        let expected: Uint8Array;
        if (f.error) {
          engine.finishError(0, f.result, f.lifetime);
          expected = referenceEngineError(request, f.result, f.lifetime, c.epoch);
        } else {
          // The engine writes the assigned external port/address over the suggestion.
          const d = engine.slotData(0);
          d[W.MP_EXTERNAL_PORT] = f.port >> 8;
          d[W.MP_EXTERNAL_PORT + 1] = f.port & 0xff;
          d.set(f.addr, W.MP_EXTERNAL_ADDR);
          engine.finishSuccess(0, f.lifetime, f.echo);
          expected = referenceSuccess(request, f.lifetime, f.echo, c.epoch, { port: f.port, addr: f.addr }, c.config);
        }
        const r = engine.outcome(0).response;
        expectWellFormed({ ...engine.outcome(0), response: r });
        expect(hexOf(r)).toBe(hexOf(expected));
      }),
      { numRuns: RUNS },
    );
  });
});
