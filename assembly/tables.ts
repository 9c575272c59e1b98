import * as A from "./abi";
import { zero4 } from "./bytes";
import { HashIndex, fingerprint, mix64 } from "./hashindex";
import { statsBase } from "./codec";
import { FILTER_SIZE, F_NEXT, MAPPING_SIZE, M_WHEEL_NEXT, PEER_SIZE, P_NEXT, SUB_SIZE, S_NEXT_FREE } from "./layout";

// ---------------------------------------------------------------------------
// Scratch and pool configuration (the settings themselves: config.ts)
// ---------------------------------------------------------------------------
export const scratch = memory.data(<i32>A.SCRATCH_SIZE, 16);

export function scratchBase(): usize {
  return scratch;
}
@inline export function statAdd(offset: u32, delta: i64): void {
  const p = statsBase() + offset;
  store<i64>(p, load<i64>(p) + delta);
}
export class Slab {
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

export const subscribers = new Slab();
export const mappings = new Slab();
export const peers = new Slab();
export const filters = new Slab();
// Side tables: data only some mappings have (DESCRIPTION texts, THIRD_PARTY requesters),
// in a slab of entries found through an index by mapping id, so every mapping record does
// not carry the field. Each entry starts with its mapping's id and the free-list link.
export const SIDE_MAPPING: u32 = 0;
export const SIDE_NEXT_FREE: u32 = 4;

@inline export function mappingFp(m: u32): u32 {
  return fingerprint(mix64(<u64>m * 0x9e3779b97f4a7c15));
}

export class SideTable {
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

export const subscriberIndex = new HashIndex(); // (address, realm)
export const internalIndex = new HashIndex(); // (subscriber, protocol, internal port, family) → live mapping
export const externalIndex = new HashIndex(); // (pool, protocol, external port) exact → live or held mapping
export const peerIndex = new HashIndex(); // (mapping, remote address, remote port)
export let initialised = false;

/** Sizes the tables once (engineInit checked that they fit). */
export function initTables(maxMappings: u32, maxSubscribers: u32, maxPeers: u32, maxFilters: u32): void {
  subscribers.init(maxSubscribers, SUB_SIZE, S_NEXT_FREE);
  mappings.init(maxMappings, MAPPING_SIZE, M_WHEEL_NEXT);
  peers.init(maxPeers, PEER_SIZE, P_NEXT);
  filters.init(maxFilters, FILTER_SIZE, F_NEXT);
  subscriberIndex.init(maxSubscribers);
  internalIndex.init(maxMappings);
  externalIndex.init(maxMappings);
  peerIndex.init(maxPeers);
}
