import * as W from "./wire";
import * as A from "./abi";
import { addrEqual, isV4Mapped } from "./bytes";
import { blockSize, blocksPerAddress, inShard, maxBlocksPerSubscriber, parity, portForbidden } from "./config";
import { now } from "./clock";
import { randomBelow } from "./random";
import { BLOCK_FAMILY_BIT, M_EXTERNAL_PORT, M_FLAGS, M_INTERNAL_PORT, M_MAP_EXPIRY, M_NONCE, M_POOL, M_SUB, NO_POOL, S_BLOCKS, S_BLOCK_COUNT, nonceEqual, pairedPool } from "./layout";
import { mappings, subscribers } from "./tables";
import { blockOf, blockStart, freeCount, ownerAt, pickPool, poolAddr, poolCount, poolFamily, poolIndexOf, poolStack, popBlock, retired, takeBlock } from "./pool";
import { expire, wheel } from "./wheel";
import { findExternal } from "./lookup";
import { createMapping, reclaim } from "./lifecycle";

// ---------------------------------------------------------------------------
// External port choice (validate only; commitAllocation mutates)
// ---------------------------------------------------------------------------
export let allocPool: u32 = 0;
export let allocPort: u32 = 0;
export let allocLease: bool = false; // the port's block must be leased first
export let allocReclaim: u32 = 0; // held record to take back

/** Can `sub` (0 = not created yet) take `port` on `pool` for `protocol`? Sets alloc* on success. */
export function tryPort(sub: u32, pool: u32, protocol: u32, port: u32, internalPort: u32, nonce: usize): bool {
  if (port > 65535 || portForbidden(protocol, port) || retired(pool)) return false;
  const block = blockOf(port);
  if (block >= blocksPerAddress || !inShard(block)) return false;
  const owner = load<u32>(ownerAt(pool, block));
  let lease = false;
  if (owner == 0) {
    if (sub != 0) {
      const s = subscribers.at(sub);
      if (<u32>load<u8>(s + S_BLOCK_COUNT) >= maxBlocksPerSubscriber) return false;
      const paired = pairedPool(s, <u32>load<u8>(poolFamily + pool));
      if (paired != NO_POOL && paired != pool) return false; // paired pooling [RFC 6888 REQ-2]
    }
    lease = true;
  } else if (owner != sub) {
    return false;
  }
  const existing = findExternal(pool, protocol, port);
  if (existing != 0) {
    const r = mappings.at(existing);
    // Only the same client may take back a port in hold-down [6887 §15]. A hold whose
    // time has passed stays unavailable until expire() frees it (it runs every tick).
    if ((load<u8>(r + M_FLAGS) & A.MAPF_HELD) == 0 || load<u32>(r + M_MAP_EXPIRY) <= now || load<u32>(r + M_SUB) != sub ||
        <u32>load<u16>(r + M_INTERNAL_PORT) != internalPort || !nonceEqual(r + M_NONCE, nonce)) return false;
    allocReclaim = existing;
  } else {
    allocReclaim = 0;
  }
  allocPool = pool;
  allocPort = port;
  allocLease = lease;
  return true;
}

/** Honours the suggestion if it can be honoured [6887 §11.3]. */
export function trySuggestion(sub: u32, family: u32, protocol: u32, internalPort: u32, sugAddr: usize, sugPort: u32, nonce: usize): bool {
  if (sugPort == 0) return false;
  const paired = sub != 0 ? pairedPool(subscribers.at(sub), family) : NO_POOL;
  const anyAddress = family == 0 ? load<u32>(sugAddr, 12) == 0 : (load<u64>(sugAddr) | load<u64>(sugAddr, 8)) == 0;
  if (!anyAddress) {
    const pool = poolIndexOf(sugAddr);
    if (pool == NO_POOL) return false;
    return tryPort(sub, pool, protocol, sugPort, internalPort, nonce);
  }
  if (paired != NO_POOL) return tryPort(sub, paired, protocol, sugPort, internalPort, nonce);
  // Not paired yet: the least used address first, then any address where the port is free.
  const best = pickPool(family);
  if (best == NO_POOL) return false;
  if (tryPort(sub, best, protocol, sugPort, internalPort, nonce)) return true;
  for (let i: u32 = 0; i < poolCount; i++) {
    if (i != best && <u32>load<u8>(poolFamily + i) == family && tryPort(sub, i, protocol, sugPort, internalPort, nonce)) return true;
  }
  return false;
}

/** A random free port in the subscriber's blocks of `family`, keeping parity if configured. */
export function tryOwnBlocks(sub: u32, family: u32, protocol: u32, internalPort: u32, nonce: usize): bool {
  if (sub == 0) return false;
  const s = subscribers.at(sub);
  const pool = pairedPool(s, family);
  if (pool == NO_POOL) return false;
  const count = <u32>load<u8>(s + S_BLOCK_COUNT);
  const familyBit: u32 = family != 0 ? BLOCK_FAMILY_BIT : 0;
  for (let t = 0; t < 8; t++) {
    const entry = <u32>load<u16>(s + S_BLOCKS + (randomBelow(count) << 1));
    if ((entry & BLOCK_FAMILY_BIT) != familyBit) continue;
    let port = blockStart(entry & ~BLOCK_FAMILY_BIT) + randomBelow(blockSize);
    if (parity && (port & 1) != (internalPort & 1)) port ^= 1;
    if (tryPort(sub, pool, protocol, port, internalPort, nonce) && allocReclaim == 0) return true;
  }
  // Dense blocks: a full scan from a random start.
  for (let k: u32 = 0; k < count; k++) {
    const entry = <u32>load<u16>(s + S_BLOCKS + (k << 1));
    if ((entry & BLOCK_FAMILY_BIT) != familyBit) continue;
    const first = blockStart(entry & ~BLOCK_FAMILY_BIT);
    const offset = randomBelow(blockSize);
    for (let i: u32 = 0; i < blockSize; i++) {
      const port = first + (offset + i) % blockSize;
      if (parity && (port & 1) != (internalPort & 1)) continue;
      if (tryPort(sub, pool, protocol, port, internalPort, nonce) && allocReclaim == 0) return true;
    }
  }
  return false;
}

