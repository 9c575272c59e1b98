// Engine worker (a piscina thread): owns one shard — a packet engine holding the mappings
// of the subscribers that talk to this worker's listen addresses, a slice of every pool
// address's port blocks — and the UDP sockets of those addresses, so a datagram is read,
// served and answered on one thread (DESIGN.md §3: the fastest layout measured). Its
// Epoch starts at 0 when the shard starts: a replacement worker's shard begins empty, so
// the reset is the truth, and it is announced (RFC 6887 §8.5, §14.1.3).
// Tasks arrive pinned to this worker by the pool's balancer (src/server/shard-pool.ts).
import { parentPort, threadId } from "node:worker_threads";
import { isIPv6 } from "node:net";
import { pino, type Logger } from "pino";
import { decodeRecords, PacketEngine, recordKinds, type CodecStats, type MappingEvent, type MappingRecords, type PoolAddress } from "../engine/packet-engine.js";
import { UdpListener, type Endpoint } from "../io/udp-listener.js";
import type { Config } from "../config/schema.js";
import { ErrorCodes, PcpdError } from "../errors.js";
import { MonotonicClock } from "./clock.js";
import { Announcer, type AnnounceTarget } from "./announce.js";
import { MappingUpdater } from "./mapping-update.js";
import { classifier, limiterFor } from "./policy.js";
import { poolAddresses } from "../config/schema.js";
import { StatsBoard } from "./stats-board.js";
import { ShardStore, wallSeconds, type PersistenceStatus, type RestoreReport } from "../persist/store.js";
import * as W from "../wire.generated.js";
import type { StaticEntry } from "./static-mirrors.js";

/** Mappings moved per event-loop turn while renumbering, so requests keep being served. */
const REHOME_CHUNK = 2000;

export interface ShardSpec {
  shard: number;
  shards: number;
  endpoints: Endpoint[];
  announce: AnnounceTarget[];
  config: Config;
  seed: bigint;
  /** The shard's counters for the main thread (src/server/stats-board.ts); kept across restarts. */
  board: SharedArrayBuffer;
}

/** Which mappings a listing or an event subscription wants (every field optional). */
export interface MappingSelector {
  internalAddress?: string;
  externalAddress?: string;
  protocol?: number;
  kind?: "dynamic" | "static" | "held";
}

export type ShardTask =
  | { kind: "start"; spec: ShardSpec }
  | { kind: "reload"; config: Config }
  | { kind: "ping" }
  | { kind: "stop" }
  | { kind: "lookup"; internalAddress: string; protocol: number; internalPort: number; family: 4 | 6; thirdPartyId?: string }
  | { kind: "lookupExternal"; externalAddress: string; protocol: number; externalPort: number }
  | { kind: "list"; from: number; limit: number; select: MappingSelector }
  | { kind: "addStatic"; internalAddress: string; protocol: number; internalPort: number; externalAddress: string; externalPort: number }
  | { kind: "removeStatic"; internalAddress: string; protocol: number; internalPort: number; family: 4 | 6; hold?: boolean }
  | { kind: "addMirror"; internalAddress: string; protocol: number; internalPort: number; externalAddress: string; externalPort: number }
  | { kind: "setMirrors"; statics: StaticEntry[] }
  | { kind: "subscriberUsage"; internalAddress: string; thirdPartyId?: string }
  | { kind: "deleteSubscriber"; internalAddress: string; thirdPartyId?: string }
  | { kind: "events"; on: boolean }
  | { kind: "exportTable"; from: number }
  | { kind: "dataplane"; down: boolean };

/**
 * Posted on the worker's parentPort while events are on (piscina re-emits it as the pool's
 * "message"). The pool names ride along when they changed since the shard's last message.
 */
export interface EventsMessage {
  pcpdEvents: true;
  shard: number;
  events: MappingRecords;
}

/** Posted every dataplane.batchMs while a dataplane is configured: the portable records of every change. */
export interface DataplaneMessage {
  pcpdDataplane: true;
  shard: number;
  bytes: Uint8Array;
}

/** Record ids read per exportTable task (dataplane reconciliation): bounds the time it holds the packet path. */
export const EXPORT_SCAN = 20_000;

/** Records visited per listing task: bounds the time a listing holds the packet path (~ms). */
export const LIST_SCAN = 50_000;

export function mappingKind(flags: number): "dynamic" | "static" | "held" {
  return flags & W.MAPF_STATIC ? "static" : flags & W.MAPF_HELD ? "held" : "dynamic";
}

