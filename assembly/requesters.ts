// THIRD_PARTY requesters [6887 §13.1, §14.2]: where the latest THIRD_PARTY request of a
// mapping created through THIRD_PARTY came from, so a Mapping Update reaches it.
//
// Requesters are few and each speaks for many mappings: they are the proxies trusted with
// THIRD_PARTY (RFC 7648; an AFTR's for all of its subscribers). So up to
// REQUESTERS_SHARED (254) distinct address:port pairs are kept once each, counted by the
// mappings that name them, and a mapping names its requester in one byte of its record
// (M_REQUESTER): a renewal from the same requester compares the request's source with an
// entry of a table that stays in the cache, and the mapping costs no memory for it. A
// requester beyond those (a proxy that sends from many ports) is kept per mapping in a
// side table of capacity.requesters entries (M_REQUESTER = OWN). Both full: not recorded
// (counted); the mapping is served and its requester learns from the Epoch.
// capacity.requesters 0: no requester is recorded.

import * as A from "./abi";
import { copy16 } from "./bytes";
import { fingerprint, mix64 } from "./hashindex";
import { M_FLAGS, M_REQUESTER } from "./layout";
import { KeyedSlab, SideTable, mappings, statAdd } from "./tables";
import { markChanged } from "./events";

// An entry of either table: the address and port (the side table's entries start with
// their mapping's id and free-list link; the shared table's with its link and count).
const RQ_NEXT_FREE: u32 = 0;
const RQ_MAPPINGS: u32 = 4; // shared: mappings naming it
export const RQ_PORT: u32 = 8; // u16
export const RQ_ADDR: u32 = 12; // 16
const REQUESTER_SIZE: u32 = 28;

/** A record's byte names a shared requester (1..REQUESTERS_SHARED) or OWN: the mapping's entry in the side table. */
const OWN: u32 = 255;

const shared = new KeyedSlab();
const own = new SideTable();

/** Room for REQUESTERS_SHARED requesters and `capacity` more, one per mapping (0: none recorded); once, after engineInit. */
export function initRequesters(capacity: u32): bool {
  if (capacity == 0) return true;
  shared.initKeyed(A.REQUESTERS_SHARED, REQUESTER_SIZE, RQ_NEXT_FREE);
  return own.init(capacity, REQUESTER_SIZE);
}

@inline function requesterFp(addr: usize, port: u32): u32 {
  return fingerprint(mix64(load<u64>(addr) ^ mix64(load<u64>(addr + 8) ^ (<u64>port << 1))));
}

@inline function sameRequester(e: usize, addr: usize, port: u32): bool {
  return load<u16>(e + RQ_PORT) == <u16>port && load<u64>(e + RQ_ADDR) == load<u64>(addr) && load<u64>(e + RQ_ADDR + 8) == load<u64>(addr + 8);
}

class RequesterKey {
  addr: usize = 0;
  port: u32 = 0;
  @inline matches(id: u32): bool {
    return sameRequester(shared.at(id), this.addr, this.port);
  }
}
const requesterKey = new RequesterKey();

/** The shared requester `addr`:`port`, one more mapping counted on it (made if new); 0 when the table is full. */
function share(addr: usize, port: u32): u32 {
  const fp = requesterFp(addr, port);
  requesterKey.addr = addr;
  requesterKey.port = port;
  let id = shared.find<RequesterKey>(fp, requesterKey);
  if (id == 0) {
    id = shared.add(fp);
    if (id == 0) return 0;
    statAdd(A.STATS_REQUESTERS_SHARED, 1);
    const e = shared.at(id);
    copy16(e + RQ_ADDR, addr);
    store<u16>(e + RQ_PORT, <u16>port);
  }
  const e = shared.at(id);
  store<u32>(e + RQ_MAPPINGS, load<u32>(e + RQ_MAPPINGS) + 1);
  return id;
}

/** One mapping less on shared requester `id` (freed when none is left). */
function unshare(id: u32): void {
  const e = shared.at(id);
  const n = load<u32>(e + RQ_MAPPINGS) - 1;
  if (n == 0) {
    shared.drop(requesterFp(e + RQ_ADDR, <u32>load<u16>(e + RQ_PORT)), id);
    statAdd(A.STATS_REQUESTERS_SHARED, -1);
  } else store<u32>(e + RQ_MAPPINGS, n);
}

/** Mapping `m`'s requester entry (RQ_ADDR, RQ_PORT), or 0 when none is recorded. */
export function requesterOf(m: u32): usize {
  const id = <u32>load<u8>(mappings.at(m) + M_REQUESTER);
  if (id == 0) return 0;
  if (id != OWN) return shared.at(id);
  const q = own.of(m);
  return q != 0 ? own.at(q) : 0;
}

/** Where a lookup of mapping `m`'s own requester starts (its side table's index line), for a batch's cache warming; 0: it has none there. */
@inline export function ownRequesterLine(m: u32): usize {
  return <u32>load<u8>(mappings.at(m) + M_REQUESTER) == OWN ? own.indexLine(m) : 0;
}

/** Mapping `m` ends or its requester is forgotten. */
export function dropRequester(m: u32): void {
  const r = mappings.at(m);
  const id = <u32>load<u8>(r + M_REQUESTER);
  if (id == 0) return;
  store<u8>(r + M_REQUESTER, 0);
  if (id == OWN) own.drop(m);
  else unshare(id);
}

/** Records `addr`:`port` as the requester of THIRD_PARTY mapping `m` (no room: not recorded); true if that changed what is recorded. */
export function setRequester(m: u32, addr: usize, port: u32): bool {
  if (!own.on) return false;
  const r = mappings.at(m);
  const id = <u32>load<u8>(r + M_REQUESTER);
  if (id != 0 && id != OWN) {
    if (sameRequester(shared.at(id), addr, port)) return false;
    unshare(id); // first: it may leave room for the new one
  } else if (id == OWN) {
    const q = own.of(m);
    if (q != 0 && sameRequester(own.at(q), addr, port)) return false;
  }
  const k = share(addr, port);
  if (k != 0) {
    if (id == OWN) own.drop(m);
    store<u8>(r + M_REQUESTER, <u8>k);
    return true;
  }
  const q = own.claim(m);
  if (q == 0) {
    store<u8>(r + M_REQUESTER, 0);
    statAdd(A.STATS_REQUESTERS_UNRECORDED, 1);
    return id != 0;
  }
  copy16(own.at(q) + RQ_ADDR, addr);
  store<u16>(own.at(q) + RQ_PORT, <u16>port);
  store<u8>(r + M_REQUESTER, <u8>OWN);
  return true;
}

/**
 * A request with THIRD_PARTY for a THIRD_PARTY mapping: its source is the requester now.
 * The option test is inlined at every handler: a request without it (most renewals) pays
 * no call.
 */
@inline export function noteRequester(slot: usize, m: u32): void {
  if (load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_THIRD_PARTY) noteThirdPartyRequester(slot, m);
}

function noteThirdPartyRequester(slot: usize, m: u32): void {
  if ((load<u8>(mappings.at(m) + M_FLAGS) & A.MAPF_THIRD_PARTY) == 0) return;
  // A renewal from a new requester is journaled even when its refresh alone would wait.
  if (setRequester(m, slot + A.SLOT_SRC_ADDR, <u32>load<u16>(slot + A.SLOT_SRC_PORT))) markChanged(m);
}
