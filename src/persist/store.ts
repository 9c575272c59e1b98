// A shard's durable state, in its own directory (<persistence.directory>/shard-<i>-of-<n>):
//
//   journal-<gen>.log    what each batch changed: one record per external key touched
//                        (src/engine: persistPending), written in group commits every
//                        commitIntervalMs (one write + fdatasync per group)
//   snapshot-<gen>.snap  the whole table, written in chunks between batches (fuzzy: the
//                        journal of the same generation starts before its first chunk, so
//                        snapshot + journals from <gen> on give the latest state)
//
// Restore (at start-up, before the sockets open): the newest snapshot, then every journal
// of its generation or later, in order; the latest record of each external key wins.
// Frames are checksummed (format.ts): a torn tail (a crash mid-write) is cut off quietly —
// the durability policy allows losing the last commit interval — but corruption, or
// records that cannot come back, mean state was lost: the Epoch restarts from 0 and is
// announced. Otherwise the Epoch continues from the last frame's plus the time the server
// was down [RFC 6887 §8.5], so clients see no state loss.
import fs from "node:fs";
import { join } from "node:path";
import type { Logger } from "pino";
import * as W from "../wire.generated.js";
import type { PacketEngine } from "../engine/packet-engine.js";
import { decodeFrames, encodeFrame, FRAME_END, FRAME_META, FRAME_RECORDS, VERSION, type Damage, type Frame, type FrameStamp } from "./format.js";

/** Bytes read per step when restoring (frames may straddle steps). */
const READ_CHUNK = 16 * 1024 * 1024;
/** Record ids visited per snapshot step (one step per event-loop turn). */
const SNAPSHOT_STEP = 20_000;
export const FORMAT = "pcpd-state";

export interface StoreOptions {
  directory: string;
  shard: number;
  shards: number;
  commitIntervalMs: number;
  fsync: boolean;
  snapshotIntervalSeconds: number;
  snapshotJournalBytes: number;
  /** Pending journal bytes beyond which the journal is abandoned for a fresh snapshot (the disk cannot keep up). */
  maxBacklogBytes: number;
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
  /** Something persisted did not come back (corruption, or records dropped for reasons other than expiry). */
  stateLost: boolean;
  /** Epoch to continue from (0 when state was lost or there was none). */
  epoch: number;
}

const pad = (n: number) => String(n).padStart(10, "0");
const journalName = (gen: number) => `journal-${pad(gen)}.log`;
const snapshotName = (gen: number) => `snapshot-${pad(gen)}.snap`;
const genOf = (name: string, kind: "journal" | "snapshot") => {
  const m = new RegExp(`^${kind}-(\\d{10})\\.(log|snap)$`).exec(name);
  return m ? Number(m[1]) : undefined;
};

export const wallSeconds = () => Math.floor(Date.now() / 1000);

export function shardDirectory(directory: string, shard: number, shards: number): string {
  return join(directory, `shard-${shard}-of-${shards}`);
}

export class ShardStore {
  readonly dir: string;
  private gen = 0;
  private seq = 0n;
  private journalFd: number | undefined;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  /** Journal bytes written since the last snapshot started. */
  private journalBytes = 0;
  private lastSnapshot = Date.now();
  private writes: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private snapshotting: Promise<void> | undefined;
  private closed = false;
  /** Failed writes so far (commitNow compares before and after). */
  private writeErrors = 0;

  constructor(private readonly o: StoreOptions, private readonly epoch: () => number, private readonly log: Logger) {
    this.dir = shardDirectory(o.directory, o.shard, o.shards);
  }

  private stamp(): FrameStamp {
    return { wall: wallSeconds(), epoch: this.epoch(), seq: ++this.seq };
  }

  private meta(): Uint8Array {
    return Buffer.from(JSON.stringify({ format: FORMAT, version: VERSION, shard: this.o.shard, shards: this.o.shards, gen: this.gen }));
  }

  /** Generations present: complete snapshots and journals. */
  private listing(): { snapshots: number[]; journals: number[] } {
    const names = fs.existsSync(this.dir) ? fs.readdirSync(this.dir) : [];
    const of = (kind: "journal" | "snapshot") => names.map((n) => genOf(n, kind)).filter((g): g is number => g !== undefined).sort((a, b) => a - b);
    return { snapshots: of("snapshot"), journals: of("journal") };
  }

