// Job agents end to end: the operator, a control plane of this file's own with
// kube-controller-manager (job controller, garbage collector), the fake kubelet playing each
// pod, and PostgreSQL. An AgentDefinition of kind job registered like any resource; each attempt
// a Job; the run mirrors Starting, Running and the outcome with the container's result; cancel,
// delete, timeout, retries and an operator restart behave as docs/agents.md says, with exactly
// one audit row per run.
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { AgentRun } from '../../../src/api/agentrun.ts';
import { ConditionType, findCondition } from '../../../src/api/conditions.ts';
import { migrate } from '../../../src/audit/migrate.ts';
import { JobLabel, jobName } from '../../../src/controller/job-manifest.ts';
import type { KubeClient } from '../../../src/kube/kube-client.ts';
import { type Job, jobSchema, type Pod, podSchema } from '../../../src/kube/workloads.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { AgentRuns } from '../../support/agentruns.ts';
import { installCrd } from '../../support/crds.ts';
import { useFreshDatabase } from '../../support/environment.ts';
import { ControlPlane } from '../../support/envtest/control-plane.ts';
import { adminClient, adminKubeConfig } from '../../support/envtest/users.ts';
import { JOB_NAME_LABEL } from '../../support/jobs.ts';
import { createNamespace } from '../../support/kube.ts';
import {
  FakeKubelet,
  fail,
  type PodScript,
  pullError,
  runForever,
  succeed,
} from '../../support/kubelet.ts';
import { startOperator } from '../../support/operator.ts';
import { waitFor } from '../../support/wait.ts';

const API = 'agents.applylens.io/v1alpha1';
const db = useFreshDatabase('job_agents');
let plane: ControlPlane;
let kc: KubeConfig;
let client: KubeClient;
let kubelet: FakeKubelet;
/** What each attempt's pod does: by run name, then by `<run name>#<attempt>`. */
const scripts = new Map<string, PodScript>();

/** The run name and attempt of a Job agent's pod, from its Job's name. */
function scriptFor(jobNameValue: string | undefined): PodScript | undefined {
  const match = /^(.*)-[0-9a-f]{8}-(\d+)$/.exec(jobNameValue ?? '');
  if (!match) return undefined;
  const [, run, attempt] = match;
  return scripts.get(`${run}#${attempt}`) ?? scripts.get(run ?? '');
}

beforeAll(async () => {
  plane = await ControlPlane.start({ controllerManager: true });
  kc = adminKubeConfig(plane.info);
  client = adminClient(plane.info);
  await installCrd(plane.info);
  await migrate(db.url, 'up', silentLogger());
  kubelet = await FakeKubelet.start(client, {
    script: (pod) => scriptFor(pod.metadata.labels?.[JOB_NAME_LABEL]),
  });
}, 180_000);

afterAll(async () => {
  await kubelet?.stop();
  client?.close();
  await plane?.stop();
});

afterEach(() => {
  expect(kubelet.failures()).toEqual([]);
});

/** A namespace with a Job agent `worker` and an operator watching it, auditing to PostgreSQL. */
async function setup(prefix: string, env: Record<string, string> = {}) {
  const namespace = await createNamespace(kc, prefix);
  // ServiceAccount admission is on with the controller manager: pods wait for `default`.
  await waitFor('ServiceAccount default', () =>
    client.request('GET', `/api/v1/namespaces/${namespace}/serviceaccounts/default`),
  );
  await kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: 'agents.applylens.io',
    version: 'v1alpha1',
    namespace,
    plural: 'agentdefinitions',
    body: {
      apiVersion: API,
      kind: 'AgentDefinition',
      metadata: { name: 'worker' },
      spec: {
        description: 'a container agent',
        job: { image: 'registry.example/worker:1', args: ['--fast'] },
      },
    },
  });
  const operatorEnv = {
    APPLYLENS_AGENT_AUDIT_ENABLED: 'true',
    DATABASE_URL: db.url,
    ...env,
  };
  const operator = await startOperator({ kubeConfig: kc, namespace, env: operatorEnv });
  const runs = new AgentRuns(kc, namespace);
  return { namespace, runs, operator, operatorEnv };
}

async function jobsOf(namespace: string, run: AgentRun): Promise<Job[]> {
  const selector = encodeURIComponent(`${JobLabel.RunId}=${run.metadata.uid}`);
  const list = (await client.request(
    'GET',
    `/apis/batch/v1/namespaces/${namespace}/jobs?labelSelector=${selector}`,
  )) as { items: unknown[] };
  return list.items.map((item) => jobSchema.parse(item));
}

async function podsOf(namespace: string, run: AgentRun): Promise<Pod[]> {
  const selector = encodeURIComponent(`${JobLabel.RunId}=${run.metadata.uid}`);
  const list = (await client.request(
    'GET',
    `/api/v1/namespaces/${namespace}/pods?labelSelector=${selector}`,
  )) as { items: unknown[] };
  return list.items.map((item) => podSchema.parse(item));
}

