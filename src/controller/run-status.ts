import {
  type AgentRun,
  type AgentRunStatus,
  ERROR_MAX_LENGTH,
  type Phase,
} from '../api/agentrun.ts';
import { type Condition, ConditionType, findCondition, setCondition } from '../api/conditions.ts';
import { AuditReason, Reason, type TerminalReason, terminalPhase } from '../api/reasons.ts';
import { JSON_MAX_DEPTH } from '../audit/audit-record.ts';
import type { JsonObject } from '../handlers/handler.ts';
import { errorMessage } from '../handlers/messages.ts';
import { formatDuration } from '../util/duration.ts';
import { jsonProblem } from '../util/json.ts';
import { cleanText, truncate } from '../util/text.ts';

/**
 * Pure builders of an AgentRun's next status. Each returns the complete status object (it is
 * written whole), computed only from the run, the event and the clock.
 */

/** The most of the handler's artifacts copied onto the status; the audit log keeps them all. */
export const STATUS_ARTIFACTS_MAX_BYTES = 4096;

/** The run's terminal audit row is committed (Audited=True). */
export function isAudited(status: AgentRunStatus | undefined): boolean {
  return findCondition(status?.conditions, ConditionType.Audited)?.status === 'True';
}

/** `status` with the Audited condition set; the rest is unchanged. */
export function withAudited(
  status: AgentRunStatus,
  run: AgentRun,
  reason: AuditReason,
  message: string,
  now: Date,
): AgentRunStatus {
  const generation = run.metadata.generation;
  return {
    ...status,
    conditions: setCondition(
      status.conditions ?? [],
      {
        type: ConditionType.Audited,
        status: reason === AuditReason.Recorded ? 'True' : 'False',
        reason,
        message,
        ...(generation === undefined ? {} : { observedGeneration: generation }),
      },
      now,
    ),
  };
}

/** `status` acknowledging the run's current metadata.generation (and so do its conditions). */
export function observedStatus(run: AgentRun): AgentRunStatus {
  const generation = run.metadata.generation;
  const status = run.status ?? {};
  if (generation === undefined) return status;
  return {
    ...status,
    observedGeneration: generation,
    conditions: (status.conditions ?? []).map((c) => ({ ...c, observedGeneration: generation })),
  };
}

export function isTerminal(status: AgentRunStatus | undefined): boolean {
  const succeeded = findCondition(status?.conditions, ConditionType.Succeeded);
  return succeeded !== undefined && succeeded.status !== 'Unknown';
}

/** How many attempts a run may start: the first one plus backoffLimit retries. */
export function maxAttempts(run: AgentRun): number {
  return run.spec.backoffLimit + 1;
}

/** When the whole run must be over: timeoutSeconds after the first attempt started. */
export function deadline(run: AgentRun): Date | undefined {
  const startedAt = run.status?.startedAt;
  return startedAt ? new Date(Date.parse(startedAt) + run.spec.timeoutSeconds * 1000) : undefined;
}

/**
 * A strict order of the states a run passes through (attempt N starting < attempt N running <
 * attempt N ended < attempt N+1 starting). Status only ever moves forward, so of two views of the same run the one
 * with the higher progress is the newer: this lets the controller trust its own last write over
 * an informer cache that has not caught up yet, without comparing resourceVersions.
 */
export function progress(status: AgentRunStatus | undefined): number {
  if (!status) return 0;
  const attempts = status.attempts ?? 0;
  const reason = findCondition(status.conditions, ConditionType.Succeeded)?.reason;
  // Queued and AgentNotFound are "attempt 0 ended": after no status at all, before attempt 1 runs.
  const settled =
    reason === Reason.Retrying || reason === Reason.Queued || reason === Reason.AgentNotFound;
  // Terminal outranks everything (a run finished without ever starting has attempts 0), and a
  // terminal status whose audit row is recorded outranks one still waiting for it.
  if (isTerminal(status)) return Number.MAX_SAFE_INTEGER - (isAudited(status) ? 0 : 1);
  // A Job agent's attempt starts (its pod is not running yet), then runs.
  return attempts * 3 + (settled ? 2 : reason === Reason.Running ? 1 : 0);
}

