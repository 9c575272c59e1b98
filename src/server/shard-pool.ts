// The engine worker pool: one piscina thread per shard, every task pinned to its shard's
// thread by a custom balancer (the settings measured fastest: atomics disabled, several tasks per
// worker). A thread that dies — an engine trap escaping a batch, an out-of-memory abort, a
// terminate — is replaced by piscina; its shard is started again on the new thread (from
// its files with persistence on, else with an empty table and a reset Epoch, which it
// announces). Other shards are untouched. The operator's Epoch reset stops and starts the
// shard on its own thread instead, its persisted state dropped in between (resetEpoch).
import { Piscina } from "piscina";
import type { Logger } from "pino";
import { ErrorCodes, ShardUnavailableError } from "../errors.js";
import { ALL_KINDS } from "../engine/event-filter.js";
import type {
  DataplaneMessage,
  ActivityMessage,
  EventsMessage,
  HaFencedMessage,
  ShardSpec,
  ShardStarted,
  ShardStats,
  TaskKind,
  TaskRequest,
  TaskResult,
} from "../shard/tasks.js";

// src/server/ and dist/server/ are both two levels below the package root; piscina needs
// the built JavaScript worker (Node 20 cannot load a .ts worker). Loaded by URL, never
// imported: the main thread knows the worker only through ../shard/tasks.ts.
const WORKER = new URL("../../dist/shard/worker.js", import.meta.url);

const RESTART_ATTEMPTS = 5;
const RESTART_BACKOFF_MS = 200;
/** Every shard answers a ping this often; one that stays silent for WATCHDOG_TIMEOUT_MS is presumed hung. */
const WATCHDOG_INTERVAL_MS = 5_000;
const WATCHDOG_TIMEOUT_MS = 15_000;

interface Pinned {
  shard: number;
  /** Only a start task may claim a thread that runs no shard. */
  claim: boolean;
}

export class ShardPool {
  private readonly pool: Piscina;
  /** shard → threadId of the thread running it. */
  private readonly owner = new Map<number, number>();
  /**
   * Shards whose start finished on their thread. A task for any other shard waits here,
   * never in piscina's queue: piscina stops distributing at the first task its balancer
   * cannot place, so one task for a restarting shard (an ha.status poll, say) would hold
   * back the restart's own start task and every other shard's tasks (the watchdog then
   * takes the others for hung).
   */
  private readonly ready = new Set<number>();
  private readonly waiting = new Map<number, { resolve: () => void; reject: (e: Error) => void }[]>();
  private readonly eventListeners: ((m: EventsMessage) => void)[] = [];
  /** Receives every shard's dataplane records (when a dataplane is configured). */
  onDataplane: (m: DataplaneMessage) => void = () => undefined;
  /** Receives a shard's activity queries (traffic-driven lifetimes). */
  onActivity: (m: ActivityMessage) => void = () => undefined;
  /** Receives an HA shard's report that its stream refused a write (another node fenced it). */
  onHaFenced: (m: HaFencedMessage) => void = () => undefined;
  /** Called when a shard runs again on a new thread (its dataplane state must be reloaded). */
  onRestarted: (shard: number) => void = () => undefined;
  private stopping = false;
  /** Also what keeps the process alive: piscina's threads are unreferenced. */
  private watchdog: NodeJS.Timeout | undefined;
  /** Whether the shards stream their mapping events (a restarted shard is told again). */
  private eventsWanted = false;
  /** Who wants them, and which kinds (a bit per EVENT_* code): the control channel's full-stream subscribers, the mapping log (src/logging/). */
  private readonly eventWanters = new Map<string, number>();
  /** The kinds any of them wants: the only records the shards copy and post. */
  private eventKinds = 0;
  /** Shards under an operator's Epoch reset → what drops their persisted state. */
  private readonly resetting = new Map<number, () => Promise<void>>();

