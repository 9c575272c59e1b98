// THIRD_PARTY requesters [6887 §13.1, §14.2]: where the request of a mapping created
// through THIRD_PARTY came from (the latest one), so a Mapping Update reaches it. Kept
// only for those mappings, in a side table indexed by mapping id (no field in every
// mapping record). Full: the mapping is served, its requester learns from the Epoch.

import * as A from "./abi";
import { copy16 } from "./bytes";
import { M_FLAGS } from "./layout";
import { SideTable, mappings } from "./tables";
import { markChanged } from "./events";

export const RQ_PORT: u32 = 8; // u16
export const RQ_ADDR: u32 = 12; // 16
const REQUESTER_SIZE: u32 = 28;
export const requesters = new SideTable();

/** Room for `capacity` THIRD_PARTY requesters (0: none recorded); once, after engineInit. */
export function initRequesters(capacity: u32): bool {
  return requesters.init(capacity, REQUESTER_SIZE);
}

/** Records `addr`:`port` as the requester of THIRD_PARTY mapping `m` (no room: not recorded); true if that changed it. */
export function setRequester(m: u32, addr: usize, port: u32): bool {
  const id = requesters.claim(m);
  if (id == 0) return false;
  const e = requesters.at(id);
  if (load<u16>(e + RQ_PORT) == <u16>port && load<u64>(e + RQ_ADDR) == load<u64>(addr) && load<u64>(e + RQ_ADDR + 8) == load<u64>(addr + 8)) return false;
  copy16(e + RQ_ADDR, addr);
  store<u16>(e + RQ_PORT, <u16>port);
  return true;
}

/**
 * A request with THIRD_PARTY for a THIRD_PARTY mapping: its source is the requester now.
 * The option test is inlined at every handler: a request without it (most renewals) pays
 * no call.
 */
@inline export function noteRequester(slot: usize, m: u32): void {
  if (load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_THIRD_PARTY) noteThirdPartyRequester(slot, m);
}

function noteThirdPartyRequester(slot: usize, m: u32): void {
  if ((load<u8>(mappings.at(m) + M_FLAGS) & A.MAPF_THIRD_PARTY) == 0) return;
  // A renewal from a new requester is journaled even when its refresh alone would wait.
  if (setRequester(m, slot + A.SLOT_SRC_ADDR, <u32>load<u16>(slot + A.SLOT_SRC_PORT))) markChanged(m);
}
