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
export const HOST_CHECKPOINT: u8 = 2; // set by the engine: reply only once the mapping is durable [RFC 7767]

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
// engine (assembly/engine.ts); "gauges" go up and down, the rest only up
export const STATS_MAPPINGS: u32 = 400; // gauge: live mappings (MAP, PEER-created or static)
export const STATS_HELD: u32 = 408; // gauge: external ports in hold-down
export const STATS_SUBSCRIBERS: u32 = 416; // gauge
export const STATS_BLOCKS: u32 = 424; // gauge: port blocks leased
export const STATS_PEERS: u32 = 432; // gauge: PEER records
export const STATS_FILTERS: u32 = 440; // gauge: FILTER entries
export const STATS_CREATED: u32 = 448;
export const STATS_REFRESHED: u32 = 456;
export const STATS_DELETED: u32 = 464;
export const STATS_EXPIRED: u32 = 472;
export const STATS_RELEASED: u32 = 480; // hold-downs ended
export const STATS_EVENTS_LOST: u32 = 488; // event ring was full
export const STATS_SIZE: u32 = 512;

// ---- Event ring (engine → host): EVENT_SIZE-byte records, EVENT_CAPACITY of them ----
export const EVENT_CAPACITY: u32 = 65536;
export const EVENT_SIZE: u32 = 48;
export const EV_KIND: u32 = 0; // u8, EVENT_*
export const EV_PROTOCOL: u32 = 1; // u8
export const EV_FLAGS: u32 = 2; // u8, MAPF_*
export const EV_FAMILY: u32 = 3; // u8, 0 IPv4 external, 1 IPv6 external
export const EV_INTERNAL_PORT: u32 = 4; // u16
export const EV_EXTERNAL_PORT: u32 = 6; // u16
export const EV_POOL_INDEX: u32 = 8; // u16, external address = pool entry
export const EV_CLIENT_PORT: u32 = 10; // u16, source port of the last request
export const EV_REALM: u32 = 12; // u32
export const EV_MAP_EXPIRY: u32 = 16; // u32, inbound (MAP) expiry, 0 = none; hold end when held
export const EV_OUT_EXPIRY: u32 = 20; // u32, outbound (PEER) expiry, 0 = none
export const EV_MAPPING: u32 = 24; // u32, record id
export const EV_TIME: u32 = 28; // u32, engine time of the event
export const EV_INTERNAL_ADDR: u32 = 32; // 16 bytes
export const EVENT_CREATE: u8 = 1;
export const EVENT_REFRESH: u8 = 2;
export const EVENT_DELETE: u8 = 3;
export const EVENT_EXPIRE: u8 = 4;
export const EVENT_RELEASE: u8 = 5; // hold-down ended, port free again
export const EVENT_UPDATE: u8 = 6; // re-homed: new external address/port (pool address retired)

// ---- Mapping flags (EV_FLAGS) ----
export const MAPF_INBOUND: u8 = 1; // has a MAP part
export const MAPF_OUTBOUND: u8 = 2; // has a PEER part
export const MAPF_STATIC: u8 = 4;
export const MAPF_HELD: u8 = 8; // ended; external port in hold-down
export const MAPF_NATPMP: u8 = 16; // created by NAT-PMP
export const MAPF_THIRD_PARTY: u8 = 32; // created through THIRD_PARTY
export const MAPF_PREFER_FAILURE: u8 = 64; // created with PREFER_FAILURE
export const MAPF_CHECKPOINT: u8 = 128; // check-pointed [RFC 7767]: every change journaled at once
export const EVF_CHANGED: u8 = 128; // in events the same bit means "journal this one": a refresh that changed more than lifetimes (FILTERs, PEER, DESCRIPTION), or any change of a check-pointed mapping

// ---- Engine configuration ----
export const NONCE_STRICT: u32 = 0; // RFC 6887 §11.3
export const NONCE_RELAXED: u32 = 1; // a new nonce replaces the old one for the same endpoint
export const POOL_MAX_ADDRESSES: u32 = 256;
export const MAX_BLOCKS_PER_SUBSCRIBER: u32 = 8;
export const SCRATCH_SIZE: u32 = 64;
export const PREFIX64_OPTIONS_CAP: u32 = 512; // bytes of configured PREFIX64 options (codec)
export const PORT_SET_LIMIT: u32 = 1024; // largest PORT_SET granted [RFC 7753] (pcp.portSet.maxSize ≤ this)
export const REALM_ID_MAX: u32 = 16; // THIRD_PARTY_ID bytes a realm identifier may have [RFC 7843] (longer: UNSUPP_THIRD_PARTY_ID_LENGTH)
export const STATIC_MIRRORS_MAX: u32 = 65536; // other shards' static mappings this shard answers for (src/server/static-mirrors.ts)
export const DESCRIPTION_STORED_MAX: u32 = 128; // bytes of DESCRIPTION text kept per mapping [7220 §3: at least 128]

