import { beforeAll, describe, expect, it } from 'vitest';
import type { AgentRun } from '../../../src/api/agentrun.ts';
import { AgentRuns } from '../../support/agentruns.ts';
import { countingHandler } from '../../support/counting-handler.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { startOperator } from '../../support/operator.ts';

const plane = controlPlane();
const kc = adminKubeConfig(plane);

beforeAll(async () => {
  await installCrd(plane);
});

const reason = (run: AgentRun) =>
  run.status?.conditions?.find((c) => c.type === 'Succeeded')?.reason;

/** The status a claim by an operator process that then died leaves behind. */
function claimedByDeadOperator(run: AgentRun) {
  const at = new Date(Date.now() - 1000).toISOString();
  const condition = (type: string, status: string) => ({
    type,
    status,
    reason: 'Running',
    message: 'attempt 1 running',
    lastTransitionTime: `${at.slice(0, 19)}Z`,
  });
  return {
    runId: run.metadata.uid,
    phase: 'Running',
    attempts: 1,
    startedAt: at,
    conditions: [
      condition('Succeeded', 'Unknown'),
      condition('Ready', 'False'),
      condition('Reconciling', 'True'),
      condition('Stalled', 'False'),
    ],
  };
}

describe('operator restarts', () => {
  it('retries an attempt that a stopped operator left Running when retries remain', async () => {
    const namespace = await createNamespace(kc, 'crash-retry');
    const runs = new AgentRuns(kc, namespace);
    const run = await runs.create('orphan', { agent: 'count', backoffLimit: 1 });
    await runs.writeStatus('orphan', claimedByDeadOperator(run));
    const counting = countingHandler();
    await startOperator({ kubeConfig: kc, namespace, handlers: [counting.handler] });
    const done = await runs.waitForPhase('orphan', 'Succeeded');
    expect(done.status?.attempts).toBe(2);
    expect(done.status?.artifacts).toEqual({ attempt: 2 });
    expect(counting.executions.get(run.metadata.uid)).toBe(1);
  });

  it('fails such a run as Interrupted when no retries remain, and never runs it again', async () => {
    const namespace = await createNamespace(kc, 'crash-fail');
    const runs = new AgentRuns(kc, namespace);
    const run = await runs.create('orphan', { agent: 'count' });
    await runs.writeStatus('orphan', claimedByDeadOperator(run));
    const counting = countingHandler();
    await startOperator({ kubeConfig: kc, namespace, handlers: [counting.handler] });
    const done = await runs.waitForPhase('orphan', 'Failed');
    expect(reason(done)).toBe('Interrupted');
    expect(done.status?.finishedAt).toBeDefined();
    expect(counting.total()).toBe(0);
  });

  it('on graceful shutdown, aborts handlers past the grace period; the next operator retries them', async () => {
    const namespace = await createNamespace(kc, 'graceful');
    const runs = new AgentRuns(kc, namespace);
    const first = countingHandler();
    const operator = await startOperator({
      kubeConfig: kc,
      namespace,
      handlers: [first.handler],
      env: { SHUTDOWN_GRACE_SECONDS: '1' },
    });
    const run = await runs.create('long', {
      agent: 'count',
      backoffLimit: 1,
      params: { firstAttemptDelayMs: 60_000 },
    });
    await runs.create('once', { agent: 'count', params: { firstAttemptDelayMs: 60_000 } });
    await runs.waitForPhase('long', 'Running');
    await runs.waitForPhase('once', 'Running');
    await operator.stop();

    const waiting = await runs.waitUntil('long', 'Retrying', (r) => reason(r) === 'Retrying');
    expect(waiting.status?.error).toMatch(/attempt 1 was interrupted: the operator shut down/);
    const interrupted = await runs.waitForPhase('once', 'Failed');
    expect(reason(interrupted)).toBe('Interrupted');

    const second = countingHandler();
    await startOperator({ kubeConfig: kc, namespace, handlers: [second.handler] });
    const done = await runs.waitForPhase('long', 'Succeeded');
    expect(done.status?.attempts).toBe(2);
    expect(first.executions.get(run.metadata.uid)).toBe(1);
    expect(second.executions.get(run.metadata.uid)).toBe(1);
  });
});
