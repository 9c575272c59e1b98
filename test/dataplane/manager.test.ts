// The dataplane manager between the engine's records and a backend: reconciliation from
// the tables, one transaction per batch with unmaps before maps, refreshes that change
// nothing cost nothing, a failed transaction is retried whole, and repeated failures take
// the dataplane down (the shards answer NETWORK_FAILURE) until a reconciliation succeeds.
// Plus the nftables statements of each operation and the event-stream backend.
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";
import { DataplaneManager, type DataplaneBackend } from "../../src/dataplane/manager.js";
import { EventStreamBackend } from "../../src/dataplane/event-stream.js";
import { mappingStatements, tableDefinition, transactionScript } from "../../src/dataplane/nftables.js";
import { mappingStatements6, tableDefinition6 } from "../../src/dataplane/nftables6.js";
import type { DataplaneOp } from "../../src/dataplane/ops.js";
import { forwarding, forwarding6 } from "../helpers/forwarding.js";
import { filter, mapRequest, nonceOf, peerRequest, serveOne } from "../helpers/packets.js";
import { turnsDuring } from "../helpers/turns.js";

const T0 = 100;
const WALL = 1_700_000_000;
const log = pino({ level: "silent" });

class FakeBackend implements DataplaneBackend {
  readonly name = "fake";
  transactions: DataplaneOp[][] = [];
  resets = 0;
  failNext = 0;
  async reset() {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error("reset refused");
    }
    this.resets++;
  }
  async apply(ops: DataplaneOp[]) {
    if (this.failNext > 0) {
      this.failNext--;
      throw new Error("transaction refused");
    }
    this.transactions.push(ops);
  }
  async close() {}
}

function setup(maxBacklogBytes = 1 << 20, ipv6 = false) {
  const pool = ipv6 ? ["198.51.100.1", "2001:db8::1"] : ["198.51.100.1"];
  const e = engineFrom(engineConfig({ pool: { addresses: pool, blockSize: 64 }, ...(ipv6 ? { subscribers: ["10.0.0.0/8", "2001:db8:1::/48"] } : {}) }), T0, {
    seed: 2n,
  });
  const backend = ipv6 ? Object.assign(new FakeBackend(), { ipv6: true }) : new FakeBackend();
  const downs: boolean[] = [];
  const m = new DataplaneManager(
    backend,
    {
      shards: 1,
      exportTable: async (_shard, from) => e.persistTable(from, 3, WALL), // small chunks: several per reconciliation
      setDown: async (down) => void downs.push(down),
    },
    { batchMs: 1_000_000, failuresBeforeDown: 2, reconcileChunk: 2, maxBacklogBytes },
    log,
  );
  /** What a shard posts after a batch. */
  const post = () => {
    for (const part of e.persistPending(WALL)) m.ingest(part);
    e.drainEvents();
  };
  const tick = () => (m as unknown as { tick(): Promise<void> }).tick();
  const clearBackoff = () => ((m as unknown as { retryAt: number }).retryAt = 0);
  return { e, backend, m, downs, post, tick, clearBackoff };
}

const map = (e: PacketEngine, client: string, port: number, o: { lifetime?: number; protocol?: number; filters?: ReturnType<typeof filter>[] } = {}) =>
  serveOne(
    e,
    mapRequest({ client, internalPort: port, protocol: o.protocol ?? W.PROTO_TCP, lifetime: o.lifetime ?? 600, nonce: nonceOf(port) }, o.filters ?? []),
    T0,
    { source: client },
  );

const summary = (ops: DataplaneOp[]) =>
  ops.map(
    (o) =>
      `${o.op} ${o.mapping.protocol}/${o.mapping.internal.address}:${o.mapping.internal.port}${o.mapping.filters.length ? ` filters ${o.mapping.filters.map((f) => `${f.address}/${f.prefixLength}`).join(",")}` : ""}`,
  );

