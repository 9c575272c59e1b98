// The shard's files: journal group commits, snapshots that replace older generations,
// restore with the Epoch continued, and what damaged files do — a torn tail is cut off
// without an Epoch reset, a flipped bit or a broken snapshot keeps the valid prefix,
// is reported, and resets the Epoch.
import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_ENGINE_CONFIG, PacketEngine } from "../../src/engine/packet-engine.js";
import { ShardStore, shardDirectory, wallSeconds, type StoreOptions } from "../../src/persist/store.js";
import { lockDirectory, DirectoryLockedError } from "../../src/persist/lock.js";
import { mapRequest, nonceOf, serveOne } from "../helpers/packets.js";

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
  const e = new PacketEngine("debug");
  e.initEngine({ ...DEFAULT_ENGINE_CONFIG, seed: 4n, pool: { ...DEFAULT_ENGINE_CONFIG.pool, addresses: ["203.0.113.1", "203.0.113.2"], blockSize: 64 } }, T0);
  return e;
}

const options = (directory: string, over: Partial<StoreOptions> = {}): StoreOptions => ({
  directory, shard: 0, shards: 1, commitIntervalMs: 5, fsync: true, snapshotIntervalSeconds: 3600, snapshotJournalBytes: 1 << 30, maxBacklogBytes: 1 << 28, ...over,
});

/** A run: `count` mappings of subscribers 10.0.x.y journaled through a store; closed cleanly unless told. */
async function run(directory: string, count: number, o: { epoch?: number; first?: number; snapshotAt?: number; close?: boolean } = {}) {
  const e = engine();
  const wallOffset = wallSeconds() - T0;
  const store = new ShardStore(options(directory), () => o.epoch ?? 500, log);
  const restored = store.restore(e, wallOffset, T0);
  store.start();
  for (let i = o.first ?? 0; i < (o.first ?? 0) + count; i++) {
    const client = `10.0.${i >> 6}.${(i & 63) + 1}`;
    serveOne(e, mapRequest({ client, internalPort: 1000 + i, lifetime: 3600, nonce: nonceOf(i) }), T0, { source: client });
    store.append(e.persistPending(wallOffset));
    e.drainEvents();
    if (i === o.snapshotAt) await store.snapshot(e, wallOffset);
    if (i % 25 === 24) await new Promise((resolve) => setTimeout(resolve, 8)); // group commits happen meanwhile
  }
  if (o.close !== false) await store.close();
  return { e, store, restored };
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

  it("a snapshot replaces the older generations; snapshot + later journal restore the whole table", async () => {
    const dir = tempDir();
    await run(dir, 100);
    await run(dir, 100, { first: 100, snapshotAt: 150 });
    const names = files(dir);
    expect(names.filter((f) => f.startsWith("snapshot-"))).toHaveLength(1);
    const snap = Number(/snapshot-(\d+)/.exec(names.find((f) => f.startsWith("snapshot-"))!)![1]);
    expect(journals(dir).every((f) => Number(/journal-(\d+)/.exec(f)![1]) >= snap)).toBe(true);
    const third = await run(dir, 0);
    expect(third.restored).toMatchObject({ mappings: 200, stateLost: false, damage: [] });
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

  it("a damaged snapshot: its valid frames and the journals after it return; the Epoch resets", async () => {
    const dir = tempDir();
    await run(dir, 200, { snapshotAt: 199 });
    await run(dir, 20, { first: 200 });
    const snap = join(shardDirectory(dir, 0, 1), files(dir).find((f) => f.startsWith("snapshot-"))!);
    const bytes = fs.readFileSync(snap);
    bytes[bytes.length - 100] ^= 0xff;
    fs.writeFileSync(snap, bytes);
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
    const second = await run(dir, 0);
    expect(second.restored.stateLost).toBe(true);
    expect(second.restored.damage[0]).toMatchObject({ kind: "corrupt" });
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
