import { describe, expect, it } from 'vitest';
import { type AgentRun, agentRunSchema } from '../../../src/api/agentrun.ts';
import { AuditReason, type TerminalReason } from '../../../src/api/reasons.ts';
import {
  agentRunCacheTransform,
  isSettled,
  StringPool,
} from '../../../src/controller/cache-transform.ts';
import { type AuditView, decide, FINALIZER } from '../../../src/controller/decide.ts';
import {
  deadline,
  isAudited,
  isTerminal,
  progress,
  withAudited,
} from '../../../src/controller/run-status.ts';
import {
  agentRun,
  at,
  deleting,
  finished,
  GENERATION,
  HANDLERS,
  MINUTE,
  protectedRun,
  retrying,
  running,
  SECOND,
  T0,
  TERMINAL_REASONS,
  withStatus,
} from './fixtures.ts';

const auditing = agentRunCacheTransform({ auditing: true });
const notAuditing = agentRunCacheTransform({ auditing: false });

/** A run with everything a slim copy drops: params, requestedBy, labels, plan, artifacts, error. */
function full(reason: TerminalReason = 'Succeeded', ttl?: number): AgentRun {
  const run = agentRun({
    spec: {
      params: { url: 'https://example.test', big: 'x'.repeat(1000) },
      requestedBy: 'someone@example.test',
      ...(ttl === undefined ? {} : { ttlSecondsAfterFinished: ttl }),
    },
    metadata: { labels: { team: 'a' }, annotations: { note: 'n' } },
  });
  const ended = finished(running(run, 1, T0), reason, at(5 * SECOND));
  return withStatus(ended, {
    ...ended.status,
    artifacts: { answer: 42 },
    ...(reason === 'Succeeded' ? {} : { error: 'it broke' }),
  });
}

function audited(run: AgentRun, reason: AuditReason = AuditReason.Recorded): AgentRun {
  return withStatus(run, withAudited(run.status ?? {}, run, reason, 'row', at(6 * SECOND)));
}

describe('agentRunCacheTransform', () => {
  it('keeps only what a finished, audited run still needs, as a valid AgentRun', () => {
    const run = audited(full('Failed', 3600));
    const slim = auditing(run);
    expect(slim).not.toBe(run);
    expect(agentRunSchema.parse(slim)).toEqual(slim);
    expect(slim.metadata).toEqual({
      name: run.metadata.name,
      namespace: run.metadata.namespace,
      uid: run.metadata.uid,
      resourceVersion: run.metadata.resourceVersion,
      generation: GENERATION,
      creationTimestamp: run.metadata.creationTimestamp,
    });
    expect(slim.spec).toEqual({
      agent: run.spec.agent,
      objective: run.spec.objective,
      dryRun: run.spec.dryRun,
      timeoutSeconds: run.spec.timeoutSeconds,
      backoffLimit: run.spec.backoffLimit,
      cancel: false,
      ttlSecondsAfterFinished: 3600,
    });
    const { plan, artifacts, error, conditions, ...rest } = run.status ?? {};
    expect([plan, artifacts, error].every((v) => v !== undefined)).toBe(true);
    const kept = conditions?.filter((c) => c.type === 'Succeeded' || c.type === 'Audited');
    expect(slim.status).toEqual({ ...rest, conditions: kept });
    expect(slim.status?.conditions?.map((c) => c.type)).toEqual(['Succeeded', 'Audited']);
  });

  it('keeps deletionTimestamp and finalizers', () => {
    const run = deleting(audited(full()), at(MINUTE), [FINALIZER, 'other/x']);
    expect(auditing(run).metadata).toMatchObject({
      deletionTimestamp: at(MINUTE).toISOString(),
      finalizers: [FINALIZER, 'other/x'],
    });
  });

  it('leaves whole every run a reconcile may still build a status or an audit row from', () => {
    const base = agentRun({ spec: { params: { a: 1 } } });
    const unaudited = full();
    const pending = audited(full(), AuditReason.Pending);
    const abandoned = audited(full(), AuditReason.Abandoned);
    // A late cancel on a finished run: observe rewrites the whole status from the cached one.
    const cancelled = audited(full());
    const lateSpecChange: AgentRun = {
      ...cancelled,
      metadata: { ...cancelled.metadata, generation: GENERATION + 1 },
      spec: { ...cancelled.spec, cancel: true },
    };
    for (const run of [
      base,
      running(base, 1, T0),
      retrying(running(base, 1, T0), at(MINUTE), at(SECOND)),
      unaudited,
      pending,
      abandoned,
      lateSpecChange,
    ]) {
      expect(auditing(run)).toBe(run);
    }
    // Without auditing nothing re-audits: a finished run needs no more than TTL and finalizers.
    expect(notAuditing(unaudited)).not.toBe(unaudited);
    expect(notAuditing(lateSpecChange)).toBe(lateSpecChange);
    const started = running(base, 1, T0);
    expect(notAuditing(started)).toBe(started);
  });

  it('slims a run whose status predates generations (no observedGeneration)', () => {
    const run = audited(full());
    const { observedGeneration: _, ...status } = run.status ?? {};
    expect(isSettled(withStatus(run, status), true)).toBe(true);
  });

  it('gives decide() and the status helpers the same answers as the whole run', () => {
    const views: (AuditView | undefined)[] = [
      undefined,
      { committed: false, pending: false, deadlineMs: 10 * MINUTE },
      { committed: true, pending: false, deadlineMs: 10 * MINUTE, queuedAtMs: T0.getTime() },
      { committed: false, pending: true, deadlineMs: 10 * MINUTE, queuedAtMs: T0.getTime() },
    ];
    const shapes = (run: AgentRun): AgentRun[] => [
      run,
      protectedRun(run),
      deleting(run),
      deleting(run, at(MINUTE), []),
    ];
    let compared = 0;
    for (const reason of TERMINAL_REASONS) {
      for (const ttl of [undefined, 0, 60, 3600]) {
        for (const run of shapes(audited(full(reason, ttl)))) {
          const slim = auditing(run);
          expect(slim).not.toBe(run);
          expect(isTerminal(slim.status)).toBe(isTerminal(run.status));
          expect(isAudited(slim.status)).toBe(isAudited(run.status));
          expect(progress(slim.status)).toBe(progress(run.status));
          expect(deadline(slim)).toEqual(deadline(run));
          for (const audit of views) {
            for (const now of [at(6 * SECOND), at(2 * MINUTE), at(2 * 3600 * SECOND)]) {
              for (const executing of [false, true]) {
                const input = { handlers: HANDLERS, executing, now, audit };
                expect(decide({ ...input, run: slim })).toEqual(decide({ ...input, run }));
                compared += 1;
              }
            }
          }
        }
      }
    }
    expect(compared).toBe(TERMINAL_REASONS.length * 4 * 4 * views.length * 3 * 2);
  });

  it('is idempotent', () => {
    const slim = auditing(audited(full()));
    expect(auditing(slim)).toEqual(slim);
  });
});

describe('StringPool', () => {
  it('returns the first copy of equal strings and stops growing at its capacity', () => {
    const pool = new StringPool(2);
    expect(pool.share('a')).toBe('a');
    expect(pool.share('b')).toBe('b');
    expect(pool.share('c')).toBe('c');
    expect(pool.share('a')).toBe('a');
    expect(pool.size).toBe(2);
  });
});
