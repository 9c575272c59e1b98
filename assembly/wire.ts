// Wire constants of PCP (RFC 6887 and extensions) and NAT-PMP (RFC 6886).
//
// This file is the only home of on-the-wire numbers. `scripts/gen-wire.mjs` turns it
// (and abi.ts) into src/wire.generated.ts; test/wire.test.ts checks that the mirror and
// the globals exported by the built module agree.
// Format rule for the generator: one `export const NAME: type = value;` per line.

// ---- Transport [6887 §7, §8.2, §19.1] ----
export const PCP_SERVER_PORT: u16 = 5351; // [6887 §19.1]
export const PCP_CLIENT_PORT: u16 = 5350; // [6887 §14.1.1] unsolicited ANNOUNCE target
export const PCP_VERSION: u8 = 2; // [6887 §7.1]
export const NATPMP_VERSION: u8 = 0; // [6886 §3]
export const PCP_MAX_MESSAGE: u32 = 1100; // [6887 §7]
export const PCP_HEADER_SIZE: u32 = 24; // [6887 §7.1]
export const PCP_ALIGN: u32 = 4; // [6887 §8.2] whole message a multiple of 4
export const R_BIT: u8 = 0x80; // [6887 §7.1] byte 1, bit 7: response
export const OPCODE_MASK: u8 = 0x7f; // [6887 §7.1]

// ---- Common header offsets [6887 §7.1, §7.2] ----
export const HDR_VERSION: u32 = 0;
export const HDR_OPCODE: u32 = 1; // R bit + opcode
export const HDR_RESERVED: u32 = 2; // request: 16 bits reserved; response: byte 2 reserved
export const HDR_RESULT: u32 = 3; // response only [6887 §7.2]
export const HDR_LIFETIME: u32 = 4; // u32 requested / granted lifetime
export const HDR_EPOCH: u32 = 8; // response only: u32 Epoch Time [6887 §8.5]
export const HDR_CLIENT_ADDR: u32 = 8; // request only: 16-byte client IP [6887 §7.1]
export const HDR_RESP_RESERVED: u32 = 12; // response: 96 reserved bits [6887 §7.2]
export const HDR_RESP_RESERVED_SIZE: u32 = 12;
export const ADDR_SIZE: u32 = 16; // [6887 §5] every address is 16 bytes

// ---- Opcodes [6887 §19.2, RFC 7652 §5.2] ----
export const OP_ANNOUNCE: u8 = 0; // [6887 §14.1]
export const OP_MAP: u8 = 1; // [6887 §11]
export const OP_PEER: u8 = 2; // [6887 §12]
export const OP_AUTHENTICATION: u8 = 3; // [7652 §5.2] from sources with authentication on; else UNSUPP_OPCODE

// ---- Opcode payload sizes / minimum message sizes [6887 §11.1, §12.1, §14.1.1] ----
export const MAP_PAYLOAD_SIZE: u32 = 36;
export const PEER_PAYLOAD_SIZE: u32 = 56;
export const ANNOUNCE_MIN_SIZE: u32 = 24;
export const MAP_MIN_SIZE: u32 = 60;
export const PEER_MIN_SIZE: u32 = 80;
export const AUTH_PAYLOAD_SIZE: u32 = 8; // [7652 §5.2] Session ID + Sequence Number
export const AUTH_MIN_SIZE: u32 = 32;

// ---- MAP / PEER field offsets from the start of the message [6887 §11.1, §12.1] ----
export const MP_NONCE: u32 = 24; // 12 bytes
export const MP_NONCE_SIZE: u32 = 12;
export const MP_PROTOCOL: u32 = 36;
export const MP_RESERVED: u32 = 37; // 3 bytes
export const MP_INTERNAL_PORT: u32 = 40;
export const MP_EXTERNAL_PORT: u32 = 42; // suggested (request) / assigned (response)
export const MP_EXTERNAL_ADDR: u32 = 44; // suggested (request) / assigned (response)
export const PEER_REMOTE_PORT: u32 = 60;
export const PEER_RESERVED: u32 = 62; // 2 bytes
export const PEER_REMOTE_ADDR: u32 = 64;

// ---- AUTHENTICATION opcode [7652 §5.1, §5.2] ----
export const PA_CLIENT_RESULT: u32 = 3; // request byte 3: the PA-Client result code [7652 §5.1]
export const PA_SESSION_ID: u32 = 24; // u32
export const PA_SEQUENCE: u32 = 28; // u32

// ---- Option TLV [6887 §7.3] ----
export const OPT_HEADER_SIZE: u32 = 4;
export const OPT_CODE: u32 = 0;
export const OPT_RESERVED: u32 = 1;
export const OPT_LENGTH: u32 = 2;
export const OPT_OPTIONAL_BIT: u8 = 0x80; // codes >= 128 may be ignored [6887 §7.3]

