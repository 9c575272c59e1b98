// bench/control.bench.ts case (c): what a live event client costs the packet path.
// Three clients, each in a process of its own at nice 10 (bench/control-subscriber.ts,
// standing for a browser or a terminal on another machine; its CPU is counted apart):
//   none       no control client;
//   dashboard  what the dashboard's page does: a sampled subscription (events.subscribe
//              latest 200 per second, read from the shards' event rings) and stats.get,
//              server.health, ha.status every second;
//   full       the full event stream (events.subscribe {}, every event: `pcpctl events`).
// Two loads from the C load generator: "refresh" (run mode: every request refreshes a live
// mapping, one refresh event each) and "churn" (churn mode: every request deletes a live
// mapping or creates it again, one create or delete event each: the engine's fastest
// event rate, what a dashboard must survive). Per load, --rounds rounds of one run per
// client, in an order rotated every round (so drift falls on every client alike); the
// ratio of a round is client ÷ none of that round, and the median over the rounds is kept.
// A run during which other jobs or hypervisor steal took more than DISTURBED cores is
// marked (not redone: the rounds' median absorbs it).
import { spawn, type ChildProcess } from "node:child_process";
import { rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import {
  cpu,
  cpuShare,
  DISTURBED,
  loadgen,
  machine,
  quietMachine,
  refreshRun,
  threadCores,
  threadCpu,
  type CpuShare,
  type LoadgenResult,
  type RunningServer,
  type Settings,
} from "./e2e/harness.js";

const SUBSCRIBER_JS = new URL("./control-subscriber.ts", import.meta.url).pathname;
const CLIENT_NICE = 10;
export const CLIENTS = ["none", "dashboard", "full"] as const;
export type EventClient = (typeof CLIENTS)[number];
export const LOADS = ["refresh", "churn"] as const;
type Load = (typeof LOADS)[number];

export type SubscriberCounts = {
  delivered: number;
  total: number;
  dropped: number;
  droppedNotices: number;
  frames: number;
  bytes: number;
  malformed: number;
  polls: number;
  pollErrors: number;
  quietMs: number;
};

function withDeadline<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([p, new Promise<T>((_, reject) => (timer = setTimeout(() => reject(new Error(message)), ms)))]).finally(() => clearTimeout(timer));
}

/** The subscriber process (bench/control-subscriber.ts) at nice 10: its counts on request. */
export class SubscriberProcess {
  private waiting: ((m: any) => void)[] = [];
  private constructor(readonly child: ChildProcess) {
    child.on("message", (m) => this.waiting.shift()?.(m));
  }