export function selects(s: MappingSelector, m: MappingEvent): boolean {
  return (s.internalAddress === undefined || s.internalAddress === m.internalAddress) &&
    (s.externalAddress === undefined || s.externalAddress === m.externalAddress) &&
    (s.protocol === undefined || s.protocol === m.protocol) &&
    (s.kind === undefined || s.kind === mappingKind(m.flags));
}

export interface ShardStarted {
  shard: number;
  threadId: number;
  endpoints: Endpoint[];
  epoch: number;
}

export interface ShardStats {
  shard: number;
  threadId: number;
  epoch: number;
  engine: Record<string, bigint>;
  codec: CodecStats;
  pool: PoolAddress[];
  /** Absent with persistence off. */
  persistence?: PersistenceStatus;
}

interface Shard {
  spec: ShardSpec;
  engine: PacketEngine;
  clock: MonotonicClock;
  listener: UdpListener;
  announcer: Announcer;
  updater: MappingUpdater;
  log: Logger;
  board: StatsBoard;
  /** Durable state (persistence.enabled) and the wall-clock seconds at engine time 0 it converts times with. */
  store?: ShardStore;
  wallOffset: number;
  /** Portable records of changes, to the journal and the dataplane. */
  record: (parts: Uint8Array[]) => void;
  stopDataplane: () => void;
  /** Mapping Update cancels (unless told not to), debug log and the event stream, for a batch of events. */
  onEvents: (events: MappingRecords, cancelUpdates?: boolean) => void;
}

let shard: Shard | undefined;
let eventsOn = false;
let poolTimer: NodeJS.Timeout | undefined;

/** Tasks after which the board is copied again (the others only read). */
const CHANGES_STATE = new Set<ShardTask["kind"]>(["reload", "addStatic", "removeStatic", "addMirror", "setMirrors", "deleteSubscriber"]);

/** Pool gauges (free blocks per address) are copied to the board this often, and after every task. */
const POOL_PUBLISH_MS = 1000;

function publishAll(s: Shard): void {
  s.board.publish(s.engine.statsBytes(), s.clock.epochState());
  s.board.publishPool(s.engine.poolUsage());
  if (s.store) s.board.publishPersistence(s.store.status());
}

function running(): Shard {
  if (!shard) throw new PcpdError(ErrorCodes.BAD_CONFIG, `worker ${threadId} has no shard`);
  return shard;
}

/** The shard's files read back into `engine` (Epoch continued when intact); the store then journals. */
async function restoreState(spec: ShardSpec, engine: PacketEngine, clock: MonotonicClock, wallOffset: number, log: Logger): Promise<{ store?: ShardStore; restored?: RestoreReport }> {
  const { persistence } = spec.config;
  if (!persistence.enabled) return {};
  const store = new ShardStore({ ...persistence, shard: spec.shard, shards: spec.shards }, () => clock.epoch(), log);
  const t0 = performance.now();
  const restored = await store.restore(engine, wallOffset, clock.seconds());
  if (restored.epoch > 0) clock.continueEpoch(restored.epoch);
  const summary = { dir: store.dir, files: restored.files.length, mappings: restored.mappings, held: restored.held, dropped: restored.dropped, damage: restored.damage, fallback: restored.fallback, gapBytes: restored.gapBytes, epoch: clock.epoch(), ms: Math.round(performance.now() - t0) };
  if (restored.stateLost) log.error(summary, "state restored with losses: epoch reset");
  else log.info(summary, "state restored");
  // Journals replayed or damage found: a fresh snapshot replaces them.
  if (restored.bytes > 0 || restored.damage.length > 0 || restored.fallback) store.requestSnapshot = true;
  store.start({ engine, wallOffset });
  return { store, restored };
}

/** The records of every change, posted to the main thread's dataplane manager every batchMs. */
class DataplaneFeed {
  private parts: Uint8Array[] = [];
  private readonly timer: NodeJS.Timeout;

  constructor(shard: number, batchMs: number) {
    this.timer = setInterval(() => {
      if (this.parts.length === 0) return;
      // Its own ArrayBuffer (Buffer.concat may share Node's pool), handed over without a copy.
      const bytes = new Uint8Array(this.parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of this.parts) {
        bytes.set(p, at);
        at += p.length;
      }
      this.parts = [];
      parentPort?.postMessage({ pcpdDataplane: true, shard, bytes } satisfies DataplaneMessage, [bytes.buffer]);
    }, batchMs);
    this.timer.unref();
  }

