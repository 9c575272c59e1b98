// Shared machinery of the benchmarks that drive the real server over UDP
// (bench/e2e.bench.ts, bench/control.bench.ts): child processes that are always killed,
// the C load generator (bench/e2e/loadgen.c: build and runs), the echo baselines (start,
// warm-up, stop) and the sizes argument, /proc readers (RSS, CPU of a
// process tree, machine-wide CPU), timed runs that detect and redo disturbed measurements,
// and the server itself (configuration for a population size, start, readiness, stop).
// Importing this module installs the exit and signal handlers that kill every child.
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { BLOCK, PER_SUB, poolFor } from "../population.js";

export { PER_SUB }; // mappings per subscriber, for the benches that import it from here

/** What every timed measurement shares: server addresses, requests outstanding, run length, runs kept. */
/** The command-line options every end-to-end bench takes (node:util parseArgs form). */
export const RUN_OPTIONS = {
  // Requests outstanding. 128 keeps within the default 208 KiB receive buffer of the
  // server's socket (Node sets no SO_RCVBUF); at 256 the echo already drops datagrams.
  window: { type: "string", default: "128" },
  seconds: { type: "string", default: "10" }, // length of each timed run
  repeat: { type: "string", default: "3" }, // timed runs per measurement; the median is kept
} as const;

export interface Settings {
  /** Server (or echo) listen addresses; one worker and one socket per address. */
  listen: string[];
  /** Requests outstanding in the load generator. */
  window: number;
  /** Length of each timed run, seconds. */
  seconds: number;
  /** Timed runs per measurement; the median is kept. */
  repeat: number;
  /** The load generator's source addresses, each `A` or `A:port` (default [CLIENT], an ephemeral port); subscriber s speaks from binds[s % n]. */
  binds?: string[];
}

/** The servers' port (PCPD_BENCH_PORT: bench/e2e-io.bench.ts uses its own, away from other benches). */
export const PORT = Number(process.env.PCPD_BENCH_PORT ?? 5351);
export const CLIENT = "127.0.0.21";
/**
 * CLIENT on one port for every run of a bench, as a THIRD_PARTY proxy (an AFTR) keeps its
 * socket: its mappings' requester stays the same from run to run (from a new ephemeral
 * port per run, every mapping's first renewal in a run would record a new requester).
 * For benches whose load generators run one at a time.
 */
export const PROXY_SOURCE = `${CLIENT}:${PORT + 1}`;
export const LIFETIME = 3600;

export const root = fileURLToPath(new URL("../..", import.meta.url));
export const LOADGEN = join(root, "build", "e2e-loadgen");
export const SERVER_JS = join(root, "dist", "cli", "pcp-server.js");

/** Key k of the load generator: subscriber 10.x.y.z (x.y.z = k / PER_SUB), TCP, internal port 1024 + k % PER_SUB. */
export function keyEndpoint(key: number): { internalAddress: string; protocol: number; internalPort: number } {
  const s = Math.floor(key / PER_SUB);
  return { internalAddress: `10.${(s >> 16) & 255}.${(s >> 8) & 255}.${s & 255}`, protocol: 6, internalPort: 1024 + (key % PER_SUB) };
}

// --- Child processes: every one is killed on exit, failure or Ctrl-C ----------------------

const children = new Set<ChildProcess>();
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130));

export function track(c: ChildProcess): ChildProcess {
  children.add(c);
  c.once("exit", () => children.delete(c));
  return c;
}

/** Waits for a child's exit (SIGKILL after `ms`); resolves with its exit code. */
export function exited(c: ChildProcess, ms: number): Promise<number | null> {
  if (c.exitCode !== null || c.signalCode !== null) return Promise.resolve(c.exitCode);
  return new Promise((resolve) => {
    const t = setTimeout(() => c.kill("SIGKILL"), ms);
    c.once("exit", (code) => {
      clearTimeout(t);
      resolve(code);
    });
  });
}

// --- Load generator --------------------------------------------------------------------------

