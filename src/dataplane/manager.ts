// Mapping changes → dataplane operations, off the packet path. Shard workers post the
// portable records of every batch (the journal's records) every few milliseconds; here
// the latest state of each external key waits in `pending` (so a burst of refreshes of
// one mapping is one check), and every batchMs the changes against what is installed
// become backend transactions of at most reconcileChunk operations, one per event-loop
// turn: every `unmap` first, then every `map`. A failed
// transaction changes nothing (nft applies a file atomically; the event stream resets)
// and is retried with what came meanwhile; after `failuresBeforeDown` failures in a row
// the dataplane is down: the shards answer NETWORK_FAILURE [RFC 6887 §7.4] until a full
// reconciliation succeeds. Start-up (and recovery) reconciliation: the backend is reset and
// loaded from every shard's table, read in bounded chunks. A backlog of posted records over
// maxBacklogBytes (the backend cannot keep up with the shards) is let go and replaced by a
// resynchronisation: the tables are read the same way and compared with what is installed,
// nothing reset (forwarding goes on), and what is installed but no longer in any table is
// removed.
import { isIP } from "node:net";
import type { Logger } from "pino";
import { decodeKeyStates, externalKey, sameForwarding, type DataplaneOp, type Forwarding, type KeyState } from "./ops.js";
import { ActivityBatcher, type ActivityQuery } from "./activity.js";
import { setImmediate as turn } from "node:timers/promises";

/** States compared per event-loop turn (a few ms of the main thread). */
const TURN_KEYS = 2_000;
/** Keys decoded into one batch, in transactions (reconcileChunk): the rest of a backlog stays raw bytes. */
const BATCH_CHUNKS = 5;

export interface DataplaneBackend {
  readonly name: string;
  /** IPv6 mappings (IPv6 internal and external) are installed too; otherwise counted unsupported. */
  readonly ipv6?: boolean;
  /** Empties the dataplane (reconciliation start). */
  reset(): Promise<void>;
  /** One transaction: all of it or nothing. */
  apply(ops: DataplaneOp[]): Promise<void>;
  close(): Promise<void>;
  /** Traffic-driven lifetimes: per query, seconds the traffic seen so far keeps it (0: idle); absent: no activity source. */
  activity?(queries: ActivityQuery[]): Promise<number[]>;
}

export interface DataplaneSource {
  shards: number;
  /** A chunk of shard `shard`'s table (portable records) from record id `from`; next 0 = done. */
  exportTable(shard: number, from: number): Promise<{ bytes: Uint8Array; next: number }>;
  /** Tells every shard to answer NETWORK_FAILURE (down) or to serve again. */
  setDown(down: boolean): Promise<void>;
}

export interface DataplaneOptions {
  batchMs: number;
  failuresBeforeDown: number;
  /** Operations per backend transaction during reconciliation. */
  reconcileChunk: number;
  /** Bytes of posted records waiting to be decoded beyond which they are let go and the dataplane is resynchronised. */
  maxBacklogBytes: number;
}

export interface DataplaneStats {
  backend: string;
  up: boolean;
  pendingKeys: number;
  /** Bytes of the shards' records received and not yet decoded into pendingKeys (a backlog that grows: the dataplane cannot keep up). */
  backlogBytes: number;
  installed: number;
  transactions: number;
  operations: number;
  failures: number;
  consecutiveFailures: number;
  reconciliations: number;
  /** Backlogs let go over maxBacklogBytes (each followed by a resynchronisation, counted in reconciliations; absent: older senders). */
  backlogOverflows?: number;
  unsupported: number;
  lastError: string | null;
  /** Activity reads of the backend, and the queries they answered (traffic-driven lifetimes; absent: older senders). */
  activityReads?: number;
  activityQueries?: number;
}

/** Flags of an IPv4 external port in InstalledTable: installed, inbound, outbound, seen by the resynchronisation under way. */
const INSTALLED = 1;
const INBOUND = 2;
const OUTBOUND = 4;
const SEEN = 8;

