// Operator operations (control channel, tests): static mappings, subscriber delete,
// lookups, listing, per-subscriber counts. Addresses come through scratch. State: the
// listing buffer and where the listing goes on.

import * as W from "./wire";
import * as A from "./abi";
import { addrEqual } from "./bytes";
import { protocolSupported } from "./config";
import { F_NEXT, M_FILTERS, M_FLAGS, M_POOL, M_PROTOCOL, M_SUB, M_SUB_NEXT, NO_POOL, S_ADDR, S_BLOCK_COUNT, S_LIST, S_MAPPINGS } from "./layout";
import { filters, initialised, mappings, scratch, subscribers } from "./tables";
import { poolFamily, poolIndexOf } from "./pool";
import { createSubscriber, findExternal, findMapping, findSubscriber } from "./lookup";
import { describeInto, emit } from "./events";
import { endMapping, liveOrEnded } from "./lifecycle";
import { NO_ALLOC, allocReclaim, commitAllocation, tryPort } from "./allocation";
import { zeroNonce } from "./natpmp";
import { dropMirror, dropMirrorsOf, findMirror } from "./mirrors";

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
  const a = tryPort(sub, pool, protocol, externalPort, internalPort, zeroNonce);
  if (a == NO_ALLOC || allocReclaim(a) != 0) return W.RESULT_CANNOT_PROVIDE_EXTERNAL;
  if (sub == 0) sub = createSubscriber(scratch, 0);
  const m = commitAllocation(a, sub, protocol, internalPort, family, A.MAPF_STATIC, 0);
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

/** Writes mapping `m`'s description (event layout) into scratch[0..EVENT_SIZE]; false if `m` is not in use. */
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
