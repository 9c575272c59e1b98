// The daemon's assembly: configuration → a pool of engine workers, one shard each, every
// worker owning the sockets of its listen addresses (listen address i → shard i mod
// workers). A subscriber's mappings live in the shard behind the server address it talks
// to; each shard has its own Epoch (RFC 6887 §8.5 allows per-scope epochs).
import { availableParallelism, totalmem } from "node:os";
import type { Logger } from "pino";
import { poolAddresses, workerCount, type Config } from "../config/schema.js";
import { poolReloadIssues, shardGroups, warnings, wildcardIssues } from "../config/checks.js";
import { ConfigError } from "../errors.js";
import * as W from "../wire.generated.js";
import { announceTargets } from "../shard/announce.js";
import { ShardPool } from "./shard-pool.js";
import type { EventsMessage, RunTask, ShardSpec, ShardStats, TaskKind, TaskRequest, TaskResult } from "../shard/tasks.js";
import { StatsBoard } from "../shard/stats-board.js";
import { systemTime, type TestTime } from "../core/clock.js";
import { lockDirectory } from "../persist/lock.js";
import { dropShardFiles, shardDirectory } from "../persist/store.js";
import { DataplaneManager, type DataplaneStats } from "../dataplane/manager.js";
import { NftablesBackend, type NftOptions } from "../dataplane/nftables.js";
import { EventStreamBackend } from "../dataplane/event-stream.js";
import { syncMirrors } from "./static-mirrors.js";
import { haNames } from "../replication/nats.js";
import { HaManager } from "../ha/manager.js";
import { ConnectionState, connectHa } from "../ha/connection.js";
import type { HaController } from "../ha/types.js";
import { ioChoice, loadAddon, type IoPath } from "../io/native.js";
import { ReusePortGroups } from "./reuseport.js";
import { logDatagrams } from "./log-datagrams.js";
import { MappingLog, type LogStats } from "../logging/mapping-log.js";
import { LoopStalls, type LoopStallReading } from "./loop-stalls.js";

export interface ServerStats {
  /** Engine counters summed over the shards. */
  engine: Record<string, bigint>;
  shards: ShardStats[];
}

export interface RunningServer {
  addresses: { address: string; port: number }[];
  /** Listen endpoints of each shard. */
  shardEndpoints: { address: string; port: number }[][];
  /** The configuration in force (restart-only settings as started). */
  config(): Config;
  /** Runs a task on one shard's worker, or on all of them (shard order); answers typed by src/shard/tasks.ts. */
  task: RunTask;
  everyShard<K extends TaskKind>(task: TaskRequest<K>): Promise<TaskResult<K>[]>;
  /** The shard that may lease `port` (blocks are split between shards by number). */
  shardOfExternalPort(port: number): number;
  /** Mapping events of every shard go to `listener` while streaming is on. */
  onEvents(listener: (m: EventsMessage) => void): void;
  /** Streaming on while some full-stream subscriber wants events of `kinds` (a bit per EVENT_* code; default all). */
  setEvents(on: boolean, kinds?: number): Promise<void>;
  /** The mapping log's counters per sink (logging.*; empty when no sink is on). */
  logStats(): LogStats;
  /** threadId of each shard's worker (undefined while it restarts). */
  threads(): (number | undefined)[];
  /** Every shard's counters as of its last batch or task (shared memory: no task runs). */
  stats(): ServerStats;
  /** Each shard's Epoch now (shared memory). */
  epochs(): number[];
  /** High availability (ha.enabled): status and switchover of the shard groups; undefined otherwise. */
  ha?: HaController;
  /** The dataplane's state (undefined: dataplane.backend "none"). */
  dataplane(): DataplaneStats | undefined;
  /** The event-stream backend's consumers (dataplane.backend "events"). */
  dataplaneStream?: EventStreamBackend;
  /**
   * The operator's Epoch reset of one shard: stopped, its persisted files removed, started
   * again empty at Epoch 0, the reset announced; resolves with the new Epoch.
   */
  resetShard(shard: number): Promise<number>;
  /** Ends one shard's worker thread, as the watchdog does to a hung one: it restarts on a new thread (from its files with persistence on). */
  replaceWorker(shard: number): Promise<void>;
  /**
   * Runs a change of static mappings (add, remove, a subscriber's deletion) with no mirror
   * re-synchronisation interleaved: one lists the owners' statics, then lays mirrors down,
   * and a change between the two would be undone (or a removed static mirrored again).
   */
  staticChange<T>(change: () => Promise<T>): Promise<T>;
  /**
   * Applies what can change without losing state (switches, lifetimes, quotas, nonce
   * policy, parity, prefixes, rate limits, log level, pool addresses: added ones serve at
   * once, removed ones are renumbered with Mapping Updates); returns the changed settings
   * that need a restart (RESTART_PATHS), which are left as they were.
   */
  reload(next: Config): Promise<string[]>;
  stop(): Promise<void>;
  /** The packet I/O path the shards run on, and why (src/io/native.ts, docs/io.md). */
  io: { path: IoPath; reason: string };
  /** The main thread's event-loop stalls: the worst delay since the previous call, the stalls over the warning threshold (src/server/loop-stalls.ts). */
  loopStalls?(): LoopStallReading;
}

