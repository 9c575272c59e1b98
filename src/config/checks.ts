// Values each valid on its own but contradictory or dangerous together, refused at start
// and on reload with one line each (the schema's superRefine calls these), and the memory
// estimate of the engine's tables.
import { isIPv6 } from "node:net";
import type { Config } from "./schema.js";
import * as W from "../wire.generated.js";

/**
 * listen.port 0 (an ephemeral port no client would know) is refused unless this variable
 * is "1": tests set it (vitest.config.ts) to run servers side by side.
 */
export const EPHEMERAL_PORT_ENV = "PCPD_TEST_EPHEMERAL_PORTS";

/** RFC 6887 §7.4 recommends 30 s and 1800 s; beyond these, clients wait absurdly long to retry. */
export const ERROR_LIFETIME_MAX = { short: 3600, long: 86_400 };

export interface Issue {
  path: (string | number)[];
  message: string;
}

/**
 * Bytes of WebAssembly memory one worker's tables take for `capacity`: the entry sizes
 * and hash indexes of assembly/engine.ts (engineInit's fitsMemory, initDescriptions,
 * initRealms, initRequesters, the mirror table; checked against the heap initEngine allocates by test/config/checks.test.ts) plus the
 * timer wheel and the event ring. The JavaScript heap of each worker (~tens of MB, more
 * under a rate-limited flood: up to rateLimit.maxSources sources tracked) comes on top.
 */
export function tableBytes(capacity: Config["capacity"]): number {
  const index = (n: number) => (Math.floor((n * 10) / 7) + 16) * 8; // HashIndex.init: load ≤ 0.7, 8 bytes a slot
  const { mappings, subscribers, peers, filters, descriptions, realms, requesters } = capacity;
  return (
    (mappings + 1) * 64 +
    2 * index(mappings) + // mapping records; internal and external indexes
    (subscribers + 1) * 64 +
    index(subscribers) +
    (peers + 1) * 44 +
    index(peers) +
    (filters + 1) * 24 +
    (descriptions > 0 ? (descriptions + 1) * 140 + index(descriptions) : 0) +
    (realms + 1) * 24 +
    index(realms) +
    (requesters > 0 ? (requesters + 1 + W.REQUESTERS_SHARED + 1) * 28 + index(requesters) + index(W.REQUESTERS_SHARED) : 0) + // THIRD_PARTY requesters: own and shared
    (W.STATIC_MIRRORS_MAX + 1) * 44 +
    index(W.STATIC_MIRRORS_MAX) + // static mirrors, once a static exists (upper bound)
    65_536 * 4 + // timer wheel
    4 * 1024 * 1024 // event ring and scratch (upper bound)
  );
}

const MIB = 1024 * 1024;

/** One line per contradiction or danger; `workers` in effect, `totalMemory` of the machine. */
/** Wildcard listen addresses, with why the dgram path cannot serve them. */
export function wildcardIssues(addresses: string[]): [index: number, message: string][] {
  const out: [number, string][] = [];
  addresses.forEach((a, i) => {
    if (a === "0.0.0.0" || (isIPv6(a) && /^[0:]+$/.test(a)))
      out.push([
        i,
        `${a} is a wildcard: on the dgram path replies would leave from whatever address the kernel picks, not the one the client asked (RFC 6887 §14.1.3 needs that one); list each server address, or use the batched path (docs/io.md)`,
      ]);
  });
  return out;
}

