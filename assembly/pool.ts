// External pool: addresses × blocks. State: the addresses, per block its owner and users,
// per address a stack of free blocks in random order, and which addresses are retired.
// Leases follow RFC 6888 REQ-2 (paired pooling) and shards (config.ts inShard).

import * as A from "./abi";
import { addrEqual, isV4Mapped } from "./bytes";
import { blockSize, blocksPerAddress, inShard, maxBlocksPerSubscriber, portMin, shardCount, shardIndex } from "./config";
import { randomBelow } from "./random";
import { BLOCK_FAMILY_BIT, NO_POOL, S_BLOCKS, S_BLOCK_COUNT, setPaired } from "./layout";
import { scratch, statAdd, subscribers } from "./tables";
import { emitBlock } from "./events";

/** Port range, block layout and shard; only before the first pool address. Returns false if too late or invalid. */
export function configurePool(firstPort: u32, size: u32, blocksPerSubscriber: u32, shards: u32, shard: u32): bool {
  if (poolCount != 0 || firstPort == 0 || firstPort > 65535 || size < 2 || size > 65536 - firstPort) return false;
  if (blocksPerSubscriber == 0 || blocksPerSubscriber > A.MAX_BLOCKS_PER_SUBSCRIBER) return false;
  if (shards == 0 || shard >= shards || shards > (65536 - firstPort + size - 1) / size) return false;
  portMin = firstPort;
  blockSize = size;
  maxBlocksPerSubscriber = blocksPerSubscriber;
  shardCount = shards;
  shardIndex = shard;
  return true;
}
export let poolCount: u32 = 0;
const poolAddrs = memory.data(<i32>(A.POOL_MAX_ADDRESSES * 16), 16);
export const poolFamily = memory.data(<i32>A.POOL_MAX_ADDRESSES);
const poolFree = memory.data(<i32>(A.POOL_MAX_ADDRESSES * 4), 4); // free blocks per address
const poolOwner = memory.data(<i32>(A.POOL_MAX_ADDRESSES * 4), 4); // usize: u32 owner per block
const poolUsage = memory.data(<i32>(A.POOL_MAX_ADDRESSES * 4), 4); // usize: u16 users per block
export const poolStack = memory.data(<i32>(A.POOL_MAX_ADDRESSES * 4), 4); // usize: u16 free-block stack
export const poolRetired = memory.data(<i32>A.POOL_MAX_ADDRESSES); // 1: removed from the pool, nothing new leased there

@inline export function retired(pool: u32): bool {
  return load<u8>(poolRetired + pool) != 0;
}

@inline export function poolAddr(i: u32): usize {
  return poolAddrs + (<usize>i << 4);
}
@inline export function ownerAt(pool: u32, block: u32): usize {
  return <usize>load<u32>(poolOwner + (<usize>pool << 2)) + (<usize>block << 2);
}
@inline function usageAt(pool: u32, block: u32): usize {
  return <usize>load<u32>(poolUsage + (<usize>pool << 2)) + (<usize>block << 1);
}
@inline export function freeCount(pool: u32): u32 {
  return load<u32>(poolFree + (<usize>pool << 2));
}
@inline export function blockOf(port: u32): u32 {
  return (port - portMin) / blockSize;
}
@inline export function blockStart(block: u32): u32 {
  return portMin + block * blockSize;
}

/** Adds the address at scratch[0..16] to the pool; returns its index or -1. */
export function poolAdd(): i32 {
  for (let i: u32 = 0; i < poolCount; i++) {
    if (!addrEqual(poolAddr(i), scratch)) continue;
    if (!retired(i)) return -1;
    // A retired address comes back: its blocks are free again (in-use ones stay leased).
    store<u8>(poolRetired + i, 0);
    fillFreeStack(i);
    return <i32>i;
  }
  if (poolCount >= A.POOL_MAX_ADDRESSES) return -1;
  // The last block may be shorter; block numbers stay below 2^15 (blockSize ≥ 2).
  blocksPerAddress = (65536 - portMin + blockSize - 1) / blockSize;
  const i = poolCount;
  memory.copy(poolAddr(i), scratch, 16);
  store<u8>(poolFamily + i, isV4Mapped(scratch) ? 0 : 1);
  const all = blocksPerAddress;
  const owner = heap.alloc(<usize>all << 2);
  const usage = heap.alloc(<usize>all << 1);
  const stack = heap.alloc(<usize>all << 1);
  memory.fill(owner, 0, <usize>all << 2);
  memory.fill(usage, 0, <usize>all << 1);
  store<u32>(poolOwner + (<usize>i << 2), <u32>owner);
  store<u32>(poolUsage + (<usize>i << 2), <u32>usage);
  store<u32>(poolStack + (<usize>i << 2), <u32>stack);
  fillFreeStack(i);
  poolCount++;
  return <i32>i;
}

/** Stacks this shard's unowned blocks of address `i` in a random order. */
function fillFreeStack(i: u32): void {
  const all = blocksPerAddress;
  const stack = <usize>load<u32>(poolStack + (<usize>i << 2));
  // This shard's free blocks, in a random order: leases are unpredictable [RFC 6888 REQ-15, RFC 7422].
  let n: u32 = 0;
  for (let k: u32 = 0; k < all; k++) {
    if (!inShard(k) || load<u32>(ownerAt(i, k)) != 0 || load<u16>(usageAt(i, k)) != 0) continue;
    store<u16>(stack + (<usize>n << 1), <u16>k);
    n++;
  }
  for (let k: u32 = n > 1 ? n - 1 : 0; k > 0; k--) {
    const j = randomBelow(k + 1);
    const a = load<u16>(stack + (<usize>k << 1));
    store<u16>(stack + (<usize>k << 1), load<u16>(stack + (<usize>j << 1)));
    store<u16>(stack + (<usize>j << 1), a);
  }
  store<u32>(poolFree + (<usize>i << 2), n);
}

