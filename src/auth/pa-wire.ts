// RFC 7652 messages as the host builds and reads them: PA-Server and PA-Client messages
// (the AUTHENTICATION opcode), their options, and the AUTHENTICATION_TAG of common
// messages. The server reads only requests the codec (assembly/codec.ts) already validated;
// the client (pa-client.ts) reads responses with the same bounded walk, which stops at the
// first malformed option.
import * as W from "../wire.generated.js";
import { macSize, signAt, verifyMac } from "./pa-crypto.js";

export interface PaOption {
  code: number;
  data: Buffer;
}

/** Where the options of a PCP message of `opcode` start (header + opcode payload); -1: unknown opcode. */
export function optionsStart(opcode: number): number {
  switch (opcode & W.OPCODE_MASK) {
    case W.OP_ANNOUNCE:
      return W.ANNOUNCE_MIN_SIZE;
    case W.OP_MAP:
      return W.MAP_MIN_SIZE;
    case W.OP_PEER:
      return W.PEER_MIN_SIZE;
    case W.OP_AUTHENTICATION:
      return W.AUTH_MIN_SIZE;
  }
  return -1;
}

export interface OptionAt {
  code: number;
  /** Offset of the TLV header. */
  at: number;
  length: number;
}

/** The options' positions, or undefined if one runs past the message [6887 §7.3]. */
export function optionPositions(msg: Uint8Array): OptionAt[] | undefined {
  const start = msg.length >= 2 ? optionsStart(msg[1]) : -1;
  if (start < 0 || msg.length < start) return undefined;
  const out: OptionAt[] = [];
  let off = start;
  while (off + W.OPT_HEADER_SIZE <= msg.length) {
    const length = (msg[off + 2] << 8) | msg[off + 3];
    const size = W.OPT_HEADER_SIZE + ((length + 3) & ~3);
    if (off + size > msg.length) return undefined;
    out.push({ code: msg[off], at: off, length });
    off += size;
  }
  return off === msg.length ? out : undefined;
}

/**
 * Offset of the first option `code`'s TLV header, without allocating (the tag gate runs it
 * for every datagram of a source with authentication on); -1 if there is none or the
 * options are malformed, as optionPositions would say.
 */
export function optionOffset(msg: Uint8Array, code: number): number {
  const start = msg.length >= 2 ? optionsStart(msg[1]) : -1;
  if (start < 0 || msg.length < start) return -1;
  let found = -1;
  let off = start;
  while (off + W.OPT_HEADER_SIZE <= msg.length) {
    const size = W.OPT_HEADER_SIZE + ((((msg[off + 2] << 8) | msg[off + 3]) + 3) & ~3);
    if (off + size > msg.length) return -1;
    if (found < 0 && msg[off] === code) found = off;
    off += size;
  }
  return off === msg.length ? found : -1;
}

export function readOptions(msg: Uint8Array): PaOption[] | undefined {
  return optionPositions(msg)?.map((o) => ({ code: o.code, data: Buffer.from(msg.subarray(o.at + 4, o.at + 4 + o.length)) }));
}

export function option(code: number, data: Uint8Array): Buffer {
  const out = Buffer.alloc(W.OPT_HEADER_SIZE + ((data.length + 3) & ~3));
  out[0] = code;
  out.writeUInt16BE(data.length, 2);
  out.set(data, W.OPT_HEADER_SIZE);
  return out;
}

export function u32Option(code: number, value: number): Buffer {
  const data = Buffer.alloc(4);
  data.writeUInt32BE(value >>> 0);
  return option(code, data);
}

export interface Tagging {
  key: Uint8Array;
  keyId: number;
  mac: number;
}

export interface PaMessage {
  /** PA-Server (a response) or PA-Client (a request). */
  response: boolean;
  result: number;
  sessionId: number;
  sequence: number;
  /** Response: the Epoch Time; request: unused. */
  epoch?: number;
  /** Request: the client's 16-byte address [6887 §7.1]. */
  clientAddress?: Uint8Array;
  options: Buffer[];
}

/** A PA message; with `tag`, a PA_AUTHENTICATION_TAG is appended and signed [7652 §6.1]. */
export function encodePa(m: PaMessage, tag?: Tagging): Buffer {
  const tagOption = tag ? option(W.OPTION_PA_AUTHENTICATION_TAG, Buffer.alloc(W.PA_TAG_FIXED_SIZE + macSize(tag.mac))) : undefined;
  if (tag && tagOption) tagOption.writeUInt32BE(tag.keyId >>> 0, W.OPT_HEADER_SIZE);
  const head = Buffer.alloc(W.AUTH_MIN_SIZE);
  head[W.HDR_VERSION] = W.PCP_VERSION;
  head[W.HDR_OPCODE] = W.OP_AUTHENTICATION | (m.response ? W.R_BIT : 0);
  head[W.HDR_RESULT] = m.result; // PA-Client: the Reserved field's last byte [7652 §5.1]
  // Lifetime 0 on transmission [7652 §5.1].
  if (m.response) head.writeUInt32BE((m.epoch ?? 0) >>> 0, W.HDR_EPOCH);
  else if (m.clientAddress) head.set(m.clientAddress, W.HDR_CLIENT_ADDR);
  head.writeUInt32BE(m.sessionId >>> 0, W.PA_SESSION_ID);
  head.writeUInt32BE(m.sequence >>> 0, W.PA_SEQUENCE);
  const out = Buffer.concat([head, ...m.options, ...(tagOption ? [tagOption] : [])]);
  if (tag && tagOption) signAt(tag.mac, tag.key, out, out.length - tagOption.length + W.OPT_HEADER_SIZE + W.PA_TAG_FIXED_SIZE);
  return out;
}

