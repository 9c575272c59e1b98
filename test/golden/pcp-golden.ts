/**
 * Golden PCP (RFC 6887) / NAT-PMP (RFC 6886) packets, annotated, with the expected
 * codec outcome derived BY HAND from docs/codec.md and the spec digest
 * (/work/shared/spec/pcp-digest.md) — not produced by running any parser.
 *
 * Conventions for every case (the consumer must apply them):
 *   - config: the default configuration (flags 11 = MAP + PEER + NAT-PMP enabled,
 *     overload → drop; enabled options 7 = THIRD_PARTY, PREFER_FAILURE, FILTER;
 *     error lifetimes 30 / 1800; THIRD_PARTY_ID max length 16);
 *   - epoch 0x11223344 for every reply;
 *   - src defaults to 192.0.2.1 (→ ::ffff:192.0.2.1), ingress defaults to 1
 *     (SUBSCRIBER), overloaded defaults to false;
 *   - hex strings: whitespace and `#` comments (to end of line) are ignored — use
 *     `hex()` below; `srcAddress()` turns `src` into the 16-byte form.
 *
 * Only helper here besides hex()/srcAddress() is z(n) = n zero bytes, used for
 * long runs of padding. Fragments are plain literal strings reused between a
 * request and its hand-written reply (an error reply is a byte copy of the
 * request with the header rewritten, codec.md "Error reply").
 *
 * Drop reasons: 1 TOO_SHORT, 2 RESPONSE, 3 SHORT_HEADER, 4 INTERFACE, 5 OVERLOAD,
 * 6 NATPMP_SHORT, 7 NATPMP_SILENT. Option bits: 1 THIRD_PARTY, 2 PREFER_FAILURE,
 * 4 FILTER, 8 THIRD_PARTY_ID, 16 DESCRIPTION, 32 PREFIX64, 64 PORT_SET,
 * 128 CHECKPOINT_REQUIRED.
 */

export interface GoldenCase {
  name: string;
  origin: string;
  hex: string;
  src?: string /* IPv4 dotted or IPv6 text, default 192.0.2.1 */;
  ingress?: number;
  overloaded?: boolean;
  /** HOST_* flags the listener sets before the codec (4 tag verified, 8 tag names no SA; RFC 7652 cases). */
  hostFlags?: number;
  expect: {
    verdict: "drop" | "reply" | "parsed" | "auth";
    dropReason?: number;
    result?: number;
    responseHex?: string;
    options?: number;
  };
}

