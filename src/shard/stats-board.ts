// A shard's counters in shared memory: the engine worker copies its counters block there
// after every batch (before the batch's replies leave) and its pool gauges every second,
// and the main thread reads them without a task, so stats, /metrics and rates never
// interrupt the packet path. One writer per board; readers check a sequence number
// (odd while a copy is in progress) and copy again if it moved.
import * as W from "../wire.generated.js";
import { ErrorCodes, PcpdError } from "../errors.js";
import { readCodecStats, readEngineStats, type CodecStats, type PoolAddress } from "../engine/packet-engine.js";
import { formatAddress16, toAddress16 } from "../net/address.js";
import type { PersistenceStatus } from "../persist/store.js";
import { systemTime } from "../core/clock.js";
import { NATIVE_STATS } from "../io/native.js";
import type { SocketIoStats } from "../io/listener-base.js";

const SEQ = 0; // i32 index
const WRITER = 4; // i32, threadId of the worker that writes the board
const EPOCH_ORIGIN = 8; // i64, monotonic ns (the shard's time source) when the Epoch last counted from EPOCH_BASE
const EPOCH_BASE = 16; // i64
const POOL_COUNT = 24; // u32
const POOL_SEQ = 28; // u32, bumped at every pool copy (readers keep the decoded pool until it moves)
const HUGE_PAGES = 32; // f64, bytes of the engine's memory in transparent huge pages (src/io/huge-pages.ts)
const COUNTERS = 64; // STATS_SIZE bytes
const POOL = COUNTERS + W.STATS_SIZE; // POOL_MAX_ADDRESSES × POOL_ENTRY
const POOL_ENTRY = 24; // address (16), free blocks (u32), retired (u32)
// Persistence (src/persist/store.ts status()): u32 state (0 off, PERSIST_STATES after),
// u32 write errors, f64 backlog bytes, f64 dropped bytes, f64 since (ms), u32 reason
// length, the reason's UTF-8 (cut to REASON_MAX).
const PERSIST = POOL + W.POOL_MAX_ADDRESSES * POOL_ENTRY;
const REASON_MAX = 256;
const PERSIST_SIZE = 40 + REASON_MAX;
// Socket I/O counters (the listener's ioStats(), /metrics pcpd_io_*): u32 count, then per
// socket a u8 label length, the label (address:port), and one f64 per NATIVE_STATS entry
// (NaN: not counted on this path). A shard's first IO_MAX_SOCKETS sockets.
const IO = PERSIST + PERSIST_SIZE;
const IO_MAX_SOCKETS = 16;
const IO_LABEL = 56;
const IO_ENTRY = IO_LABEL + 8 * NATIVE_STATS.length;
const IO_SIZE = 8 + IO_MAX_SOCKETS * IO_ENTRY;
const SIZE = IO + IO_SIZE;
const PERSIST_STATES = ["ok", "failing", "recovering"] as const;
/** Copies a reader attempts before taking what it has (a writer that died mid-copy). */
const READ_ATTEMPTS = 100;

export interface EpochState {
  /** Epoch value at `origin`. */
  base: number;
  /** The shard's monotonic ns (src/core/clock.ts TimeSource) when the Epoch last started counting from `base`. */
  origin: bigint;
}

export interface BoardSnapshot {
  /** The worker thread whose counters these are (a restarted shard's counters start again at 0). */
  threadId: number;
  epoch: number;
  engine: Record<string, bigint>;
  codec: CodecStats;
  pool: PoolAddress[];
  /** Absent with persistence off. */
  persistence?: PersistenceStatus;
  /** Each socket's I/O counters (absent: none published yet). */
  io?: SocketIoStats[];
  /** Bytes of the engine's memory backed by transparent huge pages, measured after its tables were made (0 or absent: none). */
  hugePageBytes?: number;
}

export class StatsBoard {
  private readonly seq: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly view: DataView;
  private cachedPoolSeq = -1;
  private lastHead = new Uint8Array(POOL);
  private lastPersist = new Uint8Array(PERSIST_SIZE);
  private lastIo = new Uint8Array(IO_SIZE);
  private cachedPool: PoolAddress[] = [];

