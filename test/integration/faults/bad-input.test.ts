// The bad-input corpora (test/corpus/agentrun, test/corpus/webhook) against a real API server, a
// running operator and PostgreSQL (issue 15, scenario 9). Every AgentRun case is created at once,
// with strict field validation as kubectl apply does; every webhook case is one webhook agent of
// the operator, answered by a local HTTP server. Each case must be refused with the expected
// readable message, or end in the expected phase and reason with an audit row equal to its final
// status; the operator must still be running and reconciling afterwards.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentRun, GROUP, PLURAL, parseAgentRun, VERSION } from '../../../src/api/agentrun.ts';
import { ConditionType, findCondition } from '../../../src/api/conditions.ts';
import { webhookHandler } from '../../../src/handlers/webhook.ts';
import { KubeHttpError } from '../../../src/kube/kube-errors.ts';
import { cleanText } from '../../../src/util/text.ts';
import {
  type AgentRunCase,
  type ExpectedOutcome,
  loadAgentRunCorpus,
  loadWebhookCorpus,
  respond,
  serialize,
} from '../../support/bad-input.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane, useFreshDatabase } from '../../support/environment.ts';
import { adminClient, adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { capturingLogger } from '../../support/logs.ts';
import { startOperator } from '../../support/operator.ts';
import { waitFor } from '../../support/wait.ts';

const plane = controlPlane();
const kc = adminKubeConfig(plane);
const client = adminClient(plane);
const db = useFreshDatabase('bad_input');
const RUN_CASES = loadAgentRunCorpus();
const HOOK_CASES = loadWebhookCorpus();
let server: Server;
let origin: string;

beforeAll(async () => {
  await installCrd(plane);
  server = createServer((req, res) => {
    const c = HOOK_CASES[Number(req.url?.slice(1))];
    req.resume();
    req.on('end', () => (c ? respond(c, res) : res.writeHead(404).end()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
});

type Row = Record<string, unknown> & { name: string };

/** One case as a run in the cluster: its object name, what to create, what must happen. */
interface Planned {
  readonly id: string;
  readonly objectName: string | undefined;
  readonly body: string;
  readonly expect: AgentRunCase['expect'];
  readonly artifacts?: Record<string, unknown> | undefined;
}

function plan(): Planned[] {
  const runs: Planned[] = RUN_CASES.map((c) => ({
    id: c.id,
    objectName: c.objectName,
    body: serialize(c.manifest),
    expect: c.expect,
  }));
  const hooks: Planned[] = HOOK_CASES.map((c, index) => ({
    id: `webhook/${c.id}`,
    objectName: `webhook-${index}`,
    body: JSON.stringify({
      apiVersion: `${GROUP}/${VERSION}`,
      kind: 'AgentRun',
      metadata: { name: `webhook-${index}` },
      spec: { agent: `wh-${index}`, objective: `webhook corpus: ${c.id}`, params: { q: index } },
    }),
    // The corpus names its endpoint corpus-hook; here each case is an agent of its own.
    expect: { outcome: renamed(c.expect.outcome, `wh-${index}`) },
    artifacts: c.expect.artifacts,
  }));
  return [...runs, ...hooks];
}

function renamed(outcome: ExpectedOutcome, name: string): ExpectedOutcome {
  const rename = (text: string | undefined) =>
    text?.replaceAll('webhook "corpus-hook"', `webhook "${name}"`);
  const message = rename(outcome.message);
  const error = rename(outcome.error);
  return {
    ...outcome,
    ...(message === undefined ? {} : { message }),
    ...(error === undefined ? {} : { error }),
  };
}

/** The API server's words for a refused create. */
function refusal(error: unknown): string {
  if (!(error instanceof KubeHttpError)) return String(error);
  try {
    const status = JSON.parse(error.body) as { message?: string };
    return status.message ?? error.body;
  } catch {
    return error.body || error.message;
  }
}

async function listRuns(namespace: string): Promise<Map<string, AgentRun>> {
  const list = (await client.request(
    'GET',
    `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`,
  )) as { items: unknown[] };
  const runs = new Map<string, AgentRun>();
  for (const item of list.items) {
    const run = parseAgentRun(item);
    if (run) runs.set(run.metadata.name, run);
  }
  return runs;
}

async function auditRows(namespace: string): Promise<Map<string, Row>> {
  const pgClient = new pg.Client({ connectionString: db.url });
  await pgClient.connect();
  try {
    const { rows } = await pgClient.query<Row>(
      `SELECT run_id, name, agent, objective, status, reason, attempts, started_at, finished_at,
              duration_ms, artifacts, error, user_email, dry_run
         FROM agent_audit_log WHERE namespace = $1`,
      [namespace],
    );
    return new Map(rows.map((row) => [row.name, row]));
  } finally {
    await pgClient.end();
  }
}

const terminal = (run: AgentRun | undefined) =>
  run?.status?.phase === 'Succeeded' ||
  run?.status?.phase === 'Failed' ||
  run?.status?.phase === 'Canceled';
const audited = (run: AgentRun | undefined) =>
  findCondition(run?.status?.conditions, ConditionType.Audited)?.status === 'True';

/** What is wrong with a finished run's status, compared with what the case expects. */
function statusProblems(run: AgentRun, expected: ExpectedOutcome): string[] {
  const problems: string[] = [];
  const status = run.status ?? {};
  const succeeded = findCondition(status.conditions, ConditionType.Succeeded);
  if (status.phase !== expected.phase)
    problems.push(`phase ${status.phase}, expected ${expected.phase}`);
  if (expected.reason && succeeded?.reason !== expected.reason) {
    problems.push(`reason ${succeeded?.reason}, expected ${expected.reason}`);
  }
  if (expected.message && !succeeded?.message.includes(expected.message)) {
    problems.push(
      `message ${JSON.stringify(succeeded?.message)} lacks ${JSON.stringify(expected.message)}`,
    );
  }
  if (expected.error && !status.error?.includes(expected.error)) {
    problems.push(
      `error ${JSON.stringify(status.error?.slice(0, 300))} lacks ${JSON.stringify(expected.error)}`,
    );
  }
  if (expected.attempts !== undefined && status.attempts !== expected.attempts) {
    problems.push(`attempts ${status.attempts}, expected ${expected.attempts}`);
  }
  if (!succeeded?.message.trim()) problems.push('no readable message on the Succeeded condition');
  return problems;
}

/** What of the row differs from the run's final status (and spec). */
function rowProblems(run: AgentRun, row: Row | undefined): string[] {
  if (!row) return ['no audit row'];
  const status = run.status ?? {};
  const problems: string[] = [];
  const same = (column: string, actual: unknown, wanted: unknown) => {
    if (actual !== wanted) {
      problems.push(
        `row ${column} ${JSON.stringify(actual)?.slice(0, 200)} != status ${JSON.stringify(wanted)?.slice(0, 200)}`,
      );
    }
  };
  same('run_id', row['run_id'], run.metadata.uid);
  same('status', row['status'], status.phase?.toLowerCase());
  same('reason', row['reason'], findCondition(status.conditions, ConditionType.Succeeded)?.reason);
  same('attempts', row['attempts'], status.attempts);
  same('error', row['error'], status.error ?? null);
  same(
    'started_at',
    (row['started_at'] as Date).toISOString(),
    status.startedAt ?? status.finishedAt,
  );
  same('finished_at', (row['finished_at'] as Date | null)?.toISOString(), status.finishedAt);
  same('duration_ms', row['duration_ms'], status.durationMs);
  same('agent', row['agent'], run.spec.agent);
  same('objective', row['objective'], cleanText(run.spec.objective));
  same(
    'user_email',
    row['user_email'],
    run.spec.requestedBy === undefined ? null : cleanText(run.spec.requestedBy),
  );
  same('dry_run', row['dry_run'], run.spec.dryRun);
  return problems;
}

describe('the bad-input corpora against a real API server, operator and PostgreSQL', () => {
  it('refuses each case readably, or ends it as expected with an equal audit row; the operator lives', async () => {
    const namespace = await createNamespace(kc, 'bad-input');
    const logs = capturingLogger('warn');
    const operator = await startOperator({
      kubeConfig: kc,
      namespace,
      logger: logs.logger,
      env: {
        APPLYLENS_AGENT_AUDIT_ENABLED: 'true',
        DATABASE_URL: db.url,
        AUDIT_SYNC_WAIT_MS: '1000',
        MAX_CONCURRENT_RUNS: '200',
        // The corpus expects an unknown agent to fail at once (the grace has its own tests).
        UNKNOWN_AGENT_GRACE_SECONDS: '0',
      },
      handlers: HOOK_CASES.map((c, index) =>
        webhookHandler({ name: `wh-${index}`, url: `${origin}/${index}`, timeoutMs: c.timeoutMs }),
      ),
    });
    let ended = false;
    void operator.done.then(
      () => {
        ended = true;
      },
      () => {
        ended = true;
      },
    );

    const cases = plan();
    const failures: string[] = [];
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}?fieldValidation=Strict`;
    const created = new Set<string>();
    await Promise.all(
      cases.map(async (c) => {
        try {
          await client.request('POST', path, { body: c.body, timeoutMs: 30_000 });
          if (c.objectName) created.add(c.objectName);
          if ('admission' in c.expect) failures.push(`${c.id}: admitted, expected a refusal`);
        } catch (error) {
          const message = refusal(error);
          if (!('admission' in c.expect)) {
            failures.push(
              `${c.id}: refused (${message.slice(0, 300)}), expected ${c.expect.outcome.phase}`,
            );
          } else if (!message.includes(c.expect.message)) {
            failures.push(
              `${c.id}: refused with ${JSON.stringify(message.slice(0, 400))}, expected ${JSON.stringify(c.expect.message)}`,
            );
          }
        }
      }),
    );

    // Every admitted run reaches its end and its row: the ones that stay get Audited=True, the
    // ones deleted on finishing (ttlSecondsAfterFinished: 0) leave the cluster.
    const admitted = cases.filter(
      (c) => c.objectName && created.has(c.objectName) && !('admission' in c.expect),
    );
    const gone = (c: Planned) => 'outcome' in c.expect && c.expect.deleted === true;
    let runs = new Map<string, AgentRun>();
    await waitFor(
      'every admitted run to finish and be audited',
      async () => {
        runs = await listRuns(namespace);
        const pending = admitted.filter((c) => {
          const run = runs.get(c.objectName ?? '');
          return gone(c) ? run !== undefined : !(terminal(run) && audited(run));
        });
        return pending.length === 0 ? true : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 1_000 },
    ).catch((error: unknown) => {
      const stuck = admitted
        .filter(
          (c) =>
            !gone(c) &&
            !(terminal(runs.get(c.objectName ?? '')) && audited(runs.get(c.objectName ?? ''))),
        )
        .map((c) => `${c.id} (${runs.get(c.objectName ?? '')?.status?.phase ?? 'no status'})`);
      throw new Error(`${String(error)}; not finished: ${stuck.join(', ')}`);
    });

    const rows = await auditRows(namespace);
    // One row per admitted run, no more: nothing refused was recorded, nothing admitted lost.
    expect(rows.size).toBe(admitted.length);
    expect(admitted.length).toBe(cases.filter((c) => 'outcome' in c.expect).length);
    for (const c of admitted) {
      if (!('outcome' in c.expect)) continue;
      const name = c.objectName ?? '';
      const row = rows.get(name);
      if (gone(c)) {
        if (row?.['status'] !== c.expect.outcome.phase.toLowerCase()) {
          failures.push(`${c.id}: deleted run's row says ${String(row?.['status'])}`);
        }
        continue;
      }
      const run = runs.get(name);
      if (!run) {
        failures.push(`${c.id}: the run is gone`);
        continue;
      }
      const problems = [...statusProblems(run, c.expect.outcome), ...rowProblems(run, row)];
      for (const [column, value] of Object.entries(c.expect.audit ?? {})) {
        if (row?.[column] !== value)
          problems.push(
            `row ${column} ${JSON.stringify(row?.[column])}, expected ${JSON.stringify(value)}`,
          );
      }
      if (c.artifacts) {
        try {
          expect(run.status?.artifacts).toMatchObject(c.artifacts);
        } catch {
          problems.push(`artifacts ${JSON.stringify(run.status?.artifacts)?.slice(0, 200)}`);
        }
      }
      for (const problem of problems) failures.push(`${c.id}: ${problem}`);
    }

    // Still alive and still reconciling: a plain run after all of that succeeds.
    expect(ended).toBe(false);
    await client.request('POST', path, {
      body: JSON.stringify({
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'AgentRun',
        metadata: { name: 'after-the-corpus' },
        spec: { agent: 'noop', objective: 'still alive' },
      }),
    });
    await waitFor('the run after the corpus', async () => {
      const run = (await listRuns(namespace)).get('after-the-corpus');
      return run?.status?.phase === 'Succeeded' ? run : undefined;
    });
    const errors = logs.lines.filter((line) => Number(line['level']) >= 50);
    expect(
      errors.map((line) =>
        `${String(line['msg'])}: ${JSON.stringify(line['err'] ?? '')}`.slice(0, 300),
      ),
    ).toEqual([]);
    expect(failures).toEqual([]);
  }, 240_000);
});
