// The generated TypeScript mirror agrees with assembly/wire.ts + abi.ts and with the
// globals exported by both compiled builds.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { ALL_CONSTANTS } from "../src/wire.generated.js";
import { PacketEngine } from "../src/engine/packet-engine.js";
// @ts-expect-error plain ESM script without typings
import { generate } from "../scripts/gen-wire.mjs";

describe("wire constants", () => {
  it("src/wire.generated.ts is up to date with assembly/", () => {
    expect(readFileSync(new URL("../src/wire.generated.ts", import.meta.url), "utf8")).toBe(generate());
  });

  for (const build of ["debug", "release"] as const) {
    it(`every mirrored constant equals the ${build} module's exported global`, () => {
      const exports = new PacketEngine(build).exports as unknown as Record<string, WebAssembly.Global | undefined>;
      const names = Object.keys(ALL_CONSTANTS);
      expect(names.length).toBeGreaterThan(150);
      for (const name of names) {
        const global = exports[name];
        expect(global, name).toBeInstanceOf(WebAssembly.Global);
        expect((global!.value as number) >>> 0, name).toBe(ALL_CONSTANTS[name] >>> 0);
      }
    });
  }
});
