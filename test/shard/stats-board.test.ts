// The shard's counters in shared memory: what the worker copies is what the main thread
// reads (counters, Epoch, pool, writer), and a reader never sees a half-written copy
// while another thread writes without pause.
import { Worker } from "node:worker_threads";
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { StatsBoard } from "../../src/shard/stats-board.js";
import { mapRequest, serveOne } from "../helpers/packets.js";

const SECOND = 1_000_000_000n;

describe("StatsBoard", () => {
  it("reads back the engine's counters, the writer and the pool as published", () => {
    const e = engineFrom(engineConfig({ pool: { addresses: ["203.0.113.1", "2001:db8::1"] } }), 100);
    for (let i = 1; i <= 3; i++) serveOne(e, mapRequest({ client: `192.0.2.${i}` }), 100, { source: `192.0.2.${i}` });
    const board = new StatsBoard(StatsBoard.allocate());
    board.claim(42, e.statsBytes(), { base: 0, origin: 0n }, e.poolUsage());
    const read = board.read(0n);
    expect(read.threadId).toBe(42);
    expect(read.engine).toEqual(e.engineStats());
    expect(read.engine.mappings).toBe(3n);
    expect(read.codec).toEqual(e.stats());
    expect(read.codec.pcpResults[W.RESULT_SUCCESS]).toBe(3n);
    expect(read.pool).toEqual(e.poolUsage());
    expect(read.pool.map((p) => p.address)).toEqual(["203.0.113.1", "2001:db8::1"]);
    expect(read.hugePageBytes).toBe(0);
    board.publishHugePages(6 * 2 ** 21);
    expect(board.read(0n).hugePageBytes).toBe(6 * 2 ** 21);

    // Counters move with every publish; the pool only with publishPool.
    serveOne(e, mapRequest({ client: "192.0.2.9" }), 100, { source: "192.0.2.9" });
    board.publish(e.statsBytes(), { base: 0, origin: 0n });
    const later = board.read(0n);
    expect(later.engine.mappings).toBe(4n);
    expect(later.pool).toEqual(read.pool);
    board.publishPool([{ address: "203.0.113.1", freeBlocks: 7, retired: true }]);
    expect(board.read(0n).pool).toEqual([{ address: "203.0.113.1", freeBlocks: 7, retired: true }]);
  });

  it("reads back each socket's I/O counters (a path's missing ones stay absent); a new writer starts without the old one's", () => {
    const e = engineFrom(engineConfig(), 100);
    const board = new StatsBoard(StatsBoard.allocate());
    expect(board.writer()).toBe(0);
    board.claim(7, e.statsBytes(), { base: 0, origin: 0n }, e.poolUsage());
    expect(board.writer()).toBe(7);
    expect(board.read(0n).io).toBeUndefined();
    const io = [
      { socket: "192.0.2.1:5351", counters: { received: 10, sent: 9, recvCalls: 2, truncated: 1, rxqDrops: 3, "unsent.EAGAIN": 1 } },
      { socket: "[2001:db8::1]:5351", counters: { received: 4, sent: 4, "recvErrors.other": 2 } },
    ];
    board.publishIo(io);
    expect(board.read(0n).io).toEqual(io);
    board.claim(8, e.statsBytes(), { base: 0, origin: 0n }, e.poolUsage());
    expect(board.read(0n).io).toBeUndefined();
  });

  it("computes the Epoch from the writer's base and origin, wrapping at 2^32", () => {
    const board = new StatsBoard(StatsBoard.allocate());
    const counters = new Uint8Array(W.STATS_SIZE);
    board.publish(counters, { base: 100, origin: 10n * SECOND });
    expect(board.read(10n * SECOND).epoch).toBe(100);
    expect(board.read(15n * SECOND + SECOND / 2n).epoch).toBe(105);
    board.publish(counters, { base: 2 ** 32 - 2, origin: 0n });
    expect(board.read(3n * SECOND).epoch).toBe(1);
  });

  it("a reader never sees a torn copy while another thread publishes without pause", async () => {
    const buffer = StatsBoard.allocate();
    // The writer stores the same value in every counter of each copy, so a torn read shows two values.
    const writer = new Worker(
      `const { workerData, parentPort } = require("node:worker_threads");
       const seq = new Int32Array(workerData.buffer, 0, 1);
       const view = new DataView(workerData.buffer);
       parentPort.postMessage("go");
       for (let i = 1; i <= workerData.copies; i++) {
         const s = Atomics.add(seq, 0, 1) + 1;
         for (let o = 0; o < workerData.size; o += 8) view.setBigUint64(workerData.at + o, BigInt(i), true);
         Atomics.store(seq, 0, s + 1);
       }`,
      { eval: true, workerData: { buffer, copies: 300_000, size: W.STATS_SIZE, at: 64 } },
    );
    await new Promise((resolve) => writer.once("message", resolve));
    const done = new Promise((resolve) => writer.once("exit", resolve));
    let finished = false;
    void done.then(() => (finished = true));
    const board = new StatsBoard(buffer);
    let reads = 0;
    let last = 0n;
    while (!finished && reads < 200_000) {
      const r = board.read();
      const values = new Set([...Object.values(r.engine), r.codec.packets, r.codec.parsed, ...r.codec.pcpResults, ...r.codec.drops]);
      expect(values.size).toBe(1);
      const [v] = values;
      expect(v >= last).toBe(true); // copies only move forward
      last = v;
      reads++;
      if (reads % 1000 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    await done;
    expect(reads).toBeGreaterThan(0);
  });
});
