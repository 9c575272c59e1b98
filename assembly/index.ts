// Module entry: the exported surface of the packet engine, kept to memory regions and a
// few verbs (docs/boundary.md). src/engine/boundary.ts holds the one TypeScript interface
// for these exports and the list test/engine/boundary.test.ts pins them to.

// The batch path: codec over slots, codec + engine over slots, the expiry wheel.
export { processBatch, processRange } from "./codec";
export { serveRange } from "./engine";
export { expire } from "./wheel";
// Traffic-driven lifetimes: the queries a decision queued, and the dataplane's answers.
export { activityAnswer, activityBase, activityTake } from "./activity";

// Control operations through the command slot, and the table of region bases.
export { command, regions } from "./commands";


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

// The configuration region and the one call that applies it (docs/config.md).
export { configBase, applyConfig } from "./config";

// In-module load generator for the engine benchmark and the scale test.
export { loadgenMap } from "./loadgen";
