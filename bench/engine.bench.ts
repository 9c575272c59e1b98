// Question: how fast is the engine's batch path (codec + tables) at 1M and 10M live
// mappings, and how much memory does a mapping cost?
// Inputs: MAP requests written into the slots by the module's load generator for
// endpoints visited in a scattered order (multiplicative stride through the whole table),
// so consecutive batches never hit the same records. One op = one batch of 256.
// Baseline (same run): the load generator alone; "net" figures subtract it.
// Huge pages: the engine is advised for transparent huge pages before its tables are made,
// as a server does (engine.hugePages auto, src/io/huge-pages.ts); a twin with the same
// mappings on 4 KiB pages (engine.hugePages off) runs the refresh case in the same suite
// (BENCH_4K=0 leaves it out). B/mapping is the RSS growth of the first engine alone.
// Usage: npm run bench:engine [-- 1000000,10000000]; each size runs in its own process
// (see the bench:engine script) so the RSS figures do not include an earlier table.
import b from "benny";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { CHURN_SPACE, engineTable, fillTable, PER_SUB, STRIDE, TIMED } from "./population.js";
import * as W from "../src/wire.generated.js";
import { PacketEngine } from "../src/engine/packet-engine.js";
import { adviseHugePages, hugePageBytes, memoryBase } from "../src/io/huge-pages.js";
import { engineConfig } from "../test/helpers/engine-config.js";

const sizes = (process.argv[2] ?? "1000000,10000000").split(",").map(Number);
const BATCH = W.SLOT_COUNT;

async function measure(size: number) {
  const total = size + CHURN_SPACE;
  const rssBefore = process.memoryUsage().rss;
  const config = engineConfig(engineTable(size));
  // An engine advised for huge pages (or not) before initEngine, filled with every endpoint
  // of [0, size) exactly once (the stride is a permutation).
  const filled = (huge: boolean) => {
    const e = new PacketEngine("release", config);
    const advice = adviseHugePages(e.exports.memory, huge ? "auto" : "off");
    e.initEngine(config, 1, { seed: 12345n });
    const x = e.exports;
    const run = (start: number, n: number, lifetime: number, portOffset = 0) => {
      x.loadgenMap(0, n, start, STRIDE % size, size, PER_SUB, portOffset, lifetime, W.PROTO_TCP);
      x.serveRange(0, n, 1, 2);
      e.discardEvents();
    };
    const fillStart = process.hrtime.bigint();
    fillTable(x, () => e.discardEvents(), size);
    const fillSeconds = Number(process.hrtime.bigint() - fillStart) / 1e9;
    const stats = e.engineStats();
    if (stats.mappings !== BigInt(size)) throw new Error(`fill created ${stats.mappings} of ${size} mappings`);
    const memory = e.exports.memory;
    const hugePages = { ...advice, hugePageBytes: hugePageBytes(memoryBase(memory), memory.buffer.byteLength), linearMemoryBytes: memory.buffer.byteLength };
    return { e, x, run, fillSeconds, hugePages };
  };
  const { e, x, run, fillSeconds, hugePages } = filled(true);
  const rssAfter = process.memoryUsage().rss;
  const small = process.env.BENCH_4K === "0" ? undefined : filled(false);
  const rssSmall = process.memoryUsage().rss - rssAfter;
  let smallCursor = 0;

  // Create and delete alone, timed over TIMED endpoints above the live set (stride 1,
  // new subscribers and blocks included), with the load generator's own cost taken out.
  const timed = (lifetime: number) => {
    const t = process.hrtime.bigint();
    for (let done = 0; done < TIMED; done += BATCH) {
      x.loadgenMap(0, BATCH, size + done, 1, total, PER_SUB, 0, lifetime, W.PROTO_TCP);
      x.serveRange(0, BATCH, 1, 2);
      e.discardEvents();
    }
    return Number(process.hrtime.bigint() - t) / TIMED;
  };
  const loadgenOnly = (() => {
    const t = process.hrtime.bigint();
    for (let done = 0; done < TIMED; done += BATCH) x.loadgenMap(0, BATCH, size + done, 1, total, PER_SUB, 0, 3600, W.PROTO_TCP);
    return Number(process.hrtime.bigint() - t) / TIMED;
  })();
  const createNs = timed(3600) - loadgenOnly;
  if (e.engineStats().mappings !== BigInt(size + TIMED)) throw new Error("timed creates did not all succeed");
  const deleteNs = timed(0) - loadgenOnly;
  if (e.engineStats().mappings !== BigInt(size)) throw new Error("timed deletes did not all succeed");

  let cursor = 0;
  let churn = 0;
  const next = () => (cursor = (cursor + BATCH * (STRIDE % size)) % size);
  const summary = await b.suite(
    `engine at ${size.toLocaleString("en")} mappings`,
    b.add("baseline: load generator only", () => {
      x.loadgenMap(0, BATCH, next(), STRIDE % size, size, PER_SUB, 0, 3600, W.PROTO_TCP);
    }),
    b.add("refresh (MAP, same nonce)", () => run(next(), BATCH, 3600)),
    b.add("refresh, prefetch stages forced on", () => {
      e.setPrefetch(1);
      run(next(), BATCH, 3600);
      e.setPrefetch(2);
    }),
    b.add("refresh, prefetch stages forced off", () => {
      e.setPrefetch(0);
      run(next(), BATCH, 3600);
      e.setPrefetch(2);
    }),
    ...(small
      ? [
          b.add("refresh, 4 KiB pages (engine.hugePages off)", () => {
            smallCursor = (smallCursor + BATCH * (STRIDE % size)) % size;
            small.run(smallCursor, BATCH, 3600);
          }),
        ]
      : []),
    b.add("lookup miss (delete of an absent endpoint)", () => run(next(), BATCH, 0, PER_SUB)),
    b.add("create + delete (128 + 128)", () => {
      const start = churn;
      churn = (churn + BATCH / 2) % CHURN_SPACE;
      x.loadgenMap(0, BATCH / 2, size + start, 1, total, PER_SUB, 0, 3600, W.PROTO_TCP);
      x.loadgenMap(BATCH / 2, BATCH / 2, size + start, 1, total, PER_SUB, 0, 0, W.PROTO_TCP);
      x.serveRange(0, BATCH, 1, 2);
      e.discardEvents();
    }),
    b.cycle(),
    b.complete(),
  );
  if (e.engineStats().mappings !== BigInt(size)) throw new Error("live set drifted during the run");
  const baseline = summary.results[0].ops;
  const rows = summary.results.slice(1).map((r) => {
    const perPacketNs = (1e9 / r.ops - 1e9 / baseline) / BATCH;
    return {
      case: r.name,
      requestsPerSecond: r.ops * BATCH,
      netRequestsPerSecond: 1e9 / perPacketNs,
      netNsPerRequest: perPacketNs,
      marginPercent: r.margin,
      timeVsBaseline: baseline / r.ops,
    };
  });
  return {
    mappings: size,
    fill: { seconds: fillSeconds, createsPerSecond: size / fillSeconds },
    timed: {
      method: `hrtime over ${TIMED} endpoints above the live set, load generator cost subtracted`,
      createNsPerRequest: createNs,
      createsPerSecond: 1e9 / createNs,
      deleteNsPerRequest: deleteNs,
      deletesPerSecond: 1e9 / deleteNs,
    },
    memory: {
      rssDeltaBytes: rssAfter - rssBefore,
      bytesPerMapping: (rssAfter - rssBefore) / size,
      linearMemoryBytes: e.engineBytes(),
    },
    hugePages,
    pages4k: small && { ...small.hugePages, fillSeconds: small.fillSeconds, rssDeltaBytes: rssSmall, bytesPerMapping: rssSmall / size },
    baselineBatchesPerSecond: baseline,
    rows,
  };
}

