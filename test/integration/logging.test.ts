// Mapping and port-block logs (docs/logging.md) end to end: a real pcp-server process
// serving real PCP and NAT-PMP requests over UDP, logging to real collectors from Debian —
// rsyslog (RFC 5424 over UDP and TCP with octet counting) and pmacct's nfacctd (IPFIX,
// RFC 8158 NAT events). Ports 25300–25399 on loopback.
import { spawn, type ChildProcess } from "node:child_process";
import { createServer, type Server, type Socket } from "node:net";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { assigned, mapRequest, natPmpMap, peerRequest } from "../helpers/packets.js";
import { exchange } from "../helpers/udp.js";
import { tempDir } from "../helpers/temp.js";
import { waitFor, waitForLine } from "../helpers/wait.js";
import { NFACCTD, RSYSLOGD, startNfacctd, startRsyslog, type Collector } from "../helpers/collectors.js";

const CLI = new URL("../../dist/cli/pcp-server.js", import.meta.url).pathname;
const PORTS = {
  syslogUdp: 25301,
  syslogTcp: 25302,
  ipfix: 25310,
  ipfixBlocks: 25311,
  serverA: 25320,
  serverB: 25321,
  serverC: 25322,
  controlA: 25330,
  controlB: 25331,
  controlC: 25332,
  serverD: 25323,
  controlD: 25333,
  stalled: 25340,
};
const missing = !RSYSLOGD || !NFACCTD;

interface Started {
  child: ChildProcess;
  metrics(): Promise<string>;
  stop(): Promise<void>;
}

async function startServer(name: string, port: number, controlPort: number, logging: unknown, extra: object = {}): Promise<Started> {
  const dir = tempDir(`pcpd-logs-${name}`);
  const file = join(dir, "pcpd.json");
  writeFileSync(
    file,
    JSON.stringify({
      listen: { addresses: ["127.0.0.1"], port },
      pool: { addresses: ["192.0.2.1"], blockSize: 512 },
      lifetimes: { min: 1, peerMin: 1, holdDown: 1 },
      persistence: { enabled: false },
      control: { port: controlPort, address: "127.0.0.1", tokens: [] },
      logging,
      ...extra,
    }),
  );
  const child = spawn(process.execPath, [CLI, "--config", file], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  await waitForLine(child.stdout!, /pcp server listening/, { timeout: 30_000 }).catch((e) => {
    throw new Error(`${e.message}: ${err}`);
  });
  return {
    child,
    metrics: () => fetch(`http://127.0.0.1:${controlPort}/metrics`).then((r) => r.text()),
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.kill("SIGTERM");
      await exited;
    },
  };
}