/** Compiles bench/e2e/loadgen.c into build/e2e-loadgen (gcc -O2). */
export function buildLoadgen(): void {
  mkdirSync(join(root, "build"), { recursive: true });
  execFileSync("gcc", ["-O2", "-Wall", "-Wextra", "-o", LOADGEN, join(root, "bench", "e2e", "loadgen.c")], { stdio: "inherit" });
}

export interface LoadgenResult {
  mode: string;
  keys: number;
  window: number;
  seconds: number;
  sent: number;
  received: number;
  ok: number;
  bad: number;
  lost: number;
  stray: number;
  retransmits: number;
  unfinished: number;
  okPerSecond: number;
  p50us: number;
  p99us: number;
  p999us: number;
  maxUs: number;
  cpuSeconds: number;
  failed: boolean;
}

/** Runs the load generator to completion (killed after `limitSeconds`); its JSON line. */
export async function loadgen(listen: string[], mode: string, keys: number, extra: string[], limitSeconds: number, binds = [CLIENT]): Promise<LoadgenResult> {
  const args = [
    mode,
    "--server",
    listen.map((a) => `${a}:${PORT}`).join(","),
    "--bind",
    binds.join(","),
    "--keys",
    String(keys),
    "--per-sub",
    String(PER_SUB),
    "--lifetime",
    String(LIFETIME),
    ...extra,
  ];
  const c = track(spawn(LOADGEN, args, { stdio: ["ignore", "pipe", "inherit"] }));
  let out = "";
  c.stdout!.on("data", (d) => (out += d));
  const code = await exited(c, limitSeconds * 1000);
  const line = out.trim().split("\n").pop() ?? "";
  if (!line.startsWith("{")) throw new Error(`loadgen ${mode} exited with ${code} and no result`);
  const r = JSON.parse(line) as LoadgenResult;
  if (code !== 0 || r.failed || r.bad > 0) throw new Error(`loadgen ${mode} failed (exit ${code}): ${line}`);
  return r;
}

/** Populates keys 0..mappings-1 (every one answered SUCCESS, losses retransmitted) within `deadlineSeconds`. */
export async function populate(s: Settings, mappings: number, deadlineSeconds = Math.max(120, mappings / 10_000)): Promise<LoadgenResult> {
  const r = await loadgen(
    s.listen,
    "populate",
    mappings,
    ["--window", String(s.window), "--timeout-ms", "1000", "--tries", "20", "--deadline", String(deadlineSeconds)],
    deadlineSeconds + 30,
    s.binds,
  );
  if (r.ok !== mappings) throw new Error(`populate: ${r.ok} of ${mappings} keys answered SUCCESS`);
  return r;
}

/** One refresh (or echo) run of `seconds` with the window of `s`. */
export function refreshRun(s: Settings, mode: "run" | "echo", keys: number, seconds = s.seconds): Promise<LoadgenResult> {
  return loadgen(s.listen, mode, keys, ["--window", String(s.window), "--duration", String(seconds), "--timeout-ms", "1000"], seconds + 30, s.binds);
}

/** The live-table sizes of an end-to-end bench: its first positional argument (a comma list), else `fallback`. */
export function parseSizes(arg: string | undefined, fallback: string): number[] {
  const sizes = (arg ?? fallback).split(",").map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1000 || n > 15_000_000)) throw new Error(`sizes must be integers in [1000, 15M]: ${arg}`);
  return sizes;
}

// --- Echo baselines ------------------------------------------------------------------------

/** The node echo (bench/e2e/echo-worker.mjs): a bare dgram echo read in a worker_thread, as the server's shards do. */
export const ECHO_JS = join(root, "bench", "e2e", "echo-worker.mjs");
/** Keys of an echo run: the echo keeps no state; the key space only shapes the requests. */
export const ECHO_KEYS = 1_000_000;

