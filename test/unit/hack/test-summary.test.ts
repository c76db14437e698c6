import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

// The script that writes the last line of `.ci/run`, the line the CI record reads.
const SCRIPT = resolve(import.meta.dirname, '../../../hack/test-summary.mjs');
const dir = mkdtempSync(join(tmpdir(), 'agentrun-test-summary-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function summary(...files: string[]): Promise<{ lines: string[]; code: number }> {
  return new Promise((done) => {
    execFile(process.execPath, [SCRIPT, ...files], (error, stdout) => {
      done({ lines: stdout.trimEnd().split('\n'), code: error ? Number(error.code) : 0 });
    });
  });
}

let written = 0;
function report(contents: string | object): string {
  const file = join(dir, `vitest-${++written}.json`);
  writeFileSync(file, typeof contents === 'string' ? contents : JSON.stringify(contents));
  return file;
}

/** The counters of vitest's JSON reporter, as `make test` writes them. */
function vitestReport(counts: {
  passed: number;
  failed: number;
  failedFiles: number;
  pending?: number;
  todo?: number;
}): object {
  return {
    numTotalTestSuites: 10,
    numPassedTestSuites: 10 - counts.failedFiles,
    numFailedTestSuites: counts.failedFiles,
    numPendingTestSuites: 0,
    numTotalTests: counts.passed + counts.failed + (counts.pending ?? 0) + (counts.todo ?? 0),
    numPassedTests: counts.passed,
    numFailedTests: counts.failed,
    numPendingTests: counts.pending ?? 0,
    numTodoTests: counts.todo ?? 0,
    startTime: 1_767_225_600_000,
    success: counts.failed === 0 && counts.failedFiles === 0,
    testResults: [],
  };
}

describe('hack/test-summary.mjs', () => {
  it('counts a missing report as a failure and says that vitest wrote none', async () => {
    const missing = join(dir, 'never-written.json');
    expect(await summary(missing)).toEqual({
      lines: [
        `ci: vitest wrote no report at ${missing} (lint, typecheck or set-up failed before the tests ran)`,
        '0 passed, 1 failed',
      ],
      code: 1,
    });
  });

  it('counts an unreadable report as a failure and says why', async () => {
    const { lines, code } = await summary(report('{"numPassedTests": 25'));
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^ci: vitest's report .* is unreadable \(/);
    expect(lines[1]).toBe('0 passed, 1 failed');
    expect(code).toBe(1);
  });

  it('prints the failed tests and the skipped ones, and fails', async () => {
    const file = report(
      vitestReport({ passed: 40, failed: 2, failedFiles: 1, pending: 3, todo: 1 }),
    );
    expect(await summary(file)).toEqual({ lines: ['40 passed, 2 failed, 4 skipped'], code: 1 });
  });

  it('counts a file that failed to load, though no test failed', async () => {
    const file = report(vitestReport({ passed: 40, failed: 0, failedFiles: 2 }));
    expect(await summary(file)).toEqual({
      lines: [
        `ci: ${file}: the run failed outside any test (a file that failed to load, or an unhandled error)`,
        '40 passed, 2 failed',
      ],
      code: 1,
    });
  });

  it('prints a passing run as it is, and succeeds', async () => {
    const file = report(vitestReport({ passed: 2519, failed: 0, failedFiles: 0 }));
    expect(await summary(file)).toEqual({ lines: ['2519 passed, 0 failed'], code: 0 });
  });

  it('sums several reports (make test, then the fault scenarios), a missing one failing', async () => {
    const tests = report(vitestReport({ passed: 2000, failed: 0, failedFiles: 0, pending: 1 }));
    const faults = report(vitestReport({ passed: 7, failed: 1, failedFiles: 1 }));
    expect(await summary(tests, faults)).toEqual({
      lines: ['2007 passed, 1 failed, 1 skipped'],
      code: 1,
    });
    const missing = join(dir, 'faults-never-written.json');
    const { lines, code } = await summary(tests, missing);
    expect(lines.at(-1)).toBe('2000 passed, 1 failed, 1 skipped');
    expect(code).toBe(1);
  });
});
