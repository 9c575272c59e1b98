// What the HA side of a node (src/ha/manager.ts) shows and does for operators: the control
// channel's ha.status and ha.switchover, pcpctl ha, /metrics and /healthz read these.
import type { HaShardState } from "../shard/tasks.js";

/** A group's role on this node. */
export type HaRole =
  /** Holds the lease and serves the group's addresses. */
  | "active"
  /** Holds the lease but cannot renew it (NATS unreachable): serves only while the lease is provably valid by its own clock, minus the margin. */
  | "degraded"
  /** Follows the stream into a warm engine; takes over when the lease lapses. */
  | "standby"
  /** Catching up, fencing, claiming the addresses: about to serve. */
  | "taking-over"
  /** Lost the lease (or was fenced): stopped answering, being rebuilt as a standby. */
  | "demoting";

export interface HaTakeover {
  /** ISO time it completed. */
  at: string;
  /** Previous holder (null: nobody held the lease, e.g. the cluster's first start). */
  from: string | null;
  to: string;
  /** Why: the lease lapsed, a planned switchover, or nobody held it. */
  reason: "lapsed" | "switchover" | "vacant";
  /** From the decision to take over to every shard serving, ms. */
  durationMs: number;
  /** The Epoch continued (the standby had every record) or was reset. */
  epochContinued: boolean;
}

export interface HaGroupStatus {
  name: string;
  addresses: string[];
  shards: number[];
  role: HaRole;
  /** Lease holder as last seen in the KV bucket (null: vacant). */
  holder: string | null;
  /** The lease's term (its KV revision when taken). */
  term: number;
  /** Active/degraded: ms the lease is still provably held by this node's clock (minus the margin); 0 otherwise. */
  leaseRemainingMs: number;
  /** Per shard: its replication state. */
  replication: (HaShardState & { shard: number })[];
  /** Largest lag of the group's shards, ms. */
  lagMs: number;
  /** The last takeover this node saw complete for the group (by any node). */
  lastTakeover?: HaTakeover;
}

export interface HaStatus {
  node: string;
  cluster: string;
  /** This node's NATS connection. */
  nats: "connected" | "reconnecting" | "disconnected";
  /** The NATS server it is connected to (its server_name), while connected. */
  natsServer?: string;
  groups: HaGroupStatus[];
}

export interface HaSwitchoverResult {
  group: string;
  from: string;
  /** The node that took the group (the one asked for, or the first standby ready). */
  to: string;
  durationMs: number;
}

/** The HA side of a running server (RunningServer.ha; undefined when ha.enabled is false). */
export interface HaController {
  status(): Promise<HaStatus>;
  /**
   * Planned switchover of a group this node is active for: stops answering, publishes
   * every pending record and a handover message, releases the addresses and the lease to
   * `to` (or to whichever standby is first ready); resolves once another node serves it.
   */
  switchover(group: string, to?: string): Promise<HaSwitchoverResult>;
}