  static async start(url: string, token: string, mode: "full" | "dashboard"): Promise<SubscriberProcess> {
    const child = spawn(process.execPath, ["--import", "tsx", SUBSCRIBER_JS, url, token, mode], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const p = new SubscriberProcess(child);
    const subscribed = await withDeadline(p.next(), 15_000, "the subscriber process did not subscribe");
    if (subscribed.reply?.result?.subscribed !== true) throw new Error(`events.subscribe: ${JSON.stringify(subscribed)}`);
    os.setPriority(child.pid!, CLIENT_NICE);
    return p;
  }

  private next(): Promise<any> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  async counts(): Promise<SubscriberCounts> {
    const answer = this.next();
    this.child.send("counts");
    return (await withDeadline(answer, 10_000, "the subscriber process did not answer")).counts;
  }

  async stop(): Promise<void> {
    const gone = new Promise((resolve) => this.child.once("exit", resolve));
    this.child.send("stop");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await gone;
    clearTimeout(timer);
  }
}

export interface EventsCostOptions {
  settings: Settings;
  mappings: number;
  rounds: number;
  waitQuiet: boolean;
  url: string;
  token: string;
  loads: Load[];
}

/** One run of `load` with `client` attached (started before, stopped after). */
async function run(server: RunningServer, o: EventsCostOptions, load: Load, client: EventClient, stateFile: string) {
  if (o.waitQuiet) await quietMachine(0.3, 20_000);
  const sub = client === "none" ? undefined : await SubscriberProcess.start(o.url, o.token, client);
  try {
    const before = await sub?.counts();
    const sub0 = sub ? cpu(sub.child.pid!) : 0;
    const t0 = threadCpu(server.pid);
    const srv0 = cpu(server.pid);
    const m0 = machine();
    const w0 = performance.now();
    const { seconds, window } = o.settings;
    const r: LoadgenResult = await server.step(
      load === "refresh"
        ? refreshRun(o.settings, "run", o.mappings)
        : loadgen(
            o.settings.listen,
            "churn",
            o.mappings,
            ["--window", String(window), "--duration", String(seconds), "--timeout-ms", "1000", "--state", stateFile],
            seconds + 30,
          ),
    );
    const threads = threadCores(t0, threadCpu(server.pid), server.pid, (performance.now() - w0) / 1000);
    const subCpu = sub ? cpu(sub.child.pid!) - sub0 : 0;
    const share: CpuShare = cpuShare(m0, machine(), cpu(server.pid) - srv0, r, subCpu);
    const after = await sub?.counts();
    const got =
      before && after
        ? {
            frames: after.frames - before.frames,
            eventsDelivered: after.delivered - before.delivered,
            eventsTotal: after.total - before.total,
            dropped: after.dropped - before.dropped,
            polls: after.polls - before.polls,
            pollErrors: after.pollErrors - before.pollErrors,
            malformed: after.malformed - before.malformed,
          }
        : undefined;
    const disturbance = share.otherCores + share.stealCores;
    console.error(
      `  ${load} ${client.padEnd(9)} ${Math.round(r.okPerSecond).toLocaleString("en")} req/s, p99 ${r.p99us} µs; server main ${threads.mainCores.toFixed(2)} / worker ${threads.busiestCores.toFixed(2)} cores; client ${(share.benchCores ?? 0).toFixed(2)}; other+steal ${disturbance.toFixed(2)}` +
        (got
          ? `; ${got.frames} frames, ${got.eventsDelivered.toLocaleString("en")} events delivered${got.dropped ? `, ${got.dropped.toLocaleString("en")} dropped` : ""}`
          : ""),
    );
    return {
      load,
      client,
      requestsPerSecond: r.okPerSecond,
      p50us: r.p50us,
      p99us: r.p99us,
      lost: r.lost,
      cpu: share,
      threads,
      disturbed: disturbance > DISTURBED,
      subscriber: got,
    };
  } finally {
    await sub?.stop();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** Per load: rounds of none / dashboard / full in rotated order; ratios client ÷ none per round, their median. */
export async function eventsCost(server: RunningServer, o: EventsCostOptions) {
  const stateFile = join(os.tmpdir(), `pcpd-bench-churn-${process.pid}.bits`);
  rmSync(stateFile, { force: true });
  const out: Record<string, unknown> = {};
  try {
    for (const load of o.loads) {
      console.error(`(c) ${load} load: ${o.rounds} rounds of none / dashboard / full, ${o.settings.seconds} s each`);
      type Run = Awaited<ReturnType<typeof run>>;
      const rounds: { order: EventClient[]; runs: Record<EventClient, Run>; ratio: { dashboard: number; full: number } }[] = [];
      for (let i = 0; i < o.rounds; i++) {
        const order = CLIENTS.map((_, j) => CLIENTS[(i + j) % CLIENTS.length]);
        const runs = {} as Record<EventClient, Run>;
        for (const client of order) runs[client] = await run(server, o, load, client, stateFile);
        rounds.push({
          order,
          runs,
          ratio: { dashboard: runs.dashboard.requestsPerSecond / runs.none.requestsPerSecond, full: runs.full.requestsPerSecond / runs.none.requestsPerSecond },
        });
      }
      const ratio = {
        dashboard: median(rounds.map((r) => r.ratio.dashboard)),
        full: median(rounds.map((r) => r.ratio.full)),
      };
      /** Shard-worker CPU per request, client ÷ none (median over rounds): the packet thread's own cost, less disturbed by other jobs. */
      const workerUs = (r: Awaited<ReturnType<typeof run>>) => (r.threads.busiestCores * 1e6) / r.requestsPerSecond;
      const mainCores = (c: EventClient) => median(rounds.map((r) => r.runs[c].threads.mainCores));
      const workerCpuRatio = {
        dashboard: median(rounds.map((r) => workerUs(r.runs.dashboard) / workerUs(r.runs.none))),
        full: median(rounds.map((r) => workerUs(r.runs.full) / workerUs(r.runs.none))),
      };
      console.error(
        `(c) ${load}: UDP req/s with ÷ without, median of ${o.rounds} rounds: dashboard ${ratio.dashboard.toFixed(3)} (rounds ${rounds.map((r) => r.ratio.dashboard.toFixed(3)).join(", ")}), full stream ${ratio.full.toFixed(3)} (rounds ${rounds.map((r) => r.ratio.full.toFixed(3)).join(", ")})`,
      );
      out[load] = {
        ratio,
        workerCpuPerRequestRatio: workerCpuRatio,
        serverMainCores: { none: mainCores("none"), dashboard: mainCores("dashboard"), full: mainCores("full") },
        requestsPerSecond: Object.fromEntries(CLIENTS.map((c) => [c, median(rounds.map((r) => r.runs[c].requestsPerSecond))])),
        disturbedRuns: rounds.flatMap((r) => Object.values(r.runs)).filter((r) => r.disturbed).length,
        rounds,
      };
    }
  } finally {
    rmSync(stateFile, { force: true });
  }
  return out as Record<
    Load,
    {
      ratio: { dashboard: number; full: number };
      workerCpuPerRequestRatio: { dashboard: number; full: number };
      serverMainCores: Record<EventClient, number>;
      requestsPerSecond: Record<EventClient, number>;
      disturbedRuns: number;
      rounds: unknown[];
    }
  >;
}
