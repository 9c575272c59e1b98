// packaging/pcpd.example.yaml: the annotated example configuration loads as it is, and
// with its optional "#~ " lines uncommented it names every field of the schema — so a new
// setting without an example line fails here.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import type { z } from "zod";
import { describe, expect, it } from "vitest";
import { loadFile } from "../../src/config/load.js";
import { ConfigSchema, parseConfig } from "../../src/config/schema.js";
import { tempDir } from "../helpers/temp.js";

const EXAMPLE = new URL("../../packaging/pcpd.example.yaml", import.meta.url);
const text = readFileSync(EXAMPLE, "utf8");

/** Every field path of a schema: objects by their fields, arrays of objects as `name[].field`. */
function schemaFields(schema: z.ZodType, prefix = ""): string[] {
  let s = schema as unknown as { def: { type: string; innerType?: unknown; element?: unknown; shape?: Record<string, z.ZodType> } };
  while (["default", "prefault", "optional", "nullable"].includes(s.def.type)) s = s.def.innerType as typeof s;
  if (s.def.type === "object") return Object.entries(s.def.shape!).flatMap(([k, v]) => schemaFields(v, prefix ? `${prefix}.${k}` : k));
  if (s.def.type === "array") {
    const inner = schemaFields(s.def.element as z.ZodType, `${prefix}[]`);
    return inner.length === 1 && inner[0] === `${prefix}[]` ? [prefix] : [prefix, ...inner];
  }
  return [prefix];
}

/** Every path a document names (arrays of objects: `name[].field` for each element's keys). */
function documentPaths(o: unknown, prefix = ""): string[] {
  if (Array.isArray(o))
    return [prefix, ...o.flatMap((e) => (typeof e === "object" && e !== null ? documentPaths(e, `${prefix}[]`).filter((p) => p !== `${prefix}[]`) : []))];
  if (typeof o !== "object" || o === null) return [prefix];
  return [...(prefix ? [prefix] : []), ...Object.entries(o).flatMap(([k, v]) => documentPaths(v, prefix ? `${prefix}.${k}` : k))];
}

describe("packaging/pcpd.example.yaml", () => {
  it("loads as pcp-server loads it", () => {
    const dir = tempDir("pcl-example");
    writeFileSync(join(dir, "pcpd.yaml"), text);
    const { config } = loadFile(join(dir, "pcpd.yaml"));
    expect(config.listen.addresses).toEqual(["100.64.0.1"]);
    expect(config.subscribers).toEqual(["100.64.0.0/10"]);
  });

  it("with its optional lines uncommented, is still valid and names every schema field", () => {
    const full = parse(text.replace(/^(\s*)#~ /gm, "$1"));
    // The environment variables its optional lines name (checked when the file is loaded).
    process.env.PCPD_RADIUS_SECRET ??= "example-secret";
    expect(() => parseConfig(full)).not.toThrow();
    const named = new Set(documentPaths(full));
    const fields = schemaFields(ConfigSchema as unknown as z.ZodType);
    expect(fields.length).toBeGreaterThan(100);
    expect(fields.filter((f) => !named.has(f))).toEqual([]);
  });

  it("annotates every section", () => {
    for (const section of Object.keys(parse(text.replace(/^(\s*)#~ /gm, "$1")) as object)) {
      const at = text.search(new RegExp(`^#?~? ?${section}:`, "m"));
      const before = text.slice(0, at).trimEnd().split("\n").pop() ?? "";
      const line = text.slice(at, text.indexOf("\n", at));
      expect(before.startsWith("#") || line.includes("#"), section).toBe(true);
    }
  });
});
