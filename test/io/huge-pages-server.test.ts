// engine.hugePages in the real server (dist/): its worker advises the engine's memory
// before the tables are made, says so once (`engine memory`, with the bytes in huge pages)
// and /metrics shows the same bytes (pcpd_engine_huge_page_bytes); without the addon, or
// with engine.hugePages off, it starts on 4 KiB pages and says that once. No traffic is
// sent: ephemeral ports on loopback only (PCPD_TEST_EPHEMERAL_PORTS).
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { thpMode } from "../../src/io/huge-pages.js";
import { tempDir } from "../helpers/temp.js";
import { stopChild } from "../helpers/child.js";

const SERVER = new URL("../../dist/cli/pcp-server.js", import.meta.url).pathname;
let child: ChildProcess | undefined;

afterEach(async () => {
  await stopChild(child);
  child = undefined;
});

interface EngineMemory {
  level: number;
  hugePages: boolean;
  reason: string;
  memoryBytes: number;
  hugePageBytes: number;
}

/** Starts a one-worker server of 1M mappings; resolves with its `engine memory` lines and /metrics once it serves. */
function start(hugePages: "auto" | "off", env: NodeJS.ProcessEnv): Promise<{ lines: EngineMemory[]; metrics: string }> {
  const file = join(tempDir("hugepages-server"), "pcpd.json");
  writeFileSync(
    file,
    JSON.stringify({
      listen: { addresses: ["127.0.0.1"], port: 0 },
      workers: 1,
      capacity: { mappings: 1_000_000, subscribers: 20_000 },
      engine: { hugePages },
      persistence: { enabled: false },
      control: { address: "127.0.0.1", port: 0 },
      log: { level: "info", format: "json" },
    }),
  );
  const c = spawn(process.execPath, [SERVER, "--config", file], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, PCPD_TEST_EPHEMERAL_PORTS: "1", ...env },
  });
  child = c;
  return new Promise((resolve, reject) => {
    let log = "";
    let done = false;
    c.stdout!.on("data", (chunk) => {
      log += chunk;
      const entries = log
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l));
      const control = entries.find((j) => j.msg === "control channel listening")?.control as string | undefined;
      if (done || !control || !entries.some((j) => j.msg === "pcp server listening")) return;
      done = true;
      const lines = entries.filter((j) => typeof j.msg === "string" && j.msg.startsWith("engine memory"));
      fetch(`http://${new URL(control).host}/metrics`)
        .then((r) => r.text())
        .then((metrics) => resolve({ lines, metrics }), reject);
    });
    c.once("exit", (code) => reject(new Error(`server exited ${code}: ${log}`)));
  });
}

const gauge = (metrics: string) => Number(/^pcpd_engine_huge_page_bytes\{shard="0"\} (\S+)$/m.exec(metrics)?.[1]);

describe("engine.hugePages in the server", () => {
  it.skipIf(thpMode() === "never")("auto (the default): the worker's engine in huge pages, logged once, in /metrics", async () => {
    const { lines, metrics } = await start("auto", {});
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 30, hugePages: true, reason: expect.stringMatching(/^madvise\(MADV_HUGEPAGE\)/) });
    expect(lines[0].hugePageBytes).toBeGreaterThan(lines[0].memoryBytes * 0.5);
    expect(gauge(metrics)).toBe(lines[0].hugePageBytes);
  });

  it.each([
    ["the addon missing", "auto", { PCPD_IO_ADDON: "/nonexistent/udp_batch.node" }, 40, /^addon not built/],
    ["engine.hugePages off", "off", {}, 30, /^engine.hugePages is off$/],
  ] as const)("%s: 4 KiB pages, said once, the server starts", async (_name, mode, env, level, reason) => {
    const { lines, metrics } = await start(mode, env);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level, hugePages: false, reason: expect.stringMatching(reason), hugePageBytes: 0 });
    expect(gauge(metrics)).toBe(0);
  });
});
