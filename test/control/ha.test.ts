// The control channel's HA surface (ha.status, ha.switchover, the ha part of server.health
// and /healthz, the pcpd_ha_ metrics) on a real server and control channel, with a stand-in
// HaController that answers set HaStatus values and records the switchovers asked of it:
// this tests the control layer (roles, params, error mapping, rendering), not the HA
// machinery (test/ha/, test/integration/ha*.test.ts).
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import parsePrometheusTextFormat, { type PrometheusFamily } from "parse-prometheus-text-format";
import { pino } from "pino";
import { ControlClient, ControlError } from "../../src/client/control-client.js";
import { parseConfig } from "../../src/config/schema.js";
import { startControl, type RunningControl } from "../../src/control/server.js";
import { RpcErrors } from "../../src/control/protocol.js";
import { ErrorCodes, HaError } from "../../src/errors.js";
import type { HaController, HaStatus, HaSwitchoverResult } from "../../src/ha/types.js";
import type { HaShardState } from "../../src/shard/tasks.js";
import { startServer, type RunningServer } from "../../src/server/server.js";

const EAST = "127.0.0.151";
const WEST = "127.0.0.152";
const ADMIN = "ha-admin-token-0123456789";
const READER = "ha-reader-token-0123456789";
const log = pino({ level: "silent" });

const shardState = (shard: number, over: Partial<HaShardState> = {}): HaShardState & { shard: number } => ({
  shard,
  role: "active",
  seq: 120,
  lastSeq: 120,
  records: 5000,
  complete: true,
  lagMs: 3,
  pendingBytes: 512,
  gateDrops: 0,
  ...over,
});

function healthy(): HaStatus {
  return {
    node: "pcpd-1",
    cluster: "lab",
    nats: "connected",
    groups: [
      {
        name: "east",
        addresses: [EAST],
        shards: [0],
        role: "active",
        holder: "pcpd-1",
        term: 42,
        leaseRemainingMs: 1500,
        replication: [shardState(0)],
        lagMs: 3,
        lastTakeover: { at: "2026-12-04T17:00:00.000Z", from: "pcpd-2", to: "pcpd-1", reason: "lapsed", durationMs: 850, epochContinued: true },
      },
      {
        name: "west",
        addresses: [WEST],
        shards: [1],
        role: "standby",
        holder: "pcpd-2",
        term: 7,
        leaseRemainingMs: 0,
        replication: [shardState(1, { role: "standby", seq: 88, lastSeq: 90, records: 3000, lagMs: 40, pendingBytes: 0, complete: false, gateDrops: 0 })],
        lagMs: 40,
      },
    ],
  };
}

/** What the stand-in controller answers next, and the switchovers it was asked for. */
let status: HaStatus | Error = healthy();
let outcome: HaSwitchoverResult | Error = { group: "east", from: "pcpd-1", to: "pcpd-2", durationMs: 310 };
const asked: [group: string, to: string | undefined][] = [];
const controller: HaController = {
  status: async () => {
    if (status instanceof Error) throw status;
    return structuredClone(status);
  },
  switchover: async (group, to) => {
    asked.push([group, to]);
    if (outcome instanceof Error) throw outcome;
    return outcome;
  },
};

let server: RunningServer;
let control: RunningControl;
let admin: ControlClient;
let reader: ControlClient;
let base: string;

beforeAll(async () => {
  const config = parseConfig({
    listen: { addresses: [EAST, WEST], port: 0 },
    workers: 2,
    control: { address: "127.0.0.1", port: 0, tokens: Object.entries({ admin: ADMIN, read: READER }).map(([role, token]) => ({ role, token })) },
    log: { level: "silent" },
    persistence: { enabled: false },
    // Not enabled (no NATS here): the groups name what ha.switchover may be asked about.
    ha: {
      groups: [
        { name: "east", addresses: [EAST] },
        { name: "west", addresses: [WEST] },
      ],
    },
  });
  server = await startServer(config, log);
  control = await startControl({ config: config.control, server, log, version: "test", reloadConfig: async () => [] });
  base = `http://127.0.0.1:${control.port}`;
  const url = `ws://127.0.0.1:${control.port}/control`;
  admin = await ControlClient.connect(url, { token: ADMIN });
  reader = await ControlClient.connect(url, { token: READER });
});
afterAll(async () => {
  await admin?.close();
  await reader?.close();
  await control?.stop();
  await server?.stop();
});
beforeEach(() => {
  server.ha = controller;
  status = healthy();
  outcome = { group: "east", from: "pcpd-1", to: "pcpd-2", durationMs: 310 };
  asked.length = 0;
});