  /** @param onLost called when a shard cannot be restarted (its subscribers are then unserved). */
  constructor(
    private readonly specs: ShardSpec[],
    private readonly log: Logger,
    private readonly onLost: (shard: number, error: Error) => void,
  ) {
    this.pool = new Piscina({
      filename: WORKER.href,
      minThreads: specs.length,
      maxThreads: specs.length,
      idleTimeout: Infinity,
      atomics: "disabled",
      concurrentTasksPerWorker: 16,
      loadBalancer: (task, workers) => {
        const pin = (task as unknown as Record<symbol, Pinned | null>)[Piscina.queueOptionsSymbol];
        if (!pin) return null;
        const live = workers.filter((w) => !w.terminating && !w.destroyed);
        const owner = this.owner.get(pin.shard);
        if (owner !== undefined) return live.find((w) => w.id === owner) ?? null;
        if (!pin.claim) return null; // waits for the shard's restart
        const taken = new Set(this.owner.values());
        const free = live.find((w) => !taken.has(w.id));
        if (free) this.claim(pin.shard, free.id);
        return free ?? null;
      },
    });
    this.pool.on("message", (m: EventsMessage | DataplaneMessage | HaFencedMessage | ActivityMessage) => {
      if (m && "pcpdEvents" in m) for (const l of this.eventListeners) l(m);
      else if (m && "pcpdDataplane" in m) this.onDataplane(m);
      else if (m && "pcpdActivity" in m) this.onActivity(m);
      else if (m && "pcpdHaFenced" in m) this.onHaFenced(m);
    });
    // A worker error with no task in flight; the exit that follows is handled above.
    this.pool.on("error", (error: Error) => this.log.error({ error: error.message }, "engine worker failed"));
  }

  /** Runs `task` on the thread of `shard`; the answer has the type ../shard/tasks.ts gives it. */
  run<K extends TaskKind>(shard: number, task: TaskRequest<K>): Promise<TaskResult<K>> {
    if (task.kind === "start" || task.kind === "stop" || this.ready.has(shard)) return this.submit(shard, task);
    if (this.stopping) return Promise.reject(new ShardUnavailableError(ErrorCodes.SERVER_STOPPING, shard, "server stopping"));
    return new Promise<void>((resolve, reject) => {
      const list = this.waiting.get(shard) ?? [];
      list.push({ resolve, reject });
      this.waiting.set(shard, list);
    }).then(() => this.submit(shard, task));
  }

  private submit<K extends TaskKind>(shard: number, task: TaskRequest<K>): Promise<TaskResult<K>> {
    const pinned = { ...task, [Piscina.queueOptionsSymbol]: { shard, claim: task.kind === "start" } satisfies Pinned };
    // piscina's answers are untyped; the worker's handlers are checked against the same table.
    return this.pool.run(pinned) as Promise<TaskResult<K>>;
  }

  /** Runs `task` on every shard, in shard order. */
  all<K extends TaskKind>(task: TaskRequest<K>): Promise<TaskResult<K>[]> {
    return Promise.all(this.specs.map((_, shard) => this.run(shard, task)));
  }

  /** Starts every shard; the bound ports are kept so a replacement thread rebinds them. */
  async start(): Promise<ShardStarted[]> {
    const started = await Promise.all(this.specs.map((spec) => this.run(spec.shard, { kind: "start", spec })));
    for (const s of started) this.markReady(s.shard);
    // An HA standby binds nothing yet: its spec keeps the configured endpoints (a fixed port) for its promotion.
    for (const s of started) if (s.endpoints.length > 0) this.specs[s.shard] = { ...this.specs[s.shard], endpoints: s.endpoints };
    this.watchdog = setInterval(() => this.checkLiveness(), WATCHDOG_INTERVAL_MS);
    return started;
  }

  /**
   * Ends the thread of `shard` (the watchdog's answer to a hung worker); the shard restarts
   * on a new thread (from its files, with persistence on).
   */
  async replace(shard: number): Promise<void> {
    this.ready.delete(shard); // tasks from now on wait for the new thread, not in piscina's queue
    const id = this.owner.get(shard);
    const thread = this.pool.threads.find((t) => t.threadId === id);
    if (thread) await thread.terminate();
  }

