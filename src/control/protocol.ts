// The control channel protocol (version pcpd-control/2): JSON-RPC 2.0 over a WebSocket
// (text frames, one JSON object each). Requests carry an id and get exactly one response;
// the server's notifications (no id) carry live mapping events, several per frame
// (version 2; version 1 sent one `events.mapping` notification per event). The same types are used
// by the server (src/control/) and the client SDK (src/client/).
import { isIP } from "node:net";
import { z } from "zod";
import type { AuthCounters, SaView } from "../auth/pa-types.js";
import type { DataplaneStats } from "../dataplane/manager.js";
import type { DataplaneOp } from "../dataplane/ops.js";
import type { ActivityNotice } from "../dataplane/event-stream.js";
import type { HaStatus, HaSwitchoverResult } from "../ha/types.js";
import type { PersistenceStatus } from "../persist/store.js";

export const PROTOCOL = "pcpd-control/2";
/** WebSocket path of the channel; /metrics and /healthz are HTTP on the same port. */
export const CONTROL_PATH = "/control";

export type Role = "read" | "admin";

// ---- JSON-RPC 2.0 envelope ----
export interface RpcRequest {
  jsonrpc: "2.0";
  id: number | string;
  method: string;
  params?: unknown;
}
export interface RpcSuccess<T = unknown> {
  jsonrpc: "2.0";
  id: number | string;
  result: T;
}
export interface RpcFailure {
  jsonrpc: "2.0";
  id: number | string | null;
  error: { code: number; message: string; data?: unknown };
}
export interface RpcNotification<T = unknown> {
  jsonrpc: "2.0";
  method: string;
  params: T;
}

/**
 * JSON-RPC 2.0 error codes, and this protocol's own (-32000..-32099): one per failure
 * kind, each listed in docs/errors.md (a test provokes every one over a connection).
 */
export const RpcErrors = {
  /** The frame is not JSON. */
  PARSE_ERROR: -32700,
  /** Not one JSON-RPC 2.0 request object (a batch, no id, no method, a binary frame). */
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  /** Params fail the method's schema, or name what does not exist (a shard, a cursor); the message names the field. */
  INVALID_PARAMS: -32602,
  /** An unexpected failure (logged by the server); the message says what. */
  INTERNAL_ERROR: -32603,
  /** The caller's role may not call this method. */
  FORBIDDEN: -32001,
  /** Over the connection's request rate. */
  RATE_LIMITED: -32002,
  /** The engine refused the operation (data: { result: the PCP result code }). */
  REFUSED: -32003,
  /** The shard cannot take the request now (under an Epoch reset, lost, or the server is stopping); try again. */
  UNAVAILABLE: -32004,
  /** config.reload: the new configuration is invalid (data: { issues }); the running one stays. */
  CONFIG_REJECTED: -32005,
  /** The method needs a feature this server is not configured for (dataplane.subscribe without dataplane.backend "events", ha.* without ha.enabled). */
  NOT_ENABLED: -32006,
  /** ha.switchover asked of a node that is not the group's active (data: { error, group }; the message names the holder): ask the holder. */
  NOT_ACTIVE: -32007,
  /** ha.switchover failed: a step before the lease's release failed, or no node took the group in time (data: { error, group }); see ha.status. */
  SWITCHOVER_FAILED: -32008,
} as const;
export type RpcErrorCode = (typeof RpcErrors)[keyof typeof RpcErrors];

// ---- shared value types ----
const ip = z
  .string()
  .max(45)
  .refine((s) => isIP(s) !== 0, "must be an IPv4 or IPv6 address");
const protocolNumber = z.number().int().min(1).max(255);
const portNumber = z.number().int().min(1).max(65535);
/** A group or node name of the HA configuration (ha.groups[].name, ha.node). */
const haName = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, "letters, digits, _ and - (at most 64)");
/** A THIRD_PARTY_ID [RFC 7843] in lowercase hex (1–16 bytes): names a subscriber's realm. */
const thirdPartyIdHex = z.string().regex(/^([0-9a-f]{2}){1,16}$/, "lowercase hex, 1 to 16 bytes");

export interface Mapping {
  shard: number;
  /** Engine record id, stable while the mapping lives (and is reused after). */
  id: number;
  kind: "dynamic" | "static" | "held";
  protocol: number;
  family: 4 | 6;
  internalAddress: string;
  internalPort: number;
  externalAddress: string;
  externalPort: number;
  /** MAP part (inbound) and PEER part (outbound) present. */
  inbound: boolean;
  outbound: boolean;
  natPmp: boolean;
  thirdParty: boolean;
  preferFailure: boolean;
  /** Engine time (seconds since the shard started) when the MAP part / PEER part / hold ends; 0 = none. */
  mapExpiry: number;
  outExpiry: number;
  /** Seconds until the mapping (or its hold) ends, from the shard's clock; null for a static mapping. */
  expiresIn: number | null;
  filters: { prefixLength: number; port: number; address: string }[];
  /** The DESCRIPTION the client gave [RFC 7220] (absent: none). */
  description?: string;
  /** The THIRD_PARTY_ID (hex) of the subscriber's realm [RFC 7843] (absent: none). */
  thirdPartyId?: string;
  /**
   * A PEER's remote peer [RFC 6887 §12] (absent: no PEER part): in an event the one the
   * event is about, else the latest; `count` = how many remote peers the mapping has.
   */
  peer?: { address: string; port: number; count: number };
}