export interface ParsedPa {
  result: number;
  sessionId: number;
  sequence: number;
  epoch: number;
  options: PaOption[];
}

export function parsePa(msg: Uint8Array): ParsedPa | undefined {
  if (msg.length < W.AUTH_MIN_SIZE || (msg[W.HDR_OPCODE] & W.OPCODE_MASK) !== W.OP_AUTHENTICATION) return undefined;
  const options = readOptions(msg);
  if (!options) return undefined;
  const b = Buffer.from(msg.buffer, msg.byteOffset, msg.length);
  return {
    result: b[W.HDR_RESULT],
    sessionId: b.readUInt32BE(W.PA_SESSION_ID),
    sequence: b.readUInt32BE(W.PA_SEQUENCE),
    epoch: b.readUInt32BE(W.HDR_EPOCH),
    options,
  };
}

export const first = (options: PaOption[], code: number): Buffer | undefined => options.find((o) => o.code === code)?.data;
export const all = (options: PaOption[], code: number): Buffer[] => options.filter((o) => o.code === code).map((o) => o.data);
export const u32Of = (data: Buffer | undefined): number | undefined => (data && data.length >= 4 ? data.readUInt32BE(0) : undefined);

/** Checks a PA message's PA_AUTHENTICATION_TAG with `key` (false if it has none) [7652 §6.2]. */
export function verifyPaTag(msg: Uint8Array, tag: Tagging): boolean {
  const at = optionPositions(msg)?.find((o) => o.code === W.OPTION_PA_AUTHENTICATION_TAG);
  if (!at || at.length < W.PA_TAG_FIXED_SIZE) return false;
  const b = Buffer.from(msg.buffer, msg.byteOffset, msg.length);
  if (b.readUInt32BE(at.at + W.OPT_HEADER_SIZE) !== tag.keyId >>> 0) return false;
  const dataAt = at.at + W.OPT_HEADER_SIZE + W.PA_TAG_FIXED_SIZE;
  return verifyMac(tag.mac, tag.key, msg, dataAt, at.length - W.PA_TAG_FIXED_SIZE);
}

export interface CommonTag {
  sessionId: number;
  sequence: number;
  keyId: number;
  /** Offset of the Authentication Data. */
  dataAt: number;
  dataLength: number;
}

/** The AUTHENTICATION_TAG of a common message (MAP, PEER, ANNOUNCE), if it has a well-formed one [7652 §5.4]. */
export function commonTag(msg: Uint8Array): CommonTag | undefined {
  // No tag (an untagged request from an `optional` source): nothing allocated.
  const at = optionOffset(msg, W.OPTION_AUTHENTICATION_TAG);
  if (at < 0) return undefined;
  const length = (msg[at + 2] << 8) | msg[at + 3];
  if (length < W.AUTH_TAG_FIXED_SIZE + 4) return undefined;
  const b = Buffer.from(msg.buffer, msg.byteOffset, msg.length);
  const d = at + W.OPT_HEADER_SIZE;
  return {
    sessionId: b.readUInt32BE(d + W.AUTH_TAG_SESSION_ID),
    sequence: b.readUInt32BE(d + W.AUTH_TAG_SEQUENCE),
    keyId: b.readUInt32BE(d + W.AUTH_TAG_KEY_ID),
    dataAt: d + W.AUTH_TAG_DATA,
    dataLength: length - W.AUTH_TAG_FIXED_SIZE,
  };
}

/** `msg` without its AUTHENTICATION_TAG, if it has one. */
export function withoutCommonTag(msg: Uint8Array): Buffer {
  const old = optionPositions(msg)?.find((o) => o.code === W.OPTION_AUTHENTICATION_TAG);
  const body = Buffer.from(msg);
  return old ? Buffer.concat([body.subarray(0, old.at), body.subarray(old.at + W.OPT_HEADER_SIZE + ((old.length + 3) & ~3))]) : body;
}

/**
 * `msg` without its AUTHENTICATION_TAG (an error reply copies the request's [6887 §8.2]),
 * with a fresh tag appended and signed [7652 §6.1]; undefined if it would exceed 1100 bytes.
 * One buffer per reply, written once (it runs for every reply of a tagged request).
 */
