import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Auditor,
  createAuditor,
  getAuditor,
  NoopAuditor,
  setAuditor,
} from '../../../src/audit/auditor.ts';
import { migrate } from '../../../src/audit/migrate.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { useFreshDatabase } from '../../support/environment.ts';

/** The compatible AgentAuditor API end to end, and the toggle that turns it off. */
const db = useFreshDatabase('audit_auditor');
const logger = silentLogger();
let admin: pg.Pool;

beforeAll(async () => {
  admin = new pg.Pool({ connectionString: db.url, max: 1 });
  admin.on('error', () => {}); // idle connections cut when the database is dropped
  await migrate(admin, 'up', logger);
});
afterAll(async () => {
  await admin.end();
});

/** Connections the operator's pool (application_name agentrun-operator) has to this database. */
async function operatorConnections(): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM pg_stat_activity
      WHERE datname = current_database() AND application_name = 'agentrun-operator'`,
  );
  return rows[0]?.n ?? -1;
}

describe('the auditor', () => {
  it('APPLYLENS_AGENT_AUDIT_ENABLED=false: no connection, no rows, nothing pending', async () => {
    const auditor = createAuditor(
      { APPLYLENS_AGENT_AUDIT_ENABLED: false, DATABASE_URL: db.url },
      { logger },
    );
    expect(auditor).toBeInstanceOf(NoopAuditor);
    const start = { runId: 'off-1', namespace: 'n', name: 'm', agent: 'noop', objective: 'o' };
    await expect(auditor.logStart(start)).resolves.toBe(false);
    await expect(auditor.logFinish({ ...start, status: 'succeeded' })).resolves.toBe(false);
    await expect(auditor.getRun('off-1')).resolves.toBeUndefined();
    await expect(auditor.getRecentRuns()).resolves.toEqual([]);
    await auditor.close();
    expect(await operatorConnections()).toBe(0);
    const { rows } = await admin.query('SELECT count(*)::int AS n FROM agent_audit_log');
    expect(rows).toEqual([{ n: 0 }]);
  });

  describe('enabled', () => {
    let auditor: Auditor;
    let previous: Auditor;
    beforeAll(() => {
      auditor = createAuditor(
        { APPLYLENS_AGENT_AUDIT_ENABLED: true, DATABASE_URL: db.url },
        { logger },
      );
      previous = setAuditor(auditor);
    });
    afterAll(async () => {
      setAuditor(previous);
      await auditor.close();
    });

    it('the original example: log_start, log_finish, get_run, get_recent_runs', async () => {
      const a = getAuditor();
      expect(a).toBe(auditor);
      const started = a.logStart({
        runId: 'test-123',
        namespace: 'agents',
        name: 'parity',
        agent: 'warehouse.health',
        objective: 'check parity',
        plan: { dry_run: true, tools: ['es', 'bq'] },
        userEmail: 'user@example.com',
        startedAt: new Date('2026-03-01T10:00:00.000Z'),
      });
      const finished = a.logFinish({
        runId: 'test-123',
        namespace: 'agents',
        name: 'parity',
        agent: 'warehouse.health',
        objective: 'check parity',
        status: 'succeeded',
        artifacts: { parity_ok: true, freshness_ok: true },
        durationMs: 1250.5,
        finishedAt: new Date('2026-03-01T10:00:01.250Z'),
      });
      const failed = a.logFinish({
        runId: 'test-456',
        namespace: 'agents',
        name: 'parity-2',
        agent: 'warehouse.health',
        objective: 'check parity again',
        status: 'failed',
        error: 'ValueError: ES connection timeout',
        durationMs: 5001.2,
        startedAt: new Date('2026-03-01T11:00:00.000Z'),
        finishedAt: new Date('2026-03-01T11:00:05.001Z'),
      });
      expect(a.isPending('test-123')).toBe(true);
      expect(await Promise.all([started, finished, failed])).toEqual([true, true, true]);

      const run = await a.getRun('test-123');
      expect(run).toMatchObject({
        status: 'succeeded',
        durationMs: 1250.5,
        artifacts: { parity_ok: true, freshness_ok: true },
        plan: { dry_run: true, tools: ['es', 'bq'] },
        userEmail: 'user@example.com',
        startedAt: new Date('2026-03-01T10:00:00.000Z'),
        dryRun: true,
      });

      const recent = await a.getRecentRuns({ agent: 'warehouse.health', limit: 10 });
      expect(recent.map((r) => `${r.runId}: ${r.objective} -> ${r.status}`)).toEqual([
        'test-456: check parity again -> failed',
        'test-123: check parity -> succeeded',
      ]);
      await expect(a.getRecentRuns({ status: 'failed' })).resolves.toMatchObject([
        { runId: 'test-456', error: 'ValueError: ES connection timeout', durationMs: 5001.2 },
      ]);
      expect(await operatorConnections()).toBeGreaterThan(0);
      expect(await operatorConnections()).toBeLessThanOrEqual(4);
    });

    it('reads reject on database errors (the CLI reports them); writes never do', async () => {
      await admin.query('ALTER TABLE agent_audit_log RENAME TO agent_audit_log_away');
      try {
        await expect(auditor.getRun('test-123')).rejects.toThrow(/agent_audit_log/);
        const write = auditor.logStart({
          runId: 'while-away',
          namespace: 'n',
          name: 'm',
          agent: 'noop',
          objective: 'o',
        });
        expect(await auditor.flush(300)).toBe(false);
        await admin.query('ALTER TABLE agent_audit_log_away RENAME TO agent_audit_log');
        await expect(write).resolves.toBe(true);
      } finally {
        await admin.query('ALTER TABLE IF EXISTS agent_audit_log_away RENAME TO agent_audit_log');
      }
    });
  });
});
