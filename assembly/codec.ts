// PCP / NAT-PMP request validation and reply encoding. The order of the checks is the
// table in docs/codec.md (digest §1.11); each branch cites its row and RFC section.
// No allocation and no throw: every datagram ends with a verdict in its slot.

import * as W from "./wire";
import * as A from "./abi";
import { rd16, rd32, wr16, wr32, addrEqual, isV4Mapped, isUnusablePeer, isCleanUtf8 } from "./bytes";

// ---- configuration: set by configureCodec, which applyConfig (config.ts) calls with the
// region's values before any batch; the defaults live in the schema (src/config/schema.ts).
let cfgFlags: u32 = 0;
let cfgOptions: u32 = 0;
let cfgShortErrorLifetime: u32 = 0;
let cfgLongErrorLifetime: u32 = 0;
let cfgThirdPartyIdMaxLen: u32 = 0;

// ---- per-batch / per-datagram state ----
let batchEpoch: u32 = 0;
// A datagram from a source that is only trusted for THIRD_PARTY is answered only once a
// THIRD_PARTY option has been seen; anything else from it is dropped [6887 §8.2].
let curThirdPartyOnly: bool = false;
let curSawThirdParty: bool = false;

// Static regions: the batch slots and the counters. Fixed at compile time so the packet
// path never allocates.
const slots: usize = memory.data(<i32>(A.SLOT_COUNT * A.SLOT_SIZE), 16);
const stats: usize = memory.data(<i32>A.STATS_SIZE, 16);

export function slotsBase(): usize {
  return slots;
}

export function statsBase(): usize {
  return stats;
}

// PREFIX64 options [RFC 7225] the server answers with: encoded by the host (whole options,
// padded), appended to MAP and ANNOUNCE responses whose request carried PREFIX64.
const prefix64Options = memory.data(<i32>A.PREFIX64_OPTIONS_CAP, 16);
let prefix64Length: u32 = 0;

export function prefix64Base(): usize {
  return prefix64Options;
}

/** The host wrote `length` bytes of PREFIX64 options at prefix64Base() (0: none configured: never included). */
export function setPrefix64(length: u32): void {
  prefix64Length = length <= A.PREFIX64_OPTIONS_CAP && (length & 3) == 0 ? length : 0;
}

export function configureCodec(flags: u32, options: u32, shortErr: u32, longErr: u32, tpidMaxLen: u32): void {
  cfgFlags = flags;
  cfgOptions = options & A.OPTBIT_ALL;
  cfgShortErrorLifetime = shortErr;
  cfgLongErrorLifetime = longErr;
  cfgThirdPartyIdMaxLen = tpidMaxLen < W.THIRD_PARTY_ID_MAX_SIZE ? tpidMaxLen : W.THIRD_PARTY_ID_MAX_SIZE;
}

@inline function bump(offset: u32): void {
  const p = stats + offset;
  store<u64>(p, load<u64>(p) + 1);
}

/** The wire bytes of a slot (request, then the reply built over it). */
@inline export function data(slot: usize): usize {
  return slot + A.SLOT_DATA;
}

// CANNOT_PROVIDE_EXTERNAL's lifetime class depends on its cause [6887 §7.4, §15]: a port in
// use for now (another mapping, a hold-down, another subscriber's block) is a short error,
// the client may retry soon; a suggestion that can never be honoured (not a pool address,
// a retired address, a reserved port, a static mapping) is a long one. The site that
// chooses the result says which (refuseExternal); the next errorLifetime() takes it.
let externalRefusalForGood: bool = false;

/** Notes the cause of the CANNOT_PROVIDE_EXTERNAL about to be answered: `forGood` = policy, not a port in use. */
export function refuseExternal(forGood: bool): void {
  externalRefusalForGood = forGood;
}

/** RECOMMENDED error lifetimes: short for transient conditions, long otherwise [6887 §7.4]. */
export function errorLifetime(result: u32): u32 {
  if (result == W.RESULT_NETWORK_FAILURE || result == W.RESULT_NO_RESOURCES || result == W.RESULT_USER_EX_QUOTA ||
      result == W.RESULT_AUTHENTICATION_REQUIRED || result == W.RESULT_UNKNOWN_SESSION_ID) {
    // RFC 7652: the client is expected to authenticate and retry at once (decision: short).
    return cfgShortErrorLifetime;
  }
  if (result == W.RESULT_CANNOT_PROVIDE_EXTERNAL) {
    const forGood = externalRefusalForGood;
    externalRefusalForGood = false; // short unless the next site says otherwise
    return forGood ? cfgLongErrorLifetime : cfgShortErrorLifetime;
  }
  return cfgLongErrorLifetime;
}

// ---- verdict writers ----

function drop(slot: usize, reason: u8): void {
  // A THIRD_PARTY-only source is only ever answered for THIRD_PARTY requests: whatever
  // else stops its datagram counts as an interface drop (row 13).
  if (curThirdPartyOnly && !curSawThirdParty) reason = A.DROP_INTERFACE;
  store<u8>(slot + A.SLOT_VERDICT, A.VERDICT_DROP);
  store<u8>(slot + A.SLOT_DROP_REASON, reason);
  bump(A.STATS_DROP + (<u32>reason << 3));
}

function reply(slot: usize, result: u32, length: u32): void {
  store<u8>(slot + A.SLOT_VERDICT, A.VERDICT_REPLY);
  store<u16>(slot + A.SLOT_RESULT, <u16>result);
  store<u16>(slot + A.SLOT_RESP_LEN, <u16>length);
}

