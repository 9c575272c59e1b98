// A shard's durable state, in its own directory (<persistence.directory>/shard-<i>-of-<n>):
//
//   journal-<gen>.log    what each batch changed: one record per external key touched
//                        (src/engine: persistPending), written in group commits every
//                        commitIntervalMs (one write + fdatasync per group)
//   snapshot-<gen>.snap  the whole table, written in chunks between batches (fuzzy: the
//                        journal of the same generation starts before its first chunk, so
//                        snapshot + journals from <gen> on give the latest state)
//
// Two generations are kept: a new snapshot is read back and checked before the older
// ones go, and then only those older than the previous snapshot go, so a damaged newest
// snapshot falls back to the previous one plus every journal since.
//
// Restore (at start-up, before the sockets open): the newest intact snapshot, then every
// journal of its generation or later, in order; the latest record of each external key
// wins. Frames are checked one by one (format.ts): a torn tail (a crash mid-write) is cut
// off quietly — the durability policy allows losing the last commit interval — but a
// damaged frame elsewhere, a gap left by a disk outage, or records that cannot come back
// mean state was lost: the Epoch restarts from 0 and is announced. Otherwise the Epoch
// continues from the last frame's plus the time the server was down [RFC 6887 §8.5].
//
// Write failures (a full disk, EIO): the write is rolled back to the last whole frame
// (ftruncate), its records stay pending (up to maxBacklogBytes, then they are let go and
// a GAP frame marks the hole) and are retried; the first write that works again starts a
// snapshot at once, and the store reports "failing"/"recovering" until that snapshot is
// on disk (status()). A check-pointed reply (commitNow) is never released for records
// that are not on disk.
import fs from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import * as W from "../wire.generated.js";
import { ErrorCodes, PcpdError } from "../errors.js";
import type { PacketEngine } from "../engine/packet-engine.js";
import { wallSeconds, type TimeSource } from "../core/clock.js";
import { encodeFrame, FRAME_END, FRAME_GAP, FRAME_META, FRAME_RECORDS, readFrames, verifySnapshot, VERSION, type Damage, type FrameStamp } from "./format.js";

/**
 * Record ids visited per snapshot step (one step, one frame, per event-loop turn). Small
 * enough that a frame — what one flipped bit costs when no older generation can stand
 * in — holds a few thousand records, not a megabyte's worth.
 */
const SNAPSHOT_STEP = 4096;
/** While writes fail: a journal retry at most this often… */
const RETRY_MS = 200;
/** …and, with nothing pending to retry with, a snapshot attempt at this interval, doubling up to the cap. */
const SNAPSHOT_RETRY_MS = 1000;
const SNAPSHOT_RETRY_MAX_MS = 30_000;
export const FORMAT = "pcpd-state";

export interface StoreOptions {
  directory: string;
  shard: number;
  shards: number;
  commitIntervalMs: number;
  fsync: boolean;
  snapshotIntervalSeconds: number;
  snapshotJournalBytes: number;
  /** Pending journal bytes (the disk failing or not keeping up) beyond which they are let go and a snapshot replaces them. */
  maxBacklogBytes: number;
  /** Record ids per snapshot step (tests: more, smaller frames). */
  snapshotStep?: number;
  /** Where wall-clock time comes from (the downtime a restore adds to the Epoch); default the system's. */
  time?: TimeSource;
}

export interface FileDamage extends Damage {
  file: string;
}

export interface RestoreReport {
  /** Files read, in order. */
  files: string[];
  /** Record bytes given to the engine. */
  bytes: number;
  mappings: number;
  held: number;
  dropped: ReturnType<PacketEngine["restoreDropped"]>;
  damage: FileDamage[];
  /** The newest snapshot was damaged and the previous generation was read instead (nothing lost). */
  fallback?: FileDamage;
  /** Record bytes a disk outage let go before a snapshot could replace them (GAP frames). */
  gapBytes: number;
  /** Something persisted did not come back (corruption, a gap, or records dropped for reasons other than expiry). */
  stateLost: boolean;
  /** Epoch to continue from (0 when state was lost or there was none). */
  epoch: number;
}

