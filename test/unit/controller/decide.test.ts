import { describe, expect, it } from 'vitest';
import { type AgentRun, PARAMS_MAX_BYTES, PARAMS_MAX_DEPTH } from '../../../src/api/agentrun.ts';
import { type Condition, rfc3339 } from '../../../src/api/conditions.ts';
import type { TerminalReason } from '../../../src/api/reasons.ts';
import { type Action, decide, FINALIZER, whenNoSlot } from '../../../src/controller/decide.ts';
import { queuedStatus } from '../../../src/controller/run-status.ts';
import type { JsonObject } from '../../../src/handlers/handler.ts';
import { HandlerRegistry } from '../../../src/handlers/registry.ts';
import {
  agentRun,
  at,
  deleting,
  finished,
  HANDLERS,
  MINUTE,
  PREPARED,
  protectedRun,
  retrying,
  running,
  SECOND,
  T0,
  TERMINAL_REASONS,
  withStatus,
} from './fixtures.ts';

const START = { type: 'start', prepared: PREPARED, attempt: 1 } as const;
const NONE = { type: 'none' } as const;

function canceled(message: string): Action {
  return { type: 'finish', reason: 'Canceled', message };
}

describe('decide: a fresh run', () => {
  it.each<[string, AgentRun, boolean, Action]>([
    ['no status -> start attempt 1', agentRun(), false, START],
    ['empty status -> start attempt 1', agentRun({ status: {} }), false, START],
    [
      'backoffLimit does not change the first attempt',
      agentRun({ spec: { backoffLimit: 5 } }),
      false,
      START,
    ],
    ['already executing -> none', agentRun(), true, NONE],
    [
      'cancel before it started -> finish Canceled',
      agentRun({ spec: { cancel: true } }),
      false,
      canceled('canceled before it started'),
    ],
    [
      'deleted before it started -> finish Canceled',
      deleting(agentRun()),
      false,
      canceled('deleted before it finished'),
    ],
    [
      'deleted and canceled -> the deletion message wins',
      deleting(agentRun({ spec: { cancel: true } })),
      false,
      canceled('deleted before it finished'),
    ],
    [
      'holding the finalizer changes nothing before the run ends',
      protectedRun(agentRun()),
      false,
      START,
    ],
  ])('%s', (_name, run, executing, expected) => {
    expect(decide({ handlers: HANDLERS, run, executing, now: T0 })).toStrictEqual(expected);
  });

  it('starts with no note on the action', () => {
    const action = decide({ handlers: HANDLERS, run: agentRun(), executing: false, now: T0 });
    expect(Object.keys(action).sort()).toEqual(['attempt', 'prepared', 'type']);
  });
});

describe('decide: a queued run (no free slot before)', () => {
  const queued = withStatus(agentRun(), queuedStatus(agentRun(), 'no free slot', T0));

  it.each<[string, AgentRun, Action]>([
    ['starts attempt 1 like a run without status', queued, START],
    [
      'canceled: it never started',
      withStatus(agentRun({ spec: { cancel: true } }), queued.status ?? {}),
      canceled('canceled before it started'),
    ],
    ['deleted: Canceled', deleting(queued), canceled('deleted before it finished')],
  ])('%s', (_name, run, expected) => {
    expect(decide({ handlers: HANDLERS, run, executing: false, now: at(MINUTE) })).toStrictEqual(
      expected,
    );
  });
});

describe('whenNoSlot: when a run waiting for a handler slot says so', () => {
  // agentRun() is created at T0 - 60 s.
  const created = Date.parse(agentRun().metadata.creationTimestamp ?? '');
  const fresh = (ms: number) => new Date(created + ms);

  it.each<[string, AgentRun, Date, number, ReturnType<typeof whenNoSlot>]>([
    [
      'created moments ago: look again when the threshold is reached',
      agentRun(),
      fresh(500),
      2000,
      { type: 'requeue', afterMs: 1500 },
    ],
    ['waited exactly the threshold: Queued', agentRun(), fresh(2000), 2000, { type: 'markQueued' }],
    ['waited longer: Queued', agentRun(), fresh(60_000), 2000, { type: 'markQueued' }],
    ['threshold 0 turns it off', agentRun(), fresh(60_000), 0, NONE],
    [
      'already Queued: no second write',
      withStatus(agentRun(), queuedStatus(agentRun(), 'no free slot', T0)),
      fresh(60_000),
      2000,
      NONE,
    ],
    [
      'waiting to retry: its Retrying status says so already',
      retrying(running(agentRun({ spec: { backoffLimit: 1 } }), 1, T0), at(SECOND), at(SECOND)),
      fresh(60_000),
      2000,
      NONE,
    ],
    [
      'no creationTimestamp (never from an API server): Queued',
      agentRun({ metadata: { creationTimestamp: undefined } }),
      fresh(0),
      2000,
      { type: 'markQueued' },
    ],
  ])('%s', (_name, run, now, threshold, expected) => {
    expect(whenNoSlot(run, now, threshold)).toStrictEqual(expected);
  });
});