describe("DataplaneManager", () => {
  it("reconciles from the tables in chunks, then comes up", async () => {
    const { e, backend, m, downs } = setup();
    for (let i = 1; i <= 7; i++) map(e, `10.0.0.${i}`, 80);
    e.drainEvents();
    await m.start();
    await m.close();
    expect(backend.resets).toBe(1);
    expect(backend.transactions.flat().map((o) => o.op)).toEqual(Array(7).fill("map"));
    expect(backend.transactions.every((t) => t.length <= 2)).toBe(true); // reconcileChunk
    expect(downs).toEqual([false]);
    expect(m.stats()).toMatchObject({ up: true, installed: 7, reconciliations: 1 });
  });

  it("a batch's changes, unmaps first; a refresh changes nothing; a FILTER change replaces the mapping's entries", async () => {
    const { e, backend, m, post, tick } = setup();
    await m.start();
    map(e, "10.0.0.1", 80);
    map(e, "10.0.0.2", 81, { protocol: W.PROTO_UDP });
    post();
    await tick();
    expect(summary(backend.transactions.at(-1)!)).toEqual(["map 6/10.0.0.1:80", "map 17/10.0.0.2:81"]);

    map(e, "10.0.0.1", 80); // refresh
    post();
    const before = backend.transactions.length;
    await tick();
    expect(backend.transactions.length).toBe(before);

    map(e, "10.0.0.1", 80, { filters: [filter(120, "192.0.2.0", 0)] }); // refresh with a FILTER
    map(e, "10.0.0.2", 81, { protocol: W.PROTO_UDP, lifetime: 0 }); // delete: its port goes into hold-down
    post();
    await tick();
    // Three operations: two transactions of at most reconcileChunk (2), unmaps first.
    expect(summary(backend.transactions.slice(before).flat())).toEqual([
      "unmap 6/10.0.0.1:80",
      "unmap 17/10.0.0.2:81",
      "map 6/10.0.0.1:80 filters 192.0.2.0/24",
    ]);
    expect(m.stats()).toMatchObject({ installed: 1, transactions: 3 });
    await m.close();
  });

  it("PEER mappings install outbound consistency only; the latest state of a key in a batch wins", async () => {
    const { e, backend, m, post, tick } = setup();
    await m.start();
    serveOne(e, peerRequest({ client: "10.0.0.9", internalPort: 5000, remoteAddress: "203.0.113.7", remotePort: 3478, nonce: nonceOf(9) }), T0, {
      source: "10.0.0.9",
    });
    map(e, "10.0.0.3", 90);
    map(e, "10.0.0.3", 90, { lifetime: 0 }); // created and deleted within one batch: nothing to do
    post();
    await tick();
    const ops = backend.transactions.at(-1)!;
    expect(ops.map((o) => [o.op, o.mapping.internal.address, o.mapping.inbound, o.mapping.outbound])).toEqual([["map", "10.0.0.9", false, true]]);
    await m.close();
  });

  it("a failed transaction is retried whole; failures in a row take it down until a reconciliation brings it back", async () => {
    const { e, backend, m, post, tick, downs, clearBackoff } = setup();
    await m.start();
    map(e, "10.0.0.1", 80);
    post();
    backend.failNext = 1;
    await tick();
    expect(m.stats()).toMatchObject({ failures: 1, up: true, installed: 0 });
    clearBackoff();
    await tick(); // the same operations again
    expect(summary(backend.transactions.at(-1)!)).toEqual(["map 6/10.0.0.1:80"]);
    expect(m.stats()).toMatchObject({ installed: 1, consecutiveFailures: 0 });

    map(e, "10.0.0.2", 80);
    post();
    backend.failNext = 3; // two transactions and the first reconciliation
    await tick();
    clearBackoff();
    await tick();
    expect(m.stats().up).toBe(false);
    expect(downs.at(-1)).toBe(true);
    clearBackoff();
    await tick(); // reconciliation refused
    expect(m.stats().up).toBe(false);
    clearBackoff();
    await tick(); // reconciled: both mappings from the tables
    expect(m.stats()).toMatchObject({ up: true, installed: 2, reconciliations: 2 });
    expect(downs.at(-1)).toBe(false);
    await m.close();
  });
});

