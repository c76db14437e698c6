import { isDeepStrictEqual } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { AgentRun, AgentRunStatus } from '../../../src/api/agentrun.ts';
import { type Condition, findCondition, rfc3339 } from '../../../src/api/conditions.ts';
import { AuditReason, type TerminalReason } from '../../../src/api/reasons.ts';
import { type Action, type AuditView, decide, FINALIZER } from '../../../src/controller/decide.ts';
import {
  isAudited,
  observedStatus,
  progress,
  withAudited,
} from '../../../src/controller/run-status.ts';
import {
  agentRun,
  at,
  finished,
  GENERATION,
  HANDLERS,
  MINUTE,
  PREPARED,
  protectedRun,
  retrying,
  running,
  SECOND,
  T0,
  TERMINAL_REASONS,
  transitionTimes,
  withStatus,
} from './fixtures.ts';

/**
 * The terminal-run audit branch of decide(): with auditing on, a finished run is kept (by the
 * run-protection finalizer) until its terminal audit row is committed or the deadline passes.
 *
 * decide() never reads why a run ended (its Succeeded condition's reason) once it has ended, so
 * each case below is proved for runs that ended 'Succeeded', and one test ('every terminal
 * reason is treated alike') checks that every other reason gets the same action in every shape.
 */

const NONE = { type: 'none' } as const;
const AUDIT = { type: 'audit' } as const;
const MARK_AUDITED = { type: 'markAudited' } as const;
const PROTECT = { type: 'protect' } as const;
const ABANDON = { type: 'abandonAudit' } as const;
const RELEASE = { type: 'releaseFinalizer' } as const;
const DELETE = { type: 'delete' } as const;

function requeue(afterMs: number): Action {
  return { type: 'requeue', afterMs };
}

/** Every run here started at T0 and ended at T0+5s. */
const FINISHED_AT = at(5 * SECOND);
/** AUDIT_FINALIZER_DEADLINE in these tests. */
const DEADLINE = 10 * MINUTE;
/** finishedAt + DEADLINE: from here on a pending row is given up. */
const GIVE_UP_AT = FINISHED_AT.getTime() + DEADLINE;
const FOREIGN = 'example.com/archive';

/** Audited condition on the status; undefined: none (written before auditing, or just ended). */
type AuditedState = AuditReason | undefined;
const AUDITED_STATES: readonly AuditedState[] = [
  undefined,
  AuditReason.Pending,
  AuditReason.Abandoned,
  AuditReason.Recorded,
];
/** The states in which the row is not known to be committed (nor given up). */
const NOT_YET_AUDITED: readonly AuditedState[] = [undefined, AuditReason.Pending];

function stateName(state: AuditedState): string {
  return state === undefined ? 'no Audited condition' : `Audited ${state}`;
}

/**
 * What this process knows of the row. By default it queued the row when the run finished, as
 * the process that ends a run does; `queuedAtMs: undefined` is a process that never tried.
 */
function view(
  committed: boolean,
  pending: boolean,
  deadlineMs = DEADLINE,
  queuedAtMs = FINISHED_AT.getTime(),
): AuditView {
  return { committed, pending, deadlineMs, queuedAtMs };
}

/** Every committed/pending combination, with the deadline far off and already passed (0). */
const ALL_VIEWS: readonly AuditView[] = [DEADLINE, 0].flatMap((deadlineMs) =>
  [false, true].flatMap((committed) =>
    [false, true].map((pending) => view(committed, pending, deadlineMs)),
  ),
);

function viewName(audit: AuditView | undefined): string {
  return audit === undefined
    ? 'auditing off'
    : `committed=${audit.committed} pending=${audit.pending} deadlineMs=${audit.deadlineMs}`;
}

/**
 * A terminal run's metadata and clock, and what decide() does with it when auditing is off (or
 * done): release our finalizer first, then the TTL, otherwise nothing. Every `now` is before
 * GIVE_UP_AT.
 */
interface Shape {
  readonly name: string;
  readonly ttl?: number | undefined;
  /** Holds the run-protection finalizer. */
  readonly ours: boolean;
  readonly foreign?: boolean;
  readonly deleting: boolean;
  /** Milliseconds after FINISHED_AT. */
  readonly since: number;
  readonly old: Action;
}

const SHAPES: readonly Shape[] = [
  { name: 'no TTL', ours: false, deleting: false, since: 0, old: NONE },
  { name: 'no TTL, 9 min later', ours: false, deleting: false, since: 9 * MINUTE, old: NONE },
  {
    name: 'TTL 60s, not due',
    ttl: 60,
    ours: false,
    deleting: false,
    since: 10 * SECOND,
    old: requeue(50 * SECOND),
  },
  { name: 'TTL 60s, due', ttl: 60, ours: false, deleting: false, since: MINUTE, old: DELETE },
  { name: 'TTL 0', ttl: 0, ours: false, deleting: false, since: 0, old: DELETE },
  { name: 'finalizer, no TTL', ours: true, deleting: false, since: 0, old: RELEASE },
  { name: 'finalizer, TTL 0', ttl: 0, ours: true, deleting: false, since: 0, old: RELEASE },
  {
    name: 'finalizer and a foreign one, TTL 60s due',
    ttl: 60,
    ours: true,
    foreign: true,
    deleting: false,
    since: 2 * MINUTE,
    old: RELEASE,
  },
  { name: 'deleting, finalizer', ours: true, deleting: true, since: 0, old: RELEASE },
  {
    name: 'deleting, no finalizer, TTL 0',
    ttl: 0,
    ours: false,
    deleting: true,
    since: MINUTE,
    old: NONE,
  },
  {
    name: 'only a foreign finalizer',
    ours: false,
    foreign: true,
    deleting: false,
    since: 0,
    old: NONE,
  },
  {
    name: 'deleting, only a foreign finalizer, TTL 0',
    ttl: 0,
    ours: false,
    foreign: true,
    deleting: true,
    since: 0,
    old: NONE,
  },
];

