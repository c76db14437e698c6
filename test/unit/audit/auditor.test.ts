import { describe, expect, it } from 'vitest';
import {
  AgentAuditor,
  createAuditor,
  finishRecord,
  getAuditor,
  NoopAuditor,
  setAuditor,
  startRecord,
} from '../../../src/audit/auditor.ts';
import { describeDatabase, errorSummary } from '../../../src/audit/pool.ts';
import { silentLogger } from '../../../src/util/log.ts';

const T0 = new Date('2026-03-01T10:00:00.000Z');
const at = (ms: number) => new Date(T0.getTime() + ms);

const START = {
  runId: 'run-1',
  namespace: 'agents',
  name: 'hello',
  agent: 'warehouse.health',
  objective: 'check parity',
  plan: { dry_run: true, tools: ['es', 'bq'] },
  userEmail: 'user@example.com',
};

describe('startRecord and finishRecord (the original API in records)', () => {
  it('log_start: a running row with defaults (attempt 1, dry-run, now)', () => {
    expect(startRecord(START, T0)).toStrictEqual({
      ...START,
      status: 'running',
      reason: null,
      attempts: 1,
      startedAt: T0,
      finishedAt: null,
      durationMs: null,
      artifacts: null,
      error: null,
      dryRun: true,
    });
  });

  it('log_finish: duration from the start time when not given', () => {
    const record = finishRecord(
      { ...START, status: 'succeeded', startedAt: T0, artifacts: { parity_ok: true } },
      at(1250),
    );
    expect(record).toMatchObject({
      status: 'succeeded',
      startedAt: T0,
      finishedAt: at(1250),
      durationMs: 1250,
      artifacts: { parity_ok: true },
    });
  });

  it('log_finish: a given duration wins; no start time leaves both to the stored row', () => {
    const record = finishRecord(
      {
        ...START,
        status: 'failed',
        error: 'ValueError: ES connection timeout',
        durationMs: 5001.2,
      },
      T0,
    );
    expect(record).toMatchObject({
      status: 'failed',
      startedAt: null,
      finishedAt: T0,
      durationMs: 5001.2,
      error: 'ValueError: ES connection timeout',
    });
    expect(finishRecord({ ...START, status: 'canceled' }, T0).durationMs).toBeNull();
  });
});

describe('the process-wide auditor', () => {
  it('is a no-op until one is installed, and setAuditor returns the previous one', async () => {
    const initial = getAuditor();
    expect(initial).toBeInstanceOf(NoopAuditor);
    expect(initial.enabled).toBe(false);
    const other = new NoopAuditor();
    expect(setAuditor(other)).toBe(initial);
    expect(getAuditor()).toBe(other);
    setAuditor(initial);
  });

  it('the no-op auditor accepts nothing and finds nothing', async () => {
    const noop = new NoopAuditor();
    await expect(noop.logStart(START)).resolves.toBe(false);
    await expect(noop.logFinish({ ...START, status: 'succeeded' })).resolves.toBe(false);
    await expect(noop.getRun('run-1')).resolves.toBeUndefined();
    await expect(noop.getRecentRuns()).resolves.toEqual([]);
    await expect(noop.flush(0)).resolves.toBe(true);
    expect([noop.pending(), noop.isPending('run-1'), noop.failing()]).toEqual([0, false, false]);
  });

  it('createAuditor: disabled means the no-op auditor, whatever DATABASE_URL says', () => {
    const auditor = createAuditor(
      { APPLYLENS_AGENT_AUDIT_ENABLED: false, DATABASE_URL: 'postgres://u:p@db.invalid/x' },
      { logger: silentLogger() },
    );
    expect(auditor).toBeInstanceOf(NoopAuditor);
  });

  it('createAuditor: enabled needs DATABASE_URL, and connects lazily', async () => {
    expect(() =>
      createAuditor(
        { APPLYLENS_AGENT_AUDIT_ENABLED: true, DATABASE_URL: '' },
        { logger: silentLogger() },
      ),
    ).toThrow(/DATABASE_URL is required/);
    const auditor = createAuditor(
      { APPLYLENS_AGENT_AUDIT_ENABLED: true, DATABASE_URL: 'postgres://u:secret@127.0.0.1:1/x' },
      { logger: silentLogger() },
    );
    expect(auditor).toBeInstanceOf(AgentAuditor);
    expect(auditor.enabled).toBe(true);
    await auditor.close(0);
  });
});

describe('describeDatabase and errorSummary', () => {
  it.each([
    ['postgres://user:s3cret@db.example:6543/audit?sslmode=require', 'db.example:6543/audit'],
    ['postgresql://db/audit', 'db:5432/audit'],
    ['postgres://user:pw@/audit?host=/var/run/postgresql', '/var/run/postgresql:5432/audit'],
    ['postgres://u:p%40ss@h', 'h:5432/(default)'],
    ['not a url with password hunter2', '(unparseable database URL)'],
  ])('%s -> %s (never the user or password)', (url, expected) => {
    const described = describeDatabase(url);
    expect(described).toBe(expected);
    expect(described).not.toMatch(/s3cret|hunter2|p%40ss|user/);
  });

  it('keeps message and code only', () => {
    const error = Object.assign(new Error('boom'), { code: '57P01', detail: 'x', input: 'secret' });
    expect(errorSummary(error)).toEqual({ message: 'boom', code: '57P01' });
    expect(errorSummary('plain')).toEqual({ message: 'plain' });
  });
});
