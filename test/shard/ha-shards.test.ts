// The shard's HA role on real worker threads (ShardPool, the built worker), real UDP and a
// real nats-server: two "nodes" (pools) of one shard each start as standbys of the same
// subject; A promoted answers MAP requests and replicates them, B follows; CHECKPOINT_REQUIRED
// replies wait for the stream's acknowledgement (none while the server is frozen); A's
// gate closed → A drops; B promoted → the same external address and port, the Epoch
// continued; A, answering again with a stale gate, is fenced by its first publish and stops;
// a planned handover from B to a fresh standby loses nothing.
//
// Each node has its own service address here (A 127.0.0.71, B .72, the later node .73 on
// one port), as two machines would each bind the group's address: one loopback host cannot
// bind one address:port twice.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import * as W from "../../src/wire.generated.js";
import { parseConfig } from "../../src/config/schema.js";
import { TestTime } from "../../src/core/clock.js";
import { ShardPool } from "../../src/server/shard-pool.js";
import { StatsBoard } from "../../src/shard/stats-board.js";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connectNats, haNames } from "../../src/replication/nats.js";
import { StreamWriter } from "../../src/replication/writer.js";
import { encodeHeaders } from "../../src/replication/messages.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import type { ShardSpec } from "../../src/shard/tasks.js";
import { assigned, checkpointRequired, mapRequest, nonceOf, serveOne, u32 } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { natsUnavailable, startNatsCluster, type NatsCluster } from "../helpers/nats.js";
import { waitFor } from "../helpers/wait.js";

const skip = natsUnavailable();
const PORT = 25_371;
const CLIENT = "127.0.0.80";
const log = pino({ level: "silent" });
const clock = new TestTime();

interface Node {
  pool: ShardPool;
  address: string;
  gate: BigInt64Array;
}

/** Lease as the main thread would write it: open for `seconds` from now (shard time), or closed. */
const openGate = (n: Node, seconds = 600) => Atomics.store(n.gate, 0, clock.monotonicNs() + BigInt(seconds * 1e9));
const closeGate = (n: Node) => Atomics.store(n.gate, 0, 0n);

const map = (to: string, internalPort: number, options = [] as ReturnType<typeof checkpointRequired>[], timeoutMs = 2000) =>
  exchange(
    CLIENT,
    to,
    PORT,
    mapRequest({ client: CLIENT, protocol: W.PROTO_UDP, internalPort, lifetime: 3600, nonce: nonceOf(internalPort) }, options),
    timeoutMs,
  ).then((r) => r.reply);
const epochOf = (reply: Uint8Array) => u32(reply, 8);

/** One node's shard 0 of `group` (default "g") on `address`, HA on, its gate in `gate`. */
function haSpec(name: string, address: string, gate: SharedArrayBuffer, o: { group?: string; commitIntervalMs?: number; servers: string[] }): ShardSpec {
  const { group = "g", commitIntervalMs = 10, servers } = o;
  const config = parseConfig({
    listen: { addresses: [address], port: PORT },
    workers: 1,
    pool: { addresses: ["203.0.113.9"] },
    persistence: { enabled: false },
    log: { level: "silent" },
    rateLimit: { global: { rate: 1e6, burst: 1e6 } },
    ha: {
      enabled: true,
      node: name,
      cluster: "sh",
      nats: { servers, timeoutMs: 700 },
      replicas: 1,
      commitIntervalMs,
      groups: [{ name: group, addresses: [address] }],
    },
  });
  return {
    shard: 0,
    shards: 1,
    endpoints: [{ address, port: PORT }],
    announce: [],
    config,
    seed: 5n,
    board: StatsBoard.allocate(),
    testClock: clock.buffer,
    ha: { group, node: name, stream: haNames.stream("sh", group), subject: haNames.subject("sh", group, 0), gate },
  };
}

