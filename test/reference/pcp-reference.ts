/**
 * Independent, deliberately slow and simple reference parser for PCP (RFC 6887)
 * and NAT-PMP (RFC 6886), written from docs/codec.md and the spec digest
 * (/work/shared/spec/pcp-digest.md). It exists only to be compared differentially
 * against the AssemblyScript codec, so it imports NOTHING from src/ or assembly/:
 * every number below is a literal taken from the RFCs / codec.md.
 *
 * Style rules: explicit byte reads, one function per validation row of the
 * codec.md table, no cleverness. Speed is irrelevant.
 *
 * Decisions taken where codec.md leaves room (see also the golden table):
 *  D1. "Only INGRESS_THIRD_PARTY" datagrams: a THIRD_PARTY option counts as "seen"
 *      as soon as the option walk *reaches* an option whose code is 1 (before any
 *      of the per-option tests on it). Any outcome decided before that point
 *      (drops, rows 2–11, walk errors on earlier options) becomes DROP_INTERFACE;
 *      any outcome decided at or after it stands.
 *  D2. NAT-PMP "other opcode < 128" reply for a 2- or 3-byte request: the reply
 *      is zero-extended to 4 bytes so that the 16-bit result code fits.
 *  D3. Duplicate detection (walk step 5) counts occurrences, not recorded
 *      options: a second DESCRIPTION is MALFORMED_OPTION even if the first one was
 *      invalid UTF-8 (and therefore not recorded).
 *  D4. filterCount counts every FILTER option that passed the walk, including
 *      prefix-length-0 ("remove all") ones.
 *  D5. referenceSuccess never echoes a DESCRIPTION that is invalid UTF-8 / has NUL
 *      even if its bit is in echoMask ("never echoed", codec.md walk step 6).
 *
 * RFC 7652 (PCP authentication), written from RFC 7652 §5, §6.1, §6.6, §7 and
 * docs/auth.md "Codec" — only for sources whose ingress has bit 4 (authentication on):
 *  A1. Opcode 3 (AUTHENTICATION) is known, minimum 32 bytes (24 + Session ID +
 *      Sequence Number, §5.2); options start at 32. Elsewhere opcode 3 stays unknown
 *      (UNSUPP_OPCODE) and options 4–12 stay unknown mandatory options (UNSUPP_OPTION).
 *  A2. Option table (§7.1–§7.9): AUTHENTICATION_TAG (5) valid for MAP, PEER, ANNOUNCE;
 *      4, 6–12 valid for AUTHENTICATION only; invalid for the opcode → MALFORMED_OPTION
 *      (all are mandatory codes < 128).
 *  A3. Lengths: NONCE, PRF, MAC_ALGORITHM, RECEIVED_PAK exactly 4; AUTHENTICATION_TAG
 *      12 fixed + at least one 32-bit word of MAC, a multiple of 4 (§5.4 "MUST end on a
 *      32-bit boundary"); PA_AUTHENTICATION_TAG 4 fixed + at least one word, a multiple
 *      of 4 (§5.5); EAP_PAYLOAD at least 1 byte — a whole EAP packet or one section of
 *      one (§6.6), whose framing only the stateful host can judge; SESSION_LIFETIME and
 *      ID_INDICATOR are response-only (§7.7, §7.9): MALFORMED_OPTION in a request.
 *  A4. PRF and MAC_ALGORITHM may repeat ("as many as fit", §7.5, §7.6); every other
 *      RFC 7652 option at most once (§7): a second → MALFORMED_OPTION.
 *  A5. The tag is appended at the end of the message (§6.1): any option after an
 *      AUTHENTICATION_TAG or PA_AUTHENTICATION_TAG → MALFORMED_OPTION (checked right
 *      after the option's bounds, before its code is looked at).
 *  A6. AUTHENTICATION request byte 3 is the PA-Client result code (§5.1): INITIATION 14,
 *      AUTHENTICATION_FAILED 16, AUTHENTICATION_SUCCEEDED 17, AUTHORIZATION_FAILED 18,
 *      SESSION_TERMINATED 19, AUTHENTICATION_REPLY 23, or 0 in a PA-Acknowledgement
 *      (RECEIVED_PAK present); anything else → MALFORMED_REQUEST (after rows 12–15).
 *      A valid one → verdict "auth" (the host runs the exchange).
 *  A7. After the opcode rules, for MAP/PEER/ANNOUNCE: host flag 8 (the tag names no SA)
 *      or a tag the host did not verify (flag 4 missing) → UNKNOWN_SESSION_ID (§3.2);
 *      ANNOUNCE or a verified request → go on; MAP/PEER with ingress bit 8 (bit 16 when
 *      it carries THIRD_PARTY) → AUTHENTICATION_REQUIRED (§3.1.2).
 *  A8. AUTHENTICATION_REQUIRED and UNKNOWN_SESSION_ID take the short error lifetime.
 *  A9. A THIRD_PARTY-only source's AUTHENTICATION request is answered like a request
 *      carrying THIRD_PARTY (a proxy authenticates itself).
 */

// ---------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------

export interface RefConfig {
  flags: number; // bit1 MAP enabled, bit2 PEER enabled, bit4 overload→NO_RESOURCES reply (else drop), bit8 NAT-PMP enabled, bit16 NAT-PMP silent
  enabledOptions: number; // option bits: 1 THIRD_PARTY, 2 PREFER_FAILURE, 4 FILTER, 8 THIRD_PARTY_ID, 16 DESCRIPTION, 32 PREFIX64, 64 PORT_SET, 128 CHECKPOINT_REQUIRED
  shortErrorLifetime: number;
  longErrorLifetime: number;
  thirdPartyIdMaxLen: number;
}

export const DEFAULT_REF_CONFIG: RefConfig = {
  flags: 11, // MAP | PEER | NAT-PMP enabled; overload → drop
  enabledOptions: 7, // THIRD_PARTY | PREFER_FAILURE | FILTER
  shortErrorLifetime: 30, // RFC 6887 §7.4 (RECOMMENDED 30 s)
  longErrorLifetime: 1800, // RFC 6887 §7.4 (RECOMMENDED 30 min)
  thirdPartyIdMaxLen: 16, // codec.md walk step 6
};

