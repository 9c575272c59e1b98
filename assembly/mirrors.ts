// Static mirrors: a static mapping lives in the shard owning its external port's block,
// but its subscriber may send to any shard's listen address. Every other shard holds a
// mirror — internal endpoint → the static's external address:port — and answers from it
// as the owner answers from the static: MAP and NAT-PMP get that address:port with
// lifetime 0xFFFFFFFF (nonce echoed, not stored), a delete gets NOT_AUTHORIZED, and the
// internal port is never mapped dynamically here [6887 §11.3, §15.1; 6886 §3.3]. A
// mirror is not a mapping: no port leased, no event, not journaled, not listed, not sent
// to the dataplane (the owner's record does all that once). The host keeps the mirrors
// in step with the owners' statics (src/server/static-mirrors.ts).

import * as W from "./wire";
import * as A from "./abi";
import { addrEqual, copy16, wr16 } from "./bytes";
import { protocolSupported } from "./config";
import { data, finishSuccess, refuseExternal } from "./codec";
import { M_FLAGS, NO_POOL } from "./layout";
import { KeyedSlab, initialised, mappings, scratch } from "./tables";
import { poolFamily, poolIndexOf } from "./pool";
import { findMapping, internalFp } from "./lookup";
import { endMapping, liveOrEnded } from "./lifecycle";
import { suggestionNames } from "./allocation";
import { fail } from "./request";

const MR_NEXT_FREE: u32 = 0;
const MR_INTERNAL_ADDR: u32 = 4; // 16
const MR_EXTERNAL_ADDR: u32 = 20; // 16
export const MR_EXTERNAL_PORT: u32 = 36; // u16
const MR_INTERNAL_PORT: u32 = 38; // u16
const MR_PROTOCOL: u32 = 40; // u8
const MR_FAMILY: u32 = 41; // u8
const MIRROR_SIZE: u32 = 44;
export const mirrors = new KeyedSlab();
let mirrorsOn = false;

/** The mirror of an endpoint (statics are in realm 0), or 0; inlined: no call while a shard has no mirrors. */
@inline export function findMirror(addr: usize, realm: u32, protocol: u32, port: u32, family: u32): u32 {
  return mirrors.live == 0 || realm != 0 ? 0 : lookupMirror(addr, protocol, port, family);
}

function lookupMirror(addr: usize, protocol: u32, port: u32, family: u32): u32 {
  const k = mirrorKey;
  k.addr = addr;
  k.protocol = protocol;
  k.port = port;
  k.family = family;
  return mirrors.find<MirrorKey>(internalFp(addr, 0, protocol, port, family), k);
}

class MirrorKey {
  addr: usize = 0;
  protocol: u32 = 0;
  port: u32 = 0;
  family: u32 = 0;
  @inline matches(id: u32): bool {
    const e = mirrors.at(id);
    return <u32>load<u16>(e + MR_INTERNAL_PORT) == this.port && <u32>load<u8>(e + MR_PROTOCOL) == this.protocol &&
      <u32>load<u8>(e + MR_FAMILY) == this.family && addrEqual(e + MR_INTERNAL_ADDR, this.addr);
  }
}
const mirrorKey = new MirrorKey();

export function dropMirror(id: u32): void {
  const e = mirrors.at(id);
  mirrors.drop(internalFp(e + MR_INTERNAL_ADDR, 0, <u32>load<u8>(e + MR_PROTOCOL), <u32>load<u16>(e + MR_INTERNAL_PORT), <u32>load<u8>(e + MR_FAMILY)), id);
}

/** Drops the mirrors whose internal address is `addr` (0: any) or whose external address is `ext` (0: any). */
export function dropMirrorsOf(addr: usize, ext: usize): void {
  for (let id: u32 = 1; mirrors.live != 0 && id <= mirrors.used; id++) {
    const e = mirrors.at(id);
    if (load<u8>(e + MR_PROTOCOL) == 0) continue; // free
    if ((addr == 0 || addrEqual(e + MR_INTERNAL_ADDR, addr)) && (ext == 0 || addrEqual(e + MR_EXTERNAL_ADDR, ext))) dropMirror(id);
  }
}