describe.skipIf(skip)("HA shards (standby, promote, gate, fence, handover)", () => {
  let nats: NatsCluster;
  const nodes: Node[] = [];

  async function startNode(name: string, address: string, o: { group?: string; commitIntervalMs?: number; servers?: string[] } = {}): Promise<Node> {
    const gate = new SharedArrayBuffer(8);
    const spec = haSpec(name, address, gate, { servers: nats.urls, ...o });
    const pool = new ShardPool([spec], log, () => undefined);
    const [started] = await pool.start();
    expect(started).toMatchObject({ serving: false, epoch: 0, endpoints: [{ address, port: PORT }] });
    const node = { pool, address, gate: new BigInt64Array(gate) };
    nodes.push(node);
    return node;
  }
  const state = (n: Node) => n.pool.run(0, { kind: "haState" });

  beforeAll(async () => {
    nats = await startNatsCluster({ size: 1, basePort: 24_430 });
  }, 60_000);
  afterAll(async () => {
    for (const n of nodes) await n.pool.stop().catch(() => undefined);
    await nats?.stop();
  });

  let a: Node;
  let b: Node;
  let port80 = 0;
  let lastEpochA = 0;

  it("starts standbys that bind nothing; A promoted serves, B follows", async () => {
    a = await startNode("a", "127.0.0.71");
    b = await startNode("b", "127.0.0.72");
    expect(await state(a)).toMatchObject({ role: "standby", seq: 0, pendingBytes: 0 });
    await expect(map(a.address, 80, [], 300)).rejects.toThrow(); // nothing bound
    // A standby programs no dataplane: nothing to export, the dataplane task changes nothing.
    expect(await a.pool.run(0, { kind: "exportTable", from: 1 })).toEqual({ bytes: new Uint8Array(0), next: 0 });
    expect(await a.pool.run(0, { kind: "dataplane", down: false })).toBe(false);
    await a.pool.run(0, { kind: "haCatchUp", timeoutMs: 5000 });
    openGate(a);
    const promoted = await a.pool.run(0, { kind: "haPromote", term: 1 });
    expect(promoted).toMatchObject({ continued: false, epoch: 0 });
    const reply = await map(a.address, 80);
    expect(reply[3]).toBe(W.RESULT_SUCCESS);
    port80 = assigned({ response: reply }).port;
    expect((await map(a.address, 81))[3]).toBe(W.RESULT_SUCCESS);
    await waitFor(async () => (await state(a)).pendingBytes === 0);
    const caught = await b.pool.run(0, { kind: "haCatchUp", timeoutMs: 5000 });
    expect(caught).toMatchObject({ role: "standby", complete: true, records: 2 });
    expect(caught.seq).toBe((await state(a)).seq);
    expect(await state(a)).toMatchObject({ role: "active", records: 2 });
  });

  it("holds a CHECKPOINT_REQUIRED reply until the stream acknowledged it", async () => {
    const server = nats.nodes[0].process!;
    server.kill("SIGSTOP");
    await waitFor(() => /^\d+ \(.*\) T/.test(readFileSync(`/proc/${server.pid}/stat`, "utf8")));
    let answered = false;
    let reply: Promise<Buffer>;
    try {
      reply = map(a.address, 82, [checkpointRequired()], 15_000).then((r) => ((answered = true), r));
      // A publish attempt timed out (the writer reports it) and still no reply.
      await waitFor(async () => (await state(a)).error !== undefined, { timeout: 10_000 });
      expect(answered).toBe(false);
      expect((await state(a)).pendingBytes).toBeGreaterThan(0);
    } finally {
      server.kill("SIGCONT");
    }
    const r = await reply;
    expect(r[3]).toBe(W.RESULT_SUCCESS);
    await b.pool.run(0, { kind: "haCatchUp", timeoutMs: 5000 });
    expect((await state(b)).records).toBe(3);
  }, 30_000);

  it("drops everything once A's gate closes", async () => {
    clock.advance(100);
    const refreshed = await map(a.address, 80);
    lastEpochA = epochOf(refreshed);
    expect(lastEpochA).toBeGreaterThanOrEqual(100);
    await waitFor(async () => (await state(a)).pendingBytes === 0);
    closeGate(a);
    await expect(map(a.address, 80, [], 300)).rejects.toThrow();
    expect((await state(a)).gateDrops).toBeGreaterThanOrEqual(1);
  });

  it("B promoted answers with the same external address and port and a continued Epoch", async () => {
    await b.pool.run(0, { kind: "haCatchUp", timeoutMs: 5000 });
    openGate(b);
    const promoted = await b.pool.run(0, { kind: "haPromote", term: 2 });
    expect(promoted.continued).toBe(true);
    expect(promoted.epoch).toBeGreaterThanOrEqual(lastEpochA);
    expect(promoted.epoch).toBeLessThan(lastEpochA + 10);
    const reply = await map(b.address, 80);
    expect(reply[3]).toBe(W.RESULT_SUCCESS);
    expect(assigned({ response: reply })).toEqual({ address: "203.0.113.9", port: port80 });
    expect(epochOf(reply)).toBeGreaterThanOrEqual(lastEpochA);
    expect(await state(b)).toMatchObject({ role: "active" });
  });

  it("A with a stale open gate is fenced by its first publish: its check-pointed reply never leaves, it stops answering", async () => {
    openGate(a);
    await expect(map(a.address, 90, [checkpointRequired()], 1500)).rejects.toThrow();
    await waitFor(async () => (await state(a)).role === "fenced");
    expect((await state(a)).error).toMatch(/wrong last sequence|moved past/);
    await expect(map(a.address, 80, [], 300)).rejects.toThrow(); // sockets closed
    await a.pool.stop();
    nodes.splice(nodes.indexOf(a), 1);
  });

  it("a planned handover: B publishes all and stops; a new standby takes over with every mapping", async () => {
    const c = await startNode("c", "127.0.0.73");
    expect((await map(b.address, 83))[3]).toBe(W.RESULT_SUCCESS);
    const { seq } = await b.pool.run(0, { kind: "haHandover" });
    await expect(map(b.address, 80, [], 300)).rejects.toThrow();
    expect(await state(b)).toMatchObject({ role: "standby", seq });
    const caught = await c.pool.run(0, { kind: "haCatchUp", timeoutMs: 5000 });
    expect(caught.seq).toBeGreaterThanOrEqual(seq);
    expect(caught.complete).toBe(true);
    openGate(c);
    const promoted = await c.pool.run(0, { kind: "haPromote", term: 3 });
    expect(promoted.continued).toBe(true);
    for (const port of [80, 81, 82, 83]) {
      const reply = await map(c.address, port);
      expect(reply[3]).toBe(W.RESULT_SUCCESS);
      if (port === 80) expect(assigned({ response: reply }).port).toBe(port80);
    }
    // B, a standby again, follows the new active's takeover.
    await waitFor(async () => (await state(b)).seq >= promoted.seq);
  });

  it("a standby meeting a break in its subject's chain rebuilds its engine, follows again, and then applies on as incomplete", async () => {
    const d = await startNode("d", "127.0.0.74", { group: "h" });
    const nc = await connectNats({ servers: nats.urls, timeoutMs: 1000 }, "ha-shards-test");
    try {
      const js = jetstream(nc);
      const jsm = await jetstreamManager(nc);
      const g = { stream: haNames.stream("sh", "h"), subject: haNames.subject("sh", "h", 0) };
      // An active elsewhere (this test's own engine and writer) publishes 5 mappings…
      const engine = engineFrom(engineConfig({ pool: { addresses: ["203.0.113.9"] } }), 1000, { seed: 3n });
      const writer = await StreamWriter.fence(
        {
          js,
          jsm,
          ...g,
          node: "x",
          term: 1,
          commitIntervalMs: 5,
          timeoutMs: 1000,
          maxPayload: 1 << 20,
          epoch: () => 7,
          wallMs: () => clock.wallMs(),
          onFenced: () => undefined,
        },
        0,
      );
      for (let p = 0; p < 5; p++) {
        serveOne(engine, mapRequest({ client: CLIENT, protocol: W.PROTO_UDP, internalPort: 500 + p, nonce: nonceOf(p) }), 1000, { source: CLIENT });
        writer.append(engine.persistPending(Math.floor(clock.wallMs() / 1000) - 1000));
        engine.discardEvents();
      }
      await writer.commitNow();
      const seq = writer.state().seq;
      writer.stop();
      // …then a message whose Pcpd-Prev does not name the one before it.
      const forged = await js.publish(g.subject, new Uint8Array(0), {
        headers: encodeHeaders({ kind: "records", node: "y", term: 9, epoch: 0, wall: clock.wallMs(), prev: seq - 1 }),
        expect: { lastSubjectSequence: seq },
      });
      await waitFor(async () => (await state(d)).seq === forged.seq, { timeout: 10_000 });
      const s = await state(d);
      expect(s).toMatchObject({ role: "standby", complete: false });
      expect(s.error).toMatch(/hole/);
      // Whatever happened at the break, every mapping published before it is in the engine.
      const found = await d.pool.run(0, { kind: "lookup", internalAddress: CLIENT, protocol: W.PROTO_UDP, internalPort: 502, family: 4 });
      expect(found.bytes.length).toBeGreaterThan(0);
      expect(s.records).toBe(5);
    } finally {
      await nc.close();
    }
  });

  it("an active that stops publishes what is pending first (a planned restart loses nothing)", async () => {
    const e = await startNode("e", "127.0.0.75", { group: "k", commitIntervalMs: 10_000 }); // no group commit before the stop
    await e.pool.run(0, { kind: "haCatchUp", timeoutMs: 5000 });
    openGate(e);
    await e.pool.run(0, { kind: "haPromote", term: 1 });
    expect((await map(e.address, 700))[3]).toBe(W.RESULT_SUCCESS);
    expect((await state(e)).pendingBytes).toBeGreaterThan(0);
    await e.pool.stop();
    nodes.splice(nodes.indexOf(e), 1);
    const f = await startNode("f", "127.0.0.76", { group: "k" });
    expect(await f.pool.run(0, { kind: "haCatchUp", timeoutMs: 5000 })).toMatchObject({ records: 1, complete: true });
    const found = await f.pool.run(0, { kind: "lookup", internalAddress: CLIENT, protocol: W.PROTO_UDP, internalPort: 700, family: 4 });
    expect(found.bytes.length).toBeGreaterThan(0);
  });

  it("a standby starts without NATS (it keeps trying) and refuses a promotion it cannot fence", async () => {
    const n = await startNode("n", "127.0.0.77", { group: "u", servers: ["nats://127.0.0.1:24499"] }); // nobody listens there
    await waitFor(async () => (await state(n)).error?.startsWith("connect:"));
    openGate(n);
    await expect(n.pool.run(0, { kind: "haPromote", term: 1 })).rejects.toThrow(/cannot fence|not reachable/);
    await expect(n.pool.run(0, { kind: "haCatchUp", timeoutMs: 300 })).rejects.toThrow(/NATS not reached/);
    expect(await state(n)).toMatchObject({ role: "standby" });
    await expect(map(n.address, 80, [], 300)).rejects.toThrow(); // nothing bound
  });
});

