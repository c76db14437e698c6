import pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  type AuditRecord,
  COLUMN_MAX_LENGTH,
  JSON_PREVIEW_CHARS,
} from '../../../src/audit/audit-record.ts';
import { AuditStore } from '../../../src/audit/audit-store.ts';
import { migrate } from '../../../src/audit/migrate.ts';
import { RetentionJob } from '../../../src/audit/retention.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { TRUNCATION_MARKER } from '../../../src/util/text.ts';
import { useFreshDatabase } from '../../support/environment.ts';

const db = useFreshDatabase('audit_store');
let pool: pg.Pool;
let store: AuditStore;

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: db.url, max: 4 });
  pool.on('error', () => {}); // idle connections cut when the database is dropped
  await migrate(pool, 'up', silentLogger());
  store = new AuditStore(pool);
});
afterAll(async () => {
  await pool.end();
});
beforeEach(async () => {
  await pool.query('TRUNCATE agent_audit_log');
});

const T0 = new Date('2026-03-01T10:00:00.000Z');
const T1 = new Date('2026-03-01T10:00:01.250Z');

function start(runId: string, overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    runId,
    namespace: 'agents',
    name: `run-${runId}`,
    agent: 'warehouse.health',
    objective: 'check parity',
    status: 'running',
    reason: 'Running',
    attempts: 1,
    startedAt: T0,
    finishedAt: null,
    durationMs: null,
    plan: { dry_run: true, tools: ['es', 'bq'] },
    artifacts: null,
    error: null,
    userEmail: 'user@example.com',
    dryRun: true,
    ...overrides,
  };
}

function finish(runId: string, overrides: Partial<AuditRecord> = {}): AuditRecord {
  return start(runId, {
    status: 'succeeded',
    reason: 'Succeeded',
    finishedAt: T1,
    durationMs: 1250.5,
    artifacts: { parity_ok: true, freshness_ok: true },
    ...overrides,
  });
}

/** Every column of the run's row(s), as PostgreSQL returns them. */
async function rowsOf(runId: string): Promise<Record<string, unknown>[]> {
  const { rows } = await pool.query('SELECT * FROM agent_audit_log WHERE run_id = $1', [runId]);
  return rows;
}

async function count(): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM agent_audit_log',
  );
  return rows[0]?.n ?? -1;
}

describe('row lifecycle', () => {
  it('a start writes a running row with exactly these values', async () => {
    await store.upsert([start('r1')]);
    const [row] = await rowsOf('r1');
    const { id, created_at, updated_at, ...values } = row ?? {};
    expect(values).toStrictEqual({
      run_id: 'r1',
      namespace: 'agents',
      name: 'run-r1',
      agent: 'warehouse.health',
      objective: 'check parity',
      status: 'running',
      reason: 'Running',
      attempts: 1,
      started_at: T0,
      finished_at: null,
      duration_ms: null,
      plan: { dry_run: true, tools: ['es', 'bq'] },
      artifacts: null,
      error: null,
      user_email: 'user@example.com',
      dry_run: true,
    });
    expect(id).toBe('1');
    expect(created_at).toBeInstanceOf(Date);
    expect(updated_at).toEqual(created_at);
  });

  it('the finish completes the same row', async () => {
    await store.upsert([start('r1')]);
    const [before] = await rowsOf('r1');
    await store.upsert([finish('r1')]);
    const rows = await rowsOf('r1');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      id: before?.['id'],
      status: 'succeeded',
      reason: 'Succeeded',
      started_at: T0,
      finished_at: T1,
      duration_ms: 1250.5,
      plan: { dry_run: true, tools: ['es', 'bq'] },
      artifacts: { parity_ok: true, freshness_ok: true },
      error: null,
      created_at: before?.['created_at'],
    });
    expect(rows[0]?.['updated_at']).toBeInstanceOf(Date);
    expect(Number(rows[0]?.['updated_at'])).toBeGreaterThanOrEqual(Number(before?.['updated_at']));
  });

  it('a failure keeps its error; a real run keeps dry_run false', async () => {
    await store.upsert([
      finish('r2', {
        status: 'failed',
        reason: 'Failed',
        artifacts: null,
        error: 'ValueError: ES connection timeout',
        durationMs: 5001.2,
        dryRun: false,
      }),
    ]);
    expect(await rowsOf('r2')).toEqual([
      expect.objectContaining({
        status: 'failed',
        error: 'ValueError: ES connection timeout',
        duration_ms: 5001.2,
        dry_run: false,
      }),
    ]);
  });

  it('a run that ended without starting gets started_at = finished_at', async () => {
    await store.upsert([
      finish('r3', { status: 'failed', reason: 'UnknownAgent', startedAt: null, durationMs: 0 }),
    ]);
    expect(await rowsOf('r3')).toEqual([
      expect.objectContaining({ started_at: T1, finished_at: T1, attempts: 1 }),
    ]);
  });
});

