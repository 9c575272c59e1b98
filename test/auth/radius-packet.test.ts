// The RADIUS packet work the npm `radius` package does not do, checked against independent
// computations from the RFC text: EAP-Message split and reassembly (RFC 3579 §3.1), the
// Message-Authenticator of requests (§3.2), the reply checks (RFC 2865 §3, RFC 3579 §3.2) and
// the MS-MPPE key encryption (RFC 2548 §2.4.2).
import { createHash, createHmac, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { checkReply, decryptMppeKey, encodeAccessRequest, encryptMppeKey, readReply, splitEapMessage, walkAttributes } from "../../src/auth/radius-packet.js";
import { identityResponse } from "../../src/auth/eap.js";

const SECRET = "packet-test-secret";

const attr = (type: number, value: Uint8Array) => Buffer.concat([Buffer.of(type, value.length + 2), value]);
const vsa = (vendorType: number, value: Uint8Array) => {
  const inner = Buffer.concat([Buffer.of(vendorType, value.length + 2), value]);
  const head = Buffer.alloc(4);
  head.writeUInt32BE(311);
  return attr(26, Buffer.concat([head, inner]));
};

/** A reply to `request` signed as RFC 2865 §3 and RFC 3579 §3.2 say, built without the code under test. */
function reply(code: number, request: { bytes: Buffer; authenticator: Buffer }, attrs: Buffer[], o: { messageAuthenticator?: boolean } = {}): Buffer {
  const body = Buffer.concat([...attrs, ...(o.messageAuthenticator === false ? [] : [attr(80, Buffer.alloc(16))])]);
  const packet = Buffer.concat([Buffer.of(code, request.bytes[1], 0, 0), request.authenticator, body]);
  packet.writeUInt16BE(packet.length, 2);
  if (o.messageAuthenticator !== false)
    createHmac("md5", SECRET)
      .update(packet)
      .digest()
      .copy(packet, packet.length - 16);
  createHash("md5").update(packet).update(SECRET).digest().copy(packet, 4);
  return packet;
}

const request = (eap: Uint8Array, state: Uint8Array | null = null) =>
  encodeAccessRequest({ identifier: 42, userName: "alice", nasIdentifier: "pcpd", state, eap }, SECRET);

describe("Access-Request", () => {
  it("splits an EAP packet into 253-octet EAP-Message attributes in order, and signs it", () => {
    const eap = randomBytes(600);
    eap.set([2, 9, 600 >> 8, 600 & 0xff, 21]);
    const req = request(eap, Buffer.from("state-1"));
    const attrs = walkAttributes(req.bytes, req.bytes.length)!;
    const eapAttrs = attrs.filter((a) => a.type === 79);
    expect(eapAttrs.map((a) => a.value.length)).toEqual([253, 253, 94]);
    expect(Buffer.concat(eapAttrs.map((a) => a.value)).equals(eap)).toBe(true);
    expect(attrs.find((a) => a.type === 24)!.value.toString()).toBe("state-1");
    expect(attrs.find((a) => a.type === 1)!.value.toString()).toBe("alice");
    expect(req.bytes[0]).toBe(1);
    expect(req.bytes[1]).toBe(42);
    // RFC 3579 §3.2: HMAC-MD5 over the request with the Message-Authenticator zeroed.
    const ma = attrs.find((a) => a.type === 80)!;
    const zeroed = Buffer.from(req.bytes);
    zeroed.fill(0, ma.offset, ma.offset + 16);
    expect(createHmac("md5", SECRET).update(zeroed).digest().equals(ma.value)).toBe(true);
    expect(splitEapMessage(new Uint8Array(253))).toHaveLength(1);
    expect(splitEapMessage(new Uint8Array(254)).map((c) => c.length)).toEqual([253, 1]);
  });

  it("uses a fresh Request Authenticator per request", () => {
    const eap = identityResponse(1, "alice");
    expect(request(eap).authenticator.equals(request(eap).authenticator)).toBe(false);
  });
});

describe("replies", () => {
  const req = request(identityResponse(1, "alice"));
  const eap = randomBytes(300);

  it("accepts a correctly signed reply and reassembles its EAP-Message attributes", () => {
    const packet = reply(11, req, [
      attr(79, eap.subarray(0, 253)),
      attr(79, eap.subarray(253)),
      attr(24, Buffer.from("st")),
      attr(27, Buffer.of(0, 0, 14, 16)),
    ]);
    const checked = checkReply(packet, req, SECRET);
    expect(checked.ok).toBe(true);
    if (!checked.ok) return;
    const contents = readReply(checked, req, SECRET);
    expect(contents.eap!.equals(eap)).toBe(true);
    expect(contents.state!.toString()).toBe("st");
    expect(contents.sessionTimeoutS).toBe(3600);
    expect(contents.msk).toBeNull();
  });

  it("discards a bad Response Authenticator, a bad or missing Message-Authenticator, and broken attributes", () => {
    const good = reply(2, req, [attr(79, Buffer.of(3, 1, 0, 4))]);
    const flipped = Buffer.from(good);
    flipped[5] ^= 1;
    expect(checkReply(flipped, req, SECRET)).toEqual({ ok: false, reason: "bad-authenticator" });
    expect(checkReply(good, req, "another-secret")).toEqual({ ok: false, reason: "bad-authenticator" });
    // A valid Response Authenticator over a Message-Authenticator made with another key.
    const badMa = Buffer.from(good);
    badMa.fill(0, badMa.length - 16);
    badMa.set(req.authenticator, 4);
    createHmac("md5", "another-secret")
      .update(badMa)
      .digest()
      .copy(badMa, badMa.length - 16);
    createHash("md5").update(badMa).update(SECRET).digest().copy(badMa, 4);
    expect(checkReply(badMa, req, SECRET)).toEqual({ ok: false, reason: "bad-message-authenticator" });
    expect(checkReply(reply(2, req, [attr(79, Buffer.of(3, 1, 0, 4))], { messageAuthenticator: false }), req, SECRET)).toEqual({
      ok: false,
      reason: "no-message-authenticator",
    });
    const overrun = reply(2, req, [Buffer.of(79, 40, 1, 2)]);
    expect(checkReply(overrun, req, SECRET)).toEqual({ ok: false, reason: "malformed" });
    expect(checkReply(good.subarray(0, good.length - 1), req, SECRET)).toEqual({ ok: false, reason: "malformed" });
    expect(checkReply(Buffer.alloc(10), req, SECRET)).toEqual({ ok: false, reason: "malformed" });
    // RFC 2865 §3: octets past Length are padding.
    expect(checkReply(Buffer.concat([good, Buffer.alloc(7)]), req, SECRET).ok).toBe(true);
  });

  it("decrypts MS-MPPE-Recv-Key and -Send-Key into the MSK (Recv ‖ Send)", () => {
    const recv = randomBytes(32);
    const send = randomBytes(32);
    const packet = reply(2, req, [
      vsa(17, encryptMppeKey(recv, req.authenticator, SECRET)),
      vsa(16, encryptMppeKey(send, req.authenticator, SECRET)),
      attr(79, Buffer.of(3, 1, 0, 4)),
    ]);
    const checked = checkReply(packet, req, SECRET);
    if (!checked.ok) throw new Error(checked.reason);
    expect(readReply(checked, req, SECRET).msk!.equals(Buffer.concat([recv, send]))).toBe(true);
  });

  it("follows RFC 2548 §2.4.2 block by block", () => {
    const key = randomBytes(32);
    const salt = Buffer.of(0x85, 0x21);
    const enc = encryptMppeKey(key, req.authenticator, SECRET, salt);
    // 1 length octet + 32 key octets, padded to 48.
    expect(enc.length).toBe(2 + 48);
    const b1 = createHash("md5").update(SECRET).update(req.authenticator).update(salt).digest();
    expect(enc[2] ^ b1[0]).toBe(32);
    expect(Buffer.from(Buffer.from(enc.subarray(3, 18)).map((c, i) => c ^ b1[i + 1])).equals(key.subarray(0, 15))).toBe(true);
    const b2 = createHash("md5").update(SECRET).update(enc.subarray(2, 18)).digest();
    expect(enc[18] ^ b2[0]).toBe(key[15]);
    expect(decryptMppeKey(enc, req.authenticator, SECRET)!.equals(key)).toBe(true);
    // Salt without its high bit, a ragged length: refused.
    expect(decryptMppeKey(Buffer.concat([Buffer.of(0x05, 0x21), enc.subarray(2)]), req.authenticator, SECRET)).toBeNull();
    expect(decryptMppeKey(enc.subarray(0, 40), req.authenticator, SECRET)).toBeNull();
  });
});
