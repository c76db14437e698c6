// Property-based fuzz of the spec and handler-result paths (issue 15): arbitrary AgentRun specs,
// valid-ish and junk, through admission's model, the zod schema, decide() and the status
// builders; arbitrary handler results and webhook answers through attemptResult, the status and
// the audit record. Nothing may throw, every refusal must say why, every status must be valid
// and every audit row must equal its status.
//
// Fixed seed and FUZZ_RUNS (default 200) runs per property; `make test-faults` runs 5000.
// A failure prints the seed to reproduce it: FUZZ_SEED=<seed> FUZZ_RUNS=<n> npx vitest run
// test/unit/faults/fuzz.test.ts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  AGENT_NAME_PATTERN,
  type AgentRun,
  agentRunSchema,
  agentRunSpecSchema,
  agentRunStatusSchema,
} from '../../../src/api/agentrun.ts';
import { ConditionType, findCondition } from '../../../src/api/conditions.ts';
import { sanitiseRecord, toJsonSafe } from '../../../src/audit/audit-record.ts';
import { auditRecord } from '../../../src/controller/audit-records.ts';
import { decide } from '../../../src/controller/decide.ts';
import {
  type AttemptResult,
  attemptFailure,
  attemptResult,
  runningStatus,
  STATUS_ARTIFACTS_MAX_BYTES,
  statusAfterAttempt,
  terminalStatus,
} from '../../../src/controller/run-status.ts';
import { httpCheckHandler } from '../../../src/handlers/http-check.ts';
import { formatIssues } from '../../../src/handlers/messages.ts';
import { noopHandler } from '../../../src/handlers/noop.ts';
import { HandlerRegistry } from '../../../src/handlers/registry.ts';
import { artifactsFrom, webhookHandler } from '../../../src/handlers/webhook.ts';
import { admissionProblems, serialize, wellFormed } from '../../support/bad-input.ts';

const RUNS = Number(process.env['FUZZ_RUNS'] ?? 200);
const SEED = Number(process.env['FUZZ_SEED'] ?? 20_261_203);
const T0 = new Date('2026-03-01T10:00:00.000Z');
/** Per property: generous, the machine is shared. */
const TIMEOUT_MS = 30_000 + RUNS * 30;

/** fc.assert with the fixed seed; a failure names the seed and run count to reproduce it. */
function check<T>(property: fc.IPropertyWithHooks<T> | fc.IAsyncPropertyWithHooks<T>) {
  return fc.assert(property as fc.IAsyncPropertyWithHooks<T>, { seed: SEED, numRuns: RUNS });
}

async function reproducible(run: () => Promise<void> | void): Promise<void> {
  try {
    await run();
  } catch (error) {
    // fast-check's report has the path; the seed and runs are what FUZZ_* take.
    console.error(`fuzz failed: reproduce with FUZZ_SEED=${SEED} FUZZ_RUNS=${RUNS}`);
    throw error;
  }
}

const handlers = new HandlerRegistry([
  noopHandler,
  httpCheckHandler({
    resolve: async () => {
      throw new Error('no DNS in the fuzz');
    },
  }),
  webhookHandler({ name: 'fuzz-hook', url: 'http://127.0.0.1:9/', timeoutMs: 1000 }),
]);

// --- Arbitraries --------------------------------------------------------------------------

const SPECIALS = [
  '\u0000',
  '\ud800',
  '\udc00',
  '\u202e',
  '\u200b',
  '\ufeff',
  '\u001b[31m',
  "'; DROP TABLE agent_audit_log; --",
  '$(reboot)',
  '😀',
  '👩‍👩‍👧‍👦',
  '\u0301',
  '\n',
  '"',
  '\\',
];

/** Text with the characters that break things: NUL, lone surrogates, escapes, emoji. */
const nastyString = fc.oneof(
  fc.string(),
  fc.string({ unit: 'binary' }),
  fc.string({
    unit: fc.oneof(fc.constantFrom(...SPECIALS), fc.string({ minLength: 1, maxLength: 1 })),
  }),
  fc.constantFrom(...SPECIALS),
  fc.integer({ min: 0, max: 2000 }).map((n) => '😀'.repeat(n)),
  fc.integer({ min: 0, max: 2000 }).map((n) => 'x'.repeat(n)),
);

