// The nftables dataplane proven with real traffic, in network namespaces this test creates:
//
//   pcpdnft-sub (subscriber 10.77.0.2) ── veth ── pcpdnft-nat (10.77.0.1 | 198.51.100.1, pcp-server)
//                                                          ── veth ── pcpdnft-out (198.51.100.2, .3)
//
// The subscriber maps its TCP and UDP services through PCP; the outside host reaches them
// at the external address:port; a FILTER lets only one remote in; outbound packets of a
// mapped endpoint leave from its external address:port; after a delete the port is closed;
// after a server restart the mappings still work. Every address lives inside the
// namespaces. Skipped, saying why, where namespaces or nft are unavailable.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import { assigned, filter, mapRequest, nonceOf } from "../helpers/packets.js";
import { waitFor, withTimeout } from "../helpers/wait.js";

const CLI = new URL("../../dist/cli/pcp-server.js", import.meta.url).pathname;
const SUB = "pcpdnft-sub";
const NAT = "pcpdnft-nat";
const OUT = "pcpdnft-out";
const SUBSCRIBER = "10.77.0.2";
const SERVER = "10.77.0.1";
const EXTERNAL = "198.51.100.1";
const REMOTE = "198.51.100.2";
const ALLOWED_REMOTE = "198.51.100.3";
const dir = fs.mkdtempSync(join(tmpdir(), "pcpd-nft-"));
const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "pipe", "pipe"] }).toString();

function setUp(): string | undefined {
  try {
    execFileSync("nft", ["--version"], { stdio: "ignore" });
  } catch {
    return "nft not installed (scripts/test-deps.sh installs nftables when run as root)";
  }
  try {
    ip("netns", "add", NAT);
  } catch (e) {
    return `network namespaces unavailable (${(e as Error).message.split("\n")[0]})`;
  }
  ip("netns", "add", SUB);
  ip("netns", "add", OUT);
  ip("link", "add", "pnft-sub", "type", "veth", "peer", "name", "pnft-nat0");
  ip("link", "add", "pnft-nat1", "type", "veth", "peer", "name", "pnft-out");
  ip("link", "set", "pnft-sub", "netns", SUB);
  ip("link", "set", "pnft-nat0", "netns", NAT);
  ip("link", "set", "pnft-nat1", "netns", NAT);
  ip("link", "set", "pnft-out", "netns", OUT);
  for (const [ns, dev, addrs] of [
    [SUB, "pnft-sub", [`${SUBSCRIBER}/24`]],
    [NAT, "pnft-nat0", [`${SERVER}/24`]],
    [NAT, "pnft-nat1", [`${EXTERNAL}/24`]],
    [OUT, "pnft-out", [`${REMOTE}/24`, `${ALLOWED_REMOTE}/24`]],
  ] as const) {
    for (const a of addrs) ip("-n", ns, "addr", "add", a, "dev", dev);
    ip("-n", ns, "link", "set", dev, "up");
    ip("-n", ns, "link", "set", "lo", "up");
  }
  ip("-n", SUB, "route", "add", "default", "via", SERVER);
  execFileSync("ip", ["netns", "exec", NAT, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
  return undefined;
}

/**
 * Runs a node script inside a namespace; resolves with its stdout (it must end by itself).
 * `onReady` is called when it prints the line "ready".
 */
function inNs(ns: string, script: string, args: string[] = [], timeoutMs = 5000, onReady?: () => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", script, "--", ...args], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    c.stdout.on("data", (d) => {
      out += d;
      if (onReady && out.split("\n").includes("ready")) {
        onReady();
        onReady = undefined;
      }
    });
    const t = setTimeout(() => c.kill("SIGKILL"), timeoutMs);
    c.once("exit", () => {
      clearTimeout(t);
      resolve(out.trim());
    });
    c.once("error", reject);
  });
}