export interface MappingEventNotice {
  shard: number;
  kind: "create" | "refresh" | "delete" | "expire" | "release" | "update";
  mapping: Omit<Mapping, "filters" | "shard" | "expiresIn">;
  /** Engine time of the event (seconds since the shard started). */
  time: number;
}

// ---- methods: params schemas (validated by the server), result types, roles ----
/** Most events a sampled subscription (events.subscribe `latest`) gets per frame. */
export const LATEST_MAX = 1000;

export const MappingFilterSchema = z
  .object({
    internalAddress: ip.optional(),
    externalAddress: ip.optional(),
    protocol: protocolNumber.optional(),
    kind: z.enum(["dynamic", "static", "held"]).optional(),
  })
  .strict();
export type MappingFilter = z.infer<typeof MappingFilterSchema>;

export const Params = {
  "server.info": z.object({}).strict(),
  "server.health": z.object({}).strict(),
  "stats.get": z.object({}).strict(),
  "mappings.list": z
    .object({
      filter: MappingFilterSchema.default({}),
      /** Opaque: the `next` of the previous page. */
      cursor: z.string().max(64).optional(),
      limit: z.number().int().min(1).max(1000).default(100),
    })
    .strict(),
  "mappings.get": z.union([
    z
      .object({
        internalAddress: ip,
        protocol: protocolNumber,
        internalPort: portNumber,
        family: z.union([z.literal(4), z.literal(6)]).optional(),
        thirdPartyId: thirdPartyIdHex.optional(),
      })
      .strict(),
    z.object({ externalAddress: ip, protocol: protocolNumber, externalPort: portNumber }).strict(),
  ]),
  "mappings.addStatic": z
    .object({ internalAddress: ip, protocol: protocolNumber, internalPort: portNumber, externalAddress: ip, externalPort: portNumber })
    .strict(),
  "mappings.removeStatic": z
    .object({ internalAddress: ip, protocol: protocolNumber, internalPort: portNumber, family: z.union([z.literal(4), z.literal(6)]).optional() })
    .strict(),
  "subscribers.usage": z.object({ internalAddress: ip, thirdPartyId: thirdPartyIdHex.optional() }).strict(),
  "subscribers.deleteMappings": z.object({ internalAddress: ip, thirdPartyId: thirdPartyIdHex.optional() }).strict(),
  "epoch.get": z.object({}).strict(),
  "epoch.reset": z.object({ shard: z.number().int().min(0) }).strict(),
  "config.get": z.object({}).strict(),
  "config.reload": z.object({}).strict(),
  "events.subscribe": z
    .object({
      filter: MappingFilterSchema.default({}),
      kinds: z.array(z.enum(["create", "refresh", "delete", "expire", "release", "update"])).optional(),
      /**
       * Sampled mode (a dashboard): every intervalMs, one frame with the newest `count`
       * events of the interval that pass the filter, and `total`; read from the shards'
       * event rings by a periodic pull, so its cost does not grow with the event rate.
       * Absent: every event (the full stream).
       */
      latest: z
        .object({ count: z.number().int().min(1).max(LATEST_MAX).default(100), intervalMs: z.number().int().min(250).max(60_000).default(1000) })
        .strict()
        .optional(),
    })
    .strict(),
  "events.unsubscribe": z.object({}).strict(),
  "dataplane.subscribe": z.object({}).strict(),
  "dataplane.unsubscribe": z.object({}).strict(),
  /** An external dataplane's answer to a `dataplane.activity` query: per query, seconds its traffic keeps the mapping (0: idle). */
  "dataplane.activityAnswer": z.object({ id: z.number().int().min(1), remaining: z.array(z.number().int().min(0).max(0xffffffff)).max(1_000_000) }).strict(),
  "ha.status": z.object({}).strict(),
  /** `to`: the node to hand the group to (default: whichever standby is first ready). */
  "ha.switchover": z.object({ group: haName, to: haName.optional() }).strict(),
  "auth.list": z.object({}).strict(),
  "auth.terminate": z.object({ sessionId: z.number().int().min(1).max(0xffffffff) }).strict(),
} as const;

export type Method = keyof typeof Params;
/** A method's params after validation (defaults filled in). */
export type ParamsOf<M extends Method> = z.output<(typeof Params)[M]>;

/** Methods that change state need the admin role; the rest are read-only. */
export const ADMIN_METHODS: ReadonlySet<Method> = new Set<Method>([
  "mappings.addStatic",
  "mappings.removeStatic",
  "subscribers.deleteMappings",
  "epoch.reset",
  "config.reload",
  "dataplane.subscribe",
  "dataplane.unsubscribe",
  "dataplane.activityAnswer",
  "ha.switchover",
  "auth.terminate",
]);

