// Question: how many MAP requests per second does the whole server (UDP sockets + engine
// + replies) answer over real sockets with 1k, 1M and 10M live mappings, how does that
// compare with a bare Node dgram echo on the same socket layout, what latency does a
// client see, and how much memory does the server hold per mapping?
// Inputs: a C load generator (bench/e2e/loadgen.c, built with gcc -O2 into build/)
// on one UDP socket at 127.0.0.21 sends real, distinct PCP MAP requests with a
// THIRD_PARTY option (one socket stands for every subscriber; it is the server's only
// `thirdPartySources` entry), keeping a fixed window of requests outstanding. For each
// size the server (`node dist/cli/pcp-server.js --config <tmp.json>`, listening on
// 127.0.0.20) is populated through UDP (every key answered SUCCESS, retransmitting
// losses), then refreshed for a fixed time with keys in a scattered order; every answer
// is matched to its key and checked (SUCCESS, nonce, external port, THIRD_PARTY echoed).
// Baseline (same run, same load generator, same window): bench/e2e/echo-worker.mjs, a
// bare dgram echo whose socket is created and read in a worker_thread, as the server's
// shard workers do. Measured before every size and at the end; each size is compared
// with the echoes just around it (this shared machine drifts by 10–20% over minutes).
// Each figure is the median of 3 timed runs (--repeat); a run during which other jobs or
// hypervisor steal took more than 0.25 core (from /proc/stat) is done again.
// Memory: VmRSS of the server (all its threads) after populate and after the run;
// bytes per mapping = (RSS after populate − RSS of an idle server sized for 1k) / mappings.
// Target (DESIGN.md §4): at 10M mappings ≥ 0.9 × the echo; ≤ 10% drop from 1k to 10M.
// Usage: npm run build && npm run bench:e2e [-- 1000,1000000] [--window 128] [--seconds 10] [--repeat 3]
// --listen 127.0.0.20,127.0.0.22 gives the server (one worker per address) and the echo
// two sockets on two threads; a subscriber always talks to the same address.
// Only loopback is used. Results: bench/results/e2e.json (default sizes and one socket),
// otherwise e2e-<sizes>[-<n>sockets].json. Shared machinery (children, load generator,
// echo start and warm-up, /proc readers, disturbed runs, server start/stop): bench/e2e/harness.ts.
import { existsSync } from "node:fs";
import os from "node:os";
import { parseArgs } from "node:util";
import {
  buildLoadgen,
  ECHO_JS,
  ECHO_KEYS,
  parseSizes,
  withEcho,
  CLIENT,
  describeCores,
  machineInfo,
  PER_SUB,
  populate,
  rss,
  SERVER_JS,
  startServer,
  timedRun,
  writeResults,
  RUN_OPTIONS,
  type CpuShare,
  type Settings,
} from "./e2e/harness.js";

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    ...RUN_OPTIONS,
    listen: { type: "string", default: "127.0.0.20" }, // server / echo addresses (comma list)
  },
});
const DEFAULT_SIZES = "1000,1000000,10000000";
const sizes = parseSizes(positionals[0], DEFAULT_SIZES);
const settings: Settings = {
  window: Number(flags.window),
  seconds: Number(flags.seconds),
  repeat: Math.max(1, Number(flags.repeat)),
  listen: flags.listen!.split(","),
};
const { window: WINDOW, seconds: SECONDS, repeat: REPEAT, listen: LISTEN } = settings;

// --- Echo baseline -------------------------------------------------------------------------

async function measureEcho(label: string) {
  return withEcho("echo server", [process.execPath, ECHO_JS], settings, async (pid) => {
    const { r, share, cpuSeconds, disturbed, runs } = await timedRun(settings, pid, "echo", ECHO_KEYS);
    const row = {
      label,
      requestsPerSecond: r.okPerSecond,
      p50us: r.p50us,
      p99us: r.p99us,
      lost: r.lost,
      cpuUsPerRequest: (cpuSeconds * 1e6) / r.ok,
      cpu: share,
      disturbed,
      runs,
      rssBytes: rss(pid),
      loadgen: r,
    };
    console.error(
      `echo (${label}): ${Math.round(r.okPerSecond).toLocaleString("en")} req/s (runs: ${runs.map((x) => Math.round(x.okPerSecond)).join(", ")}), p50 ${r.p50us} µs, p99 ${r.p99us} µs, lost ${r.lost}; ${describeCores(share, "echo")}`,
    );
    return row;
  });
}

