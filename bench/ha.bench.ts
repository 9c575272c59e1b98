// Question: what does high availability (issue #14: active/standby shard groups replicated
// through NATS JetStream) cost and give, measured in one run on loopback?
// (1) takeover: from kill -9 of the active to the first correct answer — a MAP refresh of a
//     known mapping answered, by the new node, with the same external address and port —
//     at 1k and 1M mappings in the group (target ≤ 3 s at 1M), with the lease settings used
//     and the takeover the new active reports (ha.status lastTakeover, its log lines);
// (2) standby catch-up: records/s a fresh node applies from the stream of a group holding
//     1M mappings (spawn → ha.status shows its shard at the stream's last sequence);
// (3) MAP throughput with HA on (one node, active, replicating to the R3 stream) ÷ the same
//     node with HA off, same run (target ≥ 0.9); persistence is off in both, so the ratio
//     is the replication's cost alone. Refreshes (the steady state: coalesced, so few reach
//     the stream) and the populate phase's creates (every one a replicated record);
// (4) CHECKPOINT_REQUIRED [RFC 7767]: p50/p99 latency of MAP refreshes carrying the option
//     (the reply waits for the stream's quorum acknowledgement) against the same refreshes
//     without it, HA on, same node, interleaved rounds.
// Inputs: nats-server 3-node cluster on 127.0.0.1 (client ports 24790–24792, routes
// 24890–24892; test/helpers/nats.ts), pcp-server nodes as real processes on the service
// address 127.0.0.40:5351 (control channels 127.0.0.1:24720+i), hooks empty (loopback is
// always local: the standby binds once the old process is gone), the C load generator of
// the end-to-end benchmark (bench/e2e/loadgen.c; --checkpoint 1 adds the option and
// requires it echoed) from 127.0.0.21 as a THIRD_PARTY source. Each measurement uses a
// fresh ha.cluster name, so a fresh stream. Machinery: bench/e2e/harness.ts, bench/ha/nodes.ts.
// Usage: npm run build && npm run bench:ha [-- --sizes 1000,1000000] [--throughput-mappings 1000000]
//   [--seconds 10] [--repeat 3] [--lease-ms 2000] [--margin-ms 500] [--commit-ms 20]
//   [--only throughput,checkpoint,takeover,catchup]
// Results: bench/results/ha-<date>.json (every part, default sizes), else ha-<date>-<parts>[-<sizes>][-m<mappings>].json.
// The machine is shared and noisy: ratios are against baselines of the same run, and every
// timed phase records the CPU other jobs took.
import { parseArgs } from "node:util";
import {
  buildLoadgen,
  cpu,
  describeCores,
  loadgen,
  machine,
  machineInfo,
  populate,
  quietMachine,
  threadCores,
  threadCpu,
  timedRun,
  timedSummary,
  writeResults,
  type LoadgenResult,
  type Measured,
  type Settings,
} from "./e2e/harness.js";
import {
  GROUP,
  SERVICE,
  groupStatus,
  mappedNow,
  probe,
  shardSeq,
  startNats,
  startNode,
  stopNats,
  streamState,
  waitGroup,
  type HaNode,
  type HaSettings,
} from "./ha/nodes.js";

const { values: flags } = parseArgs({
  options: {
    sizes: { type: "string", default: "1000,1000000" },
    "throughput-mappings": { type: "string", default: "1000000" },
    seconds: { type: "string", default: "10" },
    repeat: { type: "string", default: "3" },
    window: { type: "string", default: "128" },
    "checkpoint-window": { type: "string", default: "16" },
    "checkpoint-seconds": { type: "string", default: "5" },
    "checkpoint-rounds": { type: "string", default: "3" },
    "lease-ms": { type: "string", default: "2000" },
    "margin-ms": { type: "string", default: "500" },
    "commit-ms": { type: "string", default: "20" },
    only: { type: "string", default: "throughput,checkpoint,takeover,catchup" },
  },
});
const PARTS = new Set(flags.only!.split(","));
for (const p of PARTS) if (!["throughput", "checkpoint", "takeover", "catchup"].includes(p)) throw new Error(`--only: unknown part ${p}`);
const SIZES = flags.sizes!.split(",").map(Number);
const TPUT = Number(flags["throughput-mappings"]);
for (const n of [TPUT, ...SIZES]) if (!Number.isInteger(n) || n < 1000 || n > 2_000_000) throw new Error(`mapping counts must be integers in [1000, 2M]: ${n}`);
const settings: Settings = { listen: [SERVICE], window: Number(flags.window), seconds: Number(flags.seconds), repeat: Math.max(1, Number(flags.repeat)) };
const ha: HaSettings = { leaseMs: Number(flags["lease-ms"]), safetyMarginMs: Number(flags["margin-ms"]), commitIntervalMs: Number(flags["commit-ms"]) };
const CP = {
  window: Number(flags["checkpoint-window"]),
  seconds: Number(flags["checkpoint-seconds"]),
  rounds: Math.max(1, Number(flags["checkpoint-rounds"])),
};
const CATCH_UP_MS = 10 * 60_000;
/** Populate deadline: with HA every create is a replicated record, and the 3 nats-servers share this machine's 2 cores. */
const POPULATE_S = 600;
const k = (n: number) => Math.round(n).toLocaleString("en-US");
const run = `${process.pid}`; // cluster names: a fresh stream per measurement
let urls: string[] = [];
let natsPids: number[] = [];
/** CPU seconds of the 3 nats-servers so far (they share this machine's cores with everything else). */
const natsCpu = () => natsPids.reduce((n, pid) => n + cpu(pid), 0);

