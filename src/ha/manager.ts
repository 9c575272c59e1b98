// The main thread's side of HA (docs/ha.md): per shard group, which role this node plays,
// and the moves between roles. The lease math is in ./lease.ts; the shards' side (stream
// writer, follower, fencing, gate checks) in src/replication/ via the HA tasks.
//
// State machine, per group (HaRole):
//   standby ──(lease lapsed / vacant / switched to us)──▶ taking-over ──▶ active
//   taking-over ──(any step failed, or the lease lost meanwhile)──▶ standby
//   active ──(renewal failing, not refused)──▶ degraded ──(renewal succeeds)──▶ active
//   active | degraded ──(CAS refused, another holder seen, a shard fenced)──▶ demoting ──▶ standby
//   active ──(switchover)──▶ demoting ──▶ standby
// Takeover: haCatchUp on each of the group's shards (after a switchover: up to the
// handover sequences the lease names) → acquire the lease by CAS on the revision the
// decision saw → claim hook per address → haPromote(term) on each shard (it fences the
// stream and opens its sockets) → dataplane reconciliation → "ha: group <g> active".
// Failure: release hook, gates closed, the lease handed back vacant (or left to lapse),
// workers replaced if a shard was promoted, standby again; this node then waits a lease
// before trying again so another node gets its chance.
// Degraded: the last renewal failed without being refused (NATS unreachable or slow).
// The shards keep answering while the gate — the last successful renewal's send time +
// lease − margin — is in the future by their own clock, then drop everything; nothing
// else is done, since nothing can be learned without NATS. A renewal that succeeds again
// (its CAS proves nobody took the lease) reopens the gate: active. A refusal: demoted.
// Start: the release hook runs for every group (a node killed while active kept its
// addresses), then every group is a standby.
// Demotion: renewals stop and the gates close first, then the release hook, then the
// group's workers are replaced (they restart as standbys on the same spec and catch up
// from the stream).
// Switchover (planned): haHandover on each shard (gate closed, sockets closed, pending
// records and a handover message published) → release hook → lease value {holder: null,
// term, to, from, handover: {shard: seq}} by CAS → the target (or, with no target, the
// first standby to win the CAS) catches up to those sequences and takes over at once →
// resolves when the watch shows the new holder → this node's workers are replaced.
// lastTakeover comes from the lease value: each holder writes how it took the lease into
// every renewal (LeaseValue.takeover), so every node shows the same one.
import type { KV } from "@nats-io/kv";
import type { Logger } from "pino";
import type { Config } from "../config/schema.js";
import type { ShardGroup } from "../config/checks.js";
import type { TimeSource } from "../core/clock.js";
import { ErrorCodes, HaError } from "../errors.js";
import type { HaFencedMessage, HaShardState, RunTask } from "../shard/tasks.js";
import type { ConnectionState } from "./connection.js";
import { runHookEach, type HookContext } from "./hooks.js";
import { LeaseKeeper, type LeaseValue, type TakeoverReason } from "./lease.js";
import type { HaController, HaGroupStatus, HaRole, HaStatus, HaSwitchoverResult, HaTakeover } from "./types.js";

/** What the manager needs of the shard pool (src/server/shard-pool.ts). */
export interface HaShards {
  run: RunTask;
  /** Ends the shard's worker; it restarts on a new thread as a standby (then shardRestarted is called). */
  replace(shard: number): Promise<void>;
}

export interface HaManagerOptions {
  config: Config;
  groups: ShardGroup[];
  kv: KV;
  connection: ConnectionState;
  /** Each shard's gate cell (ShardHaSpec.gate), by shard number. */
  gates: SharedArrayBuffer[];
  shards: HaShards;
  /** The shards' TimeSource (the gates are in its monotonic ns). */
  time: TimeSource;
  log: Logger;
  /** Asks the dataplane to reload every shard's table (after a promotion). */
  reconcile(): void;
  /** A standby's catch-up before it takes over (default 30 s: a lagging standby at 1M mappings). */
  catchUpTimeoutMs?: number;
  /** How long a switchover waits for another node to hold the lease (default 30 s). */
  switchoverTimeoutMs?: number;
}