/**
 * Error reply built over the request [6887 §8.2, §7.3]: the first min(len, 1100) bytes,
 * zero-padded to a multiple of 4 and to at least `minLength`; header fields overwritten;
 * bytes 12..23 zeroed only if the request parsed [6887 §7.2]; options stay as copied.
 */
function writeError(slot: usize, result: u32, lifetime: u32, minLength: u32): void {
  const d = data(slot);
  const wireLen = <u32>load<u16>(slot + A.SLOT_WIRE_LEN);
  const copied = wireLen < W.PCP_MAX_MESSAGE ? wireLen : W.PCP_MAX_MESSAGE;
  let length = (copied + 3) & ~3;
  if (length < minLength) length = minLength;
  if (length > copied) memory.fill(d + copied, 0, length - copied);
  store<u8>(d, W.PCP_VERSION);
  store<u8>(d + W.HDR_OPCODE, load<u8>(d + W.HDR_OPCODE) | W.R_BIT);
  store<u8>(d + W.HDR_RESERVED, 0);
  store<u8>(d + W.HDR_RESULT, <u8>result);
  wr32(d + W.HDR_LIFETIME, lifetime);
  wr32(d + W.HDR_EPOCH, batchEpoch);
  if (load<u16>(slot + A.SLOT_PARSE_FLAGS) & A.PARSE_OK) {
    store<u32>(d + W.HDR_RESP_RESERVED, 0);
    store<u64>(d + W.HDR_RESP_RESERVED + 4, 0);
  }
  assert(length <= W.PCP_MAX_MESSAGE && (length & 3) == 0);
  reply(slot, result, length);
  bump(A.STATS_PCP_RESULT + ((result & (W.RESULT_CODE_LIMIT - 1)) << 3));
}

/** Codec-detected error: subject to the third-party-only ingress rule (row 13). */
function reject(slot: usize, result: u32): void {
  if (curThirdPartyOnly && !curSawThirdParty) {
    drop(slot, A.DROP_INTERFACE);
    return;
  }
  writeError(slot, result, errorLifetime(result), 0);
}

// ---- options ----

/** Option code → option bit; 0 for codes this server does not know [6887 §19.4]. */
function optionBit(code: u32): u32 {
  switch (code) {
    case W.OPTION_THIRD_PARTY: return A.OPTBIT_THIRD_PARTY;
    case W.OPTION_PREFER_FAILURE: return A.OPTBIT_PREFER_FAILURE;
    case W.OPTION_FILTER: return A.OPTBIT_FILTER;
    case W.OPTION_THIRD_PARTY_ID: return A.OPTBIT_THIRD_PARTY_ID;
    case W.OPTION_DESCRIPTION: return A.OPTBIT_DESCRIPTION;
    case W.OPTION_PREFIX64: return A.OPTBIT_PREFIX64;
    case W.OPTION_PORT_SET: return A.OPTBIT_PORT_SET;
    case W.OPTION_CHECKPOINT_REQUIRED: return A.OPTBIT_CHECKPOINT_REQUIRED;
    case W.OPTION_AUTHENTICATION_TAG: return A.OPTBIT_AUTHENTICATION_TAG;
    case W.OPTION_NONCE: return A.OPTBIT_NONCE;
    case W.OPTION_PA_AUTHENTICATION_TAG: return A.OPTBIT_PA_AUTHENTICATION_TAG;
    case W.OPTION_EAP_PAYLOAD: return A.OPTBIT_EAP_PAYLOAD;
    case W.OPTION_PSEUDO_RANDOM_FUNCTION: return A.OPTBIT_PRF;
    case W.OPTION_MAC_ALGORITHM: return A.OPTBIT_MAC_ALGORITHM;
    case W.OPTION_SESSION_LIFETIME: return A.OPTBIT_SESSION_LIFETIME;
    case W.OPTION_RECEIVED_PAK: return A.OPTBIT_RECEIVED_PAK;
    case W.OPTION_ID_INDICATOR: return A.OPTBIT_ID_INDICATOR;
  }
  return 0;
}

const OPS_ANNOUNCE: u32 = 1 << W.OP_ANNOUNCE;
const OPS_MAP: u32 = 1 << W.OP_MAP;
const OPS_PEER: u32 = 1 << W.OP_PEER;
const OPS_AUTH: u32 = 1 << W.OP_AUTHENTICATION;

/** Opcodes each option is defined for [6887 §13, 7220, 7225, 7753, 7767, 7843, 7652 §7]. */
function optionOpcodes(bit: u32): u32 {
  if (bit == A.OPTBIT_AUTHENTICATION_TAG) return OPS_MAP | OPS_PEER | OPS_ANNOUNCE; // [7652 §7.2]
  if (bit & A.OPTBIT_AUTH_ALL) return OPS_AUTH; // [7652 §7.1, §7.3–7.9]
  if (bit == A.OPTBIT_PREFER_FAILURE || bit == A.OPTBIT_FILTER || bit == A.OPTBIT_PORT_SET) return OPS_MAP;
  if (bit == A.OPTBIT_PREFIX64) return OPS_MAP | OPS_ANNOUNCE;
  return OPS_MAP | OPS_PEER;
}

