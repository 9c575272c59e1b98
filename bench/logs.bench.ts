// Question: what does the mapping log (src/logging/, docs/logging.md) cost the packet path?
// UDP requests/s with syslog (UDP) and IPFIX both on, every mapping logged, against the
// same load with logging off, in the same run.
// Inputs: the real server (`node dist/cli/pcp-server.js`, UDP on 127.0.3.20, one worker,
// the e2e bench's configuration: bench/e2e/harness.ts) and its C load generator. The
// collectors are UDP sockets in this process on 127.0.0.1:25350 (syslog) and :25351
// (IPFIX) that count what arrives (a real collector's CPU would be the collector's, not
// the server's). Per phase (off, on, off again): a fresh server, `populate` of --mappings
// new mappings (each a create: a log record), then --repeat refresh runs of --seconds
// (refreshes are streamed to the main thread and decoded but not logged). Ratio = phase
// "on" ÷ mean of the two "off" phases, for creates/s and refreshes/s, and for the server's
// CPU per request (all threads), which a busy machine disturbs less than the rates.
// Noise: shared 2-vCPU machine; timedRun redoes disturbed runs (bench/e2e/harness.ts).
// Usage: npm run build && npx tsx bench/logs.bench.ts [--mappings 200000] [--seconds 5] [--repeat 3]
// Results: bench/results/logs-2026-12-04.json.
import { createSocket } from "node:dgram";
import { parseArgs } from "node:util";
import { buildLoadgen, cpu, machineInfo, populate, startServer, timedRun, timedSummary, writeResults, type Settings } from "./e2e/harness.js";

const { values: flags } = parseArgs({
  options: {
    mappings: { type: "string", default: "200000" },
    seconds: { type: "string", default: "5" },
    repeat: { type: "string", default: "3" },
  },
});
const MAPPINGS = Number(flags.mappings);
// Its own loopback address (the harness fixes port 5351; other benches use 127.0.0.20).
const settings: Settings = { listen: ["127.0.3.20"], window: 128, seconds: Number(flags.seconds), repeat: Math.max(1, Number(flags.repeat)) };
const PORTS = { syslog: 25350, ipfix: 25351 };

/** A UDP collector counting datagrams and bytes. */
async function counter(port: number) {
  const s = createSocket("udp4");
  const seen = { datagrams: 0, bytes: 0 };
  s.on("message", (m) => {
    seen.datagrams++;
    seen.bytes += m.length;
  });
  await new Promise<void>((resolve) => s.bind(port, "127.0.0.1", resolve));
  s.setRecvBufferSize?.(8 * 1024 * 1024);
  return { seen, close: () => new Promise<void>((resolve) => s.close(() => resolve())) };
}

const LOGGING_ON = {
  logging: {
    syslog: { enabled: true, transport: "udp", port: PORTS.syslog, queue: 1_000_000 },
    ipfix: { enabled: true, port: PORTS.ipfix, queue: 1_000_000 },
    flushMs: 50,
  },
};

async function phase(name: string, logging: boolean) {
  const server = await startServer(settings.listen, MAPPINGS, { name: `logs-${name}`, extra: logging ? LOGGING_ON : {} });
  try {
    // Server CPU per create (all its threads): steadier than the rate on a busy machine.
    const cpu0 = cpu(server.pid);
    const created = await server.step(populate(settings, MAPPINGS));
    const createCpuUs = ((cpu(server.pid) - cpu0) * 1e6) / MAPPINGS;
    const refresh = await timedRun(settings, server.pid, "run", MAPPINGS, { step: server.step });
    console.error(
      `${name}: creates ${Math.round(created.okPerSecond)}/s (${createCpuUs.toFixed(1)} µs CPU each), refreshes ${Math.round(refresh.r.okPerSecond)}/s`,
    );
    return { logging, createsPerSecond: created.okPerSecond, createCpuUs, refresh: timedSummary(refresh) };
  } finally {
    await server.stop();
  }
}

buildLoadgen();
const syslog = await counter(PORTS.syslog);
const ipfix = await counter(PORTS.ipfix);
const off1 = await phase("off", false);
const on = await phase("on", true);
const received = { syslog: { ...syslog.seen }, ipfix: { ...ipfix.seen } };
const off2 = await phase("off-again", false);
await syslog.close();
await ipfix.close();
const meanOff = (f: (p: typeof off1) => number) => (f(off1) + f(off2)) / 2;
const out = {
  question: "UDP requests/s with the mapping log on (syslog UDP + IPFIX, every create logged) ÷ off, same run",
  machine: machineInfo(),
  mappings: MAPPINGS,
  phases: [off1, on, off2],
  collectors: received,
  ratio: {
    creates: on.createsPerSecond / meanOff((p) => p.createsPerSecond),
    refreshes: on.refresh.requestsPerSecond / meanOff((p) => p.refresh.requestsPerSecond),
    /** Server CPU per request, on ÷ off (> 1: logging costs this much more CPU). */
    createCpu: on.createCpuUs / meanOff((p) => p.createCpuUs),
    refreshCpu: on.refresh.cpuUsPerRequest / meanOff((p) => p.refresh.cpuUsPerRequest),
  },
};
console.log(JSON.stringify(out.ratio), JSON.stringify(received));
writeResults("logs-2026-12-04.json", out);
