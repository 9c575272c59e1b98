// What the dataplane is told: the forwarding state of external keys, from the engine's
// portable records (PREC_*, the journal's format). A record that forwards becomes a
// `map` operation; the end of forwarding an `unmap` of what was installed.
import * as W from "../wire.generated.js";
import { formatAddress16 } from "../net/address.js";

export interface Endpoint {
  address: string;
  port: number;
}

/** A remote prefix (and port, 0 = any) allowed to reach a mapping [RFC 6887 §13.3]. */
export interface AllowedRemote {
  address: string;
  /** Prefix length in the address's own family (a v4-mapped /120 is an IPv4 /24). */
  prefixLength: number;
  port: number;
}

/** Forwarding of one mapping: inbound DNAT (MAP, static) and outbound SNAT consistency. */
export interface Forwarding {
  protocol: number;
  family: 4 | 6;
  external: Endpoint;
  internal: Endpoint;
  inbound: boolean;
  outbound: boolean;
  /** Empty: every remote may reach the mapping. */
  filters: AllowedRemote[];
}

export type DataplaneOp = { op: "map"; mapping: Forwarding } | { op: "unmap"; mapping: Forwarding };

/** One external key's latest state: what it forwards now (undefined: nothing — held, or ended). */
export interface KeyState {
  key: string;
  protocol: number;
  external: Endpoint;
  forwarding?: Forwarding;
}

const isV4Mapped = (b: Uint8Array, at: number) => b.subarray(at, at + 10).every((x) => x === 0) && b[at + 10] === 0xff && b[at + 11] === 0xff;

/** The key of an external address:port for a protocol. */
export const externalKey = (protocol: number, e: Endpoint) => `${protocol}/${e.address}/${e.port}`;

/** Decodes portable records (whole records, as the engine writes them). */
export function decodeKeyStates(bytes: Uint8Array): KeyState[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: KeyState[] = [];
  for (let at = 0; at + W.PREC_HEADER_SIZE <= bytes.length; ) {
    const filters = view.getUint8(at + W.PREC_FILTER_COUNT);
    const peers = view.getUint8(at + W.PREC_PEER_COUNT);
    const size =
      W.PREC_HEADER_SIZE +
      filters * W.PREC_FILTER_SIZE +
      peers * W.PREC_PEER_SIZE +
      view.getUint8(at + W.PREC_DESCRIPTION_LENGTH) +
      view.getUint8(at + W.PREC_REALM_ID_LENGTH) +
      (view.getUint8(at + W.PREC_REQUESTER) ? W.PREC_REQUESTER_SIZE : 0);
    if (at + size > bytes.length) throw new RangeError(`record at ${at} runs past the end`);
    const protocol = view.getUint8(at + W.PREC_PROTOCOL);
    const external = {
      address: formatAddress16(bytes.subarray(at + W.PREC_EXTERNAL_ADDR, at + W.PREC_EXTERNAL_ADDR + 16)),
      port: view.getUint16(at + W.PREC_EXTERNAL_PORT, true),
    };
    const state: KeyState = { key: externalKey(protocol, external), protocol, external };
    const flags = view.getUint8(at + W.PREC_FLAGS);
    if (view.getUint8(at + W.PREC_KIND) === W.PREC_UPSERT && (flags & W.MAPF_HELD) === 0) {
      const allowed: AllowedRemote[] = [];
      for (let k = 0; k < filters; k++) {
        const f = at + W.PREC_HEADER_SIZE + k * W.PREC_FILTER_SIZE;
        const address = f + W.PREC_FILTER_ADDR;
        const length = view.getUint8(f + W.PREC_FILTER_PREFIX);
        allowed.push({
          address: formatAddress16(bytes.subarray(address, address + 16)),
          prefixLength: isV4Mapped(bytes, address) ? Math.max(0, length - 96) : length,
          port: view.getUint16(f + W.PREC_FILTER_PORT, true),
        });
      }
      state.forwarding = {
        protocol,
        family: view.getUint8(at + W.PREC_FAMILY) ? 6 : 4,
        external,
        internal: {
          address: formatAddress16(bytes.subarray(at + W.PREC_INTERNAL_ADDR, at + W.PREC_INTERNAL_ADDR + 16)),
          port: view.getUint16(at + W.PREC_INTERNAL_PORT, true),
        },
        inbound: (flags & (W.MAPF_INBOUND | W.MAPF_STATIC)) !== 0,
        outbound: true, // a live mapping's external endpoint is also its internal endpoint's outbound one
        filters: allowed.sort((a, b) => `${a.address}/${a.prefixLength}:${a.port}`.localeCompare(`${b.address}/${b.prefixLength}:${b.port}`)),
      };
    }
    out.push(state);
    at += size;
  }
  return out;
}

/** Whether two forwardings install the same things. */
export function sameForwarding(a: Forwarding, b: Forwarding): boolean {
  return (
    a.internal.address === b.internal.address &&
    a.internal.port === b.internal.port &&
    a.inbound === b.inbound &&
    a.outbound === b.outbound &&
    a.filters.length === b.filters.length &&
    a.filters.every((f, i) => f.address === b.filters[i].address && f.prefixLength === b.filters[i].prefixLength && f.port === b.filters[i].port)
  );
}
