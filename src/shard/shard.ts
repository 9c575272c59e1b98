// One shard, as run on its engine worker (./worker.ts): a packet engine holding the
// mappings of the subscribers that talk to this worker's listen addresses and a slice of
// every pool address's port blocks, the UDP sockets of those addresses (so a datagram is
// read, served and answered on one thread: the fastest layout measured), its
// store, its dataplane feed, its announcer and its Mapping Update sender. Its Epoch starts
// at 0 when the shard starts: a replacement worker's shard begins empty, so the reset is
// the truth, and it is announced (RFC 6887 §8.5, §14.1.3) — unless its files restored the
// state, and the Epoch continues.
import { threadId } from "node:worker_threads";
import { isIPv6 } from "node:net";
import type { Logger } from "pino";
import { createLogger } from "../core/logger.js";
import { decodeRecords, PacketEngine, recordKinds, type MappingRecords } from "../engine/packet-engine.js";
import { createListener, type UdpListener, type UnsolicitedSocket } from "../io/udp-listener.js";
import { withHugePages } from "../io/huge-pages.js";
import { poolAddresses, type Config } from "../config/schema.js";
import { MonotonicClock, timeFrom, wallSeconds, type TimeSource } from "../core/clock.js";
import { ShardStore, type RestoreReport } from "../persist/store.js";
import { classifier, limiterFor } from "../config/policy.js";
import * as W from "../wire.generated.js";
import { loggedKinds } from "../logging/record.js";
import { ErrorCodes, PcpdError } from "../errors.js";
import { Announcer } from "./announce.js";
import { HaRole } from "./ha-role.js";
import { DataplaneFeed } from "./dataplane-feed.js";
import { ActivityAsker } from "./activity-asker.js";
import { MappingUpdater } from "./mapping-update.js";
import { StatsBoard } from "./stats-board.js";
import { EventOutbox } from "./event-outbox.js";
import { paServerFor } from "../auth/pa-setup.js";
import type { PaServer } from "../auth/pa-server.js";
import type {
  HaTaskKind,
  DataplaneMessage,
  ActivityMessage,
  EventsMessage,
  HaFencedMessage,
  MappingSelector,
  ShardSpec,
  ShardStarted,
  ShardStats,
  ShardTasks,
  TaskRequest,
  TaskResult,
} from "./tasks.js";

/** Mappings moved per event-loop turn while renumbering, so requests keep being served. */
const REHOME_CHUNK = 2000;

/** Record ids read per exportTable task (dataplane reconciliation): bounds the time it holds the packet path. */
const EXPORT_SCAN = 20_000;

/** Records visited per listing task: bounds the time a listing holds the packet path (~ms). */
const LIST_SCAN = 50_000;

/** Pool gauges (free blocks per address) are copied to the board this often, and after every task. */
const POOL_PUBLISH_MS = 1000;

/** Tasks a running shard serves (start and stop are the worker entry's). */
export type ServedKind = Exclude<keyof ShardTasks, "start" | "stop" | HaTaskKind>;
type Handlers = { [K in ServedKind]: (task: TaskRequest<K>, now: number) => TaskResult<K> };

/** Tasks after which the board is copied again (the others only read). */
const CHANGES_STATE = new Set<ServedKind>(["reload", "addStatic", "removeStatic", "addMirror", "setMirrors", "deleteSubscriber"]);

/** Hands a message to the main thread (the worker's parentPort), transferring the listed buffers. */
export type Post = (m: EventsMessage | DataplaneMessage | HaFencedMessage | ActivityMessage, transfer?: ArrayBuffer[]) => void;

