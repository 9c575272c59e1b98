// The mapping engine: subscribers, port blocks, mappings, PEER records, filters, hold-down,
// expiry and events, all in linear memory sized once by engineInit (docs/engine.md).
// It finishes the codec's PARSED slots. Every decision validates first and mutates
// after, so an error never leaves partial state [6887 §7.3].

import * as W from "./wire";
import * as A from "./abi";
import { rd16, rd32, wr16, wr32, addrEqual, isV4Mapped, copy12, copy16, zero4 } from "./bytes";
import {
  setProtocol, minLifetime, maxLifetime, peerMinLifetime, holdDown, mappingsPerSubscriber, filtersPerMapping, noncePolicy, parity, portMin, blockSize, maxBlocksPerSubscriber, blocksPerAddress, shardCount, shardIndex, protocols, excluded, inShard, protocolSupported, portForbidden, checkpointsOn, checkpointQuota, portSetMax, prefetchMode, coalesceRefreshes,
} from "./config";
import { HashIndex, mix64, fingerprint } from "./hashindex";
import {
  slotsBase, statsBase, processRange, finishSuccess, finishError, errorLifetime, data,
  finishNatPmpAddress, finishNatPmpMap, appendOption, requestDescription,
} from "./codec";

// ---------------------------------------------------------------------------
// Scratch and pool configuration (the settings themselves: config.ts)
// ---------------------------------------------------------------------------
const scratch = memory.data(<i32>A.SCRATCH_SIZE, 16);

export function scratchBase(): usize {
  return scratch;
}

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





// ---------------------------------------------------------------------------
// Stats and events
// ---------------------------------------------------------------------------
@inline function statAdd(offset: u32, delta: i64): void {
  const p = statsBase() + offset;
  store<i64>(p, load<i64>(p) + delta);
}

let events: usize = 0;
let eventHead: u32 = 0; // written
let eventTail: u32 = 0; // consumed by the host
let now: u32 = 0; // engine time of the current batch / expiry pass

export function eventsBase(): usize {
  return events;
}
export function eventsHead(): u32 {
  return eventHead;
}
export function eventsTail(): u32 {
  return eventTail;
}
export function eventsConsume(n: u32): void {
  const pending = eventHead - eventTail;
  eventTail += n < pending ? n : pending;
}

// ---------------------------------------------------------------------------
// Records. Ids are 1-based; 0 means none. Free records chain through one field.
// ---------------------------------------------------------------------------
// Subscriber (64 bytes)
const S_ADDR: u32 = 0; // 16
const S_REALM: u32 = 16;
const S_POOL: u32 = 20; // u16 paired IPv4 pool index, NO_POOL when no IPv4 block
const S_BLOCK_COUNT: u32 = 22; // u8
const S_MAPPINGS: u32 = 24; // live mappings
const S_HELD: u32 = 28; // held ports
const S_LIST: u32 = 32; // first mapping of the subscriber (live and held)
const S_NEXT_FREE: u32 = 36;
const S_BLOCKS: u32 = 40; // u16 × 8: block number | family << 15
const S_POOL6: u32 = 56; // u16 paired IPv6 pool index
const S_CHECKPOINTS: u32 = 58; // u16 live check-pointed mappings [RFC 7767]
const SUB_SIZE: u32 = 64;
const NO_POOL: u32 = 0xffff;
const BLOCK_FAMILY_BIT: u32 = 0x8000;

/** Pairing is per external family: one IPv4 and one IPv6 address per subscriber. */
@inline function pairedPool(s: usize, family: u32): u32 {
  return <u32>load<u16>(s + (family != 0 ? S_POOL6 : S_POOL));
}
@inline function setPaired(s: usize, family: u32, pool: u32): void {
  store<u16>(s + (family != 0 ? S_POOL6 : S_POOL), <u16>pool);
}

// Mapping (60 bytes)
const M_SUB: u32 = 0;
const M_INTERNAL_PORT: u32 = 4; // u16
const M_PROTOCOL: u32 = 6; // u8
const M_FLAGS: u32 = 7; // u8 MAPF_*
const M_EXTERNAL_PORT: u32 = 8; // u16
const M_POOL: u32 = 10; // u16
const M_NONCE: u32 = 12; // 12
const M_MAP_EXPIRY: u32 = 24; // inbound expiry; hold end while held
const M_OUT_EXPIRY: u32 = 28;
const M_WHEEL_NEXT: u32 = 32; // also the free-list link
const M_WHEEL_PREV: u32 = 36;
const M_SUB_NEXT: u32 = 40;
const M_SUB_PREV: u32 = 44;
const M_FILTERS: u32 = 48; // first filter
const M_PEERS: u32 = 52; // first PEER record
const M_CLIENT_PORT: u32 = 56; // u16
const M_FILTER_COUNT: u32 = 58; // u8
const M_FAMILY: u32 = 59; // u8
const M_PERSISTED: u32 = 60; // effective expiry last written to the journal (persistence skips refreshes that barely move it)
const MAPPING_SIZE: u32 = 64;

// PEER record (44 bytes)
const P_MAPPING: u32 = 0;
const P_REMOTE_ADDR: u32 = 4; // 16
const P_REMOTE_PORT: u32 = 20; // u16
const P_NONCE: u32 = 24; // 12
const P_EXPIRY: u32 = 36;
const P_NEXT: u32 = 40; // next PEER of the mapping / free list
const PEER_SIZE: u32 = 44;

// Filter (24 bytes)
const F_PREFIX: u32 = 0; // u8
const F_PORT: u32 = 2; // u16
const F_ADDR: u32 = 4; // 16
const F_NEXT: u32 = 20;
const FILTER_SIZE: u32 = 24;

class Slab {
  base: usize = 0;
  size: u32 = 0;
  capacity: u32 = 0;
  used: u32 = 0; // high-water mark
  free: u32 = 0; // head of the free list
  live: u32 = 0;
  link: u32 = 0; // field offset of the free-list link

  init(capacity: u32, size: u32, link: u32): void {
    this.capacity = capacity;
    this.size = size;
    this.link = link;
    this.base = heap.alloc(<usize>(capacity + 1) * size);
    memory.fill(this.base, 0, <usize>(capacity + 1) * size);
  }
  @inline at(id: u32): usize {
    return this.base + <usize>id * this.size;
  }
  @inline full(): bool {
    return this.free == 0 && this.used == this.capacity;
  }
  alloc(): u32 {
    let id = this.free;
    if (id != 0) this.free = load<u32>(this.at(id) + this.link);
    else if (this.used < this.capacity) id = ++this.used;
    else return 0;
    zero4(this.at(id), this.size);
    this.live++;
    return id;
  }
  release(id: u32): void {
    zero4(this.at(id), this.size);
    store<u32>(this.at(id) + this.link, this.free);
    this.free = id;
    this.live--;
  }
}

const subscribers = new Slab();
const mappings = new Slab();
const peers = new Slab();
const filters = new Slab();

// Side tables: data only some mappings have (DESCRIPTION texts, THIRD_PARTY requesters),
// in a slab of entries found through an index by mapping id, so every mapping record does
// not carry the field. Each entry starts with its mapping's id and the free-list link.
const SIDE_MAPPING: u32 = 0;
const SIDE_NEXT_FREE: u32 = 4;

@inline function mappingFp(m: u32): u32 {
  return fingerprint(mix64(<u64>m * 0x9e3779b97f4a7c15));
}

class SideTable {
  slab: Slab = new Slab();
  index: HashIndex = new HashIndex();
  on: bool = false;

  /** Room for `capacity` entries of `size` bytes (0: the table stays off); once, after engineInit. */
  init(capacity: u32, size: u32): bool {
    if (this.on || capacity == 0) return capacity == 0;
    this.slab.init(capacity, size, SIDE_NEXT_FREE);
    this.index.init(capacity);
    this.on = true;
    return true;
  }
  @inline at(id: u32): usize {
    return this.slab.at(id);
  }
  /** The entry of mapping `m`, or 0. */
  of(m: u32): u32 {
    if (!this.on || this.slab.live == 0) return 0;
    const fp = mappingFp(m);
    for (let p = this.index.first(fp); p >= 0; p = this.index.after(fp, p)) {
      const id = this.index.recordAt(p);
      if (load<u32>(this.slab.at(id) + SIDE_MAPPING) == m) return id;
    }
    return 0;
  }
  /** The entry of mapping `m`, made if it has none; 0 when the table is off or full. */
  claim(m: u32): u32 {
    if (!this.on) return 0;
    let id = this.of(m);
    if (id == 0) {
      if (this.slab.full()) return 0;
      id = this.slab.alloc();
      store<u32>(this.slab.at(id) + SIDE_MAPPING, m);
      this.index.insert(mappingFp(m), id);
    }
    return id;
  }
  drop(m: u32): void {
    const id = this.of(m);
    if (id == 0) return;
    this.index.remove(mappingFp(m), id);
    this.slab.release(id);
  }
}

// DESCRIPTION texts [RFC 7220], only for the mappings that have one.
const D_LENGTH: u32 = 8; // u8
const D_TEXT: u32 = 9; // DESCRIPTION_STORED_MAX bytes
const DESCRIPTION_SIZE: u32 = 140;
const descriptions = new SideTable();

/** Room for `capacity` descriptions (0: DESCRIPTION is never stored); once, after engineInit. */
export function initDescriptions(capacity: u32): bool {
  return descriptions.init(capacity, DESCRIPTION_SIZE);
}

/**
 * Stores `length` bytes of valid UTF-8 at `src` as mapping `m`'s description, cut to
 * DESCRIPTION_STORED_MAX at a character boundary; empty clears it. False: not stored
 * (no room), so not echoed either [RFC 7220 §3].
 */
function setDescription(m: u32, src: usize, length: u32): bool {
  if (!descriptions.on) return false;
  if (length == 0) {
    descriptions.drop(m);
    return true;
  }
  const id = descriptions.claim(m);
  if (id == 0) return false;
  let n = length < A.DESCRIPTION_STORED_MAX ? length : A.DESCRIPTION_STORED_MAX;
  if (n < length) while (n > 0 && (load<u8>(src + n) & 0xc0) == 0x80) n--; // not inside a character
  const e = descriptions.at(id);
  store<u8>(e + D_LENGTH, <u8>n);
  memory.copy(e + D_TEXT, src, n);
  return true;
}

/**
 * A request's DESCRIPTION (valid UTF-8; an invalid one was already set aside by the codec)
 * is stored and the stored text echoed; no DESCRIPTION in the request: none in the reply.
 */
// CHECKPOINT_REQUIRED [RFC 7767]: honoured while persistence is on and the subscriber is
// under its quota: the mapping is flagged (each change journaled at once, fdatasync'ed)
// and the reply waits until it is on disk (HOST_CHECKPOINT); the option is echoed.
// A renewal without the option clears the flag. Not honoured: served, not echoed.

function clearCheckpoint(m: u32): void {
  const r = mappings.at(m);
  const flags = <u32>load<u8>(r + M_FLAGS);
  if ((flags & A.MAPF_CHECKPOINT) == 0) return;
  store<u8>(r + M_FLAGS, <u8>(flags & ~A.MAPF_CHECKPOINT));
  const s = subscribers.at(load<u32>(r + M_SUB));
  store<u16>(s + S_CHECKPOINTS, load<u16>(s + S_CHECKPOINTS) - 1);
}

function applyCheckpoint(slot: usize, m: u32): void {
  const r = mappings.at(m);
  if ((load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_CHECKPOINT_REQUIRED) == 0) {
    clearCheckpoint(m); // a renewal without it clears it
    return;
  }
  const s = subscribers.at(load<u32>(r + M_SUB));
  const flags = <u32>load<u8>(r + M_FLAGS);
  if ((flags & A.MAPF_CHECKPOINT) == 0) {
    if (!checkpointsOn || <u32>load<u16>(s + S_CHECKPOINTS) >= checkpointQuota) return; // served, not echoed
    store<u8>(r + M_FLAGS, <u8>(flags | A.MAPF_CHECKPOINT));
    store<u16>(s + S_CHECKPOINTS, load<u16>(s + S_CHECKPOINTS) + 1);
  }
  if (!appendOption(slot, W.OPTION_CHECKPOINT_REQUIRED, 0, 0)) return;
  store<u8>(slot + A.SLOT_HOST_FLAGS, load<u8>(slot + A.SLOT_HOST_FLAGS) | A.HOST_CHECKPOINT);
}

/** After finishSuccess: the text comes from the codec's saved copy, the request's bytes may be overwritten. */
function applyDescription(slot: usize, m: u32): void {
  if ((load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_DESCRIPTION) == 0) return;
  const text = requestDescription(slot);
  if (text == 0) return; // not after finishSuccess(slot): nothing safe to read (the echo tests would show it)
  const length = <u32>load<u16>(slot + A.SLOT_DESCRIPTION_LEN);
  if (!setDescription(m, text, length)) return;
  const id = descriptions.of(m);
  appendOption(slot, W.OPTION_DESCRIPTION, id != 0 ? descriptions.at(id) + D_TEXT : 0, id != 0 ? <u32>load<u8>(descriptions.at(id) + D_LENGTH) : 0);
}

const descriptionOut = memory.data(<i32>A.DESCRIPTION_STORED_MAX, 16);

/** Mapping `m`'s description copied to descriptionBase(); returns its length (0: none). */
export function mappingDescription(m: u32): u32 {
  const id = descriptions.of(m);
  if (id == 0) return 0;
  const e = descriptions.at(id);
  const n = <u32>load<u8>(e + D_LENGTH);
  memory.copy(descriptionOut, e + D_TEXT, n);
  return n;
}

export function descriptionBase(): usize {
  return descriptionOut;
}
const subscriberIndex = new HashIndex(); // (address, realm)
const internalIndex = new HashIndex(); // (subscriber, protocol, internal port, family) → live mapping
const externalIndex = new HashIndex(); // (pool, protocol, external port) exact → live or held mapping
const peerIndex = new HashIndex(); // (mapping, remote address, remote port)
let initialised = false;
let rng: u64 = 0x9e3779b97f4a7c15;

@inline function random32(): u32 {
  // xorshift64*
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return <u32>((rng * 0x2545f4914f6cdd1d) >> 32);
}

@inline function randomBelow(n: u32): u32 {
  return <u32>((<u64>random32() * <u64>n) >> 32);
}

// ---------------------------------------------------------------------------
// External pool: addresses × blocks
// ---------------------------------------------------------------------------
let poolCount: u32 = 0;
const poolAddrs = memory.data(<i32>(A.POOL_MAX_ADDRESSES * 16), 16);
const poolFamily = memory.data(<i32>A.POOL_MAX_ADDRESSES);
const poolFree = memory.data(<i32>(A.POOL_MAX_ADDRESSES * 4), 4); // free blocks per address
const poolOwner = memory.data(<i32>(A.POOL_MAX_ADDRESSES * 4), 4); // usize: u32 owner per block
const poolUsage = memory.data(<i32>(A.POOL_MAX_ADDRESSES * 4), 4); // usize: u16 users per block
const poolStack = memory.data(<i32>(A.POOL_MAX_ADDRESSES * 4), 4); // usize: u16 free-block stack
const poolRetired = memory.data(<i32>A.POOL_MAX_ADDRESSES); // 1: removed from the pool, nothing new leased there

@inline function retired(pool: u32): bool {
  return load<u8>(poolRetired + pool) != 0;
}

