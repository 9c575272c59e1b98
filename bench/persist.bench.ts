// Question: (a) what does persistence cost the packet path — UDP refreshes/s with the
// journal on (group commit every 20 ms + fdatasync, the defaults) against off, same run —
// with refreshes coalesced (the default: this load refreshes each key every ~10 s of a
// 3600 s lifetime, so almost no refresh is journaled) and with every refresh journaled
// (persistence.refreshes: every, the worst case: one 68-byte record per request)?
// (b) how long does a restart take with 1M and 10M persisted mappings, after a clean stop
// (journal replay) and after kill -9 once a snapshot was written (snapshot + journal)?
// Inputs: the real server (`node dist/cli/pcp-server.js --config <tmp.json>`, UDP on
// 127.0.0.20, one worker), the C load generator of the end-to-end benchmark (one socket
// at 127.0.0.21 as the only THIRD_PARTY source, 128 requests outstanding, MAP refreshes
// of every key in a scattered order, each one a journal record), the data directory
// under os.tmpdir() (the machine's local disk). Machinery: bench/e2e/harness.ts.
// (a) Four servers one after the other — persistence off, on (coalesced), on (every), off —
// each populated with N mappings, then --repeat timed refresh runs (median kept; disturbed
// runs redone). Ratio = on ÷ mean of the two off phases. Journal bytes written per refresh are read
// from the data directory.
// (b) For each size: populate with persistence on; SIGTERM; restart and time from spawn to
// the first answered request (the load generator's ping), with the server's own restore
// time and counts from its log; wait for the snapshot the restart takes; SIGKILL; restart
// and time again. Every restored count must equal the populated count.
// Targets (issue #6): (a) ≤ 10 % throughput cost; (b) restart ≤ 15 s at 10M mappings.
// Usage: npm run build && npm run bench:persist [-- --cost-mappings 1000000] [--sizes 1000000,10000000] [--seconds 10] [--repeat 3]
// Only loopback is used. Results: bench/results/persist.json (defaults), else persist-<cost>-<sizes>.json.
import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { buildLoadgen, describeCores, machineInfo, populate, startServer, timedRun, timedSummary, writeResults, type Settings } from "./e2e/harness.js";

const { values: flags } = parseArgs({
  options: {
    "cost-mappings": { type: "string", default: "1000000" },
    sizes: { type: "string", default: "1000000,10000000" },
    seconds: { type: "string", default: "10" },
    repeat: { type: "string", default: "3" },
    window: { type: "string", default: "128" },
  },
});
const COST_MAPPINGS = Number(flags["cost-mappings"]);
const SIZES = flags.sizes!.split(",").map(Number);
for (const n of [COST_MAPPINGS, ...SIZES])
  if (!Number.isInteger(n) || n < 1000 || n > 15_000_000) throw new Error(`mapping counts must be integers in [1000, 15M]: ${n}`);
const settings: Settings = { listen: ["127.0.0.20"], window: Number(flags.window), seconds: Number(flags.seconds), repeat: Math.max(1, Number(flags.repeat)) };
const COMMIT_MS = 20;
const SNAPSHOT_WAIT_MS = 10 * 60_000;
const k = (n: number) => Math.round(n).toLocaleString("en-US");
const dirBytes = (dir: string): number =>
  fs.existsSync(dir)
    ? fs
        .readdirSync(dir, { withFileTypes: true })
        .reduce((n, e) => n + (e.isDirectory() ? dirBytes(join(dir, e.name)) : fs.statSync(join(dir, e.name)).size), 0)
    : 0;
const persistenceOn = (directory: string, refreshes = "coalesced") => ({ enabled: true, directory, commitIntervalMs: COMMIT_MS, fsync: true, refreshes });

/** JSON log lines of the server whose msg starts with `prefix`. */
function logLines(log: string, prefix: string): Record<string, any>[] {
  return log.split("\n").flatMap((l) => {
    try {
      const j = JSON.parse(l);
      return typeof j.msg === "string" && j.msg.startsWith(prefix) ? [j] : [];
    } catch {
      return [];
    }
  });
}

