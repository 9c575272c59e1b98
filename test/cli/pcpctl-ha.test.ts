// `pcpctl ha status` and `pcpctl ha switchover` (the built dist/cli/pcpctl.js; build first)
// against a fake control channel: the requests they send, the tables and --json they
// print, and their exit codes on usage and server errors.
import { execFile } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RpcErrors, type RpcRequest } from "../../src/control/protocol.js";
import type { HaStatus, HaSwitchoverResult } from "../../src/ha/types.js";
import { startFakeControlServer, type FakeControlServer, type Reply } from "../helpers/fake-control-server.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const CLI = join(ROOT, "dist/cli/pcpctl.js");
const SOURCES = ["src/cli/pcpctl/ha-commands.ts", "src/cli/pcpctl/commands.ts", "src/control/protocol.ts"];

const STATUS: HaStatus = {
  node: "pcpd-1",
  cluster: "lab",
  nats: "connected",
  groups: [
    {
      name: "east",
      addresses: ["192.0.2.1"],
      shards: [0, 2],
      role: "active",
      holder: "pcpd-1",
      term: 42,
      leaseRemainingMs: 1250,
      replication: [
        { shard: 0, role: "active", seq: 120, lastSeq: 120, records: 5000, complete: true, lagMs: 3, pendingBytes: 512, gateDrops: 0 },
        { shard: 2, role: "active", seq: 97, lastSeq: 97, records: 4100, complete: true, lagMs: 0, pendingBytes: 0, gateDrops: 7 },
      ],
      lagMs: 3,
      lastTakeover: { at: "2026-12-04T17:00:00.000Z", from: "pcpd-2", to: "pcpd-1", reason: "lapsed", durationMs: 850, epochContinued: true },
    },
    {
      name: "west",
      addresses: ["192.0.2.2"],
      shards: [1],
      role: "standby",
      holder: null,
      term: 7,
      leaseRemainingMs: 0,
      replication: [
        {
          shard: 1,
          role: "standby",
          seq: 88,
          lastSeq: 90,
          records: 3000,
          complete: false,
          lagMs: 40,
          pendingBytes: 0,
          gateDrops: 0,
          error: "consumer: no responders",
        },
      ],
      lagMs: 40,
    },
  ],
};
const SWITCHED: HaSwitchoverResult = { group: "east", from: "pcpd-1", to: "pcpd-2", durationMs: 310 };

