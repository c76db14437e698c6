import { describe, expect, it } from 'vitest';
import type { AgentRun } from '../../../src/api/agentrun.ts';
import type { RunAudit } from '../../../src/controller/audit-tracker.ts';
import { FINALIZER } from '../../../src/controller/decide.ts';
import { WritePriority } from '../../../src/kube/write-priority.ts';
import { FakeSink } from './fake-audit-sink.ts';
import { fakeReconciler } from './fake-cluster.ts';
import { agentRun } from './fixtures.ts';

/**
 * The reconciler carrying out decide()'s actions against an in-memory API server and cache
 * (FakeCluster): what it writes, in which order, and what it remembers between reconciles.
 */

function noop(name: string, params: Record<string, unknown> = {}): AgentRun {
  return agentRun({
    metadata: { name, uid: `uid-${name}` },
    spec: { agent: 'noop', params: params as Record<string, never> },
  });
}

function audited(sink: FakeSink, overrides: Partial<RunAudit> = {}): RunAudit {
  return { sink, syncWaitMs: 60_000, deadlineMs: 600_000, ...overrides };
}

describe('AgentRunReconciler: an attempt from claim to outcome', () => {
  it('claims Running with the plan, runs the handler, writes Succeeded and tells the queue', async () => {
    const { cluster, reconciler, enqueued } = fakeReconciler();
    const key = cluster.add(noop('ok', { tag: 'a' }));
    const done = enqueued.next(key);
    expect(await reconciler.reconcile(key)).toEqual({});
    expect(cluster.reasonOf(key)).toBe('Running');
    expect(cluster.runs.get(key)?.status?.plan).toEqual({ tag: 'a' });
    await done;
    expect(cluster.reasonOf(key)).toBe('Succeeded');
    expect(cluster.runs.get(key)?.status?.artifacts).toEqual({ tag: 'a' });
    expect(cluster.events.map((e) => `${e.type}/${e.reason}`)).toEqual([
      'Normal/Started',
      'Normal/Succeeded',
    ]);
    // Nothing left to do for a finished run without TTL or finalizer.
    expect(await reconciler.reconcile(key)).toEqual({});
    expect(cluster.statusWrites).toHaveLength(2);
  });

  it('tells statusWrites of each status write while it is in flight (Events give way to them)', async () => {
    const tracked: string[] = [];
    const statusWrites = new WritePriority();
    const { cluster, reconciler, enqueued } = fakeReconciler({
      statusWrites: {
        track: (write) => {
          tracked.push(`in flight: ${statusWrites.inFlight + 1}`);
          return statusWrites.track(write);
        },
      },
    });
    const key = cluster.add(noop('tracked'));
    const done = enqueued.next(key);
    await reconciler.reconcile(key);
    await done;
    expect(tracked).toEqual(['in flight: 1', 'in flight: 1']);
    expect(statusWrites.inFlight).toBe(0);
  });

  it('a run naming no handler ends UnknownAgent in one write, without taking a slot', async () => {
    const { cluster, reconciler } = fakeReconciler();
    const key = cluster.add(agentRun({ spec: { agent: 'missing' } }));
    await reconciler.reconcile(key);
    expect(cluster.statusWrites.map((w) => w.status.phase)).toEqual(['Failed']);
    expect(cluster.reasonOf(key)).toBe('UnknownAgent');
    expect(reconciler.executor.busy).toBe(0);
  });

  it('trusts its own write over a cache that lags: a finished attempt is not taken for an interrupted one', async () => {
    const { cluster, reconciler, enqueued } = fakeReconciler();
    const key = cluster.add(noop('lag'));
    cluster.lagging = true;
    const done = enqueued.next(key);
    await reconciler.reconcile(key);
    await done;
    // The cache still has no status at all; the reconciler knows the run succeeded.
    expect(cluster.get(key)?.status).toBeUndefined();
    expect(await reconciler.reconcile(key)).toEqual({});
    expect(cluster.statusWrites.map((w) => w.status.phase)).toEqual(['Running', 'Succeeded']);
  });

  it('a claim decided on a stale resourceVersion is refused and frees its slot', async () => {
    const { cluster, reconciler } = fakeReconciler();
    const key = cluster.add(noop('stale'));
    // Someone else wrote the object after the cache saw it.
    const current = cluster.runs.get(key) as AgentRun;
    cluster.runs.set(key, { ...current, metadata: { ...current.metadata, resourceVersion: '7' } });
    await expect(reconciler.reconcile(key)).rejects.toThrow(/changed since it was read/);
    expect(reconciler.executor.busy).toBe(0);
    expect(cluster.statusWrites).toEqual([]);
  });

  it('an outcome the API server refused is kept and written by the next reconcile', async () => {
    const { cluster, reconciler, enqueued } = fakeReconciler();
    const key = cluster.add(noop('retry-write'));
    await reconciler.reconcile(key);
    cluster.failStatusWrites = 1;
    await enqueued.next(key);
    expect(cluster.reasonOf(key)).toBe('Running');
    await reconciler.reconcile(key);
    expect(cluster.reasonOf(key)).toBe('Succeeded');
    expect(cluster.statusWrites.map((w) => w.status.phase)).toEqual(['Running', 'Succeeded']);
  });

  it('a run ended before it started keeps the outcome it recorded when its status write fails', async () => {
    const sink = new FakeSink();
    let clock = Date.parse('2026-12-03T10:00:00Z');
    const { cluster, reconciler } = fakeReconciler({
      audit: audited(sink),
      now: () => new Date(clock),
    });
    // Rows commit as soon as they are queued.
    const write = sink.write.bind(sink);
    sink.write = (record) => {
      const committed = write(record);
      sink.settle(record.runId);
      return committed;
    };
    const run = noop('canceled-early');
    const key = cluster.add({ ...run, spec: { ...run.spec, cancel: true } });
    cluster.failStatusWrites = 1;
    await expect(reconciler.reconcile(key)).rejects.toThrow('status write failed');
    // The retry comes a minute later (the failed write took its timeout).
    clock += 60_000;
    await reconciler.reconcile(key);
    const finishedAt = cluster.runs.get(key)?.status?.finishedAt;
    expect(finishedAt).toBe('2026-12-03T10:00:00.000Z');
    // Every record of the row says the same time as the status.
    expect(new Set(sink.records.map((r) => r.finishedAt?.toISOString()))).toEqual(
      new Set([finishedAt]),
    );
  });

  it('a finalizer write answered after the outcome does not make the run look interrupted', async () => {
    const { cluster, reconciler, enqueued } = fakeReconciler({ finalizerAfterMs: 5 });
    let release = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const addFinalizer = cluster.addFinalizer.bind(cluster);
    cluster.addFinalizer = async (run, finalizer) => {
      const answer = await addFinalizer(run, finalizer);
      await gate; // the answer (status: Running) arrives late
      return answer;
    };
    const key = cluster.add(noop('late', { delayMs: 40 }));
    await reconciler.reconcile(key);
    cluster.lagging = true; // the cache still shows the claim
    await enqueued.next(key);
    expect(cluster.runs.get(key)?.status?.phase).toBe('Succeeded');
    release();
    await new Promise((resolve) => setImmediate(resolve));
    await reconciler.reconcile(key);
    expect(cluster.runs.get(key)?.status?.phase).toBe('Succeeded');
    expect(cluster.statusWrites.map((w) => w.status.phase)).toEqual(['Running', 'Succeeded']);
  });

  it('a run deleted while its handler runs (no finalizer yet) has the handler aborted', async () => {
    const { cluster, reconciler, enqueued } = fakeReconciler();
    const key = cluster.add(noop('gone', { delayMs: 600_000 }));
    await reconciler.reconcile(key);
    expect(reconciler.executor.isExecuting('uid-gone')).toBe(true);
    cluster.remove(key);
    const ended = enqueued.next(key);
    await reconciler.reconcile(key);
    await ended;
    expect(reconciler.executor.isExecuting('uid-gone')).toBe(false);
    expect(reconciler.executor.busy).toBe(0);
  });

  it('deletes a finished run once ttlSecondsAfterFinished has passed', async () => {
    const { cluster, reconciler, enqueued } = fakeReconciler();
    const run = agentRun({
      metadata: { name: 'ttl', uid: 'uid-ttl' },
      spec: { agent: 'noop', ttlSecondsAfterFinished: 0 },
    });
    const key = cluster.add(run);
    const done = enqueued.next(key);
    await reconciler.reconcile(key);
    await done;
    await reconciler.reconcile(key);
    expect(cluster.runs.has(key)).toBe(false);
  });
});

