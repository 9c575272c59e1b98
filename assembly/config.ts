// Engine configuration: every setting the engine reads, in one place. The host writes
// them before the first request (and again on reload, for the policy settings); the
// modules read them as plain globals.

import * as W from "./wire";
import * as A from "./abi";

export let minLifetime: u32 = 120;
export let maxLifetime: u32 = 86400;
export let peerMinLifetime: u32 = 120;
export let holdDown: u32 = 120;
export let mappingsPerSubscriber: u32 = 64;
export let filtersPerMapping: u32 = 8;
export let noncePolicy: u32 = A.NONCE_STRICT;
export let parity: bool = false;
export let portMin: u32 = 1024;
export let blockSize: u32 = 512;
export let maxBlocksPerSubscriber: u32 = 4;
export let blocksPerAddress: u32 = 0;
// Sharding: this instance leases only blocks b with b % shardCount == shardIndex, so
// engine workers never compete for a port; they coordinate at block granularity only.
export let shardCount: u32 = 1;
export let shardIndex: u32 = 0;

export const protocols = memory.data(32); // bitmap of supported protocol numbers
export const excluded = memory.data(8192); // bitmap of excluded external ports

export function configureEngine(
  minLife: u32, maxLife: u32, peerMinLife: u32, hold: u32,
  perSubscriber: u32, filtersPer: u32, nonce: u32, keepParity: bool,
): void {
  minLifetime = minLife;
  maxLifetime = maxLife > minLife ? maxLife : minLife;
  peerMinLifetime = peerMinLife;
  holdDown = hold;
  mappingsPerSubscriber = perSubscriber;
  filtersPerMapping = filtersPer;
  noncePolicy = nonce;
  parity = keepParity;
}

@inline export function inShard(block: u32): bool {
  return block % shardCount == shardIndex;
}

@inline function setBit(bitmap: usize, n: u32, on: bool): void {
  const p = bitmap + (n >> 3);
  const bit = <u8>(1 << <u8>(n & 7));
  store<u8>(p, on ? load<u8>(p) | bit : load<u8>(p) & ~bit);
}

@inline function hasBit(bitmap: usize, n: u32): bool {
  return (load<u8>(bitmap + (n >> 3)) & (1 << (n & 7))) != 0;
}

export function setProtocol(protocol: u32, on: bool): void {
  setBit(protocols, protocol & 0xff, on);
}

export function setExcludedPort(port: u32, on: bool): void {
  setBit(excluded, port & 0xffff, on);
}

@inline export function protocolSupported(protocol: u32): bool {
  return hasBit(protocols, protocol);
}

/** Ports never handed out: below portMin, excluded, UDP 5350/5351 [6887 §11.3]. */
@inline export function portForbidden(protocol: u32, port: u32): bool {
  if (port < portMin) return true;
  if (hasBit(excluded, port)) return true;
  return protocol == W.PROTO_UDP && (port == W.PCP_CLIENT_PORT || port == W.PCP_SERVER_PORT);
}

// CHECKPOINT_REQUIRED [RFC 7767] policy (see the mapping life cycle for what it does).
export let checkpointsOn = false;
export let checkpointQuota: u32 = 0;

export function setCheckpointPolicy(on: bool, perSubscriber: u32): void {
  checkpointsOn = on;
  checkpointQuota = perSubscriber;
}

// PORT_SET [RFC 7753]
export let portSetMax: u32 = 1;

/** Largest set granted (≤ 1: PORT_SET is handled as a single-port MAP; at most PORT_SET_LIMIT). */
export function setPortSetPolicy(maxSize: u32): void {
  portSetMax = maxSize < A.PORT_SET_LIMIT ? maxSize : A.PORT_SET_LIMIT;
}

// Prefetch of the next slot's mapping record while serving a batch: 0 off, 1 on, 2 auto
// (on once the mapping table outgrows the caches; see the batch entry of the engine).
export let prefetchMode: u32 = 2;
export function setPrefetch(mode: u32): void {
  prefetchMode = mode;
}

// persistence.refreshes (see the persistence section of the engine).
export let coalesceRefreshes = true;

/** persistence.refreshes: "coalesced" (on, the default) or "every" (off: every refresh is journaled). */
export function setRefreshCoalescing(on: bool): void {
  coalesceRefreshes = on;
}
