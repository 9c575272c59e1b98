// The mapping engine's entry: engineInit sizes every table once (docs/engine.md), and
// serveRange, the batch driver, runs the codec and then one handler per PARSED slot. Every
// decision validates first and mutates after, so an error never leaves partial state
// [6887 §7.3]. State: the dataplane-down flag and the prefetch sink.

import * as W from "./wire";
import * as A from "./abi";
import { isV4Mapped, rd16 } from "./bytes";
import { prefetchMode } from "./config";
import { data, finishNatPmpAddress, finishNatPmpMap, processRange, slotsBase } from "./codec";
import { setNow } from "./clock";
import { seedRandom } from "./random";
import { FILTER_SIZE, MAPPING_SIZE, M_SUB, PEER_SIZE, SUB_SIZE, S_ADDR } from "./layout";
import { initTables, initialised, internalIndex, mappings, subscribers } from "./tables";
import { LINE } from "./hashindex";
import { poolCount } from "./pool";
import { initWheel } from "./wheel";
import { internalFp } from "./lookup";
import { initEvents } from "./events";
import { fail, internalAddress } from "./request";
import { handleMap } from "./map";
import { handlePeer } from "./peer";
import { handleNatPmp } from "./natpmp";
import { ownRequesterLine } from "./requesters";

/** The largest single allocation of the stub runtime, and what a 4 GiB memory leaves for tables. */
const MAX_REGION: u64 = (1 << 30) - 64;
const MAX_TABLES: u64 = <u64>3 << 30;

function fitsMemory(maxMappings: u32, maxSubscribers: u32, maxPeers: u32, maxFilters: u32): bool {
  const regions: StaticArray<u64> = [
    (<u64>maxMappings + 1) * MAPPING_SIZE,
    (<u64>maxSubscribers + 1) * SUB_SIZE,
    (<u64>maxPeers + 1) * PEER_SIZE,
    (<u64>maxFilters + 1) * FILTER_SIZE,
    (<u64>maxMappings * 10 / 7 + 16) << 3, // each hash index, see HashIndex.init
    (<u64>maxSubscribers * 10 / 7 + 16) << 3,
    (<u64>maxPeers * 10 / 7 + 16) << 3,
  ];
  let total: u64 = regions[4]; // the second mapping index
  for (let i = 0; i < regions.length; i++) {
    if (regions[i] + <u64>LINE > MAX_REGION) return false; // lineAlloc asks for up to a line more
    total += regions[i];
  }
  return maxMappings != 0 && maxSubscribers != 0 && maxPeers != 0 && maxFilters != 0 && total <= MAX_TABLES;
}

/**
 * Sizes every table once. Returns 0; 1 if already initialised (an instance is
 * initialised once; the host builds a new one to resize); 2 if the sizes do not fit in
 * linear memory (about 16M mappings at most).
 */
export function engineInit(maxMappings: u32, maxSubscribers: u32, maxPeers: u32, maxFilters: u32, seed: u64, start: u32): u32 {
  if (initialised) return 1;
  if (!fitsMemory(maxMappings, maxSubscribers, maxPeers, maxFilters)) return 2;
  seedRandom(seed);
  initTables(maxMappings, maxSubscribers, maxPeers, maxFilters);
  initWheel(start);
  initEvents();
  setNow(start);
  return 0;
}

/** Bytes of linear memory the tables occupy (for memory-per-mapping reporting). */
export function engineBytes(): usize {
  return <usize>memory.size() << 16;
}
// Batch driver: codec, then the engine for every PARSED slot.
let touched: u64 = 0;
// 0 off, 1 on, 2 auto: on once the mapping table outgrows the caches (512K records: 32 MB
// of mapping records alone, a large last-level cache). The first, single-stage version cost 7 % at 1M on a quiet
// machine and ran from 4M; the three short stages cost less and gained ~30 % at 1M on the
// shared machine (bench/results/engine-ab-*-2026-12-04.json, "prefetch on/off").
const PREFETCH_AUTO_RECORDS: u32 = 1 << 19;
@inline function prefetchOn(): bool {
  return prefetchMode == 1 || (prefetchMode == 2 && mappings.used >= PREFETCH_AUTO_RECORDS);
}

