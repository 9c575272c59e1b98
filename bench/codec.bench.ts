// Question: how many datagrams per second does the codec's batch path validate on one
// core, for batch sizes 1, 16, 64 and 256?
// Inputs: 256 distinct valid MAP/PEER requests (sources, ports, nonces and options vary),
// loaded once; each call processes the next window of the slot array (rotated), so no
// two consecutive calls see the same packets. Valid requests end PARSED and leave their
// bytes intact, which is what lets the slots be reused without reloading.
// Baseline: the same call with an empty batch (the JS→WASM boundary alone), same run.
import b from "benny";
import { mkdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import * as W from "../src/wire.generated.js";
import { codecEngine, engineConfig } from "../test/helpers/engine-config.js";
import { toAddress16 } from "../src/net/address.js";
import { description, filter, mapRequest, peerRequest, thirdParty } from "../test/helpers/packets.js";

const engine = codecEngine({}, "release");
engine.reconfigure(engineConfig(), { options: W.OPTBIT_ALL });
for (let i = 0; i < W.SLOT_COUNT; i++) {
  const client = `10.${(i >> 8) & 255}.${i & 255}.${1 + (i % 200)}`;
  const nonce = Array.from({ length: 12 }, (_, k) => (i * 31 + k * 7) & 255);
  const common = { client, nonce, internalPort: 1024 + i, lifetime: 600 + i };
  const options = [[], [filter(120, "198.51.100.0")], [description(`cam-${i}`)], [thirdParty(`100.64.${i & 255}.9`)]][i % 4];
  const payload = i % 5 === 4 ? peerRequest({ ...common, remotePort: 443 }) : mapRequest(common, options);
  engine.load(i, { payload, source: toAddress16(client), sourcePort: 4000 + i, ingress: W.INGRESS_SUBSCRIBER | W.INGRESS_THIRD_PARTY });
}
if (engine.processBatch(W.SLOT_COUNT, 1) !== W.SLOT_COUNT) throw new Error("bench inputs must all be valid requests");

const sizes = [1, 16, 64, 256];
const cursor = new Map<number, number>();
function step(size: number): void {
  const first = cursor.get(size) ?? 0;
  engine.exports.processRange(first, size, 1);
  cursor.set(size, (first + size) % W.SLOT_COUNT);
}

const summary = await b.suite(
  "codec batch path",
  b.add("baseline: empty batch", () => {
    engine.exports.processRange(0, 0, 1);
  }),
  ...sizes.map((size) => b.add(`batch ${size}`, () => step(size))),
  b.cycle(),
  b.complete(),
);

const baseline = summary.results[0].ops;
const rows = summary.results.slice(1).map((r, i) => ({
  batch: sizes[i],
  callsPerSecond: r.ops,
  packetsPerSecond: r.ops * sizes[i],
  marginPercent: r.margin,
  callCostVsBaseline: baseline / r.ops,
}));
const result = {
  question: "codec batch path: datagrams/s per core by batch size (valid MAP/PEER, rotated)",
  date: new Date().toISOString(),
  node: process.version,
  cpu: os.cpus()[0]?.model,
  baselineCallsPerSecond: baseline,
  rows,
};
mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
writeFileSync(new URL("./results/codec.json", import.meta.url), JSON.stringify(result, null, 2) + "\n");
console.table(
  rows.map((r) => ({
    batch: r.batch,
    "packets/s": Math.round(r.packetsPerSecond),
    "±%": r.marginPercent,
    "call cost × baseline": r.callCostVsBaseline.toFixed(1),
  })),
);
