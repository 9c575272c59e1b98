// A NAT lab in network namespaces for the dataplane tests (test/integration/nftables*.test.ts):
//
//   <sub> (subscriber) ── veth ── <nat> (pcp-server, the NAT) ── veth ── <out> (outside hosts)
//
// Every address lives inside the namespaces the lab creates; useLab sets the lab and its
// server up before a file's tests and tears them down after. A file states only what differs
// (labLayout: names and addresses; labConfig: the server's settings). Scripts run in a
// namespace as `node -e` children that end by themselves.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, it } from "vitest";
import { assigned, mapRequest, nonceOf, type Option } from "./packets.js";

export const CLI = new URL("../../dist/cli/pcp-server.js", import.meta.url).pathname;
export const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "pipe", "pipe"] }).toString();

export interface LabLayout {
  /** Namespace names. */
  sub: string;
  nat: string;
  out: string;
  /** Interface names (at most 15 characters): subscriber side pair, outside pair. */
  links: [sub: string, nat0: string, nat1: string, out: string];
  /** Addresses with prefix length, per interface (IPv4 and/or IPv6). */
  subscriber: string[];
  natInside: string[];
  natOutside: string[];
  outside: string[];
  /** Default routes of the subscriber (via the NAT's inside addresses). */
  routes: string[];
  /** Routes of the outside host: [prefix, via] (to reach subscriber prefixes untranslated). */
  outRoutes?: [prefix: string, via: string][];
}

/** What differs between labs: names, addresses (prefix length /24 or /64 by family), outside routes. */
export interface LabPlan {
  /** Namespaces `<ns>-sub`, `<ns>-nat`, `<ns>-out`. */
  ns: string;
  /** Interfaces `<links>-sub`, `-nat0`, `-nat1`, `-out` (default: the namespace prefix). */
  links?: string;
  subscriber: string;
  /** The NAT's inside address: the PCP server's, and the subscriber's default route. */
  server: string;
  natOutside: string[];
  outside: string[];
  outRoutes?: LabLayout["outRoutes"];
}

export function labLayout(p: LabPlan): LabLayout {
  const withLength = (a: string) => `${a}/${a.includes(":") ? 64 : 24}`;
  const links = p.links ?? p.ns;
  return {
    sub: `${p.ns}-sub`,
    nat: `${p.ns}-nat`,
    out: `${p.ns}-out`,
    links: [`${links}-sub`, `${links}-nat0`, `${links}-nat1`, `${links}-out`],
    subscriber: [withLength(p.subscriber)],
    natInside: [withLength(p.server)],
    natOutside: p.natOutside.map(withLength),
    outside: p.outside.map(withLength),
    routes: [p.server],
    outRoutes: p.outRoutes,
  };
}

