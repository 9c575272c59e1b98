/**
 * Golden packets of PCP authentication (RFC 7652), written byte by byte from the RFC's
 * figures (§5.1 request header with the PA-Client result code, §5.2 Session ID and Sequence
 * Number, §5.3–§5.11 options) and IANA's numbers (§7), with the codec outcome derived by hand
 * from docs/auth.md "Codec" and the reference decisions A1–A9 (test/reference/pcp-reference.ts).
 * Nothing here was produced by running the project's code.
 *
 * Two tables:
 *   - AUTH_GOLDEN: requests through the codec (same conventions as pcp-golden.ts: default
 *     configuration, epoch 0x11223344, source 192.0.2.1; `ingress` 5 = SUBSCRIBER |
 *     authentication on, 13 = … | required; `hostFlags` 4 = the listener verified the tag,
 *     8 = the tag names no security association);
 *   - PA_MESSAGES: PA-Server and PA-Client messages and tagged MAP / PEER / ANNOUNCE
 *     messages as the host encodes them (src/auth/pa-wire.ts), each field spelled out. Their
 *     Authentication Data (HMAC-SHA-256-128, RFC 4868) and the transport key (RFC 7652 §4)
 *     were computed with `openssl dgst -sha256 -mac HMAC` and Python's `hmac` module over the
 *     bytes below with the Authentication Data zeroed (§6.1) — independent of src/auth.
 *
 * Option bits (RefOutcome.options): 256 AUTHENTICATION_TAG, 512 NONCE, 1024
 * PA_AUTHENTICATION_TAG, 2048 EAP_PAYLOAD, 4096 PRF, 8192 MAC_ALGORITHM, 32768 RECEIVED_PAK.
 */
import type { GoldenCase } from "./pcp-golden.js";

// ---------------------------------------------------------------------------
// Key material (RFC 7652 §4)
// ---------------------------------------------------------------------------

/** MSK = octets 0x00..0x3f; Session ID 0x0a0b0c0d; client nonce 0xdeadbeef; Key ID 1. */
export const MSK_HEX = Array.from({ length: 64 }, (_, i) => i.toString(16).padStart(2, "0")).join("");
export const SESSION_ID = 0x0a0b0c0d;
export const NONCE = 0xdeadbeef;
export const KEY_ID = 1;
/**
 * prf(MSK, "IETF PCP" || Session ID || Nonce || Key ID) with PRF_HMAC_SHA2_256:
 * HMAC-SHA-256 keyed with the MSK over 49455446205043500a0b0c0ddeadbeef00000001
 * (`openssl dgst -sha256 -mac HMAC -macopt hexkey:<MSK>`).
 */
export const TRANSPORT_KEY_HEX = "173a11000086c94aac93f7e61d02cb68310171e919f9aa7d93e74102c84d4a41";

// ---------------------------------------------------------------------------
// Fragments
// ---------------------------------------------------------------------------

const C_V4 = `
  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 01   # PCP Client's IP Address ::ffff:192.0.2.1
`;
/** Bytes 12–23 of a C_V4 request: what an unparsed error reply keeps. */
const TAIL_V4 = `
               00 00 00 00  00 00 ff ff  c0 00 02 01   # bytes 12–23 copied
`;
const EPOCH = `
  11 22 33 44                                         # Epoch Time 0x11223344
`;
const RESP_RESERVED = `
  00 00 00 00  00 00 00 00  00 00 00 00               # 96 reserved bits [6887 §7.2]
`;
const LONG = `
  00 00 07 08                                         # lifetime 1800 (long error)
`;
const SHORT = `
  00 00 00 1e                                         # lifetime 30 (short error)
`;

/** PA-Client header (Figure 2): version 2, R=0, opcode 3, reserved, the PA-Client result code. */
function paClient(rc: string, session = "0a 0b 0c 0d", seq = "00 00 00 01"): string {
  return (
    `
  02 03 00 ${rc}                                      # version 2, AUTHENTICATION, reserved, result code
  00 00 00 00                                         # requested lifetime 0 [7652 §5.1]
` +
    C_V4 +
    `
  ${session}                                          # Session ID [§5.2]
  ${seq}                                              # Sequence Number [§5.2]
`
  );
}
/** Unparsed error reply over a PA-Client request: bytes 0–23 rewritten, the rest copied. */
function paErr(rc: string, lifetime = LONG): string {
  return (
    `
  02 83 00 ${rc}                                      # version 2, R|AUTHENTICATION, result
` +
    lifetime +
    EPOCH +
    TAIL_V4
  );
}
/** Unparsed error reply header for a common request (opcode byte with R set). */
function commonErr(opR: string, rc: string, lifetime: string): string {
  return (
    `
  02 ${opR} 00 ${rc}                                  # version 2, R|opcode, result
` +
    lifetime +
    EPOCH +
    TAIL_V4
  );
}

const SESSION_0 = "00 00 00 00";
const SEQ_0 = "00 00 00 00";

