// nftables backend (Linux; IPv6 in ./nftables6.ts, what both share in ./nft-rules.ts): one table whose maps and sets hold every mapping as
// elements, so a change is an element update, never a rule per mapping:
//
//   inbound   map  proto . external addr . port → internal addr . port    DNAT (MAP, static)
//   outbound  map  proto . internal addr . port → external addr . port    SNAT (outbound flows
//                                                  of a mapped endpoint keep its external one)
//   filtered  set  proto . external addr . port                           mappings with FILTERs
//   allowed   set  proto . external . port . remote prefix . remote ports  what FILTERs allow
//
//   active    set  proto . internal addr . port                           (activity tracking) the
//                                                  endpoints that sent a packet; each element
//                                                  expires after the protocol's idle timeout
//
// Activity (dataplane.activity): a forward-hook rule updates `active` for every packet whose
// source is a mapped internal endpoint (a lookup in `outbound`), with the protocol's idle
// timeout, so per-packet work stays in the kernel; pcpd reads the set (remaining time per
// endpoint) only when a decision needs it (src/dataplane/activity.ts): with the native addon,
// each queried element on its own over netlink (native/nft_elements.c: O(queries), ~2 µs
// each); without it, one `nft -j list set` of the whole set (O(active endpoints), 35–50 µs
// per element).
//
// Rules match on `meta l4proto . ip daddr . th dport`: only protocols whose header starts
// with 16-bit ports reach these maps (the engine serves only such protocols; pcpd never
// installs a port-less catch-all). FILTER runs before DNAT (priority dstnat - 10). Each
// transaction is one `nft -f -` run: nft applies a file atomically or not at all.
import { spawn } from "node:child_process";
import { setImmediate as turn } from "node:timers/promises";
import { toAddress16 } from "../net/address.js";
import type { DataplaneBackend } from "./manager.js";
import type { DataplaneOp, Forwarding } from "./ops.js";
import type { ActivityQuery } from "./activity.js";
import { mappingStatements6, tableDefinition6 } from "./nftables6.js";
import { activityDefinition, ElementStatements, filterSets, natChains, natMaps, type ActivityTimeouts } from "./nft-rules.js";
import { ErrorCodes, PcpdError } from "../errors.js";

export interface NftOptions {
  /** Table name (family ip). */
  table: string;
  /** IPv6 subscriber prefixes: the firewall of the ip6 table guards them (nftables6.ts). */
  subscribers6?: string[];
  /** Idle timeouts (seconds) of the activity set; absent: no activity tracking. */
  activity?: ActivityTimeouts;
  /** Command to run (default "nft"); arguments before "-f -" (e.g. a netns wrapper in tests). */
  command?: string[];
  /** Reads chosen elements of a set in this process's network namespace (the addon's nftElements); absent: activity lists the whole set. */
  readElements?: SetElementReader;
}

/**
 * `keys` (keyLength bytes each, in the set's register layout) looked up in set `set` of
 * table `table` (netfilter family NFPROTO_*): ms left per key, -1 where the set has none.
 */
export type SetElementReader = (family: number, table: string, set: string, keys: Uint8Array, keyLength: number) => Float64Array;

const NFPROTO_IPV4 = 2;
const NFPROTO_IPV6 = 10;
/** Elements looked up per netlink read (a few ms), an event-loop turn between reads. */
const ELEMENTS_PER_READ = 2048;

/**
 * The `active` set's key of an internal endpoint (inet_proto . address . inet_service), each
 * field in a 4-byte register: protocol, pad; the address; the port (network order), pad.
 */
function endpointKey(out: Uint8Array, at: number, q: ActivityQuery): void {
  const a = toAddress16(q.internal.address);
  out[at] = q.protocol;
  if (q.family === 4) out.set(a.subarray(12), at + 4);
  else out.set(a, at + 4);
  const port = at + (q.family === 4 ? 8 : 20);
  out[port] = q.internal.port >> 8;
  out[port + 1] = q.internal.port & 255;
}

export function tableDefinition(table: string, activity?: ActivityTimeouts): string {
  return `table ip ${table} {
${activityDefinition("ip", "outbound", activity)}
${natMaps("ip")}${filterSets("ip")}  chain filter_in {
    type filter hook prerouting priority dstnat - 10; policy accept;
    meta l4proto . ip daddr . th dport @filtered meta l4proto . ip daddr . th dport . ip saddr . th sport != @allowed counter drop
  }
${natChains("ip")}`;
}

/** The statements adding (or deleting) what one mapping installs. */
export function mappingStatements(table: string, op: "add" | "delete", f: Forwarding): string[] {
  const s = new ElementStatements("ip", table, op, f);
  if (f.inbound) s.inbound();
  if (f.outbound) s.outbound();
  if (f.inbound && f.filters.length > 0) s.filters(s.ext);
  return s.out;
}

/** The nft script of one transaction (unmaps come first in `ops`). */
export function transactionScript(table: string, ops: DataplaneOp[]): string {
  return (
    ops.flatMap((o) => (o.mapping.family === 6 ? mappingStatements6 : mappingStatements)(table, o.op === "map" ? "add" : "delete", o.mapping)).join("\n") + "\n"
  );
}

