// The engine worker pool on real sockets: each worker owns the sockets of its listen
// addresses and one shard; a worker that dies is replaced, its shard restarts empty with
// a reset Epoch, and the other shard keeps its mappings and its Epoch (checklist 125).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import * as W from "../../src/wire.generated.js";
import { parseConfig } from "../../src/config/schema.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { TestTime } from "../../src/core/clock.js";
import { announceRequest, assigned, mapRequest } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { waitFor } from "../helpers/wait.js";

const A = "127.0.0.9"; // shard 0
const B = "127.0.0.10"; // shard 1
let server: RunningServer;
/** Engine time and Epochs move when the test says (src/core/clock.ts). */
const clock = new TestTime();
const portOf = (address: string) => server.addresses.find((e) => e.address === address)!.port;
const epochOf = (reply: Buffer) => reply.readUInt32BE(8);
const send = (address: string, payload: Uint8Array) => exchange(address, address, portOf(address), payload).then((r) => r.reply);
const map = (address: string) =>
  send(address, mapRequest({ client: address, internalPort: 4000, lifetime: 600, nonce: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] }));

beforeAll(async () => {
  server = await startServer(
    parseConfig({ listen: { addresses: [A, B], port: 0 }, workers: 2, log: { level: "silent" }, persistence: { enabled: false } }),
    pino({ level: "silent" }),
    undefined,
    { testClock: clock },
  );
});
afterAll(() => server.stop());

describe("engine worker pool", () => {
  it("runs one shard per worker thread, each answering on its own addresses", async () => {
    const threads = server.threads();
    expect(threads).toHaveLength(2);
    expect(new Set(threads).size).toBe(2);
    for (const address of [A, B]) expect((await map(address))[3]).toBe(W.RESULT_SUCCESS);
    const stats = await server.stats();
    expect(stats.shards.map((s) => s.engine.mappings)).toEqual([1n, 1n]);
    expect(stats.engine.mappings).toBe(2n);
  });

  it("shards lease disjoint port blocks of the same pool", async () => {
    const a = assigned({ response: await map(A) });
    const b = assigned({ response: await map(B) });
    const blockSize = 512;
    if (a.address === b.address) expect(Math.floor((a.port - 1024) / blockSize)).not.toBe(Math.floor((b.port - 1024) / blockSize));
  });

  it("a dead worker is replaced: its shard restarts empty with a reset Epoch; the other shard is undisturbed", async () => {
    clock.advance(100); // both Epochs pass 100, so a reset shows
    expect(server.epochs().every((e) => e >= 100)).toBe(true);
    const before = {
      a: assigned({ response: await map(A) }),
      epochA: epochOf(await send(A, announceRequest({ client: A }))),
      epochB: epochOf(await send(B, announceRequest({ client: B }))),
    };
    expect(before.epochB).toBeGreaterThanOrEqual(100);
    const deadThread = server.threads()[1];
    const resetAt = performance.now();
    await server.replaceWorker(1);
    const replaced = await waitFor(
      () => {
        const t = server.threads()[1];
        return t !== undefined && t !== deadThread ? t : undefined;
      },
      { timeout: 20_000 },
    );
    expect(replaced).not.toBe(deadThread);
    // The new thread rebinds the port: ask until it answers.
    const reply = await waitFor(
      () =>
        exchange(B, B, portOf(B), announceRequest({ client: B }), 100).then(
          (r) => r.reply,
          () => undefined,
        ),
      { timeout: 20_000, interval: 0 },
    );
    // State lost → the Epoch restarted [6887 §8.5]: no more than the seconds since the reset
    // (a continuing Epoch would be at least before.epochB ≥ 100 more than that).
    expect(epochOf(reply)).toBeLessThanOrEqual(Math.ceil((performance.now() - resetAt) / 1000));
    const stats = await server.stats();
    expect(stats.shards[1].engine.mappings).toBe(0n);
    expect(stats.shards[0].engine.mappings).toBe(1n);
    // Shard 0: same mapping, Epoch still counting from where it was.
    const a = await map(A);
    expect(assigned({ response: a })).toEqual(before.a);
    expect(epochOf(a)).toBeGreaterThanOrEqual(before.epochA);
    // The restarted shard serves new requests.
    expect((await map(B))[3]).toBe(W.RESULT_SUCCESS);
  });
});