/** What /healthz, /metrics and `pcpctl stats` show of a shard's persistence. */
export interface PersistenceStatus {
  /** ok; failing: writes fail (records kept and retried); recovering: writing again, the catch-up snapshot not yet on disk. */
  state: "ok" | "failing" | "recovering";
  /** The last error while not ok ("" when ok). */
  reason: string;
  /** Date.now() when it stopped being ok (0 when ok). */
  since: number;
  /** Failed writes (journal and snapshot) since the shard started. */
  writeErrors: number;
  /** Record bytes waiting for the disk. */
  backlogBytes: number;
  /** Record bytes let go over maxBacklogBytes since the shard started (a snapshot replaces them). */
  droppedBytes: number;
}

/** The journal being appended to: `size` is the end of its last whole frame on disk (a failed write is cut back to it). */
interface Journal {
  fd: number;
  gen: number;
  size: number;
  /** Frames to write before the next records (its META). */
  head: Buffer[];
  /** fdatasyncs in flight (never rejects): the fd closes after them. */
  syncs: Promise<unknown>;
}

const pad = (n: number) => String(n).padStart(10, "0");
const journalName = (gen: number) => `journal-${pad(gen)}.log`;
const snapshotName = (gen: number) => `snapshot-${pad(gen)}.snap`;
const genOf = (name: string, kind: "journal" | "snapshot") => {
  const m = new RegExp(`^${kind}-(\\d{10})\\.(log|snap)$`).exec(name);
  return m ? Number(m[1]) : undefined;
};

export { wallSeconds };

/**
 * Removes everything a shard persisted (the operator's Epoch reset); the directory stays: it
 * may be a mount point. Asynchronous (libuv's threads): it runs on the main thread, and
 * unlinking the snapshots and journals of 10M mappings held that thread's event loop
 * (which feeds systemd's watchdog) for over a second.
 */
export async function dropShardFiles(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await fs.promises.readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw e;
  }
  await Promise.all(names.map((name) => fs.promises.rm(join(dir, name), { recursive: true, force: true })));
}

export function shardDirectory(directory: string, shard: number, shards: number): string {
  return join(directory, `shard-${shard}-of-${shards}`);
}

export class ShardStore {
  readonly dir: string;
  private gen = 0;
  private seq = 0n;
  private journal: Journal | undefined;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  /** Record bytes of the write in progress (back in pendingBytes if it fails). */
  private writingBytes = 0;
  /** Bytes let go since the last GAP frame was written. */
  private gapBytes = 0n;
  /** Journal bytes written since the last snapshot started. */
  private journalBytes = 0;
  private lastSnapshot = Date.now();
  private lastCommit = 0;
  /** Write jobs run one after the other (records reach the file in order); none rejects. */
  private writes: Promise<unknown> = Promise.resolve();
  /** A queued commit not started yet takes everything pending when it starts: one is enough. */
  private queued: { sync: boolean; done: Promise<boolean> } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private snapshotting: Promise<void> | undefined;
  private source: { engine: PacketEngine; wallOffset: number } | undefined;
  private closed = false;
  private readonly s: PersistenceStatus = { state: "ok", reason: "", since: 0, writeErrors: 0, backlogBytes: 0, droppedBytes: 0 };
  private retryAt = 0;
  /** Wait before the next catch-up snapshot: 0, then doubling from SNAPSHOT_RETRY_MS while snapshots fail. */
  private snapshotDelayMs = 0;

  constructor(
    private readonly o: StoreOptions,
    private readonly epoch: () => number,
    private readonly log: Logger,
  ) {
    this.dir = shardDirectory(o.directory, o.shard, o.shards);
  }

  status(): PersistenceStatus {
    return { ...this.s, backlogBytes: this.pendingBytes + this.writingBytes };
  }

