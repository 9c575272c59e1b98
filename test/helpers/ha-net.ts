// The HA integration tests' network (issue #14): network namespaces this module creates and
// removes, all addresses inside them and on one veth into the root namespace.
//
//   root namespace (the test, 10.78.0.254) ─┐
//   pha-n1 (10.78.0.11, MAC 02:78:00:00:00:11) ┤
//   pha-n2 (10.78.0.12, …:12) ──────────────┼── bridge pha-br in pha-fab (10.78.0.1: three nats-servers,
//   pha-n3 (10.78.0.13, …:13) ──────────────┤       client ports 4222–4224, cluster ports 4322–4324)
//   pha-cli (10.78.0.50: the PCP client) ───┘
//
// Each node namespace runs one pcp-server (`node dist/cli/pcp-server.js --config FILE`)
// with its control channel on its own address. The groups' service addresses (10.78.0.101,
// .102) are on no namespace at first: the HA claim hook adds one to the node that takes the
// group (`ip addr replace`, then a gratuitous ARP so the client's neighbour entry follows),
// the release hook removes it. Every node's interface is called pha0, so the hooks — like
// the rest of the configuration except ha.node and control.address — are the same on
// every node. Set-up deletes leftovers of an earlier run first; tear-down removes it all.
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { join } from "node:path";
import { ControlClient } from "../../src/client/control-client.js";
import { readyLeaseBucket, startNatsCluster, natsUnavailable, type NatsCluster } from "./nats.js";
import { waitFor } from "./wait.js";

export const FAB = "pha-fab";
export const CLIENT_NS = "pha-cli";
export const DEV = "pha0";
export const NATS_HOST = "10.78.0.1";
export const CLIENT_ADDRESS = "10.78.0.50";
export const ROOT_ADDRESS = "10.78.0.254";
export const VIPS = ["10.78.0.101", "10.78.0.102"] as const;
export const NODE_NAMES = ["n1", "n2", "n3"] as const;
export type NodeName = (typeof NODE_NAMES)[number];
export const nodeNs = (n: NodeName) => `pha-${n}`;
export const nodeAddress = (n: NodeName) => `10.78.0.${11 + NODE_NAMES.indexOf(n)}`;
/** Set on each node's pha0, so a captured frame names the node that sent it. */
export const nodeMac = (n: NodeName) => `02:78:00:00:00:${11 + NODE_NAMES.indexOf(n)}`;
export const CLIENT_MAC = "02:78:00:00:00:50";
export const PCP_PORT = 5351;
export const CONTROL_PORT = 5380;
export const TOKEN = "pha-test-admin-token-0123456789abcdef";
const SERVER = new URL("../../dist/cli/pcp-server.js", import.meta.url).pathname;

const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "pipe", "pipe"] }).toString();
const inNs = (ns: string, ...argv: string[]) => execFileSync("ip", ["netns", "exec", ns, ...argv], { stdio: ["ignore", "pipe", "pipe"] }).toString();
const allNamespaces = () => [FAB, CLIENT_NS, ...NODE_NAMES.map(nodeNs)];

/** Why the HA network cannot be built here (undefined: it can). */
export function haNetUnavailable(): string | undefined {
  const nats = natsUnavailable();
  if (nats) return nats;
  for (const tool of ["arping", "dumpcap"]) {
    try {
      execFileSync("sh", ["-c", `command -v ${tool}`], { stdio: "ignore" });
    } catch {
      return `${tool} not installed (scripts/test-deps.sh installs it when run as root)`;
    }
  }
  if (!fs.existsSync(SERVER)) return `${SERVER} missing (npm run build)`;
  try {
    ip("netns", "add", "pha-probe");
    ip("netns", "del", "pha-probe");
  } catch (e) {
    return `network namespaces unavailable (${(e as Error).message.split("\n")[0]})`;
  }
  return undefined;
}

/**
 * Removes whatever an earlier run left: the processes still inside our namespaces (ours, by
 * their ids), the namespaces (their veths go with them) and the root namespace's end.
 */