/** Data length rules per option; `p` points at the option data. */
function optionLengthOk(bit: u32, p: usize, n: u32): bool {
  switch (bit) {
    case A.OPTBIT_THIRD_PARTY: return n == W.THIRD_PARTY_DATA_SIZE;
    case A.OPTBIT_PREFER_FAILURE: return n == W.PREFER_FAILURE_DATA_SIZE;
    case A.OPTBIT_FILTER: return n == W.FILTER_DATA_SIZE;
    case A.OPTBIT_PORT_SET: return n == W.PORT_SET_DATA_SIZE;
    case A.OPTBIT_CHECKPOINT_REQUIRED: return n == W.CHECKPOINT_REQUIRED_DATA_SIZE;
    case A.OPTBIT_THIRD_PARTY_ID: return n >= 1 && n <= W.THIRD_PARTY_ID_MAX_SIZE;
    case A.OPTBIT_DESCRIPTION: return n <= W.DESCRIPTION_MAX_SIZE;
    // RFC 7652 §5: tags and EAP messages end on a 32-bit boundary; at least one word of MAC
    case A.OPTBIT_AUTHENTICATION_TAG: return n >= W.AUTH_TAG_FIXED_SIZE + 4 && (n & 3) == 0;
    case A.OPTBIT_PA_AUTHENTICATION_TAG: return n >= W.PA_TAG_FIXED_SIZE + 4 && (n & 3) == 0;
    // A whole EAP packet, or one section of one too long for a PA message [7652 §6.6]: only
    // the host knows which (it holds the reassembly state) and checks the EAP framing.
    case A.OPTBIT_EAP_PAYLOAD: return n >= 1;
    case A.OPTBIT_NONCE: return n == W.NONCE_DATA_SIZE;
    case A.OPTBIT_PRF: return n == W.PRF_DATA_SIZE;
    case A.OPTBIT_MAC_ALGORITHM: return n == W.MAC_ALGORITHM_DATA_SIZE;
    case A.OPTBIT_RECEIVED_PAK: return n == W.RECEIVED_PAK_DATA_SIZE;
    case A.OPTBIT_SESSION_LIFETIME: return false; // response only [7652 §7.7] (decision: MALFORMED_OPTION)
    case A.OPTBIT_ID_INDICATOR: return false; // response only [7652 §7.9] (decision: MALFORMED_OPTION)
    case A.OPTBIT_PREFIX64: {
      if (n == W.PREFIX64_BASE_SIZE) return true;
      if (n < W.PREFIX64_BASE_SIZE + 2) return false;
      return n == W.PREFIX64_BASE_SIZE + 2 + rd16(p + W.PREFIX64_BASE_SIZE) * W.PREFIX64_IPV4_ENTRY_SIZE;
    }
  }
  return false;
}

/**
 * Walks the options of a PCP request [6887 §7.3]; returns 0 or the first error's result
 * code, and records what the engine needs in the slot.
 */