/**
 * An echo (`command`, which prints "ready" once it listens on `s.listen` at PORT) started,
 * warmed up for 2 s by the load generator (discarded), handed to `measure` with its pid,
 * and stopped whatever `measure` does.
 */
export async function withEcho<T>(name: string, command: string[], s: Settings, measure: (pid: number) => Promise<T>): Promise<T> {
  const [cmd, ...args] = command;
  const c = track(spawn(cmd, [...args, "--listen", s.listen.join(","), "--port", String(PORT)], { stdio: ["ignore", "pipe", "inherit"] }));
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`${name} not ready after 10 s`)), 10_000);
      c.stdout!.on("data", (d) => {
        if (String(d).includes("ready")) {
          clearTimeout(t);
          resolve();
        }
      });
      c.once("exit", (code) => reject(new Error(`${name} exited with ${code}`)));
    });
    await loadgen(s.listen, "echo", ECHO_KEYS, ["--window", String(s.window), "--duration", "2"], 30, s.binds); // warm-up, discarded
    return await measure(c.pid!);
  } finally {
    c.kill("SIGTERM");
    await exited(c, 5000);
  }
}

// --- /proc: memory and CPU of a process and its descendants ----------------------------

const TICK = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

/** The process and its descendants (the server's piscina threads are in the process itself). */
function tree(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const stat = procFile(Number(e), "stat");
    if (stat) parent.set(Number(e), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
  }
  const out = [pid];
  for (let i = 0; i < out.length; i++) for (const [p, pp] of parent) if (pp === out[i]) out.push(p);
  return out;
}

/** A /proc file of a process that may have ended meanwhile ("" then). */
const procFile = (pid: number, name: string) => {
  try {
    return readFileSync(`/proc/${pid}/${name}`, "utf8");
  } catch {
    return "";
  }
};

/** Resident memory (VmRSS) of the process and its descendants, bytes. */
export function rss(pid: number): number {
  let kb = 0;
  for (const p of tree(pid)) kb += Number(/VmRSS:\s+(\d+) kB/.exec(procFile(p, "status"))?.[1] ?? 0);
  return kb * 1024;
}

/** User + system CPU seconds of the process (all threads) and its descendants. */
export function cpu(pid: number): number {
  let ticks = 0;
  for (const p of tree(pid)) {
    const stat = procFile(p, "stat");
    if (!stat) continue;
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15)
  }
  return ticks / TICK;
}

/** User + system CPU seconds of each thread of one process (by thread id; the main thread's id is the pid). */
export function threadCpu(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    const stat = procFile(pid, `task/${tid}/stat`);
    if (!stat) continue;
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    out.set(Number(tid), (Number(f[11]) + Number(f[12])) / TICK);
  }
  return out;
}

/**
 * CPU cores of a process's threads between two threadCpu readings over `seconds`: the
 * main thread, the busiest other thread (for the server under UDP load: the shard worker
 * that owns the socket), and all the rest (libuv, V8 and idle workers).
 */
export function threadCores(before: Map<number, number>, after: Map<number, number>, pid: number, seconds: number) {
  let main = 0;
  let busiest = 0;
  let busiestTid = 0;
  let rest = 0;
  for (const [tid, t] of after) {
    const d = t - (before.get(tid) ?? 0);
    if (tid === pid) main = d;
    else if (d > busiest) {
      rest += busiest;
      busiest = d;
      busiestTid = tid;
    } else rest += d;
  }
  return { mainCores: main / seconds, busiestCores: busiest / seconds, busiestTid, restCores: rest / seconds };
}

/** Machine-wide CPU counters (/proc/stat, all CPUs): busy, steal and total ticks. */
export function machine() {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1, 9).map(Number);
  const [user, nice, system, idle, iowait, irq, softirq, steal] = f;
  return { busy: user + nice + system + irq + softirq, steal, total: user + nice + system + idle + iowait + irq + softirq + steal };
}

export interface CpuShare {
  processCores: number;
  loadgenCores: number;
  /** Only when the bench counts its own process as a participant (bench/control.bench.ts). */
  benchCores?: number;
  otherCores: number;
  stealCores: number;
}

