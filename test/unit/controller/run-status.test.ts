import { describe, expect, it } from 'vitest';
import { type AgentRun, type AgentRunStatus, agentRunSchema } from '../../../src/api/agentrun.ts';
import { type Condition, findCondition, rfc3339 } from '../../../src/api/conditions.ts';
import type { TerminalReason } from '../../../src/api/reasons.ts';
import {
  capArtifacts,
  deadline,
  isTerminal,
  maxAttempts,
  progress,
  queuedStatus,
  retryingStatus,
  runningStatus,
  STATUS_ARTIFACTS_MAX_BYTES,
  terminalStatus,
  withAudited,
} from '../../../src/controller/run-status.ts';
import {
  agentRun,
  at,
  conditionSummary,
  finished,
  GENERATION,
  MINUTE,
  PLAN,
  retrying,
  running,
  SECOND,
  T0,
  TERMINAL_REASONS,
  transitionTimes,
  UID,
  withStatus,
} from './fixtures.ts';

const MARKER = '... [truncated]';

describe('runningStatus', () => {
  it('claims attempt 1 on a fresh run: the whole status', () => {
    const status = runningStatus(agentRun(), 1, PLAN, T0);
    const condition = (type: string, s: Condition['status']): Condition => ({
      type,
      status: s,
      reason: 'Running',
      message: 'attempt 1 running',
      observedGeneration: GENERATION,
      lastTransitionTime: '2026-03-01T10:00:00Z',
    });
    expect(status).toStrictEqual({
      runId: UID,
      phase: 'Running',
      observedGeneration: GENERATION,
      attempts: 1,
      startedAt: '2026-03-01T10:00:00.000Z',
      plan: PLAN,
      conditions: [
        condition('Succeeded', 'Unknown'),
        condition('Ready', 'False'),
        condition('Reconciling', 'True'),
        condition('Stalled', 'False'),
      ],
    });
  });

  it.each<[string, number, number, string | undefined, string]>([
    ['no retries', 0, 1, undefined, 'attempt 1 running'],
    ['with retries', 2, 1, undefined, 'attempt 1 of 3 running'],
    ['the last retry', 2, 3, undefined, 'attempt 3 of 3 running'],
    [
      'with a note',
      2,
      2,
      'attempt 1 was interrupted',
      'attempt 2 of 3 running (attempt 1 was interrupted)',
    ],
    ['an empty note is left out', 2, 2, '', 'attempt 2 of 3 running'],
    ['a note without retries', 0, 1, 'why not', 'attempt 1 running (why not)'],
  ])('message: %s', (_name, backoffLimit, attempt, note, message) => {
    const status = runningStatus(agentRun({ spec: { backoffLimit } }), attempt, PLAN, T0, note);
    for (const c of status.conditions ?? []) expect(c.message).toBe(message);
  });

  it('keeps the first startedAt across attempts, sets attempts and plan, clears nextRetryAt', () => {
    const base = agentRun({ spec: { backoffLimit: 2 } });
    const first = running(base, 1, T0);
    const waiting = retrying(first, at(20 * SECOND), at(10 * SECOND));
    expect(waiting.status?.nextRetryAt).toBe(at(20 * SECOND).toISOString());
    const plan2 = { steps: ['again'] };
    const second = runningStatus(waiting, 2, plan2, at(20 * SECOND));
    expect(second.startedAt).toBe(T0.toISOString());
    expect(second.attempts).toBe(2);
    expect(second.plan).toStrictEqual(plan2);
    expect(second.phase).toBe('Running');
    expect('nextRetryAt' in second).toBe(false);
    // The last attempt's error stays visible while the next one runs.
    expect(second.error).toBe('boom');
  });

  it('runId is the uid and observedGeneration the current generation', () => {
    const run = agentRun({
      metadata: { uid: 'new-uid', generation: 7 },
      status: { runId: 'stale', observedGeneration: 2 },
    });
    const status = runningStatus(run, 1, PLAN, T0);
    expect(status.runId).toBe('new-uid');
    expect(status.observedGeneration).toBe(7);
    for (const c of status.conditions ?? []) expect(c.observedGeneration).toBe(7);
  });

  it('without metadata.generation: no observedGeneration anywhere', () => {
    const run = agentRun();
    delete run.metadata.generation;
    const status = runningStatus(run, 1, PLAN, T0);
    expect('observedGeneration' in status).toBe(false);
    for (const c of status.conditions ?? []) expect('observedGeneration' in c).toBe(false);
  });

  it('keeps conditions of other types, in place', () => {
    const foreign: Condition = {
      type: 'Archived',
      status: 'True',
      reason: 'Stored',
      message: '',
      lastTransitionTime: '2026-01-01T00:00:00Z',
    };
    const status = runningStatus(agentRun({ status: { conditions: [foreign] } }), 1, PLAN, T0);
    expect(status.conditions?.map((c) => c.type)).toEqual([
      'Archived',
      'Succeeded',
      'Ready',
      'Reconciling',
      'Stalled',
    ]);
    expect(status.conditions?.[0]).toStrictEqual(foreign);
  });

  it('does not mutate the run', () => {
    const run = retrying(running(agentRun({ spec: { backoffLimit: 1 } }), 1, T0), at(MINUTE), T0);
    const before = structuredClone(run);
    runningStatus(run, 2, PLAN, at(MINUTE));
    expect(run).toStrictEqual(before);
  });
});

