// Question: how many EAP-TTLS/PAP authentications per second does the AAA side of PCP
// authentication complete — the project's peer (Node tls over EAP-TTLS) through RadiusEapRelay
// to a FreeRADIUS on the same machine — one at a time and with several sessions in flight?
// Baseline (same run, same relay, same FreeRADIUS): EAP-MD5 (RFC 3748 §5.4: one challenge,
// no TLS, no keys — the Accept carries no MS-MPPE keys, so the relay answers "reject: no
// keys", counted as done here), i.e. what the relay and RADIUS round trips cost without the
// TLS tunnel. Every TTLS authentication is a full handshake (the generated configuration has
// no TLS session cache). Both ends run here, so the figure counts the peer's TLS client work
// and the server's; the CPU time per authentication of this process (peer + relay) and of
// FreeRADIUS says which side bounds it.
// `measureAuthentications` is exported for the PCP side's benchmark (authentications/s
// through the PCP server) to reuse.
// Usage: npx tsx bench/auth-aaa.bench.ts [--count 200] [--concurrency 8]
// Only loopback is used (port 25250). Results: bench/results/auth-aaa-2026-12-04.json.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { type AaaVerdict, RadiusEapRelay } from "../src/auth/eap-relay.js";
import { EapCode, EapType, encodeEap, identityResponse, parseEap } from "../src/auth/eap.js";
import { EapTtlsPeer } from "../src/auth/eap-ttls-peer.js";
import { authenticate } from "../test/helpers/aaa.js";
import { startFreeRadius } from "../test/helpers/freeradius.js";

export interface AuthenticationRate {
  count: number;
  concurrency: number;
  seconds: number;
  perSecond: number;
  /** Authentications that did not end in an Accept whose MSK the peer shares. */
  failures: number;
  /** Median and 99th percentile of one authentication, ms. */
  p50Ms: number;
  p99Ms: number;
}

/**
 * `count` authentications, `concurrency` at a time: `run(i)` performs authentication `i` and
 * resolves true when it succeeded (for the relay: an Accept whose MSK equals the peer's).
 */
