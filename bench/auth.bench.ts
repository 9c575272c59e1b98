// bench:auth — what PCP authentication (RFC 7652, docs/auth.md) costs the server, measured
// against a real pcp-server and a real FreeRADIUS on this machine, with every ratio taken
// between series of the same run (alternating rounds: this machine is shared and drifts).
//
// 1. Authentications per second: full EAP-TTLS/PAP exchanges (a TLS handshake each) from
//    PcpAuthClient through the server to FreeRADIUS, one at a time and several in flight;
//    p50/p99 of one exchange; CPU ms per authentication of the server, FreeRADIUS and this
//    process (the EAP peers, whose TLS client work a PCP server does not do).
// 2. The unauthenticated fast path: the same untagged MAP refresh load (bench/auth/tagload.c:
//    several client sockets on loopback, a window of requests in flight each) against
//    server A, whose configuration has no auth section, and against server B, which has
//    authentication configured (optional and required prefixes, RADIUS, the sessions of
//    step 1 and 3 present) but not for the load's sources ("off" series).
// 3. Tagged ÷ untagged: against server B, N sessions (one per client address, each
//    authenticated through FreeRADIUS first) whose transport keys the C generator signs
//    with — every request a fresh AUTHENTICATION_TAG with the session's next sequence
//    number, every reply's tag checked — against the same clients' load untagged (their
//    prefix is "optional": the gate runs and finds no tag) and the "off" series.
// Throughput and server CPU µs per request (from /proc for the server process, independent
// of the load generator) for each series; the generator's own CPU shows it is not the
// bottleneck. Usage: npm run bench:auth [-- --rounds 5 --seconds 3 --io batched,dgram --auths 200]
// Ports 25200–25219, loopback only. Results: bench/results/auth-2026-12-05[-suffix].json.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { PcpAuthClient } from "../src/auth/pa-client.js";
import { EapTtlsPeer } from "../src/auth/eap-ttls-peer.js";
import { startFreeRadius, type FreeRadius } from "../test/helpers/freeradius.js";
import { measureAuthentications } from "./auth-aaa.bench.js";
import { cpu, exited, machine, machineInfo, root, SERVER_JS, threadCores, threadCpu, track, writeResults } from "./e2e/harness.js";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    seconds: { type: "string", default: "3" },
    io: { type: "string", default: "batched,dgram" },
    clients: { type: "string", default: "8" },
    window: { type: "string", default: "32" },
    keys: { type: "string", default: "1500" },
    auths: { type: "string", default: "200" },
    concurrency: { type: "string", default: "8" },
    suffix: { type: "string", default: "" },
  },
});
const ROUNDS = Number(flags.rounds);
const SECONDS = Number(flags.seconds);
const CLIENTS = Number(flags.clients);
const WINDOW = Number(flags.window);
const KEYS = Number(flags.keys);
const AUTHS = Number(flags.auths);
const CONCURRENCY = Number(flags.concurrency);
const IO = flags.io.split(",") as ("batched" | "dgram")[];

const RADIUS_PORT = 25210;
const PORT_A = 25201; // auth absent
const PORT_B = 25200; // auth configured
const LISTEN_A = "127.0.4.1";
const LISTEN_B = "127.0.2.1";
const OFF = (i: number) => `127.0.3.${10 + i}`; // no auth prefix: the fast path
const OPTIONAL = (i: number) => `127.0.2.${10 + i}`; // "optional": tagged or untagged
const AUTH_CLIENT = (i: number) => `127.0.5.${10 + (i % 200)}`; // step 1's clients ("optional")
const USER = { name: "bench", password: "bench-password" };
const TAGLOAD = join(root, "build", "auth-tagload");

/** Both servers' configuration; `auth` only for B. */
function config(listen: string, port: number, radius?: FreeRadius) {
  return {
    listen: { addresses: [listen], port },
    subscribers: ["127.0.0.0/8"],
    control: { enabled: false },
    log: { level: "info" },
    persistence: { enabled: false },
    capacity: { mappings: 100_000, subscribers: 1000 },
    quotas: { mappingsPerSubscriber: 2048 },
    rateLimit: { perSource: { rate: 1e9, burst: 1_000_000 }, global: { rate: 1e9, burst: 10_000_000 } },
    ...(radius && {
      auth: {
        subscribers: [
          { prefix: "127.0.2.0/24", mode: "optional" },
          { prefix: "127.0.5.0/24", mode: "optional" },
          { prefix: "127.0.6.0/24", mode: "required" },
        ],
        maxSessions: 100_000,
        sessionsPerClient: 64,
        radius: { servers: [{ host: radius.host, port: radius.port, secret: radius.secret }] },
      },
    }),
  };
}

