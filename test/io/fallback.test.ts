// The dgram fallback: chosen when forced (PCPD_IO=dgram) or when the addon is missing or
// fails to load; the server then says once at start which path it runs and why, serves on
// it, and /metrics shows it (pcpd_io_path). Ports 25040–25049.
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { chooseIo } from "../../src/io/native.js";
import { mapRequest } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { tempDir } from "../helpers/temp.js";

const SERVER = new URL("../../dist/cli/pcp-server.js", import.meta.url).pathname;
const TOKEN = "pio-test-token-0123456789abcdef";
let child: ChildProcess | undefined;

afterEach(async () => {
  const c = child;
  child = undefined;
  if (c && c.exitCode === null && c.signalCode === null) {
    const exited = new Promise((resolve) => c.once("exit", resolve));
    c.kill("SIGTERM");
    await exited;
  }
});

describe("choosing the path", () => {
  it("PCPD_IO=dgram forces the dgram path", () => {
    expect(chooseIo({ PCPD_IO: "dgram" })).toEqual({ path: "dgram", reason: "PCPD_IO=dgram" });
  });
  it("an unknown PCPD_IO value is named, and the dgram path taken", () => {
    expect(chooseIo({ PCPD_IO: "fast" }).reason).toBe("PCPD_IO=fast is not one of batched, dgram, auto");
  });
  it("an addon that is not there, or does not load, leaves the dgram path with the reason", () => {
    expect(chooseIo({ PCPD_IO_ADDON: "/nonexistent/udp_batch.node" })).toMatchObject({ path: "dgram", reason: expect.stringMatching(/^addon not built/) });
    const broken = join(tempDir("pio-addon"), "udp_batch.node");
    writeFileSync(broken, "not an ELF object");
    expect(chooseIo({ PCPD_IO_ADDON: broken })).toMatchObject({ path: "dgram", reason: expect.stringMatching(/^addon failed to load/) });
  });
  it("by default (the addon built): the batched path", () => {
    expect(chooseIo({})).toMatchObject({ path: "batched", reason: "addon loaded" });
  });
});

/** Starts the server with `env`; resolves with its "packet I/O" log line and the control URL once it serves. */
function start(port: number, env: NodeJS.ProcessEnv): Promise<{ io: { io: string; reason: string }; url: string; log: string }> {
  const dir = tempDir("pio-server");
  const file = join(dir, "pcpd.json");
  writeFileSync(
    file,
    JSON.stringify({
      listen: { addresses: ["127.0.0.1"], port },
      persistence: { enabled: false },
      control: { address: "127.0.0.1", port: 0, tokens: [{ token: TOKEN, role: "admin" }] },
      log: { level: "info" },
    }),
  );
  const c = spawn(process.execPath, [SERVER, "--config", file], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...env } });
  child = c;
  return new Promise((resolve, reject) => {
    let log = "";
    let io: { io: string; reason: string } | undefined;
    let url = "";
    let serving = false;
    c.stdout!.on("data", (chunk) => {
      log += chunk;
      for (const line of log.split("\n")) {
        if (!line.startsWith("{")) continue;
        const j = JSON.parse(line);
        if (j.msg?.startsWith("packet I/O")) io = j;
        if (j.msg === "control channel listening") url = j.control;
        if (j.msg === "pcp server listening") serving = true;
      }
      if (io && url && serving) resolve({ io, url, log });
    });
    c.once("exit", (code) => reject(new Error(`server exited ${code}: ${log}`)));
  });
}

async function metrics(url: string): Promise<string> {
  const r = await fetch(`http://${new URL(url).host}/metrics`);
  return r.text();
}

describe("the server on each path", () => {
  it.each([
    ["batched (default)", 25040, {}, "batched", "addon loaded"],
    ["dgram, forced by PCPD_IO=dgram", 25041, { PCPD_IO: "dgram" }, "dgram", "PCPD_IO=dgram"],
    ["dgram, the addon failing to load", 25042, { PCPD_IO_ADDON: "/nonexistent/udp_batch.node" }, "dgram", "addon not built"],
  ] as const)("%s: logged once at start, served, shown in /metrics", async (_name, port, env, path, reason) => {
    const { io, url, log } = await start(port, env);
    expect(io.io).toBe(path);
    expect(io.reason).toContain(reason);
    expect(log.split("\n").filter((l) => l.includes('"packet I/O')).length).toBe(1);
    const reply = (await exchange("127.0.0.1", "127.0.0.1", port, mapRequest({ client: "127.0.0.1", internalPort: 5000 }))).reply;
    expect(reply[3]).toBe(W.RESULT_SUCCESS);
    const text = await metrics(url);
    expect(text).toMatch(new RegExp(`^pcpd_io_path\\{path="${path}"\\} 1$`, "m"));
    expect(text).toMatch(new RegExp(`^pcpd_io_path\\{path="${path === "batched" ? "dgram" : "batched"}"\\} 0$`, "m"));
  });
});