  static allocate(): SharedArrayBuffer {
    return new SharedArrayBuffer(SIZE);
  }

  constructor(buffer: SharedArrayBuffer) {
    if (buffer.byteLength !== SIZE) throw new PcpdError(ErrorCodes.BAD_STATS_BOARD, `stats board of ${buffer.byteLength} bytes, want ${SIZE}`);
    this.seq = new Int32Array(buffer, 0, 1);
    this.bytes = new Uint8Array(buffer);
    this.view = new DataView(buffer);
  }

  private write(fill: () => void): void {
    const seq = Atomics.add(this.seq, SEQ, 1) + 1; // odd: a copy is in progress
    fill();
    Atomics.store(this.seq, SEQ, seq + 1);
  }

  /** The thread that last took the board (0: none yet — the shard's first start in this process). */
  writer(): number {
    return Atomics.load(new Int32Array(this.bytes.buffer, WRITER, 1), 0);
  }

  /** A new writer (a shard's new thread) takes the board; its counters start at 0. */
  claim(threadId: number, counters: Uint8Array, epoch: EpochState, pool: PoolAddress[]): void {
    this.write(() => {
      this.view.setInt32(WRITER, threadId, true);
      this.view.setUint32(IO, 0, true); // the old thread's socket counters are not this one's
    });
    this.publish(counters, epoch);
    this.publishPool(pool);
  }

  /** The engine's counters block (STATS_SIZE bytes) and the Epoch. */
  publish(counters: Uint8Array, epoch: EpochState): void {
    this.write(() => {
      this.bytes.set(counters, COUNTERS);
      this.view.setBigInt64(EPOCH_ORIGIN, epoch.origin, true);
      this.view.setBigInt64(EPOCH_BASE, BigInt(epoch.base), true);
    });
  }

  /** Bytes of the engine's memory in transparent huge pages (the writer publishes it after claim). */
  publishHugePages(bytes: number): void {
    this.write(() => this.view.setFloat64(HUGE_PAGES, bytes, true));
  }

  /** Free blocks of each pool address. */
  publishPool(pool: PoolAddress[]): void {
    this.write(() => {
      const n = Math.min(pool.length, W.POOL_MAX_ADDRESSES);
      for (let i = 0; i < n; i++) {
        const at = POOL + i * POOL_ENTRY;
        this.bytes.set(toAddress16(pool[i].address), at);
        this.view.setUint32(at + 16, pool[i].freeBlocks, true);
        this.view.setUint32(at + 20, pool[i].retired ? 1 : 0, true);
      }
      this.view.setUint32(POOL_COUNT, n, true);
      this.view.setUint32(POOL_SEQ, (this.view.getUint32(POOL_SEQ, true) + 1) >>> 0, true);
    });
  }

  /** The shard's persistence state (its store's status()). */
  publishPersistence(p: PersistenceStatus): void {
    this.write(() => {
      const reason = Buffer.from(p.reason.slice(0, REASON_MAX), "utf8").subarray(0, REASON_MAX);
      this.view.setUint32(PERSIST, PERSIST_STATES.indexOf(p.state) + 1, true);
      this.view.setUint32(PERSIST + 4, p.writeErrors, true);
      this.view.setFloat64(PERSIST + 8, p.backlogBytes, true);
      this.view.setFloat64(PERSIST + 16, p.droppedBytes, true);
      this.view.setFloat64(PERSIST + 24, p.since, true);
      this.view.setUint32(PERSIST + 32, reason.length, true);
      this.bytes.set(reason, PERSIST + 40);
    });
  }

  /** The listener's socket counters (every second, and at stop). */
  publishIo(io: SocketIoStats[]): void {
    this.write(() => {
      const n = Math.min(io.length, IO_MAX_SOCKETS);
      this.view.setUint32(IO, n, true);
      for (let i = 0; i < n; i++) {
        const at = IO + 8 + i * IO_ENTRY;
        const label = Buffer.from(io[i].socket, "utf8").subarray(0, IO_LABEL - 1);
        this.bytes[at] = label.length;
        this.bytes.set(label, at + 1);
        for (const [k, name] of NATIVE_STATS.entries()) this.view.setFloat64(at + IO_LABEL + 8 * k, io[i].counters[name] ?? Number.NaN, true);
      }
    });
  }