describe("DataplaneManager: a backlog over dataplane.maxBacklogBytes", () => {
  /** Changes posted faster than applied: each batch's records ingested, no tick between. */
  function overflow(t: ReturnType<typeof setup>, changes: () => void) {
    changes();
    for (const part of t.e.persistPending(WALL)) t.m.ingest(part);
    t.e.drainEvents();
  }

  it("is let go, then the dataplane is resynchronised from the tables without a reset: only the differences, and what no table holds is removed", async () => {
    const t = setup(400); // a few records' worth
    const { e, backend, m, tick } = t;
    for (let i = 1; i <= 5; i++) map(e, `10.0.0.${i}`, 80);
    e.drainEvents();
    await m.start();
    const loaded = backend.transactions.length;
    overflow(t, () => {
      map(e, "10.0.0.1", 80, { lifetime: 0 }); // deleted: its port held (a state without forwarding)…
      e.expire(T0 + 121); // …then released after the hold-down: in no table any more
      map(e, "10.0.0.2", 80, { filters: [filter(120, "192.0.2.0", 0)] }); // changed
      for (let i = 6; i <= 25; i++) map(e, `10.0.0.${i}`, 80); // created
    });
    expect(m.stats()).toMatchObject({ backlogOverflows: 1, backlogBytes: 0, pendingKeys: 0, installed: 5 });
    overflow(t, () => map(e, "10.0.0.26", 80)); // before the resynchronisation: read from the table, not queued
    expect(m.stats().backlogBytes).toBe(0);
    await tick();
    expect(backend.resets).toBe(1); // the start's only: forwarding went on
    const ops = summary(backend.transactions.slice(loaded).flat());
    expect(ops.filter((o) => o.startsWith("unmap")).sort()).toEqual(["unmap 6/10.0.0.1:80", "unmap 6/10.0.0.2:80"]);
    expect(ops.filter((o) => o.startsWith("map")).sort()).toEqual(
      ["map 6/10.0.0.2:80 filters 192.0.2.0/24", ...Array.from({ length: 21 }, (_, i) => `map 6/10.0.0.${i + 6}:80`)].sort(),
    );
    expect(m.stats()).toMatchObject({ up: true, installed: 25, reconciliations: 2, backlogOverflows: 1 });
    // Changes flow as before.
    map(e, "10.0.0.3", 80, { lifetime: 0 });
    t.post();
    await tick();
    expect(summary(backend.transactions.at(-1)!)).toEqual(["unmap 6/10.0.0.3:80"]);
    expect(m.stats().installed).toBe(24);
    await m.close();
  });

  it("IPv6 mappings (kept apart from the IPv4 port table) are resynchronised the same way", async () => {
    const t = setup(400, true);
    const { e, backend, m, tick } = t;
    const map6 = (i: number, lifetime = 600) =>
      serveOne(e, mapRequest({ client: `2001:db8:1::${i}`, internalPort: 80, protocol: W.PROTO_TCP, lifetime, nonce: nonceOf(i), externalAddress: "::" }), T0, {
        source: `2001:db8:1::${i}`,
      });
    for (let i = 1; i <= 3; i++) expect(map6(i).result).toBe(W.RESULT_SUCCESS);
    e.drainEvents();
    await m.start();
    expect(m.stats().installed).toBe(3);
    const loaded = backend.transactions.length;
    overflow(t, () => {
      map6(1, 0); // deleted…
      e.expire(T0 + 121); // …and its port released
      for (let i = 4; i <= 12; i++) map6(i);
    });
    expect(m.stats().backlogOverflows).toBe(1);
    await tick();
    const ops = summary(backend.transactions.slice(loaded).flat());
    expect(ops.filter((o) => o.startsWith("unmap"))).toEqual(["unmap 6/2001:db8:1::1:80"]);
    expect(ops.filter((o) => o.startsWith("map"))).toHaveLength(9);
    expect(m.stats()).toMatchObject({ installed: 11, reconciliations: 2 });
    await m.close();
  });

  it("a resynchronisation that fails half-way is done again whole (what it had seen is seen again)", async () => {
    const t = setup(400);
    const { e, backend, m, tick, clearBackoff } = t;
    for (let i = 1; i <= 8; i++) map(e, `10.0.0.${i}`, 80);
    e.drainEvents();
    await m.start();
    overflow(t, () => {
      for (let i = 9; i <= 30; i++) map(e, `10.0.0.${i}`, 80);
    });
    expect(m.stats().backlogOverflows).toBe(1);
    const apply = backend.apply.bind(backend);
    let calls = 0;
    backend.apply = async (ops) => {
      if (++calls === 3) throw new Error("transaction refused"); // after the first chunks were compared
      return apply(ops);
    };
    await tick();
    expect(m.stats()).toMatchObject({ failures: 1, up: true });
    // Deleted between the attempts and its port released: the first attempt had seen it in its table.
    map(e, "10.0.0.1", 80, { lifetime: 0 });
    e.expire(T0 + 121);
    e.drainEvents();
    e.persistPending(WALL); // its record never reaches the manager (as if let go too)
    clearBackoff();
    await tick();
    expect(m.stats()).toMatchObject({ installed: 29, consecutiveFailures: 0, reconciliations: 2 });
    expect(summary(backend.transactions.flat()).filter((o) => o === "unmap 6/10.0.0.1:80")).toHaveLength(1);
    await m.close();
  });
});

