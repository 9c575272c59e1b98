// MAP requests [6887 §11]: create, refresh and delete of a mapping's MAP part, held ports
// taken back by the same client [§15], PORT_SET requests handed to portset.ts.

import * as W from "./wire";
import * as A from "./abi";
import { copy12, isV4Mapped, rd16, rd32 } from "./bytes";
import { mappingsPerSubscriber, minLifetime, noncePolicy, portSetMax, protocolSupported } from "./config";
import { data, finishError, finishSuccess, refuseExternal } from "./codec";
import { now } from "./clock";
import { M_FLAGS, M_MAP_EXPIRY, M_NONCE, S_MAPPINGS, nonceEqual } from "./layout";
import { mappings, subscribers } from "./tables";
import { poolHasFamily } from "./pool";
import { effectiveExpiry, hasInbound, wheelLink, wheelUnlink } from "./wheel";
import { createSubscriber, findHeld, findMapping, findStagedMapping, subscriberOf } from "./lookup";
import { requestRealm } from "./realms";
import { applyDescription } from "./descriptions";
import { applyCheckpoint } from "./checkpoint";
import { emit, markChanged } from "./events";
import { liveOrEnded, removeInbound, renewInbound } from "./lifecycle";
import { Alloc, NO_ALLOC, allocResult, allocate, commitAllocation, reclaimHeld, sameExternal } from "./allocation";
import { MAP_ECHO, clampLifetime, fail, filtersAvailable, internalAddress, walkFilters, writeExternal } from "./request";
import { handlePortSet } from "./portset";
import { noteRequester } from "./requesters";
import { findMirror, mapFromMirror } from "./mirrors";
import { WAIT, activityFloor, activityOn, idleTimeout, waitForActivity } from "./activity";

/**
 * `fp` and `candidate`: the internal-index fingerprint of the slot's endpoint in realm 0 and
 * the first record filed under it, as the batch's prefetch stages found them (fp 0: not
 * staged, looked up here).
 */
