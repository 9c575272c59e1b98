// Question: should the persistence layer be the hand-written journal (src/persist: framed,
// CRC-checked appends, one write + fdatasync per group commit, snapshots to compact) or an
// embedded key-value store (lmdb, the best-kept one on npm: copy-on-write B+tree,
// durable commits)? What matters for pcpd: CPU taken on the packet thread per changed
// mapping, how many changes per second each sustains durably, the bytes written, and how
// fast a restart reads the state back.
// Inputs: the record stream of a refresh load — R updates of K external keys (68-byte
// PREC records, src/engine; 8-byte keys), in groups of G (one group commit: 20 ms at
// 100k changes/s). Journal: encodeFrame + fs.write + fdatasync per group, as ShardStore
// does. lmdb: put() of each record (lmdb-js queues it and commits it with the other puts
// of the turn on its own write thread; sync commits, the default), one await per group.
// "Calling-thread CPU" is the time spent inside append/put calls (what the packet thread
// would pay); "durable/s" is records per wall-clock second with every group on disk.
// Restore: journal = read + CRC-check every frame (all R records; compaction by snapshot
// is measured in bench/persist.bench.ts); lmdb = iterate every key (K entries).
// Usage: npm run bench:store-choice [-- --keys 100000 --updates 1000000 --group 2000]
// Results: bench/results/store-choice.json. Files under os.tmpdir(), removed at the end.
import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { open } from "lmdb";
import { decodeFrames, encodeFrame, FRAME_RECORDS } from "../src/persist/format.js";
import * as W from "../src/wire.generated.js";
import { machineInfo, writeResults } from "./e2e/harness.js";

const { values: flags } = parseArgs({
  options: {
    keys: { type: "string", default: "100000" },
    updates: { type: "string", default: "1000000" },
    group: { type: "string", default: "2000" },
  },
});
const KEYS = Number(flags.keys);
const UPDATES = Number(flags.updates);
const GROUP = Number(flags.group);
const RECORD = W.PREC_HEADER_SIZE;

function record(i: number): Uint8Array {
  const r = new Uint8Array(RECORD);
  const v = new DataView(r.buffer);
  r[W.PREC_KIND] = W.PREC_UPSERT;
  r[W.PREC_PROTOCOL] = 17;
  v.setUint16(W.PREC_EXTERNAL_PORT, 1024 + (i % 60000), true);
  v.setUint32(W.PREC_MAP_EXPIRY, 1_800_000_000 + i, true);
  r[W.PREC_INTERNAL_ADDR + 10] = 0xff;
  r[W.PREC_INTERNAL_ADDR + 11] = 0xff;
  v.setUint32(W.PREC_INTERNAL_ADDR + 12, 0x0a000000 + (i % KEYS));
  return r;
}
const keyOf = (i: number) => {
  const k = Buffer.alloc(8);
  k.writeUInt32BE(i % KEYS, 4);
  return k;
};
const records = Array.from({ length: Math.min(UPDATES, 100_000) }, (_, i) => record(i)); // reused cyclically

async function journal(dir: string) {
  const path = join(dir, "journal.log");
  const fd = fs.openSync(path, "a");
  let callMs = 0;
  let seq = 0n;
  const t0 = performance.now();
  for (let done = 0; done < UPDATES; done += GROUP) {
    const c0 = performance.now();
    const parts: Uint8Array[] = [];
    for (let i = done; i < Math.min(UPDATES, done + GROUP); i++) parts.push(records[i % records.length]); // append(): a push
    const frame = encodeFrame(FRAME_RECORDS, Buffer.concat(parts), { wall: 0, epoch: 0, seq: ++seq });
    callMs += performance.now() - c0;
    await new Promise<void>((resolve, reject) => fs.write(fd, frame, (e) => (e ? reject(e) : resolve())));
    await new Promise<void>((resolve, reject) => fs.fdatasync(fd, (e) => (e ? reject(e) : resolve())));
  }
  const seconds = (performance.now() - t0) / 1000;
  fs.closeSync(fd);
  const bytes = fs.statSync(path).size;
  const r0 = performance.now();
  const { frames } = decodeFrames(fs.readFileSync(path), true, true);
  const restored = frames.reduce((n, f) => n + f.payload.length / RECORD, 0);
  const restoreSeconds = (performance.now() - r0) / 1000;
  return {
    store: "journal (src/persist)",
    durablePerSecond: UPDATES / seconds,
    callingThreadUsPerRecord: (callMs * 1000) / UPDATES,
    bytesOnDisk: bytes,
    restoreRecords: restored,
    restoreSeconds,
    restoreRecordsPerSecond: restored / restoreSeconds,
  };
}

async function lmdb(dir: string) {
  const db = open({ path: join(dir, "state.mdb"), encoding: "binary", keyEncoding: "binary" });
  let callMs = 0;
  const t0 = performance.now();
  for (let done = 0; done < UPDATES; done += GROUP) {
    const c0 = performance.now();
    let last: Promise<boolean> | undefined;
    for (let i = done; i < Math.min(UPDATES, done + GROUP); i++) last = db.put(keyOf(i), records[i % records.length]);
    callMs += performance.now() - c0;
    await last; // committed (synced) with the rest of its batch
  }
  const seconds = (performance.now() - t0) / 1000;
  await db.flushed;
  const bytes = fs
    .readdirSync(dir)
    .filter((f) => f.startsWith("state.mdb"))
    .reduce((n, f) => n + fs.statSync(join(dir, f)).size, 0);
  const r0 = performance.now();
  let restored = 0;
  for (const { value } of db.getRange()) restored += (value as Uint8Array).length === RECORD ? 1 : 0;
  const restoreSeconds = (performance.now() - r0) / 1000;
  await db.close();
  return {
    store: "lmdb 3.5.6 (put, sync commits)",
    durablePerSecond: UPDATES / seconds,
    callingThreadUsPerRecord: (callMs * 1000) / UPDATES,
    bytesOnDisk: bytes,
    restoreRecords: restored,
    restoreSeconds,
    restoreRecordsPerSecond: restored / restoreSeconds,
  };
}

const results = [];
for (const run of [journal, lmdb]) {
  const dir = fs.mkdtempSync(join(os.tmpdir(), "pcpd-store-choice-"));
  try {
    const r = await run(dir);
    results.push(r);
    console.error(
      `${r.store}: ${Math.round(r.durablePerSecond).toLocaleString("en-US")} durable records/s, ${r.callingThreadUsPerRecord.toFixed(3)} µs calling-thread CPU per record, ${(r.bytesOnDisk / 1e6).toFixed(1)} MB on disk, restore ${r.restoreRecords.toLocaleString("en-US")} records in ${r.restoreSeconds.toFixed(2)} s`,
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
writeResults("store-choice.json", {
  question: "journal (src/persist) or lmdb for pcpd's persistence: calling-thread CPU per change, durable changes/s, bytes, restore speed",
  method: { keys: KEYS, updates: UPDATES, group: GROUP, recordBytes: RECORD, keyBytes: 8, directory: os.tmpdir() },
  ...machineInfo(),
  results,
  ratios: {
    durablePerSecond: results[0].durablePerSecond / results[1].durablePerSecond,
    callingThreadCpu: results[0].callingThreadUsPerRecord / results[1].callingThreadUsPerRecord,
  },
});