const OPT_NONCE = `
  04 00 00 04                                         # NONCE, reserved, length 4 [§5.3]
  de ad be ef                                         # nonce
`;
const OPT_NONCE_2 = `
  04 00 00 04  01 02 03 04                            # a second NONCE
`;
const OPT_NONCE_8 = `
  04 00 00 08  de ad be ef  de ad be ef               # NONCE of length 8 (must be 4)
`;
/** EAP-Response/Identity "alice" [RFC 3748 §5.1]: code 2, id 0x2a, length 10, type 1. */
const OPT_EAP_IDENTITY = `
  07 00 00 0a                                         # EAP_PAYLOAD, length 10 [§5.6]
  02 2a 00 0a  01 61 6c 69  63 65 00 00               # Response id 42 len 10 Identity "alice", 2 pad
`;
/** First section of an EAP message of 1024 octets cut to 8 (RFC 7652 §6.6). */
const OPT_EAP_SECTION = `
  07 00 00 08                                         # EAP_PAYLOAD, length 8
  02 2b 04 00  15 80 00 00                            # EAP Length 1024 > 8: one section [§6.6]
`;
const OPT_EAP_EMPTY = `
  07 00 00 00                                         # EAP_PAYLOAD, length 0
`;
const OPT_PRF = `
  08 00 00 04  00 00 00 05                            # PRF, PRF_HMAC_SHA2_256 (5) [§5.7]
`;
const OPT_PRF_2 = `
  08 00 00 04  00 00 00 07                            # PRF, PRF_HMAC_SHA2_512 (7): repeats allowed [§7.5]
`;
const OPT_MAC = `
  09 00 00 04  00 00 00 0c                            # MAC_ALGORITHM, AUTH_HMAC_SHA2_256_128 (12) [§5.8]
`;
const OPT_SESSION_LIFETIME = `
  0a 00 00 04  00 00 0e 10                            # SESSION_LIFETIME 3600 s [§5.9]
`;
const OPT_RECEIVED_PAK = `
  0b 00 00 04  00 00 00 02                            # RECEIVED_PAK, sequence 2 [§5.10]
`;
const OPT_RECEIVED_PAK_8 = `
  0b 00 00 08  00 00 00 02  00 00 00 00               # RECEIVED_PAK of length 8 (must be 4)
`;
const OPT_ID_INDICATOR = `
  0c 00 00 0b                                         # ID_INDICATOR, length 11 [§5.11]
  65 78 61 6d  70 6c 65 2e  6e 65 74 00               # "example.net", 1 pad
`;
/** PA_AUTHENTICATION_TAG with a zero MAC (the codec does not check MACs). */
const OPT_PA_TAG_ZERO = `
  06 00 00 14                                         # PA_AUTHENTICATION_TAG, length 20 [§5.5]
  00 00 00 01                                         # Key ID 1
  00 00 00 00  00 00 00 00  00 00 00 00  00 00 00 00  # Authentication Data (16)
`;
const OPT_PA_TAG_6 = `
  06 00 00 06  00 00 00 01  00 00 00 00               # PA_AUTHENTICATION_TAG of length 6 (< 8)
`;
const OPT_PA_TAG_10 = `
  06 00 00 0a  00 00 00 01  00 00 00 00  00 00 00 00  # length 10: not on a 32-bit boundary [§5.5]
`;
/** AUTHENTICATION_TAG (§5.4) with Session ID, Sequence Number 3, Key ID 1, zero MAC. */
const OPT_TAG_ZERO = `
  05 00 00 1c                                         # AUTHENTICATION_TAG, length 28 [§5.4]
  0a 0b 0c 0d                                         # Session ID
  00 00 00 03                                         # Sequence Number 3
  00 00 00 01                                         # Key ID 1
  00 00 00 00  00 00 00 00  00 00 00 00  00 00 00 00  # Authentication Data (16)
`;
const OPT_TAG_12 = `
  05 00 00 0c  0a 0b 0c 0d  00 00 00 03  00 00 00 01  # AUTHENTICATION_TAG of length 12: no MAC
`;
const OPT_FILTER = `
  03 00 00 14                                         # FILTER, length 20
  00 78 00 00                                         # prefix 120, port 0
  00 00 00 00  00 00 00 00  00 00 ff ff  c6 33 64 00  # ::ffff:198.51.100.0
`;
const OPT_TP = `
  01 00 00 10                                         # THIRD_PARTY, length 16
  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 0a  # ::ffff:192.0.2.10
`;

const MAP_REQ =
  `
  02 01 00 00                                         # version 2, MAP
  00 00 0e 10                                         # requested lifetime 3600
` + C_V4;
const MAP_BODY = `
  01 02 03 04  05 06 07 08  09 0a 0b 0c               # mapping nonce
  06 00 00 00                                         # TCP, reserved
  1f 90 00 00                                         # internal port 8080, suggested external port 0
  00 00 00 00  00 00 00 00  00 00 ff ff  00 00 00 00  # suggested external ::ffff:0.0.0.0
`;
/** MAP with protocol 0 and internal port 80: malformed [6887 §11.3]. */
const MAP_BODY_P0_80 = `
  01 02 03 04  05 06 07 08  09 0a 0b 0c               # mapping nonce
  00 00 00 00                                         # protocol 0 (all), reserved
  00 50 00 00                                         # internal port 80, suggested external port 0
  00 00 00 00  00 00 00 00  00 00 ff ff  00 00 00 00  # suggested external ::ffff:0.0.0.0
`;
const PEER_REQ =
  `
  02 02 00 00                                         # version 2, PEER
  00 00 0e 10                                         # requested lifetime 3600
` + C_V4;
const PEER_BODY = `
  a1 a2 a3 a4  a5 a6 a7 a8  a9 aa ab ac               # mapping nonce
  11 00 00 00                                         # UDP, reserved
  13 88 00 00                                         # internal port 5000, suggested external 0
  00 00 00 00  00 00 00 00  00 00 ff ff  00 00 00 00  # suggested external ::ffff:0.0.0.0
  00 35 00 00                                         # remote peer port 53, reserved
  00 00 00 00  00 00 00 00  00 00 ff ff  cb 00 71 05  # remote peer ::ffff:203.0.113.5
`;
const ANNOUNCE_REQ =
  `
  02 00 00 00                                         # version 2, ANNOUNCE
  00 00 00 00                                         # requested lifetime 0
` + C_V4;
const ANNOUNCE_SUCCESS =
  `
  02 80 00 00                                         # R|ANNOUNCE, SUCCESS
  00 00 00 00                                         # lifetime 0
` +
  EPOCH +
  RESP_RESERVED;

