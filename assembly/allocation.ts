// An allocation is one u64, so the choice travels as a value from the function that
// validates it to the one that commits it (no shared globals between them):
//   bits 0..15 external port (never 0: ports below portMin ≥ 1 are never given),
//   bits 16..23 pool index (< POOL_MAX_ADDRESSES = 256), bit 24 the port's block must be
//   leased first, bits 32..63 the held record taken back (0: a new record).
// 0 is "nothing found"; a failure with a PCP result code has port 0 and the code in the
// high half (allocError). Everything here validates only; commitAllocation mutates.

import * as W from "./wire";
import * as A from "./abi";
import { addrEqual, isV4Mapped } from "./bytes";
import { refuseExternal } from "./codec";
import { blockSize, blocksPerAddress, inShard, maxBlocksPerSubscriber, parity, portForbidden } from "./config";
import { now } from "./clock";
import { randomBelow } from "./random";
import { BLOCK_FAMILY_BIT, M_EXTERNAL_PORT, M_FLAGS, M_INTERNAL_PORT, M_MAP_EXPIRY, M_NONCE, M_POOL, M_SUB, NO_POOL, S_BLOCKS, S_BLOCK_COUNT, nonceEqual, pairedPool } from "./layout";
import { mappings, subscribers } from "./tables";
import { blockOf, blockStart, freeCount, ownerAt, pickPool, poolAddr, poolCount, poolFamily, poolIndexOf, poolStack, popBlock, retired, takeBlock } from "./pool";
import { findExternal } from "./lookup";
import { createMapping, reclaim } from "./lifecycle";

export type Alloc = u64;
export const NO_ALLOC: Alloc = 0;
const LEASE_BIT: u64 = 1 << 24;

@inline export function packAlloc(pool: u32, port: u32, lease: bool, reclaim: u32): Alloc {
  return <u64>port | (<u64>pool << 16) | (lease ? LEASE_BIT : 0) | (<u64>reclaim << 32);
}
@inline function allocError(result: u32): Alloc {
  return <u64>result << 32;
}
@inline export function allocPort(a: Alloc): u32 {
  return <u32>a & 0xffff;
}
@inline export function allocPool(a: Alloc): u32 {
  return (<u32>a >> 16) & 0xff;
}
@inline function allocLeases(a: Alloc): bool {
  return (a & LEASE_BIT) != 0;
}
@inline export function allocReclaim(a: Alloc): u32 {
  return <u32>(a >> 32);
}

/** The PCP result of a choice: 0 when it holds a port, else its error code. */
@inline export function allocResult(a: Alloc): u32 {
  return allocPort(a) != 0 ? 0 : <u32>(a >> 32);
}

/** Can `sub` (0 = not created yet) take `port` on `pool` for `protocol`? The choice, or NO_ALLOC. */
export function tryPort(sub: u32, pool: u32, protocol: u32, port: u32, internalPort: u32, nonce: usize): Alloc {
  // Below: refusals for good (reserved port, retired address, not this shard's) first,
  // then those of a port in use for now (portBusy: CANNOT_PROVIDE_EXTERNAL's short lifetime).
  if (port > 65535 || portForbidden(protocol, port) || retired(pool)) return NO_ALLOC;
  const block = blockOf(port);
  if (block >= blocksPerAddress || !inShard(block)) return NO_ALLOC;
  const owner = load<u32>(ownerAt(pool, block));
  let lease = false;
  if (owner == 0) {
    if (sub != 0) {
      const s = subscribers.at(sub);
      const paired = pairedPool(s, <u32>load<u8>(poolFamily + pool));
      if (paired != NO_POOL && paired != pool) return NO_ALLOC; // paired pooling [RFC 6888 REQ-2]
      if (<u32>load<u8>(s + S_BLOCK_COUNT) >= maxBlocksPerSubscriber) return busy(); // until one of its blocks is free
    }
    lease = true;
  } else if (owner != sub) {
    return busy(); // another subscriber's block
  }
  const existing = findExternal(pool, protocol, port);
  if (existing != 0) {
    const r = mappings.at(existing);
    // Only the same client may take back a port in hold-down [6887 §15]. A hold whose
    // time has passed stays unavailable until expire() frees it (it runs every tick).
    if ((load<u8>(r + M_FLAGS) & A.MAPF_HELD) == 0 || load<u32>(r + M_MAP_EXPIRY) <= now || load<u32>(r + M_SUB) != sub ||
        <u32>load<u16>(r + M_INTERNAL_PORT) != internalPort || !nonceEqual(r + M_NONCE, nonce)) return busy();
  }
  return packAlloc(pool, port, lease, existing);
}

// Set by tryPort when a port was refused only because it is in use for now.
let portBusy: bool = false;
function busy(): Alloc {
  portBusy = true;
  return NO_ALLOC;
}

/** Honours the suggestion if it can be honoured [6887 §11.3]. */
function trySuggestion(sub: u32, family: u32, protocol: u32, internalPort: u32, sugAddr: usize, sugPort: u32, nonce: usize): Alloc {
  if (sugPort == 0) return NO_ALLOC;
  const paired = sub != 0 ? pairedPool(subscribers.at(sub), family) : NO_POOL;
  const anyAddress = family == 0 ? load<u32>(sugAddr, 12) == 0 : (load<u64>(sugAddr) | load<u64>(sugAddr, 8)) == 0;
  if (!anyAddress) {
    const pool = poolIndexOf(sugAddr);
    if (pool == NO_POOL) return NO_ALLOC;
    return tryPort(sub, pool, protocol, sugPort, internalPort, nonce);
  }
  if (paired != NO_POOL) return tryPort(sub, paired, protocol, sugPort, internalPort, nonce);
  // Not paired yet: the least used address first, then any address where the port is free.
  const best = pickPool(family);
  if (best == NO_POOL) return NO_ALLOC;
  let a = tryPort(sub, best, protocol, sugPort, internalPort, nonce);
  for (let i: u32 = 0; a == NO_ALLOC && i < poolCount; i++) {
    if (i != best && <u32>load<u8>(poolFamily + i) == family) a = tryPort(sub, i, protocol, sugPort, internalPort, nonce);
  }
  return a;
}

