// Prometheus metrics of the daemon: the shards' engine and codec counters, their table
// gauges, pool usage, Epochs and liveness, plus prom-client's default process metrics, in
// a registry of its own (never prom-client's global one, so nothing else in the process
// can add to or clash with it). The control server calls update() with the latest
// statistics and serves render() on GET /metrics.
//
// Names. Every PCP metric is prefixed `pcpd_`; counters end in `_total`, the Epoch gauge
// in `_seconds`; per-shard series carry `shard="<index>"`. Result and drop labels are the
// names of the constants in src/wire.generated.ts without their prefix (RESULT_SUCCESS →
// result="SUCCESS", DROP_TOO_SHORT → reason="TOO_SHORT"); NAT-PMP results are labelled by
// their number (result="0".."5", RFC 6886 §3.5). Only codes that exist are exported: the
// engine keeps 32 PCP, 8 NAT-PMP and 8 drop slots, the unnamed ones are never written.
// DROP_NONE is not a drop and has no series.
//
// Default process metrics keep prom-client's standard names (process_cpu_seconds_total,
// process_resident_memory_bytes, nodejs_eventloop_lag_seconds, nodejs_heap_size_used_bytes,
// …, no prefix): they describe the process, not PCP, and the usual Node.js dashboards and
// alerts look for exactly those names. They are measured on the thread that renders (the
// main thread): CPU time and resident memory cover the whole process, heap, GC and event
// loop figures only that thread, not the engine workers.
//
// Counter resets. The engine's counters are absolute and live in a shard's WebAssembly
// memory, so they restart from 0 whenever the shard restarts (a dead or hung worker
// replaced, or an operator's Epoch reset, which replaces the thread). A Prometheus counter
// may only go down when the exporting process restarts; here the process keeps running,
// so the exported counters are prom-client Counters fed, per label set, with the increase
// since the previous update, and a shard restart is detected and bridged:
//   - restart = the shard answers from a different thread (threadId changes; the pool
//     always starts a restarted shard on a new thread, and thread ids are never reused in
//     a process) or any of its counters is below the value seen last time;
//   - on a restart every counter of that shard is taken to have started again from 0, so
//     the increase is the whole new value (not new − old, which would be wrong for a
//     counter that has already overtaken its old value);
//   - otherwise the increase is new − old.
// The exported counter is therefore the sum over the shard's incarnations and never goes
// backwards. What an old incarnation counted after the last update before it died is lost
// (nothing is left to read it from); rate() then reads slightly low, never negative. A
// shard missing from an update (down, restarting) keeps its counters at their last value.
// Epoch resets without a restart (renumbering) do not reset the counters and are not
// taken for restarts.
//
// Gauges describe the latest update only: they are cleared and set again each time, so a
// shard missing from the update (down or restarting) has no table or pool series (its
// table is gone; the replacement starts empty), pcpd_shard_up{shard} says 0, and a pool
// address that left the pool has no series any more.
import { LogMetrics } from "./log-metrics.js";
import type { LogStats } from "../logging/mapping-log.js";
import { Counter, Gauge, Registry, collectDefaultMetrics } from "prom-client";
import type { DataplaneStats } from "../dataplane/manager.js";
import type { HaStatus } from "../ha/types.js";
import type { ServerStats } from "../server/server.js";
import { ERRNO_CLASSES, type IoPath, type NativeStats } from "../io/native.js";

const IO_PATHS: IoPath[] = ["batched", "dgram"];
import type { ShardStats } from "../shard/tasks.js";
import { ALL_CONSTANTS } from "../wire.generated.js";
import { HaMetrics } from "./ha-metrics.js";
import type { LoopStallReading } from "../server/loop-stalls.js";

/** [code, name] of the constants `prefix`*, without the prefix, minus `skip`. */
function codeNames(prefix: string, skip: string[]): [number, string][] {
  return Object.entries(ALL_CONSTANTS)
    .filter(([name]) => name.startsWith(prefix) && !skip.includes(name))
    .map(([name, code]): [number, string] => [code, name.slice(prefix.length)])
    .sort((a, b) => a[0] - b[0]);
}

