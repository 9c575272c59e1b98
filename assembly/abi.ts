// The host ⇄ module boundary: slot layout, verdicts, drop reasons, codec switches, option
// bits, the configuration region (CFG) and the stats region. Fields in the slot header are
// little-endian (the module's native order); the data area holds wire bytes (big-endian).
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
export const SLOT_AUTH_TAG: u32 = 80; // u16, data offset of AUTHENTICATION_TAG's TLV [7652 §5.4] (0: none)

// ---- Ingress classification (host decides from its interface/subnet configuration) ----
export const INGRESS_SUBSCRIBER: u8 = 1; // arrived where this client's traffic arrives [6887 §8.2]
export const INGRESS_THIRD_PARTY: u8 = 2; // source is authorised to use THIRD_PARTY [6887 §13.1]
// PCP authentication [RFC 7652] (src/auth/policy.ts): off for a source, none of these is set,
// and AUTHENTICATION and its options are unknown to it (UNSUPP_OPCODE / UNSUPP_OPTION).
export const INGRESS_AUTH: u8 = 4; // authentication offered: AUTHENTICATION opcode and its options accepted
export const INGRESS_AUTH_REQUIRED: u8 = 8; // MAP/PEER without a verified tag → AUTHENTICATION_REQUIRED
export const INGRESS_AUTH_TP_REQUIRED: u8 = 16; // the same for requests carrying THIRD_PARTY (the third-party policy)

export const HOST_OVERLOADED: u8 = 1; // rate limiter tripped for this source or globally [6887 §8.2]
export const HOST_CHECKPOINT: u8 = 2; // set by the engine: reply only once the mapping is durable [RFC 7767]
export const HOST_AUTHENTICATED: u8 = 4; // the host verified the request's AUTHENTICATION_TAG [7652 §6.2]
export const HOST_AUTH_UNKNOWN_SESSION: u8 = 8; // its tag names no security association this server holds [7652 §3.2]

// ---- Verdicts ----
export const VERDICT_DROP: u8 = 0; // no reply; SLOT_DROP_REASON says why
export const VERDICT_REPLY: u8 = 1; // reply of SLOT_RESP_LEN bytes is in the data area
export const VERDICT_PARSED: u8 = 2; // valid request, record filled, mapping decision pending
export const VERDICT_WAIT: u8 = 3; // waits for the dataplane's activity answer: nothing changed, no reply; the host serves it again (assembly/activity.ts)
export const VERDICT_AUTH: u8 = 4; // valid AUTHENTICATION request [7652]: answered by the host (src/auth)

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
// RFC 7652 options: accepted from INGRESS_AUTH sources only (never through CFG_ENABLED_OPTIONS).
export const OPTBIT_AUTHENTICATION_TAG: u32 = 256;
export const OPTBIT_NONCE: u32 = 512;
export const OPTBIT_PA_AUTHENTICATION_TAG: u32 = 1024;
export const OPTBIT_EAP_PAYLOAD: u32 = 2048;
export const OPTBIT_PRF: u32 = 4096;
export const OPTBIT_MAC_ALGORITHM: u32 = 8192;
export const OPTBIT_SESSION_LIFETIME: u32 = 16384;
export const OPTBIT_RECEIVED_PAK: u32 = 32768;
export const OPTBIT_ID_INDICATOR: u32 = 65536;
export const OPTBIT_AUTH_ALL: u32 = 130816;
export const OPTBIT_CORE: u32 = 7; // THIRD_PARTY, PREFER_FAILURE, FILTER: enabled by default

// ---- Codec switches (the codec's flags word, composed by applyConfig from CFG_PCP_MAP,
// CFG_PCP_PEER, CFG_OVERLOAD_POLICY and CFG_NATPMP_MODE) ----
export const CFG_MAP_ENABLED: u32 = 1; // [6887 §11] disabled → NOT_AUTHORIZED
export const CFG_PEER_ENABLED: u32 = 2; // [6887 §12] disabled → NOT_AUTHORIZED
export const CFG_OVERLOAD_REPLY: u32 = 4; // overload → NO_RESOURCES instead of drop
export const CFG_NATPMP_ENABLED: u32 = 8; // version 0 → NAT-PMP [6886]
export const CFG_NATPMP_SILENT: u32 = 16; // version 0 → no answer at all [6886 §3.8]

