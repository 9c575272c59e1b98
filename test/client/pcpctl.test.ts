// The built `pcpctl` (dist/cli/pcpctl.js; `npx tsc -p tsconfig.json` or `npm run build`
// first) against a fake control channel on 127.0.0.31: arguments → JSON-RPC requests,
// table and --json output, exit codes, token sources.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RpcErrors, type Mapping, type Method, type MappingEventNotice, type Results, type RpcRequest } from "../../src/control/protocol.js";
import { closedPort, selfSignedCertificate, startFakeControlServer, type FakeControlServer, type Reply } from "../helpers/fake-control-server.js";
import { waitFor, waitForLine } from "../helpers/wait.js";
import { forwarding } from "../helpers/forwarding.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const CLI = join(ROOT, "dist/cli/pcpctl.js");
const SOURCES = ["src/cli/pcpctl.ts", "src/wire.generated.ts", "src/client/control-client.ts", "src/client/token-file.ts", "src/control/protocol.ts"];

const mapping = (over: Partial<Mapping> = {}): Mapping => ({
  shard: 0,
  id: 17,
  kind: "dynamic",
  protocol: 6,
  family: 4,
  internalAddress: "10.0.0.1",
  internalPort: 8080,
  externalAddress: "203.0.113.1",
  externalPort: 2048,
  inbound: true,
  outbound: false,
  natPmp: false,
  thirdParty: false,
  preferFailure: false,
  mapExpiry: 3700,
  expiresIn: 3600,
  outExpiry: 0,
  filters: [],
  ...over,
});

const RESULTS: { [M in Method]?: Results[M] } = {
  "server.info": {
    protocol: "pcpd-control/2",
    version: "0.1.0",
    node: "v20.0.0",
    startedAt: "2025-01-01T00:00:00.000Z",
    uptimeSeconds: 3725,
    workers: 2,
    role: "admin",
    shards: [
      { shard: 0, thread: 1, listen: [{ address: "127.0.0.1", port: 5351 }], epoch: 3725 },
      { shard: 1, thread: 2, listen: [{ address: "::1", port: 5351 }], epoch: 12 },
    ],
  },
  "server.health": {
    status: "degraded",
    shards: [
      {
        shard: 0,
        up: true,
        persistence: {
          state: "failing",
          reason: "journal write: ENOSPC: no space left on device, write",
          since: Date.parse("2025-01-01T00:00:00Z"),
          writeErrors: 3,
          backlogBytes: 4096,
          droppedBytes: 0,
        },
      },
      { shard: 1, up: false, persistence: null },
    ],
    ha: null,
  },
  "stats.get": {
    engine: { mappingsCreated: 5, mappingsExpired: 1 },
    pcpResults: { SUCCESS: 4, NO_RESOURCES: 0 },
    natPmpResults: { SUCCESS: 0 },
    drops: {},
    packets: 42,
    rates: null,
    shards: [
      { shard: 0, epoch: 10, packets: 42, mappings: 4, subscribers: 2, pool: [{ address: "203.0.113.1", freeBlocks: 100, retired: false }], persistence: null },
    ],
    dataplane: {
      backend: "nftables",
      up: false,
      pendingKeys: 2,
      backlogBytes: 65536,
      backlogOverflows: 1,
      installed: 7,
      transactions: 9,
      operations: 20,
      failures: 3,
      consecutiveFailures: 3,
      reconciliations: 1,
      unsupported: 0,
      lastError: "nft exited 1",
    },
  },
  "mappings.get": { mapping: mapping({ filters: [{ prefixLength: 32, port: 443, address: "198.51.100.7" }] }) },
  "mappings.addStatic": { mapping: mapping({ kind: "static", id: 3, mapExpiry: 0 }) },
  "mappings.removeStatic": { removed: true },
  "subscribers.usage": { shards: [{ shard: 0, mappings: 3, blocks: 1 }] },
  "subscribers.deleteMappings": { deleted: 3 },
  "epoch.get": {
    shards: [
      { shard: 0, epoch: 100 },
      { shard: 1, epoch: 7 },
    ],
  },
  "epoch.reset": { shard: 1, epoch: 0 },
  "config.get": { config: { listen: { addresses: ["127.0.0.1"], port: 5351 }, natPmp: "enabled" } },
  "config.reload": { restartNeededFor: ["workers", "listen"] },
  "events.subscribe": { subscribed: true },
  "events.unsubscribe": { subscribed: false },
  "dataplane.subscribe": { subscribed: true },
  "dataplane.unsubscribe": { subscribed: false },
};

