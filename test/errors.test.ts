// docs/errors.md is the operator's list of error codes: its two tables must hold exactly
// the codes of src/errors.ts (ErrorCodes) and of the control protocol (RpcErrors), so a
// code added, renamed or removed in one place and not the other fails here.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ErrorCodes } from "../src/errors.js";
import { RpcErrors } from "../src/control/protocol.js";

const DOC = readFileSync(new URL("../docs/errors.md", import.meta.url), "utf8");

/** The data rows of the table under the `## title` heading, split into trimmed cells. */
function table(title: string): string[][] {
  const section = DOC.split(/^## /m).find((s) => s.startsWith(`${title}\n`));
  if (!section) throw new Error(`docs/errors.md has no "## ${title}" section`);
  const rows = section.split("\n").filter((l) => l.startsWith("|"));
  return rows.slice(2).map((r) =>
    r
      .slice(1, -1)
      .split("|")
      .map((c) => c.trim()),
  );
}

describe("docs/errors.md", () => {
  it("lists every server error code of src/errors.ts once, and no other", () => {
    const codes = table("Server errors").map(([code]) => code.replace(/^`|`$/g, ""));
    expect(new Set(codes).size).toBe(codes.length);
    expect([...codes].sort()).toEqual(Object.keys(ErrorCodes).sort());
    for (const [k, v] of Object.entries(ErrorCodes)) expect(v).toBe(k);
  });

  it("lists every JSON-RPC error of the control channel once, with its number, and no other", () => {
    const documented = table("Control channel errors").map(([code, name]) => [name.replace(/^`|`$/g, ""), Number(code)] as const);
    expect(new Set(documented.map(([name]) => name)).size).toBe(documented.length);
    expect(Object.fromEntries(documented)).toEqual(RpcErrors);
  });

  it("gives every code a meaning, where it is raised and what the operator does", () => {
    for (const row of [...table("Server errors"), ...table("Control channel errors")]) {
      expect(
        row.every((cell) => cell.length > 0),
        row.join(" | "),
      ).toBe(true);
    }
  });

  it("lists no code that nothing raises: each is used in src/ directly or by a class of src/errors.ts that src/ constructs", () => {
    const root = new URL("../src/", import.meta.url).pathname;
    const files = (readdirSync(root, { recursive: true }) as string[]).filter((f) => f.endsWith(".ts") && f !== "errors.ts");
    const sources = files.map((f) => readFileSync(join(root, f), "utf8")).join("\n");
    const errors = readFileSync(join(root, "errors.ts"), "utf8");
    const raisedByClass = (code: string) =>
      [...errors.matchAll(/class (\w+) extends PcpdError \{[\s\S]*?super\(ErrorCodes\.(\w+)/g)].some(
        ([, cls, c]) => c === code && sources.includes(`new ${cls}(`),
      );
    const unraised = Object.keys(ErrorCodes).filter((code) => !new RegExp(`ErrorCodes\\.${code}\\b`).test(sources) && !raisedByClass(code));
    expect(unraised).toEqual([]);
  });
});
