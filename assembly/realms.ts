// Realms [RFC 7843]: a THIRD_PARTY_ID (a tunnel or session identifier, up to
// REALM_ID_MAX bytes) names the realm of its THIRD_PARTY address, so overlapping internal
// addresses of different subscribers (DS-Lite softwires) are different subscribers, with
// their own mappings, blocks and quotas. Realm 0 is "no identifier". IDs are registered by
// the host (a configured list) or, with acceptAnyRealm, on first use.

import * as A from "./abi";
import { fingerprint, mix64 } from "./hashindex";
import { data } from "./codec";
import { KeyedSlab, scratch } from "./tables";

const RL_NEXT_FREE: u32 = 0;
export const RL_LENGTH: u32 = 4; // u8
export const RL_ID: u32 = 5; // REALM_ID_MAX bytes
const REALM_SIZE: u32 = 24;
export const realms = new KeyedSlab();
let realmsOn = false;
export let acceptAnyRealm = false;

/** Room for `capacity` realms; `any`: an unknown THIRD_PARTY_ID is registered on first use. Once, after engineInit. */
export function initRealms(capacity: u32, any: bool): bool {
  acceptAnyRealm = any;
  if (realmsOn || capacity == 0) return capacity == 0 || realmsOn;
  realms.initKeyed(capacity, REALM_SIZE, RL_NEXT_FREE);
  realmsOn = true;
  return true;
}

function realmFp(id: usize, length: u32): u32 {
  let h: u64 = <u64>length * 0x9e3779b97f4a7c15;
  for (let i: u32 = 0; i < length; i++) h = mix64(h ^ <u64>load<u8>(id + i));
  return fingerprint(h);
}

/** The realm of an identifier (0: unknown — registered only when `create`, room permitting). */
export function realmOf(id: usize, length: u32, create: bool): u32 {
  if (!realmsOn || length == 0 || length > A.REALM_ID_MAX) return 0;
  const fp = realmFp(id, length);
  realmKey.id = id;
  realmKey.length = length;
  let r = realms.find<RealmKey>(fp, realmKey);
  if (r != 0 || !create) return r;
  r = realms.add(fp);
  if (r == 0) return 0;
  const e = realms.at(r);
  store<u8>(e + RL_LENGTH, <u8>length);
  memory.copy(e + RL_ID, id, length);
  return r;
}

class RealmKey {
  id: usize = 0;
  length: u32 = 0;
  @inline matches(r: u32): bool {
    const e = realms.at(r);
    return <u32>load<u8>(e + RL_LENGTH) == this.length && memory.compare(e + RL_ID, this.id, this.length) == 0;
  }
}
const realmKey = new RealmKey();

/** Registers the identifier at scratch[0..length] (a configured one); its realm, 0 if no room. */
export function registerRealm(length: u32): u32 {
  return realmOf(scratch, length, true);
}

/** The realm of the identifier at scratch[0..length] without registering it (0: unknown). */
export function findRealm(length: u32): u32 {
  return realmOf(scratch, length, false);
}

/** Realm `r`'s identifier copied to scratch; returns its length (0: realm 0 or unknown). */
export function realmIdentifier(r: u32): u32 {
  if (!realmsOn || r == 0 || r > realms.used) return 0;
  const e = realms.at(r);
  const n = <u32>load<u8>(e + RL_LENGTH);
  memory.copy(scratch, e + RL_ID, n);
  return n;
}

/** The request's realm: 0 without THIRD_PARTY_ID; 0xFFFFFFFF for an identifier not known (THIRD_PARTY_ID_UNKNOWN). */
@inline export function requestRealm(slot: usize): u32 {
  return load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_THIRD_PARTY_ID ? identifiedRealm(slot) : 0; // inlined: no call without the option
}

function identifiedRealm(slot: usize): u32 {
  const r = realmOf(data(slot) + <u32>load<u16>(slot + A.SLOT_THIRD_PARTY_ID), <u32>load<u16>(slot + A.SLOT_THIRD_PARTY_ID_LEN), acceptAnyRealm);
  return r != 0 ? r : 0xffffffff;
}