export function withCommonTag(msg: Uint8Array, t: Tagging, sessionId: number, sequence: number): Buffer | undefined {
  const old = optionOffset(msg, W.OPTION_AUTHENTICATION_TAG);
  const oldSize = old < 0 ? 0 : W.OPT_HEADER_SIZE + ((((msg[old + 2] << 8) | msg[old + 3]) + 3) & ~3);
  const size = macSize(t.mac);
  const dataLength = W.AUTH_TAG_FIXED_SIZE + size;
  const body = msg.length - oldSize;
  const out = Buffer.alloc(body + W.OPT_HEADER_SIZE + ((dataLength + 3) & ~3));
  if (out.length > W.PCP_MAX_MESSAGE) return undefined;
  if (old < 0) out.set(msg, 0);
  else {
    out.set(msg.subarray(0, old), 0);
    out.set(msg.subarray(old + oldSize), old);
  }
  out[body] = W.OPTION_AUTHENTICATION_TAG;
  out.writeUInt16BE(dataLength, body + 2);
  const d = body + W.OPT_HEADER_SIZE;
  out.writeUInt32BE(sessionId >>> 0, d + W.AUTH_TAG_SESSION_ID);
  out.writeUInt32BE(sequence >>> 0, d + W.AUTH_TAG_SEQUENCE);
  out.writeUInt32BE(t.keyId >>> 0, d + W.AUTH_TAG_KEY_ID);
  signAt(t.mac, t.key, out, d + W.AUTH_TAG_DATA);
  return out;
}

// ---- EAP [RFC 3748 §4] ----
export const EAP_REQUEST = 1;
export const EAP_RESPONSE = 2;
export const EAP_SUCCESS = 3;
export const EAP_FAILURE = 4;
export const EAP_TYPE_IDENTITY = 1;

/** EAP-Request/Identity: the pass-through authenticator's first request [RFC 3748 §5.1]. */
export function eapIdentityRequest(identifier: number): Buffer {
  return Buffer.from([EAP_REQUEST, identifier & 0xff, 0, 5, EAP_TYPE_IDENTITY]);
}

export function eapFailure(identifier: number): Buffer {
  return Buffer.from([EAP_FAILURE, identifier & 0xff, 0, 4]);
}

// ---- EAP messages longer than a PA message [RFC 7652 §6.6] ----
// "Divided into multiple sections and sent within different PA messages": each section is the
// EAP_PAYLOAD of one PA message with its own sequence number; the receiver answers every
// section but the last with a PA-Acknowledgement (RECEIVED_PAK), which asks for the next one.
// The RFC gives sections no header of their own: the first starts with the EAP header, whose
// Length (RFC 3748 §4) exceeds the section; the receiver collects octets until it has Length.

/** Octets a PA_AUTHENTICATION_TAG adds for a MAC algorithm [7652 §5.5]. */
export const paTagSize = (mac: number): number => W.OPT_HEADER_SIZE + W.PA_TAG_FIXED_SIZE + macSize(mac);

/**
 * `eap` cut into sections that fit PA messages whose other parts (header, options, the
 * EAP_PAYLOAD option header, the tag) take `firstOverhead` octets in the first message and
 * `overhead` in the others. One section when it fits.
 */
export function eapSections(eap: Uint8Array, firstOverhead: number, overhead: number): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  do {
    const room = (W.PCP_MAX_MESSAGE - (out.length === 0 ? firstOverhead : overhead)) & ~3;
    if (room <= 0) throw new RangeError(`no room for EAP data in a PA message (overhead ${overhead})`);
    out.push(Buffer.from(eap.subarray(off, off + room)));
    off += room;
  } while (off < eap.length);
  return out;
}

/** Reassembles the sections of one EAP message [7652 §6.6]. */
export class EapReassembly {
  private parts: Buffer[] = [];
  private have = 0;
  private total = 0;

  /** A message is being collected (the next PA message continues it). */
  get active(): boolean {
    return this.parts.length > 0;
  }

  /**
   * One EAP_PAYLOAD: the whole EAP message when complete; "more" when sections are missing
   * (acknowledge it); "bad" when the EAP framing is wrong (a header shorter than 4 octets or
   * Length below 4, or sections running past Length): the collection is dropped.
   */
  add(data: Uint8Array): Buffer | "more" | "bad" {
    if (!this.active) {
      if (data.length < 4) return "bad";
      const length = (data[2] << 8) | data[3];
      if (length < 4) return "bad";
      if (length <= data.length) return Buffer.from(data.subarray(0, length)); // the rest is padding
      this.total = length;
    }
    this.parts.push(Buffer.from(data));
    this.have += data.length;
    if (this.have < this.total) return "more";
    const whole = Buffer.concat(this.parts);
    const fits = this.have === this.total;
    this.reset();
    return fits ? whole : "bad";
  }

  reset(): void {
    this.parts = [];
    this.have = 0;
    this.total = 0;
  }
}
