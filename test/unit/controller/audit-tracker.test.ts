import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AuditReason } from '../../../src/api/reasons.ts';
import { AuditTracker } from '../../../src/controller/audit-tracker.ts';
import { withAudited } from '../../../src/controller/run-status.ts';
import { FakeSink } from './fake-audit-sink.ts';
import { agentRun, finished, running, T0, UID, withStatus } from './fixtures.ts';

const KEY = 'agents/check-site';
const SYNC_WAIT_MS = 1_000;
const ended = finished(running(agentRun(), 1, T0), 'Succeeded', T0);
const status = ended.status ?? {};

function tracker(sink: FakeSink) {
  const enqueued: string[] = [];
  const audit = new AuditTracker(
    { sink, syncWaitMs: SYNC_WAIT_MS, deadlineMs: 60_000 },
    (key) => enqueued.push(key),
    () => T0,
  );
  return { audit, enqueued };
}

describe('AuditTracker', () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it('an outcome whose row commits within syncWaitMs is durable', async () => {
    const sink = new FakeSink();
    const { audit, enqueued } = tracker(sink);
    const recorded = audit.record(KEY, ended, status);
    sink.settle(UID);
    expect(await recorded).toBe(true);
    expect(audit.view(ended)).toEqual({
      committed: true,
      pending: false,
      deadlineMs: 60_000,
      queuedAtMs: T0.getTime(),
    });
    // Nobody waits for it: the status will say Audited=True.
    expect(enqueued).toEqual([]);
  });

  it('a row that misses syncWaitMs: not durable, and later outcomes stop waiting until one commits', async () => {
    const sink = new FakeSink();
    const { audit, enqueued } = tracker(sink);
    const first = audit.record(KEY, ended, status);
    await vi.advanceTimersByTimeAsync(SYNC_WAIT_MS);
    expect(await first).toBe(false);

    const other = withStatus(agentRun({ metadata: { name: 'other', uid: 'uid-other' } }), status);
    // Answers at once: no timer needed.
    expect(await audit.record('agents/other', other, status)).toBe(false);

    // The first row lands: the run awaited is looked at again, and waiting resumes.
    sink.settle(UID);
    await vi.advanceTimersByTimeAsync(0);
    expect(enqueued).toEqual([KEY]);
    const third = audit.record('agents/other', other, status);
    sink.settle('uid-other');
    expect(await third).toBe(true);
  });

  it('a failed statement ends the wait before syncWaitMs', async () => {
    const sink = new FakeSink();
    const { audit } = tracker(sink);
    const recorded = audit.record(KEY, ended, status);
    sink.fail();
    expect(await recorded).toBe(false);
    // And while the sink says it is failing, the next outcome does not wait at all.
    expect(await audit.record(KEY, ended, status)).toBe(false);
  });

  it('rows of attempts in progress are queued but start no deadline', async () => {
    const sink = new FakeSink();
    const { audit } = tracker(sink);
    const claimed = running(agentRun(), 1, T0);
    void audit.queue(KEY, claimed, claimed.status ?? {});
    expect(audit.view(claimed)).toMatchObject({ pending: true, queuedAtMs: undefined });
  });

  it('a status that says Audited=True ends the bookkeeping of the run', async () => {
    const sink = new FakeSink();
    const { audit } = tracker(sink);
    const recorded = audit.record(KEY, ended, status);
    sink.settle(UID);
    await recorded;
    const done = withStatus(
      ended,
      withAudited(status, ended, AuditReason.Recorded, 'the audit row is committed', T0),
    );
    expect(audit.view(done)).toMatchObject({ committed: false, queuedAtMs: undefined });
  });
});