describe('queuedStatus', () => {
  const message = 'waiting for a free handler slot: 10 of MAX_CONCURRENT_RUNS=10 in use';

  it('says Pending/Queued and why, and nothing a start would say', () => {
    const status = queuedStatus(agentRun(), message, T0);
    const condition = (type: string, s: Condition['status']): Condition => ({
      type,
      status: s,
      reason: 'Queued',
      message,
      observedGeneration: GENERATION,
      lastTransitionTime: '2026-03-01T10:00:00Z',
    });
    expect(status).toStrictEqual({
      runId: UID,
      phase: 'Pending',
      observedGeneration: GENERATION,
      conditions: [
        condition('Succeeded', 'Unknown'),
        condition('Ready', 'False'),
        condition('Reconciling', 'True'),
        condition('Stalled', 'False'),
      ],
    });
  });

  it('the claim that follows replaces reason and message, and keeps the transition times of unchanged condition statuses', () => {
    const queued = withStatus(agentRun(), queuedStatus(agentRun(), message, T0));
    const claimed = runningStatus(queued, 1, PLAN, at(5 * SECOND));
    expect(claimed.phase).toBe('Running');
    expect(conditionSummary(claimed)).toMatchObject({ Succeeded: 'Unknown/Running' });
    expect(findCondition(claimed.conditions, 'Succeeded')?.message).toBe('attempt 1 running');
    // Unknown stays Unknown: per metav1.Condition the transition time is when the status changed.
    expect(transitionTimes(claimed)).toStrictEqual(transitionTimes(queued.status));
    expect(claimed.startedAt).toBe(at(5 * SECOND).toISOString());
  });
});

describe('retryingStatus', () => {
  it('keeps attempts and startedAt, sets error and nextRetryAt, phase Running', () => {
    const run = running(agentRun({ spec: { backoffLimit: 4 } }), 2, T0);
    const status = retryingStatus(run, 'timeout talking to x', at(30 * SECOND), at(10 * SECOND));
    expect(status).toMatchObject({
      runId: UID,
      phase: 'Running',
      attempts: 2,
      startedAt: T0.toISOString(),
      nextRetryAt: '2026-03-01T10:00:30.000Z',
      error: 'timeout talking to x',
      plan: PLAN,
    });
    expect(findCondition(status.conditions, 'Succeeded')?.message).toBe(
      'attempt 2 of 5 failed, retrying at 2026-03-01T10:00:30.000Z: timeout talking to x',
    );
  });
});