/**
 * Where the machine's CPU went during a timed run, in cores: the process measured, the
 * load generator, the bench process itself when it takes part (`benchSeconds`: a control
 * client or subscriber), everything else (another job on this machine) and hypervisor
 * steal. A large `otherCores` or `stealCores` marks a disturbed measurement.
 */
export function cpuShare(
  before: ReturnType<typeof machine>,
  after: ReturnType<typeof machine>,
  processSeconds: number,
  r: LoadgenResult,
  benchSeconds?: number,
): CpuShare {
  const cores = os.cpus().length;
  const total = after.total - before.total;
  const busyCores = ((after.busy - before.busy) / total) * cores;
  const processCores = processSeconds / r.seconds;
  const loadgenCores = r.cpuSeconds / r.seconds;
  if (benchSeconds === undefined) {
    return {
      processCores,
      loadgenCores,
      otherCores: Math.max(0, busyCores - processCores - loadgenCores),
      stealCores: ((after.steal - before.steal) / total) * cores,
    };
  }
  const benchCores = benchSeconds / r.seconds;
  return {
    processCores,
    loadgenCores,
    benchCores,
    otherCores: Math.max(0, busyCores - processCores - loadgenCores - benchCores),
    stealCores: ((after.steal - before.steal) / total) * cores,
  };
}

/** CPU seconds (user + system, all threads) of this bench process so far. */
export function ownCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Other jobs + steal above this many cores mark a timed run as disturbed. */
export const DISTURBED = 0.25;

/**
 * Waits until the machine has been nearly idle (busy below `cores`, everything included)
 * for one second, at most `maxMs`; returns how long it waited. For a shared machine where
 * other jobs come in bursts: call it while nothing of the bench is running.
 */
export async function quietMachine(cores = 0.3, maxMs = 60_000): Promise<number> {
  const start = performance.now();
  let announced = false;
  for (;;) {
    const a = machine();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const b = machine();
    const busy = ((b.busy - a.busy + (b.steal - a.steal)) / (b.total - a.total)) * os.cpus().length;
    const waited = performance.now() - start;
    if (busy < cores || waited >= maxMs) {
      if (announced)
        console.error(`  (waited ${(waited / 1000).toFixed(0)} s for other jobs${busy < cores ? "" : `; still ${busy.toFixed(2)} cores busy, going on`})`);
      return waited;
    }
    announced = true;
  }
}

/** One timed load-generator run: its result, where the CPU went, the measured process's CPU seconds. */
export interface Measured {
  r: LoadgenResult;
  share: CpuShare;
  cpuSeconds: number;
}

export interface TimedRunOptions {
  /** Races each run against the server's death (startServer's `step`). */
  step?: <T>(p: Promise<T>) => Promise<T>;
  /** Wraps each timed run (e.g. control traffic started before it and stopped after). */
  around?: (run: () => Promise<Measured>) => Promise<Measured>;
  /** Count this bench process's own CPU as a participant, not as another job. */
  countBench?: boolean;
  /** Before each run, wait (up to a minute) for other jobs on the machine to pause (quietMachine). */
  waitQuiet?: boolean;
}

/**
 * s.repeat timed load-generator runs against process `pid` (a disturbed run is done again,
 * at most 2 × repeat runs in all); the run with the median throughput among the
 * undisturbed ones is kept — or, if every run was disturbed, the least disturbed one,
 * marked. Every run is listed.
 */