export class Shard {
  spec: ShardSpec;
  readonly log: Logger;
  /** Replaced only while an HA standby (a hole in its stream: ./ha-role.ts). */
  engine: PacketEngine;
  readonly clock: MonotonicClock;
  readonly time: TimeSource;
  private readonly board: StatsBoard;
  /** Wall-clock seconds at engine time 0 (persisted records carry wall-clock times). */
  readonly wallOffset: number;
  private readonly announcer: Announcer;
  private readonly updater: MappingUpdater;
  // Set by open() (the store is restored before the listener exists: its replies may wait
  // for the disk), or by an HA promotion; absent on an HA standby.
  private listener: UdpListener | undefined;
  private auth: PaServer | undefined;
  /** HA (spec.ha): the shard's replication side; it decides when the listener exists. */
  private haRole: HaRole | undefined;
  /** The listener closed last (a handover, a fence): its gate drops go on counting (held replies dropped after it closed). */
  private retired: UdpListener | undefined;
  /** Durable state (persistence.enabled). */
  private store?: ShardStore;
  private dataplane?: DataplaneFeed;
  /** Traffic-driven lifetimes (dataplane.activity): the engine's activity queries out, the answers in. */
  private activity?: ActivityAsker;
  /** The event stream to the main thread. */
  private readonly outbox: EventOutbox;
  private poolTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Bytes of the engine's memory in transparent huge pages (engine.hugePages), measured when it was made; -1 before the first. */
  private hugePageBytes = -1;

  /** Restores the shard's state, binds its sockets and starts serving. */
  static async start(spec: ShardSpec, post: Post): Promise<{ shard: Shard; started: ShardStarted }> {
    const shard = new Shard(spec, post);
    const started = spec.ha ? shard.openStandby() : await shard.open();
    return { shard, started };
  }

  private constructor(
    spec: ShardSpec,
    private readonly post: Post,
  ) {
    this.spec = spec;
    const { config } = spec;
    this.outbox = new EventOutbox(spec.shard, () => this.engine, post);
    // A logged server streams its events from the first request on (src/logging/: a
    // mapping made before the main thread asked for events would have no log record).
    if (config.logging.syslog.enabled || config.logging.ipfix.enabled) this.outbox.set(true, loggedKinds(config.logging));
    this.log = createLogger(config.log.level, config.log.format, { service: "pcp-server", shard: spec.shard, thread: threadId });
    this.time = timeFrom(spec.testClock);
    const clock = (this.clock = new MonotonicClock(0, () => this.time.monotonicNs()));
    this.engine = this.newEngine();
    this.board = new StatsBoard(spec.board);
    this.wallOffset = wallSeconds(this.time) - clock.seconds();
    this.announcer = new Announcer({
      targets: spec.announce,
      count: config.announce.count,
      firstGapMs: config.announce.firstGapMs,
      messages: (ipv6) => {
        const epoch = clock.epoch();
        const engine = this.engine;
        const out = [engine.announce(epoch)];
        const natPmpAddress = engine.poolUsage().find((p) => !p.retired && !isIPv6(p.address))?.address;
        if (!ipv6 && natPmpAddress && this.spec.config.natPmp === "enabled") out.push(engine.announceNatPmp(epoch, natPmpAddress));
        return out;
      },
      send: (target, payload, port, sent) => {
        const socket = this.listener?.socket(target.source);
        if (!socket) return false;
        if (!isIPv6(target.source)) socket.setMulticastInterface(target.source);
        socket.send(payload, port, target.group, (error) => {
          if (error) this.log.warn({ error: error.message, group: target.group, interface: target.interface }, "announce not sent");
          sent();
        });
        return true;
      },
    });
    this.updater = new MappingUpdater(
      (m, sent) => {
        const socket = this.listener?.socket(this.spec.endpoints.find((e) => isIPv6(e.address) === isIPv6(m.address))?.address ?? "");
        socket?.send(m.payload, m.port, m.address, (error) => {
          if (error) this.log.warn({ error: error.message, address: m.address, port: m.port }, "mapping update not sent");
          sent();
        });
        return socket !== undefined;
      },
      () => clock.epoch(),
    );
  }

