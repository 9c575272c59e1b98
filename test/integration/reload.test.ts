// SIGHUP as an operator meets it: an empty or truncated file, and a pool the running engine
// cannot take, are refused as a whole (one log line with the reason) and change nothing —
// MAP keeps being served from the pool in force, never UNSUPP_PROTOCOL. A complete file
// with an applicable pool is applied.
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { assigned, mapRequest } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { waitFor } from "../helpers/wait.js";
import { tempDir } from "../helpers/temp.js";

const CLI = new URL("../../dist/cli/pcp-server.js", import.meta.url).pathname;
const A = "127.0.0.64";
/** 254 + 2 addresses: the engine's 256-entry address table is full. */
const FULL_POOL = ["192.0.2.0/24", "198.51.100.1", "198.51.100.2"];
// JSON is YAML (flow style).
const complete = (pool: string[]) =>
  JSON.stringify({ listen: { addresses: [A], port: 0 }, pool: { addresses: pool }, persistence: { enabled: false }, control: { enabled: false } });

describe("SIGHUP: validate everything, then apply", () => {
  it("refuses an empty file, a truncated file, a pool beyond the engine's table and a pool without IPv4; applies a complete one", async () => {
    const dir = tempDir("pcpd-reload");
    const file = join(dir, "pcpd.yaml"); // YAML: an empty file parses (to null)
    writeFileSync(file, complete(FULL_POOL));
    const child = spawn(process.execPath, [CLI, "--config", file], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout!.on("data", (chunk) => (out += chunk));
    /** The first log line from `from` on with this message. */
    const line = (from: number, msg: string): Promise<Record<string, any>> =>
      waitFor(
        () => {
          if (child.exitCode !== null) throw new Error(`server exited; no "${msg}" in: ${out.slice(from)}`);
          return out
            .slice(from)
            .split("\n")
            .filter((l) => l.startsWith("{"))
            .map((l) => JSON.parse(l))
            .find((j) => j.msg === msg);
        },
        { message: () => `no "${msg}" in: ${out.slice(from)}` },
      );
    const hup = async (text: string, msg = "configuration reload refused") => {
      const from = out.length;
      writeFileSync(file, text);
      child.kill("SIGHUP");
      return line(from, msg);
    };
    let nonce = 0;
    const map = async (port: number) =>
      (await exchange(A, A, port, mapRequest({ client: A, internalPort: 5000 + nonce, lifetime: 600, nonce: Array(12).fill(++nonce) }))).reply;
    try {
      const port = (await line(0, "pcp server listening")).listen[0].port;
      const first = await map(port);
      expect(first[3]).toBe(W.RESULT_SUCCESS);

      expect((await hup("")).error).toContain("empty");
      expect((await hup("# nothing but a comment\n")).error).toContain("empty");
      // Cut after the listen section: pool, persistence and control would fall back to defaults.
      expect((await hup(`{"listen":{"addresses":["${A}"],"port":0}}`)).error).toContain("pool, persistence, control missing");
      // The 256-entry table is full: adding 203.0.113.1 is impossible, so nothing may be retired.
      expect((await hup(complete(["203.0.113.1"]))).error).toContain("address table would need 257 entries");
      expect((await hup(complete(["2001:db8::1"]))).error).toContain("no IPv4 address left");
      const still = await map(port);
      expect(still[3]).toBe(W.RESULT_SUCCESS);
      expect(FULL_POOL.some((p) => assigned({ response: still }).address.startsWith(p.slice(0, 8)))).toBe(true);
      expect(out).not.toContain("pool addresses retired");

      // Complete and applicable: 198.51.100.2 retired, the rest in force.
      const applied = await hup(complete(["192.0.2.0/24", "198.51.100.1"]), "configuration reloaded");
      expect(applied.restartNeededFor).toEqual([]);
      expect((await map(port))[3]).toBe(W.RESULT_SUCCESS);
    } finally {
      child.kill("SIGKILL");
    }
  }, 60_000);
});