// ---- Option codes [6887 §19.4, 7652, 7843, 7220, 7225, 7753, 7767] ----
export const OPTION_THIRD_PARTY: u8 = 1; // [6887 §13.1]
export const OPTION_PREFER_FAILURE: u8 = 2; // [6887 §13.2]
export const OPTION_FILTER: u8 = 3; // [6887 §13.3]
export const OPTION_NONCE: u8 = 4; // [7652 §5.3]
export const OPTION_AUTHENTICATION_TAG: u8 = 5; // [7652 §5.4]
export const OPTION_PA_AUTHENTICATION_TAG: u8 = 6; // [7652 §5.5]
export const OPTION_EAP_PAYLOAD: u8 = 7; // [7652 §5.6]
export const OPTION_PSEUDO_RANDOM_FUNCTION: u8 = 8; // [7652 §5.7]
export const OPTION_MAC_ALGORITHM: u8 = 9; // [7652 §5.8]
export const OPTION_SESSION_LIFETIME: u8 = 10; // [7652 §5.9] response only
export const OPTION_RECEIVED_PAK: u8 = 11; // [7652 §5.10]
export const OPTION_ID_INDICATOR: u8 = 12; // [7652 §5.11] response only
export const OPTION_THIRD_PARTY_ID: u8 = 13; // [7843 §4]
export const OPTION_DESCRIPTION: u8 = 128; // [7220 §2]
export const OPTION_PREFIX64: u8 = 129; // [7225 §4.1]
export const OPTION_PORT_SET: u8 = 130; // [7753 §4]
export const OPTION_CHECKPOINT_REQUIRED: u8 = 192; // [7767 §3.1]

// ---- Option data sizes (excluding the TLV header) ----
export const THIRD_PARTY_DATA_SIZE: u32 = 16; // [6887 §13.1]
export const PREFER_FAILURE_DATA_SIZE: u32 = 0; // [6887 §13.2]
export const FILTER_DATA_SIZE: u32 = 20; // [6887 §13.3]
export const FILTER_PREFIX_LENGTH: u32 = 1; // offsets inside FILTER data
export const FILTER_REMOTE_PORT: u32 = 2;
export const FILTER_REMOTE_ADDR: u32 = 4;
export const THIRD_PARTY_ID_MAX_SIZE: u32 = 1016; // [7843 §4]
export const DESCRIPTION_MAX_SIZE: u32 = 1016; // [7220 §2]
export const PREFIX64_BASE_SIZE: u32 = 14; // [7225 §4.1] 2-byte length + 12 bytes prefix/suffix
export const PREFIX64_IPV4_ENTRY_SIZE: u32 = 6; // [7225 §4.1] 2-byte prefix length + IPv4
export const PORT_SET_DATA_SIZE: u32 = 5; // [7753 §4]
export const PORT_SET_SIZE: u32 = 0; // offsets inside PORT_SET data
export const PORT_SET_FIRST_PORT: u32 = 2;
export const PORT_SET_FLAGS: u32 = 4; // low bit = P (parity)
export const CHECKPOINT_REQUIRED_DATA_SIZE: u32 = 0; // [7767 §3.1]
export const NONCE_DATA_SIZE: u32 = 4; // [7652 §5.3]
export const AUTH_TAG_FIXED_SIZE: u32 = 12; // [7652 §5.4] Session ID, Sequence Number, Key ID
export const AUTH_TAG_SESSION_ID: u32 = 0; // offsets inside AUTHENTICATION_TAG data
export const AUTH_TAG_SEQUENCE: u32 = 4;
export const AUTH_TAG_KEY_ID: u32 = 8;
export const AUTH_TAG_DATA: u32 = 12;
export const PA_TAG_FIXED_SIZE: u32 = 4; // [7652 §5.5] Key ID
export const EAP_MIN_SIZE: u32 = 4; // [RFC 3748 §4] Code, Identifier, Length
export const PRF_DATA_SIZE: u32 = 4; // [7652 §5.7]
export const MAC_ALGORITHM_DATA_SIZE: u32 = 4; // [7652 §5.8]
export const SESSION_LIFETIME_DATA_SIZE: u32 = 4; // [7652 §5.9]
export const RECEIVED_PAK_DATA_SIZE: u32 = 4; // [7652 §5.10]
export const PRF_HMAC_SHA2_256: u32 = 5; // [7652 §5.7] IKEv2 transform type 2, id 5 [RFC 4868]
export const AUTH_HMAC_SHA2_256_128: u32 = 12; // [7652 §5.8] IKEv2 transform type 3, id 12 [RFC 4868]
export const HMAC_SHA2_256_128_SIZE: u32 = 16; // [RFC 4868 §2.3] truncated to 128 bits