interface Group {
  def: ShardGroup;
  keeper: LeaseKeeper;
  role: Exclude<HaRole, "degraded">;
  /** A takeover, demotion, switchover or shard re-promotion is running. */
  busy: boolean;
  /** Set when the lease is lost or a shard fenced while busy: the running operation ends in a demotion. */
  lost?: string;
  /** No takeover before this local monotonic time (after a failure or a switchover away). */
  notBeforeNs: bigint;
  degraded: boolean;
  lastTakeover?: HaTakeover;
  /** Each shard's last answered haState (status() shows it when a shard cannot answer now). */
  states: Map<number, HaShardState>;
}

const MS = 1_000_000n;
/** One shard's restart after its worker was replaced (the pool retries 5 times with back-off). */
const RESTART_WAIT_MS = 30_000;
const STATE_TIMEOUT_MS = 2_000;

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

export class HaManager implements HaController {
  private readonly groups: Group[];
  private readonly groupOfShard = new Map<number, Group>();
  private readonly restartWaiters = new Map<number, () => void>();
  private tick: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly node: string;

  constructor(private readonly o: HaManagerOptions) {
    const { ha } = o.config;
    this.node = ha.node;
    this.groups = o.groups.map((def) => {
      const g: Group = {
        def,
        role: "standby",
        busy: false,
        notBeforeNs: 0n,
        degraded: false,
        states: new Map(),
        keeper: new LeaseKeeper({
          kv: o.kv,
          group: def.name,
          node: ha.node,
          leaseMs: ha.leaseMs,
          safetyMarginMs: ha.safetyMarginMs,
          timeoutMs: ha.nats.timeoutMs,
          time: o.time,
          gates: def.shards.map((s) => new BigInt64Array(o.gates[s])),
          connected: () => o.connection.connected(),
          onLost: (reason) => this.lost(g, reason),
          onChange: () => this.changed(g),
        }),
      };
      for (const s of def.shards) this.groupOfShard.set(s, g);
      return g;
    });
    // Back from a lost connection: a renewal in flight was likely sent on it; renew at once
    // rather than wait for its timeout, which may come after the gate has passed.
    o.connection.listen((state) => {
      if (state === "connected") for (const g of this.groups) g.keeper.reconnected();
    });
  }

  private now(): bigint {
    return this.o.time.monotonicNs();
  }

  private lease(): bigint {
    return BigInt(this.o.config.ha.leaseMs) * MS;
  }

  /** Reads every group's lease and starts deciding (the shards must be running as standbys). */
  async start(): Promise<void> {
    // A node killed while active still holds its addresses (no release hook ran): a standby
    // must not keep them, or two nodes answer ARP/ND for one address. Failing is the usual
    // outcome here (nothing to release), so it is not an error.
    await Promise.all(
      this.groups.map((g) =>
        this.hook(g, "release").catch((e: Error) =>
          this.o.log.info(
            { group: g.def.name, outcome: e.message },
            `ha: group ${g.def.name}: release hook at start (leftovers of an earlier run): nothing released`,
          ),
        ),
      ),
    );
    await Promise.all(this.groups.map((g) => g.keeper.start()));
    this.tick = setInterval(() => this.decide(), Math.max(20, Math.floor(this.o.config.ha.leaseMs / 10)));
    this.decide();
  }

  /** Groups this node serves now (active or degraded), for the start-up line and logs. */
  activeGroups(): string[] {
    return this.groups.filter((g) => g.role === "active").map((g) => g.def.name);
  }

  private decide(): void {
    if (this.stopped) return;
    for (const g of this.groups) {
      if (g.role !== "standby" || g.busy || this.now() < g.notBeforeNs) continue;
      const reason = g.keeper.mayTakeOver(g.def.preferred);
      if (reason) void this.takeOver(g, reason);
    }
  }

  private changed(g: Group): void {
    const v = g.keeper.current().value;
    if (v?.takeover) g.lastTakeover = v.takeover;
    const degraded = g.keeper.degraded();
    if (degraded !== g.degraded && g.role === "active") {
      if (degraded)
        this.o.log.warn(
          { group: g.def.name, error: g.keeper.lastRenewalError(), leaseRemainingMs: g.keeper.remainingMs() },
          `ha: group ${g.def.name} degraded: lease renewal failing, serving only while the lease is provably held`,
        );
      else this.o.log.info({ group: g.def.name }, `ha: group ${g.def.name} lease renewed again`);
    }
    g.degraded = degraded;
    this.decide(); // a switchover to us, or a release, acts at once
  }

  private contexts(g: Group): HookContext[] {
    return g.def.addresses.map((address) => ({ address, group: g.def.name, node: this.node }));
  }

