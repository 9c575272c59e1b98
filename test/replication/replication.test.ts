// The replication library against a real nats-server with JetStream: a writer fed by one
// packet engine's batches, a follower restoring into another engine; the follower's table
// must equal the writer's (by external key), and the stream's guarantees the HA design
// relies on must hold — fencing by expected last subject sequence, compaction (a new
// follower gets the whole table from what is left after the purge), hole detection,
// commitNow resolving only after the stream's acknowledgement, catch-up, Epoch and wall
// time carried in the headers.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager, type ConsumeOptions, type Consumer, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import { connectNats, ensureGroupStream, haNames } from "../../src/replication/nats.js";
import { StreamWriter, FenceError, type WriterOptions } from "../../src/replication/writer.js";
import { StreamFollower, type FollowerOptions } from "../../src/replication/follower.js";
import { decodeBody, encodeBodies } from "../../src/replication/messages.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { assigned, mapRequest, nonceOf, serveOne } from "../helpers/packets.js";
import { natsUnavailable, startNatsCluster, type NatsCluster } from "../helpers/nats.js";
import { waitFor } from "../helpers/wait.js";

const skip = natsUnavailable();
const T0 = 1000;
const WALL = 1_700_000_000;
const CONFIG = engineConfig({ pool: { addresses: ["203.0.113.1", "203.0.113.2"], blockSize: 64, maxBlocksPerSubscriber: 8 }, ha: { enabled: false } });
const CLUSTER = "rt";

/** Freezes the nats-server (SIGSTOP) and waits until the kernel shows it stopped. */
async function freeze(cluster: NatsCluster): Promise<void> {
  const p = cluster.nodes[0].process!;
  p.kill("SIGSTOP");
  await waitFor(() => /^\d+ \(.*\) T/.test(readFileSync(`/proc/${p.pid}/stat`, "utf8")));
}

const newEngine = () => engineFrom(CONFIG, T0, { seed: 7n });

/** The table by external key: internal endpoint, flags and expiry as wall-clock seconds. */
function table(e: PacketEngine): string[] {
  const out: string[] = [];
  for (let m = 1; m <= e.mappingsUsed(); m++) {
    const d = e.describe(m);
    if (d) out.push(`${d.externalAddress}/${d.protocol}/${d.externalPort} ← ${d.internalAddress}/${d.internalPort} f${d.flags} e${d.mapExpiry + WALL}`);
  }
  return out.sort();
}

/** Mappings in service (not held down). */
const live = (e: PacketEngine) => table(e).filter((row) => !(Number(row.split(" f")[1].split(" ")[0]) & W.MAPF_HELD)).length;

/** MAP requests from `clients` × `ports` served one by one; the records go to `sink`. */
function traffic(e: PacketEngine, sink: (parts: Uint8Array[]) => void, clients: number, ports: number, lifetime = 3600, base = 1): number[] {
  const external: number[] = [];
  for (let c = 0; c < clients; c++)
    for (let p = 0; p < ports; p++) {
      const client = `192.0.2.${c + base}`;
      const o = serveOne(e, mapRequest({ client, protocol: W.PROTO_UDP, internalPort: 1000 + p, lifetime, nonce: nonceOf(c * 100 + p) }), T0, {
        source: client,
      });
      external.push(assigned(o).port);
      sink(e.persistPending(WALL));
      e.discardEvents();
    }
  return external;
}

