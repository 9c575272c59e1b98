// Persistence (src/persist/): mapping state out as portable records (PREC_*, one per
// external key: a journal of what each batch changed, or the whole table in chunks for a
// snapshot) and back in at start-up. Times cross as wall-clock seconds: engine time t is
// wall time t + wallOffset for the run that writes or reads.

import * as A from "./abi";
import { copy12, copy16 } from "./bytes";
import { coalesceRefreshes } from "./config";
import { now } from "./clock";
import { F_ADDR, F_NEXT, F_PORT, F_PREFIX, M_CLIENT_PORT, M_EXTERNAL_PORT, M_FAMILY, M_FILTERS, M_FLAGS, M_INTERNAL_PORT, M_MAP_EXPIRY, M_NONCE, M_OUT_EXPIRY, M_PEERS, M_PERSISTED, M_POOL, M_PROTOCOL, M_SUB, P_EXPIRY, P_NEXT, P_NONCE, P_REMOTE_ADDR, P_REMOTE_PORT, S_ADDR, S_REALM } from "./layout";
import { filters, mappings, peers, subscribers } from "./tables";
import { poolAddr } from "./pool";
import { effectiveExpiry } from "./wheel";
import { RL_ID, RL_LENGTH, realms } from "./realms";
import { D_LENGTH, D_TEXT, descriptions } from "./descriptions";
import { eventTail, events } from "./events";
import { RQ_ADDR, RQ_PORT, requesterOf } from "./requesters";
import { filterCount } from "./lifecycle";

let persistOut: usize = 0; // PERSIST_BUFFER bytes, allocated on first use
let persistLength: u32 = 0;
let persistNextId: u32 = 0;
export const restoreDrops = memory.data(<i32>(A.RESTORE_REASON_LIMIT * 4), 4);

export function persistBuffer(): usize {
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
  return A.PREC_HEADER_SIZE + filterCount(r) * A.PREC_FILTER_SIZE + peerCount(r) * A.PREC_PEER_SIZE +
    (d != 0 ? <u32>load<u8>(descriptions.at(d) + D_LENGTH) : 0) + (realm != 0 ? <u32>load<u8>(realms.at(realm) + RL_LENGTH) : 0) +
    (requesterOf(m) != 0 ? A.PREC_REQUESTER_SIZE : 0);
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
    store<u32>(at, 0); // prefix and pad
    store<u8>(at + A.PREC_FILTER_PREFIX, load<u8>(fr + F_PREFIX));
    store<u16>(at + A.PREC_FILTER_PORT, load<u16>(fr + F_PORT));
    copy16(at + A.PREC_FILTER_ADDR, fr + F_ADDR);
    at += A.PREC_FILTER_SIZE;
    nf++;
  }
  let np: u32 = 0;
  for (let p = load<u32>(r + M_PEERS); p != 0; p = load<u32>(peers.at(p) + P_NEXT)) {
    const pr = peers.at(p);
    copy16(at + A.PREC_PEER_ADDR, pr + P_REMOTE_ADDR);
    store<u32>(at + A.PREC_PEER_PORT, <u32>load<u16>(pr + P_REMOTE_PORT)); // and the pad
    store<u32>(at + A.PREC_PEER_EXPIRY, toWall(load<u32>(pr + P_EXPIRY), wallOffset));
    copy12(at + A.PREC_PEER_NONCE, pr + P_NONCE);
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
  const q = requesterOf(m);
  if (q != 0) {
    store<u8>(out + A.PREC_REQUESTER, 1);
    copy16(at + A.PREC_REQUESTER_ADDR, q + RQ_ADDR);
    store<u16>(at + A.PREC_REQUESTER_PORT, load<u16>(q + RQ_PORT));
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