/** The run that started at T0 and ended at FINISHED_AT with `reason`, in `shape`. */
function ended(reason: TerminalReason, shape: Shape, audited: AuditedState): AgentRun {
  const spec = shape.ttl === undefined ? {} : { ttlSecondsAfterFinished: shape.ttl };
  let run = finished(running(agentRun({ spec }), 1, T0), reason, FINISHED_AT);
  if (audited !== undefined) run = auditedAs(run, audited);
  const finalizers = [...(shape.foreign ? [FOREIGN] : []), ...(shape.ours ? [FINALIZER] : [])];
  return {
    ...run,
    metadata: {
      ...run.metadata,
      ...(finalizers.length > 0 ? { finalizers } : {}),
      ...(shape.deleting ? { deletionTimestamp: FINISHED_AT.toISOString() } : {}),
    },
  };
}

/** The run with the Audited condition set to `reason` at `when`. */
function auditedAs(run: AgentRun, reason: AuditReason, when: Date = FINISHED_AT): AgentRun {
  return withStatus(run, withAudited(run.status ?? {}, run, reason, `audit ${reason}`, when));
}

function nowOf(shape: Shape): Date {
  return new Date(FINISHED_AT.getTime() + shape.since);
}

describe('decide, terminal run, auditing off: the behaviour without audit', () => {
  it.each(SHAPES)('$name', (shape) => {
    for (const audited of AUDITED_STATES) {
      const run = ended('Succeeded', shape, audited);
      const now = nowOf(shape);
      expect(
        decide({ handlers: HANDLERS, run, executing: false, now }),
        stateName(audited),
      ).toStrictEqual(shape.old);
      expect(
        decide({ handlers: HANDLERS, run, executing: false, now, audit: undefined }),
        `${stateName(audited)}, audit: undefined`,
      ).toStrictEqual(shape.old);
      // Even long past any deadline: without auditing there is nothing to give up.
      const late = at(365 * 24 * 60 * MINUTE);
      const lateExpected = shape.old.type === 'requeue' ? DELETE : shape.old;
      expect(
        decide({ handlers: HANDLERS, run, executing: false, now: late }),
        stateName(audited),
      ).toStrictEqual(lateExpected);
    }
  });
});

describe('decide, terminal run, Audited=True: the behaviour without audit', () => {
  it('whatever the shape and the audit view', () => {
    for (const shape of SHAPES) {
      const run = ended('Succeeded', shape, AuditReason.Recorded);
      for (const audit of ALL_VIEWS) {
        expect(
          decide({ handlers: HANDLERS, run, executing: false, now: nowOf(shape), audit }),
          `${shape.name}, ${viewName(audit)}`,
        ).toStrictEqual(shape.old);
      }
    }
  });
});

describe('decide, terminal run, not audited and committed -> markAudited', () => {
  it('whatever the shape, the pending flag and the deadline', () => {
    for (const shape of SHAPES) {
      // Abandoned included: a row that lands after the run was let go is still recorded.
      for (const audited of [...NOT_YET_AUDITED, AuditReason.Abandoned]) {
        const run = ended('Succeeded', shape, audited);
        for (const audit of ALL_VIEWS.filter((v) => v.committed)) {
          expect(
            decide({ handlers: HANDLERS, run, executing: false, now: nowOf(shape), audit }),
            `${shape.name}, ${stateName(audited)}, ${viewName(audit)}`,
          ).toStrictEqual(MARK_AUDITED);
        }
      }
    }
  });

  it('also long after the deadline and while being deleted', () => {
    const shape = SHAPES.find((s) => s.name === 'deleting, no finalizer, TTL 0') as Shape;
    const run = ended('Failed', shape, AuditReason.Abandoned);
    expect(
      decide({
        handlers: HANDLERS,
        run,
        executing: false,
        now: at(24 * 60 * MINUTE),
        audit: view(true, false),
      }),
    ).toStrictEqual(MARK_AUDITED);
  });
});

