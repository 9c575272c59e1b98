// What the main thread asks of a shard's worker, and what it answers: one table, task name
// → parameters → result. The main thread (src/server/shard-pool.ts, server.ts, the
// control handlers) imports this module, never the worker entry (./worker.ts), so it
// loads no worker code; the worker's handlers (./shard.ts) are checked against the same
// table, so an answer's type is known at both ends and no caller casts.
import type { Config } from "../config/schema.js";
import type { MappingEvent, MappingRecords } from "../engine/packet-engine.js";
import type { EventFilter } from "../engine/event-filter.js";
import type { Endpoint } from "../io/udp-listener.js";
import * as W from "../wire.generated.js";
import type { AnnounceTarget } from "./announce.js";
import type { ActivityQuery } from "../dataplane/activity.js";
import type { BoardSnapshot } from "./stats-board.js";
import type { AuthCounters, SaView } from "../auth/pa-types.js";

export interface ShardSpec {
  shard: number;
  shards: number;
  endpoints: Endpoint[];
  announce: AnnounceTarget[];
  /**
   * listen.reusePort, every shard but 0 (docs/io.md): its sockets share each address with
   * shard 0, whose multicast ANNOUNCE of a whole-server event (the first start, when every
   * shard's Epoch starts together; a PREFIX64 change) speaks for it. A reset of its own
   * Epoch (a replaced worker, the operator's reset) it announces itself [RFC 6887 §14.1.3].
   */
  announceFollows?: boolean;
  config: Config;
  seed: bigint;
  /** The shard's counters for the main thread (./stats-board.ts); kept across restarts. */
  board: SharedArrayBuffer;
  /** The test clock's offset cell (src/core/clock.ts TestTime); absent: the system's clocks. */
  testClock?: SharedArrayBuffer;
  /** High availability (ha.enabled): the shard starts as a standby of its group's stream (docs/ha.md). */
  ha?: ShardHaSpec;
}

/** A shard's place in its HA group (src/ha/ on the main thread, src/replication/ in the worker). */
export interface ShardHaSpec {
  group: string;
  /** This node's name (ha.node): written on every message it publishes. */
  node: string;
  /** The group's JetStream stream, and this shard's subject in it. */
  stream: string;
  subject: string;
  /**
   * One BigInt64 cell: the monotonic time (ns, the shard's TimeSource) until which this
   * shard may answer — its node's lease as last renewed, minus the safety margin; 0: it
   * may not. Written by the main thread's lease keeper; zeroed by the worker itself when
   * its stream refuses a write (another node fenced it). Read before every batch.
   */
  gate: SharedArrayBuffer;
}

/** A shard's replication state (HA): what ha.status shows per shard. */
export interface HaShardState {
  role: "standby" | "active" | "fenced";
  /** Stream sequence of the last message applied (standby) or acknowledged (active). */
  seq: number;
  /** The subject's last sequence in the stream, as last seen. */
  lastSeq: number;
  /** Records applied (standby) or published (active) since the shard started. */
  records: number;
  /** Every record since the subject's beginning (or since a complete snapshot) is applied, with no hole: a takeover continues the Epoch. */
  complete: boolean;
  /** Standby: ms from the newest applied message's publication to now (0 when caught up). Active: age of the oldest unacknowledged record. */
  lagMs: number;
  /** Active: record bytes waiting for the next publish. */
  pendingBytes: number;
  /** Datagrams dropped because the gate was closed (lease not provably held). */
  gateDrops: number;
  /** The last stream error (publish, consume, fence), if any. */
  error?: string;
}

/** Which mappings a listing or an event subscription wants (every field optional). */
export interface MappingSelector {
  internalAddress?: string;
  externalAddress?: string;
  protocol?: number;
  kind?: "dynamic" | "static" | "held";
}

/** A static mapping as another shard mirrors it (src/server/static-mirrors.ts). */
export interface StaticEntry {
  internalAddress: string;
  protocol: number;
  internalPort: number;
  externalAddress: string;
  externalPort: number;
}

export interface ShardStarted {
  shard: number;
  threadId: number;
  endpoints: Endpoint[];
  epoch: number;
  /** Whether its sockets are bound and it answers (false: an HA standby, its endpoints the configured ones, Epoch 0). */
  serving: boolean;
}

/** A shard's counters: what its board holds (read without a task), or the stop task's final copy. */
export interface ShardStats extends BoardSnapshot {
  shard: number;
}

interface Endpoint4or6 {
  internalAddress: string;
  protocol: number;
  internalPort: number;
  family: 4 | 6;
}