describe("DataplaneManager: a large batch never holds the main thread", () => {
  it("transactions of reconcileChunk operations, every unmap of the batch before any map, the loop turning between them", async () => {
    const { e, backend, m, post, tick } = setup(); // reconcileChunk 2
    await m.start();
    for (let i = 1; i <= 4; i++) map(e, `10.0.0.${i}`, 80);
    post();
    const turns = await turnsDuring(tick);
    expect(backend.transactions.map((t) => t.length)).toEqual([2, 2]);
    expect(turns).toBeGreaterThanOrEqual(backend.transactions.length); // a turn after each diff chunk and between transactions
    expect(m.stats()).toMatchObject({ installed: 4, transactions: 2, operations: 4 });

    // Two mappings end and two are made (on new external ports) in one batch: both unmaps
    // go out before either map, though each transaction holds only two operations.
    const first = backend.transactions.length;
    map(e, "10.0.0.1", 80, { lifetime: 0 });
    map(e, "10.0.0.2", 80, { lifetime: 0 });
    map(e, "10.0.0.5", 80);
    map(e, "10.0.0.6", 80);
    post();
    await tick();
    expect(backend.transactions.slice(first).map(summary)).toEqual([
      ["unmap 6/10.0.0.1:80", "unmap 6/10.0.0.2:80"],
      ["map 6/10.0.0.5:80", "map 6/10.0.0.6:80"],
    ]);
    expect(m.stats()).toMatchObject({ installed: 4 });
    await m.close();
  });

  it("a reconciliation and a backlog of posted records are worked through over many event-loop turns", async () => {
    const { e, backend, m } = setup(); // exportTable: 3 records per chunk, reconcileChunk 2
    for (let i = 1; i <= 7; i++) map(e, `10.0.0.${i}`, 80);
    e.drainEvents();
    const reconciling = await turnsDuring(() => m.start()); // the fake source answers without a turn of its own
    expect(backend.transactions.length).toBeGreaterThanOrEqual(4);
    expect(reconciling).toBeGreaterThanOrEqual(backend.transactions.length);
    // Messages queued while the main thread was busy arrive in one turn: ingest only queues them.
    const posted: Uint8Array[] = [];
    for (let i = 8; i <= 13; i++) {
      map(e, `10.0.0.${i}`, 80);
      posted.push(...e.persistPending(WALL));
    }
    e.drainEvents();
    for (const bytes of posted) m.ingest(bytes);
    expect(m.stats().pendingKeys).toBe(0); // nothing decoded yet
    expect(m.stats().backlogBytes).toBe(posted.reduce((n, b) => n + b.byteLength, 0)); // but counted
    const ticking = await turnsDuring((m as unknown as { tick(): Promise<void> }).tick.bind(m));
    expect(ticking).toBeGreaterThanOrEqual(posted.length); // a message per turn
    expect(m.stats()).toMatchObject({ installed: 13, pendingKeys: 0, backlogBytes: 0 });
    await m.close();
  });

  it("a backlog beyond a batch (5 × reconcileChunk keys) waits undecoded while the batch before it is applied", async () => {
    const { e, backend, m, tick } = setup(); // reconcileChunk 2: batches of at most 10 keys
    await m.start();
    for (let i = 1; i <= 30; i++) {
      map(e, `10.0.1.${i}`, 80);
      for (const part of e.persistPending(WALL)) m.ingest(part);
    }
    e.drainEvents();
    const undecoded = () => (m as unknown as { incoming: Uint8Array[] }).incoming.length;
    const seen: number[] = [];
    const apply = backend.apply.bind(backend);
    backend.apply = async (ops) => {
      seen.push(undecoded());
      return apply(ops);
    };
    await tick();
    expect(seen[0]).toBeGreaterThanOrEqual(30 - 10); // the first transaction went out with the rest still raw
    expect(m.stats()).toMatchObject({ installed: 30, pendingKeys: 0 }); // and one tick worked through all of it
    await m.close();
  });

  it("a transaction failing mid-batch keeps the earlier ones applied and the rest pending", async () => {
    const { e, backend, m, post, tick, clearBackoff } = setup();
    await m.start();
    for (let i = 1; i <= 5; i++) map(e, `10.0.0.${i}`, 80);
    post();
    const apply = backend.apply.bind(backend);
    let calls = 0;
    backend.apply = async (ops) => {
      if (++calls === 2) throw new Error("transaction refused");
      return apply(ops);
    };
    await tick();
    expect(m.stats()).toMatchObject({ installed: 2, pendingKeys: 3, failures: 1 });
    clearBackoff();
    await tick();
    expect(m.stats()).toMatchObject({ installed: 5, pendingKeys: 0, consecutiveFailures: 0 });
    expect(backend.transactions.flat().map((o) => o.op)).toEqual(Array(5).fill("map"));
    await m.close();
  });
});

