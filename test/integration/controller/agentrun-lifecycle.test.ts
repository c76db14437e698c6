import { EventsV1Api } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AgentRun } from '../../../src/api/agentrun.ts';
import { AgentRuns } from '../../support/agentruns.ts';
import { countingHandler } from '../../support/counting-handler.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { startOperator } from '../../support/operator.ts';
import { waitFor } from '../../support/wait.ts';

const plane = controlPlane();
const kc = adminKubeConfig(plane);

beforeAll(async () => {
  await installCrd(plane);
});

async function setup(prefix: string, env: Record<string, string> = {}) {
  const namespace = await createNamespace(kc, prefix);
  const counting = countingHandler();
  const operator = await startOperator({
    kubeConfig: kc,
    namespace,
    env,
    handlers: [counting.handler],
  });
  return { runs: new AgentRuns(kc, namespace), operator, counting };
}

function condition(run: AgentRun, type = 'Succeeded') {
  return run.status?.conditions?.find((c) => c.type === type);
}

describe('AgentRun lifecycle', () => {
  it('runs a handler to Succeeded and mirrors the run on the status', async () => {
    const { runs } = await setup('life');
    const created = await runs.create('hello', {
      agent: 'noop',
      objective: 'say hello',
      params: { greeting: 'hi' },
    });
    const run = await runs.waitForPhase('hello', 'Succeeded');
    const status = run.status ?? {};
    expect(status.runId).toBe(created.metadata.uid);
    expect(status.observedGeneration).toBe(1);
    expect(status.attempts).toBe(1);
    expect(status.artifacts).toEqual({ greeting: 'hi' });
    expect(status.plan).toEqual({ greeting: 'hi' });
    expect(status.error).toBeUndefined();
    expect(Date.parse(status.finishedAt ?? '')).toBeGreaterThanOrEqual(
      Date.parse(status.startedAt ?? ''),
    );
    expect(status.durationMs).toBe(
      Date.parse(status.finishedAt ?? '') - Date.parse(status.startedAt ?? ''),
    );
    const conditions = Object.fromEntries(
      (status.conditions ?? []).map((c) => [c.type, [c.status, c.reason]]),
    );
    expect(conditions).toEqual({
      Succeeded: ['True', 'Succeeded'],
      Ready: ['True', 'Succeeded'],
      Reconciling: ['False', 'Succeeded'],
      Stalled: ['False', 'Succeeded'],
    });
    // kubectl describe shows the run's story as Events.
    const events = await waitFor('Started and Succeeded events', async () => {
      const list = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({
        namespace: runs.namespace,
        fieldSelector: `regarding.name=hello`,
      });
      const reasons = list.items.map((e) => e.reason).sort();
      return reasons.length >= 2 ? reasons : undefined;
    });
    expect(events).toEqual(['Started', 'Succeeded']);
  });

  it('records no Event of a reason EVENTS_OMIT names, and the others as before', async () => {
    const { runs } = await setup('omit', { EVENTS_OMIT: 'Started' });
    await runs.create('quiet', { agent: 'noop', objective: 'one Event' });
    await runs.waitForPhase('quiet', 'Succeeded');
    // The recorder writes in order, one at a time: a Started Event would be in before this one.
    const events = await waitFor('the Succeeded event', async () => {
      const list = await kc.makeApiClient(EventsV1Api).listNamespacedEvent({
        namespace: runs.namespace,
        fieldSelector: `regarding.name=quiet`,
      });
      const reasons = list.items.map((e) => e.reason);
      return reasons.includes('Succeeded') ? reasons : undefined;
    });
    expect(events).toEqual(['Succeeded']);
  });

  it('fails a run whose agent is unknown, naming the known agents', async () => {
    // At once: the unknown-agent grace has its own tests (agentdefinition.test.ts).
    const { runs } = await setup('unknown', { UNKNOWN_AGENT_GRACE_SECONDS: '0' });
    await runs.create('who', { agent: 'no-such-agent' });
    const run = await runs.waitForPhase('who', 'Failed');
    const succeeded = run.status?.conditions?.find((c) => c.type === 'Succeeded');
    expect(succeeded?.reason).toBe('UnknownAgent');
    expect(succeeded?.message).toMatch(/no handler named "no-such-agent"; known agents: .*noop/);
    expect(run.status?.attempts).toBe(0);
    expect(run.status?.finishedAt).toBeDefined();
  });

  it('fails a run whose params do not fit the handler, saying which', async () => {
    const { runs } = await setup('params');
    await runs.create('bad', { agent: 'noop', params: { delayMs: 'soon' } });
    const run = await runs.waitForPhase('bad', 'Failed');
    const succeeded = run.status?.conditions?.find((c) => c.type === 'Succeeded');
    expect(succeeded?.reason).toBe('InvalidParams');
    expect(succeeded?.message).toContain('params.delayMs');

    // Under the CRD's 64-key cap but over the 64 KiB one that only the operator can measure.
    await runs.create('huge', { agent: 'noop', params: { blob: 'x'.repeat(70_000) } });
    const huge = await runs.waitForPhase('huge', 'Failed');
    expect(condition(huge)?.reason).toBe('InvalidParams');
    expect(condition(huge)?.message).toMatch(
      /^spec\.params is 700\d\d bytes of JSON; the limit is 65536$/,
    );
    expect(huge.status?.attempts ?? 0).toBe(0);
  });

  it('times out a handler that runs past timeoutSeconds, aborting it', async () => {
    const { runs } = await setup('timeout');
    await runs.create('slow', { agent: 'noop', timeoutSeconds: 1, params: { delayMs: 60_000 } });
    const run = await runs.waitForPhase('slow', 'Failed', 15_000);
    expect(condition(run)?.reason).toBe('TimedOut');
    expect(run.status?.durationMs).toBeGreaterThanOrEqual(1000);
    expect(run.status?.durationMs).toBeLessThan(10_000);
    expect(run.status?.finishedAt).toBeDefined();
  });

  it('cancels a running handler when spec.cancel is set', async () => {
    const { runs } = await setup('cancel');
    await runs.create('long', { agent: 'noop', params: { delayMs: 60_000 } });
    await runs.waitForPhase('long', 'Running');
    await runs.cancel('long');
    const run = await runs.waitForPhase('long', 'Canceled', 15_000);
    expect(condition(run)?.message).toBe('canceled while running');
    expect(condition(run, 'Stalled')?.status).toBe('True');
    expect(run.status?.error).toBeUndefined();
  });

  it('cancels a run that is still waiting for a free slot, without ever starting it', async () => {
    const { runs, counting } = await setup('pending', { MAX_CONCURRENT_RUNS: '1' });
    await runs.create('first', { agent: 'noop', params: { delayMs: 60_000 } });
    await runs.waitForPhase('first', 'Running');
    const second = await runs.create('second', { agent: 'count' });
    await runs.cancel('second');
    const run = await runs.waitForPhase('second', 'Canceled', 15_000);
    expect(condition(run)?.message).toBe('canceled before it started');
    expect(run.status?.attempts).toBe(0);
    expect(counting.executions.get(second.metadata.uid)).toBeUndefined();
    await runs.cancel('first');
    await runs.waitForPhase('first', 'Canceled');
  });

  it('runs waiting for a slot start when one frees up (MAX_CONCURRENT_RUNS)', async () => {
    const { runs } = await setup('slots', { MAX_CONCURRENT_RUNS: '1' });
    await runs.create('a', { agent: 'noop', params: { delayMs: 300 } });
    await runs.create('b', { agent: 'noop', params: { delayMs: 300 } });
    const [a, b] = await Promise.all([
      runs.waitForPhase('a', 'Succeeded'),
      runs.waitForPhase('b', 'Succeeded'),
    ]);
    // One at a time: the later one started no earlier than the first one finished.
    const [first, second] = [a, b].sort(
      (x, y) => Date.parse(x.status?.startedAt ?? '') - Date.parse(y.status?.startedAt ?? ''),
    );
    expect(Date.parse(second?.status?.startedAt ?? '')).toBeGreaterThanOrEqual(
      Date.parse(first?.status?.finishedAt ?? ''),
    );
  });

  it('deleting a running run aborts its handler, then lets the object go', async () => {
    const { runs, counting } = await setup('delete');
    const created = await runs.create('doomed', { agent: 'count', params: { delayMs: 60_000 } });
    // Long enough for the handler to hold the finalizer (FINALIZER_AFTER_MS=200 in tests).
    await runs.waitUntil('doomed', 'finalizer held', (r) =>
      (r.metadata.finalizers ?? []).includes('agents.applylens.io/run-protection'),
    );
    await runs.delete('doomed');
    await runs.waitForDeletion('doomed', 15_000);
    expect(counting.executions.get(created.metadata.uid)).toBe(1);
  });

  it('retries a failing attempt up to backoffLimit, then fails with BackoffLimitExceeded', async () => {
    const { runs, counting } = await setup('retry');
    const created = await runs.create('flaky', {
      agent: 'count',
      backoffLimit: 2,
      params: { fail: true },
    });
    const run = await runs.waitForPhase('flaky', 'Failed', 20_000);
    expect(condition(run)?.reason).toBe('BackoffLimitExceeded');
    expect(run.status?.attempts).toBe(3);
    expect(run.status?.error).toBe('attempt 3 failed on purpose');
    expect(counting.executions.get(created.metadata.uid)).toBe(3);
  });

  it('fails after one attempt by default (backoffLimit 0: side effects are not idempotent)', async () => {
    const { runs, counting } = await setup('once');
    const created = await runs.create('fails', { agent: 'count', params: { fail: true } });
    const run = await runs.waitForPhase('fails', 'Failed');
    expect(condition(run)?.reason).toBe('Failed');
    expect(condition(run)?.message).toBe('attempt 1 failed: attempt 1 failed on purpose');
    expect(counting.executions.get(created.metadata.uid)).toBe(1);
  });

  it('deletes finished runs after ttlSecondsAfterFinished', async () => {
    const { runs } = await setup('ttl');
    await runs.create('short-lived', { agent: 'noop', ttlSecondsAfterFinished: 1 });
    const run = await runs.waitForPhase('short-lived', 'Succeeded');
    expect(run.status?.finishedAt).toBeDefined();
    await runs.waitForDeletion('short-lived', 15_000);
  });

  it('a cancel after the run finished changes nothing but observedGeneration (kstatus stays Current)', async () => {
    const { runs } = await setup('late-cancel');
    await runs.create('done', { agent: 'noop' });
    const before = await runs.waitForPhase('done', 'Succeeded');
    await runs.cancel('done');
    const after = await runs.waitUntil(
      'done',
      'observedGeneration 2',
      (r) => r.status?.observedGeneration === 2,
    );
    expect(after.metadata.generation).toBe(2);
    expect(after.status?.phase).toBe('Succeeded');
    expect(after.status?.finishedAt).toBe(before.status?.finishedAt);
    expect(after.status?.conditions?.every((c) => c.observedGeneration === 2)).toBe(true);
  });
});