// ---- Persistence: mapping state as portable records (src/persist/) ----
// One record per external key (address, protocol, port): its state (live or held) or its
// end. Times are wall-clock seconds (they outlive the process); addresses are 16 bytes.
export const PREC_KIND: u32 = 0; // u8, PREC_UPSERT | PREC_GONE
export const PREC_PROTOCOL: u32 = 1; // u8
export const PREC_FLAGS: u32 = 2; // u8, MAPF_*
export const PREC_FAMILY: u32 = 3; // u8, 0 IPv4 external, 1 IPv6
export const PREC_INTERNAL_PORT: u32 = 4; // u16
export const PREC_EXTERNAL_PORT: u32 = 6; // u16
export const PREC_CLIENT_PORT: u32 = 8; // u16
export const PREC_FILTER_COUNT: u32 = 10; // u8
export const PREC_PEER_COUNT: u32 = 11; // u8
export const PREC_REALM_ID_LENGTH: u32 = 12; // u8: THIRD_PARTY_ID bytes after the DESCRIPTION text (0: realm 0); 13..15 reserved
export const PREC_MAP_EXPIRY: u32 = 16; // u32 wall seconds (hold end when held), 0 = none
export const PREC_OUT_EXPIRY: u32 = 20; // u32 wall seconds, 0 = none
export const PREC_NONCE: u32 = 24; // 12 bytes
export const PREC_INTERNAL_ADDR: u32 = 36; // 16 bytes
export const PREC_EXTERNAL_ADDR: u32 = 52; // 16 bytes
export const PREC_DESCRIPTION_LENGTH: u32 = 68; // u8
export const PREC_REQUESTER: u32 = 69; // u8: 1 when the THIRD_PARTY requester (PREC_REQUESTER_SIZE bytes) ends the record; 70..71 reserved
export const PREC_HEADER_SIZE: u32 = 72; // then FILTERs, PEERs, the DESCRIPTION text, the realm's THIRD_PARTY_ID, the requester
export const PREC_REQUESTER_SIZE: u32 = 18; // where a THIRD_PARTY request came from (Mapping Update goes there) [6887 §14.2]: address 16, port u16
export const PREC_FILTER_SIZE: u32 = 20; // prefix u8, pad u8, port u16, address 16
export const PREC_PEER_SIZE: u32 = 36; // address 16, port u16, pad u16, expiry u32 (wall), nonce 12
// A FILTER part (PREC_FILTER_SIZE bytes each, right after the header) [6887 §13.3]
export const PREC_FILTER_PREFIX: u32 = 0; // u8 prefix length (of the 16-byte address); 1 pad
export const PREC_FILTER_PORT: u32 = 2; // u16, 0 = any
export const PREC_FILTER_ADDR: u32 = 4; // 16 bytes
// A PEER part (PREC_PEER_SIZE bytes each, after the FILTERs) [6887 §12]
export const PREC_PEER_ADDR: u32 = 0; // 16 bytes, the remote peer
export const PREC_PEER_PORT: u32 = 16; // u16; 18..19 pad
export const PREC_PEER_EXPIRY: u32 = 20; // u32 wall seconds
export const PREC_PEER_NONCE: u32 = 24; // 12 bytes
// The requester part (PREC_REQUESTER_SIZE bytes, the record's last)
export const PREC_REQUESTER_ADDR: u32 = 0; // 16 bytes
export const PREC_REQUESTER_PORT: u32 = 16; // u16
export const PREC_UPSERT: u8 = 1;
export const PREC_GONE: u8 = 2;
export const PERSIST_BUFFER: u32 = 1048576; // bytes per export/import call
// Why a restored record was not taken back (restoreDropped(reason))
export const RESTORE_EXPIRED: u32 = 0; // its time passed while the server was down
export const RESTORE_NOT_IN_POOL: u32 = 1; // its external address left the pool
export const RESTORE_CONFLICT: u32 = 2; // block leased to another subscriber, endpoint mapped elsewhere, quota
export const RESTORE_NO_RESOURCES: u32 = 3; // tables full
export const RESTORE_MALFORMED: u32 = 4; // a record that cannot be read (bad kind, counts past the end)
export const RESTORE_REASON_LIMIT: u32 = 5;

// ---- Listing (control channel): records in event layout, selected inside the engine ----
export const LIST_MAX: u32 = 1000; // records per listScan call
export const LISTSEL_INTERNAL: u32 = 1; // internal address = scratch[0..16]
export const LISTSEL_POOL: u32 = 2; // external address = pool entry
export const LISTSEL_PROTOCOL: u32 = 4;
export const LISTSEL_KIND: u32 = 8; // LISTKIND_*
export const LISTKIND_DYNAMIC: u32 = 0;
export const LISTKIND_STATIC: u32 = 1;
export const LISTKIND_HELD: u32 = 2;
