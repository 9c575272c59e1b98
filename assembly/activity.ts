// Traffic-driven lifetimes [RFC 6887 §15 "simple threat model", §12.3]: a request must
// never make a mapping end before it would end naturally given the traffic the host sent
// through it, and traffic keeps an unrenewed mapping alive as an implicit one would be.
//
// The engine never sees packets: the dataplane knows when each mapped endpoint last sent
// one (an nftables dynamic set with timeouts, or an external dataplane's answer), and the
// engine asks only when a decision needs it — an expiry, a MAP delete, a MAP renewal
// shorter than the idle timeout. Asking is asynchronous (the engine is a synchronous call):
//
//   - expiry: the wheel finds the mapping due, queues a query (event-layout record) and
//     re-files the mapping at now + activityWait; the answer (activityAnswer) ends it or keeps
//     it; no answer by then ends it as without tracking (fail-open to the old behaviour);
//   - a request: the slot gets VERDICT_WAIT with nothing changed; the host queues the query's
//     answer back and serves the same datagram again, which then finds the answer fresh.
//
// Per mapping, in a side table indexed by mapping id (allocated when tracking first needs
// it, so the 64-byte mapping record stays one cache line and tracking off costs nothing):
// AC_UNTIL (engine second until which traffic keeps it, as last answered; 0 = idle) and
// AC_AT (the second of that answer; ASKED set while a query is out).
// activityIdleUdp == 0: tracking off, every path is exactly as without this file.

import * as W from "./wire";
import * as A from "./abi";
import { now, setNow } from "./clock";
import { activityIdleTcp, activityIdleUdp, activityWait } from "./config";
import { M_EXTERNAL_PORT, M_FILTERS, M_FLAGS, M_MAP_EXPIRY, M_OUT_EXPIRY, M_PROTOCOL } from "./layout";
import { mappings } from "./tables";
import { describeInto, emit } from "./events";
import { wheelLink, wheelUnlink } from "./wheel";
import { endMapping, freeFilters } from "./lifecycle";

const ASKED: u32 = 0x80000000;
/** An answer this many seconds old still decides a request (the replay comes right after it). */
const FRESH: u32 = 2;
/** activityFloor: no answer yet, the request waits. */
export const WAIT: u32 = 0xffffffff;

const AC_UNTIL: usize = 0;
const AC_AT: usize = 4;
let cells: usize = 0; // 8 bytes per mapping id (AC_UNTIL, AC_AT), allocated with the first use (tracking on)
let queries: usize = 0; // ACTIVITY_CAPACITY event-layout records, allocated with the first query (tracking on)
let queued: u32 = 0;

/** The query queue is full: the wheel stops until the host has taken them (no decision loses its query). */
@inline export function activityFull(): bool {
  return queued >= A.ACTIVITY_CAPACITY;
}

@inline export function activityOn(): bool {
  return activityIdleUdp != 0;
}

/** The longest idle timeout the dataplane applies to `protocol` (what a renewal may need to respect). */
@inline export function idleTimeout(protocol: u32): u32 {
  return protocol == W.PROTO_TCP ? activityIdleTcp : activityIdleUdp;
}

/** Mapping `m`'s activity cell. */
function cell(m: u32): usize {
  if (cells == 0) {
    const size = (<usize>mappings.capacity + 1) << 3;
    cells = heap.alloc(size);
    memory.fill(cells, 0, size);
  }
  return cells + (<usize>m << 3);
}

/** Forgets `m`'s traffic answer (its record ends or is held: a reclaim starts without it). */
export function activityForget(m: u32): void {
  if (cells != 0) store<u64>(cells + (<usize>m << 3), 0);
}

/** Queues a query for `m` unless one is out; false when the queue is full (decide without). */
function ask(m: u32): bool {
  const c = cell(m);
  if (load<u32>(c + AC_AT) & ASKED) return true;
  if (queued >= A.ACTIVITY_CAPACITY) return false;
  if (queries == 0) queries = heap.alloc(<usize>A.ACTIVITY_CAPACITY * A.EVENT_SIZE);
  describeInto(queries + <usize>queued * A.EVENT_SIZE, m);
  queued++;
  store<u32>(c + AC_AT, ASKED | now);
  return true;
}

/** Whether an answer for `m` came recently enough to decide on. */
@inline function fresh(c: usize): bool {
  const at = load<u32>(c + AC_AT);
  // An answer at second 0 is stored as 1 (0 means none): compared in the same encoding.
  return at != 0 && (at & ASKED) == 0 && (now == 0 ? 1 : now) - at <= FRESH;
}

