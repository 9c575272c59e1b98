// docs/conformance.md is the spec digest's §3 checklist inside the repository: every
// "item N" a test or the code cites must be a row of it, every row's status must be backed
// by the files it names, and every test file that names an item must be listed in its row,
// so the document and the tests cannot drift apart unnoticed.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..");
const DOC = "docs/conformance.md";
const ITEMS = 155; // digest §3 numbers its items 1..155
const STATUSES = ["pass", "part", "it.todo", "not applicable"] as const;
type Status = (typeof STATUSES)[number];
interface Row {
  item: number;
  status: Status;
  files: string[];
}

/** The item rows of docs/conformance.md: `| N | level | requirement | status | tests |`. */
function parseRows(text: string): Row[] {
  const rows: Row[] = [];
  for (const line of text.split("\n")) {
    const m = /^\| (\d+) \| [MSD] \| .+ \| ([a-z. ]+) \|(.*)\|$/.exec(line);
    if (!m) continue;
    if (!(STATUSES as readonly string[]).includes(m[2])) throw new Error(`${DOC}: unknown status "${m[2]}" in: ${line}`);
    rows.push({ item: Number(m[1]), status: m[2] as Status, files: [...m[3].matchAll(/`(test\/[^`]+)`/g)].map((f) => f[1]) });
  }
  return rows;
}

interface Citation {
  file: string;
  line: number;
  item: number;
  todo: boolean;
}

// "item 47", "items 120–123", "items 1 and 31", "item 125/127", "checklist 77, 78, 91".
// A number followed by ".digit" is another document's numbering (e.g. "12.13").
const CITE = /\b(?:items?|checklist(?:\s+items?)?)\s+(\d+(?!\d|\.\d)(?:\s*(?:,|and|or|\/|–|-)\s*\d+(?!\d|\.\d))*)/gi;
const COMMENT_LEAD = /^\s*(?:\/\/|\*|\/\*\*?)\s?/;

/** Checklist item citations in one file; an issue's items ("issue #12 item 8", also across a comment line break) are not checklist items. */
function citations(file: string, text: string): Citation[] {
  const out: Citation[] = [];
  const lines = text.split("\n");
  lines.forEach((line, i) => {
    for (const m of line.matchAll(CITE)) {
      const before = `${i > 0 ? lines[i - 1].replace(COMMENT_LEAD, "") : ""} ${line.slice(0, m.index).replace(COMMENT_LEAD, "")}`;
      if (/issue\s+#\d+\s*$/i.test(before)) continue;
      for (const part of m[1].match(/\d+\s*[–-]\s*\d+|\d+/g) ?? []) {
        const [from, to = from] = part.split(/\s*[–-]\s*/).map(Number);
        for (let n = from; n <= to; n++) out.push({ file, line: i + 1, item: n, todo: /\bit\.todo\(/.test(line) });
      }
    }
  });
  return out;
}

function sourceFiles(): string[] {
  return ["test", "src", "assembly", "bench", "scripts"].flatMap((dir) =>
    readdirSync(join(ROOT, dir), { recursive: true, encoding: "utf8" })
      .filter((f) => /\.(ts|mjs)$/.test(f))
      .map((f) => `${dir}/${f.split("\\").join("/")}`),
  );
}

/** The test file that runs a file's cases: golden cases live in a data file run by golden.test.ts. */
const testFileOf = (file: string): string | undefined =>
  file === "test/golden/pcp-golden.ts" ? "test/golden/golden.test.ts" : /^test\/.*\.test\.ts$/.test(file) ? file : undefined;

describe("the citation scanner", () => {
  it("reads single items, lists, ranges and slashes, and leaves other documents' numbers alone", () => {
    const text = [
      'it("item 47: MAP TCP", () => {});',
      "// checklist 77, 78, 91: traffic-driven; items 120–123 and 1 and 31; item 125/127",
      '  it.todo("item 65: SCTP");',
      "// issue #12 item 8, Issue #12 item 12, (issue #12",
      "// item 10) and item 12.13 are not checklist items",
    ].join("\n");
    expect(citations("f.ts", text).map((c) => (c.todo ? `${c.item}t` : c.item))).toEqual([47, 77, 78, 91, 120, 121, 122, 123, 1, 31, 125, 127, "65t"]);
  });

  it("parses the rows of the document's tables", () => {
    const rows = parseRows(
      "| 64 | M | ICMP | pass | `test/a.test.ts` (real traffic), `test/b.test.ts` |\n| 65 | M | SCTP | not applicable | `test/c.test.ts` |\n| x | y |",
    );
    expect(rows).toEqual([
      { item: 64, status: "pass", files: ["test/a.test.ts", "test/b.test.ts"] },
      { item: 65, status: "not applicable", files: ["test/c.test.ts"] },
    ]);
    expect(() => parseRows("| 1 | M | x | passes | |")).toThrow(/unknown status/);
  });
});

describe(DOC, () => {
  const rows = parseRows(readFileSync(join(ROOT, DOC), "utf8"));
  const byItem = new Map(rows.map((r) => [r.item, r]));
  const cited = sourceFiles()
    .filter((f) => f !== "test/conformance-doc.test.ts")
    .flatMap((f) => citations(f, readFileSync(join(ROOT, f), "utf8")));

  it(`has one row per digest item, 1..${ITEMS}, in order`, () => {
    expect(rows.map((r) => r.item)).toEqual(Array.from({ length: ITEMS }, (_, i) => i + 1));
  });

  it("has a row for every item cited in test/, src/, assembly/, bench/ and scripts/", () => {
    expect(cited.length).toBeGreaterThan(200); // a scanner that finds nothing would pass the next line
    expect(cited.filter((c) => !byItem.has(c.item)).map((c) => `${c.file}:${c.line} cites item ${c.item}`)).toEqual([]);
  });

  it("names a test file for every item it marks pass or part, and every file it names exists", () => {
    expect(rows.filter((r) => (r.status === "pass" || r.status === "part") && r.files.length === 0).map((r) => r.item)).toEqual([]);
    const missing = rows.flatMap((r) => r.files.filter((f) => !existsSync(join(ROOT, f))).map((f) => `item ${r.item}: ${f}`));
    expect(missing).toEqual([]);
  });

  it("lists, in each item's row, every test file that names the item", () => {
    const unlisted = cited.flatMap((c) => {
      const test = testFileOf(c.file);
      return test && !byItem.get(c.item)?.files.includes(test) ? [`${c.file}:${c.line}: item ${c.item} (add ${test} to its row)`] : [];
    });
    expect([...new Set(unlisted)]).toEqual([]);
  });

  it("marks it.todo (or not applicable) exactly the items whose only test is an it.todo", () => {
    const todo = new Set(cited.filter((c) => c.todo).map((c) => c.item));
    const proven = new Set(cited.filter((c) => !c.todo && testFileOf(c.file)).map((c) => c.item));
    const onlyTodo = [...todo].filter((n) => !proven.has(n)).sort((a, b) => a - b);
    const open = (n: number) => ["it.todo", "not applicable"].includes(byItem.get(n)?.status ?? "");
    expect(onlyTodo.filter((n) => !open(n)).map((n) => `item ${n} has only an it.todo but is marked ${byItem.get(n)?.status}`)).toEqual([]);
    expect(rows.filter((r) => r.status === "it.todo" && !todo.has(r.item)).map((r) => `item ${r.item} is marked it.todo without one`)).toEqual([]);
  });
});