const results = [];
for (const size of sizes) results.push(await measure(size));
const out = {
  question: "engine batch path (codec + tables) by live-table size; memory per mapping",
  target: "DESIGN.md §4: ≥ 8M requests/s per core at 10M mappings; ≤ 100 bytes per mapping",
  date: new Date().toISOString(),
  node: process.version,
  cpu: os.cpus()[0]?.model,
  results,
};
mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
// Dated, so a run on another day or machine does not overwrite the figures the README quotes.
writeFileSync(new URL(`./results/engine-${sizes.join("-")}-${out.date.slice(0, 10)}.json`, import.meta.url), JSON.stringify(out, null, 2) + "\n");
for (const r of results) {
  console.log(
    `\n${r.mappings.toLocaleString("en")} mappings: huge pages ${r.hugePages.advised ? "on" : "OFF"} (${(r.hugePages.hugePageBytes / 2 ** 20).toFixed(0)} of ${(r.hugePages.linearMemoryBytes / 2 ** 20).toFixed(0)} MiB in 2 MiB pages; ${r.hugePages.reason}); fill ${Math.round(r.fill.createsPerSecond).toLocaleString("en")} creates/s, ${r.memory.bytesPerMapping.toFixed(1)} B/mapping (RSS); create ${Math.round(r.timed.createsPerSecond).toLocaleString("en")}/s, delete ${Math.round(r.timed.deletesPerSecond).toLocaleString("en")}/s (net)`,
  );
  console.table(
    r.rows.map((row) => ({
      case: row.case,
      "req/s": Math.round(row.requestsPerSecond),
      "net req/s": Math.round(row.netRequestsPerSecond),
      "net ns": row.netNsPerRequest.toFixed(1),
      "±%": row.marginPercent,
    })),
  );
  const net = (name: string) => r.rows.find((row) => row.case === name)?.netRequestsPerSecond;
  const [huge, small] = [net("refresh (MAP, same nonce)"), net("refresh, 4 KiB pages (engine.hugePages off)")];
  if (huge && small)
    console.log(
      `refresh at ${r.mappings.toLocaleString("en")}: huge pages ${(huge / 1e6).toFixed(2)}M/s, 4 KiB pages ${(small / 1e6).toFixed(2)}M/s (net; huge ÷ 4K ${(huge / small).toFixed(2)}); B/mapping (RSS) ${r.memory.bytesPerMapping.toFixed(1)} huge, ${r.pages4k?.bytesPerMapping.toFixed(1)} 4K`,
    );
}