describe.skipIf(skip)("replication through JetStream (writer → follower)", () => {
  let cluster: NatsCluster;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let groups = 0;
  beforeAll(async () => {
    cluster = await startNatsCluster({ size: 1, basePort: 24_400 });
    nc = await connectNats({ servers: cluster.urls, timeoutMs: 1000 }, "replication-test");
    js = jetstream(nc);
    jsm = await jetstreamManager(nc);
  }, 60_000);
  afterAll(async () => {
    await nc?.close();
    await cluster?.stop();
  });

  /** A fresh group (stream) per test; its subject for shard 0. */
  async function group(): Promise<{ stream: string; subject: string }> {
    const name = `g${++groups}`;
    await ensureGroupStream(nc, CLUSTER, name, 1);
    return { stream: haNames.stream(CLUSTER, name), subject: haNames.subject(CLUSTER, name, 0) };
  }

  function writerOptions(g: { stream: string; subject: string }, over: Partial<WriterOptions> = {}): WriterOptions & { fenced: string[] } {
    const fenced: string[] = [];
    return {
      js,
      jsm,
      ...g,
      node: "a",
      term: 1,
      commitIntervalMs: 5,
      timeoutMs: 1000,
      maxPayload: nc.info!.max_payload,
      epoch: () => 4242,
      wallMs: () => Date.now(),
      onFenced: (e) => fenced.push(e),
      fenced,
      ...over,
    };
  }

  function follow(g: { stream: string; subject: string }, engine: PacketEngine, holes: string[] = [], over: Partial<FollowerOptions> = {}): StreamFollower {
    const o: FollowerOptions = {
      js,
      jsm,
      ...g,
      apply: (chunk) => engine.restore(chunk, WALL, T0),
      onHole: (d) => (holes.push(d), "restart"),
      wallMs: () => Date.now(),
      ...over,
    };
    return new StreamFollower(o);
  }

  const consumersOf = async (stream: string) => await jsm.consumers.list(stream).next();
  /** Resolves once the stream has no consumer (a follower deletes the ones it leaves at once, not after 5 min of inactivity). */
  const noConsumerLeft = (stream: string) => waitFor(async () => (await consumersOf(stream)).length === 0, { interval: 100 });

  /** The client with its consumers created by `get` instead (the rest of the follower's client is not used). */
  const consumersBy = (get: (stream: string, opts: Parameters<JetStreamClient["consumers"]["get"]>[1]) => Promise<Consumer>) =>
    ({ consumers: { get } }) as unknown as JetStreamClient;

  it("encodes bodies of whole-record chunks within the message limit", () => {
    const a = newEngine();
    const parts: Uint8Array[] = [];
    traffic(a, (p) => parts.push(...p), 4, 50);
    const all = Buffer.concat(parts);
    const bodies = encodeBodies([all], 1024);
    expect(bodies.length).toBeGreaterThan(1);
    for (const b of bodies) expect(b.length).toBeLessThanOrEqual(1024);
    expect(Buffer.concat(bodies.flatMap(decodeBody))).toEqual(all);
    expect(() => decodeBody(new Uint8Array([9, 0, 0, 0, 1]))).toThrow(/runs past/);
  });

  it("a follower's engine ends with the writer's table; commitNow, catchUp, Epoch and wall time carried", async () => {
    const g = await group();
    const a = newEngine();
    const o = writerOptions(g);
    const writer = await StreamWriter.fence(o, 0);
    traffic(a, (p) => writer.append(p), 5, 40);
    await writer.commitNow();
    expect(writer.state()).toMatchObject({ pendingBytes: 0, records: 200, fenced: false });
    const b = newEngine();
    const f = follow(g, b);
    const state = await f.catchUp(10_000);
    expect(state.seq).toBe(writer.state().seq);
    expect(state).toMatchObject({ complete: true, records: 200, epoch: 4242, node: "a", term: 1 });
    expect(Math.abs(state.wall! - Date.now())).toBeLessThan(10_000);
    expect(table(b)).toEqual(table(a));
    expect(live(b)).toBe(200);
    // Changes while following: deletes (lifetime 0) and new mappings.
    traffic(a, (p) => writer.append(p), 2, 40, 0);
    traffic(a, (p) => writer.append(p), 3, 10, 3600, 50);
    await writer.commitNow();
    await f.catchUp(10_000);
    expect(table(b)).toEqual(table(a));
    expect(live(b)).toBe(150); // 80 deleted (held down, in the table as held)
    writer.stop();
    expect(await consumersOf(g.stream)).toHaveLength(1);
    await f.stop();
    // Its consumer is deleted with it, not left for its 5 minutes of inactivity.
    await noConsumerLeft(g.stream);
  });

  it("fences: after a takeover, the old writer's next publish is refused and it reports fenced", async () => {
    const g = await group();
    const a = newEngine();
    const oa = writerOptions(g);
    const old = await StreamWriter.fence(oa, 0);
    traffic(a, (p) => old.append(p), 1, 5);
    await old.commitNow();
    const b = newEngine();
    const f = follow(g, b);
    const caught = await f.catchUp(10_000);
    await f.stop();
    // A second writer expecting a stale sequence is refused…
    await expect(StreamWriter.fence(writerOptions(g, { node: "b", term: 2 }), caught.seq - 1)).rejects.toMatchObject({
      refused: true,
      code: "HA_FENCE_FAILED",
    });
    // …the one expecting the follower's last sequence fences the subject.
    const ob = writerOptions(g, { node: "b", term: 2 });
    const next = await StreamWriter.fence(ob, caught.seq);
    traffic(a, (p) => old.append(p), 1, 5, 3600, 9);
    await expect(old.commitNow()).rejects.toMatchObject({ code: "HA_FENCED" });
    expect(oa.fenced).toHaveLength(1);
    expect(old.state().fenced).toBe(true);
    traffic(b, (p) => next.append(p), 1, 3, 3600, 20);
    await next.commitNow();
    expect(ob.fenced).toEqual([]);
    next.stop();
  });

  it("rejects a fence while the stream is unreachable (not refused)", async () => {
    const g = await group();
    await freeze(cluster);
    try {
      const e = await StreamWriter.fence(writerOptions(g, { timeoutMs: 300 }), 0).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(FenceError);
      expect((e as FenceError).refused).toBe(false);
    } finally {
      cluster.nodes[0].process!.kill("SIGCONT");
    }
  });

  it("commitNow resolves only after the stream acknowledged (pending while the server is frozen)", async () => {
    const g = await group();
    const a = newEngine();
    let retries = 0;
    const o = writerOptions(g, { timeoutMs: 500, onRetry: () => retries++ });
    const writer = await StreamWriter.fence(o, 0);
    await freeze(cluster);
    let done = false;
    let committed: Promise<void>;
    try {
      traffic(a, (p) => writer.append(p), 1, 10);
      committed = writer.commitNow().then(() => void (done = true));
      // Check-pointed batches keep coming while the stream cannot acknowledge: each waits, none makes a message of its own.
      const batches: Promise<void>[] = [];
      for (let i = 0; i < 30; i++) {
        traffic(a, (p) => writer.append(p), 1, 1, 3600, 100 + i);
        batches.push(writer.commitNow());
        await new Promise((resolve) => setTimeout(resolve, 2));
      }
      committed = Promise.all([committed, ...batches]).then(() => undefined);
      // Several publish timeouts pass: still pending, records kept.
      await waitFor(() => retries >= 2, { timeout: 10_000 });
      expect(done).toBe(false);
      expect(writer.state().pendingBytes).toBeGreaterThan(0);
    } finally {
      cluster.nodes[0].process!.kill("SIGCONT");
    }
    await committed;
    expect(writer.state()).toMatchObject({ pendingBytes: 0, records: 40, fenced: false });
    expect(o.fenced).toEqual([]);
    // The takeover, the message in flight when the server froze, and what waited behind it (a few at most, not 30).
    expect((await jsm.streams.info(g.stream)).state.messages).toBeLessThanOrEqual(5);
    // Exactly the records once (a retried publish is not doubled): a follower sees 40.
    const b = newEngine();
    const f = follow(g, b);
    expect(await f.catchUp(10_000)).toMatchObject({ records: 40, complete: true });
    expect(table(b)).toEqual(table(a));
    await f.stop();
    writer.stop();
  }, 30_000);

  it("writer and follower both come through a nats-server restart (records kept and retried, the consumer re-created)", async () => {
    const g = await group();
    const a = newEngine();
    const o = writerOptions(g, { timeoutMs: 500 });
    const writer = await StreamWriter.fence(o, 0);
    traffic(a, (p) => writer.append(p), 2, 10);
    await writer.commitNow();
    const b = newEngine();
    const f = follow(g, b);
    await f.catchUp(10_000);
    await cluster.nodes[0].kill("SIGKILL");
    traffic(a, (p) => writer.append(p), 2, 10, 3600, 30); // appended while the server is down
    const committed = writer.commitNow();
    await cluster.nodes[0].start();
    await cluster.jetStreamReady();
    await committed;
    traffic(a, (p) => writer.append(p), 1, 10, 3600, 40);
    await writer.commitNow();
    await waitFor(async () => (await f.catchUp(2000).catch(() => undefined))?.seq === writer.state().seq, { timeout: 20_000 });
    expect(table(b)).toEqual(table(a));
    expect(live(b)).toBe(50);
    expect(f.state().complete).toBe(true);
    expect(o.fenced).toEqual([]);
    await f.stop();
    writer.stop();
  }, 40_000);

  it("compaction: after a snapshot and the purge, a new follower gets the same table from the snapshot on", async () => {
    const g = await group();
    const a = newEngine();
    const writer = await StreamWriter.fence(writerOptions(g, { source: { engine: () => a, wallOffset: WALL } }), 0);
    traffic(a, (p) => writer.append(p), 6, 30);
    traffic(a, (p) => writer.append(p), 3, 30, 0); // half deleted: the snapshot holds only the living
    await writer.commitNow();
    const before = await jsm.streams.info(g.stream);
    // Traffic goes on while the snapshot is taken.
    const snap = writer.snapshot();
    traffic(a, (p) => writer.append(p), 2, 10, 3600, 40);
    await snap;
    traffic(a, (p) => writer.append(p), 1, 10, 3600, 60);
    await writer.commitNow();
    const after = await jsm.streams.info(g.stream);
    expect(after.state.first_seq).toBeGreaterThan(before.state.first_seq);
    expect(after.state.messages).toBeLessThan(before.state.messages + 10);
    const first = await jsm.streams.getMessage(g.stream, { seq: after.state.first_seq });
    expect(first?.header.get("Pcpd-Kind")).toBe("snapshot-begin");
    const b = newEngine();
    const f = follow(g, b);
    const s = await f.catchUp(10_000);
    expect(s.complete).toBe(true);
    expect(table(b)).toEqual(table(a));
    expect(live(b)).toBe(90 + 20 + 10);
    await f.stop();
    writer.stop();
  });

  it("a follower behind a purge finds the hole; one that began after it is incomplete until a whole snapshot", async () => {
    const g = await group();
    const a = newEngine();
    const writer = await StreamWriter.fence(writerOptions(g), 0);
    traffic(a, (p) => writer.append(p), 1, 10);
    await writer.commitNow();
    const b = newEngine();
    const holes: string[] = [];
    const f = follow(g, b, holes);
    const caught = await f.catchUp(10_000);
    // The follower is paused (stopped) while messages it has not read are purged.
    await f.stop();
    traffic(a, (p) => writer.append(p), 1, 10, 3600, 5);
    await writer.commitNow();
    traffic(a, (p) => writer.append(p), 1, 10, 3600, 6);
    await writer.commitNow();
    const last = writer.state().seq;
    await jsm.streams.purge(g.stream, { filter: g.subject, seq: last });
    // The same engine followed again from where it stopped (as the ordered consumer resumes after a server restart).
    const resumed = follow(g, b, holes, { resume: caught });
    await waitFor(() => holes.length > 0);
    expect(holes[0]).toMatch(new RegExp(`message ${last} follows ${last - 1}, last applied ${caught.seq}`));
    await expect(resumed.catchUp(1000)).rejects.toMatchObject({ code: "HA_CATCH_UP_TIMEOUT" });
    await resumed.stop();
    const fresh = newEngine();
    const g2 = follow(g, fresh, holes);
    await waitFor(() => g2.state().seq === last);
    expect(g2.state().complete).toBe(false); // began at a records message after a purge
    await g2.stop();
    expect(caught.seq).toBeLessThan(last);
    writer.stop();
  });

  it("a follower whose consumer is never created reads the subject by sequence: whole messages of max_payload, changes, holes", async () => {
    const g = await group();
    const a = newEngine();
    // 14,720 records (76 B each) in one commit: a message of max_payload (1 MiB), read back base64 in JSON.
    const writer = await StreamWriter.fence(writerOptions(g, { commitIntervalMs: 60_000 }), 0);
    traffic(a, (p) => writer.append(p), 230, 64);
    await writer.commitNow();
    const { first_seq, last_seq } = (await jsm.streams.info(g.stream)).state;
    const sizes: number[] = [];
    for (let seq = first_seq; seq <= last_seq; seq++) sizes.push((await jsm.streams.getMessage(g.stream, { seq }))!.data.length);
    expect(Math.max(...sizes)).toBeGreaterThan(nc.info!.max_payload * 0.9);
    // Each try to create the consumer times out, as a creation placed on a dead peer does
    // (here the consumer is made, its answer lost: the follower must delete it).
    let tries = 0;
    const never = consumersBy(async (stream, opts) => {
      tries++;
      await js.consumers.get(stream, opts);
      throw new Error("TIMEOUT");
    });
    const b = newEngine();
    const holes: string[] = [];
    const f = follow(g, b, holes, { js: never });
    expect(await f.catchUp(20_000)).toMatchObject({ complete: true, records: 14_720, seq: writer.state().seq });
    expect(table(b)).toEqual(table(a));
    traffic(a, (p) => writer.append(p), 10, 64, 0);
    await writer.commitNow();
    // Read at once: with no consumer delivering, a catch-up waits neither for STALL_MS (3 s) again nor for the next tick.
    expect(await f.catchUp(2500)).toMatchObject({ complete: true, records: 15_360 });
    expect(table(b)).toEqual(table(a));
    expect(tries).toBeGreaterThan(1);
    // Stopped, then resumed after a purge of messages it had not read: the hole is found by sequence too.
    const caught = f.state();
    await f.stop();
    for (const base of [240, 241]) {
      traffic(a, (p) => writer.append(p), 1, 10, 3600, base);
      await writer.commitNow();
    }
    const last = writer.state().seq;
    await jsm.streams.purge(g.stream, { filter: g.subject, seq: last });
    const resumed = follow(g, b, holes, { js: never, resume: caught });
    await waitFor(() => holes.length > 0, { timeout: 20_000 });
    expect(holes[0]).toMatch(new RegExp(`message ${last} follows ${last - 1}, last applied ${caught.seq}`));
    await resumed.stop();
    await noConsumerLeft(g.stream);
    writer.stop();
  }, 60_000);

  it("a consumer created late delivers what was read by sequence meanwhile: skipped, no hole, then it carries on", async () => {
    const g = await group();
    const a = newEngine();
    const writer = await StreamWriter.fence(writerOptions(g), 0);
    for (let i = 0; i < 3; i++) {
      traffic(a, (p) => writer.append(p), 2, 10, 3600, 10 * i + 1);
      await writer.commitNow();
    }
    const last = writer.state().seq;
    const b = newEngine();
    const holes: string[] = [];
    let f: StreamFollower | undefined;
    // The first consumer is asked for from the subject's start, and made once the follower has read all of it by sequence.
    // (>=: the fourth message below may be read by sequence before this wait looks again.)
    const late = consumersBy(async (stream, opts) => {
      await waitFor(() => f !== undefined && f.state().seq >= last, { timeout: 20_000 });
      return js.consumers.get(stream, opts);
    });
    f = follow(g, b, holes, { js: late });
    expect(await f.catchUp(20_000)).toMatchObject({ complete: true, records: 60, seq: last });
    traffic(a, (p) => writer.append(p), 1, 10, 3600, 40);
    await writer.commitNow();
    // The consumer delivered its copies of the first three messages before this one.
    await f.catchUp(10_000);
    expect(f.state()).toMatchObject({ complete: true, records: 70 });
    expect(holes).toEqual([]);
    expect(table(b)).toEqual(table(a));
    await f.stop();
    writer.stop();
  }, 60_000);

  it("a follower stopped while its consumer's consume() is answered stops, and leaves no consumer", async () => {
    const g = await group();
    const writer = await StreamWriter.fence(writerOptions(g), 0);
    traffic(newEngine(), (p) => writer.append(p), 2, 10);
    await writer.commitNow();
    let f: StreamFollower | undefined;
    let stopping: Promise<void> | undefined;
    // stop() is called after the consumer's consume() is asked, before the follower has its answer.
    const racing = consumersBy(async (stream, opts) => {
      const consumer = await js.consumers.get(stream, opts);
      return {
        consume: (o: ConsumeOptions) => {
          const messages = consumer.consume(o);
          stopping = f!.stop();
          return messages;
        },
        delete: () => consumer.delete(),
      } as unknown as Consumer;
    });
    f = follow(g, newEngine(), [], { js: racing });
    await waitFor(() => stopping !== undefined, { timeout: 10_000 });
    const stopped = await Promise.race([stopping!.then(() => "stopped"), new Promise((resolve) => setTimeout(resolve, 10_000, "still stopping"))]);
    expect(stopped).toBe("stopped");
    expect(f!.state().seq).toBe(0); // nothing applied after stop()
    await noConsumerLeft(g.stream);
    writer.stop();
  }, 30_000);
});