export interface RefInput {
  data: Uint8Array; // the whole datagram (may be up to 65535 bytes)
  src: Uint8Array; // 16-byte source address (IPv4 as ::ffff:a.b.c.d)
  ingress: number; // bit1 SUBSCRIBER, bit2 THIRD_PARTY trusted, bit4 authentication on, bit8 required, bit16 required with THIRD_PARTY
  overloaded: boolean;
  hostFlags?: number; // bit4 the host verified the AUTHENTICATION_TAG, bit8 the tag names no SA (A7)
  epoch: number; // u32 epoch time written into replies
}

export type RefOutcome =
  | { verdict: "drop"; dropReason: number }
  | { verdict: "auth"; options: number }
  | { verdict: "reply"; result: number; response: Uint8Array; parsed: boolean }
  | {
      verdict: "parsed";
      version: number;
      opcode: number;
      lifetime: number;
      options: number;
      parseFlags: number;
      filterCount: number;
    };

// ---------------------------------------------------------------------------
// Literal constants (own copies; deliberately not imported)
// ---------------------------------------------------------------------------

// Config flags
const CFG_MAP_ENABLED = 1;
const CFG_PEER_ENABLED = 2;
const CFG_OVERLOAD_REPLY = 4;
const CFG_NATPMP_ENABLED = 8;
const CFG_NATPMP_SILENT = 16;

// Ingress bits
const INGRESS_SUBSCRIBER = 1;
const INGRESS_THIRD_PARTY = 2;
const INGRESS_AUTH = 4;
const INGRESS_AUTH_REQUIRED = 8;
const INGRESS_AUTH_TP_REQUIRED = 16;

// Host flags (A7)
const HOST_AUTHENTICATED = 4;
const HOST_AUTH_UNKNOWN_SESSION = 8;

// Drop reasons
const DROP_TOO_SHORT = 1;
const DROP_RESPONSE = 2;
const DROP_SHORT_HEADER = 3;
const DROP_INTERFACE = 4;
const DROP_OVERLOAD = 5;
const DROP_NATPMP_SHORT = 6;
const DROP_NATPMP_SILENT = 7;

// Parse flags
const PARSE_OK = 1;
const PARSE_DESCRIPTION_INVALID = 2;
const PARSE_FILTER_CLEAR = 4;

// PCP result codes (RFC 6887 §7.4, RFC 7843 §4.1)
const SUCCESS = 0;
const UNSUPP_VERSION = 1;
const NOT_AUTHORIZED = 2;
const MALFORMED_REQUEST = 3;
const UNSUPP_OPCODE = 4;
const UNSUPP_OPTION = 5;
const MALFORMED_OPTION = 6;
const NETWORK_FAILURE = 7;
const NO_RESOURCES = 8;
const USER_EX_QUOTA = 10;
const INITIATION = 14; // RFC 7652 §7
const AUTHENTICATION_REQUIRED = 15;
const AUTHENTICATION_FAILED = 16;
const AUTHENTICATION_SUCCEEDED = 17;
const AUTHORIZATION_FAILED = 18;
const SESSION_TERMINATED = 19;
const UNKNOWN_SESSION_ID = 20;
const AUTHENTICATION_REPLY = 23;
const THIRD_PARTY_MISSING_OPTION = 25;
const UNSUPP_THIRD_PARTY_ID_LENGTH = 26;

// NAT-PMP result code (RFC 6886 §3.5)
const NATPMP_UNSUPP_OPCODE = 5;

// PCP opcodes (RFC 6887 §19.2)
const OP_ANNOUNCE = 0;
const OP_MAP = 1;
const OP_PEER = 2;
const OP_AUTHENTICATION = 3; // RFC 7652 §5.2

// Option codes
const OPT_THIRD_PARTY = 1; // RFC 6887 §13.1
const OPT_PREFER_FAILURE = 2; // RFC 6887 §13.2
const OPT_FILTER = 3; // RFC 6887 §13.3
const OPT_NONCE = 4; // RFC 7652 §5.3
const OPT_AUTHENTICATION_TAG = 5; // §5.4
const OPT_PA_AUTHENTICATION_TAG = 6; // §5.5
const OPT_EAP_PAYLOAD = 7; // §5.6
const OPT_PRF = 8; // §5.7
const OPT_MAC_ALGORITHM = 9; // §5.8
const OPT_SESSION_LIFETIME = 10; // §5.9
const OPT_RECEIVED_PAK = 11; // §5.10
const OPT_ID_INDICATOR = 12; // §5.11
const OPT_THIRD_PARTY_ID = 13; // RFC 7843
const OPT_DESCRIPTION = 128; // RFC 7220
const OPT_PREFIX64 = 129; // RFC 7225
const OPT_PORT_SET = 130; // RFC 7753
const OPT_CHECKPOINT_REQUIRED = 192; // RFC 7767

// Option bits (RefConfig.enabledOptions, RefOutcome.options, echoMask)
const BIT_THIRD_PARTY = 1;
const BIT_PREFER_FAILURE = 2;
const BIT_FILTER = 4;
const BIT_THIRD_PARTY_ID = 8;
const BIT_DESCRIPTION = 16;
const BIT_PREFIX64 = 32;
const BIT_PORT_SET = 64;
const BIT_CHECKPOINT_REQUIRED = 128;
// RFC 7652 options (never switched by enabledOptions: on with ingress bit 4)
const BIT_AUTHENTICATION_TAG = 256;
const BIT_NONCE = 512;
const BIT_PA_AUTHENTICATION_TAG = 1024;
const BIT_EAP_PAYLOAD = 2048;
const BIT_PRF = 4096;
const BIT_MAC_ALGORITHM = 8192;
const BIT_SESSION_LIFETIME = 16384;
const BIT_RECEIVED_PAK = 32768;
const BIT_ID_INDICATOR = 65536;

// Sizes
const MAX_PCP_LEN = 1100; // RFC 6887 §7
const HEADER_LEN = 24; // RFC 6887 §7.1
const MAP_LEN = 60; // RFC 6887 §11.1
const PEER_LEN = 80; // RFC 6887 §12.1
const AUTH_LEN = 32; // RFC 7652 §5.2
const MAX_WIRE_LEN = 65535;

