import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../../src/audit/audit-record.ts';
import type { AuditMetrics } from '../../../src/audit/audit-writer.ts';
import { AgentAuditor } from '../../../src/audit/auditor.ts';
import { migrate } from '../../../src/audit/migrate.ts';
import { createLogger } from '../../../src/util/log.ts';
import { PostgresServer } from '../../support/postgres/server.ts';
import { waitFor } from '../../support/wait.ts';

/**
 * The write path through a real PostgreSQL outage: a server of this file's own, stopped
 * (fast shutdown: connections cut) and started again in the middle of 200 runs; and through a
 * statement that hangs in the server (a table lock), where nothing fails but nothing commits.
 */
let server: PostgresServer;
let url: string;
let admin: pg.Pool;
const PASSWORD = 'hunter2-never-logged';

beforeAll(async () => {
  server = await PostgresServer.start();
  // Trust authentication ignores the password; it is here to prove it never reaches a log.
  url = server.url().replace('postgres@', `postgres:${PASSWORD}@`);
  await migrate(url, 'up', createLogger('silent'));
  admin = new pg.Pool({ connectionString: server.url(), max: 1 });
  admin.on('error', () => {}); // its idle connection is cut by each pause()
});

afterAll(async () => {
  await admin?.end().catch(() => {});
  await server?.destroy();
});

class Metrics implements AuditMetrics {
  success = 0;
  error = 0;
  maxPending = 0;
  written(result: 'success' | 'error', rows: number): void {
    this[result] += rows;
  }
  latency(): void {}
  pending(n: number): void {
    this.maxPending = Math.max(this.maxPending, n);
  }
  lost(): void {}
}

function logCapture() {
  const lines: string[] = [];
  const logger = createLogger('debug', { write: (line: string) => void lines.push(line) });
  return { lines, logger };
}

const T0 = Date.parse('2026-03-01T10:00:00.000Z');

function startOf(i: number, prefix: string): AuditRecord {
  return {
    runId: `${prefix}-${i}`,
    namespace: 'agents',
    name: `run-${i}`,
    agent: i % 2 === 0 ? 'noop' : 'http.check',
    objective: `objective ${i}`,
    status: 'running',
    reason: 'Running',
    attempts: 1,
    startedAt: new Date(T0 + i * 1000),
    finishedAt: null,
    durationMs: null,
    plan: { step: i },
    artifacts: null,
    error: null,
    userEmail: `user${i % 7}@example.com`,
    dryRun: i % 3 !== 0,
  };
}

function finishOf(i: number, prefix: string): AuditRecord {
  const failed = i % 10 === 0;
  return {
    ...startOf(i, prefix),
    status: failed ? 'failed' : 'succeeded',
    reason: failed ? 'Failed' : 'Succeeded',
    finishedAt: new Date(T0 + i * 1000 + 250 + i),
    durationMs: 250 + i,
    artifacts: failed ? null : { echoed: i },
    error: failed ? `boom ${i}` : null,
  };
}

async function countRows(prefix: string): Promise<number> {
  const { rows } = await admin.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM agent_audit_log WHERE run_id LIKE $1',
    [`${prefix}-%`],
  );
  return rows[0]?.n ?? -1;
}