/** Two pages: the first ends with cursor "p2". */
function listPage(params: { cursor?: string; limit?: number }): Results["mappings.list"] {
  if (params.cursor === "p2")
    return { mappings: [mapping({ id: 2, internalPort: 9, externalPort: 2049, protocol: 17, kind: "held", inbound: false })], next: null };
  return {
    mappings: [
      mapping(),
      mapping({
        id: 1,
        family: 6,
        internalAddress: "2001:db8::1",
        externalAddress: "2001:db8:ffff::1",
        outbound: true,
        natPmp: true,
        mapExpiry: 0,
        outExpiry: 99,
        expiresIn: 90, // read at engine time 9
        peer: { address: "198.51.100.9", port: 443, count: 2 },
      }),
    ],
    next: "p2",
  };
}

let server: FakeControlServer;
let errorFor: Partial<Record<Method, Reply>> = {};
let home: string;

beforeAll(async () => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first (npx tsc -p tsconfig.json)`);
  const built = statSync(CLI).mtimeMs;
  const stale = SOURCES.filter((s) => statSync(join(ROOT, s)).mtimeMs > built);
  if (stale.length > 0) throw new Error(`${CLI} is older than ${stale.join(", ")}: build first (npx tsc -p tsconfig.json)`);
  server = await startFakeControlServer({
    token: "s3cret",
    handler: (req) => {
      const method = req.method as Method;
      if (errorFor[method]) return errorFor[method];
      if (method === "mappings.list") return { result: listPage(req.params as { cursor?: string }) };
      const result = RESULTS[method];
      return result === undefined ? { error: { code: RpcErrors.METHOD_NOT_FOUND, message: `no ${method}` } } : { result };
    },
  });
  home = mkdtempSync(join(tmpdir(), "pcpctl-test-"));
});

afterAll(async () => {
  await server?.close();
});

beforeEach(() => {
  server.requests.length = 0;
  server.upgrades.length = 0;
  errorFor = {};
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs pcpctl asynchronously (the fake server lives on this event loop). */
function pcpctl(args: string[], options: { env?: Record<string, string>; token?: boolean } = {}): Promise<Run> {
  const base = options.token === false ? [] : ["--token", "s3cret"];
  // TMPDIR too: the token file's fallback lives under os.tmpdir().
  const env: Record<string, string> = { PATH: process.env.PATH ?? "", XDG_RUNTIME_DIR: join(home, "no-runtime"), TMPDIR: join(home, "tmp"), ...options.env };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, "--url", server.url, ...base, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const sent = (): [string, unknown][] => server.requests.map((r: RpcRequest) => [r.method, r.params]);

describe("requests", () => {
  it.each([
    [["info"], "server.info", {}],
    [["health"], "server.health", {}],
    [["stats"], "stats.get", {}],
    [["epoch"], "epoch.get", {}],
    [["epoch", "reset", "--shard", "1"], "epoch.reset", { shard: 1 }],
    [["config", "show"], "config.get", {}],
    [["config", "reload"], "config.reload", {}],
    [["subscriber", "usage", "10.0.0.1"], "subscribers.usage", { internalAddress: "10.0.0.1" }],
    [["subscriber", "delete", "2001:db8::1"], "subscribers.deleteMappings", { internalAddress: "2001:db8::1" }],
    [
      ["mappings", "get", "--internal", "10.0.0.1", "--protocol", "tcp", "--port", "8080"],
      "mappings.get",
      { internalAddress: "10.0.0.1", protocol: 6, internalPort: 8080 },
    ],
    [
      ["mappings", "get", "--internal", "10.0.0.1", "--protocol", "17", "--port", "53", "--family", "6"],
      "mappings.get",
      { internalAddress: "10.0.0.1", protocol: 17, internalPort: 53, family: 6 },
    ],
    [
      ["mappings", "get", "--external", "203.0.113.1", "--protocol", "udp", "--port", "2048"],
      "mappings.get",
      { externalAddress: "203.0.113.1", protocol: 17, externalPort: 2048 },
    ],
    [
      ["static", "add", "--internal", "10.0.0.2", "--protocol", "tcp", "--port", "22", "--external", "203.0.113.2", "--external-port", "2222"],
      "mappings.addStatic",
      { internalAddress: "10.0.0.2", protocol: 6, internalPort: 22, externalAddress: "203.0.113.2", externalPort: 2222 },
    ],
    [
      ["static", "remove", "--internal", "10.0.0.2", "--protocol", "tcp", "--port", "22"],
      "mappings.removeStatic",
      { internalAddress: "10.0.0.2", protocol: 6, internalPort: 22 },
    ],
    [["mappings", "list"], "mappings.list", { filter: {} }],
    [
      ["mappings", "list", "--internal", "10.0.0.1", "--external", "203.0.113.1", "--protocol", "udp", "--kind", "static", "--limit", "5", "--cursor", "abc"],
      "mappings.list",
      { filter: { internalAddress: "10.0.0.1", externalAddress: "203.0.113.1", protocol: 17, kind: "static" }, cursor: "abc", limit: 5 },
    ],
  ] as [string[], Method, unknown][])("%j → %s", async (args, method, params) => {
    const run = await pcpctl(["--json", ...args]);
    expect(run.code, run.stderr).toBe(0);
    expect(sent()).toEqual([[method, params]]);
    expect(server.requests[0].jsonrpc).toBe("2.0");
  });

  it("follows the next cursors with --all", async () => {
    const run = await pcpctl(["--json", "mappings", "list", "--all", "--limit", "2"]);
    expect(run.code).toBe(0);
    expect(sent()).toEqual([
      ["mappings.list", { filter: {}, limit: 2 }],
      ["mappings.list", { filter: {}, cursor: "p2", limit: 2 }],
    ]);
    const out = JSON.parse(run.stdout) as Results["mappings.list"];
    expect(out.mappings.map((m) => m.id)).toEqual([17, 1, 2]);
    expect(out.next).toBeNull();
  });

  it("asks for the largest pages with --all, and waits out RATE_LIMITED", async () => {
    let refusals = 2;
    const original = server.handler;
    server.handler = (req, ws) => (refusals-- > 0 ? { error: { code: RpcErrors.RATE_LIMITED, message: "slow down" } } : original(req, ws));
    try {
      const run = await pcpctl(["--json", "mappings", "list", "--all"]);
      expect(run.code, run.stderr).toBe(0);
      expect(sent()).toEqual([
        ["mappings.list", { filter: {}, limit: 1000 }],
        ["mappings.list", { filter: {}, limit: 1000 }],
        ["mappings.list", { filter: {}, limit: 1000 }],
        ["mappings.list", { filter: {}, cursor: "p2", limit: 1000 }],
      ]);
    } finally {
      server.handler = original;
    }
  });

  it("shows one page without --all, and says how to get the next", async () => {
    const run = await pcpctl(["mappings", "list"]);
    expect(run.code).toBe(0);
    expect(server.requests).toHaveLength(1);
    expect(run.stderr).toContain("--cursor p2");
  });
});

describe("output", () => {
  it("--json prints the result as the server sent it", async () => {
    for (const [args, method] of [
      [["info"], "server.info"],
      [["stats"], "stats.get"],
      [["config", "show"], "config.get"],
      [["mappings", "get", "--external", "203.0.113.1", "--protocol", "tcp", "--port", "2048"], "mappings.get"],
    ] as [string[], Method][]) {
      const run = await pcpctl(["--json", ...args]);
      expect(run.code).toBe(0);
      expect(JSON.parse(run.stdout)).toEqual(RESULTS[method]);
    }
  });

  it("prints mappings as an aligned table", async () => {
    const run = await pcpctl(["mappings", "list", "--all"]);
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^SHARD +ID +KIND +PROTO +INTERNAL +EXTERNAL +PEER +DIR +FLAGS +MAP-LEFT +OUT-LEFT +FILTERS$/);
    // Expiries as the time left (expiresIn counts from when the record was read).
    expect(lines[1]).toMatch(/^ +0 +17 +dynamic +tcp +10\.0\.0\.1:8080 +203\.0\.113\.1:2048 +- +in +- +1h0m0s +- +0$/);
    expect(lines[2]).toMatch(/ \[2001:db8::1\]:8080 +\[2001:db8:ffff::1\]:2048 +198\.51\.100\.9:443 \(\+1\) +in\+out +nat-pmp +- +1m30s +0$/);
    expect(lines[3]).toMatch(/ held +udp +10\.0\.0\.1:9 +203\.0\.113\.1:2049 +- +- +- +1h0m0s +- /);
    // Text columns start where their header starts; number columns end where it ends.
    const header = lines[0];
    const internal = header.indexOf("INTERNAL");
    const external = header.indexOf("EXTERNAL");
    for (const line of lines.slice(1)) {
      expect(line[internal - 1]).toBe(" ");
      expect(line[internal]).not.toBe(" ");
      expect(line[external]).not.toBe(" ");
      expect(line.length).toBe(header.length);
    }
  });

  it("prints info, health, epoch, usage and stats as tables", async () => {
    const info = await pcpctl(["info"]);
    expect(info.stdout).toMatch(/^protocol +pcpd-control\/2$/m);
    expect(info.stdout).toMatch(/^started +2025-01-01T00:00:00.000Z \(up 1h2m5s\)$/m);
    expect(info.stdout).toMatch(/^role +admin$/m);
    expect(info.stdout).toMatch(/^SHARD +THREAD +LISTEN +EPOCH$/m);
    expect(info.stdout).toMatch(/^ +1 +2 +\[::1\]:5351 +12$/m);

    const health = await pcpctl(["health"]);
    expect(health.stdout).toMatch(/^status +degraded$/m);
    expect(health.stdout).toMatch(/^ +0 +yes +FAILING since 2025-01-01T00:00:00.000Z: journal write: ENOSPC: no space left on device, write$/m);
    expect(health.stdout).toMatch(/^ +1 +no +off$/m);

    const epoch = await pcpctl(["epoch"]);
    expect(epoch.stdout).toBe("SHARD  EPOCH\n    0    100\n    1      7\n");

    const usage = await pcpctl(["subscriber", "usage", "10.0.0.1"]);
    expect(usage.stdout).toBe("SHARD  MAPPINGS  BLOCKS\n    0         3       1\n");

    const stats = await pcpctl(["stats"]);
    expect(stats.code).toBe(0);
    expect(stats.stdout).toMatch(/^packets +42$/m);
    expect(stats.stdout).toMatch(
      /^dataplane +nftables DOWN: 7 installed, 2 pending \(64 KiB of changes not yet decoded\), 1 backlogs let go \(resynchronised\), 9 transactions, 3 failures \(last: nft exited 1\)$/m,
    );
    expect(stats.stdout).toMatch(/^mappingsCreated +5$/m);
    expect(stats.stdout).toMatch(/^SUCCESS +4$/m);
    expect(stats.stdout).not.toMatch(/NO_RESOURCES/); // zero results are left out
    expect(stats.stdout).toMatch(/^nat-pmp result: \(all zero\)$/m);
    expect(stats.stdout).toMatch(/^drop reason: \(none\)$/m);
    expect(stats.stdout).toMatch(/^ +0 +203\.0\.113\.1 +100 +no$/m);
  });

  it("prints one mapping, the results of changes, and the configuration as YAML", async () => {
    const get = await pcpctl(["mappings", "get", "--internal", "10.0.0.1", "--protocol", "tcp", "--port", "8080"]);
    expect(get.stdout).toMatch(/^external +203\.0\.113\.1:2048$/m);
    expect(get.stdout).toMatch(/^filters +198\.51\.100\.7\/32 port 443$/m);
    expect((await pcpctl(["static", "remove", "--internal", "10.0.0.2", "--protocol", "tcp", "--port", "22"])).stdout).toBe("removed\n");
    expect((await pcpctl(["subscriber", "delete", "10.0.0.1"])).stdout).toBe("deleted 3 mappings\n");
    expect((await pcpctl(["epoch", "reset", "--shard", "1"])).stdout).toBe("shard 1: epoch reset, now 0\n");
    expect((await pcpctl(["config", "reload"])).stdout).toBe("configuration reloaded\nrestart needed for: workers, listen\n");
    expect((await pcpctl(["config", "show"])).stdout).toBe("listen:\n  addresses:\n    - 127.0.0.1\n  port: 5351\nnatPmp: enabled\n");
    const add = await pcpctl([
      "static",
      "add",
      "--internal",
      "10.0.0.2",
      "--protocol",
      "tcp",
      "--port",
      "22",
      "--external",
      "203.0.113.2",
      "--external-port",
      "2222",
    ]);
    expect(add.stdout).toMatch(/^kind +static$/m);
  });

  it("exits 1 when mappings get finds nothing", async () => {
    errorFor["mappings.get"] = { result: { mapping: null } };
    const run = await pcpctl(["mappings", "get", "--external", "203.0.113.1", "--protocol", "tcp", "--port", "1"]);
    expect([run.code, run.stdout, run.stderr]).toEqual([1, "", "no such mapping\n"]);
    const json = await pcpctl(["--json", "mappings", "get", "--external", "203.0.113.1", "--protocol", "tcp", "--port", "1"]);
    expect([json.code, JSON.parse(json.stdout)]).toEqual([1, { mapping: null }]);
  });
});

describe("exit codes", () => {
  it.each([
    [[], /no command/],
    [["bogus"], /unknown command: bogus/],
    [["mappings"], /mappings: which one\?/],
    [["mappings", "get", "--internal", "10.0.0.1"], /--protocol is required/],
    [["mappings", "get", "--protocol", "tcp", "--port", "1"], /give --internal or --external/],
    [["mappings", "get", "--internal", "10.0.0.1", "--protocol", "tcp", "--port", "http"], /--port: not a non-negative integer: http/],
    [["mappings", "get", "--internal", "not-an-ip", "--protocol", "tcp", "--port", "80"], /--internal: must be an IPv4 or IPv6 address/],
    [["mappings", "get", "--external", "203.0.113.1", "--protocol", "tcp", "--port", "70000"], /--port: Too big/],
    [["mappings", "list", "--protocol", "icmp"], /--protocol: not a protocol number/],
    [["mappings", "list", "--limit", "5000"], /--limit: Too big/],
    [["mappings", "list", "--kind", "create"], /--kind: one of dynamic, static, held/],
    [["static", "add", "--internal", "10.0.0.1", "--protocol", "tcp", "--port", "22"], /--external is required/],
    [["info", "--internal", "10.0.0.1"], /info does not take --internal/],
    [["info", "extra"], /info takes no arguments/],
    [["subscriber", "usage"], /subscriber usage needs ADDRESS/],
    [["subscriber", "usage", "nope"], /ADDRESS: must be an IPv4 or IPv6 address/],
    [["events", "--kind", "static"], /use --mapping-kind/],
    [["epoch", "reset"], /--shard is required/],
    [["--no-such-option", "info"], /Unknown option '--no-such-option'/],
    [["--timeout", "soon", "info"], /--timeout: not a non-negative integer/],
  ] as [string[], RegExp][])("%j is a usage error (2), and nothing is sent", async (args, message) => {
    const run = await pcpctl(args);
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(message);
    expect(run.stderr).toMatch(/^usage: /m);
    expect(run.stdout).toBe("");
    expect(server.upgrades).toHaveLength(0);
  });

  it("--help prints the usage and exits 0", async () => {
    const run = await pcpctl(["--help"]);
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^usage: pcpctl/);
    for (const word of [
      "info",
      "health",
      "stats",
      "mappings list",
      "mappings get",
      "static add",
      "static remove",
      "subscriber usage",
      "subscriber delete",
      "epoch reset",
      "config show",
      "config reload",
      "events",
      "dataplane watch",
    ]) {
      expect(run.stdout).toContain(`  ${word}`);
    }
    const one = await pcpctl(["static", "add", "--help"]);
    expect(one.stdout).toMatch(/^usage: pcpctl \[global options\] static add --internal A/);
  });

  it("a server error exits 1 with its code and message", async () => {
    errorFor["epoch.reset"] = { error: { code: RpcErrors.FORBIDDEN, message: "epoch.reset needs the admin role" } };
    const run = await pcpctl(["epoch", "reset", "--shard", "0"]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe("pcpctl: server error -32001 FORBIDDEN: epoch.reset needs the admin role (the token from --token)\n");
    errorFor["mappings.addStatic"] = { error: { code: RpcErrors.REFUSED, message: "external port in use", data: 8 } };
    const add = await pcpctl([
      "--json",
      "static",
      "add",
      "--internal",
      "10.0.0.2",
      "--protocol",
      "tcp",
      "--port",
      "22",
      "--external",
      "203.0.113.2",
      "--external-port",
      "2222",
    ]);
    expect(add.code).toBe(1);
    expect(add.stderr).toBe("pcpctl: server error -32003 REFUSED: external port in use (PCP result 8 NO_RESOURCES)\n");
    errorFor["mappings.removeStatic"] = { error: { code: RpcErrors.REFUSED, message: "no static mapping of that endpoint", data: { result: 2 } } };
    const remove = await pcpctl(["static", "remove", "--internal", "10.0.0.2", "--protocol", "tcp", "--port", "22"]);
    expect([remove.code, remove.stderr]).toEqual([
      1,
      "pcpctl: server error -32003 REFUSED: no static mapping of that endpoint (PCP result 2 NOT_AUTHORIZED)\n",
    ]);
    errorFor["config.reload"] = { error: { code: RpcErrors.INTERNAL_ERROR, message: "boom", data: { why: "x" } } };
    const reload = await pcpctl(["config", "reload"]);
    expect([reload.code, reload.stderr]).toEqual([1, 'pcpctl: server error -32603 INTERNAL_ERROR: boom (data: {"why":"x"})\n']);
  });

  it("a refused token or an unreachable server exits 1", async () => {
    const refused = await pcpctl(["--token", "wrong", "info"], { token: false });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/refused the token \(HTTP 401/);
    const port = await closedPort();
    const down = await pcpctl(["--url", `ws://127.0.0.31:${port}/control`, "info"]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/connection refused/);
  });
});