/** JSON nested `levels` deep, in objects or arrays. */
const deepJson = fc
  .tuple(fc.integer({ min: 0, max: 3000 }), fc.boolean(), fc.jsonValue({ maxDepth: 1 }))
  .map(([levels, arrays, leaf]) => {
    let value: unknown = leaf;
    for (let i = 0; i < levels; i++) value = arrays ? [value] : { a: value };
    return value;
  });

const anyJson = fc.oneof(
  { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
  { weight: 1, arbitrary: deepJson },
  {
    weight: 1,
    arbitrary: fc.dictionary(nastyString, fc.jsonValue({ maxDepth: 2 }), { maxKeys: 80 }),
  },
);

/** Params noop and http.check might be given, and junk. */
const params = fc.oneof(
  anyJson,
  fc.record(
    {
      delayMs: fc.oneof(
        fc.integer({ min: -5, max: 700_000 }),
        fc.double(),
        nastyString,
        fc.constant(null),
      ),
      fail: fc.oneof(nastyString, fc.integer(), fc.constant('')),
      url: fc.oneof(
        fc.webUrl(),
        nastyString,
        fc.constantFrom('http://169.254.169.254/', 'ftp://x/', 'https://u:p@x/', 'http://[::1]/'),
      ),
      method: fc.oneof(fc.constantFrom('GET', 'HEAD', 'DELETE'), nastyString),
      expectedStatus: fc.oneof(
        fc.integer(),
        fc.array(fc.integer({ min: 0, max: 700 }), { maxLength: 60 }),
      ),
      extra: anyJson,
    },
    { requiredKeys: [] },
  ),
);

const agent = fc.oneof(
  fc.constantFrom('noop', 'http.check', 'fuzz-hook', 'missing', 'Noop', '', 'a'.repeat(129)),
  fc.stringMatching(AGENT_NAME_PATTERN).map((s) => s.slice(0, 130)),
  nastyString,
);

const integerish = fc.oneof(
  fc.integer(),
  fc.integer({ min: -2, max: 30 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(0, 1, 20, 21, 604_800, 604_801, 31_536_000, 2 ** 53, -1),
  nastyString,
  fc.boolean(),
);

/** A spec: every field maybe present, maybe of the wrong type, plus unknown fields. */
const spec = fc.record(
  {
    agent,
    objective: nastyString,
    dryRun: fc.oneof(fc.boolean(), nastyString, fc.integer()),
    params: fc.oneof(params, anyJson),
    requestedBy: nastyString,
    timeoutSeconds: integerish,
    backoffLimit: integerish,
    ttlSecondsAfterFinished: integerish,
    cancel: fc.oneof(fc.boolean(), nastyString),
    unknown: anyJson,
  },
  { requiredKeys: [] },
);

// --- Checks -------------------------------------------------------------------------------

/** A message a person can read: text, not a serialised object or a placeholder. */
function expectReadable(message: string | undefined): void {
  expect(typeof message).toBe('string');
  expect((message ?? '').trim().length).toBeGreaterThan(0);
  expect(message).not.toMatch(/\[object Object\]|^undefined$|^null$/);
}

/**
 * The row's jsonb text is the JSON the API server gets for `value`, unless that holds what
 * PostgreSQL cannot store (NUL, lone surrogates: U+FFFD in the row).
 */
function expectSameJson(rowJson: string, value: unknown): void {
  const json = JSON.stringify(value);
  const storable = !/\\u0000|\\ud[89a-f]/i.test(json);
  if (storable) expect(rowJson).toBe(json);
  else expect(JSON.parse(rowJson)).toStrictEqual(JSON.parse(JSON.stringify(toJsonSafe(value))));
}

/** The audit row of `run` in `status` holds what the status says. */
function expectRowEqualsStatus(run: AgentRun, artifacts: unknown): void {
  const status = run.status ?? {};
  const sanitised = sanitiseRecord(auditRecord(run, status, artifacts), { now: T0 });
  if (!sanitised.ok) throw new Error(sanitised.problem);
  const row = sanitised.record;
  const phase = status.phase ?? 'Running';
  expect(row.status).toBe(
    phase === 'Pending' || phase === 'Running' ? 'running' : phase.toLowerCase(),
  );
  expect(row.reason).toBe(
    findCondition(status.conditions, ConditionType.Succeeded)?.reason ?? null,
  );
  expect(row.attempts).toBe(status.attempts ?? 0);
  expect(row.error).toBe(status.error ?? null);
  expect(row.finishedAt?.toISOString() ?? undefined).toBe(status.finishedAt);
  if (status.startedAt) expect(row.startedAt.toISOString()).toBe(status.startedAt);
  // The row's JSON is exactly the status' JSON, up to what PostgreSQL cannot store.
  if (row.planJson !== null) expectSameJson(row.planJson, status.plan);
  // Status and row are written as JSON; both must serialise.
  expect(() => JSON.stringify(status)).not.toThrow();
}

function expectValidStatus(run: AgentRun): void {
  const parsed = agentRunStatusSchema.safeParse(run.status);
  if (!parsed.success) throw new Error(`invalid status: ${parsed.error.message}`);
  const succeeded = findCondition(run.status?.conditions, ConditionType.Succeeded);
  expectReadable(succeeded?.message);
}

function asRun(specValue: unknown): AgentRun {
  return agentRunSchema.parse({
    apiVersion: 'agents.applylens.io/v1alpha1',
    kind: 'AgentRun',
    metadata: {
      name: 'fuzz',
      namespace: 'fuzz',
      uid: 'uid-fuzz',
      resourceVersion: '1',
      generation: 1,
    },
    spec: specValue,
  });
}

/** A handler result of any shape: JSON objects, junk, deep, huge, BigInt, cycles, throws. */
const handlerResult: fc.Arbitrary<
  { kind: 'value'; value: unknown } | { kind: 'throw'; error: unknown }
> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .dictionary(nastyString, anyJson, { maxKeys: 20 })
      .map((value) => ({ kind: 'value' as const, value })),
  },
  {
    weight: 1,
    arbitrary: fc
      .anything({ withBigInt: true, maxDepth: 3 })
      .map((value) => ({ kind: 'value' as const, value })),
  },
  {
    weight: 1,
    arbitrary: deepJson.map((value) => ({ kind: 'value' as const, value: { deep: value } })),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 0, max: 300_000 })
      .map((n) => ({ kind: 'value' as const, value: { blob: 'b'.repeat(n) } })),
  },
  {
    weight: 1,
    arbitrary: fc.constant(null).map(() => {
      const cyclic: Record<string, unknown> = { ok: true };
      cyclic['self'] = cyclic;
      return { kind: 'value' as const, value: cyclic };
    }),
  },
  {
    weight: 1,
    arbitrary: fc
      .oneof(
        fc.anything({ maxDepth: 2 }),
        fc.constantFrom(undefined, null, '', ' ', new Error('')),
        nastyString.map((m) => new Error(m)),
      )
      .map((error) => ({
        kind: 'throw' as const,
        error,
      })),
  },
);

