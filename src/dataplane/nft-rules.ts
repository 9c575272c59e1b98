// What the two tables of the nftables backend have in common, written once and parameterised
// by the nft family: `ip` (./nftables.ts) or `ip6` (./nftables6.ts). The family's name is
// also the keyword of its address matches (`ip saddr`, `ip6 saddr`), so one parameter gives
// the element types, the activity set and its rule, the NAT maps and chains, the FILTER
// sets, and the element statements of a mapping. Which of these a table holds, in which
// order, and which set a rule looks up stay with each family's own module.
//
// Protocols are written as numbers (`meta l4proto 6`, not `tcp`): nft resolves a protocol
// name through /etc/protocols (getprotobyname; Debian's netbase), which a minimal host may
// lack — `ipv6-icmp` then fails the whole ruleset ("Could not resolve protocol name"), and
// which names nft knows by itself differs between its versions. A number needs no lookup.
import * as W from "../wire.generated.js";
import type { Endpoint, Forwarding } from "./ops.js";

export type NftFamily = "ip" | "ip6";

/** Idle timeouts (seconds) of the activity set. */
export interface ActivityTimeouts {
  udpIdle: number;
  tcpIdle: number;
}

/** ICMPv6's IANA protocol number (RFC 4443 §1; not a PCP wire value, so not in wire.ts). */
export const PROTO_ICMPV6 = 58;

const addressType = (family: NftFamily) => (family === "ip" ? "ipv4_addr" : "ipv6_addr");
/** The type of a `proto . addr . port` key. */
const endpointType = (family: NftFamily) => `inet_proto . ${addressType(family)} . inet_service`;

/** A set of `proto . addr . port` keys. */
export const endpointSet = (family: NftFamily, name: string) => `  set ${name} {
    type ${endpointType(family)}
  }
`;

/**
 * The activity set and the forward-hook rule that keeps it: every packet whose source is an
 * endpoint in `mapped` refreshes its element with the protocol's idle timeout (empty without
 * tracking).
 */
export function activityDefinition(family: NftFamily, mapped: string, activity?: ActivityTimeouts): string {
  if (!activity) return "";
  const key = `meta l4proto . ${family} saddr . th sport`;
  return `  set active {
    type ${endpointType(family)}
    flags dynamic, timeout
    size 16777216
  }
  chain activity {
    type filter hook forward priority filter; policy accept;
    meta l4proto ${W.PROTO_TCP} ${key} @${mapped} update @active { ${key} timeout ${activity.tcpIdle}s }
    meta l4proto != ${W.PROTO_TCP} ${key} @${mapped} update @active { ${key} timeout ${activity.udpIdle}s }
  }
`;
}

/** The maps external → internal (DNAT) and internal → external (SNAT) endpoint. */
export const natMaps = (family: NftFamily) => `  map inbound {
    type ${endpointType(family)} : ${addressType(family)} . inet_service
  }
  map outbound {
    type ${endpointType(family)} : ${addressType(family)} . inet_service
  }
`;

/** The endpoints with FILTERs and what their FILTERs allow (remote prefix . remote ports). */
export const filterSets = (family: NftFamily) => `${endpointSet(family, "filtered")}  set allowed {
    type ${endpointType(family)} . ${addressType(family)} . inet_service
    flags interval
  }
`;

/** The chains that translate through the NAT maps, and the table's end. */
export const natChains = (family: NftFamily) => `  chain dnat_in {
    type nat hook prerouting priority dstnat; policy accept;
    dnat ${family} to meta l4proto . ${family} daddr . th dport map @inbound
  }
  chain snat_out {
    type nat hook postrouting priority srcnat; policy accept;
    snat ${family} to meta l4proto . ${family} saddr . th sport map @outbound
  }
}
`;

/** The element statements of one mapping in one table (`op` adds or deletes them). */
export class ElementStatements {
  readonly out: string[] = [];
  /** `proto . external addr . port` and `proto . internal addr . port`. */
  readonly ext: string;
  readonly int: string;

  constructor(
    private readonly family: NftFamily,
    private readonly table: string,
    private readonly op: "add" | "delete",
    private readonly f: Forwarding,
  ) {
    this.ext = `${f.protocol} . ${f.external.address} . ${f.external.port}`;
    this.int = `${f.protocol} . ${f.internal.address} . ${f.internal.port}`;
  }

  /** An element of set or map `name`; a map's value is written only when adding. */
  element(name: string, key: string, value?: Endpoint): this {
    const mapsTo = value && this.op === "add" ? ` : ${value.address} . ${value.port}` : "";
    this.out.push(`${this.op} element ${this.family} ${this.table} ${name} { ${key}${mapsTo} }`);
    return this;
  }

  /** DNAT: the external endpoint to the internal one. */
  inbound(): this {
    return this.element("inbound", this.ext, this.f.internal);
  }

  /** SNAT: outbound flows of the internal endpoint keep its external one. */
  outbound(): this {
    return this.element("outbound", this.int, this.f.external);
  }

  /** `key` is FILTERed, and the remotes (prefix, port or all ports) its FILTERs allow. */
  filters(key: string): this {
    const allowed = this.f.filters.map((r) => `${key} . ${r.address}/${r.prefixLength} . ${r.port === 0 ? "0-65535" : r.port}`);
    return this.element("filtered", key).element("allowed", allowed.join(", "));
  }
}