async function costPhase(label: string, persistence: Record<string, unknown> | undefined) {
  const server = await startServer(settings.listen, COST_MAPPINGS, { name: "persist", persistence });
  try {
    await server.step(populate(settings, COST_MAPPINGS));
    const dir = persistence ? String(persistence.directory) : "";
    const before = dir ? dirBytes(dir) : 0;
    const t = await timedRun(settings, server.pid, "run", COST_MAPPINGS, { step: server.step, waitQuiet: true });
    const written = dir ? dirBytes(dir) - before : 0;
    const refreshes = t.runs.reduce((n, r) => n + r.ok, 0);
    console.error(
      `${label}: ${k(t.r.okPerSecond)} refreshes/s (runs: ${t.runs.map((r) => k(r.okPerSecond)).join(", ")}), p99 ${t.r.p99us} µs; ${describeCores(t.share)}${dir ? `; journal ${(written / refreshes).toFixed(1)} B per refresh (net of snapshots and deletions)` : ""}`,
    );
    return {
      label,
      ...timedSummary(t),
      ...(dir ? { dataDirectoryGrowthBytesPerRefresh: written / refreshes } : {}),
    };
  } finally {
    await server.stop();
  }
}

async function restartTimes(n: number) {
  const directory = fs.mkdtempSync(join(os.tmpdir(), "pcpd-bench-persist-"));
  try {
    const persistence = persistenceOn(directory);
    let server = await startServer(settings.listen, n, { name: "persist", persistence });
    const populated = await server.step(populate(settings, n));
    console.error(`${k(n)}: populated at ${k(populated.okPerSecond)} creates/s with persistence on; ${(dirBytes(directory) / 1e6).toFixed(0)} MB on disk`);
    await server.stop();
    const diskAfterStop = dirBytes(directory);

    const timed = async (how: string) => {
      const t0 = performance.now();
      server = await startServer(settings.listen, n, { name: "persist", persistence });
      const seconds = (performance.now() - t0) / 1000;
      const restored = logLines(server.log(), "state restored")[0];
      if (!restored) throw new Error("no restore in the server's log");
      if (restored.mappings !== n) throw new Error(`${how}: ${restored.mappings} mappings restored of ${n}: ${JSON.stringify(restored)}`);
      console.error(
        `${k(n)} ${how}: serving after ${seconds.toFixed(2)} s (restore ${(restored.ms / 1000).toFixed(2)} s, ${restored.files} files, epoch ${restored.epoch}, ${restored.msg})`,
      );
      return {
        how,
        secondsToFirstAnswer: seconds,
        restoreSeconds: restored.ms / 1000,
        files: restored.files,
        mappings: restored.mappings,
        epochContinued: restored.epoch > 0,
        damage: restored.damage,
      };
    };
    const clean = await timed("after a clean stop (journal replay)");
    // The restart asks for a snapshot (it replayed journals); wait for it, then crash.
    const t0 = performance.now();
    while (logLines(server.log(), "snapshot written").length === 0) {
      if (performance.now() - t0 > SNAPSHOT_WAIT_MS) throw new Error("no snapshot within 10 minutes");
      await server.step(new Promise((resolve) => setTimeout(resolve, 500)));
    }
    const snapshot = logLines(server.log(), "snapshot written")[0];
    console.error(`${k(n)}: snapshot of ${(snapshot.bytes / 1e6).toFixed(0)} MB written in ${(snapshot.ms / 1000).toFixed(1)} s while serving`);
    server.kill();
    const crash = await timed("after kill -9 (snapshot + journal)");
    await server.stop();
    return {
      mappings: n,
      populateCreatesPerSecond: populated.okPerSecond,
      diskBytesAfterPopulate: diskAfterStop,
      bytesPerMapping: diskAfterStop / n,
      snapshot: { bytes: snapshot.bytes, seconds: snapshot.ms / 1000 },
      restarts: [clean, crash],
    };
  } finally {
    fs.rmSync(directory, { recursive: true, force: true });
  }
}

