// The HA manager's decisions (src/ha/manager.ts) on a real nats-server: two managers (two
// "nodes" in this process, each with its own NATS connection) share one group's lease.
// The shard side is scripted here (it answers the HA tasks as src/shard/tasks.ts defines
// them and models one stream sequence shared by both nodes) so the order of the steps and
// every transition can be checked: the real shard side is exercised end to end by
// test/ha/server.test.ts.
import { execFileSync } from "node:child_process";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { parseConfig } from "../../src/config/schema.js";
import { connectNats, leaseBucket } from "../../src/replication/nats.js";
import { HaManager, type HaShards } from "../../src/ha/manager.js";
import { ConnectionState } from "../../src/ha/connection.js";
import { systemTime } from "../../src/core/clock.js";
import { ErrorCodes, HaError } from "../../src/errors.js";
import type { HaShardState, RunTask, ShardTask } from "../../src/shard/tasks.js";
import { natsUnavailable, readyLeaseBucket, startNatsCluster, type NatsCluster } from "../helpers/nats.js";
import { waitFor } from "../helpers/wait.js";
import { lossyKv, type LossyKv } from "../helpers/lossy-kv.js";

const skip = natsUnavailable();
const LEASE = 900;
const MARGIN = 150;
const ADDRESS = "127.0.0.31";

/** The group's stream as both nodes see it: one subject, its last sequence. */
interface Stream {
  seq: number;
}

/** A node's scripted shard side: records each task, answers as a shard of tasks.ts would. */
class ScriptedShards implements HaShards {
  readonly calls: string[] = [];
  failPromote = false;
  /** Runs inside a promotion, before it answers (another node acting meanwhile). */
  duringPromote: (() => Promise<void>) | undefined;
  /** The term of each promotion. */
  readonly terms: number[] = [];
  manager!: HaManager;
  /** Holder of the lease in the KV when each promotion ran. */
  readonly holderAtPromote: (string | null)[] = [];
  constructor(
    private readonly stream: Stream,
    private readonly kv: KV,
    private readonly group: string,
  ) {}

  private state(): HaShardState {
    return { role: "standby", seq: this.stream.seq, lastSeq: this.stream.seq, records: 0, complete: true, lagMs: 0, pendingBytes: 0, gateDrops: 0 };
  }

  private async answer(shard: number, task: ShardTask): Promise<unknown> {
    this.calls.push(`${task.kind}:${shard}`);
    switch (task.kind) {
      case "haCatchUp":
      case "haState":
        return this.state();
      case "haPromote": {
        const entry = await this.kv.get(this.group);
        this.holderAtPromote.push(entry ? (entry.json<{ holder: string | null }>().holder ?? null) : null);
        this.terms.push(task.term);
        if (this.failPromote) throw new Error("scripted: the stream refused the takeover message");
        await this.duringPromote?.();
        this.stream.seq += 1; // the takeover message
        return { epoch: 1234, continued: true, seq: this.stream.seq };
      }
      case "haHandover":
        this.stream.seq += 1; // pending records and the handover message
        return { seq: this.stream.seq };
      default:
        throw new Error(`unexpected task ${task.kind}`);
    }
  }

  run: RunTask = ((shard: number, task: ShardTask) => this.answer(shard, task)) as RunTask;

  async replace(shard: number): Promise<void> {
    this.calls.push(`replace:${shard}`);
    setImmediate(() => this.manager.shardRestarted(shard)); // the pool restarts it as a standby
  }
}

interface Node {
  name: string;
  nc: NatsConnection;
  manager: HaManager;
  shards: ScriptedShards;
  gate: BigInt64Array;
  logs: { msg: string; [k: string]: unknown }[];
  reconciles: number;
}