function walkOptions(slot: usize, opcode: u32, start: u32, length: u32, ingress: u32): u32 {
  const d = data(slot);
  const src = slot + A.SLOT_SRC_ADDR;
  const opBit: u32 = 1 << opcode;
  let off = start;
  let once: u32 = 0;
  let recorded: u32 = 0;
  let filters: u32 = 0;
  let flags = <u32>load<u16>(slot + A.SLOT_PARSE_FLAGS);
  store<u16>(slot + A.SLOT_OPT_START, <u16>start);
  store<u16>(slot + A.SLOT_OPT_END, <u16>length);
  // `length` and `off` are multiples of 4, so a whole TLV header is always present.
  while (off < length) {
    const code = <u32>load<u8>(d + off);
    const n = rd16(d + off + W.OPT_LENGTH);
    const tlv = off;
    const p = d + off + W.OPT_HEADER_SIZE;
    const padded = (n + 3) & ~3;
    // From here on errors are answered even to a THIRD_PARTY-only source (row 13).
    if (code == <u32>W.OPTION_THIRD_PARTY) curSawThirdParty = true;
    if (padded > length - off - W.OPT_HEADER_SIZE) return W.RESULT_MALFORMED_OPTION; // runs past the datagram [6887 §7.3]
    // The tag is appended at the end of the message [7652 §6.1]: nothing may follow it (decision).
    if (once & (A.OPTBIT_AUTHENTICATION_TAG | A.OPTBIT_PA_AUTHENTICATION_TAG)) return W.RESULT_MALFORMED_OPTION;
    off += W.OPT_HEADER_SIZE + padded;
    const bit = optionBit(code);
    // RFC 7652 options exist only for sources with authentication on; elsewhere they are
    // unknown mandatory options, as before the extension [6887 §7.3].
    const enabled = bit & A.OPTBIT_AUTH_ALL ? (ingress & A.INGRESS_AUTH) != 0 : (bit & cfgOptions) != 0;
    if (bit == 0 || !enabled) {
      if (code < <u32>W.OPT_OPTIONAL_BIT) return W.RESULT_UNSUPP_OPTION; // unknown/disabled mandatory [6887 §7.3]
      continue; // optional: may be ignored [6887 §7.3]
    }
    if ((optionOpcodes(bit) & opBit) == 0) {
      if (code >= <u32>W.OPT_OPTIONAL_BIT) continue;
      if (bit == A.OPTBIT_PREFER_FAILURE && opcode == W.OP_PEER) return W.RESULT_MALFORMED_REQUEST; // [6887 §12.1]
      return W.RESULT_MALFORMED_OPTION; // option not defined for this opcode [6887 §13] (decision)
    }
    if (!optionLengthOk(bit, p, n)) return W.RESULT_MALFORMED_OPTION; // [6887 §7.3]
    if (bit != A.OPTBIT_FILTER && bit != A.OPTBIT_PRF && bit != A.OPTBIT_MAC_ALGORITHM) { // [7652 §7.5, §7.6] as many as fit
      if (once & bit) return W.RESULT_MALFORMED_OPTION; // repeated single-use option [6887 §7.3]
      once |= bit;
    }
    switch (bit) {
      case A.OPTBIT_THIRD_PARTY: {
        if ((ingress & A.INGRESS_THIRD_PARTY) == 0) return W.RESULT_UNSUPP_OPTION; // unauthorised host [6887 §13.1]
        if (addrEqual(p, src)) return W.RESULT_MALFORMED_REQUEST; // [6887 §13.1]
        store<u16>(slot + A.SLOT_THIRD_PARTY, <u16>(p - d));
        break;
      }
      case A.OPTBIT_FILTER: {
        const prefix = <u32>load<u8>(p + W.FILTER_PREFIX_LENGTH);
        if (prefix == 0) {
          flags |= A.PARSE_FILTER_CLEAR; // remove-all, address ignored [6887 §13.3, erratum 3891] (decision)
        } else if (prefix > 128 || (prefix < 96 && isV4Mapped(p + W.FILTER_REMOTE_ADDR))) {
          return W.RESULT_MALFORMED_OPTION; // [6887 §13.3]
        }
        if (filters == 0) store<u16>(slot + A.SLOT_FILTER_FIRST, <u16>tlv);
        filters++;
        break;
      }
      case A.OPTBIT_PORT_SET: {
        if (rd16(p + W.PORT_SET_SIZE) == 0) return W.RESULT_MALFORMED_OPTION; // [7753 §4.2]
        if (rd16(p + W.PORT_SET_FIRST_PORT) != rd16(d + W.MP_INTERNAL_PORT)) return W.RESULT_MALFORMED_OPTION; // [7753 §4]
        store<u16>(slot + A.SLOT_PORT_SET, <u16>(p - d));
        break;
      }
      case A.OPTBIT_PREFIX64: {
        const l = rd16(p);
        if (!(l == 4 || l == 5 || l == 6 || l == 7 || l == 8 || l == 12)) return W.RESULT_MALFORMED_OPTION; // [7225 §4.1]
        store<u16>(slot + A.SLOT_PREFIX64, <u16>(p - d));
        store<u16>(slot + A.SLOT_PREFIX64_LEN, <u16>n);
        break;
      }
      case A.OPTBIT_THIRD_PARTY_ID: {
        if (n > cfgThirdPartyIdMaxLen) return W.RESULT_UNSUPP_THIRD_PARTY_ID_LENGTH; // [7843 §4.1]
        store<u16>(slot + A.SLOT_THIRD_PARTY_ID, <u16>(p - d));
        store<u16>(slot + A.SLOT_THIRD_PARTY_ID_LEN, <u16>n);
        break;
      }
      case A.OPTBIT_DESCRIPTION: {
        if (!isCleanUtf8(p, n)) {
          flags |= A.PARSE_DESCRIPTION_INVALID; // ignored, never echoed [7220 §3]
          continue;
        }
        store<u16>(slot + A.SLOT_DESCRIPTION, <u16>(p - d));
        store<u16>(slot + A.SLOT_DESCRIPTION_LEN, <u16>n);
        break;
      }
      case A.OPTBIT_AUTHENTICATION_TAG: {
        store<u16>(slot + A.SLOT_AUTH_TAG, <u16>tlv); // checked by the host before the batch [7652 §6.2]
        break;
      }
      default: break; // PREFER_FAILURE, CHECKPOINT_REQUIRED, the PA options (read by src/auth): presence is the whole content
    }
    recorded |= bit;
  }
  store<u32>(slot + A.SLOT_OPTIONS, recorded);
  store<u16>(slot + A.SLOT_FILTER_COUNT, <u16>filters);
  store<u16>(slot + A.SLOT_PARSE_FLAGS, <u16>flags);
  return 0;
}

/** Rules that involve several options or an option and a header field (row 14). */
function crossOptionCheck(slot: usize, opcode: u32): u32 {
  const d = data(slot);
  const opts = load<u32>(slot + A.SLOT_OPTIONS);
  const lifetime = rd32(d + W.HDR_LIFETIME);
  if ((opts & A.OPTBIT_THIRD_PARTY_ID) && !(opts & A.OPTBIT_THIRD_PARTY)) return W.RESULT_THIRD_PARTY_MISSING_OPTION; // [7843 §4.1]
  if (opcode != W.OP_MAP) return 0;
  if ((opts & A.OPTBIT_PREFER_FAILURE) && lifetime == 0) return W.RESULT_MALFORMED_OPTION; // [6887 §11.3]
  if ((opts & A.OPTBIT_FILTER) && lifetime == 0) return W.RESULT_MALFORMED_OPTION; // [6887 §13.3]
  if ((opts & A.OPTBIT_PREFER_FAILURE) && rd16(d + W.MP_EXTERNAL_PORT) == 0) return W.RESULT_MALFORMED_OPTION; // [6887 §13.2]
  if ((opts & A.OPTBIT_PORT_SET) && (opts & A.OPTBIT_PREFER_FAILURE)) return W.RESULT_MALFORMED_OPTION; // [7753 §4.2]
  return 0;
}

const AUTH_HANDOFF: u32 = 0xffffffff;

/** PA-Client result codes [7652 §5.1, §3]; 0 only on a PA-Acknowledgement (RECEIVED_PAK, decision). */
function paClientResultOk(result: u32, opts: u32): bool {
  return result == W.RESULT_INITIATION || result == W.RESULT_AUTHENTICATION_REPLY || result == W.RESULT_AUTHENTICATION_SUCCEEDED ||
    result == W.RESULT_AUTHENTICATION_FAILED || result == W.RESULT_AUTHORIZATION_FAILED || result == W.RESULT_SESSION_TERMINATED ||
    (result == 0 && (opts & A.OPTBIT_RECEIVED_PAK) != 0);
}