  /**
   * Reads the newest snapshot and the journals after it into `engine` (records at engine
   * time `now`, `wallOffset` = wall-clock seconds at engine time 0).
   */
  restore(engine: PacketEngine, wallOffset: number, now: number): RestoreReport {
    fs.mkdirSync(this.dir, { recursive: true });
    for (const n of fs.readdirSync(this.dir)) if (n.endsWith(".tmp")) fs.rmSync(join(this.dir, n), { force: true }); // an interrupted snapshot
    const { snapshots, journals } = this.listing();
    const base = snapshots.at(-1) ?? 0;
    const files = [...(base ? [snapshotName(base)] : []), ...journals.filter((g) => g >= base).map(journalName)];
    const report: RestoreReport = { files, bytes: 0, mappings: 0, held: 0, dropped: engine.restoreDropped(), damage: [], stateLost: false, epoch: 0 };
    let last: FrameStamp | undefined;
    files.forEach((name, i) => {
      const path = join(this.dir, name);
      const isSnapshot = name.startsWith("snapshot-");
      let ended = false;
      const damage = readFrames(path, i === files.length - 1, (frame) => {
        if (frame.kind === FRAME_META) {
          const meta = JSON.parse(Buffer.from(frame.payload).toString("utf8"));
          if (meta.format !== FORMAT || meta.shard !== this.o.shard || meta.shards !== this.o.shards) return { kind: "corrupt", offset: 0, reason: `state of another shard layout: ${JSON.stringify(meta)}` };
        } else if (frame.kind === FRAME_RECORDS) {
          report.bytes += engine.restore(frame.payload, wallOffset, now);
        } else if (frame.kind === FRAME_END) {
          ended = true;
        }
        if (last === undefined || frame.seq > last.seq) last = frame;
        return undefined;
      });
      if (damage?.kind === "torn") {
        fs.truncateSync(path, damage.offset); // later restores find this file clean
        this.log.warn({ file: path, offset: damage.offset, reason: damage.reason }, "journal tail torn by a crash: cut off (within the durability horizon)");
      }
      if (damage) report.damage.push({ ...damage, file: name });
      if (isSnapshot && !ended && !damage) report.damage.push({ kind: "corrupt", offset: fs.statSync(path).size, reason: "snapshot without its end frame", file: name });
    });
    report.dropped = engine.restoreDropped();
    const stats = engine.engineStats();
    report.mappings = Number(stats.mappings);
    report.held = Number(stats.held);
    const { expired: _expired, ...lost } = report.dropped;
    report.stateLost = report.damage.some((d) => d.kind === "corrupt") || Object.values(lost).some((n) => n > 0);
    if (last) {
      this.seq = last.seq;
      if (!report.stateLost) report.epoch = (last.epoch + Math.max(0, wallSeconds() - last.wall)) >>> 0;
    }
    this.gen = Math.max(base, journals.at(-1) ?? 0);
    this.journalBytes = report.bytes;
    return report;
  }

  /** Opens a new journal generation; group commits start. */
  start(): void {
    this.openJournal(this.gen + 1);
    this.timer = setInterval(() => this.commit(), this.o.commitIntervalMs);
    this.timer.unref();
  }

  private openJournal(gen: number): void {
    const previous = this.journalFd;
    this.gen = gen;
    const fd = fs.openSync(join(this.dir, journalName(gen)), "a");
    this.journalFd = fd;
    const meta = encodeFrame(FRAME_META, this.meta(), this.stamp());
    this.enqueue(async () => {
      await write(fd, meta);
      if (previous !== undefined) await close(previous);
    });
    syncDirectory(this.dir);
  }

  private enqueue(job: () => Promise<void>): Promise<void> {
    this.writes = this.writes.then(job).catch((e: Error) => {
      this.writeErrors++;
      this.log.error({ error: e.message, dir: this.dir }, "persistence write failed");
    });
    return this.writes;
  }

  /** Records of one batch (copies: the engine's buffer is reused). */
  append(parts: Uint8Array[]): void {
    for (const p of parts) {
      if (p.length === 0) continue;
      this.pending.push(p);
      this.pendingBytes += p.length;
    }
    if (this.pendingBytes > this.o.maxBacklogBytes) {
      // The disk is not keeping up: let go of the backlog, mark the gap, and take a snapshot
      // (it re-reads every record; the journal after its start is complete again).
      this.log.error({ pendingBytes: this.pendingBytes, dir: this.dir }, "journal backlog over its limit: dropped; a snapshot will replace it");
      this.pending = [];
      this.pendingBytes = 0;
      this.requestSnapshot = true;
    }
  }

  /** Set when a snapshot should start at the next opportunity. */
  requestSnapshot = false;

  /** Whether a snapshot is due (the caller starts it between batches). */
  snapshotDue(): boolean {
    if (this.snapshotting || this.closed) return false;
    return this.requestSnapshot || this.journalBytes > this.o.snapshotJournalBytes || (this.journalBytes > 0 && Date.now() - this.lastSnapshot >= this.o.snapshotIntervalSeconds * 1000);
  }

  /** Writes and fdatasyncs what is pending now (a check-pointed mapping's reply waits for it); rejects if the write fails. */
  commitNow(): Promise<void> {
    const before = this.writeErrors;
    void this.commit(false);
    const fd = this.journalFd;
    // One fdatasync after every write queued so far (an earlier group may not have synced).
    return this.enqueue(async () => {
      if (fd !== undefined) await datasync(fd);
    }).then(() => {
      if (this.writeErrors !== before) throw new Error("journal write failed");
    });
  }