describe('conditions (kstatus semantics)', () => {
  const base = agentRun({ spec: { backoffLimit: 1 } });
  const started = running(base, 1, T0);

  function ended(reason: TerminalReason): AgentRunStatus {
    return terminalStatus(started, { reason, message: reason }, at(SECOND));
  }

  it.each<[string, AgentRunStatus, string, Record<string, string>]>([
    [
      'Queued',
      queuedStatus(base, 'waiting for a free handler slot', T0),
      'Pending',
      {
        Succeeded: 'Unknown/Queued',
        Ready: 'False/Queued',
        Reconciling: 'True/Queued',
        Stalled: 'False/Queued',
      },
    ],
    [
      'Running',
      runningStatus(base, 1, PLAN, T0),
      'Running',
      {
        Succeeded: 'Unknown/Running',
        Ready: 'False/Running',
        Reconciling: 'True/Running',
        Stalled: 'False/Running',
      },
    ],
    [
      'Retrying',
      retryingStatus(started, 'boom', at(MINUTE), at(SECOND)),
      'Running',
      {
        Succeeded: 'Unknown/Retrying',
        Ready: 'False/Retrying',
        Reconciling: 'True/Retrying',
        Stalled: 'False/Retrying',
      },
    ],
    [
      'Succeeded',
      ended('Succeeded'),
      'Succeeded',
      {
        Succeeded: 'True/Succeeded',
        Ready: 'True/Succeeded',
        Reconciling: 'False/Succeeded',
        Stalled: 'False/Succeeded',
      },
    ],
    ...(
      [
        'Failed',
        'TimedOut',
        'UnknownAgent',
        'InvalidParams',
        'BackoffLimitExceeded',
        'Interrupted',
      ] as const
    ).map((reason): [string, AgentRunStatus, string, Record<string, string>] => [
      reason,
      ended(reason),
      'Failed',
      {
        Succeeded: `False/${reason}`,
        Ready: `False/${reason}`,
        Reconciling: `False/${reason}`,
        Stalled: `True/${reason}`,
      },
    ]),
    [
      'Canceled',
      ended('Canceled'),
      'Canceled',
      {
        Succeeded: 'False/Canceled',
        Ready: 'False/Canceled',
        Reconciling: 'False/Canceled',
        Stalled: 'True/Canceled',
      },
    ],
  ])('%s', (_name, status, phase, expected) => {
    expect(status.phase).toBe(phase);
    expect(conditionSummary(status)).toStrictEqual(expected);
    expect(status.conditions?.map((c) => c.type)).toEqual([
      'Succeeded',
      'Ready',
      'Reconciling',
      'Stalled',
    ]);
    expect(agentRunSchema.safeParse(withStatus(base, status)).success).toBe(true);
  });

  it('covers every terminal reason', () => {
    expect(TERMINAL_REASONS).toHaveLength(10);
    for (const reason of TERMINAL_REASONS) {
      const status = ended(reason);
      expect(isTerminal(status)).toBe(true);
      expect(findCondition(status.conditions, 'Ready')?.status).toBe(
        reason === 'Succeeded' ? 'True' : 'False',
      );
      expect(findCondition(status.conditions, 'Stalled')?.status).toBe(
        reason === 'Succeeded' ? 'False' : 'True',
      );
      expect(findCondition(status.conditions, 'Reconciling')?.status).toBe('False');
    }
  });

  describe('lastTransitionTime moves only when the status flips', () => {
    const T0s = rfc3339(T0);
    const attempt1 = running(base, 1, T0);
    const waiting = retrying(attempt1, at(10 * SECOND), at(5 * SECOND));
    const attempt2 = running(waiting, 2, at(10 * SECOND), 'again');

    it('Running -> Retrying -> Running keeps every transition time', () => {
      const all = { Succeeded: T0s, Ready: T0s, Reconciling: T0s, Stalled: T0s };
      expect(transitionTimes(attempt1.status)).toStrictEqual(all);
      expect(transitionTimes(waiting.status)).toStrictEqual(all);
      expect(transitionTimes(attempt2.status)).toStrictEqual(all);
      // ... while reason and message do follow.
      expect(findCondition(attempt2.status?.conditions, 'Succeeded')).toMatchObject({
        reason: 'Running',
        message: 'attempt 2 of 2 running (again)',
      });
    });

    it.each<[TerminalReason, Record<string, string>]>([
      [
        'Succeeded',
        {
          Succeeded: '2026-03-01T10:00:20Z',
          Ready: '2026-03-01T10:00:20Z',
          Reconciling: '2026-03-01T10:00:20Z',
          Stalled: T0s,
        },
      ],
      [
        'Failed',
        {
          Succeeded: '2026-03-01T10:00:20Z',
          Ready: T0s,
          Reconciling: '2026-03-01T10:00:20Z',
          Stalled: '2026-03-01T10:00:20Z',
        },
      ],
      [
        'Canceled',
        {
          Succeeded: '2026-03-01T10:00:20Z',
          Ready: T0s,
          Reconciling: '2026-03-01T10:00:20Z',
          Stalled: '2026-03-01T10:00:20Z',
        },
      ],
    ])('then %s flips only what changed', (reason, expected) => {
      const done = finished(attempt2, reason, at(20 * SECOND + 999));
      expect(transitionTimes(done.status)).toStrictEqual(expected);
    });

    it('a fresh run ending at once gets every condition at that time', () => {
      const done = finished(agentRun(), 'Canceled', at(MINUTE));
      const t = rfc3339(at(MINUTE));
      expect(transitionTimes(done.status)).toStrictEqual({
        Succeeded: t,
        Ready: t,
        Reconciling: t,
        Stalled: t,
      });
    });
  });
});

