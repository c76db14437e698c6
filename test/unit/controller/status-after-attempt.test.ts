import { describe, expect, it } from 'vitest';
import { type AgentRun, agentRunSchema } from '../../../src/api/agentrun.ts';
import { type Condition, findCondition, rfc3339 } from '../../../src/api/conditions.ts';
import { decide } from '../../../src/controller/decide.ts';
import {
  type AttemptResult,
  attemptFailure,
  attemptResult,
  retryDelayMs,
  STATUS_ARTIFACTS_MAX_BYTES,
  statusAfterAttempt,
} from '../../../src/controller/run-status.ts';
import {
  agentRun,
  at,
  conditionSummary,
  GENERATION,
  HANDLERS,
  MINUTE,
  PLAN,
  PREPARED,
  RETRY,
  running,
  SECOND,
  T0,
  UID,
  withStatus,
} from './fixtures.ts';

describe('retryDelayMs', () => {
  it.each<[number, number, number, number]>([
    [1, 10_000, 360_000, 10_000],
    [2, 10_000, 360_000, 20_000],
    [3, 10_000, 360_000, 40_000],
    [4, 10_000, 360_000, 80_000],
    [5, 10_000, 360_000, 160_000],
    [6, 10_000, 360_000, 320_000],
    [7, 10_000, 360_000, 360_000],
    [20, 10_000, 360_000, 360_000],
    [0, 10_000, 360_000, 10_000],
    [-3, 10_000, 360_000, 10_000],
    [1, 500_000, 360_000, 360_000],
    [3, 1, 1_000_000, 4],
  ])('retry %i, base %i, max %i -> %i', (retry, baseMs, maxMs, expected) => {
    expect(retryDelayMs(retry, baseMs, maxMs)).toBe(expected);
  });
});