/** PCP result codes (RFC 6887 §7.4, RFC 7843 §4.1) → label value. */
export const PCP_RESULT_LABELS: readonly [number, string][] = codeNames("RESULT_", ["RESULT_CODE_LIMIT"]);
/** NAT-PMP result codes (RFC 6886 §3.5) → label value (the number). */
export const NATPMP_RESULT_LABELS: readonly [number, string][] = codeNames("NATPMP_RESULT_", ["NATPMP_RESULT_CODE_LIMIT"]).map(([code]) => [
  code,
  String(code),
]);
/** Drop reasons → label value. */
export const DROP_REASON_LABELS: readonly [number, string][] = codeNames("DROP_", ["DROP_NONE", "DROP_REASON_LIMIT"]);

/** Engine counters (ShardStats.engine keys) → exported counter. */
const ENGINE_COUNTERS = [
  ["created", "pcpd_mappings_created_total", "Mappings created (MAP, PEER and NAT-PMP requests, static mappings)."],
  ["refreshed", "pcpd_mappings_refreshed_total", "Mappings whose lifetime a request extended."],
  ["deleted", "pcpd_mappings_deleted_total", "Mappings ended other than by expiry (a request with lifetime 0, the operator)."],
  ["expired", "pcpd_mappings_expired_total", "Mappings whose lifetime ran out."],
  ["released", "pcpd_holds_released_total", "Hold-downs that ended, their external port free again."],
  ["eventsLost", "pcpd_events_lost_total", "Mapping events dropped because the engine's event ring was full."],
  [
    "requestersUnrecorded",
    "pcpd_thirdparty_requesters_unrecorded_total",
    "THIRD_PARTY requests whose requester found no room (the shared table and capacity.requesters full): their mapping gets no Mapping Update.",
  ],
] as const;

/** Engine gauges (ShardStats.engine keys) → exported gauge. */
const ENGINE_GAUGES = [
  ["mappings", "pcpd_mappings", "Live mappings (MAP, PEER-created and static)."],
  ["held", "pcpd_mappings_held", "External ports in hold-down after their mapping ended."],
  ["subscribers", "pcpd_subscribers", "Subscribers (internal hosts) holding port blocks or mappings."],
  ["blocks", "pcpd_port_blocks_leased", "Port blocks leased to subscribers."],
  ["peers", "pcpd_peers", "PEER records."],
  ["filters", "pcpd_filters", "FILTER option entries installed on mappings."],
  [
    "requestersShared",
    "pcpd_thirdparty_requesters_shared",
    "THIRD_PARTY requesters kept once for all their mappings (at most 254 per worker; beyond, capacity.requesters).",
  ],
] as const;

/**
 * Per-socket I/O counters (SocketIoStats keys, src/io/native.ts) → exported counter; the
 * errno-class families get an `errno` label. Label `socket` is the local address:port.
 */
const IO_COUNTERS = [
  ["received", "pcpd_io_datagrams_received_total", "Datagrams read from the socket."],
  ["sent", "pcpd_io_datagrams_sent_total", "Datagrams the kernel accepted for sending (replies and unsolicited messages)."],
  ["recvCalls", "pcpd_io_receive_calls_total", "recvmmsg calls that were made (batched path; received ÷ calls is the mean batch)."],
  ["truncated", "pcpd_io_truncated_total", "Datagrams longer than a slot (MSG_TRUNC): cut to its capacity, the engine drops them as too long."],
  [
    "rxqDrops",
    "pcpd_io_receive_queue_drops_total",
    "Datagrams the kernel dropped because the socket's receive queue was full (the socket's drop count: SO_MEMINFO on the batched path, /proc/net/udp on the dgram path).",
  ],
] as const satisfies readonly (readonly [keyof NativeStats, string, string])[];

interface ShardCounterState {
  threadId: number;
  /** Last raw value per counter key. */
  last: Map<string, bigint>;
}