export function tearDownHaNet(): void {
  const existing = ip("netns", "list");
  for (const ns of allNamespaces()) {
    if (!new RegExp(`^${ns}( |$)`, "m").test(existing)) continue;
    for (const pid of ip("netns", "pids", ns).split("\n").filter(Boolean)) {
      try {
        process.kill(Number(pid), "SIGKILL");
      } catch {
        // gone already
      }
    }
    try {
      ip("netns", "del", ns);
    } catch {
      // deleted by a concurrent tear-down
    }
  }
  try {
    ip("link", "del", "pha-root");
  } catch {
    // went with pha-fab
  }
}

/** Builds the namespaces, the bridge and the veths (after removing leftovers). */
export function setUpHaNet(): void {
  tearDownHaNet();
  for (const ns of allNamespaces()) {
    ip("netns", "add", ns);
    ip("-n", ns, "link", "set", "lo", "up");
  }
  ip("-n", FAB, "link", "add", "pha-br", "type", "bridge", "forward_delay", "0", "stp_state", "0");
  ip("-n", FAB, "addr", "add", `${NATS_HOST}/24`, "dev", "pha-br");
  ip("-n", FAB, "link", "set", "pha-br", "up");
  const attach = (ns: string, inner: string, address: string, mac: string) => {
    const outer = `${inner.slice(0, 10)}-b`;
    ip("link", "add", inner, "type", "veth", "peer", "name", outer);
    ip("link", "set", outer, "netns", FAB);
    ip("-n", FAB, "link", "set", outer, "master", "pha-br", "up");
    if (ns !== "") {
      ip("link", "set", inner, "netns", ns);
      ip("-n", ns, "link", "set", inner, "name", DEV);
    }
    const n = ns === "" ? [] : ["-n", ns];
    const dev = ns === "" ? inner : DEV;
    ip(...n, "link", "set", dev, "address", mac);
    ip(...n, "addr", "add", `${address}/24`, "dev", dev);
    ip(...n, "link", "set", dev, "up");
  };
  for (const n of NODE_NAMES) {
    attach(nodeNs(n), `pha-${n}-i`, nodeAddress(n), nodeMac(n));
    // ARP requests a node sends carry its own address (not a service address it may hold
    // for a moment after losing the group): only the claim hook's gratuitous ARP moves the
    // client's neighbour entry for a service address.
    inNs(nodeNs(n), "sysctl", "-qw", `net.ipv4.conf.${DEV}.arp_announce=2`);
  }
  attach(CLIENT_NS, "pha-cli-i", CLIENT_ADDRESS, CLIENT_MAC);
  // A gratuitous ARP right after the entry was updated would be ignored for locktime (1 s by default).
  inNs(CLIENT_NS, "sysctl", "-qw", `net.ipv4.neigh.${DEV}.locktime=0`);
  attach("", "pha-root", ROOT_ADDRESS, "02:78:00:00:00:fe");
}

/**
 * The NATS cluster on the bridge address (ports 4222–4224, cluster 4322–4324), with the
 * lease bucket made and answering. The nodes start together so that each takes the group it
 * prefers at once; a node whose first read of a bucket that is still electing its leader
 * waited (src/ha/connection.ts connectHa) would find the other one holding its group.
 */
export async function startHaNats(dir: string): Promise<NatsCluster> {
  fs.mkdirSync(dir, { recursive: true });
  const cluster = await startNatsCluster({ size: 3, basePort: 4222, host: NATS_HOST, netns: FAB, dir });
  const ha = nodeConfig("n1").ha as { cluster: string; replicas: number };
  await readyLeaseBucket(cluster.urls, ha.cluster, ha.replicas);
  return cluster;
}

/** Which node namespace holds a service address now (undefined: none). */
export function vipHolders(vip: string): NodeName[] {
  return NODE_NAMES.filter((n) => inNs(nodeNs(n), "ip", "-br", "-4", "addr", "show", "dev", DEV).includes(`${vip}/32`));
}

/** Removes a service address from a node's namespace (what its release hook would have done). */
export function dropAddress(n: NodeName, vip: string): void {
  ip("-n", nodeNs(n), "addr", "del", `${vip}/32`, "dev", DEV);
}