/** JSON log lines of a node whose message matches `re` (the HA manager's lines: takeover, lease, catch-up). */
function logLines(log: string, re: RegExp): Record<string, unknown>[] {
  return log.split("\n").flatMap((l) => {
    try {
      const j = JSON.parse(l);
      return typeof j.msg === "string" && re.test(j.msg) ? [j] : [];
    } catch {
      return [];
    }
  });
}

/** The node's group is active and publishing: HA is really on (not a build without it). */
async function activeStatus(n: HaNode) {
  return waitGroup(n, (g) => g.role === "active" && g.holder === n.node && g, 30_000);
}

/** Waits until `standby` applied everything `active` has had acknowledged (nothing pending there). */
async function caughtUp(active: HaNode, standby: HaNode, timeoutMs = CATCH_UP_MS) {
  const a = await waitGroup(active, (g) => g.replication.every((r) => r.pendingBytes === 0) && g, 60_000);
  return waitGroup(standby, (g) => g.role === "standby" && shardSeq(g) >= shardSeq(a) && g, timeoutMs, 100);
}

// --- (3) throughput and (4) CHECKPOINT_REQUIRED latency ---------------------------------------

async function throughputPhase(label: string, haOn: boolean) {
  const node = await startNode(TPUT, { node: "a", index: 0, cluster: `tput${run}`, urls, settings: ha, ha: haOn, ping: true });
  try {
    const before = haOn ? await activeStatus(node) : undefined;
    const n0 = natsCpu();
    const p = await node.server.step(populate(settings, TPUT, POPULATE_S));
    const n1 = natsCpu();
    // Which of the server's threads pays per request: main (lease keeper, its NATS
    // connection), the shard worker (socket, engine, stream writer), the rest (libuv, V8).
    const perThread = new Map<LoadgenResult, { mainUs: number; shardWorkerUs: number; restUs: number }>();
    const around = async (go: () => Promise<Measured>) => {
      const c0 = threadCpu(node.server.pid);
      const m = await go();
      const w = threadCores(c0, threadCpu(node.server.pid), node.server.pid, 1);
      perThread.set(m.r, { mainUs: (w.mainCores * 1e6) / m.r.ok, shardWorkerUs: (w.busiestCores * 1e6) / m.r.ok, restUs: (w.restCores * 1e6) / m.r.ok });
      return m;
    };
    const t = PARTS.has("throughput") ? await timedRun(settings, node.server.pid, "run", TPUT, { step: node.server.step, waitQuiet: true, around }) : undefined;
    const n2 = natsCpu();
    // Cores the nats-servers took: populate, and the timed refresh runs (all of them, disturbed ones included).
    const natsCores = { populate: (n1 - n0) / p.seconds, refreshRuns: t ? (n2 - n1) / t.runs.length / settings.seconds : null };
    if (t)
      console.error(
        `${label}: populate ${k(p.okPerSecond)} creates/s; refresh ${k(t.r.okPerSecond)}/s (runs: ${t.runs.map((r) => k(r.okPerSecond)).join(", ")}), p99 ${t.r.p99us} µs; ${describeCores(t.share)}; µs/request by thread ${JSON.stringify(perThread.get(t.r))}`,
      );
    const checkpoint = haOn && PARTS.has("checkpoint") ? await checkpointLatency(node) : undefined;
    const after = haOn ? await groupStatus(node) : undefined;
    if (haOn && after && after.replication.reduce((n, r) => n + r.records, 0) < TPUT)
      throw new Error(`${label}: ${TPUT} mappings created but the active published ${JSON.stringify(after.replication)}`);
    const stream = haOn ? await streamState(urls, `tput${run}`) : undefined;
    return {
      label,
      populateCreatesPerSecond: p.okPerSecond,
      ...(t ? { ...timedSummary(t), cpuUsPerRequestByThread: perThread.get(t.r) } : {}),
      natsCores,
      ...(haOn ? { haBefore: before, haAfter: after, stream } : {}),
      ...(checkpoint ? { checkpoint } : {}),
    };
  } finally {
    await node.server.stop();
  }
}