  /** A packet engine with its tables (config, seed and shard layout of the spec). */
  private newEngine(): PacketEngine {
    const { config, seed, shard, shards } = this.spec;
    const engine = new PacketEngine("release", config);
    // Advised before initEngine first writes the tables (src/io/huge-pages.ts).
    const memory = withHugePages(engine.exports.memory, config.engine.hugePages, () =>
      engine.initEngine(config, this.clock.seconds(), { seed, shard, shards }),
    );
    if (this.hugePageBytes < 0 && (memory.hugePages || config.engine.hugePages === "off")) this.log.info(memory, "engine memory");
    else if (this.hugePageBytes < 0) this.log.warn(memory, "engine memory: 4 KiB pages (no transparent huge pages)");
    this.hugePageBytes = memory.hugePageBytes;
    return engine;
  }

  /**
   * The UDP listener over the shard's endpoints (the one construction the plain start and
   * an HA promotion share), bound; its sockets are closed again if one fails to bind.
   */
  private async listen(extra: { gate?: BigInt64Array; durable?: () => Promise<void> }): Promise<UdpListener> {
    const { spec, engine, clock, log } = this;
    const { config } = spec;
    const listener = createListener({
      endpoints: spec.endpoints,
      engine,
      clock,
      classify: classifier(config),
      limiter: limiterFor(config, spec.shards),
      receiveBuffer: config.listen.receiveBuffer,
      onReceiveBuffer: (r) =>
        r.capped
          ? log.warn(r, "receive buffer capped by net.core.rmem_max: raise it (sysctl) to at least listen.receiveBuffer")
          : log.info(r, "receive buffer"),
      onEvents: (events) => this.onEvents(events),
      // Copied only while a Mapping Update waits for a refresh, or for debug logs (the
      // journal reads them in place, in afterBatch).
      wantsEvents: () => this.outbox.on || this.updater.size > 0 || log.isLevelEnabled("debug"),
      afterBatch: () => this.afterBatch(),
      durable: extra.durable,
      gate: extra.gate,
      monotonicNs: () => this.time.monotonicNs(),
      auth: this.authServer(),
    });
    try {
      await listener.start();
    } catch (e) {
      await listener.stop(); // sockets bound before the failure
      throw e;
    }
    return listener;
  }

  /**
   * The worker's PCP authenticator (auth.* on for some source), made once: its security
   * associations live in this worker, which receives every datagram their clients send
   * to its addresses (docs/auth.md). Lost with the process: clients re-authenticate.
   */
  private authServer(): PaServer | undefined {
    this.auth ??= paServerFor(this.spec.config, {
      epoch: () => this.clock.epoch(),
      // The socket is the one the listener handed the authenticator with the client's datagram.
      send: (socket, msg, port, address) => this.listener?.sendFrom(socket as UnsolicitedSocket, msg, port, address),
    });
    return this.auth;
  }

  /** The dataplane feed (a configured dataplane): requests get NETWORK_FAILURE until the main thread has programmed it. */
  private feedDataplane(): void {
    if (this.spec.config.dataplane.backend === "none") return;
    this.dataplane = new DataplaneFeed(this.spec.shard, this.spec.config.dataplane.batchMs, this.post);
    this.engine.setDataplaneDown(true);
    if (this.spec.config.dataplane.activity.enabled)
      this.activity = new ActivityAsker({
        shard: this.spec.shard,
        waitMs: this.spec.config.dataplane.activity.requestWaitMs,
        engine: () => this.engine,
        now: () => this.clock.seconds(),
        post: this.post,
        answered: () => {
          this.listener?.settle();
          this.listener?.resume();
        },
        log: this.log,
      });
  }