describe('terminalStatus', () => {
  const base = agentRun({ spec: { backoffLimit: 2 } });

  it.each(TERMINAL_REASONS)('%s sets finishedAt, durationMs and duration', (reason) => {
    const started = running(base, 1, at(250));
    const status = terminalStatus(started, { reason, message: 'm' }, at(3 * MINUTE + 4250));
    expect(status).toMatchObject({
      attempts: 1,
      startedAt: '2026-03-01T10:00:00.250Z',
      finishedAt: '2026-03-01T10:03:04.250Z',
      durationMs: 184_000,
      duration: '3m4s',
    });
    expect('nextRetryAt' in status).toBe(false);
  });

  it.each(TERMINAL_REASONS)('%s on a run that never started: durationMs 0', (reason) => {
    const status = terminalStatus(agentRun(), { reason, message: 'm' }, at(MINUTE));
    expect(status).toStrictEqual({
      runId: UID,
      phase: reason === 'Succeeded' ? 'Succeeded' : reason === 'Canceled' ? 'Canceled' : 'Failed',
      observedGeneration: GENERATION,
      attempts: 0,
      finishedAt: at(MINUTE).toISOString(),
      durationMs: 0,
      duration: '0ms',
      conditions: expect.any(Array),
    });
  });

  it('a clock behind startedAt gives durationMs 0, never negative', () => {
    const status = terminalStatus(
      running(base, 1, at(MINUTE)),
      { reason: 'Failed', message: 'm' },
      at(59 * SECOND),
    );
    expect(status.durationMs).toBe(0);
    expect(status.duration).toBe('0ms');
  });

  it('ending while waiting to retry clears nextRetryAt and keeps the last error', () => {
    const waiting = retrying(running(base, 1, T0), at(MINUTE), at(SECOND), 'last failure');
    const status = terminalStatus(
      waiting,
      { reason: 'Canceled', message: 'canceled while waiting to retry' },
      at(2 * SECOND),
    );
    expect('nextRetryAt' in status).toBe(false);
    expect(status.error).toBe('last failure');
    expect(status.phase).toBe('Canceled');
    expect(status.durationMs).toBe(2000);
    expect(status.duration).toBe('2s');
  });

  it('Succeeded without an error clears an earlier one; an explicit error replaces it', () => {
    const waiting = retrying(running(base, 1, T0), at(MINUTE), at(SECOND), 'old');
    const ok = terminalStatus(waiting, { reason: 'Succeeded', message: 'ok' }, at(MINUTE));
    expect('error' in ok).toBe(false);
    const failed = terminalStatus(
      waiting,
      { reason: 'Failed', message: 'no', error: 'new' },
      at(MINUTE),
    );
    expect(failed.error).toBe('new');
  });

  it.each<[string, number, string | undefined]>([
    ['empty', 0, undefined],
    ['exactly 2048', 2048, undefined],
    ['2049', 2049, MARKER],
    ['10 000', 10_000, MARKER],
  ])('error of %s characters', (_name, length, marker) => {
    const error = 'x'.repeat(length);
    const status = terminalStatus(base, { reason: 'Failed', message: 'm', error }, T0);
    if (marker === undefined) {
      expect(status.error).toBe(error);
    } else {
      expect(status.error).toBe(`${'x'.repeat(2048 - marker.length)}${marker}`);
      expect(status.error).toHaveLength(2048);
    }
  });

  it('the condition message is capped at 32768 characters', () => {
    const status = terminalStatus(base, { reason: 'Failed', message: 'm'.repeat(40_000) }, T0);
    const message = findCondition(status.conditions, 'Succeeded')?.message ?? '';
    expect(message).toHaveLength(32_768);
    expect(message.endsWith(MARKER)).toBe(true);
  });

  it('stores capped artifacts', () => {
    const small = { ok: true };
    const status = terminalStatus(
      base,
      { reason: 'Succeeded', message: 'ok', artifacts: small },
      T0,
    );
    expect(status.artifacts).toBe(small);
    const big = terminalStatus(
      base,
      { reason: 'Succeeded', message: 'ok', artifacts: { b: 'x'.repeat(5000) } },
      T0,
    );
    expect(big.artifacts).toMatchObject({ truncated: true, bytes: 5008 });
  });
});

