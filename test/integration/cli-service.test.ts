// Issue #17 items 3–5 against the built binaries and real servers on loopback (ports
// 25510–25519): pcp-server's and pcpctl's --help/--version, the start summary line, pretty
// logs, per-instance token files (two servers at once), pcpctl's tables (time left, PEER remote peer,
// NAT-PMP result names), failures without stack traces, and `npm start` (no rebuild when
// current; a SIGTERM to npm stops the server). systemd's notifications: test/packaging/.
import { execFile, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createSocket } from "node:dgram";
import { existsSync, mkdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { mapRequest, natPmpMap, nonceOf, peerRequest } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { waitFor } from "../helpers/wait.js";
import { tempDir } from "../helpers/temp.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const SERVER = join(ROOT, "dist/cli/pcp-server.js");
const PCPCTL = join(ROOT, "dist/cli/pcpctl.js");
const { version } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
const run = promisify(execFile);
const dir = tempDir("pcl-cli");
const runtime = join(dir, "runtime"); // XDG_RUNTIME_DIR of the servers and of pcpctl
const ENV = { ...process.env, XDG_RUNTIME_DIR: runtime };

interface Server {
  child: ChildProcess;
  out: string;
  udp: number;
  control: number;
  url: string;
  exited: Promise<number | null>;
}

function configFile(name: string, udp: number, control: number, extra: object = {}): string {
  const path = join(dir, `${name}.json`);
  writeFileSync(
    path,
    JSON.stringify({ listen: { addresses: ["127.0.0.1"], port: udp }, control: { port: control }, persistence: { enabled: false }, ...extra }),
  );
  return path;
}

async function startServer(name: string, udp: number, control: number, args: string[] = [], env: NodeJS.ProcessEnv = ENV): Promise<Server> {
  const child = spawn(process.execPath, [SERVER, "--config", configFile(name, udp, control), ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  const s: Server = { child, out: "", udp, control, url: `ws://127.0.0.1:${control}/control`, exited: new Promise((r) => child.once("exit", r)) };
  child.stdout!.on("data", (c) => (s.out += c));
  child.stderr!.on("data", (c) => (s.out += c));
  await waitFor(() => s.out.includes("pcp-server ready") || child.exitCode !== null, { timeout: 30_000, message: () => s.out });
  expect(child.exitCode, s.out).toBeNull();
  return s;
}

async function stop(s: Server): Promise<number | null> {
  if (s.child.exitCode === null) s.child.kill("SIGTERM");
  return s.exited;
}

/** Runs pcpctl; never throws: exit code, stdout, stderr. */
async function pcpctl(args: string[], env: NodeJS.ProcessEnv = ENV): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [PCPCTL, ...args], { env });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

const servers: Server[] = [];
afterAll(async () => {
  for (const s of servers) if (s.child.exitCode === null) s.child.kill("SIGKILL");
});

describe("--help and --version", () => {
  it("pcp-server: --help lists every flag, one line each; -h the same; --version", async () => {
    const help = (await run(process.execPath, [SERVER, "--help"])).stdout;
    for (const flag of ["--config FILE", "--listen ADDRESS", "--port N", "--log-level LEVEL", "--log-format FORMAT", "--help", "--version"])
      expect(help.split("\n").filter((l) => l.includes(flag)).length, flag).toBeGreaterThanOrEqual(1);
    expect((await run(process.execPath, [SERVER, "-h"])).stdout).toBe(help);
    expect((await run(process.execPath, [SERVER, "--version"])).stdout).toBe(`pcp-server ${version}\n`);
    const bad = spawnSync(process.execPath, [SERVER, "--log-format", "xml"], { encoding: "utf8" });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/^--log-format: pretty or json, not xml\nusage: pcp-server/);
  });

  it("pcpctl: --help and --version", async () => {
    const help = await pcpctl(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^usage: pcpctl/);
    expect(help.stdout).toContain("--version");
    expect(help.stdout).toContain("control-5380.token");
    expect(await pcpctl(["--version"])).toEqual({ code: 0, stdout: `pcpctl ${version}\n`, stderr: "" });
  });

  it("after npm install (and the build), `npx pcpctl` and `npx pcp-server` run this package's bins (npm exec finds the project's own)", async () => {
    // --no: never fetch a package of that name from a registry.
    expect((await run("npx", ["--no", "--", "pcpctl", "--version"], { cwd: ROOT })).stdout).toBe(`pcpctl ${version}\n`);
    expect((await run("npx", ["--no", "--", "pcp-server", "--version"], { cwd: ROOT })).stdout).toBe(`pcp-server ${version}\n`);
  });
});

describe("two servers of one user on one host", () => {
  let a: Server;
  let b: Server;
  beforeAll(async () => {
    a = await startServer("a", 25510, 25511, ["--log-format", "json"]);
    b = await startServer("b", 25512, 25513, ["--log-format", "pretty"]);
    servers.push(a, b);
  }, 60_000);

  it("each writes its own token file, keyed by its control port, and pcpctl picks the one of the URL it is given", async () => {
    const fileA = join(runtime, "pcpd", "control-25511.token");
    const fileB = join(runtime, "pcpd", "control-25513.token");
    expect(readFileSync(fileA, "utf8")).not.toBe(readFileSync(fileB, "utf8"));
    for (const s of [a, b]) {
      const info = await pcpctl(["--url", s.url, "--json", "info"]);
      expect(info.code, info.stderr).toBe(0);
      expect(JSON.parse(info.stdout).role).toBe("admin");
    }
  });

  it("an unauthorised pcpctl names the token file it used; no stack trace", async () => {
    const wrong = join(runtime, "pcpd", "control-25513.token"); // b's token, at a
    const r = await pcpctl(["--url", a.url, "--token-file", wrong, "info"]);
    expect(r.code).toBe(1);
    expect(r.stderr, r.stderr).toMatch(new RegExp(`^pcpctl: ${a.url} refused the token \\(HTTP 401[^)]*\\); the token came from token file ${wrong}\n$`));
    const env = await pcpctl(["--url", a.url, "info"], { ...ENV, PCPCTL_TOKEN: "not-the-token-of-anyone" });
    expect(env.stderr).toMatch(/; the token came from \$PCPCTL_TOKEN\n$/);
  });

  it("the start summary line: configuration source, listen addresses, pool, dataplane (and its warning), persistence, control URL, token file", () => {
    const lines = a.out
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l));
    const summary = lines.filter((l) => l.msg === "pcp-server ready");
    expect(summary).toHaveLength(1);
    expect(summary[0]).toMatchObject({
      config: `file ${join(dir, "a.json")}`,
      listen: ["127.0.0.1:25510"],
      pool: ["203.0.113.0/28"],
      dataplane: "none",
      persistence: "off",
      control: a.url,
      tokenFile: join(runtime, "pcpd", "control-25511.token"),
    });
    expect(lines.some((l) => l.level === 40 && /dataplane.backend is "none": no NAT is programmed/.test(l.msg))).toBe(true);
  });

  it("--log-format pretty: human-readable lines, not JSON", () => {
    const ready = b.out.split("\n").find((l) => l.includes("pcp-server ready"));
    expect(ready).toMatch(/^\[[\d-]+ [\d:.]+ [+-]?\d*\] INFO: pcp-server ready$/);
    expect(b.out).toMatch(/\n\s+control: "ws:\/\/127\.0\.0\.1:25513\/control"\n/);
    expect(
      b.out.split("\n").filter((l) => l.startsWith("{")),
      b.out,
    ).toEqual([]);
  });

  it("tables: expiries as time left, the PEER remote peer, NAT-PMP results by name, no cursor when nothing is left", async () => {
    const peer = await exchange(
      "127.0.0.1",
      "127.0.0.1",
      a.udp,
      peerRequest({ client: "127.0.0.1", internalPort: 7000, lifetime: 600, remoteAddress: "198.51.100.7", remotePort: 443 }),
    );
    expect(peer.reply[3]).toBe(W.RESULT_SUCCESS);
    const map = await exchange("127.0.0.1", "127.0.0.1", a.udp, mapRequest({ client: "127.0.0.1", internalPort: 7001, nonce: nonceOf(2), lifetime: 3600 }));
    expect(map.reply[3]).toBe(W.RESULT_SUCCESS);
    const natpmp = await exchange("127.0.0.1", "127.0.0.1", a.udp, natPmpMap(1, 7002, 0, 600));
    expect(natpmp.reply[3]).toBe(0);

    const list = await pcpctl(["--url", a.url, "mappings", "list"]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stderr).toBe(""); // no "more: --cursor": nothing is left
    const lines = list.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^SHARD +ID +KIND +PROTO +INTERNAL +EXTERNAL +PEER +DIR +FLAGS +MAP-LEFT +OUT-LEFT +FILTERS$/);
    expect(lines.find((l) => l.includes("127.0.0.1:7000"))).toMatch(/ 198\.51\.100\.7:443 +out +- +- +(9m[45]\ds|10m0s) +0$/);
    expect(lines.find((l) => l.includes("127.0.0.1:7001"))).toMatch(/ - +in +- +(59m[45]\ds|1h0m0s) +- +0$/);
    expect(lines.find((l) => l.includes("127.0.0.1:7002"))).toMatch(/ in +nat-pmp +(9m[45]\ds|10m0s) +- +0$/);

    const get = await pcpctl(["--url", a.url, "mappings", "get", "--internal", "127.0.0.1", "--protocol", "udp", "--port", "7000"]);
    expect(get.stdout).toMatch(/\npeer +198\.51\.100\.7:443\n/);
    expect(get.stdout).toMatch(/\nout expires in +(9m[45]\ds|10m0s)\n/);
    const json = JSON.parse(
      (await pcpctl(["--url", a.url, "--json", "mappings", "get", "--internal", "127.0.0.1", "--protocol", "udp", "--port", "7000"])).stdout,
    );
    expect(json.mapping.peer).toEqual({ address: "198.51.100.7", port: 443, count: 1 });

    const stats = await pcpctl(["--url", a.url, "stats"]);
    expect(stats.stdout).toMatch(/\nNAT-PMP RESULT +COUNT\nSUCCESS \(0\) +1\n/);
  });

  it("a stream refused by the server (dataplane watch without the events backend): a clear message, exit 1, no stack trace", async () => {
    const r = await pcpctl(["--url", a.url, "dataplane", "watch"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('pcpctl: server error -32006 NOT_ENABLED: dataplane.backend is "none", not "events"\n');
    const down = await pcpctl(["--url", "ws://127.0.0.1:25519/control", "--token", "x".repeat(16), "info"]);
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^pcpctl: cannot connect to ws:\/\/127\.0\.0\.1:25519\/control: .*\n$/);
    expect(down.stderr).not.toMatch(/\n\s+at /);
  });

  it("a clean stop removes its token file (the other instance's stays)", async () => {
    expect(await stop(b)).toBe(0);
    expect(existsSync(join(runtime, "pcpd", "control-25513.token"))).toBe(false);
    expect(existsSync(join(runtime, "pcpd", "control-25511.token"))).toBe(true);
    expect(await stop(a)).toBe(0);
    expect(existsSync(join(runtime, "pcpd", "control-25511.token"))).toBe(false);
  });
});

