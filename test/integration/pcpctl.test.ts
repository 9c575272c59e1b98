// pcpctl against a real pcp-server process (as `npm start` runs it): every method of the
// control channel end to end, with the generated admin token file and a read token.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { description, mapRequest, nonceOf } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { waitFor } from "../helpers/wait.js";
import { tempDir } from "../helpers/temp.js";

const SERVER = new URL("../../dist/cli/pcp-server.js", import.meta.url).pathname;
const PCPCTL = new URL("../../dist/cli/pcpctl.js", import.meta.url).pathname;
const UDP = "127.0.0.46";
const WRONG_TOKEN = "a-token-this-server-never-issued";
const run = promisify(execFile);
const dir = tempDir("pcpd-pcpctl");
const tokenFile = join(dir, "control.token");
let child: ChildProcess;
let url = "";
let udpPort = 0;
let mappedAt = 0; // when the two mappings were granted
let log = "";

beforeAll(async () => {
  const config = join(dir, "pcpd.json");
  writeFileSync(
    config,
    JSON.stringify({
      listen: { addresses: [UDP], port: 0 },
      control: { port: 0, tokenFile },
      log: { level: "info" },
      persistence: { enabled: false },
    }),
  );
  child = spawn(process.execPath, [SERVER, "--config", config], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on("data", (chunk) => {
      log += chunk;
      for (const line of log.split("\n")) {
        if (line.includes("control channel listening")) url = JSON.parse(line).control;
        if (line.includes("pcp server listening")) udpPort = JSON.parse(line).listen[0].port;
      }
      if (url && udpPort) resolve();
    });
    child.once("exit", (code) => reject(new Error(`server exited ${code}: ${log}`)));
  });
  // Two mappings of one subscriber, made over PCP.
  for (const port of [8080, 8081]) {
    const r = await exchange(
      UDP,
      UDP,
      udpPort,
      mapRequest({ client: UDP, internalPort: port, nonce: nonceOf(1), lifetime: 600 }, port === 8080 ? [description("web camera")] : []),
    );
    expect(r.reply[3]).toBe(W.RESULT_SUCCESS);
  }
  mappedAt = Date.now();
}, 30_000);

afterAll(() => {
  if (child.exitCode === null) child.kill("SIGKILL");
});

/** Runs pcpctl with the generated admin token (or `token`); JSON output parsed. */
async function ctl(args: string[], token?: string): Promise<any> {
  const auth = token ? ["--token", token] : ["--token-file", tokenFile];
  const { stdout } = await run(process.execPath, [PCPCTL, "--url", url, ...auth, "--json", ...args]);
  return JSON.parse(stdout);
}

describe("pcpctl against pcp-server", () => {
  it("info, health, stats, epoch", async () => {
    expect(await ctl(["info"])).toMatchObject({ protocol: "pcpd-control/2", role: "admin", workers: 1 });
    expect((await ctl(["health"])).status).toBe("ok");
    const stats = await ctl(["stats"]);
    expect(stats.engine.mappings).toBe(2);
    expect(stats.pcpResults.SUCCESS).toBe(2);
    expect((await ctl(["epoch"])).shards).toHaveLength(1);
  });

  it("mappings list / get; subscriber usage", async () => {
    const list = await ctl(["mappings", "list", "--internal", UDP, "--all"]);
    const rows = Array.isArray(list) ? list : list.mappings;
    expect(rows.map((m: { internalPort: number }) => m.internalPort).sort()).toEqual([8080, 8081]);
    const got = await ctl(["mappings", "get", "--internal", UDP, "--protocol", "tcp", "--port", "8080"]);
    const mapping = got.mapping ?? got;
    expect(mapping).toMatchObject({ internalAddress: UDP, internalPort: 8080, kind: "dynamic", description: "web camera" }); // RFC 7220
    // Time left: the granted 600 s less what has passed since (a loaded machine takes seconds to get here).
    const elapsed = Math.ceil((Date.now() - mappedAt) / 1000);
    expect(mapping.expiresIn).toBeLessThanOrEqual(600);
    expect(mapping.expiresIn).toBeGreaterThanOrEqual(600 - elapsed - 1);
    const byExternal = await ctl(["mappings", "get", "--external", mapping.externalAddress, "--protocol", "tcp", "--port", String(mapping.externalPort)]);
    expect((byExternal.mapping ?? byExternal).internalPort).toBe(8080);
    expect((await ctl(["subscriber", "usage", UDP])).shards[0]).toMatchObject({ mappings: 2, blocks: 1 });
  });

  it("static add / remove; subscriber delete; config show / reload; epoch reset", async () => {
    const added = await ctl([
      "static",
      "add",
      "--internal",
      "192.0.2.50",
      "--protocol",
      "udp",
      "--port",
      "5060",
      "--external",
      "203.0.113.9",
      "--external-port",
      "5060",
    ]);
    expect((added.mapping ?? added).kind).toBe("static");
    expect(await ctl(["static", "remove", "--internal", "192.0.2.50", "--protocol", "udp", "--port", "5060"])).toEqual({ removed: true });
    expect(await ctl(["subscriber", "delete", UDP])).toEqual({ deleted: 2 });
    const config = await ctl(["config", "show"]);
    expect((config.config ?? config).listen.addresses).toEqual([UDP]);
    expect(await ctl(["config", "reload"])).toEqual({ restartNeededFor: [] });
    const reset = await ctl(["epoch", "reset", "--shard", "0"]);
    expect(reset.shard).toBe(0);
  });

  it("events stream until stopped", async () => {
    const events = spawn(process.execPath, [PCPCTL, "--url", url, "--token-file", tokenFile, "--json", "events"], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    events.stdout!.on("data", (c) => (out += c));
    const created = () =>
      out
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l))
        .map((l) => l.event ?? l)
        .filter((e) => e.kind === "create");
    // pcpctl prints nothing when its subscription holds, so mappings are made, each with a
    // new port, until one is streamed (those made before the subscription are not).
    let port = 9000;
    const streamed = await waitFor(
      async () => {
        if (created().length > 0) return created();
        await exchange(UDP, UDP, udpPort, mapRequest({ client: UDP, internalPort: port++, nonce: nonceOf(2), lifetime: 600 }));
        return undefined;
      },
      { interval: 50, message: () => `made ports 9000..${port - 1}; got ${out}` },
    );
    expect(streamed[0].mapping.internalPort).toBeGreaterThanOrEqual(9000);
    expect(streamed[0].mapping.internalPort).toBeLessThan(port);
    const exited = new Promise((r) => events.once("exit", r));
    events.kill("SIGINT");
    expect(await exited).toBe(0); // stopped cleanly
  });

  it("refuses a wrong token (exit 1 with the reason)", async () => {
    const r = await run(process.execPath, [PCPCTL, "--url", url, "--token", WRONG_TOKEN, "info"]).catch((e) => e);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/401/);
  });
});
