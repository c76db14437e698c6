import { describe, expect, it } from 'vitest';
import type { AgentRun } from '../../../src/api/agentrun.ts';
import { ConditionType, findCondition } from '../../../src/api/conditions.ts';
import { fakeReconciler } from './fake-cluster.ts';
import { agentRun } from './fixtures.ts';

/**
 * The reconciler's Queued status, with in-memory fakes of the informer cache and the status
 * writer and a frozen clock: which runs get one, how often, and that the writes are capped.
 */

const NOW = new Date();

function setUp(queuedStatusAfterMs: number, now = NOW) {
  return fakeReconciler({ queuedStatusAfterMs, now: () => now });
}

/** A noop run created 60 s before NOW. */
function run(name: string, delayMs = 0): AgentRun {
  return agentRun({
    metadata: {
      name,
      uid: `uid-${name}`,
      creationTimestamp: new Date(NOW.getTime() - 60_000).toISOString(),
    },
    spec: { agent: 'noop', params: { delayMs } },
  });
}

describe('AgentRunReconciler: runs waiting for a handler slot', () => {
  it('marks a run that has waited QUEUED_STATUS_AFTER_MS once, however often it is reconciled', async () => {
    const { cluster, reconciler } = setUp(2_000);
    const holder = cluster.add(run('holder', 600_000));
    await reconciler.reconcile(holder);
    expect(cluster.reasonOf(holder)).toBe('Running');

    const waiting = cluster.add(run('waiting'));
    for (let i = 0; i < 3; i++) expect(await reconciler.reconcile(waiting)).toEqual({});
    const writes = cluster.statusWrites.filter((w) => w.key === waiting);
    expect(writes).toHaveLength(1);
    expect(writes[0]?.status.phase).toBe('Pending');
    expect(cluster.reasonOf(waiting)).toBe('Queued');
    expect(
      findCondition(cluster.get(waiting)?.status?.conditions, ConditionType.Succeeded)?.message,
    ).toBe('waiting for a free handler slot: 1 of MAX_CONCURRENT_RUNS=1 in use, 1 run(s) waiting');
  });

  it('a run created moments ago is looked at again when it will have waited the threshold', async () => {
    const created = Date.parse(run('x').metadata.creationTimestamp ?? '');
    const { cluster, reconciler } = setUp(2_000, new Date(created + 500));
    await reconciler.reconcile(cluster.add(run('holder', 600_000)));
    const waiting = cluster.add(run('waiting'));
    expect(await reconciler.reconcile(waiting)).toEqual({ requeueAfterMs: 1_500 });
    expect(cluster.get(waiting)?.status).toBeUndefined();
  });

  it('QUEUED_STATUS_AFTER_MS=0 writes nothing for a waiting run', async () => {
    const { cluster, reconciler } = setUp(0);
    await reconciler.reconcile(cluster.add(run('holder', 600_000)));
    const waiting = cluster.add(run('waiting'));
    expect(await reconciler.reconcile(waiting)).toEqual({});
    expect(cluster.get(waiting)?.status).toBeUndefined();
  });

  it('writes at most 10 Queued statuses per second: a burst of waiting runs cannot crowd out runs that progress', async () => {
    const { cluster, reconciler } = setUp(2_000);
    await reconciler.reconcile(cluster.add(run('holder', 600_000)));
    const keys = Array.from({ length: 15 }, (_, i) => cluster.add(run(`waiting-${i}`)));
    for (const key of keys) await reconciler.reconcile(key);
    // The clock is frozen, so the budget does not refill: the first ten are marked.
    expect(keys.map((key) => cluster.reasonOf(key))).toEqual([
      ...Array(10).fill('Queued'),
      ...Array(5).fill(undefined),
    ]);
  });

  it('a run that gets a slot at once is claimed without a Queued status', async () => {
    const { cluster, reconciler } = setUp(2_000);
    const key = cluster.add(run('quick'));
    await reconciler.reconcile(key);
    expect(cluster.statusWrites.map((w) => w.status.phase)).toEqual(['Running']);
  });
});