/**
 * Authentication rules (row 15a, sources with INGRESS_AUTH only) [RFC 7652]. Returns 0, a
 * result code, or AUTH_HANDOFF when the request is an AUTHENTICATION message for the host.
 */
function authCheck(slot: usize, opcode: u32, ingress: u32, hostFlags: u32): u32 {
  const opts = load<u32>(slot + A.SLOT_OPTIONS);
  if (opcode == W.OP_AUTHENTICATION) {
    if (!paClientResultOk(<u32>load<u8>(data(slot) + W.PA_CLIENT_RESULT), opts)) return W.RESULT_MALFORMED_REQUEST; // [7652 §5.1] (decision)
    return AUTH_HANDOFF;
  }
  // A tag the host could not match to a security association [7652 §3.2].
  if (hostFlags & A.HOST_AUTH_UNKNOWN_SESSION) return W.RESULT_UNKNOWN_SESSION_ID;
  if ((opts & A.OPTBIT_AUTHENTICATION_TAG) && !(hostFlags & A.HOST_AUTHENTICATED)) return W.RESULT_UNKNOWN_SESSION_ID;
  if (opcode == W.OP_ANNOUNCE || (hostFlags & A.HOST_AUTHENTICATED)) return 0; // ANNOUNCE creates nothing (decision)
  const required = opts & A.OPTBIT_THIRD_PARTY ? A.INGRESS_AUTH_TP_REQUIRED : A.INGRESS_AUTH_REQUIRED;
  if (ingress & required) return W.RESULT_AUTHENTICATION_REQUIRED; // [7652 §3.1.2]
  return 0;
}

/** Opcode field rules (row 15). */
function opcodeCheck(slot: usize, opcode: u32): u32 {
  const d = data(slot);
  const protocol = <u32>load<u8>(d + W.MP_PROTOCOL);
  const internalPort = rd16(d + W.MP_INTERNAL_PORT);
  if (opcode == W.OP_MAP) {
    if (protocol == 0 && internalPort != 0) return W.RESULT_MALFORMED_REQUEST; // [6887 §11.3, §15.1]
  } else if (opcode == W.OP_PEER) {
    if (protocol == 0 || internalPort == 0 || rd16(d + W.PEER_REMOTE_PORT) == 0) return W.RESULT_MALFORMED_REQUEST; // [6887 §12.1] (decision)
    if (isUnusablePeer(d + W.PEER_REMOTE_ADDR)) return W.RESULT_MALFORMED_REQUEST; // [6887 §12.3]
  }
  return 0;
}

// ---- NAT-PMP [RFC 6886 §3] ----

function processNatPmp(slot: usize, length: u32, ingress: u32, hostFlags: u32): void {
  const d = data(slot);
  if ((ingress & A.INGRESS_SUBSCRIBER) == 0) return drop(slot, A.DROP_INTERFACE); // external side refused [6886 §3.3]
  if (hostFlags & A.HOST_OVERLOADED) return drop(slot, A.DROP_OVERLOAD);
  const opcode = <u32>load<u8>(d + W.HDR_OPCODE);
  if (opcode == W.NATPMP_OP_ADDRESS) return parsed(slot, 0);
  if (opcode == W.NATPMP_OP_MAP_UDP || opcode == W.NATPMP_OP_MAP_TCP) {
    if (length < W.NATPMP_MAP_REQUEST_SIZE) return drop(slot, A.DROP_NATPMP_SHORT); // [6886 §3.3]
    return parsed(slot, rd32(d + W.NATPMP_REQ_LIFETIME));
  }
  // Unsupported opcode < 128: the request comes back with the response bit and result 5
  // [6886 §3.5]; zero-extended to 4 bytes so the result code fits (decision).
  let n = length < W.PCP_MAX_MESSAGE ? length : W.PCP_MAX_MESSAGE;
  if (n < 4) {
    memory.fill(d + n, 0, 4 - n);
    n = 4;
  }
  store<u8>(d + W.HDR_OPCODE, <u8>(opcode | W.NATPMP_RESPONSE_BIT));
  wr16(d + W.NATPMP_RESULT, W.NATPMP_RESULT_UNSUPP_OPCODE);
  reply(slot, W.NATPMP_RESULT_UNSUPP_OPCODE, n);
  bump(A.STATS_NATPMP_RESULT + (<u32>W.NATPMP_RESULT_UNSUPP_OPCODE << 3));
}

/** A valid AUTHENTICATION request: the host runs the exchange [7652 §3]; counted as parsed. */
function handOff(slot: usize): void {
  store<u16>(slot + A.SLOT_PARSE_FLAGS, load<u16>(slot + A.SLOT_PARSE_FLAGS) | A.PARSE_OK);
  store<u8>(slot + A.SLOT_VERDICT, A.VERDICT_AUTH);
  bump(A.STATS_PARSED);
}

function parsed(slot: usize, lifetime: u32): void {
  store<u8>(slot + A.SLOT_VERDICT, A.VERDICT_PARSED);
  store<u32>(slot + A.SLOT_LIFETIME, lifetime);
  bump(A.STATS_PARSED);
}

// ---- the pipeline (docs/codec.md, digest §1.11) ----