/** One UDP exchange from `bind` (address:port) to `to` (address:port); prints the reply as hex, or "timeout". */
const UDP_EXCHANGE = `
const [bind, to, hex] = process.argv.slice(-3);
const [ba, bp] = bind.split(":"); const [ta, tp] = to.split(":");
const s = require("node:dgram").createSocket("udp4");
const t = setTimeout(() => { console.log("timeout"); process.exit(0); }, 1500);
s.on("message", (m, r) => { console.log(JSON.stringify({ hex: m.toString("hex"), from: r.address, port: r.port })); clearTimeout(t); s.close(); });
s.bind(Number(bp), ba, () => s.send(Buffer.from(hex, "hex"), Number(tp), ta));
`;

/** A TCP connection from `local` to host:port: prints what the service says, or why not. */
const TCP_HELLO = `
const [local, host, port] = process.argv.slice(-3);
const c = require("node:net").connect({ host, port: Number(port), localAddress: local, timeout: 1500 });
c.setEncoding("utf8");
c.on("data", (d) => { console.log(d.trim()); c.destroy(); });
c.on("timeout", () => { console.log("timeout"); c.destroy(); });
c.on("error", (e) => console.log(e.code));
`;

/** The subscriber's services: TCP on 8080 and 8082, UDP on 8081; each says which it is. */
const SERVICES = `
const net = require("node:net");
for (const port of [8080, 8082, 8084]) net.createServer((s) => s.end("tcp-" + port + "\\n")).listen(port, "${SUBSCRIBER}");
const u = require("node:dgram").createSocket("udp4");
u.on("message", (m, r) => u.send("udp-8081", r.port, r.address));
u.bind(8081, "${SUBSCRIBER}", () => console.log("ready"));
`;

let skip: string | undefined;
let services: ChildProcess | undefined;
let server: ChildProcess | undefined;
let serverLog = "";

function config(): string {
  const file = join(dir, "pcpd.json");
  fs.writeFileSync(
    file,
    JSON.stringify({
      listen: { addresses: [SERVER], port: 5351 },
      subscribers: ["10.77.0.0/24"],
      pool: { addresses: [EXTERNAL], blockSize: 64 },
      lifetimes: { min: 2 },
      dataplane: { backend: "nftables", table: "pcpd", batchMs: 20 },
      persistence: { directory: join(dir, "data"), commitIntervalMs: 10 },
      control: { enabled: false },
      log: { level: "info" },
    }),
  );
  return file;
}

async function startServer(): Promise<void> {
  serverLog = "";
  const c = spawn("ip", ["netns", "exec", NAT, process.execPath, CLI, "--config", config()], { stdio: ["ignore", "pipe", "inherit"] });
  server = c;
  await new Promise<void>((resolve, reject) => {
    c.stdout!.on("data", (d) => {
      serverLog += d;
      if (serverLog.includes("dataplane reconciled") && serverLog.includes("pcp server listening")) resolve();
    });
    c.once("exit", (code) => reject(new Error(`server exited ${code}: ${serverLog}`)));
  });
}

async function stopServer(): Promise<void> {
  const c = server;
  if (!c || c.exitCode !== null || c.signalCode !== null) return;
  await new Promise((resolve) => {
    c.once("exit", resolve);
    c.kill("SIGTERM");
  });
}

/** MAP from the subscriber; returns the reply's result and external port. */
async function pcpMap(internalPort: number, protocol: number, o: { lifetime?: number; filters?: ReturnType<typeof filter>[] } = {}) {
  const request = mapRequest({ client: SUBSCRIBER, internalPort, protocol, lifetime: o.lifetime ?? 600, nonce: nonceOf(internalPort) }, o.filters ?? []);
  const out = await inNs(SUB, UDP_EXCHANGE, [`${SUBSCRIBER}:0`, `${SERVER}:5351`, Buffer.from(request).toString("hex")]);
  if (out === "timeout") throw new Error("no PCP reply");
  const reply = Buffer.from(JSON.parse(out).hex, "hex");
  return { result: reply[3], ...assigned({ response: reply }) };
}

