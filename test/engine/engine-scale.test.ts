// The engine at scale, driven by the in-module load generator: 200k mappings created,
// refreshed, deleted and released with every counter balancing, no allocation after
// start-up, and every external address:port owned by exactly one mapping.
import { describe, expect, it } from "vitest";
import * as W from "../../src/wire.generated.js";
import type { PacketEngine } from "../../src/engine/packet-engine.js";
import { engineConfig, engineFrom } from "../helpers/engine-config.js";

const N = 200_000;
const PER_SUB = 50;
const T0 = 5000;

function drive(e: PacketEngine, start: number, count: number, lifetime: number, now: number, portOffset = 0): void {
  const x = e.exports;
  for (let done = 0; done < count; done += W.SLOT_COUNT) {
    const n = Math.min(W.SLOT_COUNT, count - done);
    x.loadgenMap(0, n, start + done, 1, N, PER_SUB, portOffset, lifetime, W.PROTO_TCP);
    x.serveRange(0, n, 1, now);
    e.discardEvents();
  }
}

describe("engine at 200k mappings", () => {
  for (const build of ["debug", "release"] as const) {
    it(`${build}: create, refresh, delete, release balance; no allocation after start-up`, () => {
      const e = engineFrom(
        engineConfig({
          capacity: { mappings: N + 1000, subscribers: N / PER_SUB + 100 },
          quotas: { mappingsPerSubscriber: PER_SUB },
          pool: {
            addresses: ["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"],
            portMin: 1024,
            blockSize: 64,
            maxBlocksPerSubscriber: 2,
            excludedPorts: [],
          },
        }),
        T0,
        { seed: 99n },
        build,
      );
      const probe = e.exports.heapProbe();
      const results = () => e.stats().pcpResults;

      drive(e, 0, N, 3600, T0);
      expect(results()[0]).toBe(BigInt(N));
      expect(e.engineStats()).toMatchObject({ mappings: BigInt(N), subscribers: BigInt(N / PER_SUB), created: BigInt(N) });

      // Every mapping has its own external address:port (the external index is exact).
      const seen = new Set<string>();
      for (let m = 1; m <= N; m++) {
        const d = e.describe(m)!;
        seen.add(`${d.externalAddress}:${d.externalPort}`);
      }
      expect(seen.size).toBe(N);

      drive(e, 0, N, 7200, T0 + 10); // refresh
      drive(e, 0, N, 0, T0 + 20, PER_SUB); // deletes of endpoints that do not exist: lookup misses
      expect(e.engineStats()).toMatchObject({ mappings: BigInt(N), refreshed: BigInt(N) });
      expect(results()[0]).toBe(BigInt(3 * N));

      drive(e, 0, N, 0, T0 + 30); // delete: ports go into hold-down
      expect(e.engineStats()).toMatchObject({ mappings: 0n, held: BigInt(N), deleted: BigInt(N) });
      // Expiry pauses when the event ring is full; the host drains it and calls again.
      while (e.expire(T0 + 30 + 120) > 0) e.discardEvents();
      expect(e.engineStats()).toMatchObject({ held: 0n, released: BigInt(N), blocks: 0n, subscribers: 0n, eventsLost: 0n });
      expect(e.exports.heapProbe()).toBe(probe);
    });
  }
});