  private async open(): Promise<ShardStarted> {
    const { spec, engine, clock, log } = this;
    const restored = await this.restoreState();
    const store = this.store;
    this.feedDataplane();
    try {
      this.listener = await this.listen({ durable: store ? () => store.commitNow() : undefined });
    } catch (e) {
      this.dataplane?.stop();
      this.activity?.stop();
      await store?.close();
      throw e;
    }
    const endpoints = this.listener.boundAddresses();
    this.spec = { ...spec, endpoints };
    const firstStart = this.board.writer() === 0; // (a restart finds its previous thread's id)
    this.board.claim(threadId, engine.statsBytes(), clock.epochState(), engine.poolUsage());
    this.board.publishHugePages(this.hugePageBytes);
    if (store) this.board.publishPersistence(store.status());
    let eventsLost = engine.engineStats().eventsLost;
    this.poolTimer = setInterval(() => {
      this.board.publishPool(engine.poolUsage());
      this.publishIo();
      if (!store) return;
      this.board.publishPersistence(store.status());
      const lost = engine.engineStats().eventsLost;
      if (lost !== eventsLost) {
        // Changes that left no event reached no journal either: a snapshot catches up.
        log.warn({ eventsLost: Number(lost - eventsLost) }, "event ring overflowed: journal incomplete until the next snapshot");
        eventsLost = lost;
        store.requestSnapshot = true;
      }
      if (store.snapshotDue()) void store.snapshot(engine, this.wallOffset);
    }, POOL_PUBLISH_MS);
    this.poolTimer.unref();
    const continued = restored !== undefined && restored.epoch > 0;
    // A continued Epoch has nothing to announce; with listen.reusePort shard 0 announces the
    // server's first start for every shard (their Epochs start together: one multicast),
    // and each shard its own later resets [RFC 6887 §14.1.3].
    if (!continued && !(spec.announceFollows && firstStart)) this.announcer.start();
    log.info(
      { listen: endpoints, epoch: clock.epoch(), announce: spec.announce.map((t) => `${t.source}→${t.group}`) },
      continued ? "shard serving (epoch continued)" : "shard serving (epoch reset)",
    );
    return { shard: spec.shard, threadId, endpoints, epoch: clock.epoch(), serving: true };
  }

  /**
   * HA: starts as a standby of the shard's subject (./ha-role.ts): the engine warm, no
   * socket bound, nothing announced, no dataplane feed, Epoch 0 until a promotion.
   */
  private openStandby(): ShardStarted {
    const { spec, clock, log } = this;
    const ha = spec.ha!;
    this.haRole = new HaRole({
      spec: { ...spec, ha },
      log,
      time: this.time,
      clock,
      wallOffset: this.wallOffset,
      engine: () => this.engine,
      rebuildEngine: () => {
        this.engine = this.newEngine();
        this.board.publishHugePages(this.hugePageBytes);
        return this.engine;
      },
      serve: (gate, durable) => this.serveActive(gate, durable),
      silence: () => this.silence(),
      gateDrops: () => this.listener?.gateDrops ?? this.retired?.gateDrops ?? 0,
      fenced: (error) => this.post({ pcpdHaFenced: true, shard: spec.shard, error } satisfies HaFencedMessage),
    });
    this.board.claim(threadId, this.engine.statsBytes(), clock.epochState(), this.engine.poolUsage());
    this.board.publishHugePages(this.hugePageBytes);
    this.poolTimer = setInterval(() => {
      this.board.publish(this.engine.statsBytes(), clock.epochState());
      this.board.publishPool(this.engine.poolUsage());
      this.publishIo();
      this.haRole?.maybeSnapshot();
    }, POOL_PUBLISH_MS);
    this.poolTimer.unref();
    log.info({ group: ha.group, subject: ha.subject, listen: spec.endpoints }, "shard started as an HA standby (not serving)");
    return { shard: spec.shard, threadId, endpoints: spec.endpoints, epoch: 0, serving: false };
  }

  /** HA promotion: sockets behind the gate, the dataplane feed, the announcement. */
  private async serveActive(gate: BigInt64Array, durable: () => Promise<void>): Promise<void> {
    this.engine.discardEvents(); // restored records are on the stream already
    this.feedDataplane();
    try {
      this.listener = await this.listen({ gate, durable });
    } catch (e) {
      this.dataplane?.stop();
      this.activity?.stop();
      this.dataplane = undefined;
      throw e;
    }
    this.listener.gateDrops = this.retired?.gateDrops ?? 0;
    this.board.publish(this.engine.statsBytes(), this.clock.epochState());
    this.announcer.start();
  }

