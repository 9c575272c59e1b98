// CHECKPOINT_REQUIRED [RFC 7767]: honoured while persistence is on and the subscriber is
// under its quota: the mapping is flagged (each change journaled at once, fdatasync'ed)
// and the reply waits until it is on disk (HOST_CHECKPOINT); the option is echoed.
// A renewal without the option clears the flag. Not honoured: served, not echoed.

import * as W from "./wire";
import * as A from "./abi";
import { checkpointQuota, checkpointsOn } from "./config";
import { appendOption } from "./codec";
import { M_FLAGS, M_SUB, S_CHECKPOINTS } from "./layout";
import { mappings, subscribers } from "./tables";

export function clearCheckpoint(m: u32): void {
  const r = mappings.at(m);
  const flags = <u32>load<u8>(r + M_FLAGS);
  if ((flags & A.MAPF_CHECKPOINT) == 0) return;
  store<u8>(r + M_FLAGS, <u8>(flags & ~A.MAPF_CHECKPOINT));
  const s = subscribers.at(load<u32>(r + M_SUB));
  store<u16>(s + S_CHECKPOINTS, load<u16>(s + S_CHECKPOINTS) - 1);
}

/** After a MAP or PEER success: the option honoured, or the flag cleared; inlined so a renewal without either pays no call. */
@inline export function applyCheckpoint(slot: usize, m: u32): void {
  if ((load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_CHECKPOINT_REQUIRED) != 0 || (load<u8>(mappings.at(m) + M_FLAGS) & A.MAPF_CHECKPOINT) != 0) {
    checkpointRequest(slot, m);
  }
}

function checkpointRequest(slot: usize, m: u32): void {
  const r = mappings.at(m);
  if ((load<u32>(slot + A.SLOT_OPTIONS) & A.OPTBIT_CHECKPOINT_REQUIRED) == 0) {
    clearCheckpoint(m); // a renewal without it clears it
    return;
  }
  const s = subscribers.at(load<u32>(r + M_SUB));
  const flags = <u32>load<u8>(r + M_FLAGS);
  if ((flags & A.MAPF_CHECKPOINT) == 0) {
    if (!checkpointsOn || <u32>load<u16>(s + S_CHECKPOINTS) >= checkpointQuota) return; // served, not echoed
    store<u8>(r + M_FLAGS, <u8>(flags | A.MAPF_CHECKPOINT));
    store<u16>(s + S_CHECKPOINTS, load<u16>(s + S_CHECKPOINTS) + 1);
  }
  if (!appendOption(slot, W.OPTION_CHECKPOINT_REQUIRED, 0, 0)) return;
  store<u8>(slot + A.SLOT_HOST_FLAGS, load<u8>(slot + A.SLOT_HOST_FLAGS) | A.HOST_CHECKPOINT);
}