describe('decide, terminal run, not committed and not pending -> audit', () => {
  it('whatever the shape, before the deadline', () => {
    for (const shape of SHAPES) {
      for (const audited of NOT_YET_AUDITED) {
        const run = ended('Succeeded', shape, audited);
        expect(
          decide({
            handlers: HANDLERS,
            run,
            executing: false,
            now: nowOf(shape),
            audit: view(false, false),
          }),
          `${shape.name}, ${stateName(audited)}`,
        ).toStrictEqual(AUDIT);
      }
    }
  });

  it('right at finishedAt and with a deadline of 1 ms still to go', () => {
    const shape = SHAPES[0] as Shape;
    const run = ended('Succeeded', shape, undefined);
    expect(
      decide({
        handlers: HANDLERS,
        run,
        executing: false,
        now: FINISHED_AT,
        audit: view(false, false, 1),
      }),
    ).toStrictEqual(AUDIT);
  });

  // A row the sink refuses (queue full, or refused for good) is queued again until the deadline,
  // then given up, so that a held finalizer is released rather than kept forever.
  it('not pending after the deadline (the sink refused the row): abandoned, not re-audited forever', () => {
    const run = finished(protectedRun(agentRun()), 'Succeeded', T0);
    const refused = view(false, false, DEADLINE, T0.getTime());
    for (const late of [0, 1, 60 * SECOND]) {
      expect(
        decide({
          handlers: HANDLERS,
          run,
          executing: false,
          now: at(DEADLINE + late),
          audit: refused,
        }),
      ).toStrictEqual(ABANDON);
    }
    expect(
      decide({ handlers: HANDLERS, run, executing: false, now: at(DEADLINE - 1), audit: refused }),
    ).toStrictEqual(AUDIT);
  });
});

describe('decide, terminal run, never queued by this process (start-up) -> audit', () => {
  const neverTried = (committed: boolean, deadlineMs = DEADLINE): AuditView => ({
    committed,
    pending: false,
    deadlineMs,
  });

  it('whatever the shape and the deadline; a commit seen here still wins', () => {
    for (const shape of SHAPES) {
      // Not yet audited, or given up by an earlier process: one more try, at any age.
      for (const audited of [...NOT_YET_AUDITED, AuditReason.Abandoned]) {
        const run = ended('Succeeded', shape, audited);
        const label = `${shape.name}, ${stateName(audited)}`;
        for (const deadlineMs of [DEADLINE, 0]) {
          expect(
            decide({
              handlers: HANDLERS,
              run,
              executing: false,
              now: nowOf(shape),
              audit: neverTried(false, deadlineMs),
            }),
            `${label}, deadline ${deadlineMs}`,
          ).toStrictEqual(AUDIT);
        }
        // A commit seen here still wins.
        expect(
          decide({
            handlers: HANDLERS,
            run,
            executing: false,
            now: nowOf(shape),
            audit: neverTried(true),
          }),
          label,
        ).toStrictEqual(MARK_AUDITED);
      }
    }
  });

  it('a run already Audited is left alone', () => {
    const run = ended('Succeeded', SHAPES[0] as Shape, AuditReason.Recorded);
    expect(
      decide({
        handlers: HANDLERS,
        run,
        executing: false,
        now: FINISHED_AT,
        audit: neverTried(false),
      }),
    ).toStrictEqual(NONE);
  });

  it('the deadline counts from the first try here when that is later than finishedAt', () => {
    const run = protectedRun(ended('Succeeded', SHAPES[0] as Shape, AuditReason.Pending));
    // The operator was down for two hours; this process queued the row when it started.
    const triedAt = FINISHED_AT.getTime() + 2 * 60 * MINUTE;
    const pending = view(false, true, DEADLINE, triedAt);
    const later = (ms: number) => new Date(triedAt + ms);
    expect(
      decide({ handlers: HANDLERS, run, executing: false, now: later(0), audit: pending }),
    ).toStrictEqual(requeue(DEADLINE));
    expect(
      decide({
        handlers: HANDLERS,
        run,
        executing: false,
        now: later(DEADLINE - 1),
        audit: pending,
      }),
    ).toStrictEqual(requeue(1));
    expect(
      decide({ handlers: HANDLERS, run, executing: false, now: later(DEADLINE), audit: pending }),
    ).toStrictEqual(ABANDON);
  });

  it('a run given up earlier is tried once, without holding it again', () => {
    const shape: Shape = { name: '', ttl: 0, ours: false, deleting: false, since: 0, old: NONE };
    const run = ended('Failed', shape, AuditReason.Abandoned);
    const now = at(24 * 60 * MINUTE);
    const triedAt = now.getTime();
    const steps: [AuditView, Action][] = [
      [{ committed: false, pending: false, deadlineMs: DEADLINE }, AUDIT],
      // Queued: no finalizer, no second Warning; the TTL goes on.
      [view(false, true, DEADLINE, triedAt), DELETE],
      // Refused or failed again: no further try from this process.
      [view(false, false, DEADLINE, triedAt), DELETE],
      // Landed after all.
      [view(true, false, DEADLINE, triedAt), MARK_AUDITED],
    ];
    for (const [audit, expected] of steps) {
      expect(
        decide({ handlers: HANDLERS, run, executing: false, now, audit }),
        viewName(audit),
      ).toStrictEqual(expected);
    }
    const held = protectedRun(run);
    expect(
      decide({
        handlers: HANDLERS,
        run: held,
        executing: false,
        now,
        audit: view(false, true, DEADLINE, triedAt),
      }),
    ).toStrictEqual(RELEASE);
  });
});

