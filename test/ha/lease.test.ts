// The lease keeper (src/ha/lease.ts) against a real nats-server: two keepers racing for a
// vacant lease (one wins), renewals keeping it, a silent holder losing it only after
// lease + margin by the other's clock, a frozen or closed NATS connection making the
// holder degraded (its gate stops advancing and passes), a refused CAS reported lost, and
// renewals lost with a connection (reconnected() renews at once; one applied with its
// answer lost is adopted).
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats, leaseBucket } from "../../src/replication/nats.js";
import { LeaseKeeper, type LeaseKeeperOptions } from "../../src/ha/lease.js";
import { ConnectionState } from "../../src/ha/connection.js";
import { systemTime } from "../../src/core/clock.js";
import { natsUnavailable, readyLeaseBucket, startNatsCluster, type NatsCluster } from "../helpers/nats.js";
import { waitFor } from "../helpers/wait.js";
import { lossyKv, type LossyKv } from "../helpers/lossy-kv.js";

const skip = natsUnavailable();
const LEASE = 1000;
const MARGIN = 200;

interface Node {
  nc: NatsConnection;
  kv: KV;
  keeper: LeaseKeeper;
  gate: BigInt64Array;
  lost: string[];
  conn: ConnectionState;
}

describe.skipIf(skip)("lease keeper (real nats-server)", () => {
  let cluster: NatsCluster;
  const open: Node[] = [];
  let groupNo = 0;

  beforeAll(async () => {
    cluster = await startNatsCluster({ size: 1, basePort: 24_500 });
    await readyLeaseBucket(cluster.urls, "lt", 1);
  }, 60_000);
  afterEach(async () => {
    for (const n of open.splice(0)) {
      await n.keeper.stop();
      if (!n.nc.isClosed()) await n.nc.close();
    }
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  async function node(name: string, group: string, over: Partial<LeaseKeeperOptions> = {}, wrapKv = (kv: KV) => kv): Promise<Node> {
    const nc = await connectNats({ servers: cluster.urls, timeoutMs: 400 }, `lease-test-${name}`);
    const kv = await leaseBucket(nc, "lt", 1);
    const gate = new BigInt64Array(new SharedArrayBuffer(8));
    const lost: string[] = [];
    const conn = new ConnectionState(nc);
    const keeper = new LeaseKeeper({
      kv: wrapKv(kv),
      group,
      node: name,
      leaseMs: LEASE,
      safetyMarginMs: MARGIN,
      timeoutMs: 400,
      time: systemTime,
      gates: [gate],
      connected: () => conn.connected(),
      onLost: (reason) => lost.push(reason),
      onChange: () => undefined,
      ...over,
    });
    await keeper.start();
    const n = { nc, kv, keeper, gate, lost, conn };
    open.push(n);
    return n;
  }

  /** The holder of a new group's lease, whose KV loses the updates `net.next` names (test/helpers/lossy-kv.ts). */
  async function lossyHolder(group: string, over: Partial<LeaseKeeperOptions>): Promise<Node & { net: LossyKv }> {
    let net!: LossyKv;
    const a = await node("a", group, over, (kv) => (net = lossyKv(kv)).kv);
    expect(await a.keeper.acquire()).toBeGreaterThan(0);
    return { ...a, net };
  }

  it("lets exactly one of two racing keepers take a vacant lease; its renewals keep it and advance its gate", async () => {
    const g = `race${groupNo++}`;
    const [a, b] = await Promise.all([node("a", g), node("b", g)]);
    expect(a.keeper.mayTakeOver(undefined)).toBe("vacant");
    expect(b.keeper.mayTakeOver(undefined)).toBe("vacant");
    const terms = await Promise.all([a.keeper.acquire(), b.keeper.acquire()]);
    expect(terms.filter((t) => t !== undefined)).toHaveLength(1);
    const [winner, loser] = terms[0] !== undefined ? [a, b] : [b, a];
    const term = winner.keeper.term();
    expect(term).toBeGreaterThan(0);
    // The loser sees the winner's value (with its term, written by the first renewal).
    await waitFor(() => loser.keeper.current().value?.term === term);
    expect(loser.keeper.current().value?.holder).toBe(winner === a ? "a" : "b");
    // Three leases of renewals: the gate keeps moving ahead of now, the loser never may take over.
    const until = performance.now() + 3 * LEASE;
    let gates = new Set<bigint>();
    await waitFor(
      () => {
        expect(loser.keeper.mayTakeOver(undefined)).toBeUndefined();
        const gate = Atomics.load(winner.gate, 0);
        expect(gate).toBeGreaterThan(systemTime.monotonicNs());
        gates = gates.add(gate);
        return performance.now() > until;
      },
      { timeout: 10 * LEASE, interval: 20 },
    );
    expect(gates.size).toBeGreaterThanOrEqual(6); // renewed every lease/3
    expect(winner.keeper.remainingMs()).toBeGreaterThan(0);
    expect(winner.keeper.remainingMs()).toBeLessThanOrEqual(LEASE - MARGIN);
    expect(winner.lost).toEqual([]);
  });

  it("takes the lease only on the revision its decision rested on: a newer holder the watch delivered meanwhile is not taken over", async () => {
    const g = `basis${groupNo++}`;
    const [a, b] = await Promise.all([node("a", g), node("b", g)]);
    const basis = a.keeper.current(); // a decides on this view (vacant)…
    expect(await b.keeper.acquire()).toBeGreaterThan(0); // …b takes the lease first…
    await waitFor(() => a.keeper.current().value?.holder === "b"); // …and a's watch shows it before a acts
    expect(await a.keeper.acquire(basis)).toBeUndefined();
    expect(a.keeper.isHeld()).toBe(false);
    expect(b.keeper.isHeld()).toBe(true);
    expect(b.lost).toEqual([]);
  });

  it("closeGates (a switchover's handover) keeps the lease held and renewed but no renewal opens a gate again", async () => {
    const g = `close${groupNo++}`;
    const a = await node("a", g);
    expect(await a.keeper.acquire()).toBeGreaterThan(0);
    a.keeper.closeGates();
    expect(Atomics.load(a.gate, 0)).toBe(0n);
    const revision = a.keeper.current().revision;
    await waitFor(() => a.keeper.current().revision > revision + 1, { timeout: 5 * LEASE }); // two renewals landed
    expect(Atomics.load(a.gate, 0)).toBe(0n);
    expect(a.keeper.isHeld()).toBe(true);
  });

  it("a holder that stops renewing loses the lease only after lease + margin by the standby's clock", async () => {
    const g = `lapse${groupNo++}`;
    const a = await node("a", g);
    const b = await node("b", g, { gates: [] });
    expect(await a.keeper.acquire()).toBeGreaterThan(0);
    await waitFor(() => b.keeper.current().value?.holder === "a" && b.keeper.current().value?.term === a.keeper.term());
    await a.keeper.abandon(); // silent: no release, the value stays
    expect(Atomics.load(a.gate, 0)).toBe(0n);
    const seen = b.keeper.current();
    let firstAllowed = 0n;
    await waitFor(
      () => {
        if (b.keeper.mayTakeOver(undefined) === "lapsed") firstAllowed = systemTime.monotonicNs();
        return firstAllowed !== 0n;
      },
      { timeout: 5 * LEASE, interval: 5 },
    );
    expect(b.keeper.current().revision).toBe(seen.revision); // nothing was written meanwhile
    const waitedMs = Number(firstAllowed - seen.seenNs) / 1e6;
    expect(waitedMs).toBeGreaterThan(LEASE + MARGIN);
    expect(waitedMs).toBeLessThan(LEASE + MARGIN + 1000);
    const term = await b.keeper.acquire();
    expect(term).toBeGreaterThan(seen.revision);
  });

  it("a preferred node takes a never-held lease at once, the others only after one lease", async () => {
    const g = `pref${groupNo++}`;
    const other = await node("other", g, { gates: [] });
    expect(other.keeper.mayTakeOver("pref")).toBeUndefined();
    const pref = await node("pref", g, { gates: [] });
    expect(pref.keeper.mayTakeOver("pref")).toBe("vacant");
    await waitFor(() => other.keeper.mayTakeOver("pref") === "vacant", { timeout: 3 * LEASE });
  });

  it("reports the lease lost when another node's write makes its CAS fail, and closes the gate", async () => {
    const g = `cas${groupNo++}`;
    // The holder's watch is blind (never yields), so only its renewal's CAS can notice.
    const a = await node("a", g);
    const blind: KV = Object.assign(Object.create(a.kv), {
      watch: () => new Promise(() => undefined),
    });
    const holder = await node("h", g, { kv: blind });
    expect(await holder.keeper.acquire()).toBeGreaterThan(0);
    const current = await a.kv.get(g);
    await a.kv.update(g, new TextEncoder().encode(JSON.stringify({ holder: "intruder", term: 99 })), current!.revision);
    await waitFor(() => holder.lost.length > 0, { timeout: 3 * LEASE });
    expect(holder.lost[0]).toMatch(/refused/);
    expect(holder.keeper.isHeld()).toBe(false);
    expect(Atomics.load(holder.gate, 0)).toBe(0n);
  });

  it("sees another holder on the watch and reports the lease lost at once", async () => {
    const g = `watch${groupNo++}`;
    const a = await node("a", g);
    const other = await node("o", g, { gates: [] });
    expect(await a.keeper.acquire()).toBeGreaterThan(0);
    await waitFor(() => other.keeper.current().value?.term === a.keeper.term());
    const current = await other.kv.get(g);
    await other.kv.update(g, new TextEncoder().encode(JSON.stringify({ holder: "o", term: 1 })), current!.revision);
    await waitFor(() => a.lost.length > 0, { timeout: LEASE });
    expect(a.lost[0]).toMatch(/moved to o/);
  });

  it("a frozen NATS server makes the holder degraded: the gate stops advancing and passes; renewals resume after", async () => {
    const g = `freeze${groupNo++}`;
    const a = await node("a", g);
    expect(await a.keeper.acquire()).toBeGreaterThan(0);
    const server = cluster.nodes[0];
    await server.kill("SIGSTOP");
    try {
      await waitFor(() => a.keeper.degraded(), { timeout: 3 * LEASE });
      const frozen = Atomics.load(a.gate, 0);
      await waitFor(() => systemTime.monotonicNs() > frozen, { timeout: 2 * LEASE });
      expect(Atomics.load(a.gate, 0)).toBe(frozen); // no renewal: nothing moved it
      expect(a.keeper.remainingMs()).toBe(0);
      expect(a.keeper.isHeld()).toBe(true);
    } finally {
      await server.kill("SIGCONT");
    }
    // Nobody else wrote: the next renewal's CAS succeeds and the gate opens again.
    await waitFor(() => !a.keeper.degraded() && Atomics.load(a.gate, 0) > systemTime.monotonicNs(), { timeout: 15_000, interval: 50 });
    expect(a.lost).toEqual([]);
  }, 30_000);

  it("reconnected(): a renewal goes at once beside one lost with the old connection; that one's timeout is no failure", async () => {
    // A long lease: the timer renews once at the acquisition, then not within this test.
    const a = await lossyHolder(`reconnect${groupNo++}`, { leaseMs: 60_000, timeoutMs: 4000 });
    const { net } = a;
    const before = Atomics.load(a.gate, 0);
    net.next.mode = "unsent";
    void a.keeper.renew();
    expect(net.lost).toHaveLength(1);
    expect(a.keeper.renew()).toBeInstanceOf(Promise); // the timer's renew() sends none beside it…
    expect(net.lost).toHaveLength(1);
    a.keeper.reconnected(); // …reconnected() does
    await waitFor(() => Atomics.load(a.gate, 0) > before, { timeout: 3000, interval: 5 });
    expect(net.lost[0].settled, "the gate moved before the lost renewal timed out").toBe(false);
    await waitFor(() => net.lost[0].settled, { timeout: 10_000 });
    expect(a.keeper.degraded()).toBe(false);
    expect(a.lost).toEqual([]);
  }, 20_000);

  it("a renewal applied with its answer lost: the next one's refusal adopts it and moves the gate from its send", async () => {
    const leaseMs = 60_000;
    const a = await lossyHolder(`unanswered${groupNo++}`, { leaseMs, timeoutMs: 4000 });
    const { net } = a;
    const before = Atomics.load(a.gate, 0);
    net.next.mode = "unanswered";
    void a.keeper.renew();
    const [lost] = net.lost;
    await lost.applied; // the KV holds it; the keeper has no answer
    a.keeper.reconnected(); // same CAS base: refused, and the KV shows our holder and term
    await waitFor(() => Atomics.load(a.gate, 0) > before, { timeout: 3000, interval: 5 });
    expect(lost.settled).toBe(false);
    const adopted = Atomics.load(a.gate, 0);
    expect(adopted).toBeLessThanOrEqual(lost.at + BigInt(leaseMs - MARGIN) * 1_000_000n); // from the lost one's send, not later
    await a.keeper.renew(); // its revision is the CAS base now
    expect(Atomics.load(a.gate, 0)).toBeGreaterThan(adopted);
    await waitFor(() => lost.settled, { timeout: 10_000 });
    expect(a.keeper.degraded()).toBe(false);
    expect(a.lost).toEqual([]);
  }, 20_000);

  it("a renewal lost on a live connection (applied, its answer never comes) does not hold up the next tick's: the gate never passes", async () => {
    const a = await lossyHolder(`lostanswer${groupNo++}`, { timeoutMs: 4 * LEASE });
    const { net } = a;
    net.next.mode = "unanswered";
    await waitFor(() => net.lost.length === 1, { timeout: 2 * LEASE, interval: 5 });
    const [lost] = net.lost;
    // Until the lost renewal times out (4 leases), the gate stays ahead of now all along.
    let samples = 0;
    await waitFor(
      () => {
        expect(Atomics.load(a.gate, 0)).toBeGreaterThan(systemTime.monotonicNs());
        expect(a.keeper.degraded()).toBe(false);
        samples++;
        return lost.settled;
      },
      { timeout: 10 * LEASE, interval: 20 },
    );
    expect(samples).toBeGreaterThan(50);
    expect(a.keeper.degraded()).toBe(false);
    expect(a.lost).toEqual([]);
  }, 20_000);

  it("a closed connection makes the holder degraded and never lets a keeper take over", async () => {
    const g = `closed${groupNo++}`;
    const a = await node("a", g);
    const b = await node("b", g, { gates: [] });
    expect(await a.keeper.acquire()).toBeGreaterThan(0);
    await b.nc.close();
    expect(b.conn.get()).toBe("disconnected");
    await a.nc.close();
    await waitFor(() => a.keeper.degraded(), { timeout: 3 * LEASE });
    await waitFor(() => a.keeper.remainingMs() === 0, { timeout: 2 * LEASE });
    // Long past lease + margin for b's clock, but b is not connected: it may not take over.
    await waitFor(() => systemTime.monotonicNs() > b.keeper.current().seenNs + BigInt((LEASE + MARGIN) * 1e6), { timeout: 3 * LEASE });
    expect(b.keeper.mayTakeOver(undefined)).toBeUndefined();
  });

  it("a standby whose watch went stale does not act on it: refresh() reads the renewals it missed", async () => {
    const g = `stale${groupNo++}`;
    const a = await node("a", g);
    const blind: KV = Object.assign(Object.create(a.kv), { watch: () => new Promise(() => undefined) });
    const b = await node("b", g, { kv: blind, gates: [] });
    expect(await a.keeper.acquire()).toBeGreaterThan(0);
    // b saw the key absent at start and nothing since: its stale view says vacant, then (non-preferred) after one lease.
    expect(b.keeper.current().revision).toBe(0);
    expect(await b.keeper.refresh()).toBe(true);
    expect(b.keeper.current().value?.holder).toBe("a");
    expect(b.keeper.mayTakeOver(undefined)).toBeUndefined();
    // Still blind: after lease + margin the stale view would say lapsed; a read shows a renewed it.
    await waitFor(() => b.keeper.mayTakeOver(undefined) === "lapsed", { timeout: 3 * LEASE });
    expect(await b.keeper.refresh()).toBe(true);
    expect(b.keeper.mayTakeOver(undefined)).toBeUndefined();
    expect(a.lost).toEqual([]);
  });
});