interface Server {
  pid: number;
  child: ChildProcess;
}

async function startServer(name: string, cfg: object, io: string): Promise<Server> {
  const dir = mkdtempSync(join(os.tmpdir(), `pcpd-auth-bench-${name}-`));
  writeFileSync(join(dir, "pcpd.json"), JSON.stringify(cfg));
  const child = track(
    spawn(process.execPath, [SERVER_JS, "--config", join(dir, "pcpd.json")], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, PCPD_IO: io } }),
  );
  await new Promise<void>((resolve, reject) => {
    let log = "";
    child.stdout!.on("data", (c) => {
      log += c;
      if (log.includes("pcp server listening")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`server ${name} exited ${code}:\n${log}`)));
  });
  return { pid: child.pid!, child };
}

interface TagloadResult {
  ok: number;
  okPerSecond: number;
  seconds: number;
  lost: number;
  bad: number;
  badTag: number;
  p50us: number;
  p99us: number;
  cpuSeconds: number;
  nextSequence: number[];
  failed: boolean;
}

async function tagload(mode: "populate" | "run", port: number, listen: string, clients: string[]): Promise<TagloadResult> {
  const args = [mode, "--server", `${listen}:${port}`, "--keys", String(KEYS), "--window", String(WINDOW), "--duration", String(SECONDS)];
  args.push("--timeout-ms", mode === "run" ? "250" : "1000", "--deadline", "120");
  for (const c of clients) args.push("--client", c);
  const c = track(spawn(TAGLOAD, args, { stdio: ["ignore", "pipe", "inherit"] }));
  let out = "";
  c.stdout!.on("data", (d) => (out += d));
  const code = await exited(c, (SECONDS + 150) * 1000);
  const line = out.trim().split("\n").pop() ?? "";
  if (!line.startsWith("{")) throw new Error(`tagload ${mode} exited ${code} without a result`);
  const r = JSON.parse(line) as TagloadResult;
  if (code !== 0 || r.failed || r.bad > 0) throw new Error(`tagload ${mode} failed (exit ${code}): ${line}`);
  return r;
}

/** One timed series: the generator's result and the server's CPU per request over it. */
async function series(server: Server, port: number, listen: string, clients: string[]) {
  const cpu0 = cpu(server.pid);
  const threads0 = threadCpu(server.pid);
  const m0 = machine();
  const r = await tagload("run", port, listen, clients);
  const serverSeconds = cpu(server.pid) - cpu0;
  const m1 = machine();
  const cores = threadCores(threads0, threadCpu(server.pid), server.pid, r.seconds);
  const busy = ((m1.busy - m0.busy) / (m1.total - m0.total)) * os.cpus().length;
  return {
    requestsPerSecond: r.okPerSecond,
    cpuUsPerRequest: Math.round(((serverSeconds * 1e6) / r.ok) * 100) / 100,
    p50us: r.p50us,
    p99us: r.p99us,
    lost: r.lost,
    workerCores: Math.round(cores.busiestCores * 100) / 100,
    loadgenCores: Math.round((r.cpuSeconds / r.seconds) * 100) / 100,
    otherCores: Math.round(Math.max(0, busy - serverSeconds / r.seconds - r.cpuSeconds / r.seconds) * 100) / 100,
    nextSequence: r.nextSequence,
  };
}

type Series = Awaited<ReturnType<typeof series>>;
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const r3 = (x: number) => Math.round(x * 1000) / 1000;

const newPeer = (radius: FreeRadius) => () =>
  new EapTtlsPeer({ identity: USER.name, password: USER.password, ca: radius.caPem, serverName: radius.serverName });

