import * as A from "./abi";
import { addrEqual, copy16 } from "./bytes";
import { fingerprint, mix64 } from "./hashindex";
import { now } from "./clock";
import { M_FAMILY, M_FLAGS, M_INTERNAL_PORT, M_MAP_EXPIRY, M_NONCE, M_PROTOCOL, M_SUB, NO_POOL, P_MAPPING, P_REMOTE_ADDR, P_REMOTE_PORT, S_ADDR, S_BLOCK_COUNT, S_HELD, S_MAPPINGS, S_POOL, S_POOL6, S_REALM, nonceEqual } from "./layout";
import { externalIndex, internalIndex, mappings, peerIndex, peers, statAdd, subscriberIndex, subscribers } from "./tables";

// ---------------------------------------------------------------------------
// Lookups. Key material goes through these globals to the verifiers.
// ---------------------------------------------------------------------------
export let kAddr: usize = 0;
export let kRealm: u32 = 0;

@inline export function subscriberFp(addr: usize, realm: u32): u32 {
  return fingerprint(mix64(load<u64>(addr) ^ mix64(load<u64>(addr, 8) ^ (<u64>realm << 1))));
}

export function findSubscriber(addr: usize, realm: u32): u32 {
  const fp = subscriberFp(addr, realm);
  for (let p = subscriberIndex.first(fp); p >= 0; p = subscriberIndex.after(fp, p)) {
    const id = subscriberIndex.recordAt(p);
    const s = subscribers.at(id);
    if (addrEqual(s + S_ADDR, addr) && load<u32>(s + S_REALM) == realm) return id;
  }
  return 0;
}

export function createSubscriber(addr: usize, realm: u32): u32 {
  const id = subscribers.alloc();
  if (id == 0) return 0;
  const s = subscribers.at(id);
  copy16(s + S_ADDR, addr);
  store<u32>(s + S_REALM, realm);
  store<u16>(s + S_POOL, <u16>NO_POOL);
  store<u16>(s + S_POOL6, <u16>NO_POOL);
  subscriberIndex.insert(subscriberFp(addr, realm), id);
  statAdd(A.STATS_SUBSCRIBERS, 1);
  return id;
}

export function freeSubscriberIfEmpty(sub: u32): void {
  const s = subscribers.at(sub);
  if (load<u32>(s + S_MAPPINGS) != 0 || load<u32>(s + S_HELD) != 0 || load<u8>(s + S_BLOCK_COUNT) != 0) return;
  subscriberIndex.remove(subscriberFp(s + S_ADDR, load<u32>(s + S_REALM)), sub);
  subscribers.release(sub);
  statAdd(A.STATS_SUBSCRIBERS, -1);
}

/**
 * The internal index is keyed by the internal address itself (not the subscriber id), so
 * a refresh finds its mapping without first looking up the subscriber: one dependent
 * memory access fewer on the hot path.
 */
@inline export function internalFp(addr: usize, realm: u32, protocol: u32, port: u32, family: u32): u32 {
  const tail = (<u64>realm << 32) | (<u64>family << 24) | (<u64>protocol << 16) | <u64>port;
  return fingerprint(mix64(load<u64>(addr) ^ mix64(load<u64>(addr, 8) ^ mix64(tail))));
}

/** The internal-index fingerprint of mapping record `r` (from its subscriber's address). */
@inline export function recordFp(r: usize): u32 {
  const s = subscribers.at(load<u32>(r + M_SUB));
  return internalFp(s + S_ADDR, load<u32>(s + S_REALM), <u32>load<u8>(r + M_PROTOCOL), <u32>load<u16>(r + M_INTERNAL_PORT), <u32>load<u8>(r + M_FAMILY));
}

/**
 * The endpoint's live mapping, or (held = true) its port in hold-down for `nonce` that is
 * still held at `now`; 0 if none. Held records share the index with live ones [6887 §15].
 */
export function findEndpoint(addr: usize, realm: u32, protocol: u32, port: u32, family: u32, held: bool, nonce: usize): u32 {
  const fp = internalFp(addr, realm, protocol, port, family);
  for (let p = internalIndex.first(fp); p >= 0; p = internalIndex.after(fp, p)) {
    const id = internalIndex.recordAt(p);
    const r = mappings.at(id);
    if (<u32>load<u16>(r + M_INTERNAL_PORT) == port && <u32>load<u8>(r + M_PROTOCOL) == protocol &&
        <u32>load<u8>(r + M_FAMILY) == family && ownedBy(r, addr, realm)) {
      const isHeld = (load<u8>(r + M_FLAGS) & A.MAPF_HELD) != 0;
      if (!held && !isHeld) return id;
      if (held && isHeld && load<u32>(r + M_MAP_EXPIRY) > now && nonceEqual(r + M_NONCE, nonce)) return id;
    }
  }
  return 0;
}

@inline export function ownedBy(r: usize, addr: usize, realm: u32): bool {
  const s = subscribers.at(load<u32>(r + M_SUB));
  return addrEqual(s + S_ADDR, addr) && load<u32>(s + S_REALM) == realm;
}

/** The live mapping of the endpoint (internal address, realm, protocol, port, external family). */
@inline export function findMapping(addr: usize, protocol: u32, port: u32, family: u32, realm: u32 = 0): u32 {
  return findEndpoint(addr, realm, protocol, port, family, false, 0);
}

@inline export function findHeld(addr: usize, protocol: u32, port: u32, family: u32, nonce: usize, realm: u32 = 0): u32 {
  return findEndpoint(addr, realm, protocol, port, family, true, nonce);
}

/** The subscriber of a found mapping, else of the address in `realm` (0 if none). */
@inline export function subscriberOf(m: u32, addr: usize, realm: u32 = 0): u32 {
  return m != 0 ? load<u32>(mappings.at(m) + M_SUB) : findSubscriber(addr, realm);
}
/** External key: exact, so its fingerprint is the key itself (never 0: protocol ≠ 0). */
@inline export function externalKey(pool: u32, protocol: u32, port: u32): u32 {
  return (pool << 24) | (protocol << 16) | port;
}

export function findExternal(pool: u32, protocol: u32, port: u32): u32 {
  const fp = externalKey(pool, protocol, port);
  const p = externalIndex.first(fp);
  return p < 0 ? 0 : externalIndex.recordAt(p);
}

@inline export function peerFp(m: u32, addr: usize, port: u32): u32 {
  return fingerprint(mix64(load<u64>(addr) ^ mix64(load<u64>(addr, 8) ^ ((<u64>m << 16) | <u64>port))));
}

export function findPeer(m: u32, addr: usize, port: u32): u32 {
  const fp = peerFp(m, addr, port);
  for (let p = peerIndex.first(fp); p >= 0; p = peerIndex.after(fp, p)) {
    const id = peerIndex.recordAt(p);
    const r = peers.at(id);
    if (load<u32>(r + P_MAPPING) == m && <u32>load<u16>(r + P_REMOTE_PORT) == port && addrEqual(r + P_REMOTE_ADDR, addr)) return id;
  }
  return 0;
}
