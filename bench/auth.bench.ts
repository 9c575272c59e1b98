// bench:auth — PCP authentication (RFC 7652, docs/auth.md) on this machine: full EAP-TTLS
// authentications per second through a real pcp-server to a real FreeRADIUS, and MAP
// refresh throughput with tags ÷ without, measured in the same run against the same server
// (one request in flight: a tagged client may not have two outstanding, a later sequence
// number arriving first would make the earlier a replay). Untagged refreshes come from a
// prefix with authentication off (the fast path: one flag test) and from one with it
// optional (the gate runs and finds no tag). Results: bench/results/auth-2026-12-04.json.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { PcpAuthClient } from "../src/auth/pa-client.js";
import { EapTtlsPeer } from "../src/auth/eap-ttls-peer.js";
import { startFreeRadius } from "../test/helpers/freeradius.js";
import { mapRequest, nonceOf } from "../test/helpers/packets.js";

const PCP_PORT = 25180;
const RADIUS_PORT = 25170;
const SECONDS = Number(process.env.AUTH_BENCH_SECONDS ?? 3);
const AUTHS = Number(process.env.AUTH_BENCH_AUTHS ?? 30);

const radius = await startFreeRadius({ port: RADIUS_PORT, users: [{ name: "bench", password: "bench-password" }] });
const dir = mkdtempSync(join(tmpdir(), "pcpd-auth-bench-"));
writeFileSync(
  join(dir, "pcpd.json"),
  JSON.stringify({
    listen: { addresses: ["127.0.0.1"], port: PCP_PORT },
    subscribers: ["127.0.0.0/8"],
    control: { enabled: false },
    log: { level: "info" },
    persistence: { enabled: false },
    capacity: { mappings: 100_000, subscribers: 1000 },
    quotas: { mappingsPerSubscriber: 10_000 },
    auth: {
      subscribers: [
        { prefix: "127.0.2.0/24", mode: "optional" },
        { prefix: "127.0.3.0/24", mode: "off" },
      ],
      maxSessions: 100_000,
      sessionsPerClient: 64,
      radius: { servers: [{ host: radius.host, port: radius.port, secret: radius.secret }] },
    },
  }),
);
const child = spawn(process.execPath, [new URL("../dist/cli/pcp-server.js", import.meta.url).pathname, "--config", join(dir, "pcpd.json")], {
  stdio: ["ignore", "pipe", "inherit"],
});
await new Promise<void>((resolve, reject) => {
  let log = "";
  child.stdout!.on("data", (c) => {
    log += c;
    if (log.includes("pcp server listening")) resolve();
  });
  child.once("exit", (code) => reject(new Error(`server exited ${code}`)));
});

const newClient = async (bind: string) => {
  const c = new PcpAuthClient({
    server: { address: "127.0.0.1", port: PCP_PORT },
    bind,
    newPeer: () => new EapTtlsPeer({ identity: "bench", password: "bench-password", ca: radius.caPem, serverName: radius.serverName }),
    timeoutMs: 20_000,
    retransmitMs: 1000,
  });
  await c.open();
  return c;
};

try {
  // Authentications per second: sequential full exchanges (TLS handshake inside EAP-TTLS each time).
  const authClients: PcpAuthClient[] = [];
  const t0 = performance.now();
  for (let i = 0; i < AUTHS; i++) {
    const c = await newClient(`127.0.2.${10 + (i % 200)}`);
    await c.authenticate();
    authClients.push(c);
  }
  const authSeconds = (performance.now() - t0) / 1000;
  for (const c of authClients) c.close();

  // MAP refreshes: 64 mappings per client refreshed round robin for SECONDS each series.
  const series = async (name: string, c: PcpAuthClient, tagged: boolean) => {
    let n = 0;
    const end = performance.now() + SECONDS * 1000;
    while (performance.now() < end) {
      const msg = mapRequest({ client: c.localAddress, internalPort: 20_000 + (n % 64), nonce: nonceOf(n % 64), lifetime: 600 });
      const r = tagged ? await c.request(msg) : await c.send(msg);
      if (r?.result !== 0 || r.tagged !== tagged)
        throw new Error(`${name}: refresh ${n} failed: ${JSON.stringify(r && { result: r.result, tagged: r.tagged })}`);
      n++;
    }
    return n / SECONDS;
  };
  const off = await newClient("127.0.3.1");
  const optional = await newClient("127.0.2.1");
  const tagged = await newClient("127.0.2.2");
  await tagged.authenticate();
  const rounds: { off: number; optionalUntagged: number; tagged: number }[] = [];
  for (let round = 0; round < 2; round++) {
    rounds.push({
      off: await series("off", off, false),
      optionalUntagged: await series("optional", optional, false),
      tagged: await series("tagged", tagged, true),
    });
  }
  for (const c of [off, optional, tagged]) c.close();
  const mean = (k: keyof (typeof rounds)[number]) => rounds.reduce((s, r) => s + r[k], 0) / rounds.length;
  const result = {
    date: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model,
      note: "shared 2-core machine, 8 helpers at work: absolute figures are noisy; ratios are from the same run",
    },
    conditions: { authentications: AUTHS, secondsPerSeries: SECONDS, inFlight: 1, method: "EAP-TTLS/PAP, FreeRADIUS on loopback, TLS fragment 1000" },
    authenticationsPerSecond: AUTHS / authSeconds,
    refreshesPerSecond: { authOff: mean("off"), authOptionalUntagged: mean("optionalUntagged"), tagged: mean("tagged") },
    ratios: { taggedOverUntagged: mean("tagged") / mean("off"), optionalUntaggedOverOff: mean("optionalUntagged") / mean("off") },
    rounds,
  };
  const file = new URL(`./results/auth-2026-12-04${process.env.AUTH_BENCH_SUFFIX ?? ""}.json`, import.meta.url).pathname;
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  console.log(JSON.stringify(result, null, 2));
} finally {
  child.kill("SIGTERM");
  await radius.stop();
}