describe('idempotent replays', () => {
  it('a start replayed after the finish changes nothing', async () => {
    await store.upsert([start('r1')]);
    await store.upsert([finish('r1')]);
    const before = await rowsOf('r1');
    await store.upsert([start('r1')]);
    await store.upsert([start('r1', { attempts: 3 })]);
    expect(await rowsOf('r1')).toEqual(before);
  });

  it('finishing twice leaves one row with the first finish, untouched', async () => {
    await store.upsert([finish('r1')]);
    const before = await rowsOf('r1');
    await store.upsert([finish('r1')]);
    await store.upsert([finish('r1', { status: 'failed', error: 'late duplicate' })]);
    expect(await rowsOf('r1')).toEqual(before);
    expect(await count()).toBe(1);
  });

  it('a later decision replaces a terminal row: a retry, or Interrupted after the row of a killed process', async () => {
    // The killed process's row committed; its status write never happened.
    await store.upsert([finish('r1')]);
    const later = new Date(T1.getTime() + 2_000);
    await store.upsert([
      finish('r1', {
        status: 'failed',
        reason: 'Interrupted',
        error: 'attempt 1 was interrupted',
        finishedAt: later,
        durationMs: 3_250,
      }),
    ]);
    expect(await rowsOf('r1')).toEqual([
      expect.objectContaining({
        status: 'failed',
        reason: 'Interrupted',
        attempts: 1,
        finished_at: later,
        duration_ms: 3_250,
      }),
    ]);
    // A retry (more attempts) wins even with an earlier clock; an older finish replayed does not.
    await store.upsert([finish('r2')]);
    await store.upsert([finish('r2', { attempts: 2, finishedAt: T0, durationMs: 0 })]);
    await store.upsert([finish('r2', { status: 'failed', error: 'replayed old finish' })]);
    expect(await rowsOf('r2')).toEqual([
      expect.objectContaining({ status: 'succeeded', attempts: 2, finished_at: T0 }),
    ]);
    // A start never replaces a terminal row, with whatever attempts.
    await store.upsert([start('r2', { attempts: 3 })]);
    expect(await rowsOf('r2')).toEqual([expect.objectContaining({ status: 'succeeded' })]);
  });

  it("a run that never started takes the later decision's time as its start, a started one keeps its first", async () => {
    // A process killed between the row of "canceled before it started" and its status: the next
    // one cancels again, later. The status it writes says finishedAt = that later time and no
    // start, so the row's started_at (a never-started run's finish) must follow it.
    const never: Partial<AuditRecord> = {
      status: 'canceled',
      reason: 'Canceled',
      attempts: 0,
      startedAt: null,
    };
    const later = new Date(T1.getTime() + 2_400);
    await store.upsert([finish('r1', never)]);
    await store.upsert([finish('r1', { ...never, finishedAt: later, durationMs: 0 })]);
    expect(await rowsOf('r1')).toEqual([
      expect.objectContaining({ started_at: later, finished_at: later, attempts: 0 }),
    ]);
    // One that ran keeps its first start through a later decision.
    await store.upsert([start('r2')]);
    await store.upsert([finish('r2', { startedAt: later, finishedAt: later })]);
    expect(await rowsOf('r2')).toEqual([expect.objectContaining({ started_at: T0 })]);
  });

  it('a finish without a start inserts a complete row; its start arriving later is ignored', async () => {
    await store.upsert([finish('r1')]);
    await store.upsert([start('r1')]);
    expect(await rowsOf('r1')).toEqual([expect.objectContaining({ status: 'succeeded' })]);
  });

  it('a replayed older start never undoes a retry', async () => {
    await store.upsert([start('r1', { attempts: 2 })]);
    await store.upsert([start('r1', { attempts: 1, objective: 'stale' })]);
    expect(await rowsOf('r1')).toEqual([
      expect.objectContaining({ attempts: 2, objective: 'check parity' }),
    ]);
  });

  it('a finish keeps the earliest start time, the plan and the user when it lacks them', async () => {
    await store.upsert([start('r1')]);
    await store.upsert([
      finish('r1', { startedAt: null, plan: null, userEmail: null, attempts: 0 }),
    ]);
    expect(await rowsOf('r1')).toEqual([
      expect.objectContaining({
        status: 'succeeded',
        started_at: T0,
        plan: { dry_run: true, tools: ['es', 'bq'] },
        user_email: 'user@example.com',
        attempts: 1,
      }),
    ]);
  });
});