export function processSlot(slot: usize): void {
  const d = data(slot);
  const wireLen = <u32>load<u16>(slot + A.SLOT_WIRE_LEN);
  const ingress = <u32>load<u8>(slot + A.SLOT_INGRESS);
  const hostFlags = <u32>load<u8>(slot + A.SLOT_HOST_FLAGS);
  // Clear every "out" field (bytes 38..81) so stale results of an earlier batch never leak.
  store<u16>(slot + A.SLOT_VERDICT, 0); // verdict, drop reason
  store<u32>(slot + A.SLOT_RESULT, 0); // result, response length
  store<u64>(slot + A.SLOT_VERSION, 0); // version, opcode, parse flags, lifetime
  store<u64>(slot + A.SLOT_OPTIONS, 0); // options, option start/end
  store<u64>(slot + A.SLOT_THIRD_PARTY, 0); // through description offset
  store<u64>(slot + A.SLOT_DESCRIPTION_LEN, 0); // through port-set offset
  store<u32>(slot + A.SLOT_THIRD_PARTY_ID, 0); // third-party-id offset and length
  store<u16>(slot + A.SLOT_AUTH_TAG, 0);
  bump(A.STATS_PACKETS);
  curThirdPartyOnly = (ingress & A.INGRESS_SUBSCRIBER) == 0;
  curSawThirdParty = false;

  if ((ingress & (A.INGRESS_SUBSCRIBER | A.INGRESS_THIRD_PARTY)) == 0) return drop(slot, A.DROP_INTERFACE); // row 1 [6887 §8.2]
  if (wireLen < 2) return drop(slot, A.DROP_TOO_SHORT); // row 2 [6887 §8.2]
  const version = <u32>load<u8>(d + W.HDR_VERSION);
  const opByte = <u32>load<u8>(d + W.HDR_OPCODE);
  store<u8>(slot + A.SLOT_VERSION, <u8>version);
  store<u8>(slot + A.SLOT_OPCODE, <u8>(opByte & W.OPCODE_MASK));
  if (opByte & W.R_BIT) return drop(slot, A.DROP_RESPONSE); // row 3 [6887 §8.2, 6886 §3.5]
  if (version == W.NATPMP_VERSION) {
    if (cfgFlags & A.CFG_NATPMP_SILENT) return drop(slot, A.DROP_NATPMP_SILENT); // row 4 [6886 §3.8]
    if (cfgFlags & A.CFG_NATPMP_ENABLED) return processNatPmp(slot, wireLen, ingress, hostFlags); // row 5 [6886 §1.1]
  }
  if (version != W.PCP_VERSION) {
    // row 6: version negotiation precedes the 24-byte test [6887 §9, §8.2]
    if (curThirdPartyOnly) return drop(slot, A.DROP_INTERFACE);
    // A 2-byte request gets a 24-byte reply: a source over its rate gets none, whatever
    // pcp.overload says (NO_RESOURCES is a version-2 answer, as large) [6887 §17.2, §8.1].
    if (hostFlags & A.HOST_OVERLOADED) return drop(slot, A.DROP_OVERLOAD);
    return writeError(slot, W.RESULT_UNSUPP_VERSION, cfgLongErrorLifetime, W.PCP_HEADER_SIZE);
  }
  if (wireLen < W.PCP_HEADER_SIZE) return drop(slot, A.DROP_SHORT_HEADER); // row 7 [6887 §8.2]
  if (hostFlags & A.HOST_OVERLOADED) {
    // row 8 [6887 §8.2]: drop or NO_RESOURCES, as configured
    if (cfgFlags & A.CFG_OVERLOAD_REPLY) return reject(slot, W.RESULT_NO_RESOURCES);
    return drop(slot, A.DROP_OVERLOAD);
  }
  const opcode = opByte;
  let minimum: u32 = 0;
  if (opcode == W.OP_ANNOUNCE) minimum = W.ANNOUNCE_MIN_SIZE;
  else if (opcode == W.OP_MAP) minimum = W.MAP_MIN_SIZE;
  else if (opcode == W.OP_PEER) minimum = W.PEER_MIN_SIZE;
  else if (opcode == W.OP_AUTHENTICATION && (ingress & A.INGRESS_AUTH)) {
    minimum = W.AUTH_MIN_SIZE; // [7652 §5.2]
    // A THIRD_PARTY source (a CPE proxy) authenticates itself: answered as its THIRD_PARTY requests are (decision).
    curSawThirdParty = true;
  }
  if (wireLen > W.PCP_MAX_MESSAGE || (wireLen & 3) != 0 || wireLen < minimum) {
    return reject(slot, W.RESULT_MALFORMED_REQUEST); // row 9 [6887 §8.2]
  }
  if (!addrEqual(d + W.HDR_CLIENT_ADDR, slot + A.SLOT_SRC_ADDR)) return reject(slot, W.RESULT_ADDRESS_MISMATCH); // row 10 [6887 §8.2]
  if (minimum == 0) return reject(slot, W.RESULT_UNSUPP_OPCODE); // row 11 [6887 §8.2]

  let result = walkOptions(slot, opcode, minimum, wireLen, ingress); // row 12 [6887 §7.3]
  if (result != 0) return reject(slot, result);
  if (curThirdPartyOnly && !curSawThirdParty) return drop(slot, A.DROP_INTERFACE); // row 13 [6887 §8.2]
  result = crossOptionCheck(slot, opcode); // row 14
  if (result == 0) result = opcodeCheck(slot, opcode); // row 15
  if (result == 0 && (ingress & A.INGRESS_AUTH)) result = authCheck(slot, opcode, ingress, hostFlags); // row 15a [7652]
  if (result == AUTH_HANDOFF) return handOff(slot);
  if (result != 0) return reject(slot, result);

  store<u16>(slot + A.SLOT_PARSE_FLAGS, load<u16>(slot + A.SLOT_PARSE_FLAGS) | A.PARSE_OK);
  if ((opcode == W.OP_MAP && !(cfgFlags & A.CFG_MAP_ENABLED)) || (opcode == W.OP_PEER && !(cfgFlags & A.CFG_PEER_ENABLED))) {
    return writeError(slot, W.RESULT_NOT_AUTHORIZED, cfgLongErrorLifetime, 0); // row 16 [6887 §11, §12] (decision)
  }
  if (opcode == W.OP_ANNOUNCE) return finishSuccess(slot, 0, 0); // row 17 [6887 §14.1.2]
  parsed(slot, rd32(d + W.HDR_LIFETIME)); // row 18
}