interface RawCounter {
  counter: Counter<string>;
  labels: Record<string, string>;
  key: string;
  value: bigint;
}

export interface ShardInfoForMetrics {
  /** Per shard index: whether it is serving. */
  shardsUp: boolean[];
  /**
   * Per shard index: its Epoch in seconds (a non-finite or negative value = unknown).
   * Missing (or shorter than the shards): the Epoch in the shard's statistics is used.
   */
  epochs?: number[];
  /** The dataplane's state (absent: none configured). */
  dataplane?: DataplaneStats;
  /** Per shard index: its worker's threadId (server.threads(); absent: the one in its statistics). A change = a restarted shard. */
  threads?: (number | undefined)[];
  /** The packet I/O path the shards run on (RunningServer.io; docs/io.md). */
  io?: IoPath;
  /** The main thread's event-loop stalls since the previous update (RunningServer.loopStalls). */
  loop?: LoopStallReading;
  /** This node's HA status (absent: ha.enabled is false; the pcpd_ha_ series appear with the first one, ha-metrics.ts). */
  ha?: HaStatus;
  /** The mapping log's counters per sink (pcpd_log_*, log-metrics.ts; none while no sink is on). */
  logging?: LogStats;
}

export class Metrics {
  readonly registry = new Registry();

  private readonly packets: Counter<string>;
  private readonly parsed: Counter<string>;
  private readonly pcpResponses: Counter<string>;
  private readonly natPmpResponses: Counter<string>;
  private readonly drops: Counter<string>;
  private readonly engineCounters: [key: string, counter: Counter<string>][];
  private readonly engineGauges: [key: string, gauge: Gauge<string>][];
  private readonly poolFreeBlocks: Gauge<string>;
  private readonly poolRetired: Gauge<string>;
  private readonly epoch: Gauge<string>;
  private readonly shardUp: Gauge<string>;
  private readonly hugePages: Gauge<string>;
  private readonly shardState = new Map<number, ShardCounterState>();
  private readonly persistFailing: Gauge<string>;
  private readonly persistBacklog: Gauge<string>;
  private readonly persistWriteErrors: Counter<string>;
  private readonly persistDropped: Counter<string>;
  private readonly dataplaneUp: Gauge<string>;
  private readonly dataplaneInstalled: Gauge<string>;
  private readonly dataplanePending: Gauge<string>;
  private readonly dataplaneBacklog: Gauge<string>;
  private readonly dataplaneCounters: [
    key: "transactions" | "operations" | "failures" | "reconciliations" | "backlogOverflows" | "activityReads" | "activityQueries",
    counter: Counter<string>,
  ][];
  private readonly dataplaneLast = new Map<string, number>();
  private ha?: HaMetrics;
  private readonly ioPath: Gauge<string>;
  private readonly ioCounters: [key: keyof NativeStats, counter: Counter<string>][];
  private readonly ioRecvErrors: Counter<string>;
  private readonly ioUnsent: Counter<string>;
  private logging?: LogMetrics;
  private readonly loopDelayMax: Gauge<string>;
  private readonly loopStalls: Counter<string>;
  private loopStallsLast = 0;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    const counter = (name: string, help: string, labelNames: string[] = []) => new Counter({ name, help, labelNames: ["shard", ...labelNames], registers });
    const gauge = (name: string, help: string, labelNames: string[] = []) => new Gauge({ name, help, labelNames: ["shard", ...labelNames], registers });
    this.packets = counter("pcpd_packets_total", "Datagrams handed to the engine (PCP and NAT-PMP, dropped ones included).");
    this.parsed = counter("pcpd_requests_parsed_total", "Valid requests the codec handed on to the mapping engine.");
    this.pcpResponses = counter("pcpd_pcp_responses_total", "PCP responses sent, by result code (RFC 6887 §7.4).", ["result"]);
    this.natPmpResponses = counter("pcpd_natpmp_responses_total", "NAT-PMP responses sent, by result code (RFC 6886 §3.5).", ["result"]);
    this.drops = counter("pcpd_drops_total", "Datagrams dropped without a reply, by reason.", ["reason"]);
    this.engineCounters = ENGINE_COUNTERS.map(([key, name, help]) => [key, counter(name, help)]);
    this.engineGauges = ENGINE_GAUGES.map(([key, name, help]) => [key, gauge(name, help)]);
    this.poolFreeBlocks = gauge("pcpd_pool_free_blocks", "Port blocks of a pool address still free in the shard's slice.", ["address"]);
    this.poolRetired = gauge("pcpd_pool_address_retired", "1 if the pool address is retired (being renumbered away), else 0.", ["address"]);
    this.epoch = gauge("pcpd_epoch_seconds", "The shard's PCP/NAT-PMP Epoch: seconds since it last reset (RFC 6887 §8.5).");
    this.shardUp = gauge("pcpd_shard_up", "1 if the shard is serving, else 0.");
    this.hugePages = gauge(
      "pcpd_engine_huge_page_bytes",
      "Bytes of the shard engine's memory backed by transparent huge pages, measured when its tables were made (engine.hugePages; 0: 4 KiB pages).",
    );
    this.persistFailing = gauge(
      "pcpd_persistence_degraded",
      "1 while the shard's persistence is failing (writes fail, records kept and retried) or recovering (catch-up snapshot not yet on disk), else 0.",
    );
    this.persistBacklog = gauge("pcpd_persistence_backlog_bytes", "Journal record bytes waiting for the disk.");
    this.persistWriteErrors = counter("pcpd_persistence_write_errors_total", "Journal and snapshot writes that failed (each retried).");
    this.persistDropped = counter(
      "pcpd_persistence_dropped_bytes_total",
      "Journal record bytes let go over persistence.maxBacklogBytes (a snapshot replaces them).",
    );
    this.ioPath = new Gauge({
      name: "pcpd_io_path",
      help: "1 for the packet I/O path the shards run on (batched: recvmmsg/sendmmsg addon; dgram: Node's dgram fallback), 0 for the other.",
      labelNames: ["path"],
      registers,
    });
    this.ioCounters = IO_COUNTERS.map(([key, name, help]) => [key, counter(name, help, ["socket"])]);
    this.ioRecvErrors = counter(
      "pcpd_io_receive_errors_total",
      "Receive calls that failed, by errno class (EAGAIN, ENOBUFS, EMSGSIZE, ECONNREFUSED: a queued ICMP error, other).",
      ["socket", "errno"],
    );
    this.ioUnsent = counter(
      "pcpd_io_unsent_total",
      "Replies and messages the kernel refused, by errno class (EAGAIN: send buffer full, the rest of the batch dropped; ENOBUFS; EMSGSIZE; ECONNREFUSED; other).",
      ["socket", "errno"],
    );
    // Main-thread stalls against systemd's watchdog (src/server/loop-stalls.ts).
    this.loopDelayMax = new Gauge({
      name: "pcpd_event_loop_delay_max_seconds",
      help: "The main thread's longest event-loop delay since the previous scrape (systemd's watchdog is fed from this thread: one reaching half WatchdogSec gets the server killed).",
      registers,
    });
    this.loopStalls = new Counter({
      name: "pcpd_event_loop_stalls_total",
      help: "Main-thread event-loop stalls of at least watchdog.stallWarnFraction of the watchdog interval (each also logged as a warning).",
      registers,
    });
    const plain = { registers, labelNames: ["backend"] };
    this.dataplaneUp = new Gauge({ name: "pcpd_dataplane_up", help: "1 while the dataplane is programmed (else requests get NETWORK_FAILURE).", ...plain });
    this.dataplaneInstalled = new Gauge({ name: "pcpd_dataplane_mappings", help: "Mappings installed in the dataplane.", ...plain });
    this.dataplanePending = new Gauge({ name: "pcpd_dataplane_pending_keys", help: "External keys changed and not yet applied to the dataplane.", ...plain });
    this.dataplaneBacklog = new Gauge({
      name: "pcpd_dataplane_backlog_bytes",
      help: "Bytes of changes received from the shards and not yet decoded (growing: the dataplane cannot keep up).",
      ...plain,
    });
    this.dataplaneCounters = [
      ["transactions", new Counter({ name: "pcpd_dataplane_transactions_total", help: "Dataplane transactions applied.", ...plain })],
      ["operations", new Counter({ name: "pcpd_dataplane_operations_total", help: "Map and unmap operations applied.", ...plain })],
      [
        "failures",
        new Counter({ name: "pcpd_dataplane_failures_total", help: "Dataplane transactions (or reconciliations) that failed and were retried.", ...plain }),
      ],
      [
        "reconciliations",
        new Counter({
          name: "pcpd_dataplane_reconciliations_total",
          help: "Loads of the dataplane from the mapping tables: after a reset, or compared in place (after a backlog overflow).",
          ...plain,
        }),
      ],
      [
        "backlogOverflows",
        new Counter({
          name: "pcpd_dataplane_backlog_overflows_total",
          help: "Backlogs of changes let go over dataplane.maxBacklogBytes (each followed by a resynchronisation from the tables).",
          ...plain,
        }),
      ],
      [
        "activityReads",
        new Counter({ name: "pcpd_dataplane_activity_reads_total", help: "Reads of the dataplane's traffic activity (one per batch of decisions).", ...plain }),
      ],
      [
        "activityQueries",
        new Counter({ name: "pcpd_dataplane_activity_queries_total", help: "Mappings whose traffic activity a decision asked for.", ...plain }),
      ],
    ];
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** Sets every metric from the latest statistics (see the file comment for the rules). */
  update(stats: ServerStats, info: ShardInfoForMetrics): void {
    for (const [, g] of this.engineGauges) g.reset();
    this.poolFreeBlocks.reset();
    this.poolRetired.reset();
    this.epoch.reset();
    this.shardUp.reset();
    this.hugePages.reset();
    this.persistFailing.reset();
    this.persistBacklog.reset();
    const reported = new Map<number, ShardStats>();
    for (const s of stats.shards) {
      reported.set(s.shard, s);
      this.updateCounters(s);
      const shard = String(s.shard);
      for (const [key, g] of this.engineGauges) {
        const v = s.engine[key];
        if (v !== undefined) g.set({ shard }, Number(v));
      }
      this.hugePages.set({ shard }, s.hugePageBytes ?? 0);
      if (s.persistence) {
        this.persistFailing.set({ shard }, s.persistence.state === "ok" ? 0 : 1);
        this.persistBacklog.set({ shard }, s.persistence.backlogBytes);
      }
      for (const p of s.pool) {
        this.poolFreeBlocks.set({ shard, address: p.address }, p.freeBlocks);
        this.poolRetired.set({ shard, address: p.address }, p.retired ? 1 : 0);
      }
    }
    this.updateDataplane(info.dataplane);
    if (info.loop) {
      this.loopDelayMax.set(info.loop.maxDelaySeconds);
      this.loopStalls.inc(info.loop.stalls - this.loopStallsLast);
      this.loopStallsLast = info.loop.stalls;
    }
    if (info.io) for (const path of IO_PATHS) this.ioPath.set({ path }, path === info.io ? 1 : 0);
    if (info.logging && Object.keys(info.logging).length > 0) (this.logging ??= new LogMetrics(this.registry)).update(info.logging);
    if (info.ha) {
      this.ha ??= new HaMetrics(this.registry);
      const threads = info.threads ?? [];
      if (!info.threads) for (const s of stats.shards) threads[s.shard] = s.threadId;
      this.ha.update(info.ha, threads);
    }
    const epochs = info.epochs ?? [];
    const shards = Math.max(info.shardsUp.length, epochs.length, ...stats.shards.map((s) => s.shard + 1));
    for (let i = 0; i < shards; i++) {
      const up = info.shardsUp[i] ?? reported.has(i);
      this.shardUp.set({ shard: String(i) }, up ? 1 : 0);
      const epoch = epochs[i] ?? reported.get(i)?.epoch;
      if (up && epoch !== undefined && Number.isFinite(epoch) && epoch >= 0) this.epoch.set({ shard: String(i) }, epoch);
    }
  }

