// The daemon's assembly: configuration → packet engine → UDP listener. One engine on the
// main thread for now; the worker pool with one shard per worker is the next step (#4).
import type { Logger } from "pino";
import * as W from "../wire.generated.js";
import { PacketEngine, type CodecConfig, type EngineConfig } from "../engine/packet-engine.js";
import { UdpListener } from "../io/udp-listener.js";
import { parsePrefix, prefixContains } from "../net/cidr.js";
import { toAddress16 } from "../net/address.js";
import { poolAddresses, type Config } from "../config/schema.js";
import { MonotonicClock } from "./clock.js";
import { RateLimiter } from "./rate-limit.js";

export function codecConfig(c: Config): CodecConfig {
  let options = 0;
  if (c.pcp.thirdParty) options |= W.OPTBIT_THIRD_PARTY;
  if (c.pcp.preferFailure) options |= W.OPTBIT_PREFER_FAILURE;
  if (c.pcp.filter) options |= W.OPTBIT_FILTER;
  return {
    mapEnabled: c.pcp.map,
    peerEnabled: c.pcp.peer,
    overloadReply: c.pcp.overload === "no-resources",
    natPmp: c.natPmp,
    options,
    shortErrorLifetime: c.pcp.shortErrorLifetime,
    longErrorLifetime: c.pcp.longErrorLifetime,
    thirdPartyIdMaxLength: 16,
  };
}

export function engineConfig(c: Config, seed: bigint): EngineConfig {
  return {
    maxMappings: c.capacity.mappings,
    maxSubscribers: c.capacity.subscribers,
    maxPeers: c.capacity.peers,
    maxFilters: c.capacity.filters,
    minLifetime: c.lifetimes.min,
    maxLifetime: c.lifetimes.max,
    peerMinLifetime: c.lifetimes.peerMin,
    holdDown: c.lifetimes.holdDown,
    mappingsPerSubscriber: c.quotas.mappingsPerSubscriber,
    filtersPerMapping: c.quotas.filtersPerMapping,
    noncePolicy: c.noncePolicy,
    parity: c.parity,
    protocols: c.protocols,
    pool: { ...c.pool, addresses: poolAddresses(c.pool.addresses) },
    seed,
  };
}

/** INGRESS_* bits for a source address from the subscriber and third-party prefixes. */
export function classifier(c: Config): (source: string) => number {
  const subscribers = c.subscribers.map(parsePrefix);
  const thirdParty = c.thirdPartySources.map(parsePrefix);
  return (source) => {
    const a = toAddress16(source);
    let bits = 0;
    if (subscribers.some((p) => prefixContains(p, a))) bits |= W.INGRESS_SUBSCRIBER;
    if (thirdParty.some((p) => prefixContains(p, a))) bits |= W.INGRESS_THIRD_PARTY;
    return bits;
  };
}

export interface RunningServer {
  engine: PacketEngine;
  addresses: { address: string; port: number }[];
  /**
   * Applies what can change without losing state (switches, lifetimes, quotas, nonce
   * policy, parity, prefixes, rate limits, log level); returns the changed fields that
   * need a restart (listen, pool, capacity, protocols), which are left as they were.
   */
  reload(next: Config): string[];
  stop(): Promise<void>;
}

const RESTART_FIELDS = ["listen", "pool", "capacity", "protocols"] as const;

const limiterFor = (c: Config) => new RateLimiter(c.rateLimit.perSource, c.rateLimit.global, c.rateLimit.maxSources);

export async function startServer(c: Config, log: Logger): Promise<RunningServer> {
  const clock = new MonotonicClock();
  const engine = new PacketEngine("release");
  engine.configure(codecConfig(c));
  const seed = BigInt.asUintN(64, BigInt(Date.now()) * 0x9e3779b97f4a7c15n ^ BigInt(process.pid));
  engine.initEngine(engineConfig(c, seed), clock.seconds());
  const listener = new UdpListener({
    addresses: c.listen.addresses,
    port: c.listen.port,
    engine,
    clock,
    classify: classifier(c),
    limiter: limiterFor(c),
    onEvents: (events) => {
      if (log.isLevelEnabled("debug")) for (const e of events) log.debug({ event: e }, "mapping event");
    },
  });
  await listener.start();
  const addresses = listener.boundAddresses();
  log.info({ listen: addresses, pool: engine.poolUsage().map((p) => p.address), natPmp: c.natPmp }, "pcp server listening");
  let current = c;
  return {
    engine,
    addresses,
    reload(next) {
      const restart = RESTART_FIELDS.filter((f) => JSON.stringify(next[f]) !== JSON.stringify(current[f]));
      engine.configure(codecConfig(next));
      engine.setPolicy(engineConfig(next, 0n));
      listener.setPolicy({ classify: classifier(next), limiter: limiterFor(next) });
      log.level = next.log.level;
      current = { ...next, ...Object.fromEntries(RESTART_FIELDS.map((f) => [f, current[f]])) };
      log.info({ restartNeededFor: restart }, "configuration reloaded");
      return restart;
    },
    async stop() {
      await listener.stop();
      const stats = Object.fromEntries(Object.entries(engine.engineStats()).map(([k, v]) => [k, Number(v)]));
      log.info({ stats }, "pcp server stopped");
    },
  };
}
