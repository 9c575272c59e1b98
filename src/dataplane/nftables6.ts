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
// subscriber prefixes), ICMPv6, and what a pinhole opens — for a FILTERed pinhole only from
// the remotes its FILTERs allow [RFC 6887 §13.3]; every other packet to a subscriber is
// dropped. Pinholes are keyed by the internal endpoint, where the packet is addressed after
// any translation, so one rule serves both the untranslated (firewall) and translated case.
import type { Forwarding } from "./ops.js";
import type { NftOptions } from "./nftables.js";

const ACTIVITY_KEY = "meta l4proto . ip6 saddr . th sport";

export function tableDefinition6(table: string, subscribers: string[], activity?: NftOptions["activity"]): string {
  const tracking = activity
    ? `  set active {
    type inet_proto . ipv6_addr . inet_service
    flags dynamic, timeout
    size 16777216
  }
  chain activity {
    type filter hook forward priority filter; policy accept;
    meta l4proto tcp ${ACTIVITY_KEY} @mapped update @active { ${ACTIVITY_KEY} timeout ${activity.tcpIdle}s }
    meta l4proto != tcp ${ACTIVITY_KEY} @mapped update @active { ${ACTIVITY_KEY} timeout ${activity.udpIdle}s }
  }
`
    : "";
  return `table ip6 ${table} {
  set subscribers {
    type ipv6_addr
    flags interval
${subscribers.length > 0 ? `    elements = { ${subscribers.join(", ")} }\n` : ""}  }
  set mapped {
    type inet_proto . ipv6_addr . inet_service
  }
  set pinholes {
    type inet_proto . ipv6_addr . inet_service
  }
  set filtered {
    type inet_proto . ipv6_addr . inet_service
  }
  set allowed {
    type inet_proto . ipv6_addr . inet_service . ipv6_addr . inet_service
    flags interval
  }
  map inbound {
    type inet_proto . ipv6_addr . inet_service : ipv6_addr . inet_service
  }
  map outbound {
    type inet_proto . ipv6_addr . inet_service : ipv6_addr . inet_service
  }
${tracking}  chain firewall {
    type filter hook forward priority filter - 5; policy accept;
    ct state established,related accept
    ip6 daddr != @subscribers accept
    meta l4proto ipv6-icmp accept
    meta l4proto . ip6 daddr . th dport @filtered meta l4proto . ip6 daddr . th dport . ip6 saddr . th sport @allowed accept
    meta l4proto . ip6 daddr . th dport @pinholes meta l4proto . ip6 daddr . th dport != @filtered accept
    ip6 saddr @subscribers accept
    counter drop
  }
  chain dnat_in {
    type nat hook prerouting priority dstnat; policy accept;
    dnat ip6 to meta l4proto . ip6 daddr . th dport map @inbound
  }
  chain snat_out {
    type nat hook postrouting priority srcnat; policy accept;
    snat ip6 to meta l4proto . ip6 saddr . th sport map @outbound
  }
}
`;
}

const sameEndpoint = (f: Forwarding) => f.external.address === f.internal.address && f.external.port === f.internal.port;

/** The statements adding (or deleting) what one IPv6 mapping installs. */
export function mappingStatements6(table: string, op: "add" | "delete", f: Forwarding): string[] {
  const ext = `${f.protocol} . ${f.external.address} . ${f.external.port}`;
  const int = `${f.protocol} . ${f.internal.address} . ${f.internal.port}`;
  const translated = !sameEndpoint(f);
  const out = [`${op} element ip6 ${table} mapped { ${int} }`];
  if (f.inbound) {
    out.push(`${op} element ip6 ${table} pinholes { ${int} }`);
    if (translated) out.push(`${op} element ip6 ${table} inbound { ${ext}${op === "add" ? ` : ${f.internal.address} . ${f.internal.port}` : ""} }`);
    if (f.filters.length > 0) {
      out.push(`${op} element ip6 ${table} filtered { ${int} }`);
      const allowed = f.filters.map((r) => `${int} . ${r.address}/${r.prefixLength} . ${r.port === 0 ? "0-65535" : r.port}`);
      out.push(`${op} element ip6 ${table} allowed { ${allowed.join(", ")} }`);
    }
  }
  if (f.outbound && translated)
    out.push(`${op} element ip6 ${table} outbound { ${int}${op === "add" ? ` : ${f.external.address} . ${f.external.port}` : ""} }`);
  return out;
}