describe('decide, terminal run, row pending before the deadline', () => {
  const before: readonly [string, number][] = [
    ['at finishedAt', 0],
    ['10s after', 10 * SECOND],
    ['1 ms before the deadline', DEADLINE - 1],
    // Clock skew: this process is behind the one that wrote finishedAt.
    ['1s before finishedAt', -SECOND],
  ];

  it('in every shape: protect a run neither held nor deleted, otherwise wait for the row', () => {
    for (const shape of SHAPES) {
      for (const audited of NOT_YET_AUDITED) {
        const run = ended('Succeeded', shape, audited);
        const now = nowOf(shape);
        const expected =
          !shape.ours && !shape.deleting ? PROTECT : requeue(GIVE_UP_AT - now.getTime());
        expect(
          decide({ handlers: HANDLERS, run, executing: false, now, audit: view(false, true) }),
          `${shape.name}, ${stateName(audited)}`,
        ).toStrictEqual(expected);
      }
    }
  });

  describe('at several times before the deadline', () => {
    it.each(before)(
      'no finalizer, not deleting -> protect, with or without a TTL due (%s)',
      (_when, since) => {
        const now = new Date(FINISHED_AT.getTime() + since);
        for (const ttl of [undefined, 0, 1]) {
          const shape: Shape = { name: '', ttl, ours: false, deleting: false, since, old: NONE };
          const run = ended('Succeeded', shape, AuditReason.Pending);
          expect(
            decide({ handlers: HANDLERS, run, executing: false, now, audit: view(false, true) }),
            `ttl=${ttl}`,
          ).toStrictEqual(PROTECT);
        }
      },
    );

    it.each(before)(
      'holding the finalizer -> requeue for exactly finishedAt + deadline - now (%s)',
      (_when, since) => {
        const now = new Date(FINISHED_AT.getTime() + since);
        for (const ttl of [undefined, 0, 60]) {
          for (const deleting of [false, true]) {
            const shape: Shape = { name: '', ttl, ours: true, deleting, since, old: NONE };
            const run = ended('Succeeded', shape, AuditReason.Pending);
            expect(
              decide({ handlers: HANDLERS, run, executing: false, now, audit: view(false, true) }),
              `ttl=${ttl} deleting=${deleting}`,
            ).toStrictEqual(requeue(DEADLINE - since));
          }
        }
      },
    );

    it.each(before)(
      'deleting without our finalizer -> requeue, nothing can be added (%s)',
      (_when, since) => {
        const now = new Date(FINISHED_AT.getTime() + since);
        for (const foreign of [false, true]) {
          const shape: Shape = {
            name: '',
            ttl: 0,
            ours: false,
            foreign,
            deleting: true,
            since,
            old: NONE,
          };
          const run = ended('Succeeded', shape, AuditReason.Pending);
          expect(
            decide({ handlers: HANDLERS, run, executing: false, now, audit: view(false, true) }),
            `foreign=${foreign}`,
          ).toStrictEqual(requeue(DEADLINE - since));
        }
      },
    );
  });

  it.each<[number, number, number]>([
    // deadlineMs, ms after finishedAt, expected afterMs
    [1, 0, 1],
    [30 * SECOND, 0, 30 * SECOND],
    [30 * SECOND, 12_345, 30 * SECOND - 12_345],
    [60 * MINUTE, 59 * MINUTE, MINUTE],
    [24 * 60 * MINUTE, 1, 24 * 60 * MINUTE - 1],
  ])('deadlineMs=%i, %i ms after finishedAt -> requeue after %i ms', (deadlineMs, since, after) => {
    const shape: Shape = { name: '', ours: true, deleting: false, since, old: NONE };
    const run = ended('Succeeded', shape, AuditReason.Pending);
    const now = new Date(FINISHED_AT.getTime() + since);
    expect(
      decide({
        handlers: HANDLERS,
        run,
        executing: false,
        now,
        audit: view(false, true, deadlineMs),
      }),
    ).toStrictEqual(requeue(after));
  });

  it('finishedAt with sub-second precision counts to the millisecond', () => {
    const shape: Shape = { name: '', ours: true, deleting: false, since: 0, old: NONE };
    const base = ended('Failed', shape, AuditReason.Pending);
    const run = withStatus(base, {
      ...(base.status as AgentRunStatus),
      finishedAt: '2026-03-01T10:00:05.250Z',
    });
    expect(
      decide({
        handlers: HANDLERS,
        run,
        executing: false,
        now: at(5 * SECOND),
        audit: view(false, true, SECOND),
      }),
    ).toStrictEqual(requeue(1250));
  });
});