describe('decide: terminal runs', () => {
  it('the finalizer name is part of the API (objects in clusters carry it)', () => {
    expect(FINALIZER).toBe('agents.applylens.io/run-protection');
  });

  const FINISHED_AT = at(5 * SECOND);

  /** A run that started at T0, ran one attempt and ended at T0+5s with `reason`. */
  function ended(
    reason: TerminalReason,
    spec: { ttlSecondsAfterFinished?: number; cancel?: boolean } = {},
  ): AgentRun {
    const run = agentRun({ spec });
    return finished(running(run, 1, T0), reason, FINISHED_AT);
  }

  // decide() never reads why a run ended: these cases use Failed, and the last test checks that
  // every other reason gets the same answers.
  describe('ended (any reason)', () => {
    const reason: TerminalReason = 'Failed';

    it('without a TTL -> none, now and much later', () => {
      const run = ended(reason);
      expect(decide({ handlers: HANDLERS, run, executing: false, now: FINISHED_AT })).toStrictEqual(
        NONE,
      );
      expect(
        decide({ handlers: HANDLERS, run, executing: false, now: at(365 * 24 * 60 * MINUTE) }),
      ).toStrictEqual(NONE);
    });

    it.each<[string, number, Action]>([
      ['right after it finished', 0, { type: 'requeue', afterMs: 60_000 }],
      ['10s later', 10 * SECOND, { type: 'requeue', afterMs: 50_000 }],
      ['1ms before the TTL', 60 * SECOND - 1, { type: 'requeue', afterMs: 1 }],
      ['exactly when the TTL is due', 60 * SECOND, { type: 'delete' }],
      ['after the TTL', 61 * SECOND, { type: 'delete' }],
    ])('ttlSecondsAfterFinished=60, %s', (_name, sinceFinished, expected) => {
      const run = ended(reason, { ttlSecondsAfterFinished: 60 });
      const now = new Date(FINISHED_AT.getTime() + sinceFinished);
      expect(decide({ handlers: HANDLERS, run, executing: false, now })).toStrictEqual(expected);
    });

    it('ttlSecondsAfterFinished=0 -> delete as soon as it finished', () => {
      const run = ended(reason, { ttlSecondsAfterFinished: 0 });
      expect(decide({ handlers: HANDLERS, run, executing: false, now: FINISHED_AT })).toStrictEqual(
        {
          type: 'delete',
        },
      );
    });

    it('holding the finalizer and not executing -> releaseFinalizer (before TTL or delete)', () => {
      const run = protectedRun(ended(reason, { ttlSecondsAfterFinished: 0 }));
      expect(decide({ handlers: HANDLERS, run, executing: false, now: FINISHED_AT })).toStrictEqual(
        {
          type: 'releaseFinalizer',
        },
      );
      const gone = deleting(ended(reason), FINISHED_AT);
      expect(
        decide({ handlers: HANDLERS, run: gone, executing: false, now: FINISHED_AT }),
      ).toStrictEqual({
        type: 'releaseFinalizer',
      });
    });

    it('holding the finalizer while still executing -> none: keeps it until the outcome is written', () => {
      const noTtl = protectedRun(ended(reason));
      expect(
        decide({ handlers: HANDLERS, run: noTtl, executing: true, now: FINISHED_AT }),
      ).toStrictEqual(NONE);
      const ttl = protectedRun(ended(reason, { ttlSecondsAfterFinished: 30 }));
      expect(
        decide({ handlers: HANDLERS, run: ttl, executing: true, now: at(15 * SECOND) }),
      ).toStrictEqual(NONE);
      const gone = deleting(ended(reason), FINISHED_AT);
      expect(
        decide({ handlers: HANDLERS, run: gone, executing: true, now: FINISHED_AT }),
      ).toStrictEqual(NONE);
    });

    it.each<[string, number]>([
      ['before the TTL is due', 15 * SECOND],
      ['exactly when the TTL is due', 35 * SECOND],
      ['long after the TTL', 10 * MINUTE],
    ])(
      'executing, without the finalizer -> none, no requeue or delete (%s)',
      (_name, sinceStart) => {
        const run = ended(reason, { ttlSecondsAfterFinished: 30 });
        expect(
          decide({ handlers: HANDLERS, run, executing: true, now: at(sinceStart) }),
        ).toStrictEqual(NONE);
        const zero = ended(reason, { ttlSecondsAfterFinished: 0 });
        expect(
          decide({ handlers: HANDLERS, run: zero, executing: true, now: at(sinceStart) }),
        ).toStrictEqual(NONE);
        // Once the outcome write is done, the TTL applies as usual.
        expect(
          decide({ handlers: HANDLERS, run: zero, executing: false, now: at(sinceStart) }),
        ).toStrictEqual({
          type: 'delete',
        });
      },
    );

    it('executing while deleted without our finalizer -> none', () => {
      const run = deleting(ended(reason, { ttlSecondsAfterFinished: 0 }), FINISHED_AT, []);
      expect(
        decide({ handlers: HANDLERS, run, executing: true, now: at(10 * MINUTE) }),
      ).toStrictEqual(NONE);
    });

    it('only foreign finalizers -> not ours to release', () => {
      const run = ended(reason);
      const foreign = {
        ...run,
        metadata: { ...run.metadata, finalizers: ['example.com/archive'] },
      };
      expect(
        decide({ handlers: HANDLERS, run: foreign, executing: false, now: FINISHED_AT }),
      ).toStrictEqual(NONE);
    });

    it('being deleted without our finalizer -> none, even when the TTL is due', () => {
      const run = deleting(ended(reason, { ttlSecondsAfterFinished: 0 }), FINISHED_AT, []);
      expect(
        decide({ handlers: HANDLERS, run, executing: false, now: at(10 * MINUTE) }),
      ).toStrictEqual(NONE);
    });

    it('a late cancel is ignored', () => {
      const run = ended(reason, { cancel: true });
      expect(decide({ handlers: HANDLERS, run, executing: false, now: FINISHED_AT })).toStrictEqual(
        NONE,
      );
      expect(decide({ handlers: HANDLERS, run, executing: true, now: FINISHED_AT })).toStrictEqual(
        NONE,
      );
    });

    it('past the run deadline -> still no TimedOut, nothing to do', () => {
      const run = ended(reason, { ttlSecondsAfterFinished: 3600 });
      expect(
        decide({ handlers: HANDLERS, run, executing: false, now: at(20 * MINUTE) }),
      ).toStrictEqual({
        type: 'requeue',
        afterMs: 3600 * SECOND - (20 * MINUTE - 5 * SECOND),
      });
    });
  });

  it('every terminal reason is treated alike', () => {
    const shapes: [AgentRun, Date, boolean][] = [
      [ended('Failed'), FINISHED_AT, false],
      [ended('Failed', { ttlSecondsAfterFinished: 60 }), at(10 * SECOND), false],
      [ended('Failed', { ttlSecondsAfterFinished: 0 }), FINISHED_AT, false],
      [protectedRun(ended('Failed', { ttlSecondsAfterFinished: 0 })), FINISHED_AT, false],
      [deleting(ended('Failed'), FINISHED_AT), FINISHED_AT, false],
      [protectedRun(ended('Failed')), FINISHED_AT, true],
      [ended('Failed', { cancel: true }), FINISHED_AT, false],
    ];
    for (const reason of TERMINAL_REASONS) {
      for (const [failed, now, executing] of shapes) {
        // The same run, object and clock, ended with `reason` instead.
        const run = finished(failed, reason, FINISHED_AT);
        expect(decide({ handlers: HANDLERS, run, executing, now }), reason).toStrictEqual(
          decide({ handlers: HANDLERS, run: failed, executing, now }),
        );
      }
    }
  });

  it('a run that finished without ever starting follows the same TTL', () => {
    const run = finished(
      agentRun({ spec: { ttlSecondsAfterFinished: 10, cancel: true } }),
      'Canceled',
      T0,
    );
    expect(
      decide({ handlers: HANDLERS, run, executing: false, now: at(4 * SECOND) }),
    ).toStrictEqual({
      type: 'requeue',
      afterMs: 6_000,
    });
    expect(
      decide({ handlers: HANDLERS, run, executing: false, now: at(10 * SECOND) }),
    ).toStrictEqual({
      type: 'delete',
    });
  });

  it('a terminal status without finishedAt (hand-written) -> none instead of a NaN requeue', () => {
    const condition: Condition = {
      type: 'Succeeded',
      status: 'False',
      reason: 'Failed',
      message: 'x',
      lastTransitionTime: rfc3339(T0),
    };
    const run = agentRun({
      spec: { ttlSecondsAfterFinished: 0 },
      status: { phase: 'Failed', conditions: [condition] },
    });
    expect(decide({ handlers: HANDLERS, run, executing: false, now: at(MINUTE) })).toStrictEqual(
      NONE,
    );
  });
});