  /** HA: stops answering (fenced, or handed over): sockets and the dataplane feed closed. */
  private async silence(): Promise<void> {
    const listener = this.listener;
    this.listener = undefined;
    this.announcer.stop();
    this.dataplane?.stop();
    this.activity?.stop();
    this.dataplane = undefined;
    if (listener) {
      this.retired = listener;
      await listener.stop();
    }
  }

  /** The shard's files read back into the engine (Epoch continued when intact); the store then journals. */
  private async restoreState(): Promise<RestoreReport | undefined> {
    const { spec, engine, clock, log, wallOffset } = this;
    const { persistence } = spec.config;
    if (!persistence.enabled) return undefined;
    const store = new ShardStore({ ...persistence, shard: spec.shard, shards: spec.shards, time: this.time }, () => clock.epoch(), log);
    const t0 = performance.now();
    const restored = await store.restore(engine, wallOffset, clock.seconds());
    if (restored.epoch > 0) clock.continueEpoch(restored.epoch);
    const summary = {
      dir: store.dir,
      files: restored.files.length,
      mappings: restored.mappings,
      held: restored.held,
      dropped: restored.dropped,
      damage: restored.damage,
      fallback: restored.fallback,
      gapBytes: restored.gapBytes,
      epoch: clock.epoch(),
      ms: Math.round(performance.now() - t0),
    };
    if (restored.stateLost) log.error(summary, "state restored with losses: epoch reset");
    else log.info(summary, "state restored");
    // Journals replayed or damage found: a fresh snapshot replaces them.
    if (restored.bytes > 0 || restored.damage.length > 0 || restored.fallback) store.requestSnapshot = true;
    store.start({ engine, wallOffset });
    this.store = store;
    return restored;
  }

  /** Portable records of changes, to the journal (or the HA stream) and the dataplane. */
  private record(parts: Uint8Array[]): void {
    this.store?.append(parts);
    this.haRole?.append(parts);
    this.dataplane?.push(parts);
  }

  /** After every batch (before its replies leave) and engine work outside one: counters out, changes to the journal and the dataplane. */
  private afterBatch(): void {
    this.board.publish(this.engine.statsBytes(), this.clock.epochState());
    if (this.store || this.dataplane || this.haRole?.active) this.record(this.engine.persistPending(this.wallOffset));
    this.activity?.collect();
  }

  /** Mapping Update cancels (unless told not to), debug log and the event stream (./event-outbox.ts), for a batch of events. */
  private onEvents(events: MappingRecords, cancelUpdates = true): void {
    const { engine, log } = this;
    if (cancelUpdates && this.updater.size > 0)
      // (Only while copies are pending: with an event subscriber the records come every batch.)
      for (const e of recordKinds(events)) {
        // A refresh (or the end) of a re-homed mapping stops its Mapping Update copies.
        if (e.kind === W.EVENT_REFRESH || e.kind === W.EVENT_DELETE || e.kind === W.EVENT_EXPIRE) this.updater.cancel(e.mapping);
      }
    if (log.isLevelEnabled("debug")) for (const e of decodeRecords(events, engine.poolList())) log.debug({ event: e }, "mapping event");
    this.outbox.gather(events);
  }

  /** The listener's socket counters to the board (none while no listener serves: the last ones stay). */
  private publishIo(): void {
    if (this.listener) this.board.publishIo(this.listener.ioStats());
  }

  private publishAll(): void {
    this.board.publish(this.engine.statsBytes(), this.clock.epochState());
    this.board.publishPool(this.engine.poolUsage());
    if (this.store) this.board.publishPersistence(this.store.status());
  }

  /** Serves one task; a task that changed state has its counters, journal records and events out before it answers. */
  run<K extends ServedKind>(task: TaskRequest<K>): TaskResult<K> {
    const handler: (task: TaskRequest<K>, now: number) => TaskResult<K> = this.handlers[task.kind];
    const result = handler(task, this.clock.seconds());
    if (!this.stopped && CHANGES_STATE.has(task.kind)) {
      if (this.listener) this.listener.settle();
      else this.engine.discardEvents(); // an HA standby: its changes come from the stream
      this.board.publishPool(this.engine.poolUsage());
    }
    return result;
  }