/** 7 bytes per IPv4 external port; everything else in a Map. */
class InstalledTable {
  private readonly blocks = new Map<string, { internal: Uint32Array; port: Uint16Array; flags: Uint8Array }>();
  private readonly filters = new Map<string, Forwarding["filters"]>();
  private readonly other = new Map<string, Forwarding>();
  /** Keys of `other` seen by the resynchronisation under way (the IPv4 ports: their SEEN flag). */
  private readonly otherSeen = new Set<string>();
  size = 0;

  private static v4(address: string): number | undefined {
    if (isIP(address) !== 4) return undefined;
    return address.split(".").reduce((n, b) => n * 256 + Number(b), 0);
  }

  private block(s: KeyState, create: boolean) {
    const name = `${s.protocol}/${s.external.address}`;
    let b = this.blocks.get(name);
    if (!b && create) this.blocks.set(name, (b = { internal: new Uint32Array(65536), port: new Uint16Array(65536), flags: new Uint8Array(65536) }));
    return b;
  }

  get(s: KeyState): Forwarding | undefined {
    if (InstalledTable.v4(s.external.address) === undefined) return this.other.get(s.key);
    const b = this.block(s, false);
    const flags = b?.flags[s.external.port] ?? 0;
    if (!b || !(flags & INSTALLED)) return this.other.get(s.key);
    const a = b.internal[s.external.port];
    return {
      protocol: s.protocol,
      family: 4,
      external: s.external,
      internal: { address: `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}`, port: b.port[s.external.port] },
      inbound: (flags & INBOUND) !== 0,
      outbound: (flags & OUTBOUND) !== 0,
      filters: this.filters.get(s.key) ?? [],
    };
  }

  set(s: KeyState, f: Forwarding | undefined): void {
    const had = this.get(s) !== undefined;
    this.size += (f ? 1 : 0) - (had ? 1 : 0);
    this.other.delete(s.key);
    this.filters.delete(s.key);
    const b = this.block(s, f !== undefined);
    if (b) b.flags[s.external.port] = 0;
    if (!f) return;
    const internal = InstalledTable.v4(f.internal.address);
    if (internal === undefined || !b) {
      this.other.set(s.key, f);
      return;
    }
    b.internal[s.external.port] = internal;
    b.port[s.external.port] = f.internal.port;
    b.flags[s.external.port] = INSTALLED | (f.inbound ? INBOUND : 0) | (f.outbound ? OUTBOUND : 0);
    if (f.filters.length > 0) this.filters.set(s.key, f.filters);
  }

  clear(): void {
    this.blocks.clear();
    this.filters.clear();
    this.other.clear();
    this.otherSeen.clear();
    this.size = 0;
  }

  /** Forgets every mark (a resynchronisation that failed half-way). */
  clearMarks(): void {
    for (const b of this.blocks.values()) for (let port = 0; port < 65536; port++) b.flags[port] &= ~SEEN;
    this.otherSeen.clear();
  }

  /** Notes that the key is in a table (a resynchronisation), if installed. */
  mark(s: KeyState): void {
    const b = InstalledTable.v4(s.external.address) === undefined ? undefined : this.block(s, false);
    if (b && b.flags[s.external.port] & INSTALLED) b.flags[s.external.port] |= SEEN;
    else if (this.other.has(s.key)) this.otherSeen.add(s.key);
  }

  /**
   * The keys installed and not marked since the last call, the marks cleared: what no table
   * holds any more. Yields (a turn for the caller) after every block of 65 536 ports.
   */
  *unmarked(): Generator<KeyState | undefined> {
    for (const [name, b] of this.blocks) {
      const slash = name.indexOf("/");
      const protocol = Number(name.slice(0, slash));
      const address = name.slice(slash + 1);
      for (let port = 0; port < 65536; port++) {
        const flags = b.flags[port];
        if (flags & SEEN) b.flags[port] = flags & ~SEEN;
        else if (flags & INSTALLED) yield { key: externalKey(protocol, { address, port }), protocol, external: { address, port } };
      }
      yield undefined;
    }
    for (const [key, f] of this.other) if (!this.otherSeen.has(key)) yield { key, protocol: f.protocol, external: f.external };
    this.otherSeen.clear();
  }
}

