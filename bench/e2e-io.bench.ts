// Question (issue #15): how close does the server come to the physical limit of this
// machine's UDP stack, on the batched path (native/udp_batch.c: recvmmsg/sendmmsg straight
// into the engine's slots) and on the dgram fallback, as the live table grows?
// Inputs: the same C load generator (bench/e2e/loadgen.c, MAP + THIRD_PARTY, window 128,
// one socket) against, in one run:
//   (a) a C recvmmsg/sendmmsg echo (bench/e2e/echo-mmsg.c, built here): the physical reference,
//   (b) the bare Node dgram echo (bench/e2e/echo-worker.mjs, a worker per address),
//   (c) the server on the dgram path (PCPD_IO=dgram),
//   (d) the server on the batched path (the default),
// at each size of the live table (default 1k, 1M, 10M), one worker (one listen address),
// then two workers at the smallest size in both layouts: two listen addresses (one worker
// each; (a)–(d)) and listen.reusePort on one address:port (both workers in one
// SO_REUSEPORT group steered by source address; (d) only: the dgram path has no reusePort).
// In both the load generator speaks from two source addresses (chosen so the steering
// program sends them to different workers), subscriber s from source s mod 2 to address
// s mod 2. Echoes (a) are measured before and after the sizes: each ratio uses the mean of
// the two (this shared machine drifts).
// The cost curve: requests/s and server CPU µs/request of (c) and (d) against the table
// size, plotted by gnuplot (scripts/bench-deps.sh installs gnuplot-nox) to
// bench/results/e2e-io-<date>.png next to the JSON.
// Targets: (d) ≥ 0.8 × (a) at 10M mappings; (d) at 10M ≥ 0.9 × (d) at 1k; p99 reported.
// Usage: npm run build && npm run bench:e2e [-- 1000,1000000,10000000] [--seconds 10] [--repeat 3]
// Port: PCPD_BENCH_PORT (the npm script sets 25090), loopback only.
import { execFileSync } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { steerIndex } from "../src/io/native.js";
import { toAddress16 } from "../src/net/address.js";
import {
  buildLoadgen,
  ECHO_JS,
  ECHO_KEYS,
  parseSizes,
  withEcho,
  describeCores,
  machineInfo,
  populate,
  CLIENT,
  PORT,
  PROXY_SOURCE,
  root,
  SERVER_JS,
  startServer,
  timedRun,
  writeResults,
  RUN_OPTIONS,
  type Settings,
} from "./e2e/harness.js";

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    ...RUN_OPTIONS,
    name: { type: "string", default: `e2e-${new Date().toISOString().slice(0, 10)}` },
  },
});
const sizes = parseSizes(positionals[0], "1000,1000000,10000000");
const ONE = ["127.0.0.20"];
const TWO = ["127.0.0.20", "127.0.0.22"];
// The second source: the first after CLIENT that the two-member steering program sends to the other worker.
const other = (n: number) => steerIndex(toAddress16(`127.0.0.${n}`), 2) !== steerIndex(toAddress16(CLIENT), 2);
const SOURCES = [CLIENT, `127.0.0.${Array.from({ length: 200 }, (_, i) => 23 + i).find(other)!}`];
const base = { window: Number(flags.window), seconds: Number(flags.seconds), repeat: Math.max(1, Number(flags.repeat)) };
// One source: PROXY_SOURCE, the same port in every run.
const settings = (listen: string[], binds = [PROXY_SOURCE]): Settings => ({ ...base, listen, binds });

/** How the server (or echo) is laid out: its addresses, and with reusePort its workers. */
interface Layout {
  name: string;
  listen: string[];
  binds?: string[];
  reusePort?: boolean;
}
const L1: Layout = { name: "1 worker", listen: ONE };
const L2: Layout = { name: "2 workers, 2 addresses", listen: TWO, binds: SOURCES };
const LR: Layout = { name: "2 workers, reusePort", listen: ONE, binds: SOURCES, reusePort: true };
const ECHO_C = join(root, "build", "e2e-echo-mmsg");

interface Row {
  case: string;
  layout: string;
  mappings: number;
  requestsPerSecond: number;
  p50us: number;
  p99us: number;
  lost: number;
  cpuUsPerRequest: number;
  disturbed: boolean;
  runs: unknown[];
}

const k = (n: number) => Math.round(n).toLocaleString("en");