describe('batches', () => {
  it('one statement with duplicate runIds keeps the most advanced record per run', async () => {
    await store.upsert([
      start('a'),
      start('b'),
      finish('a'),
      start('a'), // a replayed start in the same batch
      start('c', { attempts: 2 }),
      start('c', { attempts: 1 }),
      finish('b', { status: 'canceled', reason: 'Canceled' }),
    ]);
    const { rows } = await pool.query(
      'SELECT run_id, status, attempts FROM agent_audit_log ORDER BY run_id',
    );
    expect(rows).toEqual([
      { run_id: 'a', status: 'succeeded', attempts: 1 },
      { run_id: 'b', status: 'canceled', attempts: 1 },
      { run_id: 'c', status: 'running', attempts: 2 },
    ]);
  });

  it('more rows than one statement holds are split, and all land', async () => {
    const records = Array.from({ length: 1234 }, (_, i) => finish(`bulk-${i}`));
    await store.upsert(records);
    expect(await count()).toBe(1234);
  });
});

describe('bad data is stored safely', () => {
  it('U+0000 in objective, error and artifact keys and values', async () => {
    await store.upsert([
      finish('nul', {
        objective: 'say \u0000hello',
        error: 'boom\u0000',
        status: 'failed',
        artifacts: { 'k\u0000': 'v\u0000', list: ['\u0000'] },
        plan: { '\u0000': { deep: 'x\u0000y' } },
      }),
    ]);
    expect(await rowsOf('nul')).toEqual([
      expect.objectContaining({
        objective: 'say \uFFFDhello',
        error: 'boom\uFFFD',
        artifacts: { 'k\uFFFD': 'v\uFFFD', list: ['\uFFFD'] },
        plan: { '\uFFFD': { deep: 'x\uFFFDy' } },
      }),
    ]);
  });

  it('lone surrogates in text and JSON', async () => {
    await store.upsert([
      finish('sur', {
        objective: 'half \uD83D pair',
        artifacts: { '\uDE00': '\uD800x', ok: '😀' },
      }),
    ]);
    expect(await rowsOf('sur')).toEqual([
      expect.objectContaining({
        objective: 'half \uFFFD pair',
        artifacts: { '\uFFFD': '\uFFFDx', ok: '😀' },
      }),
    ]);
  });

  it('1 MiB of artifacts becomes the truncation marker', async () => {
    const artifacts = { body: 'x'.repeat(1024 * 1024) };
    await store.upsert([finish('big', { artifacts })]);
    const [row] = await rowsOf('big');
    expect(row?.['artifacts']).toEqual({
      _truncated: true,
      bytes: JSON.stringify(artifacts).length,
      preview: JSON.stringify(artifacts).slice(0, JSON_PREVIEW_CHARS),
    });
  });

  it('a 5000-character error is cut to 2048 with a marker; other text to its column', async () => {
    await store.upsert([
      finish('long', {
        status: 'failed',
        error: 'e'.repeat(5000),
        objective: 'o'.repeat(1000),
        userEmail: `${'u'.repeat(400)}@example.com`,
        name: 'n'.repeat(253),
      }),
    ]);
    const [row] = await rowsOf('long');
    expect(row?.['error']).toBe(
      'e'.repeat(COLUMN_MAX_LENGTH.error - TRUNCATION_MARKER.length) + TRUNCATION_MARKER,
    );
    expect(row?.['objective']).toHaveLength(512);
    expect(row?.['user_email']).toHaveLength(320);
    expect(row?.['name']).toBe('n'.repeat(253));
  });

  it('SQL-looking strings are stored verbatim', async () => {
    const evil = 'x\'); DROP TABLE agent_audit_log; -- $1 \\ " ;';
    await store.upsert([
      finish(`id'; DELETE FROM agent_audit_log; --`, {
        objective: evil,
        error: evil,
        agent: "robert'); --",
        artifacts: { [evil]: evil },
      }),
    ]);
    const [row] = await rowsOf(`id'; DELETE FROM agent_audit_log; --`);
    expect(row).toMatchObject({ objective: evil, error: evil, agent: "robert'); --" });
    expect(row?.['artifacts']).toEqual({ [evil]: evil });
    expect(await count()).toBe(1);
  });

  it('values JSON cannot hold (bigint, cycles, NaN, functions) do not break the write', async () => {
    const cyclic: Record<string, unknown> = { n: 2n ** 70n, nan: Number.NaN, fn: () => 1 };
    cyclic['self'] = cyclic;
    await store.upsert([finish('odd', { artifacts: cyclic, durationMs: Number.NaN })]);
    expect(await rowsOf('odd')).toEqual([
      expect.objectContaining({
        artifacts: { n: '1180591620717411303424', nan: null, self: '[Circular]' },
        duration_ms: null,
      }),
    ]);
  });
});

