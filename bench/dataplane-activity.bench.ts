// Traffic-driven lifetimes at scale: 1M mappings expire, 10k of them carry traffic. The
// cost grows with decisions, not packets: the kernel keeps per-packet state (the nftables
// `active` set); pcpd pays once per expiring mapping (a query and its answer) and once per
// batch of queries (one read of the set). Measured in one run, against the same expiry
// without activity tracking (the baseline):
//
//   - engine: expiring every mapping, with tracking (queries taken, answered from the
//     traffic table, traffic-kept mappings re-filed) vs without (ended at once);
//   - dataplane: one read of an `active` set holding the 10k endpoints (in a network
//     namespace; skipped without root or nft), times the reads the run made: nft listing
//     the set (`nft -j list set`, the fallback) and the addon looking the 10k endpoints up
//     over netlink (native/nft_elements.c, what the nftables backend uses). The listing costs
//     per element of the set and read, netlink per query: the totals charge each its way.
//
// `npm run build` first; `tsx bench/dataplane-activity.bench.ts [mappings] [active] [name]`.
// Writes bench/results/<name>.json (default dataplane-2026-12-04).
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import * as W from "../src/wire.generated.js";
import { decodeRecords, type PacketEngine } from "../src/engine/packet-engine.js";
import { parseActivity } from "../src/dataplane/nftables.js";
import { ADDON_PATH } from "../src/io/native.js";
import { engineConfig, engineFrom } from "../test/helpers/engine-config.js";

const MAPPINGS = Number(process.argv[2] ?? 1_000_000);
const ACTIVE = Number(process.argv[3] ?? 10_000);
const NAME = process.argv[4] ?? "dataplane-2026-12-04";
const PER_SUB = 16;
const LIFETIME = 120;
const IDLE = 120;
const BATCH = W.SLOT_COUNT;
const STEP = Math.floor(MAPPINGS / ACTIVE); // every STEP-th endpoint carries traffic

function engine(tracking: boolean): PacketEngine {
  const c = engineConfig({
    capacity: { mappings: MAPPINGS + 16, subscribers: Math.ceil(MAPPINGS / PER_SUB) + 16, peers: 1024, filters: 1024 },
    quotas: { mappingsPerSubscriber: PER_SUB },
    lifetimes: { holdDown: 0, min: 2 },
    pool: { addresses: Array.from({ length: 64 }, (_, i) => `203.0.113.${i + 1}`), portMin: 1024, blockSize: 64, maxBlocksPerSubscriber: 2, excludedPorts: [] },
    dataplane: { backend: "events", activity: { enabled: tracking, udpIdle: IDLE, tcpIdle: IDLE } },
  });
  const e = engineFrom(c, 1, { seed: 12345n }, "release");
  const x = e.exports as unknown as { loadgenMap: (...a: number[]) => void; serveRange: (...a: number[]) => number };
  for (let done = 0; done < MAPPINGS; done += BATCH) {
    const n = Math.min(BATCH, MAPPINGS - done);
    x.loadgenMap(0, n, done, 1, MAPPINGS, PER_SUB, 0, LIFETIME, W.PROTO_UDP);
    x.serveRange(0, n, 1, 2);
    e.discardEvents();
  }
  return e;
}

/** Endpoint e of loadgen: subscriber e / PER_SUB at 10.s.s.s, port 1024 + e % PER_SUB; traffic on every STEP-th. */
const trafficKey = (address: string, port: number) => {
  const s = address
    .split(".")
    .slice(1)
    .reduce((n, b) => n * 256 + Number(b), 0);
  return (s * PER_SUB + (port - 1024)) % STEP === 0;
};

/** Expires everything due at `at`; with tracking, answers every query from the traffic table. Returns counts and ms. */
function expireAll(e: PacketEngine, at: number) {
  let reads = 0;
  let queries = 0;
  let kept = 0;
  const t0 = performance.now();
  for (let guard = 0; guard < 10_000; guard++) {
    const ended = e.expire(at, 1_000_000);
    e.discardEvents();
    const bytes = e.takeActivityQueries();
    if (bytes) {
      reads++;
      for (const q of decodeRecords({ bytes }, e.poolList())) {
        queries++;
        const remaining = trafficKey(q.internalAddress, q.internalPort) ? IDLE - 10 : 0;
        if (remaining > 0) kept++;
        e.activityAnswer(at, q.mapping, q.protocol, q.externalPort, remaining);
      }
      e.discardEvents();
      continue;
    }
    if (ended === 0) break;
  }
  return { ms: performance.now() - t0, reads, queries, kept, left: Number(e.engineStats().mappings) };
}

/** Endpoint n of the `active` set made below (udp . 10.x.y.z . 1024 + n % 16). */
const activeEndpoint = (n: number) => ({ address: `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`, port: 1024 + (n % 16) });