/** Strip `#` comments and whitespace, then decode hex. */
export function hex(s: string): Uint8Array {
  const clean = s
    .split("\n")
    .map((line) => {
      const i = line.indexOf("#");
      return i >= 0 ? line.slice(0, i) : line;
    })
    .join("")
    .replace(/\s+/g, "");
  if (clean.length % 2 !== 0) throw new Error(`odd number of hex digits (${clean.length})`);
  if (!/^[0-9a-fA-F]*$/.test(clean)) throw new Error("non-hex character in hex string");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** IPv4 dotted (→ ::ffff:a.b.c.d) or IPv6 text (with optional '::') → 16 bytes. */
export function srcAddress(s: string = "192.0.2.1"): Uint8Array {
  const out = new Uint8Array(16);
  if (/^\d+\.\d+\.\d+\.\d+$/.test(s)) {
    const p = s.split(".").map((x) => Number(x));
    out[10] = 0xff;
    out[11] = 0xff;
    for (let i = 0; i < 4; i++) out[12 + i] = p[i];
    return out;
  }
  const halves = s.split("::");
  if (halves.length > 2) throw new Error(`bad IPv6 address ${s}`);
  const head = halves[0] === "" ? [] : halves[0].split(":");
  const tail = halves.length === 2 ? (halves[1] === "" ? [] : halves[1].split(":")) : [];
  const groups: number[] = [];
  for (const g of head) groups.push(parseInt(g, 16));
  const fill = 8 - head.length - tail.length;
  if (halves.length === 1 && fill !== 0) throw new Error(`bad IPv6 address ${s}`);
  for (let i = 0; i < fill; i++) groups.push(0);
  for (const g of tail) groups.push(parseInt(g, 16));
  for (let i = 0; i < 8; i++) {
    out[2 * i] = (groups[i] >> 8) & 0xff;
    out[2 * i + 1] = groups[i] & 0xff;
  }
  return out;
}

/** n zero bytes as hex text. */
function z(n: number): string {
  return " 00".repeat(n) + "\n";
}

// ---------------------------------------------------------------------------
// Fragments (each ends with a newline so trailing comments terminate)
// ---------------------------------------------------------------------------

const C_V4 = `
  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 01   # client IP ::ffff:192.0.2.1
`;
/** Request bytes 12–23 of C_V4 — what an unparsed error reply keeps (digest §1.4). */
const TAIL_V4 = `
               00 00 00 00  00 00 ff ff  c0 00 02 01   # bytes 12–23 copied (request did not parse)
`;
const C_V6 = `
  20 01 0d b8  00 00 00 00  00 00 00 00  00 00 00 01   # client IP 2001:db8::1
`;
const ZERO_12_23 = `
               00 00 00 00  00 00 00 00  00 00 00 00   # bytes 12–23 zero
`;
const EPOCH = `
  11 22 33 44                                         # epoch 0x11223344
`;
const LONG = `
  00 00 07 08                                         # lifetime 1800 (long error)
`;
const LT3600 = `
  00 00 0e 10                                         # requested lifetime 3600
`;
const LT0 = `
  00 00 00 00                                         # requested lifetime 0
`;

/** MAP opcode data (bytes 24–59). Arguments are literal hex text. */
function mapBody(proto = "06", iport = "1f 90", sport = "00 00", saddr = "00 00 00 00 00 00 00 00 00 00 ff ff 00 00 00 00"): string {
  return `
  01 02 03 04  05 06 07 08  09 0a 0b 0c                 # mapping nonce
  ${proto} 00 00 00                                     # protocol, reserved (3)
  ${iport}                                              # internal port
  ${sport}                                              # suggested external port
  ${saddr}                                              # suggested external address
`;
}
const MAP_BODY = mapBody(); // TCP 8080, no suggestion (::ffff:0.0.0.0, port 0)
/** suggested external ::ffff:198.51.100.1 port 8080, for PREFER_FAILURE cases */
const MAP_BODY_PF = mapBody("06", "1f 90", "1f 90", "00 00 00 00 00 00 00 00 00 00 ff ff c6 33 64 01");

/** PEER opcode data (bytes 24–79). */
function peerBody(proto = "11", iport = "13 88", rport = "00 35", remote = "00 00 00 00 00 00 00 00 00 00 ff ff cb 00 71 05"): string {
  return `
  a1 a2 a3 a4  a5 a6 a7 a8  a9 aa ab ac                 # mapping nonce
  ${proto} 00 00 00                                     # protocol, reserved (3)
  ${iport} 00 00                                        # internal port, suggested external port 0
  00 00 00 00  00 00 00 00  00 00 ff ff  00 00 00 00    # suggested external ::ffff:0.0.0.0
  ${rport} 00 00                                        # remote peer port, reserved (2)
  ${remote}                                             # remote peer address
`;
}
const PEER_BODY = peerBody(); // UDP 5000 → [::ffff:203.0.113.5]:53

const MAP_REQ =
  `
  02 01 00 00                                         # version 2, R=0 opcode 1 MAP, reserved
` +
  LT3600 +
  C_V4;
const MAP_REQ_LT0 =
  `
  02 01 00 00                                         # version 2, MAP
` +
  LT0 +
  C_V4;
const PEER_REQ =
  `
  02 02 00 00                                         # version 2, R=0 opcode 2 PEER
` +
  LT3600 +
  C_V4;
const ANNOUNCE_REQ =
  `
  02 00 00 00                                         # version 2, opcode 0 ANNOUNCE
  00 00 00 00                                         # requested lifetime 0
` + C_V4;

/** Unparsed error reply header (bytes 0–23) for a request with the C_V4 client IP. */
function errHdr(opcodeR: string, rc: string): string {
  return (
    `
  02 ${opcodeR} 00 ${rc}                              # version 2, R|opcode, reserved 0, result
` +
    LONG +
    EPOCH +
    TAIL_V4
  );
}

const ANNOUNCE_SUCCESS =
  `
  02 80 00 00                                         # version 2, R|ANNOUNCE, result SUCCESS
  00 00 00 00                                         # lifetime 0 (RFC 6887 §14.1.2)
` +
  EPOCH +
  ZERO_12_23;

// Options
const OPT_FILTER_V4_120 = `
  03 00 00 14                                         # FILTER, reserved, length 20
  00 78 00 00                                         # reserved, prefix 120, remote port 0 (all)
  00 00 00 00  00 00 00 00  00 00 ff ff  c6 33 64 00    # remote ::ffff:198.51.100.0 (/24)
`;
const OPT_FILTER_CLEAR = `
  03 00 00 14                                         # FILTER, length 20
  00 00 00 00                                         # reserved, prefix 0 = remove all, port 0
  00 00 00 00  00 00 00 00  00 00 00 00  00 00 00 00    # remote :: (ignored for prefix 0)
`;
const OPT_FILTER_V4_64 = `
  03 00 00 14                                         # FILTER, length 20
  00 40 00 00                                         # prefix 64 — illegal for v4-mapped (96..128)
  00 00 00 00  00 00 00 00  00 00 ff ff  c6 33 64 00    # remote ::ffff:198.51.100.0
`;
const OPT_FILTER_LEN16 = `
  03 00 00 10                                         # FILTER with length 16 (must be 20)
  00 78 00 00                                         # reserved, prefix 120, port 0
  00 00 00 00  00 00 ff ff  c6 33 64 00                 # 12 bytes of a truncated address
`;
const OPT_TP_10 = `
  01 00 00 10                                         # THIRD_PARTY, reserved, length 16
  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 0a    # internal address ::ffff:192.0.2.10
`;
const OPT_PF = `
  02 00 00 00                                         # PREFER_FAILURE, length 0
`;
const OPT_50 = `
  32 00 00 04                                         # unknown mandatory option 50, length 4
  01 02 03 04                                         # data
`;
const OPT_200 = `
  c8 00 00 04                                         # unknown optional option 200, length 4
  de ad be ef                                         # data
`;

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

export const GOLDEN: GoldenCase[] = [
  // ===================== valid requests, RFC layout =====================
  {
    name: "MAP TCP 8080, no suggestion, lifetime 3600",
    origin: "RFC 6887 §11.1 layout; digest §3.4 item 47; codec.md row 18",
    hex: MAP_REQ + MAP_BODY,
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "MAP from IPv6 client 2001:db8::1",
    origin: "RFC 6887 §5, §11.1; codec.md row 18",
    src: "2001:db8::1",
    hex: `02 01 00 00` + LT3600 + C_V6 + MAP_BODY,
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "MAP delete (lifetime 0)",
    origin: "RFC 6887 §15.1; codec.md row 18",
    hex: MAP_REQ_LT0 + MAP_BODY,
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "MAP protocol 0 internal port 0 (all protocols) → parsed; engine decides",
    origin: "RFC 6887 §11.1; codec.md row 15 (only port ≠ 0 is malformed)",
    hex: MAP_REQ + mapBody("00", "00 00"),
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "MAP with PREFER_FAILURE and FILTER",
    origin: "RFC 6887 §13.2, §13.3; codec.md walk",
    hex: MAP_REQ + MAP_BODY_PF + OPT_PF + OPT_FILTER_V4_120,
    expect: { verdict: "parsed", options: 6 },
  },
  {
    name: "MAP of exactly 1100 bytes (unknown optional option 200, length 1036)",
    origin: "RFC 6887 §7 (1100 max); codec.md rows 9, walk step 2",
    hex:
      MAP_REQ +
      MAP_BODY +
      `
  c8 00 04 0c                                         # option 200, length 1036 (60+4+1036 = 1100)
` +
      z(1036),
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "PEER UDP 5000 → 203.0.113.5:53",
    origin: "RFC 6887 §12.1 layout; digest §3.6 item 83; codec.md row 18",
    hex: PEER_REQ + PEER_BODY,
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "PEER remote 240.0.0.1 (class E, not 224/4) → parsed",
    origin: "codec.md row 15 boundary (224/4 = 224..239)",
    hex: PEER_REQ + peerBody("11", "13 88", "00 35", "00 00 00 00 00 00 00 00 00 00 ff ff f0 00 00 01"),
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "PEER with lifetime 0 → parsed (engine decides)",
    origin: "RFC 6887 §12.1; codec.md row 18",
    hex: `02 02 00 00` + LT0 + C_V4 + PEER_BODY,
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "ANNOUNCE 24 bytes → success reply",
    origin: "digest §3.1 item 13, §3.10 item 113; codec.md row 17",
    hex: ANNOUNCE_REQ,
    expect: { verdict: "reply", result: 0, responseHex: ANNOUNCE_SUCCESS },
  },
  {
    name: "ANNOUNCE with requested lifetime 600 → lifetime 0",
    origin: "digest §3.10 item 114; codec.md row 17",
    hex:
      `
  02 00 00 00                                         # ANNOUNCE
  00 00 02 58                                         # requested lifetime 600 (ignored)
` + C_V4,
    expect: { verdict: "reply", result: 0, responseHex: ANNOUNCE_SUCCESS },
  },
  {
    name: "ANNOUNCE with unknown optional option 200 → success, option not echoed",
    origin: "digest §3.10 item 116, §3.2 item 25; codec.md walk step 2, row 17",
    hex: ANNOUNCE_REQ + OPT_200,
    expect: { verdict: "reply", result: 0, responseHex: ANNOUNCE_SUCCESS },
  },
  {
    name: "ANNOUNCE with PREFIX64 (disabled optional option) → success",
    origin: "RFC 7225 §4.1; codec.md walk step 2 (disabled optional → skipped), row 17",
    hex:
      ANNOUNCE_REQ +
      `
  81 00 00 0e                                         # PREFIX64, length 14
  00 0c                                               # Prefix64 length 12 (/96)
  00 00 00 00 00 00 00 00 00 00 00 00                 # ::/96
  00 00                                               # 2 pad bytes (14 → 16)
`,
    expect: { verdict: "reply", result: 0, responseHex: ANNOUNCE_SUCCESS },
  },

  // ===================== framing, drops (digest §3.1) =====================
  {
    name: "empty datagram",
    origin: "digest §3.1 item 3; codec.md row 2",
    hex: "",
    expect: { verdict: "drop", dropReason: 1 },
  },
  {
    name: "1-byte datagram 02",
    origin: "digest §3.1 item 3; codec.md row 2",
    hex: "02",
    expect: { verdict: "drop", dropReason: 1 },
  },
  {
    name: "1-byte datagram 00 (NAT-PMP version, still too short)",
    origin: "digest §3.1 item 3; codec.md row 2 before row 5",
    hex: "00",
    expect: { verdict: "drop", dropReason: 1 },
  },
  {
    name: "no ingress bit → INTERFACE",
    origin: "digest §3.1 item 2; codec.md row 1",
    ingress: 0,
    hex: MAP_REQ + MAP_BODY,
    expect: { verdict: "drop", dropReason: 4 },
  },
  {
    name: "R bit: a MAP response sent to the server",
    origin: "digest §3.1 item 4; codec.md row 3",
    hex:
      `
  02 81 00 00                                         # version 2, R=1 MAP, SUCCESS
  00 00 0e 10  11 22 33 44                            # lifetime, epoch
  00 00 00 00 00 00 00 00 00 00 00 00                 # reserved
` + MAP_BODY,
    expect: { verdict: "drop", dropReason: 2 },
  },
  {
    name: "R bit: 2-byte 02 80",
    origin: "digest §3.1 item 4; codec.md row 3",
    hex: "02 80",
    expect: { verdict: "drop", dropReason: 2 },
  },
  {
    name: "R bit on version 3 wins over UNSUPP_VERSION",
    origin: "codec.md row 3 before row 6",
    hex: "03 81 00 00",
    expect: { verdict: "drop", dropReason: 2 },
  },
  {
    name: "version 3, 24-byte header → UNSUPP_VERSION, version 2",
    origin: "digest §3.1 item 5; codec.md row 6",
    hex:
      `
  03 00 00 00                                         # version 3, ANNOUNCE
  00 00 00 00                                         # lifetime
` + C_V4,
    expect: {
      verdict: "reply",
      result: 1,
      responseHex:
        `
  02 80 00 01                                         # version 2, R|0, UNSUPP_VERSION
` +
        LONG +
        EPOCH +
        TAIL_V4,
    },
  },
  {
    name: "version 1 MAP (pre-RFC numbering) → UNSUPP_VERSION, never parsed",
    origin: "digest §3.1 item 6; RFC 6886 §1.1; codec.md row 6",
    hex:
      `
  01 01 00 00                                         # version 1, opcode 1
` +
      LT3600 +
      C_V4 +
      MAP_BODY,
    expect: {
      verdict: "reply",
      result: 1,
      responseHex: errHdr("81", "01") + MAP_BODY,
    },
  },
  {
    name: "version 1 tiny (01 00) → 24-byte UNSUPP_VERSION",
    origin: "digest §3.1 item 6, §1.12 decision; codec.md row 6",
    hex: "01 00",
    expect: {
      verdict: "reply",
      result: 1,
      responseHex:
        `
  02 80 00 01                                         # version 2, R|0, UNSUPP_VERSION
` +
        LONG +
        EPOCH +
        ZERO_12_23,
    },
  },
  {
    name: "version 3 tiny (3 bytes 03 01 00) → 24-byte UNSUPP_VERSION",
    origin: "digest §1.12 decision; codec.md row 6",
    hex: "03 01 00",
    expect: {
      verdict: "reply",
      result: 1,
      responseHex:
        `
  02 81 00 01                                         # version 2, R|1, UNSUPP_VERSION
` +
        LONG +
        EPOCH +
        ZERO_12_23,
    },
  },
  {
    name: "version 255, length 4 → 24-byte UNSUPP_VERSION",
    origin: "digest §3.1 item 7; codec.md row 6",
    hex: "ff 01 ab cd",
    expect: {
      verdict: "reply",
      result: 1,
      responseHex:
        `
  02 81 00 01                                         # version 2, R|1, reserved 0 (was ab), UNSUPP_VERSION (was cd)
` +
        LONG +
        EPOCH +
        ZERO_12_23,
    },
  },
  {
    name: "version 2, length 2 → SHORT_HEADER",
    origin: "digest §3.1 item 8; codec.md row 7",
    hex: "02 01",
    expect: { verdict: "drop", dropReason: 3 },
  },
  {
    name: "version 2, length 20 → SHORT_HEADER",
    origin: "digest §3.1 item 8; codec.md row 7",
    hex: `02 00 00 00  00 00 00 00  00 00 00 00  00 00 00 00  00 00 ff ff`,
    expect: { verdict: "drop", dropReason: 3 },
  },
  {
    name: "version 2 ANNOUNCE, length 23 → SHORT_HEADER",
    origin: "digest §3.1 item 8, §1.25 (silent drop); codec.md row 7",
    hex: `02 00 00 00  00 00 00 00  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02`,
    expect: { verdict: "drop", dropReason: 3 },
  },
  {
    name: "overloaded MAP, default config → OVERLOAD drop",
    origin: "digest §3.1 item 18; codec.md row 8",
    overloaded: true,
    hex: MAP_REQ + MAP_BODY,
    expect: { verdict: "drop", dropReason: 5 },
  },
  {
    name: "overloaded, version 3 → OVERLOAD drop (no reflection past the rate limit)",
    origin: "hostile: issue #12 item 8; codec.md row 6",
    overloaded: true,
    hex: `03 00 00 00` + LT0 + C_V4,
    expect: { verdict: "drop", dropReason: 5 },
  },
  {
    name: "overloaded, 2-byte version 1 → OVERLOAD drop, not a 24-byte UNSUPP_VERSION",
    origin: "hostile: issue #12 item 8; codec.md row 6",
    overloaded: true,
    hex: `01 00`,
    expect: { verdict: "drop", dropReason: 5 },
  },
  {
    name: "overloaded, version 2 length 20 → SHORT_HEADER",
    origin: "codec.md row 7 before row 8",
    overloaded: true,
    hex: `02 00 00 00  00 00 00 00  00 00 00 00  00 00 00 00  00 00 ff ff`,
    expect: { verdict: "drop", dropReason: 3 },
  },
  {
    name: "overloaded, MAP 62 bytes → OVERLOAD drop (before MALFORMED_REQUEST)",
    origin: "codec.md row 8 before row 9",
    overloaded: true,
    hex: MAP_REQ + MAP_BODY + "ab cd",
    expect: { verdict: "drop", dropReason: 5 },
  },
  {
    name: "MAP of 1104 bytes → MALFORMED_REQUEST, reply exactly 1100 bytes",
    origin: "digest §3.1 item 9; codec.md row 9",
    hex: MAP_REQ + MAP_BODY + z(1044),
    expect: {
      verdict: "reply",
      result: 3,
      responseHex: errHdr("81", "03") + MAP_BODY + z(1040),
    },
  },
  {
    name: "MAP of 65535 bytes → MALFORMED_REQUEST, reply 1100 bytes",
    origin: "codec.md slot (SLOT_WIRE_LEN capped at 65535), row 9",
    hex: MAP_REQ + MAP_BODY + z(65535 - 60),
    expect: {
      verdict: "reply",
      result: 3,
      responseHex: errHdr("81", "03") + MAP_BODY + z(1040),
    },
  },
  {
    name: "MAP of 62 bytes → MALFORMED_REQUEST, reply zero-padded to 64",
    origin: "digest §3.1 item 10, §3.2 item 22; codec.md row 9",
    hex: MAP_REQ + MAP_BODY + "ab cd",
    expect: {
      verdict: "reply",
      result: 3,
      responseHex: errHdr("81", "03") + MAP_BODY + `ab cd 00 00   # copied + 2 zero pad bytes`,
    },
  },
  {
    name: "MAP of 56 bytes → MALFORMED_REQUEST",
    origin: "digest §3.1 item 11; codec.md row 9",
    hex:
      MAP_REQ +
      `
  01 02 03 04  05 06 07 08  09 0a 0b 0c                 # nonce
  06 00 00 00  1f 90 00 00                              # protocol, internal port, suggested port
  00 00 00 00  00 00 00 00  00 00 ff ff                 # suggested address cut after 12 bytes
`,
    expect: {
      verdict: "reply",
      result: 3,
      responseHex:
        errHdr("81", "03") +
        `
  01 02 03 04  05 06 07 08  09 0a 0b 0c
  06 00 00 00  1f 90 00 00
  00 00 00 00  00 00 00 00  00 00 ff ff
`,
    },
  },
  {
    name: "PEER of 76 bytes → MALFORMED_REQUEST",
    origin: "digest §3.1 item 12; codec.md row 9",
    hex:
      PEER_REQ +
      `
  a1 a2 a3 a4  a5 a6 a7 a8  a9 aa ab ac                 # nonce
  11 00 00 00  13 88 00 00                              # UDP, internal 5000, suggested 0
  00 00 00 00  00 00 00 00  00 00 ff ff  00 00 00 00    # suggested external
  00 35 00 00                                           # remote port 53
  00 00 00 00  00 00 00 00  00 00 ff ff                 # remote address cut after 12 bytes
`,
    expect: {
      verdict: "reply",
      result: 3,
      responseHex:
        errHdr("82", "03") +
        `
  a1 a2 a3 a4  a5 a6 a7 a8  a9 aa ab ac
  11 00 00 00  13 88 00 00
  00 00 00 00  00 00 00 00  00 00 ff ff  00 00 00 00
  00 35 00 00
  00 00 00 00  00 00 00 00  00 00 ff ff
`,
    },
  },
  {
    name: "ANNOUNCE of 26 bytes → MALFORMED_REQUEST, padded to 28",
    origin: "RFC 6887 §8.2 (multiple of 4); codec.md row 9",
    hex: ANNOUNCE_REQ + "77 88",
    expect: {
      verdict: "reply",
      result: 3,
      responseHex: errHdr("80", "03") + `77 88 00 00`,
    },
  },
  {
    name: "unknown opcode 5, 26 bytes → MALFORMED_REQUEST (length test applies to any opcode)",
    origin: "digest §1.11 note; codec.md row 9 before row 11",
    hex: `02 05 00 00` + LT3600 + C_V4 + `99 99`,
    expect: {
      verdict: "reply",
      result: 3,
      responseHex: errHdr("85", "03") + `99 99 00 00`,
    },
  },
  {
    name: "MAP client IP 192.0.2.2 from 192.0.2.1 → ADDRESS_MISMATCH",
    origin: "digest §3.1 item 14; codec.md row 10",
    hex:
      `02 01 00 00` +
      LT3600 +
      `
  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 02    # client IP ::ffff:192.0.2.2
` +
      MAP_BODY,
    expect: {
      verdict: "reply",
      result: 12,
      responseHex:
        `
  02 81 00 0c                                         # R|MAP, ADDRESS_MISMATCH
` +
        LONG +
        EPOCH +
        `
               00 00 00 00  00 00 ff ff  c0 00 02 02    # bytes 12–23 copied
` +
        MAP_BODY,
    },
  },
  {
    name: "client IP ::c000:201 (IPv4-compatible) from 192.0.2.1 → ADDRESS_MISMATCH",
    origin: "digest §3.1 item 15; RFC 6887 §5; codec.md row 10",
    hex:
      `02 01 00 00` +
      LT3600 +
      `
  00 00 00 00  00 00 00 00  00 00 00 00  c0 00 02 01    # ::c000:201, not v4-mapped
` +
      MAP_BODY,
    expect: {
      verdict: "reply",
      result: 12,
      responseHex:
        `
  02 81 00 0c
` +
        LONG +
        EPOCH +
        `
               00 00 00 00  00 00 00 00  c0 00 02 01    # bytes 12–23 copied
` +
        MAP_BODY,
    },
  },
  {
    name: "ANNOUNCE with wrong client IP → ADDRESS_MISMATCH",
    origin: "digest §3.10 item 115; codec.md row 10",
    hex:
      `02 00 00 00` +
      LT0 +
      `
  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 63    # client IP ::ffff:192.0.2.99
`,
    expect: {
      verdict: "reply",
      result: 12,
      responseHex:
        `02 80 00 0c` +
        LONG +
        EPOCH +
        `
               00 00 00 00  00 00 ff ff  c0 00 02 63
`,
    },
  },
  {
    name: "IPv6 client field for an IPv4 source → ADDRESS_MISMATCH",
    origin: "codec.md row 10 (16-byte compare)",
    hex: `02 01 00 00` + LT3600 + C_V6 + MAP_BODY,
    expect: {
      verdict: "reply",
      result: 12,
      responseHex:
        `02 81 00 0c` +
        LONG +
        EPOCH +
        `
               00 00 00 00  00 00 00 00  00 00 00 01
` +
        MAP_BODY,
    },
  },
  {
    name: "opcode 5 (unassigned) → UNSUPP_OPCODE, payload untouched",
    origin: "digest §3.1 item 16; codec.md row 11",
    hex: `02 05 00 00` + LT3600 + C_V4 + `de ad be ef  ca fe ba be   # opaque payload`,
    expect: {
      verdict: "reply",
      result: 4,
      responseHex: errHdr("85", "04") + `de ad be ef  ca fe ba be   # copied untouched`,
    },
  },
  {
    name: "opcode 3 AUTHENTICATION (PA-Initiation, byte 3 = INITIATION 14) → UNSUPP_OPCODE",
    origin: "digest §3.1 item 17; RFC 7652 §5.2; codec.md row 11",
    hex:
      `
  02 03 00 0e                                         # AUTHENTICATION, byte 3 = result INITIATION
  00 00 00 00                                         # lifetime 0
` +
      C_V4 +
      `
  00 00 00 00                                         # session ID
  00 00 00 01                                         # sequence number
  04 00 00 04  11 11 11 11                            # NONCE option (uninterpreted)
`,
    expect: {
      verdict: "reply",
      result: 4,
      responseHex:
        errHdr("83", "04") +
        `
  00 00 00 00  00 00 00 01
  04 00 00 04  11 11 11 11
`,
    },
  },
  {
    name: "opcode 127, 24 bytes → UNSUPP_OPCODE",
    origin: "codec.md row 11",
    hex: `02 7f 00 00` + LT0 + C_V4,
    expect: { verdict: "reply", result: 4, responseHex: errHdr("ff", "04") },
  },
  {
    name: "opcode 5 with wrong client IP → ADDRESS_MISMATCH first",
    origin: "digest §1.11 decision; codec.md row 10 before row 11",
    hex:
      `02 05 00 00` +
      LT3600 +
      `
  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 02    # ::ffff:192.0.2.2
  de ad be ef
`,
    expect: {
      verdict: "reply",
      result: 12,
      responseHex:
        `02 85 00 0c` +
        LONG +
        EPOCH +
        `
               00 00 00 00  00 00 ff ff  c0 00 02 02
  de ad be ef
`,
    },
  },

  // ===================== option walk (digest §3.3) =====================
  {
    name: "FILTER then unknown mandatory option 50 → UNSUPP_OPTION, all options echoed",
    origin: "digest §3.3 item 36, §3.2 item 25; codec.md walk step 2",
    hex: MAP_REQ + MAP_BODY + OPT_FILTER_V4_120 + OPT_50,
    expect: {
      verdict: "reply",
      result: 5,
      responseHex: errHdr("81", "05") + MAP_BODY + OPT_FILTER_V4_120 + OPT_50,
    },
  },
  {
    name: "unknown optional option 200 → parsed, not recorded",
    origin: "digest §3.3 item 37; codec.md walk step 2",
    hex: MAP_REQ + MAP_BODY + OPT_200,
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "unknown optional 200 then unknown mandatory 50 → UNSUPP_OPTION",
    origin: "codec.md walk step 2",
    hex: MAP_REQ + MAP_BODY + OPT_200 + OPT_50,
    expect: { verdict: "reply", result: 5, responseHex: errHdr("81", "05") + MAP_BODY + OPT_200 + OPT_50 },
  },
  {
    name: "option length larger than the remaining bytes → MALFORMED_OPTION",
    origin: "digest §3.3 item 33; codec.md walk step 1",
    hex:
      MAP_REQ +
      MAP_BODY +
      `
  03 00 00 14                                         # FILTER, length 20 ...
  00 78 00 00  00 00 00 00  00 00 00 00  00 00 ff ff    # ... but only 16 bytes follow
`,
    expect: {
      verdict: "reply",
      result: 6,
      responseHex:
        errHdr("81", "06") +
        MAP_BODY +
        `
  03 00 00 14
  00 78 00 00  00 00 00 00  00 00 00 00  00 00 ff ff
`,
    },
  },
  {
    name: "option length 0xFFFF → MALFORMED_OPTION, no over-read",
    origin: "digest §3.3 item 34; codec.md walk step 1",
    hex:
      MAP_REQ +
      MAP_BODY +
      `
  03 00 ff ff                                         # FILTER, length 65535
  00 00 00 00
`,
    expect: {
      verdict: "reply",
      result: 6,
      responseHex: errHdr("81", "06") + MAP_BODY + `03 00 ff ff  00 00 00 00`,
    },
  },
  {
    name: "unknown optional option 200 with length 0xFFFF → MALFORMED_OPTION (structure before code)",
    origin: "codec.md walk step 1 before step 2",
    hex: MAP_REQ + MAP_BODY + `c8 00 ff ff  00 00 00 00`,
    expect: {
      verdict: "reply",
      result: 6,
      responseHex: errHdr("81", "06") + MAP_BODY + `c8 00 ff ff  00 00 00 00`,
    },
  },
  {
    name: "DESCRIPTION length 5 + 3 pad bytes, then FILTER → FILTER parsed after the padding",
    origin: "digest §3.3 item 35; codec.md walk (DESCRIPTION disabled by default → skipped)",
    hex:
      MAP_REQ +
      MAP_BODY +
      `
  80 00 00 05                                         # DESCRIPTION, length 5
  68 65 6c 6c 6f  00 00 00                             # "hello" + 3 pad bytes
` +
      OPT_FILTER_V4_120,
    expect: { verdict: "parsed", options: 4 },
  },
  {
    name: "DESCRIPTION length 5 with non-zero pad bytes, then FILTER → pad contents ignored",
    origin: "digest §1.9.2 decision; codec.md walk",
    hex:
      MAP_REQ +
      MAP_BODY +
      `
  80 00 00 05                                         # DESCRIPTION, length 5
  68 65 6c 6c 6f  ff ff ff                             # "hello" + pad bytes ff ff ff
` +
      OPT_FILTER_V4_120,
    expect: { verdict: "parsed", options: 4 },
  },
  {
    name: "two THIRD_PARTY options (authorised) → MALFORMED_OPTION",
    origin: "digest §3.3 item 38; codec.md walk step 5",
    ingress: 3,
    hex: MAP_REQ + MAP_BODY + OPT_TP_10 + OPT_TP_10,
    expect: { verdict: "reply", result: 6, responseHex: errHdr("81", "06") + MAP_BODY + OPT_TP_10 + OPT_TP_10 },
  },
  {
    name: "two PREFER_FAILURE options → MALFORMED_OPTION",
    origin: "digest §3.3 item 39; codec.md walk step 5",
    hex: MAP_REQ + MAP_BODY_PF + OPT_PF + OPT_PF,
    expect: { verdict: "reply", result: 6, responseHex: errHdr("81", "06") + MAP_BODY_PF + OPT_PF + OPT_PF },
  },
  {
    name: "THIRD_PARTY length 4 (unauthorised ingress) → MALFORMED_OPTION (length before content)",
    origin: "digest §3.3 item 40; codec.md walk step 4 before step 6",
    hex:
      MAP_REQ +
      MAP_BODY +
      `
  01 00 00 04                                         # THIRD_PARTY, length 4
  c0 00 02 0a                                         # bare IPv4 address
`,
    expect: {
      verdict: "reply",
      result: 6,
      responseHex: errHdr("81", "06") + MAP_BODY + `01 00 00 04  c0 00 02 0a`,
    },
  },
  {
    name: "FILTER length 16 → MALFORMED_OPTION",
    origin: "digest §3.3 item 41; codec.md walk step 4",
    hex: MAP_REQ + MAP_BODY + OPT_FILTER_LEN16,
    expect: { verdict: "reply", result: 6, responseHex: errHdr("81", "06") + MAP_BODY + OPT_FILTER_LEN16 },
  },
  {
    name: "PREFER_FAILURE length 4 → MALFORMED_OPTION",
    origin: "digest §3.3 item 42; codec.md walk step 4",
    hex: MAP_REQ + MAP_BODY_PF + `02 00 00 04  00 00 00 00   # PREFER_FAILURE, length 4`,
    expect: {
      verdict: "reply",
      result: 6,
      responseHex: errHdr("81", "06") + MAP_BODY_PF + `02 00 00 04  00 00 00 00`,
    },
  },
  {
    name: "PREFER_FAILURE in PEER → MALFORMED_REQUEST",
    origin: "digest §3.3 item 43; RFC 6887 §12.1; codec.md walk step 3",
    hex: PEER_REQ + PEER_BODY + OPT_PF,
    expect: { verdict: "reply", result: 3, responseHex: errHdr("82", "03") + PEER_BODY + OPT_PF },
  },
  {
    name: "FILTER in PEER → MALFORMED_OPTION",
    origin: "digest §3.3 item 44 (decision); codec.md walk step 3",
    hex: PEER_REQ + PEER_BODY + OPT_FILTER_V4_120,
    expect: { verdict: "reply", result: 6, responseHex: errHdr("82", "06") + PEER_BODY + OPT_FILTER_V4_120 },
  },
  {
    name: "THIRD_PARTY in ANNOUNCE → MALFORMED_OPTION",
    origin: "digest §3.3 item 44 (decision); codec.md walk step 3",
    ingress: 3,
    hex: ANNOUNCE_REQ + OPT_TP_10,
    expect: { verdict: "reply", result: 6, responseHex: errHdr("80", "06") + OPT_TP_10 },
  },
  {
    name: "FILTER prefix 0 (clear) followed by FILTER 198.51.100.0/24 → parsed",
    origin: "digest §3.3 item 45, §1.20; codec.md walk step 6",
    hex: MAP_REQ + MAP_BODY + OPT_FILTER_CLEAR + OPT_FILTER_V4_120,
    expect: { verdict: "parsed", options: 4 },
  },
  {
    name: "THIRD_PARTY_ID (disabled by default) → UNSUPP_OPTION",
    origin: "digest §3.3 item 46, §3.13 item 153; codec.md walk step 2",
    hex: MAP_REQ + MAP_BODY + `0d 00 00 04  00 00 00 2a   # THIRD_PARTY_ID, length 4`,
    expect: {
      verdict: "reply",
      result: 5,
      responseHex: errHdr("81", "05") + MAP_BODY + `0d 00 00 04  00 00 00 2a`,
    },
  },
  {
    name: "AUTHENTICATION_TAG (option 5) → UNSUPP_OPTION",
    origin: "digest §3.13 item 154; codec.md walk step 2 (RFC 7652 codes unknown)",
    hex: MAP_REQ + MAP_BODY + `05 00 00 08  00 00 00 01  00 00 00 02   # AUTHENTICATION_TAG, length 8`,
    expect: {
      verdict: "reply",
      result: 5,
      responseHex: errHdr("81", "05") + MAP_BODY + `05 00 00 08  00 00 00 01  00 00 00 02`,
    },
  },
  {
    name: "reserved option code 0 → UNSUPP_OPTION",
    origin: "codec.md walk step 2 (reserved 0 is unknown)",
    hex: MAP_REQ + MAP_BODY + `00 00 00 00   # option 0, length 0`,
    expect: { verdict: "reply", result: 5, responseHex: errHdr("81", "05") + MAP_BODY + `00 00 00 00` },
  },
  {
    name: "reserved option code 127 → UNSUPP_OPTION",
    origin: "codec.md walk step 2",
    hex: MAP_REQ + MAP_BODY + `7f 00 00 00   # option 127, length 0`,
    expect: { verdict: "reply", result: 5, responseHex: errHdr("81", "05") + MAP_BODY + `7f 00 00 00` },
  },
  {
    name: "reserved option code 255 → skipped, parsed",
    origin: "codec.md walk step 2",
    hex: MAP_REQ + MAP_BODY + `ff 00 00 00   # option 255, length 0`,
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "PORT_SET (disabled optional) → skipped, parsed",
    origin: "RFC 7753 §4 (optional range); codec.md walk step 2",
    hex:
      MAP_REQ +
      MAP_BODY +
      `
  82 00 00 05                                         # PORT_SET, length 5
  00 10 1f 90 01  00 00 00                            # size 16, first internal 8080, P=1, pad
`,
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "CHECKPOINT_REQUIRED (disabled optional) → skipped, parsed",
    origin: "RFC 7767 §3; digest §3.13 item 155; codec.md walk step 2",
    hex: MAP_REQ + MAP_BODY + `c0 00 00 00   # CHECKPOINT_REQUIRED`,
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "unknown mandatory 50 then FILTER length 16 → UNSUPP_OPTION (first failing option wins)",
    origin: 'codec.md walk ("for each option in order")',
    hex: MAP_REQ + MAP_BODY + OPT_50 + OPT_FILTER_LEN16,
    expect: { verdict: "reply", result: 5, responseHex: errHdr("81", "05") + MAP_BODY + OPT_50 + OPT_FILTER_LEN16 },
  },
  {
    name: "FILTER length 16 then unknown mandatory 50 → MALFORMED_OPTION",
    origin: 'codec.md walk ("for each option in order")',
    hex: MAP_REQ + MAP_BODY + OPT_FILTER_LEN16 + OPT_50,
    expect: { verdict: "reply", result: 6, responseHex: errHdr("81", "06") + MAP_BODY + OPT_FILTER_LEN16 + OPT_50 },
  },

  // ===================== THIRD_PARTY (digest §3.7) =====================
  {
    name: "THIRD_PARTY from a non-authorised ingress → UNSUPP_OPTION",
    origin: "digest §3.7 item 94; codec.md walk step 6",
    ingress: 1,
    hex: MAP_REQ + MAP_BODY + OPT_TP_10,
    expect: { verdict: "reply", result: 5, responseHex: errHdr("81", "05") + MAP_BODY + OPT_TP_10 },
  },
  {
    name: "THIRD_PARTY equal to the source address → MALFORMED_REQUEST",
    origin: "digest §3.7 item 95; codec.md walk step 6",
    ingress: 3,
    hex:
      MAP_REQ +
      MAP_BODY +
      `
  01 00 00 10                                         # THIRD_PARTY, length 16
  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 01    # ::ffff:192.0.2.1 = source
`,
    expect: {
      verdict: "reply",
      result: 3,
      responseHex:
        errHdr("81", "03") +
        MAP_BODY +
        `
  01 00 00 10
  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 01
`,
    },
  },
  {
    name: "authorised THIRD_PARTY MAP (ingress SUBSCRIBER|THIRD_PARTY) → parsed",
    origin: "digest §3.7 item 96; codec.md walk",
    ingress: 3,
    hex: MAP_REQ + MAP_BODY + OPT_TP_10,
    expect: { verdict: "parsed", options: 1 },
  },
  {
    name: "THIRD_PARTY + FILTER with v4 prefix 64 → MALFORMED_OPTION",
    origin: "digest §3.2 item 29, §3.9 item 105; codec.md walk step 6",
    ingress: 3,
    hex: MAP_REQ + MAP_BODY + OPT_TP_10 + OPT_FILTER_V4_64,
    expect: { verdict: "reply", result: 6, responseHex: errHdr("81", "06") + MAP_BODY + OPT_TP_10 + OPT_FILTER_V4_64 },
  },
  {
    name: "THIRD_PARTY-only ingress, MAP with THIRD_PARTY → parsed",
    origin: 'codec.md "Ingress bits"',
    ingress: 2,
    hex: MAP_REQ + MAP_BODY + OPT_TP_10,
    expect: { verdict: "parsed", options: 1 },
  },
  {
    name: "THIRD_PARTY-only ingress, MAP without THIRD_PARTY → INTERFACE",
    origin: "codec.md row 13",
    ingress: 2,
    hex: MAP_REQ + MAP_BODY,
    expect: { verdict: "drop", dropReason: 4 },
  },
  {
    name: "THIRD_PARTY-only ingress, ADDRESS_MISMATCH with THIRD_PARTY → INTERFACE (reply suppressed)",
    origin: 'codec.md "Ingress bits" (error replies before THIRD_PARTY was seen)',
    ingress: 2,
    hex:
      `02 01 00 00` +
      LT3600 +
      `
  00 00 00 00  00 00 00 00  00 00 ff ff  c0 00 02 02    # ::ffff:192.0.2.2 ≠ source
` +
      MAP_BODY +
      OPT_TP_10,
    expect: { verdict: "drop", dropReason: 4 },
  },
  {
    name: "THIRD_PARTY-only ingress, unknown option 50 before THIRD_PARTY → INTERFACE",
    origin: 'codec.md "Ingress bits" (walk error before THIRD_PARTY was seen)',
    ingress: 2,
    hex: MAP_REQ + MAP_BODY + OPT_50 + OPT_TP_10,
    expect: { verdict: "drop", dropReason: 4 },
  },
  {
    name: "THIRD_PARTY-only ingress, THIRD_PARTY then FILTER length 16 → MALFORMED_OPTION reply",
    origin: 'codec.md "Ingress bits" (error after THIRD_PARTY was seen)',
    ingress: 2,
    hex: MAP_REQ + MAP_BODY + OPT_TP_10 + OPT_FILTER_LEN16,
    expect: { verdict: "reply", result: 6, responseHex: errHdr("81", "06") + MAP_BODY + OPT_TP_10 + OPT_FILTER_LEN16 },
  },
  {
    name: "THIRD_PARTY-only ingress, THIRD_PARTY + PREFER_FAILURE with lifetime 0 → MALFORMED_OPTION reply",
    origin: 'codec.md "Ingress bits", row 14 rule 2',
    ingress: 2,
    hex: MAP_REQ_LT0 + MAP_BODY_PF + OPT_TP_10 + OPT_PF,
    expect: {
      verdict: "reply",
      result: 6,
      responseHex: errHdr("81", "06") + MAP_BODY_PF + OPT_TP_10 + OPT_PF,
    },
  },
  {
    name: "THIRD_PARTY-only ingress, ANNOUNCE → INTERFACE",
    origin: "codec.md row 13",
    ingress: 2,
    hex: ANNOUNCE_REQ,
    expect: { verdict: "drop", dropReason: 4 },
  },
  {
    name: "THIRD_PARTY-only ingress, version 3 → INTERFACE (UNSUPP_VERSION suppressed)",
    origin: 'codec.md "Ingress bits"',
    ingress: 2,
    hex: `03 00 00 00` + LT0 + C_V4,
    expect: { verdict: "drop", dropReason: 4 },
  },
  {
    name: "THIRD_PARTY-only ingress, 1-byte datagram → INTERFACE",
    origin: 'codec.md "Ingress bits" ("every other outcome")',
    ingress: 2,
    hex: "02",
    expect: { verdict: "drop", dropReason: 4 },
  },
  {
    name: "THIRD_PARTY-only ingress, overloaded MAP with THIRD_PARTY → INTERFACE",
    origin: 'codec.md "Ingress bits" (row 8 precedes the walk)',
    ingress: 2,
    overloaded: true,
    hex: MAP_REQ + MAP_BODY + OPT_TP_10,
    expect: { verdict: "drop", dropReason: 4 },
  },

  // ===================== FILTER content (digest §3.9) =====================
  {
    name: "FILTER v4-mapped prefix 64 → MALFORMED_OPTION",
    origin: "digest §3.9 item 105; codec.md walk step 6",
    hex: MAP_REQ + MAP_BODY + OPT_FILTER_V4_64,
    expect: { verdict: "reply", result: 6, responseHex: errHdr("81", "06") + MAP_BODY + OPT_FILTER_V4_64 },
  },
  {
    name: "FILTER IPv6 prefix 129 → MALFORMED_OPTION",
    origin: "digest §3.9 item 106; codec.md walk step 6",
    hex:
      MAP_REQ +
      MAP_BODY +
      `
  03 00 00 14                                         # FILTER
  00 81 00 50                                         # prefix 129, port 80
  20 01 0d b8  00 00 00 00  00 00 00 00  00 00 00 00    # 2001:db8::
`,
    expect: {
      verdict: "reply",
      result: 6,
      responseHex:
        errHdr("81", "06") +
        MAP_BODY +
        `
  03 00 00 14  00 81 00 50
  20 01 0d b8  00 00 00 00  00 00 00 00  00 00 00 00
`,
    },
  },
  {
    name: "FILTER v4-mapped prefix 129 → MALFORMED_OPTION",
    origin: "codec.md walk step 6 (96..128)",
    hex:
      MAP_REQ +
      MAP_BODY +
      `
  03 00 00 14  00 81 00 00
  00 00 00 00  00 00 00 00  00 00 ff ff  c6 33 64 07    # ::ffff:198.51.100.7
`,
    expect: {
      verdict: "reply",
      result: 6,
      responseHex:
        errHdr("81", "06") +
        MAP_BODY +
        `
  03 00 00 14  00 81 00 00
  00 00 00 00  00 00 00 00  00 00 ff ff  c6 33 64 07
`,
    },
  },
  {
    name: "FILTER v4-mapped prefix 96 → parsed (lower bound)",
    origin: "RFC 6887 §13.3; codec.md walk step 6",
    hex:
      MAP_REQ +
      MAP_BODY +
      `
  03 00 00 14  00 60 00 00                            # prefix 96
  00 00 00 00  00 00 00 00  00 00 ff ff  00 00 00 00    # ::ffff:0.0.0.0/96 (all IPv4)
`,
    expect: { verdict: "parsed", options: 4 },
  },
  {
    name: "FILTER prefix 0 with non-zero v4-mapped address → parsed (clear all)",
    origin: "digest §1.20 decision; codec.md walk step 6",
    hex:
      MAP_REQ +
      MAP_BODY +
      `
  03 00 00 14  00 00 01 bb                            # prefix 0, port 443 (ignored)
  00 00 00 00  00 00 00 00  00 00 ff ff  c6 33 64 07    # ::ffff:198.51.100.7 (ignored)
`,
    expect: { verdict: "parsed", options: 4 },
  },
  {
    name: "IPv6 MAP with FILTER 2001:db8::/32 → parsed",
    origin: "RFC 6887 §13.3; codec.md walk step 6",
    src: "2001:db8::1",
    hex:
      `02 01 00 00` +
      LT3600 +
      C_V6 +
      MAP_BODY +
      `
  03 00 00 14  00 20 00 00                            # prefix 32, port 0
  20 01 0d b8  00 00 00 00  00 00 00 00  00 00 00 00    # 2001:db8::
`,
    expect: { verdict: "parsed", options: 4 },
  },

  // ===================== cross-option rules (codec.md row 14) =====================
  {
    name: "PREFER_FAILURE with lifetime 0 → MALFORMED_OPTION",
    origin: "digest §3.5 item 81; codec.md row 14 rule 2",
    hex: MAP_REQ_LT0 + MAP_BODY_PF + OPT_PF,
    expect: { verdict: "reply", result: 6, responseHex: errHdr("81", "06") + MAP_BODY_PF + OPT_PF },
  },
  {
    name: "FILTER with lifetime 0 → MALFORMED_OPTION",
    origin: "digest §3.5 item 80; codec.md row 14 rule 3",
    hex: MAP_REQ_LT0 + MAP_BODY + OPT_FILTER_V4_120,
    expect: { verdict: "reply", result: 6, responseHex: errHdr("81", "06") + MAP_BODY + OPT_FILTER_V4_120 },
  },
  {
    name: "FILTER prefix 0 with lifetime 0 → MALFORMED_OPTION",
    origin: "codec.md row 14 rule 3",
    hex: MAP_REQ_LT0 + MAP_BODY + OPT_FILTER_CLEAR,
    expect: { verdict: "reply", result: 6, responseHex: errHdr("81", "06") + MAP_BODY + OPT_FILTER_CLEAR },
  },
  {
    name: "PREFER_FAILURE with suggested external port 0 → MALFORMED_OPTION",
    origin: "digest §3.8 item 99; codec.md row 14 rule 4",
    hex: MAP_REQ + MAP_BODY + OPT_PF,
    expect: { verdict: "reply", result: 6, responseHex: errHdr("81", "06") + MAP_BODY + OPT_PF },
  },
  {
    name: "PREFER_FAILURE lifetime 0 and protocol 0 / port 80 → MALFORMED_OPTION (row 14 before 15)",
    origin: "codec.md row 14 before row 15",
    hex: MAP_REQ_LT0 + mapBody("00", "00 50", "1f 90") + OPT_PF,
    expect: {
      verdict: "reply",
      result: 6,
      responseHex: errHdr("81", "06") + mapBody("00", "00 50", "1f 90") + OPT_PF,
    },
  },

  // ===================== opcode rules (codec.md row 15) =====================
  {
    name: "MAP protocol 0 with internal port 80 → MALFORMED_REQUEST",
    origin: "digest §3.4 item 49; codec.md row 15",
    hex: MAP_REQ + mapBody("00", "00 50"),
    expect: { verdict: "reply", result: 3, responseHex: errHdr("81", "03") + mapBody("00", "00 50") },
  },
  {
    name: "MAP delete, protocol 0, port 7 → MALFORMED_REQUEST",
    origin: "digest §3.5 item 74; codec.md row 15",
    hex: MAP_REQ_LT0 + mapBody("00", "00 07"),
    expect: { verdict: "reply", result: 3, responseHex: errHdr("81", "03") + mapBody("00", "00 07") },
  },
  {
    name: "PEER protocol 0 → MALFORMED_REQUEST",
    origin: "digest §3.6 item 88; codec.md row 15",
    hex: PEER_REQ + peerBody("00"),
    expect: { verdict: "reply", result: 3, responseHex: errHdr("82", "03") + peerBody("00") },
  },
  {
    name: "PEER internal port 0 → MALFORMED_REQUEST",
    origin: "digest §3.6 item 88; codec.md row 15",
    hex: PEER_REQ + peerBody("11", "00 00"),
    expect: { verdict: "reply", result: 3, responseHex: errHdr("82", "03") + peerBody("11", "00 00") },
  },
  {
    name: "PEER remote peer port 0 → MALFORMED_REQUEST",
    origin: "digest §3.6 item 88; codec.md row 15",
    hex: PEER_REQ + peerBody("11", "13 88", "00 00"),
    expect: { verdict: "reply", result: 3, responseHex: errHdr("82", "03") + peerBody("11", "13 88", "00 00") },
  },
  {
    name: "PEER remote 127.0.0.1 → MALFORMED_REQUEST",
    origin: "digest §3.6 item 89; codec.md row 15",
    hex: PEER_REQ + peerBody("11", "13 88", "00 35", "00 00 00 00 00 00 00 00 00 00 ff ff 7f 00 00 01"),
    expect: {
      verdict: "reply",
      result: 3,
      responseHex: errHdr("82", "03") + peerBody("11", "13 88", "00 35", "00 00 00 00 00 00 00 00 00 00 ff ff 7f 00 00 01"),
    },
  },
  {
    name: "PEER remote ::ffff:0.0.0.0 → MALFORMED_REQUEST",
    origin: "codec.md row 15 (unspecified)",
    hex: PEER_REQ + peerBody("11", "13 88", "00 35", "00 00 00 00 00 00 00 00 00 00 ff ff 00 00 00 00"),
    expect: {
      verdict: "reply",
      result: 3,
      responseHex: errHdr("82", "03") + peerBody("11", "13 88", "00 35", "00 00 00 00 00 00 00 00 00 00 ff ff 00 00 00 00"),
    },
  },
  {
    name: "PEER remote 239.1.2.3 → MALFORMED_REQUEST",
    origin: "codec.md row 15 (224/4)",
    hex: PEER_REQ + peerBody("11", "13 88", "00 35", "00 00 00 00 00 00 00 00 00 00 ff ff ef 01 02 03"),
    expect: {
      verdict: "reply",
      result: 3,
      responseHex: errHdr("82", "03") + peerBody("11", "13 88", "00 35", "00 00 00 00 00 00 00 00 00 00 ff ff ef 01 02 03"),
    },
  },
  {
    name: "IPv6 PEER remote ff02::1 → MALFORMED_REQUEST",
    origin: "codec.md row 15 (ff00::/8)",
    src: "2001:db8::1",
    hex: `02 02 00 00` + LT3600 + C_V6 + peerBody("11", "13 88", "00 35", "ff 02 00 00 00 00 00 00 00 00 00 00 00 00 00 01"),
    expect: {
      verdict: "reply",
      result: 3,
      responseHex:
        `02 82 00 03` +
        LONG +
        EPOCH +
        `
               00 00 00 00  00 00 00 00  00 00 00 01    # bytes 12–23 copied
` +
        peerBody("11", "13 88", "00 35", "ff 02 00 00 00 00 00 00 00 00 00 00 00 00 00 01"),
    },
  },
  {
    name: "IPv6 PEER remote :: → MALFORMED_REQUEST",
    origin: "codec.md row 15 (unspecified)",
    src: "2001:db8::1",
    hex: `02 02 00 00` + LT3600 + C_V6 + peerBody("11", "13 88", "00 35", "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"),
    expect: {
      verdict: "reply",
      result: 3,
      responseHex:
        `02 82 00 03` +
        LONG +
        EPOCH +
        `
               00 00 00 00  00 00 00 00  00 00 00 01
` +
        peerBody("11", "13 88", "00 35", "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"),
    },
  },
  {
    name: "IPv6 PEER remote ::1 → MALFORMED_REQUEST",
    origin: "codec.md row 15 (loopback)",
    src: "2001:db8::1",
    hex: `02 02 00 00` + LT3600 + C_V6 + peerBody("11", "13 88", "00 35", "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01"),
    expect: {
      verdict: "reply",
      result: 3,
      responseHex:
        `02 82 00 03` +
        LONG +
        EPOCH +
        `
               00 00 00 00  00 00 00 00  00 00 00 01
` +
        peerBody("11", "13 88", "00 35", "00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01"),
    },
  },

  // ===================== NAT-PMP (digest §1.24.2, §3.12) =====================
  {
    name: "NAT-PMP external address request 00 00",
    origin: "digest §3.12 item 129; RFC 6886 §3.2; codec.md NAT-PMP",
    hex: "00 00",
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "NAT-PMP external address request with trailing bytes (12 bytes)",
    origin: 'codec.md NAT-PMP ("opcode 0: PARSED, any length ≥ 2")',
    hex: "00 00 00 00  00 00 00 00  00 00 00 00",
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "NAT-PMP map UDP 8080 → 8080, lifetime 7200",
    origin: "digest §3.12 item 130; RFC 6886 §3.3",
    hex: `
  00 01 00 00                                         # version 0, opcode 1 (UDP), reserved
  1f 90 1f 90                                         # internal port 8080, suggested external 8080
  00 00 1c 20                                         # requested lifetime 7200
`,
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "NAT-PMP map TCP 22 → 2222, lifetime 3600",
    origin: "RFC 6886 §3.3",
    hex: `
  00 02 00 00                                         # version 0, opcode 2 (TCP)
  00 16 08 ae                                         # internal 22, suggested 2222
  00 00 0e 10                                         # lifetime 3600
`,
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "NAT-PMP delete-all TCP (port 0, lifetime 0)",
    origin: "digest §3.12 item 135; RFC 6886 §3.4",
    hex: "00 02 00 00  00 00 00 00  00 00 00 00",
    expect: { verdict: "parsed", options: 0 },
  },
  {
    name: "NAT-PMP map request of 8 bytes → NATPMP_SHORT",
    origin: "codec.md NAT-PMP (len < 12)",
    hex: "00 01 00 00  1f 90 1f 90",
    expect: { verdict: "drop", dropReason: 6 },
  },
  {
    name: "NAT-PMP map request of 11 bytes → NATPMP_SHORT",
    origin: "codec.md NAT-PMP (len < 12)",
    hex: "00 02 00 00  1f 90 1f 90  00 00 1c",
    expect: { verdict: "drop", dropReason: 6 },
  },
  {
    name: "NAT-PMP opcode 7 → request echoed with 0x87 and result 5",
    origin: "digest §3.12 item 132; RFC 6886 §3.5; codec.md NAT-PMP",
    hex: "00 07 00 00  de ad be ef",
    expect: {
      verdict: "reply",
      result: 5,
      responseHex: `
  00 87 00 05                                         # version 0, opcode 7|0x80, result 5 (16 bit)
  de ad be ef                                         # rest of the request unchanged
`,
    },
  },
  {
    name: "NAT-PMP opcode 3 with non-zero reserved → result 5 overwrites bytes 2–3",
    origin: "RFC 6886 §3.5; codec.md NAT-PMP",
    hex: "00 03 ab cd  12 34 56 78  9a bc de f0",
    expect: { verdict: "reply", result: 5, responseHex: "00 83 00 05  12 34 56 78  9a bc de f0" },
  },
  {
    name: "NAT-PMP opcode 7, 2 bytes → 4-byte reply (decision: zero-extended to hold the result)",
    origin: "codec.md NAT-PMP; reference decision D2",
    hex: "00 07",
    expect: { verdict: "reply", result: 5, responseHex: "00 87 00 05" },
  },
  {
    name: "NAT-PMP opcode 130 (a response) → ignored",
    origin: "digest §3.12 item 131; RFC 6886 §3.5; codec.md row 3",
    hex: "00 82 00 00  11 22 33 44  1f 90 1f 90  00 00 1c 20",
    expect: { verdict: "drop", dropReason: 2 },
  },
  {
    name: "NAT-PMP overloaded → OVERLOAD drop",
    origin: "codec.md NAT-PMP",
    overloaded: true,
    hex: "00 00",
    expect: { verdict: "drop", dropReason: 5 },
  },
  {
    name: "NAT-PMP from THIRD_PARTY-only ingress → INTERFACE",
    origin: "digest §3.12 item 140; codec.md NAT-PMP",
    ingress: 2,
    hex: "00 01 00 00  1f 90 1f 90  00 00 1c 20",
    expect: { verdict: "drop", dropReason: 4 },
  },
];