/** Interleaved rounds of refreshes without and with CHECKPOINT_REQUIRED (a small window: latency, not queueing). */
async function checkpointLatency(node: HaNode) {
  const rounds: { without: Awaited<ReturnType<typeof loadgen>>; with: Awaited<ReturnType<typeof loadgen>> }[] = [];
  const once = (checkpoint: boolean) =>
    node.server.step(
      loadgen(
        settings.listen,
        "run",
        TPUT,
        ["--window", String(CP.window), "--duration", String(CP.seconds), "--timeout-ms", "2000", "--checkpoint", checkpoint ? "1" : "0"],
        CP.seconds + 30,
      ),
    );
  for (let i = 0; i < CP.rounds; i++) {
    await quietMachine(0.5, 30_000);
    // Alternate the order so a drift of the machine hits both alike.
    let a: Awaited<ReturnType<typeof once>>;
    let b: Awaited<ReturnType<typeof once>>;
    if (i % 2 === 0) {
      a = await once(false);
      b = await once(true);
    } else {
      b = await once(true);
      a = await once(false);
    }
    rounds.push({ without: a, with: b });
    console.error(
      `checkpoint round ${i + 1}: without p50/p99 ${a.p50us}/${a.p99us} µs (${k(a.okPerSecond)}/s); with CHECKPOINT_REQUIRED ${b.p50us}/${b.p99us} µs (${k(b.okPerSecond)}/s, lost ${b.lost})`,
    );
  }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[(xs.length - 1) >> 1];
  const pick = (side: "without" | "with") => ({
    p50us: median(rounds.map((r) => r[side].p50us)),
    p99us: median(rounds.map((r) => r[side].p99us)),
    requestsPerSecond: median(rounds.map((r) => r[side].okPerSecond)),
    lost: rounds.reduce((n, r) => n + r[side].lost, 0),
  });
  return { window: CP.window, seconds: CP.seconds, without: pick("without"), with: pick("with"), rounds };
}

// --- (1) takeover and (2) catch-up ------------------------------------------------------------

async function takeover(n: number) {
  const cluster = `to${n}x${run}`;
  const nodes: HaNode[] = [];
  try {
    const a = await startNode(n, { node: "a", index: 0, cluster, urls, settings: ha, ping: true });
    nodes.push(a);
    await activeStatus(a);
    const b = await startNode(n, { node: "b", index: 1, cluster, urls, settings: ha, ping: false });
    nodes.push(b);
    const p = await a.server.step(populate(settings, n, POPULATE_S));
    const probeKeys = [n - 1, 0, Math.floor(n / 2)];
    const before = await Promise.all(probeKeys.map((key) => a.server.step(mappedNow(key))));
    const standby = await caughtUp(a, b);
    const stream = await streamState(urls, cluster);
    console.error(
      `${k(n)}: populated at ${k(p.okPerSecond)} creates/s; standby at seq ${shardSeq(standby)} (stream ${k(stream.messages)} messages, ${(stream.bytes / 1e6).toFixed(1)} MB)`,
    );
    await quietMachine(0.5, 30_000);
    const m0 = machine();
    const t0 = performance.now();
    const killedAt = Date.now();
    a.server.kill();
    const first = await b.server.step(probe(probeKeys[0], { t0, expected: before[0], intervalMs: 10, deadlineMs: 30_000 }));
    const m1 = machine();
    const others = await Promise.all(probeKeys.slice(1).map((key) => b.server.step(mappedNow(key))));
    const lost = probeKeys.slice(1).filter((_, i) => others[i].port !== before[i + 1].port || others[i].address !== before[i + 1].address);
    if (lost.length > 0) throw new Error(`keys ${lost.join(", ")} came back with another external address or port`);
    const after = await waitGroup(b, (g) => g.role === "active" && g, 10_000);
    // The new active's log: when it decided to take over (its "taking over" line) and the
    // takeover's own duration (decision → every shard serving, its "active" line).
    const lines = logLines(b.server.log(), /taking over|active|takeover|promot|lease|catch/i);
    const decided = lines.find((l) => /taking over/.test(String(l.msg)));
    const detectionMs = decided && typeof decided.time === "number" ? decided.time - killedAt : null;
    const busy = ((m1.busy - m0.busy + m1.steal - m0.steal) / (m1.total - m0.total)) * 2;
    console.error(
      `${k(n)}: takeover ${(first.ms / 1000).toFixed(3)} s from kill -9 to the first correct answer (${first.sent} probes, ${first.wrong.length} wrong answers); Epoch ${before[0].epoch} → ${first.mapped.epoch}; detection ${detectionMs} ms, takeover ${after.lastTakeover?.durationMs} ms (epoch continued: ${after.lastTakeover?.epochContinued}); machine busy ${busy.toFixed(2)} cores`,
    );
    const result = {
      mappings: n,
      populateCreatesPerSecond: p.okPerSecond,
      streamAtKill: stream,
      standbyAtKill: standby,
      secondsToFirstCorrectAnswer: first.ms / 1000,
      probesSent: first.sent,
      wrongAnswersBefore: first.wrong,
      epochBefore: before[0].epoch,
      epochAfter: first.mapped.epoch,
      keysChecked: probeKeys,
      reported: after.lastTakeover,
      newActive: after,
      breakdownMs: {
        detection: detectionMs,
        takeover: after.lastTakeover?.durationMs ?? null,
        toFirstAnswer: detectionMs !== null && after.lastTakeover ? first.ms - detectionMs - after.lastTakeover.durationMs : null,
        note: "detection: kill → the new active's 'taking over' log line (wall clock); takeover: its catch-up, lease CAS, claim hook, promote (ha.status lastTakeover.durationMs); toFirstAnswer: the rest, up to the prober's first correct answer (10 ms probes)",
      },
      logLines: lines,
      machineBusyCores: busy,
    };
    const catchUp = PARTS.has("catchup") && n === Math.max(...SIZES) ? await catchUpRate(cluster, b, nodes) : undefined;
    return { ...result, ...(catchUp ? { catchUp } : {}) };
  } finally {
    for (const x of nodes) await x.server.stop();
  }
}