  private hook(g: Group, which: "claim" | "release"): Promise<void> {
    const { hooks } = this.o.config.ha;
    return runHookEach(hooks[which], this.contexts(g), hooks.timeoutMs, which === "release");
  }

  private async releaseQuietly(g: Group): Promise<void> {
    await this.hook(g, "release").catch((e: Error) => this.o.log.error({ group: g.def.name, error: e.message }, `ha: group ${g.def.name} release hook failed`));
  }

  private checkLost(g: Group): void {
    if (g.lost !== undefined) throw new Error(g.lost);
  }

  private async catchUp(g: Group, handover: Record<string, number> | undefined): Promise<void> {
    const timeoutMs = this.o.catchUpTimeoutMs ?? 30_000;
    await Promise.all(
      g.def.shards.map(async (s) => {
        let state = await this.o.shards.run(s, { kind: "haCatchUp", timeoutMs });
        // The handover message is in the stream before the lease names it, so one catch-up
        // normally covers it; a second one allows for a view of the subject's end taken early.
        if (handover?.[s] !== undefined && state.seq < handover[s]) state = await this.o.shards.run(s, { kind: "haCatchUp", timeoutMs });
        g.states.set(s, state);
        if (handover?.[s] !== undefined && state.seq < handover[s])
          throw new Error(`shard ${s} caught up to ${state.seq}, short of the handover at ${handover[s]}`);
      }),
    );
  }

  private async takeOver(g: Group, reason: TakeoverReason): Promise<void> {
    g.busy = true;
    // The view the decision rests on: the lease is taken by CAS on its revision, so a newer
    // write (another node's takeover the watch delivers meanwhile) makes the CAS fail.
    const basis = g.keeper.current();
    // One read confirms the lease did not move meanwhile.
    const moved = await g.keeper.refresh().catch(() => undefined);
    if (moved !== false || this.stopped || g.keeper.current().revision !== basis.revision) {
      g.busy = false;
      if (moved) this.decide(); // on the fresh view (a failed read: the next tick tries again)
      return;
    }
    g.role = "taking-over";
    g.lost = undefined;
    const started = this.now();
    const seen = basis;
    const from = seen.value?.holder ?? seen.value?.from ?? null;
    this.o.log.info({ group: g.def.name, reason, from, revision: seen.revision }, `ha: group ${g.def.name} taking over`);
    let promoting = false;
    try {
      await this.catchUp(g, seen.value?.handover);
      // The view may have moved while catching up (the holder renewed, another node won).
      if (g.keeper.current().revision !== seen.revision && g.keeper.mayTakeOver(g.def.preferred) === undefined) {
        this.o.log.info({ group: g.def.name, holder: g.keeper.current().value?.holder }, `ha: group ${g.def.name} taken by another node meanwhile`);
        g.role = "standby";
        return;
      }
      if (this.stopped) throw new Error("server stopping");
      const term = await g.keeper.acquire(basis);
      if (term === undefined) {
        this.o.log.info({ group: g.def.name }, `ha: group ${g.def.name}: another node took the lease first`);
        g.role = "standby";
        return;
      }
      await this.hook(g, "claim");
      this.checkLost(g);
      promoting = true;
      const promoted = await Promise.all(g.def.shards.map((s) => this.o.shards.run(s, { kind: "haPromote", term })));
      this.checkLost(g);
      this.o.reconcile();
      const durationMs = Number(this.now() - started) / 1e6;
      const continued = promoted.every((p) => p.continued);
      const takeover: HaTakeover = {
        at: new Date(this.o.time.wallMs()).toISOString(),
        from,
        to: this.node,
        reason,
        durationMs: Math.round(durationMs),
        epochContinued: continued,
      };
      g.lastTakeover = takeover;
      g.keeper.takeover = takeover;
      g.role = "active";
      void g.keeper.renew(); // every node sees how it was taken
      this.o.log.info(
        { group: g.def.name, term, epoch: promoted[0].epoch, epochs: promoted.map((p) => p.epoch), continued, durationMs: takeover.durationMs, from, reason },
        `ha: group ${g.def.name} active`,
      );
    } catch (e) {
      this.o.log.error({ group: g.def.name, error: (e as Error).message, promoted: promoting }, `ha: takeover of group ${g.def.name} failed; staying standby`);
      await this.fallBack(g, promoting);
    } finally {
      g.busy = false;
      g.lost = undefined;
    }
  }

