// A shard's place in its HA group (docs/replication.md, docs/ha.md), on its worker: a
// standby follows its subject into a warm engine (no sockets, no announcer, no dataplane
// feed) until the main thread — holding the group's lease — promotes it; the active
// publishes every change (src/replication/writer.ts) and answers only while its gate is
// open; a fenced shard (another node wrote to its subject) stops answering at once and
// tells the main thread. The shard (./shard.ts) does the serving; this module decides
// when, and owns the NATS connection, the follower and the writer.
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "pino";
import { ErrorCodes, PcpdError } from "../errors.js";
import type { PacketEngine } from "../engine/packet-engine.js";
import type { MonotonicClock, TimeSource } from "../core/clock.js";
import { connectNats, ensureGroupStream, type ShardSubject } from "../replication/nats.js";
import { StreamFollower, type FollowerState } from "../replication/follower.js";
import { FenceError, StreamWriter, type WriterOptions } from "../replication/writer.js";
import type { HaShardState, HaTaskKind, ShardSpec, ShardHaSpec, TaskRequest, TaskResult } from "./tasks.js";

/** Fence attempts (each after catching up again) before a promotion gives up. */
const FENCE_ATTEMPTS = 3;
/** Wait before connecting again when NATS is unreachable at start. */
const CONNECT_RETRY_MS = 500;
/** A standby's expiry runs this often (ended mappings do not pile up in a long standby). */
const EXPIRY_MS = 1000;
const EXPIRY_BUDGET = 100_000;

/** What the role needs of its shard. */
export interface HaHost {
  readonly spec: ShardSpec & { ha: ShardHaSpec };
  readonly log: Logger;
  readonly time: TimeSource;
  readonly clock: MonotonicClock;
  readonly wallOffset: number;
  engine(): PacketEngine;
  /** A fresh engine in place of the current one (a hole in the stream: start over). */
  rebuildEngine(): PacketEngine;
  /** Opens the sockets behind `gate` with check-pointed replies waiting for `durable`, turns the dataplane feed on and announces. */
  serve(gate: BigInt64Array, durable: () => Promise<void>): Promise<void>;
  /** Closes the sockets and the dataplane feed (the gate is closed already). */
  silence(): Promise<void>;
  gateDrops(): number;
  /** Another node fenced this shard: tell the main thread. */
  fenced(error: string): void;
}

export class HaRole {
  private role: HaShardState["role"] = "standby";
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;
  private follower: StreamFollower | undefined;
  /** What the last stopped follower had applied (the next one goes on from it). */
  private followed: FollowerState | undefined;
  private writer: StreamWriter | undefined;
  private readonly gate: BigInt64Array;
  private readonly connected: Promise<void>;
  private expiry: NodeJS.Timeout | undefined;
  private stopped = false;
  private error: string | undefined;
  private holes = 0;
  /** The message at which the last hole was met. */
  private holeAt = 0;

  constructor(private readonly host: HaHost) {
    this.gate = new BigInt64Array(host.spec.ha.gate, 0, 1);
    this.connected = this.connect();
    this.expiry = setInterval(() => this.expire(), EXPIRY_MS);
    this.expiry.unref();
  }

  /** Connects (retrying while NATS is unreachable), makes sure the stream exists, starts following. */
  private async connect(): Promise<void> {
    const { spec, log } = this.host;
    const { ha } = spec.config;
    while (!this.stopped) {
      let nc: NatsConnection | undefined;
      try {
        nc = await connectNats(ha.nats, `${spec.ha.node}/shard-${spec.shard}`);
        const jsm = await jetstreamManager(nc, { timeout: ha.nats.timeoutMs });
        await ensureGroupStream(nc, ha.cluster, spec.ha.group, ha.replicas);
        if (this.stopped) {
          await nc.close();
          return;
        }
        // Usable only from here: a promotion before this point is refused (nothing to fence with).
        this.nc = nc;
        this.js = jetstream(nc, { timeout: ha.nats.timeoutMs });
        this.jsm = jsm;
        this.error = undefined;
        if (this.role === "standby" && !this.follower) this.follow();
        return;
      } catch (e) {
        this.error = `connect: ${(e as Error).message}`;
        log.warn({ error: this.error }, "HA: NATS not reachable yet; retrying");
        await nc?.close().catch(() => undefined);
        await new Promise((resolve) => setTimeout(resolve, CONNECT_RETRY_MS));
      }
    }
  }

  /** This shard's subject and the clients on it (connected by now). */
  private shardSubject(): ShardSubject {
    const { ha } = this.host.spec;
    return { js: this.js!, jsm: this.jsm!, stream: ha.stream, subject: ha.subject };
  }