/** Step 1: authentications per second through server B, `concurrency` at a time. */
async function authentications(radius: FreeRadius, server: Server, count: number, concurrency: number, offset: number) {
  const once = async (i: number) => {
    const c = new PcpAuthClient({
      server: { address: LISTEN_B, port: PORT_B },
      bind: AUTH_CLIENT(offset + i),
      newPeer: newPeer(radius),
      timeoutMs: 30_000,
      retransmitMs: 2000,
    });
    try {
      await c.open();
      await c.authenticate();
      return c.established;
    } catch {
      return false;
    } finally {
      c.close();
    }
  };
  const own = process.cpuUsage();
  const srv = cpu(server.pid);
  const fr = cpu(radius.pid);
  const rate = await measureAuthentications(count, concurrency, once);
  const ownMs = (process.cpuUsage(own).user + process.cpuUsage(own).system) / 1000;
  const per = (ms: number) => Math.round((ms / count) * 100) / 100;
  return { ...rate, cpuMsPerAuth: { pcpServer: per((cpu(server.pid) - srv) * 1000), freeradius: per((cpu(radius.pid) - fr) * 1000), peers: per(ownMs) } };
}

/** The rounds of one I/O path: A-off, B-off, B-optional untagged, B-tagged, alternating. */
async function refreshRounds(radius: FreeRadius, io: "batched" | "dgram") {
  const a = await startServer(`a-${io}`, config(LISTEN_A, PORT_A), io);
  const b = await startServer(`b-${io}`, config(LISTEN_B, PORT_B, radius), io);
  const sessions: PcpAuthClient[] = [];
  try {
    if (io === "batched") await authentications(radius, b, 20, 2, 0); // warm-up: JIT, FreeRADIUS threads
    const sequential = io === "batched" ? await authentications(radius, b, Math.max(20, AUTHS / 4), 1, 20) : undefined;
    const parallel = io === "batched" ? await authentications(radius, b, AUTHS, CONCURRENCY, 20 + AUTHS) : undefined;
    // The tagged clients' sessions, one per address, each through FreeRADIUS.
    const signers: string[] = [];
    for (let i = 0; i < CLIENTS; i++) {
      const c = new PcpAuthClient({ server: { address: LISTEN_B, port: PORT_B }, bind: OPTIONAL(i), newPeer: newPeer(radius), timeoutMs: 30_000 });
      await c.open();
      await c.authenticate();
      sessions.push(c);
      const sa = c.securityAssociation()!;
      signers.push(`${OPTIONAL(i)},${sa.sessionId},${sa.keyId},${sa.key.toString("hex")},${sa.nextSequence}`);
    }
    const off = Array.from({ length: CLIENTS }, (_, i) => OFF(i));
    const optional = Array.from({ length: CLIENTS }, (_, i) => OPTIONAL(i));
    await tagload("populate", PORT_A, LISTEN_A, off);
    await tagload("populate", PORT_B, LISTEN_B, off);
    await tagload("populate", PORT_B, LISTEN_B, optional);
    // Warm-up of every series (JIT, caches), not kept.
    await series(a, PORT_A, LISTEN_A, off);
    await series(b, PORT_B, LISTEN_B, off);
    const w = await series(b, PORT_B, LISTEN_B, signers);
    let tagged = signers.map((s, i) => s.replace(/,\d+$/, `,${w.nextSequence[i]}`));
    const rounds: { authAbsent: Series; authConfiguredOff: Series; optionalUntagged: Series; tagged: Series }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      // The order rotates so that no series always follows the same one.
      const order = ["authAbsent", "authConfiguredOff", "optionalUntagged", "tagged"] as const;
      const row = {} as (typeof rounds)[number];
      for (let k = 0; k < order.length; k++) {
        const name = order[(k + round) % order.length];
        if (name === "authAbsent") row[name] = await series(a, PORT_A, LISTEN_A, off);
        else if (name === "authConfiguredOff") row[name] = await series(b, PORT_B, LISTEN_B, off);
        else if (name === "optionalUntagged") row[name] = await series(b, PORT_B, LISTEN_B, optional);
        else {
          row[name] = await series(b, PORT_B, LISTEN_B, tagged);
          tagged = tagged.map((s, i) => s.replace(/,\d+$/, `,${row.tagged.nextSequence[i]}`)); // sequence numbers only rise
        }
        console.error(
          `  ${io} round ${round + 1} ${name}: ${row[name].requestsPerSecond}/s, ${row[name].cpuUsPerRequest} µs/request, worker ${row[name].workerCores} cores, loadgen ${row[name].loadgenCores}`,
        );
      }
      rounds.push(row);
    }
    const ratio = (x: keyof (typeof rounds)[number], y: keyof (typeof rounds)[number], k: "requestsPerSecond" | "cpuUsPerRequest") =>
      r3(median(rounds.map((r) => r[x][k] / r[y][k])));
    const med = (x: keyof (typeof rounds)[number], k: keyof Series) => median(rounds.map((r) => r[x][k] as number));
    const summary = Object.fromEntries(
      (["authAbsent", "authConfiguredOff", "optionalUntagged", "tagged"] as const).map((x) => [
        x,
        {
          requestsPerSecond: med(x, "requestsPerSecond"),
          cpuUsPerRequest: med(x, "cpuUsPerRequest"),
          workerCores: med(x, "workerCores"),
          loadgenCores: med(x, "loadgenCores"),
          p50us: med(x, "p50us"),
          p99us: med(x, "p99us"),
        },
      ]),
    );
    return {
      io,
      authenticationsPerSecond: sequential && parallel ? { sequential, parallel } : undefined,
      medians: summary,
      ratios: {
        fastPath: {
          what: "same untagged load, its sources not under authentication: server with auth configured ÷ server without (median of per-round ratios)",
          throughput: ratio("authConfiguredOff", "authAbsent", "requestsPerSecond"),
          cpuPerRequest: ratio("authConfiguredOff", "authAbsent", "cpuUsPerRequest"),
        },
        taggedOverUntagged: {
          what: "tagged refreshes ÷ the same load untagged from an auth-off prefix, same server",
          throughput: ratio("tagged", "authConfiguredOff", "requestsPerSecond"),
          cpuPerRequest: ratio("tagged", "authConfiguredOff", "cpuUsPerRequest"),
        },
        optionalUntaggedOverOff: {
          what: "untagged refreshes from an 'optional' prefix (the gate runs, finds no tag) ÷ from an 'off' prefix",
          throughput: ratio("optionalUntagged", "authConfiguredOff", "requestsPerSecond"),
          cpuPerRequest: ratio("optionalUntagged", "authConfiguredOff", "cpuUsPerRequest"),
        },
      },
      rounds,
    };
  } finally {
    for (const c of sessions) c.close();
    for (const s of [a, b]) {
      s.child.kill("SIGTERM");
      await exited(s.child, 10_000);
    }
  }
}