  private stamp(): FrameStamp {
    return { wall: wallSeconds(this.o.time), epoch: this.epoch(), seq: ++this.seq };
  }

  private meta(): Uint8Array {
    return Buffer.from(JSON.stringify({ format: FORMAT, version: VERSION, shard: this.o.shard, shards: this.o.shards, gen: this.gen }));
  }

  /** Generations present: complete snapshots and journals. */
  private listing(): { snapshots: number[]; journals: number[] } {
    const names = fs.existsSync(this.dir) ? fs.readdirSync(this.dir) : [];
    const of = (kind: "journal" | "snapshot") =>
      names
        .map((n) => genOf(n, kind))
        .filter((g): g is number => g !== undefined)
        .sort((a, b) => a - b);
    return { snapshots: of("snapshot"), journals: of("journal") };
  }

  /**
   * Reads the newest intact snapshot and the journals after it into `engine` (records at
   * engine time `now`, `wallOffset` = wall-clock seconds at engine time 0).
   */
  async restore(engine: PacketEngine, wallOffset: number, now: number): Promise<RestoreReport> {
    fs.mkdirSync(this.dir, { recursive: true });
    for (const n of fs.readdirSync(this.dir)) if (n.endsWith(".tmp")) fs.rmSync(join(this.dir, n), { force: true }); // an interrupted snapshot
    const { snapshots, journals } = this.listing();
    const report: RestoreReport = {
      files: [],
      bytes: 0,
      mappings: 0,
      held: 0,
      dropped: engine.restoreDropped(),
      damage: [],
      gapBytes: 0,
      stateLost: false,
      epoch: 0,
    };
    // The newest snapshot that checks out; if none does, the newest (its valid frames).
    let base = snapshots.at(-1) ?? 0;
    const damage = base ? await verifySnapshot(join(this.dir, snapshotName(base))) : undefined;
    if (damage) {
      // The previous generation if it checks out; with a single snapshot, the journals from
      // generation 1 if they are all there (nothing was ever deleted): the whole history.
      const older = snapshots.at(-2);
      const instead =
        older !== undefined ? (!(await verifySnapshot(join(this.dir, snapshotName(older)))) ? older : undefined) : journals[0] === 1 ? 0 : undefined;
      if (instead !== undefined) {
        report.fallback = { ...damage, file: snapshotName(base) };
        this.log.warn(
          report.fallback,
          instead
            ? "newest snapshot damaged: restoring the previous generation and its journals instead; the damaged file is removed"
            : "the only snapshot is damaged: replaying every journal from the first generation instead; the damaged file is removed",
        );
        fs.rmSync(join(this.dir, snapshotName(base)), { force: true });
        base = instead;
      }
    }
    const files = [...(base ? [snapshotName(base)] : []), ...journals.filter((g) => g >= base).map(journalName)];
    report.files = files;
    // Only the newest journal holding bytes can end in a write torn by a crash: a newer one
    // is opened (snapshot switch, start-up) before the older one's queued write goes out,
    // and gets its first frame only after it.
    let tearable = files.length - 1;
    while (tearable >= 0 && !(files[tearable].startsWith("journal-") && fs.statSync(join(this.dir, files[tearable])).size > 0)) tearable--;
    let last: FrameStamp | undefined;
    for (const [i, name] of files.entries()) {
      const path = join(this.dir, name);
      let ended = false;
      const damage = await readFrames(path, i === tearable, (frame) => {
        if (frame.kind === FRAME_META) {
          const meta = JSON.parse(Buffer.from(frame.payload).toString("utf8"));
          if (meta.format !== FORMAT || meta.shard !== this.o.shard || meta.shards !== this.o.shards)
            return { kind: "corrupt", offset: 0, reason: `state of another shard layout: ${JSON.stringify(meta)}`, bytes: 0 };
        } else if (frame.kind === FRAME_RECORDS) {
          report.bytes += engine.restore(frame.payload, wallOffset, now);
        } else if (frame.kind === FRAME_END) {
          ended = true;
        } else if (frame.kind === FRAME_GAP) {
          report.gapBytes += Number(Buffer.from(frame.payload).readBigUInt64LE(0));
        }
        if (last === undefined || frame.seq > last.seq) last = frame;
        return undefined;
      });
      for (const d of damage) {
        if (d.kind === "torn") {
          fs.truncateSync(path, d.offset); // later restores find this file clean
          this.log.warn({ file: path, offset: d.offset, reason: d.reason }, "journal tail torn by a crash: cut off (within the durability horizon)");
        }
        report.damage.push({ ...d, file: name });
      }
      if (name.startsWith("snapshot-") && !ended && damage.length === 0)
        report.damage.push({ kind: "corrupt", offset: fs.statSync(path).size, reason: "snapshot without its end frame", bytes: 0, file: name });
    }
    report.dropped = engine.restoreDropped();
    const stats = engine.engineStats();
    report.mappings = Number(stats.mappings);
    report.held = Number(stats.held);
    const { expired: _expired, ...lost } = report.dropped;
    report.stateLost = report.gapBytes > 0 || report.damage.some((d) => d.kind === "corrupt") || Object.values(lost).some((n) => n > 0);
    if (last) {
      this.seq = last.seq;
      if (!report.stateLost) report.epoch = (last.epoch + Math.max(0, wallSeconds(this.o.time) - last.wall)) >>> 0;
    }
    this.gen = Math.max(base, journals.at(-1) ?? 0, snapshots.at(-1) ?? 0);
    this.journalBytes = report.bytes;
    return report;
  }