/** A fresh node joining a group whose stream holds the whole population: spawn → caught up. */
async function catchUpRate(cluster: string, active: HaNode, nodes: HaNode[]) {
  await waitGroup(active, (g) => g.replication.every((r) => r.pendingBytes === 0) && g, 60_000);
  const target = await streamState(urls, cluster);
  await quietMachine(0.5, 30_000);
  const t0 = performance.now();
  const node = await startNode(Math.max(...SIZES), { node: "c", index: 2, cluster, urls, settings: ha, ping: false });
  nodes.push(node); // stopped by the caller
  const samples: { ms: number; seq: number; records: number }[] = [];
  const g = await waitGroup(
    node,
    (s) => {
      const records = s.replication.reduce((n, r) => n + r.records, 0);
      samples.push({ ms: performance.now() - t0, seq: shardSeq(s), records });
      return s.role === "standby" && shardSeq(s) >= target.lastSeq && s;
    },
    CATCH_UP_MS,
    100,
  );
  const seconds = (performance.now() - t0) / 1000;
  const records = g.replication.reduce((n, r) => n + r.records, 0);
  // Rate while applying: from the first sample that shows records to the last.
  const firstApplied = samples.find((s) => s.records > 0) ?? samples[samples.length - 1];
  const last = samples[samples.length - 1];
  const applyingSeconds = (last.ms - firstApplied.ms) / 1000;
  const result = {
    streamLastSeq: target.lastSeq,
    streamMessages: target.messages,
    streamBytes: target.bytes,
    recordsApplied: records,
    secondsFromSpawn: seconds,
    recordsPerSecondFromSpawn: records / seconds,
    recordsPerSecondWhileApplying: applyingSeconds > 0 ? (last.records - firstApplied.records) / applyingSeconds : null,
    samples: samples.filter((_, i) => i % 10 === 0 || i === samples.length - 1),
    status: g,
    logLines: logLines(node.server.log(), /caught up|catch|standby|follow/i),
  };
  console.error(
    `catch-up: ${k(records)} records (stream ${k(target.messages)} messages, ${(target.bytes / 1e6).toFixed(1)} MB) in ${seconds.toFixed(2)} s from spawn: ${k(result.recordsPerSecondFromSpawn)} records/s (${result.recordsPerSecondWhileApplying === null ? "–" : k(result.recordsPerSecondWhileApplying)} while applying)`,
  );
  return result;
}

// --- Run -------------------------------------------------------------------------------------