function buildTagload(): void {
  execFileSync("bash", [join(root, "scripts", "bench-deps.sh")], { stdio: "inherit" });
  execFileSync("gcc", ["-O2", "-Wall", "-Wextra", "-Wno-deprecated-declarations", "-o", TAGLOAD, join(root, "bench", "auth", "tagload.c"), "-lcrypto"], {
    stdio: "inherit",
  });
}

async function main(): Promise<void> {
  buildTagload();
  const radius = await startFreeRadius({ port: RADIUS_PORT, users: [USER], secret: "bench-secret-auth" });
  try {
    const paths = [];
    for (const io of IO) paths.push(await refreshRounds(radius, io));
    const out = {
      question: "what PCP authentication costs the server: authentications/s with FreeRADIUS, the unauthenticated fast path, tagged ÷ untagged refreshes",
      machine: { ...machineInfo(), loadavg: os.loadavg(), note: "shared 2-core machine, other helpers at work: ratios are between series of the same run" },
      conditions: {
        method: "EAP-TTLS/PAP, FreeRADIUS on loopback (full TLS handshake per authentication)",
        clients: CLIENTS,
        windowPerClient: WINDOW,
        keysPerClient: KEYS,
        secondsPerSeries: SECONDS,
        rounds: ROUNDS,
        mac: "AUTH_HMAC_SHA2_256_128, request 92 bytes tagged / 60 untagged",
        loadgen: "bench/auth/tagload.c (C, OpenSSL SHA-256; signs every request, verifies every reply's tag)",
      },
      paths,
    };
    const name = `auth-2026-12-05${flags.suffix ? `-${flags.suffix}` : ""}.json`;
    writeResults(name, out);
    console.log(
      JSON.stringify(
        { file: `bench/results/${name}`, paths: paths.map((p) => ({ io: p.io, auth: p.authenticationsPerSecond, medians: p.medians, ratios: p.ratios })) },
        null,
        2,
      ),
    );
  } finally {
    await radius.stop();
  }
}

await main();