// ---------------------------------------------------------------------------
// Byte helpers
// ---------------------------------------------------------------------------

function u8(d: Uint8Array, i: number): number {
  return d[i];
}

function u16(d: Uint8Array, i: number): number {
  return d[i] * 256 + d[i + 1];
}

function u32(d: Uint8Array, i: number): number {
  return ((d[i] * 256 + d[i + 1]) * 256 + d[i + 2]) * 256 + d[i + 3];
}

function put16(d: Uint8Array, i: number, v: number): void {
  d[i] = Math.floor(v / 256) % 256;
  d[i + 1] = v % 256;
}

function put32(d: Uint8Array, i: number, v: number): void {
  const x = v >>> 0;
  d[i] = (x >>> 24) & 255;
  d[i + 1] = (x >>> 16) & 255;
  d[i + 2] = (x >>> 8) & 255;
  d[i + 3] = x & 255;
}

function roundUp4(n: number): number {
  let r = n;
  while (r % 4 !== 0) r = r + 1;
  return r;
}

function sameBytes(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, n: number): boolean {
  for (let i = 0; i < n; i++) {
    if (a[aOff + i] !== b[bOff + i]) return false;
  }
  return true;
}

/** RFC 6887 §5: v4-mapped = 80 zero bits, 16 one bits (whole 96-bit prefix compared). */
function isV4Mapped(d: Uint8Array, off: number): boolean {
  for (let i = 0; i < 10; i++) {
    if (d[off + i] !== 0) return false;
  }
  return d[off + 10] === 0xff && d[off + 11] === 0xff;
}