  push(parts: Uint8Array[]): void {
    this.parts.push(...parts);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

async function start(spec: ShardSpec): Promise<ShardStarted> {
  if (shard) throw new PcpdError(ErrorCodes.BAD_CONFIG, `worker ${threadId} already runs shard ${shard.spec.shard}`);
  const { config } = spec;
  const log = pino({ level: config.log.level, base: { service: "pcp-server", shard: spec.shard, thread: threadId } });
  const clock = new MonotonicClock();
  const engine = new PacketEngine("release", config);
  engine.initEngine(config, clock.seconds(), { seed: spec.seed, shard: spec.shard, shards: spec.shards });
  const board = new StatsBoard(spec.board);
  const wallOffset = wallSeconds() - clock.seconds();
  const { store, restored } = await restoreState(spec, engine, clock, wallOffset, log);
  const dataplane = config.dataplane.backend !== "none" ? new DataplaneFeed(spec.shard, config.dataplane.batchMs) : undefined;
  if (dataplane) engine.setDataplaneDown(true); // until the main thread has programmed it
  const record = (parts: Uint8Array[]) => {
    store?.append(parts);
    dataplane?.push(parts);
  };
  /** After every batch (before its replies leave) and engine work outside one: counters out, changes to the journal and the dataplane. */
  const afterBatch = () => {
    board.publish(engine.statsBytes(), clock.epochState());
    if (store || dataplane) record(engine.persistPending(wallOffset));
  };
  let poolPosted = 0; // pool entries the main thread has been told about
  const onEvents = (events: MappingRecords, cancelUpdates = true) => {
    if (cancelUpdates) for (const e of recordKinds(events)) {
      // A refresh (or the end) of a re-homed mapping stops its Mapping Update copies.
      if (e.kind === W.EVENT_REFRESH || e.kind === W.EVENT_DELETE || e.kind === W.EVENT_EXPIRE) shard?.updater.cancel(e.mapping);
    }
    if (log.isLevelEnabled("debug")) for (const e of decodeRecords(events, engine.poolList())) log.debug({ event: e }, "mapping event");
    if (!eventsOn) return;
    const pool = engine.poolList();
    if (pool.length !== poolPosted) {
      events.pool = pool;
      poolPosted = pool.length;
    }
    parentPort?.postMessage({ pcpdEvents: true, shard: spec.shard, events } satisfies EventsMessage);
  };
  const listener = new UdpListener({
    endpoints: spec.endpoints,
    engine,
    clock,
    classify: classifier(config),
    limiter: limiterFor(config, spec.shards),
    receiveBuffer: config.listen.receiveBuffer,
    onReceiveBuffer: (r) =>
      r.capped ? log.warn(r, "receive buffer capped by net.core.rmem_max: raise it (sysctl) to at least listen.receiveBuffer") : log.info(r, "receive buffer"),
    onEvents,
    // Copied only while a Mapping Update waits for a refresh, or for debug logs (the
    // journal reads them in place, in afterBatch).
    wantsEvents: () => eventsOn || (shard?.updater.size ?? 0) > 0 || log.isLevelEnabled("debug"),
    afterBatch,
    durable: store ? () => store.commitNow() : undefined,
  });
  try {
    await listener.start();
  } catch (e) {
    await listener.stop(); // sockets bound before the failure
    dataplane?.stop();
    await store?.close();
    throw e;
  }
  const announcer = new Announcer({
    targets: spec.announce,
    count: config.announce.count,
    firstGapMs: config.announce.firstGapMs,
    messages: (ipv6) => {
      const epoch = clock.epoch();
      const out = [engine.announce(epoch)];
      const natPmpAddress = engine.poolUsage().find((p) => !p.retired && !isIPv6(p.address))?.address;
      if (!ipv6 && natPmpAddress && running().spec.config.natPmp === "enabled") out.push(engine.announceNatPmp(epoch, natPmpAddress));
      return out;
    },
    send: (target, payload, port, sent) => {
      const socket = listener.socket(target.source);
      if (!socket) return false;
      if (!isIPv6(target.source)) socket.setMulticastInterface(target.source);
      socket.send(payload, port, target.group, (error) => {
        if (error) log.warn({ error: error.message, group: target.group, interface: target.interface }, "announce not sent");
        sent();
      });
      return true;
    },
  });
  const updater = new MappingUpdater((m, sent) => {
    const socket = listener.socket(spec.endpoints.find((e) => isIPv6(e.address) === isIPv6(m.address))?.address ?? "");
    socket?.send(m.payload, m.port, m.address, (error) => {
      if (error) log.warn({ error: error.message, address: m.address, port: m.port }, "mapping update not sent");
      sent();
    });
    return socket !== undefined;
  }, () => clock.epoch());
  const endpoints = listener.boundAddresses();
  const s: Shard = { spec: { ...spec, endpoints }, engine, clock, listener, announcer, updater, log, board, store, wallOffset, record, stopDataplane: () => dataplane?.stop(), onEvents };
  shard = s;
  board.claim(threadId, engine.statsBytes(), clock.epochState(), engine.poolUsage());
  if (store) board.publishPersistence(store.status());
  let eventsLost = engine.engineStats().eventsLost;
  poolTimer = setInterval(() => {
    board.publishPool(engine.poolUsage());
    if (!store) return;
    board.publishPersistence(store.status());
    const lost = engine.engineStats().eventsLost;
    if (lost !== eventsLost) {
      // Changes that left no event reached no journal either: a snapshot catches up.
      log.warn({ eventsLost: Number(lost - eventsLost) }, "event ring overflowed: journal incomplete until the next snapshot");
      eventsLost = lost;
      store.requestSnapshot = true;
    }
    if (store.snapshotDue()) void store.snapshot(engine, wallOffset);
  }, POOL_PUBLISH_MS);
  poolTimer.unref();
  const continued = restored !== undefined && restored.epoch > 0;
  if (!continued) announcer.start(); // a continued Epoch has nothing to announce
  log.info({ listen: endpoints, epoch: clock.epoch(), announce: spec.announce.map((t) => `${t.source}→${t.group}`) }, continued ? "shard serving (epoch continued)" : "shard serving (epoch reset)");
  return { shard: spec.shard, threadId, endpoints, epoch: clock.epoch() };
}

/**
 * Applies a changed external pool: new addresses join at once; removed ones are retired,
 * their mappings re-homed in chunks (the socket keeps being served in between) with
 * Mapping Update messages to their clients. The Epoch resets, as it must when external
 * addresses change [RFC 6887 §8.5], and the reset is announced (with NAT-PMP's address).
 */
function applyPool(s: Shard, next: Config): void {
  const before = new Set(poolAddresses(s.spec.config.pool.addresses));
  const after = poolAddresses(next.pool.addresses);
  for (const a of after) {
    if (!before.has(a) && !s.engine.addPoolAddress(a)) s.log.error({ address: a }, "pool address not added: the pool holds 256 addresses (retired ones included until restart)");
  }
  const removed = [...before].filter((a) => !after.includes(a));
  if (removed.length === 0) return;
  let moving = 0;
  for (const a of removed) moving += s.engine.retirePoolAddress(a, s.clock.seconds());
  s.clock.resetEpoch();
  s.announcer.start();
  s.log.warn({ removed, moving, epoch: s.clock.epoch() }, "pool addresses retired: re-homing their mappings, epoch reset");
  let moved = 0;
  let told = 0;
  const step = () => {
    if (shard !== s) return; // stopped meanwhile
    const { updates, done } = s.engine.rehome(s.clock.seconds(), s.clock.epoch(), REHOME_CHUNK);
    for (const u of updates) {
      s.updater.schedule(u.mapping, u.messages);
      told += u.messages.length > 0 ? 1 : 0;
      s.record([s.engine.persistGone(u.from.pool, u.from.protocol, u.from.port)]); // the key it left
    }
    s.record(s.engine.persistPending(s.wallOffset));
    moved += updates.length;
    // This chunk's own moves and ends: they cancel no update (a PREFER_FAILURE mapping
    // ends here and its CANNOT_PROVIDE_EXTERNAL update must still go).
    const events = s.engine.drainRecords();
    if (events.bytes.length > 0) s.onEvents(events, false);
    publishAll(s);
    if (done) s.log.info({ removed, handled: moved, told }, "re-homing done");
    else setImmediate(step);
  };
  step();
}

/** Final counters, read on the worker (the stop task's answer). */
function stats(s: Shard): ShardStats {
  return { shard: s.spec.shard, threadId, epoch: s.clock.epoch(), engine: s.engine.engineStats(), codec: s.engine.stats(), pool: s.engine.poolUsage(), persistence: s.store?.status() };
}

/** A listing page: records selected inside the engine, in bounded scans. */
function list(s: Shard, from: number, limit: number, select: MappingSelector): { records: MappingRecords; next: number } {
  const { externalAddress, ...rest } = select;
  const pool = externalAddress === undefined ? undefined : s.engine.poolList().indexOf(externalAddress);
  const now = s.clock.seconds();
  if (pool === -1) return { records: { bytes: new Uint8Array(0), now }, next: 0 }; // not a pool address: nothing maps there
  return s.engine.listRecords(from, limit, LIST_SCAN, { ...rest, pool }, now);
}

function run(task: ShardTask): unknown {
  const s = running();
  const now = s.clock.seconds();
  switch (task.kind) {
    case "reload":
      s.engine.reconfigure(task.config);
      s.listener.setPolicy({ classify: classifier(task.config), limiter: limiterFor(task.config, s.spec.shards) });
      s.log.level = task.config.log.level;
      applyPool(s, task.config);
      // Changed NAT64 prefixes: clients are told to ask again [RFC 7225 §4.2].
      if (JSON.stringify(task.config.pcp.prefix64) !== JSON.stringify(s.spec.config.pcp.prefix64)) s.announcer.start();
      s.spec = { ...s.spec, config: task.config };
      return true;
    case "ping":
      return s.clock.epoch();
    case "lookup":
      return s.engine.lookupRecords(task.internalAddress, task.protocol, task.internalPort, task.family, now, task.thirdPartyId);
    case "lookupExternal":
      return s.engine.lookupExternalRecords(task.externalAddress, task.protocol, task.externalPort, now);
    case "list":
      return list(s, task.from, task.limit, task.select);
    case "addStatic": {
      const result = s.engine.addStatic(task.internalAddress, task.protocol, task.internalPort, task.externalAddress, task.externalPort);
      const family = isIPv6(task.externalAddress) ? 6 : 4;
      return { result, mapping: result === W.RESULT_SUCCESS ? s.engine.lookupRecords(task.internalAddress, task.protocol, task.internalPort, family, now) : null };
    }
    case "removeStatic":
      return s.engine.removeStatic(task.internalAddress, task.protocol, task.internalPort, task.family, task.hold ?? true);
    case "addMirror":
      return s.engine.addMirror(task.internalAddress, task.protocol, task.internalPort, task.externalAddress, task.externalPort);
    case "setMirrors": {
      // Laid down again from the owners' records: a dynamic mapping of such an endpoint ends.
      s.engine.clearMirrors();
      let laid = 0;
      for (const m of task.statics) {
        const result = s.engine.addMirror(m.internalAddress, m.protocol, m.internalPort, m.externalAddress, m.externalPort, true);
        if (result === W.RESULT_SUCCESS) laid++;
        else s.log.warn({ static: m, result }, "static mapping of another shard not mirrored here");
      }
      return laid;
    }
    case "subscriberUsage":
      return s.engine.subscriberUsage(task.internalAddress, task.thirdPartyId);
    case "deleteSubscriber":
      return s.engine.deleteSubscriber(task.internalAddress, task.thirdPartyId);
    case "events":
      eventsOn = task.on;
      return eventsOn;
    case "exportTable":
      return s.engine.persistTable(task.from, EXPORT_SCAN, s.wallOffset);
    case "dataplane":
      s.engine.setDataplaneDown(task.down);
      s.log.warn({ down: task.down }, task.down ? "dataplane down: requests get NETWORK_FAILURE" : "dataplane programmed: serving");
      return task.down;
  }
}

export default async function handle(task: ShardTask): Promise<unknown> {
  switch (task.kind) {
    case "start":
      return start(task.spec);
    case "stop": {
      const s = running();
      clearInterval(poolTimer);
      s.announcer.stop();
      s.updater.stop();
      await s.listener.stop();
      s.listener.settle();
      s.stopDataplane();
      await s.store?.close();
      publishAll(s);
      shard = undefined;
      return stats(s);
    }
    default: {
      const result = run(task);
      if (shard && CHANGES_STATE.has(task.kind)) {
        shard.listener.settle(); // counters, journal and events of what the task changed, at once
        shard.board.publishPool(shard.engine.poolUsage());
      }
      return result;
    }
  }
}