describe('decide: while this process executes an attempt', () => {
  const states: [string, (run: AgentRun) => AgentRun][] = [
    ['fresh', (run) => run],
    ['running attempt 1', (run) => running(run, 1, T0)],
    ['retrying', (run) => retrying(running(run, 1, T0), at(MINUTE), at(SECOND))],
  ];

  describe.each(states)('%s', (_state, put) => {
    it.each<[string, AgentRun, Action]>([
      [
        'cancel -> abort Canceled',
        put(agentRun({ spec: { cancel: true, backoffLimit: 2 } })),
        { type: 'abort', reason: 'Canceled', message: 'canceled while running' },
      ],
      [
        'deletionTimestamp -> abort Canceled',
        put(deleting(agentRun({ spec: { backoffLimit: 2 } }))),
        { type: 'abort', reason: 'Canceled', message: 'deleted while running' },
      ],
      [
        'deletionTimestamp and cancel -> abort with the deletion message',
        put(deleting(agentRun({ spec: { cancel: true, backoffLimit: 2 } }))),
        { type: 'abort', reason: 'Canceled', message: 'deleted while running' },
      ],
      ['otherwise -> none', put(agentRun({ spec: { backoffLimit: 2 } })), NONE],
      [
        'holding the finalizer -> none (never released mid-run)',
        put(protectedRun(agentRun({ spec: { backoffLimit: 2 } }))),
        NONE,
      ],
    ])('%s', (_name, run, expected) => {
      expect(
        decide({ handlers: HANDLERS, run, executing: true, now: at(2 * SECOND) }),
      ).toStrictEqual(expected);
    });
  });

  it('past the deadline -> none: the executor enforces it with its own timer', () => {
    const run = running(agentRun({ spec: { timeoutSeconds: 60 } }), 1, T0);
    expect(
      decide({ handlers: HANDLERS, run, executing: true, now: at(10 * MINUTE) }),
    ).toStrictEqual(NONE);
  });
});