buildLoadgen();
const out: Record<string, unknown> = {
  question: "HA on NATS JetStream: takeover time after kill -9, standby catch-up rate, MAP throughput HA on ÷ off, CHECKPOINT_REQUIRED latency",
  target: "issue #14 / DESIGN.md §4: takeover ≤ 3 s at 1M mappings per group; throughput with replication ≥ 0.9 × without",
  method: {
    loopbackOnly: true,
    nats: "nats-server 3-node cluster on 127.0.0.1 (test/helpers/nats.ts), stream R3, lease bucket R3",
    nodes: `pcp-server processes, one worker, service address ${SERVICE}:5351 listed by every node, group ${GROUP}, hooks empty`,
    ha,
    persistence: "off in every phase (HA on and off), so the throughput ratio is the replication's cost alone",
    loadgen: "bench/e2e/loadgen.c, one UDP socket, MAP + THIRD_PARTY; --checkpoint 1 adds CHECKPOINT_REQUIRED and requires it echoed",
    throughput: {
      mappings: TPUT,
      window: settings.window,
      seconds: settings.seconds,
      repeat: settings.repeat,
      ratio: "HA on ÷ mean of the HA-off phases before and after",
    },
    checkpoint: { ...CP, note: "HA on, same node, rounds interleaved (order alternated); medians of the rounds" },
    takeover:
      "kill -9 of the active; a MAP refresh of a known key (the last created) every 10 ms; time to the first answer with the same external address and port",
    catchUp: "a fresh node joins the group of the largest size after its takeover; spawn → ha.status shows its shard at the stream's last sequence",
  },
  ...machineInfo(),
};
const failures: string[] = [];
try {
  const nats = await startNats();
  urls = nats.urls;
  natsPids = nats.nodes.map((x) => x.process!.pid!);
  if (PARTS.has("throughput") || PARTS.has("checkpoint")) {
    const phases = PARTS.has("throughput")
      ? [await throughputPhase("HA off", false), await throughputPhase("HA on", true), await throughputPhase("HA off, again", false)]
      : [await throughputPhase("HA on", true)];
    const on = phases.find((p) => p.label === "HA on")!;
    const offs = phases.filter((p) => p.label !== "HA on");
    const mean = (f: (p: (typeof phases)[number]) => number) => offs.reduce((n, p) => n + f(p), 0) / offs.length;
    if (PARTS.has("throughput")) {
      const ratio = on.requestsPerSecond! / mean((p) => p.requestsPerSecond!);
      const createRatio = on.populateCreatesPerSecond / mean((p) => p.populateCreatesPerSecond);
      const range = offs.map((p) => on.requestsPerSecond! / p.requestsPerSecond!).sort();
      out.throughput = {
        phases,
        ratio,
        ratioRange: range,
        createRatio,
        baselineDrift: Math.abs(offs[0].requestsPerSecond! - offs[1].requestsPerSecond!) / mean((p) => p.requestsPerSecond!),
      };
      console.error(
        `HA on ÷ off: refreshes ${ratio.toFixed(3)} (against each off phase ${range.map((r) => r.toFixed(3)).join("–")}), creates ${createRatio.toFixed(3)}; target ≥ 0.90`,
      );
      if (ratio < 0.9) failures.push(`throughput HA on ÷ off ${ratio.toFixed(3)} (target ≥ 0.9)`);
    }
    if (on.checkpoint) out.checkpoint = on.checkpoint;
  }
  if (PARTS.has("takeover") || PARTS.has("catchup")) {
    const takeovers = [];
    for (const n of SIZES) takeovers.push(await takeover(n));
    out.takeover = takeovers;
    for (const t of takeovers)
      if (t.mappings >= 1_000_000 && t.secondsToFirstCorrectAnswer > 3)
        failures.push(`takeover at ${k(t.mappings)} mappings took ${t.secondsToFirstCorrectAnswer.toFixed(2)} s (target ≤ 3 s)`);
  }
} finally {
  await stopNats();
}
const date = new Date().toISOString().slice(0, 10);
const all = ["throughput", "checkpoint", "takeover", "catchup"].every((p) => PARTS.has(p)) && flags.sizes === "1000,1000000" && TPUT === 1_000_000;
const sizesPart = PARTS.has("takeover") || PARTS.has("catchup") ? `-${SIZES.join("-")}` : "";
const tputPart = PARTS.has("throughput") || PARTS.has("checkpoint") ? `-m${TPUT}` : "";
writeResults(all ? `ha-${date}.json` : `ha-${date}-${[...PARTS].join("-")}${sizesPart}${tputPart}.json`, out);
if (failures.length > 0) {
  console.error(`targets not met: ${failures.join("; ")}`);
  process.exitCode = 1;
}