const send = (port: number, payload: Uint8Array) => exchange("127.0.0.1", "127.0.0.1", port, payload).then((r) => r.reply);
const sd = (line: string): Record<string, string> => Object.fromEntries([...line.matchAll(/ (\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
const counter = (text: string, name: string, sink: string) => Number(new RegExp(`^${name}\\{sink="${sink}"\\} (\\d+)`, "m").exec(text)?.[1] ?? NaN);

describe.skipIf(missing)("mapping logs to real collectors", { timeout: 120_000 }, () => {
  let rsyslog: Collector;
  let nfacctd: Awaited<ReturnType<typeof startNfacctd>>;
  let nfBlocks: Awaited<ReturnType<typeof startNfacctd>>;
  const servers: Started[] = [];

  beforeAll(async () => {
    rsyslog = await startRsyslog(tempDir("pcpd-rsyslog"), PORTS.syslogUdp, PORTS.syslogTcp);
    nfacctd = await startNfacctd(tempDir("pcpd-nfacctd"), PORTS.ipfix);
    nfBlocks = await startNfacctd(tempDir("pcpd-nfacctd-b"), PORTS.ipfixBlocks);
  }, 60_000);

  afterAll(async () => {
    for (const s of servers) await s.stop();
    await rsyslog?.stop();
    await nfacctd?.stop();
    await nfBlocks?.stop();
  });

  it("logs MAP and PEER create, delete and expiry (syslog over TCP, IPFIX), with the fields a trace needs", async () => {
    const s = await startServer("a", PORTS.serverA, PORTS.controlA, {
      syslog: { enabled: true, transport: "tcp", port: PORTS.syslogTcp, appName: "pcpd-a" },
      ipfix: { enabled: true, port: PORTS.ipfix },
      flushMs: 20,
    });
    servers.push(s);
    // MAP created then deleted (lifetime 0), a MAP left to expire, a PEER with its remote peer, a NAT-PMP mapping.
    const map = await send(PORTS.serverA, mapRequest({ client: "127.0.0.1", internalPort: 4000, protocol: W.PROTO_TCP, lifetime: 600 }));
    expect(map[3]).toBe(W.RESULT_SUCCESS);
    const mapPort = assigned({ response: map }).port;
    expect((await send(PORTS.serverA, mapRequest({ client: "127.0.0.1", internalPort: 4000, protocol: W.PROTO_TCP, lifetime: 0 })))[3]).toBe(W.RESULT_SUCCESS);
    const short = await send(
      PORTS.serverA,
      mapRequest({ client: "127.0.0.1", internalPort: 4001, protocol: W.PROTO_UDP, lifetime: 1, nonce: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] }),
    );
    expect(short[3]).toBe(W.RESULT_SUCCESS);
    const peer = await send(
      PORTS.serverA,
      peerRequest({ client: "127.0.0.1", internalPort: 4002, remoteAddress: "198.51.100.7", remotePort: 443, lifetime: 600 }),
    );
    expect(peer[3]).toBe(W.RESULT_SUCCESS);
    const natpmp = await send(PORTS.serverA, natPmpMap(1, 4003, 0, 600));
    expect(natpmp[3]).toBe(0);

    const lines = await waitFor(
      () => {
        const l = rsyslog.lines().filter((x) => x.includes("pcpd@32473") && x.endsWith("|pcpd-a"));
        return l.length >= 6 && l.some((x) => x.startsWith("MAP-EXPIRE")) ? l : undefined;
      },
      { timeout: 30_000, interval: 100, message: () => rsyslog.lines().join("\n") },
    );
    const records: Record<string, string>[] = lines.map((l) => ({ msgid: l.split("|")[0], ...sd(l) }));
    const created = records.find((r) => r.msgid === "MAP-CREATE" && r.intPort === "4000")!;
    expect(created).toMatchObject({
      event: "create",
      type: "map",
      proto: "6",
      intAddr: "127.0.0.1",
      extAddr: "192.0.2.1",
      extPort: String(mapPort),
      source: "pcp",
    });
    expect(Number(created.lifetime)).toBeGreaterThanOrEqual(599);
    expect(records.find((r) => r.msgid === "MAP-DELETE" && r.intPort === "4000")).toMatchObject({ extPort: String(mapPort), lifetime: "0" });
    expect(records.find((r) => r.msgid === "MAP-EXPIRE")).toMatchObject({ intPort: "4001", proto: "17" });
    const peerRecord = records.find((r) => r.msgid === "MAP-CREATE" && r.intPort === "4002")!;
    expect(peerRecord.type).toBe("peer");
    // The remote peer rides in the event layout once it carries one (EV_PEER_ADDR).
    if ("EV_PEER_ADDR" in W) expect(peerRecord).toMatchObject({ remoteAddr: "198.51.100.7", remotePort: "443" });
    expect(records.find((r) => r.msgid === "MAP-CREATE" && r.intPort === "4003")).toMatchObject({ source: "natpmp", proto: "17" });

    const ipfix = await waitFor(
      () => {
        const r = nfacctd.records();
        return r.some((x) => x.nat_event === 7 && x.port_src === 4001) ? r : undefined;
      },
      { timeout: 30_000, interval: 100, message: () => nfacctd.lines().join("\n") },
    );
    const bib = ipfix.find((x) => x.nat_event === 6 && x.port_src === 4000)!;
    expect(bib).toMatchObject({ ip_src: "127.0.0.1", post_nat_ip_src: "192.0.2.1", post_nat_port_src: mapPort, ip_proto: "tcp", addr_realm: "1", vrf: "0" });
    expect(Math.abs(Number(bib.obs_ms) - Date.now())).toBeLessThan(60_000);
    expect(ipfix.find((x) => x.nat_event === 7 && x.port_src === 4000)).toBeDefined();
    const peerEvent = ipfix.find((x) => x.port_src === 4002)!;
    if ("EV_PEER_ADDR" in W) expect(peerEvent).toMatchObject({ nat_event: 1, ip_dst: "198.51.100.7", port_dst: 443 });

    const m = await s.metrics();
    expect(counter(m, "pcpd_log_sent_total", "syslog-tcp")).toBeGreaterThanOrEqual(6);
    expect(counter(m, "pcpd_log_sent_total", "ipfix")).toBeGreaterThanOrEqual(6);
    expect(counter(m, "pcpd_log_dropped_total", "syslog-tcp")).toBe(0);
  });

  it("port-block mode: one record per block lease and release (syslog over UDP, IPFIX portRangeStart/End)", async () => {
    const s = await startServer("b", PORTS.serverB, PORTS.controlB, {
      syslog: { enabled: true, transport: "udp", port: PORTS.syslogUdp, records: "blocks", appName: "pcpd-b" },
      ipfix: { enabled: true, port: PORTS.ipfixBlocks, records: "blocks" },
      flushMs: 20,
    });
    servers.push(s);
    // Two mappings in one block: one lease; both gone (and the hold-down over): one release.
    for (const internalPort of [5000, 5001])
      expect(
        (
          await send(
            PORTS.serverB,
            mapRequest({
              client: "127.0.0.1",
              internalPort,
              protocol: W.PROTO_UDP,
              lifetime: 1,
              nonce: [internalPort & 0xff, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12],
            }),
          )
        )[3],
      ).toBe(W.RESULT_SUCCESS);
    const lines = await waitFor(
      () => {
        const l = rsyslog.lines().filter((x) => x.endsWith("|pcpd-b"));
        return l.some((x) => x.startsWith("BLOCK-RELEASE")) ? l : undefined;
      },
      { timeout: 30_000, interval: 100, message: () => rsyslog.lines().join("\n") },
    );
    expect(lines.map((l) => l.split("|")[0])).toEqual(["BLOCK-ALLOC", "BLOCK-RELEASE"]);
    const lease = sd(lines[0]);
    expect(lease).toMatchObject({ event: "block-lease", type: "block", intAddr: "127.0.0.1", extAddr: "192.0.2.1" });
    expect(Number(lease.portLast) - Number(lease.portFirst)).toBe(511);
    expect((Number(lease.portFirst) - 1024) % 512).toBe(0);
    const ipfix = await waitFor(() => (nfBlocks.records().some((x) => x.nat_event === 15) ? nfBlocks.records() : undefined), {
      timeout: 30_000,
      interval: 100,
      message: () => nfBlocks.lines().join("\n"),
    });
    expect(ipfix.find((x) => x.nat_event === 14)).toMatchObject({
      ip_src: "127.0.0.1",
      post_nat_ip_src: "192.0.2.1",
      port_first: lease.portFirst,
      port_last: lease.portLast,
    });
    expect(ipfix.filter((x) => x.nat_event === 6 || x.nat_event === 7)).toEqual([]);
  });

  /** `n` creates and deletes from one client, every one answered; the sink's counters once they add up to the records made. */
  async function load(port: number, controlPort: number, collectorPort: number, n: number) {
    const s = await startServer(
      `load-${port}`,
      port,
      controlPort,
      { syslog: { enabled: true, transport: "tcp", port: collectorPort, queue: 100 }, flushMs: 10 },
      { rateLimit: { perSource: { rate: 1_000_000, burst: 1_000_000 } }, quotas: { mappingsPerSubscriber: 65535 } },
    );
    servers.push(s);
    const started = performance.now();
    let answered = 0;
    for (let i = 0; i < n; i += 2) {
      const internalPort = 10_000 + i;
      const a = await send(port, mapRequest({ client: "127.0.0.1", internalPort, protocol: W.PROTO_UDP, lifetime: 600 }));
      const b = await send(port, mapRequest({ client: "127.0.0.1", internalPort, protocol: W.PROTO_UDP, lifetime: 0 }));
      if (a[3] === W.RESULT_SUCCESS && b[3] === W.RESULT_SUCCESS) answered += 2;
    }
    const msPerRequest = (performance.now() - started) / n;
    expect(answered).toBe(n);
    const read = async () => {
      const m = await s.metrics();
      const queued = Number(/^pcpd_log_queued\{sink="syslog-tcp"\} (\d+)/m.exec(m)?.[1]);
      return {
        sent: counter(m, "pcpd_log_sent_total", "syslog-tcp"),
        dropped: counter(m, "pcpd_log_dropped_total", "syslog-tcp"),
        errors: counter(m, "pcpd_log_errors_total", "syslog-tcp"),
        queued,
      };
    };
    const c = await waitFor(
      async () => {
        const r = await read();
        return r.sent + r.dropped + r.queued === n ? r : undefined;
      },
      { timeout: 20_000, interval: 100, message: () => "counters do not add up to the records made" },
    );
    return { ...c, msPerRequest };
  }

  it("an unreachable collector loses records, counted as dropped, while the server keeps answering", async () => {
    // Nothing listens on PORTS.stalled + 1: every connection is refused, retried with backoff.
    const c = await load(PORTS.serverC, PORTS.controlC, PORTS.stalled + 1, 2000);
    expect(c.sent).toBe(0);
    expect(c.queued).toBe(100);
    expect(c.dropped).toBe(1900);
    expect(c.errors).toBeGreaterThan(0);
    // Answering is not held up by the log: well under 10 ms a request even with the machine busy.
    expect(c.msPerRequest).toBeLessThan(10);
  });

  it("a stalled collector (accepts, never reads): records are sent, queued or dropped, all counted; the server keeps answering", async () => {
    const held: Socket[] = [];
    const stalled: Server = createServer((c) => {
      c.pause();
      held.push(c);
    });
    await new Promise<void>((resolve) => stalled.listen(PORTS.stalled, "127.0.0.1", resolve));
    try {
      // The kernel's socket buffers take the first megabytes; whatever does not fit is dropped, counted.
      const c = await load(PORTS.serverD, PORTS.controlD, PORTS.stalled, 2000);
      expect(c.sent).toBeGreaterThan(0);
      expect(c.queued).toBeLessThanOrEqual(100);
      expect(c.msPerRequest).toBeLessThan(10);
    } finally {
      for (const c of held) c.destroy();
      await new Promise((resolve) => stalled.close(resolve));
    }
  });
});
