// The shard's files: journal group commits, snapshots that replace older generations,
// restore with the Epoch continued, and what damaged files do — a torn tail is cut off
// without an Epoch reset, a flipped bit or a broken snapshot keeps the valid prefix,
// is reported, and resets the Epoch.
import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { ShardStore, shardDirectory, wallSeconds, type StoreOptions } from "../../src/persist/store.js";
import { lockDirectory, DirectoryLockedError } from "../../src/persist/lock.js";
import { HEADER, readFrames, VERSION } from "../../src/persist/format.js";
import { crc32 } from "node:zlib";
import { mountTmpfs } from "../helpers/tmpfs.js";
import { mapRequest, nonceOf, serveOne } from "../helpers/packets.js";
import { waitFor } from "../helpers/wait.js";

const T0 = 100;
const log = pino({ level: "silent" });
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = fs.mkdtempSync(join(os.tmpdir(), "pcpd-store-"));
  dirs.push(d);
  return d;
}

function engine(): PacketEngine {
  const e = engineFrom(engineConfig({ pool: { addresses: ["203.0.113.1", "203.0.113.2"], blockSize: 64 } }), T0, { seed: 4n });
  return e;
}

const options = (directory: string, over: Partial<StoreOptions> = {}): StoreOptions => ({
  directory,
  shard: 0,
  shards: 1,
  commitIntervalMs: 5,
  fsync: true,
  snapshotIntervalSeconds: 3600,
  snapshotJournalBytes: 1 << 30,
  maxBacklogBytes: 1 << 28,
  ...over,
});

/** A run: `count` mappings of subscribers 10.0.x.y journaled through a store; closed cleanly unless told. */
async function run(
  directory: string,
  count: number,
  o: { epoch?: number; first?: number; snapshotAt?: number; close?: boolean; store?: Partial<StoreOptions> } = {},
) {
  const e = engine();
  const wallOffset = wallSeconds() - T0;
  const store = new ShardStore(options(directory, o.store), () => o.epoch ?? 500, log);
  const restored = await store.restore(e, wallOffset, T0);
  store.start({ engine: e, wallOffset });
  for (let i = o.first ?? 0; i < (o.first ?? 0) + count; i++) {
    serve(e, store, wallOffset, i);
    if (i === o.snapshotAt) await store.snapshot(e, wallOffset);
    if (i % 25 === 24) await store.commitNow(); // a group commit every 25 records: the journal holds many frames
  }
  if (o.close !== false) await store.close();
  return { e, store, restored };
}

/** Mapping i (subscriber 10.0.x.y, internal port 1000 + i) created and its records handed to the store. */
function serve(e: PacketEngine, store: ShardStore, wallOffset: number, i: number): void {
  const client = `10.0.${i >> 6}.${(i & 63) + 1}`;
  serveOne(e, mapRequest({ client, internalPort: 1000 + i, lifetime: 3600, nonce: nonceOf(i) }), T0, { source: client });
  store.append(e.persistPending(wallOffset));
  e.drainEvents();
}

const until = (ok: () => boolean) => waitFor(ok);

/** A store's state read back by a second one, as a restart after kill -9 would (the first is not closed). */
async function restoreCopy(directory: string) {
  const e = engine();
  const store = new ShardStore(options(directory), () => 0, log);
  const restored = await store.restore(e, wallSeconds() - T0, T0);
  return { e, restored };
}

const files = (directory: string) => fs.readdirSync(shardDirectory(directory, 0, 1)).sort();
const journals = (directory: string) => files(directory).filter((f) => f.startsWith("journal-"));

