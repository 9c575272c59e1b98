import * as A from "./abi";
import { HashIndex, fingerprint, mix64 } from "./hashindex";
import { data } from "./codec";
import { Slab, scratch } from "./tables";

// ---------------------------------------------------------------------------
// Realms [RFC 7843]: a THIRD_PARTY_ID (a tunnel or session identifier, up to
// REALM_ID_MAX bytes) names the realm of its THIRD_PARTY address, so overlapping internal
// addresses of different subscribers (DS-Lite softwires) are different subscribers, with
// their own mappings, blocks and quotas. Realm 0 is "no identifier". IDs are registered by
// the host (a configured list) or, with acceptAnyRealm, on first use.
// ---------------------------------------------------------------------------
export const RL_NEXT_FREE: u32 = 0;
export const RL_LENGTH: u32 = 4; // u8
export const RL_ID: u32 = 5; // REALM_ID_MAX bytes
export const REALM_SIZE: u32 = 24;
export const realms = new Slab();
export const realmIndex = new HashIndex();
export let realmsOn = false;
export let acceptAnyRealm = false;

/** Room for `capacity` realms; `any`: an unknown THIRD_PARTY_ID is registered on first use. Once, after engineInit. */
export function initRealms(capacity: u32, any: bool): bool {
  acceptAnyRealm = any;
  if (realmsOn || capacity == 0) return capacity == 0 || realmsOn;
  realms.init(capacity, REALM_SIZE, RL_NEXT_FREE);
  realmIndex.init(capacity);
  realmsOn = true;
  return true;
}

export function realmFp(id: usize, length: u32): u32 {
  let h: u64 = <u64>length * 0x9e3779b97f4a7c15;
  for (let i: u32 = 0; i < length; i++) h = mix64(h ^ <u64>load<u8>(id + i));
  return fingerprint(h);
}

/** The realm of an identifier (0: unknown — registered only when `create`, room permitting). */
export function realmOf(id: usize, length: u32, create: bool): u32 {
  if (!realmsOn || length == 0 || length > A.REALM_ID_MAX) return 0;
  const fp = realmFp(id, length);
  for (let p = realmIndex.first(fp); p >= 0; p = realmIndex.after(fp, p)) {
    const r = realmIndex.recordAt(p);
    const e = realms.at(r);
    if (<u32>load<u8>(e + RL_LENGTH) == length && memory.compare(e + RL_ID, id, length) == 0) return r;
  }
  if (!create || realms.full()) return 0;
  const r = realms.alloc();
  const e = realms.at(r);
  store<u8>(e + RL_LENGTH, <u8>length);
  memory.copy(e + RL_ID, id, length);
  realmIndex.insert(fp, r);
  return r;
}

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
export function requestRealm(slot: usize): u32 {
  if ((load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_THIRD_PARTY_ID) == 0) return 0;
  const r = realmOf(data(slot) + <u32>load<u16>(slot + A.SLOT_THIRD_PARTY_ID), <u32>load<u16>(slot + A.SLOT_THIRD_PARTY_ID_LEN), acceptAnyRealm);
  return r != 0 ? r : 0xffffffff;
}
