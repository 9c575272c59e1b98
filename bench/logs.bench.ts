// Question: what does the mapping log (src/logging/, docs/logging.md) cost the packet path,
// per transport, and (with --before) how does this build compare with another one?
// UDP creates/s and refreshes/s with every mapping logged, against the same load with
// logging off, in the same run, in alternating rounds.
// Inputs: the real server (`node dist/cli/pcp-server.js`, UDP on 127.0.3.20, one worker,
// the e2e bench's configuration: bench/e2e/harness.ts) and its C load generator. The
// collectors are sockets in this process on 127.0.0.1 that count what arrives (a real
// collector's CPU would be the collector's, not the server's): syslog over UDP (:25350),
// syslog over TCP (:25352, octet-counted frames) and IPFIX (:25351).
// Configurations: "off"; "udp" (syslog UDP + IPFIX); "tcp" (syslog TCP + IPFIX); with
// --before DIR also "udp-before" and "tcp-before", the same with DIR's build
// (DIR/dist/cli/pcp-server.js: e.g. the commit before a change, built apart). Per round,
// every configuration once, in an order rotated every round: a fresh server, `populate` of
// --mappings new mappings (each a create: a log record), then one refresh run of
// --seconds (refreshes are streamed to the main thread but not logged). Ratio of a
// configuration = its rate ÷ "off" of the same round, median over the rounds; also the
// server's CPU per request (all threads), which a busy machine disturbs less than rates.
// Noise: shared 2-vCPU machine: runs are not redone; other jobs' CPU is reported per run.
// Usage: npm run build && npx tsx bench/logs.bench.ts [--mappings 100000] [--seconds 5] [--rounds 3] [--before DIR] [--tag 2026-12-05]
// Results: bench/results/logs-<tag>.json.
import { createSocket } from "node:dgram";
import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { buildLoadgen, cpu, machineInfo, populate, refreshRun, startServer, writeResults, type Settings } from "./e2e/harness.js";

const { values: flags } = parseArgs({
  options: {
    mappings: { type: "string", default: "100000" },
    seconds: { type: "string", default: "5" },
    rounds: { type: "string", default: "3" },
    before: { type: "string" },
    tag: { type: "string", default: "2026-12-05" },
  },
});
const MAPPINGS = Number(flags.mappings);
const ROUNDS = Math.max(1, Number(flags.rounds));
// Its own loopback address (the harness fixes port 5351; other benches use 127.0.0.20).
const settings: Settings = { listen: ["127.0.3.20"], window: 128, seconds: Number(flags.seconds), repeat: 1 };
const PORTS = { syslog: 25350, ipfix: 25351, syslogTcp: 25352 };

/** A UDP collector counting datagrams and bytes. */
async function udpCounter(port: number) {
  const s = createSocket("udp4");
  const seen = { datagrams: 0, bytes: 0 };
  s.on("message", (m) => {
    seen.datagrams++;
    seen.bytes += m.length;
  });
  await new Promise<void>((resolve) => s.bind(port, "127.0.0.1", resolve));
  s.setRecvBufferSize(8 * 1024 * 1024);
  return { seen, close: () => new Promise<void>((resolve) => s.close(() => resolve())) };
}