describe.skipIf(skip)("replication through a 3-node cluster losing the stream leader", () => {
  let cluster: NatsCluster;
  const conns: NatsConnection[] = [];
  beforeAll(async () => {
    // Client ports 24460–24462, routes 24560–24562 (no other test uses them; test/replication/nats.test.ts routes are 24410–24412).
    cluster = await startNatsCluster({ size: 3, basePort: 24_460 });
  }, 60_000);
  afterAll(async () => {
    for (const nc of conns) await nc.close().catch(() => undefined);
    await cluster?.stop();
  });
  /** A writer fencing the subject from its start, counting its retries and fences. */
  async function fencedWriter(w: { nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager }, g: { stream: string; subject: string }) {
    const fenced: string[] = [];
    let retried = 0;
    const o = { ...w, ...g, node: "a", term: 1, commitIntervalMs: 5, timeoutMs: 1000, maxPayload: w.nc.info!.max_payload, epoch: () => 1 };
    const writer = await StreamWriter.fence({ ...o, wallMs: () => Date.now(), onFenced: (e) => fenced.push(e), onRetry: () => retried++ }, 0);
    return { writer, fenced, retries: () => retried };
  }
  const open = async (servers: string[], name: string) => {
    const nc = await connectNats({ servers, timeoutMs: 1000 }, name);
    conns.push(nc);
    return { nc, js: jetstream(nc), jsm: await jetstreamManager(nc) };
  };

  it("a follower whose consumer's node is killed resumes: catches up, its state truthful meanwhile", async () => {
    const w = await open(cluster.urls, "writer");
    await ensureGroupStream(w.nc, CLUSTER, "f", 3);
    const g = { stream: haNames.stream(CLUSTER, "f"), subject: haNames.subject(CLUSTER, "f", 0) };
    const fc = await open(cluster.urls, "follower");
    const { writer, fenced, retries } = await fencedWriter(w, g);
    const a = newEngine();
    const b = newEngine();
    const f = new StreamFollower({ ...fc, ...g, apply: (c) => b.restore(c, WALL, T0), onHole: () => "restart", wallMs: () => Date.now() });
    try {
      traffic(a, (p) => writer.append(p), 2, 10);
      await writer.commitNow();
      await f.catchUp(10_000);
      // The node holding the follower's (R1) consumer, where the harness found the ordered consumer stuck for good.
      const consumers = await w.jsm.consumers.list(g.stream).next();
      expect(consumers).toHaveLength(1);
      const host = cluster.nodes.find((n) => n.name === consumers[0].cluster?.leader)!;
      await host.kill("SIGKILL");
      const killed = performance.now();
      for (let round = 0; round < 5; round++) {
        traffic(a, (p) => writer.append(p), 1, 10, 3600, 10 + round);
        await writer.commitNow(); // through the stream leader's re-election, if it was the leader
      }
      // Failed publishes back off (50 ms doubling to 1 s), they do not spin.
      expect(retries()).toBeLessThanOrEqual(10 + (performance.now() - killed) / 250);
      const last = writer.state().seq;
      // The follower knows how far the stream is, whether or not it has it yet: never "caught up" while behind.
      await waitFor(() => f.state().lastSeq >= last, { timeout: 10_000 });
      const s = f.state();
      if (s.seq < last) expect(s.lagMs).toBeGreaterThan(0);
      await waitFor(() => f.state().seq === last, { timeout: 30_000 });
      expect(await f.catchUp(5000)).toMatchObject({ seq: last, complete: true, records: 70 });
      expect(table(b)).toEqual(table(a));
      expect(fenced).toEqual([]);
    } finally {
      writer.stop();
      await f.stop();
    }
  }, 90_000);

  it("the writer through the stream leader's loss: records kept, retries backed off, every commitNow resolved", async () => {
    for (const n of cluster.nodes) if (!n.process) await n.start();
    await cluster.jetStreamReady();
    const w = await open(cluster.urls, "writer-2");
    await ensureGroupStream(w.nc, CLUSTER, "l", 3);
    const g = { stream: haNames.stream(CLUSTER, "l"), subject: haNames.subject(CLUSTER, "l", 0) };
    const info = await w.jsm.streams.info(g.stream);
    const leader = cluster.nodes.find((n) => n.name === info.cluster?.leader)!;
    const { writer, fenced, retries } = await fencedWriter(w, g);
    const a = newEngine();
    try {
      await leader.kill("SIGKILL");
      const killed = performance.now();
      // Check-pointed batches during the election: each waits for the stream, none is lost.
      const batches: Promise<void>[] = [];
      for (let i = 0; i < 40; i++) {
        traffic(a, (p) => writer.append(p), 1, 1, 3600, 100 + i);
        batches.push(writer.commitNow());
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      await Promise.all(batches);
      expect(retries()).toBeLessThanOrEqual(10 + (performance.now() - killed) / 250);
      expect(writer.state()).toMatchObject({ pendingBytes: 0, records: 40, fenced: false });
      expect(fenced).toEqual([]);
      const b = newEngine();
      const f = new StreamFollower({ ...w, ...g, apply: (c) => b.restore(c, WALL, T0), onHole: () => "restart", wallMs: () => Date.now() });
      expect(await f.catchUp(40_000)).toMatchObject({ records: 40, complete: true });
      await f.stop();
      expect(table(b)).toEqual(table(a));
    } finally {
      writer.stop();
    }
  }, 90_000);
});
