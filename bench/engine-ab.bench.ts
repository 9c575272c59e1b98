// Question: how fast does the engine of this tree serve refreshes and lookup misses (and
// its codec parse them) compared with the engine of another commit, measured in ONE
// process, and how does that compare with what the memory itself allows?
// Separate benchmark processes on this shared machine swing by 10-40 % between runs of the
// same code; here both engines are filled with the same 1M or 10M mappings and the same
// workloads alternate in short slices, so machine noise hits both alike. Each engine runs
// on its own host code (its own test/helpers/engine-config.ts and dist).
// Memory reference (same process, same slices): a dependent pointer chase (one random
// 64-byte line per step, nothing to overlap: the latency of one cache miss, TLB miss
// included) and independent random reads (as many in flight as the core allows: the
// throughput floor of one random line) over a buffer as large as the 10M table.
// The physical reference (bench/engine/memref.c, built here with gcc, kept running beside
// and given one slice per round): dependent and prefetched independent random lines over
// 1 GiB in 4 KiB pages and in 2 MiB huge pages; 1e9 / (3 × prefetched ns per line) is the
// ceiling of a refresh that needs three random lines.
// Huge pages: both engines are advised before their tables are made, as a server does
// (engine.hugePages auto; AB_HUGE_PAGES=off: neither). Without AB_BASE the two engines are
// this tree's: base on 4 KiB pages, head in huge pages (the "huge pages on/off" comparison).
// Usage: build the other commit in a worktree (git worktree add --detach DIR COMMIT; cp -al
// node_modules DIR/; cd DIR && npm run build), then
//   AB_BASE=DIR node --max-old-space-size=4096 --import tsx bench/engine-ab.bench.ts 10000000 12
// or, huge pages on/off in this tree:
//   node --max-old-space-size=4096 --import tsx bench/engine-ab.bench.ts 10000000 12
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import os from "node:os";
import { engineTable, fillTable, PER_SUB, STRIDE } from "./population.js";
import * as W from "../src/wire.generated.js";
import { PacketEngine } from "../src/engine/packet-engine.js";
import { adviseHugePages, hugePageBytes, memoryBase, thpMode } from "../src/io/huge-pages.js";
import { engineConfig } from "../test/helpers/engine-config.js";
const baseDir = process.env.AB_BASE;
const hugeAB = !baseDir;
const Base = baseDir
  ? { ...(await import(`${baseDir}/test/helpers/engine-config.ts`)), ...(await import(`${baseDir}/src/engine/packet-engine.ts`)) }
  : { engineConfig, PacketEngine };
const rev = (dir: string) => execFileSync("git", ["-C", dir, "rev-parse", "--short", "HEAD"]).toString().trim();
const headRev = rev(new URL("..", import.meta.url).pathname) + (execFileSync("git", ["status", "--porcelain", "assembly"]).length ? "+dirty" : "");
const baseRev = baseDir ? rev(baseDir) : "4k";
const huge = { base: !hugeAB && process.env.AB_HUGE_PAGES !== "off", head: hugeAB || process.env.AB_HUGE_PAGES !== "off" };
const label = hugeAB ? { base: "4 KiB pages", head: "huge pages" } : { base: `base ${baseRev}`, head: `head ${headRev}` };
const size = Number(process.argv[2] ?? 1_000_000);
const rounds = Number(process.argv[3] ?? 12);
const BATCH = W.SLOT_COUNT;
const over = engineTable(size);
function build(lib: { engineConfig: typeof engineConfig; PacketEngine: typeof PacketEngine }, hugePages: boolean) {
  const c = lib.engineConfig(over as never);
  const e = new lib.PacketEngine("release", c);
  const memory = e.exports.memory;
  const advice = adviseHugePages(memory, hugePages ? "auto" : "off");
  e.initEngine(c, 1, { seed: 12345n });
  return {
    x: e.exports as any,
    drain: () => e.discardEvents(),
    bytes: () => e.engineBytes(),
    prefetch: (m: 0 | 1 | 2) => e.setPrefetch(m),
    hugePages: () => ({ ...advice, hugePageBytes: hugePageBytes(memoryBase(memory), memory.buffer.byteLength), linearMemoryBytes: memory.buffer.byteLength }),
  };
}
const engines: Record<string, ReturnType<typeof build>> = { base: build(Base, huge.base), head: build({ engineConfig, PacketEngine }, huge.head) };
for (const [name, en] of Object.entries(engines)) {
  const t = process.hrtime.bigint();
  fillTable(en.x, en.drain, size);
  const h = en.hugePages();
  console.log(
    name,
    `(${label[name as "base" | "head"]})`,
    "filled in",
    (Number(process.hrtime.bigint() - t) / 1e9).toFixed(1),
    "s;",
    (en.bytes() / size).toFixed(1),
    `B/mapping of linear memory; huge pages ${h.advised ? "on" : "off"}: ${(h.hugePageBytes / 2 ** 20).toFixed(0)} of ${(h.linearMemoryBytes / 2 ** 20).toFixed(0)} MiB in 2 MiB pages (${h.reason})`,
  );
}

