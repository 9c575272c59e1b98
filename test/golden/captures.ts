/**
 * Golden NAT-PMP request datagrams captured from real client implementations.
 *
 * How these were captured (2026-11-24, Debian 12 "bookworm", Node v20.20.2): a scratch Node
 * script bound a UDP socket on 127.0.0.1:5351, logged every datagram it received as hex, and
 * answered with well-formed RFC 6886 §3 replies (result 0, address 203.0.113.7) so each
 * client ran through its whole sequence. All traffic was to 127.0.0.1 only. The bytes below
 * are exactly what arrived on the socket; nothing was synthesised.
 *
 * One entry per distinct request datagram per client. Identical bytes sent again (natpmpc's
 * public-address request, which opens every natpmpc invocation, and natpmpc retransmissions)
 * are not repeated; see the notes.
 *
 * `hex` is an annotated string: each line is hex digits followed by an optional `# comment`
 * running to end of line. Use `captureBytes()` to turn it into the raw datagram.
 *
 * No PCP (version 2) client capture is included: none was readily available (Debian 12 has
 * no PCP client package; `apt-cache search` for "port control" finds only Performance
 * Co-Pilot; npm names `pcp-client`, `node-pcp`, `port-control-protocol` do not exist, and
 * `@achingbrain/nat-port-mapper` 4.0.5 covers UPnP and NAT-PMP only).
 */

export interface Capture {
  /** Unique, stable identifier for the datagram. */
  name: string;
  /** Client implementation with exact package version. */
  client: string;
  /** Command line or API call that produced the datagram. */
  command: string;
  /** Request bytes: lowercase hex, whitespace-separated, `#` comments run to end of line. */
  hex: string;
  note?: string;
}

const NATPMPC = "natpmpc (Debian libnatpmp 20150609-7.1+b2, bookworm amd64)";
const NODE_NAT_PMP = "nat-pmp 1.0.0 (npm, TooTallNate/node-nat-pmp) on Node v20.20.2";