/** A random port in a block to be leased (sets alloc*); 0, USER_EX_QUOTA or NO_RESOURCES. */
export function tryNewBlock(sub: u32, family: u32, protocol: u32, internalPort: u32): u32 {
  let pool = NO_POOL;
  if (sub != 0) {
    const s = subscribers.at(sub);
    if (<u32>load<u8>(s + S_BLOCK_COUNT) >= maxBlocksPerSubscriber) return W.RESULT_USER_EX_QUOTA;
    pool = pairedPool(s, family);
  }
  if (pool == NO_POOL) pool = pickPool(family);
  if (pool == NO_POOL) return W.RESULT_NO_RESOURCES;
  // The next blocks to be handed out are the top of the random stack.
  const stack = <usize>load<u32>(poolStack + (<usize>pool << 2));
  const free = freeCount(pool);
  for (let depth: u32 = 1; depth <= free && depth <= 4; depth++) {
    const block = <u32>load<u16>(stack + (<usize>(free - depth) << 1));
    const first = blockStart(block);
    const offset = randomBelow(blockSize);
    for (let i: u32 = 0; i < blockSize; i++) {
      const port = first + (offset + i) % blockSize;
      if (port > 65535 || portForbidden(protocol, port)) continue;
      if (parity && (port & 1) != (internalPort & 1)) continue;
      allocPool = pool;
      allocPort = port;
      allocLease = true;
      allocReclaim = 0;
      return 0;
    }
  }
  return W.RESULT_NO_RESOURCES;
}

/** Leases the chosen port's block to `sub` if it is not leased yet. */
export function leaseAllocated(sub: u32): void {
  if (!allocLease) return;
  const block = blockOf(allocPort);
  const stack = <usize>load<u32>(poolStack + (<usize>allocPool << 2));
  if (<u32>load<u16>(stack + (<usize>(freeCount(allocPool) - 1) << 1)) == block) popBlock(allocPool, sub);
  else takeBlock(allocPool, block, sub);
}

/** Leases what the chosen port needs and creates (or reclaims) the record. */
export function commitAllocation(sub: u32, protocol: u32, internalPort: u32, family: u32, flags: u32, clientPort: u32): u32 {
  if (allocReclaim != 0) {
    reclaim(allocReclaim, flags, clientPort);
    return allocReclaim;
  }
  leaseAllocated(sub);
  return createMapping(sub, protocol, internalPort, family, allocPool, allocPort, flags, clientPort);
}
/** Prepares a reclaim of held record `m` (as allocate would); false if the suggestion must be honoured and differs. */
export function reclaimHeld(m: u32, sugAddr: usize, sugPort: u32, strict: bool): bool {
  const r = mappings.at(m);
  if (strict && !sameExternal(r, sugAddr, sugPort)) return false;
  allocPool = <u32>load<u16>(r + M_POOL);
  allocPort = <u32>load<u16>(r + M_EXTERNAL_PORT);
  allocLease = false;
  allocReclaim = m;
  return true;
}

/** Does the suggestion name this mapping's external? A family all-zeros address names any [6887 §11.1]. */
export function sameExternal(r: usize, sugAddr: usize, sugPort: u32): bool {
  return suggestionNames(poolAddr(<u32>load<u16>(r + M_POOL)), <u32>load<u16>(r + M_EXTERNAL_PORT), sugAddr, sugPort);
}

export function suggestionNames(extAddr: usize, extPort: u32, sugAddr: usize, sugPort: u32): bool {
  if (extPort != sugPort) return false;
  const anyAddress = isV4Mapped(sugAddr) ? load<u32>(sugAddr, 12) == 0 : (load<u64>(sugAddr) | load<u64>(sugAddr, 8)) == 0;
  return anyAddress || addrEqual(extAddr, sugAddr);
}

/**
 * Chooses the external address:port for a new mapping (sets alloc*), or returns the
 * error. `strict` = the suggestion must be honoured (PREFER_FAILURE, PEER).
 */
export function allocate(slot: usize, sub: u32, family: u32, protocol: u32, internalPort: u32, sugAddr: usize, sugPort: u32, nonce: usize, strict: bool): u32 {
  if (mappings.full()) return W.RESULT_NO_RESOURCES; // [RFC 6888 REQ-11] never evict
  if (sub == 0 && subscribers.full()) return W.RESULT_NO_RESOURCES;
  if (trySuggestion(sub, family, protocol, internalPort, sugAddr, sugPort, nonce)) return 0;
  if (strict) return W.RESULT_CANNOT_PROVIDE_EXTERNAL; // [6887 §13.2]
  if (tryOwnBlocks(sub, family, protocol, internalPort, nonce)) return 0;
  return tryNewBlock(sub, family, protocol, internalPort);
}