  /** A consistent copy of the board; `now` is monotonic ns from the shard's time source (the Epoch counts from it). */
  read(now: bigint = systemTime.monotonicNs()): BoardSnapshot {
    let head = this.lastHead; // a writer that never lets a copy through (died mid-copy): the last good one
    let persist = this.lastPersist;
    let io = this.lastIo;
    for (let attempt = 0; attempt < READ_ATTEMPTS; attempt++) {
      const before = Atomics.load(this.seq, SEQ);
      if (before % 2 !== 0) continue;
      const copy = this.bytes.slice(0, POOL);
      const persistCopy = this.bytes.slice(PERSIST, IO);
      const ioCopy = this.bytes.slice(IO, SIZE);
      const view = new DataView(copy.buffer);
      const poolSeq = view.getUint32(POOL_SEQ, true);
      // The pool is copied only when it changed (once a second at most).
      const pool =
        poolSeq === this.cachedPoolSeq
          ? undefined
          : this.bytes.slice(POOL, POOL + Math.min(view.getUint32(POOL_COUNT, true), W.POOL_MAX_ADDRESSES) * POOL_ENTRY);
      if (Atomics.load(this.seq, SEQ) !== before) continue;
      if (pool) {
        this.cachedPool = decodePool(pool);
        this.cachedPoolSeq = poolSeq;
      }
      head = this.lastHead = copy;
      persist = this.lastPersist = persistCopy;
      io = this.lastIo = ioCopy;
      break;
    }
    const view = new DataView(head.buffer);
    const origin = view.getBigInt64(EPOCH_ORIGIN, true);
    const base = Number(view.getBigInt64(EPOCH_BASE, true));
    return {
      threadId: view.getInt32(WRITER, true),
      epoch: (base + Number((now - origin) / 1_000_000_000n)) >>> 0,
      engine: readEngineStats(view, COUNTERS),
      codec: readCodecStats(view, COUNTERS),
      pool: this.cachedPool.map((p) => ({ ...p })),
      persistence: decodePersistence(persist),
      io: decodeIo(io),
      hugePageBytes: view.getFloat64(HUGE_PAGES, true),
    };
  }
}

function decodePool(bytes: Uint8Array): PoolAddress[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: PoolAddress[] = [];
  for (let at = 0; at + POOL_ENTRY <= bytes.length; at += POOL_ENTRY) {
    out.push({
      address: formatAddress16(bytes.subarray(at, at + 16)),
      freeBlocks: view.getUint32(at + 16, true),
      retired: view.getUint32(at + 20, true) !== 0,
    });
  }
  return out;
}

function decodePersistence(bytes: Uint8Array): PersistenceStatus | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const state = PERSIST_STATES[view.getUint32(0, true) - 1];
  if (state === undefined) return undefined; // persistence off
  return {
    state,
    writeErrors: view.getUint32(4, true),
    backlogBytes: view.getFloat64(8, true),
    droppedBytes: view.getFloat64(16, true),
    since: view.getFloat64(24, true),
    reason: Buffer.from(bytes.subarray(40, 40 + Math.min(view.getUint32(32, true), REASON_MAX))).toString("utf8"),
  };
}

function decodeIo(bytes: Uint8Array): SocketIoStats[] | undefined {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Math.min(view.getUint32(0, true), IO_MAX_SOCKETS);
  if (n === 0) return undefined;
  const out: SocketIoStats[] = [];
  for (let i = 0; i < n; i++) {
    const at = 8 + i * IO_ENTRY;
    const counters: SocketIoStats["counters"] = {};
    NATIVE_STATS.forEach((name, k) => {
      const v = view.getFloat64(at + IO_LABEL + 8 * k, true);
      if (!Number.isNaN(v)) counters[name] = v;
    });
    out.push({ socket: Buffer.from(bytes.subarray(at + 1, at + 1 + bytes[at])).toString("utf8"), counters });
  }
  return out;
}