/** Median ms of 5 netlink reads of all ACTIVE endpoints by the addon, run inside the namespace; null without the addon. */
function netlinkRead(ns: string): { ms: number; found: number } | null {
  if (!fs.existsSync(ADDON_PATH)) return null;
  const script = `
    const a = require(${JSON.stringify(ADDON_PATH)});
    const n = ${ACTIVE};
    const keys = new Uint8Array(n * 12);
    for (let i = 0; i < n; i++) {
      const o = i * 12, port = 1024 + (i % 16);
      keys.set([17, 0, 0, 0, 10, (i >> 16) & 255, (i >> 8) & 255, i & 255, port >> 8, port & 255], o);
    }
    const times = [];
    let found = 0;
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      const ms = a.nftElements(2, "b", "active", keys, 12);
      times.push(performance.now() - t0);
      found = ms.filter((x) => x >= 0).length;
    }
    times.sort((x, y) => x - y);
    console.log(JSON.stringify({ ms: times[2], found }));`;
  return JSON.parse(execFileSync("ip", ["netns", "exec", ns, process.execPath, "-e", script]).toString());
}

/** One read of an `active` set holding ACTIVE endpoints in a scratch namespace: nft's listing and the addon's netlink lookups (ms), or null. */
function nftRead(): { ms: number; elements: number; netlink: { ms: number; found: number } | null } | null {
  const ns = "pdp-bench";
  try {
    execFileSync("ip", ["netns", "add", ns], { stdio: "ignore" });
  } catch {
    return null;
  }
  try {
    const nft = (args: string[], input?: string) => execFileSync("ip", ["netns", "exec", ns, "nft", ...args], { input, maxBuffer: 1 << 28 }).toString();
    nft(["-f", "-"], "table ip b {\n set active {\n type inet_proto . ipv4_addr . inet_service\n flags dynamic, timeout\n size 16777216\n }\n}\n");
    for (let i = 0; i < ACTIVE; i += 5000) {
      const els = Array.from({ length: Math.min(5000, ACTIVE - i) }, (_, k) => {
        const e = activeEndpoint(i + k);
        return `udp . ${e.address} . ${e.port} timeout ${IDLE}s`;
      });
      nft(["-f", "-"], `add element ip b active { ${els.join(", ")} }\n`);
    }
    const times: number[] = [];
    let elements = 0;
    for (let r = 0; r < 5; r++) {
      const t0 = performance.now();
      elements = parseActivity(nft(["-j", "list", "set", "ip", "b", "active"])).size;
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    return { ms: times[2], elements, netlink: netlinkRead(ns) };
  } finally {
    execFileSync("ip", ["netns", "del", ns], { stdio: "ignore" });
  }
}

const baseline = engine(false);
const off = expireAll(baseline, 2 + LIFETIME);
const tracked = engine(true);
const on = expireAll(tracked, 2 + LIFETIME);
const read = nftRead();
const result = {
  bench: "dataplane-activity",
  date: new Date().toISOString(),
  conditions: { mappings: MAPPINGS, active: ACTIVE, idleSeconds: IDLE, node: process.version, note: "shared 2-core machine; ratios from one run" },
  withoutTracking: { expireMs: Math.round(off.ms), ended: MAPPINGS - off.left },
  withTracking: { expireMs: Math.round(on.ms), queries: on.queries, engineReads: on.reads, keptByTraffic: on.kept, left: on.left },
  nftReadOfActiveSet: read ? { ms: Math.round(read.ms * 10) / 10, elements: read.elements } : "skipped (needs root, ip netns and nft)",
  netlinkReadOfEveryActiveEndpoint: read?.netlink
    ? {
        ms: Math.round(read.netlink.ms * 10) / 10,
        found: read.netlink.found,
        microsecondsPerQuery: Math.round((read.netlink.ms / ACTIVE) * 1000 * 100) / 100,
        listingRatio: Math.round((read.ms / read.netlink.ms) * 10) / 10,
      }
    : "skipped (needs root, ip netns, nft and the addon)",
  engineRatio: Math.round((on.ms / off.ms) * 100) / 100,
  totalRatioWithNftReads: read ? Math.round(((on.ms + on.reads * read.ms) / off.ms) * 100) / 100 : null,
  // Netlink costs per query (every decision's endpoint looked up), the listing per element of the set per read.
  totalRatioWithNetlinkReads: read?.netlink ? Math.round(((on.ms + (on.queries * read.netlink.ms) / ACTIVE) / off.ms) * 100) / 100 : null,
  perDecisionMicroseconds: Math.round(((on.ms - off.ms) / on.queries) * 1000 * 100) / 100,
};
console.log(JSON.stringify(result, null, 2));
fs.mkdirSync(new URL("results/", import.meta.url), { recursive: true });
fs.writeFileSync(new URL(`results/${NAME}.json`, import.meta.url), `${JSON.stringify(result, null, 2)}\n`);
