// The AgentRun bad-input corpus (test/corpus/agentrun/*.json) through the pure paths: a model of
// admission (the CRD's structural schema, object names, strict field validation), the zod
// schema the informer parses with, decide(), the handlers' planning and execution (noop, and
// http.check in dry run: no network), the status builders and the audit record. Every case
// must be refused at admission, or reach its expected outcome with a status the status schema
// accepts and an audit row equal to the status. test/integration/faults/bad-input.test.ts runs
// the same cases against a real API server, operator and PostgreSQL.
import { describe, expect, it } from 'vitest';
import { type AgentRun, agentRunSchema, agentRunStatusSchema } from '../../../src/api/agentrun.ts';
import { ConditionType, findCondition } from '../../../src/api/conditions.ts';
import { sanitiseRecord } from '../../../src/audit/audit-record.ts';
import { auditRecord } from '../../../src/controller/audit-records.ts';
import { decide, type PreparedRun } from '../../../src/controller/decide.ts';
import {
  type AttemptResult,
  attemptFailure,
  attemptResult,
  isTerminal,
  runningStatus,
  statusAfterAttempt,
  terminalStatus,
} from '../../../src/controller/run-status.ts';
import { httpCheckHandler } from '../../../src/handlers/http-check.ts';
import { noopHandler } from '../../../src/handlers/noop.ts';
import { HandlerRegistry } from '../../../src/handlers/registry.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { cleanText } from '../../../src/util/text.ts';
import {
  type AgentRunCase,
  admissionProblems,
  type ExpectedOutcome,
  loadAgentRunCorpus,
  wellFormed,
} from '../../support/bad-input.ts';

const CASES = loadAgentRunCorpus();
const T0 = new Date('2026-03-01T10:00:00.000Z');

const handlers = new HandlerRegistry([
  noopHandler,
  httpCheckHandler({
    resolve: async (host) => {
      throw new Error(`no DNS in unit tests (${host})`);
    },
  }),
]);

/** What the API server stores of an admitted object: status dropped, strings made valid UTF-8. */
function asStored(manifest: Record<string, unknown>): AgentRun {
  const { status: _ignored, ...rest } = manifest;
  const stored = wellFormed(rest) as Record<string, unknown>;
  const metadata = stored['metadata'] as Record<string, unknown>;
  const run = agentRunSchema.safeParse({
    ...stored,
    metadata: {
      ...metadata,
      namespace: 'corpus',
      uid: '6f1c1a9e-0000-4000-8000-00000000c0de',
      resourceVersion: '1',
      generation: 1,
      creationTimestamp: T0.toISOString(),
    },
  });
  if (!run.success) {
    // Admitted but unparsable: the informer would skip it and the run would never get a status.
    throw new Error(`admitted, but the operator cannot parse it: ${run.error.message}`);
  }
  return run.data;
}

interface Simulated {
  readonly run: AgentRun;
  readonly artifacts: unknown;
}

/** Runs the case to its end as the controller would, with a virtual clock between attempts. */
async function simulate(initial: AgentRun): Promise<Simulated> {
  let run = initial;
  let now = T0;
  let artifacts: unknown;
  for (let step = 0; step < 100; step++) {
    if (isTerminal(run.status)) return { run, artifacts };
    const action = decide({ run, executing: false, now, handlers });
    switch (action.type) {
      case 'finish':
        run = {
          ...run,
          status: terminalStatus(run, { reason: action.reason, message: action.message }, now),
        };
        break;
      case 'requeue':
        now = new Date(now.getTime() + action.afterMs);
        break;
      case 'start': {
        run = { ...run, status: runningStatus(run, action.attempt, action.prepared.plan, now) };
        const result = await execute(run, action.prepared.execute);
        if (result.kind === 'succeeded') artifacts = result.artifacts;
        now = new Date(now.getTime() + 10);
        run = {
          ...run,
          status: statusAfterAttempt(run, result, now, { baseMs: 100, maxMs: 1000 }),
        };
        break;
      }
      default:
        throw new Error(`unexpected action ${action.type} for a run before its end`);
    }
  }
  throw new Error('the run did not end within 100 steps');
}