@inline function poolAddr(i: u32): usize {
  return poolAddrs + (<usize>i << 4);
}
@inline function ownerAt(pool: u32, block: u32): usize {
  return <usize>load<u32>(poolOwner + (<usize>pool << 2)) + (<usize>block << 2);
}
@inline function usageAt(pool: u32, block: u32): usize {
  return <usize>load<u32>(poolUsage + (<usize>pool << 2)) + (<usize>block << 1);
}
@inline function freeCount(pool: u32): u32 {
  return load<u32>(poolFree + (<usize>pool << 2));
}
@inline function blockOf(port: u32): u32 {
  return (port - portMin) / blockSize;
}
@inline function blockStart(block: u32): u32 {
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

function poolIndexOf(addr: usize): u32 {
  for (let i: u32 = 0; i < poolCount; i++) if (addrEqual(poolAddr(i), addr)) return i;
  return NO_POOL;
}

function poolHasFamily(family: u32): bool {
  for (let i: u32 = 0; i < poolCount; i++) if (<u32>load<u8>(poolFamily + i) == family && !retired(i)) return true;
  return false;
}

/** The address a new subscriber of `family` is paired with: most free blocks. */
function pickPool(family: u32): u32 {
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
function takeBlock(pool: u32, block: u32, sub: u32): void {
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
function popBlock(pool: u32, sub: u32): u32 {
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
}

/** A block no mapping or hold uses goes back to the pool. */
function releaseBlockIfUnused(pool: u32, block: u32): void {
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
}

function pushFreeBlock(pool: u32, block: u32): void {
  const stack = <usize>load<u32>(poolStack + (<usize>pool << 2));
  const n = freeCount(pool);
  store<u16>(stack + (<usize>n << 1), <u16>block);
  store<u32>(poolFree + (<usize>pool << 2), n + 1);
}

@inline function usageAdd(pool: u32, port: u32, delta: i32): void {
  const p = usageAt(pool, blockOf(port));
  store<u16>(p, <u16>(<i32>load<u16>(p) + delta));
}

// ---------------------------------------------------------------------------
// Initialisation
// ---------------------------------------------------------------------------
let wheel: usize = 0;
const WHEEL_SIZE: u32 = 65536;
const WHEEL_MASK: u32 = WHEEL_SIZE - 1;
const IN_BUCKET: u32 = 0x80000000; // a list head's "prev" names its bucket
const IN_PENDING: u32 = 0xffffffff; // head of the list being expired
let wheelSecond: u32 = 0; // last second fully processed
let pendingHead: u32 = 0;

/** The largest single allocation of the stub runtime, and what a 4 GiB memory leaves for tables. */
const MAX_REGION: u64 = (1 << 30) - 64;
const MAX_TABLES: u64 = <u64>3 << 30;

function fitsMemory(maxMappings: u32, maxSubscribers: u32, maxPeers: u32, maxFilters: u32): bool {
  const regions: StaticArray<u64> = [
    (<u64>maxMappings + 1) * MAPPING_SIZE,
    (<u64>maxSubscribers + 1) * SUB_SIZE,
    (<u64>maxPeers + 1) * PEER_SIZE,
    (<u64>maxFilters + 1) * FILTER_SIZE,
    (<u64>maxMappings * 10 / 7 + 16) << 3, // each hash index, see HashIndex.init
    (<u64>maxSubscribers * 10 / 7 + 16) << 3,
    (<u64>maxPeers * 10 / 7 + 16) << 3,
  ];
  let total: u64 = regions[4]; // the second mapping index
  for (let i = 0; i < regions.length; i++) {
    if (regions[i] > MAX_REGION) return false;
    total += regions[i];
  }
  return maxMappings != 0 && maxSubscribers != 0 && maxPeers != 0 && maxFilters != 0 && total <= MAX_TABLES;
}

/**
 * Sizes every table once. Returns 0; 1 if already initialised (an instance is
 * initialised once; the host builds a new one to resize); 2 if the sizes do not fit in
 * linear memory (about 16M mappings at most).
 */
export function engineInit(maxMappings: u32, maxSubscribers: u32, maxPeers: u32, maxFilters: u32, seed: u64, start: u32): u32 {
  if (initialised) return 1;
  if (!fitsMemory(maxMappings, maxSubscribers, maxPeers, maxFilters)) return 2;
  initialised = true;
  rng = seed == 0 ? 0x9e3779b97f4a7c15 : seed;
  subscribers.init(maxSubscribers, SUB_SIZE, S_NEXT_FREE);
  mappings.init(maxMappings, MAPPING_SIZE, M_WHEEL_NEXT);
  peers.init(maxPeers, PEER_SIZE, P_NEXT);
  filters.init(maxFilters, FILTER_SIZE, F_NEXT);
  subscriberIndex.init(maxSubscribers);
  internalIndex.init(maxMappings);
  externalIndex.init(maxMappings);
  peerIndex.init(maxPeers);
  wheel = heap.alloc(<usize>WHEEL_SIZE << 2);
  memory.fill(wheel, 0, <usize>WHEEL_SIZE << 2);
  events = heap.alloc(<usize>A.EVENT_CAPACITY * A.EVENT_SIZE);
  wheelSecond = start;
  now = start;
  setProtocol(W.PROTO_TCP, true);
  setProtocol(W.PROTO_UDP, true);
  return 0;
}

/** Bytes of linear memory the tables occupy (for memory-per-mapping reporting). */
export function engineBytes(): usize {
  return <usize>memory.size() << 16;
}

// ---------------------------------------------------------------------------
// Timer wheel: 65536 one-second buckets, doubly linked through the mapping record.
// ---------------------------------------------------------------------------
@inline function bucketAt(b: u32): usize {
  return wheel + (<usize>b << 2);
}

function wheelLink(m: u32, due: u32): void {
  if (due <= wheelSecond) due = wheelSecond + 1;
  const b = due & WHEEL_MASK;
  const r = mappings.at(m);
  const head = load<u32>(bucketAt(b));
  store<u32>(r + M_WHEEL_NEXT, head);
  store<u32>(r + M_WHEEL_PREV, IN_BUCKET | b);
  if (head != 0) store<u32>(mappings.at(head) + M_WHEEL_PREV, m);
  store<u32>(bucketAt(b), m);
}

function wheelUnlink(m: u32): void {
  const r = mappings.at(m);
  const next = load<u32>(r + M_WHEEL_NEXT);
  const prev = load<u32>(r + M_WHEEL_PREV);
  if (prev == 0) return; // not filed (static mappings never are)
  if (prev == IN_PENDING) pendingHead = next;
  else if (prev & IN_BUCKET) store<u32>(bucketAt(prev & WHEEL_MASK), next);
  else store<u32>(mappings.at(prev) + M_WHEEL_NEXT, next);
  if (next != 0) store<u32>(mappings.at(next) + M_WHEEL_PREV, prev);
  store<u32>(r + M_WHEEL_NEXT, 0);
  store<u32>(r + M_WHEEL_PREV, 0);
}

/** The MAP part counts only while its own time has not passed. */
@inline function hasInbound(r: usize): bool {
  return (load<u8>(r + M_FLAGS) & A.MAPF_INBOUND) != 0 && load<u32>(r + M_MAP_EXPIRY) > now;
}

@inline function effectiveExpiry(r: usize): u32 {
  const a = load<u32>(r + M_MAP_EXPIRY);
  const b = load<u32>(r + M_OUT_EXPIRY);
  return a > b ? a : b;
}

/**
 * Ends what is due up to `at`, visiting at most `budget` wheel entries (and seconds), so
 * one call never costs more than the budget however large the table. It also stops when
 * the event ring is full; the host drains it and calls again. Returns the number of
 * mappings ended and holds released.
 */
export function expire(at: u32, budget: u32): u32 {
  now = at;
  let work: u32 = 0;
  let ended: u32 = 0;
  while (work < budget) {
    // Expiry waits for room in the event ring rather than lose an event.
    if (eventHead - eventTail >= A.EVENT_CAPACITY) break;
    if (pendingHead == 0) {
      if (wheelSecond >= at) break;
      wheelSecond++;
      work++;
      const b = bucketAt(wheelSecond & WHEEL_MASK);
      pendingHead = load<u32>(b);
      store<u32>(b, 0);
      if (pendingHead != 0) store<u32>(mappings.at(pendingHead) + M_WHEEL_PREV, IN_PENDING);
      continue;
    }
    const m = pendingHead;
    wheelUnlink(m);
    work++;
    const r = mappings.at(m);
    const flags = <u32>load<u8>(r + M_FLAGS);
    const due = effectiveExpiry(r);
    if (due > wheelSecond) {
      wheelLink(m, due); // refreshed since it was filed
    } else if (flags & A.MAPF_HELD) {
      releaseHold(m);
      ended++;
    } else {
      endMapping(m, A.EVENT_EXPIRE);
      ended++;
    }
  }
  return ended;
}

// ---------------------------------------------------------------------------
// Lookups. Key material goes through these globals to the verifiers.
// ---------------------------------------------------------------------------
let kAddr: usize = 0;
let kRealm: u32 = 0;

@inline function subscriberFp(addr: usize, realm: u32): u32 {
  return fingerprint(mix64(load<u64>(addr) ^ mix64(load<u64>(addr, 8) ^ (<u64>realm << 1))));
}

function findSubscriber(addr: usize, realm: u32): u32 {
  const fp = subscriberFp(addr, realm);
  for (let p = subscriberIndex.first(fp); p >= 0; p = subscriberIndex.after(fp, p)) {
    const id = subscriberIndex.recordAt(p);
    const s = subscribers.at(id);
    if (addrEqual(s + S_ADDR, addr) && load<u32>(s + S_REALM) == realm) return id;
  }
  return 0;
}

function createSubscriber(addr: usize, realm: u32): u32 {
  const id = subscribers.alloc();
  if (id == 0) return 0;
  const s = subscribers.at(id);
  copy16(s + S_ADDR, addr);
  store<u32>(s + S_REALM, realm);
  store<u16>(s + S_POOL, <u16>NO_POOL);
  store<u16>(s + S_POOL6, <u16>NO_POOL);
  subscriberIndex.insert(subscriberFp(addr, realm), id);
  statAdd(A.STATS_SUBSCRIBERS, 1);
  return id;
}

function freeSubscriberIfEmpty(sub: u32): void {
  const s = subscribers.at(sub);
  if (load<u32>(s + S_MAPPINGS) != 0 || load<u32>(s + S_HELD) != 0 || load<u8>(s + S_BLOCK_COUNT) != 0) return;
  subscriberIndex.remove(subscriberFp(s + S_ADDR, load<u32>(s + S_REALM)), sub);
  subscribers.release(sub);
  statAdd(A.STATS_SUBSCRIBERS, -1);
}

/**
 * The internal index is keyed by the internal address itself (not the subscriber id), so
 * a refresh finds its mapping without first looking up the subscriber: one dependent
 * memory access fewer on the hot path.
 */
@inline function internalFp(addr: usize, realm: u32, protocol: u32, port: u32, family: u32): u32 {
  const tail = (<u64>realm << 32) | (<u64>family << 24) | (<u64>protocol << 16) | <u64>port;
  return fingerprint(mix64(load<u64>(addr) ^ mix64(load<u64>(addr, 8) ^ mix64(tail))));
}

/** The internal-index fingerprint of mapping record `r` (from its subscriber's address). */
@inline function recordFp(r: usize): u32 {
  const s = subscribers.at(load<u32>(r + M_SUB));
  return internalFp(s + S_ADDR, load<u32>(s + S_REALM), <u32>load<u8>(r + M_PROTOCOL), <u32>load<u16>(r + M_INTERNAL_PORT), <u32>load<u8>(r + M_FAMILY));
}

/**
 * The endpoint's live mapping, or (held = true) its port in hold-down for `nonce` that is
 * still held at `now`; 0 if none. Held records share the index with live ones [6887 §15].
 */
function findEndpoint(addr: usize, realm: u32, protocol: u32, port: u32, family: u32, held: bool, nonce: usize): u32 {
  const fp = internalFp(addr, realm, protocol, port, family);
  for (let p = internalIndex.first(fp); p >= 0; p = internalIndex.after(fp, p)) {
    const id = internalIndex.recordAt(p);
    const r = mappings.at(id);
    if (<u32>load<u16>(r + M_INTERNAL_PORT) == port && <u32>load<u8>(r + M_PROTOCOL) == protocol &&
        <u32>load<u8>(r + M_FAMILY) == family && ownedBy(r, addr, realm)) {
      const isHeld = (load<u8>(r + M_FLAGS) & A.MAPF_HELD) != 0;
      if (!held && !isHeld) return id;
      if (held && isHeld && load<u32>(r + M_MAP_EXPIRY) > now && nonceEqual(r + M_NONCE, nonce)) return id;
    }
  }
  return 0;
}

@inline function ownedBy(r: usize, addr: usize, realm: u32): bool {
  const s = subscribers.at(load<u32>(r + M_SUB));
  return addrEqual(s + S_ADDR, addr) && load<u32>(s + S_REALM) == realm;
}

/** The live mapping of the endpoint (internal address, realm, protocol, port, external family). */
@inline function findMapping(addr: usize, protocol: u32, port: u32, family: u32, realm: u32 = 0): u32 {
  return findEndpoint(addr, realm, protocol, port, family, false, 0);
}

@inline function findHeld(addr: usize, protocol: u32, port: u32, family: u32, nonce: usize, realm: u32 = 0): u32 {
  return findEndpoint(addr, realm, protocol, port, family, true, nonce);
}

/** The subscriber of a found mapping, else of the address in `realm` (0 if none). */
@inline function subscriberOf(m: u32, addr: usize, realm: u32 = 0): u32 {
  return m != 0 ? load<u32>(mappings.at(m) + M_SUB) : findSubscriber(addr, realm);
}

// ---------------------------------------------------------------------------
// Realms [RFC 7843]: a THIRD_PARTY_ID (a tunnel or session identifier, up to
// REALM_ID_MAX bytes) names the realm of its THIRD_PARTY address, so overlapping internal
// addresses of different subscribers (DS-Lite softwires) are different subscribers, with
// their own mappings, blocks and quotas. Realm 0 is "no identifier". IDs are registered by
// the host (a configured list) or, with acceptAnyRealm, on first use.
// ---------------------------------------------------------------------------
const RL_NEXT_FREE: u32 = 0;
const RL_LENGTH: u32 = 4; // u8
const RL_ID: u32 = 5; // REALM_ID_MAX bytes
const REALM_SIZE: u32 = 24;
const realms = new Slab();
const realmIndex = new HashIndex();
let realmsOn = false;
let acceptAnyRealm = false;

/** Room for `capacity` realms; `any`: an unknown THIRD_PARTY_ID is registered on first use. Once, after engineInit. */
export function initRealms(capacity: u32, any: bool): bool {
  acceptAnyRealm = any;
  if (realmsOn || capacity == 0) return capacity == 0 || realmsOn;
  realms.init(capacity, REALM_SIZE, RL_NEXT_FREE);
  realmIndex.init(capacity);
  realmsOn = true;
  return true;
}

function realmFp(id: usize, length: u32): u32 {
  let h: u64 = <u64>length * 0x9e3779b97f4a7c15;
  for (let i: u32 = 0; i < length; i++) h = mix64(h ^ <u64>load<u8>(id + i));
  return fingerprint(h);
}

/** The realm of an identifier (0: unknown — registered only when `create`, room permitting). */
function realmOf(id: usize, length: u32, create: bool): u32 {
  if (!realmsOn || length == 0 || length > A.REALM_ID_MAX) return 0;
  const fp = realmFp(id, length);
  for (let p = realmIndex.first(fp); p >= 0; p = realmIndex.after(fp, p)) {
    const r = realmIndex.recordAt(p);
    const e = realms.at(r);
    if (<u32>load<u8>(e + RL_LENGTH) == length && memory.compare(e + RL_ID, id, length) == 0) return r;
  }
  if (!create || realms.full()) return 0;
  const r = realms.alloc();
  const e = realms.at(r);
  store<u8>(e + RL_LENGTH, <u8>length);
  memory.copy(e + RL_ID, id, length);
  realmIndex.insert(fp, r);
  return r;
}

/** Registers the identifier at scratch[0..length] (a configured one); its realm, 0 if no room. */
export function registerRealm(length: u32): u32 {
  return realmOf(scratch, length, true);
}

/** The realm of the identifier at scratch[0..length] without registering it (0: unknown). */
export function findRealm(length: u32): u32 {
  return realmOf(scratch, length, false);
}

/** Realm `r`'s identifier copied to scratch; returns its length (0: realm 0 or unknown). */
export function realmIdentifier(r: u32): u32 {
  if (!realmsOn || r == 0 || r > realms.used) return 0;
  const e = realms.at(r);
  const n = <u32>load<u8>(e + RL_LENGTH);
  memory.copy(scratch, e + RL_ID, n);
  return n;
}

/** The request's realm: 0 without THIRD_PARTY_ID; 0xFFFFFFFF for an identifier not known (THIRD_PARTY_ID_UNKNOWN). */
function requestRealm(slot: usize): u32 {
  if ((load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_THIRD_PARTY_ID) == 0) return 0;
  const r = realmOf(data(slot) + <u32>load<u16>(slot + A.SLOT_THIRD_PARTY_ID), <u32>load<u16>(slot + A.SLOT_THIRD_PARTY_ID_LEN), acceptAnyRealm);
  return r != 0 ? r : 0xffffffff;
}

/** Prepares a reclaim of held record `m` (as allocate would); false if the suggestion must be honoured and differs. */
function reclaimHeld(m: u32, sugAddr: usize, sugPort: u32, strict: bool): bool {
  const r = mappings.at(m);
  if (strict && !sameExternal(r, sugAddr, sugPort)) return false;
  allocPool = <u32>load<u16>(r + M_POOL);
  allocPort = <u32>load<u16>(r + M_EXTERNAL_PORT);
  allocLease = false;
  allocReclaim = m;
  return true;
}

/** Does the suggestion name this mapping's external? A family all-zeros address names any [6887 §11.1]. */
function sameExternal(r: usize, sugAddr: usize, sugPort: u32): bool {
  return suggestionNames(poolAddr(<u32>load<u16>(r + M_POOL)), <u32>load<u16>(r + M_EXTERNAL_PORT), sugAddr, sugPort);
}

function suggestionNames(extAddr: usize, extPort: u32, sugAddr: usize, sugPort: u32): bool {
  if (extPort != sugPort) return false;
  const anyAddress = isV4Mapped(sugAddr) ? load<u32>(sugAddr, 12) == 0 : (load<u64>(sugAddr) | load<u64>(sugAddr, 8)) == 0;
  return anyAddress || addrEqual(extAddr, sugAddr);
}

/** External key: exact, so its fingerprint is the key itself (never 0: protocol ≠ 0). */
@inline function externalKey(pool: u32, protocol: u32, port: u32): u32 {
  return (pool << 24) | (protocol << 16) | port;
}

function findExternal(pool: u32, protocol: u32, port: u32): u32 {
  const fp = externalKey(pool, protocol, port);
  const p = externalIndex.first(fp);
  return p < 0 ? 0 : externalIndex.recordAt(p);
}

@inline function peerFp(m: u32, addr: usize, port: u32): u32 {
  return fingerprint(mix64(load<u64>(addr) ^ mix64(load<u64>(addr, 8) ^ ((<u64>m << 16) | <u64>port))));
}

function findPeer(m: u32, addr: usize, port: u32): u32 {
  const fp = peerFp(m, addr, port);
  for (let p = peerIndex.first(fp); p >= 0; p = peerIndex.after(fp, p)) {
    const id = peerIndex.recordAt(p);
    const r = peers.at(id);
    if (load<u32>(r + P_MAPPING) == m && <u32>load<u16>(r + P_REMOTE_PORT) == port && addrEqual(r + P_REMOTE_ADDR, addr)) return id;
  }
  return 0;
}

// ---------------------------------------------------------------------------
// Mapping life cycle
// ---------------------------------------------------------------------------
function emit(kind: u8, m: u32): void {
  if (eventHead - eventTail >= A.EVENT_CAPACITY) {
    statAdd(A.STATS_EVENTS_LOST, 1);
    return;
  }
  const e = events + <usize>(eventHead & (A.EVENT_CAPACITY - 1)) * A.EVENT_SIZE;
  describeInto(e, m);
  store<u8>(e + A.EV_KIND, kind);
  eventHead++;
}

/** Marks the event just emitted for `m` (a refresh that changed more than its lifetime). */
function markChanged(m: u32): void {
  if (eventHead == eventTail) return; // it was lost (ring full)
  const e = events + <usize>((eventHead - 1) & (A.EVENT_CAPACITY - 1)) * A.EVENT_SIZE;
  if (load<u32>(e + A.EV_MAPPING) == m) store<u8>(e + A.EV_FLAGS, load<u8>(e + A.EV_FLAGS) | A.EVF_CHANGED);
}

/** Writes the event-format description of mapping `m` at `e`. */
function describeInto(e: usize, m: u32): void {
  const r = mappings.at(m);
  const s = subscribers.at(load<u32>(r + M_SUB));
  store<u8>(e + A.EV_KIND, 0);
  store<u8>(e + A.EV_PROTOCOL, load<u8>(r + M_PROTOCOL));
  store<u8>(e + A.EV_FLAGS, load<u8>(r + M_FLAGS));
  store<u8>(e + A.EV_FAMILY, load<u8>(r + M_FAMILY));
  store<u16>(e + A.EV_INTERNAL_PORT, load<u16>(r + M_INTERNAL_PORT));
  store<u16>(e + A.EV_EXTERNAL_PORT, load<u16>(r + M_EXTERNAL_PORT));
  store<u16>(e + A.EV_POOL_INDEX, load<u16>(r + M_POOL));
  store<u16>(e + A.EV_CLIENT_PORT, load<u16>(r + M_CLIENT_PORT));
  store<u32>(e + A.EV_REALM, load<u32>(s + S_REALM));
  store<u32>(e + A.EV_MAP_EXPIRY, load<u32>(r + M_MAP_EXPIRY));
  store<u32>(e + A.EV_OUT_EXPIRY, load<u32>(r + M_OUT_EXPIRY));
  store<u32>(e + A.EV_MAPPING, m);
  store<u32>(e + A.EV_TIME, now);
  copy16(e + A.EV_INTERNAL_ADDR, s + S_ADDR);
}

/** Creates a live mapping record on an external port already checked to be free. */
function createMapping(sub: u32, protocol: u32, port: u32, family: u32, pool: u32, extPort: u32, flags: u32, clientPort: u32): u32 {
  const m = mappings.alloc();
  const r = mappings.at(m);
  store<u32>(r + M_SUB, sub);
  store<u16>(r + M_INTERNAL_PORT, <u16>port);
  store<u8>(r + M_PROTOCOL, <u8>protocol);
  store<u8>(r + M_FLAGS, <u8>flags);
  store<u16>(r + M_EXTERNAL_PORT, <u16>extPort);
  store<u16>(r + M_POOL, <u16>pool);
  store<u8>(r + M_FAMILY, <u8>family);
  store<u16>(r + M_CLIENT_PORT, <u16>clientPort);
  internalIndex.insert(recordFp(r), m);
  externalIndex.insert(externalKey(pool, protocol, extPort), m);
  usageAdd(pool, extPort, 1);
  subListAdd(sub, m);
  const s = subscribers.at(sub);
  store<u32>(s + S_MAPPINGS, load<u32>(s + S_MAPPINGS) + 1);
  statAdd(A.STATS_MAPPINGS, 1);
  statAdd(A.STATS_CREATED, 1);
  return m;
}

function subListAdd(sub: u32, m: u32): void {
  const s = subscribers.at(sub);
  const head = load<u32>(s + S_LIST);
  const r = mappings.at(m);
  store<u32>(r + M_SUB_NEXT, head);
  store<u32>(r + M_SUB_PREV, 0);
  if (head != 0) store<u32>(mappings.at(head) + M_SUB_PREV, m);
  store<u32>(s + S_LIST, m);
}

function subListRemove(sub: u32, m: u32): void {
  const r = mappings.at(m);
  const next = load<u32>(r + M_SUB_NEXT);
  const prev = load<u32>(r + M_SUB_PREV);
  if (prev == 0) store<u32>(subscribers.at(sub) + S_LIST, next);
  else store<u32>(mappings.at(prev) + M_SUB_NEXT, next);
  if (next != 0) store<u32>(mappings.at(next) + M_SUB_PREV, prev);
}

function freeFilters(r: usize): void {
  let f = load<u32>(r + M_FILTERS);
  while (f != 0) {
    const next = load<u32>(filters.at(f) + F_NEXT);
    filters.release(f);
    statAdd(A.STATS_FILTERS, -1);
    f = next;
  }
  store<u32>(r + M_FILTERS, 0);
  store<u8>(r + M_FILTER_COUNT, 0);
}

function freePeers(m: u32): void {
  const r = mappings.at(m);
  let p = load<u32>(r + M_PEERS);
  while (p != 0) {
    const pr = peers.at(p);
    const next = load<u32>(pr + P_NEXT);
    peerIndex.remove(peerFp(m, pr + P_REMOTE_ADDR, <u32>load<u16>(pr + P_REMOTE_PORT)), p);
    peers.release(p);
    statAdd(A.STATS_PEERS, -1);
    p = next;
  }
  store<u32>(r + M_PEERS, 0);
}

/**
 * Ends a live mapping: out of the internal index, filters and PEERs freed, external port
 * into hold-down (kept in the external index, so nobody else gets it) [6887 §15; RFC 6888 REQ-8].
 */
function endMapping(m: u32, kind: u8, hold: bool = true): void {
  const r = mappings.at(m);
  emit(kind, m);
  const sub = load<u32>(r + M_SUB);
  const holdEnd = (kind == A.EVENT_EXPIRE ? effectiveExpiry(r) : now) + holdDown; // a hold starts when the mapping ended
  freeFilters(r);
  freePeers(m);
  descriptions.drop(m);
  requesters.drop(m);
  clearCheckpoint(m);
  wheelUnlink(m);
  const s = subscribers.at(sub);
  store<u32>(s + S_MAPPINGS, load<u32>(s + S_MAPPINGS) - 1);
  statAdd(A.STATS_MAPPINGS, -1);
  statAdd(kind == A.EVENT_EXPIRE ? A.STATS_EXPIRED : A.STATS_DELETED, 1);
  if (holdDown == 0 || !hold) {
    releasePort(m);
    return;
  }
  // Held records stay in both indexes: nobody else gets the port, and the same client
  // (endpoint + nonce) finds it again [6887 §15].
  store<u8>(r + M_FLAGS, <u8>A.MAPF_HELD);
  store<u32>(r + M_MAP_EXPIRY, holdEnd);
  store<u32>(r + M_OUT_EXPIRY, 0);
  store<u32>(s + S_HELD, load<u32>(s + S_HELD) + 1);
  statAdd(A.STATS_HELD, 1);
  wheelLink(m, holdEnd);
}

function releaseHold(m: u32): void {
  const r = mappings.at(m);
  emit(A.EVENT_RELEASE, m);
  const s = subscribers.at(load<u32>(r + M_SUB));
  store<u32>(s + S_HELD, load<u32>(s + S_HELD) - 1);
  statAdd(A.STATS_HELD, -1);
  statAdd(A.STATS_RELEASED, 1);
  wheelUnlink(m);
  releasePort(m);
}

/** Frees the external port of an ended record and the record itself. */
function releasePort(m: u32): void {
  const r = mappings.at(m);
  const pool = <u32>load<u16>(r + M_POOL);
  const port = <u32>load<u16>(r + M_EXTERNAL_PORT);
  const sub = load<u32>(r + M_SUB);
  descriptions.drop(m);
  requesters.drop(m);
  subListRemove(sub, m);
  internalIndex.remove(recordFp(r), m);
  externalIndex.remove(externalKey(pool, <u32>load<u8>(r + M_PROTOCOL), port), m);
  mappings.release(m);
  usageAdd(pool, port, -1);
  releaseBlockIfUnused(pool, blockOf(port));
  freeSubscriberIfEmpty(sub);
}

/** A held record taken back by the same client becomes live again [6887 §15]. */
function reclaim(m: u32, flags: u32, clientPort: u32): void {
  const r = mappings.at(m);
  const sub = load<u32>(r + M_SUB);
  wheelUnlink(m);
  store<u8>(r + M_FLAGS, <u8>flags);
  store<u32>(r + M_MAP_EXPIRY, 0);
  store<u16>(r + M_CLIENT_PORT, <u16>clientPort);
  const s = subscribers.at(sub);
  store<u32>(s + S_HELD, load<u32>(s + S_HELD) - 1);
  store<u32>(s + S_MAPPINGS, load<u32>(s + S_MAPPINGS) + 1);
  statAdd(A.STATS_HELD, -1);
  statAdd(A.STATS_MAPPINGS, 1);
  statAdd(A.STATS_CREATED, 1);
}

/** A live mapping whose time passed but the wheel has not reached yet is ended now. */
function liveOrEnded(m: u32): u32 {
  if (m == 0) return 0;
  const r = mappings.at(m);
  if (load<u8>(r + M_FLAGS) & A.MAPF_STATIC) return m;
  if (effectiveExpiry(r) > now) return m;
  endMapping(m, A.EVENT_EXPIRE);
  return 0;
}

// ---------------------------------------------------------------------------
// External port choice (validate only; commitAllocation mutates)
// ---------------------------------------------------------------------------
let allocPool: u32 = 0;
let allocPort: u32 = 0;
let allocLease: bool = false; // the port's block must be leased first
let allocReclaim: u32 = 0; // held record to take back

@inline function nonceEqual(a: usize, b: usize): bool {
  return load<u64>(a) == load<u64>(b) && load<u32>(a, 8) == load<u32>(b, 8);
}

/** Can `sub` (0 = not created yet) take `port` on `pool` for `protocol`? Sets alloc* on success. */
function tryPort(sub: u32, pool: u32, protocol: u32, port: u32, internalPort: u32, nonce: usize): bool {
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
function trySuggestion(sub: u32, family: u32, protocol: u32, internalPort: u32, sugAddr: usize, sugPort: u32, nonce: usize): bool {
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
function tryOwnBlocks(sub: u32, family: u32, protocol: u32, internalPort: u32, nonce: usize): bool {
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
function tryNewBlock(sub: u32, family: u32, protocol: u32, internalPort: u32): u32 {
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
function leaseAllocated(sub: u32): void {
  if (!allocLease) return;
  const block = blockOf(allocPort);
  const stack = <usize>load<u32>(poolStack + (<usize>allocPool << 2));
  if (<u32>load<u16>(stack + (<usize>(freeCount(allocPool) - 1) << 1)) == block) popBlock(allocPool, sub);
  else takeBlock(allocPool, block, sub);
}

/** Leases what the chosen port needs and creates (or reclaims) the record. */
function commitAllocation(sub: u32, protocol: u32, internalPort: u32, family: u32, flags: u32, clientPort: u32): u32 {
  if (allocReclaim != 0) {
    reclaim(allocReclaim, flags, clientPort);
    return allocReclaim;
  }
  leaseAllocated(sub);
  return createMapping(sub, protocol, internalPort, family, allocPool, allocPort, flags, clientPort);
}

// ---------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------
@inline function clampLifetime(requested: u32, minimum: u32): u32 {
  if (requested < minimum) return minimum;
  return requested > maxLifetime ? maxLifetime : requested;
}


/** Writes the assigned external address/port over the suggestion [6887 §11.1]. */
function writeExternal(slot: usize, m: u32): void {
  const d = data(slot);
  const r = mappings.at(m);
  wr16(d + W.MP_EXTERNAL_PORT, <u32>load<u16>(r + M_EXTERNAL_PORT));
  copy16(d + W.MP_EXTERNAL_ADDR, poolAddr(<u32>load<u16>(r + M_POOL)));
}

/** FILTER data (prefix, port, address) equal to a stored filter or another FILTER's data. */
@inline function sameFilter(prefix: u32, port: u32, addr: usize, otherPrefix: u32, otherPort: u32, otherAddr: usize): bool {
  return prefix == otherPrefix && port == otherPort && addrEqual(addr, otherAddr);
}

function storedFilter(r: usize, prefix: u32, port: u32, addr: usize): bool {
  let f = load<u32>(r + M_FILTERS);
  while (f != 0) {
    const fr = filters.at(f);
    if (sameFilter(prefix, port, addr, <u32>load<u8>(fr + F_PREFIX), <u32>load<u16>(fr + F_PORT), fr + F_ADDR)) return true;
    f = load<u32>(fr + F_NEXT);
  }
  return false;
}

/**
 * The request's FILTERs in order [6887 §13.3]: prefix 0 clears the set, the others join it
 * (a filter already in the set is not added twice: clients resend theirs with every
 * refresh). With `apply` false nothing changes and the resulting set size is returned, or
 * -1 if it would exceed filtersPerMapping.
 */
function walkFilters(slot: usize, m: u32, apply: bool): i32 {
  const n = <u32>load<u16>(slot + A.SLOT_FILTER_COUNT);
  const r = m != 0 ? mappings.at(m) : 0;
  let count: u32 = r != 0 ? <u32>load<u8>(r + M_FILTER_COUNT) : 0;
  if (n == 0) return <i32>count;
  const d = data(slot);
  const first = <u32>load<u16>(slot + A.SLOT_FILTER_FIRST);
  const end = <u32>load<u16>(slot + A.SLOT_OPT_END);
  let cleared = r == 0;
  let since = first; // first request option after the last clear
  let off = first;
  while (off < end) {
    const code = <u32>load<u8>(d + off);
    const len = rd16(d + off + W.OPT_LENGTH);
    const p = d + off + W.OPT_HEADER_SIZE;
    const here = off;
    off += W.OPT_HEADER_SIZE + ((len + 3) & ~3);
    if (code != <u32>W.OPTION_FILTER) continue;
    const prefix = <u32>load<u8>(p + W.FILTER_PREFIX_LENGTH);
    const port = rd16(p + W.FILTER_REMOTE_PORT);
    const addr = p + W.FILTER_REMOTE_ADDR;
    if (prefix == 0) {
      count = 0;
      cleared = true;
      since = off;
      if (apply) freeFilters(r);
      continue;
    }
    let duplicate = !cleared && storedFilter(r, prefix, port, addr);
    // an earlier FILTER of this request (after the last clear) with the same data
    for (let q = since; !duplicate && q < here; ) {
      const qlen = rd16(d + q + W.OPT_LENGTH);
      const qp = d + q + W.OPT_HEADER_SIZE;
      if (<u32>load<u8>(d + q) == <u32>W.OPTION_FILTER &&
          sameFilter(prefix, port, addr, <u32>load<u8>(qp + W.FILTER_PREFIX_LENGTH), rd16(qp + W.FILTER_REMOTE_PORT), qp + W.FILTER_REMOTE_ADDR)) duplicate = true;
      q += W.OPT_HEADER_SIZE + ((qlen + 3) & ~3);
    }
    if (duplicate) continue;
    count++;
    if (apply) {
      if (storedFilter(r, prefix, port, addr)) continue;
      const f = filters.alloc();
      const fr = filters.at(f);
      store<u8>(fr + F_PREFIX, <u8>prefix);
      store<u16>(fr + F_PORT, <u16>port);
      copy16(fr + F_ADDR, addr);
      store<u32>(fr + F_NEXT, load<u32>(r + M_FILTERS));
      store<u32>(r + M_FILTERS, f);
      store<u8>(r + M_FILTER_COUNT, load<u8>(r + M_FILTER_COUNT) + 1);
      statAdd(A.STATS_FILTERS, 1);
    }
  }
  return count > filtersPerMapping ? -1 : <i32>count;
}

/** Free filter entries needed in the worst case for this request. */
@inline function filtersAvailable(slot: usize): bool {
  const need = <u32>load<u16>(slot + A.SLOT_FILTER_COUNT);
  return need == 0 || filters.capacity - filters.live >= need;
}

@inline function fail(slot: usize, result: u32): void {
  finishError(slot, result, errorLifetime(result));
}

/** The internal address of the request: THIRD_PARTY's if present [6887 §13.1]. */
@inline function internalAddress(slot: usize): usize {
  if (load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_THIRD_PARTY) return data(slot) + <usize>load<u16>(slot + A.SLOT_THIRD_PARTY);
  return slot + A.SLOT_SRC_ADDR;
}

const MAP_ECHO: u32 = A.OPTBIT_THIRD_PARTY | A.OPTBIT_THIRD_PARTY_ID | A.OPTBIT_PREFER_FAILURE | A.OPTBIT_FILTER;

function handleMap(slot: usize): void {
  const d = data(slot);
  const opts = load<u32>(slot + A.SLOT_OPTIONS);
  const requested = rd32(d + W.HDR_LIFETIME);
  const protocol = <u32>load<u8>(d + W.MP_PROTOCOL);
  const internalPort = rd16(d + W.MP_INTERNAL_PORT);
  const sugPort = rd16(d + W.MP_EXTERNAL_PORT);
  const sugAddr = d + W.MP_EXTERNAL_ADDR;
  const nonce = d + W.MP_NONCE;
  const family: u32 = isV4Mapped(sugAddr) ? 0 : 1;
  const preferFailure = (opts & A.OPTBIT_PREFER_FAILURE) != 0;
  const addr = internalAddress(slot);
  const clientPort = <u32>load<u16>(slot + A.SLOT_SRC_PORT);
  const realm = requestRealm(slot);
  if (realm == 0xffffffff) return fail(slot, W.RESULT_THIRD_PARTY_ID_UNKNOWN); // [7843 §4.1]
  const mirror = findMirror(addr, realm, protocol, internalPort, family);
  if (mirror != 0) return mapFromMirror(slot, mirror, requested, preferFailure, sugAddr, sugPort); // another shard's static
  if ((opts & A.OPTBIT_PORT_SET) && rd16(d + <u32>load<u16>(slot + A.SLOT_PORT_SET) + W.PORT_SET_SIZE) > 1 && portSetMax > 1) {
    return handlePortSet(slot, realm);
  }
  let m = protocol != 0 && internalPort != 0 ? findMapping(addr, protocol, internalPort, family, realm) : 0;
  if (m != 0 && liveOrEnded(m) == 0) m = 0; // ending it may have freed the subscriber

  if (requested == 0) {
    // Delete [6887 §15.1, erratum 3621]: the reply keeps the suggested fields as sent.
    if (m != 0) {
      const r = mappings.at(m);
      const flags = <u32>load<u8>(r + M_FLAGS);
      if ((flags & A.MAPF_STATIC) || !hasInbound(r)) return fail(slot, W.RESULT_NOT_AUTHORIZED);
      if (noncePolicy == A.NONCE_STRICT && !nonceEqual(r + M_NONCE, nonce)) {
        finishError(slot, W.RESULT_NOT_AUTHORIZED, load<u32>(r + M_MAP_EXPIRY) - now); // remaining lifetime [6887 §11.3]
        return;
      }
      removeInbound(m);
    }
    return finishSuccess(slot, 0, A.OPTBIT_THIRD_PARTY | A.OPTBIT_THIRD_PARTY_ID);
  }

  let sub = subscriberOf(m, addr, realm);
  if (protocol == 0 || internalPort == 0 || !protocolSupported(protocol)) return fail(slot, W.RESULT_UNSUPP_PROTOCOL); // [6887 §11.3]
  if (!poolHasFamily(family)) return fail(slot, W.RESULT_UNSUPP_PROTOCOL); // decision (item 67)
  const lifetime = clampLifetime(requested, minLifetime);

  if (m != 0) {
    const r = mappings.at(m);
    const flags = <u32>load<u8>(r + M_FLAGS);
    const same = sameExternal(r, sugAddr, sugPort);
    if (flags & A.MAPF_STATIC) {
      if (preferFailure && !same) return fail(slot, W.RESULT_CANNOT_PROVIDE_EXTERNAL);
      writeExternal(slot, m);
      return finishSuccess(slot, W.STATIC_MAPPING_LIFETIME, A.OPTBIT_THIRD_PARTY | A.OPTBIT_THIRD_PARTY_ID | A.OPTBIT_PREFER_FAILURE); // [6887 §11.3]
    }
    const wasInbound = hasInbound(r);
    if (wasInbound && noncePolicy == A.NONCE_STRICT && !nonceEqual(r + M_NONCE, nonce)) {
      finishError(slot, W.RESULT_NOT_AUTHORIZED, load<u32>(r + M_MAP_EXPIRY) - now); // remaining lifetime [6887 §11.3]
      return;
    }
    if (preferFailure && !same) return fail(slot, W.RESULT_CANNOT_PROVIDE_EXTERNAL); // [6887 §11.3]
    if (walkFilters(slot, m, false) < 0) return fail(slot, W.RESULT_EXCESSIVE_REMOTE_PEERS); // [6887 §13.3]
    if (!filtersAvailable(slot)) return fail(slot, W.RESULT_NO_RESOURCES);
    walkFilters(slot, m, true);
    // The latest request says whether a renumbering may move it (Mapping Update) [6887 §14.2].
    store<u8>(r + M_FLAGS, <u8>(preferFailure ? flags | A.MAPF_PREFER_FAILURE : flags & ~A.MAPF_PREFER_FAILURE));
    renewInbound(m, wasInbound, nonce, clientPort, lifetime);
    noteRequester(slot, m);
    if (load<u16>(slot + A.SLOT_FILTER_COUNT) != 0 || (load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_DESCRIPTION) != 0) markChanged(m); // FILTERs or DESCRIPTION may have changed
    writeExternal(slot, m);
    finishSuccess(slot, lifetime, MAP_ECHO);
    applyDescription(slot, m);
    applyCheckpoint(slot, m);
    return;
  }

  // New mapping: every check before any change.
  if (sub != 0 && load<u32>(subscribers.at(sub) + S_MAPPINGS) >= mappingsPerSubscriber) return fail(slot, W.RESULT_USER_EX_QUOTA); // [6887 §17.2]
  const held = sub != 0 ? findHeld(addr, protocol, internalPort, family, nonce, realm) : 0;
  if (held != 0) {
    if (!reclaimHeld(held, sugAddr, sugPort, preferFailure)) return fail(slot, W.RESULT_CANNOT_PROVIDE_EXTERNAL);
  } else {
    const result = allocate(slot, sub, family, protocol, internalPort, sugAddr, sugPort, nonce, preferFailure);
    if (result != 0) return fail(slot, result);
  }
  if (walkFilters(slot, 0, false) < 0) return fail(slot, W.RESULT_EXCESSIVE_REMOTE_PEERS); // [6887 §13.3]
  if (!filtersAvailable(slot)) return fail(slot, W.RESULT_NO_RESOURCES);
  if (sub == 0) {
    sub = createSubscriber(addr, realm);
    if (sub == 0) return fail(slot, W.RESULT_NO_RESOURCES);
  }
  let flags = A.MAPF_INBOUND;
  if (opts & A.OPTBIT_THIRD_PARTY) flags |= A.MAPF_THIRD_PARTY;
  if (preferFailure) flags |= A.MAPF_PREFER_FAILURE;
  m = commitAllocation(sub, protocol, internalPort, family, flags, clientPort);
  noteRequester(slot, m);
  const r = mappings.at(m);
  copy12(r + M_NONCE, nonce);
  store<u32>(r + M_MAP_EXPIRY, now + lifetime);
  wheelLink(m, now + lifetime);
  walkFilters(slot, m, true);
  writeExternal(slot, m);
  finishSuccess(slot, lifetime, MAP_ECHO);
  applyDescription(slot, m); // before the event: the journal record carries it
  applyCheckpoint(slot, m);
  emit(A.EVENT_CREATE, m);
}

/**
 * Chooses the external address:port for a new mapping (sets alloc*), or returns the
 * error. `strict` = the suggestion must be honoured (PREFER_FAILURE, PEER).
 */
function allocate(slot: usize, sub: u32, family: u32, protocol: u32, internalPort: u32, sugAddr: usize, sugPort: u32, nonce: usize, strict: bool): u32 {
  if (mappings.full()) return W.RESULT_NO_RESOURCES; // [RFC 6888 REQ-11] never evict
  if (sub == 0 && subscribers.full()) return W.RESULT_NO_RESOURCES;
  if (trySuggestion(sub, family, protocol, internalPort, sugAddr, sugPort, nonce)) return 0;
  if (strict) return W.RESULT_CANNOT_PROVIDE_EXTERNAL; // [6887 §13.2]
  if (tryOwnBlocks(sub, family, protocol, internalPort, nonce)) return 0;
  return tryNewBlock(sub, family, protocol, internalPort);
}

/**
 * Gives mapping `m` a MAP part until now + lifetime (a refresh when it had one). Only a
 * shortened life re-files it in the wheel; a longer one is re-filed lazily by expire().
 */
function renewInbound(m: u32, wasInbound: bool, nonce: usize, clientPort: u32, lifetime: u32): void {
  const r = mappings.at(m);
  if (nonce != r + M_NONCE) copy12(r + M_NONCE, nonce);
  store<u8>(r + M_FLAGS, load<u8>(r + M_FLAGS) | A.MAPF_INBOUND);
  store<u16>(r + M_CLIENT_PORT, <u16>clientPort);
  const oldExpiry = effectiveExpiry(r);
  store<u32>(r + M_MAP_EXPIRY, now + lifetime);
  if (now + lifetime < oldExpiry) {
    wheelUnlink(m);
    wheelLink(m, effectiveExpiry(r));
  }
  emit(wasInbound ? A.EVENT_REFRESH : A.EVENT_CREATE, m);
  statAdd(wasInbound ? A.STATS_REFRESHED : A.STATS_CREATED, 1);
}

/** Removes the MAP part; the mapping ends unless a PEER part keeps it. */
// ---------------------------------------------------------------------------
// PORT_SET [RFC 7753]: a set of n internal ports [I, I+n) mapped onto n consecutive
// external ports inside one of the subscriber's blocks — n single-port mappings created,
// renewed and deleted together (persistence and the dataplane see n mappings).
// n ≤ the size asked, portSetMax, the block size and the subscriber's quota left; it
// stops before the first internal port that already has a mapping, and halves until a
// free run is found (at least one port). P = 1: the external run starts on the parity of
// I. A set of one is answered as a single-port MAP, without PORT_SET.
// ---------------------------------------------------------------------------
const setMembers = memory.data(<i32>(A.PORT_SET_LIMIT * 4), 4); // u32 per member (no allocation on the packet path)


/** Can the n ports from `start` on `pool` all be given (free, allowed, inside one block)? */
function runFree(pool: u32, protocol: u32, start: u32, n: u32): bool {
  if (start < portMin || start + n - 1 > 65535 || blockOf(start) != blockOf(start + n - 1)) return false;
  for (let k: u32 = 0; k < n; k++) {
    if (portForbidden(protocol, start + k) || findExternal(pool, protocol, start + k) != 0) return false;
  }
  return true;
}

/** A run of n free ports in block `block` of `pool` (random start, parity kept if asked); sets allocPort, or returns false. */
function runInBlock(pool: u32, protocol: u32, block: u32, n: u32, parity: bool, internalPort: u32): bool {
  const first = blockStart(block);
  const span: u32 = first + blockSize - 1 > 65535 ? 65536 - first : blockSize;
  if (n > span) return false;
  const starts: u32 = span - n + 1;
  const offset = randomBelow(starts);
  for (let i: u32 = 0; i < starts; i++) {
    const start = first + (offset + i) % starts;
    if (parity && (start & 1) != (internalPort & 1)) continue;
    if (runFree(pool, protocol, start, n)) {
      allocPool = pool;
      allocPort = start;
      allocReclaim = 0;
      return true;
    }
  }
  return false;
}

/** A run of n ports in the subscriber's blocks, else in a new block; sets alloc*. */
function tryRun(sub: u32, family: u32, protocol: u32, n: u32, parity: bool, internalPort: u32): bool {
  let pool = NO_POOL;
  if (sub != 0) {
    const s = subscribers.at(sub);
    pool = pairedPool(s, family);
    const familyBit: u32 = family != 0 ? BLOCK_FAMILY_BIT : 0;
    const count = <u32>load<u8>(s + S_BLOCK_COUNT);
    for (let k: u32 = 0; k < count && pool != NO_POOL; k++) {
      const entry = <u32>load<u16>(s + S_BLOCKS + (k << 1));
      if ((entry & BLOCK_FAMILY_BIT) != familyBit) continue;
      if (runInBlock(pool, protocol, entry & ~BLOCK_FAMILY_BIT, n, parity, internalPort)) {
        allocLease = false;
        return true;
      }
    }
    if (<u32>load<u8>(s + S_BLOCK_COUNT) >= maxBlocksPerSubscriber) return false;
  }
  if (pool == NO_POOL) pool = pickPool(family);
  if (pool == NO_POOL) return false;
  // A new block: the next ones the random stack would hand out.
  const stack = <usize>load<u32>(poolStack + (<usize>pool << 2));
  const free = freeCount(pool);
  for (let depth: u32 = 1; depth <= free && depth <= 4; depth++) {
    if (runInBlock(pool, protocol, <u32>load<u16>(stack + (<usize>(free - depth) << 1)), n, parity, internalPort)) {
      allocLease = true;
      return true;
    }
  }
  return false;
}

/** Live mappings of the set from internal port I: consecutive internal and external ports, same pool, this nonce. */
function setLength(addr: usize, protocol: u32, internalPort: u32, family: u32, realm: u32, max: u32, first: u32): u32 {
  const r0 = mappings.at(first);
  const pool = <u32>load<u16>(r0 + M_POOL);
  const ext = <u32>load<u16>(r0 + M_EXTERNAL_PORT);
  let n: u32 = 1;
  while (n < max && internalPort + n <= 65535) {
    const m = findMapping(addr, protocol, internalPort + n, family, realm);
    if (m == 0) break;
    const r = mappings.at(m);
    if (<u32>load<u16>(r + M_POOL) != pool || <u32>load<u16>(r + M_EXTERNAL_PORT) != ext + n || (load<u8>(r + M_FLAGS) & A.MAPF_STATIC) != 0 ||
        !nonceEqual(r + M_NONCE, r0 + M_NONCE)) break;
    n++;
  }
  return n;
}

/** The PORT_SET option of the response (only for sets of two or more). */
function replyPortSet(slot: usize, n: u32, internalPort: u32, parity: bool): void {
  if (n < 2) return;
  const o = scratch + 32;
  wr16(o + W.PORT_SET_SIZE, n);
  wr16(o + W.PORT_SET_FIRST_PORT, internalPort);
  store<u8>(o + W.PORT_SET_FLAGS, parity ? 1 : 0);
  appendOption(slot, W.OPTION_PORT_SET, o, W.PORT_SET_DATA_SIZE);
}

function handlePortSet(slot: usize, realm: u32): void {
  const d = data(slot);
  const requested = rd32(d + W.HDR_LIFETIME);
  const protocol = <u32>load<u8>(d + W.MP_PROTOCOL);
  const internalPort = rd16(d + W.MP_INTERNAL_PORT);
  const nonce = d + W.MP_NONCE;
  const family: u32 = isV4Mapped(d + W.MP_EXTERNAL_ADDR) ? 0 : 1;
  const addr = internalAddress(slot);
  const clientPort = <u32>load<u16>(slot + A.SLOT_SRC_PORT);
  const ps = d + <u32>load<u16>(slot + A.SLOT_PORT_SET);
  const asked = rd16(ps + W.PORT_SET_SIZE);
  const parity = (load<u8>(ps + W.PORT_SET_FLAGS) & 1) != 0;
  if (protocol == 0 || internalPort == 0 || !protocolSupported(protocol) || !poolHasFamily(family)) return fail(slot, W.RESULT_UNSUPP_PROTOCOL);
  let want = asked < portSetMax ? asked : portSetMax;
  if (want > blockSize) want = blockSize;
  if (want > 65536 - internalPort) want = 65536 - internalPort;
  let first = findMapping(addr, protocol, internalPort, family, realm);
  if (first != 0 && liveOrEnded(first) == 0) first = 0;

  if (first != 0 || requested == 0) {
    // Renewal or deletion of the set as one unit [7753 §4.1].
    if (first == 0) return finishSuccess(slot, 0, A.OPTBIT_THIRD_PARTY | A.OPTBIT_THIRD_PARTY_ID);
    const r0 = mappings.at(first);
    if (load<u8>(r0 + M_FLAGS) & A.MAPF_STATIC) {
      // A static on the first port: not deletable; asked again, it answers as itself (one
      // port, no PORT_SET), as a mirror of it on another shard does [6887 §11.3].
      if (requested == 0) return fail(slot, W.RESULT_NOT_AUTHORIZED);
      writeExternal(slot, first);
      return finishSuccess(slot, W.STATIC_MAPPING_LIFETIME, A.OPTBIT_THIRD_PARTY | A.OPTBIT_THIRD_PARTY_ID);
    }
    if (noncePolicy == A.NONCE_STRICT && hasInbound(r0) && !nonceEqual(r0 + M_NONCE, nonce)) {
      finishError(slot, W.RESULT_NOT_AUTHORIZED, load<u32>(r0 + M_MAP_EXPIRY) - now); // [6887 §11.3]
      return;
    }
    const n = setLength(addr, protocol, internalPort, family, realm, want, first);
    const lifetime = requested == 0 ? 0 : clampLifetime(requested, minLifetime);
    writeExternal(slot, first);
    // The members, collected first (a delete may free records).
    store<u32>(setMembers, first);
    for (let k: u32 = 1; k < n; k++) store<u32>(setMembers + (<usize>k << 2), findMapping(addr, protocol, internalPort + k, family, realm));
    for (let k: u32 = 0; k < n; k++) {
      const m = load<u32>(setMembers + (<usize>k << 2));
      if (requested == 0) {
        if (hasInbound(mappings.at(m))) removeInbound(m);
      } else {
        renewInbound(m, hasInbound(mappings.at(m)), nonce, clientPort, lifetime);
        noteRequester(slot, m);
      }
    }
    finishSuccess(slot, lifetime, MAP_ECHO);
    replyPortSet(slot, n, internalPort, parity);
    return;
  }

  // A new set.
  let sub = findSubscriber(addr, realm);
  const left = sub != 0 ? (load<u32>(subscribers.at(sub) + S_MAPPINGS) < mappingsPerSubscriber ? mappingsPerSubscriber - load<u32>(subscribers.at(sub) + S_MAPPINGS) : 0) : mappingsPerSubscriber;
  if (left == 0) return fail(slot, W.RESULT_USER_EX_QUOTA); // [6887 §17.2]
  let n = want < left ? want : left;
  for (let k: u32 = 1; k < n; k++) {
    if (findEndpoint(addr, realm, protocol, internalPort + k, family, false, 0) != 0 || findMirror(addr, realm, protocol, internalPort + k, family) != 0) {
      n = k; // internal ports already mapped (here, or statically on another shard) are not taken into the set
      break;
    }
  }
  if (mappings.capacity - mappings.live < n || (sub == 0 && subscribers.full())) return fail(slot, W.RESULT_NO_RESOURCES); // [RFC 6888 REQ-11]
  while (n > 1 && !tryRun(sub, family, protocol, n, parity, internalPort)) n >>= 1;
  if (n == 1 && !tryRun(sub, family, protocol, 1, parity, internalPort)) return fail(slot, sub != 0 && <u32>load<u8>(subscribers.at(sub) + S_BLOCK_COUNT) >= maxBlocksPerSubscriber ? W.RESULT_USER_EX_QUOTA : W.RESULT_NO_RESOURCES);
  if (sub == 0) {
    sub = createSubscriber(addr, realm);
    if (sub == 0) return fail(slot, W.RESULT_NO_RESOURCES);
  }
  const lifetime = clampLifetime(requested, minLifetime);
  let flags = A.MAPF_INBOUND;
  if (load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_THIRD_PARTY) flags |= A.MAPF_THIRD_PARTY;
  leaseAllocated(sub);
  const pool = allocPool;
  const start = allocPort;
  let m0: u32 = 0;
  for (let k: u32 = 0; k < n; k++) {
    const m = createMapping(sub, protocol, internalPort + k, family, pool, start + k, flags, clientPort);
    noteRequester(slot, m);
    const r = mappings.at(m);
    copy12(r + M_NONCE, nonce);
    store<u32>(r + M_MAP_EXPIRY, now + lifetime);
    wheelLink(m, now + lifetime);
    emit(A.EVENT_CREATE, m);
    if (k == 0) m0 = m;
  }
  writeExternal(slot, m0);
  finishSuccess(slot, lifetime, MAP_ECHO);
  replyPortSet(slot, n, internalPort, parity);
}

function removeInbound(m: u32): void {
  const r = mappings.at(m);
  const flags = <u32>load<u8>(r + M_FLAGS);
  if (flags & A.MAPF_OUTBOUND && load<u32>(r + M_OUT_EXPIRY) > now) {
    store<u8>(r + M_FLAGS, <u8>(flags & ~(A.MAPF_INBOUND | A.MAPF_PREFER_FAILURE)));
    store<u32>(r + M_MAP_EXPIRY, 0);
    // The mapping may now end sooner than the bucket it is filed in: re-file it.
    wheelUnlink(m);
    wheelLink(m, effectiveExpiry(r));
    freeFilters(r);
    emit(A.EVENT_DELETE, m);
    statAdd(A.STATS_DELETED, 1);
    return;
  }
  endMapping(m, A.EVENT_DELETE);
}

function handlePeer(slot: usize): void {
  const d = data(slot);
  const requested = rd32(d + W.HDR_LIFETIME);
  const protocol = <u32>load<u8>(d + W.MP_PROTOCOL);
  const internalPort = rd16(d + W.MP_INTERNAL_PORT);
  const sugPort = rd16(d + W.MP_EXTERNAL_PORT);
  const sugAddr = d + W.MP_EXTERNAL_ADDR;
  const nonce = d + W.MP_NONCE;
  const remote = d + W.PEER_REMOTE_ADDR;
  const remotePort = rd16(d + W.PEER_REMOTE_PORT);
  const family: u32 = isV4Mapped(sugAddr) ? 0 : 1;
  const addr = internalAddress(slot);
  const clientPort = <u32>load<u16>(slot + A.SLOT_SRC_PORT);
  if (!protocolSupported(protocol) || !poolHasFamily(family)) return fail(slot, W.RESULT_UNSUPP_PROTOCOL);
  const lifetime = clampLifetime(requested, peerMinLifetime);
  const realm = requestRealm(slot);
  if (realm == 0xffffffff) return fail(slot, W.RESULT_THIRD_PARTY_ID_UNKNOWN); // [7843 §4.1]
  const mirror = findMirror(addr, realm, protocol, internalPort, family);
  if (mirror != 0) {
    // Another shard's static: the flow leaves on its external address:port, which outlives
    // any PEER lifetime; nothing is recorded here (the owner's record forwards already).
    writeMirrorExternal(slot, mirrors.at(mirror));
    return finishSuccess(slot, lifetime, A.OPTBIT_THIRD_PARTY | A.OPTBIT_THIRD_PARTY_ID);
  }
  let m = findMapping(addr, protocol, internalPort, family, realm);
  if (m != 0 && liveOrEnded(m) == 0) m = 0;
  let sub = subscriberOf(m, addr, realm);
  let p: u32 = 0;
  if (m != 0) {
    p = findPeer(m, remote, remotePort);
    if (p != 0) {
      const pr = peers.at(p);
      const expiry = load<u32>(pr + P_EXPIRY);
      if (expiry > now && !nonceEqual(pr + P_NONCE, nonce)) {
        finishError(slot, W.RESULT_NOT_AUTHORIZED, expiry - now); // [6887 §12.3]
        return;
      }
    } else if (peers.full()) {
      return fail(slot, W.RESULT_NO_RESOURCES);
    }
  } else {
    if (sub != 0 && load<u32>(subscribers.at(sub) + S_MAPPINGS) >= mappingsPerSubscriber) return fail(slot, W.RESULT_USER_EX_QUOTA);
    if (peers.full()) return fail(slot, W.RESULT_NO_RESOURCES);
    // PEER always has PREFER_FAILURE semantics for its suggestion [6887 §12.3].
    const held = sub != 0 ? findHeld(addr, protocol, internalPort, family, nonce, realm) : 0;
    if (held != 0) {
      if (!reclaimHeld(held, sugAddr, sugPort, sugPort != 0)) return fail(slot, W.RESULT_CANNOT_PROVIDE_EXTERNAL);
    } else {
      const result = allocate(slot, sub, family, protocol, internalPort, sugAddr, sugPort, nonce, sugPort != 0);
      if (result != 0) return fail(slot, result);
    }
    if (sub == 0) {
      sub = createSubscriber(addr, realm);
      if (sub == 0) return fail(slot, W.RESULT_NO_RESOURCES);
    }
    let flags = A.MAPF_OUTBOUND;
    if (load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_THIRD_PARTY) flags |= A.MAPF_THIRD_PARTY;
    m = commitAllocation(sub, protocol, internalPort, family, flags, clientPort);
    copy12(mappings.at(m) + M_NONCE, nonce); // the creator's nonce keys its hold-down later
    wheelLink(m, now + lifetime);
  }
  const r = mappings.at(m);
  const newPeer = p == 0;
  if (p == 0) {
    p = peers.alloc();
    const pr = peers.at(p);
    store<u32>(pr + P_MAPPING, m);
    copy16(pr + P_REMOTE_ADDR, remote);
    store<u16>(pr + P_REMOTE_PORT, <u16>remotePort);
    store<u32>(pr + P_NEXT, load<u32>(r + M_PEERS));
    store<u32>(r + M_PEERS, p);
    peerIndex.insert(peerFp(m, remote, remotePort), p);
    statAdd(A.STATS_PEERS, 1);
  }
  const pr = peers.at(p);
  copy12(pr + P_NONCE, nonce);
  // PEER never shortens a lifetime [6887 §12.1, §15].
  let expiry = now + lifetime;
  const had = load<u32>(pr + P_EXPIRY);
  if (had > expiry) expiry = had;
  store<u32>(pr + P_EXPIRY, expiry);
  const flags = <u32>load<u8>(r + M_FLAGS);
  const created = (flags & A.MAPF_OUTBOUND) == 0 || load<u32>(r + M_OUT_EXPIRY) <= now;
  store<u8>(r + M_FLAGS, <u8>(flags | A.MAPF_OUTBOUND));
  if (expiry > load<u32>(r + M_OUT_EXPIRY)) store<u32>(r + M_OUT_EXPIRY, expiry);
  store<u16>(r + M_CLIENT_PORT, <u16>clientPort);
  noteRequester(slot, m);
  emit(created ? A.EVENT_CREATE : A.EVENT_REFRESH, m);
  if (!created) statAdd(A.STATS_REFRESHED, 1);
  if (!created && (newPeer || (load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_DESCRIPTION) != 0)) markChanged(m);
  writeExternal(slot, m);
  finishSuccess(slot, expiry - now, A.OPTBIT_THIRD_PARTY | A.OPTBIT_THIRD_PARTY_ID);
  applyDescription(slot, m);
  applyCheckpoint(slot, m);
}

// ---- NAT-PMP [RFC 6886 §3] ----
const zeroNonce = memory.data(16, 16);
// ::ffff:0.0.0.0, the IPv4 "any address" suggestion NAT-PMP requests amount to.
const anyV4 = memory.data<u8>([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0]);

function natPmpResult(pcp: u32): u32 {
  if (pcp == W.RESULT_NOT_AUTHORIZED) return W.NATPMP_RESULT_NOT_AUTHORIZED;
  if (pcp == W.RESULT_UNSUPP_PROTOCOL || pcp == W.RESULT_NETWORK_FAILURE) return W.NATPMP_RESULT_NETWORK_FAILURE;
  return W.NATPMP_RESULT_NO_RESOURCES;
}

function handleNatPmp(slot: usize): void {
  const d = data(slot);
  const opcode = <u32>load<u8>(slot + A.SLOT_OPCODE);
  const addr = slot + A.SLOT_SRC_ADDR;
  let sub = findSubscriber(addr, 0);
  if (opcode == W.NATPMP_OP_ADDRESS) {
    let pool = sub != 0 ? pairedPool(subscribers.at(sub), 0) : NO_POOL;
    if (pool == NO_POOL) pool = pickPool(0);
    if (pool == NO_POOL) return finishNatPmpAddress(slot, W.NATPMP_RESULT_NETWORK_FAILURE, 0);
    return finishNatPmpAddress(slot, W.NATPMP_RESULT_SUCCESS, rd32(poolAddr(pool) + 12));
  }
  const protocol: u32 = opcode == W.NATPMP_OP_MAP_UDP ? W.PROTO_UDP : W.PROTO_TCP;
  const internalPort = rd16(d + W.NATPMP_INTERNAL_PORT);
  const sugPort = rd16(d + W.NATPMP_SUGGESTED_PORT);
  const requested = rd32(d + W.NATPMP_REQ_LIFETIME);
  const clientPort = <u32>load<u16>(slot + A.SLOT_SRC_PORT);
  if (requested == 0) {
    // Delete one [6886 §3.4], or all of this protocol for internal port 0.
    // Another shard's static of the port (or, for all ports, any of them) is not deletable.
    let result = (internalPort != 0 ? findMirror(addr, 0, protocol, internalPort, 0) != 0 : hasMirrors(addr, protocol)) ? W.NATPMP_RESULT_NOT_AUTHORIZED : W.NATPMP_RESULT_SUCCESS;
    if (sub != 0) {
      if (internalPort != 0) {
        const m = findMapping(addr, protocol, internalPort, 0);
        if (m != 0 && liveOrEnded(m) != 0) {
          const r = mappings.at(m);
          if (load<u8>(r + M_FLAGS) & A.MAPF_STATIC) result = W.NATPMP_RESULT_NOT_AUTHORIZED;
          else if (hasInbound(r)) removeInbound(m);
        }
      } else {
        let m = load<u32>(subscribers.at(sub) + S_LIST);
        while (m != 0) {
          const r = mappings.at(m);
          const next = load<u32>(r + M_SUB_NEXT);
          const flags = <u32>load<u8>(r + M_FLAGS);
          if (<u32>load<u8>(r + M_PROTOCOL) == protocol && <u32>load<u8>(r + M_FAMILY) == 0 && (flags & A.MAPF_HELD) == 0) {
            if (flags & A.MAPF_STATIC) result = W.NATPMP_RESULT_NOT_AUTHORIZED;
            else if (hasInbound(r)) removeInbound(m);
          }
          m = next;
        }
      }
    }
    return finishNatPmpMap(slot, result, 0, 0);
  }
  if (internalPort == 0) return finishNatPmpMap(slot, W.NATPMP_RESULT_NOT_AUTHORIZED, 0, 0);
  if (!protocolSupported(protocol)) return finishNatPmpMap(slot, W.NATPMP_RESULT_NOT_AUTHORIZED, 0, 0);
  if (!poolHasFamily(0)) return finishNatPmpMap(slot, W.NATPMP_RESULT_NETWORK_FAILURE, 0, 0);
  const mirror = findMirror(addr, 0, protocol, internalPort, 0);
  if (mirror != 0) return finishNatPmpMap(slot, W.NATPMP_RESULT_SUCCESS, <u32>load<u16>(mirrors.at(mirror) + MR_EXTERNAL_PORT), W.STATIC_MAPPING_LIFETIME);
  // Never longer than asked [6886 §3.3]; minLifetime is a PCP rule [6887 §15].
  const lifetime = clampLifetime(requested, 1);
  let m = sub != 0 ? findMapping(addr, protocol, internalPort, 0) : 0;
  if (m != 0 && liveOrEnded(m) == 0) {
    m = 0;
    sub = findSubscriber(addr, 0);
  }
  if (m != 0) {
    // An existing mapping of the endpoint keeps its port [6886 §3.3]; NAT-PMP has no nonce.
    const r = mappings.at(m);
    const flags = <u32>load<u8>(r + M_FLAGS);
    if (flags & A.MAPF_STATIC) return finishNatPmpMap(slot, W.NATPMP_RESULT_SUCCESS, <u32>load<u16>(r + M_EXTERNAL_PORT), W.STATIC_MAPPING_LIFETIME);
    const wasInbound = hasInbound(r);
    // NAT-PMP has no nonce: a part it adds gets none, a refresh keeps the stored one.
    renewInbound(m, wasInbound, wasInbound ? r + M_NONCE : zeroNonce, clientPort, lifetime);
    return finishNatPmpMap(slot, W.NATPMP_RESULT_SUCCESS, <u32>load<u16>(r + M_EXTERNAL_PORT), lifetime);
  }
  if (sub != 0 && load<u32>(subscribers.at(sub) + S_MAPPINGS) >= mappingsPerSubscriber) return finishNatPmpMap(slot, W.NATPMP_RESULT_NO_RESOURCES, 0, 0);
  // The suggestion is a request for a port on the subscriber's address ("any" address).
  const held = sub != 0 ? findHeld(addr, protocol, internalPort, 0, zeroNonce) : 0;
  if (held != 0) {
    reclaimHeld(held, anyV4, sugPort, false);
  } else {
    const result = allocate(slot, sub, 0, protocol, internalPort, anyV4, sugPort, zeroNonce, false);
    if (result != 0) return finishNatPmpMap(slot, natPmpResult(result), 0, 0);
  }
  if (sub == 0) {
    sub = createSubscriber(addr, 0);
    if (sub == 0) return finishNatPmpMap(slot, W.NATPMP_RESULT_NO_RESOURCES, 0, 0);
  }
  m = commitAllocation(sub, protocol, internalPort, 0, A.MAPF_INBOUND | A.MAPF_NATPMP, clientPort);
  const r = mappings.at(m);
  store<u32>(r + M_MAP_EXPIRY, now + lifetime);
  wheelLink(m, now + lifetime);
  emit(A.EVENT_CREATE, m);
  finishNatPmpMap(slot, W.NATPMP_RESULT_SUCCESS, <u32>load<u16>(r + M_EXTERNAL_PORT), lifetime);
}

// ---------------------------------------------------------------------------
// Batch entry: codec, then the engine for every PARSED slot.
// ---------------------------------------------------------------------------
let touched: u64 = 0;
// 0 off, 1 on, 2 auto: on once the mapping table outgrows the caches. Measured on the
// reference machine (bench/results/engine-*.json): +21% refresh throughput at 10M
// mappings, −7% at 1M, where the tables still sit in the last-level cache.
const PREFETCH_AUTO_RECORDS: u32 = 4 << 20;
@inline function prefetchOn(): bool {
  return prefetchMode == 1 || (prefetchMode == 2 && mappings.used >= PREFETCH_AUTO_RECORDS);
}

/** Key fields of a PARSED slot: internal address, protocol, internal port, external family. */
@inline function slotProtocol(slot: usize): u32 {
  if (load<u8>(slot + A.SLOT_VERSION) == W.NATPMP_VERSION) {
    return load<u8>(slot + A.SLOT_OPCODE) == W.NATPMP_OP_MAP_UDP ? W.PROTO_UDP : W.PROTO_TCP;
  }
  return <u32>load<u8>(data(slot) + W.MP_PROTOCOL);
}
@inline function slotInternalPort(slot: usize): u32 {
  const d = data(slot);
  return load<u8>(slot + A.SLOT_VERSION) == W.NATPMP_VERSION ? rd16(d + W.NATPMP_INTERNAL_PORT) : rd16(d + W.MP_INTERNAL_PORT);
}
@inline function slotFamily(slot: usize): u32 {
  if (load<u8>(slot + A.SLOT_VERSION) == W.NATPMP_VERSION) return 0;
  return isV4Mapped(data(slot) + W.MP_EXTERNAL_ADDR) ? 0 : 1;
}
@inline function slotAddress(slot: usize): usize {
  return load<u8>(slot + A.SLOT_VERSION) == W.NATPMP_VERSION ? slot + A.SLOT_SRC_ADDR : internalAddress(slot);
}
@inline function isParsed(slot: usize): bool {
  return load<u8>(slot + A.SLOT_VERDICT) == A.VERDICT_PARSED;
}

/**
 * Warms the cache for a batch in short stages (mapping index, then mapping and subscriber
 * records), so the cache misses of different datagrams overlap
 * instead of queueing behind each other inside one long handler. At millions of mappings
 * every lookup misses the cache; this is what keeps the batch path fast there.
 */
function prefetch(first: u32, end: u32): void {
  let acc: u64 = 0;
  const base = slotsBase();
  for (let i = first; i < end; i++) {
    const slot = base + <usize>i * A.SLOT_SIZE;
    if (!isParsed(slot)) continue;
    const fp = internalFp(slotAddress(slot), 0, slotProtocol(slot), slotInternalPort(slot), slotFamily(slot));
    acc += internalIndex.entryAt(internalIndex.home(fp));
  }
  for (let i = first; i < end; i++) {
    const slot = base + <usize>i * A.SLOT_SIZE;
    if (!isParsed(slot)) continue;
    acc += findMapping(slotAddress(slot), slotProtocol(slot), slotInternalPort(slot), slotFamily(slot));
  }
  touched += acc; // keeps the loads
}

let dataplaneDown = false;

/** While the dataplane cannot be programmed, MAP, PEER and NAT-PMP requests get NETWORK_FAILURE [6887 §7.4]. */
export function setDataplaneDown(down: bool): void {
  dataplaneDown = down;
}

export function serveRange(first: u32, count: u32, epoch: u32, at: u32): u32 {
  now = at;
  processRange(first, count, epoch);
  if (first >= A.SLOT_COUNT) return 0;
  const end = count < A.SLOT_COUNT - first ? first + count : A.SLOT_COUNT;
  if (initialised && poolCount != 0 && end - first > 1 && prefetchOn()) prefetch(first, end);
  let replies: u32 = 0;
  for (let i = first; i < end; i++) {
    const slot = slotsBase() + <usize>i * A.SLOT_SIZE;
    if (load<u8>(slot + A.SLOT_VERDICT) == A.VERDICT_PARSED) {
      if (!initialised || poolCount == 0 || dataplaneDown) {
        // No tables, no external address yet, or the NAT device unreachable: the NAT cannot serve [6887 §7.4].
        if (load<u8>(slot + A.SLOT_VERSION) == W.NATPMP_VERSION) {
          if (load<u8>(slot + A.SLOT_OPCODE) == W.NATPMP_OP_ADDRESS) finishNatPmpAddress(slot, W.NATPMP_RESULT_NETWORK_FAILURE, 0);
          else finishNatPmpMap(slot, W.NATPMP_RESULT_NETWORK_FAILURE, 0, 0);
        } else {
          fail(slot, W.RESULT_NETWORK_FAILURE);
        }
      } else if (load<u8>(slot + A.SLOT_VERSION) == W.NATPMP_VERSION) {
        handleNatPmp(slot);
      } else if (load<u8>(slot + A.SLOT_OPCODE) == W.OP_MAP) {
        handleMap(slot);
      } else {
        handlePeer(slot);
      }
    }
    if (load<u8>(slot + A.SLOT_VERDICT) == A.VERDICT_REPLY) replies++;
  }
  return replies;
}

// ---------------------------------------------------------------------------
// Renumbering: an address leaves the pool; its mappings move to the other addresses and
// their clients are told by Mapping Update messages [6887 §14.2].
// ---------------------------------------------------------------------------
let rehoming: bool = false; // mappings may sit on retired addresses
let rehomeCursor: u32 = 0;
let rehomeLast: u32 = 0;

/**
 * Takes pool address `pool` out of service: nothing new is leased there, holds and static
 * mappings on it end now, its block leases end. Returns how many mappings are left to
 * move with rehomeNext().
 */
export function poolRetire(pool: u32, at: u32): u32 {
  if (!initialised || pool >= poolCount || retired(pool)) return 0;
  now = at;
  store<u8>(poolRetired + pool, 1);
  dropMirrorsOf(0, poolAddr(pool)); // other shards' statics there end too
  let live: u32 = 0;
  for (let m: u32 = 1; m <= mappings.used; m++) {
    const r = mappings.at(m);
    if (load<u32>(r + M_SUB) == 0 || <u32>load<u16>(r + M_POOL) != pool) continue;
    const flags = <u32>load<u8>(r + M_FLAGS);
    if (flags & A.MAPF_HELD) releaseHold(m); // protects a port nobody can be given any more
    else if (flags & A.MAPF_STATIC) endMapping(m, A.EVENT_DELETE, false); // names the address
    else live++;
  }
  const family = <u32>load<u8>(poolFamily + pool);
  const familyBit: u32 = family != 0 ? BLOCK_FAMILY_BIT : 0;
  for (let sub: u32 = 1; sub <= subscribers.used; sub++) {
    const s = subscribers.at(sub);
    const count = <u32>load<u8>(s + S_BLOCK_COUNT);
    if (count == 0 || pairedPool(s, family) != pool) continue;
    let kept: u32 = 0;
    for (let k: u32 = 0; k < count; k++) {
      const e = <u32>load<u16>(s + S_BLOCKS + (k << 1));
      if ((e & BLOCK_FAMILY_BIT) == familyBit) {
        store<u32>(ownerAt(pool, e & ~BLOCK_FAMILY_BIT), 0);
        statAdd(A.STATS_BLOCKS, -1);
      } else {
        store<u16>(s + S_BLOCKS + (kept << 1), <u16>e);
        kept++;
      }
    }
    store<u8>(s + S_BLOCK_COUNT, <u8>kept);
    setPaired(s, family, NO_POOL);
    freeSubscriberIfEmpty(sub);
  }
  rehoming = true;
  rehomeCursor = 1; // one walk covers every retired address
  return live;
}

/**
 * Moves the next mapping off the retiring address and writes the Mapping Update messages
 * for it into slots 0.. (destination in SLOT_SRC_ADDR/PORT, bytes in the data area, Epoch
 * `epoch`); returns how many, or 0xffffffff when no mapping is left. rehomeMapping()
 * names the mapping just handled.
 */
export function rehomeNext(at: u32, epoch: u32): u32 {
  now = at;
  while (rehoming && rehomeCursor <= mappings.used) {
    const m = rehomeCursor++;
    const r = mappings.at(m);
    if (load<u32>(r + M_SUB) == 0 || !retired(<u32>load<u16>(r + M_POOL))) continue;
    if (load<u8>(r + M_FLAGS) & (A.MAPF_HELD | A.MAPF_STATIC)) continue; // ended since: the hold runs out there
    if (liveOrEnded(m) == 0) continue;
    rehomeLast = m;
    return rehome(m, epoch);
  }
  rehoming = false;
  return 0xffffffff;
}

export function rehomeMapping(): u32 {
  return rehomeLast;
}

let rehomedFrom: u32 = 0;

/** External key the last mapping rehome() moved had before: protocol << 24 | pool index << 16 | port (persistence writes its end). */
export function rehomeFrom(): u32 {
  return rehomedFrom;
}

function rehome(m: u32, epoch: u32): u32 {
  const r = mappings.at(m);
  const sub = load<u32>(r + M_SUB);
  const flags = <u32>load<u8>(r + M_FLAGS);
  const family = <u32>load<u8>(r + M_FAMILY);
  const protocol = <u32>load<u8>(r + M_PROTOCOL);
  const internalPort = <u32>load<u16>(r + M_INTERNAL_PORT);
  // A THIRD_PARTY mapping's updates go to its requester; one not recorded (table full)
  // learns from the Epoch reset.
  const tell = (flags & A.MAPF_THIRD_PARTY) == 0 || requesters.of(m) != 0;
  if (flags & A.MAPF_PREFER_FAILURE) {
    // It cannot keep its external address:port: CANNOT_PROVIDE_EXTERNAL, and it ends [6887 §14.2].
    const n = tell ? updateMessages(m, W.RESULT_CANNOT_PROVIDE_EXTERNAL, epoch) : 0;
    endMapping(m, A.EVENT_DELETE, false);
    return n;
  }
  if (!tryOwnBlocks(sub, family, protocol, internalPort, r + M_NONCE) && tryNewBlock(sub, family, protocol, internalPort) != 0) {
    endMapping(m, A.EVENT_DELETE, false); // no room elsewhere (quota or pool exhausted)
    return 0;
  }
  leaseAllocated(sub);
  const oldPool = <u32>load<u16>(r + M_POOL);
  const oldPort = <u32>load<u16>(r + M_EXTERNAL_PORT);
  rehomedFrom = (protocol << 24) | (oldPool << 16) | oldPort;
  externalIndex.remove(externalKey(oldPool, protocol, oldPort), m);
  usageAdd(oldPool, oldPort, -1);
  store<u16>(r + M_POOL, <u16>allocPool);
  store<u16>(r + M_EXTERNAL_PORT, <u16>allocPort);
  externalIndex.insert(externalKey(allocPool, protocol, allocPort), m);
  usageAdd(allocPool, allocPort, 1);
  emit(A.EVENT_UPDATE, m);
  return tell ? updateMessages(m, W.RESULT_SUCCESS, epoch) : 0;
}

@inline function remaining(expiry: u32): u32 {
  return expiry > now ? expiry - now : 0;
}

/**
 * Slot `i` as an outgoing message of `size` bytes to the mapping's client: its address and
 * the port of its last request, or for a THIRD_PARTY mapping its requester `to`, with the
 * THIRD_PARTY option (and THIRD_PARTY_ID in a realm) as its responses carry [6887 §13.1, §14.2].
 */
function messageSlot(i: u32, s: usize, r: usize, to: u32, opcode: u32, result: u32, lifetime: u32, epoch: u32, size: u32): usize {
  const slot = slotsBase() + <usize>i * A.SLOT_SIZE;
  const q = to != 0 ? requesters.at(to) : 0;
  copy16(slot + A.SLOT_SRC_ADDR, q != 0 ? q + RQ_ADDR : s + S_ADDR);
  store<u16>(slot + A.SLOT_SRC_PORT, q != 0 ? load<u16>(q + RQ_PORT) : load<u16>(r + M_CLIENT_PORT));
  store<u8>(slot + A.SLOT_VERDICT, A.VERDICT_REPLY);
  store<u16>(slot + A.SLOT_RESULT, <u16>result);
  store<u8>(slot + A.SLOT_VERSION, W.PCP_VERSION);
  store<u8>(slot + A.SLOT_OPCODE, <u8>opcode);
  const d = data(slot);
  memory.fill(d, 0, W.PEER_MIN_SIZE);
  store<u8>(d + W.HDR_VERSION, W.PCP_VERSION);
  store<u8>(d + W.HDR_OPCODE, <u8>(opcode | W.R_BIT));
  store<u8>(d + W.HDR_RESULT, <u8>result);
  wr32(d + W.HDR_LIFETIME, lifetime);
  wr32(d + W.HDR_EPOCH, epoch);
  copy12(d + W.MP_NONCE, r + M_NONCE);
  store<u8>(d + W.MP_PROTOCOL, load<u8>(r + M_PROTOCOL));
  wr16(d + W.MP_INTERNAL_PORT, <u32>load<u16>(r + M_INTERNAL_PORT));
  wr16(d + W.MP_EXTERNAL_PORT, <u32>load<u16>(r + M_EXTERNAL_PORT));
  copy16(d + W.MP_EXTERNAL_ADDR, poolAddr(<u32>load<u16>(r + M_POOL)));
  store<u16>(slot + A.SLOT_RESP_LEN, <u16>size);
  if (q != 0) {
    appendOption(slot, W.OPTION_THIRD_PARTY, s + S_ADDR, W.THIRD_PARTY_DATA_SIZE);
    const realm = load<u32>(s + S_REALM);
    if (realm != 0) appendOption(slot, W.OPTION_THIRD_PARTY_ID, realms.at(realm) + RL_ID, <u32>load<u8>(realms.at(realm) + RL_LENGTH));
  }
  return slot;
}

/**
 * Unsolicited responses for mapping `m`, in the form of normal ones: a MAP response for
 * its MAP part (with its FILTERs), a PEER response per PEER; no optional options [6887 §14.2].
 */
function updateMessages(m: u32, result: u32, epoch: u32): u32 {
  const r = mappings.at(m);
  const s = subscribers.at(load<u32>(r + M_SUB));
  const to = (load<u8>(r + M_FLAGS) & A.MAPF_THIRD_PARTY) != 0 ? requesters.of(m) : 0;
  let n: u32 = 0;
  if (load<u8>(r + M_FLAGS) & A.MAPF_INBOUND) {
    const lifetime = result == W.RESULT_SUCCESS ? remaining(load<u32>(r + M_MAP_EXPIRY)) : errorLifetime(result);
    const slot = messageSlot(n++, s, r, to, W.OP_MAP, result, lifetime, epoch, W.MAP_MIN_SIZE);
    const d = data(slot);
    let len = <u32>load<u16>(slot + A.SLOT_RESP_LEN);
    if (result == W.RESULT_SUCCESS) {
      for (let f = load<u32>(r + M_FILTERS); f != 0 && len + W.OPT_HEADER_SIZE + W.FILTER_DATA_SIZE <= W.PCP_MAX_MESSAGE; f = load<u32>(filters.at(f) + F_NEXT)) {
        const fr = filters.at(f);
        const o = d + len;
        store<u8>(o + W.OPT_CODE, W.OPTION_FILTER);
        store<u8>(o + W.OPT_RESERVED, 0);
        wr16(o + W.OPT_LENGTH, W.FILTER_DATA_SIZE);
        store<u8>(o + W.OPT_HEADER_SIZE, 0);
        store<u8>(o + W.OPT_HEADER_SIZE + W.FILTER_PREFIX_LENGTH, load<u8>(fr + F_PREFIX));
        wr16(o + W.OPT_HEADER_SIZE + W.FILTER_REMOTE_PORT, <u32>load<u16>(fr + F_PORT));
        copy16(o + W.OPT_HEADER_SIZE + W.FILTER_REMOTE_ADDR, fr + F_ADDR);
        len += W.OPT_HEADER_SIZE + W.FILTER_DATA_SIZE;
      }
    }
    store<u16>(slot + A.SLOT_RESP_LEN, <u16>len);
  }
  if (result != W.RESULT_SUCCESS) return n;
  for (let p = load<u32>(r + M_PEERS); p != 0 && n < A.SLOT_COUNT; p = load<u32>(peers.at(p) + P_NEXT)) {
    const pr = peers.at(p);
    const slot = messageSlot(n++, s, r, to, W.OP_PEER, result, remaining(load<u32>(pr + P_EXPIRY)), epoch, W.PEER_MIN_SIZE);
    const d = data(slot);
    copy12(d + W.MP_NONCE, pr + P_NONCE);
    wr16(d + W.PEER_REMOTE_PORT, <u32>load<u16>(pr + P_REMOTE_PORT));
    copy16(d + W.PEER_REMOTE_ADDR, pr + P_REMOTE_ADDR);
  }
  return n;
}

// ---------------------------------------------------------------------------
// THIRD_PARTY requesters [6887 §13.1, §14.2]: where the request of a mapping created
// through THIRD_PARTY came from (the latest one), so a Mapping Update reaches it. Kept
// only for those mappings, in a side table indexed by mapping id (no field in every
// mapping record). Full: the mapping is served, its requester learns from the Epoch.
// ---------------------------------------------------------------------------
const RQ_PORT: u32 = 8; // u16
const RQ_ADDR: u32 = 12; // 16
const REQUESTER_SIZE: u32 = 28;
const requesters = new SideTable();

/** Room for `capacity` THIRD_PARTY requesters (0: none recorded); once, after engineInit. */
export function initRequesters(capacity: u32): bool {
  return requesters.init(capacity, REQUESTER_SIZE);
}

/** Records `addr`:`port` as the requester of THIRD_PARTY mapping `m` (no room: not recorded); true if that changed it. */
function setRequester(m: u32, addr: usize, port: u32): bool {
  const id = requesters.claim(m);
  if (id == 0) return false;
  const e = requesters.at(id);
  if (load<u16>(e + RQ_PORT) == <u16>port && load<u64>(e + RQ_ADDR) == load<u64>(addr) && load<u64>(e + RQ_ADDR + 8) == load<u64>(addr + 8)) return false;
  copy16(e + RQ_ADDR, addr);
  store<u16>(e + RQ_PORT, <u16>port);
  return true;
}

/** A request with THIRD_PARTY for a THIRD_PARTY mapping: its source is the requester now. */
function noteRequester(slot: usize, m: u32): void {
  if ((load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_THIRD_PARTY) == 0 || (load<u8>(mappings.at(m) + M_FLAGS) & A.MAPF_THIRD_PARTY) == 0) return;
  // A renewal from a new requester is journaled even when its refresh alone would wait.
  if (setRequester(m, slot + A.SLOT_SRC_ADDR, <u32>load<u16>(slot + A.SLOT_SRC_PORT))) markChanged(m);
}

// ---------------------------------------------------------------------------
// Static mirrors: a static mapping lives in the shard owning its external port's block,
// but its subscriber may send to any shard's listen address. Every other shard holds a
// mirror — internal endpoint → the static's external address:port — and answers from it
// as the owner answers from the static: MAP and NAT-PMP get that address:port with
// lifetime 0xFFFFFFFF (nonce echoed, not stored), a delete gets NOT_AUTHORIZED, and the
// internal port is never mapped dynamically here [6887 §11.3, §15.1; 6886 §3.3]. A
// mirror is not a mapping: no port leased, no event, not journaled, not listed, not sent
// to the dataplane (the owner's record does all that once). The host keeps the mirrors
// in step with the owners' statics (src/server/static-mirrors.ts).
// ---------------------------------------------------------------------------
const MR_NEXT_FREE: u32 = 0;
const MR_INTERNAL_ADDR: u32 = 4; // 16
const MR_EXTERNAL_ADDR: u32 = 20; // 16
const MR_EXTERNAL_PORT: u32 = 36; // u16
const MR_INTERNAL_PORT: u32 = 38; // u16
const MR_PROTOCOL: u32 = 40; // u8
const MR_FAMILY: u32 = 41; // u8
const MIRROR_SIZE: u32 = 44;
const mirrors = new Slab();
const mirrorIndex = new HashIndex();
let mirrorsOn = false;

/** The mirror of an endpoint (statics are in realm 0), or 0. */
function findMirror(addr: usize, realm: u32, protocol: u32, port: u32, family: u32): u32 {
  if (mirrors.live == 0 || realm != 0) return 0;
  const fp = internalFp(addr, 0, protocol, port, family);
  for (let p = mirrorIndex.first(fp); p >= 0; p = mirrorIndex.after(fp, p)) {
    const id = mirrorIndex.recordAt(p);
    const e = mirrors.at(id);
    if (<u32>load<u16>(e + MR_INTERNAL_PORT) == port && <u32>load<u8>(e + MR_PROTOCOL) == protocol &&
        <u32>load<u8>(e + MR_FAMILY) == family && addrEqual(e + MR_INTERNAL_ADDR, addr)) return id;
  }
  return 0;
}

function dropMirror(id: u32): void {
  const e = mirrors.at(id);
  mirrorIndex.remove(internalFp(e + MR_INTERNAL_ADDR, 0, <u32>load<u8>(e + MR_PROTOCOL), <u32>load<u16>(e + MR_INTERNAL_PORT), <u32>load<u8>(e + MR_FAMILY)), id);
  mirrors.release(id);
}

/** Drops the mirrors whose internal address is `addr` (0: any) or whose external address is `ext` (0: any). */
function dropMirrorsOf(addr: usize, ext: usize): void {
  for (let id: u32 = 1; mirrors.live != 0 && id <= mirrors.used; id++) {
    const e = mirrors.at(id);
    if (load<u8>(e + MR_PROTOCOL) == 0) continue; // free
    if ((addr == 0 || addrEqual(e + MR_INTERNAL_ADDR, addr)) && (ext == 0 || addrEqual(e + MR_EXTERNAL_ADDR, ext))) dropMirror(id);
  }
}

/**
 * Mirror of another shard's static mapping scratch[0..16]:internalPort → scratch[16..32]
 * (a pool address):externalPort. A live mapping of the endpoint here refuses it with
 * CANNOT_PROVIDE_EXTERNAL (as the owner refuses a static over a live mapping), or with
 * `replace` (a re-synchronisation: the static exists already) ends that mapping. Returns a PCP result code.
 */
export function mirrorAdd(protocol: u32, internalPort: u32, externalPort: u32, replace: bool): u32 {
  if (!initialised) return W.RESULT_NETWORK_FAILURE;
  if (protocol == 0 || internalPort == 0 || !protocolSupported(protocol)) return W.RESULT_UNSUPP_PROTOCOL;
  const pool = poolIndexOf(scratch + 16);
  if (pool == NO_POOL) return W.RESULT_CANNOT_PROVIDE_EXTERNAL;
  const family = <u32>load<u8>(poolFamily + pool);
  const existing = liveOrEnded(findMapping(scratch, protocol, internalPort, family));
  if (existing != 0) {
    if (!replace || (load<u8>(mappings.at(existing) + M_FLAGS) & A.MAPF_STATIC) != 0) return W.RESULT_CANNOT_PROVIDE_EXTERNAL;
    endMapping(existing, A.EVENT_DELETE);
  }
  if (!mirrorsOn) {
    mirrors.init(A.STATIC_MIRRORS_MAX, MIRROR_SIZE, MR_NEXT_FREE);
    mirrorIndex.init(A.STATIC_MIRRORS_MAX);
    mirrorsOn = true;
  }
  let id = findMirror(scratch, 0, protocol, internalPort, family);
  if (id == 0) {
    if (mirrors.full()) return W.RESULT_NO_RESOURCES;
    id = mirrors.alloc();
    const e = mirrors.at(id);
    copy16(e + MR_INTERNAL_ADDR, scratch);
    store<u16>(e + MR_INTERNAL_PORT, <u16>internalPort);
    store<u8>(e + MR_PROTOCOL, <u8>protocol);
    store<u8>(e + MR_FAMILY, <u8>family);
    mirrorIndex.insert(internalFp(scratch, 0, protocol, internalPort, family), id);
  }
  const e = mirrors.at(id);
  copy16(e + MR_EXTERNAL_ADDR, scratch + 16);
  store<u16>(e + MR_EXTERNAL_PORT, <u16>externalPort);
  return W.RESULT_SUCCESS;
}

/** Has `addr` a mirror for `protocol` on any internal port (IPv4 external: NAT-PMP)? */
function hasMirrors(addr: usize, protocol: u32): bool {
  for (let id: u32 = 1; mirrors.live != 0 && id <= mirrors.used; id++) {
    const e = mirrors.at(id);
    if (<u32>load<u8>(e + MR_PROTOCOL) == protocol && load<u8>(e + MR_FAMILY) == 0 && addrEqual(e + MR_INTERNAL_ADDR, addr)) return true;
  }
  return false;
}

/** Drops every mirror (before the host lays them down again). */
export function mirrorsClear(): void {
  dropMirrorsOf(0, 0);
}

export function mirrorCount(): u32 {
  return mirrors.live;
}

/** A MAP for a mirrored endpoint, answered as the owner answers for its static [6887 §11.3, §15.1]. */
function mapFromMirror(slot: usize, id: u32, requested: u32, preferFailure: bool, sugAddr: usize, sugPort: u32): void {
  if (requested == 0) return fail(slot, W.RESULT_NOT_AUTHORIZED);
  const e = mirrors.at(id);
  if (preferFailure && !suggestionNames(e + MR_EXTERNAL_ADDR, <u32>load<u16>(e + MR_EXTERNAL_PORT), sugAddr, sugPort)) return fail(slot, W.RESULT_CANNOT_PROVIDE_EXTERNAL);
  writeMirrorExternal(slot, e);
  finishSuccess(slot, W.STATIC_MAPPING_LIFETIME, A.OPTBIT_THIRD_PARTY | A.OPTBIT_THIRD_PARTY_ID | A.OPTBIT_PREFER_FAILURE);
}

function writeMirrorExternal(slot: usize, e: usize): void {
  const d = data(slot);
  wr16(d + W.MP_EXTERNAL_PORT, <u32>load<u16>(e + MR_EXTERNAL_PORT));
  copy16(d + W.MP_EXTERNAL_ADDR, e + MR_EXTERNAL_ADDR);
}

// ---------------------------------------------------------------------------
// Operator operations (control channel, tests). Addresses come through scratch.
// ---------------------------------------------------------------------------

/**
 * Static mapping of scratch[0..16] (internal) : internalPort → scratch[16..32] (external,
 * a pool address) : externalPort. Returns a PCP result code.
 */
export function addStatic(protocol: u32, internalPort: u32, externalPort: u32): u32 {
  if (!initialised) return W.RESULT_NETWORK_FAILURE;
  if (protocol == 0 || internalPort == 0 || !protocolSupported(protocol)) return W.RESULT_UNSUPP_PROTOCOL;
  const pool = poolIndexOf(scratch + 16);
  if (pool == NO_POOL) return W.RESULT_CANNOT_PROVIDE_EXTERNAL;
  const family = <u32>load<u8>(poolFamily + pool);
  const existing = findMapping(scratch, protocol, internalPort, family);
  if (existing != 0 && liveOrEnded(existing) != 0) return W.RESULT_CANNOT_PROVIDE_EXTERNAL;
  if (findMirror(scratch, 0, protocol, internalPort, family) != 0) return W.RESULT_CANNOT_PROVIDE_EXTERNAL; // static on another shard
  let sub = findSubscriber(scratch, 0);
  if (mappings.full() || (sub == 0 && subscribers.full())) return W.RESULT_NO_RESOURCES;
  if (!tryPort(sub, pool, protocol, externalPort, internalPort, zeroNonce) || allocReclaim != 0) return W.RESULT_CANNOT_PROVIDE_EXTERNAL;
  if (sub == 0) sub = createSubscriber(scratch, 0);
  const m = commitAllocation(sub, protocol, internalPort, family, A.MAPF_STATIC, 0);
  emit(A.EVENT_CREATE, m);
  return W.RESULT_SUCCESS;
}

/**
 * Removes a static mapping of scratch[0..16] and its mirror; returns a PCP result code.
 * `hold` false: its port is free at once (a static taken back as it was being added).
 */
export function removeStatic(protocol: u32, internalPort: u32, family: u32, hold: bool): u32 {
  const mirror = findMirror(scratch, 0, protocol, internalPort, family);
  if (mirror != 0) dropMirror(mirror);
  const m = findMapping(scratch, protocol, internalPort, family);
  if (m == 0 || (load<u8>(mappings.at(m) + M_FLAGS) & A.MAPF_STATIC) == 0) return mirror != 0 ? W.RESULT_SUCCESS : W.RESULT_NOT_AUTHORIZED;
  endMapping(m, A.EVENT_DELETE, hold);
  return W.RESULT_SUCCESS;
}

/** Ends every live mapping of the subscriber at scratch[0..16] (realm 0); returns how many. */
export function deleteSubscriber(realm: u32): u32 {
  if (realm == 0) dropMirrorsOf(scratch, 0); // its statics end on their owners too
  const sub = findSubscriber(scratch, realm);
  if (sub == 0) return 0;
  let n: u32 = 0;
  let m = load<u32>(subscribers.at(sub) + S_LIST);
  while (m != 0) {
    const next = load<u32>(mappings.at(m) + M_SUB_NEXT);
    if ((load<u8>(mappings.at(m) + M_FLAGS) & A.MAPF_HELD) == 0) {
      endMapping(m, A.EVENT_DELETE);
      n++;
    }
    m = next;
  }
  return n;
}

/** Mapping id of scratch[0..16]'s endpoint in `realm` (0 if none). */
export function lookupMapping(protocol: u32, internalPort: u32, family: u32, realm: u32): u32 {
  return findMapping(scratch, protocol, internalPort, family, realm);
}

/** Mapping id holding an external address (pool index) and port (live or held; 0 if none). */
export function lookupExternal(pool: u32, protocol: u32, port: u32): u32 {
  return findExternal(pool, protocol, port);
}

/** Highest mapping record id ever used (listing walks ids 1..this). */
export function mappingsUsed(): u32 {
  return mappings.used;
}

/** Writes mapping `m`'s description (event layout) into scratch[0..48]; false if `m` is not in use. */
export function describeMapping(m: u32): bool {
  if (m == 0 || m > mappings.used) return false;
  const r = mappings.at(m);
  if (load<u32>(r + M_SUB) == 0) return false;
  describeInto(scratch, m);
  return true;
}

const listOut = memory.data(<i32>(A.LIST_MAX * A.EVENT_SIZE), 16);
let listNextId: u32 = 0;

function kindOf(flags: u32): u32 {
  return flags & A.MAPF_STATIC ? A.LISTKIND_STATIC : flags & A.MAPF_HELD ? A.LISTKIND_HELD : A.LISTKIND_DYNAMIC;
}

/**
 * Listing without a call per record: visits record ids from `from` on (at most `scan` of
 * them), writes those the selector accepts (at most `limit` ≤ LIST_MAX) into listBase()
 * in event layout, and returns how many; listNext() is the id to go on from (0: done).
 * Selector: `sel` bits LISTSEL_*, the internal address in scratch[0..16].
 */
export function listScan(from: u32, scan: u32, limit: u32, sel: u32, protocol: u32, pool: u32, kind: u32): u32 {
  const used = mappings.used;
  if (limit > A.LIST_MAX) limit = A.LIST_MAX;
  let m: u32 = from < 1 ? 1 : from;
  const end = min<u32>(used + 1, m + scan);
  let n: u32 = 0;
  for (; m < end && n < limit; m++) {
    const r = mappings.at(m);
    const sub = load<u32>(r + M_SUB);
    if (sub == 0) continue;
    if (sel & A.LISTSEL_PROTOCOL && <u32>load<u8>(r + M_PROTOCOL) != protocol) continue;
    if (sel & A.LISTSEL_POOL && <u32>load<u16>(r + M_POOL) != pool) continue;
    if (sel & A.LISTSEL_KIND && kindOf(load<u8>(r + M_FLAGS)) != kind) continue;
    if (sel & A.LISTSEL_INTERNAL && !addrEqual(subscribers.at(sub) + S_ADDR, scratch)) continue;
    describeInto(listOut + n * A.EVENT_SIZE, m);
    n++;
  }
  listNextId = m > used ? 0 : m;
  return n;
}

export function listBase(): usize {
  return listOut;
}

export function listNext(): u32 {
  return listNextId;
}

/**
 * Writes FILTER `k` (0-based) of mapping `m` into scratch: prefix length (u8), port (u16
 * at 2), remote address (16 bytes at 4). False past the last one. The dataplane enforces
 * these [6887 §13.3].
 */
export function mappingFilter(m: u32, k: u32): bool {
  if (m == 0 || m > mappings.used) return false;
  let f = load<u32>(mappings.at(m) + M_FILTERS);
  while (f != 0 && k > 0) {
    f = load<u32>(filters.at(f) + F_NEXT);
    k--;
  }
  if (f == 0) return false;
  memory.copy(scratch, filters.at(f), 20);
  return true;
}

/** Live mappings of the subscriber at scratch[0..16] (0 if unknown). */
export function subscriberMappings(realm: u32): u32 {
  const sub = findSubscriber(scratch, realm);
  return sub != 0 ? load<u32>(subscribers.at(sub) + S_MAPPINGS) : 0;
}

/** Blocks leased by the subscriber at scratch[0..16]. */
export function subscriberBlocks(realm: u32): u32 {
  const sub = findSubscriber(scratch, realm);
  return sub != 0 ? <u32>load<u8>(subscribers.at(sub) + S_BLOCK_COUNT) : 0;
}


// ---------------------------------------------------------------------------
// Persistence (src/persist/): mapping state out as portable records (PREC_*, one per
// external key: a journal of what each batch changed, or the whole table in chunks for a
// snapshot) and back in at start-up. Times cross as wall-clock seconds: engine time t is
// wall time t + wallOffset for the run that writes or reads.
// ---------------------------------------------------------------------------
let persistOut: usize = 0; // PERSIST_BUFFER bytes, allocated on first use
let persistLength: u32 = 0;
let persistNextId: u32 = 0;
const restoreDrops = memory.data(<i32>(A.RESTORE_REASON_LIMIT * 4), 4);

function persistBuffer(): usize {
  if (persistOut == 0) persistOut = heap.alloc(A.PERSIST_BUFFER);
  return persistOut;
}

export function persistBase(): usize {
  return persistBuffer();
}

/** Bytes the last persistEvents / persistTable call wrote at persistBase(). */
export function persistBytes(): u32 {
  return persistLength;
}

/** Record id persistTable goes on from (0: the table is done). */
export function persistNext(): u32 {
  return persistNextId;
}

@inline function toWall(t: u32, wallOffset: u32): u32 {
  return t == 0 ? 0 : t + wallOffset;
}

function peerCount(r: usize): u32 {
  let n: u32 = 0;
  for (let p = load<u32>(r + M_PEERS); p != 0; p = load<u32>(peers.at(p) + P_NEXT)) n++;
  return n;
}

/** Size of mapping `m`'s record. */
function recordSize(m: u32): u32 {
  const r = mappings.at(m);
  const d = descriptions.of(m);
  const realm = load<u32>(subscribers.at(load<u32>(r + M_SUB)) + S_REALM);
  return A.PREC_HEADER_SIZE + <u32>load<u8>(r + M_FILTER_COUNT) * A.PREC_FILTER_SIZE + peerCount(r) * A.PREC_PEER_SIZE +
    (d != 0 ? <u32>load<u8>(descriptions.at(d) + D_LENGTH) : 0) + (realm != 0 ? <u32>load<u8>(realms.at(realm) + RL_LENGTH) : 0) +
    (requesters.of(m) != 0 ? A.PREC_REQUESTER_SIZE : 0);
}

/** Writes mapping `m` (in use) as an upsert at `out`; returns its size. */
function writeRecord(out: usize, m: u32, wallOffset: u32): u32 {
  const r = mappings.at(m);
  const s = subscribers.at(load<u32>(r + M_SUB));
  store<u32>(r + M_PERSISTED, effectiveExpiry(r));
  memory.fill(out, 0, A.PREC_HEADER_SIZE);
  store<u8>(out + A.PREC_KIND, A.PREC_UPSERT);
  store<u8>(out + A.PREC_PROTOCOL, load<u8>(r + M_PROTOCOL));
  store<u8>(out + A.PREC_FLAGS, load<u8>(r + M_FLAGS));
  store<u8>(out + A.PREC_FAMILY, load<u8>(r + M_FAMILY));
  store<u16>(out + A.PREC_INTERNAL_PORT, load<u16>(r + M_INTERNAL_PORT));
  store<u16>(out + A.PREC_EXTERNAL_PORT, load<u16>(r + M_EXTERNAL_PORT));
  store<u16>(out + A.PREC_CLIENT_PORT, load<u16>(r + M_CLIENT_PORT));

  store<u32>(out + A.PREC_MAP_EXPIRY, toWall(load<u32>(r + M_MAP_EXPIRY), wallOffset));
  store<u32>(out + A.PREC_OUT_EXPIRY, toWall(load<u32>(r + M_OUT_EXPIRY), wallOffset));
  copy12(out + A.PREC_NONCE, r + M_NONCE);
  copy16(out + A.PREC_INTERNAL_ADDR, s + S_ADDR);
  copy16(out + A.PREC_EXTERNAL_ADDR, poolAddr(<u32>load<u16>(r + M_POOL)));
  let at = out + A.PREC_HEADER_SIZE;
  let nf: u32 = 0;
  for (let f = load<u32>(r + M_FILTERS); f != 0; f = load<u32>(filters.at(f) + F_NEXT)) {
    const fr = filters.at(f);
    store<u32>(at, 0);
    store<u8>(at, load<u8>(fr + F_PREFIX));
    store<u16>(at + 2, load<u16>(fr + F_PORT));
    copy16(at + 4, fr + F_ADDR);
    at += A.PREC_FILTER_SIZE;
    nf++;
  }
  let np: u32 = 0;
  for (let p = load<u32>(r + M_PEERS); p != 0; p = load<u32>(peers.at(p) + P_NEXT)) {
    const pr = peers.at(p);
    copy16(at, pr + P_REMOTE_ADDR);
    store<u16>(at + 16, load<u16>(pr + P_REMOTE_PORT));
    store<u16>(at + 18, 0);
    store<u32>(at + 20, toWall(load<u32>(pr + P_EXPIRY), wallOffset));
    copy12(at + 24, pr + P_NONCE);
    at += A.PREC_PEER_SIZE;
    np++;
  }
  store<u8>(out + A.PREC_FILTER_COUNT, <u8>nf);
  store<u8>(out + A.PREC_PEER_COUNT, <u8>np);
  const d = descriptions.of(m);
  if (d != 0) {
    const n = <u32>load<u8>(descriptions.at(d) + D_LENGTH);
    store<u8>(out + A.PREC_DESCRIPTION_LENGTH, <u8>n);
    memory.copy(at, descriptions.at(d) + D_TEXT, n);
    at += n;
  }
  const realm = load<u32>(s + S_REALM); // its identifier, not the number (numbers are per run)
  if (realm != 0) {
    const e = realms.at(realm);
    const n = <u32>load<u8>(e + RL_LENGTH);
    store<u8>(out + A.PREC_REALM_ID_LENGTH, <u8>n);
    memory.copy(at, e + RL_ID, n);
    at += n;
  }
  const q = requesters.of(m);
  if (q != 0) {
    store<u8>(out + A.PREC_REQUESTER, 1);
    copy16(at, requesters.at(q) + RQ_ADDR);
    store<u16>(at + 16, load<u16>(requesters.at(q) + RQ_PORT));
    at += A.PREC_REQUESTER_SIZE;
  }
  return <u32>(at - out);
}

/**
 * A refresh that only moved the expiry need not reach the journal until it moved it by an
 * eighth of the lifetime left (at least a minute): restored after a crash, the mapping then
 * ends at most that much early — still after its client's next refresh (clients renew at
 * half the lifetime), which re-extends it. The same record feeds the dataplane, for which
 * such a refresh changes nothing.
 */


function refreshCanWait(r: usize): bool {
  if (!coalesceRefreshes) return false;
  const persisted = load<u32>(r + M_PERSISTED);
  const expiry = effectiveExpiry(r);
  const left = expiry > now ? expiry - now : 0;
  const slack = max<u32>(60, left >> 3);
  return persisted != 0 && expiry < persisted + slack;
}

/** The end of an external key (its record was freed, or moved to another key). */
function writeGone(out: usize, pool: u32, protocol: u32, port: u32): u32 {
  memory.fill(out, 0, A.PREC_HEADER_SIZE);
  store<u8>(out + A.PREC_KIND, A.PREC_GONE);
  store<u8>(out + A.PREC_PROTOCOL, <u8>protocol);
  store<u16>(out + A.PREC_EXTERNAL_PORT, <u16>port);
  copy16(out + A.PREC_EXTERNAL_ADDR, poolAddr(pool));
  return A.PREC_HEADER_SIZE;
}

/**
 * Journal records for the pending events [tail + first, tail + first + count): for each,
 * the current state of its external key — the record if it still holds that key, else
 * its end. Stops early when the buffer is full; returns how many events it covered.
 */
export function persistEvents(first: u32, count: u32, wallOffset: u32): u32 {
  const out = persistBuffer();
  let length: u32 = 0;
  let k: u32 = 0;
  for (; k < count; k++) {
    const e = events + <usize>((eventTail + first + k) & (A.EVENT_CAPACITY - 1)) * A.EVENT_SIZE;
    const m = load<u32>(e + A.EV_MAPPING);
    const pool = <u32>load<u16>(e + A.EV_POOL_INDEX);
    const protocol = <u32>load<u8>(e + A.EV_PROTOCOL);
    const port = <u32>load<u16>(e + A.EV_EXTERNAL_PORT);
    const r = mappings.at(m);
    const holdsKey = load<u32>(r + M_SUB) != 0 && <u32>load<u16>(r + M_POOL) == pool &&
      <u32>load<u8>(r + M_PROTOCOL) == protocol && <u32>load<u16>(r + M_EXTERNAL_PORT) == port;
    if (holdsKey && load<u8>(e + A.EV_KIND) == A.EVENT_REFRESH && (load<u8>(e + A.EV_FLAGS) & A.EVF_CHANGED) == 0 && refreshCanWait(r)) continue;
    const size = holdsKey ? recordSize(m) : A.PREC_HEADER_SIZE;
    if (length + size > A.PERSIST_BUFFER) break;
    length += holdsKey ? writeRecord(out + length, m, wallOffset) : writeGone(out + length, pool, protocol, port);
  }
  persistLength = length;
  return k;
}

/** The key a record had before rehome() moved it: written as its end. */
export function persistGone(poolIndex: u32, protocol: u32, port: u32): void {
  persistLength = writeGone(persistBuffer(), poolIndex, protocol, port);
}

/** Snapshot chunk: every record in use (live or held) from id `from`, visiting at most `budget` ids. */
export function persistTable(from: u32, budget: u32, wallOffset: u32): u32 {
  const out = persistBuffer();
  let length: u32 = 0;
  let m: u32 = from < 1 ? 1 : from;
  const end = min<u32>(mappings.used + 1, m + budget);
  for (; m < end; m++) {
    if (load<u32>(mappings.at(m) + M_SUB) == 0) continue;
    if (length + recordSize(m) > A.PERSIST_BUFFER) break;
    length += writeRecord(out + length, m, wallOffset);
  }
  persistLength = length;
  persistNextId = m > mappings.used ? 0 : m;
  return length;
}

/** Ends record `m` without events or counters of an ending (a restored key replaced). */
function forget(m: u32): void {
  clearCheckpoint(m);
  const r = mappings.at(m);
  const s = subscribers.at(load<u32>(r + M_SUB));
  if (load<u8>(r + M_FLAGS) & A.MAPF_HELD) {
    store<u32>(s + S_HELD, load<u32>(s + S_HELD) - 1);
    statAdd(A.STATS_HELD, -1);
  } else {
    store<u32>(s + S_MAPPINGS, load<u32>(s + S_MAPPINGS) - 1);
    statAdd(A.STATS_MAPPINGS, -1);
  }
  freeFilters(r);
  freePeers(m);
  wheelUnlink(m);
  releasePort(m);
}

let restorePool: u32 = NO_POOL;

@inline function dropRestore(reason: u32): void {
  const p = restoreDrops + (<usize>reason << 2);
  store<u32>(p, load<u32>(p) + 1);
}

/** Records not taken back by restoreRecords, by RESTORE_* reason (since engineInit). */
export function restoreDropped(reason: u32): u32 {
  return reason < A.RESTORE_REASON_LIMIT ? load<u32>(restoreDrops + (<usize>reason << 2)) : 0;
}

/** Takes back one record at `at` (`length` bytes available); returns its size, 0 if malformed. */
function restoreOne(at: usize, length: u32, wallOffset: u32): u32 {
  if (length < A.PREC_HEADER_SIZE) return 0;
  const kind = load<u8>(at + A.PREC_KIND);
  const nf = <u32>load<u8>(at + A.PREC_FILTER_COUNT);
  const np = <u32>load<u8>(at + A.PREC_PEER_COUNT);
  const nd = <u32>load<u8>(at + A.PREC_DESCRIPTION_LENGTH);
  const ni = <u32>load<u8>(at + A.PREC_REALM_ID_LENGTH);
  const nr: u32 = load<u8>(at + A.PREC_REQUESTER) != 0 ? A.PREC_REQUESTER_SIZE : 0;
  const size = A.PREC_HEADER_SIZE + nf * A.PREC_FILTER_SIZE + np * A.PREC_PEER_SIZE + nd + ni + nr;
  if ((kind != A.PREC_UPSERT && kind != A.PREC_GONE) || size > length) return 0;
  const protocol = <u32>load<u8>(at + A.PREC_PROTOCOL);
  const extPort = <u32>load<u16>(at + A.PREC_EXTERNAL_PORT);
  // Consecutive records mostly share their address (a subscriber's mappings sit on one):
  // the last one is tried before the pool is searched.
  const ext = at + A.PREC_EXTERNAL_ADDR;
  const pool = restorePool < poolCount && addrEqual(poolAddr(restorePool), ext) ? restorePool : (restorePool = poolIndexOf(ext));
  if (pool == NO_POOL) {
    if (kind == A.PREC_UPSERT) dropRestore(A.RESTORE_NOT_IN_POOL);
    return size;
  }
  // The key's latest state replaces what an earlier record of it left.
  const existing = findExternal(pool, protocol, extPort);
  if (existing != 0) forget(existing);
  if (kind == A.PREC_GONE) return size;

  const flags = <u32>load<u8>(at + A.PREC_FLAGS);
  const family = <u32>load<u8>(at + A.PREC_FAMILY);
  const internalPort = <u32>load<u16>(at + A.PREC_INTERNAL_PORT);
  // The realm by its identifier (registered again if the policy accepts any; else it must be configured).
  const realm = ni == 0 ? 0 : realmOf(at + size - nr - ni, ni, acceptAnyRealm);
  if (ni != 0 && realm == 0) {
    dropRestore(A.RESTORE_CONFLICT);
    return size;
  }
  const wallMap = load<u32>(at + A.PREC_MAP_EXPIRY);
  const wallOut = load<u32>(at + A.PREC_OUT_EXPIRY);
  let mapExpiry = wallMap > wallOffset ? wallMap - wallOffset : 0;
  const outExpiry = wallOut > wallOffset ? wallOut - wallOffset : 0;
  const isStatic = (flags & A.MAPF_STATIC) != 0;
  let isHeld = (flags & A.MAPF_HELD) != 0;
  let until = mapExpiry > outExpiry ? mapExpiry : outExpiry;
  // A mapping that ran out while the server was down is in hold-down now, as it would be
  // had the server been up [RFC 6888 REQ-8]; a hold that ran out is gone.
  if (!isStatic && !isHeld && until <= now && holdDown != 0 && until + holdDown > now) {
    isHeld = true;
    mapExpiry = until + holdDown;
    until = mapExpiry;
  }
  if (!isStatic && until <= now) {
    dropRestore(A.RESTORE_EXPIRED);
    return size;
  }
  const addr = at + A.PREC_INTERNAL_ADDR;
  if (family != <u32>load<u8>(poolFamily + pool) || !protocolSupported(protocol) || internalPort == 0 ||
      retired(pool) || (!isHeld && findEndpoint(addr, realm, protocol, internalPort, family, false, 0) != 0)) {
    dropRestore(A.RESTORE_CONFLICT);
    return size;
  }
  const block = blockOf(extPort);
  if (extPort < portMin || block >= blocksPerAddress || !inShard(block) || portForbidden(protocol, extPort)) {
    dropRestore(A.RESTORE_CONFLICT);
    return size;
  }
  let sub = findSubscriber(addr, realm);
  const owner = load<u32>(ownerAt(pool, block));
  if (owner != 0 && owner != sub) {
    dropRestore(A.RESTORE_CONFLICT);
    return size;
  }
  if (mappings.full() || (sub == 0 && subscribers.full())) {
    dropRestore(A.RESTORE_NO_RESOURCES);
    return size;
  }
  if (owner == 0 && sub != 0) {
    const s = subscribers.at(sub);
    const paired = pairedPool(s, family);
    if (<u32>load<u8>(s + S_BLOCK_COUNT) >= maxBlocksPerSubscriber || (paired != NO_POOL && paired != pool)) {
      dropRestore(A.RESTORE_CONFLICT);
      return size;
    }
  }
  if (sub == 0) sub = createSubscriber(addr, realm);
  if (owner == 0) takeBlock(pool, block, sub);
  const m = createMapping(sub, protocol, internalPort, family, pool, extPort, flags & ~A.MAPF_HELD, <u32>load<u16>(at + A.PREC_CLIENT_PORT));
  statAdd(A.STATS_CREATED, -1); // taken back, not created
  const r = mappings.at(m);
  copy12(r + M_NONCE, at + A.PREC_NONCE);
  store<u32>(r + M_MAP_EXPIRY, mapExpiry);
  store<u32>(r + M_OUT_EXPIRY, outExpiry);
  let p = at + A.PREC_HEADER_SIZE;
  for (let k: u32 = 0; k < nf; k++, p += A.PREC_FILTER_SIZE) {
    if (isHeld || filters.full()) continue;
    const f = filters.alloc();
    const fr = filters.at(f);
    store<u8>(fr + F_PREFIX, load<u8>(p));
    store<u16>(fr + F_PORT, load<u16>(p + 2));
    copy16(fr + F_ADDR, p + 4);
    store<u32>(fr + F_NEXT, load<u32>(r + M_FILTERS));
    store<u32>(r + M_FILTERS, f);
    store<u8>(r + M_FILTER_COUNT, load<u8>(r + M_FILTER_COUNT) + 1);
    statAdd(A.STATS_FILTERS, 1);
  }
  for (let k: u32 = 0; k < np; k++, p += A.PREC_PEER_SIZE) {
    const wall = load<u32>(p + 20);
    if (isHeld || peers.full() || wall <= wallOffset || wall - wallOffset <= now) continue;
    const id = peers.alloc();
    const pr = peers.at(id);
    store<u32>(pr + P_MAPPING, m);
    copy16(pr + P_REMOTE_ADDR, p);
    store<u16>(pr + P_REMOTE_PORT, load<u16>(p + 16));
    store<u32>(pr + P_EXPIRY, wall - wallOffset);
    copy12(pr + P_NONCE, p + 24);
    store<u32>(pr + P_NEXT, load<u32>(r + M_PEERS));
    store<u32>(r + M_PEERS, id);
    peerIndex.insert(peerFp(m, p, <u32>load<u16>(p + 16)), id);
    statAdd(A.STATS_PEERS, 1);
  }
  store<u32>(r + M_PERSISTED, until); // what the files say
  if ((flags & A.MAPF_CHECKPOINT) != 0 && !isHeld) {
    const s = subscribers.at(sub);
    store<u16>(s + S_CHECKPOINTS, load<u16>(s + S_CHECKPOINTS) + 1);
  }
  if (!isHeld && nd != 0) setDescription(m, p, nd); // p: after the PEERs
  if (!isHeld && nr != 0 && (flags & A.MAPF_THIRD_PARTY) != 0) setRequester(m, at + size - nr, <u32>load<u16>(at + size - nr + 16));
  if (isHeld) {
    const s = subscribers.at(sub);
    store<u8>(r + M_FLAGS, <u8>A.MAPF_HELD);
    store<u32>(r + M_OUT_EXPIRY, 0);
    store<u32>(s + S_MAPPINGS, load<u32>(s + S_MAPPINGS) - 1);
    store<u32>(s + S_HELD, load<u32>(s + S_HELD) + 1);
    statAdd(A.STATS_MAPPINGS, -1);
    statAdd(A.STATS_HELD, 1);
    wheelLink(m, mapExpiry);
  } else if (!isStatic) {
    wheelLink(m, until);
  }
  return size;
}

/**
 * Takes back the records in [persistBase(), + length) at engine time `at` (records that
 * ended meanwhile are left out); returns the bytes consumed (a malformed record stops it:
 * fewer than `length`). No events: the state was already told when it was made.
 */
export function restoreRecords(length: u32, wallOffset: u32, at: u32): u32 {
  const base = persistBuffer();
  now = at;
  let done: u32 = 0;
  while (done < length) {
    const size = restoreOne(base + done, length - done, wallOffset);
    if (size == 0) {
      dropRestore(A.RESTORE_MALFORMED);
      break;
    }
    done += size;
  }
  return done;
}
