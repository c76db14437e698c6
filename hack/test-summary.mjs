// Prints the closing line CI reads, "N passed, M failed[, K skipped]", from vitest's JSON report,
// and exits 1 when anything failed. A missing or unreadable report counts as a failure, with a
// line that says why: it means vitest never ran or never finished, and "0 failed" would lie.
// Plain JavaScript so that any node can run it, even when the Node bootstrap itself failed.
import { readFileSync } from 'node:fs';

const file = process.argv[2] ?? '.reports/vitest.json';

function summarise(passed, failed, skipped, why) {
  if (why) console.log(`ci: ${why}`);
  console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
  process.exitCode = failed > 0 ? 1 : 0;
}

let report;
try {
  report = JSON.parse(readFileSync(file, 'utf8'));
  if (typeof report !== 'object' || report === null) throw new Error('not a JSON object');
} catch (error) {
  const why =
    error && error.code === 'ENOENT'
      ? `vitest wrote no report at ${file} (lint, typecheck or set-up failed before the tests ran)`
      : `vitest's report ${file} is unreadable (${error instanceof Error ? error.message : error})`;
  summarise(0, 1, 0, why);
  process.exit();
}

const passed = report.numPassedTests ?? 0;
const failed = report.numFailedTests ?? 0;
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
if (!report.success && failed === 0) {
  // A file that fails to load fails no test but fails the run: count it.
  const files = Math.max(1, report.numFailedTestSuites ?? 0);
  summarise(
    passed,
    files,
    skipped,
    'the run failed outside any test (a file that failed to load, or an unhandled error)',
  );
} else {
  summarise(passed, failed, skipped);
}