export function contradictions(c: Config, workers: number, totalMemory: number, env: NodeJS.ProcessEnv = process.env): Issue[] {
  const out: Issue[] = [];
  const add = (path: Issue["path"], message: string) => out.push({ path, message });
  // A wildcard needs the batched I/O path (IP_PKTINFO: docs/io.md); the server refuses it
  // again at start when the addon turns out not to load (src/server/server.ts).
  if (env.PCPD_IO === "dgram") for (const [i, message] of wildcardIssues(c.listen.addresses)) add(["listen", "addresses", i], message);
  const authModes = [c.auth.default, c.auth.thirdPartyDefault, ...c.auth.subscribers.map((p) => p.mode), ...c.auth.thirdParty.map((p) => p.mode)];
  if (authModes.some((m) => m !== "off") && c.auth.radius.servers.length === 0)
    add(["auth", "radius", "servers"], "authentication is on for some sources but no RADIUS server is configured (EAP needs an AAA server, RFC 7652 §2)");
  c.auth.radius.servers.forEach((s, i) => {
    if (s.secretEnv !== undefined && !env[s.secretEnv]) add(["auth", "radius", "servers", i, "secretEnv"], `environment variable ${s.secretEnv} is not set`);
  });
  if (c.listen.port === 0 && env[EPHEMERAL_PORT_ENV] !== "1") {
    add(["listen", "port"], `0 (an ephemeral port) is for tests only: clients send to 5351 (RFC 6887 §14.1.1, §19.1); ${EPHEMERAL_PORT_ENV}=1 allows it`);
  }
  const tpid = c.pcp.thirdPartyId;
  if (!tpid.enabled && tpid.ids !== "any" && tpid.ids.length > 0) {
    add(
      ["pcp", "thirdPartyId", "ids"],
      `lists ${tpid.ids.length} identifier(s) but pcp.thirdPartyId.enabled is false: they would never be used (enable the option or drop the list)`,
    );
  }
  if (c.lifetimes.peerMin > c.lifetimes.max) add(["lifetimes", "peerMin"], `${c.lifetimes.peerMin} must be ≤ lifetimes.max (${c.lifetimes.max})`);
  const { shortErrorLifetime: short, longErrorLifetime: long } = c.pcp;
  if (short < 1 || short > ERROR_LIFETIME_MAX.short)
    add(["pcp", "shortErrorLifetime"], `${short} s is outside 1..${ERROR_LIFETIME_MAX.short} (RFC 6887 §7.4 recommends 30)`);
  if (long < 1 || long > ERROR_LIFETIME_MAX.long)
    add(["pcp", "longErrorLifetime"], `${long} s is outside 1..${ERROR_LIFETIME_MAX.long} (RFC 6887 §7.4 recommends 1800)`);
  else if (long < short) add(["pcp", "longErrorLifetime"], `${long} s must be ≥ pcp.shortErrorLifetime (${short})`);
  for (const sink of ["syslog", "ipfix"] as const) {
    const l = c.logging[sink];
    // The mapping log sent to this server's own PCP socket would be answered as requests.
    if (l.enabled && l.port === c.listen.port && c.listen.addresses.includes(l.collector))
      add(["logging", sink, "port"], `${l.collector}:${l.port} is this server's own PCP listen address: logs would go to itself`);
  }
  if (c.ha.enabled) out.push(...haIssues(c, workers));
  if (c.ha.enabled && c.listen.reusePort)
    add(["listen", "reusePort"], "cannot be used with ha.enabled: an HA group moves its addresses between nodes one shard at a time (docs/io.md)");
  const total = workers * tableBytes(c.capacity);
  if (total > totalMemory) {
    add(
      ["capacity"],
      `the engine tables need about ${Math.round(total / MIB)} MiB (${workers} workers × ${Math.round(total / workers / MIB)} MiB) but the machine has ${Math.round(totalMemory / MIB)} MiB`,
    );
  }
  return out;
}

/** Accepted but worth a warning line at start and reload. */
export function warnings(c: Config, workers: number, totalMemory: number): string[] {
  const total = workers * tableBytes(c.capacity);
  return total > totalMemory / 2
    ? [`capacity: the engine tables need about ${Math.round(total / MIB)} MiB, over half of the machine's ${Math.round(totalMemory / MIB)} MiB`]
    : [];
}

/**
 * Why a reload's pool cannot be applied as a whole (empty: it can). `engine`: the address
 * table of the running shards, retired entries included (they keep their slot until a
 * restart); `next`: the new pool's addresses. Checked before anything is retired, so a
 * refused reload changes nothing.
 */
