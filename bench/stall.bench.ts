// Main-thread event-loop stalls per operation at a large live table (issue #15/#17:
// systemd's watchdog, WatchdogSec=30, is fed from the main thread; a stall of half the
// interval gets a healthy server killed and restarted, an Epoch reset for everyone).
//
// A real server (dist/, one worker) with persistence on and the event-stream dataplane
// (a consumer in this process: the main thread's dataplane manager sees every change),
// populated with N mappings by the C load generator; then each operation in turn. What
// is measured is the server's own figure (src/server/loop-stalls.ts):
// pcpd_event_loop_delay_max_seconds, the longest main-thread delay since the previous
// scrape, read just before and just after the operation; for the phases /metrics cannot
// see (stop, and the restore before the control channel listens) the warning lines the
// server logs for every stall over 120 ms (watchdog.stallWarnFraction × 30 s) and the
// first scrape after start (its maximum covers the whole start-up).
//
// Usage: npm run bench:stall -- [SIZES, default 1000000,10000000] [--tag T]
// Writes bench/results/stall-<tag>.json. 10M needs ~3 GB of memory and a few minutes.
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ControlClient } from "../src/client/control-client.js";
import { buildLoadgen, machineInfo, parseSizes, populate, SERVER_JS, startServer, writeResults, type RunningServer, type Settings } from "./e2e/harness.js";

const { values: flags, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    tag: { type: "string", default: new Date().toISOString().slice(0, 10) },
    "control-port": { type: "string", default: "25410" },
    window: { type: "string", default: "128" },
    profile: { type: "string" }, // a CommonJS file the server preloads (--require): a profiler, to see where a stall comes from
  },
});
const SIZES = parseSizes(positionals[0], "1000000,10000000");
const CONTROL = { address: "127.0.0.1", port: Number(flags["control-port"]) };
const URL_WS = `ws://${CONTROL.address}:${CONTROL.port}/control`;
const METRICS = `http://${CONTROL.address}:${CONTROL.port}/metrics`;
const settings: Settings = { listen: ["127.0.0.40"], window: Number(flags.window), seconds: 10, repeat: 1 };
/** Stalls over 120 ms are logged by the server (stallWarnFraction × intervalSeconds). */
const WATCHDOG = { intervalSeconds: 30, stallWarnFraction: 0.004 };

interface Stall {
  /** The longest main-thread delay seen during the operation, ms. */
  maxMs: number;
  /** How long the operation took, ms. */
  tookMs: number;
  /** The longest stall the server logged (over 120 ms) meanwhile, with the main thread's own CPU time over it (far less: it waited for a CPU). */
  logged?: { stallMs: number; cpuMs?: number };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function scrapeMaxMs(): Promise<number> {
  const body = await (await fetch(METRICS)).text();
  const m = /^pcpd_event_loop_delay_max_seconds (\S+)$/m.exec(body);
  if (!m) throw new Error("pcpd_event_loop_delay_max_seconds missing from /metrics");
  return Number(m[1]) * 1000;
}

/** The server's stall warnings (length, its CPU time) logged in [from, to] (the time a stall ended). */
function loggedStalls(server: RunningServer, from: number, to: number): { stallMs: number; cpuMs?: number }[] {
  return server
    .log()
    .split("\n")
    .flatMap((l) => {
      if (!l.includes("stallMs")) return [];
      const j = JSON.parse(l) as { time: number; stallMs: number; cpuMs?: number };
      return j.time >= from && j.time <= to ? [{ stallMs: j.stallMs, cpuMs: j.cpuMs }] : [];
    });
}

const longest = (stalls: { stallMs: number; cpuMs?: number }[]) =>
  stalls.reduce<(typeof stalls)[number] | undefined>((a, b) => (!a || b.stallMs > a.stallMs ? b : a), undefined);

let current: RunningServer | undefined;

/** `op`'s longest main-thread delay: the server's max-since-scrape gauge around it (and a tick after). */
async function measure(name: string, op: () => Promise<unknown>): Promise<Stall> {
  await scrapeMaxMs(); // resets the window
  const from = Date.now();
  const t0 = performance.now();
  await op();
  const tookMs = performance.now() - t0;
  await sleep(150); // the tick after the operation's last step
  const maxMs = await scrapeMaxMs();
  const logged = current && longest(loggedStalls(current, from, Date.now()));
  console.error(
    `  ${name}: max main-thread delay ${maxMs.toFixed(0)} ms (operation ${tookMs.toFixed(0)} ms)${logged ? `; longest logged ${logged.stallMs} ms, ${logged.cpuMs} ms of it on CPU` : ""}`,
  );
  return { maxMs, tookMs, logged };
}

async function connect(token: string, deadlineMs: number): Promise<ControlClient> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    try {
      return await ControlClient.connect(URL_WS, { token, keepAliveMs: 0, timeoutMs: 600_000 });
    } catch (e) {
      if (Date.now() > until) throw e;
      await sleep(250);
    }
  }
}

