import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AgentRun } from '../../../src/api/agentrun.ts';
import { migrate } from '../../../src/audit/migrate.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { AgentRuns } from '../../support/agentruns.ts';
import { countingHandler } from '../../support/counting-handler.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane, useFreshDatabase } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { startOperator } from '../../support/operator.ts';

/**
 * An operator killed after its terminal audit row committed and before the status write that
 * ends the run (the row goes first, so that Audited=True lands in that write) leaves a terminal
 * row and a Running status. The next operator decides the run again (a retry, or Interrupted),
 * and the row must follow that final status: Kubernetes is the source of truth.
 */
const plane = controlPlane();
const kc = adminKubeConfig(plane);
const db = useFreshDatabase('audit_restart');

beforeAll(async () => {
  await installCrd(plane);
  await migrate(db.url, 'up', silentLogger());
});

const audited = (run: AgentRun) =>
  run.status?.conditions?.find((c) => c.type === 'Audited')?.status === 'True';

/** The Running status and the terminal row a process killed between the two writes leaves. */
async function killedAfterTheRow(runs: AgentRuns, run: AgentRun): Promise<void> {
  const startedAt = new Date(Date.now() - 2_000);
  const finishedAt = new Date(Date.now() - 1_000);
  const at = `${startedAt.toISOString().slice(0, 19)}Z`;
  const condition = (type: string, status: string) => ({
    type,
    status,
    reason: 'Running',
    message: 'attempt 1 running',
    lastTransitionTime: at,
  });
  await runs.writeStatus(run.metadata.name, {
    runId: run.metadata.uid,
    phase: 'Running',
    attempts: 1,
    startedAt: startedAt.toISOString(),
    conditions: [
      condition('Succeeded', 'Unknown'),
      condition('Ready', 'False'),
      condition('Reconciling', 'True'),
      condition('Stalled', 'False'),
    ],
  });
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    await client.query(
      `INSERT INTO agent_audit_log (run_id, namespace, name, agent, objective, status, reason,
         attempts, started_at, finished_at, duration_ms, dry_run)
       VALUES ($1, $2, $3, $4, $5, 'succeeded', 'Succeeded', 1, $6, $7, 1000, true)`,
      [
        run.metadata.uid,
        run.metadata.namespace,
        run.metadata.name,
        run.spec.agent,
        run.spec.objective,
        startedAt,
        finishedAt,
      ],
    );
  } finally {
    await client.end();
  }
}

async function row(runId: string) {
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  try {
    const { rows } = await client.query(
      'SELECT status, reason, attempts, started_at, finished_at, duration_ms, error FROM agent_audit_log WHERE run_id = $1',
      [runId],
    );
    return rows;
  } finally {
    await client.end();
  }
}

function operatorEnv(): Record<string, string> {
  return { APPLYLENS_AGENT_AUDIT_ENABLED: 'true', DATABASE_URL: db.url, AUDIT_MIGRATE: 'false' };
}

describe('an operator killed between the terminal audit row and the status write', () => {
  it('the next operator ends the run Interrupted, and the row says so too', async () => {
    const namespace = await createNamespace(kc, 'audit-killed');
    const runs = new AgentRuns(kc, namespace);
    const run = await runs.create('orphan', { agent: 'count' });
    await killedAfterTheRow(runs, run);
    const counting = countingHandler();
    await startOperator({
      kubeConfig: kc,
      namespace,
      handlers: [counting.handler],
      env: operatorEnv(),
    });
    const done = await runs.waitUntil('orphan', 'Audited', (r) => audited(r));
    expect(done.status?.phase).toBe('Failed');
    const rows = await row(run.metadata.uid);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      status: 'failed',
      reason: 'Interrupted',
      attempts: 1,
      finished_at: new Date(done.status?.finishedAt ?? ''),
      duration_ms: done.status?.durationMs,
      error: done.status?.error ?? null,
    });
    expect(counting.total()).toBe(0);
  });

  it('with retries left, the retry runs, and the row records its outcome and attempts', async () => {
    const namespace = await createNamespace(kc, 'audit-killed-retry');
    const runs = new AgentRuns(kc, namespace);
    const run = await runs.create('orphan', { agent: 'count', backoffLimit: 1 });
    await killedAfterTheRow(runs, run);
    const counting = countingHandler();
    await startOperator({
      kubeConfig: kc,
      namespace,
      handlers: [counting.handler],
      env: operatorEnv(),
    });
    const done = await runs.waitUntil('orphan', 'Audited', (r) => audited(r));
    expect(done.status?.phase).toBe('Succeeded');
    expect(done.status?.attempts).toBe(2);
    const rows = await row(run.metadata.uid);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      status: 'succeeded',
      reason: 'Succeeded',
      attempts: 2,
      finished_at: new Date(done.status?.finishedAt ?? ''),
      duration_ms: done.status?.durationMs,
    });
    expect(counting.executions.get(run.metadata.uid)).toBe(1);
  });
});