describe('statusAfterAttempt', () => {
  const ENDED = at(1250);

  function claimed(spec: { backoffLimit?: number; dryRun?: boolean }, attempt = 1): AgentRun {
    return running(agentRun({ spec }), attempt, T0);
  }

  /** The four conditions, all with the same reason and message (observedGeneration 3). */
  function conditions(
    statuses: [string, string, string, string],
    reason: string,
    message: string,
    times: [Date, Date, Date, Date],
  ): Condition[] {
    return ['Succeeded', 'Ready', 'Reconciling', 'Stalled'].map((type, i) => ({
      type,
      status: statuses[i] as Condition['status'],
      reason,
      message,
      observedGeneration: GENERATION,
      lastTransitionTime: rfc3339(times[i] as Date),
    }));
  }

  it('succeeded (not a dry run): the whole terminal status', () => {
    const run = claimed({ dryRun: false });
    const status = statusAfterAttempt(
      run,
      { kind: 'succeeded', artifacts: { ok: true, code: 200 } },
      ENDED,
      RETRY,
    );
    expect(status).toStrictEqual({
      runId: UID,
      phase: 'Succeeded',
      observedGeneration: GENERATION,
      attempts: 1,
      startedAt: T0.toISOString(),
      finishedAt: ENDED.toISOString(),
      durationMs: 1250,
      duration: '1.25s',
      plan: PLAN,
      artifacts: { ok: true, code: 200 },
      conditions: conditions(
        ['True', 'True', 'False', 'False'],
        'Succeeded',
        'attempt 1 succeeded',
        [at(1000), at(1000), at(1000), T0],
      ),
    });
  });

  it.each<[boolean, string]>([
    [true, 'attempt 1 succeeded (dry run)'],
    [false, 'attempt 1 succeeded'],
  ])('succeeded, dryRun=%s -> message %j', (dryRun, message) => {
    const status = statusAfterAttempt(
      claimed({ dryRun }),
      { kind: 'succeeded', artifacts: {} },
      ENDED,
      RETRY,
    );
    expect(findCondition(status.conditions, 'Succeeded')?.message).toBe(message);
    expect(status.artifacts).toStrictEqual({});
  });

  it('succeeded on a retry: clears the previous error, counts the attempt', () => {
    const first = claimed({ backoffLimit: 2, dryRun: false });
    const waiting = withStatus(
      first,
      statusAfterAttempt(first, { kind: 'failed', error: 'flaky' }, at(SECOND), RETRY),
    );
    const second = running(waiting, 2, at(11 * SECOND));
    expect(second.status?.error).toBe('flaky');
    const status = statusAfterAttempt(
      second,
      { kind: 'succeeded', artifacts: { ok: true } },
      at(12 * SECOND),
      RETRY,
    );
    expect(status.error).toBeUndefined();
    expect('error' in status).toBe(false);
    expect(status.attempts).toBe(2);
    expect(status.durationMs).toBe(12_000);
    expect(status.duration).toBe('12s');
    expect(findCondition(status.conditions, 'Succeeded')?.message).toBe('attempt 2 succeeded');
  });

  it('succeeded with large artifacts -> the capped marker', () => {
    const big = { body: 'x'.repeat(STATUS_ARTIFACTS_MAX_BYTES) };
    const status = statusAfterAttempt(
      claimed({}),
      { kind: 'succeeded', artifacts: big },
      ENDED,
      RETRY,
    );
    expect(status.artifacts).toMatchObject({ truncated: true, bytes: 4096 + 11 });
  });

  it('failed with no retries (backoffLimit=0) -> Failed', () => {
    const status = statusAfterAttempt(claimed({}), { kind: 'failed', error: 'boom' }, ENDED, RETRY);
    expect(status).toStrictEqual({
      runId: UID,
      phase: 'Failed',
      observedGeneration: GENERATION,
      attempts: 1,
      startedAt: T0.toISOString(),
      finishedAt: ENDED.toISOString(),
      durationMs: 1250,
      duration: '1.25s',
      plan: PLAN,
      error: 'boom',
      conditions: conditions(
        ['False', 'False', 'False', 'True'],
        'Failed',
        'attempt 1 failed: boom',
        [at(1000), T0, at(1000), at(1000)],
      ),
    });
  });

  it('failed with retries left -> Retrying at now + retryDelayMs', () => {
    const status = statusAfterAttempt(
      claimed({ backoffLimit: 2 }),
      { kind: 'failed', error: 'boom' },
      ENDED,
      RETRY,
    );
    const retryAt = at(1250 + 10_000).toISOString();
    expect(retryAt).toBe('2026-03-01T10:00:11.250Z');
    expect(status).toStrictEqual({
      runId: UID,
      phase: 'Running',
      observedGeneration: GENERATION,
      attempts: 1,
      startedAt: T0.toISOString(),
      nextRetryAt: retryAt,
      plan: PLAN,
      error: 'boom',
      conditions: conditions(
        ['Unknown', 'False', 'True', 'False'],
        'Retrying',
        `attempt 1 of 3 failed, retrying at ${retryAt}: boom`,
        [T0, T0, T0, T0],
      ),
    });
  });

  it.each<[number, number, number]>([
    // backoffLimit, failed attempt, expected delay (base 10s, cap 6m)
    [5, 1, 10_000],
    [5, 2, 20_000],
    [5, 3, 40_000],
    [5, 5, 160_000],
    [10, 6, 320_000],
    [10, 7, 360_000],
    [10, 10, 360_000],
  ])('backoffLimit=%i, attempt %i fails -> retry after %i ms', (backoffLimit, attempt, delay) => {
    const now = at(MINUTE);
    const status = statusAfterAttempt(
      claimed({ backoffLimit }, attempt),
      { kind: 'failed', error: 'boom' },
      now,
      RETRY,
    );
    expect(status.nextRetryAt).toBe(new Date(now.getTime() + delay).toISOString());
    expect(status.phase).toBe('Running');
    expect(findCondition(status.conditions, 'Succeeded')?.reason).toBe('Retrying');
  });

  it.each<[number, number, string, string]>([
    [0, 1, 'Failed', 'attempt 1 failed: boom'],
    [1, 2, 'BackoffLimitExceeded', 'all 2 attempts failed (backoffLimit=1); last error: boom'],
    [3, 4, 'BackoffLimitExceeded', 'all 4 attempts failed (backoffLimit=3); last error: boom'],
  ])('backoffLimit=%i, last attempt %i fails -> %s', (backoffLimit, attempt, reason, message) => {
    const status = statusAfterAttempt(
      claimed({ backoffLimit }, attempt),
      { kind: 'failed', error: 'boom' },
      ENDED,
      RETRY,
    );
    expect(status.phase).toBe('Failed');
    expect(status.error).toBe('boom');
    expect(status.attempts).toBe(attempt);
    expect('nextRetryAt' in status).toBe(false);
    expect(conditionSummary(status)).toStrictEqual({
      Succeeded: `False/${reason}`,
      Ready: `False/${reason}`,
      Reconciling: `False/${reason}`,
      Stalled: `True/${reason}`,
    });
    expect(findCondition(status.conditions, 'Succeeded')?.message).toBe(message);
  });

  it.each<[string, number, AttemptResult, string, string, string | undefined]>([
    [
      'Canceled',
      0,
      { kind: 'aborted', reason: 'Canceled', message: 'canceled while running' },
      'Canceled',
      'Canceled',
      undefined,
    ],
    [
      'Canceled, retries left: no retry',
      3,
      { kind: 'aborted', reason: 'Canceled', message: 'deleted while running' },
      'Canceled',
      'Canceled',
      undefined,
    ],
    [
      'TimedOut',
      0,
      { kind: 'aborted', reason: 'TimedOut', message: 'exceeded timeoutSeconds=600' },
      'Failed',
      'TimedOut',
      'exceeded timeoutSeconds=600',
    ],
    [
      'TimedOut, retries left: no retry',
      3,
      { kind: 'aborted', reason: 'TimedOut', message: 'exceeded timeoutSeconds=600' },
      'Failed',
      'TimedOut',
      'exceeded timeoutSeconds=600',
    ],
  ])('aborted %s -> terminal', (_name, backoffLimit, result, phase, reason, error) => {
    const status = statusAfterAttempt(claimed({ backoffLimit }), result, ENDED, RETRY);
    const message = result.kind === 'aborted' ? result.message : '';
    expect(status.phase).toBe(phase);
    // A cancellation is not a failure of the attempt: no error is recorded for it.
    expect(status.error).toBe(error);
    expect('error' in status).toBe(error !== undefined);
    expect(status.finishedAt).toBe(ENDED.toISOString());
    expect(status.durationMs).toBe(1250);
    expect('nextRetryAt' in status).toBe(false);
    expect(conditionSummary(status)).toStrictEqual({
      Succeeded: `False/${reason}`,
      Ready: `False/${reason}`,
      Reconciling: `False/${reason}`,
      Stalled: `True/${reason}`,
    });
    expect(findCondition(status.conditions, 'Succeeded')?.message).toBe(message);
  });

  it('aborted Canceled: the whole terminal status, without an error', () => {
    const status = statusAfterAttempt(
      claimed({}),
      { kind: 'aborted', reason: 'Canceled', message: 'canceled while running' },
      ENDED,
      RETRY,
    );
    expect(status).toStrictEqual({
      runId: UID,
      phase: 'Canceled',
      observedGeneration: GENERATION,
      attempts: 1,
      startedAt: T0.toISOString(),
      finishedAt: ENDED.toISOString(),
      durationMs: 1250,
      duration: '1.25s',
      plan: PLAN,
      conditions: conditions(
        ['False', 'False', 'False', 'True'],
        'Canceled',
        'canceled while running',
        [at(1000), T0, at(1000), at(1000)],
      ),
    });
  });

  it("aborted Canceled on a retry: the previous attempt's error is left as it was", () => {
    const first = claimed({ backoffLimit: 2 });
    const waiting = withStatus(
      first,
      statusAfterAttempt(first, { kind: 'failed', error: 'flaky' }, at(SECOND), RETRY),
    );
    const second = running(waiting, 2, at(11 * SECOND));
    const status = statusAfterAttempt(
      second,
      { kind: 'aborted', reason: 'Canceled', message: 'canceled while running' },
      at(12 * SECOND),
      RETRY,
    );
    expect(status.phase).toBe('Canceled');
    expect(status.attempts).toBe(2);
    expect(status.error).toBe('flaky');
    expect(findCondition(status.conditions, 'Succeeded')?.message).toBe('canceled while running');
  });

  it('aborted by Shutdown with retries left -> Retrying immediately', () => {
    const status = statusAfterAttempt(
      claimed({ backoffLimit: 1 }),
      { kind: 'aborted', reason: 'Shutdown', message: 'operator shutting down' },
      ENDED,
      RETRY,
    );
    const error = 'attempt 1 was interrupted: operator shutting down';
    expect(status.phase).toBe('Running');
    expect(status.error).toBe(error);
    expect(status.nextRetryAt).toBe(ENDED.toISOString());
    expect(status.attempts).toBe(1);
    expect('finishedAt' in status).toBe(false);
    expect(conditionSummary(status)).toStrictEqual({
      Succeeded: 'Unknown/Retrying',
      Ready: 'False/Retrying',
      Reconciling: 'True/Retrying',
      Stalled: 'False/Retrying',
    });
    expect(findCondition(status.conditions, 'Succeeded')?.message).toBe(
      `attempt 1 of 2 failed, retrying at ${ENDED.toISOString()}: ${error}`,
    );
    // The next reconcile starts attempt 2 at once.
    const run = withStatus(claimed({ backoffLimit: 1 }), status);
    expect(decide({ handlers: HANDLERS, run, executing: false, now: ENDED })).toStrictEqual({
      type: 'start',
      prepared: PREPARED,
      attempt: 2,
    });
  });

  it.each<[number, number]>([
    [0, 1],
    [2, 3],
  ])('aborted by Shutdown, backoffLimit=%i, last attempt %i -> Interrupted', (backoffLimit, n) => {
    const status = statusAfterAttempt(
      claimed({ backoffLimit }, n),
      { kind: 'aborted', reason: 'Shutdown', message: 'operator shutting down' },
      ENDED,
      RETRY,
    );
    const error = `attempt ${n} was interrupted: operator shutting down`;
    expect(status.phase).toBe('Failed');
    expect(status.error).toBe(error);
    expect(status.finishedAt).toBe(ENDED.toISOString());
    expect(conditionSummary(status)).toStrictEqual({
      Succeeded: 'False/Interrupted',
      Ready: 'False/Interrupted',
      Reconciling: 'False/Interrupted',
      Stalled: 'True/Interrupted',
    });
    expect(findCondition(status.conditions, 'Succeeded')?.message).toBe(error);
  });

  it('a long error is truncated on the status and in the Retrying message', () => {
    const error = 'e'.repeat(5000);
    const retryingNow = statusAfterAttempt(
      claimed({ backoffLimit: 1 }),
      { kind: 'failed', error },
      ENDED,
      RETRY,
    );
    expect(retryingNow.error).toHaveLength(2048);
    expect(retryingNow.error?.endsWith('... [truncated]')).toBe(true);
    const message = findCondition(retryingNow.conditions, 'Succeeded')?.message ?? '';
    expect(message).toHaveLength(1024);
    expect(message.endsWith('e... [truncated]')).toBe(true);

    const failed = statusAfterAttempt(claimed({}), { kind: 'failed', error }, ENDED, RETRY);
    expect(failed.error).toHaveLength(2048);
    expect(findCondition(failed.conditions, 'Succeeded')?.message).toBe(
      `attempt 1 failed: ${error}`,
    );
  });

  it('never mutates the run it is given', () => {
    const run = claimed({ backoffLimit: 1 });
    const before = structuredClone(run);
    statusAfterAttempt(run, { kind: 'failed', error: 'boom' }, ENDED, RETRY);
    statusAfterAttempt(run, { kind: 'succeeded', artifacts: { a: 1 } }, ENDED, RETRY);
    expect(run).toStrictEqual(before);
  });

  it.each<[string, AttemptResult, number]>([
    ['succeeded', { kind: 'succeeded', artifacts: { body: 'y'.repeat(10_000) } }, 0],
    ['failed, retrying', { kind: 'failed', error: 'z'.repeat(40_000) }, 1],
    ['failed, terminal', { kind: 'failed', error: 'z'.repeat(40_000) }, 0],
    ['failed, exhausted', { kind: 'failed', error: 'z'.repeat(40_000) }, -1],
    ['aborted Canceled', { kind: 'aborted', reason: 'Canceled', message: 'c' }, 0],
    ['aborted TimedOut', { kind: 'aborted', reason: 'TimedOut', message: 't' }, 0],
    ['aborted Shutdown, retry', { kind: 'aborted', reason: 'Shutdown', message: 's' }, 1],
    ['aborted Shutdown, final', { kind: 'aborted', reason: 'Shutdown', message: 's' }, 0],
  ])('%s: the written status passes the CRD schema', (_name, result, backoffLimit) => {
    // -1: backoffLimit 2 with the third (last) attempt running.
    const run = backoffLimit < 0 ? claimed({ backoffLimit: 2 }, 3) : claimed({ backoffLimit }, 1);
    const status = statusAfterAttempt(run, result, ENDED, RETRY);
    expect(agentRunSchema.safeParse(withStatus(run, status)).success).toBe(true);
  });
});