/**
 * Mirror of another shard's static mapping scratch[0..16]:internalPort → scratch[16..32]
 * (a pool address):externalPort. A live mapping of the endpoint here refuses it with
 * CANNOT_PROVIDE_EXTERNAL (as the owner refuses a static over a live mapping), or with
 * `replace` (a re-synchronisation: the static exists already) ends that mapping. Returns a PCP result code.
 */
export function mirrorAdd(protocol: u32, internalPort: u32, externalPort: u32, replace: bool): u32 {
  if (!initialised) return W.RESULT_NETWORK_FAILURE;
  if (protocol == 0 || internalPort == 0 || !protocolSupported(protocol)) return W.RESULT_UNSUPP_PROTOCOL;
  const pool = poolIndexOf(scratch + 16);
  if (pool == NO_POOL) return W.RESULT_CANNOT_PROVIDE_EXTERNAL;
  const family = <u32>load<u8>(poolFamily + pool);
  const existing = liveOrEnded(findMapping(scratch, protocol, internalPort, family));
  if (existing != 0) {
    if (!replace || (load<u8>(mappings.at(existing) + M_FLAGS) & A.MAPF_STATIC) != 0) return W.RESULT_CANNOT_PROVIDE_EXTERNAL;
    endMapping(existing, A.EVENT_DELETE);
  }
  if (!mirrorsOn) {
    mirrors.initKeyed(A.STATIC_MIRRORS_MAX, MIRROR_SIZE, MR_NEXT_FREE);
    mirrorsOn = true;
  }
  let id = findMirror(scratch, 0, protocol, internalPort, family);
  if (id == 0) {
    id = mirrors.add(internalFp(scratch, 0, protocol, internalPort, family));
    if (id == 0) return W.RESULT_NO_RESOURCES;
    const e = mirrors.at(id);
    copy16(e + MR_INTERNAL_ADDR, scratch);
    store<u16>(e + MR_INTERNAL_PORT, <u16>internalPort);
    store<u8>(e + MR_PROTOCOL, <u8>protocol);
    store<u8>(e + MR_FAMILY, <u8>family);
  }
  const e = mirrors.at(id);
  copy16(e + MR_EXTERNAL_ADDR, scratch + 16);
  store<u16>(e + MR_EXTERNAL_PORT, <u16>externalPort);
  return W.RESULT_SUCCESS;
}

/** Has `addr` a mirror for `protocol` on any internal port (IPv4 external: NAT-PMP)? */
export function hasMirrors(addr: usize, protocol: u32): bool {
  for (let id: u32 = 1; mirrors.live != 0 && id <= mirrors.used; id++) {
    const e = mirrors.at(id);
    if (<u32>load<u8>(e + MR_PROTOCOL) == protocol && load<u8>(e + MR_FAMILY) == 0 && addrEqual(e + MR_INTERNAL_ADDR, addr)) return true;
  }
  return false;
}

/** Drops every mirror (before the host lays them down again). */
export function mirrorsClear(): void {
  dropMirrorsOf(0, 0);
}

export function mirrorCount(): u32 {
  return mirrors.live;
}

/** A MAP for a mirrored endpoint, answered as the owner answers for its static [6887 §11.3, §15.1]. */
export function mapFromMirror(slot: usize, id: u32, requested: u32, preferFailure: bool, sugAddr: usize, sugPort: u32): void {
  if (requested == 0) return fail(slot, W.RESULT_NOT_AUTHORIZED);
  const e = mirrors.at(id);
  if (preferFailure && !suggestionNames(e + MR_EXTERNAL_ADDR, <u32>load<u16>(e + MR_EXTERNAL_PORT), sugAddr, sugPort)) {
    refuseExternal(true); // a static does not move: long
    return fail(slot, W.RESULT_CANNOT_PROVIDE_EXTERNAL);
  }
  writeMirrorExternal(slot, e);
  finishSuccess(slot, W.STATIC_MAPPING_LIFETIME, A.OPTBIT_THIRD_PARTY | A.OPTBIT_THIRD_PARTY_ID | A.OPTBIT_PREFER_FAILURE);
}

export function writeMirrorExternal(slot: usize, e: usize): void {
  const d = data(slot);
  wr16(d + W.MP_EXTERNAL_PORT, <u32>load<u16>(e + MR_EXTERNAL_PORT));
  copy16(d + W.MP_EXTERNAL_ADDR, e + MR_EXTERNAL_ADDR);
}