/** Why the lab cannot run here (nft or namespaces missing), or undefined once it is up. */
export function setUpLab(l: LabLayout): string | undefined {
  try {
    execFileSync("nft", ["--version"], { stdio: "ignore" });
  } catch {
    return "nft not installed (scripts/test-deps.sh installs nftables when run as root)";
  }
  try {
    ip("netns", "add", l.nat);
  } catch (e) {
    return `network namespaces unavailable (${(e as Error).message.split("\n")[0]})`;
  }
  ip("netns", "add", l.sub);
  ip("netns", "add", l.out);
  const [sub, nat0, nat1, out] = l.links;
  ip("link", "add", sub, "type", "veth", "peer", "name", nat0);
  ip("link", "add", nat1, "type", "veth", "peer", "name", out);
  ip("link", "set", sub, "netns", l.sub);
  ip("link", "set", nat0, "netns", l.nat);
  ip("link", "set", nat1, "netns", l.nat);
  ip("link", "set", out, "netns", l.out);
  for (const [ns, dev, addrs] of [
    [l.sub, sub, l.subscriber],
    [l.nat, nat0, l.natInside],
    [l.nat, nat1, l.natOutside],
    [l.out, out, l.outside],
  ] as const) {
    for (const a of addrs) ip("-n", ns, "addr", "add", a, "dev", dev, ...(a.includes(":") ? ["nodad"] : []));
    ip("-n", ns, "link", "set", dev, "up");
    ip("-n", ns, "link", "set", "lo", "up");
  }
  for (const via of l.routes) ip("-n", l.sub, ...(via.includes(":") ? ["-6"] : []), "route", "add", "default", "via", via);
  for (const [prefix, via] of l.outRoutes ?? []) ip("-n", l.out, "route", "add", prefix, "via", via);
  execFileSync("ip", ["netns", "exec", l.nat, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
  return undefined;
}

export function tearDownLab(l: LabLayout): void {
  for (const ns of [l.sub, l.nat, l.out]) {
    try {
      ip("netns", "del", ns);
    } catch {
      // not created
    }
  }
}

/**
 * Runs a node script inside a namespace; resolves with its stdout (it must end by itself).
 * `onReady` is called when it prints the line "ready".
 */
export function inNs(ns: string, script: string, args: string[] = [], timeoutMs = 5000, onReady?: () => void): Promise<string> {
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

/** One UDP exchange from `bind` (address,port) to `to` (address,port); prints the reply as JSON, or "timeout". */
export const UDP_EXCHANGE = `
const [bind, to, hex] = process.argv.slice(-3);
const split = (s) => { const i = s.lastIndexOf(":"); return [s.slice(0, i).replace(/^\\[|\\]$/g, ""), Number(s.slice(i + 1))]; };
const [ba, bp] = split(bind); const [ta, tp] = split(to);
const s = require("node:dgram").createSocket(ba.includes(":") ? "udp6" : "udp4");
const t = setTimeout(() => { console.log("timeout"); process.exit(0); }, 1500);
s.on("message", (m, r) => { console.log(JSON.stringify({ hex: m.toString("hex"), from: r.address, port: r.port })); clearTimeout(t); s.close(); });
s.bind(bp, ba, () => s.send(Buffer.from(hex, "hex"), tp, ta));
`;

/** A TCP connection from `local` to host:port: prints what the service says, or why not. */
export const TCP_HELLO = `
const [local, host, port] = process.argv.slice(-3);
const c = require("node:net").connect({ host, port: Number(port), localAddress: local, timeout: 1500 });
c.setEncoding("utf8");
c.on("data", (d) => { console.log(d.trim()); c.destroy(); });
c.on("timeout", () => { console.log("timeout"); c.destroy(); });
c.on("error", (e) => console.log(e.code));
`;

/** UDP datagrams from `bind` (address,port) to `to`, `count` of them `gapMs` apart; prints "done". */
export const UDP_SEND = `
const [bind, to, count, gap] = process.argv.slice(-4);
const split = (s) => { const i = s.lastIndexOf(":"); return [s.slice(0, i).replace(/^\\[|\\]$/g, ""), Number(s.slice(i + 1))]; };
const [ba, bp] = split(bind); const [ta, tp] = split(to);
const s = require("node:dgram").createSocket(ba.includes(":") ? "udp6" : "udp4");
s.on("error", () => undefined); // ICMP port unreachable from a remote nobody listens on
let n = 0;
s.bind(bp, ba, () => {
  const one = () => s.send("x", tp, ta, () => { if (++n >= Number(count)) { console.log("done"); s.close(); } else setTimeout(one, Number(gap)); });
  one();
});
`;

/**
 * The command line that runs `command` as on a host without Debian's netbase: in a mount
 * namespace of its own (unshare -m: private propagation, the host's files untouched) where
 * an empty file is bound over /etc/protocols and /etc/services. Each exec replaces the
 * last, so the process started is the command itself (signals reach it).
 */
export function withoutNetbase(empty: string, command: string[]): string[] {
  fs.writeFileSync(empty, "");
  return ["unshare", "-m", "sh", "-c", 'for f in protocols services; do mount --bind "$0" /etc/$f || exit 1; done; exec "$@"', empty, ...command];
}

/**
 * A pcp-server run in the NAT namespace with a JSON config; waits for its ready lines.
 * `withoutNetbase`: as on a host without /etc/protocols and /etc/services (nft resolves no name).
 */
export class LabServer {
  private child: ChildProcess | undefined;
  log = "";
  readonly dir = fs.mkdtempSync(join(tmpdir(), "pcpd-lab-"));

  constructor(
    private readonly ns: string,
    private readonly config: (dir: string) => object,
    private readonly o: { withoutNetbase?: boolean } = {},
  ) {}

  async start(): Promise<void> {
    this.log = "";
    const file = join(this.dir, "pcpd.json");
    fs.writeFileSync(file, JSON.stringify(this.config(this.dir)));
    const run = ["ip", "netns", "exec", this.ns, process.execPath, CLI, "--config", file];
    const [command, ...args] = this.o.withoutNetbase ? withoutNetbase(join(this.dir, "empty"), run) : run;
    const c = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"] });
    this.child = c;
    await new Promise<void>((resolve, reject) => {
      c.stdout!.on("data", (d) => {
        this.log += d;
        if (this.log.includes("dataplane reconciled") && this.log.includes("pcp server listening")) resolve();
      });
      c.once("exit", (code) => reject(new Error(`server exited ${code}: ${this.log}`)));
    });
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    await new Promise((resolve) => {
      c.once("exit", resolve);
      c.kill("SIGTERM");
    });
  }

  kill(): void {
    this.child?.kill("SIGKILL");
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  count(line: string): number {
    return this.log.split(line).length - 1;
  }
}

/**
 * A lab server's configuration: PCP on server:port for the `subscribers` prefix, one pool
 * address, the nftables dataplane in `table` (with `dataplane`'s further settings),
 * persistence in the server's directory; `over` replaces whole sections.
 */
export function labConfig(
  o: { server: string; port: number; subscribers: string; external: string; table: string; dataplane?: Record<string, unknown> },
  dir: string,
  over: Record<string, unknown> = {},
): object {
  return {
    listen: { addresses: [o.server], port: o.port },
    subscribers: [o.subscribers],
    pool: { addresses: [o.external], blockSize: 64 },
    lifetimes: { min: 2 },
    dataplane: { backend: "nftables", table: o.table, batchMs: 20, ...o.dataplane },
    persistence: { directory: `${dir}/data`, commitIntervalMs: 10 },
    control: { enabled: false },
    log: { level: "info" },
    ...over,
  };
}

/**
 * The file's lab: set up before its tests (with the subscriber's services at `services`,
 * where given) and the server started; all stopped and torn down after. Returns why the
 * tests must skip (known once the setup ran).
 */
export function useLab(lab: LabLayout, server: LabServer, o: { services?: string } = {}): () => string | undefined {
  let skip: string | undefined;
  let services: ChildProcess | undefined;
  beforeAll(async () => {
    skip = setUpLab(lab);
    if (skip) return;
    if (o.services) services = await startServices(lab.sub, o.services);
    await server.start();
  }, 60_000);
  afterAll(async () => {
    services?.kill("SIGKILL");
    await server.stop();
    server.kill();
    tearDownLab(lab);
  });
  return () => skip;
}

const hostPort = (address: string, port: number) => (address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`);

/** One UDP datagram from `client` (any port; in namespace `ns`) to server:port: the reply's bytes, or undefined when none came. */
export async function udpExchange(ns: string, client: string, server: string, port: number, payload: Uint8Array): Promise<Buffer | undefined> {
  const out = await inNs(ns, UDP_EXCHANGE, [hostPort(client, 0), hostPort(server, port), Buffer.from(payload).toString("hex")]);
  return out === "timeout" ? undefined : Buffer.from(JSON.parse(out).hex, "hex");
}

/** One PCP request from `client` (in namespace `ns`) to server:port; the reply's bytes, or an error when none came. */
export async function pcpExchange(ns: string, client: string, server: string, port: number, request: Uint8Array): Promise<Buffer> {
  const reply = await udpExchange(ns, client, server, port, request);
  if (!reply) throw new Error("no PCP reply");
  return reply;
}

/** Where a lab's subscriber sends PCP: its namespace and address, the server's address and port. */
export interface PcpPath {
  ns: string;
  client: string;
  server: string;
  port: number;
}

/**
 * MAP from the subscriber for its internal port (the port is also the nonce; lifetime 600
 * unless given; an IPv6 subscriber suggests the external address ::): the reply's result and
 * the external address:port it assigned.
 */
export async function labMap(to: PcpPath, internalPort: number, protocol: number, o: { lifetime?: number; filters?: Option[] } = {}) {
  const request = mapRequest(
    {
      client: to.client,
      internalPort,
      protocol,
      lifetime: o.lifetime ?? 600,
      nonce: nonceOf(internalPort),
      externalAddress: to.client.includes(":") ? "::" : undefined,
    },
    o.filters ?? [],
  );
  const reply = await pcpExchange(to.ns, to.client, to.server, to.port, request);
  return { result: reply[3], ...assigned({ response: reply }) };
}

/** The keys of an nft map or set of table `family table`, as nft -j lists them (each key's concat parts joined by "/"). */
export function nftKeys(ns: string, family: string, table: string, kind: "map" | "set", name: string): string[] {
  let out: string;
  try {
    out = execFileSync("ip", ["netns", "exec", ns, "nft", "-j", "list", kind, family, table, name], { stdio: ["ignore", "pipe", "pipe"] }).toString();
  } catch {
    return []; // no such table (yet, or removed)
  }
  type Key = { concat: (string | number | { prefix: { addr: string; len: number } })[] } | string;
  type Entry = [Key, unknown] | Key | { elem: { val: Key } };
  const o = (JSON.parse(out).nftables as Record<string, { elem?: Entry[] }>[]).find((x) => x[kind])?.[kind];
  const text = (k: Key) => (typeof k === "string" ? k : k.concat.map((p) => (typeof p === "object" ? `${p.prefix.addr}/${p.prefix.len}` : p)).join("/"));
  return (o?.elem ?? []).map((e) => (Array.isArray(e) ? text(e[0]) : typeof e === "object" && "elem" in e ? text(e.elem.val) : text(e)));
}

/**
 * Tests that run in order on one server, each needing the ones before: after a failure the
 * rest are skipped, saying so; all are skipped with `skipReason()` when the lab cannot run.
 */
export function steps(skipReason: () => string | undefined, defaultTimeout = 20_000) {
  let ok = true;
  return (name: string, body: () => Promise<void>, timeout = defaultTimeout) =>
    it(
      name,
      async (ctx) => {
        const why = skipReason();
        if (why) return ctx.skip(why);
        if (!ok) return ctx.skip("an earlier step failed");
        ok = false;
        await body();
        ok = true;
      },
      timeout,
    );
}

/**
 * The subscriber's services at `address` in namespace `ns`: TCP on 8080, 8082 and 8084
 * (each says "tcp-<port>"), UDP on 8081 (answers "udp-8081"). Resolves once they listen.
 */
export async function startServices(ns: string, address: string): Promise<ChildProcess> {
  const script = `
const net = require("node:net");
for (const port of [8080, 8082, 8084]) net.createServer((s) => s.end("tcp-" + port + "\\n")).listen(port, "${address}");
const u = require("node:dgram").createSocket("${address.includes(":") ? "udp6" : "udp4"}");
u.on("message", (m, r) => u.send("udp-8081", r.port, r.address));
u.bind(8081, "${address}", () => console.log("ready"));
`;
  const c = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve) => c.stdout!.once("data", () => resolve()));
  return c;
}