/** An echo process (a: C, b: Node) measured over `listen`. */
async function measureEcho(kind: "a" | "b", layout: Layout): Promise<Row> {
  const s = settings(layout.listen, layout.binds);
  return withEcho(`echo ${kind}`, kind === "a" ? [ECHO_C] : [process.execPath, ECHO_JS], s, async (pid) => {
    const t = await timedRun(s, pid, "echo", ECHO_KEYS);
    const row = rowOf(kind === "a" ? "(a) C recvmmsg/sendmmsg echo" : "(b) Node dgram echo", layout, 0, t);
    console.error(
      `${row.case} [${row.layout}]: ${k(row.requestsPerSecond)} req/s, p99 ${row.p99us} µs, ${row.cpuUsPerRequest.toFixed(2)} µs CPU/req; ${describeCores(t.share, "echo")}`,
    );
    return row;
  });
}

function rowOf(name: string, layout: Layout, mappings: number, t: Awaited<ReturnType<typeof timedRun>>): Row {
  return {
    case: name,
    layout: layout.name,
    mappings,
    requestsPerSecond: t.r.okPerSecond,
    p50us: t.r.p50us,
    p99us: t.r.p99us,
    lost: t.r.lost,
    cpuUsPerRequest: (t.cpuSeconds * 1e6) / t.r.ok,
    disturbed: t.disturbed,
    runs: t.runs,
  };
}

/** The server (c: dgram path, d: batched) populated with `mappings`, then refreshed. */
async function measureServer(kind: "c" | "d", layout: Layout, mappings: number): Promise<Row & { populateSeconds: number; ioLine: string }> {
  const { listen } = layout;
  const extra = layout.binds
    ? {
        thirdPartySources: layout.binds.map((a) => `${a}/32`),
        workers: 2,
        ...(layout.reusePort ? { listen: { addresses: listen, port: PORT, reusePort: true } } : {}),
      }
    : undefined;
  const server = await startServer(listen, mappings, { name: `e2e-io-${kind}`, env: { PCPD_IO: kind === "c" ? "dgram" : "batched" }, extra });
  try {
    const ioLine =
      server
        .log()
        .split("\n")
        .find((l) => l.includes('"packet I/O')) ?? "";
    const expected = kind === "c" ? '"io":"dgram"' : '"io":"batched"';
    if (!ioLine.includes(expected)) throw new Error(`server ${kind} not on the expected path: ${ioLine}`);
    const populated = await server.step(populate(settings(listen, layout.binds), mappings));
    const t = await timedRun(settings(listen, layout.binds), server.pid, "run", mappings, { step: server.step });
    const row = rowOf(kind === "c" ? "(c) server, dgram path" : "(d) server, batched path", layout, mappings, t);
    console.error(
      `${row.case} [${row.layout}] ${k(mappings)} mappings (populated in ${populated.seconds.toFixed(1)} s): ${k(row.requestsPerSecond)} req/s, p99 ${row.p99us} µs, ${row.cpuUsPerRequest.toFixed(2)} µs CPU/req; ${describeCores(t.share)}`,
    );
    const { stats } = await server.stop();
    if (stats && stats.mappings !== mappings) throw new Error(`server reports ${stats.mappings} mappings, expected ${mappings}`);
    return { ...row, populateSeconds: populated.seconds, ioLine: JSON.parse(ioLine).reason };
  } finally {
    server.kill();
  }
}

if (!existsSync(SERVER_JS)) throw new Error(`${SERVER_JS} missing: run npm run build first`);
buildLoadgen();
execFileSync("gcc", ["-O2", "-Wall", "-Wextra", "-pthread", "-o", ECHO_C, join(root, "bench", "e2e", "echo-mmsg.c")], { stdio: "inherit" });

const rows: Row[] = [];
const refBefore = await measureEcho("a", L1);
rows.push(refBefore, await measureEcho("b", L1));
for (const n of sizes) rows.push(await measureServer("c", L1, n), await measureServer("d", L1, n));
const refAfter = await measureEcho("a", L1);
rows.push(refAfter);
const small = sizes[0];
rows.push(await measureEcho("a", L2), await measureEcho("b", L2), await measureServer("c", L2, small), await measureServer("d", L2, small));
rows.push(await measureServer("d", LR, small));