describe('decide, terminal run, row pending at or after the deadline -> abandonAudit', () => {
  const after: readonly [string, number][] = [
    ['exactly at the deadline', DEADLINE],
    ['1 ms after', DEADLINE + 1],
    ['a day after', 24 * 60 * MINUTE],
  ];

  it('deadline 0 (already passed), whatever the shape', () => {
    for (const shape of SHAPES) {
      for (const audited of NOT_YET_AUDITED) {
        const run = ended('Succeeded', shape, audited);
        expect(
          decide({
            handlers: HANDLERS,
            run,
            executing: false,
            now: nowOf(shape),
            audit: view(false, true, 0),
          }),
          `${shape.name}, ${stateName(audited)}`,
        ).toStrictEqual(ABANDON);
      }
    }
  });

  it.each(after)('%s, whatever the finalizer, deletion and TTL', (_when, since) => {
    const now = new Date(FINISHED_AT.getTime() + since);
    for (const shape of SHAPES) {
      for (const audited of NOT_YET_AUDITED) {
        const run = ended('Succeeded', shape, audited);
        expect(
          decide({ handlers: HANDLERS, run, executing: false, now, audit: view(false, true) }),
          `${shape.name}, ${stateName(audited)}`,
        ).toStrictEqual(ABANDON);
      }
    }
  });

  it('1 ms before the deadline is not yet', () => {
    const shape: Shape = { name: '', ours: true, deleting: false, since: 0, old: NONE };
    const run = ended('Succeeded', shape, AuditReason.Pending);
    expect(
      decide({
        handlers: HANDLERS,
        run,
        executing: false,
        now: new Date(GIVE_UP_AT - 1),
        audit: view(false, true),
      }),
    ).toStrictEqual(requeue(1));
    expect(
      decide({
        handlers: HANDLERS,
        run,
        executing: false,
        now: new Date(GIVE_UP_AT),
        audit: view(false, true),
      }),
    ).toStrictEqual(ABANDON);
  });

  it('a hand-written terminal status without finishedAt -> abandonAudit, never a NaN requeue', () => {
    const condition: Condition = {
      type: 'Succeeded',
      status: 'False',
      reason: 'Failed',
      message: 'x',
      lastTransitionTime: rfc3339(T0),
    };
    const run = agentRun({
      metadata: { finalizers: [FINALIZER] },
      status: { phase: 'Failed', conditions: [condition] },
    });
    expect(
      decide({ handlers: HANDLERS, run, executing: false, now: T0, audit: view(false, true) }),
    ).toStrictEqual(ABANDON);
    // Not pending either: no deadline can be computed, so it is abandoned (the row is still
    // queued best-effort by the reconciler); committed: record it.
    expect(
      decide({ handlers: HANDLERS, run, executing: false, now: T0, audit: view(false, false) }),
    ).toStrictEqual(ABANDON);
    expect(
      decide({ handlers: HANDLERS, run, executing: false, now: T0, audit: view(true, true) }),
    ).toStrictEqual(MARK_AUDITED);
  });
});

describe('decide, terminal run, Abandoned and not committed: the behaviour without audit', () => {
  it('whatever the shape and the audit view', () => {
    for (const shape of SHAPES) {
      const run = ended('Succeeded', shape, AuditReason.Abandoned);
      for (const audit of ALL_VIEWS.filter((v) => !v.committed)) {
        expect(
          decide({ handlers: HANDLERS, run, executing: false, now: nowOf(shape), audit }),
          `${shape.name}, ${viewName(audit)}`,
        ).toStrictEqual(shape.old);
      }
    }
  });

  it('a row still queued after it was given up no longer holds the TTL back', () => {
    const shape: Shape = { name: '', ttl: 0, ours: false, deleting: false, since: 0, old: NONE };
    const run = ended('Succeeded', shape, AuditReason.Abandoned);
    expect(
      decide({
        handlers: HANDLERS,
        run,
        executing: false,
        now: FINISHED_AT,
        audit: view(false, true),
      }),
    ).toStrictEqual(DELETE);
  });
});

describe('decide, terminal run, TTL while the row is pending', () => {
  it('never deleted before the deadline, whatever the TTL', () => {
    for (const ttl of [0, 1, 60, 599]) {
      for (const ours of [false, true]) {
        for (const since of [0, ttl * SECOND, DEADLINE - 1]) {
          const shape: Shape = { name: '', ttl, ours, deleting: false, since, old: NONE };
          const run = ended('Succeeded', shape, AuditReason.Pending);
          const now = new Date(FINISHED_AT.getTime() + since);
          const action = decide({
            handlers: HANDLERS,
            run,
            executing: false,
            now,
            audit: view(false, true),
          });
          const label = `ttl=${ttl} finalizer=${ours} +${since}ms`;
          expect(action.type, label).not.toBe('delete');
          expect(action, label).toStrictEqual(ours ? requeue(DEADLINE - since) : PROTECT);
        }
      }
    }
  });

  it('the wait is until the deadline, not the TTL (even when the TTL comes first)', () => {
    const shape: Shape = { name: '', ttl: 30, ours: true, deleting: false, since: 0, old: NONE };
    const run = ended('Succeeded', shape, AuditReason.Pending);
    expect(
      decide({
        handlers: HANDLERS,
        run,
        executing: false,
        now: FINISHED_AT,
        audit: view(false, true),
      }),
    ).toStrictEqual(requeue(DEADLINE));
  });
});

describe('decide, terminal run, executing: none before any audit decision', () => {
  it('whatever the shape, the audit view and the clock', () => {
    for (const shape of SHAPES) {
      for (const audited of AUDITED_STATES) {
        const run = ended('Succeeded', shape, audited);
        for (const audit of [undefined, ...ALL_VIEWS]) {
          for (const now of [nowOf(shape), new Date(GIVE_UP_AT + DEADLINE)]) {
            expect(
              decide({ handlers: HANDLERS, run, executing: true, now, audit }),
              `${shape.name}, ${stateName(audited)}, ${viewName(audit)}, now=${now.toISOString()}`,
            ).toStrictEqual(NONE);
          }
        }
      }
    }
  });
});