  /**
   * Opens a new journal generation; group commits start. With `source` the store also
   * takes the snapshot that follows a recovered disk at once (and probes a failed disk
   * with snapshots when nothing is pending).
   */
  start(source?: { engine: PacketEngine; wallOffset: number }): void {
    this.source = source;
    this.openJournal(this.gen + 1);
    this.timer = setInterval(() => this.tick(), this.o.commitIntervalMs);
    this.timer.unref();
  }

  private tick(): void {
    if (this.closed) return;
    const now = performance.now();
    if (this.s.state === "failing") {
      if (now < this.retryAt) return;
      if (this.pending.length === 0 && this.source) {
        // Nothing to retry the journal with: the catch-up snapshot is the probe.
        this.retryAt = now + Math.max(SNAPSHOT_RETRY_MS, this.snapshotDelayMs);
        void this.snapshot(this.source.engine, this.source.wallOffset);
        return;
      }
    }
    void this.commit();
  }

  private openJournal(gen: number): void {
    const previous = this.journal;
    this.gen = gen;
    const fd = fs.openSync(join(this.dir, journalName(gen)), "a");
    this.journal = { fd, gen, size: 0, head: [encodeFrame(FRAME_META, this.meta(), this.stamp())], syncs: Promise.resolve() };
    // Closed after the writes queued before the switch and their fdatasyncs (they hold it).
    if (previous) void this.enqueue(() => previous.syncs.then(() => close(previous.fd)).catch(() => undefined));
    syncDirectory(this.dir);
  }

  private enqueue<T>(job: () => Promise<T>): Promise<T> {
    const done = this.writes.then(job);
    this.writes = done.catch(() => undefined);
    return done;
  }

  /** Records of one batch (copies: the engine's buffer is reused). */
  append(parts: Uint8Array[]): void {
    for (const p of parts) {
      if (p.length === 0) continue;
      this.pending.push(p);
      this.pendingBytes += p.length;
    }
    this.trimBacklog();
    // A timer delayed by a busy event loop (or a starved core) must not stretch the
    // durability horizon: a batch that finds the last commit an interval old commits now.
    if (this.s.state !== "failing" && this.pending.length > 0 && performance.now() - this.lastCommit >= this.o.commitIntervalMs) void this.commit();
  }