buildLoadgen();
const costDir = fs.mkdtempSync(join(os.tmpdir(), "pcpd-bench-persist-"));
let cost;
try {
  const off1 = await costPhase("persistence off", undefined);
  const on = await costPhase("persistence on (refreshes coalesced)", persistenceOn(join(costDir, "coalesced")));
  const every = await costPhase("persistence on (every refresh journaled)", persistenceOn(join(costDir, "every"), "every"));
  const off2 = await costPhase("persistence off, again", undefined);
  const baseline = (off1.requestsPerSecond + off2.requestsPerSecond) / 2;
  const range = (p: { requestsPerSecond: number }) => [
    p.requestsPerSecond / Math.max(off1.requestsPerSecond, off2.requestsPerSecond),
    p.requestsPerSecond / Math.min(off1.requestsPerSecond, off2.requestsPerSecond),
  ];
  cost = {
    phases: [off1, on, every, off2],
    ratio: on.requestsPerSecond / baseline,
    ratioRange: range(on),
    ratioEveryRefresh: every.requestsPerSecond / baseline,
    ratioEveryRefreshRange: range(every),
    baselineDrift: Math.abs(off1.requestsPerSecond - off2.requestsPerSecond) / baseline,
  };
  console.error(
    `persistence on ÷ off: ${cost.ratio.toFixed(3)} coalesced (against each off phase ${cost.ratioRange.map((r) => r.toFixed(3)).join("–")}), ${cost.ratioEveryRefresh.toFixed(3)} every refresh journaled (${cost.ratioEveryRefreshRange.map((r) => r.toFixed(3)).join("–")}); target ≥ 0.90`,
  );
} finally {
  fs.rmSync(costDir, { recursive: true, force: true });
}
const restarts = [];
for (const n of SIZES) restarts.push(await restartTimes(n));

const out = {
  question: "(a) UDP refresh throughput with persistence on ÷ off (same run); (b) restart time with N persisted mappings, after a clean stop and after kill -9",
  target: "issue #6: ≤ 10 % throughput cost; restart ≤ 15 s at 10M mappings",
  method: {
    loadgen: "bench/e2e/loadgen.c, one UDP socket, MAP + THIRD_PARTY, every key refreshed in a scattered order (each refresh one journal record)",
    costMappings: COST_MAPPINGS,
    window: settings.window,
    seconds: settings.seconds,
    repeat: settings.repeat,
    persistence: {
      commitIntervalMs: COMMIT_MS,
      fsync: true,
      directory: `${os.tmpdir()}/pcpd-bench-persist-*`,
      refreshes: "coalesced (the default) for ratio and the restarts; every for ratioEveryRefresh",
    },
    ratio: "refreshes/s with persistence ÷ mean of the phases without before and after",
    restart: "seconds from spawn to the first answered request; the server's own restore time from its log",
  },
  ...machineInfo(),
  cost,
  restarts,
};
writeResults(COST_MAPPINGS === 1_000_000 && flags.sizes === "1000000,10000000" ? "persist.json" : `persist-${COST_MAPPINGS}-${SIZES.join("-")}.json`, out);
console.table(
  restarts.flatMap((r) =>
    r.restarts.map((x) => ({
      mappings: k(r.mappings),
      restart: x.how,
      "to first answer s": x.secondsToFirstAnswer.toFixed(2),
      "restore s": x.restoreSeconds.toFixed(2),
      "epoch continued": x.epochContinued,
    })),
  ),
);
const failures = [
  ...(cost.ratio < 0.9 ? [`persistence costs ${((1 - cost.ratio) * 100).toFixed(1)} % (target ≤ 10 %)`] : []),
  ...(cost.ratioEveryRefresh < 0.9 ? [`persistence journaling every refresh costs ${((1 - cost.ratioEveryRefresh) * 100).toFixed(1)} % (target ≤ 10 %)`] : []),
  ...restarts
    .filter((r) => r.mappings >= 10_000_000 && r.restarts.some((x) => x.secondsToFirstAnswer > 15))
    .map((r) => `restart with ${k(r.mappings)} mappings over 15 s`),
];
if (failures.length > 0) {
  console.error(`targets not met: ${failures.join("; ")}`);
  process.exitCode = 1;
}
