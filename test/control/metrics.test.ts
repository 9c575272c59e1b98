// Prometheus rendering of the server statistics (src/control/metrics.ts): names, types,
// labels and values as a Prometheus parser reads them, and counters that never go back
// when a shard restarts with fresh engine counters.
import { describe, expect, it } from "vitest";
import parsePrometheusTextFormat, { type PrometheusFamily } from "parse-prometheus-text-format";
import { register as globalRegistry } from "prom-client";
import { Metrics } from "../../src/control/metrics.js";
import type { ServerStats } from "../../src/server/server.js";
import type { ShardStats } from "../../src/shard/tasks.js";
import * as W from "../../src/wire.generated.js";

// Written out here, not derived like the module does, so a wrong derivation fails.
const PCP_RESULTS = [
  "SUCCESS",
  "UNSUPP_VERSION",
  "NOT_AUTHORIZED",
  "MALFORMED_REQUEST",
  "UNSUPP_OPCODE",
  "UNSUPP_OPTION",
  "MALFORMED_OPTION",
  "NETWORK_FAILURE",
  "NO_RESOURCES",
  "UNSUPP_PROTOCOL",
  "USER_EX_QUOTA",
  "CANNOT_PROVIDE_EXTERNAL",
  "ADDRESS_MISMATCH",
  "EXCESSIVE_REMOTE_PEERS",
  // RFC 7652
  "INITIATION",
  "AUTHENTICATION_REQUIRED",
  "AUTHENTICATION_FAILED",
  "AUTHENTICATION_SUCCEEDED",
  "AUTHORIZATION_FAILED",
  "SESSION_TERMINATED",
  "UNKNOWN_SESSION_ID",
  "DOWNGRADE_ATTACK_DETECTED",
  "AUTHENTICATION_REQUEST",
  "AUTHENTICATION_REPLY",
  "THIRD_PARTY_ID_UNKNOWN",
  "THIRD_PARTY_MISSING_OPTION",
  "UNSUPP_THIRD_PARTY_ID_LENGTH",
];
const NATPMP_RESULTS = ["0", "1", "2", "3", "4", "5"];
const DROP_REASONS = ["TOO_SHORT", "RESPONSE", "SHORT_HEADER", "INTERFACE", "OVERLOAD", "NATPMP_SHORT", "NATPMP_SILENT"];

const COUNTERS = [
  "pcpd_packets_total",
  "pcpd_requests_parsed_total",
  "pcpd_pcp_responses_total",
  "pcpd_natpmp_responses_total",
  "pcpd_drops_total",
  "pcpd_mappings_created_total",
  "pcpd_mappings_refreshed_total",
  "pcpd_mappings_deleted_total",
  "pcpd_mappings_expired_total",
  "pcpd_holds_released_total",
  "pcpd_events_lost_total",
  "pcpd_dataplane_transactions_total",
  "pcpd_dataplane_operations_total",
  "pcpd_dataplane_failures_total",
  "pcpd_dataplane_reconciliations_total",
  "pcpd_dataplane_backlog_overflows_total",
  "pcpd_dataplane_activity_reads_total",
  "pcpd_dataplane_activity_queries_total",
  "pcpd_persistence_write_errors_total",
  "pcpd_persistence_dropped_bytes_total",
  "pcpd_io_datagrams_received_total",
  "pcpd_io_datagrams_sent_total",
  "pcpd_io_receive_calls_total",
  "pcpd_io_truncated_total",
  "pcpd_io_receive_queue_drops_total",
  "pcpd_io_receive_errors_total",
  "pcpd_io_unsent_total",
  "pcpd_event_loop_stalls_total",
  "pcpd_thirdparty_requesters_unrecorded_total",
];
const GAUGES = [
  "pcpd_mappings",
  "pcpd_mappings_held",
  "pcpd_subscribers",
  "pcpd_port_blocks_leased",
  "pcpd_peers",
  "pcpd_filters",
  "pcpd_thirdparty_requesters_shared",
  "pcpd_pool_free_blocks",
  "pcpd_pool_address_retired",
  "pcpd_epoch_seconds",
  "pcpd_shard_up",
  "pcpd_engine_huge_page_bytes",
  "pcpd_dataplane_up",
  "pcpd_dataplane_mappings",
  "pcpd_dataplane_pending_keys",
  "pcpd_dataplane_backlog_bytes",
  "pcpd_persistence_degraded",
  "pcpd_persistence_backlog_bytes",
  "pcpd_io_path",
  "pcpd_event_loop_delay_max_seconds",
];

