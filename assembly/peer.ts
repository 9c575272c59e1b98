// PEER requests [6887 §12]: a PEER record on the endpoint's mapping (created with an
// outbound part if there is none), lifetimes never shortened.

import * as W from "./wire";
import * as A from "./abi";
import { copy12, isV4Mapped, rd16, rd32 } from "./bytes";
import { mappingsPerSubscriber, noncePolicy, peerMinLifetime, protocolSupported } from "./config";
import { data, finishError, finishSuccess } from "./codec";
import { now } from "./clock";
import { M_CLIENT_PORT, M_FLAGS, M_NONCE, M_OUT_EXPIRY, P_EXPIRY, P_NONCE, S_MAPPINGS, nonceEqual } from "./layout";
import { mappings, peers, statAdd, subscribers } from "./tables";
import { poolHasFamily } from "./pool";
import { wheelLink } from "./wheel";
import { createSubscriber, findHeld, findMapping, findPeer, subscriberOf } from "./lookup";
import { requestRealm } from "./realms";
import { applyDescription } from "./descriptions";
import { applyCheckpoint } from "./checkpoint";
import { emit, markChanged, markPeer } from "./events";
import { addPeer, liveOrEnded } from "./lifecycle";
import { Alloc, NO_ALLOC, allocResult, allocate, commitAllocation, reclaimHeld } from "./allocation";
import { clampLifetime, fail, internalAddress, writeExternal } from "./request";
import { noteRequester } from "./requesters";
import { findMirror, mirrors, writeMirrorExternal } from "./mirrors";

export function handlePeer(slot: usize): void {
  const d = data(slot);
  const requested = rd32(d + W.HDR_LIFETIME);
  const protocol = <u32>load<u8>(d + W.MP_PROTOCOL);
  const internalPort = rd16(d + W.MP_INTERNAL_PORT);
  const sugPort = rd16(d + W.MP_EXTERNAL_PORT);
  const sugAddr = d + W.MP_EXTERNAL_ADDR;
  const nonce = d + W.MP_NONCE;
  const remote = d + W.PEER_REMOTE_ADDR;
  const remotePort = rd16(d + W.PEER_REMOTE_PORT);
  const family: u32 = isV4Mapped(sugAddr) ? 0 : 1;
  const addr = internalAddress(slot);
  const clientPort = <u32>load<u16>(slot + A.SLOT_SRC_PORT);
  if (!protocolSupported(protocol) || !poolHasFamily(family)) return fail(slot, W.RESULT_UNSUPP_PROTOCOL);
  const lifetime = clampLifetime(requested, peerMinLifetime);
  const realm = requestRealm(slot);
  if (realm == 0xffffffff) return fail(slot, W.RESULT_THIRD_PARTY_ID_UNKNOWN); // [7843 §4.1]
  const mirror = findMirror(addr, realm, protocol, internalPort, family);
  if (mirror != 0) {
    // Another shard's static: the flow leaves on its external address:port, which outlives
    // any PEER lifetime; nothing is recorded here (the owner's record forwards already).
    writeMirrorExternal(slot, mirrors.at(mirror));
    return finishSuccess(slot, lifetime, A.OPTBIT_THIRD_PARTY | A.OPTBIT_THIRD_PARTY_ID);
  }
  let m = findMapping(addr, protocol, internalPort, family, realm);
  if (m != 0 && liveOrEnded(m) == 0) m = 0;
  let sub = subscriberOf(m, addr, realm);
  let p: u32 = 0;
  if (m != 0) {
    p = findPeer(m, remote, remotePort);
    if (p != 0) {
      const pr = peers.at(p);
      const expiry = load<u32>(pr + P_EXPIRY);
      // `relaxed`: a one-shot client (a new nonce per run) refreshes its own 5-tuple; the
      // endpoint and remote peer are the same, so nobody else's flow is touched.
      if (expiry > now && noncePolicy == A.NONCE_STRICT && !nonceEqual(pr + P_NONCE, nonce)) {
        finishError(slot, W.RESULT_NOT_AUTHORIZED, expiry - now); // [6887 §12.3]
        return;
      }
    } else if (peers.full()) {
      return fail(slot, W.RESULT_NO_RESOURCES);
    }
  } else {
    if (sub != 0 && load<u32>(subscribers.at(sub) + S_MAPPINGS) >= mappingsPerSubscriber) return fail(slot, W.RESULT_USER_EX_QUOTA);
    if (peers.full()) return fail(slot, W.RESULT_NO_RESOURCES);
    // PEER always has PREFER_FAILURE semantics for its suggestion [6887 §12.3].
    const held = sub != 0 ? findHeld(addr, protocol, internalPort, family, nonce, realm) : 0;
    let a: Alloc;
    if (held != 0) {
      a = reclaimHeld(held, sugAddr, sugPort, sugPort != 0);
      if (a == NO_ALLOC) return fail(slot, W.RESULT_CANNOT_PROVIDE_EXTERNAL); // short: its own port, in hold-down for now
    } else {
      a = allocate(sub, family, protocol, internalPort, sugAddr, sugPort, nonce, sugPort != 0);
      const result = allocResult(a);
      if (result != 0) return fail(slot, result);
    }
    if (sub == 0) {
      sub = createSubscriber(addr, realm);
      if (sub == 0) return fail(slot, W.RESULT_NO_RESOURCES);
    }
    let flags = A.MAPF_OUTBOUND;
    if (load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_THIRD_PARTY) flags |= A.MAPF_THIRD_PARTY;
    m = commitAllocation(a, sub, protocol, internalPort, family, flags, clientPort);
    copy12(mappings.at(m) + M_NONCE, nonce); // the creator's nonce keys its hold-down later
    wheelLink(m, now + lifetime);
  }
  const r = mappings.at(m);
  const newPeer = p == 0;
  if (p == 0) {
    p = addPeer(m, remote, remotePort);
  }
  const pr = peers.at(p);
  copy12(pr + P_NONCE, nonce);
  // PEER never shortens a lifetime [6887 §12.1, §15].
  let expiry = now + lifetime;
  const had = load<u32>(pr + P_EXPIRY);
  if (had > expiry) expiry = had;
  store<u32>(pr + P_EXPIRY, expiry);
  const flags = <u32>load<u8>(r + M_FLAGS);
  const created = (flags & A.MAPF_OUTBOUND) == 0 || load<u32>(r + M_OUT_EXPIRY) <= now;
  store<u8>(r + M_FLAGS, <u8>(flags | A.MAPF_OUTBOUND));
  if (expiry > load<u32>(r + M_OUT_EXPIRY)) store<u32>(r + M_OUT_EXPIRY, expiry);
  store<u16>(r + M_CLIENT_PORT, <u16>clientPort);
  noteRequester(slot, m);
  emit(created ? A.EVENT_CREATE : A.EVENT_REFRESH, m);
  markPeer(m, p);
  if (!created) statAdd(A.STATS_REFRESHED, 1);
  if (!created && (newPeer || (load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_DESCRIPTION) != 0)) markChanged(m);
  writeExternal(slot, m);
  finishSuccess(slot, expiry - now, A.OPTBIT_THIRD_PARTY | A.OPTBIT_THIRD_PARTY_ID);
  applyDescription(slot, m);
  applyCheckpoint(slot, m);
}
