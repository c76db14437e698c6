// Prints the closing line CI reads, "N passed, M failed[, K skipped]", from one or more of
// vitest's JSON reports (summed), and exits 1 when anything failed. A missing or unreadable
// report counts as a failure, with a line that says why: it means that vitest run never ran or
// never finished, and "0 failed" would lie.
// Plain JavaScript so that any node can run it, even when the Node bootstrap itself failed.
import { readFileSync } from 'node:fs';

const files = process.argv.length > 2 ? process.argv.slice(2) : ['.reports/vitest.json'];

let passed = 0;
let failed = 0;
let skipped = 0;
for (const file of files) {
  let report;
  try {
    report = JSON.parse(readFileSync(file, 'utf8'));
    if (typeof report !== 'object' || report === null) throw new Error('not a JSON object');
  } catch (error) {
    console.log(
      error && error.code === 'ENOENT'
        ? `ci: vitest wrote no report at ${file} (lint, typecheck or set-up failed before the tests ran)`
        : `ci: vitest's report ${file} is unreadable (${error instanceof Error ? error.message : error})`,
    );
    failed += 1;
    continue;
  }
  const filePassed = report.numPassedTests ?? 0;
  const fileFailed = report.numFailedTests ?? 0;
  passed += filePassed;
  skipped += (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
  if (!report.success && fileFailed === 0) {
    // A file that fails to load fails no test but fails the run: count it.
    console.log(
      `ci: ${file}: the run failed outside any test (a file that failed to load, or an unhandled error)`,
    );
    failed += Math.max(1, report.numFailedTestSuites ?? 0);
  } else {
    failed += fileFailed;
  }
}
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exitCode = failed > 0 ? 1 : 0;
