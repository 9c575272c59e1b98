// The engine's tables. Slab: fixed-size records in one region, sized once. KeyedSlab: a
// slab whose records are found by key through a HashIndex and a verifier. SideTable: data
// only some mappings have. State: the subscriber, mapping, PEER and filter tables, the
// mapping indexes (internal endpoint, external key), scratch (the host's argument area).

import * as A from "./abi";
import { zero4 } from "./bytes";
import { HashIndex, fingerprint, lineAlloc, mix64 } from "./hashindex";
import { statsBase } from "./codec";
import { FILTER_SIZE, F_NEXT, MAPPING_SIZE, M_WHEEL_NEXT, PEER_SIZE, P_NEXT, SUB_SIZE, S_NEXT_FREE } from "./layout";

export const scratch = memory.data(<i32>A.SCRATCH_SIZE, 16);

export function scratchBase(): usize {
  return scratch;
}

/** Adds `delta` to the STATS_* counter at `offset` of the codec's stats region. */
@inline export function statAdd(offset: u32, delta: i64): void {
  const p = statsBase() + offset;
  store<i64>(p, load<i64>(p) + delta);
}

/** Fixed-size records in one region sized once; ids are 1-based, free ones chain through `link`. */
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
    this.base = lineAlloc(<usize>(capacity + 1) * size);
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

/**
 * A slab whose records are found by key through a HashIndex (subscribers, PEER records,
 * realms, static mirrors, side-table entries). `find` takes the key's fingerprint and a
 * verifier (see HashIndex.find); `add` and `drop` keep slab and index in step. Not an
 * override of Slab's methods, so Slab calls stay direct.
 */
export class KeyedSlab extends Slab {
  index: HashIndex = new HashIndex();

  initKeyed(capacity: u32, size: u32, link: u32): void {
    this.init(capacity, size, link);
    this.index.init(capacity);
  }
  @inline find<K>(fp: u32, key: K): u32 {
    return this.index.find<K>(fp, key);
  }
  /** A new zeroed record filed under `fp`; 0 when the slab is full. */
  add(fp: u32): u32 {
    const id = this.alloc();
    if (id != 0) this.index.insert(fp, id);
    return id;
  }
  drop(fp: u32, id: u32): void {
    this.index.remove(fp, id);
    this.release(id);
  }
}

export const subscribers = new KeyedSlab(); // by (address, realm)
export const mappings = new Slab(); // two indexes: internalIndex, externalIndex
export const peers = new KeyedSlab(); // by (mapping, remote address, remote port)
export const filters = new Slab(); // chained from their mapping, never looked up
export const internalIndex = new HashIndex(); // (internal address, realm, protocol, internal port, family) → live or held mapping
export const externalIndex = new HashIndex(); // (pool, protocol, external port) exact → live or held mapping
export let initialised = false;

// Side tables: data only some mappings have (DESCRIPTION texts, THIRD_PARTY requesters),
// in a slab of entries found by mapping id, so every mapping record does not carry the
// field. Each entry starts with its mapping's id and the free-list link.
const SIDE_MAPPING: u32 = 0;
const SIDE_NEXT_FREE: u32 = 4;

@inline function mappingFp(m: u32): u32 {
  return fingerprint(mix64(<u64>m * 0x9e3779b97f4a7c15));
}

class SideKey {
  table: Slab | null = null;
  m: u32 = 0;
  @inline matches(id: u32): bool {
    return load<u32>(changetype<Slab>(this.table).at(id) + SIDE_MAPPING) == this.m;
  }
}
const sideKey = new SideKey();

export class SideTable {
  entries: KeyedSlab = new KeyedSlab();
  on: bool = false;

  /** Room for `capacity` entries of `size` bytes (0: the table stays off); once, after engineInit. */
  init(capacity: u32, size: u32): bool {
    if (this.on || capacity == 0) return capacity == 0;
    this.entries.initKeyed(capacity, size, SIDE_NEXT_FREE);
    this.on = true;
    return true;
  }
  @inline at(id: u32): usize {
    return this.entries.at(id);
  }
  /** The entry of mapping `m`, or 0. */
  of(m: u32): u32 {
    if (!this.on || this.entries.live == 0) return 0;
    sideKey.table = this.entries;
    sideKey.m = m;
    return this.entries.find<SideKey>(mappingFp(m), sideKey);
  }
  /** Where a lookup of mapping `m` starts, its index line: for a batch's cache warming (0: the table is empty). */
  @inline indexLine(m: u32): usize {
    if (!this.on || this.entries.live == 0) return 0;
    const index = this.entries.index;
    return index.base + (<usize>index.home(mappingFp(m)) << 3);
  }
  /** The entry of mapping `m`, made if it has none; 0 when the table is off or full. */
  claim(m: u32): u32 {
    if (!this.on) return 0;
    let id = this.of(m);
    if (id == 0) {
      id = this.entries.add(mappingFp(m));
      if (id != 0) store<u32>(this.entries.at(id) + SIDE_MAPPING, m);
    }
    return id;
  }
  drop(m: u32): void {
    const id = this.of(m);
    if (id != 0) this.entries.drop(mappingFp(m), id);
  }
}

/** Sizes the tables once (engineInit checked that they fit). */
export function initTables(maxMappings: u32, maxSubscribers: u32, maxPeers: u32, maxFilters: u32): void {
  initialised = true;
  subscribers.initKeyed(maxSubscribers, SUB_SIZE, S_NEXT_FREE);
  mappings.init(maxMappings, MAPPING_SIZE, M_WHEEL_NEXT);
  internalIndex.init(maxMappings);
  externalIndex.init(maxMappings);
  peers.initKeyed(maxPeers, PEER_SIZE, P_NEXT);
  filters.init(maxFilters, FILTER_SIZE, F_NEXT);
}