/** Runs the codec over slots [0, count); returns how many are PARSED. */
export function processBatch(count: u32, epoch: u32): u32 {
  return processRange(0, count, epoch);
}

/** Runs the codec over slots [first, first + count), clipped to the slot array. */
export function processRange(first: u32, count: u32, epoch: u32): u32 {
  batchEpoch = epoch;
  if (first >= A.SLOT_COUNT) return 0;
  const end = count < A.SLOT_COUNT - first ? first + count : A.SLOT_COUNT;
  let pending: u32 = 0;
  for (let i = first; i < end; i++) {
    const slot = slots + <usize>i * A.SLOT_SIZE;
    processSlot(slot);
    if (load<u8>(slot + A.SLOT_VERDICT) == A.VERDICT_PARSED) pending++;
  }
  return pending;
}

// ---- encoders used by the engine to finish a PARSED slot ----

// The request's DESCRIPTION text [RFC 7220], saved before finishSuccess builds the reply
// over the request: compacting the echoed options forward and appending the PREFIX64
// options write over whatever follows them, so a DESCRIPTION placed before a THIRD_PARTY,
// FILTER or PREFIX64 option would otherwise be read back as that option's bytes (issue #12
// item 10). The engine stores at most DESCRIPTION_STORED_MAX bytes; one more is kept so it
// can find a character boundary.
const DESCRIPTION_SAVED_CAP: u32 = A.DESCRIPTION_STORED_MAX + 1;
const savedDescription = memory.data(<i32>((DESCRIPTION_SAVED_CAP + 3) & ~3), 16);
let savedDescriptionSlot: usize = 0;

@inline function saveDescription(slot: usize): void {
  savedDescriptionSlot = 0;
  if (load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_DESCRIPTION) copyDescription(slot); // inlined: no call without the option
}

function copyDescription(slot: usize): void {
  const n = <u32>load<u16>(slot + A.SLOT_DESCRIPTION_LEN);
  memory.copy(savedDescription, data(slot) + <u32>load<u16>(slot + A.SLOT_DESCRIPTION), n < DESCRIPTION_SAVED_CAP ? n : DESCRIPTION_SAVED_CAP);
  savedDescriptionSlot = slot;
}

/**
 * The DESCRIPTION text of the request `slot` held, as saved when its success reply was
 * built (length: SLOT_DESCRIPTION_LEN; only the first DESCRIPTION_STORED_MAX + 1 bytes);
 * 0 if the slot has none or is not the one finishSuccess built last.
 */
export function requestDescription(slot: usize): usize {
  return savedDescriptionSlot == slot ? savedDescription : 0;
}

/**
 * Success reply [6887 §8.2]: header rewritten, opcode reserved fields zeroed, options
 * with a bit in `echoMask` (and recorded as valid) kept in request order. Built in place:
 * the write cursor never passes the read cursor, so memory.copy may overlap safely.
 */
export function finishSuccess(slot: usize, lifetime: u32, echoMask: u32): void {
  const d = data(slot);
  saveDescription(slot); // before any option byte is overwritten
  const opcode = <u32>load<u8>(slot + A.SLOT_OPCODE);
  store<u8>(d + W.HDR_VERSION, W.PCP_VERSION);
  store<u8>(d + W.HDR_OPCODE, <u8>(opcode | W.R_BIT));
  store<u16>(d + W.HDR_RESERVED, 0); // byte 2 reserved, byte 3 result SUCCESS
  wr32(d + W.HDR_LIFETIME, lifetime);
  wr32(d + W.HDR_EPOCH, batchEpoch);
  store<u32>(d + W.HDR_RESP_RESERVED, 0);
  store<u64>(d + W.HDR_RESP_RESERVED + 4, 0);
  if (opcode == W.OP_MAP || opcode == W.OP_PEER) {
    store<u8>(d + W.MP_RESERVED, 0);
    store<u16>(d + W.MP_RESERVED + 1, 0);
    if (opcode == W.OP_PEER) store<u16>(d + W.PEER_RESERVED, 0);
  }
  const keep = echoMask & load<u32>(slot + A.SLOT_OPTIONS);
  let r = <u32>load<u16>(slot + A.SLOT_OPT_START);
  const end = <u32>load<u16>(slot + A.SLOT_OPT_END);
  let w = r;
  while (r < end) {
    const n = rd16(d + r + W.OPT_LENGTH);
    const size = W.OPT_HEADER_SIZE + ((n + 3) & ~3);
    if (optionBit(<u32>load<u8>(d + r)) & keep) {
      if (w != r) memory.copy(d + w, d + r, size);
      store<u8>(d + w + W.OPT_RESERVED, 0);
      const pad = size - W.OPT_HEADER_SIZE - n;
      if (pad) memory.fill(d + w + W.OPT_HEADER_SIZE + n, 0, pad);
      w += size;
    }
    r += size;
  }
  // The configured NAT64 prefixes replace the client's ::/96 query [RFC 7225 §4.2].
  if ((load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_PREFIX64) && prefix64Length != 0 && (opcode == W.OP_MAP || opcode == W.OP_ANNOUNCE) &&
      w + prefix64Length <= W.PCP_MAX_MESSAGE) {
    memory.copy(d + w, prefix64Options, prefix64Length);
    w += prefix64Length;
  }
  assert(w <= W.PCP_MAX_MESSAGE && (w & 3) == 0);
  reply(slot, W.RESULT_SUCCESS, w);
  bump(A.STATS_PCP_RESULT);
}