// ---- CFG: the configuration region (host → module) ----
// The host writes the whole region (src/config/region.ts), then calls applyConfig(phase),
// which copies it into the globals of assembly/config.ts (the packet path reads globals,
// never the region) and, at CFG_PHASE_INIT, sizes the tables and loads the pool.
// Each field's comment is read by scripts/gen-wire.mjs: `<type> <source> <phase>[: note]`.
//   type:   u8 | u16 | u32 | u64 | bool (u8 0/1) | enum(a|b|…) (u8: index of the value) | bytes
//   source: a path in the parsed Config (src/config/schema.ts): the generated encoder copies it;
//           or `host`: derived or per-shard, written by the hand-written part of the encoder.
//   phase:  init (read once, with the table sizes) | reload (read by both phases).
// Each field except bytes becomes a global of the same name in camelCase without CFG_
// (CFG_HOLD_DOWN → holdDown) in the generated assembly/config.generated.ts.
export const CFG_PHASE_INIT: u32 = 0; // applyConfig: first call, sizes the tables (once per instance)
export const CFG_PHASE_RELOAD: u32 = 1; // applyConfig: policy only, safe while serving
export const CFG_MIN_LIFETIME: u32 = 0; // u32 lifetimes.min reload
export const CFG_MAX_LIFETIME: u32 = 4; // u32 lifetimes.max reload
export const CFG_PEER_MIN_LIFETIME: u32 = 8; // u32 lifetimes.peerMin reload
export const CFG_HOLD_DOWN: u32 = 12; // u32 lifetimes.holdDown reload: seconds an ended mapping's port stays reserved [RFC 6888 REQ-8]
export const CFG_MAPPINGS_PER_SUBSCRIBER: u32 = 16; // u32 quotas.mappingsPerSubscriber reload
export const CFG_FILTERS_PER_MAPPING: u32 = 20; // u32 quotas.filtersPerMapping reload
export const CFG_SHORT_ERROR_LIFETIME: u32 = 24; // u32 pcp.shortErrorLifetime reload
export const CFG_LONG_ERROR_LIFETIME: u32 = 28; // u32 pcp.longErrorLifetime reload
export const CFG_THIRD_PARTY_ID_MAX_LENGTH: u32 = 32; // u32 pcp.thirdPartyId.maxLength reload
export const CFG_ENABLED_OPTIONS: u32 = 36; // u32 host reload: OPTBIT_* of the options processed (the pcp.* switches)
export const CFG_PORT_SET_MAX: u32 = 40; // u32 host reload: pcp.portSet.maxSize, 1 when PORT_SET is off
export const CFG_CHECKPOINT_QUOTA: u32 = 44; // u32 persistence.checkpointsPerSubscriber reload
export const CFG_PREFIX64_LENGTH: u32 = 48; // u32 host reload: bytes of PREFIX64 options at CFG_PREFIX64
export const CFG_NONCE_POLICY: u32 = 52; // enum(strict|relaxed) noncePolicy reload: NONCE_STRICT, NONCE_RELAXED
export const CFG_PARITY: u32 = 53; // bool parity reload
export const CFG_PCP_MAP: u32 = 54; // bool pcp.map reload
export const CFG_PCP_PEER: u32 = 55; // bool pcp.peer reload
export const CFG_OVERLOAD_POLICY: u32 = 56; // enum(drop|no-resources) pcp.overload reload
export const CFG_NATPMP_MODE: u32 = 57; // enum(enabled|disabled|silent) natPmp reload
export const CFG_CHECKPOINTS_ON: u32 = 58; // bool host reload: CHECKPOINT_REQUIRED honoured (persistence or HA on) [RFC 7767]
export const CFG_COALESCE_REFRESHES: u32 = 59; // bool host reload: persistence.refreshes "coalesced" (or persistence off)
export const CFG_PREFETCH_MODE: u32 = 60; // u8 host reload: 0 off, 1 on, 2 auto (the default; benchmarks set others)
export const CFG_BLOCK_EVENTS: u32 = 63; // bool host reload: EVENT_BLOCK_* records emitted (a logging sink logs port blocks)
export const CFG_MAX_MAPPINGS: u32 = 64; // u32 capacity.mappings init
export const CFG_MAX_SUBSCRIBERS: u32 = 68; // u32 capacity.subscribers init
export const CFG_MAX_PEERS: u32 = 72; // u32 capacity.peers init
export const CFG_MAX_FILTERS: u32 = 76; // u32 capacity.filters init
export const CFG_MAX_DESCRIPTIONS: u32 = 80; // u32 capacity.descriptions init
export const CFG_MAX_REQUESTERS: u32 = 84; // u32 capacity.requesters init
export const CFG_MAX_REALMS: u32 = 88; // u32 host init: capacity.realms, 0 when THIRD_PARTY_ID is off
export const CFG_ANY_REALM: u32 = 92; // bool host init: pcp.thirdPartyId.ids is "any"
export const CFG_PORT_MIN: u32 = 96; // u32 pool.portMin init
export const CFG_BLOCK_SIZE: u32 = 100; // u32 pool.blockSize init
export const CFG_MAX_BLOCKS_PER_SUBSCRIBER: u32 = 104; // u32 pool.maxBlocksPerSubscriber init
export const CFG_SHARD_COUNT: u32 = 108; // u32 host init: engine workers; this one leases blocks b with b % count == index
export const CFG_SHARD_INDEX: u32 = 112; // u32 host init
export const CFG_START_TIME: u32 = 116; // u32 host init: engine time at start
export const CFG_SEED: u32 = 120; // u64 host init: PRNG seed for block and port choice (0: fixed default)
export const CFG_POOL_COUNT: u32 = 128; // u32 host init: addresses at CFG_POOL
export const CFG_ACTIVITY_IDLE_UDP: u32 = 148; // u32 host reload: dataplane activity tracking: idle timeout of UDP and other protocols; 0 = tracking off
export const CFG_ACTIVITY_IDLE_TCP: u32 = 152; // u32 host reload: idle timeout of TCP
export const CFG_ACTIVITY_WAIT: u32 = 156; // u32 host reload: seconds an expiry waits for the dataplane's activity answer
export const CFG_PROTOCOLS: u32 = 160; // bytes host init: 32-byte bitmap of the protocols MAP/PEER may use
export const CFG_EXCLUDED: u32 = 192; // bytes host init: 8192-byte bitmap of pool.excludedPorts
export const CFG_PREFIX64: u32 = 8384; // bytes host reload: PREFIX64_OPTIONS_CAP bytes
export const CFG_POOL: u32 = 8896; // bytes host init: POOL_MAX_ADDRESSES addresses of 16 bytes (IPv4 v4-mapped)
export const CFG_SIZE: u32 = 12992;
// applyConfig results
export const APPLY_OK: u32 = 0;
export const APPLY_INITIALISED: u32 = 1; // CFG_PHASE_INIT again: build a new instance to resize
export const APPLY_NO_MEMORY: u32 = 2; // table sizes do not fit in linear memory
export const APPLY_DESCRIPTIONS: u32 = 3; // capacity.descriptions does not fit
export const APPLY_REQUESTERS: u32 = 4; // capacity.requesters does not fit
export const APPLY_REALMS: u32 = 5; // capacity.realms does not fit
export const APPLY_POOL_LAYOUT: u32 = 6; // portMin / blockSize / blocks per subscriber / shard refused
export const APPLY_POOL_ADDRESS: u32 = 7; // a pool address is a duplicate or over POOL_MAX_ADDRESSES

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
export const STATS_REQUESTERS_SHARED: u32 = 496; // gauge: THIRD_PARTY requesters kept once for all their mappings (of REQUESTERS_SHARED)
export const STATS_REQUESTERS_UNRECORDED: u32 = 504; // THIRD_PARTY requesters that found no room (their mapping gets no Mapping Update)
export const STATS_SIZE: u32 = 512;