function allZero(d: Uint8Array, off: number, n: number): boolean {
  for (let i = 0; i < n; i++) {
    if (d[off + i] !== 0) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Reply builders (codec.md "Replies")
// ---------------------------------------------------------------------------

/**
 * codec.md "Error reply": the request's first min(len, 1100) bytes, zero-padded
 * to a multiple of 4 (at least `minLen`); byte 0 = 2; byte 1 |= 0x80; byte 2 = 0;
 * byte 3 = result; lifetime; epoch; bytes 12–23 zeroed only if the request parsed.
 */
function buildErrorReply(data: Uint8Array, len: number, result: number, lifetime: number, epoch: number, parsed: boolean, minLen: number): Uint8Array {
  const copyLen = Math.min(len, MAX_PCP_LEN);
  let outLen = roundUp4(copyLen);
  if (outLen < minLen) outLen = minLen;
  const out = new Uint8Array(outLen); // zero-filled: provides the padding / zero extension
  for (let i = 0; i < copyLen; i++) out[i] = data[i];
  out[0] = 2;
  out[1] = out[1] | 0x80;
  out[2] = 0;
  out[3] = result;
  put32(out, 4, lifetime);
  put32(out, 8, epoch);
  if (parsed) {
    for (let i = 12; i < 24; i++) out[i] = 0;
  }
  return out;
}

/** RFC 6887 §7.4 lifetime classes: short for NETWORK_FAILURE, NO_RESOURCES, USER_EX_QUOTA (and A8). */
function errorLifetime(result: number, config: RefConfig): number {
  if (
    result === NETWORK_FAILURE ||
    result === NO_RESOURCES ||
    result === USER_EX_QUOTA ||
    result === AUTHENTICATION_REQUIRED ||
    result === UNKNOWN_SESSION_ID
  ) {
    return config.shortErrorLifetime;
  }
  return config.longErrorLifetime;
}

function errorOutcome(data: Uint8Array, len: number, result: number, epoch: number, config: RefConfig, parsed: boolean, minLen: number): RefOutcome {
  return {
    verdict: "reply",
    result,
    response: buildErrorReply(data, len, result, errorLifetime(result, config), epoch, parsed, minLen),
    parsed,
  };
}

function drop(reason: number): RefOutcome {
  return { verdict: "drop", dropReason: reason };
}

// ---------------------------------------------------------------------------
// Option table (codec.md "Option walk", digest §1.9.3)
// ---------------------------------------------------------------------------

/** Bit of an RFC 7652 option code (4–12), or 0. */
function authOptionBit(code: number): number {
  if (code === OPT_NONCE) return BIT_NONCE;
  if (code === OPT_AUTHENTICATION_TAG) return BIT_AUTHENTICATION_TAG;
  if (code === OPT_PA_AUTHENTICATION_TAG) return BIT_PA_AUTHENTICATION_TAG;
  if (code === OPT_EAP_PAYLOAD) return BIT_EAP_PAYLOAD;
  if (code === OPT_PRF) return BIT_PRF;
  if (code === OPT_MAC_ALGORITHM) return BIT_MAC_ALGORITHM;
  if (code === OPT_SESSION_LIFETIME) return BIT_SESSION_LIFETIME;
  if (code === OPT_RECEIVED_PAK) return BIT_RECEIVED_PAK;
  if (code === OPT_ID_INDICATOR) return BIT_ID_INDICATOR;
  return 0;
}

/** A2: opcodes the RFC 7652 options are defined for (§7.1–§7.9). */
function authOptionValidForOpcode(code: number, opcode: number): boolean {
  if (code === OPT_AUTHENTICATION_TAG) return opcode === OP_MAP || opcode === OP_PEER || opcode === OP_ANNOUNCE;
  return opcode === OP_AUTHENTICATION;
}

/** A3: data length rules of the RFC 7652 options in a request. */
function authOptionLengthOk(code: number, dataLen: number): boolean {
  if (code === OPT_NONCE || code === OPT_PRF || code === OPT_MAC_ALGORITHM || code === OPT_RECEIVED_PAK) return dataLen === 4;
  if (code === OPT_AUTHENTICATION_TAG) return dataLen >= 16 && dataLen % 4 === 0;
  if (code === OPT_PA_AUTHENTICATION_TAG) return dataLen >= 8 && dataLen % 4 === 0;
  if (code === OPT_EAP_PAYLOAD) return dataLen >= 1;
  return false; // SESSION_LIFETIME, ID_INDICATOR: response-only
}

/** Bit for a known option code, or 0 for unknown codes (incl. 0, 4–12, 127, 255). */
function optionBit(code: number): number {
  if (code === OPT_THIRD_PARTY) return BIT_THIRD_PARTY;
  if (code === OPT_PREFER_FAILURE) return BIT_PREFER_FAILURE;
  if (code === OPT_FILTER) return BIT_FILTER;
  if (code === OPT_THIRD_PARTY_ID) return BIT_THIRD_PARTY_ID;
  if (code === OPT_DESCRIPTION) return BIT_DESCRIPTION;
  if (code === OPT_PREFIX64) return BIT_PREFIX64;
  if (code === OPT_PORT_SET) return BIT_PORT_SET;
  if (code === OPT_CHECKPOINT_REQUIRED) return BIT_CHECKPOINT_REQUIRED;
  return 0;
}

/**
 * codec.md "Option applicability": THIRD_PARTY, THIRD_PARTY_ID, DESCRIPTION,
 * CHECKPOINT_REQUIRED: MAP and PEER; PREFER_FAILURE, FILTER, PORT_SET: MAP;
 * PREFIX64: MAP and ANNOUNCE.
 */
function optionValidForOpcode(code: number, opcode: number): boolean {
  if (code === OPT_THIRD_PARTY || code === OPT_THIRD_PARTY_ID || code === OPT_DESCRIPTION || code === OPT_CHECKPOINT_REQUIRED) {
    return opcode === OP_MAP || opcode === OP_PEER;
  }
  if (code === OPT_PREFER_FAILURE || code === OPT_FILTER || code === OPT_PORT_SET) {
    return opcode === OP_MAP;
  }
  if (code === OPT_PREFIX64) {
    return opcode === OP_MAP || opcode === OP_ANNOUNCE;
  }
  return false;
}

/** codec.md walk step 4: data length rules. */
function optionLengthOk(code: number, d: Uint8Array, dataOff: number, dataLen: number): boolean {
  if (code === OPT_THIRD_PARTY) return dataLen === 16;
  if (code === OPT_PREFER_FAILURE) return dataLen === 0;
  if (code === OPT_FILTER) return dataLen === 20;
  if (code === OPT_PORT_SET) return dataLen === 5;
  if (code === OPT_CHECKPOINT_REQUIRED) return dataLen === 0;
  if (code === OPT_THIRD_PARTY_ID) return dataLen >= 1 && dataLen <= 1016;
  if (code === OPT_DESCRIPTION) return dataLen <= 1016;
  if (code === OPT_PREFIX64) {
    // RFC 7225 §4.1: 2 (Prefix64 length) + 12 (prefix+suffix) = 14 without the
    // optional IPv4 list; otherwise 16 + 6 × count, count = u16 at data offset 14.
    if (dataLen === 14) return true;
    if (dataLen < 16) return false;
    const count = u16(d, dataOff + 14);
    return dataLen === 16 + 6 * count;
  }
  return false;
}

/** RFC 3629 §4 well-formed UTF-8; NUL also refused (RFC 7220 §2: text, not NUL-terminated). */
function isValidDescription(d: Uint8Array, off: number, n: number): boolean {
  let i = off;
  const end = off + n;
  while (i < end) {
    const b0 = d[i];
    if (b0 === 0x00) return false;
    if (b0 <= 0x7f) {
      i += 1;
      continue;
    }
    let need = 0;
    let lo = 0x80;
    let hi = 0xbf;
    if (b0 >= 0xc2 && b0 <= 0xdf) {
      need = 1;
    } else if (b0 === 0xe0) {
      need = 2;
      lo = 0xa0;
    } else if ((b0 >= 0xe1 && b0 <= 0xec) || b0 === 0xee || b0 === 0xef) {
      need = 2;
    } else if (b0 === 0xed) {
      need = 2;
      hi = 0x9f; // no surrogates
    } else if (b0 === 0xf0) {
      need = 3;
      lo = 0x90;
    } else if (b0 >= 0xf1 && b0 <= 0xf3) {
      need = 3;
    } else if (b0 === 0xf4) {
      need = 3;
      hi = 0x8f; // ≤ U+10FFFF
    } else {
      return false; // 0x80–0xC1, 0xF5–0xFF
    }
    if (i + 1 + need > end) return false; // truncated sequence
    const b1 = d[i + 1];
    if (b1 < lo || b1 > hi) return false;
    for (let k = 2; k <= need; k++) {
      const bk = d[i + k];
      if (bk < 0x80 || bk > 0xbf) return false;
    }
    i += 1 + need;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Option walk (codec.md row 12)
// ---------------------------------------------------------------------------

interface WalkResult {
  error: number; // 0 = no error, else the PCP result code
  recorded: number; // option bits present and recorded
  parseFlags: number; // PARSE_DESCRIPTION_INVALID | PARSE_FILTER_CLEAR
  filterCount: number;
  thirdPartySeen: boolean; // decision D1
}

function walkOptions(d: Uint8Array, len: number, opcode: number, src: Uint8Array, ingress: number, config: RefConfig): WalkResult {
  const r: WalkResult = { error: 0, recorded: 0, parseFlags: 0, filterCount: 0, thirdPartySeen: false };
  let occurred = 0; // decision D3
  let p = opcode === OP_MAP ? MAP_LEN : opcode === OP_PEER ? PEER_LEN : opcode === OP_AUTHENTICATION ? AUTH_LEN : HEADER_LEN;
  let tagSeen = false; // A5

  while (p < len) {
    // len is a multiple of 4 and p is a multiple of 4, so the 4-byte TLV header is there.
    const code = u8(d, p);
    const dataLen = u16(d, p + 2);
    const dataOff = p + 4;
    const next = p + 4 + roundUp4(dataLen);

    if (code === OPT_THIRD_PARTY) r.thirdPartySeen = true; // decision D1

    // Step 1: header + padded data past len → MALFORMED_OPTION [6887 §7.3]
    if (next > len) {
      r.error = MALFORMED_OPTION;
      return r;
    }

    // A5: nothing after the tag [7652 §6.1]
    if (tagSeen) {
      r.error = MALFORMED_OPTION;
      return r;
    }

    // RFC 7652 options, for sources with authentication on (A1–A4)
    const authBit = (ingress & INGRESS_AUTH) !== 0 ? authOptionBit(code) : 0;
    if (authBit !== 0) {
      if (!authOptionValidForOpcode(code, opcode)) {
        r.error = MALFORMED_OPTION;
        return r;
      }
      if (!authOptionLengthOk(code, dataLen)) {
        r.error = MALFORMED_OPTION;
        return r;
      }
      if (code !== OPT_PRF && code !== OPT_MAC_ALGORITHM) {
        if ((occurred & authBit) !== 0) {
          r.error = MALFORMED_OPTION;
          return r;
        }
        occurred = occurred | authBit;
      }
      if (code === OPT_AUTHENTICATION_TAG || code === OPT_PA_AUTHENTICATION_TAG) tagSeen = true;
      r.recorded = r.recorded | authBit;
      p = next;
      continue;
    }

    // Step 2: unknown or disabled [6887 §7.3]
    const bit = optionBit(code);
    if (bit === 0 || (config.enabledOptions & bit) === 0) {
      if (code < 128) {
        r.error = UNSUPP_OPTION;
        return r;
      }
      p = next; // optional: skipped, not echoed
      continue;
    }

    // Step 3: not valid for this opcode [6887 §12.1, §13; decision MALFORMED_OPTION]
    if (!optionValidForOpcode(code, opcode)) {
      if (code === OPT_PREFER_FAILURE && opcode === OP_PEER) {
        r.error = MALFORMED_REQUEST;
        return r;
      }
      if (code < 128) {
        r.error = MALFORMED_OPTION;
        return r;
      }
      p = next; // optional option: skipped
      continue;
    }

    // Step 4: data length [6887 §7.3, 7220, 7225, 7753, 7767, 7843]
    if (!optionLengthOk(code, d, dataOff, dataLen)) {
      r.error = MALFORMED_OPTION;
      return r;
    }

    // Step 5: second occurrence of a single-occurrence option [6887 §7.3]
    if (code !== OPT_FILTER && (occurred & bit) !== 0) {
      r.error = MALFORMED_OPTION;
      return r;
    }
    occurred = occurred | bit;

    // Step 6: content
    let record = true;
    if (code === OPT_THIRD_PARTY) {
      // [6887 §13.1]
      if ((ingress & INGRESS_THIRD_PARTY) === 0) {
        r.error = UNSUPP_OPTION;
        return r;
      }
      if (sameBytes(d, dataOff, src, 0, 16)) {
        r.error = MALFORMED_REQUEST;
        return r;
      }
    } else if (code === OPT_FILTER) {
      // [6887 §13.3, erratum 3891, digest §1.20 decision]
      const prefixLen = u8(d, dataOff + 1);
      if (prefixLen === 0) {
        r.parseFlags = r.parseFlags | PARSE_FILTER_CLEAR;
      } else if (isV4Mapped(d, dataOff + 4)) {
        if (prefixLen < 96 || prefixLen > 128) {
          r.error = MALFORMED_OPTION;
          return r;
        }
      } else if (prefixLen > 128) {
        r.error = MALFORMED_OPTION;
        return r;
      }
      r.filterCount = r.filterCount + 1; // decision D4
    } else if (code === OPT_PORT_SET) {
      // [RFC 7753 §4.2]
      const size = u16(d, dataOff);
      const firstInternal = u16(d, dataOff + 2);
      if (size === 0) {
        r.error = MALFORMED_OPTION;
        return r;
      }
      if (firstInternal !== u16(d, 40)) {
        r.error = MALFORMED_OPTION;
        return r;
      }
    } else if (code === OPT_PREFIX64) {
      // [RFC 7225 §4.1]
      const l = u16(d, dataOff);
      if (!(l === 4 || l === 5 || l === 6 || l === 7 || l === 8 || l === 12)) {
        r.error = MALFORMED_OPTION;
        return r;
      }
    } else if (code === OPT_THIRD_PARTY_ID) {
      // [RFC 7843 §4.1]
      if (dataLen > config.thirdPartyIdMaxLen) {
        r.error = UNSUPP_THIRD_PARTY_ID_LENGTH;
        return r;
      }
    } else if (code === OPT_DESCRIPTION) {
      // [RFC 7220 §3]: invalid → ignored, never echoed, not an error
      if (!isValidDescription(d, dataOff, dataLen)) {
        r.parseFlags = r.parseFlags | PARSE_DESCRIPTION_INVALID;
        record = false;
      }
    }
    // PREFER_FAILURE, CHECKPOINT_REQUIRED: no content.

    if (record) r.recorded = r.recorded | bit;
    p = next;
  }
  return r;
}

// ---------------------------------------------------------------------------
// Validation rows (codec.md table). Each returns an outcome or null (= next row).
// ---------------------------------------------------------------------------

interface Ctx {
  d: Uint8Array;
  len: number;
  input: RefInput;
  config: RefConfig;
  thirdPartySeen: boolean;
}

/** Row 1: no ingress bit → drop INTERFACE [6887 §8.2]. */
function row1NoIngress(c: Ctx): RefOutcome | null {
  if ((c.input.ingress & (INGRESS_SUBSCRIBER | INGRESS_THIRD_PARTY)) === 0) return drop(DROP_INTERFACE);
  return null;
}

/** Row 2: len < 2 → drop TOO_SHORT [6887 §8.2]. */
function row2TooShort(c: Ctx): RefOutcome | null {
  if (c.len < 2) return drop(DROP_TOO_SHORT);
  return null;
}

/** Row 3: R bit (byte 1 & 0x80) → drop RESPONSE [6887 §8.2, 6886 §3.5]. */
function row3ResponseBit(c: Ctx): RefOutcome | null {
  if ((u8(c.d, 1) & 0x80) !== 0) return drop(DROP_RESPONSE);
  return null;
}

/** Row 4: version 0 and NAT-PMP silent → drop NATPMP_SILENT [6886 §3.8]. */
function row4NatPmpSilent(c: Ctx): RefOutcome | null {
  if (u8(c.d, 0) === 0 && (c.config.flags & CFG_NATPMP_SILENT) !== 0) return drop(DROP_NATPMP_SILENT);
  return null;
}

/** Row 5: version 0 and NAT-PMP enabled → NAT-PMP path [6886 §1.1]. */
function row5NatPmp(c: Ctx): RefOutcome | null {
  if (u8(c.d, 0) === 0 && (c.config.flags & CFG_NATPMP_ENABLED) !== 0) return natPmpPath(c);
  return null;
}

/**
 * Row 6: version ≠ 2 → UNSUPP_VERSION, version byte 2, at least 24 bytes [6887 §9];
 * overloaded → drop OVERLOAD, never a reply (a 2-byte request draws 24 bytes) [6887 §17.2].
 */
function row6Version(c: Ctx): RefOutcome | null {
  if (u8(c.d, 0) !== 2) {
    if (c.input.overloaded) return drop(DROP_OVERLOAD);
    return errorOutcome(c.d, c.len, UNSUPP_VERSION, c.input.epoch, c.config, false, HEADER_LEN);
  }
  return null;
}

/** Row 7: len < 24 → drop SHORT_HEADER [6887 §8.2]. */
function row7ShortHeader(c: Ctx): RefOutcome | null {
  if (c.len < HEADER_LEN) return drop(DROP_SHORT_HEADER);
  return null;
}

/** Row 8: overloaded → NO_RESOURCES reply or drop OVERLOAD [6887 §8.2]. */
function row8Overload(c: Ctx): RefOutcome | null {
  if (!c.input.overloaded) return null;
  if ((c.config.flags & CFG_OVERLOAD_REPLY) !== 0) {
    return errorOutcome(c.d, c.len, NO_RESOURCES, c.input.epoch, c.config, false, 0);
  }
  return drop(DROP_OVERLOAD);
}

/** Row 9: len > 1100, len % 4 ≠ 0, or shorter than the known opcode needs → MALFORMED_REQUEST [6887 §8.2]. */
function row9Length(c: Ctx): RefOutcome | null {
  const opcode = u8(c.d, 1) & 0x7f;
  let bad = false;
  if (opcode === OP_AUTHENTICATION && (c.input.ingress & INGRESS_AUTH) !== 0 && c.len < AUTH_LEN) bad = true; // A1
  if (c.len > MAX_PCP_LEN) bad = true;
  if (c.len % 4 !== 0) bad = true;
  if (opcode === OP_ANNOUNCE && c.len < HEADER_LEN) bad = true;
  if (opcode === OP_MAP && c.len < MAP_LEN) bad = true;
  if (opcode === OP_PEER && c.len < PEER_LEN) bad = true;
  if (bad) return errorOutcome(c.d, c.len, MALFORMED_REQUEST, c.input.epoch, c.config, false, 0);
  return null;
}

/** Row 10: client address (8–23) ≠ source address → ADDRESS_MISMATCH [6887 §8.2, §5]. */
function row10AddressMismatch(c: Ctx): RefOutcome | null {
  if (!sameBytes(c.d, 8, c.input.src, 0, 16)) {
    return errorOutcome(c.d, c.len, 12 /* ADDRESS_MISMATCH */, c.input.epoch, c.config, false, 0);
  }
  return null;
}

/** Row 11: opcode not 0/1/2 → UNSUPP_OPCODE, payload copied untouched [6887 §8.2, 7652]. */
function row11Opcode(c: Ctx): RefOutcome | null {
  const opcode = u8(c.d, 1) & 0x7f;
  if (opcode === OP_AUTHENTICATION && (c.input.ingress & INGRESS_AUTH) !== 0) return null; // A1
  if (opcode !== OP_ANNOUNCE && opcode !== OP_MAP && opcode !== OP_PEER) {
    return errorOutcome(c.d, c.len, UNSUPP_OPCODE, c.input.epoch, c.config, false, 0);
  }
  return null;
}

/** Row 14: cross-option rules, in codec.md order. */
function row14CrossOption(c: Ctx, w: WalkResult): RefOutcome | null {
  const lifetime = u32(c.d, 4);
  let result = 0;
  if ((w.recorded & BIT_THIRD_PARTY_ID) !== 0 && (w.recorded & BIT_THIRD_PARTY) === 0) {
    result = THIRD_PARTY_MISSING_OPTION; // 7843 §4.1
  } else if ((w.recorded & BIT_PREFER_FAILURE) !== 0 && lifetime === 0) {
    result = MALFORMED_OPTION; // 6887 §11.3
  } else if ((w.recorded & BIT_FILTER) !== 0 && lifetime === 0) {
    result = MALFORMED_OPTION; // 6887 §13.3
  } else if ((w.recorded & BIT_PREFER_FAILURE) !== 0 && u16(c.d, 42) === 0) {
    result = MALFORMED_OPTION; // 6887 §13.2
  } else if ((w.recorded & BIT_PORT_SET) !== 0 && (w.recorded & BIT_PREFER_FAILURE) !== 0) {
    result = MALFORMED_OPTION; // 7753 §4.2
  }
  if (result !== 0) return errorOutcome(c.d, c.len, result, c.input.epoch, c.config, false, 0);
  return null;
}

/** PEER remote peer unspecified / loopback / multicast [6887 §12.3]. */
function badRemotePeer(d: Uint8Array): boolean {
  const a = 64;
  if (allZero(d, a, 16)) return true; // ::
  if (isV4Mapped(d, a)) {
    const v4first = d[a + 12];
    if (allZero(d, a + 12, 4)) return true; // ::ffff:0.0.0.0
    if (v4first === 127) return true; // 127/8
    if (v4first >= 224 && v4first <= 239) return true; // 224/4
    return false;
  }
  if (allZero(d, a, 15) && d[a + 15] === 1) return true; // ::1
  if (d[a] === 0xff) return true; // ff00::/8
  return false;
}

/** Row 15: opcode rules. */
function row15OpcodeRules(c: Ctx): RefOutcome | null {
  const opcode = u8(c.d, 1) & 0x7f;
  let bad = false;
  if (opcode === OP_MAP) {
    // [6887 §11.3, §15.1]
    if (u8(c.d, 36) === 0 && u16(c.d, 40) !== 0) bad = true;
  } else if (opcode === OP_PEER) {
    // decision + [6887 §12.3]
    if (u8(c.d, 36) === 0) bad = true;
    if (u16(c.d, 40) === 0) bad = true;
    if (u16(c.d, 60) === 0) bad = true;
    if (badRemotePeer(c.d)) bad = true;
  }
  if (bad) return errorOutcome(c.d, c.len, MALFORMED_REQUEST, c.input.epoch, c.config, false, 0);
  return null;
}

/** Row 15a (A6, A7): RFC 7652 rules, sources with authentication on only. */
function row15aAuth(c: Ctx, w: WalkResult): RefOutcome | null {
  if ((c.input.ingress & INGRESS_AUTH) === 0) return null;
  const opcode = u8(c.d, 1) & 0x7f;
  const flags = c.input.hostFlags ?? 0;
  let result = 0;
  if (opcode === OP_AUTHENTICATION) {
    const rc = u8(c.d, 3);
    const ok =
      rc === INITIATION ||
      rc === AUTHENTICATION_REPLY ||
      rc === AUTHENTICATION_SUCCEEDED ||
      rc === AUTHENTICATION_FAILED ||
      rc === AUTHORIZATION_FAILED ||
      rc === SESSION_TERMINATED ||
      (rc === 0 && (w.recorded & BIT_RECEIVED_PAK) !== 0);
    if (ok) return { verdict: "auth", options: w.recorded };
    result = MALFORMED_REQUEST;
  } else if ((flags & HOST_AUTH_UNKNOWN_SESSION) !== 0) {
    result = UNKNOWN_SESSION_ID;
  } else if ((w.recorded & BIT_AUTHENTICATION_TAG) !== 0 && (flags & HOST_AUTHENTICATED) === 0) {
    result = UNKNOWN_SESSION_ID;
  } else if (opcode !== OP_ANNOUNCE && (flags & HOST_AUTHENTICATED) === 0) {
    const required = (w.recorded & BIT_THIRD_PARTY) !== 0 ? INGRESS_AUTH_TP_REQUIRED : INGRESS_AUTH_REQUIRED;
    if ((c.input.ingress & required) !== 0) result = AUTHENTICATION_REQUIRED;
  }
  if (result !== 0) return errorOutcome(c.d, c.len, result, c.input.epoch, c.config, false, 0);
  return null;
}

/** Row 16: MAP/PEER disabled → NOT_AUTHORIZED, request counts as parsed [6887 §11, §12]. */
function row16Disabled(c: Ctx): RefOutcome | null {
  const opcode = u8(c.d, 1) & 0x7f;
  let disabled = false;
  if (opcode === OP_MAP && (c.config.flags & CFG_MAP_ENABLED) === 0) disabled = true;
  if (opcode === OP_PEER && (c.config.flags & CFG_PEER_ENABLED) === 0) disabled = true;
  if (disabled) return errorOutcome(c.d, c.len, NOT_AUTHORIZED, c.input.epoch, c.config, true, 0);
  return null;
}

/** Row 17: ANNOUNCE → 24-byte success, lifetime 0, no options [6887 §14.1.2]. */
function row17Announce(c: Ctx): RefOutcome | null {
  const opcode = u8(c.d, 1) & 0x7f;
  if (opcode !== OP_ANNOUNCE) return null;
  const out = new Uint8Array(24);
  out[0] = 2;
  out[1] = 0x80; // R | ANNOUNCE
  out[2] = 0;
  out[3] = SUCCESS;
  put32(out, 4, 0);
  put32(out, 8, c.input.epoch);
  // bytes 12–23 zero
  return { verdict: "reply", result: SUCCESS, response: out, parsed: true };
}

/** Row 18: MAP, PEER → parsed. */
function row18Parsed(c: Ctx, w: WalkResult): RefOutcome {
  return {
    verdict: "parsed",
    version: 2,
    opcode: u8(c.d, 1) & 0x7f,
    lifetime: u32(c.d, 4),
    options: w.recorded,
    parseFlags: PARSE_OK | w.parseFlags,
    filterCount: w.filterCount,
  };
}

// ---------------------------------------------------------------------------
// NAT-PMP path (codec.md "NAT-PMP" table, RFC 6886 §3)
// ---------------------------------------------------------------------------

function natPmpPath(c: Ctx): RefOutcome {
  // ingress lacks SUBSCRIBER → drop INTERFACE (§3.3: external side refused)
  if ((c.input.ingress & INGRESS_SUBSCRIBER) === 0) return drop(DROP_INTERFACE);
  // overloaded → drop OVERLOAD (never a reply here)
  if (c.input.overloaded) return drop(DROP_OVERLOAD);
  const opcode = u8(c.d, 1); // < 128, row 3 already dropped the rest
  if (opcode === 0) {
    return { verdict: "parsed", version: 0, opcode: 0, lifetime: 0, options: 0, parseFlags: 0, filterCount: 0 };
  }
  if (opcode === 1 || opcode === 2) {
    if (c.len < 12) return drop(DROP_NATPMP_SHORT);
    return {
      verdict: "parsed",
      version: 0,
      opcode,
      lifetime: u32(c.d, 8),
      options: 0,
      parseFlags: 0,
      filterCount: 0,
    };
  }
  // other opcode < 128: return the request with the top bit set and result 5 (§3.5)
  const copyLen = Math.min(c.len, MAX_PCP_LEN);
  const out = new Uint8Array(Math.max(copyLen, 4)); // decision D2
  for (let i = 0; i < copyLen; i++) out[i] = c.d[i];
  out[1] = out[1] | 0x80;
  out[2] = 0;
  out[3] = NATPMP_UNSUPP_OPCODE;
  return { verdict: "reply", result: NATPMP_UNSUPP_OPCODE, response: out, parsed: false };
}

// ---------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------

function processRows(c: Ctx): RefOutcome {
  let o: RefOutcome | null;
  if ((o = row1NoIngress(c))) return o;
  if ((o = row2TooShort(c))) return o;
  if ((o = row3ResponseBit(c))) return o;
  if ((o = row4NatPmpSilent(c))) return o;
  if ((o = row5NatPmp(c))) return o;
  if ((o = row6Version(c))) return o;
  if ((o = row7ShortHeader(c))) return o;
  if ((o = row8Overload(c))) return o;
  // A9: from here on an AUTHENTICATION request of an authentication source is answered as
  // a THIRD_PARTY one would be (the codec decides it with the opcode, before row 9).
  if ((u8(c.d, 1) & 0x7f) === OP_AUTHENTICATION && (c.input.ingress & INGRESS_AUTH) !== 0) c.thirdPartySeen = true;
  if ((o = row9Length(c))) return o;
  if ((o = row10AddressMismatch(c))) return o;
  if ((o = row11Opcode(c))) return o;

  // Row 12: option walk
  const opcode = u8(c.d, 1) & 0x7f;
  const w = walkOptions(c.d, c.len, opcode, c.input.src, c.input.ingress, c.config);
  c.thirdPartySeen = c.thirdPartySeen || w.thirdPartySeen;
  if (w.error !== 0) return errorOutcome(c.d, c.len, w.error, c.input.epoch, c.config, false, 0);

  // Row 13: only THIRD_PARTY ingress and no THIRD_PARTY option → drop INTERFACE (A9: AUTHENTICATION answered)
  if ((c.input.ingress & INGRESS_SUBSCRIBER) === 0 && (w.recorded & BIT_THIRD_PARTY) === 0 && opcode !== OP_AUTHENTICATION) {
    return drop(DROP_INTERFACE);
  }

  if ((o = row14CrossOption(c, w))) return o;
  if ((o = row15OpcodeRules(c))) return o;
  if ((o = row15aAuth(c, w))) return o;
  if ((o = row16Disabled(c))) return o;
  if ((o = row17Announce(c))) return o;
  return row18Parsed(c, w);
}

export function referenceProcess(input: RefInput, config: RefConfig = DEFAULT_REF_CONFIG): RefOutcome {
  const c: Ctx = {
    d: input.data,
    len: Math.min(input.data.length, MAX_WIRE_LEN),
    input,
    config,
    thirdPartySeen: false,
  };
  const outcome = processRows(c);
  // codec.md "Ingress bits": a datagram with only INGRESS_THIRD_PARTY is handled only
  // if it is a PCP request carrying a THIRD_PARTY option; every other outcome becomes
  // DROP_INTERFACE (decision D1 for what "seen" means).
  const thirdPartyOnly = (input.ingress & INGRESS_SUBSCRIBER) === 0 && (input.ingress & INGRESS_THIRD_PARTY) !== 0;
  if (thirdPartyOnly && !c.thirdPartySeen) return drop(DROP_INTERFACE);
  return outcome;
}

// ---------------------------------------------------------------------------
// Encoders (codec.md "Success reply" and engine errors)
// ---------------------------------------------------------------------------

function headerLenFor(opcode: number): number {
  if (opcode === OP_MAP) return MAP_LEN;
  if (opcode === OP_PEER) return PEER_LEN;
  return HEADER_LEN;
}

/**
 * codec.md "Success reply" (finishSuccess): bytes 0–3 = 2, opcode|0x80, 0, 0;
 * lifetime; epoch; bytes 12–23 zero; MAP/PEER reserved 37–39 (PEER also 62–63)
 * zero; other opcode fields as in the request, or the assigned external port
 * (42) and address (44) when given; then the request's options whose bit is in
 * echoMask, in request order, reserved byte and padding zeroed.
 */
export function referenceSuccess(
  request: Uint8Array,
  lifetime: number,
  echoMask: number,
  epoch: number,
  assigned?: { port: number; addr: Uint8Array },
  config: RefConfig = DEFAULT_REF_CONFIG,
): Uint8Array {
  const opcode = request[1] & 0x7f;
  const hdrLen = headerLenFor(opcode);
  const len = request.length;

  // Collect echoed options (start, dataLen) in request order.
  const echoed: { start: number; code: number; dataLen: number }[] = [];
  let p = hdrLen;
  while (p + 4 <= len) {
    const code = request[p];
    const dataLen = u16(request, p + 2);
    const next = p + 4 + roundUp4(dataLen);
    if (next > len) break;
    const bit = optionBit(code);
    // Only options that were processed can be echoed: enabled and defined for this opcode.
    let echo = bit !== 0 && (echoMask & bit) !== 0 && (config.enabledOptions & bit) !== 0 && optionValidForOpcode(code, opcode);
    if (echo && code === OPT_DESCRIPTION && !isValidDescription(request, p + 4, dataLen)) echo = false; // D5
    if (echo) echoed.push({ start: p, code, dataLen });
    p = next;
  }

  let outLen = hdrLen;
  for (const e of echoed) outLen += 4 + roundUp4(e.dataLen);
  const out = new Uint8Array(outLen);
  for (let i = 0; i < hdrLen && i < len; i++) out[i] = request[i];

  out[0] = 2;
  out[1] = opcode | 0x80;
  out[2] = 0;
  out[3] = SUCCESS;
  put32(out, 4, lifetime);
  put32(out, 8, epoch);
  for (let i = 12; i < 24; i++) out[i] = 0;
  if (opcode === OP_MAP || opcode === OP_PEER) {
    out[37] = 0;
    out[38] = 0;
    out[39] = 0;
    if (assigned) {
      put16(out, 42, assigned.port);
      for (let i = 0; i < 16; i++) out[44 + i] = assigned.addr[i];
    }
  }
  if (opcode === OP_PEER) {
    out[62] = 0;
    out[63] = 0;
  }

  let q = hdrLen;
  for (const e of echoed) {
    out[q] = e.code;
    out[q + 1] = 0; // reserved zeroed
    put16(out, q + 2, e.dataLen);
    for (let i = 0; i < e.dataLen; i++) out[q + 4 + i] = request[e.start + 4 + i];
    // padding stays zero (fresh array)
    q += 4 + roundUp4(e.dataLen);
  }
  return out;
}

/**
 * codec.md "Error reply" for a request that parsed (every engine error): bytes
 * 12–23 zeroed, the given lifetime, everything else (options included) as copied.
 */
export function referenceEngineError(request: Uint8Array, result: number, lifetime: number, epoch: number): Uint8Array {
  return buildErrorReply(request, Math.min(request.length, MAX_WIRE_LEN), result, lifetime, epoch, true, 0);
}