export async function measureAuthentications(count: number, concurrency: number, run: (i: number) => Promise<boolean>): Promise<AuthenticationRate> {
  let next = 0;
  let failures = 0;
  const durations: number[] = [];
  const started = performance.now();
  const lane = async () => {
    for (let i = next++; i < count; i = next++) {
      const t0 = performance.now();
      if (!(await run(i))) failures++;
      durations.push(performance.now() - t0);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  const seconds = (performance.now() - started) / 1000;
  durations.sort((a, b) => a - b);
  const pct = (p: number) => Math.round(durations[Math.min(durations.length - 1, Math.floor(p * durations.length))] * 10) / 10;
  return {
    count,
    concurrency,
    seconds: Math.round(seconds * 1000) / 1000,
    perSecond: Math.round((count / seconds) * 10) / 10,
    failures,
    p50Ms: pct(0.5),
    p99Ms: pct(0.99),
  };
}

const agrees = (verdict: AaaVerdict, peer: EapTtlsPeer) =>
  verdict.kind === "accept" && peer.status === "success" && Buffer.from(verdict.msk).equals(Buffer.from(peer.msk!));

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { count: { type: "string", default: "200" }, concurrency: { type: "string", default: "8" } } });
  const count = Number(values.count);
  const concurrency = Number(values.concurrency);
  const user = { name: "bench", password: "bench-password" };
  const radius = await startFreeRadius({ port: 25250, users: [user], secret: "bench-secret-aaa" });
  const relay = new RadiusEapRelay({
    servers: [{ host: radius.host, port: radius.port, secret: radius.secret }],
    timeoutMs: 3000,
    retries: 2,
    nasIdentifier: "pcpd-bench",
  });
  try {
    const once = async (i: number) => {
      const peer = new EapTtlsPeer({ identity: user.name, password: user.password, ca: radius.caPem, serverName: radius.serverName });
      return agrees((await authenticate(relay, peer, `bench-${i}`)).verdict, peer);
    };
    await measureAuthentications(20, 2, once); // warm-up: JIT, FreeRADIUS threads
    const cpu = async (rate: Promise<AuthenticationRate>) => {
      const ours = process.cpuUsage();
      const theirs = serverCpuMs(radius.pid);
      const r = await rate;
      const oursMs = (process.cpuUsage(ours).user + process.cpuUsage(ours).system) / 1000;
      return {
        ...r,
        cpuMsPerAuth: {
          peerAndRelay: Math.round((oursMs / r.count) * 100) / 100,
          freeradius: Math.round(((serverCpuMs(radius.pid) - theirs) / r.count) * 100) / 100,
        },
      };
    };
    const sequential = await cpu(measureAuthentications(count, 1, once));
    const concurrent = await cpu(measureAuthentications(count, concurrency, once));
    const md5 = async (i: number) => (await md5Authentication(relay, user, `md5-${i}`)) === "Access-Accept without MS-MPPE keys";
    await measureAuthentications(20, 2, md5);
    const baseline = await cpu(measureAuthentications(count, 1, md5));
    const baselineConcurrent = await cpu(measureAuthentications(count, concurrency, md5));
    const out = {
      question: "EAP-TTLS/PAP authentications per second through RadiusEapRelay to FreeRADIUS (same machine)",
      machine: { date: new Date().toISOString(), node: process.version, cpu: os.cpus()[0]?.model, cpus: os.cpus().length, loadavg: os.loadavg() },
      sequential,
      concurrent,
      baseline: { what: "EAP-MD5 through the same relay and FreeRADIUS (no TLS)", sequential: baseline, concurrent: baselineConcurrent },
      ratios: {
        ttlsVsMd5Sequential: Math.round((sequential.perSecond / baseline.perSecond) * 100) / 100,
        ttlsVsMd5Concurrent: Math.round((concurrent.perSecond / baselineConcurrent.perSecond) * 100) / 100,
      },
      relay: relay.stats().servers[0],
    };
    const dir = new URL("./results/", import.meta.url).pathname;
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "auth-aaa-2026-12-04.json"), `${JSON.stringify(out, null, 2)}\n`);
    console.log(JSON.stringify({ sequential, concurrent, baseline: out.baseline, ratios: out.ratios }, null, 2));
  } finally {
    await relay.close();
    await radius.stop();
  }
}

/** utime + stime of a process, ms (proc(5): fields 14 and 15, in clock ticks of 10 ms). */
function serverCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** One EAP-MD5 authentication (RFC 3748 §5.4) through the relay; the final reject reason or verdict kind. */
async function md5Authentication(relay: RadiusEapRelay, user: { name: string; password: string }, session: string): Promise<string> {
  let message = identityResponse(1, user.name);
  for (let round = 0; round < 6; round++) {
    const verdict = await relay.exchange(session, message);
    if (verdict.kind !== "challenge") return verdict.kind === "reject" ? (verdict.reason ?? "reject") : verdict.kind;
    const p = parseEap(verdict.eap);
    if (!p || p.code !== EapCode.REQUEST) return "bad request";
    if (p.type === EapType.IDENTITY) message = identityResponse(p.identifier, user.name);
    // The server proposes EAP-TTLS first: a Nak asks for MD5 (RFC 3748 §5.3.1).
    else if (p.type !== EapType.MD5) message = encodeEap(EapCode.RESPONSE, p.identifier, EapType.NAK, Uint8Array.of(EapType.MD5));
    else {
      // Value = MD5(Identifier ‖ secret ‖ challenge) (RFC 1994 §4.1, as RFC 3748 §5.4 uses it).
      const challenge = p.data.subarray(1, 1 + p.data[0]);
      const value = createHash("md5").update(Uint8Array.of(p.identifier)).update(user.password).update(challenge).digest();
      message = encodeEap(EapCode.RESPONSE, p.identifier, EapType.MD5, Buffer.concat([Buffer.of(16), value]));
    }
  }
  return "too many rounds";
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main();