const ON = 5; // SUBSCRIBER | authentication on (optional)
const REQUIRED = 13; // … | required
const VERIFIED = 4; // HOST_AUTHENTICATED
const NO_SA = 8; // HOST_AUTH_UNKNOWN_SESSION

/** PA-Initiation (Session ID 0, Sequence 0, NONCE) [7652 §3.1.1]: shared with PA_MESSAGES. */
export const PA_INITIATION_HEX = paClient("0e", SESSION_0, SEQ_0) + OPT_NONCE;

// ---------------------------------------------------------------------------
// Requests through the codec
// ---------------------------------------------------------------------------

export const AUTH_GOLDEN: GoldenCase[] = [
  // ---- AUTHENTICATION requests handed to the host (A6) ----
  {
    name: "PA-Initiation with NONCE → auth",
    origin: "RFC 7652 §3.1.1, §5.1, §5.2, §5.3; auth.md Codec; A1, A6",
    ingress: ON,
    hex: PA_INITIATION_HEX,
    expect: { verdict: "auth", options: 512 },
  },
  {
    name: "PA-Initiation from a THIRD_PARTY-only source with authentication on → auth (a proxy authenticates itself)",
    origin: "auth.md Codec; A9",
    ingress: 6,
    hex: PA_INITIATION_HEX,
    expect: { verdict: "auth", options: 512 },
  },
  {
    name: "AUTHENTICATION_REPLY with EAP-Response/Identity, PRF and MAC_ALGORITHM → auth",
    origin: "RFC 7652 §3.1.3, §5.6–§5.8; A3, A6",
    ingress: ON,
    hex: paClient("17") + OPT_EAP_IDENTITY + OPT_PRF + OPT_MAC,
    expect: { verdict: "auth", options: 2048 + 4096 + 8192 },
  },
  {
    name: "AUTHENTICATION_REPLY carrying the first section of a long EAP message → auth",
    origin: "RFC 7652 §6.6; A3 (EAP framing judged by the host)",
    ingress: ON,
    hex: paClient("17") + OPT_EAP_SECTION,
    expect: { verdict: "auth", options: 2048 },
  },
  {
    name: "AUTHENTICATION_SUCCEEDED with two PRFs, MAC_ALGORITHM and PA_AUTHENTICATION_TAG last → auth",
    origin: "RFC 7652 §3.1.3, §5.5, §7.5 (PRF repeats); A4, A5",
    ingress: ON,
    hex: paClient("11", "0a 0b 0c 0d", "00 00 00 03") + OPT_PRF + OPT_PRF_2 + OPT_MAC + OPT_PA_TAG_ZERO,
    expect: { verdict: "auth", options: 4096 + 8192 + 1024 },
  },
  {
    name: "PA-Acknowledgement (result 0, RECEIVED_PAK) → auth",
    origin: "RFC 7652 §3.1.3, §5.10, §6.4; A6",
    ingress: ON,
    hex: paClient("00", "0a 0b 0c 0d", "00 00 00 02") + OPT_RECEIVED_PAK,
    expect: { verdict: "auth", options: 32768 },
  },
  {
    name: "SESSION_TERMINATED with PA_AUTHENTICATION_TAG → auth",
    origin: "RFC 7652 §3.3; A6",
    ingress: ON,
    hex: paClient("13", "0a 0b 0c 0d", "00 00 00 04") + OPT_PA_TAG_ZERO,
    expect: { verdict: "auth", options: 1024 },
  },
  {
    name: "AUTHENTICATION_FAILED (the client could not authenticate the server) → auth",
    origin: "RFC 7652 §3.1.3; A6",
    ingress: ON,
    hex: paClient("10"),
    expect: { verdict: "auth", options: 0 },
  },
  {
    name: "AUTHORIZATION_FAILED → auth",
    origin: "RFC 7652 §3.1.3; A6",
    ingress: ON,
    hex: paClient("12"),
    expect: { verdict: "auth", options: 0 },
  },

  // ---- AUTHENTICATION requests refused ----
  {
    name: "AUTHENTICATION of 28 bytes (no Sequence Number) → MALFORMED_REQUEST",
    origin: "RFC 7652 §5.2 (32-byte minimum); codec.md row 9; A1",
    ingress: ON,
    hex: paClient("0e", SESSION_0, ""), // the Sequence Number line left empty
    expect: { verdict: "reply", result: 3, responseHex: paErr("03") + `00 00 00 00   # Session ID copied` },
  },
  {
    name: "PA-Client with a PA-Server result code (AUTHENTICATION_REQUEST 22) → MALFORMED_REQUEST",
    origin: "RFC 7652 §5.1; A6",
    ingress: ON,
    hex: paClient("16") + OPT_EAP_IDENTITY,
    expect: { verdict: "reply", result: 3, responseHex: paErr("03") + `0a 0b 0c 0d  00 00 00 01` + OPT_EAP_IDENTITY },
  },
  {
    name: "PA-Client result 0 without RECEIVED_PAK → MALFORMED_REQUEST",
    origin: "RFC 7652 §5.1, §5.10; A6",
    ingress: ON,
    hex: paClient("00"),
    expect: { verdict: "reply", result: 3, responseHex: paErr("03") + `0a 0b 0c 0d  00 00 00 01` },
  },
  {
    name: "NONCE of length 8 → MALFORMED_OPTION",
    origin: "RFC 7652 §5.3, §7.1 (4 octets); A3",
    ingress: ON,
    hex: PA_INITIATION_HEX.replace(OPT_NONCE, "") + OPT_NONCE_8,
    expect: { verdict: "reply", result: 6, responseHex: paErr("06") + `00 00 00 00  00 00 00 00` + OPT_NONCE_8 },
  },
  {
    name: "two NONCEs → MALFORMED_OPTION",
    origin: "RFC 7652 §7.1 (maximum occurrences 1); A4",
    ingress: ON,
    hex: PA_INITIATION_HEX + OPT_NONCE_2,
    expect: { verdict: "reply", result: 6, responseHex: paErr("06") + `00 00 00 00  00 00 00 00` + OPT_NONCE + OPT_NONCE_2 },
  },
  {
    name: "two EAP_PAYLOADs → MALFORMED_OPTION",
    origin: "RFC 7652 §7.4 (maximum occurrences 1); A4",
    ingress: ON,
    hex: paClient("17") + OPT_EAP_IDENTITY + OPT_EAP_IDENTITY,
    expect: { verdict: "reply", result: 6, responseHex: paErr("06") + `0a 0b 0c 0d  00 00 00 01` + OPT_EAP_IDENTITY + OPT_EAP_IDENTITY },
  },
  {
    name: "EAP_PAYLOAD of length 0 → MALFORMED_OPTION",
    origin: "RFC 7652 §5.6; A3",
    ingress: ON,
    hex: paClient("17") + OPT_EAP_EMPTY,
    expect: { verdict: "reply", result: 6, responseHex: paErr("06") + `0a 0b 0c 0d  00 00 00 01` + OPT_EAP_EMPTY },
  },
  {
    name: "SESSION_LIFETIME in a request → MALFORMED_OPTION (response-only)",
    origin: "RFC 7652 §7.7 (may appear in: response); A3",
    ingress: ON,
    hex: paClient("17") + OPT_SESSION_LIFETIME,
    expect: { verdict: "reply", result: 6, responseHex: paErr("06") + `0a 0b 0c 0d  00 00 00 01` + OPT_SESSION_LIFETIME },
  },
  {
    name: "ID_INDICATOR in a request → MALFORMED_OPTION (response-only)",
    origin: "RFC 7652 §7.9 (may appear in: response); A3",
    ingress: ON,
    hex: paClient("17") + OPT_ID_INDICATOR,
    expect: { verdict: "reply", result: 6, responseHex: paErr("06") + `0a 0b 0c 0d  00 00 00 01` + OPT_ID_INDICATOR },
  },
  {
    name: "RECEIVED_PAK of length 8 → MALFORMED_OPTION",
    origin: "RFC 7652 §7.8 (4 octets); A3",
    ingress: ON,
    hex: paClient("00") + OPT_RECEIVED_PAK_8,
    expect: { verdict: "reply", result: 6, responseHex: paErr("06") + `0a 0b 0c 0d  00 00 00 01` + OPT_RECEIVED_PAK_8 },
  },
  {
    name: "PA_AUTHENTICATION_TAG of length 6 → MALFORMED_OPTION",
    origin: "RFC 7652 §5.5 (Key ID + MAC); A3",
    ingress: ON,
    hex: paClient("17") + OPT_PA_TAG_6,
    expect: { verdict: "reply", result: 6, responseHex: paErr("06") + `0a 0b 0c 0d  00 00 00 01` + OPT_PA_TAG_6 },
  },
  {
    name: "PA_AUTHENTICATION_TAG of length 10 (not a 32-bit boundary) → MALFORMED_OPTION",
    origin: "RFC 7652 §5.5 (MUST end on a 32-bit boundary); A3",
    ingress: ON,
    hex: paClient("17") + OPT_PA_TAG_10,
    expect: { verdict: "reply", result: 6, responseHex: paErr("06") + `0a 0b 0c 0d  00 00 00 01` + OPT_PA_TAG_10 },
  },
  {
    name: "an option after PA_AUTHENTICATION_TAG → MALFORMED_OPTION",
    origin: "RFC 7652 §6.1 (the tag is appended at the end); A5",
    ingress: ON,
    hex: paClient("11") + OPT_PA_TAG_ZERO + OPT_PRF,
    expect: { verdict: "reply", result: 6, responseHex: paErr("06") + `0a 0b 0c 0d  00 00 00 01` + OPT_PA_TAG_ZERO + OPT_PRF },
  },
  {
    name: "AUTHENTICATION_TAG in an AUTHENTICATION request → MALFORMED_OPTION",
    origin: "RFC 7652 §7.2 (valid for MAP, PEER, ANNOUNCE); A2",
    ingress: ON,
    hex: PA_INITIATION_HEX + OPT_TAG_ZERO,
    expect: { verdict: "reply", result: 6, responseHex: paErr("06") + `00 00 00 00  00 00 00 00` + OPT_NONCE + OPT_TAG_ZERO },
  },
  {
    name: "THIRD_PARTY in an AUTHENTICATION request → MALFORMED_OPTION",
    origin: "RFC 6887 §13.1 (MAP, PEER only); codec.md walk step 3",
    ingress: 7,
    hex: PA_INITIATION_HEX + OPT_TP,
    expect: { verdict: "reply", result: 6, responseHex: paErr("06") + `00 00 00 00  00 00 00 00` + OPT_NONCE + OPT_TP },
  },
  {
    name: "PA-Initiation from a source with authentication off → UNSUPP_OPCODE",
    origin: "auth.md policy off; codec.md row 11; A1",
    ingress: 1,
    hex: PA_INITIATION_HEX,
    expect: { verdict: "reply", result: 4, responseHex: paErr("04") + `00 00 00 00  00 00 00 00` + OPT_NONCE },
  },

  // ---- validation order (codec.md rows 9–15a) ----
  {
    name: "order: AUTHENTICATION of 30 bytes with a wrong client IP → MALFORMED_REQUEST (row 9 before row 10)",
    origin: "codec.md rows 9, 10; A1",
    ingress: ON,
    src: "192.0.2.2",
    hex: paClient("0e", SESSION_0, "00 00"),
    expect: { verdict: "reply", result: 3, responseHex: paErr("03") + `00 00 00 00  00 00 00 00   # copied, zero-padded to 32` },
  },
  {
    name: "order: AUTHENTICATION with a wrong client IP → ADDRESS_MISMATCH (row 10)",
    origin: "RFC 6887 §8.2; codec.md row 10",
    ingress: ON,
    src: "192.0.2.2",
    hex: PA_INITIATION_HEX,
    expect: { verdict: "reply", result: 12, responseHex: paErr("0c") + `00 00 00 00  00 00 00 00` + OPT_NONCE },
  },
  {
    name: "order: AUTHENTICATION of 28 bytes from a THIRD_PARTY-only source → MALFORMED_REQUEST answered, not dropped",
    origin: "auth.md Codec (a proxy's AUTHENTICATION is answered); A9 before row 9",
    ingress: 6,
    hex: paClient("0e", SESSION_0, ""),
    expect: { verdict: "reply", result: 3, responseHex: paErr("03") + `00 00 00 00` },
  },
  {
    name: "order: PA-Server result code with a malformed NONCE → MALFORMED_OPTION (row 12 before the result-code rule)",
    origin: "codec.md row 12 before row 15a; A6",
    ingress: ON,
    hex: paClient("16", SESSION_0, SEQ_0) + OPT_NONCE_8,
    expect: { verdict: "reply", result: 6, responseHex: paErr("06") + `00 00 00 00  00 00 00 00` + OPT_NONCE_8 },
  },
  {
    name: "order: MAP protocol 0 port 80 with a tag naming no SA → MALFORMED_REQUEST (row 15 before 15a)",
    origin: "RFC 6887 §11.3; codec.md row 15 before 15a",
    ingress: REQUIRED,
    hostFlags: NO_SA,
    hex: MAP_REQ + MAP_BODY_P0_80 + OPT_TAG_ZERO,
    expect: {
      verdict: "reply",
      result: 3,
      responseHex: commonErr("81", "03", LONG) + MAP_BODY_P0_80 + OPT_TAG_ZERO,
    },
  },

  // ---- tagged and untagged common requests (A7) ----
  {
    name: "MAP with a verified AUTHENTICATION_TAG, authentication required → parsed",
    origin: "RFC 7652 §5.4, §6.2; A7",
    ingress: REQUIRED,
    hostFlags: VERIFIED,
    hex: MAP_REQ + MAP_BODY + OPT_TAG_ZERO,
    expect: { verdict: "parsed", options: 256 },
  },
  {
    name: "PEER with a verified AUTHENTICATION_TAG → parsed",
    origin: "RFC 7652 §7.2; A7",
    ingress: REQUIRED,
    hostFlags: VERIFIED,
    hex: PEER_REQ + PEER_BODY + OPT_TAG_ZERO,
    expect: { verdict: "parsed", options: 256 },
  },
  {
    name: "MAP with a tag the host did not verify → UNKNOWN_SESSION_ID (short lifetime)",
    origin: "RFC 7652 §3.2, §7 (20); A7, A8",
    ingress: ON,
    hex: MAP_REQ + MAP_BODY + OPT_TAG_ZERO,
    expect: { verdict: "reply", result: 20, responseHex: commonErr("81", "14", SHORT) + MAP_BODY + OPT_TAG_ZERO },
  },
  {
    name: "MAP whose tag names no security association → UNKNOWN_SESSION_ID",
    origin: "RFC 7652 §3.2; A7",
    ingress: REQUIRED,
    hostFlags: NO_SA,
    hex: MAP_REQ + MAP_BODY + OPT_TAG_ZERO,
    expect: { verdict: "reply", result: 20, responseHex: commonErr("81", "14", SHORT) + MAP_BODY + OPT_TAG_ZERO },
  },
  {
    name: "untagged MAP where authentication is required → AUTHENTICATION_REQUIRED (short lifetime)",
    origin: "RFC 7652 §3.1.2, §7 (15); A7, A8",
    ingress: REQUIRED,
    hex: MAP_REQ + MAP_BODY,
    expect: { verdict: "reply", result: 15, responseHex: commonErr("81", "0f", SHORT) + MAP_BODY },
  },
  {
    name: "untagged PEER where authentication is required → AUTHENTICATION_REQUIRED",
    origin: "RFC 7652 §3.1.2; A7",
    ingress: REQUIRED,
    hex: PEER_REQ + PEER_BODY,
    expect: { verdict: "reply", result: 15, responseHex: commonErr("82", "0f", SHORT) + PEER_BODY },
  },
  {
    name: "untagged MAP where authentication is optional → parsed",
    origin: "auth.md policy optional; A7",
    ingress: ON,
    hex: MAP_REQ + MAP_BODY,
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "untagged MAP with THIRD_PARTY, required for THIRD_PARTY only → AUTHENTICATION_REQUIRED",
    origin: "auth.md policy (auth.thirdParty); A7",
    ingress: 1 | 2 | 4 | 16,
    hex: MAP_REQ + MAP_BODY + OPT_TP,
    expect: { verdict: "reply", result: 15, responseHex: commonErr("81", "0f", SHORT) + MAP_BODY + OPT_TP },
  },
  {
    name: "ANNOUNCE with a verified tag → success (the host tags the reply)",
    origin: "RFC 7652 §3.2 (integrity-protected ANNOUNCE); A7; codec.md row 17",
    ingress: REQUIRED,
    hostFlags: VERIFIED,
    hex: ANNOUNCE_REQ + OPT_TAG_ZERO,
    expect: { verdict: "reply", result: 0, responseHex: ANNOUNCE_SUCCESS },
  },
  {
    name: "ANNOUNCE with an unverified tag → UNKNOWN_SESSION_ID",
    origin: "RFC 7652 §3.2 (the server lost the SA); A7",
    ingress: ON,
    hex: ANNOUNCE_REQ + OPT_TAG_ZERO,
    expect: { verdict: "reply", result: 20, responseHex: commonErr("80", "14", SHORT) + OPT_TAG_ZERO },
  },
  {
    name: "untagged ANNOUNCE where authentication is required → success",
    origin: "auth.md (ANNOUNCE creates nothing); A7",
    ingress: REQUIRED,
    hex: ANNOUNCE_REQ,
    expect: { verdict: "reply", result: 0, responseHex: ANNOUNCE_SUCCESS },
  },
  {
    name: "MAP with FILTER after the AUTHENTICATION_TAG → MALFORMED_OPTION",
    origin: "RFC 7652 §6.1 (tag appended at the end); A5",
    ingress: ON,
    hostFlags: VERIFIED,
    hex: MAP_REQ + MAP_BODY + OPT_TAG_ZERO + OPT_FILTER,
    expect: { verdict: "reply", result: 6, responseHex: commonErr("81", "06", LONG) + MAP_BODY + OPT_TAG_ZERO + OPT_FILTER },
  },
  {
    name: "MAP with AUTHENTICATION_TAG of length 12 (no MAC) → MALFORMED_OPTION",
    origin: "RFC 7652 §5.4; A3",
    ingress: ON,
    hex: MAP_REQ + MAP_BODY + OPT_TAG_12,
    expect: { verdict: "reply", result: 6, responseHex: commonErr("81", "06", LONG) + MAP_BODY + OPT_TAG_12 },
  },
  {
    name: "two AUTHENTICATION_TAGs in a MAP → MALFORMED_OPTION (the second follows the first)",
    origin: "RFC 7652 §7.2 (maximum occurrences 1), §6.1; A5",
    ingress: ON,
    hex: MAP_REQ + MAP_BODY + OPT_TAG_ZERO + OPT_TAG_ZERO,
    expect: { verdict: "reply", result: 6, responseHex: commonErr("81", "06", LONG) + MAP_BODY + OPT_TAG_ZERO + OPT_TAG_ZERO },
  },
  {
    name: "NONCE in a MAP → MALFORMED_OPTION",
    origin: "RFC 7652 §7.1 (AUTHENTICATION only); A2",
    ingress: ON,
    hex: MAP_REQ + MAP_BODY + OPT_NONCE,
    expect: { verdict: "reply", result: 6, responseHex: commonErr("81", "06", LONG) + MAP_BODY + OPT_NONCE },
  },
  {
    name: "EAP_PAYLOAD in a PEER → MALFORMED_OPTION",
    origin: "RFC 7652 §7.4 (AUTHENTICATION only); A2",
    ingress: ON,
    hex: PEER_REQ + PEER_BODY + OPT_EAP_IDENTITY,
    expect: { verdict: "reply", result: 6, responseHex: commonErr("82", "06", LONG) + PEER_BODY + OPT_EAP_IDENTITY },
  },
  {
    name: "MAP with a tag from a source with authentication off → UNSUPP_OPTION",
    origin: "auth.md policy off; codec.md walk step 2",
    ingress: 1,
    hex: MAP_REQ + MAP_BODY + OPT_TAG_ZERO,
    expect: { verdict: "reply", result: 5, responseHex: commonErr("81", "05", LONG) + MAP_BODY + OPT_TAG_ZERO },
  },
];