describe('decide: canceled or deleted while nothing executes', () => {
  const spec = { backoffLimit: 2 };
  /** The run with its attempt count overwritten, as a hand-edited status would have it. */
  const withAttempts = (run: AgentRun, attempts: number): AgentRun =>
    withStatus(run, { ...run.status, attempts });
  it.each<[string, AgentRun, Action]>([
    [
      'cancel before the first attempt',
      agentRun({ spec: { ...spec, cancel: true } }),
      canceled('canceled before it started'),
    ],
    [
      'cancel while waiting to retry',
      retrying(running(agentRun({ spec: { ...spec, cancel: true } }), 1, T0), at(MINUTE), at(1)),
      canceled('canceled while waiting to retry'),
    ],
    [
      'cancel while waiting to retry after attempt 2',
      retrying(
        running(agentRun({ spec: { ...spec, cancel: true } }), 2, T0),
        at(MINUTE),
        at(SECOND),
      ),
      canceled('canceled while waiting to retry'),
    ],
    [
      'cancel while the status says Running but nothing runs (operator restart)',
      running(agentRun({ spec: { ...spec, cancel: true } }), 1, T0),
      canceled('canceled after attempt 1 was interrupted'),
    ],
    [
      'cancel after attempt 3 was interrupted (names the attempt)',
      running(agentRun({ spec: { ...spec, cancel: true } }), 3, T0),
      canceled('canceled after attempt 3 was interrupted'),
    ],
    [
      'cancel after an interruption with no retries left -> Canceled, not Interrupted',
      running(agentRun({ spec: { cancel: true } }), 1, T0),
      canceled('canceled after attempt 1 was interrupted'),
    ],
    [
      'cancel with a hand-written Running status and attempts 0 -> before it started',
      withAttempts(running(agentRun({ spec: { ...spec, cancel: true } }), 1, T0), 0),
      canceled('canceled before it started'),
    ],
    [
      'deleted before it started',
      deleting(agentRun({ spec })),
      canceled('deleted before it finished'),
    ],
    [
      'deleted while waiting to retry',
      deleting(retrying(running(agentRun({ spec }), 1, T0), at(MINUTE), at(1))),
      canceled('deleted before it finished'),
    ],
    [
      'deleted while the status says Running but nothing runs',
      deleting(running(agentRun({ spec }), 1, T0)),
      canceled('deleted before it finished'),
    ],
    [
      'deleted without our finalizer',
      deleting(running(agentRun({ spec }), 1, T0), T0, []),
      canceled('deleted before it finished'),
    ],
    [
      'deleted past the deadline -> Canceled, not TimedOut',
      deleting(running(agentRun({ spec: { ...spec, timeoutSeconds: 1 } }), 1, T0)),
      canceled('deleted before it finished'),
    ],
    [
      'canceled past the deadline -> Canceled, not TimedOut',
      running(agentRun({ spec: { ...spec, timeoutSeconds: 1, cancel: true } }), 1, T0),
      canceled('canceled after attempt 1 was interrupted'),
    ],
    [
      'canceled while waiting to retry, past the deadline -> Canceled, not TimedOut',
      retrying(
        running(agentRun({ spec: { ...spec, timeoutSeconds: 1, cancel: true } }), 1, T0),
        at(MINUTE),
        at(500),
      ),
      canceled('canceled while waiting to retry'),
    ],
  ])('%s', (_name, run, expected) => {
    expect(
      decide({ handlers: HANDLERS, run, executing: false, now: at(2 * SECOND) }),
    ).toStrictEqual(expected);
  });
});