let server: FakeControlServer;
let reply: Partial<Record<string, Reply>> = {};

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -p tsconfig.json)`);
  const stale = SOURCES.filter((s) => statSync(join(ROOT, s)).mtimeMs > statSync(CLI).mtimeMs);
  if (stale.length > 0) throw new Error(`${CLI} is older than ${stale.join(", ")}: build first (npx tsc -p tsconfig.json)`);
  server = await startFakeControlServer({
    token: "ha-s3cret",
    handler: (req) => reply[req.method] ?? { error: { code: RpcErrors.METHOD_NOT_FOUND, message: `no ${req.method}` } },
  });
});
afterAll(async () => {
  await server?.close();
});
beforeEach(() => {
  server.requests.length = 0;
  server.upgrades.length = 0;
  reply = { "ha.status": { result: STATUS }, "ha.switchover": { result: SWITCHED } };
});

const run = promisify(execFile);
async function pcpctl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, "--url", server.url, "--token", "ha-s3cret", ...args], { timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}
const sent = () => server.requests.map((r: RpcRequest) => [r.method, r.params]);

describe("pcpctl ha status", () => {
  it("prints the node, then one row per group and one per shard", async () => {
    const r = await pcpctl(["ha", "status"]);
    expect([r.code, r.stderr]).toEqual([0, ""]);
    expect(sent()).toEqual([["ha.status", {}]]);
    expect(r.stdout).toBe(
      [
        "node     pcpd-1",
        "cluster  lab",
        "nats     connected",
        "",
        "GROUP  ROLE     HOLDER  TERM  LEASE LEFT  LAG   LAST TAKEOVER",
        "east   active   pcpd-1    42  1.25s       3ms   2026-12-04T17:00:00.000Z pcpd-2 -> pcpd-1 (lapsed, 850ms, Epoch continued)",
        "west   standby  (none)     7  -           40ms  -",
        "",
        "GROUP  SHARD  ROLE     SEQ  LAST SEQ  LAG   RECORDS  COMPLETE  PENDING BYTES  GATE DROPS  ERROR",
        "east       0  active   120       120  3ms      5000  yes                 512           0  -",
        "east       2  active    97        97  0ms      4100  yes                   0           7  -",
        "west       1  standby   88        90  40ms     3000  no                    0           0  consumer: no responders",
        "",
      ].join("\n"),
    );
  });

  it("--json prints the status as the server sent it", async () => {
    const r = await pcpctl(["--json", "ha", "status"]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(STATUS);
  });

  it("a server without HA: exit 1 with NOT_ENABLED", async () => {
    reply["ha.status"] = { error: { code: RpcErrors.NOT_ENABLED, message: "ha.enabled is false: this node runs alone (no shard groups)" } };
    const r = await pcpctl(["ha", "status"]);
    expect([r.code, r.stdout, r.stderr]).toEqual([
      1,
      "",
      "pcpctl: server error -32006 NOT_ENABLED: ha.enabled is false: this node runs alone (no shard groups)\n",
    ]);
  });
});

describe("pcpctl health", () => {
  it("shows the HA part: NATS, the problems, each group's role and holder", async () => {
    reply["server.health"] = {
      result: {
        status: "degraded",
        shards: [{ shard: 0, up: true, persistence: null }],
        ha: {
          nats: "reconnecting",
          groups: [{ name: "east", role: "degraded", holder: "pcpd-1" }],
          problems: ["ha group east degraded: lease not renewed, serving for 700 ms more at most"],
        },
      },
    };
    const r = await pcpctl(["health"]);
    expect(r.stdout).toBe(
      [
        "status  degraded",
        "",
        "SHARD  UP   PERSISTENCE",
        "    0  yes  off",
        "",
        "ha nats  reconnecting",
        "problem  ha group east degraded: lease not renewed, serving for 700 ms more at most",
        "",
        "GROUP  ROLE      HOLDER",
        "east   degraded  pcpd-1",
        "",
      ].join("\n"),
    );
  });
});

describe("pcpctl ha switchover", () => {
  it("sends the group (and --to), prints who serves it now", async () => {
    const any = await pcpctl(["ha", "switchover", "east"]);
    expect([any.code, any.stdout]).toEqual([0, "group east: switched over from pcpd-1 to pcpd-2 in 310ms\n"]);
    const named = await pcpctl(["--json", "ha", "switchover", "east", "--to", "pcpd-2"]);
    expect(JSON.parse(named.stdout)).toEqual(SWITCHED);
    expect(sent()).toEqual([
      ["ha.switchover", { group: "east" }],
      ["ha.switchover", { group: "east", to: "pcpd-2" }],
    ]);
  });

  it("waits for the server past the usual 10 s call timeout, unless --timeout says otherwise", async () => {
    const handler = server.handler;
    // The switchover answers after 10.5 s (a standby catching up); --timeout 300 gives up first.
    server.handler = (req) =>
      req.method === "ha.switchover"
        ? new Promise<Reply>((resolve) => setTimeout(() => resolve({ result: SWITCHED }), 10_500))
        : handler(req, server.sockets[0]);
    try {
      const impatient = await pcpctl(["--timeout", "300", "ha", "switchover", "east"]);
      expect([impatient.code, impatient.stderr]).toEqual([1, "pcpctl: ha.switchover: no answer within 300 ms\n"]);
      const patient = await pcpctl(["ha", "switchover", "east"]);
      expect([patient.code, patient.stdout]).toEqual([0, "group east: switched over from pcpd-1 to pcpd-2 in 310ms\n"]);
    } finally {
      server.handler = handler;
    }
  }, 30_000);

  it("the server's refusal: exit 1 with its code, message and data", async () => {
    reply["ha.switchover"] = {
      error: {
        code: RpcErrors.NOT_ACTIVE,
        message: "pcpd-1 is not the active of group east (standby); the holder is pcpd-2",
        data: { error: "HA_NOT_ACTIVE", group: "east" },
      },
    };
    const r = await pcpctl(["ha", "switchover", "east"]);
    expect([r.code, r.stderr]).toEqual([
      1,
      'pcpctl: server error -32007 NOT_ACTIVE: pcpd-1 is not the active of group east (standby); the holder is pcpd-2 (data: {"error":"HA_NOT_ACTIVE","group":"east"})\n',
    ]);
  });

  it.each([
    [["ha"], /ha: which one\? \(status, switchover\)/],
    [["ha", "switchover"], /ha switchover needs GROUP/],
    [["ha", "switchover", "east west"], /GROUP: letters, digits, _ and -/],
    [["ha", "switchover", "east", "--to", "a b"], /--to: letters, digits, _ and -/],
    [["ha", "status", "--to", "pcpd-2"], /ha status does not take --to/],
  ])("%j is a usage error (2), and nothing is sent", async (args, message) => {
    const r = await pcpctl(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(server.upgrades).toHaveLength(0);
  });
});
