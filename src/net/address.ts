// 16-byte PCP address form [RFC 6887 §5]: IPv6 as is, IPv4 as v4-mapped ::ffff:a.b.c.d.
import { isIPv4, isIPv6 } from "node:net";

export type Address16 = Uint8Array;

/** Parses an IPv4 or IPv6 literal into the 16-byte form; throws on anything else. */
export function toAddress16(text: string): Address16 {
  const out = new Uint8Array(16);
  const bare = text.startsWith("::ffff:") && isIPv4(text.slice(7)) ? text.slice(7) : text;
  if (isIPv4(bare)) {
    out[10] = 0xff;
    out[11] = 0xff;
    bare.split(".").forEach((octet, i) => {
      out[12 + i] = Number(octet);
    });
    return out;
  }
  if (!isIPv6(text)) throw new TypeError(`not an IP address: ${JSON.stringify(text)}`);
  let body = text.split("%")[0];
  // An embedded IPv4 tail (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) becomes two hextets.
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(body);
  if (tail) {
    const o = tail[1].split(".").map(Number);
    body = body.slice(0, -tail[1].length) + ((o[0] << 8) | o[1]).toString(16) + ":" + ((o[2] << 8) | o[3]).toString(16);
  }
  const [head, rest] = body.includes("::") ? body.split("::") : [body, undefined];
  const left = head ? head.split(":") : [];
  const right = rest ? rest.split(":") : [];
  const groups = rest === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[2 * i] = v >> 8;
    out[2 * i + 1] = v & 0xff;
  });
  return out;
}

export function isV4Mapped(a: Address16): boolean {
  for (let i = 0; i < 10; i++) if (a[i] !== 0) return false;
  return a[10] === 0xff && a[11] === 0xff;
}

/** Formats the 16-byte form: dotted quad for v4-mapped, RFC 5952 text otherwise. */
export function formatAddress16(a: Address16): string {
  if (isV4Mapped(a)) return `${a[12]}.${a[13]}.${a[14]}.${a[15]}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((a[i] << 8) | a[i + 1]);
  // Longest run (≥ 2) of zero groups becomes "::" [RFC 5952 §4.2].
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(":");
  return `${hex.slice(0, best).join(":")}::${hex.slice(best + bestLen).join(":")}`;
}
