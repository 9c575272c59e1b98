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
import { PacketEngine, type CodecStats, type MappingEvent, type PoolAddress } from "../engine/packet-engine.js";
import { UdpListener, type Endpoint } from "../io/udp-listener.js";
import type { Config } from "../config/schema.js";
import { ErrorCodes, PcpdError } from "../errors.js";
import { MonotonicClock } from "./clock.js";
import { Announcer, type AnnounceTarget } from "./announce.js";
import { MappingUpdater } from "./mapping-update.js";
import { classifier, codecConfig, engineConfig, limiterFor } from "./policy.js";
import { poolAddresses } from "../config/schema.js";
import * as W from "../wire.generated.js";

/** Mappings moved per event-loop turn while renumbering, so requests keep being served. */
const REHOME_CHUNK = 2000;

export interface ShardSpec {
  shard: number;
  shards: number;
  endpoints: Endpoint[];
  announce: AnnounceTarget[];
  config: Config;
  seed: bigint;
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
  | { kind: "stats" }
  | { kind: "ping" }
  | { kind: "stop" }
  | { kind: "lookup"; internalAddress: string; protocol: number; internalPort: number; family: 4 | 6 }
  | { kind: "lookupExternal"; externalAddress: string; protocol: number; externalPort: number }
  | { kind: "list"; from: number; limit: number; select: MappingSelector }
  | { kind: "addStatic"; internalAddress: string; protocol: number; internalPort: number; externalAddress: string; externalPort: number }
  | { kind: "removeStatic"; internalAddress: string; protocol: number; internalPort: number; family: 4 | 6 }
  | { kind: "subscriberUsage"; internalAddress: string }
  | { kind: "deleteSubscriber"; internalAddress: string }
  | { kind: "events"; on: boolean };

/** A mapping as the control channel shows it: the engine's description plus its FILTERs. */
export type MappingView = MappingEvent & { filters: { prefixLength: number; port: number; address: string }[]; now: number };

/** Posted on the worker's parentPort while events are on (piscina re-emits it as the pool's "message"). */
export interface EventsMessage {
  pcpdEvents: true;
  shard: number;
  events: MappingEvent[];
}

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
}

interface Shard {
  spec: ShardSpec;
  engine: PacketEngine;
  clock: MonotonicClock;
  listener: UdpListener;
  announcer: Announcer;
  updater: MappingUpdater;
  log: Logger;
  logEvents: (events: MappingEvent[]) => void;
}

let shard: Shard | undefined;
let eventsOn = false;

function running(): Shard {
  if (!shard) throw new PcpdError(ErrorCodes.BAD_CONFIG, `worker ${threadId} has no shard`);
  return shard;
}

