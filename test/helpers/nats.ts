// Real nats-server processes for the HA tests and benchmarks (Debian's nats-server, installed
// by scripts/test-deps.sh): one node or a cluster with JetStream, on loopback or inside a
// network namespace the test made. Each node can be killed, frozen and started again on its
// own store, as the failure scenarios need. Ready means: every node said so and JetStream
// answers an account-info request; in a cluster, also that a stream can be placed on every
// running node (a metadata leader just elected may not know all its peers yet and answers
// "no suitable peers for placement").
import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { jetstreamManager, StorageType } from "@nats-io/jetstream";
import type { KV } from "@nats-io/kv";
import { connectNats, leaseBucket } from "../../src/replication/nats.js";
import { waitFor } from "./wait.js";

/** The stream jetStreamReady places on every node and deletes again. */
const PROBE = "PCPD_TEST_READY_PROBE";

export const NATS_SERVER = ["/usr/sbin/nats-server", "/usr/bin/nats-server"].find((p) => fs.existsSync(p));

/** Why NATS tests cannot run here (undefined: they can). */
export function natsUnavailable(): string | undefined {
  return NATS_SERVER ? undefined : "nats-server not installed (scripts/test-deps.sh installs it when run as root)";
}

export interface NatsNode {
  name: string;
  url: string;
  /** The running process (undefined while stopped). */
  process?: ChildProcess;
  /** Sends a signal (default SIGKILL) and, for a kill, waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same store and ports; resolves when it says it is ready. */
  start(): Promise<void>;
}

export interface NatsCluster {
  nodes: NatsNode[];
  urls: string[];
  /** Resolves once JetStream answers through `urls` and (a cluster) places a stream on every running node, or rejects at the deadline. */
  jetStreamReady(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export interface NatsClusterOptions {
  /** 1 (a single server) or more (a cluster with routes between all). */
  size: number;
  /** Client port of node i is basePort + i, its cluster port basePort + 100 + i. */
  basePort: number;
  host?: string;
  /** Run inside this network namespace (made by the test). */
  netns?: string;
  /** Store directories go under it (default: a new temporary directory). */
  dir?: string;
}

export async function startNatsCluster(o: NatsClusterOptions): Promise<NatsCluster> {
  if (!NATS_SERVER) throw new Error(natsUnavailable());
  const host = o.host ?? "127.0.0.1";
  const dir = o.dir ?? fs.mkdtempSync(join(tmpdir(), "pcpd-nats-"));
  const routes = Array.from({ length: o.size }, (_, i) => `nats-route://${host}:${o.basePort + 100 + i}`);
  const nodes: NatsNode[] = Array.from({ length: o.size }, (_, i) => {
    const name = `n${i + 1}`;
    const conf = join(dir, `${name}.conf`);
    const lines = [
      `server_name: ${name}`,
      `listen: "${host}:${o.basePort + i}"`,
      `jetstream { store_dir: "${join(dir, name)}" }`,
      ...(o.size > 1
        ? [`cluster { name: pcpd-test, listen: "${host}:${o.basePort + 100 + i}", routes: [${routes.filter((_, j) => j !== i).join(", ")}] }`]
        : []),
    ];
    fs.writeFileSync(conf, `${lines.join("\n")}\n`);
    const node: NatsNode = {
      name,
      url: `nats://${host}:${o.basePort + i}`,
      async kill(signal = "SIGKILL") {
        const p = node.process;
        if (!p || p.exitCode !== null) return;
        const exited = new Promise<void>((resolve) => p.once("exit", () => resolve()));
        p.kill(signal);
        if (signal === "SIGKILL" || signal === "SIGTERM") {
          await exited;
          node.process = undefined;
        }
      },
      start() {
        const argv = [NATS_SERVER!, "-c", conf];
        const p = o.netns
          ? spawn("ip", ["netns", "exec", o.netns, ...argv], { stdio: ["ignore", "ignore", "pipe"] })
          : spawn(argv[0], argv.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
        node.process = p;
        let log = "";
        return new Promise<void>((resolve, reject) => {
          const onData = (d: Buffer) => {
            log += d.toString();
            if (log.includes("Server is ready")) {
              p.stderr!.off("data", onData);
              p.stderr!.resume();
              resolve();
            }
          };
          p.stderr!.on("data", onData);
          p.once("exit", (code) => reject(new Error(`nats-server ${name} exited (${code}) before it was ready:\n${log.slice(-2000)}`)));
        });
      },
    };
    return node;
  });
  const cluster: NatsCluster = {
    nodes,
    urls: nodes.map((n) => n.url),
    async jetStreamReady(timeoutMs = 20_000) {
      const nc = await connect({ servers: cluster.urls, timeout: 1000 });
      const running = nodes.filter((n) => n.process).length;
      let last = "";
      try {
        await waitFor(
          async () => {
            try {
              const jsm = await jetstreamManager(nc, { timeout: 1000 });
              await jsm.getAccountInfo();
              if (running > 1) {
                await jsm.streams.add({ name: PROBE, subjects: [PROBE.toLowerCase()], num_replicas: running, storage: StorageType.Memory });
                await jsm.streams.delete(PROBE);
              }
              return true;
            } catch (e) {
              last = (e as Error).message;
              return false;
            }
          },
          { timeout: timeoutMs, interval: 100, message: () => `JetStream not ready: ${last}` },
        );
      } finally {
        await nc.close();
      }
    },
    async stop() {
      await Promise.all(nodes.map((n) => n.kill("SIGKILL")));
      if (!o.dir) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await Promise.all(nodes.map((n) => n.start()));
    await cluster.jetStreamReady();
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

/** Whether a port is free on loopback (to pick a base port no other test uses). */
export function portsFree(host: string, ports: number[]): boolean {
  const out = execFileSync("ss", ["-Htln"], { encoding: "utf8" });
  return !ports.some((p) => out.includes(`${host}:${p} `));
}

/**
 * Makes an HA cluster's lease bucket and waits until it answers a read. Just after the
 * cluster's start JetStream may still refuse to place it ("no suitable peers for
 * placement"), and a bucket just made answers nothing until its stream has a leader: a
 * test's first lease request would time out then. The server's own connectHa waits the same way.
 */
export async function readyLeaseBucket(urls: string[], cluster: string, replicas: number): Promise<void> {
  const nc = await connectNats({ servers: urls, timeoutMs: 1000 }, `${cluster}-bucket`);
  try {
    let kv: KV | undefined;
    let last = "";
    await waitFor(
      async () => {
        try {
          kv ??= await leaseBucket(nc, cluster, replicas);
          await kv.get("-");
          return true;
        } catch (e) {
          last = (e as Error).message;
          return false;
        }
      },
      { timeout: 30_000, interval: 200, message: () => `lease bucket: ${last}` },
    );
  } finally {
    await nc.close();
  }
}
