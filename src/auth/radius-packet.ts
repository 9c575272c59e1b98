// RADIUS packets for the EAP relay (RFC 2865, RFC 3579): Access-Request out, Access-
// Challenge/Accept/Reject in. The npm `radius` package (1.1.4) encodes requests — attribute
// dictionary, random Request Authenticator, the Message-Authenticator HMAC-MD5 on requests —
// and decodes the standard attributes of replies. What it lacks is filled here (docs/auth-aaa.md
// lists it): EAP-Message split into 253-octet attributes and reassembled in order (it writes a
// wrapping length octet instead), the Response Authenticator and Message-Authenticator checks
// on the bytes (its verify_response compares digests as UTF-8 strings, which is lossy, and
// re-encodes the reply), attribute-length validation, and the MS-MPPE-Send/Recv-Key
// decryption of RFC 2548 §2.4.2–2.4.3 (it has no Microsoft dictionary and no "encrypt=2").
import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import radius from "radius";

/** RFC 2865 §3 / RFC 3579 §2.1 codes. */
export const RadiusCode = { ACCESS_REQUEST: 1, ACCESS_ACCEPT: 2, ACCESS_REJECT: 3, ACCESS_CHALLENGE: 11 } as const;
/** Attribute types this module reads by number (RFC 2865 §5, RFC 3579 §3). */
export const Attr = { USER_NAME: 1, STATE: 24, VENDOR_SPECIFIC: 26, SESSION_TIMEOUT: 27, EAP_MESSAGE: 79, MESSAGE_AUTHENTICATOR: 80 } as const;
/** RFC 2548 §2.4.2–2.4.3: Microsoft's vendor id and the MPPE key vendor types. */
const MICROSOFT = 311;
const MS_MPPE_SEND_KEY = 16;
const MS_MPPE_RECV_KEY = 17;

const HEADER = 20;
const AUTH_OFFSET = 4;
/** RFC 2865 §3: a packet is at most 4096 octets; an attribute value at most 253. */
export const MAX_PACKET = 4096;
export const MAX_ATTRIBUTE_VALUE = 253;

export interface AccessRequestFields {
  identifier: number;
  userName: string | null;
  nasIdentifier: string;
  callingStationId?: string;
  framedMtu?: number;
  state: Uint8Array | null;
  eap: Uint8Array;
}

export interface EncodedRequest {
  bytes: Buffer;
  /** The random Request Authenticator (RFC 2865 §3), needed to check the reply and decrypt keys. */
  authenticator: Buffer;
}

/** RFC 3579 §3.1: an EAP packet longer than 253 octets spans several EAP-Message attributes, in order. */
export function splitEapMessage(eap: Uint8Array): Buffer[] {
  const chunks: Buffer[] = [];
  for (let off = 0; off < eap.length; off += MAX_ATTRIBUTE_VALUE) {
    chunks.push(Buffer.from(eap.subarray(off, Math.min(off + MAX_ATTRIBUTE_VALUE, eap.length))));
  }
  return chunks;
}

/** An Access-Request carrying one EAP message, with Message-Authenticator (RFC 3579 §3.2). */
export function encodeAccessRequest(fields: AccessRequestFields, secret: string): EncodedRequest {
  const attributes: unknown[][] = [];
  // RFC 3579 §2.1: User-Name is the EAP-Response/Identity's Type-Data, in every Access-Request.
  if (fields.userName) attributes.push(["User-Name", fields.userName]);
  attributes.push(["NAS-Identifier", fields.nasIdentifier]);
  if (fields.callingStationId) attributes.push(["Calling-Station-Id", fields.callingStationId]);
  // RFC 3579 §2.4: the largest EAP packet the NAS can carry to the peer.
  if (fields.framedMtu !== undefined) attributes.push(["Framed-MTU", fields.framedMtu]);
  // RFC 2865 §5.24: the State of the previous Access-Challenge, unmodified.
  if (fields.state) attributes.push([Attr.STATE, Buffer.from(fields.state)]);
  for (const chunk of splitEapMessage(fields.eap)) attributes.push([Attr.EAP_MESSAGE, chunk]);
  const bytes = radius.encode({
    code: "Access-Request",
    secret,
    identifier: fields.identifier,
    attributes,
    add_message_authenticator: true,
  });
  if (bytes.length > MAX_PACKET) throw new RangeError(`Access-Request of ${bytes.length} octets exceeds ${MAX_PACKET}`);
  return { bytes, authenticator: Buffer.from(bytes.subarray(AUTH_OFFSET, AUTH_OFFSET + 16)) };
}