/** What the dataplane has installed now, as nft lists it: "tcp/2048" per inbound element (protocol/external port). */
function installed(): string[] {
  const out = execFileSync("ip", ["netns", "exec", NAT, "nft", "-j", "list", "map", "ip", "pcpd", "inbound"], { stdio: ["ignore", "pipe", "pipe"] }).toString();
  const map = (JSON.parse(out).nftables as { map?: { elem?: [{ concat: [string, string, number] }, unknown][] } }[]).find((o) => o.map)?.map;
  return (map?.elem ?? []).map(([key]) => `${key.concat[0]}/${key.concat[2]}`);
}
const key = (protocol: number, port: number) => `${protocol === W.PROTO_TCP ? "tcp" : "udp"}/${port}`;
/** Waits until the dataplane has installed (or removed) these mappings: one transaction installs all of a mapping's elements. */
const settle = (mappings: [protocol: number, port: number][], present = true) =>
  waitFor(
    () => {
      const now = installed();
      return mappings.every(([protocol, port]) => now.includes(key(protocol, port)) === present);
    },
    { message: () => `installed: ${installed().join(" ")}` },
  );
const tcpFrom = (local: string, port: number) => inNs(OUT, TCP_HELLO, [local, EXTERNAL, String(port)]);
const udpFrom = async (port: number) => {
  const out = await inNs(OUT, UDP_EXCHANGE, [`${REMOTE}:0`, `${EXTERNAL}:${port}`, Buffer.from("hello").toString("hex")]);
  return out === "timeout" ? out : Buffer.from(JSON.parse(out).hex, "hex").toString();
};

beforeAll(async () => {
  skip = setUp();
  if (skip) return;
  services = spawn("ip", ["netns", "exec", SUB, process.execPath, "-e", SERVICES], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve) => services!.stdout!.once("data", () => resolve()));
  await startServer();
}, 60_000);