describe('attemptResult: what a handler resolved with', () => {
  it('a JSON object succeeds, unchanged', () => {
    const artifacts = { ok: true, nested: { list: [1, 'two', null] } };
    expect(attemptResult(artifacts)).toStrictEqual({ kind: 'succeeded', artifacts });
  });

  it.each<[string, unknown, string]>([
    ['undefined', undefined, 'the handler returned undefined; artifacts must be a JSON object'],
    ['null', null, 'the handler returned null; artifacts must be a JSON object'],
    ['an array', [1], 'the handler returned an array; artifacts must be a JSON object'],
    ['a string', 'done', 'the handler returned string; artifacts must be a JSON object'],
    [
      'a BigInt inside',
      { n: 1n },
      "the handler's artifacts is not JSON: Do not know how to serialize a BigInt",
    ],
  ])('%s fails the attempt with a message that says why', (_what, value, error) => {
    expect(attemptResult(value)).toStrictEqual({ kind: 'failed', error });
  });

  it('artifacts nested deeper than the audit log keeps fail the attempt, as do cycles', () => {
    let deep: Record<string, unknown> = {};
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    for (const value of [deep, cyclic]) {
      expect(attemptResult(value)).toStrictEqual({
        kind: 'failed',
        error: "the handler's artifacts is nested more than 64 levels deep; the limit is 64",
      });
    }
  });

  it('the failure it makes ends the run Failed with that error', () => {
    const run = running(agentRun(), 1, T0);
    const status = statusAfterAttempt(run, attemptResult([1]), at(SECOND), RETRY);
    expect(status.phase).toBe('Failed');
    expect(status.error).toBe('the handler returned an array; artifacts must be a JSON object');
  });
});