/** The error a call fails with (fails the test if it succeeds). */
async function failure(call: Promise<unknown>): Promise<ControlError> {
  const e = await call.then(
    (r) => new Error(`expected an error, got ${JSON.stringify(r)}`),
    (e: unknown) => e,
  );
  expect(e).toBeInstanceOf(ControlError);
  return e as ControlError;
}

const healthz = async () => (await fetch(`${base}/healthz`)).text();
const scrape = async () => parsePrometheusTextFormat(await (await fetch(`${base}/metrics`)).text());

/** The value of the one sample of `name` with exactly `labels`. */
function sample(families: PrometheusFamily[], name: string, labels: Record<string, string> = {}): number {
  const f = families.find((x) => x.name === name);
  expect(f, name).toBeDefined();
  const matches = f!.metrics.filter((s) => JSON.stringify(Object.entries(s.labels ?? {}).sort()) === JSON.stringify(Object.entries(labels).sort()));
  expect(matches, `${name}${JSON.stringify(labels)}`).toHaveLength(1);
  return Number(matches[0].value);
}

describe("without HA", () => {
  it("ha.status and ha.switchover are NOT_ENABLED; health, /healthz and /metrics have no HA part", async () => {
    server.ha = undefined;
    expect((await failure(reader.call("ha.status", {}))).code).toBe(RpcErrors.NOT_ENABLED);
    const off = await failure(admin.call("ha.switchover", { group: "east" }));
    expect(off.code).toBe(RpcErrors.NOT_ENABLED);
    expect(off.message).toContain("ha.enabled is false");
    expect(await reader.call("server.health", {})).toMatchObject({ status: "ok", ha: null });
    expect(await healthz()).toBe("ok\n");
    expect((await scrape()).filter((f) => f.name.startsWith("pcpd_ha_"))).toEqual([]);
    expect(asked).toEqual([]);
  });
});

describe("ha.status", () => {
  it("a read token gets the controller's status as it is", async () => {
    expect(await reader.call("ha.status", {})).toEqual(healthy());
  });

  it("takes no params", async () => {
    const e = await failure(reader.call("ha.status", { group: "east" } as never));
    expect(e.code).toBe(RpcErrors.INVALID_PARAMS);
  });
});