const reference = (refBefore.requestsPerSecond + refAfter.requestsPerSecond) / 2;
const find = (c: string, layout: string, n: number) => rows.find((r) => r.case.startsWith(c) && r.layout === layout && r.mappings === n);
const d = (n: number) => find("(d)", "1 worker", n)!;
const largest = sizes[sizes.length - 1];
const targets = {
  reference: { requestsPerSecond: reference, note: "(a), mean of before and after the sizes" },
  batchedVsReferenceAtLargest: { mappings: largest, ratio: d(largest).requestsPerSecond / reference, target: 0.8 },
  batchedLargestVsSmallest: { from: small, to: largest, ratio: d(largest).requestsPerSecond / d(small).requestsPerSecond, target: 0.9 },
  batchedVsDgram: Object.fromEntries(sizes.map((n) => [n, d(n).requestsPerSecond / find("(c)", "1 worker", n)!.requestsPerSecond])),
  // Two workers at the smallest size: reusePort on one address:port against two addresses (same sources, same load).
  twoWorkers: {
    mappings: small,
    sources: SOURCES,
    twoAddresses: find("(d)", L2.name, small)!.requestsPerSecond,
    reusePort: find("(d)", LR.name, small)!.requestsPerSecond,
    reusePortVsTwoAddresses: find("(d)", LR.name, small)!.requestsPerSecond / find("(d)", L2.name, small)!.requestsPerSecond,
    echoTwoAddresses: find("(a)", L2.name, 0)!.requestsPerSecond,
  },
};

// The cost curve (one worker): req/s and CPU µs/req of (c) and (d) by table size.
const png = `${flags.name}-io-curve.png`;
const data = join(os.tmpdir(), `pcpd-e2e-io-${process.pid}.dat`);
writeFileSync(
  data,
  sizes
    .map(
      (n) =>
        `${n} ${find("(c)", "1 worker", n)!.requestsPerSecond} ${d(n).requestsPerSecond} ${find("(c)", "1 worker", n)!.cpuUsPerRequest} ${d(n).cpuUsPerRequest}`,
    )
    .join("\n") + "\n",
);
let plotted = true;
try {
  execFileSync("gnuplot", [
    "-e",
    [
      "set terminal pngcairo size 1000,450 noenhanced",
      `set output '${join(root, "bench", "results", png)}'`,
      "set multiplot layout 1,2 title 'pcpd end to end, one worker: cost as the live table grows'",
      "set logscale x; set xlabel 'live mappings'; set grid; set key outside bottom center horizontal",
      `set ylabel 'requests/s'; set yrange [0:*]`,
      `plot '${data}' using 1:2 with linespoints title '(c) dgram path', '' using 1:3 with linespoints title '(d) batched path', ${reference} with lines dashtype 2 title '(a) C echo'`,
      "set ylabel 'server CPU µs / request'; set yrange [0:*]",
      `plot '${data}' using 1:4 with linespoints title '(c) dgram path', '' using 1:5 with linespoints title '(d) batched path'`,
      "unset multiplot",
    ].join("; "),
  ]);
} catch (e) {
  plotted = false;
  console.error(`no plot (gnuplot: run scripts/bench-deps.sh): ${(e as Error).message.split("\n")[0]}`);
}

writeResults(`${flags.name}-io.json`, {
  question:
    "end-to-end MAP requests/s, p99 and server CPU/request: C recvmmsg echo (a), Node dgram echo (b), server on the dgram path (c) and the batched path (d), by live-table size; one worker, and two workers as two listen addresses or as listen.reusePort on one address:port",
  targets: "(d) ≥ 0.8 × (a) at 10M mappings; (d) at 10M ≥ 0.9 × (d) at 1k",
  method: {
    ...base,
    sizes,
    loadgen: "bench/e2e/loadgen.c, one socket, MAP + THIRD_PARTY, keys in a multiplicative-stride order",
    kept: "median of undisturbed runs",
  },
  ...machineInfo(),
  results: targets,
  rows,
  curve: plotted ? png : null,
});
console.table(
  rows.map((r) => ({
    case: r.case,
    layout: r.layout,
    mappings: r.mappings || "",
    "req/s": k(r.requestsPerSecond),
    "× (a)": (r.requestsPerSecond / reference).toFixed(2),
    "p99 µs": r.p99us,
    "CPU µs/req": r.cpuUsPerRequest.toFixed(2),
    disturbed: r.disturbed ? "*" : "",
  })),
);
console.log(JSON.stringify(targets, null, 2));