export function poolSize(): u32 {
  return poolCount;
}
export function poolAddressAt(i: u32): usize {
  return poolAddr(i);
}
export function poolFreeBlocks(i: u32): u32 {
  return retired(i) ? 0 : freeCount(i);
}
export function poolIsRetired(i: u32): bool {
  return retired(i);
}

export function poolIndexOf(addr: usize): u32 {
  for (let i: u32 = 0; i < poolCount; i++) if (addrEqual(poolAddr(i), addr)) return i;
  return NO_POOL;
}

export function poolHasFamily(family: u32): bool {
  for (let i: u32 = 0; i < poolCount; i++) if (<u32>load<u8>(poolFamily + i) == family && !retired(i)) return true;
  return false;
}

/** The address a new subscriber of `family` is paired with: most free blocks. */
export function pickPool(family: u32): u32 {
  let best = NO_POOL;
  let bestFree: u32 = 0;
  for (let i: u32 = 0; i < poolCount; i++) {
    if (<u32>load<u8>(poolFamily + i) != family || retired(i)) continue;
    const f = freeCount(i);
    if (f > bestFree) {
      best = i;
      bestFree = f;
    }
  }
  return best;
}

/** Takes a specific free block off its address's free stack. */
export function takeBlock(pool: u32, block: u32, sub: u32): void {
  const stack = <usize>load<u32>(poolStack + (<usize>pool << 2));
  const n = freeCount(pool);
  for (let k: u32 = 0; k < n; k++) {
    if (<u32>load<u16>(stack + (<usize>k << 1)) == block) {
      store<u16>(stack + (<usize>k << 1), load<u16>(stack + (<usize>(n - 1) << 1)));
      break;
    }
  }
  store<u32>(poolFree + (<usize>pool << 2), n - 1);
  leaseTo(pool, block, sub);
}

/** Pops the next random free block. */
export function popBlock(pool: u32, sub: u32): u32 {
  const stack = <usize>load<u32>(poolStack + (<usize>pool << 2));
  const n = freeCount(pool) - 1;
  const block = <u32>load<u16>(stack + (<usize>n << 1));
  store<u32>(poolFree + (<usize>pool << 2), n);
  leaseTo(pool, block, sub);
  return block;
}

function leaseTo(pool: u32, block: u32, sub: u32): void {
  store<u32>(ownerAt(pool, block), sub);
  const s = subscribers.at(sub);
  const family = <u32>load<u8>(poolFamily + pool);
  const k = <u32>load<u8>(s + S_BLOCK_COUNT);
  store<u16>(s + S_BLOCKS + (k << 1), <u16>(block | (family != 0 ? BLOCK_FAMILY_BIT : 0)));
  store<u8>(s + S_BLOCK_COUNT, <u8>(k + 1));
  setPaired(s, family, pool);
  statAdd(A.STATS_BLOCKS, 1);
  emitBlock(A.EVENT_BLOCK_LEASE, sub, pool, family, blockStart(block), blockSize);
}

/** A block no mapping or hold uses goes back to the pool. */
export function releaseBlockIfUnused(pool: u32, block: u32): void {
  if (load<u16>(usageAt(pool, block)) != 0) return;
  const sub = load<u32>(ownerAt(pool, block));
  if (sub == 0) {
    // A block whose lease ended when its address was retired: free once its last hold
    // ends, if the address is back in the pool (fillFreeStack takes it otherwise).
    if (!retired(pool)) pushFreeBlock(pool, block);
    return;
  }
  store<u32>(ownerAt(pool, block), 0);
  pushFreeBlock(pool, block);
  const s = subscribers.at(sub);
  const family = <u32>load<u8>(poolFamily + pool);
  const entry = block | (family != 0 ? BLOCK_FAMILY_BIT : 0);
  const count = <u32>load<u8>(s + S_BLOCK_COUNT);
  let sameFamily: u32 = 0;
  for (let k: u32 = 0; k < count; k++) {
    const e = <u32>load<u16>(s + S_BLOCKS + (k << 1));
    if (e == entry) {
      store<u16>(s + S_BLOCKS + (k << 1), load<u16>(s + S_BLOCKS + ((count - 1) << 1)));
      store<u16>(s + S_BLOCKS + ((count - 1) << 1), <u16>entry);
    }
  }
  store<u8>(s + S_BLOCK_COUNT, <u8>(count - 1));
  for (let k: u32 = 0; k + 1 < count; k++) {
    if ((<u32>load<u16>(s + S_BLOCKS + (k << 1)) & BLOCK_FAMILY_BIT) == (entry & BLOCK_FAMILY_BIT)) sameFamily++;
  }
  if (sameFamily == 0) setPaired(s, family, NO_POOL);
  statAdd(A.STATS_BLOCKS, -1);
  emitBlock(A.EVENT_BLOCK_RELEASE, sub, pool, family, blockStart(block), blockSize);
}

function pushFreeBlock(pool: u32, block: u32): void {
  const stack = <usize>load<u32>(poolStack + (<usize>pool << 2));
  const n = freeCount(pool);
  store<u16>(stack + (<usize>n << 1), <u16>block);
  store<u32>(poolFree + (<usize>pool << 2), n + 1);
}

@inline export function usageAdd(pool: u32, port: u32, delta: i32): void {
  const p = usageAt(pool, blockOf(port));
  store<u16>(p, <u16>(<i32>load<u16>(p) + delta));
}