export class DataplaneManager {
  private pending = new Map<string, KeyState>();
  /** Records posted by the shards, not yet decoded into `pending`. */
  private incoming: Uint8Array[] = [];
  private readonly installed = new InstalledTable();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private needsReconcile = true;
  /** The backlog was let go: the tables are to be compared with what is installed (nothing reset). */
  private needsResync = false;
  private incomingBytes = 0;
  /** The shards start down (NETWORK_FAILURE) when a dataplane is configured; the first reconciliation brings it up. */
  private up = false;
  private closed = false;
  /** No attempt before this (performance.now()): failures back off. */
  private retryAt = 0;
  private readonly counters = {
    transactions: 0,
    operations: 0,
    failures: 0,
    consecutiveFailures: 0,
    reconciliations: 0,
    backlogOverflows: 0,
    unsupported: 0,
    lastError: null as string | null,
  };

  constructor(
    private readonly backend: DataplaneBackend,
    private readonly source: DataplaneSource,
    private readonly o: DataplaneOptions,
    private readonly log: Logger,
  ) {
    const read = backend.activity?.bind(backend);
    this.activityBatcher = read ? new ActivityBatcher(read) : undefined;
  }

  /** Reconciles, then applies changes every batchMs. Resolves after the first reconciliation (or its failure). */
  async start(): Promise<void> {
    await this.tick();
    this.timer = setInterval(() => void this.tick(), this.o.batchMs);
    this.timer.unref();
  }

  /** Portable records posted by a shard (every change of a batch: refreshes too). */
  ingest(bytes: Uint8Array): void {
    // Only queued here: decoded at the next tick, a message per event-loop turn. Messages
    // that queued up while the main thread was busy are delivered in one turn, and
    // decoding them all there held it for as long as the backlog took.
    if (this.needsResync) return; // the resynchronisation, not begun yet, reads it from the tables
    if (this.incomingBytes + bytes.byteLength > this.o.maxBacklogBytes) {
      this.log.warn(
        { backend: this.backend.name, backlogBytes: this.incomingBytes, pendingKeys: this.pending.size, maxBacklogBytes: this.o.maxBacklogBytes },
        "dataplane backlog over dataplane.maxBacklogBytes: the changes waiting are let go; the dataplane is resynchronised from the tables (nothing is reset)",
      );
      this.counters.backlogOverflows++;
      this.incoming = [];
      this.incomingBytes = 0;
      this.pending.clear();
      this.needsResync = true;
      return;
    }
    this.incoming.push(bytes);
    this.incomingBytes += bytes.byteLength;
  }

  /** Forces a full reconciliation at the next tick (the engine lost events; an operator asked). */
  requestReconcile(): void {
    this.needsReconcile = true;
  }

  stats(): DataplaneStats {
    return {
      backend: this.backend.name,
      up: this.up,
      pendingKeys: this.pending.size,
      backlogBytes: this.incomingBytes,
      installed: this.installed.size,
      ...this.counters,
      activityReads: this.activityBatcher?.reads ?? 0,
      activityQueries: this.activityBatcher?.queries ?? 0,
    };
  }

  private readonly activityBatcher: ActivityBatcher | undefined;

  /**
   * How long the traffic seen so far keeps each queried mapping (seconds, 0: idle); queries
   * of every shard arriving together are one backend read. Rejects when the backend has no
   * activity source or the read failed (the shard then decides as without tracking).
   */
  activity(queries: ActivityQuery[]): Promise<number[]> {
    if (!this.activityBatcher) return Promise.reject(new Error(`the ${this.backend.name} dataplane has no activity source`));
    return this.activityBatcher.ask(queries);
  }