// ---- PCP result codes [6887 §7.4, 7652 §7, 7843 §4.1] ----
export const RESULT_SUCCESS: u8 = 0;
export const RESULT_UNSUPP_VERSION: u8 = 1;
export const RESULT_NOT_AUTHORIZED: u8 = 2;
export const RESULT_MALFORMED_REQUEST: u8 = 3;
export const RESULT_UNSUPP_OPCODE: u8 = 4;
export const RESULT_UNSUPP_OPTION: u8 = 5;
export const RESULT_MALFORMED_OPTION: u8 = 6;
export const RESULT_NETWORK_FAILURE: u8 = 7;
export const RESULT_NO_RESOURCES: u8 = 8;
export const RESULT_UNSUPP_PROTOCOL: u8 = 9;
export const RESULT_USER_EX_QUOTA: u8 = 10;
export const RESULT_CANNOT_PROVIDE_EXTERNAL: u8 = 11;
export const RESULT_ADDRESS_MISMATCH: u8 = 12;
export const RESULT_EXCESSIVE_REMOTE_PEERS: u8 = 13;
export const RESULT_INITIATION: u8 = 14; // [7652 §7] PA-Client
export const RESULT_AUTHENTICATION_REQUIRED: u8 = 15; // [7652 §7]
export const RESULT_AUTHENTICATION_FAILED: u8 = 16; // [7652 §7]
export const RESULT_AUTHENTICATION_SUCCEEDED: u8 = 17; // [7652 §7]
export const RESULT_AUTHORIZATION_FAILED: u8 = 18; // [7652 §7]
export const RESULT_SESSION_TERMINATED: u8 = 19; // [7652 §7]
export const RESULT_UNKNOWN_SESSION_ID: u8 = 20; // [7652 §7]
export const RESULT_DOWNGRADE_ATTACK_DETECTED: u8 = 21; // [7652 §7]
export const RESULT_AUTHENTICATION_REQUEST: u8 = 22; // [7652 §7] PA-Server
export const RESULT_AUTHENTICATION_REPLY: u8 = 23; // [7652 §7] PA-Client
export const RESULT_THIRD_PARTY_ID_UNKNOWN: u8 = 24; // [7843 §4.1]
export const RESULT_THIRD_PARTY_MISSING_OPTION: u8 = 25; // [7843 §4.1]
export const RESULT_UNSUPP_THIRD_PARTY_ID_LENGTH: u8 = 26; // [7843 §4.1]
export const RESULT_CODE_LIMIT: u32 = 32; // counters are kept for codes 0..31

// ---- Error lifetimes, RECOMMENDED defaults [6887 §7.4] ----
export const DEFAULT_SHORT_ERROR_LIFETIME: u32 = 30;
export const DEFAULT_LONG_ERROR_LIFETIME: u32 = 1800;
export const STATIC_MAPPING_LIFETIME: u32 = 0xffffffff; // [6887 §11.3]

// ---- NAT-PMP [6886 §3] ----
export const NATPMP_OP_ADDRESS: u8 = 0; // [6886 §3.2]
export const NATPMP_OP_MAP_UDP: u8 = 1; // [6886 §3.3]
export const NATPMP_OP_MAP_TCP: u8 = 2; // [6886 §3.3]
export const NATPMP_RESPONSE_BIT: u8 = 0x80; // response opcode = 128 + request opcode
export const NATPMP_ADDRESS_REQUEST_SIZE: u32 = 2;
export const NATPMP_ADDRESS_RESPONSE_SIZE: u32 = 12;
export const NATPMP_MAP_REQUEST_SIZE: u32 = 12;
export const NATPMP_MAP_RESPONSE_SIZE: u32 = 16;
export const NATPMP_RESULT: u32 = 2; // 16-bit result code
export const NATPMP_SSSOE: u32 = 4; // seconds since start of epoch
export const NATPMP_EXTERNAL_ADDR: u32 = 8; // address response: IPv4
export const NATPMP_INTERNAL_PORT: u32 = 4; // map request
export const NATPMP_SUGGESTED_PORT: u32 = 6; // map request
export const NATPMP_REQ_LIFETIME: u32 = 8; // map request
export const NATPMP_RESP_INTERNAL_PORT: u32 = 8; // map response
export const NATPMP_RESP_EXTERNAL_PORT: u32 = 10; // map response
export const NATPMP_RESP_LIFETIME: u32 = 12; // map response
export const NATPMP_RESULT_SUCCESS: u16 = 0;
export const NATPMP_RESULT_UNSUPP_VERSION: u16 = 1;
export const NATPMP_RESULT_NOT_AUTHORIZED: u16 = 2;
export const NATPMP_RESULT_NETWORK_FAILURE: u16 = 3;
export const NATPMP_RESULT_NO_RESOURCES: u16 = 4;
export const NATPMP_RESULT_UNSUPP_OPCODE: u16 = 5;
export const NATPMP_RESULT_CODE_LIMIT: u32 = 8;

// ---- IANA protocol numbers used by the rules ----
export const PROTO_TCP: u8 = 6;
export const PROTO_UDP: u8 = 17;
export const PROTO_SCTP: u8 = 132;