describe("nftables statements", () => {
  it("maps and sets per operation: DNAT, SNAT consistency, FILTER prefixes with their ports", () => {
    expect(mappingStatements("pcpd", "add", forwarding())).toEqual([
      "add element ip pcpd inbound { 6 . 198.51.100.1 . 1234 : 10.0.0.2 . 8080 }",
      "add element ip pcpd outbound { 6 . 10.0.0.2 . 8080 : 198.51.100.1 . 1234 }",
    ]);
    expect(
      mappingStatements(
        "pcpd",
        "delete",
        forwarding({
          filters: [
            { address: "192.0.2.0", prefixLength: 24, port: 0 },
            { address: "203.0.113.9", prefixLength: 32, port: 443 },
          ],
        }),
      ),
    ).toEqual([
      "delete element ip pcpd inbound { 6 . 198.51.100.1 . 1234 }",
      "delete element ip pcpd outbound { 6 . 10.0.0.2 . 8080 }",
      "delete element ip pcpd filtered { 6 . 198.51.100.1 . 1234 }",
      "delete element ip pcpd allowed { 6 . 198.51.100.1 . 1234 . 192.0.2.0/24 . 0-65535, 6 . 198.51.100.1 . 1234 . 203.0.113.9/32 . 443 }",
    ]);
    expect(mappingStatements("pcpd", "add", forwarding({ inbound: false }))).toEqual([
      "add element ip pcpd outbound { 6 . 10.0.0.2 . 8080 : 198.51.100.1 . 1234 }",
    ]);
    expect(
      transactionScript("t", [
        { op: "unmap", mapping: forwarding() },
        { op: "map", mapping: forwarding({ internal: { address: "10.0.0.3", port: 1 } }) },
      ]).split("\n")[0],
    ).toMatch(/^delete element ip t inbound/);
  });

  it("matches on transport ports only: no rule without a port (never a port-less catch-all)", () => {
    const rules = tableDefinition("pcpd")
      .split("\n")
      .filter((l) => /\b(dnat|snat|drop)\b/.test(l));
    expect(rules).toHaveLength(3);
    for (const r of rules) expect(r).toMatch(/th [sd]port/);
  });
});