  private tick(): Promise<void> {
    if (this.running || this.closed) return this.running ?? Promise.resolve();
    if (performance.now() < this.retryAt) return Promise.resolve();
    const work = this.needsReconcile ? this.reconcile(true) : this.needsResync ? this.reconcile(false) : this.applyPending();
    this.running = work.finally(() => (this.running = undefined));
    return this.running;
  }

  /**
   * Operations turning what is installed into `states`, every unmap before any map (an
   * internal endpoint moving to another external port must leave its old entries first),
   * compared TURN_KEYS per event-loop turn.
   */
  private async diff(states: Iterable<KeyState>): Promise<[KeyState, DataplaneOp][]> {
    const unmaps: [KeyState, DataplaneOp][] = [];
    const maps: [KeyState, DataplaneOp][] = [];
    let seen = 0;
    for (const s of states) {
      if (++seen % TURN_KEYS === 0) await turn();
      const was = this.installed.get(s);
      const want = s.forwarding && this.supported(s.forwarding) ? s.forwarding : undefined;
      if (was && want && sameForwarding(was, want)) continue; // a refresh: nothing to change
      if (was) unmaps.push([s, { op: "unmap", mapping: was }]);
      if (want) maps.push([s, { op: "map", mapping: want }]);
    }
    return [...unmaps, ...maps];
  }

  /**
   * `ops` as transactions of at most reconcileChunk operations, one per event-loop turn,
   * `installed` following each (`count`: in the transaction and operation counters, which
   * leave reconciliations out). Returns how many were applied: all, or up to the
   * transaction that failed (`error`).
   */
  private async applyInTurns(ops: [KeyState, DataplaneOp][], count: boolean): Promise<{ applied: number; error?: Error }> {
    for (let i = 0; i < ops.length; i += this.o.reconcileChunk) {
      await turn();
      const part = ops.slice(i, i + this.o.reconcileChunk);
      try {
        if (this.closed) throw new Error("dataplane closed");
        await this.backend.apply(part.map(([, op]) => op));
      } catch (e) {
        return { applied: i, error: e as Error };
      }
      for (const [s, op] of part) this.installed.set(s, op.op === "map" ? op.mapping : undefined);
      if (!count) continue;
      this.counters.transactions++;
      this.counters.operations += part.length;
    }
    return { applied: ops.length };
  }

  /** The records queued by ingest() into `pending`, one message per event-loop turn, at most BATCH_CHUNKS transactions' worth of keys. */
  private async decodeIncoming(): Promise<void> {
    // Up to a batch's worth: a backlog (the main thread behind a populate at full rate)
    // waits as the shards' compact records, not as millions of objects the collector
    // walks; the latest state still wins, the messages being taken in order.
    const most = this.o.reconcileChunk * BATCH_CHUNKS;
    while (this.incoming.length > 0 && this.pending.size < most) {
      const bytes = this.incoming.shift()!;
      this.incomingBytes -= bytes.byteLength;
      for (const s of decodeKeyStates(bytes)) this.pending.set(s.key, s);
      await turn();
    }
  }

  private supported(f: Forwarding): boolean {
    if (f.family === 4 && isIP(f.internal.address) === 4) return true;
    if (f.family === 6 && this.backend.ipv6 && isIP(f.internal.address) === 6 && f.filters.every((r) => isIP(r.address) === 6)) return true;
    this.counters.unsupported++;
    return false;
  }

