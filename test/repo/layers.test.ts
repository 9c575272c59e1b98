// The host's layers (docs/architecture-host.md): a module imports from its own layer or a
// lower one, never from a layer above it. Type-only imports are allowed upward (they vanish
// at run time; src/errors.ts types RpcError by the control protocol's codes).
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { describe, expect, it } from "vitest";

const SRC = new URL("../../src/", import.meta.url).pathname;

/** Top to bottom; the directory directly under src/ decides ("" = a file in src/ itself). */
const RANK: Record<string, number> = {
  cli: 0,
  control: 1,
  client: 1,
  server: 2,
  ha: 2,
  shard: 3,
  io: 4,
  engine: 5,
  persist: 5,
  replication: 5,
  dataplane: 5,
  auth: 5,
  core: 6,
  net: 6,
  config: 6,
  "": 6,
};

const layerOf = (file: string) => (file.includes("/") ? file.slice(0, file.indexOf("/")) : "");

describe("host layering", () => {
  const files = (readdirSync(SRC, { recursive: true }) as string[]).filter((f) => f.endsWith(".ts"));

  it("knows the layer of every directory under src/", () => {
    expect(files.map(layerOf).filter((l) => !(l in RANK))).toEqual([]);
  });

  it("has no run-time import from a lower layer to a higher one", () => {
    const upward: string[] = [];
    for (const file of files) {
      const text = readFileSync(join(SRC, file), "utf8");
      for (const m of text.matchAll(/^(import|export)(\s+type)?\b[^;]*?from "(\.[^"]+)"/gms)) {
        if (m[2]) continue;
        const target = relative(SRC, normalize(join(SRC, dirname(file), m[3])));
        if (RANK[layerOf(target)] < RANK[layerOf(file)]) upward.push(`${file} → ${target}`);
      }
    }
    expect(upward).toEqual([]);
  });
});
