import { beforeAll, describe, expect, it } from 'vitest';
import { AgentRuns } from '../support/agentruns.ts';
import { countingHandler } from '../support/counting-handler.ts';
import { installCrd } from '../support/crds.ts';
import { controlPlane } from '../support/environment.ts';
import { adminKubeConfig } from '../support/envtest/users.ts';
import { createNamespace } from '../support/kube.ts';
import { startOperator } from '../support/operator.ts';
import { waitFor } from '../support/wait.ts';

const plane = controlPlane();
const kc = adminKubeConfig(plane);

beforeAll(async () => {
  await installCrd(plane);
});

describe('two operator replicas with leader election', () => {
  it('only the leader executes runs; after it stops, the other takes over', async () => {
    const namespace = await createNamespace(kc, 'leader');
    const env = {
      LEADER_ELECT: 'true',
      LEADER_ELECTION_NAMESPACE: namespace,
      LEASE_DURATION_SECONDS: '3',
      RENEW_DEADLINE_SECONDS: '2',
      RETRY_PERIOD_SECONDS: '1',
    };
    const a = countingHandler();
    const b = countingHandler();
    const opA = await startOperator({ kubeConfig: kc, namespace, env, handlers: [a.handler] });
    const opB = await startOperator({ kubeConfig: kc, namespace, env, handlers: [b.handler] });
    await waitFor('a leader', async () => (opA.isLeader || opB.isLeader ? true : undefined), {
      timeoutMs: 15_000,
    });
    expect(opA.isLeader && opB.isLeader).toBe(false);
    // Both replicas are ready: a follower waits for the Lease with a warm cache.
    expect(opA.ready() && opB.ready()).toBe(true);

    const runs = new AgentRuns(kc, namespace);
    const names = Array.from({ length: 10 }, (_, i) => `run-${i}`);
    await Promise.all(names.map((name) => runs.create(name, { agent: 'count' })));
    await Promise.all(names.map((name) => runs.waitForPhase(name, 'Succeeded')));
    const [leader, follower] = opA.isLeader ? [a, b] : [b, a];
    expect(leader.total()).toBe(10);
    expect(follower.total()).toBe(0);
    expect([...leader.executions.values()].every((n) => n === 1)).toBe(true);

    const [leaderOp, followerOp] = opA.isLeader ? [opA, opB] : [opB, opA];
    await leaderOp.stop();
    await waitFor('the follower to lead', async () => (followerOp.isLeader ? true : undefined), {
      timeoutMs: 15_000,
    });
    await runs.create('after', { agent: 'count' });
    await runs.waitForPhase('after', 'Succeeded');
    expect(follower.total()).toBe(1);
    expect(leader.total()).toBe(10);
  });
});