describe("TLS", () => {
  it("trusts the certificate given with --ca", async (ctx) => {
    const certificate = selfSignedCertificate(mkdtempSync(join(tmpdir(), "pcpctl-tls-")));
    if (!certificate) return ctx.skip();
    const tls = await startFakeControlServer({ token: "s3cret", tls: certificate, handler: () => ({ result: { shards: [{ shard: 0, epoch: 5 }] } }) });
    try {
      const ok = await pcpctl(["--url", tls.url, "--ca", certificate.certFile, "epoch"]);
      expect([ok.code, ok.stdout]).toEqual([0, "SHARD  EPOCH\n    0      5\n"]);
      const untrusted = await pcpctl(["--url", tls.url, "epoch"]);
      expect(untrusted.code).toBe(1);
      expect(untrusted.stderr).toMatch(/give the server's CA certificate/);
      const missing = await pcpctl(["--url", tls.url, "--ca", join(home, "nope.pem"), "epoch"]);
      expect(missing.code).toBe(2);
      expect(missing.stderr).toMatch(/--ca: cannot read/);
    } finally {
      await tls.close();
    }
  });
});

describe("token", () => {
  it("comes from --token-file", async () => {
    const file = join(home, "token-a");
    writeFileSync(file, "s3cret\n");
    const run = await pcpctl(["--token-file", file, "epoch"], { token: false });
    expect(run.code).toBe(0);
    expect(server.upgrades[0].authorization).toBe("Bearer s3cret");
  });

  it("comes from PCPCTL_TOKEN before the token file", async () => {
    const file = join(home, "token-b");
    writeFileSync(file, "wrong\n");
    const run = await pcpctl(["--token-file", file, "epoch"], { token: false, env: { PCPCTL_TOKEN: "s3cret" } });
    expect(run.code).toBe(0);
    expect(server.upgrades[0].authorization).toBe("Bearer s3cret");
  });

  it("comes from the default token file of the URL's port ($XDG_RUNTIME_DIR/pcpd/control-<port>.token)", async () => {
    const runtime = join(home, "runtime");
    mkdirSync(join(runtime, "pcpd"), { recursive: true });
    writeFileSync(join(runtime, "pcpd", `control-${new URL(server.url).port}.token`), "s3cret");
    writeFileSync(join(runtime, "pcpd", "control-1.token"), "another instance's");
    writeFileSync(join(runtime, "pcpd", "control.token"), "a server before 0.2");
    const run = await pcpctl(["epoch"], { token: false, env: { XDG_RUNTIME_DIR: runtime } });
    expect(run.code).toBe(0);
    expect(server.upgrades[0].authorization).toBe("Bearer s3cret");
  });

  it("falls back to <tmpdir>/pcpd-<uid>/control-<port>.token when the XDG_RUNTIME_DIR one is missing", async () => {
    const tmp = join(home, "tmp2");
    mkdirSync(join(tmp, `pcpd-${process.getuid!()}`), { recursive: true });
    writeFileSync(join(tmp, `pcpd-${process.getuid!()}`, `control-${new URL(server.url).port}.token`), "s3cret\n");
    const run = await pcpctl(["epoch"], { token: false, env: { XDG_RUNTIME_DIR: join(home, "empty"), TMPDIR: tmp } });
    expect(run.code, run.stderr).toBe(0);
    expect(server.upgrades[0].authorization).toBe("Bearer s3cret");
  });

  it("missing everywhere is a usage error naming the file", async () => {
    const run = await pcpctl(["epoch"], { token: false, env: { XDG_RUNTIME_DIR: join(home, "empty") } });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain(
      `no token: give --token, PCPCTL_TOKEN or --token-file (${join(home, "empty", "pcpd", `control-${new URL(server.url).port}.token`)}: not found)`,
    );
  });
});

describe("events", () => {
  const notice = (kind: MappingEventNotice["kind"], port: number): MappingEventNotice => {
    const { filters: _f, shard: _s, ...m } = mapping({ internalPort: port });
    return { shard: 1, kind, time: 77, mapping: m };
  };

  async function stream(args: string[]): Promise<{ run: Run; lines: string[] }> {
    const child = spawn(process.execPath, [CLI, "--url", server.url, "--token", "s3cret", ...args], {
      env: { PATH: process.env.PATH ?? "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const lines: string[] = [];
    const gotLines = (n: number) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`expected ${n} lines, got: ${stdout} ${stderr}`)), 10_000);
        const check = () => {
          if (stdout.split("\n").length - 1 >= n) {
            clearTimeout(timer);
            resolve();
          }
        };
        child.stdout.on("data", (d) => {
          stdout += d;
          check();
        });
      });
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    await server.waitForRequests(1);
    const three = gotLines(3);
    server.notify("events.mappings", { events: [notice("create", 1)] });
    server.notify("events.dropped", { dropped: 4 });
    server.notify("events.mappings", { events: [notice("delete", 2)] });
    await three;
    child.kill("SIGINT");
    const code = await closed;
    lines.push(...stdout.trimEnd().split("\n"));
    return { run: { code, stdout, stderr }, lines };
  }

  it("streams one line per event until Ctrl-C, then unsubscribes and exits 0", async () => {
    const { run, lines } = await stream(["events", "--internal", "10.0.0.1", "--kind", "create,delete", "--kind", "expire", "--mapping-kind", "dynamic"]);
    expect(server.requests[0]).toMatchObject({
      method: "events.subscribe",
      params: { filter: { internalAddress: "10.0.0.1", kind: "dynamic" }, kinds: ["create", "delete", "expire"] },
    });
    expect(run.code).toBe(0);
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\S+Z shard=1 create +dynamic tcp 10\.0\.0\.1:1 -> 203\.0\.113\.1:2048 in flags=- map-left=1h0m23s out-left=-$/);
    expect(lines[1]).toBe("# 4 events dropped (by the server: read too slowly)");
    expect(lines[2]).toMatch(/ delete /);
    await server.waitForRequests(2);
    expect(server.requests[1].method).toBe("events.unsubscribe");
  });

  it("prints JSON lines with --json", async () => {
    const { run, lines } = await stream(["--json", "events"]);
    expect(run.code).toBe(0);
    expect(server.requests[0].params).toEqual({ filter: {} });
    expect(lines.map((l) => JSON.parse(l))).toEqual([notice("create", 1), { dropped: 4, source: "server" }, notice("delete", 2)]);
  });

  it("exits 1 when the server goes away", async () => {
    const child = spawn(process.execPath, [CLI, "--url", server.url, "--token", "s3cret", "events"], {
      env: { PATH: process.env.PATH ?? "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    await server.waitForRequests(1);
    // Streaming: an event printed means the subscription's reply arrived and the loop runs.
    const printed = waitForLine(child.stdout, / create /);
    server.notify("events.mappings", { events: [notice("create", 1)] });
    await printed;
    server.sockets.at(-1)!.close(1001, "stopping");
    expect(await closed).toBe(1);
    expect(stderr).toMatch(/event stream: connection closed \(1001 stopping\)/);
  });
});

describe("dataplane watch", () => {
  it("subscribes, prints each reset and transaction until Ctrl-C, then unsubscribes", async () => {
    const child = spawn(process.execPath, [CLI, "--url", server.url, "--token", "s3cret", "dataplane", "watch"], {
      env: { PATH: process.env.PATH ?? "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    child.stdout.on("data", (d) => (stdout += d));
    const closed = new Promise<number | null>((resolve) => child.on("close", resolve));
    await server.waitForRequests(1);
    expect(server.requests[0].method).toBe("dataplane.subscribe");
    const mapping = forwarding({ filters: [{ address: "192.0.2.0", prefixLength: 24, port: 0 }] });
    server.notify("dataplane.reset", { seq: 1 });
    server.notify("dataplane.ops", {
      seq: 2,
      ops: [
        { op: "unmap", mapping: { ...mapping, filters: [] } },
        { op: "map", mapping },
      ],
    });
    await waitFor(() => stdout.split("\n").length >= 5, { message: () => stdout });
    child.kill("SIGINT");
    expect(await closed).toBe(0);
    expect(stdout.trimEnd().split("\n")).toEqual([
      "# reset (seq 1): forget every mapping",
      "# transaction seq 2: 2 operations",
      "unmap tcp 198.51.100.1:1234 -> 10.0.0.2:8080 in out",
      "map   tcp 198.51.100.1:1234 -> 10.0.0.2:8080 in out allow=192.0.2.0/24:any",
    ]);
    await server.waitForRequests(2);
    expect(server.requests[1].method).toBe("dataplane.unsubscribe");
  });
});