/** The base configuration of every node (groups a → VIPS[0] preferred on n1, b → VIPS[1] preferred on n2). */
export function nodeConfig(n: NodeName, ha: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listen: { addresses: [...VIPS], port: PCP_PORT },
    workers: 2,
    subscribers: ["10.78.0.0/24"],
    thirdPartySources: [`${CLIENT_ADDRESS}/32`],
    // Room for every mapping the scenarios create together (each subscriber holds a 64-port
    // block for up to 50; every THIRD_PARTY mapping keeps its requester): the reset scenario
    // re-creates all of them on one server at once, and a loaded run creates more (it waits
    // for acknowledgements, not for a count).
    capacity: { mappings: 400_000, requesters: 400_000 },
    pool: { addresses: Array.from({ length: 16 }, (_, i) => `198.51.100.${i + 1}`), blockSize: 64 },
    quotas: { mappingsPerSubscriber: 50 },
    rateLimit: { perSource: { rate: 1e6, burst: 1e6 }, global: { rate: 1e6, burst: 1e6 } },
    // CHECKPOINT_REQUIRED honoured for every mapping of a subscriber (quota: 16 by default; a request over it is served, not echoed).
    persistence: { enabled: false, checkpointsPerSubscriber: 50 },
    control: { address: nodeAddress(n), port: CONTROL_PORT, tokens: [{ token: TOKEN, role: "admin" }], requestsPerSecond: 1_000_000 },
    log: { level: "info" },
    ha: {
      enabled: true,
      node: n,
      cluster: "pha",
      nats: { servers: [0, 1, 2].map((i) => `nats://${NATS_HOST}:${4222 + i}`), timeoutMs: 1000 },
      replicas: 3,
      groups: [
        { name: "a", addresses: [VIPS[0]], preferred: "n1" },
        { name: "b", addresses: [VIPS[1]], preferred: "n2" },
      ],
      leaseMs: 1500,
      safetyMarginMs: 300,
      commitIntervalMs: 50,
      hooks: {
        // Idempotent both ways: a claim of an address already there, a release of one already gone, succeed.
        // The gratuitous ARPs (two, a second apart, as VRRP sends them) go in the background:
        // arping takes a second per copy, the takeover must not wait for it.
        claim: ["sh", "-c", `ip addr replace {prefix} dev ${DEV} && { arping -q -U -c 2 -I ${DEV} {address} </dev/null >/dev/null 2>&1 & }`],
        release: ["sh", "-c", `ip addr del {prefix} dev ${DEV} 2>/dev/null; true`],
        timeoutMs: 3000,
      },
      ...ha,
    },
  };
}

/** One line of a node's pino log. */
export interface LogLine {
  msg: string;
  level: number;
  /** CLOCK_MONOTONIC ms (shared by every process of the machine) when the test read it. */
  seenAt: number;
  [k: string]: unknown;
}

/** CLOCK_MONOTONIC in ms: the same clock in the test and in the client process (namespaces share it). */
export const monoMs = () => Number(process.hrtime.bigint()) / 1e6;

/** A pcp-server node in its namespace. */
export class HaNode {
  process?: ChildProcess;
  /** Stopped with SIGSTOP (its control channel does not answer). */
  frozen = false;
  logs: LogLine[] = [];
  stderr = "";
  private client?: Promise<ControlClient>;
  readonly ns: string;
  readonly address: string;
  readonly mac: string;
  readonly url: string;

  constructor(
    readonly name: NodeName,
    private readonly dir: string,
  ) {
    this.ns = nodeNs(name);
    this.address = nodeAddress(name);
    this.mac = nodeMac(name);
    this.url = `ws://${this.address}:${CONTROL_PORT}/control`;
  }

  get running(): boolean {
    return this.process !== undefined && this.process.exitCode === null && this.process.signalCode === null;
  }

  /** Starts the server with the base configuration (ha.* overridden by `ha`); resolves once its control channel listens. */
  async start(ha: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<void> {
    if (this.running) throw new Error(`${this.name} is running`);
    const file = join(this.dir, `${this.name}.json`);
    fs.writeFileSync(file, JSON.stringify(nodeConfig(this.name, ha)));
    this.logs = [];
    this.stderr = "";
    this.client = undefined;
    this.frozen = false;
    const p = spawn("ip", ["netns", "exec", this.ns, process.execPath, SERVER, "--config", file], { stdio: ["ignore", "pipe", "pipe"] });
    this.process = p;
    let buffered = "";
    const logFile = join(this.dir, `${this.name}.log`);
    p.stdout!.on("data", (chunk: Buffer) => {
      fs.appendFileSync(logFile, chunk); // the whole log, kept by the test when it fails
      buffered += chunk.toString();
      const lines = buffered.split("\n");
      buffered = lines.pop()!;
      const seenAt = monoMs();
      for (const line of lines) {
        if (!line.startsWith("{")) continue;
        try {
          this.logs.push({ ...JSON.parse(line), seenAt });
        } catch {
          // not a log line
        }
      }
    });
    p.stderr!.on("data", (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-20_000);
    });
    await this.waitLog((l) => l.msg === "control channel listening", timeoutMs);
  }