describe('decide: the deadline (startedAt + timeoutSeconds)', () => {
  const timeoutSeconds = 600;
  const DEADLINE = timeoutSeconds * SECOND;

  function timedOut(attempts: number): Action {
    return {
      type: 'finish',
      reason: 'TimedOut',
      message: `exceeded timeoutSeconds=600 after ${attempts} attempt(s)`,
    };
  }

  it.each<[string, AgentRun, number, Action]>([
    [
      'Running (interrupted), exactly at the deadline -> TimedOut',
      running(agentRun({ spec: { timeoutSeconds, backoffLimit: 1 } }), 1, T0),
      DEADLINE,
      timedOut(1),
    ],
    [
      'Running (interrupted), 1ms before -> restart instead',
      running(agentRun({ spec: { timeoutSeconds, backoffLimit: 1 } }), 1, T0),
      DEADLINE - 1,
      { type: 'start', prepared: PREPARED, attempt: 2, note: 'attempt 1 was interrupted' },
    ],
    [
      'Running (interrupted, no retries left), past the deadline -> TimedOut, not Interrupted',
      running(agentRun({ spec: { timeoutSeconds } }), 1, T0),
      DEADLINE + MINUTE,
      timedOut(1),
    ],
    [
      'Retrying with a retry due after the deadline, at the deadline -> TimedOut',
      retrying(
        running(agentRun({ spec: { timeoutSeconds, backoffLimit: 3 } }), 2, T0),
        at(DEADLINE + MINUTE),
        at(DEADLINE - SECOND),
      ),
      DEADLINE,
      timedOut(2),
    ],
    [
      'Retrying with a retry due after the deadline, 1ms before it -> requeue until the deadline',
      retrying(
        running(agentRun({ spec: { timeoutSeconds, backoffLimit: 3 } }), 2, T0),
        at(DEADLINE + MINUTE),
        at(DEADLINE - SECOND),
      ),
      DEADLINE - 1,
      { type: 'requeue', afterMs: 1 },
    ],
    [
      'Retrying with a retry due after the deadline, right after the failure -> requeue until the deadline',
      retrying(
        running(agentRun({ spec: { timeoutSeconds, backoffLimit: 3 } }), 2, T0),
        at(DEADLINE + MINUTE),
        at(DEADLINE - SECOND),
      ),
      DEADLINE - SECOND,
      { type: 'requeue', afterMs: SECOND },
    ],
    [
      'Retrying with a retry due before the deadline -> requeue until nextRetryAt',
      retrying(
        running(agentRun({ spec: { timeoutSeconds, backoffLimit: 3 } }), 2, T0),
        at(DEADLINE - MINUTE),
        at(DEADLINE - 2 * MINUTE),
      ),
      DEADLINE - 2 * MINUTE,
      { type: 'requeue', afterMs: MINUTE },
    ],
    [
      'Retrying with the retry due exactly at the deadline, 1ms before -> requeue 1ms',
      retrying(
        running(agentRun({ spec: { timeoutSeconds, backoffLimit: 3 } }), 1, T0),
        at(DEADLINE),
        at(DEADLINE - SECOND),
      ),
      DEADLINE - 1,
      { type: 'requeue', afterMs: 1 },
    ],
    [
      'Retrying with the retry due, deadline not yet passed -> start the next attempt',
      retrying(
        running(agentRun({ spec: { timeoutSeconds, backoffLimit: 3 } }), 2, T0),
        at(DEADLINE - MINUTE),
        at(DEADLINE - 2 * MINUTE),
      ),
      DEADLINE - MINUTE,
      { type: 'start', prepared: PREPARED, attempt: 3 },
    ],
    [
      'Retrying with the retry due, past the deadline -> TimedOut, not a new attempt',
      retrying(
        running(agentRun({ spec: { timeoutSeconds, backoffLimit: 3 } }), 2, T0),
        at(DEADLINE - MINUTE),
        at(DEADLINE - 2 * MINUTE),
      ),
      DEADLINE + SECOND,
      timedOut(2),
    ],
    [
      'Retrying with the retry due exactly at the deadline -> TimedOut, not a new attempt',
      retrying(
        running(agentRun({ spec: { timeoutSeconds, backoffLimit: 3 } }), 1, T0),
        at(DEADLINE),
        at(DEADLINE - SECOND),
      ),
      DEADLINE,
      timedOut(1),
    ],
    [
      'counted from the first start, not from the current attempt',
      running(
        retrying(
          running(agentRun({ spec: { timeoutSeconds, backoffLimit: 3 } }), 1, T0),
          at(5 * MINUTE),
          at(4 * MINUTE),
        ),
        2,
        at(5 * MINUTE),
      ),
      DEADLINE,
      timedOut(2),
    ],
    [
      'a run that never started has no deadline',
      agentRun({ spec: { timeoutSeconds: 1 } }),
      365 * 24 * 60 * MINUTE,
      START,
    ],
  ])('%s', (_name, run, sinceStart, expected) => {
    expect(
      decide({ handlers: HANDLERS, run, executing: false, now: at(sinceStart) }),
    ).toStrictEqual(expected);
  });

  it('waking when the requeue says records the timeout on time', () => {
    const run = retrying(
      running(agentRun({ spec: { timeoutSeconds, backoffLimit: 3 } }), 1, T0),
      at(DEADLINE + 5 * MINUTE),
      at(DEADLINE - 30 * SECOND),
    );
    const first = decide({
      handlers: HANDLERS,
      run,
      executing: false,
      now: at(DEADLINE - 30 * SECOND),
    });
    expect(first).toStrictEqual({ type: 'requeue', afterMs: 30 * SECOND });
    const wake = at(DEADLINE - 30 * SECOND + (first.type === 'requeue' ? first.afterMs : 0));
    expect(decide({ handlers: HANDLERS, run, executing: false, now: wake })).toStrictEqual(
      timedOut(1),
    );
  });

  it('honours timeoutSeconds=1 to the millisecond', () => {
    const run = retrying(
      running(agentRun({ spec: { timeoutSeconds: 1, backoffLimit: 1 } }), 1, T0),
      at(10 * SECOND),
      at(500),
    );
    // The retry is due at 10s but the deadline at 1s: wake at the deadline, not at the retry.
    expect(decide({ handlers: HANDLERS, run, executing: false, now: at(500) })).toStrictEqual({
      type: 'requeue',
      afterMs: 500,
    });
    expect(decide({ handlers: HANDLERS, run, executing: false, now: at(999) })).toStrictEqual({
      type: 'requeue',
      afterMs: 1,
    });
    expect(decide({ handlers: HANDLERS, run, executing: false, now: at(1000) })).toStrictEqual({
      type: 'finish',
      reason: 'TimedOut',
      message: 'exceeded timeoutSeconds=1 after 1 attempt(s)',
    });
  });
});