export async function timedRun(s: Settings, pid: number, mode: "run" | "echo", keys: number, o: TimedRunOptions = {}) {
  const step = o.step ?? (<T>(p: Promise<T>) => p);
  const around = o.around ?? ((run: () => Promise<Measured>) => run());
  const all = [];
  const clean = [];
  while (clean.length < s.repeat && all.length < 2 * s.repeat) {
    if (o.waitQuiet) await quietMachine();
    const measured = await around(async (): Promise<Measured> => {
      const cpu0 = cpu(pid);
      const own0 = ownCpuSeconds();
      const m0 = machine();
      const r = await step(refreshRun(s, mode, keys));
      const cpuSeconds = cpu(pid) - cpu0;
      const share = cpuShare(m0, machine(), cpuSeconds, r, o.countBench ? ownCpuSeconds() - own0 : undefined);
      return { r, share, cpuSeconds };
    });
    const run = { ...measured, disturbance: measured.share.otherCores + measured.share.stealCores };
    all.push(run);
    if (run.disturbance <= DISTURBED) clean.push(run);
    else console.error(`  (disturbed: other jobs + steal took ${run.disturbance.toFixed(2)} cores)`);
  }
  const kept =
    clean.length > 0
      ? clean.sort((a, b) => a.r.okPerSecond - b.r.okPerSecond)[(clean.length - 1) >> 1]
      : all.reduce((a, b) => (b.disturbance < a.disturbance ? b : a));
  return {
    ...kept,
    disturbed: clean.length === 0,
    runs: all.map((a) => ({ ok: a.r.ok, okPerSecond: a.r.okPerSecond, p50us: a.r.p50us, p99us: a.r.p99us, disturbanceCores: a.disturbance })),
  };
}

/** What a results file keeps of a timedRun: rate, latency, CPU per request, where the CPU went, every run. */
export function timedSummary(t: Awaited<ReturnType<typeof timedRun>>) {
  return {
    requestsPerSecond: t.r.okPerSecond,
    p50us: t.r.p50us,
    p99us: t.r.p99us,
    cpuUsPerRequest: (t.cpuSeconds * 1e6) / t.r.ok,
    cpu: t.share,
    disturbed: t.disturbed,
    runs: t.runs,
  };
}

/** "server 0.97 / loadgen 0.80 / other 0.05 / steal 0.00" for progress lines. */
export function describeCores(c: CpuShare, processName = "server"): string {
  return `cores: ${processName} ${c.processCores.toFixed(2)}, loadgen ${c.loadgenCores.toFixed(2)}${c.benchCores !== undefined ? `, bench ${c.benchCores.toFixed(2)}` : ""}, other ${c.otherCores.toFixed(2)}, steal ${c.stealCores.toFixed(2)}`;
}

// --- Server --------------------------------------------------------------------------------

/**
 * The server's configuration for `mappings` live mappings; `control` replaces the control
 * section, which is off otherwise (the e2e bench reads counters from the stop log line and
 * must not collide with a server already on the default control port).
 */
export function serverConfig(listen: string[], mappings: number, control?: Record<string, unknown>, persistence?: Record<string, unknown>) {
  return {
    listen: { addresses: listen, port: PORT },
    subscribers: [], // the load generator is served only as a THIRD_PARTY source (an AFTR, say)
    thirdPartySources: [`${CLIENT}/32`],
    pool: { addresses: poolFor(mappings), portMin: 1024, blockSize: BLOCK, maxBlocksPerSubscriber: 2 },
    capacity: { mappings: Math.ceil(mappings * 1.02) + 1024, subscribers: Math.ceil((mappings / PER_SUB) * 1.02) + 64, peers: 1024, filters: 1024 },
    quotas: { mappingsPerSubscriber: PER_SUB },
    // Far above anything one load generator reaches: the bench must never be rate limited.
    rateLimit: { perSource: { rate: 1e9, burst: 1_000_000 }, global: { rate: 1e9, burst: 10_000_000 } },
    // "info" logs nothing per packet (only start, reload and stop), and the stop line
    // carries the engine's own counters, which are checked against the load generator's.
    log: { level: "info" },
    control: control ?? { enabled: false },
    persistence: persistence ?? { enabled: false },
  };
}

