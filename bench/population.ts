// How the benchmarks populate a mapping table, written once: subscribers of PER_SUB mappings
// each in one 64-port block, an external pool sized for them, and (for the engine benches,
// bench/engine*.ts) the engine's configuration for a live set plus the endpoints above it
// that timed and churn cases create, and the fill that visits the live set in a scattered
// order. No side effects on import (bench/e2e/harness.ts, which re-exports the pool part,
// installs process handlers; the engine benches do not want them).
import * as W from "../src/wire.generated.js";

export const PER_SUB = 50; // mappings per subscriber (internal ports 1024..1073 of one 10.x.y.z)
export const BLOCK = 64; // ports per block: one block holds a subscriber's 50 mappings
/** Multiplicative stride of the scattered order: odd, so coprime with the power-of-two-free sizes used. */
export const STRIDE = 2_654_435_761;
/** Endpoints created, then deleted, in the engine bench's timed create/delete phases. */
export const TIMED = 1 << 17;
/** Endpoints above the live set for the churn case (a multiple of the half batch). */
export const CHURN_SPACE = 1 << 20;
const BATCH = W.SLOT_COUNT;

/** External pool for `mappings`: one 64-port block per subscriber, plus spare addresses. */
export function poolFor(mappings: number): string[] {
  const blocks = Math.ceil(mappings / PER_SUB) + 16;
  const addresses = Math.ceil(blocks / Math.floor((65536 - 1024) / BLOCK)) + 1;
  return Array.from({ length: addresses }, (_, i) => `198.18.${i >> 8}.${i & 255}`);
}

/** The engine configuration (engineConfig overrides) for `size` live mappings plus the timed and churn endpoints. */
export function engineTable(size: number) {
  const total = size + CHURN_SPACE;
  return {
    // descriptions and requesters as in the figures measured before the configuration region
    capacity: {
      mappings: size + TIMED + 2 * BATCH,
      subscribers: Math.ceil(total / PER_SUB) + 16,
      peers: 1024,
      filters: 1024,
      descriptions: 10_000,
      requesters: 10_000,
    },
    quotas: { mappingsPerSubscriber: PER_SUB },
    lifetimes: { holdDown: 0 }, // churn must not accumulate holds; hold-down cost is measured by the tests, not here
    pool: { addresses: poolFor(total), portMin: 1024, blockSize: BLOCK, maxBlocksPerSubscriber: 2, excludedPorts: [] },
  };
}

/** The engine exports a fill drives (the module's load generator and batch entry). */
interface FillExports {
  loadgenMap(
    slot: number,
    n: number,
    start: number,
    stride: number,
    space: number,
    perSub: number,
    portOffset: number,
    lifetime: number,
    protocol: number,
  ): unknown;
  serveRange(from: number, n: number, now: number, wall: number): unknown;
}

/** MAP (TCP, lifetime 3600) every endpoint of [0, size) exactly once, batch by batch in the stride's order (a permutation). */
export function fillTable(x: FillExports, drain: () => void, size: number): void {
  for (let done = 0; done < size; done += BATCH) {
    const n = Math.min(BATCH, size - done);
    x.loadgenMap(0, n, Number((BigInt(done) * BigInt(STRIDE % size)) % BigInt(size)), STRIDE % size, size, PER_SUB, 0, 3600, W.PROTO_TCP);
    x.serveRange(0, n, 1, 2);
    drain();
  }
}