  /** A failed takeover: gates closed, addresses released, the lease handed back vacant, workers replaced if promoted. */
  private async fallBack(g: Group, promoted: boolean): Promise<void> {
    const held = g.keeper.isHeld();
    const term = g.keeper.term();
    // Vacant at once: the preferred node (or anyone, with none) need not wait a lease. This node waits.
    if (held) await g.keeper.release({ holder: null, term, from: this.node }).catch(() => g.keeper.abandon());
    else await g.keeper.abandon();
    // Whether or not the lease is still ours: the claim hook may have run before it was lost.
    await this.releaseQuietly(g);
    if (promoted) await this.replaceShards(g);
    g.role = "standby";
    g.notBeforeNs = this.now() + 2n * this.lease();
  }

  /** The lease was lost (refused, or another holder seen): demote now, or when the running operation ends. */
  private lost(g: Group, reason: string): void {
    if (g.busy) {
      g.lost ??= reason;
      return;
    }
    if (g.role === "active") void this.demote(g, reason);
  }

  /** A shard's stream refused its write: another node fenced it. */
  fenced(m: HaFencedMessage): void {
    const g = this.groupOfShard.get(m.shard);
    if (!g) return;
    const reason = `shard ${m.shard} fenced: ${m.error}`;
    if (g.busy) g.lost ??= reason;
    else if (g.role === "active") void this.demote(g, reason);
  }

  private async demote(g: Group, reason: string): Promise<void> {
    g.busy = true;
    g.role = "demoting";
    this.o.log.warn({ group: g.def.name, reason }, `ha: group ${g.def.name} demoted to standby`);
    try {
      await g.keeper.abandon();
      await this.releaseQuietly(g);
      await this.replaceShards(g);
    } finally {
      g.role = "standby";
      g.busy = false;
      g.lost = undefined;
      g.notBeforeNs = this.now() + this.lease();
    }
  }

  /** Replaces the group's workers (fresh standbys) and waits until each shard runs again. */
  private async replaceShards(g: Group): Promise<void> {
    await Promise.all(
      g.def.shards.map(async (s) => {
        const restarted = new Promise<void>((resolve) => this.restartWaiters.set(s, resolve));
        await this.o.shards.replace(s);
        await within(restarted, RESTART_WAIT_MS, `shard ${s} restart`).catch((e: Error) =>
          this.o.log.error({ group: g.def.name, shard: s, error: e.message }, "ha: shard did not restart as a standby"),
        );
        this.restartWaiters.delete(s);
      }),
    );
  }

  /**
   * A shard runs again on a new thread (pool.onRestarted): as a standby. Ours to replace: done.
   * A shard of an active group the watchdog restarted: caught up and promoted with the current term.
   */
  shardRestarted(shard: number): void {
    const waiter = this.restartWaiters.get(shard);
    if (waiter) {
      waiter();
      return;
    }
    const g = this.groupOfShard.get(shard);
    if (g?.role !== "active" || this.stopped) return;
    void (async () => {
      try {
        await this.o.shards.run(shard, { kind: "haCatchUp", timeoutMs: this.o.catchUpTimeoutMs ?? 30_000 });
        const p = await this.o.shards.run(shard, { kind: "haPromote", term: g.keeper.term() });
        this.o.reconcile();
        this.o.log.info({ group: g.def.name, shard, epoch: p.epoch, continued: p.continued }, `ha: group ${g.def.name}: restarted shard ${shard} active again`);
      } catch (e) {
        if (g.role === "active" && !g.busy) void this.demote(g, `restarted shard ${shard} could not be promoted: ${(e as Error).message}`);
      }
    })();
  }