type EngineKey =
  | "mappings"
  | "held"
  | "subscribers"
  | "blocks"
  | "peers"
  | "filters"
  | "created"
  | "refreshed"
  | "deleted"
  | "expired"
  | "released"
  | "eventsLost"
  | "requestersShared"
  | "requestersUnrecorded";

interface ShardInput {
  shard: number;
  threadId: number;
  epoch: number;
  packets: bigint;
  parsed: bigint;
  /** Sparse: result code → count. */
  pcp?: Record<number, bigint>;
  natPmp?: Record<number, bigint>;
  drops?: Record<number, bigint>;
  engine: Record<EngineKey, bigint>;
  pool: { address: string; freeBlocks: number; retired: boolean }[];
  io?: ShardStats["io"];
}

const slots = (n: number, sparse: Record<number, bigint> = {}) => Array.from({ length: n }, (_, i) => sparse[i] ?? 0n);

function shardStats(o: ShardInput): ShardStats {
  return {
    shard: o.shard,
    threadId: o.threadId,
    epoch: o.epoch,
    engine: { ...o.engine },
    codec: {
      packets: o.packets,
      parsed: o.parsed,
      pcpResults: slots(W.RESULT_CODE_LIMIT, o.pcp),
      natPmpResults: slots(W.NATPMP_RESULT_CODE_LIMIT, o.natPmp),
      drops: slots(W.DROP_REASON_LIMIT, o.drops),
    },
    pool: o.pool.map((p) => ({ ...p })),
    io: o.io,
  };
}

function serverStats(...shards: ShardInput[]): ServerStats {
  const list = shards.map(shardStats);
  const engine: Record<string, bigint> = {};
  for (const s of list) for (const [k, v] of Object.entries(s.engine)) engine[k] = (engine[k] ?? 0n) + v;
  return { engine, shards: list };
}

const SHARD0: ShardInput = {
  shard: 0,
  threadId: 11,
  epoch: 120,
  packets: 1000n,
  parsed: 900n,
  // 20 is not a PCP result code: its slot must not be exported.
  pcp: { [W.RESULT_SUCCESS]: 800n, [W.RESULT_NOT_AUTHORIZED]: 10n, [W.RESULT_THIRD_PARTY_ID_UNKNOWN]: 3n, 30: 99n },
  // 7 is no NAT-PMP result code.
  natPmp: { [W.NATPMP_RESULT_SUCCESS]: 50n, [W.NATPMP_RESULT_UNSUPP_OPCODE]: 2n, 7: 4n },
  // DROP_NONE is no drop.
  drops: { [W.DROP_TOO_SHORT]: 7n, [W.DROP_INTERFACE]: 1n, [W.DROP_NONE]: 13n },
  engine: {
    mappings: 400n,
    held: 12n,
    subscribers: 150n,
    blocks: 160n,
    peers: 30n,
    filters: 5n,
    created: 700n,
    refreshed: 300n,
    deleted: 100n,
    expired: 200n,
    released: 150n,
    eventsLost: 0n,
    requestersShared: 3n,
    requestersUnrecorded: 0n,
  },
  pool: [
    { address: "192.0.2.1", freeBlocks: 500, retired: false },
    { address: "2001:db8::1", freeBlocks: 1000, retired: false },
  ],
};