export function handleMap(slot: usize, fp: u32 = 0, candidate: u32 = 0): void {
  const d = data(slot);
  const opts = load<u32>(slot + A.SLOT_OPTIONS);
  const requested = rd32(d + W.HDR_LIFETIME);
  const protocol = <u32>load<u8>(d + W.MP_PROTOCOL);
  const internalPort = rd16(d + W.MP_INTERNAL_PORT);
  const sugPort = rd16(d + W.MP_EXTERNAL_PORT);
  const sugAddr = d + W.MP_EXTERNAL_ADDR;
  const nonce = d + W.MP_NONCE;
  const family: u32 = isV4Mapped(sugAddr) ? 0 : 1;
  const preferFailure = (opts & A.OPTBIT_PREFER_FAILURE) != 0;
  const addr = internalAddress(slot);
  const clientPort = <u32>load<u16>(slot + A.SLOT_SRC_PORT);
  const realm = requestRealm(slot);
  if (realm == 0xffffffff) return fail(slot, W.RESULT_THIRD_PARTY_ID_UNKNOWN); // [7843 §4.1]
  const mirror = findMirror(addr, realm, protocol, internalPort, family);
  if (mirror != 0) return mapFromMirror(slot, mirror, requested, preferFailure, sugAddr, sugPort); // another shard's static
  if ((opts & A.OPTBIT_PORT_SET) && rd16(d + <u32>load<u16>(slot + A.SLOT_PORT_SET) + W.PORT_SET_SIZE) > 1 && portSetMax > 1) {
    return handlePortSet(slot, realm);
  }
  let m: u32 = 0;
  if (protocol != 0 && internalPort != 0) {
    m = fp != 0 && realm == 0 ? findStagedMapping(fp, candidate, addr, protocol, internalPort, family) : findMapping(addr, protocol, internalPort, family, realm);
  }
  if (m != 0 && liveOrEnded(m) == 0) m = 0; // ending it may have freed the subscriber

  if (requested == 0) {
    // Delete [6887 §15.1, erratum 3621]: the reply keeps the suggested fields as sent.
    if (m != 0) {
      const r = mappings.at(m);
      const flags = <u32>load<u8>(r + M_FLAGS);
      if ((flags & A.MAPF_STATIC) || !hasInbound(r)) return fail(slot, W.RESULT_NOT_AUTHORIZED);
      if (noncePolicy == A.NONCE_STRICT && !nonceEqual(r + M_NONCE, nonce)) {
        finishError(slot, W.RESULT_NOT_AUTHORIZED, load<u32>(r + M_MAP_EXPIRY) - now); // remaining lifetime [6887 §11.3]
        return;
      }
      // Traffic sent recently: the mapping stays until its idle timeout, which the reply says [6887 §15].
      const natural = activityFloor(m);
      if (natural == WAIT) return waitForActivity(slot);
      if (natural > now) return keepUntilIdle(slot, m, natural);
      removeInbound(m);
    }
    return finishSuccess(slot, 0, A.OPTBIT_THIRD_PARTY | A.OPTBIT_THIRD_PARTY_ID);
  }

  let sub = subscriberOf(m, addr, realm);
  if (protocol == 0 || internalPort == 0 || !protocolSupported(protocol)) return fail(slot, W.RESULT_UNSUPP_PROTOCOL); // [6887 §11.3]
  if (!poolHasFamily(family)) return fail(slot, W.RESULT_UNSUPP_PROTOCOL); // decision (item 67)
  let lifetime = clampLifetime(requested, minLifetime);

  if (m != 0) {
    const r = mappings.at(m);
    const flags = <u32>load<u8>(r + M_FLAGS);
    if (flags & A.MAPF_STATIC) {
      if (preferFailure && !sameExternal(r, sugAddr, sugPort)) return (refuseExternal(true), fail(slot, W.RESULT_CANNOT_PROVIDE_EXTERNAL)); // a static does not move: long
      writeExternal(slot, m);
      return finishSuccess(slot, W.STATIC_MAPPING_LIFETIME, A.OPTBIT_THIRD_PARTY | A.OPTBIT_THIRD_PARTY_ID | A.OPTBIT_PREFER_FAILURE); // [6887 §11.3]
    }
    const wasInbound = hasInbound(r);
    if (wasInbound && noncePolicy == A.NONCE_STRICT && !nonceEqual(r + M_NONCE, nonce)) {
      finishError(slot, W.RESULT_NOT_AUTHORIZED, load<u32>(r + M_MAP_EXPIRY) - now); // remaining lifetime [6887 §11.3]
      return;
    }
    if (preferFailure && !sameExternal(r, sugAddr, sugPort)) return fail(slot, W.RESULT_CANNOT_PROVIDE_EXTERNAL); // [6887 §11.3]; short: the client may free its port
    if (activityOn() && lifetime < idleTimeout(protocol)) {
      // Never below the natural expiry the host's traffic gives it [6887 §15].
      const natural = activityFloor(m);
      if (natural == WAIT) return waitForActivity(slot);
      if (natural > now + lifetime) lifetime = natural - now;
    }
    if (walkFilters(slot, m, false) < 0) return fail(slot, W.RESULT_EXCESSIVE_REMOTE_PEERS); // [6887 §13.3]
    if (!filtersAvailable(slot)) return fail(slot, W.RESULT_NO_RESOURCES);
    walkFilters(slot, m, true);
    // The latest request says whether a renumbering may move it (Mapping Update) [6887 §14.2].
    store<u8>(r + M_FLAGS, <u8>(preferFailure ? flags | A.MAPF_PREFER_FAILURE : flags & ~A.MAPF_PREFER_FAILURE));
    renewInbound(m, wasInbound, nonce, clientPort, lifetime);
    noteRequester(slot, m);
    if (load<u16>(slot + A.SLOT_FILTER_COUNT) != 0 || (load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_DESCRIPTION) != 0) markChanged(m); // FILTERs or DESCRIPTION may have changed
    writeExternal(slot, m);
    finishSuccess(slot, lifetime, MAP_ECHO);
    applyDescription(slot, m);
    applyCheckpoint(slot, m);
    return;
  }

  // New mapping: every check before any change.
  if (sub != 0 && load<u32>(subscribers.at(sub) + S_MAPPINGS) >= mappingsPerSubscriber) return fail(slot, W.RESULT_USER_EX_QUOTA); // [6887 §17.2]
  const held = sub != 0 ? findHeld(addr, protocol, internalPort, family, nonce, realm) : 0;
  let a: Alloc;
  if (held != 0) {
    a = reclaimHeld(held, sugAddr, sugPort, preferFailure);
    if (a == NO_ALLOC) return fail(slot, W.RESULT_CANNOT_PROVIDE_EXTERNAL); // short: its own port, in hold-down for now
  } else {
    a = allocate(sub, family, protocol, internalPort, sugAddr, sugPort, nonce, preferFailure);
    const result = allocResult(a);
    if (result != 0) return fail(slot, result);
  }
  if (walkFilters(slot, 0, false) < 0) return fail(slot, W.RESULT_EXCESSIVE_REMOTE_PEERS); // [6887 §13.3]
  if (!filtersAvailable(slot)) return fail(slot, W.RESULT_NO_RESOURCES);
  if (sub == 0) {
    sub = createSubscriber(addr, realm);
    if (sub == 0) return fail(slot, W.RESULT_NO_RESOURCES);
  }
  let flags = A.MAPF_INBOUND;
  if (opts & A.OPTBIT_THIRD_PARTY) flags |= A.MAPF_THIRD_PARTY;
  if (preferFailure) flags |= A.MAPF_PREFER_FAILURE;
  m = commitAllocation(a, sub, protocol, internalPort, family, flags, clientPort);
  noteRequester(slot, m);
  const r = mappings.at(m);
  copy12(r + M_NONCE, nonce);
  store<u32>(r + M_MAP_EXPIRY, now + lifetime);
  wheelLink(m, now + lifetime);
  walkFilters(slot, m, true);
  writeExternal(slot, m);
  finishSuccess(slot, lifetime, MAP_ECHO);
  applyDescription(slot, m); // before the event: the journal record carries it
  applyCheckpoint(slot, m);
  emit(A.EVENT_CREATE, m);
}

/**
 * A delete while the host's traffic keeps the mapping: it stays, with its MAP part, until
 * `until` (its idle end), and the reply's lifetime says so [6887 §15]; then the expiry asks
 * the dataplane again.
 */
function keepUntilIdle(slot: usize, m: u32, until: u32): void {
  const r = mappings.at(m);
  store<u32>(r + M_MAP_EXPIRY, until);
  wheelUnlink(m);
  wheelLink(m, effectiveExpiry(r));
  emit(A.EVENT_REFRESH, m);
  finishSuccess(slot, until - now, A.OPTBIT_THIRD_PARTY | A.OPTBIT_THIRD_PARTY_ID);
}
