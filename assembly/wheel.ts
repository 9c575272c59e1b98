// Timer wheel: 65536 one-second buckets, doubly linked through the mapping record; expire()
// walks it second by second within a budget. State: the buckets, the last second fully
// processed, and the list being expired.

import * as A from "./abi";
import { now, setNow } from "./clock";
import { M_FLAGS, M_MAP_EXPIRY, M_OUT_EXPIRY, M_WHEEL_NEXT, M_WHEEL_PREV } from "./layout";
import { mappings } from "./tables";
import { eventHead, eventTail } from "./events";
import { endMapping, releaseHold } from "./lifecycle";
import { activityFull, expiryWaits } from "./activity";

let wheel: usize = 0;
const WHEEL_SIZE: u32 = 65536;
const WHEEL_MASK: u32 = WHEEL_SIZE - 1;
const IN_BUCKET: u32 = 0x80000000; // a list head's "prev" names its bucket
const IN_PENDING: u32 = 0xffffffff; // head of the list being expired
let wheelSecond: u32 = 0; // last second fully processed
let pendingHead: u32 = 0;

export function initWheel(start: u32): void {
  wheel = heap.alloc(<usize>WHEEL_SIZE << 2);
  memory.fill(wheel, 0, <usize>WHEEL_SIZE << 2);
  wheelSecond = start;
}

@inline function bucketAt(b: u32): usize {
  return wheel + (<usize>b << 2);
}

export function wheelLink(m: u32, due: u32): void {
  if (due <= wheelSecond) due = wheelSecond + 1;
  const b = due & WHEEL_MASK;
  const r = mappings.at(m);
  const head = load<u32>(bucketAt(b));
  store<u32>(r + M_WHEEL_NEXT, head);
  store<u32>(r + M_WHEEL_PREV, IN_BUCKET | b);
  if (head != 0) store<u32>(mappings.at(head) + M_WHEEL_PREV, m);
  store<u32>(bucketAt(b), m);
}

export function wheelUnlink(m: u32): void {
  const r = mappings.at(m);
  const next = load<u32>(r + M_WHEEL_NEXT);
  const prev = load<u32>(r + M_WHEEL_PREV);
  if (prev == 0) return; // not filed (static mappings never are)
  if (prev == IN_PENDING) pendingHead = next;
  else if (prev & IN_BUCKET) store<u32>(bucketAt(prev & WHEEL_MASK), next);
  else store<u32>(mappings.at(prev) + M_WHEEL_NEXT, next);
  if (next != 0) store<u32>(mappings.at(next) + M_WHEEL_PREV, prev);
  store<u32>(r + M_WHEEL_NEXT, 0);
  store<u32>(r + M_WHEEL_PREV, 0);
}

/** The MAP part counts only while its own time has not passed. */
@inline export function hasInbound(r: usize): bool {
  return (load<u8>(r + M_FLAGS) & A.MAPF_INBOUND) != 0 && load<u32>(r + M_MAP_EXPIRY) > now;
}

@inline export function effectiveExpiry(r: usize): u32 {
  const a = load<u32>(r + M_MAP_EXPIRY);
  const b = load<u32>(r + M_OUT_EXPIRY);
  return a > b ? a : b;
}

/**
 * Ends what is due up to `at`, visiting at most `budget` wheel entries (and seconds), so
 * one call never costs more than the budget however large the table. It also stops when
 * the event ring is full; the host drains it and calls again. Returns the number of
 * mappings ended and holds released.
 */
export function expire(at: u32, budget: u32): u32 {
  setNow(at);
  let work: u32 = 0;
  let ended: u32 = 0;
  while (work < budget) {
    // Expiry waits for room in the event ring rather than lose an event.
    if (eventHead - eventTail >= A.EVENT_CAPACITY) break;
    if (activityFull()) break; // likewise for the activity queries (assembly/activity.ts)
    if (pendingHead == 0) {
      if (wheelSecond >= at) break;
      wheelSecond++;
      work++;
      const b = bucketAt(wheelSecond & WHEEL_MASK);
      pendingHead = load<u32>(b);
      store<u32>(b, 0);
      if (pendingHead != 0) store<u32>(mappings.at(pendingHead) + M_WHEEL_PREV, IN_PENDING);
      continue;
    }
    const m = pendingHead;
    wheelUnlink(m);
    work++;
    const r = mappings.at(m);
    const flags = <u32>load<u8>(r + M_FLAGS);
    const due = effectiveExpiry(r);
    if (due > wheelSecond) {
      wheelLink(m, due); // refreshed since it was filed
    } else if (flags & A.MAPF_HELD) {
      releaseHold(m);
      ended++;
    } else if (!expiryWaits(m)) {
      // (expiryWaits: traffic keeps it, or the dataplane is being asked [6887 §12.3, §15])
      endMapping(m, A.EVENT_EXPIRE);
      ended++;
    }
  }
  return ended;
}