describe('capArtifacts', () => {
  /** An object whose JSON is exactly `bytes` bytes: {"x":"..."} has 8 bytes of overhead. */
  function ofBytes(bytes: number, char = 'a'): { x: string } {
    return { x: char.repeat(bytes - 8) };
  }

  it.each([8, 9, 100, 4095, STATUS_ARTIFACTS_MAX_BYTES])(
    'keeps %i-byte artifacts as they are',
    (n) => {
      const artifacts = ofBytes(n);
      expect(Buffer.byteLength(JSON.stringify(artifacts))).toBe(n);
      expect(capArtifacts(artifacts)).toBe(artifacts);
    },
  );

  it('keeps empty artifacts', () => {
    const artifacts = {};
    expect(capArtifacts(artifacts)).toBe(artifacts);
  });

  it('replaces 4097 bytes with the marker object', () => {
    const artifacts = ofBytes(4097);
    const json = JSON.stringify(artifacts);
    expect(json).toHaveLength(4097);
    expect(capArtifacts(artifacts)).toStrictEqual({
      truncated: true,
      bytes: 4097,
      preview: `${json.slice(0, 1024 - MARKER.length)}${MARKER}`,
      note: 'artifacts exceed the 4 KiB status cap; the audit log keeps the full copy',
    });
  });

  it('counts bytes, not characters', () => {
    // 2100 two-byte characters: 2108 characters, 4208 bytes.
    const artifacts = { x: 'é'.repeat(2100) };
    expect(JSON.stringify(artifacts)).toHaveLength(2108);
    expect(capArtifacts(artifacts)).toMatchObject({ truncated: true, bytes: 4208 });
  });

  it('the marker itself fits the cap', () => {
    const capped = capArtifacts({ x: 'z'.repeat(1_000_000) });
    expect(Buffer.byteLength(JSON.stringify(capped))).toBeLessThanOrEqual(
      STATUS_ARTIFACTS_MAX_BYTES,
    );
  });
});