export interface RawAttribute {
  type: number;
  /** Offset of the value in the packet. */
  offset: number;
  value: Buffer;
}

/** The attributes of `packet` (length already checked), or null when one overruns or is shorter than 2. */
export function walkAttributes(packet: Buffer, length: number): RawAttribute[] | null {
  const out: RawAttribute[] = [];
  let off = HEADER;
  while (off < length) {
    if (off + 2 > length) return null;
    const len = packet[off + 1];
    if (len < 2 || off + len > length) return null;
    out.push({ type: packet[off], offset: off + 2, value: packet.subarray(off + 2, off + len) });
    off += len;
  }
  return out;
}

export type ReplyCheck =
  | { ok: true; code: number; attributes: RawAttribute[]; packet: Buffer }
  | { ok: false; reason: "malformed" | "bad-authenticator" | "bad-message-authenticator" | "no-message-authenticator" };

/**
 * RFC 2865 §3 and RFC 3579 §3.2 checks of a reply to `request`: the length, the attribute
 * walk, the Response Authenticator MD5(Code+ID+Length+RequestAuth+Attributes+Secret), and one
 * Message-Authenticator, HMAC-MD5 over the reply with the Request Authenticator in place and
 * itself zeroed. A reply to an EAP request must carry one (RFC 3579 §3.2: else discarded).
 */
export function checkReply(datagram: Buffer, request: EncodedRequest, secret: string): ReplyCheck {
  if (datagram.length < HEADER) return { ok: false, reason: "malformed" };
  const length = datagram.readUInt16BE(2);
  // RFC 2865 §3: octets beyond Length are padding; a shorter datagram is silently discarded.
  if (length < HEADER || length > MAX_PACKET || datagram.length < length) return { ok: false, reason: "malformed" };
  const packet = Buffer.from(datagram.subarray(0, length));
  const attributes = walkAttributes(packet, length);
  if (!attributes) return { ok: false, reason: "malformed" };
  const received = Buffer.from(packet.subarray(AUTH_OFFSET, AUTH_OFFSET + 16));
  const expected = createHash("md5")
    .update(packet.subarray(0, AUTH_OFFSET))
    .update(request.authenticator)
    .update(packet.subarray(HEADER))
    .update(secret)
    .digest();
  if (!timingSafeEqual(received, expected)) return { ok: false, reason: "bad-authenticator" };
  const mas = attributes.filter((a) => a.type === Attr.MESSAGE_AUTHENTICATOR);
  if (mas.length !== 1) return { ok: false, reason: "no-message-authenticator" };
  const ma = mas[0];
  if (ma.value.length !== 16) return { ok: false, reason: "malformed" };
  const gotMa = Buffer.from(ma.value);
  const zeroed = Buffer.from(packet);
  request.authenticator.copy(zeroed, AUTH_OFFSET);
  zeroed.fill(0, ma.offset, ma.offset + 16);
  const wantMa = createHmac("md5", secret).update(zeroed).digest();
  if (!timingSafeEqual(gotMa, wantMa)) return { ok: false, reason: "bad-message-authenticator" };
  return { ok: true, code: packet[0], attributes, packet };
}

export interface ReplyContents {
  code: number;
  identifier: number;
  /** The EAP-Message attributes concatenated in order (RFC 3579 §3.1), or null. */
  eap: Buffer | null;
  state: Buffer | null;
  sessionTimeoutS: number | null;
  /** MS-MPPE-Recv-Key ‖ MS-MPPE-Send-Key (RFC 3748/5216 MSK order), when both are present and decrypt. */
  msk: Buffer | null;
}