describe('decide: status Running but nothing executes (operator restarted)', () => {
  function interrupted(attempt: number): string {
    return `attempt ${attempt} was interrupted (the operator running it stopped, lost leadership or lost its connection to the API server) and no retries remain`;
  }

  it.each<[number, number, Action]>([
    [0, 1, { type: 'finish', reason: 'Interrupted', message: interrupted(1) }],
    [1, 1, { type: 'start', prepared: PREPARED, attempt: 2, note: 'attempt 1 was interrupted' }],
    [1, 2, { type: 'finish', reason: 'Interrupted', message: interrupted(2) }],
    [2, 1, { type: 'start', prepared: PREPARED, attempt: 2, note: 'attempt 1 was interrupted' }],
    [2, 2, { type: 'start', prepared: PREPARED, attempt: 3, note: 'attempt 2 was interrupted' }],
    [2, 3, { type: 'finish', reason: 'Interrupted', message: interrupted(3) }],
    [
      20,
      20,
      { type: 'start', prepared: PREPARED, attempt: 21, note: 'attempt 20 was interrupted' },
    ],
    [20, 21, { type: 'finish', reason: 'Interrupted', message: interrupted(21) }],
  ])('backoffLimit=%i, attempt %i interrupted -> %o', (backoffLimit, attempt, expected) => {
    const run = running(agentRun({ spec: { backoffLimit } }), attempt, T0);
    expect(decide({ handlers: HANDLERS, run, executing: false, now: at(SECOND) })).toStrictEqual(
      expected,
    );
  });

  it('restarting after an interruption does not wait for a backoff', () => {
    const run = running(agentRun({ spec: { backoffLimit: 1 } }), 1, T0);
    expect(decide({ handlers: HANDLERS, run, executing: false, now: T0 })).toStrictEqual({
      type: 'start',
      prepared: PREPARED,
      attempt: 2,
      note: 'attempt 1 was interrupted',
    });
  });
});

