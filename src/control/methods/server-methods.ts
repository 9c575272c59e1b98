// Methods about the server as a whole: identity, health, counters and rates, Epochs, the
// configuration. Counters, Epochs and health come from the shards' shared-memory boards:
// none of these reaches the packet path except epoch.reset and config.reload.
import type { ShardStats } from "../../shard/tasks.js";
import { ConfigError, RpcError } from "../../errors.js";
import { DROP_REASON_LABELS, NATPMP_RESULT_LABELS, PCP_RESULT_LABELS } from "../metrics.js";
import { PROTOCOL, RpcErrors } from "../protocol.js";
import { totalPackets } from "../rates.js";
import { redacted } from "../views.js";
import type { Handlers, MethodContext } from "./context.js";
import { serverHaHealth } from "./ha-methods.js";

type ServerMethods = Pick<Handlers, "server.info" | "server.health" | "stats.get" | "epoch.get" | "epoch.reset" | "config.get" | "config.reload">;

export function serverMethods(ctx: MethodContext): ServerMethods {
  const { server } = ctx;
  const shards = server.shardEndpoints.length;
  return {
    "server.info": async (_p, session) => {
      const epochs = server.epochs();
      return {
        protocol: PROTOCOL,
        version: ctx.version,
        node: process.version,
        startedAt: ctx.startedAt.toISOString(),
        uptimeSeconds: Math.floor((Date.now() - ctx.startedAt.getTime()) / 1000),
        workers: shards,
        shards: server.shardEndpoints.map((listen, shard) => ({ shard, thread: server.threads()[shard] ?? null, listen, epoch: epochs[shard] })),
        role: session.role,
      };
    },
    "server.health": async () => {
      const persistence = server.stats().shards.map((s) => s.persistence ?? null);
      const up = server.threads().map((t, shard) => ({ shard, up: t !== undefined, persistence: persistence[shard] ?? null }));
      const ha = await serverHaHealth(server);
      const ok = up.every((s) => s.up && (s.persistence?.state ?? "ok") === "ok") && (ha?.problems.length ?? 0) === 0;
      return { status: ok ? "ok" : "degraded", shards: up, ha };
    },
    "stats.get": async () => {
      const stats = server.stats();
      /** Counter `code` summed over the shards, under its name, for every named code. */
      const named = (labels: readonly [number, string][], pick: (s: ShardStats) => bigint[]) => {
        const out: Record<string, number> = {};
        for (const [code, name] of labels) {
          let total = 0;
          for (const s of stats.shards) total += Number(pick(s)[code] ?? 0n);
          out[name] = total;
        }
        return out;
      };
      const engine: Record<string, number> = {};
      for (const k in stats.engine) engine[k] = Number(stats.engine[k]);
      return {
        engine,
        pcpResults: named(PCP_RESULT_LABELS, (s) => s.codec.pcpResults),
        natPmpResults: named(NATPMP_RESULT_LABELS, (s) => s.codec.natPmpResults),
        drops: named(DROP_REASON_LABELS, (s) => s.codec.drops),
        packets: totalPackets(stats),
        rates: ctx.rates.rates(),
        shards: stats.shards.map((s) => ({
          shard: s.shard,
          epoch: s.epoch,
          packets: Number(s.codec.packets),
          mappings: Number(s.engine.mappings),
          subscribers: Number(s.engine.subscribers),
          pool: s.pool,
          persistence: s.persistence ?? null,
        })),
        dataplane: server.dataplane() ?? null,
      };
    },
    "epoch.get": async () => ({ shards: server.epochs().map((epoch, shard) => ({ shard, epoch })) }),
    "epoch.reset": async (p) => {
      if (p.shard >= shards) throw new RpcError(RpcErrors.INVALID_PARAMS, `shard: ${p.shard} does not exist (0..${shards - 1})`);
      // A reset of a shard already being reset is refused by the pool (ShardUnavailableError → UNAVAILABLE).
      return { shard: p.shard, epoch: await server.resetShard(p.shard) };
    },
    "config.get": async () => ({ config: redacted(server.config()) }),
    "config.reload": async () => {
      try {
        return { restartNeededFor: await ctx.reloadConfig() };
      } catch (e) {
        // Invalid: the running configuration stays. Anything else is INTERNAL_ERROR.
        if (e instanceof ConfigError) throw new RpcError(RpcErrors.CONFIG_REJECTED, `configuration reload refused: ${e.message}`, { issues: e.issues });
        throw e;
      }
    },
  };
}
