// What the request handlers (map, portset, peer, natpmp) share: the lifetime clamp, the
// request's internal address, writing the assigned external endpoint, FILTER walking.

import * as W from "./wire";
import * as A from "./abi";
import { addrEqual, copy16, rd16, wr16 } from "./bytes";
import { filtersPerMapping, maxLifetime } from "./config";
import { data, errorLifetime, finishError } from "./codec";
import { F_ADDR, F_NEXT, F_PORT, F_PREFIX, M_EXTERNAL_PORT, M_FILTERS, M_POOL } from "./layout";
import { filters, mappings } from "./tables";
import { poolAddr } from "./pool";
import { addFilter, filterCount, freeFilters } from "./lifecycle";

@inline export function clampLifetime(requested: u32, minimum: u32): u32 {
  if (requested < minimum) return minimum;
  return requested > maxLifetime ? maxLifetime : requested;
}


/** Writes the assigned external address/port over the suggestion [6887 §11.1]. */
export function writeExternal(slot: usize, m: u32): void {
  const d = data(slot);
  const r = mappings.at(m);
  wr16(d + W.MP_EXTERNAL_PORT, <u32>load<u16>(r + M_EXTERNAL_PORT));
  copy16(d + W.MP_EXTERNAL_ADDR, poolAddr(<u32>load<u16>(r + M_POOL)));
}

/** FILTER data (prefix, port, address) equal to a stored filter or another FILTER's data. */
@inline function sameFilter(prefix: u32, port: u32, addr: usize, otherPrefix: u32, otherPort: u32, otherAddr: usize): bool {
  return prefix == otherPrefix && port == otherPort && addrEqual(addr, otherAddr);
}

function storedFilter(r: usize, prefix: u32, port: u32, addr: usize): bool {
  let f = load<u32>(r + M_FILTERS);
  while (f != 0) {
    const fr = filters.at(f);
    if (sameFilter(prefix, port, addr, <u32>load<u8>(fr + F_PREFIX), <u32>load<u16>(fr + F_PORT), fr + F_ADDR)) return true;
    f = load<u32>(fr + F_NEXT);
  }
  return false;
}

/**
 * The request's FILTERs in order [6887 §13.3]: prefix 0 clears the set, the others join it
 * (a filter already in the set is not added twice: clients resend theirs with every
 * refresh). With `apply` false nothing changes and the resulting set size is returned, or
 * -1 if it would exceed filtersPerMapping.
 */
@inline export function walkFilters(slot: usize, m: u32, apply: bool): i32 {
  // Inlined: a request without FILTERs (most renewals) pays no call.
  if (load<u16>(slot + A.SLOT_FILTER_COUNT) == 0) return m != 0 && load<u32>(mappings.at(m) + M_FILTERS) != 0 ? <i32>filterCount(mappings.at(m)) : 0;
  return walkRequestFilters(slot, m, apply);
}

function walkRequestFilters(slot: usize, m: u32, apply: bool): i32 {
  const r = m != 0 ? mappings.at(m) : 0;
  let count: u32 = r != 0 ? filterCount(r) : 0;
  const d = data(slot);
  const first = <u32>load<u16>(slot + A.SLOT_FILTER_FIRST);
  const end = <u32>load<u16>(slot + A.SLOT_OPT_END);
  let cleared = r == 0;
  let since = first; // first request option after the last clear
  let off = first;
  while (off < end) {
    const code = <u32>load<u8>(d + off);
    const len = rd16(d + off + W.OPT_LENGTH);
    const p = d + off + W.OPT_HEADER_SIZE;
    const here = off;
    off += W.OPT_HEADER_SIZE + ((len + 3) & ~3);
    if (code != <u32>W.OPTION_FILTER) continue;
    const prefix = <u32>load<u8>(p + W.FILTER_PREFIX_LENGTH);
    const port = rd16(p + W.FILTER_REMOTE_PORT);
    const addr = p + W.FILTER_REMOTE_ADDR;
    if (prefix == 0) {
      count = 0;
      cleared = true;
      since = off;
      if (apply) freeFilters(r);
      continue;
    }
    let duplicate = !cleared && storedFilter(r, prefix, port, addr);
    // an earlier FILTER of this request (after the last clear) with the same data
    for (let q = since; !duplicate && q < here; ) {
      const qlen = rd16(d + q + W.OPT_LENGTH);
      const qp = d + q + W.OPT_HEADER_SIZE;
      if (<u32>load<u8>(d + q) == <u32>W.OPTION_FILTER &&
          sameFilter(prefix, port, addr, <u32>load<u8>(qp + W.FILTER_PREFIX_LENGTH), rd16(qp + W.FILTER_REMOTE_PORT), qp + W.FILTER_REMOTE_ADDR)) duplicate = true;
      q += W.OPT_HEADER_SIZE + ((qlen + 3) & ~3);
    }
    if (duplicate) continue;
    count++;
    if (apply) {
      if (storedFilter(r, prefix, port, addr)) continue;
      addFilter(r, prefix, port, addr);
    }
  }
  return count > filtersPerMapping ? -1 : <i32>count;
}

/** Free filter entries needed in the worst case for this request. */
@inline export function filtersAvailable(slot: usize): bool {
  const need = <u32>load<u16>(slot + A.SLOT_FILTER_COUNT);
  return need == 0 || filters.capacity - filters.live >= need;
}

@inline export function fail(slot: usize, result: u32): void {
  finishError(slot, result, errorLifetime(result));
}

/** The internal address of the request: THIRD_PARTY's if present [6887 §13.1]. */
@inline export function internalAddress(slot: usize): usize {
  if (load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_THIRD_PARTY) return data(slot) + <usize>load<u16>(slot + A.SLOT_THIRD_PARTY);
  return slot + A.SLOT_SRC_ADDR;
}

export const MAP_ECHO: u32 = A.OPTBIT_THIRD_PARTY | A.OPTBIT_THIRD_PARTY_ID | A.OPTBIT_PREFER_FAILURE | A.OPTBIT_FILTER;