describe.skipIf(skip)("HA manager decisions (real nats-server, scripted shards)", () => {
  let cluster: NatsCluster;
  const open: Node[] = [];
  let groupNo = 0;

  beforeAll(async () => {
    cluster = await startNatsCluster({ size: 1, basePort: 24_520 });
    await readyLeaseBucket(cluster.urls, "mt", 1);
  }, 60_000);
  afterEach(async () => {
    for (const n of open.splice(0)) {
      await n.manager.stop();
      await n.nc.close();
    }
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  async function node(
    name: string,
    group: string,
    stream: Stream,
    preferred?: string,
    hooks?: { claim: string[]; release: string[] },
    nats: { timeoutMs?: number; wrapKv?: (kv: KV) => KV } = {},
  ): Promise<Node> {
    const config = parseConfig({
      listen: { addresses: [ADDRESS], port: 24_590 },
      persistence: { enabled: false },
      ha: {
        enabled: true,
        node: name,
        cluster: "mt",
        replicas: 1,
        leaseMs: LEASE,
        safetyMarginMs: MARGIN,
        nats: { servers: cluster.urls, timeoutMs: nats.timeoutMs ?? 400 },
        groups: [{ name: group, addresses: [ADDRESS], ...(preferred ? { preferred } : {}) }],
        ...(hooks ? { hooks } : {}),
      },
    });
    const nc = await connectNats(config.ha.nats, `mt-${name}`);
    const kv = await leaseBucket(nc, "mt", 1);
    const shards = new ScriptedShards(stream, kv, group);
    const logs: Node["logs"] = [];
    const log = pino({ level: "info" }, { write: (s: string) => void logs.push(JSON.parse(s)) });
    const gate = new SharedArrayBuffer(8);
    const n: Node = { name, nc, shards, gate: new BigInt64Array(gate), logs, reconciles: 0, manager: undefined as unknown as HaManager };
    n.manager = new HaManager({
      config,
      groups: [{ name: group, addresses: [ADDRESS], shards: [0], preferred }],
      kv: nats.wrapKv ? nats.wrapKv(kv) : kv,
      connection: new ConnectionState(nc),
      gates: [gate],
      shards,
      time: systemTime,
      log,
      reconcile: () => void n.reconciles++,
      switchoverTimeoutMs: 10_000,
    });
    shards.manager = n.manager;
    open.push(n);
    await n.manager.start();
    return n;
  }

  const activeLine = (n: Node, group: string) => n.logs.find((l) => l.msg === `ha: group ${group} active`);
  const role = async (n: Node) => (await n.manager.status()).groups[0].role;

  it("the preferred node takes a vacant group at once: catch-up, lease, promotion with that term, reconciliation; the other stays standby", async () => {
    const g = `g${groupNo++}`;
    const stream = { seq: 7 };
    const a = await node("a", g, stream, "a");
    const b = await node("b", g, stream, "a");
    await waitFor(() => activeLine(a, g), { timeout: 5000 });
    expect(a.shards.calls.slice(0, 2)).toEqual(["haCatchUp:0", "haPromote:0"]);
    expect(a.shards.holderAtPromote).toEqual(["a"]); // the lease was ours before the shard fenced the stream
    expect(a.reconciles).toBe(1);
    const line = activeLine(a, g)!;
    expect(line).toMatchObject({ group: g, epoch: 1234, continued: true, from: null, reason: "vacant" });
    expect(Atomics.load(a.gate, 0)).toBeGreaterThan(systemTime.monotonicNs());
    const sa = await a.manager.status();
    expect(sa.groups[0]).toMatchObject({ role: "active", holder: "a", lagMs: 0 });
    expect(sa.groups[0].term).toBe(line.term);
    expect(sa.groups[0].leaseRemainingMs).toBeGreaterThan(0);
    expect(sa.groups[0].leaseRemainingMs).toBeLessThanOrEqual(LEASE - MARGIN);
    expect(sa.nats).toBe("connected");
    // b learns how a took it from the lease value.
    await waitFor(async () => (await b.manager.status()).groups[0].lastTakeover?.to === "a");
    const sb = await b.manager.status();
    expect(sb.groups[0]).toMatchObject({ role: "standby", holder: "a", leaseRemainingMs: 0 });
    expect(sb.groups[0].lastTakeover).toMatchObject({ from: null, to: "a", reason: "vacant", epochContinued: true });
    expect(b.shards.calls.filter((c) => c.startsWith("haPromote"))).toEqual([]);
    await expect(b.manager.switchover(g)).rejects.toThrow(/holder is a/);
    await expect(b.manager.switchover("nope")).rejects.toMatchObject({ code: ErrorCodes.HA_UNKNOWN_GROUP });
  });

  it("when the active stops renewing, the standby takes over only after lease + margin, as 'lapsed' from the old holder", async () => {
    const g = `g${groupNo++}`;
    const stream = { seq: 0 };
    const a = await node("a", g, stream, "a");
    const b = await node("b", g, stream, "a");
    await waitFor(() => activeLine(a, g));
    await waitFor(async () => (await b.manager.status()).groups[0].holder === "a");
    const stopped = performance.now();
    await a.manager.stop(); // renewals stop; the lease is left to lapse
    expect(Atomics.load(a.gate, 0)).toBe(0n);
    await waitFor(() => activeLine(b, g), { timeout: 10 * LEASE });
    expect(performance.now() - stopped).toBeGreaterThan(LEASE + MARGIN - LEASE / 3); // the last renewal was at most lease/3 before the stop
    expect(activeLine(b, g)).toMatchObject({ from: "a", reason: "lapsed" });
    expect(await role(b)).toBe("active");
  });

  it("a switchover hands the group to the named standby: handover, release, the target catches up to it and takes over", async () => {
    const g = `g${groupNo++}`;
    const stream = { seq: 3 };
    const a = await node("a", g, stream, "a");
    const b = await node("b", g, stream, "a");
    await waitFor(() => activeLine(a, g));
    await waitFor(async () => (await b.manager.status()).groups[0].holder === "a");
    const result = await a.manager.switchover(g, "b");
    expect(result).toMatchObject({ group: g, from: "a", to: "b" });
    expect(result.durationMs).toBeLessThan(LEASE); // at once, not after a lapse
    expect(a.shards.calls).toContain("haHandover:0");
    expect(Atomics.load(a.gate, 0)).toBe(0n);
    await waitFor(() => a.shards.calls.includes("replace:0")); // fresh standbys
    await waitFor(async () => (await role(a)) === "standby");
    await waitFor(() => activeLine(b, g));
    expect(activeLine(b, g)).toMatchObject({ from: "a", reason: "switchover" });
    const handoverSeq = 5; // 3 + a's takeover message + its handover
    expect(b.shards.calls.indexOf("haCatchUp:0")).toBeLessThan(b.shards.calls.indexOf("haPromote:0"));
    expect(stream.seq).toBe(handoverSeq + 1); // b's takeover message followed the handover
    expect(await role(a)).toBe("standby");
    await expect(a.manager.switchover(g)).rejects.toBeInstanceOf(HaError);
  });

  it("a fenced shard demotes the group: gate closed, workers replaced, standby; the lease lapses and is taken again", async () => {
    const g = `g${groupNo++}`;
    const stream = { seq: 0 };
    const a = await node("a", g, stream, "a");
    const b = await node("b", g, stream, "a");
    await waitFor(() => activeLine(a, g));
    a.manager.fenced({ pcpdHaFenced: true, shard: 0, error: "wrong last sequence: 9" });
    expect(Atomics.load(a.gate, 0)).toBe(0n);
    await waitFor(() => a.logs.some((l) => l.msg === `ha: group ${g} demoted to standby` && /fenced/.test(String(l.reason))));
    await waitFor(() => a.shards.calls.includes("replace:0"));
    await waitFor(async () => (await role(a)) === "standby");
    // Nobody really fenced it here: after lease + margin a node (either) takes the group again.
    const demotedAt = a.logs.length;
    await waitFor(() => activeLine(b, g) ?? a.logs.slice(demotedAt).find((l) => l.msg === `ha: group ${g} active`), { timeout: 10 * LEASE });
  });

  it("a failed promotion hands the lease back vacant: the failing node stands by, the other takes the group", async () => {
    const g = `g${groupNo++}`;
    const stream = { seq: 0 };
    const a = await node("a", g, stream, "a");
    a.shards.failPromote = true;
    await waitFor(() => a.logs.some((l) => l.msg === `ha: takeover of group ${g} failed; staying standby`));
    await waitFor(() => a.shards.calls.includes("replace:0")); // its shard may have half-promoted
    expect(Atomics.load(a.gate, 0)).toBe(0n);
    const b = await node("b", g, stream, "a");
    await waitFor(() => activeLine(b, g), { timeout: 10 * LEASE });
    expect(activeLine(b, g)).toMatchObject({ reason: "vacant" });
    expect(await role(a)).toBe("standby");
  });

  it("a shard of the active group restarted by the watchdog is caught up and promoted again with the same term", async () => {
    const g = `g${groupNo++}`;
    const a = await node("a", g, { seq: 0 }, "a");
    await waitFor(() => activeLine(a, g));
    const calls = a.shards.calls.length;
    a.manager.shardRestarted(0);
    await waitFor(() => a.logs.some((l) => l.msg === `ha: group ${g}: restarted shard 0 active again`));
    expect(a.shards.calls.slice(calls)).toEqual(["haCatchUp:0", "haPromote:0"]);
    expect(a.shards.terms).toHaveLength(2);
    expect(a.shards.terms[1]).toBe(a.shards.terms[0]);
    expect(await role(a)).toBe("active");
  });

  it("a lease lost while the promotion runs ends the takeover: workers replaced, gate closed, standby", async () => {
    const g = `g${groupNo++}`;
    const a = await node("a", g, { seq: 0 }, "a");
    const kv = await leaseBucket(a.nc, "mt", 1);
    a.shards.duringPromote = async () => {
      a.shards.duringPromote = undefined;
      const entry = await kv.get(g);
      await kv.update(g, new TextEncoder().encode(JSON.stringify({ holder: "intruder", term: 1 })), entry!.revision);
      await waitFor(() => a.logs.length > 0 && Atomics.load(a.gate, 0) === 0n); // the watch saw it
    };
    await waitFor(() => a.logs.some((l) => l.msg === `ha: takeover of group ${g} failed; staying standby`));
    await waitFor(() => a.shards.calls.includes("replace:0"));
    expect(activeLine(a, g)).toBeUndefined();
    expect(Atomics.load(a.gate, 0)).toBe(0n);
    await waitFor(async () => (await role(a)) === "standby");
    expect((await a.manager.status()).groups[0].holder).toBe("intruder");
  });

  it("a frozen NATS server makes the active degraded (serving only while its lease is provably held), active again after", async () => {
    const g = `g${groupNo++}`;
    const a = await node("a", g, { seq: 0 }, "a");
    await waitFor(() => activeLine(a, g));
    const server = cluster.nodes[0];
    await server.kill("SIGSTOP");
    try {
      await waitFor(async () => (await role(a)) === "degraded", { timeout: 3 * LEASE });
      expect(a.logs.some((l) => l.msg.startsWith(`ha: group ${g} degraded`))).toBe(true);
      await waitFor(async () => (await a.manager.status()).groups[0].leaseRemainingMs === 0, { timeout: 2 * LEASE });
      await waitFor(() => Atomics.load(a.gate, 0) < systemTime.monotonicNs(), { timeout: 100 }); // the shards stop answering
      expect((await a.manager.status()).groups[0].role).toBe("degraded");
    } finally {
      await server.kill("SIGCONT");
    }
    await waitFor(async () => (await role(a)) === "active" && Atomics.load(a.gate, 0) > systemTime.monotonicNs(), { timeout: 15_000, interval: 50 });
    expect(a.logs.some((l) => l.msg === `ha: group ${g} lease renewed again`)).toBe(true);
    await waitFor(async () => (await a.manager.status()).nats === "connected", { timeout: 15_000 });
  }, 30_000);

  it("a renewal lost with the connection: the active renews as soon as it has reconnected, not after that one's timeout", async () => {
    const g = `g${groupNo++}`;
    let net!: LossyKv;
    // A request timeout far beyond lease − margin: waiting for it would let the gate pass.
    const a = await node("a", g, { seq: 0 }, "a", undefined, { timeoutMs: 5000, wrapKv: (kv) => (net = lossyKv(kv)).kv });
    await waitFor(() => activeLine(a, g));
    net.next.mode = "unsent";
    await waitFor(() => net.lost.length === 1, { timeout: 2 * LEASE, interval: 5 }); // the next renewal is in flight, lost
    const atLoss = Atomics.load(a.gate, 0);
    await a.nc.reconnect(); // a real disconnect and reconnect of the node's connection
    await waitFor(() => Atomics.load(a.gate, 0) > atLoss, { timeout: 4000, interval: 5 });
    expect(net.lost[0].settled, "renewed before the lost renewal timed out").toBe(false);
    await waitFor(() => net.lost[0].settled, { timeout: 10_000 });
    expect(await role(a)).toBe("active");
    expect(a.logs.filter((l) => l.msg.startsWith(`ha: group ${g} degraded`))).toEqual([]);
  }, 30_000);

  it.skipIf(process.getuid?.() !== 0)(
    "runs the release hook at start (a node killed while active kept its address), claims at takeover, releases at stop",
    async () => {
      const ns = `pmh-mgr-${process.pid}`;
      const inNs = ["ip", "netns", "exec", ns];
      const held = () => execFileSync("ip", ["-n", ns, "addr", "show", "dev", "lo"], { encoding: "utf8" }).includes(`${ADDRESS}/32`);
      execFileSync("ip", ["netns", "add", ns]);
      try {
        execFileSync("ip", ["-n", ns, "addr", "add", `${ADDRESS}/32`, "dev", "lo"]); // left by the killed run
        const g = `g${groupNo++}`;
        const hooks = { claim: [...inNs, "ip", "addr", "add", "{prefix}", "dev", "lo"], release: [...inNs, "ip", "addr", "del", "{prefix}", "dev", "lo"] };
        const a = await node("a", g, { seq: 0 }, "someone-else", hooks);
        expect(held()).toBe(false); // released before anything else
        await waitFor(() => activeLine(a, g), { timeout: 5 * LEASE }); // vacant, not preferred: after one lease
        expect(held()).toBe(true);
        await a.manager.stop();
        expect(held()).toBe(false);
        // A second start with nothing to release is not an error.
        const b = await node("b", g, { seq: 0 }, "someone-else", hooks);
        expect(b.logs.some((l) => l.msg === `ha: group ${g}: release hook at start (leftovers of an earlier run): nothing released` && l.level === 30)).toBe(
          true,
        );
      } finally {
        execFileSync("ip", ["netns", "del", ns]);
      }
    },
  );
});