export interface ShardInfo {
  shard: number;
  thread: number | null;
  listen: { address: string; port: number }[];
  epoch: number;
}

export interface Results {
  "server.info": {
    protocol: string;
    version: string;
    node: string;
    startedAt: string;
    uptimeSeconds: number;
    workers: number;
    shards: ShardInfo[];
    role: Role;
  };
  /**
   * degraded: a shard is down, or its persistence is failing or catching up (`persistence`:
   * state and reason), or an HA group is degraded or this node lost NATS while active for a
   * group (`ha`; null when ha.enabled is false).
   */
  "server.health": {
    status: "ok" | "degraded";
    shards: { shard: number; up: boolean; persistence: PersistenceStatus | null }[];
    ha: HaHealth | null;
  };
  "stats.get": {
    engine: Record<string, number>;
    pcpResults: Record<string, number>;
    natPmpResults: Record<string, number>;
    drops: Record<string, number>;
    packets: number;
    /** Per second over the last sampling interval (10 s); null until two samples exist. */
    rates: { intervalSeconds: number; packets: number; created: number; refreshed: number; deleted: number; expired: number } | null;
    /** persistence: null when off. */
    shards: {
      shard: number;
      epoch: number;
      packets: number;
      mappings: number;
      subscribers: number;
      pool: { address: string; freeBlocks: number; retired: boolean }[];
      persistence: PersistenceStatus | null;
    }[];
    /** null when no dataplane is configured. */
    dataplane: DataplaneStats | null;
  };
  "mappings.list": { mappings: Mapping[]; next: string | null };
  "mappings.get": { mapping: Mapping | null };
  "mappings.addStatic": { mapping: Mapping };
  "mappings.removeStatic": { removed: true };
  "subscribers.usage": { shards: { shard: number; mappings: number; blocks: number }[] };
  "subscribers.deleteMappings": { deleted: number };
  "epoch.get": { shards: { shard: number; epoch: number }[] };
  "epoch.reset": { shard: number; epoch: number };
  "config.get": { config: unknown };
  "config.reload": { restartNeededFor: string[] };
  "events.subscribe": { subscribed: true };
  "events.unsubscribe": { subscribed: false };
  "dataplane.subscribe": { subscribed: true };
  "dataplane.unsubscribe": { subscribed: false };
  /** false: no query with that id is waiting (answered already, or timed out). */
  "dataplane.activityAnswer": { accepted: boolean };
  "ha.status": HaStatus;
  "ha.switchover": HaSwitchoverResult;
  "auth.list": { sessions: (SaView & { shard: number })[]; counters: AuthCounters };
  "auth.terminate": { terminated: boolean };
}

/** The HA part of the health: this node's NATS link, each group's role, and what is wrong. */
export interface HaHealth {
  /** unknown: the HA side could not report (see problems). */
  nats: HaStatus["nats"] | "unknown";
  groups: { name: string; role: HaStatus["groups"][number]["role"]; holder: string | null }[];
  /** One line per problem (empty: healthy). */
  problems: string[];
}

/**
 * Notification methods the server sends. `events.mappings`: a batch of mapping events in
 * the order they happened on their shard (params.events, 1 to 256 of them); events of
 * different shards may interleave.
 */
export const NOTIFY_EVENTS = "events.mappings";
/**
 * Sent once the subscriber has caught up after events were dropped because it read too
 * slowly; `dropped` counts the events lost since the previous notice.
 */
export const NOTIFY_DROPPED = "events.dropped";

/** Dataplane operations for an external dataplane (dataplane.backend "events"): forget everything installed. */
export const NOTIFY_DATAPLANE_RESET = "dataplane.reset";
/** One transaction: apply every operation in order (unmaps first), or none. */
export const NOTIFY_DATAPLANE_OPS = "dataplane.ops";
/**
 * Traffic-driven lifetimes (dataplane.activity.enabled): how long will the traffic seen so
 * far keep each of these mappings? Answered with method dataplane.activityAnswer, same id,
 * one number per query in order.
 */
export const NOTIFY_DATAPLANE_ACTIVITY = "dataplane.activity";

/**
 * Notification payloads. One subscription per connection: events.subscribe again replaces
 * the filter (events already queued under the old one may still arrive).
 */
export interface Notifications {
  /**
   * `total` only in sampled mode (events.subscribe `latest`): every event the shards
   * recorded since the previous frame, before the filter; `events` are the newest of them
   * that pass it (at most `count`), oldest first.
   */
  [NOTIFY_EVENTS]: { events: MappingEventNotice[]; total?: number };
  [NOTIFY_DROPPED]: { dropped: number };
  [NOTIFY_DATAPLANE_RESET]: { seq: number };
  [NOTIFY_DATAPLANE_OPS]: { seq: number; ops: DataplaneOp[] };
  [NOTIFY_DATAPLANE_ACTIVITY]: ActivityNotice;
}
