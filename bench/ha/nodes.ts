// The pieces of bench/ha.bench.ts that drive HA nodes: a 3-node nats-server cluster on
// loopback (removed on exit, failure and Ctrl-C too), pcp-server nodes of one shard group
// (the real server process, `node dist/cli/pcp-server.js --config FILE`, through
// bench/e2e/harness.ts), their `ha.status` over the control channel, and a prober that
// sends the load generator's own MAP request for one key every few ms until the answer
// carries the external address and port that key had before the failure.
//
// Every node of a group lists the same service address (SERVICE, loopback): the standby
// holds no socket, so once the active's process is gone the new active binds it — that is
// why the claim/release hooks can stay empty here.
import dgram from "node:dgram";
import fs from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { ControlClient, ControlClientError } from "../../src/client/control-client.js";
import type { HaGroupStatus, HaStatus } from "../../src/ha/types.js";
import { haNames } from "../../src/replication/nats.js";
import { mapRequest, thirdParty } from "../../test/helpers/packets.js";
import { portsFree, startNatsCluster, type NatsCluster } from "../../test/helpers/nats.js";
import { CLIENT, LIFETIME, PER_SUB, PORT, keyEndpoint, startServer, type RunningServer } from "../e2e/harness.js";

/** The group's service address, listed by every node (loopback: always local). */
export const SERVICE = "127.0.0.40";
export const GROUP = "g1";
/** nats-server client ports NATS_BASE..+2 (cluster routes at +100, as test/helpers/nats.ts places them). */
export const NATS_BASE = 24790;
/** Control channel of node i (127.0.0.1): CONTROL_BASE + i. */
export const CONTROL_BASE = 24720;
const TOKEN = "bench-ha-admin-token-0123456789abcdef";

/** Lease and replication settings of every node (reported with the figures). */
export interface HaSettings {
  leaseMs: number;
  safetyMarginMs: number;
  commitIntervalMs: number;
}

// --- NATS ------------------------------------------------------------------------------------

let natsDir: string | undefined;
let natsCluster: NatsCluster | undefined;
process.on("exit", () => {
  // Ctrl-C or an uncaught failure: no finally block runs, so kill and remove here.
  for (const n of natsCluster?.nodes ?? []) n.process?.kill("SIGKILL");
  if (natsDir) fs.rmSync(natsDir, { recursive: true, force: true });
});

/** The 3-node cluster on 127.0.0.1 (its store in a temporary directory, removed by stopNats or at exit). */
export async function startNats(): Promise<NatsCluster> {
  const ports = [0, 1, 2].flatMap((i) => [NATS_BASE + i, NATS_BASE + 100 + i]);
  if (!portsFree("127.0.0.1", ports)) throw new Error(`a port of ${ports.join(", ")} is in use on 127.0.0.1`);
  natsDir = fs.mkdtempSync(join(os.tmpdir(), "pcpd-bench-ha-nats-"));
  natsCluster = await startNatsCluster({ size: 3, basePort: NATS_BASE, dir: natsDir });
  return natsCluster;
}

export async function stopNats(): Promise<void> {
  await natsCluster?.stop();
  natsCluster = undefined;
  if (natsDir) fs.rmSync(natsDir, { recursive: true, force: true });
  natsDir = undefined;
}

/** The group stream's state: last sequence, messages, bytes. */
export async function streamState(urls: string[], cluster: string) {
  const nc = await connect({ servers: urls, timeout: 2000 });
  try {
    const info = await (await jetstreamManager(nc)).streams.info(haNames.stream(cluster, GROUP));
    return { lastSeq: info.state.last_seq, messages: info.state.messages, bytes: info.state.bytes };
  } finally {
    await nc.close();
  }
}

// --- Nodes -----------------------------------------------------------------------------------