describe('AgentRunReconciler: the audit row of an outcome', () => {
  it('a row that commits within AUDIT_SYNC_WAIT_MS: Audited=True in the terminal write itself', async () => {
    const sink = new FakeSink();
    const { cluster, reconciler, enqueued } = fakeReconciler({ audit: audited(sink) });
    const key = cluster.add(noop('fast'));
    await reconciler.reconcile(key);
    sink.settle('uid-fast'); // the Running row
    // The terminal row commits as soon as it is queued.
    const original = sink.write.bind(sink);
    sink.write = (record) => {
      const committed = original(record);
      sink.settle(record.runId);
      return committed;
    };
    await enqueued.next(key);
    expect(cluster.reasonOf(key)).toBe('Succeeded');
    expect(cluster.conditionOf(key, 'Audited')?.status).toBe('True');
    expect(cluster.runs.get(key)?.metadata.finalizers ?? []).toEqual([]);
  });

  it('a slow database: the finalizer first, Audited=False, then True and release when the row lands', async () => {
    const sink = new FakeSink();
    const { cluster, reconciler, enqueued } = fakeReconciler({
      audit: audited(sink, { syncWaitMs: 0 }),
    });
    const key = cluster.add(noop('slow'));
    await reconciler.reconcile(key);
    await enqueued.next(key);
    expect(cluster.reasonOf(key)).toBe('Succeeded');
    expect(cluster.conditionOf(key, 'Audited')?.reason).toBe('Pending');
    // Held before the status said Pending, so a deletion cannot lose the row.
    expect(cluster.runs.get(key)?.metadata.finalizers).toEqual([FINALIZER]);
    // Still pending: wait until the deadline.
    expect(await reconciler.reconcile(key)).toEqual({ requeueAfterMs: 600_000 });

    const landed = enqueued.next(key);
    sink.settle('uid-slow');
    await landed;
    await reconciler.reconcile(key);
    expect(cluster.conditionOf(key, 'Audited')?.status).toBe('True');
    await reconciler.reconcile(key);
    expect(cluster.runs.get(key)?.metadata.finalizers).toEqual([]);
  });

  it('a failing database: the outcome does not wait the whole AUDIT_SYNC_WAIT_MS', async () => {
    const sink = new FakeSink();
    const { cluster, reconciler, enqueued } = fakeReconciler({ audit: audited(sink) });
    const key = cluster.add(noop('outage'));
    await reconciler.reconcile(key);
    const written = enqueued.next(key);
    // The terminal row is queued and the write waits for it; the first failed statement ends
    // the wait (syncWaitMs is a minute: the test would time out if it did not).
    setImmediate(() => sink.fail());
    await written;
    expect(cluster.conditionOf(key, 'Audited')?.reason).toBe('Pending');
  });

  it('past the deadline: Audited=False/Abandoned, an AuditLost Event, the loss counted, the run let go', async () => {
    const sink = new FakeSink();
    let lost = 0;
    const clock = { now: new Date() };
    const { cluster, reconciler, enqueued } = fakeReconciler({
      audit: audited(sink, { syncWaitMs: 0, deadlineMs: 1_000, onLost: () => lost++ }),
      now: () => clock.now,
    });
    const key = cluster.add(noop('lost'));
    await reconciler.reconcile(key);
    await enqueued.next(key);
    clock.now = new Date(clock.now.getTime() + 2_000);
    await reconciler.reconcile(key);
    expect(cluster.conditionOf(key, 'Audited')?.reason).toBe('Abandoned');
    expect(cluster.events.at(-1)).toMatchObject({ type: 'Warning', reason: 'AuditLost' });
    expect(lost).toBe(1);
    await reconciler.reconcile(key);
    expect(cluster.runs.get(key)?.metadata.finalizers).toEqual([]);
  });

  it('a run waiting to retry holds the finalizer: deleted then, it ends Canceled and recorded', async () => {
    const sink = new FakeSink();
    const { cluster, reconciler, enqueued } = fakeReconciler({ audit: audited(sink) });
    const key = cluster.add(
      agentRun({
        metadata: { name: 'retrying', uid: 'uid-retrying' },
        spec: {
          agent: 'noop',
          backoffLimit: 1,
          params: { fail: 'boom' } as unknown as Record<string, never>,
        },
      }),
    );
    await reconciler.reconcile(key);
    await enqueued.next(key);
    expect(cluster.reasonOf(key)).toBe('Retrying');
    // Held before the Retrying status: nothing executes now, and the row says running.
    expect(cluster.runs.get(key)?.metadata.finalizers).toEqual([FINALIZER]);
    expect(sink.records.map((r) => r.status)).toEqual(['running', 'running']);

    await cluster.delete(cluster.runs.get(key) as AgentRun);
    expect(cluster.runs.get(key)?.metadata.deletionTimestamp).toBeDefined();
    const original = sink.write.bind(sink);
    sink.write = (record) => {
      const committed = original(record);
      sink.settle(record.runId);
      return committed;
    };
    await reconciler.reconcile(key);
    expect(cluster.reasonOf(key)).toBe('Canceled');
    expect(sink.records.at(-1)).toMatchObject({ status: 'canceled', reason: 'Canceled' });
    await reconciler.reconcile(key);
    expect(cluster.runs.has(key)).toBe(false);
  });

  it('a run deleted between a failed attempt and its Retrying status gets a terminal Canceled row', async () => {
    const sink = new FakeSink();
    const { cluster, reconciler, enqueued } = fakeReconciler({ audit: audited(sink) });
    const key = cluster.add(
      agentRun({
        metadata: { name: 'gone-retrying', uid: 'uid-gone-retrying' },
        spec: {
          agent: 'noop',
          backoffLimit: 1,
          params: { fail: 'boom', delayMs: 20 } as unknown as Record<string, never>,
        },
      }),
    );
    await reconciler.reconcile(key);
    // Deleted (no finalizer yet) while the attempt runs; the attempt then fails.
    cluster.remove(key);
    await enqueued.next(key);
    expect(sink.records.map((r) => `${r.status}/${r.reason}`)).toEqual([
      'running/Running',
      'running/Retrying',
      'canceled/Canceled',
    ]);
    expect(sink.records.at(-1)).toMatchObject({ attempts: 1, error: 'boom' });
  });

  it('a finished run found without its row (a restart) gets it queued again', async () => {
    const sink = new FakeSink();
    const first = fakeReconciler();
    const key = first.cluster.add(noop('restart'));
    const done = first.enqueued.next(key);
    await first.reconciler.reconcile(key);
    await done;

    const { cluster, reconciler } = fakeReconciler({ audit: audited(sink) });
    cluster.add(first.cluster.runs.get(key) as AgentRun);
    expect(await reconciler.reconcile(key)).toEqual({ requeueAfterMs: 0 });
    expect(sink.records.map((r) => r.status)).toEqual(['succeeded']);
  });
});