  /**
   * The pending changes as transactions (diff, applyInTurns): the main thread (which
   * feeds systemd's watchdog, and answers the control channel) is never held for a whole
   * batch, which after a burst (a mass expiry, a renumbering, a populate at full rate) can
   * be millions of keys. Changes that arrive meanwhile wait for the next tick. A failed
   * transaction leaves the states not yet applied pending again (unless newer ones came);
   * the earlier transactions stay applied.
   */
  private async applyPending(): Promise<void> {
    do {
      await this.decodeIncoming();
      if (this.pending.size === 0) return;
      const batch = this.pending;
      this.pending = new Map();
      const ops = await this.diff(batch.values());
      const { applied, error } = await this.applyInTurns(ops, true);
      if (error) {
        for (const [s] of ops.slice(applied)) if (!this.pending.has(s.key)) this.pending.set(s.key, s);
        if (!this.closed) this.failed(error);
        return;
      }
      if (ops.length > 0) {
        this.counters.consecutiveFailures = 0;
        this.retryAt = 0;
      }
    } while (this.incoming.length > 0 && !this.closed && !this.needsReconcile && !this.needsResync);
  }

  private failed(e: Error): void {
    this.counters.failures++;
    this.counters.consecutiveFailures++;
    this.retryAt = performance.now() + Math.min(10_000, 100 * 2 ** Math.min(this.counters.consecutiveFailures - 1, 7));
    this.counters.lastError = e.message;
    this.log.error({ backend: this.backend.name, error: e.message, consecutive: this.counters.consecutiveFailures }, "dataplane transaction failed");
    if (this.up && this.counters.consecutiveFailures >= this.o.failuresBeforeDown) {
      this.up = false;
      this.needsReconcile = true; // recovery starts from a clean slate
      this.log.error({ backend: this.backend.name }, "dataplane down: requests get NETWORK_FAILURE until it is reconciled");
      void this.source.setDown(true);
    }
  }

  /**
   * Loads every shard's table: after a reset of the backend (`reset`), or compared with what
   * is installed, which the tables no longer hold then removed (a resynchronisation after
   * the backlog was let go). Changes arriving meanwhile wait in `incoming`: the tables are
   * read after the resynchronisation began, so what was posted before is in them.
   */
  private async reconcile(reset: boolean): Promise<void> {
    const t0 = performance.now();
    this.needsResync = false;
    // Decoded from records posted before now, so the tables read below hold them or newer
    // states (a backlog let go may have dropped the newer records: never apply these after).
    if (!reset) this.pending.clear();
    try {
      if (reset) {
        await this.backend.reset();
        this.installed.clear();
      }
      let loaded = 0;
      for (let shard = 0; shard < this.source.shards; shard++) {
        let from = 1;
        do {
          const chunk = await this.source.exportTable(shard, from);
          from = chunk.next;
          const states = decodeKeyStates(chunk.bytes);
          const ops = await this.diff(states);
          const { error } = await this.applyInTurns(ops, false);
          if (error) throw error;
          if (!reset) for (const s of states) this.installed.mark(s);
          loaded += ops.length;
        } while (from !== 0);
      }
      if (!reset) loaded += await this.removeUnmarked();
      this.needsReconcile = false;
      this.counters.reconciliations++;
      this.counters.consecutiveFailures = 0;
      this.retryAt = 0;
      this.log.info(
        { backend: this.backend.name, installed: this.installed.size, operations: loaded, ms: Math.round(performance.now() - t0) },
        reset ? "dataplane reconciled" : "dataplane resynchronised (nothing reset)",
      );
      if (!this.up) {
        this.up = true;
        await this.source.setDown(false);
      }
    } catch (e) {
      if (!reset) {
        this.installed.clearMarks();
        this.needsResync = true; // what was let go is still to be compared
      }
      this.failed(e as Error); // still down (the shards started down); tried again after a back-off
    }
  }

  /** Unmaps what is installed and was not in any table (a resynchronisation); returns how many. */
  private async removeUnmarked(): Promise<number> {
    const ops: [KeyState, DataplaneOp][] = [];
    let seen = 0;
    for (const s of this.installed.unmarked()) {
      if (!s) {
        await turn();
        continue;
      }
      if (++seen % TURN_KEYS === 0) await turn();
      ops.push([s, { op: "unmap", mapping: this.installed.get(s)! }]);
    }
    const { error } = await this.applyInTurns(ops, false);
    if (error) throw error;
    return ops.length;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.running;
    await this.backend.close();
  }
}
