// Prints the closing line CI reads, "N passed, M failed[, K skipped]", from vitest's JSON report.
// Plain JavaScript so that any node can run it, even when the Node bootstrap itself failed.
import { existsSync, readFileSync } from 'node:fs';

const file = process.argv[2] ?? '.reports/vitest.json';
if (!existsSync(file)) {
  console.log('0 passed, 0 failed');
  process.exit(0);
}
const report = JSON.parse(readFileSync(file, 'utf8'));
const passed = report.numPassedTests ?? 0;
let failed = report.numFailedTests ?? 0;
// A file that fails to load fails no test but fails the run: count it.
if (!report.success && failed === 0) failed = Math.max(1, report.numFailedTestSuites ?? 0);
const skipped = (report.numPendingTests ?? 0) + (report.numTodoTests ?? 0);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