describe('reading', () => {
  beforeEach(async () => {
    const runs: AuditRecord[] = [];
    for (let i = 0; i < 30; i++) {
      const startedAt = new Date(T0.getTime() + i * 60_000);
      runs.push(
        finish(`read-${i}`, {
          agent: i % 3 === 0 ? 'http.check' : 'noop',
          status: i % 5 === 0 ? 'failed' : 'succeeded',
          name: `run-${i % 10}`,
          userEmail: i % 2 === 0 ? 'ada@example.com' : 'bob@example.com',
          startedAt,
          finishedAt: new Date(startedAt.getTime() + 1000),
        }),
      );
    }
    runs.push(start('read-running', { startedAt: new Date(T0.getTime() + 3_600_000) }));
    await store.upsert(runs);
  });

  it('getRun returns every column, getRun of an unknown id undefined', async () => {
    const run = await store.getRun('read-1');
    expect(run).toMatchObject({
      runId: 'read-1',
      agent: 'noop',
      status: 'succeeded',
      plan: { dry_run: true, tools: ['es', 'bq'] },
      artifacts: { parity_ok: true, freshness_ok: true },
      durationMs: 1250.5,
      userEmail: 'bob@example.com',
    });
    expect(typeof run?.id).toBe('number');
    expect(run?.createdAt).toBeInstanceOf(Date);
    await expect(store.getRun('nope')).resolves.toBeUndefined();
  });

  it('getRecentRuns: newest first, scalar columns only, limited', async () => {
    const runs = await store.getRecentRuns({ limit: 3 });
    expect(runs.map((r) => r.runId)).toEqual(['read-running', 'read-29', 'read-28']);
    expect(runs[0]).not.toHaveProperty('plan');
    expect(runs[0]).not.toHaveProperty('artifacts');
    expect(runs[1]).toMatchObject({ status: 'succeeded', durationMs: 1250.5, dryRun: true });
  });

  it('getRecentRuns filters by agent, status, name, user and since', async () => {
    const ids = async (q: Parameters<AuditStore['getRecentRuns']>[0]) =>
      (await store.getRecentRuns(q)).map((r) => r.runId);
    expect(await ids({ agent: 'http.check', status: 'failed' })).toEqual(['read-15', 'read-0']);
    expect(await ids({ status: 'running' })).toEqual(['read-running']);
    expect(await ids({ namespace: 'agents', name: 'run-7' })).toEqual([
      'read-27',
      'read-17',
      'read-7',
    ]);
    expect(await ids({ userEmail: 'ada@example.com', limit: 2 })).toEqual(['read-28', 'read-26']);
    expect(await ids({ since: new Date(T0.getTime() + 28 * 60_000) })).toEqual([
      'read-running',
      'read-29',
      'read-28',
    ]);
    expect(await ids({ agent: 'nobody' })).toEqual([]);
  });
});