/** Waits until no Job and no pod of the run is left (deleted, or collected with the run). */
function jobAndPodsGone(namespace: string, run: AgentRun): Promise<true> {
  return waitFor(
    `the Jobs and pods of ${run.metadata.name} gone`,
    async () =>
      (await jobsOf(namespace, run)).length === 0 && (await podsOf(namespace, run)).length === 0
        ? true
        : undefined,
    { timeoutMs: 60_000 },
  );
}

async function auditRows(runId: string) {
  const pool = new pg.Client({ connectionString: db.url });
  await pool.connect();
  try {
    const { rows } = await pool.query(
      'SELECT status, reason, attempts, artifacts FROM agent_audit_log WHERE run_id = $1',
      [runId],
    );
    return rows as { status: string; reason: string; attempts: number; artifacts: unknown }[];
  } finally {
    await pool.end();
  }
}

const reasonOf = (run: AgentRun | undefined) =>
  findCondition(run?.status?.conditions, ConditionType.Succeeded)?.reason;
const audited = (run: AgentRun) =>
  findCondition(run.status?.conditions, ConditionType.Audited)?.status === 'True';

describe('Job agents on a control plane with kube-controller-manager', () => {
  it('runs an attempt as a Job: Starting, Running, then the container result, audited once', async () => {
    const { namespace, runs } = await setup('job-ok');
    scripts.set('hello', succeed({ afterMs: 1_500, message: '{"summary":"done","count":3}' }));
    const recording = await runs.record();
    const created = await runs.create('hello', {
      agent: 'worker',
      params: { target: 'api' },
      dryRun: true,
    });
    const done = await runs.waitUntil('hello', 'Succeeded and audited', audited, 60_000);
    recording.stop();
    expect(done.status?.artifacts).toEqual({ summary: 'done', count: 3 });
    expect(done.status?.attempts).toBe(1);
    const seen = recording.versions
      .filter((v) => v.run.metadata.name === 'hello')
      .map((v) => `${v.run.status?.phase ?? '-'}/${reasonOf(v.run) ?? '-'}`);
    expect(seen).toContain('Pending/Starting');
    expect(seen).toContain('Running/Running');
    expect(seen.indexOf('Pending/Starting')).toBeLessThan(seen.indexOf('Running/Running'));

    const [job, ...more] = await jobsOf(namespace, created);
    expect(more).toEqual([]);
    expect(job?.metadata.name).toBe(jobName(created, 1));
    expect(job?.metadata.ownerReferences).toEqual([
      expect.objectContaining({ kind: 'AgentRun', uid: created.metadata.uid, controller: true }),
    ]);
    const [pod] = await podsOf(namespace, created);
    const spec = pod?.spec as { containers?: { env?: { name: string; value?: string }[] }[] };
    const env = Object.fromEntries((spec.containers?.[0]?.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      AGENTRUN_ID: created.metadata.uid,
      AGENTRUN_ATTEMPT: '1',
      AGENTRUN_DRY_RUN: 'true',
      AGENTRUN_PARAMS: '{"target":"api"}',
    });
    expect(await auditRows(created.metadata.uid)).toEqual([
      {
        status: 'succeeded',
        reason: 'Succeeded',
        attempts: 1,
        artifacts: { summary: 'done', count: 3 },
      },
    ]);
  });

  it('shows an image that cannot be pulled, and a cancel then deletes the Job and its pod', async () => {
    const { namespace, runs } = await setup('job-pull');
    scripts.set('pull', pullError({ message: 'pull access denied for registry.example/worker' }));
    const created = await runs.create('pull', { agent: 'worker' });
    const waiting = await runs.waitUntil(
      'pull',
      'Starting with the pull error',
      (r) =>
        reasonOf(r) === 'Starting' &&
        (findCondition(r.status?.conditions, ConditionType.Succeeded)?.message ?? '').includes(
          'ErrImagePull: pull access denied',
        ),
      60_000,
    );
    expect(waiting.status?.phase).toBe('Pending');
    await runs.cancel('pull');
    const canceled = await runs.waitUntil('pull', 'Canceled and audited', audited, 60_000);
    expect(reasonOf(canceled)).toBe('Canceled');
    await jobAndPodsGone(namespace, created);
    expect((await auditRows(created.metadata.uid)).map((r) => r.status)).toEqual(['canceled']);
  });

  it('retries a failed attempt with a new Job, carrying the failure message', async () => {
    const { namespace, runs } = await setup('job-retry');
    scripts.set('flaky#1', fail({ afterMs: 300, exitCode: 3, message: 'upstream said no' }));
    scripts.set('flaky#2', succeed({ afterMs: 300, message: 'second time lucky' }));
    const created = await runs.create('flaky', { agent: 'worker', backoffLimit: 2 });
    const done = await runs.waitUntil('flaky', 'Succeeded and audited', audited, 90_000);
    expect(reasonOf(done)).toBe('Succeeded');
    expect(done.status?.attempts).toBe(2);
    expect(done.status?.artifacts).toEqual({ message: 'second time lucky' });
    const names = (await jobsOf(namespace, created)).map((j) => j.metadata.name).sort();
    expect(names).toEqual([jobName(created, 1), jobName(created, 2)]);
    const rows = await auditRows(created.metadata.uid);
    expect(rows.map((r) => `${r.status}/${r.attempts}`)).toEqual(['succeeded/2']);

    scripts.set('broken', fail({ exitCode: 3, message: 'no such target' }));
    await runs.create('broken', { agent: 'worker' });
    const failed = await runs.waitUntil('broken', 'Failed and audited', audited, 60_000);
    expect(reasonOf(failed)).toBe('Failed');
    expect(failed.status?.error).toBe(
      'the agent container ended with exit code 3 (Error): no such target',
    );
  });

  it('ends TimedOut at timeoutSeconds: the Job is deleted, the pod killed', async () => {
    const { namespace, runs } = await setup('job-timeout');
    scripts.set('slow', runForever());
    const created = await runs.create('slow', { agent: 'worker', timeoutSeconds: 4 });
    const ended = await runs.waitUntil('slow', 'TimedOut and audited', audited, 60_000);
    expect(reasonOf(ended)).toBe('TimedOut');
    await waitFor(
      'the Job gone',
      async () => ((await jobsOf(namespace, created)).length === 0 ? true : undefined),
      { timeoutMs: 60_000 },
    );
    expect((await auditRows(created.metadata.uid)).map((r) => r.reason)).toEqual(['TimedOut']);
  });

  it('deleting a running run cancels it: audited, then the run, Job and pod are collected', async () => {
    const { namespace, runs } = await setup('job-delete');
    scripts.set('doomed', runForever());
    const created = await runs.create('doomed', { agent: 'worker' });
    await runs.waitForPhase('doomed', 'Running', 60_000);
    await runs.delete('doomed');
    await runs.waitForDeletion('doomed', 60_000);
    await jobAndPodsGone(namespace, created);
    expect((await auditRows(created.metadata.uid)).map((r) => r.status)).toEqual(['canceled']);
  });

  it('an operator restarted while Jobs run follows them again: no second Job, one row each', async () => {
    const { namespace, runs, operator, operatorEnv } = await setup('job-restart');
    const names = ['r1', 'r2', 'r3'];
    for (const name of names)
      scripts.set(name, succeed({ afterMs: 6_000, message: `{"run":"${name}"}` }));
    const created = await Promise.all(names.map((name) => runs.create(name, { agent: 'worker' })));
    for (const name of names) await runs.waitForPhase(name, 'Running', 60_000);
    await operator.stop();
    await startOperator({ kubeConfig: kc, namespace, env: operatorEnv });
    for (const run of created) {
      const done = await runs.waitUntil(
        run.metadata.name,
        'Succeeded and audited',
        audited,
        60_000,
      );
      expect(reasonOf(done)).toBe('Succeeded');
      expect(done.status?.attempts).toBe(1);
      expect(done.status?.artifacts).toEqual({ run: run.metadata.name });
      expect((await jobsOf(namespace, run)).map((j) => j.metadata.name)).toEqual([jobName(run, 1)]);
      expect((await auditRows(run.metadata.uid)).map((r) => `${r.status}/${r.attempts}`)).toEqual([
        'succeeded/1',
      ]);
    }
  });

  it('runs 200 Job agents at once, beyond MAX_CONCURRENT_RUNS, each audited once', async () => {
    const { namespace, runs } = await setup('job-many', { MAX_CONCURRENT_RUNS: '2' });
    const count = 200;
    const names = Array.from({ length: count }, (_, i) => `many-${i}`);
    for (const name of names)
      scripts.set(name, succeed({ afterMs: 500, message: `{"n":"${name}"}` }));
    for (let i = 0; i < count; i += 20) {
      await Promise.all(
        names.slice(i, i + 20).map((name) => runs.create(name, { agent: 'worker' })),
      );
    }
    const all = await waitFor(
      `${count} runs Succeeded and audited`,
      async () => {
        const list = await runs.list();
        const done = list.filter((r) => reasonOf(r) === 'Succeeded' && audited(r));
        return done.length === count ? list : undefined;
      },
      { timeoutMs: 300_000, intervalMs: 1_000 },
    );
    const pool = new pg.Client({ connectionString: db.url });
    await pool.connect();
    try {
      const { rows } = await pool.query(
        "SELECT count(*)::int AS n, count(DISTINCT run_id)::int AS runs FROM agent_audit_log WHERE namespace = $1 AND status = 'succeeded'",
        [namespace],
      );
      expect(rows[0]).toEqual({ n: count, runs: count });
    } finally {
      await pool.end();
    }
    const jobs = (await client.request('GET', `/apis/batch/v1/namespaces/${namespace}/jobs`)) as {
      items: unknown[];
    };
    expect(jobs.items).toHaveLength(count);
    expect(new Set(all.map((r) => JSON.stringify(r.status?.artifacts))).size).toBe(count);
  });
});
