import { beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineHandler, type Handler } from '../../../src/handlers/handler.ts';
import type { Operator } from '../../../src/operator.ts';
import { AgentRuns } from '../../support/agentruns.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { sampleLeadership } from '../../support/leadership.ts';
import { startOperator } from '../../support/operator.ts';
import { waitFor } from '../../support/wait.ts';

const plane = controlPlane();
const kc = adminKubeConfig(plane);

beforeAll(async () => {
  await installCrd(plane);
});

/** One execution of a run's handler, and whether its replica led at that moment. */
interface Execution {
  readonly runId: string;
  readonly replica: string;
  readonly leading: boolean;
}

/**
 * A handler that records, in `executions`, each run it executes together with whether its own
 * replica held the Lease at that moment (Operator.isLeader: false as soon as the replica has
 * gone renewDeadline without a renewal, even before it notices).
 */
function recordingHandler(
  replica: string,
  operator: () => Operator | undefined,
  executions: Execution[],
): Handler {
  return defineHandler({
    name: 'count',
    description: 'records which replica executed each run, and whether it was leading',
    params: z.object({}),
    plan: () => ({}),
    run: async (_plan, ctx) => {
      executions.push({ runId: ctx.runId, replica, leading: operator()?.isLeader === true });
      return { replica };
    },
  });
}

describe('two operator replicas with leader election', () => {
  it('only the leader executes runs; after it stops, the other takes over', async () => {
    const namespace = await createNamespace(kc, 'leader');
    // A renewal every second, but a leader keeps the Lease through 15 s without one: a busy
    // machine that delays a renewal does not move leadership in the middle of the test. The
    // hand-over below does not wait for the lease to run out: the stopping leader releases it.
    const env = {
      LEADER_ELECT: 'true',
      LEADER_ELECTION_NAMESPACE: namespace,
      LEASE_DURATION_SECONDS: '20',
      RENEW_DEADLINE_SECONDS: '15',
      RETRY_PERIOD_SECONDS: '1',
    };
    const executions: Execution[] = [];
    let opA: Operator | undefined;
    let opB: Operator | undefined;
    const a = recordingHandler('a', () => opA, executions);
    const b = recordingHandler('b', () => opB, executions);
    opA = await startOperator({ kubeConfig: kc, namespace, env, handlers: [a] });
    opB = await startOperator({ kubeConfig: kc, namespace, env, handlers: [b] });
    const replicas = { a: opA, b: opB };
    const finish = sampleLeadership(() => [replicas.a.isLeader, replicas.b.isLeader]);
    await waitFor('a leader', async () => (opA?.isLeader || opB?.isLeader ? true : undefined), {
      timeoutMs: 15_000,
    });
    // Both replicas are ready: a follower waits for the Lease with a warm cache.
    expect(opA.ready() && opB.ready()).toBe(true);

    const runs = new AgentRuns(kc, namespace);
    const names = Array.from({ length: 10 }, (_, i) => `run-${i}`);
    await Promise.all(names.map((name) => runs.create(name, { agent: 'count' })));
    const done = await Promise.all(names.map((name) => runs.waitForPhase(name, 'Succeeded')));
    // Every run was executed exactly once, each time by a replica that held the Lease then.
    const runIds = done.map((run) => run.metadata.uid).sort();
    expect(executions.map((e) => e.runId).sort()).toEqual(runIds);
    expect(executions.filter((e) => !e.leading)).toEqual([]);

    // The replica leading now stops (and releases the Lease); the other one takes over.
    const leading = (['a', 'b'] as const).find((replica) => replicas[replica].isLeader);
    expect(leading).toBeDefined();
    const other = leading === 'a' ? 'b' : 'a';
    await replicas[leading ?? 'a'].stop();
    await waitFor('the other replica to lead', async () => replicas[other].isLeader || undefined, {
      timeoutMs: 30_000,
    });
    const after = await runs.create('after', { agent: 'count' });
    await runs.waitForPhase('after', 'Succeeded');
    expect(executions.filter((e) => e.runId === after.metadata.uid)).toEqual([
      { runId: after.metadata.uid, replica: other, leading: true },
    ]);
    expect(executions).toHaveLength(11);

    // At no sampled instant did both replicas consider themselves the leader.
    const { samples, overlaps } = finish();
    expect(samples).toBeGreaterThan(100);
    expect(overlaps).toBe(0);
  });
});