/** A TCP collector counting bytes (RFC 6587 octet-counted frames are not parsed: only counted). */
async function tcpCounter(port: number) {
  const seen = { bytes: 0, connections: 0 };
  const open = new Set<Socket>();
  const server = createServer((c) => {
    seen.connections++;
    open.add(c);
    c.on("data", (d) => (seen.bytes += d.length));
    c.on("close", () => open.delete(c));
    c.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    seen,
    close: () => {
      for (const c of open) c.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const logging = (transport: "udp" | "tcp") => ({
  logging: {
    syslog: { enabled: true, transport, port: transport === "udp" ? PORTS.syslog : PORTS.syslogTcp, queue: 1_000_000 },
    ipfix: { enabled: true, port: PORTS.ipfix, queue: 1_000_000 },
    flushMs: 50,
  },
});

interface Configuration {
  name: string;
  extra: Record<string, unknown>;
  serverJs?: string;
}
const beforeJs = flags.before ? join(flags.before, "dist", "cli", "pcp-server.js") : undefined;
const CONFIGURATIONS: Configuration[] = [
  { name: "off", extra: {} },
  { name: "udp", extra: logging("udp") },
  { name: "tcp", extra: logging("tcp") },
  ...(beforeJs
    ? [
        { name: "udp-before", extra: logging("udp"), serverJs: beforeJs },
        { name: "tcp-before", extra: logging("tcp"), serverJs: beforeJs },
      ]
    : []),
];

async function phase(c: Configuration) {
  const server = await startServer(settings.listen, MAPPINGS, { name: `logs-${c.name}`, extra: c.extra, serverJs: c.serverJs });
  try {
    // Server CPU per create (all its threads): steadier than the rate on a busy machine.
    const cpu0 = cpu(server.pid);
    const created = await server.step(populate(settings, MAPPINGS));
    const createCpuUs = ((cpu(server.pid) - cpu0) * 1e6) / MAPPINGS;
    const cpu1 = cpu(server.pid);
    const refresh = await server.step(refreshRun(settings, "run", MAPPINGS));
    const refreshCpuUs = ((cpu(server.pid) - cpu1) * 1e6) / refresh.ok;
    console.error(
      `  ${c.name.padEnd(10)} creates ${Math.round(created.okPerSecond)}/s (${createCpuUs.toFixed(1)} µs CPU each), refreshes ${Math.round(refresh.okPerSecond)}/s (${refreshCpuUs.toFixed(1)} µs CPU each)`,
    );
    return { createsPerSecond: created.okPerSecond, createCpuUs, refreshesPerSecond: refresh.okPerSecond, refreshCpuUs };
  } finally {
    await server.stop();
  }
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

buildLoadgen();
const syslog = await udpCounter(PORTS.syslog);
const syslogTcp = await tcpCounter(PORTS.syslogTcp);
const ipfix = await udpCounter(PORTS.ipfix);
type Phase = Awaited<ReturnType<typeof phase>>;
const rounds: { order: string[]; phases: Record<string, Phase> }[] = [];
try {
  for (let i = 0; i < ROUNDS; i++) {
    const order = CONFIGURATIONS.map((_, j) => CONFIGURATIONS[(i + j) % CONFIGURATIONS.length]);
    console.error(`round ${i + 1} of ${ROUNDS}: ${order.map((c) => c.name).join(", ")}`);
    const phases: Record<string, Phase> = {};
    for (const c of order) phases[c.name] = await phase(c);
    rounds.push({ order: order.map((c) => c.name), phases });
  }
} finally {
  await Promise.all([syslog.close(), syslogTcp.close(), ipfix.close()]);
}
const metrics = ["createsPerSecond", "refreshesPerSecond", "createCpuUs", "refreshCpuUs"] as const;
/** Per configuration and metric: median over rounds of (configuration ÷ off of the same round). */
const ratio = Object.fromEntries(
  CONFIGURATIONS.filter((c) => c.name !== "off").map((c) => [
    c.name,
    Object.fromEntries(metrics.map((m) => [m, median(rounds.map((r) => r.phases[c.name][m] / r.phases.off[m]))])),
  ]),
);
const out = {
  question:
    "UDP creates/s and refreshes/s with the mapping log on (syslog UDP or TCP, + IPFIX; every create logged) ÷ off, alternating rounds in one run; --before: the same with another build",
  machine: machineInfo(),
  mappings: MAPPINGS,
  seconds: settings.seconds,
  before: flags.before ?? null,
  collectors: { syslogUdp: syslog.seen, syslogTcp: syslogTcp.seen, ipfix: ipfix.seen },
  ratio,
  rounds,
};
console.table(
  Object.entries(ratio).map(([name, r]) => ({
    configuration: name,
    "creates/s ÷ off": r.createsPerSecond.toFixed(3),
    "refreshes/s ÷ off": r.refreshesPerSecond.toFixed(3),
    "CPU per create ÷ off": r.createCpuUs.toFixed(3),
    "CPU per refresh ÷ off": r.refreshCpuUs.toFixed(3),
  })),
);
console.log(`medians of ${ROUNDS} rounds; collectors received ${JSON.stringify(out.collectors)}`);
writeResults(`logs-${flags.tag}.json`, out);