  private updateDataplane(d: DataplaneStats | undefined): void {
    if (!d) return;
    const labels = { backend: d.backend };
    this.dataplaneUp.set(labels, d.up ? 1 : 0);
    this.dataplaneInstalled.set(labels, d.installed);
    this.dataplanePending.set(labels, d.pendingKeys);
    this.dataplaneBacklog.set(labels, d.backlogBytes);
    for (const [key, counter] of this.dataplaneCounters) {
      const value = d[key] ?? 0;
      counter.inc(labels, value - (this.dataplaneLast.get(key) ?? 0));
      this.dataplaneLast.set(key, value);
    }
  }

  /** The Prometheus text exposition (format 0.0.4) of every metric. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  private rawCounters(s: ShardStats): RawCounter[] {
    const shard = String(s.shard);
    const out: RawCounter[] = [
      { counter: this.packets, labels: { shard }, key: "packets", value: s.codec.packets },
      { counter: this.parsed, labels: { shard }, key: "parsed", value: s.codec.parsed },
    ];
    const indexed = (counter: Counter<string>, family: string, label: string, names: readonly [number, string][], values: bigint[]) => {
      for (const [code, name] of names) {
        const value = values[code];
        if (value !== undefined) out.push({ counter, labels: { shard, [label]: name }, key: `${family}/${name}`, value });
      }
    };
    indexed(this.pcpResponses, "pcp", "result", PCP_RESULT_LABELS, s.codec.pcpResults);
    indexed(this.natPmpResponses, "natpmp", "result", NATPMP_RESULT_LABELS, s.codec.natPmpResults);
    indexed(this.drops, "drop", "reason", DROP_REASON_LABELS, s.codec.drops);
    for (const [key, counter] of this.engineCounters) {
      const value = s.engine[key];
      if (value !== undefined) out.push({ counter, labels: { shard }, key, value });
    }
    for (const { socket, counters } of s.io ?? []) {
      const add = (counter: Counter<string>, key: keyof NativeStats, labels: Record<string, string>) => {
        const value = counters[key];
        if (value !== undefined) out.push({ counter, labels: { shard, socket, ...labels }, key: `io/${socket}/${key}`, value: BigInt(value) });
      };
      for (const [key, counter] of this.ioCounters) add(counter, key, {});
      for (const errno of ERRNO_CLASSES) {
        add(this.ioRecvErrors, `recvErrors.${errno}`, { errno });
        add(this.ioUnsent, `unsent.${errno}`, { errno });
      }
    }
    if (s.persistence) {
      out.push({ counter: this.persistWriteErrors, labels: { shard }, key: "persistWriteErrors", value: BigInt(s.persistence.writeErrors) });
      out.push({ counter: this.persistDropped, labels: { shard }, key: "persistDropped", value: BigInt(s.persistence.droppedBytes) });
    }
    return out;
  }

  private updateCounters(s: ShardStats): void {
    const raw = this.rawCounters(s);
    const previous = this.shardState.get(s.shard);
    const restarted = previous !== undefined && (previous.threadId !== s.threadId || raw.some((r) => r.value < (previous.last.get(r.key) ?? 0n)));
    // A counter missing from this report keeps its last value (unless the shard restarted).
    const last = new Map<string, bigint>(previous && !restarted ? previous.last : []);
    for (const r of raw) {
      const before = previous && !restarted ? (previous.last.get(r.key) ?? 0n) : 0n;
      r.counter.inc(r.labels, Number(r.value - before));
      last.set(r.key, r.value);
    }
    this.shardState.set(s.shard, { threadId: s.threadId, last });
  }
}
