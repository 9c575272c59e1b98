// README's configuration table (Running the server) against the schema: every default
// written there is the one an empty document parses to, and every schema field is listed.
// The schema is the one home of the defaults; this keeps the README from drifting.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/schema.js";

/** Defaults the table states in words, not as values (checked by hand when edited). */
const IN_WORDS = new Set(["workers", "control.tokenFile", "control.tls", "rateLimit.perSource", "rateLimit.global"]);

interface Row {
  fields: string[];
  defaults: string;
}

function rows(readme: string): Row[] {
  const start = readme.indexOf("## Running the server");
  const table = readme.slice(readme.indexOf("| Field | Default | Meaning |", start)).split("\n\n")[0].split("\n").slice(2);
  return table.map((line) => {
    const [field, value] = line.split(" | ").map((c) => c.replace(/^\| /, ""));
    const names = [...field.matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    let prefix = "";
    const fields = names.map((n) => {
      if (n.startsWith(".")) return prefix + n.slice(1);
      prefix = n.slice(0, n.lastIndexOf(".") + 1);
      return n;
    });
    return { fields, defaults: value };
  });
}

/** Splits at commas outside brackets and braces. */
function splitTop(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let cur = "";
  for (const ch of s) {
    if (ch === "[" || ch === "{") depth++;
    if (ch === "]" || ch === "}") depth--;
    if (ch === "," && depth === 0) {
      out.push(cur.trim());
      cur = "";
    } else cur += ch;
  }
  out.push(cur.trim());
  return out;
}

/** A README value as data: numbers (with MiB), booleans, `words`, [lists], { objects }. */
function value(text: string): unknown {
  const t = text
    .replace(/^`|`$/g, "")
    .replace(/\s*\([^)]*\)$/, "")
    .trim();
  const mib = /^(\d+) MiB$/.exec(t);
  if (mib) return Number(mib[1]) * 1024 * 1024;
  if (/^-?\d+(\.\d+)?$/.test(t)) return Number(t);
  if (t === "true" || t === "false") return t === "true";
  if (text === "none") return undefined; // `none` in backticks is the word itself
  if (t.startsWith("[")) return t === "[]" ? [] : splitTop(t.slice(1, -1)).map(value);
  if (t.startsWith("{"))
    return Object.fromEntries(splitTop(t.slice(1, -1)).map((kv) => [kv.slice(0, kv.indexOf(":")).trim(), value(kv.slice(kv.indexOf(":") + 1))]));
  return t.replace(/^"|"$/g, "");
}

const at = (o: unknown, path: string): unknown => path.split(".").reduce((v: unknown, k) => (v as Record<string, unknown> | undefined)?.[k], o);

/** Every leaf path of the parsed defaults (objects of settings: their fields; anything else: itself). */
function leaves(o: unknown, prefix = ""): string[] {
  if (typeof o !== "object" || o === null || Array.isArray(o)) return [prefix];
  return Object.entries(o).flatMap(([k, v]) => leaves(v, prefix ? `${prefix}.${k}` : k));
}

describe("README configuration table", () => {
  const table = rows(readFileSync(new URL("../../README.md", import.meta.url), "utf8"));
  const defaults = parseConfig({});

  it("states each default as the schema has it", () => {
    expect(table.length).toBeGreaterThan(40);
    let checked = 0;
    for (const { fields, defaults: text } of table) {
      if (fields.every((f) => IN_WORDS.has(f))) continue;
      // One value for several fields ("true") is the default of each.
      const parts = fields.length === 1 ? [text] : splitTop(text);
      const values = parts.length === 1 ? fields.map(() => value(text)) : parts.map(value);
      expect(values, `${fields.join(", ")}: ${text}`).toHaveLength(fields.length);
      fields.forEach((f, i) => {
        expect(values[i], `${f} in README`).toEqual(at(defaults, f));
        checked++;
      });
    }
    expect(checked).toBeGreaterThan(60);
  });

  it("lists every field of the schema", () => {
    const listed = table.flatMap((r) => r.fields);
    const covered = (leaf: string) => listed.some((f) => leaf === f || leaf.startsWith(`${f}.`));
    const missing = leaves(defaults).filter((leaf) => !covered(leaf));
    expect(missing).toEqual([]);
    for (const f of IN_WORDS) expect(listed).toContain(f);
  });
});