describe('decide, terminal run: every terminal reason is treated alike', () => {
  /** Every view above: auditing off, each committed/pending/deadline mix, never queued here. */
  const views: readonly (AuditView | undefined)[] = [
    undefined,
    ...ALL_VIEWS,
    ...[DEADLINE, 0].flatMap((deadlineMs) =>
      [false, true].map((committed): AuditView => ({ committed, pending: false, deadlineMs })),
    ),
  ];
  /** Milliseconds after FINISHED_AT, on both sides of the TTLs and of the deadline. */
  const times = [
    -SECOND,
    0,
    10 * SECOND,
    MINUTE,
    DEADLINE - 1,
    DEADLINE,
    DEADLINE + 1,
    24 * 60 * MINUTE,
    365 * 24 * 60 * MINUTE,
  ];
  /** Every action a terminal run can get, so the comparison below reaches every branch. */
  const TERMINAL_ACTIONS: readonly Action['type'][] = [
    'abandonAudit',
    'audit',
    'delete',
    'markAudited',
    'none',
    'observe',
    'protect',
    'releaseFinalizer',
    'requeue',
  ];

  /** `run` after its spec changed (a late cancel): a generation its status has not observed. */
  function bumped(run: AgentRun): AgentRun {
    return { ...run, metadata: { ...run.metadata, generation: GENERATION + 1 } };
  }

  it("gets the action a 'Succeeded' run gets, in every shape, audit state and view", () => {
    const differ: string[] = [];
    const seen = new Set<Action['type']>();
    for (const shape of SHAPES) {
      for (const audited of AUDITED_STATES) {
        for (const changed of [false, true]) {
          const runOf = (reason: TerminalReason) => {
            const run = ended(reason, shape, audited);
            return changed ? bumped(run) : run;
          };
          const succeeded = runOf('Succeeded');
          for (const reason of TERMINAL_REASONS.filter((r) => r !== 'Succeeded')) {
            const run = runOf(reason);
            for (const audit of views) {
              for (const executing of [false, true]) {
                for (const since of new Set([shape.since, ...times])) {
                  const now = new Date(FINISHED_AT.getTime() + since);
                  const expected = decide({
                    handlers: HANDLERS,
                    run: succeeded,
                    executing,
                    now,
                    audit,
                  });
                  const actual = decide({ handlers: HANDLERS, run, executing, now, audit });
                  seen.add(expected.type);
                  if (!isDeepStrictEqual(actual, expected)) {
                    differ.push(
                      `${reason}, ${shape.name}, ${stateName(audited)}, generation changed=${changed}, ` +
                        `${viewName(audit)}, executing=${executing}, +${since}ms: ` +
                        `${JSON.stringify(actual)}, Succeeded gets ${JSON.stringify(expected)}`,
                    );
                  }
                }
              }
            }
          }
        }
      }
    }
    expect(differ.length, differ.slice(0, 10).join('\n')).toBe(0);
    expect([...seen].sort()).toStrictEqual(TERMINAL_ACTIONS);
  });
});

describe('decide: a non-terminal run ignores the audit view', () => {
  const base = agentRun({ spec: { backoffLimit: 2 } });
  const states: readonly [string, AgentRun, boolean, Action][] = [
    ['fresh', base, false, { type: 'start', prepared: PREPARED, attempt: 1 }],
    ['running, executing here', running(base, 1, T0), true, NONE],
    [
      'running, nobody executes it',
      running(base, 1, T0),
      false,
      { type: 'start', prepared: PREPARED, attempt: 2, note: 'attempt 1 was interrupted' },
    ],
    [
      'retrying, not due',
      retrying(running(base, 1, T0), at(MINUTE), at(SECOND)),
      false,
      requeue(MINUTE - SECOND),
    ],
  ];

  it.each(states)('%s', (_name, run, executing, expected) => {
    const now = at(SECOND);
    expect(decide({ handlers: HANDLERS, run, executing, now })).toStrictEqual(expected);
    for (const audit of ALL_VIEWS) {
      expect(
        decide({ handlers: HANDLERS, run, executing, now, audit }),
        viewName(audit),
      ).toStrictEqual(expected);
    }
  });
});

/**
 * A tiny model of the reconciler: applies each action to the run (and the audit view) the way
 * reconciler.ts does, so a whole terminal life can be walked through decide().
 */
function apply(run: AgentRun, action: Action, now: Date): AgentRun {
  const finalizers = run.metadata.finalizers ?? [];
  switch (action.type) {
    case 'protect':
      return { ...run, metadata: { ...run.metadata, finalizers: [...finalizers, FINALIZER] } };
    case 'releaseFinalizer':
      return {
        ...run,
        metadata: { ...run.metadata, finalizers: finalizers.filter((f) => f !== FINALIZER) },
      };
    case 'markAudited':
      return auditedAs(run, AuditReason.Recorded, now);
    case 'abandonAudit':
      return auditedAs(run, AuditReason.Abandoned, now);
    default:
      return run;
  }
}