/** A random free port in the subscriber's blocks of `family`, keeping parity if configured. */
export function tryOwnBlocks(sub: u32, family: u32, protocol: u32, internalPort: u32, nonce: usize): Alloc {
  if (sub == 0) return NO_ALLOC;
  const s = subscribers.at(sub);
  const pool = pairedPool(s, family);
  if (pool == NO_POOL) return NO_ALLOC;
  const count = <u32>load<u8>(s + S_BLOCK_COUNT);
  const familyBit: u32 = family != 0 ? BLOCK_FAMILY_BIT : 0;
  for (let t = 0; t < 8; t++) {
    const entry = <u32>load<u16>(s + S_BLOCKS + (randomBelow(count) << 1));
    if ((entry & BLOCK_FAMILY_BIT) != familyBit) continue;
    let port = blockStart(entry & ~BLOCK_FAMILY_BIT) + randomBelow(blockSize);
    if (parity && (port & 1) != (internalPort & 1)) port ^= 1;
    const a = tryPort(sub, pool, protocol, port, internalPort, nonce);
    if (a != NO_ALLOC && allocReclaim(a) == 0) return a;
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
      const a = tryPort(sub, pool, protocol, port, internalPort, nonce);
      if (a != NO_ALLOC && allocReclaim(a) == 0) return a;
    }
  }
  return NO_ALLOC;
}

/** A random port in a block to be leased, or allocError(USER_EX_QUOTA or NO_RESOURCES). */
export function tryNewBlock(sub: u32, family: u32, protocol: u32, internalPort: u32): Alloc {
  let pool = NO_POOL;
  if (sub != 0) {
    const s = subscribers.at(sub);
    if (<u32>load<u8>(s + S_BLOCK_COUNT) >= maxBlocksPerSubscriber) return allocError(W.RESULT_USER_EX_QUOTA);
    pool = pairedPool(s, family);
  }
  if (pool == NO_POOL) pool = pickPool(family);
  if (pool == NO_POOL) return allocError(W.RESULT_NO_RESOURCES);
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
      return packAlloc(pool, port, true, 0);
    }
  }
  return allocError(W.RESULT_NO_RESOURCES);
}

/** Leases the chosen port's block to `sub` if it is not leased yet. */
export function leaseAllocated(a: Alloc, sub: u32): void {
  if (!allocLeases(a)) return;
  const pool = allocPool(a);
  const block = blockOf(allocPort(a));
  const stack = <usize>load<u32>(poolStack + (<usize>pool << 2));
  if (<u32>load<u16>(stack + (<usize>(freeCount(pool) - 1) << 1)) == block) popBlock(pool, sub);
  else takeBlock(pool, block, sub);
}

/** Leases what the chosen port needs and creates (or reclaims) the record. */
export function commitAllocation(a: Alloc, sub: u32, protocol: u32, internalPort: u32, family: u32, flags: u32, clientPort: u32): u32 {
  const held = allocReclaim(a);
  if (held != 0) {
    reclaim(held, flags, clientPort);
    return held;
  }
  leaseAllocated(a, sub);
  return createMapping(sub, protocol, internalPort, family, allocPool(a), allocPort(a), flags, clientPort);
}

/** The reclaim of held record `m` (as allocate would choose it); NO_ALLOC if the suggestion must be honoured and differs. */
export function reclaimHeld(m: u32, sugAddr: usize, sugPort: u32, strict: bool): Alloc {
  const r = mappings.at(m);
  if (strict && !sameExternal(r, sugAddr, sugPort)) return NO_ALLOC;
  return packAlloc(<u32>load<u16>(r + M_POOL), <u32>load<u16>(r + M_EXTERNAL_PORT), false, m);
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
 * Chooses the external address:port for a new mapping, or allocError(the result code).
 * `strict` = the suggestion must be honoured (PREFER_FAILURE, PEER).
 */
export function allocate(sub: u32, family: u32, protocol: u32, internalPort: u32, sugAddr: usize, sugPort: u32, nonce: usize, strict: bool): Alloc {
  if (mappings.full()) return allocError(W.RESULT_NO_RESOURCES); // [RFC 6888 REQ-11] never evict
  if (sub == 0 && subscribers.full()) return allocError(W.RESULT_NO_RESOURCES);
  portBusy = false;
  let a = trySuggestion(sub, family, protocol, internalPort, sugAddr, sugPort, nonce);
  if (a != NO_ALLOC) return a;
  // [6887 §13.2]; short lifetime if some candidate was only in use [6887 §7.4]
  if (strict) return (refuseExternal(!portBusy), allocError(W.RESULT_CANNOT_PROVIDE_EXTERNAL));
  a = tryOwnBlocks(sub, family, protocol, internalPort, nonce);
  if (a != NO_ALLOC) return a;
  return tryNewBlock(sub, family, protocol, internalPort);
}