function withConditions(
  status: AgentRunStatus,
  run: AgentRun,
  now: Date,
  succeeded: Pick<Condition, 'status' | 'reason' | 'message'>,
): Condition[] {
  const observedGeneration = run.metadata.generation;
  const done = succeeded.status !== 'Unknown';
  const failed = succeeded.status === 'False';
  const base = { reason: succeeded.reason, message: succeeded.message };
  type Entry = Omit<Condition, 'lastTransitionTime'>;
  const entry = (type: ConditionType, status: Condition['status']): Entry =>
    observedGeneration === undefined
      ? { type, status, ...base }
      : { type, status, ...base, observedGeneration };
  const entries: Entry[] = [
    entry(ConditionType.Succeeded, succeeded.status),
    // kstatus: Ready=True means done and well; Reconciling=True means in progress;
    // Stalled=True means it will not get better without a human (failed or canceled).
    entry(ConditionType.Ready, succeeded.status === 'True' ? 'True' : 'False'),
    entry(ConditionType.Reconciling, done ? 'False' : 'True'),
    entry(ConditionType.Stalled, failed ? 'True' : 'False'),
  ];
  return entries.reduce<Condition[]>(
    (conditions, next) => setCondition(conditions, next, now),
    status.conditions ?? [],
  );
}

/** The fields every status the controller writes carries: the run id, phase and generation. */
function baseStatus(run: AgentRun, phase: Phase): AgentRunStatus {
  const status: AgentRunStatus = { ...run.status, runId: run.metadata.uid, phase };
  if (run.metadata.generation !== undefined) status.observedGeneration = run.metadata.generation;
  return status;
}

/**
 * The status of a run that has not started because no handler slot is free: phase Pending,
 * Succeeded=Unknown with reason Queued, so that `kubectl get` and GitOps tools can tell a queued
 * run from one no operator has seen.
 */
export function queuedStatus(run: AgentRun, message: string, now: Date): AgentRunStatus {
  const status = baseStatus(run, 'Pending');
  status.conditions = withConditions(status, run, now, {
    status: 'Unknown',
    reason: Reason.Queued,
    message,
  });
  return status;
}

/**
 * The status of a run whose agent does not exist (yet): phase Pending, Succeeded=Unknown with
 * reason AgentNotFound, while it waits UNKNOWN_AGENT_GRACE_SECONDS for an AgentDefinition.
 */
export function awaitingAgentStatus(run: AgentRun, message: string, now: Date): AgentRunStatus {
  const status = baseStatus(run, 'Pending');
  status.conditions = withConditions(status, run, now, {
    status: 'Unknown',
    reason: Reason.AgentNotFound,
    message,
  });
  return status;
}

/** Where a claimed attempt stands: its agent is starting (a Job's pod is not running yet) or runs. */
export type AttemptStage = typeof Reason.Starting | typeof Reason.Running;

/** An attempt is claimed and not over: its status says Starting or Running. */
export function isAttemptActive(reason: string | undefined): boolean {
  return reason === Reason.Running || reason === Reason.Starting;
}

/**
 * The status that claims attempt `attempt` before its handler starts. A Job agent's attempt is
 * claimed `Starting` (phase Pending) and moves to Running when its pod runs (`stageStatus`).
 */
export function runningStatus(
  run: AgentRun,
  attempt: number,
  plan: JsonObject,
  now: Date,
  note?: string,
  stage: AttemptStage = Reason.Running,
): AgentRunStatus {
  const status = baseStatus(run, stage === Reason.Running ? 'Running' : 'Pending');
  delete status.nextRetryAt;
  status.attempts = attempt;
  status.startedAt = run.status?.startedAt ?? now.toISOString();
  status.plan = plan;
  const of = maxAttempts(run) > 1 ? ` of ${maxAttempts(run)}` : '';
  const verb = stage === Reason.Running ? 'running' : 'starting';
  const message = `attempt ${attempt}${of} ${verb}${note ? ` (${note})` : ''}`;
  status.conditions = withConditions(status, run, now, {
    status: 'Unknown',
    reason: stage,
    message,
  });
  return status;
}