describe('progress', () => {
  const base = agentRun({ spec: { backoffLimit: 2 } });
  const r1 = running(base, 1, T0);
  const w1 = retrying(r1, at(10 * SECOND), at(SECOND));
  const r2 = running(w1, 2, at(10 * SECOND));
  const w2 = retrying(r2, at(30 * SECOND), at(11 * SECOND));
  const r3 = running(w2, 3, at(30 * SECOND));
  const done = finished(r3, 'BackoffLimitExceeded', at(31 * SECOND));

  it('orders nothing < queued < starting N < running N < retrying N < running N+1 < terminal', () => {
    const starting1 = runningStatus(base, 1, {}, T0, undefined, 'Starting');
    const values = [
      undefined,
      queuedStatus(base, 'no free slot', T0),
      starting1,
      r1.status,
      w1.status,
      r2.status,
      w2.status,
      r3.status,
      done.status,
    ].map(progress);
    const ascending = values.every((v, i) => i === 0 || v > (values[i - 1] ?? v));
    expect(ascending, String(values)).toBe(true);
    expect(values.at(-1)).toBe(Number.MAX_SAFE_INTEGER - 1);
  });

  it('a terminal status with its audit row recorded outranks the same status without', () => {
    const audited = withAudited(
      done.status ?? {},
      done,
      'Recorded',
      'row committed',
      at(32 * SECOND),
    );
    const pending = withAudited(done.status ?? {}, done, 'Pending', 'queued', at(32 * SECOND));
    expect(progress(audited)).toBe(Number.MAX_SAFE_INTEGER);
    expect(progress(pending)).toBe(Number.MAX_SAFE_INTEGER - 1);
    expect(progress(pending)).toBeGreaterThan(progress(r3.status));
  });

  it.each(TERMINAL_REASONS)(
    'a %s run outranks every in-progress state, started or not',
    (reason) => {
      expect(progress(finished(agentRun(), reason, T0).status)).toBe(Number.MAX_SAFE_INTEGER - 1);
      expect(progress(finished(r3, reason, T0).status)).toBe(Number.MAX_SAFE_INTEGER - 1);
    },
  );

  it('a Shutdown retry (nextRetryAt = now) still counts as retrying', () => {
    const status = retryingStatus(r1, 'interrupted', at(SECOND), at(SECOND));
    expect(progress(status)).toBe(progress(w1.status));
  });

  it('a status without conditions counts attempts only', () => {
    expect(progress({})).toBe(0);
    expect(progress({ attempts: 2 })).toBe(6);
  });
});

describe('isTerminal', () => {
  const started = running(agentRun({ spec: { backoffLimit: 1 } }), 1, T0);
  it.each<[string, AgentRunStatus | undefined, boolean]>([
    ['no status', undefined, false],
    ['empty status', {}, false],
    ['Running', started.status, false],
    ['Retrying', retryingStatus(started, 'x', at(MINUTE), T0), false],
    ...TERMINAL_REASONS.map((reason): [string, AgentRunStatus | undefined, boolean] => [
      reason,
      finished(started, reason, at(SECOND)).status,
      true,
    ]),
    ['a phase alone does not count', { phase: 'Failed', finishedAt: T0.toISOString() }, false],
  ])('%s -> %s', (_name, status, expected) => {
    expect(isTerminal(status)).toBe(expected);
  });
});

describe('maxAttempts and deadline', () => {
  it.each([
    [0, 1],
    [1, 2],
    [20, 21],
  ])('backoffLimit=%i -> %i attempts', (backoffLimit, expected) => {
    expect(maxAttempts(agentRun({ spec: { backoffLimit } }))).toBe(expected);
  });

  it.each<[string, AgentRun, string | undefined]>([
    ['not started', agentRun(), undefined],
    ['default timeout (600s)', running(agentRun(), 1, at(250)), '2026-03-01T10:10:00.250Z'],
    [
      'timeoutSeconds=1',
      running(agentRun({ spec: { timeoutSeconds: 1 } }), 1, T0),
      '2026-03-01T10:00:01.000Z',
    ],
  ])('%s', (_name, run, expected) => {
    expect(deadline(run)?.toISOString()).toBe(expected);
  });
});
