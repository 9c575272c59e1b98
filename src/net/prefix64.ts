// PREFIX64 options [RFC 7225 §4.1] from the configured NAT64 prefixes, encoded once:
//
//   0  Prefix64 Length (u16, octets: 4, 5, 6, 7, 8 or 12 — /32 … /96, RFC 6052 §2.2)
//   2  Prefix64 (L octets), then the Suffix (12 − L octets)
//  14  IPv4 Prefix Count (u16) and per prefix its length (u16, bits) and address — only
//      when IPv4 prefixes are configured for this Prefix64
//
// Options with IPv4 lists come first (the first one without a list is the synthesis
// prefix, RFC 7225 §4.2). Each option is padded to 4 bytes.
import { isIPv4, isIPv6 } from "node:net";
import * as W from "../wire.generated.js";
import { toAddress16 } from "./address.js";
import { parsePrefix } from "./cidr.js";

export interface Prefix64Config {
  /** An IPv6 prefix of length 32, 40, 48, 56, 64 or 96 (e.g. 64:ff9b::/96). */
  prefix: string;
  /** The address whose bytes after the prefix (up to byte 12) are the suffix; default all zeros. */
  suffix?: string;
  /** IPv4 prefixes this Prefix64 serves (RFC 7225 §4.1 IPv4 list); empty: all. */
  ipv4?: string[];
}

const LENGTHS = new Set([32, 40, 48, 56, 64, 96]);

/** Throws a TypeError naming what is wrong with `c`. */
function encodeOne(c: Prefix64Config): Uint8Array {
  if (!isIPv6(c.prefix.split("/")[0])) throw new TypeError(`${c.prefix}: not an IPv6 prefix`);
  const p = parsePrefix(c.prefix);
  if (!LENGTHS.has(p.bits)) throw new TypeError(`${c.prefix}: a NAT64 prefix is /32, /40, /48, /56, /64 or /96 (RFC 6052)`);
  const octets = p.bits / 8;
  const suffix = c.suffix === undefined ? new Uint8Array(16) : toAddress16(c.suffix);
  const v4 = (c.ipv4 ?? []).map((text) => {
    if (!isIPv4(text.split("/")[0])) throw new TypeError(`${text}: not an IPv4 prefix`);
    return parsePrefix(text);
  });
  const length = W.PREFIX64_BASE_SIZE + (v4.length > 0 ? 2 + v4.length * W.PREFIX64_IPV4_ENTRY_SIZE : 0);
  const out = new Uint8Array(W.OPT_HEADER_SIZE + ((length + 3) & ~3));
  const view = new DataView(out.buffer);
  out[0] = W.OPTION_PREFIX64;
  view.setUint16(W.OPT_LENGTH, length);
  const d = W.OPT_HEADER_SIZE;
  view.setUint16(d, octets);
  out.set(p.network.subarray(0, octets), d + 2);
  out.set(suffix.subarray(octets, 12), d + 2 + octets);
  if (v4.length > 0) {
    view.setUint16(d + W.PREFIX64_BASE_SIZE, v4.length);
    v4.forEach((q, i) => {
      const at = d + W.PREFIX64_BASE_SIZE + 2 + i * W.PREFIX64_IPV4_ENTRY_SIZE;
      view.setUint16(at, q.bits - 96);
      out.set(q.network.subarray(12, 16), at + 2);
    });
  }
  return out;
}

/** The options, in the order RFC 7225 §4.2 asks for, concatenated. */
export function encodePrefix64Options(list: Prefix64Config[]): Uint8Array {
  const ordered = [...list.filter((c) => (c.ipv4 ?? []).length > 0), ...list.filter((c) => (c.ipv4 ?? []).length === 0)];
  const parts = ordered.map(encodeOne);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  if (out.length > W.PREFIX64_OPTIONS_CAP) throw new TypeError(`${out.length} bytes of PREFIX64 options, at most ${W.PREFIX64_OPTIONS_CAP}`);
  return out;
}