// ---- Event ring (engine → host): EVENT_SIZE-byte records, EVENT_CAPACITY of them ----
export const EVENT_CAPACITY: u32 = 65536;
export const EVENT_SIZE: u32 = 68;
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
export const EV_PEER_ADDR: u32 = 48; // 16 bytes, a PEER's remote peer (zeros: none) [6887 §12]: the one the event is about, else the latest
export const EV_PEER_PORT: u32 = 64; // u16, its remote port
export const EV_PEER_COUNT: u32 = 66; // u16, the mapping's PEER records (saturating)
export const EVENT_CREATE: u8 = 1;
export const EVENT_REFRESH: u8 = 2;
export const EVENT_DELETE: u8 = 3;
export const EVENT_EXPIRE: u8 = 4;
export const EVENT_RELEASE: u8 = 5; // hold-down ended, port free again
export const EVENT_UPDATE: u8 = 6; // re-homed: new external address/port (pool address retired)
// Port-block leases (RFC 7422 logging): EV_INTERNAL_ADDR/EV_REALM the subscriber, EV_POOL_INDEX
// and EV_FAMILY the address, EV_EXTERNAL_PORT the block's first port, EV_INTERNAL_PORT its
// size; protocol, flags, expiries and EV_MAPPING are 0.
export const EVENT_BLOCK_LEASE: u8 = 7; // a port block leased to a subscriber
export const EVENT_BLOCK_RELEASE: u8 = 8; // a port block back in the pool (or its address retired)

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