describe('decide, terminal run: whole lives with auditing on', () => {
  const ttl0: Shape = { name: '', ttl: 0, ours: false, deleting: false, since: 0, old: NONE };

  it('the row lands late: protect, wait (no TTL delete), markAudited, release, delete', () => {
    let run = ended('Succeeded', ttl0, AuditReason.Pending);
    const steps: [number, AuditView, Action][] = [
      [0, view(false, true), PROTECT],
      [0, view(false, true), requeue(DEADLINE)],
      [MINUTE, view(false, true), requeue(DEADLINE - MINUTE)],
      [2 * MINUTE, view(true, false), MARK_AUDITED],
      [2 * MINUTE, view(true, false), RELEASE],
      [2 * MINUTE, view(false, false), DELETE],
    ];
    for (const [since, audit, expected] of steps) {
      const now = new Date(FINISHED_AT.getTime() + since);
      const action = decide({ handlers: HANDLERS, run, executing: false, now, audit });
      expect(action, `+${since}ms`).toStrictEqual(expected);
      run = apply(run, action, now);
    }
    expect(isAudited(run.status)).toBe(true);
    expect(run.metadata.finalizers).toStrictEqual([]);
  });

  it('the database stays down: wait until the deadline, abandon, release, delete', () => {
    let run = ended('Failed', ttl0, AuditReason.Pending);
    const steps: [number, Action][] = [
      [0, PROTECT],
      [DEADLINE - 1, requeue(1)],
      [DEADLINE, ABANDON],
      [DEADLINE, RELEASE],
      [DEADLINE, DELETE],
    ];
    for (const [since, expected] of steps) {
      const now = new Date(FINISHED_AT.getTime() + since);
      const action = decide({
        handlers: HANDLERS,
        run,
        executing: false,
        now,
        audit: view(false, true),
      });
      expect(action, `+${since}ms`).toStrictEqual(expected);
      run = apply(run, action, now);
    }
    const condition = findCondition(run.status?.conditions, 'Audited');
    expect(condition?.status).toBe('False');
    expect(condition?.reason).toBe('Abandoned');
  });

  it('after a restart: audit again, then protect, then record', () => {
    let run = ended('TimedOut', { ...ttl0, ttl: undefined }, AuditReason.Pending);
    const steps: [AuditView, Action][] = [
      [view(false, false), AUDIT],
      [view(false, true), PROTECT],
      [view(false, true), requeue(DEADLINE - MINUTE)],
      [view(true, false), MARK_AUDITED],
      [view(true, false), RELEASE],
      [view(false, false), NONE],
    ];
    for (const [audit, expected] of steps) {
      const now = at(5 * SECOND + MINUTE);
      const action = decide({ handlers: HANDLERS, run, executing: false, now, audit });
      expect(action, viewName(audit)).toStrictEqual(expected);
      run = apply(run, action, now);
    }
  });

  it('deleted while the row is pending: our finalizer holds the deletion until the row lands', () => {
    const shape: Shape = { name: '', ours: true, deleting: true, since: 0, old: NONE };
    let run = ended('Canceled', shape, AuditReason.Pending);
    const now = at(5 * SECOND + MINUTE);
    expect(
      decide({ handlers: HANDLERS, run, executing: false, now, audit: view(false, true) }),
    ).toStrictEqual(requeue(DEADLINE - MINUTE));
    const action = decide({
      handlers: HANDLERS,
      run,
      executing: false,
      now,
      audit: view(true, false),
    });
    expect(action).toStrictEqual(MARK_AUDITED);
    run = apply(run, action, now);
    expect(
      decide({ handlers: HANDLERS, run, executing: false, now, audit: view(false, false) }),
    ).toStrictEqual(RELEASE);
  });
});

describe('withAudited', () => {
  const done = finished(running(agentRun(), 1, T0), 'Succeeded', FINISHED_AT);
  const base = done.status as AgentRunStatus;
  const LATER = at(MINUTE);

  it.each<[AuditReason, 'True' | 'False']>([
    [AuditReason.Recorded, 'True'],
    [AuditReason.Pending, 'False'],
    [AuditReason.Abandoned, 'False'],
  ])('adds Audited %s as %s, after the other conditions, keeping them', (reason, status) => {
    const next = withAudited(base, done, reason, 'why', LATER);
    expect(next.conditions?.slice(0, -1)).toStrictEqual(base.conditions);
    expect(next.conditions?.at(-1)).toStrictEqual({
      type: 'Audited',
      status,
      reason,
      message: 'why',
      observedGeneration: GENERATION,
      lastTransitionTime: rfc3339(LATER),
    });
    const { conditions: _a, ...rest } = next;
    const { conditions: _b, ...before } = base;
    expect(rest).toStrictEqual(before);
    expect(isAudited(next)).toBe(status === 'True');
  });

  it('on a status without conditions -> only Audited', () => {
    const next = withAudited({}, done, AuditReason.Pending, 'queued', LATER);
    expect(next.conditions?.map((c) => c.type)).toStrictEqual(['Audited']);
    expect(Object.keys(next)).toStrictEqual(['conditions']);
  });

  it('without metadata.generation -> no observedGeneration on the condition', () => {
    const run = { ...done, metadata: { ...done.metadata } };
    delete run.metadata.generation;
    const condition = withAudited(base, run, AuditReason.Recorded, 'ok', LATER).conditions?.at(-1);
    expect(condition && 'observedGeneration' in condition).toBe(false);
  });

  const transitions: [AuditReason, AuditReason, boolean][] = [
    [AuditReason.Pending, AuditReason.Pending, false],
    [AuditReason.Pending, AuditReason.Abandoned, false],
    [AuditReason.Pending, AuditReason.Recorded, true],
    [AuditReason.Abandoned, AuditReason.Pending, false],
    [AuditReason.Abandoned, AuditReason.Abandoned, false],
    [AuditReason.Abandoned, AuditReason.Recorded, true],
    [AuditReason.Recorded, AuditReason.Pending, true],
    [AuditReason.Recorded, AuditReason.Abandoned, true],
    [AuditReason.Recorded, AuditReason.Recorded, false],
  ];

  it.each(transitions)(
    '%s -> %s: updated in place; lastTransitionTime moves: %s',
    (from, to, moves) => {
      const first = withAudited(base, done, from, 'first', LATER);
      const THEN = at(5 * MINUTE);
      const next = withAudited(first, done, to, 'second', THEN);
      expect(next.conditions?.map((c) => c.type)).toStrictEqual(
        first.conditions?.map((c) => c.type),
      );
      const condition = findCondition(next.conditions, 'Audited');
      expect(condition).toMatchObject({
        status: to === AuditReason.Recorded ? 'True' : 'False',
        reason: to,
        message: 'second',
      });
      expect(condition?.lastTransitionTime).toBe(rfc3339(moves ? THEN : LATER));
      // The other conditions' times never move.
      const { Audited: _x, ...others } = transitionTimes(next);
      const { Audited: _y, ...othersBefore } = transitionTimes(first);
      expect(others).toStrictEqual(othersBefore);
    },
  );

  it('keeps its place among the conditions when updated', () => {
    const first = withAudited(base, done, AuditReason.Pending, 'queued', LATER);
    const moved: AgentRunStatus = {
      ...first,
      conditions: [...(first.conditions ?? [])].reverse(),
    };
    const next = withAudited(moved, done, AuditReason.Recorded, 'ok', LATER);
    expect(next.conditions?.map((c) => c.type)).toStrictEqual(moved.conditions?.map((c) => c.type));
  });

  it('never mutates the status or run it is given', () => {
    const status = structuredClone(base);
    const run = structuredClone(done);
    withAudited(status, run, AuditReason.Recorded, 'ok', LATER);
    const pending = withAudited(status, run, AuditReason.Pending, 'q', LATER);
    const copy = structuredClone(pending);
    withAudited(pending, run, AuditReason.Recorded, 'ok', LATER);
    expect(status).toStrictEqual(base);
    expect(run).toStrictEqual(done);
    expect(pending).toStrictEqual(copy);
  });
});

