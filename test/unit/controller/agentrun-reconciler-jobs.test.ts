// The reconciler with Job agents, over FakeCluster and a scripted Job executor (the real one is
// proven on the API server with kube-controller-manager): the claim says Starting, stages are
// mirrored in order, the outcome is the last word, a shutdown leaves the status for the next
// leader, which follows the same attempt again.
import { describe, expect, it } from 'vitest';
import type { AgentRun } from '../../../src/api/agentrun.ts';
import type { JobAttempt, JobExecutor } from '../../../src/controller/job-runner.ts';
import type { Handler, JsonObject } from '../../../src/handlers/handler.ts';
import { HandlerRegistry } from '../../../src/handlers/registry.ts';
import { fakeReconciler } from './fake-cluster.ts';
import { agentRun } from './fixtures.ts';

const JOB_AGENT: Handler = {
  name: 'job-agent',
  description: 'runs as a Job',
  job: { podSpec: { containers: [{ name: 'agent', image: 'agent:1' }] } },
  prepare: ({ params, dryRun }) => ({
    ok: true,
    plan: { image: 'agent:1', dryRun, params: params as JsonObject },
    execute: () => Promise.reject(new Error('not through the executor')),
  }),
};

/** Records each attempt it is given; the test ends them by hand. */
class ScriptedJobs implements JobExecutor {
  readonly attempts: JobAttempt[] = [];
  readonly stopped: string[] = [];
  #ends: Array<{ resolve: (a: JsonObject) => void; reject: (e: unknown) => void }> = [];

  run(attempt: JobAttempt): Promise<JsonObject> {
    this.attempts.push(attempt);
    return new Promise((resolve, reject) => {
      this.#ends.push({ resolve, reject });
      attempt.signal.addEventListener('abort', () => reject(attempt.signal.reason));
    });
  }

  async stopAll(run: AgentRun): Promise<void> {
    this.stopped.push(run.metadata.name);
  }

  succeed(index: number, artifacts: JsonObject): void {
    this.#ends[index]?.resolve(artifacts);
  }

  fail(index: number, message: string): void {
    this.#ends[index]?.reject(new Error(message));
  }
}

function setup() {
  const jobs = new ScriptedJobs();
  const env = fakeReconciler({
    handlers: new HandlerRegistry([JOB_AGENT]),
    jobs,
    maxConcurrentRuns: 1,
    maxConcurrentJobRuns: 5,
  });
  const run = (name: string, overrides: Record<string, unknown> = {}) =>
    env.cluster.add(
      agentRun({
        metadata: { name, uid: `uid-${name}` },
        spec: { agent: 'job-agent', params: { n: 1 }, ...overrides },
      }),
    );
  return { ...env, jobs, run };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 10));

describe('AgentRunReconciler: Job agents', () => {
  it('claims Starting, mirrors the pod running, then writes the result, in that order', async () => {
    const { cluster, reconciler, enqueued, jobs, run } = setup();
    const key = run('build');
    await reconciler.reconcile(key);
    expect(cluster.runs.get(key)?.status?.phase).toBe('Pending');
    expect(cluster.reasonOf(key)).toBe('Starting');
    await settle();
    const [attempt] = jobs.attempts;
    expect(attempt?.attempt).toBe(1);
    expect(attempt?.params).toEqual({ n: 1 });
    expect(attempt?.run.status?.startedAt).toBeDefined();
    attempt?.report('Starting', 'attempt 1 (Job x): ErrImagePull: not found');
    attempt?.report('Running', 'attempt 1 running as Job x');
    await settle();
    const done = enqueued.next(key);
    jobs.succeed(0, { words: 6 });
    await done;
    expect(cluster.statusWrites.map((w) => `${w.status.phase}`)).toEqual([
      'Pending',
      'Pending',
      'Running',
      'Succeeded',
    ]);
    expect(cluster.runs.get(key)?.status?.artifacts).toEqual({ words: 6 });
    expect(cluster.events.map((e) => e.reason)).toEqual(['Starting', 'Started', 'Succeeded']);
  });

  it('an outcome right after a stage report is the last word: the stage is not written after it', async () => {
    const { cluster, reconciler, enqueued, jobs, run } = setup();
    const key = run('quick');
    await reconciler.reconcile(key);
    await settle();
    jobs.attempts[0]?.report('Starting', 'attempt 1 (Job x): ContainerCreating: creating');
    jobs.attempts[0]?.report('Running', 'attempt 1 running as Job x');
    const done = enqueued.next(key);
    jobs.succeed(0, {});
    await done;
    await settle();
    expect(cluster.statusWrites.at(-1)?.status.phase).toBe('Succeeded');
    expect(cluster.reasonOf(key)).toBe('Succeeded');
  });

  it('takes no handler slot: more Job runs than MAX_CONCURRENT_RUNS start at once', async () => {
    const { reconciler, jobs, run } = setup();
    for (const name of ['a', 'b', 'c']) await reconciler.reconcile(run(name));
    await settle();
    expect(jobs.attempts).toHaveLength(3);
    expect(reconciler.executor.busy).toBe(0);
    expect(reconciler.executor.busyJobs).toBe(3);
  });

  it('a failed Job is a failed attempt: retried with backoff like any other', async () => {
    const { cluster, reconciler, enqueued, jobs, run } = setup();
    const key = run('flaky', { backoffLimit: 1 });
    await reconciler.reconcile(key);
    await settle();
    const done = enqueued.next(key);
    jobs.fail(0, 'the agent container ended with exit code 3 (Error): asked to fail');
    await done;
    expect(cluster.reasonOf(key)).toBe('Retrying');
    expect(cluster.runs.get(key)?.status?.error).toContain('asked to fail');
  });

  it('a shutdown writes nothing: the next leader follows the same attempt, without a new claim', async () => {
    const first = setup();
    const key = first.run('long');
    await first.reconciler.reconcile(key);
    await settle();
    await first.reconciler.executor.drain(0);
    await first.reconciler.settled();
    const writes = first.cluster.statusWrites.length;
    expect(first.cluster.reasonOf(key)).toBe('Starting');

    const next = setup();
    const claimed = first.cluster.runs.get(key);
    if (!claimed) throw new Error('the run is gone');
    const again = next.cluster.add(claimed);
    await next.reconciler.reconcile(again);
    await settle();
    expect(next.jobs.attempts.map((a) => a.attempt)).toEqual([1]);
    expect(next.cluster.statusWrites).toHaveLength(0);
    expect(writes).toBe(1);
  });

  it('a cancel while nobody follows the Job stops its Jobs and ends Canceled', async () => {
    const first = setup();
    const key = first.run('orphan');
    await first.reconciler.reconcile(key);
    await settle();
    await first.reconciler.executor.drain(0);
    const claimed = first.cluster.runs.get(key);
    if (!claimed) throw new Error('the run is gone');
    const next = setup();
    const again = next.cluster.add({ ...claimed, spec: { ...claimed.spec, cancel: true } });
    await next.reconciler.reconcile(again);
    expect(next.jobs.stopped).toEqual(['orphan']);
    expect(next.cluster.reasonOf(again)).toBe('Canceled');
    expect(next.jobs.attempts).toHaveLength(0);
  });
});