// ---- Activity queries (engine → host, assembly/activity.ts): event-layout records ----
export const ACTIVITY_CAPACITY: u32 = 65536; // queries queued between two activityTake calls (full: the wheel waits; a request decides without)

// ---- Engine configuration ----
export const NONCE_STRICT: u32 = 0; // RFC 6887 §11.3
export const NONCE_RELAXED: u32 = 1; // a new nonce replaces the old one for the same endpoint
export const POOL_MAX_ADDRESSES: u32 = 256;
export const MAX_BLOCKS_PER_SUBSCRIBER: u32 = 8;
export const SCRATCH_SIZE: u32 = 80; // ≥ EVENT_SIZE (describeMapping)
export const PREFIX64_OPTIONS_CAP: u32 = 512; // bytes of configured PREFIX64 options (codec)
export const PORT_SET_LIMIT: u32 = 1024; // largest PORT_SET granted [RFC 7753] (pcp.portSet.maxSize ≤ this)
export const REALM_ID_MAX: u32 = 16; // THIRD_PARTY_ID bytes a realm identifier may have [RFC 7843] (longer: UNSUPP_THIRD_PARTY_ID_LENGTH)
export const REQUESTERS_SHARED: u32 = 254; // THIRD_PARTY requesters kept once for all the mappings they speak for (assembly/requesters.ts)
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

// ---- Region table (regions() returns its address): u32 base of each fixed region ----
// Regions fixed at compile time; the event ring and the persistence buffer are allocated
// later, so the commands that use them return their base (CMD_EVENTS, CMD_PERSIST_*).
export const REGION_SLOTS: u32 = 0; // SLOT_COUNT batch slots of SLOT_SIZE bytes
export const REGION_STATS: u32 = 4; // STATS_SIZE bytes of counters
export const REGION_SCRATCH: u32 = 8; // SCRATCH_SIZE bytes: addresses and identifiers for commands, announcements
export const REGION_PREFIX64: u32 = 12; // PREFIX64_OPTIONS_CAP bytes of configured PREFIX64 options
export const REGION_LIST: u32 = 16; // LIST_MAX event-layout records of a listing page
export const REGION_DESCRIPTION: u32 = 20; // DESCRIPTION_STORED_MAX bytes: a mapping's DESCRIPTION text
export const REGION_COMMAND: u32 = 24; // the command slot (CMDSLOT_SIZE bytes)
export const REGION_TABLE_SIZE: u32 = 32; // one u32 spare

