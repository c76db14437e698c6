import { CoordinationV1Api, EventsV1Api } from '@kubernetes/client-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentRun } from '../../../src/api/agentrun.ts';
import { migrate } from '../../../src/audit/migrate.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { AgentRuns } from '../../support/agentruns.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane, useFreshDatabase } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { startOperator } from '../../support/operator.ts';
import { PostgresServer } from '../../support/postgres/server.ts';
import { waitFor } from '../../support/wait.ts';

const plane = controlPlane();
const kc = adminKubeConfig(plane);
const db = useFreshDatabase('audit_operator');
/** A live database the operator is told about but must not touch while auditing is off. */
const untouched = useFreshDatabase('audit_off');
/** Never migrated: what the operator finds when migrations are someone else's job. */
const unmigrated = useFreshDatabase('audit_nomigrate');
const retained = useFreshDatabase('audit_retention');
let outageDb: PostgresServer;

beforeAll(async () => {
  await installCrd(plane);
  // A server of this file's own, so it can be stopped and started to simulate an outage.
  outageDb = await PostgresServer.start();
});

afterAll(async () => {
  await outageDb?.destroy();
});

const FINALIZER = 'agents.applylens.io/run-protection';
const audited = (run: AgentRun) =>
  run.status?.conditions?.find((c) => c.type === 'Audited')?.status === 'True';
const terminal = (run: AgentRun) =>
  ['Succeeded', 'Failed', 'Canceled'].includes(run.status?.phase ?? '');

async function rows(url: string, where = 'true', params: unknown[] = []) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (
      await client.query(
        `SELECT run_id, namespace, name, agent, objective, status, reason, attempts, started_at, finished_at,
                duration_ms, plan, artifacts, error, user_email, dry_run
           FROM agent_audit_log WHERE ${where} ORDER BY name`,
        params,
      )
    ).rows;
  } finally {
    await client.end();
  }
}

function operatorEnv(url: string): Record<string, string> {
  return {
    APPLYLENS_AGENT_AUDIT_ENABLED: 'true',
    DATABASE_URL: url,
    AUDIT_SYNC_WAIT_MS: '1000',
    MAX_CONCURRENT_RUNS: '20',
  };
}