// ---------------------------------------------------------------------------
// Messages as the host encodes them (PA-Server and PA-Client, tagged common messages)
// ---------------------------------------------------------------------------

export interface PaGolden {
  name: string;
  origin: string;
  /** A PA message (opcode 3) or a common message that gets an AUTHENTICATION_TAG. */
  kind: "pa" | "common";
  /** pa: the header fields; its options are `optionsHex` (without the tag). */
  pa?: { response: boolean; result: number; sessionId: number; sequence: number };
  /** pa: the options before the tag, as they appear on the wire. */
  optionsHex?: string;
  /** common: the message without its tag. */
  bodyHex?: string;
  /** Tagged with TRANSPORT_KEY_HEX, Key ID 1, AUTH_HMAC_SHA2_256_128 (common: this Sequence Number). */
  tag?: { sequence?: number };
  hex: string;
}

function paServer(rc: string, seq: string): string {
  return (
    `
  02 83 00 ${rc}                                      # version 2, R|AUTHENTICATION, reserved, result
  00 00 00 00                                         # lifetime 0 [7652 §5.1]
` +
    EPOCH +
    RESP_RESERVED +
    `
  0a 0b 0c 0d                                         # Session ID
  ${seq}                                              # Sequence Number
`
  );
}
const EAP_REQUEST_IDENTITY = `
  07 00 00 05  01 2a 00 05  01 00 00 00               # EAP_PAYLOAD: Request id 42 len 5 Identity, 3 pad
`;
const EAP_SUCCESS = `
  07 00 00 04  03 2a 00 04                            # EAP_PAYLOAD: EAP-Success id 42 [RFC 3748 §4.2]
`;
const EAP_FAILURE = `
  07 00 00 04  04 2a 00 04                            # EAP_PAYLOAD: EAP-Failure id 42
`;
const PA_TAG = (mac: string) => `
  06 00 00 14                                         # PA_AUTHENTICATION_TAG, length 20
  00 00 00 01                                         # Key ID 1
  ${mac}                                              # HMAC-SHA-256-128 over the message, this field zero
`;
const COMMON_TAG = (seq: string, mac: string) => `
  05 00 00 1c                                         # AUTHENTICATION_TAG, length 28
  0a 0b 0c 0d                                         # Session ID
  ${seq}                                              # Sequence Number
  00 00 00 01                                         # Key ID 1
  ${mac}                                              # HMAC-SHA-256-128 over the message, this field zero
`;
const MAP_RESPONSE =
  `
  02 81 00 00                                         # R|MAP, SUCCESS
  00 00 0e 10                                         # lifetime 3600
` +
  EPOCH +
  RESP_RESERVED +
  `
  01 02 03 04  05 06 07 08  09 0a 0b 0c               # mapping nonce
  06 00 00 00                                         # TCP, reserved
  1f 90 1f 90                                         # internal 8080, assigned external 8080
  00 00 00 00  00 00 00 00  00 00 ff ff  c6 33 64 01  # assigned external ::ffff:198.51.100.1
`;