describe("ShardStore", () => {
  it("restores every mapping of a cleanly stopped run and continues its Epoch by the time it was down", async () => {
    const dir = tempDir();
    const first = await run(dir, 300, { epoch: 500 });
    expect(first.restored).toMatchObject({ files: [], mappings: 0, stateLost: false, epoch: 0 });
    const second = await run(dir, 0);
    expect(second.restored).toMatchObject({ mappings: 300, stateLost: false, damage: [] });
    expect(second.restored.epoch).toBeGreaterThanOrEqual(500);
    expect(second.restored.epoch).toBeLessThanOrEqual(502);
    expect(second.e.engineStats()).toMatchObject({ mappings: 300n, subscribers: first.e.engineStats().subscribers, blocks: first.e.engineStats().blocks });
    // Same external port for every endpoint.
    for (let i = 0; i < 300; i += 37) {
      const client = `10.0.${i >> 6}.${(i & 63) + 1}`;
      expect(second.e.lookup(client, 6, 1000 + i)?.externalPort).toBe(first.e.lookup(client, 6, 1000 + i)?.externalPort);
    }
  });

  it("a snapshot keeps the previous generation (snapshot and journals since) and deletes the older ones; snapshot + later journal restore the whole table", async () => {
    const dir = tempDir();
    await run(dir, 100);
    await run(dir, 100, { first: 100, snapshotAt: 150 });
    await run(dir, 50, { first: 200, snapshotAt: 220 });
    const snaps = files(dir)
      .filter((f) => f.startsWith("snapshot-"))
      .map((f) => Number(/snapshot-(\d+)/.exec(f)![1]));
    expect(snaps).toHaveLength(2);
    const gens = journals(dir).map((f) => Number(/journal-(\d+)/.exec(f)![1]));
    expect(Math.min(...gens)).toBe(snaps[0]); // nothing older than the previous snapshot
    const fourth = await run(dir, 0);
    expect(fourth.restored).toMatchObject({ mappings: 250, stateLost: false, damage: [] });
  });

  it("a journal torn by a crash is cut at its last whole frame; what came before returns and the Epoch continues", async () => {
    const dir = tempDir();
    await run(dir, 200);
    const last = join(shardDirectory(dir, 0, 1), journals(dir).at(-1)!);
    const size = fs.statSync(last).size;
    fs.truncateSync(last, size - 40); // the end of the last frame never reached the disk
    const second = await run(dir, 0, { close: false });
    await second.store.close();
    expect(second.restored.damage).toEqual([expect.objectContaining({ kind: "torn" })]);
    expect(second.restored.stateLost).toBe(false);
    expect(second.restored.epoch).toBeGreaterThan(0);
    expect(second.restored.mappings).toBeGreaterThan(0);
    expect(second.restored.mappings).toBeLessThan(200);
    expect(fs.statSync(last).size).toBe(second.restored.damage[0].offset); // cut: the next restore finds it clean
    const third = await run(dir, 0);
    expect(third.restored.damage).toEqual([]);
    expect(third.restored.mappings).toBe(second.restored.mappings);
  });

  it("a flipped bit inside a journal: the frames before it return, the damage is reported, the Epoch resets", async () => {
    const dir = tempDir();
    await run(dir, 300);
    const path = join(shardDirectory(dir, 0, 1), journals(dir)[0]);
    const bytes = fs.readFileSync(path);
    bytes[Math.floor(bytes.length / 2)] ^= 0x10;
    fs.writeFileSync(path, bytes);
    const second = await run(dir, 0);
    expect(second.restored.damage).toEqual([expect.objectContaining({ kind: "corrupt", reason: "checksum mismatch", file: journals(dir)[0] })]);
    expect(second.restored.stateLost).toBe(true);
    expect(second.restored.epoch).toBe(0);
    expect(second.restored.mappings).toBeGreaterThan(0);
    expect(second.restored.mappings).toBeLessThan(300);
  });

  it("a damaged snapshot with no history to fall back on: its valid frames and the journals after it return; the Epoch resets", async () => {
    const dir = tempDir();
    await run(dir, 200, { snapshotAt: 199 });
    await run(dir, 20, { first: 200 });
    const snap = join(shardDirectory(dir, 0, 1), files(dir).find((f) => f.startsWith("snapshot-"))!);
    const bytes = fs.readFileSync(snap);
    bytes[bytes.length - 100] ^= 0xff;
    fs.writeFileSync(snap, bytes);
    fs.rmSync(join(shardDirectory(dir, 0, 1), journals(dir)[0])); // the first generation's journal gone: no complete history
    const third = await run(dir, 0);
    expect(third.restored.damage.map((d) => [d.kind, d.file])).toEqual([["corrupt", files(dir).find((f) => f.startsWith("snapshot-"))]]);
    expect(third.restored.stateLost).toBe(true);
    expect(third.restored.epoch).toBe(0);
    expect(third.restored.mappings).toBeGreaterThanOrEqual(20); // the later journal's at least
  });

  it("a snapshot cut before its end frame counts as damaged", async () => {
    const dir = tempDir();
    await run(dir, 50, { snapshotAt: 49 });
    const snap = join(shardDirectory(dir, 0, 1), files(dir).find((f) => f.startsWith("snapshot-"))!);
    const bytes = fs.readFileSync(snap);
    fs.writeFileSync(snap, bytes.subarray(0, bytes.length - 40)); // END frame gone
    fs.rmSync(join(shardDirectory(dir, 0, 1), journals(dir)[0])); // no complete history to fall back on
    const second = await run(dir, 0);
    expect(second.restored.stateLost).toBe(true);
    expect(second.restored.damage[0]).toMatchObject({ kind: "corrupt" });
  });

  it("the only snapshot damaged, every journal since the first generation there: they are replayed instead — nothing lost, the Epoch continues", async () => {
    const dir = tempDir();
    await run(dir, 200, { snapshotAt: 100 });
    await run(dir, 20, { first: 200 });
    const [snap] = files(dir).filter((f) => f.startsWith("snapshot-"));
    const path = join(shardDirectory(dir, 0, 1), snap);
    const bytes = fs.readFileSync(path);
    bytes[Math.floor(bytes.length / 2)] ^= 0x04;
    fs.writeFileSync(path, bytes);
    const third = await run(dir, 0);
    expect(third.restored.fallback).toMatchObject({ file: snap, reason: "checksum mismatch" });
    expect(third.restored).toMatchObject({ mappings: 220, stateLost: false, damage: [] });
    expect(third.restored.epoch).toBeGreaterThan(0);
  });

  it("a write torn in the previous journal, the newest still empty (opened before that write went out): a torn tail, not corruption — the Epoch continues", async () => {
    const dir = tempDir();
    await run(dir, 200);
    const torn = join(shardDirectory(dir, 0, 1), journals(dir).at(-1)!);
    fs.truncateSync(torn, fs.statSync(torn).size - 40);
    // The generation opened next, before the torn write left: no frame in it yet.
    const gen = Number(/journal-(\d+)/.exec(journals(dir).at(-1)!)![1]) + 1;
    fs.writeFileSync(join(shardDirectory(dir, 0, 1), `journal-${String(gen).padStart(10, "0")}.log`), "");
    const second = await run(dir, 0);
    expect(second.restored.damage).toEqual([expect.objectContaining({ kind: "torn", file: journals(dir)[0] })]);
    expect(second.restored.stateLost).toBe(false);
    expect(second.restored.epoch).toBeGreaterThan(0);
  });

  it("an upgrade keeps its state: files of format version 2 (records without a requester) are read", async () => {
    const dir = tempDir();
    await run(dir, 120, { snapshotAt: 60 });
    for (const name of files(dir).filter((f) => /^(journal|snapshot)-/.test(f))) {
      // Every frame rewritten as version 2 wrote it: the version byte, and the CRC over it.
      const path = join(shardDirectory(dir, 0, 1), name);
      const bytes = fs.readFileSync(path);
      for (let at = 0; at < bytes.length; at += HEADER + bytes.readUInt32LE(at + 12)) {
        expect(bytes[at + 8]).toBe(VERSION);
        bytes[at + 8] = 2;
        bytes.writeUInt32LE(crc32(bytes.subarray(at + 8, at + HEADER + bytes.readUInt32LE(at + 12))), at + 4);
      }
      fs.writeFileSync(path, bytes);
    }
    const second = await run(dir, 0);
    expect(second.restored).toMatchObject({ mappings: 120, stateLost: false, damage: [] });
    expect(second.restored.epoch).toBeGreaterThan(0);
  });

  it("issue #12 item 1: disk full — failed and partial writes are cut back to the last whole frame, their records kept and retried; writing again brings a snapshot; nothing acknowledged is lost", async () => {
    const disk = mountTmpfs(2 << 20);
    try {
      const e = engine();
      const wallOffset = wallSeconds() - T0;
      const store = new ShardStore(options(disk.dir), () => 500, log);
      await store.restore(e, wallOffset, T0);
      store.start({ engine: e, wallOffset });
      for (let i = 0; i < 100; i++) serve(e, store, wallOffset, i);
      await store.commitNow();
      disk.fill(4096); // one page left: a larger write goes in part (tmpfs writes up to the page boundary), then ENOSPC
      for (let i = 100; i < 700; i++) {
        serve(e, store, wallOffset, i);
        // A group commit now and then, as the timer makes them: the first fits, a larger one
        // goes in part, then ENOSPC (it rejects: those records are not on disk).
        if (i % 100 === 0) await store.commitNow().catch(() => undefined);
      }
      await until(() => store.status().state === "failing");
      const failing = store.status();
      expect(failing.reason).toMatch(/ENOSPC/);
      expect(failing.writeErrors).toBeGreaterThan(0);
      expect(failing.backlogBytes).toBeGreaterThan(0);
      await expect(store.commitNow()).rejects.toThrow(/not on disk/); // a check-pointed reply is not released
      // Not one torn frame on disk: every file reads clean.
      for (const f of journals(disk.dir)) expect(await readFrames(join(shardDirectory(disk.dir, 0, 1), f), false, () => undefined)).toEqual([]);
      disk.free();
      await until(() => store.status().state === "ok");
      expect(store.status()).toMatchObject({ backlogBytes: 0, droppedBytes: 0 });
      expect(files(disk.dir).filter((f) => f.startsWith("snapshot-"))).toHaveLength(1); // the catch-up snapshot
      const after = await restoreCopy(disk.dir); // as after a kill -9 now
      expect(after.restored).toMatchObject({ mappings: 700, stateLost: false, damage: [] });
      await store.close();
    } finally {
      disk.unmount();
    }
  });

  it("issue #12 item 1: a backlog over maxBacklogBytes is let go while the disk is full; the snapshot after recovery brings every mapping back", async () => {
    const disk = mountTmpfs(2 << 20);
    try {
      const e = engine();
      const wallOffset = wallSeconds() - T0;
      const store = new ShardStore(options(disk.dir, { maxBacklogBytes: 4096 }), () => 500, log);
      await store.restore(e, wallOffset, T0);
      store.start({ engine: e, wallOffset });
      disk.fill();
      for (let i = 0; i < 400; i++) serve(e, store, wallOffset, i);
      await until(() => store.status().state === "failing" && store.status().droppedBytes > 0);
      expect(store.status().backlogBytes).toBeLessThanOrEqual(4096);
      disk.free();
      await until(() => store.status().state === "ok");
      const after = await restoreCopy(disk.dir);
      expect(after.restored).toMatchObject({ mappings: 400, stateLost: false, damage: [], gapBytes: 0 });
      await store.close();
    } finally {
      disk.unmount();
    }
  });

  it("issue #12 item 1: a restore that finds the GAP a dropped backlog left (no snapshot after it) reports state lost", async () => {
    const dir = tempDir();
    const e = engine();
    const wallOffset = wallSeconds() - T0;
    const store = new ShardStore(options(dir, { maxBacklogBytes: 4096, commitIntervalMs: 10_000 }), () => 500, log);
    await store.restore(e, wallOffset, T0);
    store.start(); // no snapshot source: the hole stays open
    for (let i = 0; i < 100; i++) serve(e, store, wallOffset, i); // > 4096 bytes before any commit
    expect(store.status().droppedBytes).toBeGreaterThan(0);
    await store.commitNow().catch(() => undefined);
    const after = await restoreCopy(dir);
    expect(after.restored.gapBytes).toBeGreaterThan(0);
    expect(after.restored.stateLost).toBe(true);
    await store.close();
  });

  it("issue #12 item 2: a damaged newest snapshot falls back to the previous generation and its journals — nothing lost, the Epoch continues", async () => {
    const dir = tempDir();
    await run(dir, 100, { snapshotAt: 50 });
    await run(dir, 100, { first: 100, snapshotAt: 150 });
    const snaps = files(dir).filter((f) => f.startsWith("snapshot-"));
    expect(snaps).toHaveLength(2); // the previous generation is kept
    const newest = join(shardDirectory(dir, 0, 1), snaps[1]);
    const bytes = fs.readFileSync(newest);
    bytes[Math.floor(bytes.length / 2)] ^= 0x01;
    fs.writeFileSync(newest, bytes);
    const third = await run(dir, 0);
    expect(third.restored.fallback).toMatchObject({ file: snaps[1], reason: "checksum mismatch" });
    expect(third.restored).toMatchObject({ mappings: 200, stateLost: false, damage: [] });
    expect(third.restored.epoch).toBeGreaterThan(0);
  });

  it("issue #12 item 2: one flipped bit anywhere in a snapshot loses at most the records of one frame, counted and reported", async () => {
    const dir = tempDir();
    const STEP = 64; // record ids per snapshot frame
    await run(dir, 600, { snapshotAt: 599, store: { snapshotStep: STEP } });
    const shardDir = shardDirectory(dir, 0, 1);
    const snap = join(shardDir, files(dir).find((f) => f.startsWith("snapshot-"))!);
    const clean = fs.readFileSync(snap);
    for (const j of journals(dir)) if (Number(/journal-(\d+)/.exec(j)![1]) < Number(/snapshot-(\d+)/.exec(snap)![1])) fs.rmSync(join(shardDir, j));
    let seed = 12345;
    for (let trial = 0; trial < 12; trial++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const bit = 8 + (seed % ((clean.length - 16) * 8)); // anywhere (the first frame's magic aside)
      const bytes = Buffer.from(clean);
      bytes[bit >> 3] ^= 1 << (bit & 7);
      fs.writeFileSync(snap, bytes);
      const r = await restoreCopy(dir);
      expect(r.restored.mappings, `bit ${bit}`).toBeGreaterThanOrEqual(600 - STEP);
      expect(r.restored.damage, `bit ${bit}`).toHaveLength(1);
      expect(r.restored.damage[0]).toMatchObject({ kind: "corrupt", file: snap.split("/").at(-1) });
      expect(r.restored.damage[0].bytes).toBeGreaterThan(0);
      expect(r.restored.stateLost).toBe(true);
    }
  });

  it("issue #12 item 4: a slow fdatasync does not hold the next group's write (a kill -9 needs the write; the page cache outlives the process)", async () => {
    const dir = tempDir();
    const e = engine();
    const wallOffset = wallSeconds() - T0;
    const store = new ShardStore(options(dir, { commitIntervalMs: 10 }), () => 500, log);
    await store.restore(e, wallOffset, T0);
    store.start();
    await store.commitNow();
    const journal = join(shardDirectory(dir, 0, 1), journals(dir).at(-1)!);
    const original = fs.fdatasync;
    // A disk whose fdatasync does not finish until the test lets it: group 2 must be written meanwhile.
    const held: (() => void)[] = [];
    const slow = vi.spyOn(fs, "fdatasync").mockImplementation(((fd: number, cb: (e: NodeJS.ErrnoException | null) => void) => {
      held.push(() => original(fd, cb));
    }) as typeof fs.fdatasync);
    try {
      const size0 = fs.statSync(journal).size;
      serve(e, store, wallOffset, 0);
      await until(() => fs.statSync(journal).size > size0 && held.length > 0); // group 1 written, its fdatasync pending
      const size1 = fs.statSync(journal).size;
      serve(e, store, wallOffset, 1);
      await until(() => fs.statSync(journal).size > size1); // written while group 1's fdatasync is still held
    } finally {
      for (const release of held.splice(0)) release();
      slow.mockRestore();
    }
    await store.close();
    const after = await restoreCopy(dir);
    expect(after.restored.mappings).toBe(2);
  });

  it("one process per data directory: a live owner keeps the lock, a dead one's lock is taken over", () => {
    const dir = tempDir();
    const release = lockDirectory(dir);
    expect(() => lockDirectory(dir)).toThrow(DirectoryLockedError);
    release();
    fs.writeFileSync(join(dir, "LOCK"), "999999999\n"); // no such process
    const again = lockDirectory(dir);
    expect(fs.readFileSync(join(dir, "LOCK"), "utf8").trim()).toBe(String(process.pid));
    again();
  });
});