/** The executor's part: the run's deadline aborts the handler as TimedOut. */
async function execute(run: AgentRun, handler: PreparedRun['execute']): Promise<AttemptResult> {
  const signal = AbortSignal.timeout(run.spec.timeoutSeconds * 1000);
  const ctx = {
    runId: run.metadata.uid,
    attempt: run.status?.attempts ?? 1,
    dryRun: run.spec.dryRun,
    signal,
    logger: silentLogger(),
  };
  try {
    return attemptResult(await handler(ctx));
  } catch (error) {
    if (signal.aborted) {
      return { kind: 'aborted', reason: 'TimedOut', message: 'exceeded its timeoutSeconds' };
    }
    return attemptFailure(error);
  }
}

function checkOutcome(run: AgentRun, expected: ExpectedOutcome): void {
  const status = run.status ?? {};
  const succeeded = findCondition(status.conditions, ConditionType.Succeeded);
  expect(status.phase).toBe(expected.phase);
  if (expected.reason !== undefined) expect(succeeded?.reason).toBe(expected.reason);
  if (expected.message !== undefined) expect(succeeded?.message).toContain(expected.message);
  if (expected.error !== undefined) expect(status.error).toContain(expected.error);
  if (expected.attempts !== undefined) expect(status.attempts).toBe(expected.attempts);
  expect(succeeded?.message.length).toBeGreaterThan(0);
}

/** Columns of agent_audit_log by their SanitisedRecord names. */
const COLUMNS: Record<string, string> = {
  user_email: 'userEmail',
  objective: 'objective',
  error: 'error',
};

function checkAudit(c: AgentRunCase, run: AgentRun, artifacts: unknown): void {
  const status = run.status ?? {};
  const sanitised = sanitiseRecord(auditRecord(run, status, artifacts), { now: T0 });
  if (!sanitised.ok) throw new Error(sanitised.problem);
  const row = sanitised.record;
  expect(row.status).toBe(status.phase?.toLowerCase());
  expect(row.reason).toBe(findCondition(status.conditions, ConditionType.Succeeded)?.reason);
  expect(row.attempts).toBe(status.attempts);
  expect(row.error).toBe(status.error ?? null);
  expect(row.finishedAt?.toISOString()).toBe(status.finishedAt);
  expect(row.startedAt.toISOString()).toBe(status.startedAt ?? status.finishedAt);
  expect(row.durationMs).toBe(status.durationMs);
  expect(row.objective).toBe(cleanText(run.spec.objective));
  expect(row.userEmail).toBe(
    run.spec.requestedBy === undefined ? null : cleanText(run.spec.requestedBy),
  );
  if (c.expect && 'audit' in c.expect) {
    for (const [column, value] of Object.entries(c.expect.audit ?? {})) {
      const field = COLUMNS[column];
      if (field === undefined) throw new Error(`${c.id}: unknown audit column ${column}`);
      expect((row as unknown as Record<string, unknown>)[field], column).toBe(value);
    }
  }
}

describe('the AgentRun bad-input corpus, through the pure paths', () => {
  it('has at least 100 cases with unique ids', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(100);
    expect(new Set(CASES.map((c) => c.id)).size).toBe(CASES.length);
  });

  it.each(CASES.map((c) => [c.id, c] as const))('%s', async (_id, c) => {
    const problems = admissionProblems(c.manifest);
    if ('admission' in c.expect) {
      expect(problems, 'the admission model lets it in').not.toEqual([]);
      return;
    }
    expect(problems).toEqual([]);
    const { run, artifacts } = await simulate(asStored(c.manifest));
    checkOutcome(run, c.expect.outcome);
    expect(agentRunStatusSchema.safeParse(run.status).success).toBe(true);
    checkAudit(c, run, artifacts);
  });
});