/** A dataplane consumer (dataplane.subscribe) that counts the operations it is sent. */
async function consumer(token: string): Promise<{ client: ControlClient; ops: () => number }> {
  const client = await connect(token, 600_000);
  let ops = 0;
  client.on("notification", (method, params) => {
    if (method === "dataplane.ops") ops += (params as { ops: unknown[] }).ops.length;
  });
  await client.call("dataplane.subscribe", {});
  return { client, ops: () => ops };
}

async function dataplane(admin: ControlClient) {
  const d = (await admin.call("stats.get", {})).dataplane;
  if (!d) throw new Error("no dataplane in stats.get");
  return d as { up: boolean; reconciliations: number; installed: number; pendingKeys: number };
}

async function waitFor(what: string, check: () => Promise<boolean>, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

async function start(mappings: number, directory: string, token: string) {
  const server = await startServer(settings.listen, mappings, {
    name: "stall",
    ping: false,
    control: { enabled: true, ...CONTROL, tokens: [{ token, role: "admin" }], eventBufferBytes: 256 * 1024 * 1024 },
    persistence: { enabled: true, directory, snapshotJournalBytes: 256 * 1024 * 1024 },
    extra: { watchdog: WATCHDOG, dataplane: { backend: "events" } },
    env: flags.profile ? { NODE_OPTIONS: `--require ${flags.profile}` } : undefined,
  });
  current = server;
  const t0 = Date.now();
  const admin = await server.step(connect(token, 600_000));
  const startMs = await scrapeMaxMs(); // the longest delay since the monitor started: the whole start-up
  return { server, admin, startMs, readyMs: Date.now() - t0 };
}

async function size(mappings: number) {
  const directory = mkdtempSync(join(tmpdir(), "pcpd-stall-"));
  const token = randomBytes(24).toString("base64url");
  const ops: Record<string, Stall> = {};
  let server: RunningServer | undefined;
  let n = 0;
  /** The server's log, kept for a look at what happened (a failed run, the stall warnings). */
  const keepLog = () => server && writeFileSync(join(tmpdir(), `pcpd-stall-server-${mappings}-${++n}.log`), server.log());
  try {
    let admin: ControlClient;
    ({ server, admin } = await start(mappings, directory, token));
    let sink = await consumer(token);
    await waitFor("the dataplane up", async () => (await dataplane(admin)).up, 60_000);
    console.error(`${mappings} mappings: populating`);
    const running = server;
    // Populate: the longest delay of any 1 s window while the table fills (journal, snapshots, dataplane ingest).
    let populateMax = 0;
    await scrapeMaxMs();
    const sampler = setInterval(() => void scrapeMaxMs().then((ms) => (populateMax = Math.max(populateMax, ms))), 1000);
    const t0 = performance.now();
    const populateFrom = Date.now();
    try {
      await running.step(populate(settings, mappings));
    } finally {
      clearInterval(sampler);
    }
    populateMax = Math.max(populateMax, await scrapeMaxMs());
    const populateLogged = longest(loggedStalls(running, populateFrom, Date.now()));
    ops.populate = { maxMs: populateMax, tookMs: performance.now() - t0, logged: populateLogged };
    console.error(
      `  populate: max ${populateMax.toFixed(0)} ms over ${(ops.populate.tookMs / 1000).toFixed(0)} s${populateLogged ? `; longest logged ${populateLogged.stallMs} ms, ${populateLogged.cpuMs} ms of it on CPU` : ""}`,
    );
    await waitFor("the dataplane caught up", async () => (await dataplane(admin)).installed >= mappings, 600_000);

    ops.idle = await measure("idle 3 s", () => sleep(3000));
    ops.metrics = await measure("GET /metrics", () => fetch(METRICS).then((r) => r.text()));
    for (const method of ["stats.get", "server.health", "server.info", "epoch.get", "config.get"] as const)
      ops[method] = await measure(method, () => admin.call(method, {}));
    ops["mappings.list"] = await measure("mappings.list (1000)", () => admin.call("mappings.list", { limit: 1000 }));
    ops["mappings.list (all pages, 10k)"] = await measure("mappings.list ×10", async () => {
      let cursor: string | undefined;
      for (let i = 0; i < 10; i++) cursor = (await admin.call("mappings.list", { limit: 1000, cursor })).next ?? undefined;
    });
    ops["mappings.get"] = await measure("mappings.get", () => admin.call("mappings.get", { internalAddress: "10.0.0.1", protocol: 6, internalPort: 1024 }));
    ops["subscribers.usage"] = await measure("subscribers.usage", () => admin.call("subscribers.usage", { internalAddress: "10.0.0.1" }));
    ops["config.reload (SIGHUP)"] = await measure("SIGHUP reload", async () => {
      const before = running.log().split("configuration reloaded").length;
      process.kill(running.pid, "SIGHUP");
      await waitFor("the reload", async () => running.log().split("configuration reloaded").length > before, 60_000);
    });
    ops["dataplane resync (consumer joins)"] = await measure("dataplane resync", async () => {
      const before = (await dataplane(admin)).reconciliations;
      const second = await consumer(token);
      await waitFor("the reconciliation", async () => (await dataplane(admin)).reconciliations > before, 600_000);
      await second.client.close();
    });

    // Stop (SIGTERM: HA, dataplane, mapping log, shards flushed) and start again from the files.
    await admin.close();
    await sink.client.close();
    const stopFrom = Date.now();
    const stopT0 = performance.now();
    await server.stop();
    keepLog();
    const stopped = loggedStalls(server, stopFrom, Date.now());
    ops["stop (SIGTERM)"] = { maxMs: Math.max(0, ...stopped.map((x) => x.stallMs)), tookMs: performance.now() - stopT0, logged: longest(stopped) };
    console.error(`  stop: stalls over 120 ms: [${stopped.map((x) => x.stallMs).join(", ")}]`);
    const startT0 = performance.now();
    const restarted = await start(mappings, directory, token);
    ({ server, admin } = restarted);
    const restore = await dataplane(admin);
    ops["start (restore from snapshot + journal)"] = { maxMs: restarted.startMs, tookMs: performance.now() - startT0 };
    console.error(`  start: max ${restarted.startMs.toFixed(0)} ms, control up after ${restarted.readyMs} ms`);
    ops["dataplane reconcile after start"] = await measure("dataplane reconcile after start", async () => {
      sink = await consumer(token);
      await waitFor("the dataplane up", async () => (await dataplane(admin)).reconciliations > restore.reconciliations, 600_000);
    });
    const mappingsAfter = Number((await admin.call("stats.get", {})).engine.mappings);
    ops["epoch.reset (drops the files, restarts empty)"] = await measure("epoch.reset", async () => {
      await admin.call("epoch.reset", { shard: 0 });
      await waitFor("the dataplane up", async () => (await dataplane(admin)).up, 600_000);
    });
    await admin.close();
    await sink.client.close();
    await server.stop();
    return { mappings, restored: mappingsAfter, ops };
  } finally {
    keepLog();
    rmSync(directory, { recursive: true, force: true });
  }
}

if (!existsSync(SERVER_JS)) throw new Error(`${SERVER_JS} missing: run npm run build first`);
buildLoadgen();
const runs = [];
const file = `stall-${flags.tag}.json`;
for (const n of SIZES) {
  runs.push(await size(n));
  // After each size: a larger one that fails leaves the smaller ones' figures.
  writeResults(file, {
    machine: machineInfo(),
    conditions: {
      workers: 1,
      persistence: true,
      dataplane: "events (one consumer in the bench process)",
      warnOverMs: WATCHDOG.intervalSeconds * 1000 * WATCHDOG.stallWarnFraction,
    },
    runs,
  });
}
console.error(`bench/results/${file}`);
process.exit(0);