// ---- Command slot: control operations (assembly/commands.ts) ----
// The host writes an opcode and its arguments, calls command(), and reads the results
// from the same slot, as with datagram slots. Control plane only: the batch path
// (processBatch, serveRange, expire) never goes through it.
export const CMDSLOT_OPCODE: u32 = 0; // u32, CMD_*
export const CMDSLOT_ARGS: u32 = 4; // CMDSLOT_ARG_COUNT u32 arguments
export const CMDSLOT_ARG_COUNT: u32 = 8;
export const CMDSLOT_RESULTS: u32 = 36; // CMDSLOT_RESULT_COUNT u32 results, written by command()
export const CMDSLOT_RESULT_COUNT: u32 = 4;
export const CMDSLOT_SIZE: u32 = 64;
export const CMDSTATUS_OK: u32 = 0; // command() return value: executed, results written
export const CMDSTATUS_UNKNOWN: u32 = 1; // command() return value: no such opcode, nothing done
// Opcodes: arguments a0.. and results r0.. (results not listed are left as they were)
export const CMD_ERROR_LIFETIME: u32 = 1; // a0 result code → r0 lifetime of an error reply
export const CMD_FINISH_SUCCESS: u32 = 2; // a0 slot address, a1 lifetime, a2 echo mask
export const CMD_FINISH_ERROR: u32 = 3; // a0 slot address, a1 result, a2 lifetime
export const CMD_FINISH_NATPMP_ADDRESS: u32 = 4; // a0 slot address, a1 result, a2 IPv4
export const CMD_FINISH_NATPMP_MAP: u32 = 5; // a0 slot address, a1 result, a2 external port, a3 lifetime
export const CMD_ANNOUNCE: u32 = 6; // a0 address, a1 epoch → r0 length of the ANNOUNCE written there
export const CMD_ANNOUNCE_NATPMP: u32 = 7; // a0 address, a1 epoch, a2 IPv4 → r0 length
export const CMD_ENGINE_BYTES: u32 = 8; // → r0 bytes of linear memory in use
export const CMD_POOL_ADD: u32 = 9; // address in scratch[0..16] → r0 pool index, or -1 (i32)
export const CMD_POOL_SIZE: u32 = 10; // → r0 pool entries
export const CMD_POOL_ENTRY: u32 = 11; // a0 index → r0 address of its 16-byte address, r1 free blocks, r2 1 if retired
export const CMD_POOL_RETIRE: u32 = 12; // a0 index, a1 now → r0 mappings left to rehome
export const CMD_REHOME_NEXT: u32 = 13; // a0 now, a1 epoch → r0 messages in slots (0xffffffff: done), r1 mapping, r2 old key
export const CMD_EVENTS: u32 = 14; // → r0 ring base, r1 head, r2 tail
export const CMD_EVENTS_CONSUME: u32 = 15; // a0 count (clipped to the pending ones)
export const CMD_ADD_STATIC: u32 = 16; // scratch: internal[0..16], external[16..32]; a0 protocol, a1 internal port, a2 external port → r0 result code
export const CMD_REMOVE_STATIC: u32 = 17; // scratch: internal; a0 protocol, a1 port, a2 family, a3 hold → r0 result code
export const CMD_DELETE_SUBSCRIBER: u32 = 18; // scratch: internal; a0 realm → r0 mappings ended
export const CMD_SUBSCRIBER_USAGE: u32 = 19; // scratch: internal; a0 realm → r0 mappings, r1 blocks
export const CMD_LOOKUP_MAPPING: u32 = 20; // scratch: internal; a0 protocol, a1 port, a2 family, a3 realm → r0 record id
export const CMD_LOOKUP_EXTERNAL: u32 = 21; // a0 pool index, a1 protocol, a2 port → r0 record id
export const CMD_DESCRIBE_MAPPING: u32 = 22; // a0 record id → r0 1 if written to scratch (event layout)
export const CMD_MAPPINGS_USED: u32 = 23; // → r0 highest record id handed out
export const CMD_MAPPING_FILTER: u32 = 24; // a0 record id, a1 k → r0 1 if FILTER k written to scratch
export const CMD_MAPPING_DESCRIPTION: u32 = 25; // a0 record id → r0 length of its DESCRIPTION in REGION_DESCRIPTION
export const CMD_LIST_SCAN: u32 = 26; // scratch: internal; a0 from, a1 scan, a2 limit, a3 LISTSEL_*, a4 protocol, a5 pool, a6 LISTKIND_* → r0 records in REGION_LIST, r1 next id
export const CMD_PERSIST_EVENTS: u32 = 27; // a0 first, a1 count, a2 wall offset → r0 events written, r1 buffer, r2 bytes
export const CMD_PERSIST_GONE: u32 = 28; // a0 pool index, a1 protocol, a2 port → r1 buffer, r2 bytes
export const CMD_PERSIST_TABLE: u32 = 29; // a0 from, a1 budget, a2 wall offset → r0 records, r1 buffer, r2 bytes, r3 next id
export const CMD_PERSIST_BUFFER: u32 = 30; // → r1 buffer (PERSIST_BUFFER bytes; restore input goes there)
export const CMD_RESTORE_RECORDS: u32 = 31; // a0 length, a1 wall offset, a2 now → r0 bytes consumed
export const CMD_RESTORE_DROPPED: u32 = 32; // a0 RESTORE_* → r0 records dropped for that reason
export const CMD_DATAPLANE_DOWN: u32 = 33; // a0 1 down, 0 up
export const CMD_MIRROR_ADD: u32 = 34; // scratch: internal, external; a0 protocol, a1 internal port, a2 external port, a3 replace → r0 result code
export const CMD_MIRRORS_CLEAR: u32 = 35;
export const CMD_MIRROR_COUNT: u32 = 36; // → r0 static mirrors
export const CMD_REGISTER_REALM: u32 = 37; // scratch: THIRD_PARTY_ID; a0 length → r0 realm, 0 if no room
export const CMD_FIND_REALM: u32 = 38; // scratch: THIRD_PARTY_ID; a0 length → r0 realm, 0 if unknown
export const CMD_REALM_IDENTIFIER: u32 = 39; // a0 realm → r0 length of its THIRD_PARTY_ID written to scratch
export const CMD_LIMIT: u32 = 40;
