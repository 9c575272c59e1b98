#!/usr/bin/env node
// Prints vitest's JSON reports as the one summary line CI reads: "N passed, N failed[, N skipped]",
// summed over every report named (.ci/run: the whole suite, then the integration tests
// again on the dgram I/O path).
import { readFileSync } from "node:fs";

const files = process.argv.length > 2 ? process.argv.slice(2) : ["build/test-results.json"];
let passed = 0;
let failed = 0;
let skipped = 0;
for (const file of files) {
  let report;
  try {
    report = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    failed += 1; // no report: the build or the runner itself failed
    continue;
  }
  passed += report.numPassedTests ?? 0;
  // A file that failed to load has no failed test of its own: count it as one failure.
  const brokenFiles = (report.testResults ?? []).filter((f) => f.status === "failed" && !(f.assertionResults ?? []).some((t) => t.status === "failed")).length;
  failed += (report.numFailedTests ?? 0) + brokenFiles;
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