describe("nftables IPv6 statements (pinholes)", () => {
  const v6 = forwarding6;

  it("a translated mapping: pinhole on the internal endpoint, DNAT and SNAT; FILTERs on the pinhole", () => {
    expect(mappingStatements6("t", "add", v6({ filters: [{ address: "2001:db8:2::", prefixLength: 48, port: 443 }] }))).toEqual([
      "add element ip6 t mapped { 6 . 2001:db8:1::2 . 8080 }",
      "add element ip6 t pinholes { 6 . 2001:db8:1::2 . 8080 }",
      "add element ip6 t inbound { 6 . 2001:db8::100 . 1234 : 2001:db8:1::2 . 8080 }",
      "add element ip6 t filtered { 6 . 2001:db8:1::2 . 8080 }",
      "add element ip6 t allowed { 6 . 2001:db8:1::2 . 8080 . 2001:db8:2::/48 . 443 }",
      "add element ip6 t outbound { 6 . 2001:db8:1::2 . 8080 : 2001:db8::100 . 1234 }",
    ]);
  });

  it("an untranslated mapping (external = internal) is a pinhole only; a PEER-only one opens nothing", () => {
    const same = { address: "2001:db8:1::2", port: 8080 };
    expect(mappingStatements6("t", "delete", v6({ external: same }))).toEqual([
      "delete element ip6 t mapped { 6 . 2001:db8:1::2 . 8080 }",
      "delete element ip6 t pinholes { 6 . 2001:db8:1::2 . 8080 }",
    ]);
    expect(mappingStatements6("t", "add", v6({ external: same, inbound: false }))).toEqual(["add element ip6 t mapped { 6 . 2001:db8:1::2 . 8080 }"]);
    expect(transactionScript("t", [{ op: "map", mapping: v6() }])).toMatch(/^add element ip6 t mapped/);
  });

  it("the firewall drops only what is addressed to a subscriber prefix and matches no pinhole", () => {
    const chain = tableDefinition6("t", ["2001:db8:1::/64"]);
    expect(chain).toContain("elements = { 2001:db8:1::/64 }");
    const rules = chain.split("\n").filter((l) => /\b(accept|drop)\b/.test(l) && !l.includes("policy"));
    expect(rules.at(-1)?.trim()).toBe("counter drop");
    expect(rules[0].trim()).toBe("ct state established,related accept");
  });
});

describe("EventStreamBackend", () => {
  it("fails without a consumer; drops a consumer that cannot keep up; a new consumer asks for a reset", async () => {
    const stream = new EventStreamBackend();
    let joins = 0;
    stream.onJoin = () => joins++;
    await expect(stream.apply([{ op: "map", mapping: forwarding() }])).rejects.toThrow(/no dataplane consumer/);
    const got: string[] = [];
    const good = { send: (method: string) => (got.push(method), true) };
    const slow = { send: () => false };
    stream.add(good);
    stream.add(slow);
    expect(joins).toBe(2);
    await stream.reset();
    await stream.apply([{ op: "map", mapping: forwarding() }]);
    expect(got).toEqual(["dataplane.reset", "dataplane.ops"]);
    expect(stream.size).toBe(1);
  });
});
