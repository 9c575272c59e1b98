// nftables backend, IPv6 half: a table `ip6 <table>` (the same name in family ip6) that is
// a firewall for the IPv6 subscribers first, and a translator only where a mapping's
// external endpoint differs from its internal one:
//
//   pinholes  set  proto . internal addr . port            inbound allowed (MAP, static)
//   filtered  set  proto . internal addr . port            pinholes with FILTERs
//   allowed   set  proto . internal . port . remote prefix . remote ports   what FILTERs admit
//   inbound   map  proto . external addr . port → internal addr . port      (translated only)
//   outbound  map  proto . internal addr . port → external addr . port      (translated only)
//   active    set  proto . internal addr . port            (activity tracking, as for IPv4)
//
// The forward chain lets through what belongs to a connection already (conntrack), what is
// not addressed to a subscriber prefix (`subscribers`, from the configuration's IPv6
// subscriber prefixes), ICMPv6 (protocol 58), and what a pinhole opens — for a FILTERed
// pinhole only from the remotes its FILTERs allow [RFC 6887 §13.3]; every other packet to a
// subscriber is dropped. Pinholes are keyed by the internal endpoint, where the packet is addressed after
// any translation, so one rule serves both the untranslated (firewall) and translated case.
// The parts both families share (types, activity, NAT maps and chains, FILTER sets, element
// statements) are built by ./nft-rules.ts.
import type { Forwarding } from "./ops.js";
import { activityDefinition, ElementStatements, endpointSet, filterSets, natChains, natMaps, PROTO_ICMPV6, type ActivityTimeouts } from "./nft-rules.js";

export function tableDefinition6(table: string, subscribers: string[], activity?: ActivityTimeouts): string {
  return `table ip6 ${table} {
  set subscribers {
    type ipv6_addr
    flags interval
${subscribers.length > 0 ? `    elements = { ${subscribers.join(", ")} }\n` : ""}  }
${endpointSet("ip6", "mapped")}${endpointSet("ip6", "pinholes")}${filterSets("ip6")}${natMaps("ip6")}${activityDefinition("ip6", "mapped", activity)}  chain firewall {
    type filter hook forward priority filter - 5; policy accept;
    ct state established,related accept
    ip6 daddr != @subscribers accept
    meta l4proto ${PROTO_ICMPV6} accept
    meta l4proto . ip6 daddr . th dport @filtered meta l4proto . ip6 daddr . th dport . ip6 saddr . th sport @allowed accept
    meta l4proto . ip6 daddr . th dport @pinholes meta l4proto . ip6 daddr . th dport != @filtered accept
    ip6 saddr @subscribers accept
    counter drop
  }
${natChains("ip6")}`;
}

const sameEndpoint = (f: Forwarding) => f.external.address === f.internal.address && f.external.port === f.internal.port;

/** The statements adding (or deleting) what one IPv6 mapping installs. */
export function mappingStatements6(table: string, op: "add" | "delete", f: Forwarding): string[] {
  const s = new ElementStatements("ip6", table, op, f);
  const translated = !sameEndpoint(f);
  s.element("mapped", s.int);
  if (f.inbound) {
    s.element("pinholes", s.int);
    if (translated) s.inbound();
    if (f.filters.length > 0) s.filters(s.int);
  }
  if (f.outbound && translated) s.outbound();
  return s.out;
}