describe("packaging", () => {
  it.skipIf(spawnSync("systemd-analyze", ["--version"]).status !== 0)("systemd-analyze verify accepts the unit", () => {
    const unit = join(dir, "pcp-server.service");
    writeFileSync(unit, readFileSync(join(ROOT, "packaging/pcp-server.service"), "utf8"));
    const r = spawnSync("systemd-analyze", ["verify", unit], { encoding: "utf8" });
    // Other units of this host may draw warnings; none may name this one.
    expect(`${r.stdout}${r.stderr}`.split("\n").filter((l) => l.includes("pcp-server.service"))).toEqual([]);
    expect(r.status).toBe(0);
  });

  it("LICENSE is the license package.json names", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { license: string };
    expect(pkg.license).toBe("Apache-2.0");
    expect(readFileSync(join(ROOT, "LICENSE"), "utf8")).toMatch(/^\s*Apache License\s+Version 2\.0, January 2004/);
  });
});

describe("npm start", () => {
  it("the staleness check: current, an input newer than its outputs, an output missing", () => {
    const root = join(dir, "tree");
    const files = ["dist/cli/pcp-server.js", "build/debug.wasm", "build/release.wasm", "src/a.ts", "assembly/b.ts", "tsconfig.json"];
    for (const f of files) {
      mkdirSync(join(root, f, ".."), { recursive: true });
      writeFileSync(join(root, f), "");
    }
    const at = (f: string, seconds: number) => utimesSync(join(root, f), seconds, seconds);
    for (const d of ["src", "assembly", "dist/cli", "build"]) at(d, 1000);
    for (const f of files) at(f, f.startsWith("dist") || f.startsWith("build") ? 2000 : 1000);
    const check = () =>
      spawnSync(
        process.execPath,
        [
          "--input-type=module",
          "-e",
          `import { staleness } from ${JSON.stringify(join(ROOT, "scripts/build-staleness.mjs"))}; console.log(staleness(${JSON.stringify(root)}) ?? "current")`,
        ],
        { encoding: "utf8" },
      ).stdout;
    expect(check()).toBe("current\n");
    at("src/a.ts", 3000);
    expect(check()).toBe("src changed since dist/cli/pcp-server.js was built\n");
    at("src/a.ts", 1000);
    at("assembly/b.ts", 3000);
    expect(check()).toBe("assembly changed since dist/cli/pcp-server.js was built\n");
    at("assembly/b.ts", 1000);
    rmSync(join(root, "build/release.wasm"));
    expect(check()).toBe("build/release.wasm is missing\n");
  });

  it("does not rebuild a current build, and a SIGTERM to npm stops the server: process gone, ports free", async () => {
    const staleness = spawnSync(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `import { staleness } from ${JSON.stringify(join(ROOT, "scripts/build-staleness.mjs"))}; console.log(staleness(${JSON.stringify(ROOT)}) ?? "current")`,
      ],
      { encoding: "utf8" },
    );
    expect(staleness.stdout).toBe("current\n"); // the suite runs after npm run build
    const config = configFile("c", 25514, 25515);
    const npm = spawn("npm", ["start", "--", "--config", config, "--log-format", "json"], {
      cwd: ROOT,
      env: ENV,
      stdio: ["ignore", "pipe", "pipe"],
      detached: false,
    });
    let out = "";
    npm.stdout!.on("data", (c) => (out += c));
    npm.stderr!.on("data", (c) => (out += c));
    const exited = new Promise<number | null>((r) => npm.once("exit", r));
    try {
      await waitFor(() => out.includes("pcp-server ready") || npm.exitCode !== null, { timeout: 30_000, message: () => out });
      expect(out).not.toContain("npm start: building");
      const serverPid = JSON.parse(out.split("\n").find((l) => l.includes("pcp-server ready"))!).pid as number;
      npm.kill("SIGTERM");
      await exited;
      await waitFor(() => !alive(serverPid), { message: () => `pcp-server ${serverPid} still running: ${out}` });
      expect(out).toContain('"msg":"pcp server stopped"');
      // Its ports are free again.
      const udp = createSocket("udp4");
      await new Promise<void>((resolve, reject) => {
        udp.once("error", reject);
        udp.bind(25514, "127.0.0.1", () => resolve());
      });
      udp.close();
      expect(existsSync(join(runtime, "pcpd", "control-25515.token"))).toBe(false);
    } finally {
      if (npm.exitCode === null) npm.kill("SIGKILL");
    }
  }, 60_000);
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
