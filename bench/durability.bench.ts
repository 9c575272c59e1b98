// Question: how long before a kill -9 can a mapping have been acknowledged and still be
// lost — the real durability horizon of the journal (persistence.commitIntervalMs 20,
// fdatasync, the defaults) — when the machine's other core is saturated? The issue this
// answers saw one kill -9 in 18 lose mappings acknowledged 46.7 ms before it.
// Inputs: the real server (one worker, UDP on 127.0.0.20, data directory under
// os.tmpdir(), the machine's local disk), a JavaScript client creating new mappings as a
// THIRD_PARTY source (test/helpers/mapping-load.ts, 32 outstanding: every request is one
// journal record), and — unless --no-spin — a process spinning on the CPU for the whole
// loaded phase (`node -e 'for(;;)'` bounded in time), so the worker, its libuv thread
// pool (write + fdatasync), the main thread and the client share one core.
// Each trial: fresh directory; start; load for 1.5–2.5 s (random); SIGKILL; restart; every
// acknowledged mapping looked up over the control channel. Lost = acknowledged and not
// there (or on another port); its age = kill time − acknowledgement time.
// Usage: npm run build && tsx bench/durability.bench.ts [--trials 18] [--commit-ms 20] [--no-spin]
// Results: bench/results/durability[-nospin]-<commit-ms>.json.
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { buildLoadgen, CLIENT, machineInfo, startServer, track, writeResults } from "./e2e/harness.js";
import { mappingLoad, missingMappings } from "../test/helpers/mapping-load.js";

const { values: flags } = parseArgs({
  options: {
    trials: { type: "string", default: "18" },
    "commit-ms": { type: "string", default: "20" },
    "no-spin": { type: "boolean", default: false },
  },
});
const TRIALS = Number(flags.trials);
const COMMIT_MS = Number(flags["commit-ms"]);
const SPIN = !flags["no-spin"];
const LISTEN = ["127.0.0.20"];
const TOKEN = "durability-bench-token-0123456789";

const gone = async (pid: number) => {
  for (let i = 0; i < 500; i++) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`process ${pid} did not exit`);
};

/** The control URL from the server's log (the line may follow the first answered request). */
async function controlUrl(log: () => string): Promise<string> {
  for (let i = 0; i < 500; i++) {
    const line = log()
      .split("\n")
      .find((l) => l.includes('"control channel listening"'));
    if (line) return JSON.parse(line).control;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error("no control channel line in the server's log");
}

buildLoadgen(); // the harness's readiness ping
const trials: { acks: number; lost: number; lostAgesMs: number[]; loadMs: number }[] = [];
for (let t = 0; t < TRIALS; t++) {
  const directory = fs.mkdtempSync(join(os.tmpdir(), "pcpd-durability-"));
  const o = {
    name: "durability",
    control: { address: "127.0.0.1", port: 0, tokens: [{ token: TOKEN, role: "admin" }], requestsPerSecond: 1_000_000 },
    persistence: { enabled: true, directory, commitIntervalMs: COMMIT_MS, fsync: true },
  };
  try {
    const server = await startServer(LISTEN, 200_000, o);
    const loadMs = 1500 + Math.floor(Math.random() * 1000);
    const spinner = SPIN
      ? track(spawn(process.execPath, ["-e", `const end = Date.now() + ${loadMs + 2000}; while (Date.now() < end);`], { stdio: "ignore" }))
      : undefined;
    const load = mappingLoad({ server: LISTEN[0], port: 5351, source: CLIENT }, 0);
    await load.ready;
    await new Promise((resolve) => setTimeout(resolve, loadMs));
    const killedAt = performance.now();
    server.kill();
    await gone(server.pid);
    load.stop();
    spinner?.kill("SIGKILL");
    const again = await startServer(LISTEN, 200_000, o);
    const lost = await missingMappings(TOKEN, await controlUrl(again.log), load.acks, Infinity);
    await again.stop();
    const lostAgesMs = lost
      .map((l) => Number(l.split(":")[0]))
      .map((i) => killedAt - load.acks.get(i)!.at)
      .sort((a, b) => b - a);
    trials.push({ acks: load.acks.size, lost: lost.length, lostAgesMs, loadMs });
    console.error(
      `trial ${t + 1}/${TRIALS}: ${load.acks.size} acknowledged, ${lost.length} lost, oldest lost ${lostAgesMs.length ? lostAgesMs[0].toFixed(1) : "-"} ms before the kill`,
    );
  } finally {
    fs.rmSync(directory, { recursive: true, force: true });
  }
}
const oldest = trials.map((t) => t.lostAgesMs[0] ?? 0);
const summary = {
  trials: TRIALS,
  acknowledged: trials.reduce((n, t) => n + t.acks, 0),
  lost: trials.reduce((n, t) => n + t.lost, 0),
  trialsWithLoss: trials.filter((t) => t.lost > 0).length,
  oldestLostMs: Math.max(...oldest),
  oldestLostPerTrialMs: oldest.map((x) => Math.round(x * 10) / 10),
};
console.error(JSON.stringify(summary));
writeResults(`durability${SPIN ? "" : "-nospin"}-${COMMIT_MS}.json`, {
  question: "age (before a kill -9) of the oldest acknowledged mapping lost, journal with group commit + fdatasync" + (SPIN ? ", other core saturated" : ""),
  method: { trials: TRIALS, commitIntervalMs: COMMIT_MS, fsync: true, spin: SPIN, outstanding: 32, directory: os.tmpdir() },
  ...machineInfo(),
  summary,
  trials: trials.map((t) => ({ ...t, lostAgesMs: t.lostAgesMs.slice(0, 5).map((x) => Math.round(x * 10) / 10) })),
});
