// The hand-derived golden tables (test/golden/pcp-golden.ts, pa-golden.ts) run against both
// WASM builds. The same tables also check the reference parser (test/reference/reference.test.ts).
// The RFC 7652 messages the host encodes (pa-golden.ts PA_MESSAGES) are checked against
// src/auth/pa-wire.ts and pa-crypto.ts: encoding, parsing, the transport key and the tags.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { transportKey, verifyMac } from "../../src/auth/pa-crypto.js";
import { commonTag, encodePa, parsePa, readOptions, verifyPaTag, withCommonTag } from "../../src/auth/pa-wire.js";
import { codecEngine } from "../helpers/engine-config.js";
import { GOLDEN, hex, srcAddress } from "./pcp-golden.js";
import { AUTH_GOLDEN, KEY_ID, MSK_HEX, NONCE, PA_MESSAGES, SESSION_ID, TRANSPORT_KEY_HEX } from "./pa-golden.js";
import { EPOCH, hexOf } from "../helpers/packets.js";

for (const build of ["debug", "release"] as const) {
  describe(`golden packets through the ${build} build`, () => {
    const engine = codecEngine({}, build);
    it.each([...GOLDEN, ...AUTH_GOLDEN].map((c) => [c.name, c] as const))("%s", (_name, c) => {
      engine.load(0, { payload: hex(c.hex), source: srcAddress(c.src), sourcePort: 5000, ingress: c.ingress ?? 1, overloaded: c.overloaded });
      if (c.hostFlags !== undefined) engine.setSlotHost(0, c.ingress ?? 1, c.hostFlags | (c.overloaded ? W.HOST_OVERLOADED : 0));
      engine.processBatch(1, EPOCH);
      const o = engine.outcome(0);
      expect(o.verdict).toBe(c.expect.verdict);
      if (c.expect.dropReason !== undefined) expect(o.dropReason).toBe(c.expect.dropReason);
      if (c.expect.result !== undefined) expect(o.result).toBe(c.expect.result);
      if (c.expect.responseHex !== undefined) expect(hexOf(o.response)).toBe(hexOf(hex(c.expect.responseHex)));
      if (c.expect.options !== undefined) expect(o.options).toBe(c.expect.options);
    });
  });
}

describe("RFC 7652 messages as the host encodes them (pa-golden.ts)", () => {
  const key = Buffer.from(TRANSPORT_KEY_HEX, "hex");
  const tagging = { key, keyId: KEY_ID, mac: W.AUTH_HMAC_SHA2_256_128 };

  it('transport key = prf(MSK, "IETF PCP" || Session ID || Nonce || Key ID) [7652 §4]', () => {
    expect(transportKey(W.PRF_HMAC_SHA2_256, Buffer.from(MSK_HEX, "hex"), SESSION_ID, NONCE, KEY_ID).toString("hex")).toBe(TRANSPORT_KEY_HEX);
  });

  it.each(PA_MESSAGES.map((m) => [m.name, m] as const))("%s", (_name, m) => {
    const wire = Buffer.from(hex(m.hex));
    if (m.kind === "pa") {
      const p = m.pa!;
      const options = Buffer.from(hex(m.optionsHex!));
      const built = encodePa(
        { ...p, epoch: EPOCH, clientAddress: p.response ? undefined : srcAddress(), options: options.length ? [options] : [] },
        m.tag ? tagging : undefined,
      );
      expect(built.toString("hex")).toBe(wire.toString("hex"));
      const parsed = parsePa(wire)!;
      expect({ result: parsed.result, sessionId: parsed.sessionId, sequence: parsed.sequence }).toEqual({
        result: p.result,
        sessionId: p.sessionId,
        sequence: p.sequence,
      });
      if (p.response) expect(parsed.epoch).toBe(EPOCH);
      // The options read back are the ones written (an AUTHENTICATION message holding just them).
      const alone = readOptions(Buffer.concat([Buffer.from([W.PCP_VERSION, W.OP_AUTHENTICATION]), Buffer.alloc(W.AUTH_MIN_SIZE - 2), options]));
      expect(parsed.options.filter((o) => o.code !== W.OPTION_PA_AUTHENTICATION_TAG)).toEqual(alone);
      if (m.tag) {
        expect(verifyPaTag(wire, tagging)).toBe(true);
        const tampered = Buffer.from(wire);
        tampered[W.PA_SEQUENCE + 3] ^= 1;
        expect(verifyPaTag(tampered, tagging)).toBe(false);
        expect(verifyPaTag(wire, { ...tagging, keyId: 2 })).toBe(false);
      }
    } else {
      const built = withCommonTag(hex(m.bodyHex!), tagging, SESSION_ID, m.tag!.sequence!)!;
      expect(built.toString("hex")).toBe(wire.toString("hex"));
      const t = commonTag(wire)!;
      expect({ sessionId: t.sessionId, sequence: t.sequence, keyId: t.keyId, dataLength: t.dataLength }).toEqual({
        sessionId: SESSION_ID,
        sequence: m.tag!.sequence,
        keyId: KEY_ID,
        dataLength: W.HMAC_SHA2_256_128_SIZE,
      });
      expect(verifyMac(W.AUTH_HMAC_SHA2_256_128, key, wire, t.dataAt, t.dataLength)).toBe(true);
      const tampered = Buffer.from(wire);
      tampered[W.HDR_LIFETIME + 3] ^= 1;
      expect(verifyMac(W.AUTH_HMAC_SHA2_256_128, key, tampered, t.dataAt, t.dataLength)).toBe(false);
    }
  });
});