describe("ha.switchover", () => {
  it("needs the admin role: a read token is FORBIDDEN and the controller is not asked", async () => {
    expect((await failure(reader.call("ha.switchover", { group: "east" }))).code).toBe(RpcErrors.FORBIDDEN);
    expect(asked).toEqual([]);
  });

  it("hands the group over (to a named node or any) and answers the controller's result", async () => {
    expect(await admin.call("ha.switchover", { group: "east" })).toEqual({ group: "east", from: "pcpd-1", to: "pcpd-2", durationMs: 310 });
    outcome = { group: "west", from: "pcpd-1", to: "pcpd-3", durationMs: 120 };
    expect(await admin.call("ha.switchover", { group: "west", to: "pcpd-3" })).toEqual(outcome);
    expect(asked).toEqual([
      ["east", undefined],
      ["west", "pcpd-3"],
    ]);
  });

  it.each([
    ["no group", {}, "group"],
    ["an unknown key", { group: "east", force: true }, "force"],
    ["a group name that cannot be one", { group: "east west" }, "group"],
    ["a node name that cannot be one", { group: "east", to: "" }, "to"],
    ["a group not in ha.groups", { group: "north" }, 'group: no group "north" (ha.groups: east, west)'],
    ["this node as the target", { group: "east", to: "pcpd-1" }, 'to: "pcpd-1" is this node'],
  ])("%s is INVALID_PARAMS naming the field, before the controller is asked", async (_what, params, names) => {
    const e = await failure(admin.call("ha.switchover", params as never));
    expect(e.code).toBe(RpcErrors.INVALID_PARAMS);
    expect(e.message).toContain(names);
    expect(asked).toEqual([]);
  });

  it.each([
    [
      "not the active here",
      new HaError(ErrorCodes.HA_NOT_ACTIVE, "east", "pcpd-1 is not the active of group east (standby); the holder is pcpd-2"),
      RpcErrors.NOT_ACTIVE,
    ],
    [
      "the handover failed",
      new HaError(ErrorCodes.HA_SWITCHOVER_FAILED, "east", "switchover of group east failed: no node took the group"),
      RpcErrors.SWITCHOVER_FAILED,
    ],
    // The control layer checks the name first; a controller that still refuses one (its groups differ) is answered the same way.
    ["a group the controller does not have", new HaError(ErrorCodes.HA_UNKNOWN_GROUP, "east", "no HA group east (groups: west)"), RpcErrors.INVALID_PARAMS],
  ])("%s: the controller's HaError becomes its JSON-RPC code with the group in data", async (_what, error, code) => {
    outcome = error;
    const e = await failure(admin.call("ha.switchover", { group: "east" }));
    expect([e.code, e.message, e.data]).toEqual([code, error.message, { error: error.code, group: "east" }]);
  });

  it("any other failure is INTERNAL_ERROR with its message", async () => {
    outcome = new Error("lease bucket unreachable");
    const e = await failure(admin.call("ha.switchover", { group: "east" }));
    expect([e.code, e.message]).toEqual([RpcErrors.INTERNAL_ERROR, "lease bucket unreachable"]);
  });
});

