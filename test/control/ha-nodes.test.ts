// The HA operator surface against the real thing: two servers (startServer, in this
// process, real workers) on a real nats-server, HA on, each with its control channel:
// ha.status and /healthz and /metrics as the HA manager reports them, pcpctl ha status
// and ha switchover (the built CLI) moving a group, the refusals a switchover can meet,
// and the degraded report when NATS goes away. Hooks are empty: loopback addresses are
// always local.
//
// Needs the HA manager (src/ha/manager.ts, branch h/main) and the shard side
// (src/replication/, branch h/worker): skipped until both are merged.
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import { pino } from "pino";
import { ControlClient, ControlError } from "../../src/client/control-client.js";
import { parseConfig } from "../../src/config/schema.js";
import { RpcErrors } from "../../src/control/protocol.js";
import { startControl, type RunningControl } from "../../src/control/server.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { natsUnavailable, startNatsCluster, type NatsCluster } from "../helpers/nats.js";
import { waitFor } from "../helpers/wait.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const CLI = join(ROOT, "dist/cli/pcpctl.js");
const merged =
  existsSync(join(ROOT, "src/ha/manager.ts")) && !readFileSync(join(ROOT, "src/shard/shard.ts"), "utf8").includes("throw new ConfigError([`ha.enabled: shard");
const skip = natsUnavailable() ?? (merged ? undefined : "the HA manager (h/main) and shard side (h/worker) are not on this branch");

const EAST = "127.0.0.61"; // group east, shard 0, preferred by nA
const WEST = "127.0.0.62"; // group west, shard 1, preferred by nB
const PORT = 24_650;
const TOKEN = "ha-nodes-admin-token-0123456789";

interface Node {
  name: string;
  server: RunningServer;
  control: RunningControl;
  client: ControlClient;
  base: string;
}

describe.skipIf(skip)("HA operations on two real nodes and a real nats-server", () => {
  let nats: NatsCluster;
  const nodes: Node[] = [];

  async function start(name: string): Promise<Node> {
    const config = parseConfig({
      listen: { addresses: [EAST, WEST], port: PORT },
      workers: 2,
      persistence: { enabled: false },
      log: { level: "silent" },
      control: { address: "127.0.0.1", port: 0, tokens: [{ token: TOKEN, role: "admin" }] },
      ha: {
        enabled: true,
        node: name,
        cluster: "ops",
        replicas: 1,
        leaseMs: 1500,
        safetyMarginMs: 300,
        nats: { servers: nats.urls, timeoutMs: 500 },
        groups: [
          { name: "east", addresses: [EAST], preferred: "nA" },
          { name: "west", addresses: [WEST], preferred: "nB" },
        ],
      },
    });
    const log = pino({ level: "silent" });
    const server = await startServer(config, log);
    const control = await startControl({ config: config.control, server, log, version: "test", reloadConfig: async () => [] });
    const client = await ControlClient.connect(`ws://127.0.0.1:${control.port}/control`, { token: TOKEN });
    const node = { name, server, control, client, base: `http://127.0.0.1:${control.port}` };
    nodes.push(node);
    return node;
  }
  const role = async (n: Node, group: string) => (await n.client.call("ha.status", {})).groups.find((g) => g.name === group)?.role;
  const pcpctl = async (n: Node, args: string[]) => {
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [
        CLI,
        "--url",
        `ws://127.0.0.1:${n.control.port}/control`,
        "--token",
        TOKEN,
        ...args,
      ]);
      return { code: 0, stdout, stderr };
    } catch (e) {
      return e as { code: number; stdout: string; stderr: string };
    }
  };

  beforeAll(async () => {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: build first`);
    nats = await startNatsCluster({ size: 1, basePort: 24_600 });
  }, 60_000);
  afterAll(async () => {
    for (const n of nodes) {
      await n.client.close();
      await n.control.stop();
      await n.server.stop();
    }
    await nats?.stop();
  });

  it("status, health and metrics as the manager reports them; a switchover by pcpctl; its refusals; NATS lost", async () => {
    const [a, b] = await Promise.all([start("nA"), start("nB")]);
    await waitFor(async () => (await role(a, "east")) === "active" && (await role(b, "west")) === "active", { timeout: 20_000, interval: 50 });

    const status = await a.client.call("ha.status", {});
    expect(status).toMatchObject({ node: "nA", cluster: "ops", nats: "connected", natsServer: nats.nodes[0].name });
    expect(status.groups.map((g) => [g.name, g.role, g.holder, g.shards])).toEqual([
      ["east", "active", "nA", [0]],
      ["west", "standby", "nB", [1]],
    ]);
    expect(status.groups[0].leaseRemainingMs).toBeGreaterThan(0);
    expect(status.groups[0].lastTakeover).toMatchObject({ to: "nA", reason: "vacant" });

    expect(await (await fetch(`${a.base}/healthz`)).text()).toBe(
      "ok\nha: nats connected\nha group east: active, lease holder nA\nha group west: standby, lease holder nB\n",
    );
    const metrics = parsePrometheusTextFormat(await (await fetch(`${a.base}/metrics`)).text());
    const sample = (name: string, labels: Record<string, string>) =>
      metrics.find((f) => f.name === name)?.metrics.find((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v))?.value;
    expect(sample("pcpd_ha_role", { group: "east", role: "active" })).toBe("1");
    expect(sample("pcpd_ha_role", { group: "west", role: "standby" })).toBe("1");
    expect(sample("pcpd_ha_nats_connected", {})).toBe("1");
    expect(Number(sample("pcpd_ha_term", { group: "east" }))).toBeGreaterThan(0);

    const table = await pcpctl(b, ["ha", "status"]);
    expect(table.stdout).toMatch(new RegExp(`^nats +connected \\(server ${nats.nodes[0].name}\\)$`, "m"));
    expect(table.stdout).toMatch(/^east +standby +nA /m);
    expect(table.stdout).toMatch(/^west +active +nB /m);

    // Asked of the standby: NOT_ACTIVE, naming the holder.
    const wrong = await b.client.call("ha.switchover", { group: "east" }).catch((e: ControlError) => e);
    expect(wrong).toBeInstanceOf(ControlError);
    expect([(wrong as ControlError).code, (wrong as ControlError).data]).toEqual([RpcErrors.NOT_ACTIVE, { error: "HA_NOT_ACTIVE", group: "east" }]);
    expect((wrong as ControlError).message).toContain("nA");

    // Planned: east to nB, by pcpctl.
    const moved = await pcpctl(a, ["ha", "switchover", "east", "--to", "nB"]);
    expect([moved.code, moved.stderr]).toEqual([0, ""]);
    expect(moved.stdout).toMatch(/^group east: switched over from nA to nB in \d/);
    await waitFor(async () => (await role(b, "east")) === "active" && (await role(a, "east")) === "standby", { timeout: 15_000, interval: 50 });
    expect((await b.client.call("ha.status", {})).groups[0].lastTakeover).toMatchObject({ from: "nA", to: "nB", reason: "switchover", epochContinued: true });

    // NATS gone: the active node reports its groups degraded, then NATS not connected.
    await nats.nodes[0].kill("SIGKILL");
    await waitFor(async () => (await b.client.call("server.health", {})).status === "degraded", { timeout: 10_000, interval: 50 });
    expect(await (await fetch(`${b.base}/healthz`)).text()).toMatch(/^degraded: ha/);
    const down = parsePrometheusTextFormat(await (await fetch(`${b.base}/metrics`)).text());
    expect(down.find((f) => f.name === "pcpd_ha_nats_connected")?.metrics[0].value).toBe("0");
  });
});