/**
 * The status of a claimed attempt whose agent changed stage (a Job's pod started, or is still
 * waiting for a new reason): the same attempt, phase Pending or Running, `message` saying why.
 * Undefined when the run's status is not that attempt's, active, or already says exactly this.
 */
export function stageStatus(
  run: AgentRun,
  attempt: number,
  stage: AttemptStage,
  message: string,
  now: Date,
): AgentRunStatus | undefined {
  const current = findCondition(run.status?.conditions, ConditionType.Succeeded);
  if (run.status?.attempts !== attempt || !isAttemptActive(current?.reason)) return undefined;
  const text = truncate(cleanText(message), 1024);
  if (current?.reason === stage && current.message === text) return undefined;
  const status = baseStatus(run, stage === Reason.Running ? 'Running' : 'Pending');
  status.conditions = withConditions(status, run, now, {
    status: 'Unknown',
    reason: stage,
    message: text,
  });
  return status;
}

/** An attempt failed and another one will start at `retryAt`. */
export function retryingStatus(
  run: AgentRun,
  error: string,
  retryAt: Date,
  now: Date,
): AgentRunStatus {
  const status = baseStatus(run, 'Running');
  status.error = truncate(cleanText(error), ERROR_MAX_LENGTH);
  status.nextRetryAt = retryAt.toISOString();
  const attempt = status.attempts ?? 0;
  status.conditions = withConditions(status, run, now, {
    status: 'Unknown',
    reason: Reason.Retrying,
    message: truncate(
      cleanText(
        `attempt ${attempt} of ${maxAttempts(run)} failed, retrying at ${status.nextRetryAt}: ${error}`,
      ),
      1024,
    ),
  });
  return status;
}

export interface Outcome {
  readonly reason: TerminalReason;
  readonly message: string;
  readonly artifacts?: JsonObject;
  readonly error?: string;
}

/** The final status of a run. Every terminal outcome sets finishedAt and the duration. */
export function terminalStatus(run: AgentRun, outcome: Outcome, now: Date): AgentRunStatus {
  const phase = terminalPhase(outcome.reason);
  const status = baseStatus(run, phase);
  delete status.nextRetryAt;
  status.attempts = status.attempts ?? 0;
  status.finishedAt = now.toISOString();
  const startedAt = status.startedAt ? Date.parse(status.startedAt) : now.getTime();
  status.durationMs = Math.max(0, now.getTime() - startedAt);
  status.duration = formatDuration(status.durationMs);
  if (outcome.artifacts !== undefined) status.artifacts = capArtifacts(outcome.artifacts);
  if (outcome.error !== undefined)
    status.error = truncate(cleanText(outcome.error), ERROR_MAX_LENGTH);
  else if (phase === 'Succeeded') delete status.error;
  status.conditions = withConditions(status, run, now, {
    status: phase === 'Succeeded' ? 'True' : 'False',
    reason: outcome.reason,
    message: truncate(cleanText(outcome.message), 32768),
  });
  return status;
}

/**
 * The artifacts as stored on the status: unchanged when their JSON fits in
 * STATUS_ARTIFACTS_MAX_BYTES, otherwise a marker with the size and a preview. etcd objects are
 * capped at 1.5 MiB and every watcher receives the whole object on each change, so large outputs
 * belong in the audit log, not on the resource.
 */
export function capArtifacts(artifacts: JsonObject): JsonObject {
  const json = JSON.stringify(artifacts);
  const bytes = Buffer.byteLength(json);
  if (bytes <= STATUS_ARTIFACTS_MAX_BYTES) return artifacts;
  return {
    truncated: true,
    bytes,
    preview: truncate(json, 1024),
    note: 'artifacts exceed the 4 KiB status cap; the audit log keeps the full copy',
  };
}

/**
 * Delay before retry number `retry` (1-based): base * 2^(retry-1), capped, as batch/v1 Job does
 * (10 s, 20 s, 40 s ... 6 min by default).
 */
export function retryDelayMs(retry: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, retry - 1));
}

/**
 * The deepest plan or artifacts the controller stores: what the audit log's jsonb keeps whole
 * (JSON_MAX_DEPTH), so that the row holds exactly what the status says.
 */