  /**
   * The operator's forced Epoch reset: `shard` is stopped on its thread (sockets closed,
   * store flushed and closed), `dropState` removes what it persisted while nothing writes
   * there, and it starts again on the same thread with an empty table at Epoch 0, which it
   * announces (RFC 6887 §8.5, §14.1.3). A shard that does not stop within
   * WATCHDOG_TIMEOUT_MS has its thread ended instead; the state is dropped before the
   * replacement starts. Resolves with the new Epoch.
   */
  async resetEpoch(shard: number, dropState: () => Promise<void>): Promise<number> {
    if (this.resetting.has(shard)) throw new ShardUnavailableError(ErrorCodes.SHARD_RESETTING, shard, `shard ${shard} is being reset`);
    this.resetting.set(shard, dropState);
    this.ready.delete(shard); // tasks wait for the restart instead of finding no shard on the thread
    try {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<"late">((resolve) => (timer = setTimeout(() => resolve("late"), WATCHDOG_TIMEOUT_MS)));
      const stopped = await Promise.race([
        this.run(shard, { kind: "stop" }).then(
          () => "stopped" as const,
          () => "failed" as const,
        ),
        late,
      ]);
      clearTimeout(timer);
      if (stopped !== "stopped") {
        // Hung or gone: the thread is replaced and lost() → restart() drops the state first.
        this.log.error({ shard, outcome: stopped }, "epoch reset: shard did not stop; replacing its worker");
        const id = this.owner.get(shard);
        await this.replace(shard);
        while (this.owner.get(shard) === id || this.owner.get(shard) === undefined) {
          if (this.stopping) throw new ShardUnavailableError(ErrorCodes.SERVER_STOPPING, shard, "server stopping");
          await new Promise((resolve) => setTimeout(resolve, RESTART_BACKOFF_MS));
        }
        return await this.run(shard, { kind: "ping" });
      }
      this.resetting.delete(shard);
      try {
        await dropState();
        const s = await this.run(shard, { kind: "start", spec: this.specs[shard] });
        this.markReady(shard);
        if (this.eventsWanted) await this.run(shard, { kind: "events", on: true, kinds: this.eventKinds });
        this.onRestarted(shard);
        return s.epoch;
      } catch (e) {
        // Its files could not be removed or it did not start again: it must not stay stopped.
        // The ordinary restart brings it back (retries, then onLost); the operator is told.
        this.log.error({ shard, error: (e as Error).message }, "epoch reset failed after the shard stopped; restarting it");
        this.owner.delete(shard);
        this.ready.delete(shard);
        void this.restart(shard);
        throw e;
      }
    } finally {
      this.resetting.delete(shard);
    }
  }

  private checkLiveness(): void {
    for (const [shard, id] of this.owner) {
      if (!this.ready.has(shard)) continue; // starting: its start task answers for it
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<"hung">((resolve) => (timer = setTimeout(() => resolve("hung"), WATCHDOG_TIMEOUT_MS)));
      void Promise.race([this.run(shard, { kind: "ping" }).catch(() => "gone"), hung]).then((r) => {
        clearTimeout(timer);
        if (r === "hung" && this.owner.get(shard) === id && !this.stopping) {
          this.log.error({ shard, thread: id }, "engine worker unresponsive; replacing it");
          void this.replace(shard);
        }
      });
    }
  }

  /** Streams every shard's mapping events to `listener` while setEvents(true). */
  onEvents(listener: (m: EventsMessage) => void): void {
    this.eventListeners.push(listener);
  }

  /**
   * `who` wants the events of `kinds` (a bit per EVENT_* code; default all) streamed (on)
   * or no longer (off); they stream while anyone wants them, those of any wanted kind.
   */
  async setEvents(on: boolean, who = "control", kinds = ALL_KINDS): Promise<void> {
    if (on) this.eventWanters.set(who, kinds);
    else this.eventWanters.delete(who);
    this.eventsWanted = this.eventWanters.size > 0;
    this.eventKinds = [...this.eventWanters.values()].reduce((a, b) => (a | b) >>> 0, 0);
    await this.all({ kind: "events", on: this.eventsWanted, kinds: this.eventKinds });
  }