// --- Properties ---------------------------------------------------------------------------

describe(`fuzz (FUZZ_SEED=${SEED}, FUZZ_RUNS=${RUNS})`, () => {
  it(
    'arbitrary specs: refused with a message, or decided without throwing into a valid status',
    async () => {
      await reproducible(() =>
        check(
          fc.property(spec, (raw) => {
            const manifest = {
              apiVersion: 'agents.applylens.io/v1alpha1',
              kind: 'AgentRun',
              metadata: { name: 'fuzz' },
              spec: raw,
            };
            const problems = admissionProblems(manifest);
            for (const problem of problems) expectReadable(problem);
            // What the API server stores of it: lone surrogates become U+FFFD.
            const stored = wellFormed(raw);
            const parsed = agentRunSpecSchema.safeParse(stored);
            if (problems.length === 0) {
              // Admitted, then unparsable by the operator: the run would never get an answer.
              if (!parsed.success)
                throw new Error(`admitted but unparsable: ${parsed.error.message}`);
            }
            if (!parsed.success) {
              expectReadable(formatIssues('spec', parsed.error.issues, 1024));
              for (const issue of parsed.error.issues) expectReadable(issue.message);
              return;
            }
            const run = asRun(parsed.data);
            const action = decide({ run, executing: false, now: T0, handlers });
            if (action.type === 'finish') {
              expectReadable(action.message);
              const done = { ...run, status: terminalStatus(run, action, T0) };
              expectValidStatus(done);
              expectRowEqualsStatus(done, undefined);
              return;
            }
            expect(action.type).toBe('start');
            if (action.type !== 'start') return;
            const claimed = {
              ...run,
              status: runningStatus(run, action.attempt, action.prepared.plan, T0),
            };
            expectValidStatus(claimed);
            expectRowEqualsStatus(claimed, undefined);
            // The plan is stored on the status and in the row as it is.
            expect(serialize(claimed.status?.plan)).toBe(JSON.stringify(action.prepared.plan));
          }),
        ),
      );
    },
    TIMEOUT_MS,
  );

  it(
    'arbitrary handler results: a valid status and an equal audit row, whatever came back',
    async () => {
      await reproducible(() =>
        check(
          fc.property(
            handlerResult,
            fc.integer({ min: 0, max: 3 }),
            fc.integer({ min: 1, max: 4 }),
            fc.boolean(),
            (returned, backoffLimit, attempt, dryRun) => {
              const run = asRun({ agent: 'noop', objective: 'fuzz', backoffLimit, dryRun });
              const claimed = { ...run, status: runningStatus(run, attempt, { p: 1 }, T0) };
              let result: AttemptResult;
              if (returned.kind === 'value') {
                result = attemptResult(returned.value);
              } else {
                result = attemptFailure(returned.error);
              }
              if (result.kind === 'failed') expectReadable(result.error);
              const next = {
                ...claimed,
                status: statusAfterAttempt(claimed, result, new Date(T0.getTime() + 5), {
                  baseMs: 100,
                  maxMs: 1000,
                }),
              };
              expectValidStatus(next);
              const artifacts = result.kind === 'succeeded' ? result.artifacts : undefined;
              expectRowEqualsStatus(next, artifacts);
              if (result.kind === 'succeeded') {
                const stored = next.status?.artifacts;
                const bytes = Buffer.byteLength(JSON.stringify(result.artifacts));
                if (bytes <= STATUS_ARTIFACTS_MAX_BYTES) expect(stored).toBe(result.artifacts);
                else expect(stored).toMatchObject({ truncated: true, bytes });
                // The row keeps the full artifacts (up to its own cap), exactly.
                const row = sanitiseRecord(auditRecord(next, next.status ?? {}, artifacts), {
                  now: T0,
                });
                if (!row.ok) throw new Error(row.problem);
                const json = row.record.artifactsJson;
                if (json !== null && !json.startsWith('{"_truncated":true')) {
                  expectSameJson(json, result.artifacts);
                }
              }
            },
          ),
        ),
      );
    },
    TIMEOUT_MS,
  );

  it(
    'arbitrary webhook answers: artifacts, or an error that says what came back',
    async () => {
      const body = fc.oneof(
        nastyString,
        fc.json({ maxDepth: 4 }),
        anyJson.map((value) => serialize(value)),
        fc.integer({ min: 0, max: 100_000 }).map((n) => `{"a":"${'x'.repeat(n)}"}`),
        fc.constantFrom(
          '',
          '<html><body>502</body></html>',
          'null',
          '[]',
          '"s"',
          '1e400',
          '{"__proto__":{}}',
        ),
      );
      await reproducible(() =>
        check(
          fc.property(
            fc.integer({ min: 100, max: 599 }),
            body,
            fc.boolean(),
            (status, text, truncated) => {
              let result: AttemptResult;
              try {
                result = attemptResult(
                  artifactsFrom('webhook "fuzz-hook"', status, { text, truncated }),
                );
              } catch (error) {
                expect(error).toBeInstanceOf(Error);
                const message = (error as Error).message;
                expect(message.startsWith(`webhook "fuzz-hook" answered ${status}`)).toBe(true);
                expectReadable(message);
                // Excerpts stay short whatever the body.
                expect(message.length).toBeLessThan(400);
                result = { kind: 'failed', error: message };
              }
              if (status < 200 || status > 299 || truncated) expect(result.kind).toBe('failed');
              const run = asRun({ agent: 'fuzz-hook', objective: 'fuzz' });
              const claimed = {
                ...run,
                status: runningStatus(run, 1, { endpoint: 'fuzz-hook' }, T0),
              };
              const next = {
                ...claimed,
                status: statusAfterAttempt(claimed, result, T0, { baseMs: 1, maxMs: 1 }),
              };
              expectValidStatus(next);
              expectRowEqualsStatus(
                next,
                result.kind === 'succeeded' ? result.artifacts : undefined,
              );
            },
          ),
        ),
      );
    },
    TIMEOUT_MS,
  );
});
