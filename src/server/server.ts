// The daemon's assembly: configuration → a pool of engine workers, one shard each, every
// worker owning the sockets of its listen addresses (listen address i → shard i mod
// workers). A subscriber's mappings live in the shard behind the server address it talks
// to; each shard has its own Epoch (RFC 6887 §8.5 allows per-scope epochs).
import { availableParallelism } from "node:os";
import type { Logger } from "pino";
import { workerCount, type Config } from "../config/schema.js";
import { announceTargets } from "./announce.js";
import { ShardPool } from "./shard-pool.js";
import type { ShardSpec, ShardStats } from "./shard-worker.js";

export interface ServerStats {
  /** Engine counters summed over the shards. */
  engine: Record<string, bigint>;
  shards: ShardStats[];
}

export interface RunningServer {
  addresses: { address: string; port: number }[];
  /** threadId of each shard's worker (undefined while it restarts). */
  threads(): (number | undefined)[];
  stats(): Promise<ServerStats>;
  /** Forced Epoch reset of one shard: its thread is replaced, its table starts empty, the reset is announced. */
  resetShard(shard: number): Promise<void>;
  /**
   * Applies what can change without losing state (switches, lifetimes, quotas, nonce
   * policy, parity, prefixes, rate limits, log level); returns the changed fields that
   * need a restart (listen, workers, pool, capacity, protocols, announce), which are left as they were.
   */
  reload(next: Config): Promise<string[]>;
  stop(): Promise<void>;
}

const RESTART_FIELDS = ["listen", "workers", "pool", "capacity", "protocols", "announce"] as const;

function sum(shards: ShardStats[]): Record<string, bigint> {
  const total: Record<string, bigint> = {};
  for (const s of shards) for (const [k, v] of Object.entries(s.engine)) total[k] = (total[k] ?? 0n) + v;
  return total;
}

export async function startServer(c: Config, log: Logger, onShardLost?: (shard: number, error: Error) => void): Promise<RunningServer> {
  const shards = workerCount(c, availableParallelism());
  const targets = announceTargets(c.announce.multicast, c.listen.addresses);
  const seed = BigInt.asUintN(64, BigInt(Date.now()) * 0x9e3779b97f4a7c15n ^ BigInt(process.pid));
  const specs: ShardSpec[] = Array.from({ length: shards }, (_, shard) => {
    const addresses = c.listen.addresses.filter((_, i) => i % shards === shard);
    return {
      shard,
      shards,
      endpoints: addresses.map((address) => ({ address, port: c.listen.port })),
      announce: targets.filter((t) => addresses.includes(t.source)),
      config: c,
      seed: BigInt.asUintN(64, seed + BigInt(shard)),
    };
  });
  const pool = new ShardPool(specs, log, onShardLost ?? (() => undefined));
  let started;
  try {
    started = await pool.start();
  } catch (e) {
    await pool.stop();
    throw e;
  }
  const addresses = started.flatMap((s) => s.endpoints);
  log.info({ listen: addresses, workers: shards, natPmp: c.natPmp }, "pcp server listening");
  let current = c;
  return {
    addresses,
    threads: () => pool.threads(),
    resetShard: (shard) => pool.reset(shard),
    async stats() {
      const list = await pool.all<ShardStats>({ kind: "stats" });
      return { engine: sum(list), shards: list };
    },
    async reload(next) {
      const restart = RESTART_FIELDS.filter((f) => JSON.stringify(next[f]) !== JSON.stringify(current[f]));
      current = { ...next, ...Object.fromEntries(RESTART_FIELDS.map((f) => [f, current[f]])) };
      pool.updateConfig(current);
      await pool.all({ kind: "reload", config: current });
      log.level = next.log.level;
      log.info({ restartNeededFor: restart }, "configuration reloaded");
      return restart;
    },
    async stop() {
      const final = await pool.stop<ShardStats>();
      log.info({ stats: Object.fromEntries(Object.entries(sum(final)).map(([k, v]) => [k, Number(v)])) }, "pcp server stopped");
    },
  };
}
