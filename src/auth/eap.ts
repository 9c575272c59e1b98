// EAP packets (RFC 3748 §4): Code, Identifier, Length, then for Request/Response a Type and
// its data. Used by the EAP-TTLS peer and by the relay (which reads the Identity a peer gives).

/** RFC 3748 §4. */
export const EapCode = { REQUEST: 1, RESPONSE: 2, SUCCESS: 3, FAILURE: 4 } as const;
/** RFC 3748 §5 and the IANA registry: the types this project speaks. */
export const EapType = { IDENTITY: 1, NOTIFICATION: 2, NAK: 3, MD5: 4, TTLS: 21 } as const;

export interface EapPacket {
  code: number;
  identifier: number;
  /** Request/Response only; null for Success/Failure. */
  type: number | null;
  /** The Type-Data (after the type octet); empty for Success/Failure. */
  data: Uint8Array;
}

/** A well-formed EAP packet, or null (RFC 3748 §4: Length larger than the datagram, too short, unknown code). */
export function parseEap(bytes: Uint8Array): EapPacket | null {
  if (bytes.length < 4) return null;
  const code = bytes[0];
  const length = (bytes[2] << 8) | bytes[3];
  // RFC 3748 §4.1: octets beyond Length are padding and ignored; fewer: discarded.
  if (length < 4 || length > bytes.length) return null;
  if (code === EapCode.SUCCESS || code === EapCode.FAILURE) {
    return length === 4 ? { code, identifier: bytes[1], type: null, data: new Uint8Array(0) } : null;
  }
  if (code !== EapCode.REQUEST && code !== EapCode.RESPONSE) return null;
  if (length < 5) return null;
  return { code, identifier: bytes[1], type: bytes[4], data: bytes.subarray(5, length) };
}

/** Encodes a Request/Response with a type, or a Success/Failure when `type` is null. */
export function encodeEap(code: number, identifier: number, type: number | null, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const length = type === null ? 4 : 5 + data.length;
  if (length > 0xffff) throw new RangeError(`EAP packet of ${length} octets`);
  const out = new Uint8Array(length);
  out[0] = code;
  out[1] = identifier & 0xff;
  out[2] = length >> 8;
  out[3] = length & 0xff;
  if (type !== null) {
    out[4] = type;
    out.set(data, 5);
  }
  return out;
}

/** RFC 3748 §5.1: the EAP-Response/Identity with identifier `id`. */
export function identityResponse(id: number, identity: string): Uint8Array {
  return encodeEap(EapCode.RESPONSE, id, EapType.IDENTITY, new TextEncoder().encode(identity));
}

/** RFC 3748 §5.1: an EAP-Request/Identity (what an authenticator sends first). */
export function identityRequest(id: number): Uint8Array {
  return encodeEap(EapCode.REQUEST, id, EapType.IDENTITY);
}

/** The identity an EAP-Response/Identity carries, or null when `eap` is not one. */
export function identityOf(eap: Uint8Array): string | null {
  const p = parseEap(eap);
  if (!p || p.code !== EapCode.RESPONSE || p.type !== EapType.IDENTITY) return null;
  return new TextDecoder().decode(p.data);
}