export interface StartOptions {
  /** Replaces the configuration's default control section. */
  control?: Record<string, unknown>;
  /** Replaces the configuration's persistence section (off by default). */
  persistence?: Record<string, unknown>;
  /** Prefix of the temporary configuration file's name. */
  name?: string;
  /** Top-level sections added to (or replacing those of) the configuration, e.g. `ha` (bench/ha.bench.ts). */
  extra?: Record<string, unknown>;
  /** false: resolve once spawned, without waiting for an answer (an HA standby never answers). Default true. */
  ping?: boolean;
  /** Added to the server's environment (PCPD_IO=dgram: the fallback path, docs/io.md). */
  env?: NodeJS.ProcessEnv;
  /** Another build's server (bench/logs.bench.ts: before ÷ after a change, in one run). Default SERVER_JS. */
  serverJs?: string;
}

export type RunningServer = Awaited<ReturnType<typeof startServer>>;

/** A running server: `step` races a promise against its death; `stop` ends it cleanly. */
export async function startServer(listen: string[], mappings: number, o: StartOptions = {}) {
  const configFile = join(os.tmpdir(), `pcpd-${o.name ?? "e2e"}-${process.pid}-${mappings}.json`);
  writeFileSync(configFile, JSON.stringify({ ...serverConfig(listen, mappings, o.control, o.persistence), ...o.extra }, null, 2), { mode: 0o600 });
  const c = track(
    spawn(process.execPath, [o.serverJs ?? SERVER_JS, "--config", configFile], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, ...o.env } }),
  );
  let log = "";
  c.stdout!.on("data", (d) => (log += d));
  const tail = () => log.trim().split("\n").slice(-10).join("\n");
  let stopping = false;
  const died = new Promise<never>((_, reject) =>
    c.once("exit", (code, signal) => stopping || reject(new Error(`server exited (${code ?? signal}) during the bench:\n${tail()}`))),
  );
  died.catch(() => {});
  const server = {
    pid: c.pid!,
    step: <T>(p: Promise<T>) => Promise.race([p, died]),
    /** The server's log so far (JSON lines). */
    log: () => log,
    tail,
    /** SIGTERM, then the engine's counters from the last log line that has them (null if none). */
    async stop() {
      stopping = true;
      c.kill("SIGTERM");
      const code = await exited(c, 30_000);
      rmSync(configFile, { force: true });
      const stats = log
        .split("\n")
        .flatMap((l) => {
          try {
            const j = JSON.parse(l);
            return j.stats ? [j.stats as Record<string, number>] : [];
          } catch {
            return [];
          }
        })
        .pop();
      return { code, stats: stats ?? null };
    },
    kill() {
      stopping = true;
      c.kill("SIGKILL");
      rmSync(configFile, { force: true });
    },
  };
  if (o.ping === false) return server;
  try {
    // Ready when it answers (key 0 is created here; populate refreshes it).
    await server.step(loadgen(listen, "ping", mappings, ["--deadline", "60"], 90));
  } catch (e) {
    server.kill();
    throw new Error(`${(e as Error).message}\nserver log:\n${tail()}`);
  }
  return server;
}

// --- Results -------------------------------------------------------------------------------

const git = (args: string[]) => {
  try {
    return execFileSync("git", args, { cwd: root, stdio: ["ignore", "pipe", "ignore"] })
      .toString()
      .trim();
  } catch {
    return null;
  }
};

/** Date, machine, toolchain and commit, for a results file. */
export function machineInfo() {
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model,
    cpus: os.cpus().length,
    os: `${os.type()} ${os.release()}`,
    gcc: execFileSync("gcc", ["-dumpfullversion"]).toString().trim(),
    commit: git(["rev-parse", "HEAD"]),
    uncommittedInSrc: git(["status", "--porcelain", "--", "src", "assembly"])?.split("\n").filter(Boolean).length ?? null,
  };
}

/** Writes bench/results/<name>. */
export function writeResults(name: string, out: unknown): void {
  mkdirSync(join(root, "bench", "results"), { recursive: true });
  writeFileSync(join(root, "bench", "results", name), JSON.stringify(out, null, 2) + "\n");
}