/** Key fields of a PARSED slot: internal address, protocol, internal port, external family. */
@inline function slotProtocol(slot: usize): u32 {
  if (load<u8>(slot + A.SLOT_VERSION) == W.NATPMP_VERSION) {
    return load<u8>(slot + A.SLOT_OPCODE) == W.NATPMP_OP_MAP_UDP ? W.PROTO_UDP : W.PROTO_TCP;
  }
  return <u32>load<u8>(data(slot) + W.MP_PROTOCOL);
}
@inline function slotInternalPort(slot: usize): u32 {
  const d = data(slot);
  return load<u8>(slot + A.SLOT_VERSION) == W.NATPMP_VERSION ? rd16(d + W.NATPMP_INTERNAL_PORT) : rd16(d + W.MP_INTERNAL_PORT);
}
@inline function slotFamily(slot: usize): u32 {
  if (load<u8>(slot + A.SLOT_VERSION) == W.NATPMP_VERSION) return 0;
  return isV4Mapped(data(slot) + W.MP_EXTERNAL_ADDR) ? 0 : 1;
}
@inline function slotAddress(slot: usize): usize {
  return load<u8>(slot + A.SLOT_VERSION) == W.NATPMP_VERSION ? slot + A.SLOT_SRC_ADDR : internalAddress(slot);
}
@inline function isParsed(slot: usize): bool {
  return load<u8>(slot + A.SLOT_VERDICT) == A.VERDICT_PARSED;
}

// What the stages pass on, per slot: the internal-index fingerprint, the candidate mapping
// (0: none), and the addresses the stage's loads read (0, always cached, when there is
// nothing to warm). Static, so the stages allocate nothing.
const stageFp = memory.data(<i32>A.SLOT_COUNT << 2, 64);
const stageRecord = memory.data(<i32>A.SLOT_COUNT << 2, 64);
const stageAddr = memory.data(<i32>A.SLOT_COUNT << 2, 64);
const stageAddr2 = memory.data(<i32>A.SLOT_COUNT << 2, 64);

/** Loads the lines at both stage addresses of each slot of [first, end): a loop of loads alone. */
@inline function warm(first: u32, end: u32): u32 {
  let acc: u32 = 0;
  for (let i = first; i < end; i++) {
    const at = <usize>i << 2;
    acc += load<u32>(load<u32>(stageAddr + at)) + load<u32>(load<u32>(stageAddr2 + at));
  }
  return acc;
}

/**
 * Warms the cache for a batch in short stages, each one or two independent loads per
 * datagram: (1) the index line at the key's home, (2) the candidate mapping record (the
 * first entry with the key's fingerprint; its line), (3) that mapping's subscriber record
 * and, for a request with THIRD_PARTY whose mapping keeps its requester in the side table
 * (requesters.ts: not one of the shared ones), that table's index line. Loads of one
 * stage do not depend on each other, so the misses of the 256 datagrams overlap. Each
 * stage first computes its addresses (hashing, probing lines already warm), then loads
 * them in a loop of loads alone: WebAssembly has no prefetch instruction, a load that
 * misses holds the core's reorder window until it returns, and a loop body of a load and
 * an add lets many more loads into that window than one that also hashes and probes
 * (which kept only a few misses in flight). A candidate is not verified here (a
 * fingerprint collision only warms a line for nothing); the handlers verify every key. At
 * millions of mappings every lookup misses the cache; this is what keeps the batch path
 * fast there.
 */