  /** New configuration for later (re)starts; the running shards are told by a reload task. */
  updateConfig(config: ShardSpec["config"]): void {
    for (const spec of this.specs) spec.config = config;
  }

  /** threadId of each shard's thread (undefined while restarting). */
  threads(): (number | undefined)[] {
    return this.specs.map((_, shard) => this.owner.get(shard));
  }

  /** Stops every running shard (sockets closed, final counters returned) and ends the threads. */
  async stop(): Promise<ShardStats[]> {
    this.stopping = true;
    clearInterval(this.watchdog);
    for (const shard of [...this.waiting.keys()]) this.fail(shard, new ShardUnavailableError(ErrorCodes.SERVER_STOPPING, shard, "server stopping"));
    const running = [...this.owner.keys()];
    const final = await Promise.allSettled(running.map((shard) => this.run(shard, { kind: "stop" })));
    await this.pool.destroy();
    return final.flatMap((r) => (r.status === "fulfilled" ? [r.value] : []));
  }

  /** Pins `shard` to thread `threadId` and watches that thread's exit. */
  private claim(shard: number, threadId: number): void {
    this.owner.set(shard, threadId);
    let error: Error | undefined; // what killed the thread (an uncaught exception), for the log
    this.pool.threads
      .find((t) => t.threadId === threadId)
      ?.once("error", (e) => (error = e))
      .once("exit", (code) => this.lost(shard, threadId, code, error));
  }

  private lost(shard: number, threadId: number, exitCode?: number, error?: Error): void {
    if (this.owner.get(shard) !== threadId) return;
    this.owner.delete(shard);
    this.ready.delete(shard);
    if (this.stopping) return;
    const dropState = this.resetting.get(shard);
    if (dropState) {
      this.resetting.delete(shard);
      // The operator's reset: the replacement must not restore the old table, so it starts once the files are gone.
      void dropState()
        .catch((e: Error) => this.log.error({ shard, error: e.message }, "epoch reset: the shard's files could not be removed; it restarts from them"))
        .then(() => this.restart(shard));
      return;
    }
    this.log.error(
      { shard, thread: threadId, exitCode, error: error ? `${(error as NodeJS.ErrnoException).code ?? error.name}: ${error.message}` : undefined },
      "engine worker died; restarting its shard (from its files with persistence on, else empty with a reset epoch)",
    );
    void this.restart(shard);
  }

  private async restart(shard: number): Promise<void> {
    let error: Error | undefined;
    for (let attempt = 1; attempt <= RESTART_ATTEMPTS && !this.stopping; attempt++) {
      // A failed start (say, the dead thread's port not yet released) leaves its thread free.
      try {
        const s = await this.run(shard, { kind: "start", spec: this.specs[shard] });
        this.markReady(shard);
        if (this.eventsWanted) await this.run(shard, { kind: "events", on: true, kinds: this.eventKinds });
        this.log.warn({ shard, thread: s.threadId, epoch: s.epoch, attempt }, "shard restarted");
        this.onRestarted(shard);
        return;
      } catch (e) {
        error = e as Error;
        this.owner.delete(shard);
        await new Promise((resolve) => setTimeout(resolve, RESTART_BACKOFF_MS * attempt));
      }
    }
    if (this.stopping) return;
    this.log.fatal({ shard, error: error?.message }, "shard could not be restarted; its subscribers are not served");
    const lost = new ShardUnavailableError(ErrorCodes.SHARD_LOST, shard, "restart failed");
    this.fail(shard, lost);
    this.onLost(shard, error ?? lost);
  }

  /** The shard runs on its thread: the tasks that waited for it go to piscina. */
  private markReady(shard: number): void {
    this.ready.add(shard);
    const list = this.waiting.get(shard) ?? [];
    this.waiting.delete(shard);
    for (const w of list) w.resolve();
  }

  private fail(shard: number, error: Error): void {
    const list = this.waiting.get(shard) ?? [];
    this.waiting.delete(shard);
    for (const w of list) w.reject(error);
  }
}
