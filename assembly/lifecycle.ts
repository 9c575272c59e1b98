// Mapping life cycle: create, renew and remove the MAP part, end into hold-down, release
// the port, take a held port back. No state of its own: it changes the tables, the wheel,
// the pool's usage counts and the event ring together.

import * as A from "./abi";
import { copy12, copy16 } from "./bytes";
import { holdDown } from "./config";
import { now } from "./clock";
import { F_ADDR, F_NEXT, F_PORT, F_PREFIX, M_CLIENT_PORT, M_EXTERNAL_PORT, M_FAMILY, M_FILTERS, M_FLAGS, M_INTERNAL_PORT, M_MAP_EXPIRY, M_NONCE, M_OUT_EXPIRY, M_PEERS, M_POOL, M_PROTOCOL, M_SUB, M_SUB_NEXT, M_SUB_PREV, P_MAPPING, P_NEXT, P_REMOTE_ADDR, P_REMOTE_PORT, S_HELD, S_LIST, S_MAPPINGS } from "./layout";
import { externalIndex, filters, internalIndex, mappings, peers, statAdd, subscribers } from "./tables";
import { blockOf, releaseBlockIfUnused, usageAdd } from "./pool";
import { effectiveExpiry, wheelLink, wheelUnlink } from "./wheel";
import { externalKey, freeSubscriberIfEmpty, peerFp, recordFp } from "./lookup";
import { descriptions } from "./descriptions";
import { clearCheckpoint } from "./checkpoint";
import { emit } from "./events";
import { dropRequester } from "./requesters";
import { activityForget, expiryWaits } from "./activity";

/** Creates a live mapping record on an external port already checked to be free. */
export function createMapping(sub: u32, protocol: u32, port: u32, family: u32, pool: u32, extPort: u32, flags: u32, clientPort: u32): u32 {
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

export function freeFilters(r: usize): void {
  let f = load<u32>(r + M_FILTERS);
  while (f != 0) {
    const next = load<u32>(filters.at(f) + F_NEXT);
    filters.release(f);
    statAdd(A.STATS_FILTERS, -1);
    f = next;
  }
  store<u32>(r + M_FILTERS, 0);
}

/** How many FILTERs mapping record `r` has. */
export function filterCount(r: usize): u32 {
  let n: u32 = 0;
  for (let f = load<u32>(r + M_FILTERS); f != 0; f = load<u32>(filters.at(f) + F_NEXT)) n++;
  return n;
}

export function freePeers(m: u32): void {
  const r = mappings.at(m);
  let p = load<u32>(r + M_PEERS);
  while (p != 0) {
    const pr = peers.at(p);
    const next = load<u32>(pr + P_NEXT);
    peers.drop(peerFp(m, pr + P_REMOTE_ADDR, <u32>load<u16>(pr + P_REMOTE_PORT)), p);
    statAdd(A.STATS_PEERS, -1);
    p = next;
  }
  store<u32>(r + M_PEERS, 0);
}

/** Adds a FILTER to mapping record `r` (room checked by the caller). */
export function addFilter(r: usize, prefix: u32, port: u32, addr: usize): void {
  const f = filters.alloc();
  const fr = filters.at(f);
  store<u8>(fr + F_PREFIX, <u8>prefix);
  store<u16>(fr + F_PORT, <u16>port);
  copy16(fr + F_ADDR, addr);
  store<u32>(fr + F_NEXT, load<u32>(r + M_FILTERS));
  store<u32>(r + M_FILTERS, f);
  statAdd(A.STATS_FILTERS, 1);
}

/** A new PEER record of mapping `m` for the remote `addr`:`port` (room checked by the caller). */
export function addPeer(m: u32, addr: usize, port: u32): u32 {
  const p = peers.add(peerFp(m, addr, port));
  const pr = peers.at(p);
  const r = mappings.at(m);
  store<u32>(pr + P_MAPPING, m);
  copy16(pr + P_REMOTE_ADDR, addr);
  store<u16>(pr + P_REMOTE_PORT, <u16>port);
  store<u32>(pr + P_NEXT, load<u32>(r + M_PEERS));
  store<u32>(r + M_PEERS, p);
  statAdd(A.STATS_PEERS, 1);
  return p;
}

/**
 * Ends a live mapping: out of the internal index, filters and PEERs freed, external port
 * into hold-down (kept in the external index, so nobody else gets it) [6887 §15; RFC 6888 REQ-8].
 */
export function endMapping(m: u32, kind: u8, hold: bool = true): void {
  const r = mappings.at(m);
  emit(kind, m);
  const sub = load<u32>(r + M_SUB);
  const holdEnd = (kind == A.EVENT_EXPIRE ? effectiveExpiry(r) : now) + holdDown; // a hold starts when the mapping ended
  freeFilters(r);
  freePeers(m);
  descriptions.drop(m);
  dropRequester(m);
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
  activityForget(m); // a reclaim starts without the old traffic answer
  store<u32>(s + S_HELD, load<u32>(s + S_HELD) + 1);
  statAdd(A.STATS_HELD, 1);
  wheelLink(m, holdEnd);
}

export function releaseHold(m: u32): void {
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
export function releasePort(m: u32): void {
  const r = mappings.at(m);
  const pool = <u32>load<u16>(r + M_POOL);
  const port = <u32>load<u16>(r + M_EXTERNAL_PORT);
  const sub = load<u32>(r + M_SUB);
  descriptions.drop(m);
  dropRequester(m);
  subListRemove(sub, m);
  internalIndex.remove(recordFp(r), m);
  externalIndex.remove(externalKey(pool, <u32>load<u8>(r + M_PROTOCOL), port), m);
  mappings.release(m);
  usageAdd(pool, port, -1);
  releaseBlockIfUnused(pool, blockOf(port));
  freeSubscriberIfEmpty(sub);
}

/** A held record taken back by the same client becomes live again [6887 §15]. */
export function reclaim(m: u32, flags: u32, clientPort: u32): void {
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

/**
 * A live mapping whose time passed but the wheel has not reached yet is ended now. The
 * test of a mapping still in its time is inlined (every renewal makes it).
 */
@inline export function liveOrEnded(m: u32): u32 {
  return m == 0 || effectiveExpiry(mappings.at(m)) > now ? m : endIfDue(m);
}

function endIfDue(m: u32): u32 {
  const r = mappings.at(m);
  if (load<u8>(r + M_FLAGS) & A.MAPF_STATIC) return m;
  if (expiryWaits(m)) return m; // traffic keeps it, or the dataplane is being asked (activity.ts)
  endMapping(m, A.EVENT_EXPIRE);
  return 0;
}

/**
 * Gives mapping `m` a MAP part until now + lifetime (a refresh when it had one). Only a
 * shortened life re-files it in the wheel; a longer one is re-filed lazily by expire().
 */
export function renewInbound(m: u32, wasInbound: bool, nonce: usize, clientPort: u32, lifetime: u32): void {
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
export function removeInbound(m: u32): void {
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
