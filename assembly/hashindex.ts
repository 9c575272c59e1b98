// Open-addressing hash index: linear probing over 8-byte entries `fingerprint << 32 |
// record`, deletion by backward shift (no tombstones, so probe lengths never degrade).
// The home slot is derived from the stored fingerprint alone, which is what lets a
// deletion move entries back without knowing their keys. Records are 1-based; entry 0
// means empty. A fingerprint may be shared by two keys: `find` confirms candidates with
// the caller's verifier.

@inline function mix32(x: u32): u32 {
  // murmur3 finaliser
  x ^= x >> 16;
  x *= 0x85ebca6b;
  x ^= x >> 13;
  x *= 0xc2b2ae35;
  x ^= x >> 16;
  return x;
}

/** 64-bit mix (splitmix64 finaliser) for building fingerprints from key material. */
@inline export function mix64(x: u64): u64 {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
  x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
  return x ^ (x >> 31);
}

/** Cache-line size: table regions start on a line so a 64-byte record, or an index line, is one line. */
export const LINE: usize = 64;

/**
 * `bytes` from the heap starting on a cache line (the stub runtime aligns to 16 only: a
 * 64-byte record at a 16-byte offset would straddle two lines, two misses instead of one).
 */
export function lineAlloc(bytes: usize): usize {
  return (heap.alloc(bytes + LINE - 1) + LINE - 1) & ~(LINE - 1);
}

/** A non-zero 32-bit fingerprint from a 64-bit hash. */
@inline export function fingerprint(h: u64): u32 {
  const f = <u32>(h >> 32) ^ <u32>h;
  return f == 0 ? 1 : f;
}

export class HashIndex {
  base: usize = 0;
  capacity: u32 = 0;
  count: u32 = 0;

  /** Sized for `maxEntries` at a load factor of at most 0.7. */
  init(maxEntries: u32): void {
    let cap = <u64>maxEntries * 10 / 7 + 16;
    this.capacity = <u32>cap;
    this.base = lineAlloc(<usize>cap << 3);
    memory.fill(this.base, 0, <usize>cap << 3);
    this.count = 0;
  }

  @inline home(fp: u32): u32 {
    return <u32>((<u64>mix32(fp) * <u64>this.capacity) >> 32);
  }

  @inline entryAt(pos: u32): u64 {
    return load<u64>(this.base + (<usize>pos << 3));
  }

  /** First position holding `fp`, starting at `pos`, or -1 at an empty slot. */
  @inline next(fp: u32, pos: u32): i64 {
    const cap = this.capacity;
    while (true) {
      const e = load<u64>(this.base + (<usize>pos << 3));
      if (e == 0) return -1;
      if (<u32>(e >> 32) == fp) return <i64>pos;
      pos++;
      if (pos == cap) pos = 0;
    }
    return -1;
  }

  /** Candidates for `fp`: `first`, then `after` each one, until -1; `recordAt` reads one. */
  @inline first(fp: u32): i64 {
    return this.next(fp, this.home(fp));
  }

  @inline after(fp: u32, pos: i64): i64 {
    const n = <u32>pos + 1;
    return this.next(fp, n == this.capacity ? 0 : n);
  }

  @inline recordAt(pos: i64): u32 {
    return <u32>load<u64>(this.base + (<usize>pos << 3));
  }

  /**
   * The first record filed under `fp` that `key` accepts, or 0. K is any class with
   * `@inline matches(id: u32): bool` holding the key material. Generic, so every call site
   * is compiled for its own verifier and the check is inlined into the probe loop: no
   * function pointer or virtual call on the hot path.
   */
  @inline find<K>(fp: u32, key: K): u32 {
    for (let p = this.first(fp); p >= 0; p = this.after(fp, p)) {
      const id = this.recordAt(p);
      if (key.matches(id)) return id;
    }
    return 0;
  }

  insert(fp: u32, record: u32): void {
    const cap = this.capacity;
    let pos = this.home(fp);
    while (load<u64>(this.base + (<usize>pos << 3)) != 0) {
      pos++;
      if (pos == cap) pos = 0;
    }
    store<u64>(this.base + (<usize>pos << 3), (<u64>fp << 32) | <u64>record);
    this.count++;
  }

  /** Removes the entry (fp, record); returns false if it is not there. */
  remove(fp: u32, record: u32): bool {
    const cap = this.capacity;
    const want = (<u64>fp << 32) | <u64>record;
    let i = this.home(fp);
    while (true) {
      const e = load<u64>(this.base + (<usize>i << 3));
      if (e == 0) return false;
      if (e == want) break;
      i++;
      if (i == cap) i = 0;
    }
    // Backward-shift: pull later entries of the cluster into the hole when their home
    // position does not lie cyclically in (hole, current].
    let j = i;
    while (true) {
      j++;
      if (j == cap) j = 0;
      const e = load<u64>(this.base + (<usize>j << 3));
      if (e == 0) break;
      const k = this.home(<u32>(e >> 32));
      const stays = i <= j ? i < k && k <= j : i < k || k <= j;
      if (stays) continue;
      store<u64>(this.base + (<usize>i << 3), e);
      i = j;
    }
    store<u64>(this.base + (<usize>i << 3), 0);
    this.count--;
    return true;
  }
}