  /** One group commit: the pending records in frames of whole records, one write, then fdatasync (if configured). */
  private commit(sync = this.o.fsync): Promise<void> {
    if (this.pending.length === 0 || this.journalFd === undefined) return this.writes;
    const frames: Buffer[] = [];
    let group: Uint8Array[] = [];
    let size = 0;
    const close = () => {
      if (size === 0) return;
      frames.push(encodeFrame(FRAME_RECORDS, group.length === 1 ? group[0] : Buffer.concat(group, size), this.stamp()));
      group = [];
      size = 0;
    };
    for (const p of this.pending) {
      if (size + p.length > W.PERSIST_BUFFER) close();
      group.push(p);
      size += p.length;
    }
    close();
    this.pending = [];
    this.pendingBytes = 0;
    const bytes = Buffer.concat(frames);
    this.journalBytes += bytes.length;
    const fd = this.journalFd;
    return this.enqueue(async () => {
      await write(fd, bytes);
      if (sync) await datasync(fd);
    });
  }

  /**
   * Writes a snapshot of `engine` in steps between batches; the journal moves to a new
   * generation first. When the snapshot is safely on disk, older generations are deleted.
   */
  snapshot(engine: PacketEngine, wallOffset: number): Promise<void> {
    if (this.snapshotting) return this.snapshotting;
    this.requestSnapshot = false;
    this.snapshotting = (async () => {
      const started = Date.now();
      await this.commit(); // the old generation's records go to the old journal
      const gen = this.gen + 1;
      this.openJournal(gen);
      this.journalBytes = 0;
      this.lastSnapshot = started;
      const tmp = join(this.dir, `${snapshotName(gen)}.tmp`);
      const fd = fs.openSync(tmp, "w");
      let bytes = 0;
      try {
        await write(fd, encodeFrame(FRAME_META, this.meta(), this.stamp()));
        let from = 1;
        do {
          if (this.closed) throw new Error("store closed during a snapshot");
          const part = engine.persistTable(from, SNAPSHOT_STEP, wallOffset);
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
      fs.renameSync(tmp, join(this.dir, snapshotName(gen)));
      syncDirectory(this.dir);
      const { snapshots, journals } = this.listing();
      for (const g of snapshots) if (g < gen) fs.rmSync(join(this.dir, snapshotName(g)), { force: true });
      for (const g of journals) if (g < gen) fs.rmSync(join(this.dir, journalName(g)), { force: true });
      this.log.info({ dir: this.dir, gen, bytes, ms: Date.now() - started }, "snapshot written");
    })()
      .catch((e: Error) => {
        if (this.closed) {
          this.log.info({ dir: this.dir }, "snapshot abandoned at shutdown (the journal holds every change)");
        } else {
          this.writeErrors++;
          this.log.error({ error: e.message, dir: this.dir }, "snapshot failed; the journal still holds every change");
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
    await this.commit();
    const fd = this.journalFd;
    this.journalFd = undefined;
    await this.enqueue(async () => {
      if (fd === undefined) return;
      await datasync(fd);
      await close(fd);
    });
  }
}

/** Reads a file's frames in steps; returns the damage that stopped it, if any. */
function readFrames(path: string, last: boolean, onFrame: (f: Frame) => Damage | undefined): Damage | undefined {
  const fd = fs.openSync(path, "r");
  try {
    const size = fs.fstatSync(fd).size;
    let carry = Buffer.alloc(0);
    let position = 0;
    for (;;) {
      const chunk = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - position));
      const got = chunk.length > 0 ? fs.readSync(fd, chunk, 0, chunk.length, position) : 0;
      position += got;
      const bytes = carry.length > 0 ? Buffer.concat([carry, chunk.subarray(0, got)]) : chunk.subarray(0, got);
      const start = position - bytes.length; // file offset of bytes[0]
      const final = position >= size || got === 0;
      const r = decodeFrames(bytes, final, last);
      for (const f of r.frames) {
        const refused = onFrame(f);
        if (refused) return refused;
      }
      if (r.damage) return { ...r.damage, offset: start + r.damage.offset };
      if (final) return undefined;
      carry = Buffer.from(bytes.subarray(r.consumed));
    }
  } finally {
    fs.closeSync(fd);
  }
}

const write = (fd: number, bytes: Uint8Array) =>
  new Promise<void>((resolve, reject) => {
    const step = (offset: number) =>
      fs.write(fd, bytes, offset, bytes.length - offset, null, (e, n) => (e ? reject(e) : offset + n < bytes.length ? step(offset + n) : resolve()));
    step(0);
  });
const datasync = (fd: number) => new Promise<void>((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())));
const close = (fd: number) => new Promise<void>((resolve, reject) => fs.close(fd, (e) => (e ? reject(e) : resolve())));

function syncDirectory(dir: string): void {
  const fd = fs.openSync(dir, "r");
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