describe('decide: a run that cannot start ends with a reason its owner can act on', () => {
  const BIG = 'x'.repeat(PARAMS_MAX_BYTES);
  const invalid = (message: string): Action => ({
    type: 'finish',
    reason: 'InvalidParams',
    message,
  });

  it.each<[string, AgentRun, Action]>([
    [
      "no handler has the agent's name -> UnknownAgent, naming the registered ones",
      agentRun({ spec: { agent: 'missing' } }),
      {
        type: 'finish',
        reason: 'UnknownAgent',
        message: HANDLERS.unknownAgentMessage('missing'),
      },
    ],
    [
      'params over PARAMS_MAX_BYTES of JSON -> InvalidParams with the size',
      agentRun({ spec: { params: { big: BIG } } }),
      invalid(
        `spec.params is ${PARAMS_MAX_BYTES + 10} bytes of JSON; the limit is ${PARAMS_MAX_BYTES}`,
      ),
    ],
    [
      'the handler rejects the params -> InvalidParams with its message',
      agentRun({ spec: { params: { bad: 'yes' } } }),
      invalid('params.bad: yes'),
    ],
    [
      'interrupted, and the params no longer plan -> InvalidParams instead of attempt 2',
      running(agentRun({ spec: { backoffLimit: 1, params: { bad: 'now' } } }), 1, T0),
      invalid('params.bad: now'),
    ],
    [
      'a cancel outranks a missing handler',
      agentRun({ spec: { agent: 'missing', cancel: true } }),
      canceled('canceled before it started'),
    ],
  ])('%s', (_name, run, expected) => {
    expect(decide({ handlers: HANDLERS, run, executing: false, now: T0 })).toStrictEqual(expected);
  });

  it('params of exactly PARAMS_MAX_BYTES start', () => {
    const params = { big: BIG.slice(10) };
    expect(Buffer.byteLength(JSON.stringify(params))).toBe(PARAMS_MAX_BYTES);
    const run = agentRun({ spec: { params } });
    expect(decide({ handlers: HANDLERS, run, executing: false, now: T0 })).toStrictEqual(START);
  });
});