  private follow(resume = this.followed): void {
    const { log, clock, wallOffset } = this.host;
    void this.follower?.stop(); // never two applying to one engine
    this.follower = new StreamFollower({
      ...this.shardSubject(),
      resume,
      apply: (chunk) => {
        const engine = this.host.engine();
        const taken = engine.restore(chunk, wallOffset, clock.seconds());
        engine.discardEvents(); // a standby feeds nothing: the active already did
        return taken;
      },
      onHole: (detail, seq) => {
        this.holes++;
        if (seq === this.holeAt) {
          // The same break again after starting over: it is in the stream itself, not a purge.
          log.error({ detail, holes: this.holes }, "HA: the shard's stream has a break in its chain: applying on (incomplete: a takeover resets the Epoch)");
          return "continue";
        }
        this.holeAt = seq;
        // What was purged cannot be had any more: a fresh engine, from the subject's first message (a snapshot).
        log.warn({ detail, holes: this.holes }, "HA: hole in the shard's stream: rebuilding the engine and following again");
        this.host.rebuildEngine();
        this.followed = undefined;
        if (!this.stopped && this.role === "standby") queueMicrotask(() => this.follow(undefined));
        return "restart";
      },
      onError: (error) => log.warn({ error }, "HA: follower"),
      wallMs: () => this.host.time.wallMs(),
    });
  }

  /** Stops the follower and keeps what it reached. */
  private async unfollow(): Promise<FollowerState | undefined> {
    const f = this.follower;
    this.follower = undefined;
    if (f) {
      await f.stop();
      this.followed = f.state();
    }
    return this.followed;
  }

  private expire(): void {
    if (this.role === "active") return; // the listener runs expiry while serving
    const engine = this.host.engine();
    engine.expire(this.host.clock.seconds(), EXPIRY_BUDGET);
    engine.discardEvents();
  }

  /** An active's records for the stream (afterBatch). */
  append(parts: Uint8Array[]): void {
    this.writer?.append(parts);
  }

  get active(): boolean {
    return this.role === "active";
  }

  /** Compaction between batches (the shard's periodic timer). */
  maybeSnapshot(): void {
    const w = this.writer;
    if (w?.snapshotDue()) void w.snapshot().catch((e: Error) => this.host.log.warn({ error: e.message }, "HA: stream compaction failed"));
  }

  async run<K extends HaTaskKind>(task: TaskRequest<K>): Promise<TaskResult<K>> {
    if (this.stopped) throw new PcpdError(ErrorCodes.HA_WRONG_ROLE, `shard ${this.host.spec.shard} stopped`);
    switch (task.kind) {
      case "haState":
        return this.state() as TaskResult<K>;
      case "haCatchUp":
        return (await this.catchUp((task as TaskRequest<"haCatchUp">).timeoutMs)) as TaskResult<K>;
      case "haPromote":
        return (await this.promote((task as TaskRequest<"haPromote">).term)) as TaskResult<K>;
      default:
        return (await this.handover()) as TaskResult<K>;
    }
  }

  state(): HaShardState {
    const f = this.follower?.state() ?? this.followed;
    const w = this.writer?.state();
    const common = { gateDrops: this.host.gateDrops(), error: w?.error ?? f?.error ?? this.error };
    if (this.role !== "standby" && w) {
      return { role: this.role, seq: w.seq, lastSeq: w.seq, records: w.records, complete: true, lagMs: w.lagMs, pendingBytes: w.pendingBytes, ...common };
    }
    return {
      role: this.role,
      seq: f?.seq ?? 0,
      lastSeq: f?.lastSeq ?? 0,
      records: f?.records ?? 0,
      complete: f?.complete ?? false,
      lagMs: f?.lagMs ?? 0,
      pendingBytes: 0,
      ...common,
    };
  }

  private async catchUp(timeoutMs: number): Promise<HaShardState> {
    if (this.role !== "standby") throw new PcpdError(ErrorCodes.HA_WRONG_ROLE, `shard ${this.host.spec.shard} is ${this.role}, not a standby`);
    const deadline = performance.now() + timeoutMs;
    const left = () => Math.max(0, deadline - performance.now());
    const timeout = (why: string) => new PcpdError(ErrorCodes.HA_CATCH_UP_TIMEOUT, `shard ${this.host.spec.shard}: ${why} within ${timeoutMs} ms`);
    await Promise.race([this.connected, new Promise((_, reject) => setTimeout(() => reject(timeout(`NATS not reached (${this.error})`)), left()))]);
    for (;;) {
      const f = this.follower;
      if (!f) throw timeout("not following");
      try {
        await f.catchUp(left());
        return this.state();
      } catch (e) {
        // A hole replaced the follower: go on with the new one while time is left.
        if (this.follower === f || left() === 0) throw e;
      }
    }
  }

  private writerOptions(term: number): WriterOptions {
    const { spec, log, clock, time, wallOffset } = this.host;
    const { ha } = spec.config;
    return {
      ...this.shardSubject(),
      node: spec.ha.node,
      term,
      commitIntervalMs: ha.commitIntervalMs,
      timeoutMs: ha.nats.timeoutMs,
      maxPayload: this.nc?.info?.max_payload ?? 1024 * 1024,
      epoch: () => clock.epoch(),
      wallMs: () => time.wallMs(),
      onFenced: (error) => void this.onFenced(error),
      onRetry: (error) => log.warn({ error }, "HA: publish failed; retrying (records kept)"),
      source: { engine: () => this.host.engine(), wallOffset },
      snapshotIntervalSeconds: ha.snapshotIntervalSeconds,
      snapshotBytes: ha.snapshotBytes,
    };
  }