  async switchover(group: string, to?: string): Promise<HaSwitchoverResult> {
    const g = this.groups.find((x) => x.def.name === group);
    if (!g) throw new HaError(ErrorCodes.HA_UNKNOWN_GROUP, group, `no HA group ${group} (groups: ${this.groups.map((x) => x.def.name).join(", ")})`);
    if (g.role !== "active" || g.busy || !g.keeper.isHeld()) {
      const holder = g.keeper.current().value?.holder ?? null;
      throw new HaError(
        ErrorCodes.HA_NOT_ACTIVE,
        group,
        `${this.node} is not the active of group ${group} (${g.busy ? `busy: ${g.role}` : g.role}); the holder is ${holder ?? "nobody"}`,
      );
    }
    if (to === this.node) throw new HaError(ErrorCodes.HA_SWITCHOVER_FAILED, group, `${this.node} already holds group ${group}`);
    g.busy = true;
    g.role = "demoting";
    const started = this.now();
    const term = g.keeper.term();
    const timeoutMs = this.o.switchoverTimeoutMs ?? 30_000;
    // This node must not take the group back while the target catches up.
    g.notBeforeNs = this.now() + BigInt(timeoutMs) * MS + 2n * this.lease();
    this.o.log.info({ group, to: to ?? "(first ready standby)" }, `ha: group ${group} switchover`);
    let released = false;
    try {
      g.keeper.closeGates();
      const handovers = await Promise.all(g.def.shards.map((s) => this.o.shards.run(s, { kind: "haHandover" })));
      await this.hook(g, "release");
      const value: LeaseValue = {
        holder: null,
        term,
        from: this.node,
        ...(to ? { to } : {}),
        handover: Object.fromEntries(g.def.shards.map((s, i) => [String(s), handovers[i].seq])),
      };
      await g.keeper.release(value);
      released = true;
      const deadline = this.now() + BigInt(timeoutMs) * MS;
      for (;;) {
        const holder = g.keeper.current().value?.holder;
        if (holder && holder !== this.node) {
          const result = { group, from: this.node, to: holder, durationMs: Math.round(Number(this.now() - started) / 1e6) };
          this.o.log.info(result, `ha: group ${group} switched over to ${holder}`);
          return result;
        }
        if (this.now() > deadline) throw new Error(`no node took the group within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    } catch (e) {
      if (!released) {
        await g.keeper.abandon(); // it lapses: a standby takes it after lease + margin
        await this.releaseQuietly(g);
      }
      this.o.log.error({ group, to, released, error: (e as Error).message }, `ha: switchover of group ${group} failed`);
      throw new HaError(ErrorCodes.HA_SWITCHOVER_FAILED, group, `switchover of group ${group} failed: ${(e as Error).message}`, { cause: e });
    } finally {
      // The shards handed over (closed) or failed half-way: fresh standbys either way.
      void this.replaceShards(g).finally(() => {
        g.role = "standby";
        g.busy = false;
        g.lost = undefined;
        g.notBeforeNs = this.now() + this.lease();
      });
    }
  }

  async status(): Promise<HaStatus> {
    const groups = await Promise.all(this.groups.map((g) => this.groupStatus(g)));
    const natsServer = this.o.connection.server();
    return { node: this.node, cluster: this.o.config.ha.cluster, nats: this.o.connection.get(), ...(natsServer ? { natsServer } : {}), groups };
  }

  private async groupStatus(g: Group): Promise<HaGroupStatus> {
    const replication = await Promise.all(
      g.def.shards.map(async (shard) => {
        try {
          const state = await within(this.o.shards.run(shard, { kind: "haState" }), STATE_TIMEOUT_MS, `shard ${shard} haState`);
          g.states.set(shard, state);
          return { ...state, shard };
        } catch (e) {
          const last = g.states.get(shard);
          return last ? { ...last, shard, error: `not answering now (${(e as Error).message}); last known state` } : undefined;
        }
      }),
    );
    const view = g.keeper.current().value;
    const held = g.keeper.isHeld();
    const role: HaRole = g.role === "active" && g.keeper.degraded() ? "degraded" : g.role;
    const present = replication.filter((r) => r !== undefined);
    return {
      name: g.def.name,
      addresses: g.def.addresses,
      shards: g.def.shards,
      role,
      holder: view?.holder ?? null,
      term: held ? g.keeper.term() : (view?.term ?? 0),
      leaseRemainingMs: held ? g.keeper.remainingMs() : 0,
      replication: present,
      lagMs: present.reduce((m, r) => Math.max(m, r.lagMs), 0),
      ...(g.lastTakeover ? { lastTakeover: g.lastTakeover } : {}),
    };
  }

  /**
   * Stops deciding and renewing; the gates close (the shards stop answering) and the
   * release hook runs for the groups this node served. The lease is NOT released: the
   * shards' last records may still be unpublished, and a standby taking over at once could
   * miss them; left to lapse, it is taken after lease + margin, by which time the shards
   * (stopped right after) published what they had. A planned stop with no wait: ha.switchover first.
   */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.tick);
    await Promise.all(
      this.groups.map(async (g) => {
        const served = g.keeper.isHeld();
        await g.keeper.stop();
        if (served) await this.releaseQuietly(g);
      }),
    );
    for (const w of this.restartWaiters.values()) w();
  }
}
