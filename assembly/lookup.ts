// Finding records by key: subscribers by (address, realm), mappings by internal endpoint
// (live or held) and by external key, PEER records by (mapping, remote). Each lookup hands
// its key material to a small verifier object (HashIndex.find); no other state.

import * as A from "./abi";
import { addrEqual, copy16 } from "./bytes";
import { fingerprint, mix64 } from "./hashindex";
import { now } from "./clock";
import { M_FAMILY, M_FLAGS, M_INTERNAL_PORT, M_MAP_EXPIRY, M_NONCE, M_PROTOCOL, M_SUB, NO_POOL, P_MAPPING, P_REMOTE_ADDR, P_REMOTE_PORT, S_ADDR, S_BLOCK_COUNT, S_HELD, S_MAPPINGS, S_POOL, S_POOL6, S_REALM, nonceEqual } from "./layout";
import { externalIndex, internalIndex, mappings, peers, statAdd, subscribers } from "./tables";

@inline function subscriberFp(addr: usize, realm: u32): u32 {
  return fingerprint(mix64(load<u64>(addr) ^ mix64(load<u64>(addr, 8) ^ (<u64>realm << 1))));
}

class SubscriberKey {
  addr: usize = 0;
  realm: u32 = 0;
  @inline matches(id: u32): bool {
    const s = subscribers.at(id);
    return addrEqual(s + S_ADDR, this.addr) && load<u32>(s + S_REALM) == this.realm;
  }
}
const subscriberKey = new SubscriberKey();

export function findSubscriber(addr: usize, realm: u32): u32 {
  subscriberKey.addr = addr;
  subscriberKey.realm = realm;
  return subscribers.find<SubscriberKey>(subscriberFp(addr, realm), subscriberKey);
}

export function createSubscriber(addr: usize, realm: u32): u32 {
  const id = subscribers.add(subscriberFp(addr, realm));
  if (id == 0) return 0;
  const s = subscribers.at(id);
  copy16(s + S_ADDR, addr);
  store<u32>(s + S_REALM, realm);
  store<u16>(s + S_POOL, <u16>NO_POOL);
  store<u16>(s + S_POOL6, <u16>NO_POOL);
  statAdd(A.STATS_SUBSCRIBERS, 1);
  return id;
}

export function freeSubscriberIfEmpty(sub: u32): void {
  const s = subscribers.at(sub);
  if (load<u32>(s + S_MAPPINGS) != 0 || load<u32>(s + S_HELD) != 0 || load<u8>(s + S_BLOCK_COUNT) != 0) return;
  subscribers.drop(subscriberFp(s + S_ADDR, load<u32>(s + S_REALM)), sub);
  statAdd(A.STATS_SUBSCRIBERS, -1);
}

/**
 * The internal index is keyed by the internal address itself (not the subscriber id), so
 * a refresh finds its mapping without first looking up the subscriber: one dependent
 * memory access fewer on the hot path.
 */
@inline export function internalFp(addr: usize, realm: u32, protocol: u32, port: u32, family: u32): u32 {
  const tail = (<u64>realm << 32) | (<u64>family << 24) | (<u64>protocol << 16) | <u64>port;
  // One finaliser over the three words, each first multiplied by its own odd constant (a
  // bijection of the word) and the address's second half rotated so its high bits (an IPv4
  // address in v4-mapped form) reach the low ones, instead of three chained finalisers:
  // this runs twice per request (prefetch stage, handler), before the index load.
  const a = load<u64>(addr) * 0x9e3779b97f4a7c15;
  const b = rotr<u64>(load<u64>(addr, 8) * 0xc2b2ae3d27d4eb4f, 31);
  return fingerprint(mix64(a ^ b ^ (tail * 0x165667b19e3779f9)));
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
@inline export function findEndpoint(addr: usize, realm: u32, protocol: u32, port: u32, family: u32, held: bool, nonce: usize): u32 {
  return findEndpointFp(internalFp(addr, realm, protocol, port, family), addr, realm, protocol, port, family, held, nonce);
}

/**
 * The live mapping of a realm-0 endpoint whose fingerprint `fp` and first candidate record
 * `candidate` (0: none) the batch's prefetch stages found (engine.ts): the candidate is
 * verified first, so a refresh neither hashes its key again nor probes the index. Any record
 * the verifier accepts is the endpoint's one live mapping (the index may have changed
 * since the stage ran: a record freed since is zeroed and fails the check); otherwise the
 * index is searched as usual.
 */
export function findStagedMapping(fp: u32, candidate: u32, addr: usize, protocol: u32, port: u32, family: u32): u32 {
  const k = setEndpointKey(addr, 0, protocol, port, family, false, 0);
  if (candidate != 0 && candidate <= mappings.used && k.matches(candidate)) return candidate;
  return internalIndex.find<EndpointKey>(fp, k);
}

@inline function setEndpointKey(addr: usize, realm: u32, protocol: u32, port: u32, family: u32, held: bool, nonce: usize): EndpointKey {
  const k = endpointKey;
  k.addr = addr;
  k.realm = realm;
  k.protocol = protocol;
  k.port = port;
  k.family = family;
  k.held = held;
  k.nonce = nonce;
  return k;
}

function findEndpointFp(fp: u32, addr: usize, realm: u32, protocol: u32, port: u32, family: u32, held: bool, nonce: usize): u32 {
  return internalIndex.find<EndpointKey>(fp, setEndpointKey(addr, realm, protocol, port, family, held, nonce));
}

class EndpointKey {
  addr: usize = 0;
  realm: u32 = 0;
  protocol: u32 = 0;
  port: u32 = 0;
  family: u32 = 0;
  held: bool = false;
  nonce: usize = 0;
  @inline matches(id: u32): bool {
    const r = mappings.at(id);
    if (<u32>load<u16>(r + M_INTERNAL_PORT) != this.port || <u32>load<u8>(r + M_PROTOCOL) != this.protocol ||
        <u32>load<u8>(r + M_FAMILY) != this.family || !ownedBy(r, this.addr, this.realm)) return false;
    const isHeld = (load<u8>(r + M_FLAGS) & A.MAPF_HELD) != 0;
    if (!this.held) return !isHeld;
    return isHeld && load<u32>(r + M_MAP_EXPIRY) > now && nonceEqual(r + M_NONCE, this.nonce);
  }
}
const endpointKey = new EndpointKey();

@inline function ownedBy(r: usize, addr: usize, realm: u32): bool {
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

class PeerKey {
  m: u32 = 0;
  addr: usize = 0;
  port: u32 = 0;
  @inline matches(id: u32): bool {
    const r = peers.at(id);
    return load<u32>(r + P_MAPPING) == this.m && <u32>load<u16>(r + P_REMOTE_PORT) == this.port && addrEqual(r + P_REMOTE_ADDR, this.addr);
  }
}
const peerKey = new PeerKey();

export function findPeer(m: u32, addr: usize, port: u32): u32 {
  peerKey.m = m;
  peerKey.addr = addr;
  peerKey.port = port;
  return peers.find<PeerKey>(peerFp(m, addr, port), peerKey);
}