export const captures: Capture[] = [
  // ---------------------------------------------------------------- natpmpc (libnatpmp)
  {
    name: "natpmpc-public-address",
    client: NATPMPC,
    command: "natpmpc -g 127.0.0.1",
    hex: `
      00        # version 0
      00        # opcode 0 = determine external address
    `,
    note:
      "Exactly 2 bytes, no reserved field. natpmpc sends this same datagram first on EVERY " +
      "invocation, including each `-a` (mapping) run, and only sends the mapping request after " +
      "a reply to it. With no reply it retransmits the identical 2 bytes from the same source " +
      "port at t = 0, 250, 750, 1750, 3750, 7750 ms (250 ms initial timeout, doubling; " +
      "observed until killed at 10 s). Source port is ephemeral (not 5350).",
  },
  {
    name: "natpmpc-map-tcp-8080-8080-3600",
    client: NATPMPC,
    command: "natpmpc -g 127.0.0.1 -a 8080 8080 tcp 3600",
    hex: `
      00        # version 0
      02        # opcode 2 = map TCP
      0000      # reserved
      1f90      # internal port 8080
      1f90      # suggested external port 8080
      00000e10  # requested lifetime 3600 s
    `,
    note: "Preceded by natpmpc-public-address (00 00) on the same source port.",
  },
  {
    name: "natpmpc-map-udp-internal0-5000-7200",
    client: NATPMPC,
    command: "natpmpc -g 127.0.0.1 -a 5000 0 udp 7200",
    hex: `
      00        # version 0
      01        # opcode 1 = map UDP
      0000      # reserved
      0000      # internal port 0
      1388      # suggested external port 5000
      00001c20  # requested lifetime 7200 s
    `,
    note:
      "natpmpc argument order is `-a <public port> <private port>`, so this asks for internal " +
      "port 0 with a non-zero lifetime. RFC 6886 gives internal port 0 a meaning only for " +
      "delete-all (lifetime 0); the server must decide what to do with this (the capture " +
      'server answered success and natpmpc printed "Mapped public port 5000 ... local port 0").',
  },
  {
    name: "natpmpc-delete-tcp-8080",
    client: NATPMPC,
    command: "natpmpc -g 127.0.0.1 -a 8080 8080 tcp 0",
    hex: `
      00        # version 0
      02        # opcode 2 = map TCP
      0000      # reserved
      1f90      # internal port 8080
      1f90      # suggested external port 8080 (RFC 6886 §3.4: MUST be 0 on delete)
      00000000  # requested lifetime 0 = delete
    `,
    note:
      "Spec deviation: the deletion carries a NON-ZERO suggested external port. RFC 6886 §3.4 " +
      "says it MUST be zero from the client and MUST be ignored by the gateway, so the server " +
      "must key deletion on (internal port, protocol) only.",
  },
  {
    name: "natpmpc-delete-all-tcp",
    client: NATPMPC,
    command: "natpmpc -g 127.0.0.1 -a 0 0 tcp 0",
    hex: `
      00        # version 0
      02        # opcode 2 = map TCP
      0000      # reserved
      0000      # internal port 0 (all)
      0000      # suggested external port 0
      00000000  # requested lifetime 0 = delete all TCP mappings (RFC 6886 §3.4)
    `,
  },
  {
    name: "natpmpc-delete-all-udp",
    client: NATPMPC,
    command: "natpmpc -g 127.0.0.1 -a 0 0 udp 0",
    hex: `
      00        # version 0
      01        # opcode 1 = map UDP
      0000      # reserved
      0000      # internal port 0 (all)
      0000      # suggested external port 0
      00000000  # requested lifetime 0 = delete all UDP mappings (RFC 6886 §3.4)
    `,
  },
  {
    name: "natpmpc-map-udp-9000-default-lifetime",
    client: NATPMPC,
    command: "natpmpc -g 127.0.0.1 -a 9000 9000 udp",
    hex: `
      00        # version 0
      01        # opcode 1 = map UDP
      0000      # reserved
      2328      # internal port 9000
      2328      # suggested external port 9000
      00000e10  # requested lifetime 3600 s (natpmpc default when omitted)
    `,
  },

  // ---------------------------------------------------------------- npm nat-pmp
  {
    name: "nat-pmp-external-ip",
    client: NODE_NAT_PMP,
    command: "require('nat-pmp').connect('127.0.0.1').externalIp(cb)",
    hex: `
      00        # version 0
      00        # opcode 0 = determine external address
    `,
    note:
      "Sent from source port 5350: the client binds its socket to port 5350 (all interfaces) " +
      "rather than an ephemeral port. It never retransmits (one datagram, then waits forever) " +
      "and handles one request at a time, matching replies by opcode only. It asserts that a " +
      "success reply is exactly 12 bytes (address) / 16 bytes (map): longer replies throw.",
  },
  {
    name: "nat-pmp-map-tcp-22-2222-3600",
    client: NODE_NAT_PMP,
    command: "client.portMapping({ type: 'tcp', private: 22, public: 2222, ttl: 3600 }, cb)",
    hex: `
      00        # version 0
      02        # opcode 2 = map TCP
      0000      # reserved
      0016      # internal port 22
      08ae      # suggested external port 2222
      00000e10  # requested lifetime 3600 s
    `,
  },
  {
    name: "nat-pmp-map-udp-5000-5000-7200",
    client: NODE_NAT_PMP,
    command: "client.portMapping({ type: 'udp', private: 5000, public: 5000, ttl: 7200 }, cb)",
    hex: `
      00        # version 0
      01        # opcode 1 = map UDP
      0000      # reserved
      1388      # internal port 5000
      1388      # suggested external port 5000
      00001c20  # requested lifetime 7200 s
    `,
  },
  {
    name: "nat-pmp-map-tcp-8080-defaults",
    client: NODE_NAT_PMP,
    command: "client.portMapping({ private: 8080 }, cb)",
    hex: `
      00        # version 0
      02        # opcode 2 = map TCP (type defaults to tcp)
      0000      # reserved
      1f90      # internal port 8080
      0000      # suggested external port 0 = no preference
      00001c20  # requested lifetime 7200 s (library default when ttl omitted)
    `,
  },
  {
    name: "nat-pmp-unmap-tcp-22-2222",
    client: NODE_NAT_PMP,
    command: "client.portUnmapping({ type: 'tcp', private: 22, public: 2222 }, cb)",
    hex: `
      00        # version 0
      02        # opcode 2 = map TCP
      0000      # reserved
      0016      # internal port 22
      08ae      # suggested external port 2222 (RFC 6886 §3.4: MUST be 0 on delete)
      00000000  # requested lifetime 0 = delete
    `,
    note:
      "Spec deviation: portUnmapping() only forces ttl = 0 and keeps `public`, so the " +
      "deletion carries a non-zero suggested external port (RFC 6886 §3.4 says MUST be 0; the " +
      "gateway MUST ignore it).",
  },
  {
    name: "nat-pmp-unmap-udp-5000-5000",
    client: NODE_NAT_PMP,
    command: "client.portUnmapping({ type: 'udp', private: 5000, public: 5000 }, cb)",
    hex: `
      00        # version 0
      01        # opcode 1 = map UDP
      0000      # reserved
      1388      # internal port 5000
      1388      # suggested external port 5000 (RFC 6886 §3.4: MUST be 0 on delete)
      00000000  # requested lifetime 0 = delete
    `,
    note: "Same non-zero suggested external port on delete as nat-pmp-unmap-tcp-22-2222.",
  },
];

/** Raw datagram bytes of a capture: `#` comments and whitespace stripped, hex decoded. */
export function captureBytes(c: Capture): Uint8Array {
  const digits = c.hex
    .split("\n")
    .map((line) => line.replace(/#.*$/, ""))
    .join("")
    .replace(/\s+/g, "");
  if (!/^([0-9a-f]{2})*$/.test(digits)) {
    throw new Error(`capture ${c.name}: hex is not lowercase whole bytes`);
  }
  const out = new Uint8Array(digits.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(digits.slice(i * 2, i * 2 + 2), 16);
  return out;
}
