// Configuration → what one shard worker's host side runs with: the source classifier and
// the rate limiter. Pure functions of the document, so the main thread and every worker
// derive the same values. (The engine's settings travel in the configuration region:
// src/config/region.ts.)
import * as W from "../wire.generated.js";
import { type Prefix, parsePrefix, prefixContains } from "../net/cidr.js";
import { toAddress16 } from "../net/address.js";
import type { Config } from "./schema.js";
import { RateLimiter } from "../core/rate-limit.js";

type AuthMode = Config["auth"]["default"];

/** The mode of the longest prefix of `rules` holding `a`, else `fallback` (auth.* policy, RFC 7652). */
function authModeOf(rules: { prefix: Prefix; mode: AuthMode }[], a: Uint8Array, fallback: AuthMode): AuthMode {
  let best = -1;
  let mode = fallback;
  for (const r of rules) {
    if (r.prefix.bits > best && prefixContains(r.prefix, a)) {
      best = r.prefix.bits;
      mode = r.mode;
    }
  }
  return mode;
}

/** INGRESS_* bits for a source address from the subscriber and third-party prefixes and the auth.* policy. */
export function classifier(c: Config): (source: string) => number {
  const subscribers = c.subscribers.map(parsePrefix);
  const thirdParty = c.thirdPartySources.map(parsePrefix);
  const authSubscribers = c.auth.subscribers.map((r) => ({ prefix: parsePrefix(r.prefix), mode: r.mode }));
  const authThirdParty = c.auth.thirdParty.map((r) => ({ prefix: parsePrefix(r.prefix), mode: r.mode }));
  return (source) => {
    const a = toAddress16(source);
    let bits = 0;
    if (subscribers.some((p) => prefixContains(p, a))) {
      bits |= W.INGRESS_SUBSCRIBER;
      const mode = authModeOf(authSubscribers, a, c.auth.default);
      if (mode !== "off") bits |= W.INGRESS_AUTH | (mode === "required" ? W.INGRESS_AUTH_REQUIRED : 0);
    }
    if (thirdParty.some((p) => prefixContains(p, a))) {
      bits |= W.INGRESS_THIRD_PARTY;
      const mode = authModeOf(authThirdParty, a, c.auth.thirdPartyDefault);
      if (mode !== "off") bits |= W.INGRESS_AUTH | (mode === "required" ? W.INGRESS_AUTH_TP_REQUIRED : 0);
    }
    return bits;
  };
}

/** Rate limiter of one of `shards` workers: per-source buckets as configured, the global budget split evenly. */
export function limiterFor(c: Config, shards = 1): RateLimiter {
  const { perSource, global, maxSources } = c.rateLimit;
  return new RateLimiter(perSource, { rate: global.rate / shards, burst: Math.max(1, Math.floor(global.burst / shards)) }, maxSources);
}