export const STORED_JSON_MAX_DEPTH = JSON_MAX_DEPTH;

/**
 * What a handler's resolved value amounts to. Handlers are typed to return a JSON object, but a
 * custom one (or a webhook's answer) may return anything: a non-object, a cycle, a BigInt, or
 * JSON nested thousands of levels deep would make the status write or the audit row throw and
 * leave the run Running. Such a value fails the attempt with a message that says why.
 */
export function attemptResult(artifacts: unknown): AttemptResult {
  if (typeof artifacts !== 'object' || artifacts === null || Array.isArray(artifacts)) {
    const kind =
      artifacts === null ? 'null' : Array.isArray(artifacts) ? 'an array' : typeof artifacts;
    return {
      kind: 'failed',
      error: `the handler returned ${kind}; artifacts must be a JSON object`,
    };
  }
  const problem = jsonProblem(artifacts, "the handler's artifacts", STORED_JSON_MAX_DEPTH);
  if (problem !== undefined) return { kind: 'failed', error: problem };
  return { kind: 'succeeded', artifacts: artifacts as JsonObject };
}

/**
 * The failed attempt a handler's rejection amounts to. Handlers should throw an Error whose
 * message says what went wrong; one that throws undefined, null, an empty string or an Error
 * without a message still gets an error a person can read on the run.
 */
export function attemptFailure(error: unknown): AttemptResult {
  const message = errorMessage(error);
  if (error === undefined || error === null || message.trim() === '') {
    const what =
      error === undefined || error === null ? String(error) : `${JSON.stringify(message)}`;
    return { kind: 'failed', error: `the handler failed without saying why (it threw ${what})` };
  }
  return { kind: 'failed', error: message };
}

/** How an attempt's handler execution ended. */
export type AttemptResult =
  | { readonly kind: 'succeeded'; readonly artifacts: JsonObject }
  | { readonly kind: 'failed'; readonly error: string }
  | {
      readonly kind: 'aborted';
      /** Shutdown: the operator is stopping and the grace period ran out. */
      readonly reason: 'Canceled' | 'TimedOut' | 'Shutdown';
      readonly message: string;
    };

export interface RetryPolicy {
  readonly baseMs: number;
  readonly maxMs: number;
}

/** The status to write when an attempt's execution ends. */
export function statusAfterAttempt(
  run: AgentRun,
  result: AttemptResult,
  now: Date,
  retry: RetryPolicy,
): AgentRunStatus {
  const attempt = run.status?.attempts ?? 0;
  const retriesLeft = attempt < maxAttempts(run);
  switch (result.kind) {
    case 'succeeded':
      return terminalStatus(
        run,
        {
          reason: Reason.Succeeded,
          message: `attempt ${attempt} succeeded${run.spec.dryRun ? ' (dry run)' : ''}`,
          artifacts: result.artifacts,
        },
        now,
      );
    case 'aborted':
      if (result.reason === 'Shutdown') {
        const error = `attempt ${attempt} was interrupted: ${result.message}`;
        return retriesLeft
          ? retryingStatus(run, error, now, now)
          : terminalStatus(run, { reason: Reason.Interrupted, message: error, error }, now);
      }
      // A timeout is why the attempt failed; a cancellation is not a failure of the attempt.
      return terminalStatus(
        run,
        result.reason === 'TimedOut'
          ? { reason: result.reason, message: result.message, error: result.message }
          : { reason: result.reason, message: result.message },
        now,
      );
    case 'failed': {
      if (retriesLeft) {
        const retryAt = new Date(now.getTime() + retryDelayMs(attempt, retry.baseMs, retry.maxMs));
        return retryingStatus(run, result.error, retryAt, now);
      }
      const reason = maxAttempts(run) > 1 ? Reason.BackoffLimitExceeded : Reason.Failed;
      const message =
        reason === Reason.Failed
          ? `attempt ${attempt} failed: ${result.error}`
          : `all ${attempt} attempts failed (backoffLimit=${run.spec.backoffLimit}); last error: ${result.error}`;
      return terminalStatus(run, { reason, message, error: result.error }, now);
    }
  }
}