export interface HaNodeOptions {
  /** ha.node; also names the node's configuration file. */
  node: string;
  /** Index of the node: its control port is CONTROL_BASE + index. */
  index: number;
  /** ha.cluster: a fresh one per measurement, so every measurement starts from an empty stream. */
  cluster: string;
  urls: string[];
  settings: HaSettings;
  /** false: ha.enabled off, everything else the same (the throughput baseline). */
  ha?: boolean;
  /** Wait until it answers MAP (the active); a standby is started without. */
  ping?: boolean;
  /** Its service address (the group's address too); default SERVICE. */
  listen?: string;
}

export interface HaNode {
  node: string;
  server: RunningServer;
  controlPort: number;
  status(): Promise<HaStatus>;
}

/**
 * One pcp-server process: the e2e benchmark's configuration for `mappings` on SERVICE,
 * persistence off (with HA on the stream is the durable copy; the config refuses both),
 * CHECKPOINT_REQUIRED allowed for every mapping of a subscriber, and the ha section.
 */
export async function startNode(mappings: number, o: HaNodeOptions): Promise<HaNode> {
  const controlPort = CONTROL_BASE + o.index;
  const ha = {
    enabled: o.ha !== false,
    node: o.node,
    cluster: o.cluster,
    nats: { servers: o.urls },
    replicas: 3,
    groups: [{ name: GROUP, addresses: [o.listen ?? SERVICE], preferred: "a" }],
    leaseMs: o.settings.leaseMs,
    safetyMarginMs: o.settings.safetyMarginMs,
    commitIntervalMs: o.settings.commitIntervalMs,
    hooks: { claim: [], release: [] },
  };
  const server = await startServer([o.listen ?? SERVICE], mappings, {
    name: `ha-${o.node}`,
    control: { enabled: true, address: "127.0.0.1", port: controlPort, tokens: [{ token: TOKEN, role: "admin" }] },
    persistence: { enabled: false, checkpointsPerSubscriber: PER_SUB },
    extra: { ha },
    ping: o.ping,
  });
  return { node: o.node, server, controlPort, status: () => server.step(haStatus(controlPort)) };
}

/** ha.status of the node whose control channel is on `port`. */
export async function haStatus(port: number): Promise<HaStatus> {
  const client = await ControlClient.connect(`ws://127.0.0.1:${port}/control`, { token: TOKEN, timeoutMs: 5000, keepAliveMs: 0 });
  try {
    // Untyped call: the method is ops' (src/control), the result the shared HaStatus type.
    const call = client.call.bind(client) as unknown as (method: string, params: object) => Promise<unknown>;
    const status = (await call("ha.status", {})) as HaStatus;
    if (!Array.isArray(status?.groups)) throw new Error(`ha.status answered ${JSON.stringify(status)}`);
    return status;
  } finally {
    await client.close();
  }
}

/** The group's status on a node, or undefined while its control channel is not up yet. */
export async function groupStatus(n: HaNode): Promise<HaGroupStatus | undefined> {
  try {
    return (await n.status()).groups.find((g) => g.name === GROUP);
  } catch (e) {
    if (e instanceof ControlClientError && e.code === "CONNECT_FAILED") return undefined; // not listening yet
    throw e;
  }
}

/** Polls `until` on the node's group status every `intervalMs` until it holds; its value, or a timeout naming the last status. */
export async function waitGroup<T>(n: HaNode, until: (g: HaGroupStatus) => T | undefined | false, timeoutMs: number, intervalMs = 20): Promise<T> {
  const t0 = performance.now();
  let last: HaGroupStatus | undefined;
  for (;;) {
    last = await groupStatus(n);
    const v = last && until(last);
    if (v) return v;
    if (performance.now() - t0 > timeoutMs) throw new Error(`${n.node}: timed out after ${timeoutMs} ms; last ha.status: ${JSON.stringify(last)}`);
    await n.server.step(new Promise((resolve) => setTimeout(resolve, intervalMs)));
  }
}

/** Applied or acknowledged stream sequence of the group's (single) shard. */
export const shardSeq = (g: HaGroupStatus) => Math.min(...g.replication.map((r) => r.seq));

// --- Prober ----------------------------------------------------------------------------------

