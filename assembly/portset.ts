// PORT_SET [RFC 7753]: a set of n internal ports [I, I+n) mapped onto n consecutive
// external ports inside one of the subscriber's blocks — n single-port mappings created,
// renewed and deleted together (persistence and the dataplane see n mappings).
// n ≤ the size asked, portSetMax, the block size and the subscriber's quota left; it
// stops before the first internal port that already has a mapping, and halves until a
// free run is found (at least one port). P = 1: the external run starts on the parity of
// I. A set of one is answered as a single-port MAP, without PORT_SET.

import * as W from "./wire";
import * as A from "./abi";
import { copy12, isV4Mapped, rd16, rd32, wr16 } from "./bytes";
import { blockSize, mappingsPerSubscriber, maxBlocksPerSubscriber, minLifetime, noncePolicy, parity, portForbidden, portMin, portSetMax, protocolSupported } from "./config";
import { appendOption, data, finishError, finishSuccess } from "./codec";
import { now } from "./clock";
import { randomBelow } from "./random";
import { BLOCK_FAMILY_BIT, M_EXTERNAL_PORT, M_FLAGS, M_MAP_EXPIRY, M_NONCE, M_POOL, NO_POOL, S_BLOCKS, S_BLOCK_COUNT, S_MAPPINGS, nonceEqual, pairedPool } from "./layout";
import { mappings, scratch, subscribers } from "./tables";
import { blockOf, blockStart, freeCount, pickPool, poolHasFamily, poolStack } from "./pool";
import { hasInbound, wheelLink } from "./wheel";
import { createSubscriber, findEndpoint, findExternal, findMapping, findSubscriber } from "./lookup";
import { emit } from "./events";
import { createMapping, liveOrEnded, removeInbound, renewInbound } from "./lifecycle";
import { Alloc, NO_ALLOC, allocPool, allocPort, leaseAllocated, packAlloc } from "./allocation";
import { MAP_ECHO, clampLifetime, fail, internalAddress, writeExternal } from "./request";
import { noteRequester } from "./requesters";
import { findMirror } from "./mirrors";

const setMembers = memory.data(<i32>(A.PORT_SET_LIMIT * 4), 4); // u32 per member (no allocation on the packet path)


/** Can the n ports from `start` on `pool` all be given (free, allowed, inside one block)? */
function runFree(pool: u32, protocol: u32, start: u32, n: u32): bool {
  if (start < portMin || start + n - 1 > 65535 || blockOf(start) != blockOf(start + n - 1)) return false;
  for (let k: u32 = 0; k < n; k++) {
    if (portForbidden(protocol, start + k) || findExternal(pool, protocol, start + k) != 0) return false;
  }
  return true;
}

/** The first port of a run of n free ports in block `block` of `pool` (random start, parity kept if asked), or 0. */
function runInBlock(pool: u32, protocol: u32, block: u32, n: u32, parity: bool, internalPort: u32): u32 {
  const first = blockStart(block);
  const span: u32 = first + blockSize - 1 > 65535 ? 65536 - first : blockSize;
  if (n > span) return 0;
  const starts: u32 = span - n + 1;
  const offset = randomBelow(starts);
  for (let i: u32 = 0; i < starts; i++) {
    const start = first + (offset + i) % starts;
    if (parity && (start & 1) != (internalPort & 1)) continue;
    if (runFree(pool, protocol, start, n)) return start;
  }
  return 0;
}

/** A run of n ports in the subscriber's blocks, else in a new block: its first port's choice, or NO_ALLOC. */
function tryRun(sub: u32, family: u32, protocol: u32, n: u32, parity: bool, internalPort: u32): Alloc {
  let pool = NO_POOL;
  if (sub != 0) {
    const s = subscribers.at(sub);
    pool = pairedPool(s, family);
    const familyBit: u32 = family != 0 ? BLOCK_FAMILY_BIT : 0;
    const count = <u32>load<u8>(s + S_BLOCK_COUNT);
    for (let k: u32 = 0; k < count && pool != NO_POOL; k++) {
      const entry = <u32>load<u16>(s + S_BLOCKS + (k << 1));
      if ((entry & BLOCK_FAMILY_BIT) != familyBit) continue;
      const start = runInBlock(pool, protocol, entry & ~BLOCK_FAMILY_BIT, n, parity, internalPort);
      if (start != 0) return packAlloc(pool, start, false, 0);
    }
    if (<u32>load<u8>(s + S_BLOCK_COUNT) >= maxBlocksPerSubscriber) return NO_ALLOC;
  }
  if (pool == NO_POOL) pool = pickPool(family);
  if (pool == NO_POOL) return NO_ALLOC;
  // A new block: the next ones the random stack would hand out.
  const stack = <usize>load<u32>(poolStack + (<usize>pool << 2));
  const free = freeCount(pool);
  for (let depth: u32 = 1; depth <= free && depth <= 4; depth++) {
    const start = runInBlock(pool, protocol, <u32>load<u16>(stack + (<usize>(free - depth) << 1)), n, parity, internalPort);
    if (start != 0) return packAlloc(pool, start, true, 0);
  }
  return NO_ALLOC;
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

export function handlePortSet(slot: usize, realm: u32): void {
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
  let a = tryRun(sub, family, protocol, n, parity, internalPort);
  while (n > 1 && a == NO_ALLOC) {
    n >>= 1;
    a = tryRun(sub, family, protocol, n, parity, internalPort);
  }
  if (a == NO_ALLOC) return fail(slot, sub != 0 && <u32>load<u8>(subscribers.at(sub) + S_BLOCK_COUNT) >= maxBlocksPerSubscriber ? W.RESULT_USER_EX_QUOTA : W.RESULT_NO_RESOURCES);
  if (sub == 0) {
    sub = createSubscriber(addr, realm);
    if (sub == 0) return fail(slot, W.RESULT_NO_RESOURCES);
  }
  const lifetime = clampLifetime(requested, minLifetime);
  let flags = A.MAPF_INBOUND;
  if (load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_THIRD_PARTY) flags |= A.MAPF_THIRD_PARTY;
  leaseAllocated(a, sub);
  const pool = allocPool(a);
  const start = allocPort(a);
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