/** Settings fixed for the life of the process (a changed value is reported, not applied). */
const RESTART_PATHS = [
  "listen",
  "workers",
  "capacity",
  "protocols",
  "announce",
  "persistence",
  "dataplane",
  "logging",
  "pcp.thirdPartyId",
  "pool.portMin",
  "pool.blockSize",
  "pool.maxBlocksPerSubscriber",
  "pool.excludedPorts",
  "watchdog",
];

const valueAt = (c: unknown, path: string): unknown => path.split(".").reduce((o, k) => (o as Record<string, unknown>)[k], c);

/** `next` with every restart-only setting kept as in `current`. */
function reloadable(next: Config, current: Config): Config {
  const out = structuredClone(next);
  for (const path of RESTART_PATHS) {
    const keys = path.split(".");
    const parent = keys.slice(0, -1).reduce((o, k) => o[k] as Record<string, unknown>, out as unknown as Record<string, unknown>);
    parent[keys.at(-1)!] = structuredClone(valueAt(current, path));
  }
  return out;
}

function sum(shards: ShardStats[]): Record<string, bigint> {
  const total: Record<string, bigint> = {};
  for (const s of shards) for (const [k, v] of Object.entries(s.engine)) total[k] = (total[k] ?? 0n) + v;
  return total;
}

export interface ServerOptions {
  /**
   * Test only: every shard takes engine time, Epoch and wall-clock time from this clock,
   * which the test advances instead of sleeping (src/core/clock.ts). Absent: the system's.
   */
  testClock?: TestTime;
}