describe('the audit log, through the operator', () => {
  it('records each run once, with the status values, and marks it Audited', async () => {
    const namespace = await createNamespace(kc, 'audit-row');
    await startOperator({ kubeConfig: kc, namespace, env: operatorEnv(db.url) });
    const runs = new AgentRuns(kc, namespace);
    const created = await runs.create('row', {
      agent: 'noop',
      objective: 'record me',
      requestedBy: 'alice@example.com',
      params: { delayMs: 50, note: 'x' },
    });
    const done = await runs.waitUntil('row', 'Audited', audited);
    expect(done.metadata.finalizers ?? []).not.toContain(FINALIZER);
    const [row, ...more] = await rows(db.url, 'run_id = $1', [created.metadata.uid]);
    expect(more).toHaveLength(0);
    expect(row).toMatchObject({
      run_id: created.metadata.uid,
      namespace,
      name: 'row',
      agent: 'noop',
      objective: 'record me',
      status: 'succeeded',
      reason: 'Succeeded',
      attempts: 1,
      plan: { delayMs: 50, note: 'x' },
      artifacts: { delayMs: 50, note: 'x' },
      error: null,
      user_email: 'alice@example.com',
      dry_run: true,
    });
    expect(row.started_at.toISOString()).toBe(done.status?.startedAt);
    expect(row.finished_at.toISOString()).toBe(done.status?.finishedAt);
    expect(row.duration_ms).toBe(done.status?.durationMs);
  });

  it('writes the start row when the run starts, and finishes that same row', async () => {
    const namespace = await createNamespace(kc, 'audit-start');
    await startOperator({ kubeConfig: kc, namespace, env: operatorEnv(db.url) });
    const runs = new AgentRuns(kc, namespace);
    const { metadata } = await runs.create('long', { agent: 'noop', params: { delayMs: 60_000 } });
    const started = await runs.waitForPhase('long', 'Running');
    const [row] = await waitFor('the start row', async () => {
      const found = await rows(db.url, 'run_id = $1', [metadata.uid]);
      return found.length > 0 ? found : undefined;
    });
    expect(row).toMatchObject({ status: 'running', attempts: 1, finished_at: null });
    expect(row.started_at.toISOString()).toBe(started.status?.startedAt);
    await runs.cancel('long');
    await runs.waitUntil('long', 'Audited', audited);
    const after = await rows(db.url, 'run_id = $1', [metadata.uid]);
    expect(after).toHaveLength(1);
    expect(after[0]).toMatchObject({ status: 'canceled', reason: 'Canceled' });
  });

  it('with AUDIT_MIGRATE=false leaves the schema alone: rows wait, runs do not', async () => {
    const namespace = await createNamespace(kc, 'audit-nomigrate');
    await startOperator({
      kubeConfig: kc,
      namespace,
      env: { ...operatorEnv(unmigrated.url), AUDIT_MIGRATE: 'false' },
    });
    const runs = new AgentRuns(kc, namespace);
    await runs.create('early', { agent: 'noop' });
    const done = await runs.waitForPhase('early', 'Succeeded');
    expect(done.status?.conditions?.find((c) => c.type === 'Audited')?.reason).toBe('Pending');
    const client = new pg.Client({ connectionString: unmigrated.url });
    await client.connect();
    try {
      const { rows: found } = await client.query<{ table: string | null }>(
        `SELECT to_regclass('agent_audit_log')::text AS table`,
      );
      expect(found[0]?.table).toBeNull();
    } finally {
      await client.end();
    }
  });

  it('prunes rows past AUDIT_RETENTION_DAYS on the leader only', async () => {
    const namespace = await createNamespace(kc, 'audit-retention');
    await migrate(retained.url, 'up', silentLogger());
    const client = new pg.Client({ connectionString: retained.url });
    await client.connect();
    try {
      await client.query(
        `INSERT INTO agent_audit_log (run_id, namespace, name, agent, objective, status,
                                      started_at, finished_at)
         VALUES ('old', 'n', 'old', 'noop', 'o', 'succeeded', now() - interval '40 days',
                 now() - interval '40 days'),
                ('recent', 'n', 'recent', 'noop', 'o', 'succeeded', now() - interval '2 days',
                 now() - interval '2 days')`,
      );
      const remaining = async () =>
        (
          await client.query<{ run_id: string }>('SELECT run_id FROM agent_audit_log ORDER BY 1')
        ).rows.map((r) => r.run_id);
      // Someone else leads: this replica waits for the Lease and must leave the table alone.
      const leases = kc.makeApiClient(CoordinationV1Api);
      const leaseName = 'agentrun-retention-test';
      await leases.createNamespacedLease({
        namespace,
        body: {
          metadata: { name: leaseName },
          // Like client-go, the elector times the holder from when it first sees the record.
          spec: { holderIdentity: 'another-replica', leaseDurationSeconds: 3600 },
        },
      });
      const operator = await startOperator({
        kubeConfig: kc,
        namespace,
        env: {
          ...operatorEnv(retained.url),
          AUDIT_RETENTION_DAYS: '30',
          LEADER_ELECT: 'true',
          LEADER_ELECTION_NAMESPACE: namespace,
          LEADER_ELECTION_ID: leaseName,
          LEASE_DURATION_SECONDS: '3',
          RENEW_DEADLINE_SECONDS: '2',
          RETRY_PERIOD_SECONDS: '1',
        },
      });
      await new Promise((r) => setTimeout(r, 2_000));
      expect(operator.isLeader).toBe(false);
      expect(await remaining()).toEqual(['old', 'recent']);
      // The other replica is gone: this one takes the Lease and prunes at once.
      await leases.deleteNamespacedLease({ name: leaseName, namespace });
      await waitFor('the leader to prune', async () =>
        (await remaining()).length === 1 ? true : undefined,
      );
      expect(operator.isLeader).toBe(true);
      expect(await remaining()).toEqual(['recent']);
    } finally {
      await client.end();
    }
  });

  it('keeps 200 runs going through a PostgreSQL outage and records every one exactly once afterwards', async () => {
    const namespace = await createNamespace(kc, 'audit-outage');
    const url = outageDb.url();
    // A sync wait far longer than any run: an outcome held for its row would show by its lag.
    const syncWaitMs = 30_000;
    await startOperator({
      kubeConfig: kc,
      namespace,
      env: { ...operatorEnv(url), AUDIT_SYNC_WAIT_MS: String(syncWaitMs) },
    });
    const runs = new AgentRuns(kc, namespace);
    const names = Array.from({ length: 200 }, (_, i) => `run-${String(i).padStart(3, '0')}`);
    const create = (list: string[]) =>
      Promise.all(
        list.map((name) => runs.create(name, { agent: 'noop', params: { delayMs: 20 } })),
      );

    await create(names.slice(0, 60));
    await waitFor('the first runs to be audited', async () => {
      const all = await runs.list();
      return all.filter(audited).length >= 30 ? true : undefined;
    });
    const recording = await runs.record();
    await outageDb.pause();
    try {
      await create(names.slice(60));
      // Every run finishes while the database is down: audit trouble never blocks a run.
      await waitFor(
        'all 200 runs to finish during the outage',
        async () => ((await runs.list()).filter(terminal).length === 200 ? true : undefined),
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      const during = await runs.list();
      expect(during.every((r) => r.status?.phase === 'Succeeded')).toBe(true);
      expect(during.filter((r) => !audited(r)).length).toBeGreaterThan(0);
      // Runs whose row is pending are kept by the finalizer (added before they finish).
      await waitFor('every run without its row to hold the finalizer', async () => {
        const waiting = (await runs.list()).filter((r) => !audited(r));
        return waiting.length > 0 &&
          waiting.every((r) => (r.metadata.finalizers ?? []).includes(FINALIZER))
          ? true
          : undefined;
      });
    } finally {
      await outageDb.resume();
    }
    // No moment in which a finished run without its row could have been deleted for good.
    recording.stop();
    const unprotected = recording.versions.filter(
      ({ run: r }) =>
        terminal(r) && !audited(r) && !(r.metadata.finalizers ?? []).includes(FINALIZER),
    );
    expect(unprotected.map(({ run }) => run.metadata.name)).toEqual([]);
    // Nor was any outcome delayed: each run's finished status was seen soon after its
    // finishedAt, never after a wait for its row (the first failed statement ends such waits).
    const firstSeenFinished = new Map<string, number>();
    for (const { run, at } of recording.versions) {
      const name = run.metadata.name ?? '';
      if (terminal(run) && !firstSeenFinished.has(name)) {
        firstSeenFinished.set(name, at - Date.parse(run.status?.finishedAt ?? ''));
      }
    }
    expect(firstSeenFinished.size).toBeGreaterThanOrEqual(140);
    const slowest = Math.max(...firstSeenFinished.values());
    expect(slowest, 'ms from a run finishing to its status showing it').toBeLessThan(
      syncWaitMs / 3,
    );
    await waitFor(
      'all 200 runs Audited, finalizers released',
      async () => {
        const all = await runs.list();
        const settled = all.filter(
          (r) => audited(r) && !(r.metadata.finalizers ?? []).includes(FINALIZER),
        );
        return settled.length === 200 ? true : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    const recorded = await rows(url, 'namespace = $1', [namespace]);
    expect(recorded).toHaveLength(200);
    expect(new Set(recorded.map((r) => r.name))).toEqual(new Set(names));
    expect(recorded.every((r) => r.status === 'succeeded' && r.attempts === 1)).toBe(true);
  });

  it('re-audits finished runs whose row was never written, when the operator starts again', async () => {
    const namespace = await createNamespace(kc, 'audit-restart');
    const url = outageDb.url();
    await outageDb.pause();
    let operator: Awaited<ReturnType<typeof startOperator>> | undefined;
    try {
      operator = await startOperator({
        kubeConfig: kc,
        namespace,
        env: { ...operatorEnv(url), AUDIT_MIGRATE: 'false' },
      });
      const runs = new AgentRuns(kc, namespace);
      await runs.create('orphaned', { agent: 'noop' });
      await runs.waitForPhase('orphaned', 'Succeeded');
      await operator.stop();
    } finally {
      await outageDb.resume();
    }
    await startOperator({ kubeConfig: kc, namespace, env: operatorEnv(url) });
    const runs = new AgentRuns(kc, namespace);
    const done = await runs.waitUntil('orphaned', 'Audited', audited);
    expect(await rows(url, 'run_id = $1', [done.metadata.uid])).toHaveLength(1);
  });

  it('gives a row up after the deadline (Warning, finalizer released), and a restarted operator records it after all', async () => {
    const namespace = await createNamespace(kc, 'audit-abandon');
    const url = outageDb.url();
    const runs = new AgentRuns(kc, namespace);
    const deadline = { AUDIT_FINALIZER_DEADLINE_SECONDS: '2' };
    await outageDb.pause();
    let uid = '';
    try {
      const operator = await startOperator({
        kubeConfig: kc,
        namespace,
        env: { ...operatorEnv(url), ...deadline },
      });
      uid = (await runs.create('lost', { agent: 'noop' })).metadata.uid;
      const given = await runs.waitUntil(
        'lost',
        'Audited False/Abandoned, finalizer released',
        (r) =>
          r.status?.conditions?.find((c) => c.type === 'Audited')?.reason === 'Abandoned' &&
          !(r.metadata.finalizers ?? []).includes(FINALIZER),
      );
      expect(given.status?.phase).toBe('Succeeded');
      const warning = await waitFor('the AuditLost Warning', async () => {
        const list = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({
          namespace,
          fieldSelector: 'regarding.name=lost',
        });
        return list.items.find((e) => e.reason === 'AuditLost');
      });
      expect(warning.type).toBe('Warning');
      expect(warning.note).toBe('the audit row was not written within 2 s; letting the run go');
      await operator.stop();
    } finally {
      await outageDb.resume();
    }
    // "At start-up the operator re-audits finished runs whose Audited is not True."
    await startOperator({ kubeConfig: kc, namespace, env: { ...operatorEnv(url), ...deadline } });
    const done = await runs.waitUntil('lost', 'Audited', audited);
    const [row, ...more] = await rows(url, 'run_id = $1', [uid]);
    expect(more).toHaveLength(0);
    expect(row).toMatchObject({ name: 'lost', status: 'succeeded', reason: 'Succeeded' });
    expect(row.finished_at.toISOString()).toBe(done.status?.finishedAt);
  });

  it('a deleted run whose row is pending stays until the row is written', async () => {
    const namespace = await createNamespace(kc, 'audit-delete');
    const url = outageDb.url();
    await startOperator({ kubeConfig: kc, namespace, env: operatorEnv(url) });
    const runs = new AgentRuns(kc, namespace);
    await outageDb.pause();
    let uid = '';
    try {
      const run = await runs.create('doomed', { agent: 'noop' });
      uid = run.metadata.uid;
      await runs.waitUntil(
        'doomed',
        'finalizer held for its audit row',
        (r) => terminal(r) && (r.metadata.finalizers ?? []).includes(FINALIZER),
      );
      await runs.delete('doomed');
      // Well past the sync wait and several reconciles: still there, held for its row.
      await new Promise((r) => setTimeout(r, 3_000));
      const terminating = await runs.get('doomed');
      expect(terminating?.metadata.deletionTimestamp).toBeDefined();
      expect(terminating?.metadata.finalizers).toContain(FINALIZER);
    } finally {
      await outageDb.resume();
    }
    await runs.waitForDeletion('doomed', 60_000);
    const [row, ...more] = await rows(url, 'run_id = $1', [uid]);
    expect(more).toHaveLength(0);
    expect(row).toMatchObject({ name: 'doomed', status: 'succeeded', reason: 'Succeeded' });
  });

  it('with APPLYLENS_AGENT_AUDIT_ENABLED=false: no Audited condition, no finalizer, no database', async () => {
    const namespace = await createNamespace(kc, 'audit-off');
    await startOperator({
      kubeConfig: kc,
      namespace,
      env: { APPLYLENS_AGENT_AUDIT_ENABLED: 'false', DATABASE_URL: untouched.url },
    });
    const runs = new AgentRuns(kc, namespace);
    await runs.create('plain', { agent: 'noop' });
    const done = await runs.waitForPhase('plain', 'Succeeded');
    expect(done.status?.conditions?.map((c) => c.type)).not.toContain('Audited');
    expect(done.metadata.finalizers ?? []).toEqual([]);
    // Not even a connection: no pool, no migration.
    const client = new pg.Client({ connectionString: untouched.url });
    await client.connect();
    try {
      const { rows: found } = await client.query<{ connections: number; table: string | null }>(
        `SELECT (SELECT count(*)::int FROM pg_stat_activity
                  WHERE datname = current_database() AND application_name = 'agentrun-operator')
                  AS connections,
                to_regclass('agent_audit_log')::text AS table`,
      );
      expect(found[0]).toEqual({ connections: 0, table: null });
    } finally {
      await client.end();
    }
  });

  it('starts while PostgreSQL is down, then migrates and records the runs once it is up', async () => {
    const fresh = await PostgresServer.start();
    try {
      await fresh.pause();
      const namespace = await createNamespace(kc, 'audit-cold');
      await startOperator({ kubeConfig: kc, namespace, env: operatorEnv(fresh.url()) });
      const runs = new AgentRuns(kc, namespace);
      await runs.create('early', { agent: 'noop' });
      await runs.waitForPhase('early', 'Succeeded');
      await fresh.resume();
      const done = await runs.waitUntil('early', 'Audited', audited, 60_000);
      expect(await rows(fresh.url(), 'run_id = $1', [done.metadata.uid])).toHaveLength(1);
    } finally {
      await fresh.destroy();
    }
  });
});
