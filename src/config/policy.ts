// Configuration → what one shard worker's host side runs with: the source classifier and
// the rate limiter. Pure functions of the document, so the main thread and every worker
// derive the same values. (The engine's settings travel in the configuration region:
// src/config/region.ts.)
import * as W from "../wire.generated.js";
import { parsePrefix, prefixContains } from "../net/cidr.js";
import { toAddress16 } from "../net/address.js";
import type { Config } from "./schema.js";
import { RateLimiter } from "../core/rate-limit.js";

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