export async function startServer(
  c: Config,
  log: Logger,
  onShardLost?: (shard: number, error: Error) => void,
  options: ServerOptions = {},
): Promise<RunningServer> {
  const time = options.testClock ?? systemTime;
  const shards = workerCount(c, availableParallelism());
  const targets = announceTargets(c.announce.multicast, c.listen.addresses);
  const seed = BigInt.asUintN(64, (BigInt(Date.now()) * 0x9e3779b97f4a7c15n) ^ BigInt(process.pid));
  const specs: ShardSpec[] = Array.from({ length: shards }, (_, shard) => {
    const addresses = c.listen.addresses.filter((_, i) => i % shards === shard);
    return {
      shard,
      shards,
      endpoints: addresses.map((address) => ({ address, port: c.listen.port })),
      announce: targets.filter((t) => addresses.includes(t.source)),
      config: c,
      seed: BigInt.asUintN(64, seed + BigInt(shard)),
      board: StatsBoard.allocate(),
      testClock: options.testClock?.buffer,
    };
  });
  // Packet I/O (docs/io.md): said once, here; listen.reusePort binds the shared sockets.
  const io = ioChoice();
  log.info({ io: io.path, reason: io.reason }, `packet I/O on the ${io.path} path`);
  const wildcards = io.path === "dgram" ? wildcardIssues(c.listen.addresses) : [];
  if (wildcards.length > 0) throw new ConfigError(wildcards.map(([i, m]) => `listen.addresses.${i}: ${m} (${io.reason})`));
  let shared: ReusePortGroups | undefined;
  if (c.listen.reusePort && !c.ha.enabled) {
    if (io.addon) {
      shared = ReusePortGroups.open(io.addon, c.listen.addresses, c.listen.port, shards, c.listen.receiveBuffer);
      for (const spec of specs) {
        spec.endpoints = shared.endpoints(spec.shard);
        // Every shard announces its own Epoch resets; shard 0 the whole server's (docs/io.md).
        spec.announce = targets;
        spec.announceFollows = spec.shard !== 0;
      }
    } else log.warn({ reason: io.reason }, "listen.reusePort needs the batched path: one worker per address instead");
  }
  const boards = specs.map((spec) => new StatsBoard(spec.board));
  for (const warning of warnings(c, shards, totalmem())) log.warn(warning);
  // HA (docs/ha.md, src/ha/manager.ts): every shard starts as a standby of its group's stream.
  const groups = c.ha.enabled ? shardGroups(c, shards) : [];
  const gates = specs.map(() => new SharedArrayBuffer(8));
  const { nc, kv } = c.ha.enabled ? await connectHa(c, groups, log) : { nc: undefined, kv: undefined };
  for (const g of groups)
    for (const shard of g.shards)
      specs[shard].ha = {
        group: g.name,
        node: c.ha.node,
        stream: haNames.stream(c.ha.cluster, g.name),
        subject: haNames.subject(c.ha.cluster, g.name, shard),
        gate: gates[shard],
      };
  const unlock = c.persistence.enabled ? lockDirectory(c.persistence.directory) : () => undefined;
  // From before the shards start: a restore or reconciliation that blocked this thread is seen too.
  const stalls = new LoopStalls(c.watchdog, log);
  const pool = new ShardPool(specs, log, onShardLost ?? (() => undefined));
  // Mapping and port-block logs (src/logging/, docs/logging.md); logging.* needs a restart.
  // Listening before the shards start: a logged shard streams events from its first request.
  const mappingLog = new MappingLog(c.logging, { onEvents: (l) => pool.onEvents(l), setEvents: (on, who) => pool.setEvents(on, who) }, log, logDatagrams());
  let started;
  try {
    started = await pool.start();
    await mappingLog.start();
  } catch (e) {
    await mappingLog.stop();
    await pool.stop();
    shared?.close();
    await nc?.close();
    unlock();
    stalls.stop();
    throw e;
  }
  let dataplane: DataplaneManager | undefined;
  let stream: EventStreamBackend | undefined;
  if (c.dataplane.backend !== "none") {
    stream = c.dataplane.backend === "events" ? new EventStreamBackend(c.dataplane.activity.requestWaitMs) : undefined;
    const activity = c.dataplane.activity.enabled ? c.dataplane.activity : undefined;
    const subscribers6 = c.subscribers.filter((p) => p.includes(":"));
    let readElements: NftOptions["readElements"];
    if (!stream && activity) {
      // Activity read element by element over netlink (O(queries)), else by listing the set.
      const addon = loadAddon(process.env, "nftElements");
      if (typeof addon !== "string") readElements = addon.nftElements;
      else log.warn({ reason: addon }, "dataplane activity: nft lists the whole active set for every read (about 40 µs per element)");
    }
    const backend = stream ?? new NftablesBackend({ table: c.dataplane.table, activity, subscribers6, readElements });
    const dp = new DataplaneManager(
      backend,
      {
        shards,
        exportTable: (shard, from) => pool.run(shard, { kind: "exportTable", from }),
        setDown: async (down) => void (await pool.all({ kind: "dataplane", down })),
      },
      c.dataplane,
      log,
    );
    dataplane = dp;
    pool.onDataplane = (m) => dp.ingest(m.bytes);
    // Traffic-driven lifetimes: a shard's waiting decisions, answered from the dataplane
    // (a failed read answers nothing: the shard's wait runs out and it decides without).
    pool.onActivity = (m) =>
      void dp
        .activity(m.queries)
        .then((remaining) => pool.run(m.shard, { kind: "activity", id: m.id, remaining }))
        .catch((e: Error) => log.warn({ shard: m.shard, queries: m.queries.length, error: e.message }, "dataplane activity not read"));
    pool.onRestarted = () => dp.requestReconcile(); // the new thread starts down, with its restored table
    if (stream) stream.onJoin = () => dp.requestReconcile(); // a new consumer starts from a reset
    await dp.start();
  }
  // Mirrors of the static mappings on the other shards (src/server/static-mirrors.ts):
  // laid down from the owners' restored records now, and again when a shard restarts.
  let statics: Promise<unknown> = Promise.resolve();
  const staticChange = <T>(change: () => Promise<T>): Promise<T> => {
    const done = statics.then(change);
    statics = done.catch(() => undefined);
    return done;
  };
  const resyncMirrors = () =>
    staticChange(() => syncMirrors((shard, task) => pool.run(shard, task), shards)).catch((e: Error) =>
      log.error({ error: e.message }, "static mappings not mirrored on every shard"),
    );
  const reconcile = pool.onRestarted;
  pool.onRestarted = (shard) => {
    reconcile(shard);
    void resyncMirrors();
  };
  await resyncMirrors();
  let ha: HaManager | undefined;
  let stopping = false;
  if (nc && kv) {
    const manager = new HaManager({
      config: c,
      groups,
      kv,
      connection: new ConnectionState(nc, (state) => stopping || log.warn({ nats: state }, `ha: NATS ${state}`)),
      gates,
      shards: { run: (shard, task) => pool.run(shard, task), replace: (shard) => pool.replace(shard) },
      time,
      log,
      reconcile: () => dataplane?.requestReconcile(),
    });
    ha = manager;
    pool.onHaFenced = (m) => manager.fenced(m);
    const restarted = pool.onRestarted;
    pool.onRestarted = (shard) => {
      restarted(shard);
      manager.shardRestarted(shard);
    };
    try {
      await manager.start();
    } catch (e) {
      await manager.stop();
      await mappingLog.stop();
      await dataplane?.close();
      await pool.stop();
      await nc.close();
      stalls.stop();
      throw e;
    }
  }
  // In HA mode a standby shard binds nothing: the configured endpoints (a fixed port) are
  // what its group serves once this node is active for it.
  const shardEndpoints = ha ? specs.map((s) => s.endpoints) : started.map((s) => s.endpoints);
  // One entry per address:port (with listen.reusePort every shard serves every address).
  const addresses = [...new Map(shardEndpoints.flat().map(({ address, port }) => [`${address}|${port}`, { address, port }])).values()];
  if (ha) {
    const active = new Set(ha.activeGroups());
    const served = groups.filter((g) => active.has(g.name));
    log.info(
      {
        listen: served.flatMap((g) => g.shards.flatMap((s) => specs[s].endpoints)),
        standby: groups.filter((g) => !active.has(g.name)).flatMap((g) => g.addresses),
        ha: { node: c.ha.node, active: served.map((g) => g.name), standby: groups.filter((g) => !active.has(g.name)).map((g) => g.name) },
        workers: shards,
        natPmp: c.natPmp,
      },
      "pcp server listening",
    );
  } else log.info({ listen: addresses, workers: shards, natPmp: c.natPmp }, "pcp server listening");
  let current = c;
  return {
    addresses,
    shardEndpoints,
    ha,
    config: () => current,
    task: (shard, task) => pool.run(shard, task),
    everyShard: (task) => pool.all(task),
    shardOfExternalPort: (port) => (port < c.pool.portMin ? 0 : Math.floor((port - c.pool.portMin) / c.pool.blockSize) % shards),
    onEvents: (listener) => pool.onEvents(listener),
    setEvents: (on, kinds) => pool.setEvents(on, "control", kinds),
    logStats: () => mappingLog.stats(),
    threads: () => pool.threads(),
    replaceWorker: (shard) => pool.replace(shard),
    staticChange,
    async resetShard(shard) {
      const dir = c.persistence.enabled ? shardDirectory(c.persistence.directory, shard, shards) : undefined;
      log.warn(
        { shard, epochBefore: boards[shard].read(time.monotonicNs()).epoch, dropping: dir ?? "(persistence off)" },
        "epoch reset by the operator: the shard restarts empty at epoch 0 and announces it",
      );
      // Removed while the shard is stopped (nothing journals there); it starts with no files.
      const epoch = await pool.resetEpoch(shard, async () => {
        if (dir) await dropShardFiles(dir);
      });
      log.info({ shard, epoch }, "epoch reset by the operator done");
      return epoch;
    },
    stats() {
      const now = time.monotonicNs();
      const list = boards.map((b, shard): ShardStats => ({ shard, ...b.read(now) }));
      return { engine: sum(list), shards: list };
    },
    epochs: () => {
      const now = time.monotonicNs();
      return boards.map((b) => b.read(now).epoch);
    },
    dataplane: () => dataplane?.stats(),
    dataplaneStream: stream,
    async reload(next) {
      // Everything is checked before anything changes: a refused reload leaves all as it was.
      const engine = boards.map((b) => b.read(time.monotonicNs()).pool).reduce((a, b) => (b.length > a.length ? b : a));
      const refused = poolReloadIssues(engine, poolAddresses(next.pool.addresses), W.POOL_MAX_ADDRESSES);
      if (refused.length > 0) throw new ConfigError(refused);
      const restart = RESTART_PATHS.filter((p) => JSON.stringify(valueAt(next, p)) !== JSON.stringify(valueAt(current, p)));
      current = reloadable(next, current);
      pool.updateConfig(current);
      await pool.all({ kind: "reload", config: current });
      log.level = next.log.level;
      log.info({ restartNeededFor: restart }, "configuration reloaded");
      return restart;
    },
    io: { path: io.path, reason: io.reason },
    loopStalls: () => stalls.read(),
    async stop() {
      stopping = true;
      // HA first: no takeover starts while the shards stop; the gates close and the release hooks run (src/ha/manager.ts stop).
      await ha?.stop();
      await dataplane?.close();
      await mappingLog.stop();
      const final = await pool.stop();
      shared?.close();
      await nc?.close();
      unlock();
      stalls.stop();
      log.info({ stats: Object.fromEntries(Object.entries(sum(final)).map(([k, v]) => [k, Number(v)])) }, "pcp server stopped");
    },
  };
}
