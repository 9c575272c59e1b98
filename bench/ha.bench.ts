// Question: what does high availability (issue #14: active/standby shard groups replicated
// through NATS JetStream) cost and give, measured in one run on loopback?
// (1) takeover: from kill -9 of the active to the first correct answer — a MAP refresh of a
//     known mapping answered, by the new node, with the same external address and port —
//     at 1k and 1M mappings in the group (target ≤ 3 s at 1M), with the lease settings used
//     and the takeover the new active reports (ha.status lastTakeover, its log lines);
// (2) standby catch-up: records/s a fresh node applies from the stream of a group holding
//     1M mappings (spawn → ha.status shows its shard at the stream's last sequence);
// (3) MAP throughput with HA on (one node, active, replicating to the R3 stream) ÷ an HA-off
//     twin running beside it, same run, runs alternated (target ≥ 0.9); persistence is off
//     in both, so the ratio is the replication's cost alone. Refreshes (the steady state: coalesced, so few reach
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
  cpuShare,
  describeCores,
  loadgen,
  machine,
  machineInfo,
  populate,
  quietMachine,
  refreshRun,
  threadCores,
  threadCpu,
  writeResults,
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

/** The HA-off twin's service address: both nodes run side by side, so drift hits both alike. */
const SERVICE_OFF = "127.0.0.41";

/** One timed refresh run against `n`: throughput, CPU per request by thread, the machine's share. */
async function measuredRun(n: HaNode, s: Settings) {
  const t0 = threadCpu(n.server.pid);
  const c0 = cpu(n.server.pid);
  const m0 = machine();
  const nats0 = natsCpu();
  const r = await n.server.step(refreshRun(s, "run", TPUT));
  const cpuSeconds = cpu(n.server.pid) - c0;
  const share = cpuShare(m0, machine(), cpuSeconds, r);
  const w = threadCores(t0, threadCpu(n.server.pid), n.server.pid, 1);
  return {
    okPerSecond: r.okPerSecond,
    p50us: r.p50us,
    p99us: r.p99us,
    cpuUsPerRequest: (cpuSeconds * 1e6) / r.ok,
    byThreadUs: { main: (w.mainCores * 1e6) / r.ok, shardWorker: (w.busiestCores * 1e6) / r.ok, rest: (w.restCores * 1e6) / r.ok },
    natsCores: (natsCpu() - nats0) / r.seconds,
    share,
  };
}

const median = (xs: number[]) => {
  const v = [...xs].sort((a, b) => a - b);
  return v.length % 2 ? v[v.length >> 1] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};

/**
 * (3) and (4): an HA node (active, replicating) and an HA-off twin, both holding TPUT
 * mappings, run side by side; timed refresh runs alternate between them (the order flips
 * each round), and each round's ratio compares two runs seconds apart — a noisy, shared
 * machine's drift hits both. An HA run starts only once its writer has published
 * everything (nothing pending: the populate's backlog is not charged to the refreshes).
 */
async function throughputPair() {
  const on = await startNode(TPUT, { node: "a", index: 0, cluster: `tput${run}`, urls, settings: ha, ha: true, ping: true });
  const off = await startNode(TPUT, { node: "off", index: 1, cluster: `tput${run}off`, urls, settings: ha, ha: false, ping: true, listen: SERVICE_OFF });
  try {
    const before = await activeStatus(on);
    const sOn: Settings = { ...settings, listen: [SERVICE] };
    const sOff: Settings = { ...settings, listen: [SERVICE_OFF] };
    const n0 = natsCpu();
    const popOn = await on.server.step(populate(sOn, TPUT, POPULATE_S));
    const popNats = (natsCpu() - n0) / popOn.seconds;
    const popOff = await off.server.step(populate(sOff, TPUT, POPULATE_S));
    const drained = () => waitGroup(on, (g) => g.replication.every((r) => r.pendingBytes === 0) && g, 120_000);
    const rounds: { on: Awaited<ReturnType<typeof measuredRun>>; off: Awaited<ReturnType<typeof measuredRun>>; ratio: number }[] = [];
    if (PARTS.has("throughput"))
      for (let i = 0; i < settings.repeat * 2; i++) {
        await drained();
        const first = i % 2 === 0 ? "off" : "on";
        const a = first === "off" ? await measuredRun(off, sOff) : await measuredRun(on, sOn);
        if (first === "off") await drained();
        const b = first === "off" ? await measuredRun(on, sOn) : await measuredRun(off, sOff);
        const round = first === "off" ? { off: a, on: b } : { on: a, off: b };
        rounds.push({ ...round, ratio: round.on.okPerSecond / round.off.okPerSecond });
        console.error(
          `round ${i + 1}: HA on ${k(round.on.okPerSecond)}/s (worker ${round.on.byThreadUs.shardWorker.toFixed(1)} µs/req, nats ${round.on.natsCores.toFixed(2)} cores), off ${k(round.off.okPerSecond)}/s (worker ${round.off.byThreadUs.shardWorker.toFixed(1)} µs/req): ${rounds.at(-1)!.ratio.toFixed(3)}; ${describeCores(round.on.share)}`,
        );
      }
    const checkpoint = PARTS.has("checkpoint") ? await checkpointLatency(on) : undefined;
    const after = await groupStatus(on);
    if (after && after.replication.reduce((n, r) => n + r.records, 0) < TPUT)
      throw new Error(`${TPUT} mappings created but the active published ${JSON.stringify(after.replication)}`);
    return {
      populate: { on: popOn.okPerSecond, off: popOff.okPerSecond, natsCoresWhileOn: popNats },
      rounds,
      haBefore: before,
      haAfter: after,
      stream: await streamState(urls, `tput${run}`),
      checkpoint,
    };
  } finally {
    await Promise.all([on.server.stop(), off.server.stop()]);
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
      layout: `an HA node on ${SERVICE} and an HA-off twin on ${SERVICE_OFF}, both populated, side by side`,
      ratio:
        "median over rounds of HA on ÷ off; a round = one timed run on each, back to back, order flipped each round; an HA run starts with nothing pending in its writer",
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
    const pair = await throughputPair();
    if (PARTS.has("throughput")) {
      const ratio = median(pair.rounds.map((r) => r.ratio));
      const workerRatio = median(pair.rounds.map((r) => r.on.byThreadUs.shardWorker / r.off.byThreadUs.shardWorker));
      out.throughput = {
        ratio,
        ratioRange: [Math.min(...pair.rounds.map((r) => r.ratio)), Math.max(...pair.rounds.map((r) => r.ratio))],
        workerCpuPerRequestOnOverOff: workerRatio,
        createRatio: pair.populate.on / pair.populate.off,
        ...pair,
        checkpoint: undefined,
      };
      console.error(
        `HA on ÷ off: refreshes ${ratio.toFixed(3)} (median of ${pair.rounds.length} rounds, ${pair.rounds.map((r) => r.ratio.toFixed(2)).join(", ")}); worker CPU per request on ÷ off ${workerRatio.toFixed(3)}; creates ${(pair.populate.on / pair.populate.off).toFixed(3)}; target ≥ 0.90`,
      );
      if (ratio < 0.9) failures.push(`throughput HA on ÷ off ${ratio.toFixed(3)} (target ≥ 0.9)`);
    }
    if (pair.checkpoint) out.checkpoint = pair.checkpoint;
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