async function start(spec: ShardSpec): Promise<ShardStarted> {
  if (shard) throw new PcpdError(ErrorCodes.BAD_CONFIG, `worker ${threadId} already runs shard ${shard.spec.shard}`);
  const { config } = spec;
  const log = pino({ level: config.log.level, base: { service: "pcp-server", shard: spec.shard, thread: threadId } });
  const clock = new MonotonicClock();
  const engine = new PacketEngine("release", codecConfig(config));
  engine.initEngine(engineConfig(config, spec.seed, spec.shard, spec.shards), clock.seconds());
  const logEvents = (events: MappingEvent[]) => {
    if (log.isLevelEnabled("debug")) for (const e of events) log.debug({ event: e }, "mapping event");
  };
  const onEvents = (events: MappingEvent[]) => {
    for (const e of events) {
      // A refresh (or the end) of a re-homed mapping stops its Mapping Update copies.
      if (e.kind === "refresh" || e.kind === "delete" || e.kind === "expire") shard?.updater.cancel(e.mapping);
    }
    logEvents(events);
    if (eventsOn) parentPort?.postMessage({ pcpdEvents: true, shard: spec.shard, events } satisfies EventsMessage);
  };
  const listener = new UdpListener({
    endpoints: spec.endpoints,
    engine,
    clock,
    classify: classifier(config),
    limiter: limiterFor(config, spec.shards),
    onEvents,
    // Decoded only while a Mapping Update waits for a refresh, or for debug logs; the
    // journal and the dataplane (issue #6) will consume them always.
    wantsEvents: () => eventsOn || (shard?.updater.size ?? 0) > 0 || log.isLevelEnabled("debug"),
  });
  try {
    await listener.start();
  } catch (e) {
    await listener.stop(); // sockets bound before the failure
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
    send: (target, payload, port) => {
      const socket = listener.socket(target.source);
      if (!socket) return;
      if (!isIPv6(target.source)) socket.setMulticastInterface(target.source);
      socket.send(payload, port, target.group, (error) => {
        if (error) log.warn({ error: error.message, group: target.group, interface: target.interface }, "announce not sent");
      });
    },
  });
  const updater = new MappingUpdater((m) => {
    const socket = listener.socket(spec.endpoints.find((e) => isIPv6(e.address) === isIPv6(m.address))?.address ?? "");
    socket?.send(m.payload, m.port, m.address);
  }, () => clock.epoch());
  const endpoints = listener.boundAddresses();
  shard = { spec: { ...spec, endpoints }, engine, clock, listener, announcer, updater, log, logEvents };
  announcer.start();
  log.info({ listen: endpoints, epoch: clock.epoch(), announce: spec.announce.map((t) => `${t.source}→${t.group}`) }, "shard serving (epoch reset)");
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
    }
    moved += updates.length;
    const events = s.engine.drainEvents(); // this chunk's own moves and ends: they cancel no update
    s.logEvents(events);
    if (eventsOn) parentPort?.postMessage({ pcpdEvents: true, shard: s.spec.shard, events } satisfies EventsMessage);
    if (done) s.log.info({ removed, handled: moved, told }, "re-homing done");
    else setImmediate(step);
  };
  step();
}

function view(s: Shard, m: MappingEvent | undefined): MappingView | null {
  return m ? { ...m, filters: s.engine.filters(m.mapping), now: s.clock.seconds() } : null;
}

function stats(): ShardStats {
  const s = running();
  return { shard: s.spec.shard, threadId, epoch: s.clock.epoch(), engine: s.engine.engineStats(), codec: s.engine.stats(), pool: s.engine.poolUsage() };
}

export default async function handle(task: ShardTask): Promise<unknown> {
  switch (task.kind) {
    case "start":
      return start(task.spec);
    case "reload": {
      const s = running();
      s.engine.configure(codecConfig(task.config));
      s.engine.setPolicy(engineConfig(task.config, 0n));
      s.listener.setPolicy({ classify: classifier(task.config), limiter: limiterFor(task.config, s.spec.shards) });
      s.log.level = task.config.log.level;
      applyPool(s, task.config);
      s.spec = { ...s.spec, config: task.config };
      return true;
    }
    case "stats":
      return stats();
    case "ping":
      return running().clock.epoch();
    case "lookup": {
      const s = running();
      return view(s, s.engine.lookup(task.internalAddress, task.protocol, task.internalPort, task.family));
    }
    case "lookupExternal": {
      const s = running();
      return view(s, s.engine.lookupExternal(task.externalAddress, task.protocol, task.externalPort));
    }
    case "list": {
      const s = running();
      const page = s.engine.list(task.from, task.limit, LIST_SCAN, (m) => selects(task.select, m));
      return { mappings: page.mappings.map((m) => view(s, m)!), next: page.next };
    }
    case "addStatic": {
      const s = running();
      const result = s.engine.addStatic(task.internalAddress, task.protocol, task.internalPort, task.externalAddress, task.externalPort);
      const family = isIPv6(task.externalAddress) ? 6 : 4;
      return { result, mapping: result === W.RESULT_SUCCESS ? view(s, s.engine.lookup(task.internalAddress, task.protocol, task.internalPort, family)) : null };
    }
    case "removeStatic":
      return running().engine.removeStatic(task.internalAddress, task.protocol, task.internalPort, task.family);
    case "subscriberUsage":
      return running().engine.subscriberUsage(task.internalAddress);
    case "deleteSubscriber":
      return running().engine.deleteSubscriber(task.internalAddress);
    case "events":
      eventsOn = task.on;
      return eventsOn;
    case "stop": {
      const s = running();
      s.announcer.stop();
      s.updater.stop();
      await s.listener.stop();
      const final = stats();
      shard = undefined;
      return final;
    }
  }
}
