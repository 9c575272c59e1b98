// IPv4/IPv6 prefixes in the 16-byte PCP form, for source classification and pool ranges.
import { isIP } from "node:net";
import { formatAddress16, toAddress16, type Address16 } from "./address.js";

export interface Prefix {
  /** Network address in the 16-byte form. */
  network: Address16;
  /** Prefix length in bits of the 16-byte form (IPv4 /n is 96 + n). */
  bits: number;
  text: string;
}

/** Parses "a.b.c.d/n", "x::/n" or a bare address (a host prefix); throws a TypeError naming the text. */
export function parsePrefix(text: string): Prefix {
  const [address, length, extra] = text.split("/");
  const family = isIP(address);
  if (family === 0 || extra !== undefined) throw new TypeError(`not an address or prefix: ${JSON.stringify(text)}`);
  const max = family === 4 ? 32 : 128;
  const n = length === undefined ? max : Number(length);
  if (!/^\d+$/.test(length ?? String(max)) || n > max) throw new TypeError(`bad prefix length in ${JSON.stringify(text)} (0..${max})`);
  const bits = family === 4 ? 96 + n : n;
  const network = toAddress16(address);
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - 8 * i));
    network[i] &= (0xff << (8 - keep)) & 0xff;
  }
  return { network, bits, text };
}

export function prefixContains(p: Prefix, address: Address16): boolean {
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, p.bits - 8 * i));
    if (keep === 0) return true;
    const mask = (0xff << (8 - keep)) & 0xff;
    if ((address[i] & mask) !== p.network[i]) return false;
  }
  return true;
}

/** Every address of a prefix, at most `limit` of them (pool ranges). */
export function expandPrefix(p: Prefix, limit: number): string[] {
  const hostBits = 128 - p.bits;
  if (hostBits > 30 || 2 ** hostBits > limit) throw new RangeError(`${p.text} has more than ${limit} addresses`);
  const out: string[] = [];
  const base = p.network;
  for (let k = 0; k < 2 ** hostBits; k++) {
    const a = base.slice();
    let carry = k;
    for (let i = 15; i >= 0 && carry > 0; i--) {
      const v = a[i] + (carry & 0xff);
      a[i] = v & 0xff;
      carry = (carry >>> 8) + (v >> 8);
    }
    out.push(formatAddress16(a));
  }
  return out;
}