  private trimBacklog(): void {
    if (this.pendingBytes <= this.o.maxBacklogBytes) return;
    // The disk is failing or not keeping up: let go of the backlog, mark the hole (GAP
    // frame, so a restore before the snapshot knows state was lost), take a snapshot.
    this.log.error({ pendingBytes: this.pendingBytes, dir: this.dir }, "journal backlog over persistence.maxBacklogBytes: dropped; a snapshot will replace it");
    this.s.droppedBytes += this.pendingBytes;
    this.gapBytes += BigInt(this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    this.requestSnapshot = true;
  }

  /** Set when a snapshot should start at the next opportunity. */
  requestSnapshot = false;

  /** Whether a snapshot is due (the caller starts it between batches); never while writes fail (the retries probe). */
  snapshotDue(): boolean {
    if (this.snapshotting || this.closed || this.s.state === "failing") return false;
    return (
      this.requestSnapshot ||
      this.journalBytes > this.o.snapshotJournalBytes ||
      (this.journalBytes > 0 && Date.now() - this.lastSnapshot >= this.o.snapshotIntervalSeconds * 1000)
    );
  }

  /**
   * Writes and fdatasyncs what is pending now (a check-pointed mapping's reply waits for
   * it); rejects unless those records are on disk — a failed write, or records let go
   * over the backlog limit meanwhile.
   */
  async commitNow(): Promise<void> {
    const dropped = this.s.droppedBytes;
    if (!(await this.commit(true)) || this.s.droppedBytes !== dropped)
      throw new PcpdError(ErrorCodes.JOURNAL_WRITE_FAILED, "journal write failed: the records are not on disk");
  }

  /** Queues a group commit; resolves true when everything pending when it ran is written (and fdatasync'ed if `sync`). */
  private commit(sync = this.o.fsync): Promise<boolean> {
    this.lastCommit = performance.now();
    if (this.queued && (this.queued.sync || !sync)) return this.queued.done;
    const entry: { sync: boolean; done: Promise<boolean> } = { sync, done: Promise.resolve(false) };
    entry.done = this.enqueue(() => this.writePending(entry)).then((r) => r.durable);
    this.queued = entry;
    return entry.done;
  }

  /**
   * One group commit: head frames and the pending records in frames of whole records, one
   * write, then fdatasync (if asked). The write holds the queue, its fdatasync does not:
   * the next group's write goes out while the disk syncs this one, so a slow fdatasync
   * does not delay what a kill -9 needs (written data is in the page cache, which outlives
   * the process); a power loss still needs the fdatasync (`durable`).
   */
  private async writePending(entry: { sync: boolean }): Promise<{ durable: Promise<boolean> }> {
    if (this.queued === entry) this.queued = undefined;
    const j = this.journal;
    if (j === undefined) return { durable: Promise.resolve(false) };
    const parts = this.pending;
    const partBytes = this.pendingBytes;
    const gap = this.gapBytes;
    this.pending = [];
    this.pendingBytes = 0;
    this.gapBytes = 0n;
    const head = j.head;
    j.head = [];
    const frames = [...head];
    if (gap > 0n) {
      const payload = Buffer.alloc(8);
      payload.writeBigUInt64LE(gap);
      frames.push(encodeFrame(FRAME_GAP, payload, this.stamp()));
    }
    let group: Uint8Array[] = [];
    let size = 0;
    const close = () => {
      if (size === 0) return;
      frames.push(encodeFrame(FRAME_RECORDS, group.length === 1 ? group[0] : Buffer.concat(group, size), this.stamp()));
      group = [];
      size = 0;
    };
    for (const p of parts) {
      if (size + p.length > W.PERSIST_BUFFER) close();
      group.push(p);
      size += p.length;
    }
    close();
    const bytes = frames.length === 1 ? frames[0] : Buffer.concat(frames);
    this.writingBytes = partBytes;
    try {
      if (bytes.length > 0) await write(j.fd, bytes);
    } catch (e) {
      this.writingBytes = 0;
      // Cut back to the last whole frame: a failed or partial write leaves no torn frame
      // for later frames to follow. Everything goes back, in order, for the retry.
      await truncate(j.fd, j.size).catch((t: Error) => {
        // The damaged stretch stays (a restore skips and reports it). Later cut-backs must
        // land after it, never inside frames written after it: the file's end is the new base.
        j.size = fileSize(j.fd) ?? j.size;
        this.log.error({ error: t.message, dir: this.dir }, "journal not cut back after a failed write: its tail is damaged");
      });
      j.head = head.concat(j.head);
      this.pending = parts.concat(this.pending);
      this.pendingBytes += partBytes;
      this.gapBytes += gap;
      this.failed(e as Error, "journal write");
      this.trimBacklog();
      return { durable: Promise.resolve(false) };
    }
    this.writingBytes = 0;
    j.size += bytes.length;
    this.journalBytes += bytes.length;
    if (bytes.length > 0) this.wrote();
    if (!entry.sync) return { durable: Promise.resolve(true) };
    // A failed fdatasync is not cut back: the records are in the file but maybe not on the
    // medium (Linux marks the pages clean anyway). The store is failing until the
    // catch-up snapshot, which rewrites everything, is on disk.
    const durable = datasync(j.fd).then(
      () => true,
      (e: Error) => {
        this.failed(e, "journal fdatasync");
        return false;
      },
    );
    j.syncs = Promise.all([j.syncs, durable]);
    return { durable };
  }

  private failed(e: Error, what: string): void {
    this.s.writeErrors++;
    this.s.reason = `${what}: ${e.message}`;
    this.retryAt = performance.now() + Math.max(RETRY_MS, this.o.commitIntervalMs);
    if (this.s.state === "failing") return; // logged when it started
    this.s.state = "failing";
    this.s.since = Date.now();
    this.log.error(
      { error: e.message, dir: this.dir, pendingBytes: this.pendingBytes },
      `persistence failing (${what}): records kept in memory and retried, up to persistence.maxBacklogBytes`,
    );
  }

  /** A write worked: after a failure, the catch-up snapshot starts at once. */
  private wrote(): void {
    if (this.s.state !== "failing") return;
    this.s.state = "recovering";
    this.requestSnapshot = true;
    this.log.warn({ dir: this.dir, failedForMs: Date.now() - this.s.since }, "persistence writing again: a snapshot brings the disk up to date");
    const source = this.source;
    // At once, unless snapshots themselves kept failing (a disk with room for the journal only).
    if (source) setTimeout(() => void (this.closed || this.snapshot(source.engine, source.wallOffset)), this.snapshotDelayMs).unref();
  }

  /**
   * Writes a snapshot of `engine` in steps between batches; the journal moves to a new
   * generation first. The file is read back and checked, renamed, and then the
   * generations before the previous snapshot are deleted (the previous one stays, the
   * fallback if this one is ever found damaged).
   */
  snapshot(engine: PacketEngine, wallOffset: number): Promise<void> {
    if (this.snapshotting) return this.snapshotting;
    this.requestSnapshot = false;
    const errorsBefore = this.s.writeErrors;
    // Records let go before this snapshot are in it: no GAP for them in its journal
    // (put back if it fails, for the next write to mark).
    const gapBefore = this.gapBytes;
    this.gapBytes = 0n;
    this.snapshotting = (async () => {
      const started = Date.now();
      const gen = this.gen + 1;
      // Records pending now go to the new journal: replayed after the snapshot, each key's
      // latest record still wins (every change after them is journaled there too).
      this.openJournal(gen);
      this.journalBytes = 0;
      this.lastSnapshot = started;
      const name = snapshotName(gen);
      const tmp = join(this.dir, `${name}.tmp`);
      const fd = fs.openSync(tmp, "w");
      let bytes = 0;
      try {
        await write(fd, encodeFrame(FRAME_META, this.meta(), this.stamp()));
        let from = 1;
        do {
          if (this.closed) throw new PcpdError(ErrorCodes.STORE_CLOSED, "store closed during a snapshot");
          const part = engine.persistTable(from, this.o.snapshotStep ?? SNAPSHOT_STEP, wallOffset);
          from = part.next;
          if (part.bytes.length > 0) {
            const frame = encodeFrame(FRAME_RECORDS, part.bytes, this.stamp());
            bytes += frame.length;
            await write(fd, frame);
          } else {
            await new Promise((resolve) => setImmediate(resolve)); // the packet path runs between steps
          }
        } while (from !== 0);
        const end = Buffer.alloc(8);
        end.writeBigUInt64LE(BigInt(bytes));
        await write(fd, encodeFrame(FRAME_END, end, this.stamp()));
        await datasync(fd);
      } finally {
        await close(fd);
      }
      const damage = await verifySnapshot(tmp);
      if (damage) throw new PcpdError(ErrorCodes.SNAPSHOT_DAMAGED, `snapshot read back damaged at ${damage.offset}: ${damage.reason}`);
      fs.renameSync(tmp, join(this.dir, name));
      syncDirectory(this.dir);
      const { snapshots, journals } = this.listing();
      const previous = snapshots.filter((g) => g < gen).at(-1) ?? 0;
      for (const g of snapshots) if (g < previous) fs.rmSync(join(this.dir, snapshotName(g)), { force: true });
      for (const g of journals) if (g < previous) fs.rmSync(join(this.dir, journalName(g)), { force: true });
      this.snapshotDelayMs = 0;
      if (this.s.state !== "ok" && this.s.writeErrors === errorsBefore) {
        this.log.warn(
          { dir: this.dir, failedForMs: Date.now() - this.s.since, writeErrors: this.s.writeErrors },
          "persistence recovered: the disk matches memory again",
        );
        Object.assign(this.s, { state: "ok", reason: "", since: 0 });
      }
      this.log.info({ dir: this.dir, gen, bytes, ms: Date.now() - started }, "snapshot written");
    })()
      .catch((e: Error) => {
        this.gapBytes += gapBefore;
        if (this.closed) this.log.info({ dir: this.dir }, "snapshot abandoned at shutdown (the previous generation and the journals are kept)");
        else {
          this.snapshotDelayMs = Math.min(SNAPSHOT_RETRY_MAX_MS, Math.max(SNAPSHOT_RETRY_MS, this.snapshotDelayMs * 2));
          this.failed(e, "snapshot");
        }
        for (const n of fs.readdirSync(this.dir)) if (n.endsWith(".tmp")) fs.rmSync(join(this.dir, n), { force: true });
      })
      .finally(() => (this.snapshotting = undefined));
    return this.snapshotting;
  }

  /** Flushes what is pending (fdatasync) and closes the journal. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    this.closed = true; // a snapshot in progress stops at its next step
    await this.snapshotting;
    await this.commit(true);
    const j = this.journal;
    this.journal = undefined;
    if (j) await this.enqueue(() => j.syncs.then(() => close(j.fd)));
  }
}

const write = (fd: number, bytes: Uint8Array) =>
  new Promise<void>((resolve, reject) => {
    const step = (offset: number) =>
      fs.write(fd, bytes, offset, bytes.length - offset, null, (e, n) => (e ? reject(e) : offset + n < bytes.length ? step(offset + n) : resolve()));
    step(0);
  });
function fileSize(fd: number): number | undefined {
  try {
    return fs.fstatSync(fd).size;
  } catch {
    return undefined;
  }
}
const datasync = (fd: number) => new Promise<void>((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())));
const close = (fd: number) => new Promise<void>((resolve, reject) => fs.close(fd, (e) => (e ? reject(e) : resolve())));
const truncate = (fd: number, size: number) => new Promise<void>((resolve, reject) => fs.ftruncate(fd, size, (e) => (e ? reject(e) : resolve())));

function syncDirectory(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}