/**
 * The natural expiry of `m` given its traffic (0: idle), WAIT when the dataplane must be
 * asked first (a query is queued), or 0 with tracking off or the query queue full.
 */
export function activityFloor(m: u32): u32 {
  if (!activityOn()) return 0;
  const c = cell(m);
  if (fresh(c)) return load<u32>(c + AC_UNTIL) > now ? load<u32>(c + AC_UNTIL) : 0;
  return ask(m) ? WAIT : 0;
}

/** The request in `slot` waits for the dataplane's answer: no reply, nothing changed; the host serves it again. */
export function waitForActivity(slot: usize): void {
  store<u8>(slot + A.SLOT_VERDICT, A.VERDICT_WAIT);
  store<u16>(slot + A.SLOT_RESP_LEN, 0);
}

/**
 * Traffic keeps `m`, whose own time has passed, until `until`: as an implicit mapping
 * (outbound only; an expired MAP part stops forwarding inbound) [6887 §12.3, §15].
 */
function keepImplicit(m: u32, until: u32): void {
  const r = mappings.at(m);
  const flags = <u32>load<u8>(r + M_FLAGS);
  const inboundEnded = (flags & A.MAPF_INBOUND) != 0 && load<u32>(r + M_MAP_EXPIRY) <= now;
  let next = flags | A.MAPF_OUTBOUND;
  if (inboundEnded) {
    next &= ~(A.MAPF_INBOUND | A.MAPF_PREFER_FAILURE);
    store<u32>(r + M_MAP_EXPIRY, 0);
    if (load<u32>(r + M_FILTERS) != 0) freeFilters(r);
  }
  store<u8>(r + M_FLAGS, <u8>next);
  store<u32>(r + M_OUT_EXPIRY, until);
  wheelUnlink(m);
  wheelLink(m, until);
  emit(inboundEnded ? A.EVENT_DELETE : A.EVENT_REFRESH, m);
}

/**
 * The wheel found live mapping `m` due. Returns true when it stays (traffic, or a query
 * out and its wait not over); false: end it as without tracking.
 */
export function expiryWaits(m: u32): bool {
  if (!activityOn()) return false;
  const c = cell(m);
  const at = load<u32>(c + AC_AT);
  if (at & ASKED) {
    const askedAt = at & ~ASKED;
    if (now < askedAt + activityWait) {
      wheelUnlink(m);
      wheelLink(m, askedAt + activityWait);
      return true;
    }
    store<u32>(c + AC_AT, 0); // no answer in time: ends as without tracking
    return false;
  }
  if (fresh(c)) {
    const until = load<u32>(c + AC_UNTIL);
    if (until <= now) return false;
    keepImplicit(m, until);
    return true;
  }
  if (!ask(m)) return false;
  wheelUnlink(m);
  wheelLink(m, now + activityWait);
  return true;
}

/** Queued queries since the last take (the host reads them at activityBase, then calls this). */
export function activityTake(): u32 {
  const n = queued;
  queued = 0;
  return n;
}

export function activityBase(): usize {
  return queries;
}

/**
 * The dataplane's answer for mapping `m` (EV_MAPPING of its query; protocol and external
 * port check it is still that mapping): traffic keeps it `remaining` more seconds (0:
 * idle). A mapping whose own time has passed meanwhile is decided now. Returns 1 when
 * applied, 0 when the mapping is gone or another one.
 */
export function activityAnswer(at: u32, m: u32, protocol: u32, externalPort: u32, remaining: u32): u32 {
  setNow(at);
  if (m == 0 || m > mappings.used) return 0;
  const r = mappings.at(m);
  const flags = <u32>load<u8>(r + M_FLAGS);
  if (flags == 0 || (flags & (A.MAPF_HELD | A.MAPF_STATIC)) != 0) return 0;
  if (<u32>load<u8>(r + M_PROTOCOL) != protocol || <u32>load<u16>(r + M_EXTERNAL_PORT) != externalPort) return 0;
  const c = cell(m);
  store<u32>(c + AC_UNTIL, remaining != 0 ? now + remaining : 0);
  store<u32>(c + AC_AT, now == 0 ? 1 : now);
  const mapEnd = load<u32>(r + M_MAP_EXPIRY);
  const outEnd = load<u32>(r + M_OUT_EXPIRY);
  if ((mapEnd > outEnd ? mapEnd : outEnd) > now) return 1; // still within its own time: a request decides
  if (remaining != 0) keepImplicit(m, now + remaining);
  else endMapping(m, A.EVENT_EXPIRE);
  return 1;
}
