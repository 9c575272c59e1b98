// Question: does the engine of this tree serve refreshes and lookup misses (and its codec
// parse them) as fast as the engine of commit 6eb1127 (before the #13 refactor), measured
// in ONE process? (Every case includes writing the batch: see the loadgen case.)
// Separate benchmark processes on this shared machine swing by 10-30 % between runs of the
// same code (bench/results/compare-6eb1127-*.json); here both engines are filled with the
// same 1M or 10M mappings and the same workloads alternate in 0.5 s slices, so machine
// noise hits both alike. Each engine runs on its own host code (the boundary changed).
// Usage: build 6eb1127 in a worktree (git worktree add --detach DIR 6eb1127; cp -al
// node_modules DIR/; cd DIR && npm run build), then
//   AB_BASE=DIR node --max-old-space-size=4096 --import tsx bench/engine-ab.bench.ts 1000000 24
import { writeFileSync } from "node:fs";
import * as W from "../src/wire.generated.js";
import { engineConfig, engineFrom } from "../test/helpers/engine-config.js";
if (!process.env.AB_BASE) throw new Error("AB_BASE: a built worktree of commit 6eb1127");
const Base = await import(`${process.env.AB_BASE}/dist/engine/packet-engine.js`);
const size = Number(process.argv[2] ?? 1_000_000);
const rounds = Number(process.argv[3] ?? 12);
const PER_SUB = 50,
  BATCH = W.SLOT_COUNT,
  STRIDE = 2_654_435_761,
  TIMED = 1 << 17,
  CHURN = 1 << 20;
const total = size + CHURN;
const pool = (() => {
  const blocks = Math.ceil(total / PER_SUB) + 16;
  const n = Math.ceil(blocks / Math.floor((65536 - 1024) / 64)) + 1;
  return Array.from({ length: n }, (_, i) => `198.18.${i >> 8}.${i & 255}`);
})();
const cap = {
  mappings: size + TIMED + 2 * BATCH,
  subscribers: Math.ceil(total / PER_SUB) + 16,
  peers: 1024,
  filters: 1024,
  descriptions: 10_000,
  requesters: 10_000,
};
function head() {
  const c = engineConfig({
    capacity: cap,
    quotas: { mappingsPerSubscriber: PER_SUB },
    lifetimes: { holdDown: 0 },
    pool: { addresses: pool, portMin: 1024, blockSize: 64, maxBlocksPerSubscriber: 2, excludedPorts: [] },
  });
  const e = engineFrom(c, 1, { seed: 12345n }, "release");
  return { x: e.exports as any, drain: () => e.discardEvents() };
}
function base() {
  const e = new Base.PacketEngine("release");
  const D = Base.DEFAULT_ENGINE_CONFIG;
  e.initEngine(
    {
      ...D,
      maxMappings: cap.mappings,
      maxSubscribers: cap.subscribers,
      maxPeers: 1024,
      maxFilters: 1024,
      maxDescriptions: 10000,
      maxRequesters: 10000,
      mappingsPerSubscriber: PER_SUB,
      holdDown: 0,
      seed: 12345n,
      pool: { addresses: pool, portMin: 1024, blockSize: 64, maxBlocksPerSubscriber: 2, excludedPorts: [] },
    },
    1,
  );
  return { x: e.exports as any, drain: () => e.exports.eventsConsume(0xffffffff) };
}
const engines = { base: base(), head: head() };
for (const [name, en] of Object.entries(engines)) {
  for (let done = 0; done < size; done += BATCH) {
    en.x.loadgenMap(
      0,
      Math.min(BATCH, size - done),
      Number((BigInt(done) * BigInt(STRIDE % size)) % BigInt(size)),
      STRIDE % size,
      size,
      PER_SUB,
      0,
      3600,
      W.PROTO_TCP,
    );
    en.x.serveRange(0, Math.min(BATCH, size - done), 1, 2);
    en.drain();
  }
  console.log(name, "filled");
}
const cursors: Record<string, number> = { base: 0, head: 0 };
const cases = {
  refresh: (n: string, en: any) => {
    const c = (cursors[n] = (cursors[n] + BATCH * (STRIDE % size)) % size);
    en.x.loadgenMap(0, BATCH, c, STRIDE % size, size, PER_SUB, 0, 3600, W.PROTO_TCP);
    en.x.serveRange(0, BATCH, 1, 2);
    en.drain();
  },
  miss: (n: string, en: any) => {
    const c = (cursors[n] = (cursors[n] + BATCH * (STRIDE % size)) % size);
    en.x.loadgenMap(0, BATCH, c, STRIDE % size, size, PER_SUB, PER_SUB, 0, W.PROTO_TCP);
    en.x.serveRange(0, BATCH, 1, 2);
    en.drain();
  },
  // The codec alone over the same MAP requests (the engine is not called).
  codec: (n: string, en: any) => {
    const c = (cursors[n] = (cursors[n] + BATCH * (STRIDE % size)) % size);
    en.x.loadgenMap(0, BATCH, c, STRIDE % size, size, PER_SUB, 0, 3600, W.PROTO_TCP);
    en.x.processBatch(BATCH, 1);
  },
  loadgen: (n: string, en: any) => {
    const c = (cursors[n] = (cursors[n] + BATCH * (STRIDE % size)) % size);
    en.x.loadgenMap(0, BATCH, c, STRIDE % size, size, PER_SUB, 0, 3600, W.PROTO_TCP);
  },
};
const best: Record<string, number> = {};
const all: Record<string, number[]> = {};
const ITER = 2000;
for (let r = 0; r < rounds; r++) {
  for (const [cn, fn] of Object.entries(cases)) {
    const order = r % 2 ? ["head", "base"] : ["base", "head"];
    for (const n of order) {
      const en = (engines as any)[n];
      const t = process.hrtime.bigint();
      for (let i = 0; i < ITER; i++) fn(n, en);
      const ns = Number(process.hrtime.bigint() - t) / (ITER * BATCH);
      const k = `${cn} ${n}`;
      best[k] = Math.min(best[k] ?? Infinity, ns);
      (all[k] ??= []).push(ns);
    }
  }
}
const med = (a: number[]) => [...a].sort((x, y) => x - y)[a.length >> 1];
const out: Record<string, unknown> = {};
for (const cn of Object.keys(cases)) {
  const b = best[`${cn} base`],
    h = best[`${cn} head`];
  out[cn] = { nsPerRequestBest: { base: b, head: h, headOverBase: h / b }, nsPerRequestMedian: { base: med(all[`${cn} base`]), head: med(all[`${cn} head`]) } };
  console.log(
    `${cn}: ns/req best base ${b.toFixed(1)} head ${h.toFixed(1)} (head/base ${(h / b).toFixed(3)}); median base ${med(all[`${cn} base`]).toFixed(1)} head ${med(all[`${cn} head`]).toFixed(1)} (${(med(all[`${cn} head`]) / med(all[`${cn} base`])).toFixed(3)})`,
  );
}
writeFileSync(
  new URL(`results/engine-ab-6eb1127-${size}.json`, import.meta.url),
  `${JSON.stringify({ question: "ns per request, base 6eb1127 vs this tree, one process, interleaved", date: new Date().toISOString(), size, rounds, batchesPerSlice: ITER, results: out }, null, 2)}\n`,
);