describe('retention', () => {
  const DAY = 86_400_000;
  const now = new Date('2026-06-01T00:00:00Z');
  const daysAgo = (days: number) => new Date(now.getTime() - days * DAY);

  beforeEach(async () => {
    await store.upsert([
      finish('old-1', { startedAt: daysAgo(200), finishedAt: daysAgo(200) }),
      finish('old-2', { startedAt: daysAgo(91), finishedAt: daysAgo(91) }),
      // Started long ago but finished recently: judged by its finish, kept.
      finish('long-run', { startedAt: daysAgo(95), finishedAt: daysAgo(10) }),
      finish('young', { startedAt: daysAgo(89), finishedAt: daysAgo(89) }),
      // Still running: judged by its start.
      start('running-young', { startedAt: daysAgo(5) }),
      start('running-stuck', { startedAt: daysAgo(120) }),
    ]);
    // A row with no times at all is judged by created_at.
    await pool.query(
      `INSERT INTO agent_audit_log (run_id, namespace, name, agent, objective, status, created_at)
       VALUES ('no-times', 'n', 'm', 'a', 'o', 'failed', $1), ('no-times-new', 'n', 'm', 'a', 'o', 'failed', $2)`,
      [daysAgo(100), daysAgo(1)],
    );
  });

  async function left(): Promise<string[]> {
    const { rows } = await pool.query<{ run_id: string }>(
      'SELECT run_id FROM agent_audit_log ORDER BY run_id',
    );
    return rows.map((r) => r.run_id);
  }

  it('deletes only rows older than the cutoff, in batches', async () => {
    await expect(store.deleteOlderThan(daysAgo(90), 2)).resolves.toBe(4);
    expect(await left()).toEqual(['long-run', 'no-times-new', 'running-young', 'young']);
    await expect(store.deleteOlderThan(daysAgo(90), 2)).resolves.toBe(0);
  });

  it('RetentionJob deletes on start and then on its schedule; 0 days keeps everything', async () => {
    const keepAll = new RetentionJob({ store, logger: silentLogger(), retentionDays: 0 });
    keepAll.start();
    await expect(keepAll.runOnce()).resolves.toBe(0);
    expect(keepAll.running).toBe(false);

    let clock = now;
    const job = new RetentionJob({
      store,
      logger: silentLogger(),
      retentionDays: 90,
      intervalMs: 50,
      batchSize: 1000,
      now: () => clock,
    });
    job.start();
    try {
      await expect.poll(left).toEqual(['long-run', 'no-times-new', 'running-young', 'young']);
      clock = new Date(now.getTime() + 2 * DAY); // "young" is now 91 days old
      await expect.poll(left).toEqual(['long-run', 'no-times-new', 'running-young']);
    } finally {
      await job.stop();
    }
    expect(job.running).toBe(false);
  });
});

describe('throughput', () => {
  it('batched upserts: rows per second on this server (printed)', async () => {
    const rows = 20_000;
    const starts = Array.from({ length: rows }, (_, i) => start(`perf-${i}`));
    const finishes = starts.map((r) => finish(r.runId));
    const t0 = performance.now();
    for (let i = 0; i < rows; i += 500) await store.upsert(starts.slice(i, i + 500));
    const t1 = performance.now();
    for (let i = 0; i < rows; i += 500) await store.upsert(finishes.slice(i, i + 500));
    const t2 = performance.now();
    const insertRate = Math.round(rows / ((t1 - t0) / 1000));
    const updateRate = Math.round(rows / ((t2 - t1) / 1000));
    console.log(
      `audit upsert, 500 rows/statement, 1 connection: insert ${insertRate} rows/s, finish-update ${updateRate} rows/s`,
    );
    expect(await count()).toBe(rows);
    // Generous: the point is batching, not a benchmark.
    expect(insertRate).toBeGreaterThan(1_000);
  });
});
