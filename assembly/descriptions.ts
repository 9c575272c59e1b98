// DESCRIPTION texts [RFC 7220], only for the mappings that have one.

import * as W from "./wire";
import * as A from "./abi";
import { appendOption, requestDescription } from "./codec";
import { SideTable } from "./tables";

export const D_LENGTH: u32 = 8; // u8
export const D_TEXT: u32 = 9; // DESCRIPTION_STORED_MAX bytes
const DESCRIPTION_SIZE: u32 = 140;
export const descriptions = new SideTable();

/** Room for `capacity` descriptions (0: DESCRIPTION is never stored); once, after engineInit. */
export function initDescriptions(capacity: u32): bool {
  return descriptions.init(capacity, DESCRIPTION_SIZE);
}

/**
 * Stores `length` bytes of valid UTF-8 at `src` as mapping `m`'s description, cut to
 * DESCRIPTION_STORED_MAX at a character boundary; empty clears it. False: not stored
 * (no room), so not echoed either [RFC 7220 §3].
 */
export function setDescription(m: u32, src: usize, length: u32): bool {
  if (!descriptions.on) return false;
  if (length == 0) {
    descriptions.drop(m);
    return true;
  }
  const id = descriptions.claim(m);
  if (id == 0) return false;
  let n = length < A.DESCRIPTION_STORED_MAX ? length : A.DESCRIPTION_STORED_MAX;
  if (n < length) while (n > 0 && (load<u8>(src + n) & 0xc0) == 0x80) n--; // not inside a character
  const e = descriptions.at(id);
  store<u8>(e + D_LENGTH, <u8>n);
  memory.copy(e + D_TEXT, src, n);
  return true;
}

/**
 * A request's DESCRIPTION (valid UTF-8; an invalid one was already set aside by the codec)
 * is stored and the stored text echoed; no DESCRIPTION in the request: none in the reply.
 * After finishSuccess: the text comes from the codec's saved copy, the request's bytes may be overwritten. */
@inline export function applyDescription(slot: usize, m: u32): void {
  if (load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_DESCRIPTION) storeDescription(slot, m); // inlined: no call without the option
}

function storeDescription(slot: usize, m: u32): void {
  const text = requestDescription(slot);
  if (text == 0) return; // not after finishSuccess(slot): nothing safe to read (the echo tests would show it)
  const length = <u32>load<u16>(slot + A.SLOT_DESCRIPTION_LEN);
  if (!setDescription(m, text, length)) return;
  const id = descriptions.of(m);
  appendOption(slot, W.OPTION_DESCRIPTION, id != 0 ? descriptions.at(id) + D_TEXT : 0, id != 0 ? <u32>load<u8>(descriptions.at(id) + D_LENGTH) : 0);
}

const descriptionOut = memory.data(<i32>A.DESCRIPTION_STORED_MAX, 16);

/** Mapping `m`'s description copied to descriptionBase(); returns its length (0: none). */
export function mappingDescription(m: u32): u32 {
  const id = descriptions.of(m);
  if (id == 0) return 0;
  const e = descriptions.at(id);
  const n = <u32>load<u8>(e + D_LENGTH);
  memory.copy(descriptionOut, e + D_TEXT, n);
  return n;
}

export function descriptionBase(): usize {
  return descriptionOut;
}
