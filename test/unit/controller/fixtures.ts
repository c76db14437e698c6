import type { z } from 'zod';
import {
  type AgentRun,
  type AgentRunStatus,
  API_VERSION,
  agentRunSchema,
  type agentRunSpecSchema,
  KIND,
  type objectMetaSchema,
} from '../../../src/api/agentrun.ts';
import { type Condition, ConditionType, findCondition } from '../../../src/api/conditions.ts';
import type { TerminalReason } from '../../../src/api/reasons.ts';
import { FINALIZER, type PreparedRun } from '../../../src/controller/decide.ts';
import {
  type RetryPolicy,
  retryingStatus,
  runningStatus,
  terminalStatus,
} from '../../../src/controller/run-status.ts';
import type { Handler, JsonObject } from '../../../src/handlers/handler.ts';
import { HandlerRegistry } from '../../../src/handlers/registry.ts';

/** A fixed clock origin: every test time is an offset from it, so expectations are exact. */
export const T0 = new Date('2026-03-01T10:00:00.000Z');

/** `T0 + ms`. */
export function at(ms: number): Date {
  return new Date(T0.getTime() + ms);
}

export const SECOND = 1000;
export const MINUTE = 60 * SECOND;

export const UID = '6f1c1a9e-0000-4000-8000-000000000001';
export const GENERATION = 3;
export const PLAN: JsonObject = { steps: ['check'], target: 'https://example.test' };
export const RETRY: RetryPolicy = { baseMs: 10 * SECOND, maxMs: 6 * MINUTE };

/** What the fixtures' handler plans for every valid run (one object, so actions compare equal). */
export const PREPARED: PreparedRun = {
  ok: true,
  plan: PLAN,
  execute: async () => ({ ok: true }),
};

/**
 * The handlers decide() sees in these tests: `http.check` (the fixtures' agent), whose params
 * are invalid when they hold `bad`, with the message `params.bad: <value>`.
 */
export const HANDLERS = new HandlerRegistry([
  {
    name: 'http.check',
    description: 'a test double of the http.check planner',
    prepare: ({ params }) => {
      const bad = typeof params === 'object' && params !== null && 'bad' in params;
      return bad
        ? { ok: false, reason: 'InvalidParams', message: `params.bad: ${String(params.bad)}` }
        : PREPARED;
    },
  } satisfies Handler,
  { name: 'noop', description: 'another agent', prepare: () => PREPARED } satisfies Handler,
]);

/** Every reason that ends a run, in declaration order. */
export const TERMINAL_REASONS: readonly TerminalReason[] = [
  'Succeeded',
  'Failed',
  'TimedOut',
  'Canceled',
  'UnknownAgent',
  'InvalidParams',
  'InvalidAgent',
  'ExecutorUnavailable',
  'BackoffLimitExceeded',
  'Interrupted',
];

export interface AgentRunOverrides {
  /** Spec fields as a user writes them (before defaulting). */
  readonly spec?: Partial<z.input<typeof agentRunSpecSchema>>;
  readonly metadata?: Partial<z.input<typeof objectMetaSchema>>;
  readonly status?: AgentRunStatus;
}

/**
 * A parsed AgentRun (schema defaults applied: dryRun true, timeoutSeconds 600, backoffLimit 0,
 * cancel false) with generation 3 and no status unless given.
 */
export function agentRun(overrides: AgentRunOverrides = {}): AgentRun {
  return agentRunSchema.parse({
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      name: 'check-site',
      namespace: 'agents',
      uid: UID,
      resourceVersion: '100',
      generation: GENERATION,
      creationTimestamp: '2026-03-01T09:59:00Z',
      ...overrides.metadata,
    },
    spec: { agent: 'http.check', objective: 'check the site answers', ...overrides.spec },
    ...(overrides.status === undefined ? {} : { status: overrides.status }),
  });
}

/** The run with `status` written on it, the way the next read would return it. */
export function withStatus(run: AgentRun, status: AgentRunStatus): AgentRun {
  return { ...run, status };
}

/** The run with attempt `attempt` claimed at `now` (through the real runningStatus). */
export function running(run: AgentRun, attempt: number, now: Date, note?: string): AgentRun {
  return withStatus(run, runningStatus(run, attempt, PLAN, now, note));
}

/** The run after its current attempt failed at `now`, waiting until `retryAt`. */
export function retrying(run: AgentRun, retryAt: Date, now: Date, error = 'boom'): AgentRun {
  return withStatus(run, retryingStatus(run, error, retryAt, now));
}

/** The run ended at `now` with `reason`. */
export function finished(
  run: AgentRun,
  reason: TerminalReason,
  now: Date,
  message = `ended: ${reason}`,
): AgentRun {
  return withStatus(run, terminalStatus(run, { reason, message }, now));
}

/** Marked for deletion at `when` (and holding the run-protection finalizer unless told not to). */
export function deleting(run: AgentRun, when: Date = T0, finalizers = [FINALIZER]): AgentRun {
  return {
    ...run,
    metadata: { ...run.metadata, deletionTimestamp: when.toISOString(), finalizers },
  };
}

/** Holding the run-protection finalizer (not deleted). */
export function protectedRun(run: AgentRun): AgentRun {
  return { ...run, metadata: { ...run.metadata, finalizers: [FINALIZER] } };
}

/** The four kstatus conditions as `type: status/reason`, for compact assertions. */
export function conditionSummary(status: AgentRunStatus | undefined): Record<string, string> {
  const summary: Record<string, string> = {};
  const kstatus = [
    ConditionType.Succeeded,
    ConditionType.Ready,
    ConditionType.Reconciling,
    ConditionType.Stalled,
  ];
  for (const type of kstatus) {
    const c = findCondition(status?.conditions, type);
    summary[type] = c ? `${c.status}/${c.reason}` : 'absent';
  }
  return summary;
}

/** lastTransitionTime of each condition, by type. */
export function transitionTimes(status: AgentRunStatus | undefined): Record<string, string> {
  return Object.fromEntries(
    (status?.conditions ?? []).map((c: Condition) => [c.type, c.lastTransitionTime]),
  );
}