// --- Server --------------------------------------------------------------------------------

/** RSS of an idle server sized for 1000 mappings: the process's fixed cost. */
async function baselineRss(): Promise<number> {
  const server = await startServer(LISTEN, 1000);
  try {
    return rss(server.pid);
  } finally {
    await server.stop();
  }
}

async function measureServer(mappings: number, rssBaseline: number) {
  const server = await startServer(LISTEN, mappings);
  const { pid, step } = server;
  try {
    const rssIdle = rss(pid);
    const populated = await step(populate(settings, mappings));
    const rssPopulated = rss(pid);
    console.error(
      `server ${mappings.toLocaleString("en")}: populated in ${populated.seconds.toFixed(1)} s (${Math.round(populated.okPerSecond).toLocaleString("en")}/s, ${populated.retransmits} retransmits), RSS ${(rssPopulated / 2 ** 20).toFixed(0)} MiB`,
    );
    const { r: run, share, cpuSeconds: serverCpu, disturbed, runs } = await timedRun(settings, pid, "run", mappings, { step });
    const rssRun = rss(pid);
    console.error(
      `server ${mappings.toLocaleString("en")}: ${Math.round(run.okPerSecond).toLocaleString("en")} req/s (runs: ${runs.map((x) => Math.round(x.okPerSecond)).join(", ")}), p50 ${run.p50us} µs, p99 ${run.p99us} µs, lost ${run.lost}; ${describeCores(share)}`,
    );
    // The engine's own counters must agree: N live mappings, each created exactly once.
    const { code, stats } = await server.stop();
    if (stats && stats.mappings !== mappings) throw new Error(`server reports ${stats.mappings} mappings, expected ${mappings}`);
    if (stats && stats.created !== mappings) throw new Error(`server reports ${stats.created} creates, expected ${mappings}`);
    const refreshesSeen = runs.reduce((n, a) => n + a.ok, 0);
    if (stats && stats.refreshed < refreshesSeen) throw new Error(`server reports ${stats.refreshed} refreshes, the load generator saw ${refreshesSeen}`);
    return {
      mappings,
      populate: { seconds: populated.seconds, createsPerSecond: populated.okPerSecond, retransmits: populated.retransmits, loadgen: populated },
      run: {
        requestsPerSecond: run.okPerSecond,
        p50us: run.p50us,
        p99us: run.p99us,
        lost: run.lost,
        cpuUsPerRequest: (serverCpu * 1e6) / run.ok,
        cpu: share,
        disturbed,
        runs,
        loadgen: run,
      },
      memory: {
        rssIdleBytes: rssIdle, // tables sized for the capacity are already resident here
        rssPopulatedBytes: rssPopulated,
        rssAfterRunBytes: rssRun,
        /** (RSS after populate − RSS of an idle 1k server) / mappings, as DESIGN.md §4 counts it. */
        bytesPerMapping: (rssPopulated - rssBaseline) / mappings,
        bytesPerMappingAfterRun: (rssRun - rssBaseline) / mappings,
        /** Growth from this server's own idle RSS: what populating added. */
        populateGrowthBytesPerMapping: (rssPopulated - rssIdle) / mappings,
      },
      serverStats: stats, // null if the server did not log its counters
      serverExitCode: code,
    };
  } finally {
    server.kill();
  }
}

// --- Main ----------------------------------------------------------------------------------

if (!existsSync(SERVER_JS)) throw new Error(`${SERVER_JS} missing: run npm run build first`);
buildLoadgen();

// Echo before every size and once at the end: each size is compared with the echoes
// measured just around it, so slow drifts of this shared machine cancel out.
const rssBaseline = await baselineRss();
const echoes: Awaited<ReturnType<typeof measureEcho>>[] = [];
const servers: Awaited<ReturnType<typeof measureServer>>[] = [];
for (const n of sizes) {
  echoes.push(await measureEcho(`before ${n.toLocaleString("en")}`));
  servers.push(await measureServer(n, rssBaseline));
}
echoes.push(await measureEcho("end"));
const smallest = servers[0].run.requestsPerSecond;
const rows = servers.map((s, i) => {
  const echo = (echoes[i].requestsPerSecond + echoes[i + 1].requestsPerSecond) / 2;
  return { ...s, echoAround: echo, vsEcho: s.run.requestsPerSecond / echo, vsSmallest: s.run.requestsPerSecond / smallest };
});