describe('progress with the Audited condition', () => {
  const base = agentRun({ spec: { backoffLimit: 20 } });
  const inProgress: readonly [string, AgentRunStatus | undefined][] = [
    ['no status', undefined],
    ['running attempt 1', running(base, 1, T0).status],
    ['retrying after attempt 1', retrying(running(base, 1, T0), at(MINUTE), at(SECOND)).status],
    ['running attempt 1000', running(base, 1000, T0).status],
    [
      'retrying after attempt 1000',
      retrying(running(base, 1000, T0), at(MINUTE), at(SECOND)).status,
    ],
    [
      'running attempt 1000, with Audited=True on it',
      (() => {
        const r = running(base, 1000, T0);
        return withAudited(r.status as AgentRunStatus, r, AuditReason.Recorded, 'ok', T0);
      })(),
    ],
  ];

  it('every terminal reason: audited > unaudited (any) > any running state', () => {
    for (const reason of TERMINAL_REASONS) {
      for (const from of [agentRun(), running(base, 7, T0)]) {
        const done = finished(from, reason, FINISHED_AT);
        const audited = progress(auditedAs(done, AuditReason.Recorded).status);
        const unaudited = [
          done.status,
          auditedAs(done, AuditReason.Pending).status,
          auditedAs(done, AuditReason.Abandoned).status,
        ].map(progress);
        expect(audited, reason).toBe(Number.MAX_SAFE_INTEGER);
        expect(unaudited, reason).toStrictEqual([
          Number.MAX_SAFE_INTEGER - 1,
          Number.MAX_SAFE_INTEGER - 1,
          Number.MAX_SAFE_INTEGER - 1,
        ]);
        for (const [name, status] of inProgress) {
          expect(Math.min(...unaudited), `${reason}, ${name}`).toBeGreaterThan(progress(status));
        }
      }
    }
  });

  it('Audited on a non-terminal status changes nothing', () => {
    const r = running(base, 3, T0);
    for (const reason of [AuditReason.Pending, AuditReason.Abandoned, AuditReason.Recorded]) {
      const status = withAudited(r.status as AgentRunStatus, r, reason, 'x', T0);
      expect(progress(status), reason).toBe(progress(r.status));
    }
  });
});

describe('decide, a finished run whose spec changed afterwards (kstatus observedGeneration)', () => {
  const done = finished(agentRun(), 'Succeeded', T0);
  const bumped: AgentRun = { ...done, metadata: { ...done.metadata, generation: GENERATION + 1 } };

  it('acknowledges the new generation once (observe), before anything else', () => {
    expect(
      decide({ handlers: HANDLERS, run: bumped, executing: false, now: at(SECOND) }),
    ).toStrictEqual({
      type: 'observe',
    });
    expect(
      decide({
        handlers: HANDLERS,
        run: bumped,
        executing: false,
        now: at(SECOND),
        audit: view(false, false),
      }),
    ).toStrictEqual({ type: 'observe' });
  });

  it('waits while the outcome is still being written, and is quiet once observed', () => {
    expect(
      decide({ handlers: HANDLERS, run: bumped, executing: true, now: at(SECOND) }),
    ).toStrictEqual({
      type: 'none',
    });
    const observed: AgentRun = { ...bumped, status: observedStatus(bumped) };
    expect(observed.status?.observedGeneration).toBe(GENERATION + 1);
    expect(observed.status?.conditions?.every((c) => c.observedGeneration === GENERATION + 1)).toBe(
      true,
    );
    expect(
      decide({ handlers: HANDLERS, run: observed, executing: false, now: at(SECOND) }),
    ).toStrictEqual({
      type: 'none',
    });
  });
});
