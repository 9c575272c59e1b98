// The hand-derived golden table (test/golden/pcp-golden.ts) run against both WASM builds.
// The same table also checks the reference parser (test/reference/reference.test.ts).
import { describe, expect, it } from "vitest";
import { codecEngine } from "../helpers/engine-config.js";
import { GOLDEN, hex, srcAddress } from "./pcp-golden.js";
import { EPOCH, hexOf } from "../helpers/packets.js";

for (const build of ["debug", "release"] as const) {
  describe(`golden packets through the ${build} build`, () => {
    const engine = codecEngine({}, build);
    it.each(GOLDEN.map((c) => [c.name, c] as const))("%s", (_name, c) => {
      engine.load(0, { payload: hex(c.hex), source: srcAddress(c.src), sourcePort: 5000, ingress: c.ingress ?? 1, overloaded: c.overloaded });
      engine.processBatch(1, EPOCH);
      const o = engine.outcome(0);
      expect(o.verdict).toBe(c.expect.verdict);
      if (c.expect.dropReason !== undefined) expect(o.dropReason).toBe(c.expect.dropReason);
      if (c.expect.result !== undefined) expect(o.result).toBe(c.expect.result);
      if (c.expect.responseHex !== undefined) expect(hexOf(o.response)).toBe(hexOf(hex(c.expect.responseHex)));
      if (c.expect.options !== undefined) expect(o.options).toBe(c.expect.options);
    });
  });
}