export class NftablesBackend implements DataplaneBackend {
  readonly name = "nftables";
  readonly ipv6 = true;
  private readonly command: string[];

  constructor(private readonly o: NftOptions) {
    this.command = o.command ?? ["nft"];
  }

  private async run(script: string): Promise<void> {
    await this.nft(["-f", "-"], script);
  }

  /** Runs nft with `args` (and `script` on stdin); resolves with its stdout. */
  private nft(args: string[], script = ""): Promise<string> {
    return new Promise((resolve, reject) => {
      const [cmd, ...before] = this.command;
      const c = spawn(cmd, [...before, ...args], { stdio: ["pipe", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      c.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
      c.stderr.on("data", (d) => (stderr += d));
      c.once("error", (e) => reject(new PcpdError(ErrorCodes.NFT_FAILED, `${cmd}: ${e.message}`, { cause: e })));
      c.once("close", (code, signal) =>
        code === 0
          ? resolve(stdout)
          : reject(new PcpdError(ErrorCodes.NFT_FAILED, `nft exited ${code ?? signal}: ${stderr.trim().split("\n").slice(0, 4).join(" | ")}`)),
      );
      c.stdin.on("error", () => undefined); // nft gone: its exit reports why
      c.stdin.end(script);
    });
  }

  /** Remaining seconds per queried internal endpoint: its elements read one by one, or one listing of the activity set. */
  async activity(queries: ActivityQuery[]): Promise<number[]> {
    if (!this.o.activity) throw new PcpdError(ErrorCodes.NFT_FAILED, "activity tracking is off for this table");
    if (this.o.readElements) return this.activityByElement(queries, this.o.readElements);
    const remaining = parseActivity(await this.nft(["-j", "list", "set", "ip", this.o.table, "active"]));
    if (queries.some((q) => q.family === 6))
      for (const [k, v] of parseActivity(await this.nft(["-j", "list", "set", "ip6", this.o.table, "active"]))) remaining.set(k, v);
    return queries.map((q) => remaining.get(activityKey(q.protocol, q.internal.address, q.internal.port)) ?? 0);
  }

  private async activityByElement(queries: ActivityQuery[], read: SetElementReader): Promise<number[]> {
    const out = queries.map(() => 0);
    for (const family of [4, 6] as const) {
      const ofFamily = queries.flatMap((q, i) => (q.family === family ? [i] : []));
      const keyLength = family === 4 ? 12 : 24;
      for (let at = 0; at < ofFamily.length; at += ELEMENTS_PER_READ) {
        if (at > 0) await turn();
        const part = ofFamily.slice(at, at + ELEMENTS_PER_READ);
        const keys = new Uint8Array(part.length * keyLength);
        for (const [j, i] of part.entries()) endpointKey(keys, j * keyLength, queries[i]);
        let ms: Float64Array;
        try {
          ms = read(family === 4 ? NFPROTO_IPV4 : NFPROTO_IPV6, this.o.table, "active", keys, keyLength);
        } catch (e) {
          throw new PcpdError(ErrorCodes.NFT_FAILED, `reading the ${family === 4 ? "ip" : "ip6"} activity set: ${(e as Error).message}`, { cause: e });
        }
        for (const [j, i] of part.entries()) out[i] = ms[j] > 0 ? Math.floor(ms[j] / 1000) : 0;
      }
    }
    return out;
  }

  /** The table defined from scratch (an existing one, with its elements, is replaced atomically). */
  reset(): Promise<void> {
    const t = this.o.table;
    return this.run(
      `add table ip ${t}\ndelete table ip ${t}\n${tableDefinition(t, this.o.activity)}` +
        `add table ip6 ${t}\ndelete table ip6 ${t}\n${tableDefinition6(t, this.o.subscribers6 ?? [], this.o.activity)}`,
    );
  }

  apply(ops: DataplaneOp[]): Promise<void> {
    return ops.length === 0 ? Promise.resolve() : this.run(transactionScript(this.o.table, ops));
  }

  /** The tables stay: the mappings keep working while pcpd restarts (the next start reconciles). */
  async close(): Promise<void> {}
}

/** nft's names for the protocols it prints by name in `inet_proto` (others: the number). */
const PROTOCOL_NAMES: Record<string, number> = { tcp: 6, udp: 17, dccp: 33, sctp: 132, udplite: 136, icmp: 1, icmpv6: 58 };
const activityKey = (protocol: number, address: string, port: number) => `${protocol}/${address}/${port}`;

/** `nft -j list set … active` → remaining seconds per protocol/address/port. */
export function parseActivity(json: string): Map<string, number> {
  type Elem = { elem?: { val?: { concat?: [string | number, string, number] }; expires?: number } };
  const out = new Map<string, number>();
  const objects = (JSON.parse(json) as { nftables?: { set?: { elem?: Elem[] } }[] }).nftables ?? [];
  for (const e of objects.find((o) => o.set)?.set?.elem ?? []) {
    const key = e.elem?.val?.concat;
    if (!key) continue;
    const protocol = typeof key[0] === "number" ? key[0] : (PROTOCOL_NAMES[key[0]] ?? Number(key[0]));
    out.set(activityKey(protocol, key[1], key[2]), e.elem?.expires ?? 0);
  }
  return out;
}