afterAll(async () => {
  services?.kill("SIGKILL");
  server?.kill("SIGKILL");
  for (const ns of [SUB, NAT, OUT]) {
    try {
      ip("netns", "del", ns);
    } catch {
      // not created
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

describe("nftables dataplane with real traffic", () => {
  // The steps run in order on one server; each needs the ones before.
  let tcp: { port: number };
  let udp: { port: number };
  let filtered: { port: number };
  let ok = false; // the steps so far passed
  const step = (name: string, body: () => Promise<void>, timeout = 20_000) =>
    it(
      name,
      async (ctx) => {
        if (skip) return ctx.skip(skip);
        if (!ok && name !== FIRST) return ctx.skip("an earlier step failed");
        ok = false;
        await body();
        ok = true;
      },
      timeout,
    );
  const FIRST = "MAP opens a TCP and a UDP service to the outside at the external address:port";

  step(FIRST, async () => {
    tcp = await pcpMap(8080, W.PROTO_TCP);
    udp = await pcpMap(8081, W.PROTO_UDP);
    for (const r of [tcp, udp]) expect(r).toMatchObject({ result: W.RESULT_SUCCESS, address: EXTERNAL });
    await settle([
      [W.PROTO_TCP, tcp.port],
      [W.PROTO_UDP, udp.port],
    ]);
    expect(await tcpFrom(REMOTE, tcp.port)).toBe("tcp-8080");
    expect(await udpFrom(udp.port)).toBe("udp-8081");
  });

  step("item 79: a TCP connection's FIN does not end the MAP mapping", async () => {
    expect(await tcpFrom(REMOTE, tcp.port)).toBe("tcp-8080"); // the first connection was closed (FIN both ways)
  });

  step("FILTER admits only its remote prefix", async () => {
    filtered = await pcpMap(8082, W.PROTO_TCP, { filters: [filter(128, ALLOWED_REMOTE, 0)] });
    expect(filtered).toMatchObject({ result: W.RESULT_SUCCESS, address: EXTERNAL });
    await settle([[W.PROTO_TCP, filtered.port]]);
    expect(await tcpFrom(REMOTE, filtered.port)).toBe("timeout");
    expect(await tcpFrom(ALLOWED_REMOTE, filtered.port)).toBe("tcp-8082");
  });

  step("outbound packets of a mapped endpoint leave from its external address:port; item 64: an ICMP error for them reaches the internal host", async () => {
    const mapped = await pcpMap(8083, W.PROTO_UDP);
    await settle([[W.PROTO_UDP, mapped.port]]);
    let listening!: () => void;
    const ready = new Promise<void>((resolve) => (listening = resolve));
    const seen = inNs(
      OUT,
      `const s = require("node:dgram").createSocket("udp4"); s.on("message", (m, r) => { console.log(JSON.stringify({ from: r.address, port: r.port })); s.close(); }); s.bind(9999, "${REMOTE}", () => console.log("ready"));`,
      [],
      4000,
      listening,
    );
    await withTimeout(ready, 4000, "the remote's listener");
    await inNs(
      SUB,
      `const s = require("node:dgram").createSocket("udp4"); s.bind(8083, "${SUBSCRIBER}", () => s.send("out", 9999, "${REMOTE}", () => s.close()));`,
    );
    expect(
      (await seen)
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l))[0],
    ).toEqual({ from: EXTERNAL, port: mapped.port });
    // Nothing listens on the remote's port 9998: its ICMP port unreachable must come back
    // through the NAT to the subscriber's connected socket (as ECONNREFUSED).
    const icmp = await inNs(
      SUB,
      `const s = require("node:dgram").createSocket("udp4");
      let done = false;
      const end = (what) => { if (done) return; done = true; console.log(what); s.close(); };
      s.on("error", (e) => end(e.code));
      setTimeout(() => end("nothing"), 1500);
      s.bind(8083, "${SUBSCRIBER}", () => s.connect(9998, "${REMOTE}", () => { s.send("x"); setTimeout(() => done || s.send("y"), 200); }));`,
    );
    expect(icmp.split("\n")[0]).toBe("ECONNREFUSED");
  });

  step("delete and expiry close the port", async () => {
    expect((await pcpMap(8080, W.PROTO_TCP, { lifetime: 0 })).result).toBe(W.RESULT_SUCCESS);
    await settle([[W.PROTO_TCP, tcp.port]], false);
    expect(await tcpFrom(REMOTE, tcp.port)).not.toBe("tcp-8080");
    const short = await pcpMap(8084, W.PROTO_TCP, { lifetime: 2 });
    await settle([[W.PROTO_TCP, short.port]]);
    expect(await tcpFrom(REMOTE, short.port)).toBe("tcp-8084");
    await settle([[W.PROTO_TCP, short.port]], false); // its 2 s lifetime ran out: expired, removed
    expect(await tcpFrom(REMOTE, short.port)).not.toBe("tcp-8084");
  });

  step("after a server restart the mappings still work (restored from disk, dataplane reconciled)", async () => {
    await stopServer();
    await startServer();
    expect(serverLog).toContain("epoch continued");
    expect(await udpFrom(udp.port)).toBe("udp-8081");
    expect(await tcpFrom(ALLOWED_REMOTE, filtered.port)).toBe("tcp-8082");
    expect(await tcpFrom(REMOTE, filtered.port)).toBe("timeout");
    expect(await tcpFrom(REMOTE, tcp.port)).not.toBe("tcp-8080");
  });

  step(
    "a table removed behind pcpd's back: transactions fail, the dataplane goes down, a reconciliation rebuilds it",
    async () => {
      execFileSync("ip", ["netns", "exec", NAT, "nft", "delete", "table", "ip", "pcpd"]);
      expect(await udpFrom(udp.port)).toBe("timeout");
      const count = (line: string) => serverLog.split(line).length - 1;
      const reconciled = count("dataplane reconciled");
      for (let i = 0; i < 4 && !serverLog.includes("dataplane down"); i++) {
        const failed = count("dataplane transaction failed");
        await pcpMap(9000 + i, W.PROTO_TCP); // each answer's change is a transaction that fails
        await waitFor(() => count("dataplane transaction failed") > failed || serverLog.includes("dataplane down"), { message: () => serverLog });
      }
      expect(serverLog).toContain("dataplane transaction failed");
      expect(serverLog).toContain("dataplane down");
      await waitFor(() => count("dataplane reconciled") > reconciled, { message: () => serverLog });
      expect(count("dataplane reconciled")).toBe(reconciled + 1);
      expect(await udpFrom(udp.port)).toBe("udp-8081");
      await stopServer();
    },
    30_000,
  );
});