const out = {
  question: "end-to-end MAP requests/s over UDP by live-table size, against a bare dgram echo; latency; server RSS per mapping",
  target: "DESIGN.md §4: at 10M mappings ≥ 0.9 × the echo on the same socket layout; ≤ 10% drop from 1k to 10M",
  method: {
    loadgen: "bench/e2e/loadgen.c (gcc -O2), one UDP socket, sendmmsg/recvmmsg; MAP + THIRD_PARTY, strict nonces, keys in a multiplicative-stride order",
    window: WINDOW,
    seconds: SECONDS,
    repeat: REPEAT,
    kept: "median req/s of the undisturbed runs (other jobs + steal ≤ 0.25 core)",
    perSubscriber: PER_SUB,
    listen: LISTEN,
    client: CLIENT,
    vsEcho: "server req/s ÷ mean of the echo measured just before this size and the next echo",
    vsSmallest: "server req/s ÷ server req/s at the smallest size",
  },
  ...machineInfo(),
  echoes,
  serverBaselineRssBytes: rssBaseline,
  servers: rows,
};
const name = `e2e${sizes.join(",") === DEFAULT_SIZES ? "" : `-${sizes.join("-")}`}${LISTEN.length > 1 ? `-${LISTEN.length}sockets` : ""}.json`;
writeResults(name, out);

const k = (n: number) => Math.round(n).toLocaleString("en");
console.log(
  `\nend-to-end, window ${WINDOW}, median of ${REPEAT} × ${SECONDS} s runs, ${os.cpus().length} × ${os.cpus()[0]?.model}; results in bench/results/${name}`,
);
const cores = (c: CpuShare) => `${c.processCores.toFixed(2)} / ${c.loadgenCores.toFixed(2)} / ${(c.otherCores + c.stealCores).toFixed(2)}`;
const echoRow = (e: (typeof echoes)[number]) => ({
  case: `echo (${e.label})${e.disturbed ? " *" : ""}`,
  "req/s": k(e.requestsPerSecond),
  "× echo": "",
  "× smallest": "",
  "p50 µs": e.p50us,
  "p99 µs": e.p99us,
  lost: e.lost,
  "CPU µs/req": e.cpuUsPerRequest.toFixed(2),
  "cores srv/lg/other": cores(e.cpu),
  "RSS MiB": (e.rssBytes / 2 ** 20).toFixed(0),
  "B/mapping": "",
});
const serverRow = (s: (typeof rows)[number]) => ({
  case: `server, ${s.mappings.toLocaleString("en")} mappings${s.run.disturbed ? " *" : ""}`,
  "req/s": k(s.run.requestsPerSecond),
  "× echo": s.vsEcho.toFixed(2),
  "× smallest": s.vsSmallest.toFixed(2),
  "p50 µs": s.run.p50us,
  "p99 µs": s.run.p99us,
  lost: s.run.lost,
  "CPU µs/req": s.run.cpuUsPerRequest.toFixed(2),
  "cores srv/lg/other": cores(s.run.cpu),
  "RSS MiB": `${(s.memory.rssPopulatedBytes / 2 ** 20).toFixed(0)} / ${(s.memory.rssAfterRunBytes / 2 ** 20).toFixed(0)}`,
  "B/mapping": s.mappings >= 100_000 ? s.memory.bytesPerMapping.toFixed(1) : "—", // below that, noise of the fixed cost
});
console.table([...rows.flatMap((s, i) => [echoRow(echoes[i]), serverRow(s)]), echoRow(echoes[echoes.length - 1])]);
console.log(
  `× echo: against the mean of the echoes just before and after. RSS: after populate / after run. B/mapping: (RSS after populate − idle 1k server) / mappings. Cores: process measured / load generator / other jobs + steal (* = every run disturbed).`,
);
for (const s of rows)
  console.log(
    `${s.mappings.toLocaleString("en")}: populated ${k(s.populate.createsPerSecond)}/s in ${s.populate.seconds.toFixed(1)} s; server counters ${s.serverStats ? `mappings ${s.serverStats.mappings}, created ${s.serverStats.created}, refreshed ${s.serverStats.refreshed}` : "not logged"}`,
  );