// The physical reference in C (see the top): started now, its 1 GiB regions linked once.
const root = new URL("..", import.meta.url).pathname;
mkdirSync(`${root}build`, { recursive: true });
execFileSync("gcc", ["-O2", "-Wall", "-Wextra", "-o", `${root}build/engine-memref`, `${root}bench/engine/memref.c`], { stdio: "inherit" });
const memref = spawn(`${root}build/engine-memref`, [String(1 << 20)], { stdio: ["pipe", "pipe", "inherit"] });
const memrefLines = createInterface({ input: memref.stdout! })[Symbol.asyncIterator]();
const memrefLine = async () => JSON.parse((await memrefLines.next()).value as string) as Record<string, number>;
const memrefReady = (await memrefLine()) as unknown as { hugePageKiB: [number, number] };
const physical: Record<string, number[]> = {};

// The memory reference: a buffer of 64-byte lines as large as the 10M engine's tables.
const LINES = (1 << 30) / 64;
const chase = new Int32Array(LINES * 16);
{
  // One random cycle through every line (Sattolo), the next line's index at the start of each.
  const perm = new Int32Array(LINES);
  for (let i = 0; i < LINES; i++) perm[i] = i;
  let seed = 0x9e3779b9;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0), seed);
  for (let i = LINES - 1; i > 0; i--) {
    const j = rnd() % i;
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  for (let i = 0; i < LINES; i++) chase[perm[i] * 16] = perm[(i + 1) % LINES] * 16;
}
let chasePos = 0;
let sink = 0;
const cursors: Record<string, number> = { base: 0, head: 0 };
const step = (n: string) => (cursors[n] = (cursors[n] + BATCH * (STRIDE % size)) % size);
const cases: Record<string, (n: string, en: ReturnType<typeof build>) => void> = {
  refresh: (n, en) => {
    en.x.loadgenMap(0, BATCH, step(n), STRIDE % size, size, PER_SUB, 0, 3600, W.PROTO_TCP);
    en.x.serveRange(0, BATCH, 1, 2);
    en.drain();
  },
  // The same with the prefetch stages forced on and off (auto, the default, runs them from
  // 4M records); the mode is set for the whole slice (see `modes`).
  "refresh, prefetch on": (n, en) => cases.refresh(n, en),
  "refresh, prefetch off": (n, en) => cases.refresh(n, en),
  miss: (n, en) => {
    en.x.loadgenMap(0, BATCH, step(n), STRIDE % size, size, PER_SUB, PER_SUB, 0, W.PROTO_TCP);
    en.x.serveRange(0, BATCH, 1, 2);
    en.drain();
  },
  // The codec alone over the same MAP requests (the engine is not called).
  codec: (n, en) => {
    en.x.loadgenMap(0, BATCH, step(n), STRIDE % size, size, PER_SUB, 0, 3600, W.PROTO_TCP);
    en.x.processBatch(BATCH, 1);
  },
  loadgen: (n, en) => {
    en.x.loadgenMap(0, BATCH, step(n), STRIDE % size, size, PER_SUB, 0, 3600, W.PROTO_TCP);
  },
};
const modes: Record<string, 0 | 1 | 2> = { "refresh, prefetch on": 1, "refresh, prefetch off": 0 };
// Memory reference cases, per line: run once per round, like one engine's slice.
const memory: Record<string, () => void> = {
  "pointer chase (dependent)": () => {
    let p = chasePos;
    for (let i = 0; i < BATCH; i++) p = chase[p];
    chasePos = p;
  },
  "random reads (independent)": () => {
    let p = chasePos,
      acc = 0;
    for (let i = 0; i < BATCH; i++) {
      p = (p + 0x9e3779b1 * 16) % (LINES * 16); // an odd multiple of 16: a permutation of the lines, no dependency
      acc += chase[p & ~15];
    }
    chasePos = p & ~15;
    sink += acc;
  },
};
const all: Record<string, number[]> = {};
const ITER = size >= 5_000_000 ? 1000 : 2000;
// CPU time of the process (user + system), not wall time: with 8 jobs on 2 cores a slice
// may be descheduled for a good part of its wall time. Its wall time is kept as well.
const wall: Record<string, number[]> = {};
const time = (k: string, fn: () => void) => {
  const t = process.hrtime.bigint();
  const c = process.cpuUsage();
  for (let i = 0; i < ITER; i++) fn();
  const d = process.cpuUsage(c);
  (all[k] ??= []).push(((d.user + d.system) * 1000) / (ITER * BATCH));
  (wall[k] ??= []).push(Number(process.hrtime.bigint() - t) / (ITER * BATCH));
};
const loads: number[] = [];
for (let r = 0; r < rounds; r++) {
  loads.push(os.loadavg()[0]);
  for (const [cn, fn] of Object.entries(cases)) {
    const mode = modes[cn] ?? 2;
    for (const n of r % 2 ? ["head", "base"] : ["base", "head"]) {
      engines[n].prefetch(mode);
      time(`${cn} ${n}`, () => fn(n, engines[n]));
      engines[n].prefetch(2);
    }
  }
  for (const [mn, fn] of Object.entries(memory)) time(mn, fn);
  memref.stdin!.write("\n");
  for (const [k, v] of Object.entries(await memrefLine())) (physical[k] ??= []).push(v);
}
memref.stdin!.end();
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
const min = (a: number[]) => Math.min(...a);
// Rounds alternate which engine runs first; the slot order moves a figure by itself, so the
// geometric mean of the per-round ratios (half of them in each order) is the headline.
const geomean = (a: number[]) => Math.exp(a.reduce((t, v) => t + Math.log(v), 0) / a.length);
const out: Record<string, unknown> = {};
for (const cn of Object.keys(cases)) {
  const b = all[`${cn} base`],
    h = all[`${cn} head`];
  // Per-round ratios: both engines ran back to back in the same round.
  const ratios = b.map((v, i) => h[i] / v);
  out[cn] = {
    nsPerRequestMedian: { base: med(b), head: med(h) },
    nsPerRequestBest: { base: min(b), head: min(h) },
    wallNsPerRequestMedian: { base: med(wall[`${cn} base`]), head: med(wall[`${cn} head`]) },
    requestsPerSecondMedian: { base: 1e9 / med(b), head: 1e9 / med(h) },
    headOverBaseTimeGeomeanOfRounds: geomean(ratios),
    headOverBaseTimeMedianOfRounds: med(ratios),
    headOverBaseTimePerRound: ratios,
  };
  console.log(
    `${cn}: ns/req median base ${med(b).toFixed(1)} head ${med(h).toFixed(1)} (base ${(1e3 / med(b)).toFixed(2)}M/s, head ${(1e3 / med(h)).toFixed(2)}M/s); head/base time, geometric mean of rounds ${geomean(ratios).toFixed(3)} (median ${med(ratios).toFixed(3)}); best ${min(b).toFixed(1)} / ${min(h).toFixed(1)}`,
  );
}
for (const mn of Object.keys(memory)) {
  out[mn] = { nsPerLineMedian: med(all[mn]), nsPerLineBest: min(all[mn]), wallNsPerLineMedian: med(wall[mn]) };
  console.log(`${mn}: ns/line median ${med(all[mn]).toFixed(1)} best ${min(all[mn]).toFixed(1)}`);
}
// The physical reference: per case its median ns per line, and for the prefetched reads the
// refresh rate three such lines allow (the ceiling of "three lines per refresh" on this core).
const reference: Record<string, unknown> = { hugePageKiB: { "4k": memrefReady.hugePageKiB[0], huge: memrefReady.hugePageKiB[1] } };
for (const [k, v] of Object.entries(physical)) {
  reference[k] = { nsPerLineMedian: med(v), nsPerLineBest: min(v), perRound: v };
  if (k.startsWith("prefetch"))
    reference[`${k}RefreshCeiling`] = { threeLinesPerSecondMedian: 1e9 / (3 * med(v)), threeLinesPerSecondBest: 1e9 / (3 * min(v)) };
}
const line = (k: string) => `${med(physical[k]).toFixed(1)} ns/line (best ${min(physical[k]).toFixed(1)})`;
console.log(
  `physical reference, 1 GiB, C (${(memrefReady.hugePageKiB[1] / 1024).toFixed(0)} MiB of the huge region in 2 MiB pages): dependent chase 4K ${line("chase4k")}, huge ${line("chaseHuge")}; prefetched batches of 256 4K ${line("prefetch4k")}, huge ${line("prefetchHuge")}`,
);
console.log(
  `ceiling of a refresh touching 3 random lines (1e9 / (3 × prefetched ns/line), median): 4 KiB pages ${(1e3 / (3 * med(physical.prefetch4k))).toFixed(2)}M/s, huge pages ${(1e3 / (3 * med(physical.prefetchHuge))).toFixed(2)}M/s`,
);
if (hugeAB) {
  const r = out.refresh as { nsPerRequestMedian: { base: number; head: number }; headOverBaseTimeGeomeanOfRounds: number };
  console.log(
    `huge pages on/off at ${size.toLocaleString("en")} mappings: refresh ${(1e3 / r.nsPerRequestMedian.head).toFixed(2)}M/s in huge pages vs ${(1e3 / r.nsPerRequestMedian.base).toFixed(2)}M/s in 4 KiB pages (time huge ÷ 4K ${r.headOverBaseTimeGeomeanOfRounds.toFixed(3)}, geometric mean of rounds); linear memory ${(engines.head.bytes() / size).toFixed(1)} B/mapping`,
  );
}
const file = `results/engine-ab-${hugeAB ? "hugepages" : baseRev}-${size}-2026-12-05.json`;
writeFileSync(
  new URL(file, import.meta.url),
  `${JSON.stringify(
    {
      method: "CPU ns (process user + system) per request, per slice of batchesPerSlice batches of 256; rounds alternate which engine goes first",
      question: hugeAB
        ? `ns per request, ${headRev} on 4 KiB pages (base) vs in transparent huge pages (head), one process, interleaved; memory reference in the same rounds`
        : `ns per request, ${baseRev} (base) vs ${headRev} (head), one process, interleaved; memory reference in the same rounds`,
      thpMode: thpMode(),
      hugePages: { base: engines.base.hugePages(), head: engines.head.hugePages() },
      date: new Date().toISOString(),
      node: process.version,
      cpu: os.cpus()[0]?.model,
      cores: os.cpus().length,
      loadAverage1mPerRound: loads,
      size,
      rounds,
      batchesPerSlice: ITER,
      linearMemoryBytesPerMapping: { base: engines.base.bytes() / size, head: engines.head.bytes() / size },
      results: out,
      physicalReference: {
        method:
          "bench/engine/memref.c (gcc -O2), 1 GiB regions (MADV_NOHUGEPAGE / MADV_HUGEPAGE), thread CPU ns per line, one slice per round: dependent chase, and independent random lines in batches of 256 (prefetch all, then read)",
        ...reference,
      },
      sink,
    },
    null,
    2,
  )}\n`,
);
console.log("wrote", file);