const SHARD1: ShardInput = {
  shard: 1,
  threadId: 12,
  epoch: 45,
  packets: 250n,
  parsed: 240n,
  pcp: { [W.RESULT_SUCCESS]: 200n, [W.RESULT_NO_RESOURCES]: 6n, [W.RESULT_EXCESSIVE_REMOTE_PEERS]: 1n },
  natPmp: { [W.NATPMP_RESULT_SUCCESS]: 30n, [W.NATPMP_RESULT_NETWORK_FAILURE]: 1n },
  drops: { [W.DROP_RESPONSE]: 5n, [W.DROP_NATPMP_SILENT]: 9n },
  engine: {
    mappings: 90n,
    held: 0n,
    subscribers: 40n,
    blocks: 41n,
    peers: 2n,
    filters: 0n,
    created: 120n,
    refreshed: 40n,
    deleted: 10n,
    expired: 20n,
    released: 5n,
    eventsLost: 2n,
    requestersShared: 254n,
    requestersUnrecorded: 17n,
  },
  pool: [
    { address: "192.0.2.1", freeBlocks: 480, retired: false },
    { address: "198.51.100.7", freeBlocks: 0, retired: true },
  ],
};

async function scrape(m: Metrics): Promise<{ text: string; families: PrometheusFamily[] }> {
  const text = await m.render();
  return { text, families: parsePrometheusTextFormat(text) };
}

function family(families: PrometheusFamily[], name: string): PrometheusFamily {
  const f = families.filter((x) => x.name === name);
  expect(f, name).toHaveLength(1);
  return f[0];
}

const sameLabels = (a: Record<string, string>, b: Record<string, string>) =>
  Object.keys(a).length === Object.keys(b).length && Object.entries(b).every(([k, v]) => a[k] === v);

/** The value of the one sample of `name` with exactly `labels`. */
function value(families: PrometheusFamily[], name: string, labels: Record<string, string>): number {
  const matches = family(families, name).metrics.filter((s) => sameLabels(s.labels ?? {}, labels));
  expect(matches, `${name}${JSON.stringify(labels)}`).toHaveLength(1);
  return Number(matches[0].value);
}

/** Samples of `name` for `shard`, keyed by the value of `label`. */
function byLabel(families: PrometheusFamily[], name: string, shard: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of family(families, name).metrics) {
    if (s.labels?.shard !== shard) continue;
    expect(Object.keys(s.labels).sort(), name).toEqual([label, "shard"].sort());
    out[s.labels[label]] = Number(s.value);
  }
  return out;
}

/** Shards that have a sample of `name`. */
const shardsOf = (families: PrometheusFamily[], name: string) => [...new Set(family(families, name).metrics.map((s) => s.labels?.shard))].sort();

/** Every sample of every pcpd_ counter, by name and labels. */
function counterSamples(families: PrometheusFamily[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const f of families) {
    if (f.type !== "COUNTER" || !f.name.startsWith("pcpd_")) continue;
    for (const s of f.metrics) out.set(`${f.name}${JSON.stringify(s.labels ?? {})}`, Number(s.value));
  }
  return out;
}

const zeros = (names: string[], set: Record<string, number>) => Object.fromEntries(names.map((n) => [n, set[n] ?? 0]));