describe.skipIf(skip)("HA shards: a handover with a check-pointed reply held", () => {
  let nats: NatsCluster;
  let pool: ShardPool | undefined;
  beforeAll(async () => {
    nats = await startNatsCluster({ size: 1, basePort: 24_420 });
  }, 60_000);
  afterAll(async () => {
    await pool?.stop().catch(() => undefined);
    await nats?.stop();
  });

  it("drops the held reply, survives a gate written open again after the handover, and never serves again as a standby", async () => {
    const address = "127.0.0.78";
    const gateBuffer = new SharedArrayBuffer(8);
    const gate = new BigInt64Array(gateBuffer);
    const died: Error[] = [];
    pool = new ShardPool([haSpec("h", address, gateBuffer, { group: "w", servers: nats.urls })], log, (_, e) => died.push(e));
    await pool.start();
    const threads = pool.threads();
    await pool.run(0, { kind: "haCatchUp", timeoutMs: 5000 });
    Atomics.store(gate, 0, clock.monotonicNs() + 600_000_000_000n);
    await pool.run(0, { kind: "haPromote", term: 1 });
    expect((await map(address, 60))[3]).toBe(W.RESULT_SUCCESS);
    await waitFor(async () => (await pool!.run(0, { kind: "haState" })).pendingBytes === 0); // so that pending bytes below are the held request's
    const server = nats.nodes[0].process!;
    server.kill("SIGSTOP");
    let handover: Promise<{ seq: number }>;
    let answered = false;
    let reply: Promise<unknown>;
    try {
      await waitFor(() => /^\d+ \(.*\) T/.test(readFileSync(`/proc/${server.pid}/stat`, "utf8")));
      reply = map(address, 61, [checkpointRequired()], 4000).then(
        () => (answered = true),
        () => undefined,
      );
      await waitFor(async () => (await pool!.run(0, { kind: "haState" })).pendingBytes > 0);
      handover = pool.run(0, { kind: "haHandover" });
      await waitFor(async () => (await pool!.run(0, { kind: "haState" })).error !== undefined, { timeout: 10_000 });
      // The main thread's lease renewal, racing the handover, writes the gate open again.
      Atomics.store(gate, 0, clock.monotonicNs() + 600_000_000_000n);
    } finally {
      server.kill("SIGCONT");
    }
    const { seq } = await handover;
    await reply;
    expect(answered).toBe(false);
    const s = await pool.run(0, { kind: "haState" });
    expect(s).toMatchObject({ role: "standby", seq });
    expect(s.gateDrops).toBeGreaterThanOrEqual(1);
    // The gate is open, but a standby binds nothing and answers nothing.
    await expect(map(address, 60, [], 300)).rejects.toThrow();
    expect(pool.threads()).toEqual(threads); // the same worker: it did not die
    expect(died).toEqual([]);
  }, 40_000);

  it("promoted again, answers plain requests at once while NATS is down (only check-pointed replies wait for the stream)", async () => {
    const address = "127.0.0.78";
    await pool!.run(0, { kind: "haCatchUp", timeoutMs: 5000 });
    await pool!.run(0, { kind: "haPromote", term: 2 });
    await nats.nodes[0].kill("SIGKILL");
    try {
      for (let port = 100; port < 120; port++) {
        const started = performance.now();
        expect((await map(address, port, [], 1000))[3]).toBe(W.RESULT_SUCCESS);
        expect(performance.now() - started).toBeLessThan(500);
      }
      const s = await pool!.run(0, { kind: "haState" });
      expect(s.pendingBytes).toBeGreaterThan(0); // kept for the stream, not dropped
    } finally {
      await nats.nodes[0].start();
    }
    await waitFor(async () => (await pool!.run(0, { kind: "haState" })).pendingBytes === 0, { timeout: 20_000 });
    expect(await pool!.run(0, { kind: "haState" })).toMatchObject({ role: "active", records: expect.any(Number) });
  }, 40_000);
});
