// Renumbering: an address leaves the pool; its mappings move to the other addresses and
// their clients are told by Mapping Update messages [6887 §14.2].

import * as W from "./wire";
import * as A from "./abi";
import { copy12, copy16, wr16, wr32 } from "./bytes";
import { appendOption, data, errorLifetime, refuseExternal, slotsBase } from "./codec";
import { now, setNow } from "./clock";
import { BLOCK_FAMILY_BIT, F_ADDR, F_NEXT, F_PORT, F_PREFIX, M_CLIENT_PORT, M_EXTERNAL_PORT, M_FAMILY, M_FILTERS, M_FLAGS, M_INTERNAL_PORT, M_MAP_EXPIRY, M_NONCE, M_PEERS, M_POOL, M_PROTOCOL, M_SUB, NO_POOL, P_EXPIRY, P_NEXT, P_NONCE, P_REMOTE_ADDR, P_REMOTE_PORT, S_ADDR, S_BLOCKS, S_BLOCK_COUNT, S_REALM, pairedPool, setPaired } from "./layout";
import { externalIndex, filters, initialised, mappings, peers, statAdd, subscribers } from "./tables";
import { blockStart, ownerAt, poolAddr, poolCount, poolFamily, poolRetired, retired, usageAdd } from "./pool";
import { externalKey, freeSubscriberIfEmpty } from "./lookup";
import { RL_ID, RL_LENGTH, realms } from "./realms";
import { emit, emitBlock } from "./events";
import { blockSize } from "./config";
import { endMapping, liveOrEnded, releaseHold } from "./lifecycle";
import { NO_ALLOC, allocPool, allocPort, allocResult, leaseAllocated, tryNewBlock, tryOwnBlocks } from "./allocation";
import { RQ_ADDR, RQ_PORT, requesterOf } from "./requesters";
import { dropMirrorsOf } from "./mirrors";

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
  setNow(at);
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
        emitBlock(A.EVENT_BLOCK_RELEASE, sub, pool, family, blockStart(e & ~BLOCK_FAMILY_BIT), blockSize);
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
  setNow(at);
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
  const tell = (flags & A.MAPF_THIRD_PARTY) == 0 || requesterOf(m) != 0;
  if (flags & A.MAPF_PREFER_FAILURE) {
    // It cannot keep its external address:port: CANNOT_PROVIDE_EXTERNAL, and it ends [6887 §14.2].
    const n = tell ? updateMessages(m, W.RESULT_CANNOT_PROVIDE_EXTERNAL, epoch) : 0;
    endMapping(m, A.EVENT_DELETE, false);
    return n;
  }
  let a = tryOwnBlocks(sub, family, protocol, internalPort, r + M_NONCE);
  if (a == NO_ALLOC) a = tryNewBlock(sub, family, protocol, internalPort);
  if (allocResult(a) != 0) {
    endMapping(m, A.EVENT_DELETE, false); // no room elsewhere (quota or pool exhausted)
    return 0;
  }
  leaseAllocated(a, sub);
  const pool = allocPool(a);
  const port = allocPort(a);
  const oldPool = <u32>load<u16>(r + M_POOL);
  const oldPort = <u32>load<u16>(r + M_EXTERNAL_PORT);
  rehomedFrom = (protocol << 24) | (oldPool << 16) | oldPort;
  externalIndex.remove(externalKey(oldPool, protocol, oldPort), m);
  usageAdd(oldPool, oldPort, -1);
  store<u16>(r + M_POOL, <u16>pool);
  store<u16>(r + M_EXTERNAL_PORT, <u16>port);
  externalIndex.insert(externalKey(pool, protocol, port), m);
  usageAdd(pool, port, 1);
  emit(A.EVENT_UPDATE, m);
  return tell ? updateMessages(m, W.RESULT_SUCCESS, epoch) : 0;
}

@inline function remaining(expiry: u32): u32 {
  return expiry > now ? expiry - now : 0;
}

/**
 * Slot `i` as an outgoing message of `size` bytes to the mapping's client: its address and
 * the port of its last request, or for a THIRD_PARTY mapping its requester's entry `q`, with the
 * THIRD_PARTY option (and THIRD_PARTY_ID in a realm) as its responses carry [6887 §13.1, §14.2].
 */
function messageSlot(i: u32, s: usize, r: usize, q: usize, opcode: u32, result: u32, lifetime: u32, epoch: u32, size: u32): usize {
  const slot = slotsBase() + <usize>i * A.SLOT_SIZE;
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
  const to = (load<u8>(r + M_FLAGS) & A.MAPF_THIRD_PARTY) != 0 ? requesterOf(m) : 0;
  let n: u32 = 0;
  if (load<u8>(r + M_FLAGS) & A.MAPF_INBOUND) {
    if (result == W.RESULT_CANNOT_PROVIDE_EXTERNAL) refuseExternal(true); // its address is retired: long
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
