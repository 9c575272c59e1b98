// Preloaded (node --require) by scripts/bench-compare.ts into the codec and engine
// benchmarks of both trees: sets benchmark.js's default `maxTime` (seconds each case is
// sampled; 5 by default) from BENCH_COMPARE_MAXTIME. Done from outside the benchmarks so
// that an old commit, which has no such knob in its bench files, runs with the same
// setting as the new one. benny builds its cases with `new Benchmark.Suite` and passes no
// maxTime of its own, so the default set here applies to every case.
"use strict";
const { createRequire } = require("node:module");
const { join } = require("node:path");

const seconds = Number(process.env.BENCH_COMPARE_MAXTIME);
if (seconds > 0) {
  // Resolve benchmark.js exactly as benny (in the tree the bench runs in) does, so that
  // both get the same cached module instance.
  const fromBenny = createRequire(join(process.cwd(), "node_modules", "benny", "lib", "suite.js"));
  fromBenny("benchmark").options.maxTime = seconds;
}