describe('AuditWriter on a real server', () => {
  it('a PostgreSQL outage in the middle of 200 runs: every row lands exactly once, no write waits', async () => {
    const { lines, logger } = logCapture();
    const metrics = new Metrics();
    const auditor = AgentAuditor.connect(url, { logger, metrics });
    const committed: Promise<boolean>[] = [];
    const notQueued: string[] = [];
    const write = (record: AuditRecord): void => {
      committed.push(auditor.write(record));
      // Queued by the time write() returns, database up or down (the writer's loop only starts
      // on a later turn, so nothing can have been written yet).
      if (!auditor.isPending(record.runId)) notQueued.push(`${record.runId} ${record.status}`);
    };

    let pendingDuringOutage = 0;
    try {
      for (let i = 0; i < 200; i++) {
        write(startOf(i, 'outage'));
        if (i > 0) write(finishOf(i - 1, 'outage'));
        if (i === 80) await server.pause();
        if (i === 150) {
          pendingDuringOutage = auditor.pending();
          await server.resume();
        }
        // About a second of outage (runs 80 to 150), a few milliseconds per run otherwise.
        await sleep(server.running ? 4 : 15);
      }
      write(finishOf(199, 'outage'));

      // Every write resolves true, once the server is back and the backoff has run out.
      const results = await Promise.all(committed);
      expect(results.filter((ok) => !ok)).toEqual([]);
      expect(auditor.pending()).toBe(0);
    } finally {
      await auditor.close();
    }

    console.log(
      `outage: ${pendingDuringOutage} rows queued before resume, peak ${metrics.maxPending}, ` +
        `${metrics.error} row-attempts failed, ${metrics.success} rows committed`,
    );
    // The outage really happened while runs were writing, and rows waited in the queue.
    expect(pendingDuringOutage).toBeGreaterThan(50);
    expect(metrics.error).toBeGreaterThan(0);
    // Every record was queued when its write() returned, also those written while the
    // database was down (see also the hung-statement test below).
    expect(notQueued).toEqual([]);

    // Exactly one row per run, each with its terminal values.
    const { rows } = await admin.query(
      `SELECT run_id, status, reason, attempts, started_at, finished_at, duration_ms, plan,
              artifacts, error, user_email, dry_run, agent, objective, name
         FROM agent_audit_log WHERE run_id LIKE 'outage-%'`,
    );
    expect(rows).toHaveLength(200);
    const byId = new Map(rows.map((row) => [row.run_id as string, row]));
    for (let i = 0; i < 200; i++) {
      const expected = finishOf(i, 'outage');
      expect(byId.get(expected.runId)).toStrictEqual({
        run_id: expected.runId,
        status: expected.status,
        reason: expected.reason,
        attempts: 1,
        started_at: expected.startedAt,
        finished_at: expected.finishedAt,
        duration_ms: expected.durationMs,
        plan: expected.plan,
        artifacts: expected.artifacts,
        error: expected.error,
        user_email: expected.userEmail,
        dry_run: expected.dryRun,
        agent: expected.agent,
        objective: expected.objective,
        name: expected.name,
      });
    }

    // The logs told the story, with the database named by host/db only.
    const log = lines.join('');
    expect(log).toContain('audit write failed; rows stay queued and are retried');
    expect(log).toContain('audit writes recovered');
    expect(log).toContain(`127.0.0.1:${server.port}/postgres`);
    expect(log).not.toContain(PASSWORD);
  });

  it('a statement hung in the database: write() returns with its record queued, settles only after the commit', async () => {
    const { logger } = logCapture();
    const auditor = AgentAuditor.connect(url, { logger });
    // Holds an ACCESS EXCLUSIVE lock on the table: the writer's INSERT waits for it inside the
    // server, with its connection open and nothing failing, as long as the lock is held.
    const locker = new pg.Client({ connectionString: server.url() });
    await locker.connect();
    let locked = false;
    try {
      // The pool has a connection and the statement is known: nothing left to set up later.
      await expect(auditor.write(startOf(0, 'hung'))).resolves.toBe(true);
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE agent_audit_log IN ACCESS EXCLUSIVE MODE');
      locked = true;
      const settled = new Set<string>();
      const track = (record: AuditRecord): Promise<boolean> => {
        const committed = auditor.write(record);
        void committed.then(() => settled.add(`${record.runId} ${record.status}`));
        return committed;
      };
      const first = track(finishOf(0, 'hung'));
      const waitingOnLock = async (): Promise<true | undefined> => {
        const { rows } = await admin.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE application_name = 'agentrun-operator' AND wait_event_type = 'Lock'`,
        );
        return rows[0]?.n === 1 ? true : undefined;
      };
      await waitFor('the audit statement to wait on the lock', waitingOnLock, {
        timeoutMs: 15_000,
        intervalMs: 20,
      });

      // While the statement hangs, every write() returns with its record queued: none waited
      // for the database (one that did would return before queueing, or never return).
      const writes: Promise<boolean>[] = [];
      for (let i = 1; i <= 50; i++) {
        const record = startOf(i, 'hung');
        expect(auditor.isPending(record.runId)).toBe(false);
        writes.push(track(record));
        expect(auditor.isPending(record.runId)).toBe(true);
      }
      expect(auditor.pending()).toBe(51);
      // Nothing claims a commit that cannot have happened: the statement still waits.
      await sleep(200);
      await expect(waitingOnLock()).resolves.toBe(true);
      expect([...settled]).toEqual([]);
      expect(auditor.pending()).toBe(51);

      await locker.query('ROLLBACK');
      locked = false;
      expect(await Promise.all([first, ...writes])).toEqual(Array(51).fill(true));
      expect(auditor.pending()).toBe(0);
      expect(await countRows('hung')).toBe(51);
      const { rows } = await admin.query(
        "SELECT status FROM agent_audit_log WHERE run_id = 'hung-0'",
      );
      // The finish written while the statement hung (run 0 of finishOf fails on purpose).
      expect(rows).toEqual([{ status: 'failed' }]);
    } finally {
      if (locked) await locker.query('ROLLBACK').catch(() => {});
      await locker.end().catch(() => {});
      await auditor.close();
    }
  });

  it('the queue bound: new runs are refused while full, queued ones land after the outage', async () => {
    const { logger, lines } = logCapture();
    const auditor = AgentAuditor.connect(url, { logger, maxPendingRows: 10 });
    try {
      await server.pause();
      const accepted = Array.from({ length: 10 }, (_, i) => auditor.write(startOf(i, 'bound')));
      await expect(auditor.write(startOf(10, 'bound'))).resolves.toBe(false);
      // A newer record of a queued run replaces it in place: still accepted.
      const finish = auditor.write(finishOf(3, 'bound'));
      expect(auditor.pending()).toBe(10);
      expect(auditor.isPending('bound-3')).toBe(true);
      expect(auditor.isPending('bound-10')).toBe(false);
      await sleep(300); // a few failed attempts
      await server.resume();
      expect(await Promise.all([...accepted, finish])).toEqual(Array(11).fill(true));
      expect(await countRows('bound')).toBe(10);
      const { rows } = await admin.query(
        "SELECT status FROM agent_audit_log WHERE run_id = 'bound-3'",
      );
      expect(rows).toEqual([{ status: 'succeeded' }]);
      expect(lines.join('')).toContain('audit queue full');
    } finally {
      await auditor.close();
    }
  });

  it('stopping while the database is down gives up after the timeout, never rejects', async () => {
    const { logger, lines } = logCapture();
    const auditor = AgentAuditor.connect(url, { logger });
    await server.pause();
    try {
      const writes = [auditor.write(startOf(1, 'stop')), auditor.write(startOf(2, 'stop'))];
      const t = performance.now();
      await auditor.close(300);
      expect(performance.now() - t).toBeLessThan(10_000);
      expect(await Promise.all(writes)).toEqual([false, false]);
      await expect(auditor.write(startOf(3, 'stop'))).resolves.toBe(false);
      expect(lines.join('')).toContain('audit writer stopped with rows unwritten');
    } finally {
      await server.resume();
    }
    expect(await countRows('stop')).toBe(0);
  });

  it('migrations pending (no table yet): rows wait and land once the table exists', async () => {
    const { logger } = logCapture();
    await admin.query('CREATE DATABASE late_schema');
    const lateUrl = url.replace(/\/postgres$/, '/late_schema');
    const auditor = AgentAuditor.connect(lateUrl, { logger });
    try {
      const committed = auditor.write(finishOf(10, 'late'));
      await sleep(300);
      expect(auditor.isPending('late-10')).toBe(true);
      await migrate(lateUrl, 'up', logger);
      await expect(committed).resolves.toBe(true);
      await expect(auditor.getRun('late-10')).resolves.toMatchObject({
        status: 'failed',
        error: 'boom 10',
      });
    } finally {
      await auditor.close();
    }
  });
});
