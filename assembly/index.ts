// Module entry: the exported surface of the packet engine. Keep it small and typed;
// src/engine/codec.ts holds the one TypeScript interface for these exports.

export {
  slotsBase,
  statsBase,
  configureCodec,
  prefix64Base,
  setPrefix64,
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
  engineInit,
  engineBytes,
  serveRange,
  setDataplaneDown,
} from "./engine";

export {
  configurePool,
  poolAdd,
  poolSize,
  poolAddressAt,
  poolFreeBlocks,
  poolIsRetired,
} from "./pool";

export {
  scratchBase,
} from "./tables";

export {
  poolRetire,
  rehomeNext,
  rehomeMapping,
  rehomeFrom,
} from "./rehome";

export {
  expire,
} from "./wheel";

export {
  eventsBase,
  eventsHead,
  eventsTail,
  eventsConsume,
} from "./events";

export {
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
  subscriberMappings,
  subscriberBlocks,
} from "./operator";

export {
  persistBase,
  persistBytes,
  persistNext,
  persistEvents,
  persistGone,
  persistTable,
} from "./persist";

export {
  restoreRecords,
  restoreDropped,
} from "./restore";

export {
  initDescriptions,
  mappingDescription,
  descriptionBase,
} from "./descriptions";

export {
  initRequesters,
} from "./requesters";

export {
  mirrorAdd,
  mirrorsClear,
  mirrorCount,
} from "./mirrors";

export {
  initRealms,
  registerRealm,
  findRealm,
  realmIdentifier,
} from "./realms";

export {
  configureEngine,
  setProtocol,
  setExcludedPort,
  setRefreshCoalescing,
  setPrefetch,
  setPortSetPolicy,
  setCheckpointPolicy,
} from "./config";

export { loadgenMap } from "./loadgen";
