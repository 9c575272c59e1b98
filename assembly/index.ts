// Module entry: the exported surface of the packet engine. Keep it small and typed;
// src/engine/codec.ts holds the one TypeScript interface for these exports.

export {
  slotsBase,
  statsBase,
  errorLifetime,
  processBatch,
  processRange,
  finishSuccess,
  finishError,
  finishNatPmpAddress,
  finishNatPmpMap,
  encodeAnnounce,
  encodeNatPmpAnnounce,
} from "./codec";

// Every wire and ABI constant is exported as an immutable global so the host's generated
// mirror can be checked against the compiled module (test/wire.test.ts).
export * from "./wire";
export * from "./abi";

/**
 * Allocation probe for the zero-allocation test: with the stub runtime, freeing the
 * most recent block rewinds the bump pointer, so two probes return the same address
 * unless something allocated in between.
 */
export function heapProbe(): usize {
  const p = heap.alloc(16);
  heap.free(p);
  return p;
}

// `abort` (failed assertion in the debug build) traps instead of calling the host: a
// trapped instance is discarded and rebuilt by the host, never reused.
export function onAbort(message: usize, fileName: usize, line: u32, column: u32): void {
  unreachable();
}

export {
  engineBytes,
  scratchBase,
  poolAdd,
  poolSize,
  poolAddressAt,
  poolFreeBlocks,
  poolIsRetired,
  poolRetire,
  rehomeNext,
  rehomeMapping,
  rehomeFrom,
  serveRange,
  expire,
  eventsBase,
  eventsHead,
  eventsTail,
  eventsConsume,
  addStatic,
  removeStatic,
  deleteSubscriber,
  lookupMapping,
  lookupExternal,
  describeMapping,
  mappingsUsed,
  mappingFilter,
  listScan,
  listBase,
  listNext,
  persistBase,
  persistBytes,
  persistNext,
  persistEvents,
  persistGone,
  persistTable,
  restoreRecords,
  restoreDropped,
  subscriberMappings,
  subscriberBlocks,
  setDataplaneDown,
  mirrorAdd,
  mirrorsClear,
  mirrorCount,
  registerRealm,
  findRealm,
  realmIdentifier,
  mappingDescription,
  descriptionBase,
} from "./engine";

export { configBase, applyConfig } from "./config";

export { loadgenMap } from "./loadgen";
