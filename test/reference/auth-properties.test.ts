// Differential fuzzing of the RFC 7652 rows: AUTHENTICATION requests and tagged MAP / PEER /
// ANNOUNCE requests, built from the options of RFC 7652 §5 (right and wrong lengths, repeats,
// options after the tag, options in the wrong opcode), then mutated, run through the WASM
// codec with every combination of the authentication ingress bits and host flags, and
// compared byte for byte with the reference parser (test/reference/pcp-reference.ts, A1–A9).
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { toAddress16 } from "../../src/net/address.js";
import { codecEngine } from "../helpers/engine-config.js";
import { announceRequest, CLIENT, encodeOptions, hexOf, mapRequest, peerRequest, type Option } from "../helpers/packets.js";
import { DEFAULT_REF_CONFIG, referenceProcess } from "./pcp-reference.js";

const RUNS = Number(process.env.PCPD_PROPERTY_RUNS ?? 4000);
const SOURCE = toAddress16(CLIENT);
const engine = codecEngine();

/** Option data of the lengths RFC 7652 §5 defines, and the neighbours that are wrong. */
const dataArb = fc.oneof(
  fc.constantFrom(0, 1, 3, 4, 5, 8, 12, 16, 20, 28, 30, 32).map((n) => new Uint8Array(n).fill(0x5a)),
  fc.uint8Array({ maxLength: 40 }),
);
const anyOptionArb: fc.Arbitrary<Option> = fc.record({
  code: fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 4, max: 12 }) }, { weight: 1, arbitrary: fc.constantFrom(1, 2, 3, 13, 128, 200) }),
  data: dataArb,
});
/** Options well-formed for some opcode, so most messages reach the later rules. */
const wellFormedArb: fc.Arbitrary<Option> = fc.constantFrom<Option>(
  { code: W.OPTION_NONCE, data: [1, 2, 3, 4] },
  { code: W.OPTION_PSEUDO_RANDOM_FUNCTION, data: [0, 0, 0, 5] },
  { code: W.OPTION_MAC_ALGORITHM, data: [0, 0, 0, 12] },
  { code: W.OPTION_RECEIVED_PAK, data: [0, 0, 0, 1] },
  { code: W.OPTION_SESSION_LIFETIME, data: [0, 0, 14, 16] },
  { code: W.OPTION_ID_INDICATOR, data: [0x61, 0x62] },
  { code: W.OPTION_FILTER, data: [0, 120, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 0] },
  { code: 200, data: [1, 2, 3, 4] },
);
const optionArb = fc.oneof({ weight: 3, arbitrary: wellFormedArb }, { weight: 1, arbitrary: anyOptionArb });
/** An EAP packet, whole or cut (a §6.6 section), in an EAP_PAYLOAD. */
const eapArb: fc.Arbitrary<Option> = fc
  .record({ code: fc.integer({ min: 1, max: 4 }), body: fc.uint8Array({ maxLength: 60 }), cut: fc.nat({ max: 70 }) })
  .map(({ code, body, cut }) => {
    const eap = new Uint8Array(4 + body.length);
    eap[0] = code;
    eap[2] = eap.length >> 8;
    eap[3] = eap.length & 0xff;
    eap.set(body, 4);
    return { code: W.OPTION_EAP_PAYLOAD, data: eap.subarray(0, Math.max(1, Math.min(eap.length, cut || eap.length))) };
  });
const tagArb: fc.Arbitrary<Option> = fc.constantFrom(
  { code: W.OPTION_AUTHENTICATION_TAG, data: new Uint8Array(28) },
  { code: W.OPTION_PA_AUTHENTICATION_TAG, data: new Uint8Array(20) },
);
/** [EAP_PAYLOAD] options [a repeat of the last one] [tag] [an option after the tag]. */
const optionsArb = fc
  .tuple(fc.option(eapArb), fc.array(optionArb, { maxLength: 3 }), fc.boolean(), fc.option(tagArb), fc.array(optionArb, { maxLength: 1 }))
  .map(([eap, some, repeat, tag, after]) => [
    ...(eap ? [eap] : []),
    ...some,
    ...(repeat && some.length ? [some[some.length - 1]] : []),
    ...(tag ? [tag] : []),
    ...after,
  ]);

function paRequest(result: number, sessionId: number, options: Option[]): Uint8Array {
  const head = new Uint8Array(W.AUTH_MIN_SIZE);
  head[0] = W.PCP_VERSION;
  head[1] = W.OP_AUTHENTICATION;
  head[3] = result;
  head.set(SOURCE, W.HDR_CLIENT_ADDR);
  new DataView(head.buffer).setUint32(W.PA_SESSION_ID, sessionId);
  return Uint8Array.from([...head, ...encodeOptions(options)]);
}

const requestArb = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .record({
        result: fc.constantFrom(0, 14, 15, 16, 17, 18, 19, 20, 22, 23, 99),
        session: fc.constantFrom(0, 7),
        options: optionsArb,
      })
      .map(({ result, session, options }) => paRequest(result, session, options)),
  },
  optionsArb.map((opts) => mapRequest({}, opts)),
  optionsArb.map((opts) => peerRequest({}, opts)),
  optionsArb.map((opts) => announceRequest({}, opts)),
);

const mutationArb = fc.oneof(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }), fc.record({ cut: fc.nat() }));

const caseArb = fc.record({
  payload: fc.tuple(requestArb, fc.oneof({ weight: 2, arbitrary: fc.constant([]) }, fc.array(mutationArb, { maxLength: 2 }))).map(([p, ms]) => {
    let out = p.slice();
    for (const m of ms) {
      if ("cut" in m) out = out.slice(0, Math.max(24, m.cut % (out.length + 1)));
      else if (out.length > 0) out[m.at % out.length] = m.value;
    }
    return out;
  }),
  // Subscriber or THIRD_PARTY-only, with any of authentication on / required / required with THIRD_PARTY.
  ingress: fc.tuple(fc.constantFrom(1, 2, 3), fc.constantFrom(0, 4, 12, 20, 28, 8)).map(([base, auth]) => base | auth),
  hostFlags: fc.constantFrom(0, W.HOST_AUTHENTICATED, W.HOST_AUTH_UNKNOWN_SESSION),
  epoch: fc.nat(),
});

describe("RFC 7652 codec rows: WASM codec vs reference parser", () => {
  it("AUTHENTICATION and tagged common requests, mutated, under every authentication ingress and host flag", () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        engine.load(0, { payload: c.payload, source: SOURCE, sourcePort: 5000, ingress: c.ingress });
        engine.setSlotHost(0, c.ingress, c.hostFlags);
        engine.processBatch(1, c.epoch);
        const o = engine.outcome(0);
        const ref = referenceProcess(
          { data: c.payload, src: SOURCE, ingress: c.ingress, overloaded: false, hostFlags: c.hostFlags, epoch: c.epoch },
          DEFAULT_REF_CONFIG,
        );
        const where = `${hexOf(c.payload)} ingress=${c.ingress} hostFlags=${c.hostFlags}`;
        expect(o.verdict, where).toBe(ref.verdict);
        if (ref.verdict === "drop") expect(o.dropReason, where).toBe(ref.dropReason);
        if (ref.verdict === "reply") {
          expect(o.result, where).toBe(ref.result);
          expect(hexOf(o.response), where).toBe(hexOf(ref.response));
        }
        if (ref.verdict === "auth" || ref.verdict === "parsed") expect(o.options, where).toBe(ref.options);
      }),
      { numRuns: RUNS },
    );
  });
});
