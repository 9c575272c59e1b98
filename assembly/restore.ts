// Restore at start-up: portable records (persist.ts) back into the tables, with the wall
// clock mapped to engine time; records that ended meanwhile or conflict are counted by
// reason. State: the last pool address matched and the drop counters.

import * as A from "./abi";
import { addrEqual, copy12 } from "./bytes";
import { blocksPerAddress, holdDown, inShard, maxBlocksPerSubscriber, portForbidden, portMin, protocolSupported } from "./config";
import { now, setNow } from "./clock";
import { M_FLAGS, M_MAP_EXPIRY, M_NONCE, M_OUT_EXPIRY, M_PERSISTED, M_SUB, NO_POOL, P_EXPIRY, P_NONCE, S_BLOCK_COUNT, S_CHECKPOINTS, S_HELD, S_MAPPINGS, pairedPool } from "./layout";
import { filters, mappings, peers, statAdd, subscribers } from "./tables";
import { blockOf, ownerAt, poolAddr, poolCount, poolFamily, poolIndexOf, retired, takeBlock } from "./pool";
import { wheelLink, wheelUnlink } from "./wheel";
import { createSubscriber, findEndpoint, findExternal, findSubscriber } from "./lookup";
import { acceptAnyRealm, realmOf } from "./realms";
import { setDescription } from "./descriptions";
import { clearCheckpoint } from "./checkpoint";
import { addFilter, addPeer, createMapping, freeFilters, freePeers, releasePort } from "./lifecycle";
import { setRequester } from "./requesters";
import { persistBuffer, restoreDrops } from "./persist";

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
    addFilter(r, <u32>load<u8>(p + A.PREC_FILTER_PREFIX), <u32>load<u16>(p + A.PREC_FILTER_PORT), p + A.PREC_FILTER_ADDR);
  }
  for (let k: u32 = 0; k < np; k++, p += A.PREC_PEER_SIZE) {
    const wall = load<u32>(p + A.PREC_PEER_EXPIRY);
    if (isHeld || peers.full() || wall <= wallOffset || wall - wallOffset <= now) continue;
    const pr = peers.at(addPeer(m, p + A.PREC_PEER_ADDR, <u32>load<u16>(p + A.PREC_PEER_PORT)));
    store<u32>(pr + P_EXPIRY, wall - wallOffset);
    copy12(pr + P_NONCE, p + A.PREC_PEER_NONCE);
  }
  store<u32>(r + M_PERSISTED, until); // what the files say
  if ((flags & A.MAPF_CHECKPOINT) != 0 && !isHeld) {
    const s = subscribers.at(sub);
    store<u16>(s + S_CHECKPOINTS, load<u16>(s + S_CHECKPOINTS) + 1);
  }
  if (!isHeld && nd != 0) setDescription(m, p, nd); // p: after the PEERs
  if (!isHeld && nr != 0 && (flags & A.MAPF_THIRD_PARTY) != 0) setRequester(m, at + size - nr + A.PREC_REQUESTER_ADDR, <u32>load<u16>(at + size - nr + A.PREC_REQUESTER_PORT));
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
  setNow(at);
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
