// The host ⇄ module boundary: slot layout, verdicts, drop reasons, configuration bits,
// option bits and the stats region. Fields in the slot header are little-endian (the
// module's native order); the data area holds wire bytes (big-endian).
// Mirrored into src/wire.generated.ts by scripts/gen-wire.mjs.

// ---- Batch slots ----
// A slot is one datagram: the host writes the header "in" fields and the payload, the
// module writes the "out" fields and builds the response in place over the payload.
export const SLOT_COUNT: u32 = 256;
export const SLOT_SIZE: u32 = 1200;
export const SLOT_HEADER_SIZE: u32 = 96;
export const SLOT_DATA: u32 = 96; // payload offset inside the slot
export const SLOT_DATA_CAP: u32 = 1104; // bytes of payload kept; longer datagrams are cut

// in: written by the host before processBatch
export const SLOT_SRC_ADDR: u32 = 0; // 16 bytes, IPv6 or v4-mapped source address
export const SLOT_DST_ADDR: u32 = 16; // 16 bytes, local address the datagram was sent to
export const SLOT_SRC_PORT: u32 = 32; // u16
export const SLOT_WIRE_LEN: u32 = 34; // u16, real datagram length (min(len, 65535))
export const SLOT_INGRESS: u32 = 36; // u8, INGRESS_* bits
export const SLOT_HOST_FLAGS: u32 = 37; // u8, HOST_* bits
// out: written by the module
export const SLOT_VERDICT: u32 = 38; // u8, VERDICT_*
export const SLOT_DROP_REASON: u32 = 39; // u8, DROP_*
export const SLOT_RESULT: u32 = 40; // u16, result code of the reply (PCP or NAT-PMP)
export const SLOT_RESP_LEN: u32 = 42; // u16, reply length in the data area
export const SLOT_VERSION: u32 = 44; // u8, request version (0 NAT-PMP, 2 PCP)
export const SLOT_OPCODE: u32 = 45; // u8, request opcode (R bit clear)
export const SLOT_PARSE_FLAGS: u32 = 46; // u16, PARSE_* bits
export const SLOT_LIFETIME: u32 = 48; // u32, requested lifetime
export const SLOT_OPTIONS: u32 = 52; // u32, OPTBIT_* of the options present and valid
export const SLOT_OPT_START: u32 = 56; // u16, data offset of the first option
export const SLOT_OPT_END: u32 = 58; // u16, data offset after the last option
export const SLOT_THIRD_PARTY: u32 = 60; // u16, data offset of THIRD_PARTY's address
export const SLOT_FILTER_FIRST: u32 = 62; // u16, data offset of the first FILTER's TLV
export const SLOT_FILTER_COUNT: u32 = 64; // u16
export const SLOT_DESCRIPTION: u32 = 66; // u16, data offset of DESCRIPTION text
export const SLOT_DESCRIPTION_LEN: u32 = 68; // u16
export const SLOT_PREFIX64: u32 = 70; // u16, data offset of PREFIX64 data
export const SLOT_PREFIX64_LEN: u32 = 72; // u16
export const SLOT_PORT_SET: u32 = 74; // u16, data offset of PORT_SET data
export const SLOT_THIRD_PARTY_ID: u32 = 76; // u16, data offset of THIRD_PARTY_ID data
export const SLOT_THIRD_PARTY_ID_LEN: u32 = 78; // u16

// ---- Ingress classification (host decides from its interface/subnet configuration) ----
export const INGRESS_SUBSCRIBER: u8 = 1; // arrived where this client's traffic arrives [6887 §8.2]
export const INGRESS_THIRD_PARTY: u8 = 2; // source is authorised to use THIRD_PARTY [6887 §13.1]

export const HOST_OVERLOADED: u8 = 1; // rate limiter tripped for this source or globally [6887 §8.2]

// ---- Verdicts ----
export const VERDICT_DROP: u8 = 0; // no reply; SLOT_DROP_REASON says why
export const VERDICT_REPLY: u8 = 1; // reply of SLOT_RESP_LEN bytes is in the data area
export const VERDICT_PARSED: u8 = 2; // valid request, record filled, mapping decision pending

// ---- Drop reasons (one counter each) ----
export const DROP_NONE: u8 = 0;
export const DROP_TOO_SHORT: u8 = 1; // < 2 bytes [6887 §8.2]
export const DROP_RESPONSE: u8 = 2; // R bit set / NAT-PMP opcode >= 128 [6887 §8.2, 6886 §3.5]
export const DROP_SHORT_HEADER: u8 = 3; // version 2, < 24 bytes [6887 §8.2]
export const DROP_INTERFACE: u8 = 4; // not accepted from this ingress [6887 §8.2]
export const DROP_OVERLOAD: u8 = 5; // host flagged overload, policy = drop [6887 §8.2]
export const DROP_NATPMP_SHORT: u8 = 6; // NAT-PMP map request < 12 bytes [6886 §3.3]
export const DROP_NATPMP_SILENT: u8 = 7; // NAT-PMP configured silent [6886 §3.8]
export const DROP_REASON_LIMIT: u32 = 8;

// ---- Parse flags ----
export const PARSE_OK: u16 = 1; // request parsed: error replies zero bytes 12..23 [6887 §7.2]
export const PARSE_DESCRIPTION_INVALID: u16 = 2; // DESCRIPTION present but not valid UTF-8 [7220 §3]
export const PARSE_FILTER_CLEAR: u16 = 4; // a FILTER with prefix length 0 is present [6887 §13.3]

// ---- Option bits (SLOT_OPTIONS, echo masks, enable masks) ----
export const OPTBIT_THIRD_PARTY: u32 = 1;
export const OPTBIT_PREFER_FAILURE: u32 = 2;
export const OPTBIT_FILTER: u32 = 4;
export const OPTBIT_THIRD_PARTY_ID: u32 = 8;
export const OPTBIT_DESCRIPTION: u32 = 16;
export const OPTBIT_PREFIX64: u32 = 32;
export const OPTBIT_PORT_SET: u32 = 64;
export const OPTBIT_CHECKPOINT_REQUIRED: u32 = 128;
export const OPTBIT_ALL: u32 = 255;
export const OPTBIT_CORE: u32 = 7; // THIRD_PARTY, PREFER_FAILURE, FILTER: enabled by default

// ---- Configuration bits (configure(flags, ...)) ----
export const CFG_MAP_ENABLED: u32 = 1; // [6887 §11] disabled → NOT_AUTHORIZED
export const CFG_PEER_ENABLED: u32 = 2; // [6887 §12] disabled → NOT_AUTHORIZED
export const CFG_OVERLOAD_REPLY: u32 = 4; // overload → NO_RESOURCES instead of drop
export const CFG_NATPMP_ENABLED: u32 = 8; // version 0 → NAT-PMP [6886]
export const CFG_NATPMP_SILENT: u32 = 16; // version 0 → no answer at all [6886 §3.8]
export const CFG_DEFAULT: u32 = 11; // MAP, PEER, NAT-PMP

// ---- Stats region: u64 counters ----
export const STATS_PCP_RESULT: u32 = 0; // RESULT_CODE_LIMIT counters of PCP replies by result
export const STATS_NATPMP_RESULT: u32 = 256; // NATPMP_RESULT_CODE_LIMIT counters
export const STATS_DROP: u32 = 320; // DROP_REASON_LIMIT counters
export const STATS_PARSED: u32 = 384; // requests handed on with VERDICT_PARSED
export const STATS_PACKETS: u32 = 392; // datagrams seen by processBatch
export const STATS_SIZE: u32 = 400;