  /**
   * Standby → active: fence (a takeover message expecting the last applied sequence; if
   * refused, catch up and try again), Epoch continued when every record is here, sockets
   * open behind the gate, the writer running, announced.
   */
  private async promote(term: number): Promise<TaskResult<"haPromote">> {
    const { spec, log, clock, time } = this.host;
    if (this.role !== "standby") throw new PcpdError(ErrorCodes.HA_WRONG_ROLE, `shard ${spec.shard} is ${this.role}, not a standby`);
    if (!this.nc) throw new PcpdError(ErrorCodes.HA_FENCE_FAILED, `shard ${spec.shard}: NATS not reachable (${this.error})`);
    let writer: StreamWriter | undefined;
    let continued = false;
    for (let attempt = 1; !writer; attempt++) {
      const reached = await this.unfollow();
      // The Epoch this shard answers with from now on (written on the takeover message too):
      // the writer's last + the wall-clock time since, when every record is here [RFC 6887 §8.5].
      const last = reached?.complete && reached.wall !== undefined && reached.epoch !== undefined ? { epoch: reached.epoch, wall: reached.wall } : undefined;
      continued = last !== undefined;
      if (last) clock.continueEpoch(last.epoch + Math.max(0, Math.floor((time.wallMs() - last.wall) / 1000)));
      else clock.resetEpoch();
      try {
        writer = await StreamWriter.fence(this.writerOptions(term), reached?.seq ?? 0);
      } catch (e) {
        clock.resetEpoch();
        const refused = e instanceof FenceError && e.refused;
        this.follow(); // still a standby: follow on from where it was
        if (!refused || attempt >= FENCE_ATTEMPTS) {
          this.error = (e as Error).message;
          throw new PcpdError(
            ErrorCodes.HA_FENCE_FAILED,
            `shard ${spec.shard}: cannot fence ${spec.ha.subject} (${refused ? `refused ${attempt} times` : "unreachable"}): ${this.error}`,
            {
              cause: e,
            },
          );
        }
        log.warn({ attempt, error: (e as Error).message }, "HA: fence refused (the subject moved on): catching up and trying again");
        await this.catchUp(spec.config.ha.leaseMs);
      }
    }
    this.writer = writer;
    this.role = "active";
    const seq = writer.state().seq;
    try {
      await this.host.serve(this.gate, () => writer.commitNow());
    } catch (e) {
      // Sockets could not be bound: the subject is fenced (nobody else writes) but nobody serves; the main thread demotes.
      await this.onFenced(`sockets: ${(e as Error).message}`);
      throw e;
    }
    log.warn({ term, epoch: clock.epoch(), continued, seq, applied: this.followed?.records ?? 0 }, "HA: promoted to active");
    return { epoch: clock.epoch(), continued, seq };
  }

  /** This shard must stop answering at once: gate closed, sockets closed, the main thread told. */
  private async onFenced(error: string): Promise<void> {
    if (this.role === "fenced") return;
    Atomics.store(this.gate, 0, 0n); // Atomics: the main thread writes the same cell
    this.role = "fenced";
    this.error = error;
    this.writer?.stop();
    this.host.log.error({ error }, "HA: fenced by another node: stopped answering");
    this.host.fenced(error);
    await this.host.silence();
  }

  /** Planned switchover: stop answering, publish what is pending and a handover message; then follow as a standby. */
  private async handover(): Promise<TaskResult<"haHandover">> {
    const writer = this.writer;
    if (this.role !== "active" || !writer) throw new PcpdError(ErrorCodes.HA_WRONG_ROLE, `shard ${this.host.spec.shard} is ${this.role}, not active`);
    Atomics.store(this.gate, 0, 0n);
    await this.host.silence();
    const seq = await writer.handover();
    const published = writer.state();
    this.writer = undefined;
    this.role = "standby";
    // Everything it holds is on the subject up to `seq`: it follows on from there (the new active's takeover next).
    this.followed = { seq, lastSeq: seq, records: published.records, complete: true, lagMs: 0, epoch: this.host.clock.epoch(), wall: this.host.time.wallMs() };
    this.follow();
    this.host.log.warn({ seq }, "HA: handed over: following as a standby");
    return { seq };
  }

  /** Stops following or writing; an active first publishes what is pending (a planned restart loses nothing), waiting one publish timeout at most. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.expiry);
    if (this.writer && this.role === "active") {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise((resolve) => (timer = setTimeout(resolve, this.host.spec.config.ha.nats.timeoutMs)));
      await Promise.race([this.writer.commitNow().catch(() => undefined), late]);
      clearTimeout(timer);
    }
    this.writer?.stop();
    await this.follower?.stop();
    await this.nc?.close().catch(() => undefined);
  }
}
