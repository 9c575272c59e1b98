// The event ring: every change of a mapping as an EVENT_SIZE record (event layout, abi.ts)
// that the host drains for the journal, the dataplane and control-channel subscribers.
// State: the ring and its head (written here) and tail (advanced by the host).

import * as A from "./abi";
import { copy16 } from "./bytes";
import { now } from "./clock";
import { blockEvents } from "./config";
import { M_CLIENT_PORT, M_EXTERNAL_PORT, M_FAMILY, M_INTERNAL_PORT, M_MAP_EXPIRY, M_PEERS, M_PROTOCOL, M_SUB, P_NEXT, P_REMOTE_ADDR, P_REMOTE_PORT, S_ADDR, S_REALM } from "./layout";
import { mappings, peers, statAdd, subscribers } from "./tables";

export let events: usize = 0;
export let eventHead: u32 = 0; // written
export let eventTail: u32 = 0; // consumed by the host
export function initEvents(): void {
  events = heap.alloc(<usize>A.EVENT_CAPACITY * A.EVENT_SIZE);
}

export function eventsBase(): usize {
  return events;
}
export function eventsHead(): u32 {
  return eventHead;
}
export function eventsTail(): u32 {
  return eventTail;
}
export function eventsConsume(n: u32): void {
  const pending = eventHead - eventTail;
  eventTail += n < pending ? n : pending;
}

export function emit(kind: u8, m: u32): void {
  if (eventHead - eventTail >= A.EVENT_CAPACITY) {
    statAdd(A.STATS_EVENTS_LOST, 1);
    return;
  }
  const e = events + <usize>(eventHead & (A.EVENT_CAPACITY - 1)) * A.EVENT_SIZE;
  describeInto(e, m);
  store<u8>(e + A.EV_KIND, kind);
  eventHead++;
}

/**
 * A port block leased to (EVENT_BLOCK_LEASE) or taken back from (EVENT_BLOCK_RELEASE)
 * subscriber `sub`: one record per block, what RFC 7422 port-block logging needs; only
 * while CFG_BLOCK_EVENTS is on.
 */
export function emitBlock(kind: u8, sub: u32, pool: u32, family: u32, first: u32, size: u32): void {
  if (!blockEvents) return; // nobody logs blocks: the ring keeps to mapping events
  if (eventHead - eventTail >= A.EVENT_CAPACITY) {
    statAdd(A.STATS_EVENTS_LOST, 1);
    return;
  }
  const e = events + <usize>(eventHead & (A.EVENT_CAPACITY - 1)) * A.EVENT_SIZE;
  const s = subscribers.at(sub);
  memory.fill(e, 0, A.EVENT_SIZE);
  store<u8>(e + A.EV_KIND, kind);
  store<u8>(e + A.EV_FAMILY, <u8>family);
  store<u16>(e + A.EV_INTERNAL_PORT, <u16>size);
  store<u16>(e + A.EV_EXTERNAL_PORT, <u16>first);
  store<u16>(e + A.EV_POOL_INDEX, <u16>pool);
  store<u32>(e + A.EV_REALM, load<u32>(s + S_REALM));
  store<u32>(e + A.EV_TIME, now);
  copy16(e + A.EV_INTERNAL_ADDR, s + S_ADDR);
  eventHead++;
}

/** Marks the event just emitted for `m` (a refresh that changed more than its lifetime). */
export function markChanged(m: u32): void {
  if (eventHead == eventTail) return; // it was lost (ring full)
  const e = events + <usize>((eventHead - 1) & (A.EVENT_CAPACITY - 1)) * A.EVENT_SIZE;
  if (load<u32>(e + A.EV_MAPPING) == m) store<u8>(e + A.EV_FLAGS, load<u8>(e + A.EV_FLAGS) | A.EVF_CHANGED);
}

/**
 * Writes the event-format description of mapping `m` at `e`. Every refresh writes one, so
 * fields adjacent in both the record and the event go in one store (protocol + flags,
 * external port + pool, the two expiries; mapping + time): assembly/layout.ts keeps those
 * record fields adjacent, as the event layout (abi.ts) has them.
 */
export function describeInto(e: usize, m: u32): void {
  const r = mappings.at(m);
  const s = subscribers.at(load<u32>(r + M_SUB));
  // kind 0 (set by the caller), protocol, flags (M_PROTOCOL, M_FLAGS adjacent), family
  store<u32>(e + A.EV_KIND, (<u32>load<u16>(r + M_PROTOCOL) << 8) | (<u32>load<u8>(r + M_FAMILY) << 24));
  store<u16>(e + A.EV_INTERNAL_PORT, load<u16>(r + M_INTERNAL_PORT));
  store<u32>(e + A.EV_EXTERNAL_PORT, load<u32>(r + M_EXTERNAL_PORT)); // external port, pool index
  store<u16>(e + A.EV_CLIENT_PORT, load<u16>(r + M_CLIENT_PORT));
  store<u32>(e + A.EV_REALM, load<u32>(s + S_REALM));
  store<u64>(e + A.EV_MAP_EXPIRY, load<u64>(r + M_MAP_EXPIRY)); // inbound, outbound expiry
  store<u64>(e + A.EV_MAPPING, <u64>m | (<u64>now << 32)); // mapping, time
  copy16(e + A.EV_INTERNAL_ADDR, s + S_ADDR);
  // The remote peer of its latest PEER (the head of its list) and how many it has.
  const head = load<u32>(r + M_PEERS);
  if (head == 0) {
    // none (most mappings): peer address, port and count all zero
    store<u64>(e + A.EV_PEER_ADDR, 0);
    store<u64>(e + A.EV_PEER_ADDR + 8, 0);
    store<u32>(e + A.EV_PEER_PORT, 0);
    return;
  }
  let count: u32 = 0;
  for (let p = head; p != 0 && count < 0xffff; p = load<u32>(peers.at(p) + P_NEXT)) count++;
  store<u16>(e + A.EV_PEER_COUNT, <u16>count);
  writePeer(e, head);
}

function writePeer(e: usize, p: u32): void {
  if (p == 0) {
    memory.fill(e + A.EV_PEER_ADDR, 0, 16);
    store<u16>(e + A.EV_PEER_PORT, 0);
    return;
  }
  const pr = peers.at(p);
  copy16(e + A.EV_PEER_ADDR, pr + P_REMOTE_ADDR);
  store<u16>(e + A.EV_PEER_PORT, load<u16>(pr + P_REMOTE_PORT));
}

/** The event just emitted for `m` is about its PEER record `p` (a PEER request). */
export function markPeer(m: u32, p: u32): void {
  if (eventHead == eventTail) return; // it was lost (ring full)
  const e = events + <usize>((eventHead - 1) & (A.EVENT_CAPACITY - 1)) * A.EVENT_SIZE;
  if (load<u32>(e + A.EV_MAPPING) == m) writePeer(e, p);
}
