// decide() and the agents a run names: AgentCatalog's resolutions, and the grace an unknown agent
// gets for an AgentDefinition applied with the run (UNKNOWN_AGENT_GRACE_SECONDS).
import { describe, expect, it } from 'vitest';
import { ConditionType, findCondition } from '../../../src/api/conditions.ts';
import { decide } from '../../../src/controller/decide.ts';
import { awaitingAgentStatus, progress, queuedStatus } from '../../../src/controller/run-status.ts';
import type { AgentResolver, Resolution } from '../../../src/handlers/registry.ts';
import {
  agentRun,
  at,
  finished,
  HANDLERS,
  PREPARED,
  retrying,
  running,
  SECOND,
  T0,
} from './fixtures.ts';

const GRACE = 10 * SECOND;
/** Created at T0: the grace ends at T0 + 10 s. */
const fresh = (agent = 'missing') =>
  agentRun({ spec: { agent }, metadata: { creationTimestamp: T0.toISOString() } });

const resolving = (resolution: Resolution): AgentResolver => ({ resolve: () => resolution });

describe('decide: an agent nobody knows (yet)', () => {
  it('grace 0 (or absent): ends UnknownAgent at once, naming the known agents', () => {
    for (const unknownAgentGraceMs of [0, undefined]) {
      expect(
        decide({
          run: fresh(),
          executing: false,
          now: T0,
          handlers: HANDLERS,
          unknownAgentGraceMs,
        }),
      ).toEqual({
        type: 'finish',
        reason: 'UnknownAgent',
        message: HANDLERS.unknownAgentMessage('missing'),
      });
    }
  });

  it('within the grace: waits, Pending/AgentNotFound, until the grace is over', () => {
    expect(
      decide({
        run: fresh(),
        executing: false,
        now: at(3 * SECOND),
        handlers: HANDLERS,
        unknownAgentGraceMs: GRACE,
      }),
    ).toEqual({
      type: 'awaitAgent',
      message: 'no agent named "missing" in namespace agents yet; waiting up to 10s',
      afterMs: 7 * SECOND,
    });
  });

  it('already says AgentNotFound: no second write, just looks again at the end of the grace', () => {
    const run = fresh();
    const waiting = { ...run, status: awaitingAgentStatus(run, 'waiting', T0) };
    expect(
      decide({
        run: waiting,
        executing: false,
        now: at(4 * SECOND),
        handlers: HANDLERS,
        unknownAgentGraceMs: GRACE,
      }),
    ).toEqual({ type: 'requeue', afterMs: 6 * SECOND });
  });

  it('after the grace: ends UnknownAgent as before', () => {
    const run = fresh();
    const waiting = { ...run, status: awaitingAgentStatus(run, 'waiting', T0) };
    for (const candidate of [run, waiting]) {
      expect(
        decide({
          run: candidate,
          executing: false,
          now: at(GRACE),
          handlers: HANDLERS,
          unknownAgentGraceMs: GRACE,
        }),
      ).toMatchObject({ type: 'finish', reason: 'UnknownAgent' });
    }
  });

  it('the agent appears within the grace: the waiting run starts', () => {
    const run = fresh('noop');
    const waiting = { ...run, status: awaitingAgentStatus(run, 'waiting', T0) };
    expect(
      decide({
        run: waiting,
        executing: false,
        now: at(2 * SECOND),
        handlers: HANDLERS,
        unknownAgentGraceMs: GRACE,
      }),
    ).toEqual({ type: 'start', attempt: 1, prepared: PREPARED });
  });

  it('a retry whose agent has gone (its definition deleted) ends at once, grace or not', () => {
    const base = agentRun({
      spec: { agent: 'missing', backoffLimit: 1 },
      metadata: { creationTimestamp: T0.toISOString() },
    });
    const run = retrying(running(base, 1, T0), at(SECOND), at(SECOND));
    expect(
      decide({
        run,
        executing: false,
        now: at(2 * SECOND),
        handlers: HANDLERS,
        unknownAgentGraceMs: GRACE,
      }),
    ).toMatchObject({ type: 'finish', reason: 'UnknownAgent' });
  });

  it('a run that ended UnknownAgent stays ended when the agent appears', () => {
    const run = finished(fresh('noop'), 'UnknownAgent', at(GRACE));
    expect(
      decide({
        run,
        executing: false,
        now: at(GRACE + SECOND),
        handlers: HANDLERS,
        unknownAgentGraceMs: GRACE,
      }),
    ).toEqual({ type: 'none' });
  });
});

describe('decide: definitions that cannot run end at once, without the grace', () => {
  it.each([
    [
      'ExecutorUnavailable',
      'the AgentDefinition "x" cannot run (ExecutorUnavailable): no Job executor',
    ],
    ['InvalidAgent', 'the AgentDefinition "x" cannot run (AddressNotAllowed): blocked'],
  ] as const)('%s', (reason, message) => {
    expect(
      decide({
        run: fresh('x'),
        executing: false,
        now: T0,
        handlers: resolving({ found: false, reason, message }),
        unknownAgentGraceMs: GRACE,
      }),
    ).toEqual({ type: 'finish', reason, message });
  });

  it('resolution is per namespace: decide asks for the run’s own', () => {
    const asked: string[] = [];
    const handlers: AgentResolver = {
      resolve: (name, namespace) => {
        asked.push(`${namespace}/${name}`);
        return HANDLERS.resolve(name);
      },
    };
    decide({ run: fresh('noop'), executing: false, now: T0, handlers });
    expect(asked).toEqual(['agents/noop']);
  });
});

describe('awaitingAgentStatus', () => {
  it('is phase Pending, Succeeded Unknown/AgentNotFound, Reconciling, and ranks like Queued', () => {
    const run = fresh();
    const status = awaitingAgentStatus(run, 'no agent named "missing" yet', T0);
    expect(status.phase).toBe('Pending');
    expect(findCondition(status.conditions, ConditionType.Succeeded)).toMatchObject({
      status: 'Unknown',
      reason: 'AgentNotFound',
      message: 'no agent named "missing" yet',
    });
    expect(findCondition(status.conditions, ConditionType.Reconciling)?.status).toBe('True');
    expect(findCondition(status.conditions, ConditionType.Stalled)?.status).toBe('False');
    expect(progress(status)).toBe(progress(queuedStatus(run, 'queued', T0)));
    expect(progress(status)).toBeGreaterThan(progress(undefined));
  });
});
