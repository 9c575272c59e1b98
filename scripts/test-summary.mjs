#!/usr/bin/env node
// Prints vitest's JSON reports as the one summary line CI reads: "N passed, N failed[, N skipped]",
// summed over every report named (.ci/run: the whole suite, then the integration tests
// again on the dgram I/O path). Above it, each failure: its file, its test and the first lines
// of its message, so that a CI log's tail names what failed.
import { readFileSync } from "node:fs";

const files = process.argv.length > 2 ? process.argv.slice(2) : ["build/test-results.json"];
let passed = 0;
let failed = 0;
let skipped = 0;
for (const file of files) {
  let report;
  try {
    report = JSON.parse(readFileSync(file, "utf8"));
  } catch (err) {
    console.log(`FAILED ${file}: no report (the build or the runner itself failed): ${firstLines(err.message)}`);
    failed += 1;
    continue;
  }
  passed += report.numPassedTests ?? 0;
  failed += report.numFailedTests ?? 0;
  for (const testFile of report.testResults ?? []) {
    const name = testFile.name?.replace(/^.*?\/test\//, "test/") ?? "?";
    if (testFile.status === "failed" && !(testFile.assertionResults ?? []).some((t) => t.status === "failed")) {
      // A file that failed to load has no failed test of its own: it counts as one failure.
      console.log(`FAILED ${file}: ${name} (it did not load, or its setup failed; the log above says why): ${firstLines(testFile.message)}`);
      failed += 1;
    }
    for (const t of testFile.assertionResults ?? []) {
      if (t.status === "failed") console.log(`FAILED ${file}: ${name} > ${t.fullName ?? t.title}: ${firstLines(t.failureMessages?.[0])}`);
    }
  }
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
}

function firstLines(message) {
  return String(message ?? "")
    .split("\n")
    .slice(0, 4)
    .join(" | ")
    .slice(0, 600);
}

console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
