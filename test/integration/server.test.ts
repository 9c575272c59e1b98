// The pcp-server command as an operator runs it (built dist/, real sockets on loopback),
// and interop with Debian's natpmpc (installed by .ci/run).
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pino } from "pino";
import * as W from "../../src/wire.generated.js";
import { parseConfig } from "../../src/config/schema.js";
import { startServer, type RunningServer } from "../../src/server/server.js";
import { announceRequest, mapRequest } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { tempDir } from "../helpers/temp.js";

const CLI = new URL("../../dist/cli/pcp-server.js", import.meta.url).pathname;
const run = promisify(execFile);

const request = (port: number, payload: Uint8Array, address = "127.0.0.1") => exchange(address, address, port, payload).then((r) => r.reply);

describe("pcp-server command", () => {
  let child: ChildProcess;
  let port = 0;

  beforeAll(async () => {
    // Embedded defaults, persistence included: its data directory ("data") lands in a fresh working directory.
    child = spawn(process.execPath, [CLI, "--listen", "127.0.0.1", "--port", "0"], { cwd: tempDir("pcpd-cwd"), stdio: ["ignore", "pipe", "pipe"] });
    port = await new Promise<number>((resolve, reject) => {
      let out = "";
      child.stdout!.on("data", (chunk) => {
        out += chunk;
        const line = out.split("\n").find((l) => l.includes("pcp server listening"));
        if (line) resolve(JSON.parse(line).listen[0].port);
      });
      child.once("exit", (code) => reject(new Error(`exited ${code}: ${out}`)));
    });
  });

  afterAll(() => {
    if (child.exitCode === null) child.kill("SIGKILL");
  });

  it("serves PCP on its embedded defaults: ANNOUNCE and MAP from the documentation-range pool", async () => {
    const announce = await request(port, announceRequest({ client: "127.0.0.1" }));
    expect(announce[3]).toBe(W.RESULT_SUCCESS);
    const map = await request(port, mapRequest({ client: "127.0.0.1", internalPort: 2222 }));
    expect(map[3]).toBe(W.RESULT_SUCCESS);
    expect(`${map[56]}.${map[57]}.${map[58]}`).toBe("203.0.113");
  });

  it("serves NAT-PMP on the same socket", async () => {
    const reply = await request(port, Uint8Array.of(0, 0));
    expect(Array.from(reply.subarray(0, 4))).toEqual([0, 0x80, 0, 0]);
  });

  it("stops cleanly on SIGTERM", async () => {
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });

  it("refuses a bad configuration with a message naming the field, exit code 2", async () => {
    const r = await run(process.execPath, [CLI, "--port", "99999"]).catch((e) => e);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("listen.port");
    const u = await run(process.execPath, [CLI, "--bogus"]).catch((e) => e);
    expect(u.code).toBe(2);
    expect(u.stderr).toContain("usage: pcp-server");
  });

  it("refuses a PCPD_TEST_CLOCK that is not whole seconds (the test clock: src/core/clock.ts), exit code 2", async () => {
    const r = await run(process.execPath, [CLI, "--listen", "127.0.0.1", "--port", "0"], { env: { ...process.env, PCPD_TEST_CLOCK: "1h" } }).catch((e) => e);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("PCPD_TEST_CLOCK");
  });
});

describe("SIGHUP reload", () => {
  it("applies a changed NAT-PMP mode without a restart; a broken file leaves the running configuration", async () => {
    const dir = tempDir("pcpd-hup");
    const file = join(dir, "pcpd.yaml");
    writeFileSync(file, "listen:\n  addresses: [127.0.0.1]\n  port: 0\npersistence:\n  enabled: false\n");
    const child = spawn(process.execPath, [CLI, "--config", file], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    const seen = (text: string) =>
      new Promise<string>((resolve) => {
        const check = () => {
          const line = out.split("\n").find((l) => l.includes(text));
          if (line) {
            child.stdout!.off("data", onData);
            resolve(line);
          }
        };
        const onData = (chunk: Buffer) => {
          out += chunk;
          check();
        };
        child.stdout!.on("data", onData);
        check();
      });
    try {
      const port = JSON.parse(await seen("pcp server listening")).listen[0].port;
      expect((await request(port, Uint8Array.of(0, 0)))[1]).toBe(0x80);
      writeFileSync(file, "listen:\n  addresses: [127.0.0.1]\n  port: 0\npersistence:\n  enabled: false\nnatPmp: silent\npool:\n  blockSize: 256\n");
      child.kill("SIGHUP");
      const reloaded = JSON.parse(await seen("configuration reloaded"));
      expect(reloaded.restartNeededFor).toEqual(["pool.blockSize"]);
      await expect(request(port, Uint8Array.of(0, 0))).rejects.toThrow(/no reply/);
      expect((await request(port, announceRequest({ client: "127.0.0.1" })))[3]).toBe(W.RESULT_SUCCESS);
      writeFileSync(file, "natPmp: [\n");
      child.kill("SIGHUP");
      expect(await seen("configuration reload refused")).toContain("not valid YAML");
      await expect(request(port, Uint8Array.of(0, 0))).rejects.toThrow(/no reply/);
    } finally {
      child.kill("SIGKILL");
    }
  });
});

describe("interop: Debian natpmpc", () => {
  const ADDRESS = "127.0.0.5"; // its own loopback address, so port 5351 is free for it
  let server: RunningServer | undefined;
  let natpmpc = true;

  beforeAll(async () => {
    natpmpc = await run("natpmpc", ["-h"]).then(
      () => true,
      (e) => e.code !== "ENOENT",
    );
    if (!natpmpc) return;
    server = await startServer(
      parseConfig({ listen: { addresses: [ADDRESS] }, log: { level: "silent" }, persistence: { enabled: false } }),
      pino({ level: "silent" }),
    );
  });
  afterAll(() => server?.stop());

  it("maps, reports the public address, and deletes", async (ctx) => {
    if (!natpmpc) ctx.skip(); // natpmpc is installed by .ci/run (apt-get install natpmpc)
    const map = await run("natpmpc", ["-g", ADDRESS, "-a", "8080", "8080", "tcp", "3600"], { timeout: 5000 });
    expect(map.stdout).toMatch(/Public IP address : 203\.0\.113\.\d+/);
    expect(map.stdout).toMatch(/Mapped public port \d+ protocol TCP to local port 8080 liftime 3600/);
    expect((await server!.stats()).engine.mappings).toBe(1n);
    const del = await run("natpmpc", ["-g", ADDRESS, "-a", "8080", "8080", "tcp", "0"], { timeout: 5000 });
    expect(del.stdout).toMatch(/Mapped public port 0 protocol TCP to local port 8080 liftime 0/);
    expect((await server!.stats()).engine.mappings).toBe(0n);
  });
});