describe('attemptFailure: what a handler rejected with', () => {
  it.each<[string, unknown, string]>([
    ['an Error', new Error('disk full'), 'disk full'],
    ['a string', 'no route', 'no route'],
    ['undefined', undefined, 'the handler failed without saying why (it threw undefined)'],
    ['null', null, 'the handler failed without saying why (it threw null)'],
    ['an empty string', '', 'the handler failed without saying why (it threw "")'],
    ['blank text', '  ', 'the handler failed without saying why (it threw "  ")'],
  ])('%s', (_what, thrown, error) => {
    expect(attemptFailure(thrown)).toStrictEqual({ kind: 'failed', error });
  });
});

describe('statusAfterAttempt: text PostgreSQL cannot store', () => {
  it('stores NUL and lone surrogates of an error as U+FFFD, in the error and the message', () => {
    const failed: AttemptResult = { kind: 'failed', error: 'boom\u0000bang \ud800' };
    for (const backoffLimit of [0, 1]) {
      const run = running(agentRun({ spec: { backoffLimit } }), 1, T0);
      const status = statusAfterAttempt(run, failed, at(SECOND), RETRY);
      expect(status.error).toBe('boom\ufffdbang \ufffd');
      const message = findCondition(status.conditions, 'Succeeded')?.message ?? '';
      expect(message).toContain('boom\ufffdbang \ufffd');
      expect(message.isWellFormed() && !message.includes('\u0000')).toBe(true);
    }
  });
});