/** The relay's view of a checked reply: the package decodes the standard attributes, MPPE keys are ours. */
export function readReply(checked: Extract<ReplyCheck, { ok: true }>, request: EncodedRequest, secret: string): ReplyContents {
  const decoded = radius.decode({ packet: checked.packet, secret });
  const eapParts = checked.attributes.filter((a) => a.type === Attr.EAP_MESSAGE).map((a) => a.value);
  const state = decoded.attributes.State;
  const timeout = decoded.attributes["Session-Timeout"];
  let send: Buffer | null = null;
  let recv: Buffer | null = null;
  for (const a of checked.attributes) {
    if (a.type !== Attr.VENDOR_SPECIFIC || a.value.length < 4 || a.value.readUInt32BE(0) !== MICROSOFT) continue;
    // RFC 2865 §5.26 / RFC 2548 §2: Vendor-Id, then Vendor-Type, Vendor-Length, value.
    for (let off = 4; off + 2 <= a.value.length; ) {
      const type = a.value[off];
      const len = a.value[off + 1];
      if (len < 2 || off + len > a.value.length) break;
      const value = a.value.subarray(off + 2, off + len);
      if (type === MS_MPPE_SEND_KEY) send = decryptMppeKey(value, request.authenticator, secret);
      if (type === MS_MPPE_RECV_KEY) recv = decryptMppeKey(value, request.authenticator, secret);
      off += len;
    }
  }
  return {
    code: checked.code,
    identifier: checked.packet[1],
    eap: eapParts.length ? Buffer.concat(eapParts) : null,
    state: Buffer.isBuffer(state) ? state : typeof state === "string" ? Buffer.from(state) : null,
    sessionTimeoutS: typeof timeout === "number" ? timeout : null,
    msk: send && recv ? Buffer.concat([recv, send]) : null,
  };
}

/**
 * RFC 2548 §2.4.2: Salt (2 octets, high bit set) ‖ String, where String is the key-length octet,
 * the key and zero padding to a multiple of 16, encrypted as b(1) = MD5(S + R + A),
 * c(1) = p(1) xor b(1), b(i) = MD5(S + c(i-1)). R: the Access-Request's authenticator.
 * Null when the field is malformed (the Accept then carries no usable MSK).
 */
export function decryptMppeKey(value: Buffer, requestAuthenticator: Buffer, secret: string): Buffer | null {
  if (value.length < 2 + 16 || (value.length - 2) % 16 !== 0 || (value[0] & 0x80) === 0) return null;
  const salt = value.subarray(0, 2);
  const cipher = value.subarray(2);
  const plain = Buffer.alloc(cipher.length);
  let chain: Buffer = Buffer.concat([requestAuthenticator, salt]);
  for (let off = 0; off < cipher.length; off += 16) {
    const b = createHash("md5").update(secret).update(chain).digest();
    for (let i = 0; i < 16; i++) plain[off + i] = cipher[off + i] ^ b[i];
    chain = cipher.subarray(off, off + 16);
  }
  const keyLength = plain[0];
  if (keyLength === 0 || keyLength > plain.length - 1) return null;
  return plain.subarray(1, 1 + keyLength);
}

/** RFC 2548 §2.4.2 encryption, the inverse of decryptMppeKey (tests build replies with it). */
export function encryptMppeKey(key: Uint8Array, requestAuthenticator: Buffer, secret: string, salt: Buffer = saltOf()): Buffer {
  const plainLength = Math.ceil((key.length + 1) / 16) * 16;
  const plain = Buffer.alloc(plainLength);
  plain[0] = key.length;
  plain.set(key, 1);
  const cipher = Buffer.alloc(plainLength);
  let chain: Buffer = Buffer.concat([requestAuthenticator, salt]);
  for (let off = 0; off < plainLength; off += 16) {
    const b = createHash("md5").update(secret).update(chain).digest();
    for (let i = 0; i < 16; i++) cipher[off + i] = plain[off + i] ^ b[i];
    chain = cipher.subarray(off, off + 16);
  }
  return Buffer.concat([salt, cipher]);
}

function saltOf(): Buffer {
  const salt = randomBytes(2);
  salt[0] |= 0x80;
  return salt;
}