  /** Sends a signal; for SIGKILL and SIGTERM waits for the exit. */
  async kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const p = this.process;
    if (!p || !this.running) return;
    const exited = new Promise<void>((resolve) => p.once("exit", () => resolve()));
    if (signal === "SIGSTOP" || signal === "SIGCONT") this.frozen = signal === "SIGSTOP";
    p.kill(signal);
    if (signal === "SIGKILL" || signal === "SIGTERM") {
      await exited;
      const c = this.client;
      this.client = undefined;
      c?.then((x) => x.close()).catch(() => undefined);
    }
  }

  async restart(ha: Record<string, unknown> = {}): Promise<void> {
    await this.kill("SIGKILL");
    await this.start(ha);
  }

  /** The first log line (from `from`, an index into logs) matching; rejects at the deadline or when the process exits. */
  async waitLog(match: (l: LogLine) => boolean, timeoutMs = 20_000, from = 0): Promise<LogLine> {
    return waitFor(
      () => {
        const found = this.logs.slice(from).find(match);
        if (found) return found;
        if (!this.running && this.process?.exitCode !== undefined && this.process.exitCode !== null)
          throw new Error(`${this.name} exited (${this.process.exitCode}): ${this.stderr.slice(-2000)}${this.tail()}`);
        return undefined;
      },
      { timeout: timeoutMs, interval: 20, message: () => `${this.name}: no such log line; last lines:${this.tail()}` },
    );
  }

  /** "ha: group <g> active" (the HA manager's line once every shard of the group serves), from log index `from`. */
  waitActive(group: string, timeoutMs = 20_000, from = 0): Promise<LogLine> {
    return this.waitLog((l) => typeof l.msg === "string" && l.msg.startsWith(`ha: group ${group} active`), timeoutMs, from);
  }

  tail(n = 15): string {
    return `\n  ${this.logs
      .slice(-n)
      .map(({ seenAt: _, level: __, ...l }) => JSON.stringify(l))
      .join("\n  ")}`;
  }

  /** A control-channel call (methods the typed protocol may not list yet, e.g. ha.status). */
  async call(method: string, params: Record<string, unknown> = {}, timeoutMs = 10_000): Promise<any> {
    this.client ??= ControlClient.connect(this.url, { token: TOKEN, timeoutMs, keepAliveMs: 0 });
    let c: ControlClient;
    try {
      c = await this.client;
    } catch (e) {
      this.client = undefined;
      throw e;
    }
    try {
      return await (c.call as (m: string, p: unknown, o?: { timeoutMs: number }) => Promise<unknown>)(method, params, { timeoutMs });
    } catch (e) {
      if ((e as { name?: string }).name !== "ControlError") this.client = undefined; // a dropped connection: reconnect next time
      throw e;
    }
  }

  /** This node's view of a group (ha.status). */
  async group(name: string): Promise<HaGroupView> {
    const status = await this.call("ha.status");
    const g = (status.groups as HaGroupView[]).find((x) => x.name === name);
    if (!g) throw new Error(`${this.name}: ha.status has no group ${name}`);
    return g;
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    await c?.then((x) => x.close()).catch(() => undefined);
    await this.kill("SIGKILL");
  }
}

/** The parts of HaGroupStatus (src/ha/types.ts) the tests read. */
export interface HaGroupView {
  name: string;
  role: string;
  holder: string | null;
  term: number;
  lagMs: number;
  replication: { shard: number; role: string; seq: number; lastSeq: number; complete: boolean; lagMs: number; gateDrops: number }[];
  lastTakeover?: { from: string | null; to: string; reason: string; durationMs: number; epochContinued: boolean };
}