describe('AgentRunReconciler: a claim whose answer was lost', () => {
  it('decides on the object as the API server has it, not on the cache it was decided on', async () => {
    const { cluster, reconciler } = fakeReconciler();
    const key = cluster.add(noop('lost-answer', { delayMs: 60_000 }));
    // The claim lands in the API server, but its answer never comes back (a timeout).
    cluster.lagging = true;
    cluster.loseNextAnswer = true;
    await expect(reconciler.reconcile(key)).rejects.toThrow('answer lost');
    expect(cluster.runs.get(key)?.status?.attempts).toBe(1);
    // The user cancels; the cache still shows the run as it was before the claim.
    const stored = cluster.runs.get(key);
    if (!stored) throw new Error('gone');
    cluster.runs.set(key, { ...stored, spec: { ...stored.spec, cancel: true } });
    await reconciler.reconcile(key);
    expect(cluster.reasonOf(key)).toBe('Canceled');
    const succeeded = cluster.runs
      .get(key)
      ?.status?.conditions?.find((c) => c.type === 'Succeeded');
    // Not "canceled before it started": attempt 1 was claimed, and its start time is kept.
    expect(succeeded?.message).toBe('canceled after attempt 1 was interrupted');
    expect(cluster.runs.get(key)?.status?.startedAt).toBeDefined();
  });
  it('keeps doubting while the read that would settle it fails too', async () => {
    const { cluster, reconciler } = fakeReconciler();
    const key = cluster.add(noop('lost-read', { delayMs: 60_000 }));
    cluster.lagging = true;
    cluster.loseNextAnswer = true;
    await expect(reconciler.reconcile(key)).rejects.toThrow('answer lost');
    const startedAt = cluster.runs.get(key)?.status?.startedAt;
    expect(startedAt).toBeDefined();
    const stored = cluster.runs.get(key);
    if (!stored) throw new Error('gone');
    cluster.runs.set(key, { ...stored, spec: { ...stored.spec, cancel: true } });
    // The outage goes on: the read fails as the claim did.
    cluster.failReads = 1;
    await expect(reconciler.reconcile(key)).rejects.toThrow('read failed');
    // The cache still shows the run before the claim; the next reconcile must look again.
    await reconciler.reconcile(key);
    const succeeded = cluster.runs
      .get(key)
      ?.status?.conditions?.find((c) => c.type === 'Succeeded');
    expect(succeeded?.message).toBe('canceled after attempt 1 was interrupted');
    expect(cluster.runs.get(key)?.status?.startedAt).toBe(startedAt);
  });
});