describe('decide: params and plans nothing downstream could store or validate', () => {
  const decideWith = (run: AgentRun, handlers = HANDLERS) =>
    decide({ handlers, run, executing: false, now: T0 });
  function nested(levels: number): Record<string, unknown> {
    let value: Record<string, unknown> = {};
    for (let i = 1; i < levels; i++) value = { a: value };
    return value;
  }

  it('params nested deeper than PARAMS_MAX_DEPTH end InvalidParams, before any handler sees them', () => {
    // 20 000 levels overflow a recursive schema and JSON.stringify; nothing may throw.
    for (const levels of [PARAMS_MAX_DEPTH + 1, 20_000]) {
      expect(decideWith(agentRun({ spec: { params: nested(levels) } }))).toStrictEqual({
        type: 'finish',
        reason: 'InvalidParams',
        message: `spec.params is nested more than ${PARAMS_MAX_DEPTH} levels deep; the limit is ${PARAMS_MAX_DEPTH}`,
      });
    }
  });

  it('params exactly PARAMS_MAX_DEPTH deep start', () => {
    expect(decideWith(agentRun({ spec: { params: nested(PARAMS_MAX_DEPTH) } }))).toStrictEqual(
      START,
    );
  });

  it("a handler whose prepare throws ends the run InvalidParams with the handler's error", () => {
    const throwing = new HandlerRegistry([
      {
        name: 'http.check',
        description: 'throws',
        prepare: () => {
          throw new RangeError('Maximum call stack size exceeded');
        },
      },
    ]);
    expect(decideWith(agentRun(), throwing)).toStrictEqual({
      type: 'finish',
      reason: 'InvalidParams',
      message:
        'the "http.check" handler could not plan these params: Maximum call stack size exceeded',
    });
  });

  it('a plan that cannot be stored ends the run InvalidParams', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    const planning = (plan: unknown) =>
      new HandlerRegistry([
        {
          name: 'http.check',
          description: 'plans badly',
          prepare: () => ({ ok: true, plan: plan as JsonObject, execute: async () => ({}) }),
        },
      ]);
    expect(decideWith(agentRun(), planning({ n: 1n }))).toMatchObject({
      type: 'finish',
      reason: 'InvalidParams',
      message: expect.stringMatching(/^the "http.check" handler's plan is not JSON/),
    });
    expect(decideWith(agentRun(), planning(cyclic))).toMatchObject({
      type: 'finish',
      reason: 'InvalidParams',
      message: `the "http.check" handler's plan is nested more than 64 levels deep; the limit is 64`,
    });
  });
});

describe('decide: waiting to retry', () => {
  const base = agentRun({ spec: { backoffLimit: 3 } });
  const FAILED_AT = at(2 * SECOND);
  const RETRY_AT = at(12 * SECOND);

  it.each<[string, number, number, Action]>([
    ['right after the failure', 1, 2 * SECOND, { type: 'requeue', afterMs: 10_000 }],
    ['2.5s later', 1, 4_500, { type: 'requeue', afterMs: 7_500 }],
    ['1ms before nextRetryAt', 1, 12 * SECOND - 1, { type: 'requeue', afterMs: 1 }],
    ['exactly at nextRetryAt', 1, 12 * SECOND, { type: 'start', prepared: PREPARED, attempt: 2 }],
    ['after nextRetryAt', 1, 30 * SECOND, { type: 'start', prepared: PREPARED, attempt: 2 }],
    [
      'after attempt 3 failed, when due',
      3,
      12 * SECOND,
      { type: 'start', prepared: PREPARED, attempt: 4 },
    ],
  ])('%s', (_name, attempt, sinceStart, expected) => {
    const run = retrying(running(base, attempt, T0), RETRY_AT, FAILED_AT);
    expect(
      decide({ handlers: HANDLERS, run, executing: false, now: at(sinceStart) }),
    ).toStrictEqual(expected);
  });

  it('nextRetryAt without a Retrying condition (hand-written) is not waited for', () => {
    const run = agentRun({ status: { attempts: 0, nextRetryAt: at(MINUTE).toISOString() } });
    expect(decide({ handlers: HANDLERS, run, executing: false, now: T0 })).toStrictEqual(START);
  });

  it('Retrying without nextRetryAt -> start the next attempt', () => {
    const run = retrying(running(base, 1, T0), RETRY_AT, FAILED_AT);
    const { nextRetryAt: _dropped, ...status } = run.status ?? {};
    expect(
      decide({ handlers: HANDLERS, run: withStatus(run, status), executing: false, now: T0 }),
    ).toStrictEqual({
      type: 'start',
      prepared: PREPARED,
      attempt: 2,
    });
  });
});