  /** An HA task (src/shard/tasks.ts): only a shard started with `spec.ha` has a replication side. */
  async ha<K extends HaTaskKind>(task: TaskRequest<K>): Promise<TaskResult<K>> {
    if (!this.haRole) throw new PcpdError(ErrorCodes.HA_WRONG_ROLE, `shard ${this.spec.shard} is in no HA group (task ${task.kind})`);
    return this.haRole.run(task);
  }

  /** Sockets closed, timers stopped, the store flushed and closed: the final counters. */
  async stop(): Promise<ShardStats> {
    this.stopped = true;
    clearInterval(this.poolTimer);
    this.outbox.stop();
    this.announcer.stop();
    this.updater.stop();
    await this.haRole?.stop();
    this.publishIo(); // the sockets' last counters, while they are open
    await this.listener?.stop();
    this.listener?.settle();
    if (this.outbox.on) this.outbox.flush(); // the last events, not left to a timer
    this.auth?.close();
    this.dataplane?.stop();
    this.activity?.stop();
    await this.store?.close();
    this.publishAll();
    const { engine } = this;
    return {
      shard: this.spec.shard,
      threadId,
      epoch: this.clock.epoch(),
      engine: engine.engineStats(),
      codec: engine.stats(),
      pool: engine.poolUsage(),
      persistence: this.store?.status(),
      hugePageBytes: Math.max(this.hugePageBytes, 0),
    };
  }

  private readonly handlers: Handlers = {
    reload: ({ config }) => {
      this.engine.reconfigure(config);
      this.listener?.setPolicy({ classify: classifier(config), limiter: limiterFor(config, this.spec.shards) });
      this.log.level = config.log.level;
      this.applyPool(config);
      // Changed NAT64 prefixes: clients are told to ask again [RFC 7225 §4.2].
      // (With listen.reusePort shard 0's announcement speaks for the address: one multicast.)
      if (JSON.stringify(config.pcp.prefix64) !== JSON.stringify(this.spec.config.pcp.prefix64) && !this.spec.announceFollows) this.announcer.start();
      this.spec = { ...this.spec, config };
      return true;
    },
    ping: () => this.clock.epoch(),
    lookup: (t, now) => this.engine.lookupRecords(t.internalAddress, t.protocol, t.internalPort, t.family, now, t.thirdPartyId),
    lookupExternal: (t, now) => this.engine.lookupExternalRecords(t.externalAddress, t.protocol, t.externalPort, now),
    list: (t, now) => this.list(t.from, t.limit, t.select, now),
    addStatic: (t, now) => {
      const result = this.engine.addStatic(t.internalAddress, t.protocol, t.internalPort, t.externalAddress, t.externalPort);
      const family = isIPv6(t.externalAddress) ? 6 : 4;
      return { result, mapping: result === W.RESULT_SUCCESS ? this.engine.lookupRecords(t.internalAddress, t.protocol, t.internalPort, family, now) : null };
    },
    removeStatic: (t) => this.engine.removeStatic(t.internalAddress, t.protocol, t.internalPort, t.family, t.hold ?? true),
    addMirror: (t) => this.engine.addMirror(t.internalAddress, t.protocol, t.internalPort, t.externalAddress, t.externalPort),
    setMirrors: ({ statics }) => {
      // Laid down again from the owners' records: a dynamic mapping of such an endpoint ends.
      this.engine.clearMirrors();
      let laid = 0;
      for (const m of statics) {
        const result = this.engine.addMirror(m.internalAddress, m.protocol, m.internalPort, m.externalAddress, m.externalPort, true);
        if (result === W.RESULT_SUCCESS) laid++;
        else this.log.warn({ static: m, result }, "static mapping of another shard not mirrored here");
      }
      return laid;
    },
    subscriberUsage: (t) => this.engine.subscriberUsage(t.internalAddress, t.thirdPartyId),
    deleteSubscriber: (t) => this.engine.deleteSubscriber(t.internalAddress, t.thirdPartyId),
    events: ({ on, kinds }) => {
      this.outbox.set(on, kinds); // nobody listens: what was gathered is dropped
      return on;
    },
    latestEvents: ({ since, max, filter }) => this.engine.latestRecords(since, max, filter),
    // An HA standby programs no dataplane (the active does): nothing to export, nothing to mark.
    exportTable: ({ from }) =>
      this.haRole && !this.haRole.active ? { bytes: new Uint8Array(0), next: 0 } : this.engine.persistTable(from, EXPORT_SCAN, this.wallOffset),
    dataplane: ({ down }) => {
      if (this.haRole && !this.haRole.active) return down;
      this.engine.setDataplaneDown(down);
      this.log.warn({ down }, down ? "dataplane down: requests get NETWORK_FAILURE" : "dataplane programmed: serving");
      return down;
    },
    activity: ({ id, remaining }) => this.activity?.answer(id, remaining) ?? 0,
    mappingUpdates: () => ({ pending: this.updater.size }),
    authList: () => this.auth?.list() ?? [],
    authTerminate: ({ sessionId }) => this.auth?.terminate(sessionId) ?? false,
    authCounters: () => this.auth?.counters() ?? null,
  };