function prefetch(first: u32, end: u32): void {
  const base = slotsBase();
  const index = internalIndex.base;
  for (let i = first; i < end; i++) {
    const slot = base + <usize>i * A.SLOT_SIZE;
    let fp: u32 = 0;
    let at: usize = 0;
    if (isParsed(slot)) {
      fp = internalFp(slotAddress(slot), 0, slotProtocol(slot), slotInternalPort(slot), slotFamily(slot));
      at = index + (<usize>internalIndex.home(fp) << 3);
    }
    store<u32>(stageFp + (<usize>i << 2), fp);
    store<u32>(stageAddr + (<usize>i << 2), at);
    store<u32>(stageAddr2 + (<usize>i << 2), 0);
  }
  let acc = warm(first, end);
  for (let i = first; i < end; i++) {
    const fp = load<u32>(stageFp + (<usize>i << 2));
    let m: u32 = 0;
    let at: usize = 0;
    if (fp != 0) {
      const p = internalIndex.first(fp);
      if (p >= 0) {
        m = internalIndex.recordAt(p);
        at = mappings.at(m) + M_SUB;
      }
    }
    store<u32>(stageRecord + (<usize>i << 2), m);
    store<u32>(stageAddr + (<usize>i << 2), at);
  }
  acc += warm(first, end);
  for (let i = first; i < end; i++) {
    const m = load<u32>(stageRecord + (<usize>i << 2));
    let sub: usize = 0;
    let requester: usize = 0;
    if (m != 0) {
      sub = subscribers.at(load<u32>(mappings.at(m) + M_SUB)) + S_ADDR;
      if (load<u32>(base + <usize>i * A.SLOT_SIZE + A.SLOT_OPTIONS) & A.OPTBIT_THIRD_PARTY) requester = ownRequesterLine(m);
    }
    store<u32>(stageAddr + (<usize>i << 2), sub);
    store<u32>(stageAddr2 + (<usize>i << 2), requester);
  }
  acc += warm(first, end);
  touched += acc; // keeps the loads
}

let dataplaneDown = false;

/** While the dataplane cannot be programmed, MAP, PEER and NAT-PMP requests get NETWORK_FAILURE [6887 §7.4]. */
export function setDataplaneDown(down: bool): void {
  dataplaneDown = down;
}

export function serveRange(first: u32, count: u32, epoch: u32, at: u32): u32 {
  setNow(at);
  processRange(first, count, epoch);
  if (first >= A.SLOT_COUNT) return 0;
  const end = count < A.SLOT_COUNT - first ? first + count : A.SLOT_COUNT;
  const staged = initialised && poolCount != 0 && end - first > 1 && prefetchOn();
  if (staged) prefetch(first, end);
  let replies: u32 = 0;
  for (let i = first; i < end; i++) {
    const slot = slotsBase() + <usize>i * A.SLOT_SIZE;
    if (load<u8>(slot + A.SLOT_VERDICT) == A.VERDICT_PARSED) {
      if (!initialised || poolCount == 0 || dataplaneDown) {
        // No tables, no external address yet, or the NAT device unreachable: the NAT cannot serve [6887 §7.4].
        if (load<u8>(slot + A.SLOT_VERSION) == W.NATPMP_VERSION) {
          if (load<u8>(slot + A.SLOT_OPCODE) == W.NATPMP_OP_ADDRESS) finishNatPmpAddress(slot, W.NATPMP_RESULT_NETWORK_FAILURE, 0);
          else finishNatPmpMap(slot, W.NATPMP_RESULT_NETWORK_FAILURE, 0, 0);
        } else {
          fail(slot, W.RESULT_NETWORK_FAILURE);
        }
      } else if (load<u8>(slot + A.SLOT_VERSION) == W.NATPMP_VERSION) {
        handleNatPmp(slot);
      } else if (load<u8>(slot + A.SLOT_OPCODE) == W.OP_MAP) {
        // what the stages found for it (fingerprint 0: nothing, the handler looks it up)
        const fp = staged ? load<u32>(stageFp + (<usize>i << 2)) : 0;
        handleMap(slot, fp, fp != 0 ? load<u32>(stageRecord + (<usize>i << 2)) : 0);
      } else {
        handlePeer(slot);
      }
    }
    if (load<u8>(slot + A.SLOT_VERDICT) == A.VERDICT_REPLY) replies++;
  }
  return replies;
}