/** Task name → its parameters (besides `kind`) and its result. */
export interface ShardTasks {
  /** Starts the shard on this thread (restores its files, binds its sockets). */
  start: { params: { spec: ShardSpec }; result: ShardStarted };
  /** New configuration: what can change without a restart (src/server/server.ts reload). */
  reload: { params: { config: Config }; result: true };
  /** The watchdog's liveness probe: the shard's Epoch. */
  ping: { params: object; result: number };
  /** Stops the shard (sockets closed, store flushed): its final counters. */
  stop: { params: object; result: ShardStats };
  lookup: { params: Endpoint4or6 & { thirdPartyId?: string }; result: MappingRecords };
  lookupExternal: { params: { externalAddress: string; protocol: number; externalPort: number }; result: MappingRecords };
  /** A listing page (LIST_SCAN records visited at most); `next` 0 when done. */
  list: { params: { from: number; limit: number; select: MappingSelector }; result: { records: MappingRecords; next: number } };
  /** A PCP result code, and the new mapping's records on success. */
  addStatic: { params: StaticEntry; result: { result: number; mapping: MappingRecords | null } };
  /** A PCP result code. */
  removeStatic: { params: Endpoint4or6 & { hold?: boolean }; result: number };
  /** A PCP result code. */
  addMirror: { params: StaticEntry; result: number };
  /** Replaces the mirrors: how many were laid down. */
  setMirrors: { params: { statics: StaticEntry[] }; result: number };
  subscriberUsage: { params: { internalAddress: string; thirdPartyId?: string }; result: { mappings: number; blocks: number } };
  /** Mappings deleted. */
  deleteSubscriber: { params: { internalAddress: string; thirdPartyId?: string }; result: number };
  /** Streams mapping events to the main thread (EventsMessage) while on: those of `kinds` (a bit per EVENT_* code). */
  events: { params: { on: boolean; kinds: number }; result: boolean };
  /**
   * A sampled subscription's pull (src/control/fanout.ts): the newest `max` event records
   * passing `filter` since ring counter `since` (null: only the counter), read in place
   * (PacketEngine.latestRecords); `total`: every event since.
   */
  latestEvents: { params: { since: number | null; max: number; filter: EventFilter }; result: { records: MappingRecords; head: number; total: number } };
  /** Portable records of the whole table in pages (dataplane reconciliation). */
  exportTable: { params: { from: number }; result: { bytes: Uint8Array; next: number } };
  /** Whether requests get NETWORK_FAILURE because the dataplane is not programmed. */
  dataplane: { params: { down: boolean }; result: boolean };
  /** The dataplane's answers to the activity queries of message `id` (ActivityMessage): applied, then the waiting requests are served again. */
  activity: { params: { id: number; remaining: number[] }; result: number };
  /** Mapping Update schedules still running (a refresh or the last copy ends one) [RFC 6887 §14.2]. */
  mappingUpdates: { params: object; result: { pending: number } };
  /** PCP authentication (RFC 7652): the worker's security associations. */
  authList: { params: object; result: SaView[] };
  /** Ends a security association (SESSION_TERMINATED to its client): false if this worker has none of that ID. */
  authTerminate: { params: { sessionId: number }; result: boolean };
  /** The worker's authentication counters (null: authentication off). */
  authCounters: { params: object; result: AuthCounters | null };
  /** HA: the shard's replication state. */
  haState: { params: object; result: HaShardState };
  /** HA standby: applies its subject up to the stream's last sequence as of now; rejects if not there within timeoutMs. */
  haCatchUp: { params: { timeoutMs: number }; result: HaShardState };
  /**
   * HA standby → active (its node holds the group's lease as `term`, and has claimed the
   * service addresses): fences the subject (a takeover message published with the expected
   * last subject sequence, so a stale writer is refused from then on), continues the Epoch
   * if it has every record (`complete`) or resets it, opens its sockets, turns its
   * dataplane feed on and announces. Rejects, still a standby, when it cannot fence.
   */
  haPromote: { params: { term: number }; result: { epoch: number; continued: boolean; seq: number } };
  /**
   * HA planned switchover, on the active: stops answering (gate and sockets closed),
   * publishes every pending record and a handover message; that message's sequence.
   */
  haHandover: { params: object; result: { seq: number } };
}

export type TaskKind = keyof ShardTasks;
/** The HA tasks (asynchronous: they wait for the stream), served by the shard's replication side. */
export type HaTaskKind = "haState" | "haCatchUp" | "haPromote" | "haHandover";
/** One task as posted to the worker: its name and its parameters. */
export type TaskRequest<K extends TaskKind> = { kind: K } & ShardTasks[K]["params"];
export type TaskResult<K extends TaskKind> = ShardTasks[K]["result"];
/** Any task (what the worker entry receives). */
export type ShardTask = { [K in TaskKind]: TaskRequest<K> }[TaskKind];
/** Runs a task on one shard's worker, typed by its name. */
export type RunTask = <K extends TaskKind>(shard: number, task: TaskRequest<K>) => Promise<TaskResult<K>>;

/**
 * Posted on the worker's parentPort while events are on (piscina re-emits it as the pool's
 * "message"). The pool names ride along when they changed since the shard's last message.
 */
export interface EventsMessage {
  pcpdEvents: true;
  shard: number;
  events: MappingRecords;
}

/** Posted by an HA shard whose stream refused a write (another node fenced it): it stopped answering; the main thread demotes the group. */
export interface HaFencedMessage {
  pcpdHaFenced: true;
  shard: number;
  error: string;
}

/** Posted every dataplane.batchMs while a dataplane is configured: the portable records of every change. */
export interface DataplaneMessage {
  pcpdDataplane: true;
  shard: number;
  bytes: Uint8Array;
}

/** Posted when engine decisions wait on traffic (src/dataplane/activity.ts): answered by the `activity` task. */
export interface ActivityMessage {
  pcpdActivity: true;
  shard: number;
  id: number;
  queries: ActivityQuery[];
}

export function mappingKind(flags: number): "dynamic" | "static" | "held" {
  return flags & W.MAPF_STATIC ? "static" : flags & W.MAPF_HELD ? "held" : "dynamic";
}

export function selects(s: MappingSelector, m: MappingEvent): boolean {
  return (
    (s.internalAddress === undefined || s.internalAddress === m.internalAddress) &&
    (s.externalAddress === undefined || s.externalAddress === m.externalAddress) &&
    (s.protocol === undefined || s.protocol === m.protocol) &&
    (s.kind === undefined || s.kind === mappingKind(m.flags))
  );
}