  /** A listing page: records selected inside the engine, in bounded scans. */
  private list(from: number, limit: number, select: MappingSelector, now: number): { records: MappingRecords; next: number } {
    const { externalAddress, ...rest } = select;
    const pool = externalAddress === undefined ? undefined : this.engine.poolList().indexOf(externalAddress);
    if (pool === -1) return { records: { bytes: new Uint8Array(0), now }, next: 0 }; // not a pool address: nothing maps there
    return this.engine.listRecords(from, limit, LIST_SCAN, { ...rest, pool }, now);
  }

  /**
   * Applies a changed external pool: new addresses join at once; removed ones are retired,
   * their mappings re-homed in chunks (the socket keeps being served in between) with
   * Mapping Update messages to their clients. The Epoch resets, as it must when external
   * addresses change [RFC 6887 §8.5], and the reset is announced (with NAT-PMP's address).
   */
  private applyPool(next: Config): void {
    const { engine, clock, log } = this;
    const before = new Set(poolAddresses(this.spec.config.pool.addresses));
    const after = poolAddresses(next.pool.addresses);
    for (const a of after) {
      if (!before.has(a) && !engine.addPoolAddress(a))
        log.error({ address: a }, "pool address not added: the pool holds 256 addresses (retired ones included until restart)");
    }
    const removed = [...before].filter((a) => !after.includes(a));
    if (removed.length === 0) return;
    let moving = 0;
    for (const a of removed) moving += engine.retirePoolAddress(a, clock.seconds());
    clock.resetEpoch();
    this.announcer.start();
    log.warn({ removed, moving, epoch: clock.epoch() }, "pool addresses retired: re-homing their mappings, epoch reset");
    let moved = 0;
    let told = 0;
    const step = () => {
      if (this.stopped) return;
      const { updates, done } = engine.rehome(clock.seconds(), clock.epoch(), REHOME_CHUNK);
      for (const u of updates) {
        this.updater.schedule(u.mapping, u.messages);
        told += u.messages.length > 0 ? 1 : 0;
        this.record([engine.persistGone(u.from.pool, u.from.protocol, u.from.port)]); // the key it left
      }
      this.record(engine.persistPending(this.wallOffset));
      moved += updates.length;
      // This chunk's own moves and ends: they cancel no update (a PREFER_FAILURE mapping
      // ends here and its CANNOT_PROVIDE_EXTERNAL update must still go).
      const events = engine.drainRecords();
      if (events.bytes.length > 0) this.onEvents(events, false);
      this.publishAll();
      if (done) log.info({ removed, handled: moved, told }, "re-homing done");
      else setImmediate(step);
    };
    step();
  }
}