export const PA_MESSAGES: PaGolden[] = [
  {
    name: "PA-Initiation (client, INITIATION 14)",
    origin: "RFC 7652 §3.1.1, Figure 2, §5.2, §5.3",
    kind: "pa",
    pa: { response: false, result: 14, sessionId: 0, sequence: 0 },
    optionsHex: OPT_NONCE,
    hex: PA_INITIATION_HEX,
  },
  {
    name: "first PA-Server message (AUTHENTICATION_REQUEST 22): NONCE, EAP-Request/Identity, PRF, MAC_ALGORITHM, ID_INDICATOR",
    origin: "RFC 7652 §3.1.1, §3.1.3, §5.1 (response format of RFC 6887 §7.2), §5.3, §5.6–§5.8, §5.11",
    kind: "pa",
    pa: { response: true, result: 22, sessionId: SESSION_ID, sequence: 0 },
    optionsHex: OPT_NONCE + EAP_REQUEST_IDENTITY + OPT_PRF + OPT_MAC + OPT_ID_INDICATOR,
    hex: paServer("16", "00 00 00 00") + OPT_NONCE + EAP_REQUEST_IDENTITY + OPT_PRF + OPT_MAC + OPT_ID_INDICATOR,
  },
  {
    name: "PA-Client AUTHENTICATION_REPLY (23) with EAP-Response/Identity and the algorithms chosen",
    origin: "RFC 7652 §3.1.3, Figure 2",
    kind: "pa",
    pa: { response: false, result: 23, sessionId: SESSION_ID, sequence: 1 },
    optionsHex: OPT_EAP_IDENTITY + OPT_PRF + OPT_MAC,
    hex: paClient("17") + OPT_EAP_IDENTITY + OPT_PRF + OPT_MAC,
  },
  {
    name: "PA-Server AUTHENTICATION_SUCCEEDED (17): EAP-Success, SESSION_LIFETIME, PA_AUTHENTICATION_TAG",
    origin: "RFC 7652 §3.1.3, §5.5, §5.9, §6.1",
    kind: "pa",
    pa: { response: true, result: 17, sessionId: SESSION_ID, sequence: 5 },
    optionsHex: OPT_NONCE + EAP_SUCCESS + OPT_SESSION_LIFETIME,
    tag: {},
    hex: paServer("11", "00 00 00 05") + OPT_NONCE + EAP_SUCCESS + OPT_SESSION_LIFETIME + PA_TAG("f3 de d8 6c  15 b7 50 26  b4 d2 01 85  73 0a c5 88"),
  },
  {
    name: "PA-Client AUTHENTICATION_SUCCEEDED (17): the algorithms repeated, tagged",
    origin: "RFC 7652 §3.1.3 (first secure PA-Client message), §6.1",
    kind: "pa",
    pa: { response: false, result: 17, sessionId: SESSION_ID, sequence: 3 },
    optionsHex: OPT_PRF + OPT_MAC,
    tag: {},
    hex: paClient("11", "0a 0b 0c 0d", "00 00 00 03") + OPT_PRF + OPT_MAC + PA_TAG("60 1b 5f 9c  e6 84 68 50  d9 24 e6 e9  1a 79 4a 89"),
  },
  {
    name: "PA-Server PA-Acknowledgement (result 0, RECEIVED_PAK)",
    origin: "RFC 7652 §3.1.3, §5.10, §6.4 (no sequence number consumed)",
    kind: "pa",
    pa: { response: true, result: 0, sessionId: SESSION_ID, sequence: 2 },
    optionsHex: OPT_RECEIVED_PAK,
    hex: paServer("00", "00 00 00 02") + OPT_RECEIVED_PAK,
  },
  {
    name: "PA-Server AUTHENTICATION_FAILED (16) with EAP-Failure",
    origin: "RFC 7652 §3.1.3, §7 (16)",
    kind: "pa",
    pa: { response: true, result: 16, sessionId: SESSION_ID, sequence: 4 },
    optionsHex: EAP_FAILURE,
    hex: paServer("10", "00 00 00 04") + EAP_FAILURE,
  },
  {
    name: "PA-Server UNKNOWN_SESSION_ID (20)",
    origin: "RFC 7652 §3.2, §7 (20)",
    kind: "pa",
    pa: { response: true, result: 20, sessionId: SESSION_ID, sequence: 9 },
    optionsHex: "",
    hex: paServer("14", "00 00 00 09"),
  },
  {
    name: "PA-Server SESSION_TERMINATED (19), tagged",
    origin: "RFC 7652 §3.3, §7 (19)",
    kind: "pa",
    pa: { response: true, result: 19, sessionId: SESSION_ID, sequence: 7 },
    optionsHex: "",
    tag: {},
    hex: paServer("13", "00 00 00 07") + PA_TAG("e7 37 ac 16  4a b4 0b a0  3d 1f 21 50  3a 32 34 bf"),
  },
  {
    name: "PA-Server DOWNGRADE_ATTACK_DETECTED (21), tagged",
    origin: "RFC 7652 §3.1.3, §7 (21)",
    kind: "pa",
    pa: { response: true, result: 21, sessionId: SESSION_ID, sequence: 6 },
    optionsHex: "",
    tag: {},
    hex: paServer("15", "00 00 00 06") + PA_TAG("79 9a a3 89  07 f6 94 4a  51 0a 2f f5  1a 4a 10 0c"),
  },
  {
    name: "tagged MAP request (Sequence Number 3)",
    origin: "RFC 7652 §5.4, §6.1, §6.5",
    kind: "common",
    bodyHex: MAP_REQ + MAP_BODY,
    tag: { sequence: 3 },
    hex: MAP_REQ + MAP_BODY + COMMON_TAG("00 00 00 03", "e0 1f 8d 7f  1f 10 08 b4  39 58 48 f7  52 a3 18 b8"),
  },
  {
    name: "tagged MAP response (Sequence Number 0)",
    origin: "RFC 7652 §5.4, §6.1 (the server's own outgoing sequence)",
    kind: "common",
    bodyHex: MAP_RESPONSE,
    tag: { sequence: 0 },
    hex: MAP_RESPONSE + COMMON_TAG("00 00 00 00", "a6 31 77 93  1f 05 31 1e  47 cc f1 f1  c1 86 9f 98"),
  },
  {
    name: "tagged PEER request (Sequence Number 4)",
    origin: "RFC 7652 §5.4, §7.2",
    kind: "common",
    bodyHex: PEER_REQ + PEER_BODY,
    tag: { sequence: 4 },
    hex: PEER_REQ + PEER_BODY + COMMON_TAG("00 00 00 04", "e0 5e eb 73  72 7c 3d 7c  7f 63 61 49  50 87 c5 9e"),
  },
  {
    name: "tagged ANNOUNCE request (Sequence Number 5)",
    origin: "RFC 7652 §3.2 (integrity-protected ANNOUNCE), §7.2",
    kind: "common",
    bodyHex: ANNOUNCE_REQ,
    tag: { sequence: 5 },
    hex: ANNOUNCE_REQ + COMMON_TAG("00 00 00 05", "e5 f7 83 12  d6 e0 b8 aa  bb 5e 67 cc  a7 25 c4 76"),
  },
  {
    name: "tagged ANNOUNCE response (Sequence Number 1)",
    origin: "RFC 7652 §3.2, §6.1",
    kind: "common",
    bodyHex: ANNOUNCE_SUCCESS,
    tag: { sequence: 1 },
    hex: ANNOUNCE_SUCCESS + COMMON_TAG("00 00 00 01", "31 7a 0d a4  f4 6c a1 12  7c b9 db 5d  ef b8 97 2d"),
  },
];