export function poolReloadIssues(engine: { address: string; retired: boolean }[], next: string[], tableSize: number): string[] {
  const out: string[] = [];
  const slots = new Set([...engine.map((p) => p.address), ...next]).size;
  if (slots > tableSize) {
    out.push(
      `pool.addresses: the engine's address table would need ${slots} entries (${engine.length} in use, retired ones included until a restart), it holds ${tableSize}: restart to apply this pool`,
    );
  }
  for (const [family, v6] of [
    ["IPv4", false],
    ["IPv6", true],
  ] as const) {
    const served = engine.some((p) => !p.retired && isIPv6(p.address) === v6);
    if (served && !next.some((a) => isIPv6(a) === v6)) {
      out.push(`pool.addresses: no ${family} address left: ${family} MAP and PEER would answer UNSUPP_PROTOCOL (restart to stop serving ${family})`);
    }
  }
  return out;
}

/** A shard group as it runs: its listen addresses and the shards (workers) serving them. */
export interface ShardGroup {
  name: string;
  addresses: string[];
  shards: number[];
  preferred?: string;
}

/**
 * The shards of each configured group: listen address i is served by shard i mod
 * `workers` (src/server/server.ts), so a group is the shards of its addresses. Assumes
 * haIssues found nothing.
 */
export function shardGroups(c: Config, workers: number): ShardGroup[] {
  const shardOf = (a: string) => c.listen.addresses.indexOf(a) % workers;
  return c.ha.groups.map((g) => ({ ...g, shards: [...new Set(g.addresses.map(shardOf))].sort((a, b) => a - b) }));
}

function haIssues(c: Config, workers: number): Issue[] {
  const out: Issue[] = [];
  const add = (path: Issue["path"], message: string) => out.push({ path: ["ha", ...path], message });
  const { ha } = c;
  if (c.persistence.enabled) {
    out.push({
      path: ["persistence", "enabled"],
      message:
        "must be false with ha.enabled: the group's stream (replicated at quorum) is the durable copy, and a restarted node rejoins as a standby from it (docs/ha.md)",
    });
  }
  if (ha.groups.length === 0) add(["groups"], "ha.enabled needs at least one group (the listen addresses it serves)");
  if (c.listen.port === 0)
    out.push({ path: ["listen", "port"], message: "must be a fixed port with ha.enabled: clients keep asking the same address:port whichever node serves it" });
  if (ha.safetyMarginMs * 2 >= ha.leaseMs) add(["safetyMarginMs"], `${ha.safetyMarginMs} ms must be under half of ha.leaseMs (${ha.leaseMs})`);
  // Addresses claimed and never released would be served by two nodes after a takeover.
  if ((ha.hooks.claim.length === 0) !== (ha.hooks.release.length === 0))
    add(
      ["hooks", ha.hooks.claim.length === 0 ? "claim" : "release"],
      "ha.hooks.claim and ha.hooks.release are set together or not at all (an address claimed must be released when the node loses the group)",
    );
  const names = new Set<string>();
  const groupOf = new Map<string, string>();
  ha.groups.forEach((g, i) => {
    if (names.has(g.name)) add(["groups", i, "name"], `duplicate group name ${g.name}`);
    names.add(g.name);
    g.addresses.forEach((a, j) => {
      if (!c.listen.addresses.includes(a)) add(["groups", i, "addresses", j], `${a} is not in listen.addresses`);
      else if (groupOf.has(a)) add(["groups", i, "addresses", j], `${a} is already in group ${groupOf.get(a)}`);
      else groupOf.set(a, g.name);
    });
  });
  if (ha.groups.length === 0) return out;
  c.listen.addresses.forEach((a, i) => {
    if (!groupOf.has(a)) add(["groups"], `listen address ${a} is in no group (every served address moves with one)`);
    // A worker serves addresses i, i + workers, …: they must move together.
    const first = c.listen.addresses[i % workers];
    if (groupOf.has(a) && groupOf.has(first) && groupOf.get(a) !== groupOf.get(first)) {
      add(
        ["groups"],
        `${a} (group ${groupOf.get(a)}) and ${first} (group ${groupOf.get(first)}) are served by the same worker (address i → worker i mod ${workers}): put them in one group or set workers so they split`,
      );
    }
  });
  return out;
}
