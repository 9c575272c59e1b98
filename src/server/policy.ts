// Configuration → what one shard worker runs with: codec switches, engine sizing and
// policy, the source classifier and the rate limiter. Pure functions of the document, so
// the main thread and every worker derive the same values.
import * as W from "../wire.generated.js";
import type { CodecConfig, EngineConfig } from "../engine/packet-engine.js";
import { parsePrefix, prefixContains } from "../net/cidr.js";
import { toAddress16 } from "../net/address.js";
import { poolAddresses, type Config } from "../config/schema.js";
import { RateLimiter } from "../core/rate-limit.js";
import { encodePrefix64Options } from "../net/prefix64.js";

export function codecConfig(c: Config): CodecConfig {
  let options = 0;
  if (c.pcp.thirdParty) options |= W.OPTBIT_THIRD_PARTY;
  if (c.pcp.preferFailure) options |= W.OPTBIT_PREFER_FAILURE;
  if (c.pcp.filter) options |= W.OPTBIT_FILTER;
  if (c.pcp.prefix64.length > 0) options |= W.OPTBIT_PREFIX64;
  if (c.pcp.description) options |= W.OPTBIT_DESCRIPTION;
  if (c.pcp.checkpointRequired) options |= W.OPTBIT_CHECKPOINT_REQUIRED;
  if (c.pcp.thirdPartyId.enabled) options |= W.OPTBIT_THIRD_PARTY_ID;
  if (c.pcp.portSet.enabled) options |= W.OPTBIT_PORT_SET;
  return {
    mapEnabled: c.pcp.map,
    peerEnabled: c.pcp.peer,
    overloadReply: c.pcp.overload === "no-resources",
    natPmp: c.natPmp,
    options,
    shortErrorLifetime: c.pcp.shortErrorLifetime,
    longErrorLifetime: c.pcp.longErrorLifetime,
    thirdPartyIdMaxLength: c.pcp.thirdPartyId.maxLength,
    prefix64: encodePrefix64Options(c.pcp.prefix64),
  };
}

/** Engine settings of shard `shard` of `shards`: tables sized per shard, pool blocks split by shard. */
export function engineConfig(c: Config, seed: bigint, shard = 0, shards = 1): EngineConfig {
  return {
    maxMappings: c.capacity.mappings,
    maxSubscribers: c.capacity.subscribers,
    maxPeers: c.capacity.peers,
    maxFilters: c.capacity.filters,
    maxDescriptions: c.capacity.descriptions,
    maxRequesters: c.capacity.requesters,
    portSetMax: c.pcp.portSet.enabled ? c.pcp.portSet.maxSize : 1,
    realms: { capacity: c.pcp.thirdPartyId.enabled ? c.capacity.realms : 0, ids: c.pcp.thirdPartyId.ids },
    minLifetime: c.lifetimes.min,
    maxLifetime: c.lifetimes.max,
    peerMinLifetime: c.lifetimes.peerMin,
    holdDown: c.lifetimes.holdDown,
    mappingsPerSubscriber: c.quotas.mappingsPerSubscriber,
    filtersPerMapping: c.quotas.filtersPerMapping,
    noncePolicy: c.noncePolicy,
    parity: c.parity,
    protocols: c.protocols,
    pool: { ...c.pool, addresses: poolAddresses(c.pool.addresses), shards, shard },
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

/** Rate limiter of one of `shards` workers: per-source buckets as configured, the global budget split evenly. */
export function limiterFor(c: Config, shards = 1): RateLimiter {
  const { perSource, global, maxSources } = c.rateLimit;
  return new RateLimiter(perSource, { rate: global.rate / shards, burst: Math.max(1, Math.floor(global.burst / shards)) }, maxSources);
}
