// Prometheus metrics of high availability (docs/ha.md), from this node's HaStatus: one
// series set per shard group (and per shard of it for replication). Registered on the first
// update that carries an HA status, so a node without ha.enabled exports none of them.
//
// The replication counters (records, gate drops) are absolute per shard incarnation: a
// shard's worker replaced (a demotion rebuilds the group's shards as fresh standbys, a
// dead worker restarts) starts them from 0 again. As for the engine counters
// (metrics.ts), a restart — the shard answers from another thread, or a counter went down
// — counts the whole new value, otherwise the increase; the exported counter never goes
// backwards. Takeovers are exported as the last one's time, duration and Epoch outcome
// (gauges): the status holds the last takeover only, so a counter fed from it would miss
// the ones between two scrapes; `changes(pcpd_ha_last_takeover_timestamp_seconds[1h])`
// counts them as well as the exporter could.
import { Counter, Gauge, type Registry } from "prom-client";
import type { HaRole, HaStatus } from "../ha/types.js";

const ROLES: readonly HaRole[] = ["active", "degraded", "standby", "taking-over", "demoting"];
const NATS_STATES: readonly HaStatus["nats"][] = ["connected", "reconnecting", "disconnected"];

interface Last {
  threadId: number | undefined;
  records: number;
  gateDrops: number;
}

export class HaMetrics {
  private readonly natsConnected: Gauge<string>;
  private readonly natsState: Gauge<string>;
  private readonly role: Gauge<string>;
  private readonly leaseRemaining: Gauge<string>;
  private readonly term: Gauge<string>;
  private readonly lag: Gauge<string>;
  private readonly groupLag: Gauge<string>;
  private readonly pending: Gauge<string>;
  private readonly complete: Gauge<string>;
  private readonly streamSeq: Gauge<string>;
  private readonly records: Counter<string>;
  private readonly gateDrops: Counter<string>;
  private readonly takeoverAt: Gauge<string>;
  private readonly takeoverDuration: Gauge<string>;
  private readonly takeoverEpoch: Gauge<string>;
  private readonly last = new Map<string, Last>();

  constructor(registry: Registry) {
    const registers = [registry];
    const gauge = (name: string, help: string, labelNames: string[]) => new Gauge({ name, help, labelNames, registers });
    const counter = (name: string, help: string, labelNames: string[]) => new Counter({ name, help, labelNames, registers });
    const group = ["group"];
    const shard = ["group", "shard"];
    this.natsConnected = gauge("pcpd_ha_nats_connected", "1 while this node's NATS connection is up, else 0.", []);
    this.natsState = gauge("pcpd_ha_nats_state", "1 for the NATS connection's current state (connected, reconnecting, disconnected).", ["state"]);
    this.role = gauge("pcpd_ha_role", "1 for the group's current role on this node (active, degraded, standby, taking-over, demoting), 0 for the others.", [
      "group",
      "role",
    ]);
    this.leaseRemaining = gauge(
      "pcpd_ha_lease_remaining_seconds",
      "Active or degraded: seconds the lease is still provably held by this node's clock, minus the safety margin; 0 otherwise.",
      group,
    );
    this.term = gauge("pcpd_ha_term", "The group's lease term (its KV revision when taken) as last seen.", group);
    this.groupLag = gauge("pcpd_ha_group_lag_seconds", "Largest replication lag of the group's shards.", group);
    this.lag = gauge(
      "pcpd_ha_lag_seconds",
      "Standby: age of the newest applied message (0 when caught up). Active: age of the oldest record not yet acknowledged by the stream.",
      shard,
    );
    this.pending = gauge("pcpd_ha_pending_bytes", "Active: record bytes waiting for the next publish.", shard);
    this.complete = gauge(
      "pcpd_ha_complete",
      "1 if the shard holds every record of its subject with no hole (a takeover would continue the Epoch), else 0.",
      shard,
    );
    this.streamSeq = gauge("pcpd_ha_stream_sequence", "Stream sequence of the last message applied (standby) or acknowledged (active).", shard);
    this.records = counter("pcpd_ha_records_total", "Mapping records published (active) or applied (standby).", shard);
    this.gateDrops = counter("pcpd_ha_gate_drops_total", "Datagrams dropped because the shard's gate was closed (the lease not provably held).", shard);
    this.takeoverAt = gauge("pcpd_ha_last_takeover_timestamp_seconds", "When the last takeover of the group seen by this node completed (Unix time).", group);
    this.takeoverDuration = gauge(
      "pcpd_ha_last_takeover_duration_seconds",
      "The last takeover's duration, from the decision to take over to every shard serving.",
      group,
    );
    this.takeoverEpoch = gauge(
      "pcpd_ha_last_takeover_epoch_continued",
      "1 if the last takeover continued the Epoch (no record missing), 0 if it reset it.",
      group,
    );
  }

  /** Sets every HA metric from `status`; `threads[shard]` is the shard's worker thread (a change = a restarted shard). */
  update(status: HaStatus, threads: (number | undefined)[]): void {
    for (const g of [this.natsState, this.role, this.leaseRemaining, this.term, this.groupLag, this.lag, this.pending, this.complete, this.streamSeq])
      g.reset();
    for (const g of [this.takeoverAt, this.takeoverDuration, this.takeoverEpoch]) g.reset();
    this.natsConnected.set(status.nats === "connected" ? 1 : 0);
    for (const state of NATS_STATES) this.natsState.set({ state }, state === status.nats ? 1 : 0);
    for (const g of status.groups) {
      const group = g.name;
      for (const role of ROLES) this.role.set({ group, role }, role === g.role ? 1 : 0);
      this.leaseRemaining.set({ group }, g.leaseRemainingMs / 1000);
      this.term.set({ group }, g.term);
      this.groupLag.set({ group }, g.lagMs / 1000);
      for (const r of g.replication) {
        const labels = { group, shard: String(r.shard) };
        this.lag.set(labels, r.lagMs / 1000);
        this.pending.set(labels, r.pendingBytes);
        this.complete.set(labels, r.complete ? 1 : 0);
        this.streamSeq.set(labels, r.seq);
        const key = `${group}/${r.shard}`;
        const before = this.last.get(key);
        const threadId = threads[r.shard];
        const restarted = before !== undefined && (before.threadId !== threadId || r.records < before.records || r.gateDrops < before.gateDrops);
        const base = before && !restarted ? before : { records: 0, gateDrops: 0 };
        this.records.inc(labels, r.records - base.records);
        this.gateDrops.inc(labels, r.gateDrops - base.gateDrops);
        this.last.set(key, { threadId, records: r.records, gateDrops: r.gateDrops });
      }
      const t = g.lastTakeover;
      if (t) {
        this.takeoverAt.set({ group }, Date.parse(t.at) / 1000);
        this.takeoverDuration.set({ group }, t.durationMs / 1000);
        this.takeoverEpoch.set({ group }, t.epochContinued ? 1 : 0);
      }
    }
  }
}