/**
 * Appends an option (`length` data bytes at `src`, padded) to the reply finishSuccess built
 * in `slot`; false (nothing appended) if it would exceed the largest message.
 */
export function appendOption(slot: usize, code: u32, src: usize, length: u32): bool {
  const d = data(slot);
  const at = <u32>load<u16>(slot + A.SLOT_RESP_LEN);
  const size = W.OPT_HEADER_SIZE + ((length + 3) & ~3);
  if (at + size > W.PCP_MAX_MESSAGE) return false;
  store<u8>(d + at, <u8>code);
  store<u8>(d + at + W.OPT_RESERVED, 0);
  wr16(d + at + W.OPT_LENGTH, length);
  memory.copy(d + at + W.OPT_HEADER_SIZE, src, length);
  memory.fill(d + at + W.OPT_HEADER_SIZE + length, 0, size - W.OPT_HEADER_SIZE - length);
  store<u16>(slot + A.SLOT_RESP_LEN, <u16>(at + size));
  return true;
}

/** Error reply for a parsed request (engine decisions): bytes 12..23 zeroed [6887 §7.2]. */
export function finishError(slot: usize, result: u32, lifetime: u32): void {
  store<u16>(slot + A.SLOT_PARSE_FLAGS, load<u16>(slot + A.SLOT_PARSE_FLAGS) | A.PARSE_OK);
  writeError(slot, result, lifetime, 0);
}

function natPmpHeader(slot: usize, result: u32): usize {
  const d = data(slot);
  store<u8>(d + W.HDR_VERSION, W.NATPMP_VERSION);
  store<u8>(d + W.HDR_OPCODE, <u8>(load<u8>(slot + A.SLOT_OPCODE) | W.NATPMP_RESPONSE_BIT));
  wr16(d + W.NATPMP_RESULT, result);
  wr32(d + W.NATPMP_SSSOE, batchEpoch);
  bump(A.STATS_NATPMP_RESULT + ((result & (W.NATPMP_RESULT_CODE_LIMIT - 1)) << 3));
  return d;
}

/** External address reply [6886 §3.2]; the address is 0 unless result is success. */
export function finishNatPmpAddress(slot: usize, result: u32, ipv4: u32): void {
  const d = natPmpHeader(slot, result);
  wr32(d + W.NATPMP_EXTERNAL_ADDR, result == W.NATPMP_RESULT_SUCCESS ? ipv4 : 0);
  reply(slot, result, W.NATPMP_ADDRESS_RESPONSE_SIZE);
}

/** Mapping reply [6886 §3.3]; the internal port is echoed from the request. */
export function finishNatPmpMap(slot: usize, result: u32, externalPort: u32, lifetime: u32): void {
  const d = data(slot);
  // Read the request fields the reply reuses before the header overwrites bytes 4..11.
  const internalPort = rd16(d + W.NATPMP_INTERNAL_PORT);
  natPmpHeader(slot, result);
  wr16(d + W.NATPMP_RESP_INTERNAL_PORT, internalPort);
  wr16(d + W.NATPMP_RESP_EXTERNAL_PORT, externalPort);
  wr32(d + W.NATPMP_RESP_LIFETIME, lifetime);
  reply(slot, result, W.NATPMP_MAP_RESPONSE_SIZE);
}

// ---- unsolicited messages (sent by the host after an Epoch reset) ----

/** Gratuitous ANNOUNCE response [6887 §14.1.3] at `at` (R=1, opcode 0, result 0, lifetime 0); returns its size. */
export function encodeAnnounce(at: usize, epoch: u32): u32 {
  store<u8>(at + W.HDR_VERSION, W.PCP_VERSION);
  store<u8>(at + W.HDR_OPCODE, W.OP_ANNOUNCE | W.R_BIT);
  store<u16>(at + W.HDR_RESERVED, 0); // reserved byte, result SUCCESS
  wr32(at + W.HDR_LIFETIME, 0);
  wr32(at + W.HDR_EPOCH, epoch);
  memory.fill(at + W.HDR_RESP_RESERVED, 0, W.HDR_RESP_RESERVED_SIZE);
  return W.PCP_HEADER_SIZE;
}

/** NAT-PMP external-address announcement [6886 §3.2.1] at `at`; returns its size. */
export function encodeNatPmpAnnounce(at: usize, epoch: u32, ipv4: u32): u32 {
  store<u8>(at + W.HDR_VERSION, W.NATPMP_VERSION);
  store<u8>(at + W.HDR_OPCODE, W.NATPMP_OP_ADDRESS | W.NATPMP_RESPONSE_BIT);
  wr16(at + W.NATPMP_RESULT, W.NATPMP_RESULT_SUCCESS);
  wr32(at + W.NATPMP_SSSOE, epoch);
  wr32(at + W.NATPMP_EXTERNAL_ADDR, ipv4);
  return W.NATPMP_ADDRESS_RESPONSE_SIZE;
}