describe("Prometheus metrics", () => {
  it("exports exactly the pcpd_ families, counters as counter and gauges as gauge", async () => {
    const m = new Metrics();
    m.update(serverStats(SHARD0, SHARD1), { shardsUp: [true, true], epochs: [120, 45] });
    const { families } = await scrape(m);
    const types = Object.fromEntries(families.filter((f) => f.name.startsWith("pcpd_")).map((f) => [f.name, f.type]));
    expect(types).toEqual({
      ...Object.fromEntries(COUNTERS.map((n) => [n, "COUNTER"])),
      ...Object.fromEntries(GAUGES.map((n) => [n, "GAUGE"])),
    });
  });

  it("dataplane: state as gauges, its counters as counters that only grow", async () => {
    const m = new Metrics();
    const d = {
      backend: "nftables",
      up: true,
      pendingKeys: 3,
      backlogBytes: 4096,
      installed: 120,
      transactions: 10,
      operations: 150,
      failures: 1,
      consecutiveFailures: 0,
      reconciliations: 1,
      unsupported: 0,
      lastError: null,
      activityReads: 2,
      activityQueries: 5,
    };
    m.update(serverStats(SHARD0, SHARD1), { shardsUp: [true, true], dataplane: d });
    m.update(serverStats(SHARD0, SHARD1), { shardsUp: [true, true], dataplane: { ...d, up: false, transactions: 12, operations: 170 } });
    const { text } = await scrape(m);
    expect(text).toMatch(/^pcpd_dataplane_up\{backend="nftables"\} 0$/m);
    expect(text).toMatch(/^pcpd_dataplane_mappings\{backend="nftables"\} 120$/m);
    expect(text).toMatch(/^pcpd_dataplane_backlog_bytes\{backend="nftables"\} 4096$/m);
    expect(text).toMatch(/^pcpd_dataplane_transactions_total\{backend="nftables"\} 12$/m);
    expect(text).toMatch(/^pcpd_dataplane_operations_total\{backend="nftables"\} 170$/m);
  });

  it("the packet I/O path: 1 for the active one, 0 for the other (docs/io.md)", async () => {
    const m = new Metrics();
    m.update(serverStats(SHARD0, SHARD1), { shardsUp: [true, true], io: "dgram" });
    let { text } = await scrape(m);
    expect(text).toMatch(/^pcpd_io_path\{path="dgram"\} 1$/m);
    expect(text).toMatch(/^pcpd_io_path\{path="batched"\} 0$/m);
    m.update(serverStats(SHARD0, SHARD1), { shardsUp: [true, true], io: "batched" });
    ({ text } = await scrape(m));
    expect(text).toMatch(/^pcpd_io_path\{path="batched"\} 1$/m);
    expect(text).toMatch(/^pcpd_io_path\{path="dgram"\} 0$/m);
  });

  it("socket I/O counters per shard and socket, errors by errno class; a path's missing counters have no series", async () => {
    const m = new Metrics();
    const batched = {
      socket: "127.0.0.1:5351",
      counters: { received: 10, sent: 8, recvCalls: 3, truncated: 1, rxqDrops: 4, "unsent.EAGAIN": 2, "recvErrors.other": 0 },
    };
    const dgram = { socket: "[::1]:5351", counters: { received: 5, sent: 5, "unsent.ENOBUFS": 1 } };
    m.update(serverStats({ ...SHARD0, io: [batched] }, { ...SHARD1, io: [dgram] }), { shardsUp: [true, true] });
    m.update(serverStats({ ...SHARD0, io: [{ ...batched, counters: { ...batched.counters, rxqDrops: 9 } }] }, { ...SHARD1, io: [dgram] }), {
      shardsUp: [true, true],
    });
    const { text } = await scrape(m);
    expect(text).toMatch(/^pcpd_io_receive_queue_drops_total\{shard="0",socket="127.0.0.1:5351"\} 9$/m);
    expect(text).toMatch(/^pcpd_io_unsent_total\{shard="0",socket="127.0.0.1:5351",errno="EAGAIN"\} 2$/m);
    expect(text).toMatch(/^pcpd_io_unsent_total\{shard="1",socket="\[::1\]:5351",errno="ENOBUFS"\} 1$/m);
    expect(text).toMatch(/^pcpd_io_truncated_total\{shard="0",socket="127.0.0.1:5351"\} 1$/m);
    expect(text).toMatch(/^pcpd_io_datagrams_received_total\{shard="1",socket="\[::1\]:5351"\} 5$/m);
    expect(text).not.toMatch(/^pcpd_io_receive_queue_drops_total\{shard="1"/m);
  });

  it("parses, and every family (pcpd_ and process) has HELP and TYPE lines before its samples", async () => {
    const m = new Metrics();
    m.update(serverStats(SHARD0, SHARD1), { shardsUp: [true, true], epochs: [120, 45] });
    const { text, families } = await scrape(m);
    expect(() => parsePrometheusTextFormat(text)).not.toThrow();
    // A sample before its TYPE line would make the parser open an UNTYPED family without help.
    for (const f of families) {
      expect(f.help, f.name).not.toBe("");
      expect(f.type, f.name).not.toBe("UNTYPED");
    }
    for (const name of COUNTERS) {
      expect(text).toMatch(new RegExp(`^# HELP ${name} \\S`, "m"));
      expect(text).toMatch(new RegExp(`^# TYPE ${name} counter$`, "m"));
    }
    for (const name of GAUGES) {
      expect(text).toMatch(new RegExp(`^# HELP ${name} \\S`, "m"));
      expect(text).toMatch(new RegExp(`^# TYPE ${name} gauge$`, "m"));
    }
    // Every sample line belongs to a family whose HELP and TYPE came first.
    const declared = new Set<string>();
    const helped = new Set<string>();
    const lines = text.split("\n").filter((l) => l !== "");
    expect(lines.length).toBeGreaterThan(100);
    for (const line of lines) {
      const meta = /^# (HELP|TYPE) (\S+) /.exec(line);
      if (meta) {
        (meta[1] === "HELP" ? helped : declared).add(meta[2]);
        continue;
      }
      const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0] ?? "";
      const base = [name, name.replace(/_(bucket|sum|count)$/, "")].find((n) => declared.has(n));
      expect(base, line).toBeDefined();
      expect(helped.has(base!), line).toBe(true);
    }
  });

  it("per-shard counters: packets, parsed, engine counters", async () => {
    const m = new Metrics();
    m.update(serverStats(SHARD0, SHARD1), { shardsUp: [true, true], epochs: [120, 45] });
    const { families } = await scrape(m);
    expect(value(families, "pcpd_packets_total", { shard: "0" })).toBe(1000);
    expect(value(families, "pcpd_packets_total", { shard: "1" })).toBe(250);
    expect(value(families, "pcpd_requests_parsed_total", { shard: "0" })).toBe(900);
    expect(value(families, "pcpd_requests_parsed_total", { shard: "1" })).toBe(240);
    const engine: [string, EngineKey][] = [
      ["pcpd_mappings_created_total", "created"],
      ["pcpd_mappings_refreshed_total", "refreshed"],
      ["pcpd_mappings_deleted_total", "deleted"],
      ["pcpd_mappings_expired_total", "expired"],
      ["pcpd_holds_released_total", "released"],
      ["pcpd_events_lost_total", "eventsLost"],
      ["pcpd_thirdparty_requesters_unrecorded_total", "requestersUnrecorded"],
    ];
    for (const [name, key] of engine) {
      expect(value(families, name, { shard: "0" }), name).toBe(Number(SHARD0.engine[key]));
      expect(value(families, name, { shard: "1" }), name).toBe(Number(SHARD1.engine[key]));
      expect(family(families, name).metrics, name).toHaveLength(2);
    }
  });

  it("PCP results by code name, NAT-PMP results by number, drops by reason; only codes that exist", async () => {
    const m = new Metrics();
    m.update(serverStats(SHARD0, SHARD1), { shardsUp: [true, true], epochs: [120, 45] });
    const { families } = await scrape(m);
    expect(byLabel(families, "pcpd_pcp_responses_total", "0", "result")).toEqual(
      zeros(PCP_RESULTS, { SUCCESS: 800, NOT_AUTHORIZED: 10, THIRD_PARTY_ID_UNKNOWN: 3 }),
    );
    expect(byLabel(families, "pcpd_pcp_responses_total", "1", "result")).toEqual(
      zeros(PCP_RESULTS, { SUCCESS: 200, NO_RESOURCES: 6, EXCESSIVE_REMOTE_PEERS: 1 }),
    );
    expect(byLabel(families, "pcpd_natpmp_responses_total", "0", "result")).toEqual(zeros(NATPMP_RESULTS, { "0": 50, "5": 2 }));
    expect(byLabel(families, "pcpd_natpmp_responses_total", "1", "result")).toEqual(zeros(NATPMP_RESULTS, { "0": 30, "3": 1 }));
    expect(byLabel(families, "pcpd_drops_total", "0", "reason")).toEqual(zeros(DROP_REASONS, { TOO_SHORT: 7, INTERFACE: 1 }));
    expect(byLabel(families, "pcpd_drops_total", "1", "reason")).toEqual(zeros(DROP_REASONS, { RESPONSE: 5, NATPMP_SILENT: 9 }));
    expect(family(families, "pcpd_pcp_responses_total").metrics).toHaveLength(2 * PCP_RESULTS.length);
    expect(family(families, "pcpd_natpmp_responses_total").metrics).toHaveLength(2 * NATPMP_RESULTS.length);
    expect(family(families, "pcpd_drops_total").metrics).toHaveLength(2 * DROP_REASONS.length);
  });

  it("gauges: tables, pool per address, Epoch and liveness per shard", async () => {
    const m = new Metrics();
    // The Epochs passed in are newer than those in the statistics and win; shard 2 is down.
    m.update(serverStats(SHARD0, SHARD1), { shardsUp: [true, true, false], epochs: [121, 46, 0] });
    const { families } = await scrape(m);
    const gauges: [string, EngineKey][] = [
      ["pcpd_mappings", "mappings"],
      ["pcpd_mappings_held", "held"],
      ["pcpd_subscribers", "subscribers"],
      ["pcpd_port_blocks_leased", "blocks"],
      ["pcpd_peers", "peers"],
      ["pcpd_filters", "filters"],
      ["pcpd_thirdparty_requesters_shared", "requestersShared"],
    ];
    for (const [name, key] of gauges) {
      expect(value(families, name, { shard: "0" }), name).toBe(Number(SHARD0.engine[key]));
      expect(value(families, name, { shard: "1" }), name).toBe(Number(SHARD1.engine[key]));
      expect(shardsOf(families, name), name).toEqual(["0", "1"]);
    }
    expect(byLabel(families, "pcpd_pool_free_blocks", "0", "address")).toEqual({ "192.0.2.1": 500, "2001:db8::1": 1000 });
    expect(byLabel(families, "pcpd_pool_free_blocks", "1", "address")).toEqual({ "192.0.2.1": 480, "198.51.100.7": 0 });
    expect(byLabel(families, "pcpd_pool_address_retired", "0", "address")).toEqual({ "192.0.2.1": 0, "2001:db8::1": 0 });
    expect(byLabel(families, "pcpd_pool_address_retired", "1", "address")).toEqual({ "192.0.2.1": 0, "198.51.100.7": 1 });
    expect(value(families, "pcpd_epoch_seconds", { shard: "0" })).toBe(121);
    expect(value(families, "pcpd_epoch_seconds", { shard: "1" })).toBe(46);
    expect(shardsOf(families, "pcpd_epoch_seconds")).toEqual(["0", "1"]); // a down shard has no Epoch
    expect(value(families, "pcpd_shard_up", { shard: "0" })).toBe(1);
    expect(value(families, "pcpd_shard_up", { shard: "1" })).toBe(1);
    expect(value(families, "pcpd_shard_up", { shard: "2" })).toBe(0);
    expect(family(families, "pcpd_shard_up").metrics).toHaveLength(3);
  });

  it("exports each shard's engine memory in huge pages (absent: 0)", async () => {
    const m = new Metrics();
    const stats = serverStats(SHARD0, SHARD1);
    stats.shards[1].hugePageBytes = 96 * 2 ** 20;
    m.update(stats, { shardsUp: [true, true] });
    const { families } = await scrape(m);
    expect(value(families, "pcpd_engine_huge_page_bytes", { shard: "0" })).toBe(0);
    expect(value(families, "pcpd_engine_huge_page_bytes", { shard: "1" })).toBe(96 * 2 ** 20);
  });

  it("without Epochs from the caller, the statistics' Epochs are exported", async () => {
    const m = new Metrics();
    m.update(serverStats(SHARD0, SHARD1), { shardsUp: [true, true] });
    const { families } = await scrape(m);
    expect(value(families, "pcpd_epoch_seconds", { shard: "0" })).toBe(120);
    expect(value(families, "pcpd_epoch_seconds", { shard: "1" })).toBe(45);
  });

  it("a restarted shard (counters went down, same thread) never makes an exported counter decrease", async () => {
    const m = new Metrics();
    m.update(serverStats(SHARD0, SHARD1), { shardsUp: [true, true], epochs: [120, 45] });
    const before = counterSamples((await scrape(m)).families);
    // Shard 0 moved on normally; shard 1 restarted: its engine counted again from 0.
    const shard0: ShardInput = {
      ...SHARD0,
      packets: 1300n,
      parsed: 1150n,
      pcp: { ...SHARD0.pcp, [W.RESULT_SUCCESS]: 1050n },
      engine: { ...SHARD0.engine, created: 800n },
    };
    const shard1: ShardInput = {
      ...SHARD1,
      epoch: 0,
      packets: 30n,
      parsed: 29n,
      // NAT-PMP SUCCESS is back at exactly its old raw value: still counted, it is a new incarnation.
      pcp: { [W.RESULT_SUCCESS]: 20n },
      natPmp: { [W.NATPMP_RESULT_SUCCESS]: 30n },
      drops: {},
      engine: {
        mappings: 3n,
        held: 0n,
        subscribers: 2n,
        blocks: 2n,
        peers: 0n,
        filters: 0n,
        created: 4n,
        refreshed: 0n,
        deleted: 1n,
        expired: 0n,
        released: 0n,
        eventsLost: 0n,
        requestersShared: 1n,
        requestersUnrecorded: 0n,
      },
    };
    m.update(serverStats(shard0, shard1), { shardsUp: [true, true], epochs: [130, 0] });
    const { families } = await scrape(m);
    const after = counterSamples(families);
    // Per shard, plus the process-wide pcpd_event_loop_stalls_total.
    expect(before.size).toBe(2 * (9 + PCP_RESULTS.length + NATPMP_RESULTS.length + DROP_REASONS.length) + 1);
    expect([...after.keys()].sort()).toEqual([...before.keys()].sort());
    for (const [key, v] of before) expect(after.get(key), key).toBeGreaterThanOrEqual(v);
    // Shard 0: the increase, not the sum of raw values.
    expect(value(families, "pcpd_packets_total", { shard: "0" })).toBe(1300);
    expect(value(families, "pcpd_pcp_responses_total", { shard: "0", result: "SUCCESS" })).toBe(1050);
    expect(value(families, "pcpd_mappings_created_total", { shard: "0" })).toBe(800);
    // Shard 1: what the old incarnation counted plus what the new one did.
    expect(value(families, "pcpd_packets_total", { shard: "1" })).toBe(250 + 30);
    expect(value(families, "pcpd_requests_parsed_total", { shard: "1" })).toBe(240 + 29);
    expect(value(families, "pcpd_pcp_responses_total", { shard: "1", result: "SUCCESS" })).toBe(200 + 20);
    expect(value(families, "pcpd_pcp_responses_total", { shard: "1", result: "NO_RESOURCES" })).toBe(6);
    expect(value(families, "pcpd_natpmp_responses_total", { shard: "1", result: "0" })).toBe(30 + 30);
    expect(value(families, "pcpd_drops_total", { shard: "1", reason: "NATPMP_SILENT" })).toBe(9);
    expect(value(families, "pcpd_mappings_created_total", { shard: "1" })).toBe(120 + 4);
    expect(value(families, "pcpd_events_lost_total", { shard: "1" })).toBe(2);
    expect(value(families, "pcpd_thirdparty_requesters_unrecorded_total", { shard: "1" })).toBe(17);
    // Gauges are the new incarnation's own.
    expect(value(families, "pcpd_mappings", { shard: "1" })).toBe(3);
    expect(value(families, "pcpd_epoch_seconds", { shard: "1" })).toBe(0);

    // The new incarnation goes on counting from where it is.
    m.update(serverStats(shard0, { ...shard1, packets: 50n }), { shardsUp: [true, true], epochs: [140, 10] });
    const third = (await scrape(m)).families;
    expect(value(third, "pcpd_packets_total", { shard: "1" })).toBe(250 + 50);
    expect(value(third, "pcpd_packets_total", { shard: "0" })).toBe(1300);
  });

  it("a shard on a new thread has restarted even if its counters already overtook the old ones", async () => {
    const restarted = new Metrics();
    const same = new Metrics();
    for (const m of [restarted, same]) m.update(serverStats(SHARD0, SHARD1), { shardsUp: [true, true], epochs: [120, 45] });
    restarted.update(serverStats(SHARD0, { ...SHARD1, threadId: 13, packets: 400n }), { shardsUp: [true, true], epochs: [120, 5] });
    same.update(serverStats(SHARD0, { ...SHARD1, packets: 400n }), { shardsUp: [true, true], epochs: [120, 50] });
    const r = (await scrape(restarted)).families;
    const s = (await scrape(same)).families;
    expect(value(r, "pcpd_packets_total", { shard: "1" })).toBe(250 + 400);
    expect(value(r, "pcpd_mappings_created_total", { shard: "1" })).toBe(120 + 120);
    expect(value(s, "pcpd_packets_total", { shard: "1" })).toBe(400);
    expect(value(s, "pcpd_mappings_created_total", { shard: "1" })).toBe(120);
    // Shard 0's thread did not change: it is not counted twice.
    expect(value(r, "pcpd_packets_total", { shard: "0" })).toBe(1000);
  });

  it("a shard missing from an update keeps its counters, loses its table and pool gauges, and is down", async () => {
    const m = new Metrics();
    m.update(serverStats(SHARD0, SHARD1), { shardsUp: [true, true], epochs: [120, 45] });
    m.update(serverStats(SHARD0), { shardsUp: [true, false], epochs: [125, 0] });
    const { families } = await scrape(m);
    expect(value(families, "pcpd_packets_total", { shard: "1" })).toBe(250);
    expect(value(families, "pcpd_pcp_responses_total", { shard: "1", result: "SUCCESS" })).toBe(200);
    for (const name of ["pcpd_mappings", "pcpd_subscribers", "pcpd_pool_free_blocks", "pcpd_pool_address_retired", "pcpd_epoch_seconds"]) {
      expect(shardsOf(families, name), name).toEqual(["0"]);
    }
    expect(value(families, "pcpd_shard_up", { shard: "1" })).toBe(0);
    expect(value(families, "pcpd_shard_up", { shard: "0" })).toBe(1);
    expect(value(families, "pcpd_epoch_seconds", { shard: "0" })).toBe(125);

    // It comes back on a new thread: its counters continue from where they were.
    m.update(serverStats(SHARD0, { ...SHARD1, threadId: 14, packets: 7n }), { shardsUp: [true, true], epochs: [130, 1] });
    const back = (await scrape(m)).families;
    expect(value(back, "pcpd_packets_total", { shard: "1" })).toBe(257);
    expect(value(back, "pcpd_mappings", { shard: "1" })).toBe(90);
  });

  it("has prom-client's default process metrics under their standard names, in its own registry", async () => {
    const m = new Metrics();
    const other = new Metrics(); // a second registry: no "already registered" clash
    m.update(serverStats(SHARD0), { shardsUp: [true], epochs: [1] });
    const { families } = await scrape(m);
    expect(family(families, "process_cpu_user_seconds_total").type).toBe("COUNTER");
    expect(family(families, "process_start_time_seconds").type).toBe("GAUGE");
    expect(family(families, "nodejs_heap_size_used_bytes").type).toBe("GAUGE");
    expect(family(families, "nodejs_eventloop_lag_seconds").type).toBe("GAUGE");
    expect(Number(family(families, "nodejs_heap_size_used_bytes").metrics[0].value)).toBeGreaterThan(0);
    expect(m.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(globalRegistry.getSingleMetric("pcpd_packets_total")).toBeUndefined();
    // The second instance has its own series: shard 0's counters were not fed to it.
    expect(family((await scrape(other)).families, "pcpd_packets_total").metrics).toHaveLength(0);
  });
});
