// Engine configuration: every setting the engine reads, in one place. The host writes the
// configuration region (laid out by the CFG section of abi.ts) and calls applyConfig;
// the copy into plain globals (config.generated.ts, generated from the CFG lines) keeps
// the packet path reading globals exactly as before the region existed.

import * as W from "./wire";
import * as A from "./abi";
import {
  loadConfig, minLifetime, maxLifetime, shortErrorLifetime, longErrorLifetime, thirdPartyIdMaxLength, enabledOptions,
  pcpMap, pcpPeer, overloadPolicy, natpmpMode, prefix64Length, maxMappings, maxSubscribers, maxPeers, maxFilters,
  maxDescriptions, maxRequesters, maxRealms, anyRealm, portMin, blockSize, maxBlocksPerSubscriber, shardCount, shardIndex,
  startTime, seed, poolCount, portSetMax,
} from "./config.generated";
import { configureCodec, prefix64Base, setPrefix64 } from "./codec";
import { engineInit } from "./engine";
import { initDescriptions } from "./descriptions";
import { initRequesters } from "./requesters";
import { initRealms } from "./realms";
import { configurePool, poolAdd } from "./pool";
import { scratchBase } from "./tables";

export * from "./config.generated";

// Derived at apply time from the pool layout (blocks of one pool address).
export let blocksPerAddress: u32 = 0;

export const protocols = memory.data(32); // bitmap of supported protocol numbers (from CFG_PROTOCOLS)
export const excluded = memory.data(8192); // bitmap of excluded external ports (from CFG_EXCLUDED)

const region = memory.data(<i32>A.CFG_SIZE, 16);
let initialisedOnce = false;

/** Where the host writes the configuration region (CFG_SIZE bytes). */
export function configBase(): usize {
  return region;
}

/**
 * Copies the region into the globals. CFG_PHASE_RELOAD: the policy fields only (safe while
 * serving). CFG_PHASE_INIT (once per instance): every field, then sizes the tables and
 * loads the pool. Returns APPLY_OK or the APPLY_* of the step that failed.
 */
export function applyConfig(phase: u32): u32 {
  // A second init applies the policy, then fails: the table sizes and pool layout in force stay.
  const again = phase == A.CFG_PHASE_INIT && initialisedOnce;
  loadConfig(region, again ? A.CFG_PHASE_RELOAD : phase);
  if (maxLifetime < minLifetime) maxLifetime = minLifetime;
  if (portSetMax > A.PORT_SET_LIMIT) portSetMax = A.PORT_SET_LIMIT;
  let flags: u32 = 0;
  if (pcpMap) flags |= A.CFG_MAP_ENABLED;
  if (pcpPeer) flags |= A.CFG_PEER_ENABLED;
  if (overloadPolicy == 1) flags |= A.CFG_OVERLOAD_REPLY; // "no-resources"
  if (natpmpMode == 0) flags |= A.CFG_NATPMP_ENABLED; // "enabled"
  if (natpmpMode == 2) flags |= A.CFG_NATPMP_SILENT; // "silent"
  configureCodec(flags, enabledOptions, shortErrorLifetime, longErrorLifetime, thirdPartyIdMaxLength);
  memory.copy(prefix64Base(), region + A.CFG_PREFIX64, A.PREFIX64_OPTIONS_CAP);
  setPrefix64(prefix64Length);
  if (again) return A.APPLY_INITIALISED;
  if (phase != A.CFG_PHASE_INIT) return A.APPLY_OK;
  initialisedOnce = true;

  const status = engineInit(maxMappings, maxSubscribers, maxPeers, maxFilters, seed, startTime);
  if (status != 0) return status; // APPLY_INITIALISED, APPLY_NO_MEMORY
  if (!initDescriptions(maxDescriptions)) return A.APPLY_DESCRIPTIONS;
  if (!initRequesters(maxRequesters)) return A.APPLY_REQUESTERS;
  if (!initRealms(maxRealms, anyRealm)) return A.APPLY_REALMS;
  if (!configurePool(portMin, blockSize, maxBlocksPerSubscriber, shardCount, shardIndex)) return A.APPLY_POOL_LAYOUT;
  memory.copy(protocols, region + A.CFG_PROTOCOLS, 32);
  memory.copy(excluded, region + A.CFG_EXCLUDED, 8192);
  const count = poolCount < A.POOL_MAX_ADDRESSES ? poolCount : A.POOL_MAX_ADDRESSES;
  for (let i: u32 = 0; i < count; i++) {
    memory.copy(scratchBase(), region + A.CFG_POOL + i * 16, 16);
    if (poolAdd() < 0) return A.APPLY_POOL_ADDRESS;
  }
  return A.APPLY_OK;
}

@inline export function inShard(block: u32): bool {
  return block % shardCount == shardIndex;
}

@inline function hasBit(bitmap: usize, n: u32): bool {
  return (load<u8>(bitmap + (n >> 3)) & (1 << (n & 7))) != 0;
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