/** The load generator's MAP request for `key` (bench/e2e/loadgen.c build_request: same nonce, so a refresh). */
export function requestFor(key: number): Uint8Array {
  const e = keyEndpoint(key);
  const s = BigInt(Math.floor(key / PER_SUB));
  const nonce = Buffer.alloc(12);
  nonce.writeBigUInt64LE(BigInt.asUintN(64, 0x5851f42d4c957f2dn * (s + 1n)), 0);
  nonce.writeUInt32LE((Number(s) ^ 0xa5a5a5a5) >>> 0, 8);
  return mapRequest({ lifetime: LIFETIME, client: CLIENT, nonce: [...nonce], protocol: e.protocol, internalPort: e.internalPort, externalAddress: "0.0.0.0" }, [
    thirdParty(e.internalAddress),
  ]);
}

export interface Mapped {
  address: string;
  port: number;
  epoch: number;
}

/** A SUCCESS answer's assigned external address, port and Epoch; null for anything else (result code in `result`). */
function parseAnswer(b: Buffer): (Mapped & { result: number }) | { result: number } {
  if (b.length < 60 || b[0] !== 2 || b[1] !== 0x81) return { result: -1 };
  if (b[3] !== 0) return { result: b[3] };
  return { result: 0, epoch: b.readUInt32BE(8), port: b.readUInt16BE(42), address: [...b.subarray(56, 60)].join(".") };
}

export interface ProbeResult {
  /** ms from `t0` to the first answer carrying `expected`'s address and port. */
  ms: number;
  sent: number;
  /** Answers before it: SUCCESS with another address or port (a lost mapping), or another result code. */
  wrong: { ms: number; result: number; address?: string; port?: number }[];
  /** What the correct answer carried (its Epoch included). */
  mapped: Mapped;
}

/**
 * Sends the request of `key` every `intervalMs` (a new datagram each time, answers matched
 * by content) from CLIENT until an answer carries `expected` (or, with no `expected`, any
 * SUCCESS); rejects after `deadlineMs`. Time is counted from `t0` (performance.now()).
 */
export function probe(key: number, o: { t0?: number; expected?: Mapped; intervalMs?: number; deadlineMs?: number } = {}): Promise<ProbeResult> {
  const t0 = o.t0 ?? performance.now();
  const request = requestFor(key);
  const socket = dgram.createSocket("udp4");
  const wrong: ProbeResult["wrong"] = [];
  let sent = 0;
  return new Promise<ProbeResult>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const done = (f: () => void) => {
      clearInterval(timer);
      socket.close();
      f();
    };
    socket.on("error", () => {}); // ICMP unreachable while nobody holds the port: keep probing
    socket.on("message", (b) => {
      const ms = performance.now() - t0;
      const a = parseAnswer(b);
      if ("port" in a && (!o.expected || (a.port === o.expected.port && a.address === o.expected.address)))
        done(() => resolve({ ms, sent, wrong, mapped: { address: a.address, port: a.port, epoch: a.epoch } }));
      else wrong.push({ ms, result: a.result, ...("port" in a ? { address: a.address, port: a.port } : {}) });
    });
    socket.bind(0, CLIENT, () => {
      const send = () => {
        if (performance.now() - t0 > (o.deadlineMs ?? 30_000))
          return done(() =>
            reject(new Error(`key ${key}: no correct answer within ${o.deadlineMs ?? 30_000} ms (${sent} sent, wrong: ${JSON.stringify(wrong.slice(0, 5))})`)),
          );
        sent++;
        socket.send(request, PORT, SERVICE);
      };
      send();
      timer = setInterval(send, o.intervalMs ?? 10);
    });
  });
}

/** The external address, port and Epoch `key` has now (its request resent every 200 ms until answered SUCCESS). */
export async function mappedNow(key: number): Promise<Mapped> {
  const r = await probe(key, { intervalMs: 200, deadlineMs: 5000 });
  if (r.wrong.length > 0) throw new Error(`key ${key}: answered ${JSON.stringify(r.wrong)} before SUCCESS`);
  return r.mapped;
}