describe("health", () => {
  it("healthy: ok, with each group's role and holder", async () => {
    expect(await healthz()).toBe("ok\nha: nats connected\nha group east: active, lease holder pcpd-1\nha group west: standby, lease holder pcpd-2\n");
    expect(await reader.call("server.health", {})).toMatchObject({
      status: "ok",
      ha: {
        nats: "connected",
        groups: [
          { name: "east", role: "active", holder: "pcpd-1" },
          { name: "west", role: "standby", holder: "pcpd-2" },
        ],
        problems: [],
      },
    });
  });

  it("a degraded group makes the node degraded (still 200: the lease, not the health check, decides who serves)", async () => {
    const s = healthy();
    Object.assign(s.groups[0], { role: "degraded", leaseRemainingMs: 700 });
    s.nats = "reconnecting";
    status = s;
    const res = await fetch(`${base}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(
      "degraded: ha group east degraded: lease not renewed, serving for 700 ms more at most\n" +
        "degraded: ha: NATS reconnecting while active for east\n" +
        "ha: nats reconnecting\nha group east: degraded, lease holder pcpd-1\nha group west: standby, lease holder pcpd-2\n",
    );
    const health = await reader.call("server.health", {});
    expect(health.status).toBe("degraded");
    expect(health.ha?.problems).toHaveLength(2);
  });

  it("NATS lost on a standby-only node is reported: it can neither follow nor take over", async () => {
    const s = healthy();
    s.groups = [s.groups[1]];
    s.nats = "disconnected";
    status = s;
    expect(await healthz()).toMatch(/^degraded: ha: NATS disconnected: the standby groups \(west\) cannot follow or take over\n/);
    expect((await reader.call("server.health", {})).status).toBe("degraded");
  });

  it("a controller that cannot report is a problem, not a crash of /healthz", async () => {
    status = new Error("lease watcher stopped");
    expect(await healthz()).toBe("degraded: ha: status unavailable: lease watcher stopped\nha: nats unknown\n");
    expect(await reader.call("server.health", {})).toMatchObject({ status: "degraded", ha: { nats: "unknown", groups: [] } });
  });
});

describe("/metrics", () => {
  it("roles, lease, term, lag, replication counters, takeover and NATS as pcpd_ha_ series", async () => {
    const m = await scrape();
    const types = Object.fromEntries(m.filter((f) => f.name.startsWith("pcpd_ha_")).map((f) => [f.name, f.type]));
    expect(types).toEqual({
      pcpd_ha_nats_connected: "GAUGE",
      pcpd_ha_nats_state: "GAUGE",
      pcpd_ha_role: "GAUGE",
      pcpd_ha_lease_remaining_seconds: "GAUGE",
      pcpd_ha_term: "GAUGE",
      pcpd_ha_group_lag_seconds: "GAUGE",
      pcpd_ha_lag_seconds: "GAUGE",
      pcpd_ha_pending_bytes: "GAUGE",
      pcpd_ha_complete: "GAUGE",
      pcpd_ha_stream_sequence: "GAUGE",
      pcpd_ha_records_total: "COUNTER",
      pcpd_ha_gate_drops_total: "COUNTER",
      pcpd_ha_last_takeover_timestamp_seconds: "GAUGE",
      pcpd_ha_last_takeover_duration_seconds: "GAUGE",
      pcpd_ha_last_takeover_epoch_continued: "GAUGE",
    });
    expect(sample(m, "pcpd_ha_nats_connected")).toBe(1);
    expect(sample(m, "pcpd_ha_nats_state", { state: "reconnecting" })).toBe(0);
    for (const role of ["active", "degraded", "standby", "taking-over", "demoting"]) {
      expect(sample(m, "pcpd_ha_role", { group: "east", role }), role).toBe(role === "active" ? 1 : 0);
      expect(sample(m, "pcpd_ha_role", { group: "west", role }), role).toBe(role === "standby" ? 1 : 0);
    }
    expect(sample(m, "pcpd_ha_lease_remaining_seconds", { group: "east" })).toBe(1.5);
    expect(sample(m, "pcpd_ha_lease_remaining_seconds", { group: "west" })).toBe(0);
    expect(sample(m, "pcpd_ha_term", { group: "east" })).toBe(42);
    expect(sample(m, "pcpd_ha_group_lag_seconds", { group: "west" })).toBe(0.04);
    expect(sample(m, "pcpd_ha_lag_seconds", { group: "west", shard: "1" })).toBe(0.04);
    expect(sample(m, "pcpd_ha_pending_bytes", { group: "east", shard: "0" })).toBe(512);
    expect(sample(m, "pcpd_ha_complete", { group: "west", shard: "1" })).toBe(0);
    expect(sample(m, "pcpd_ha_stream_sequence", { group: "west", shard: "1" })).toBe(88);
    expect(sample(m, "pcpd_ha_last_takeover_timestamp_seconds", { group: "east" })).toBe(Date.parse("2026-12-04T17:00:00Z") / 1000);
    expect(sample(m, "pcpd_ha_last_takeover_duration_seconds", { group: "east" })).toBe(0.85);
    expect(sample(m, "pcpd_ha_last_takeover_epoch_continued", { group: "east" })).toBe(1);
    // No takeover seen for west: no series.
    expect(m.find((f) => f.name === "pcpd_ha_last_takeover_duration_seconds")!.metrics).toHaveLength(1);
  });

  it("the replication counters only grow: a shard rebuilt (its counts from 0 again, on a new thread) adds its whole new count", async () => {
    const records = async () => {
      const m = await scrape();
      return [sample(m, "pcpd_ha_records_total", { group: "west", shard: "1" }), sample(m, "pcpd_ha_gate_drops_total", { group: "east", shard: "0" })];
    };
    const s = healthy();
    status = s;
    const [r0, d0] = await records();
    s.groups[1].replication[0].records += 250;
    s.groups[0].replication[0].gateDrops += 9;
    expect(await records()).toEqual([r0 + 250, d0 + 9]);
    // A demotion rebuilt west's shard: a fresh standby that applied 40 records so far.
    s.groups[1].replication[0].records = 40;
    expect(await records()).toEqual([r0 + 290, d0 + 9]);
    // East's shard replaced by the watchdog: a new thread, its gate drops from 0 (4 already
    // above the 9 it had: a counter compare alone would miss this).
    s.groups[0].replication[0].gateDrops = 13;
    const before = server.threads()[0];
    await server.replaceWorker(0);
    expect(server.threads()[0]).not.toBe(before);
    expect(await records()).toEqual([r0 + 290, d0 + 9 + 13]);
  });
});
