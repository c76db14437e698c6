import type { AgentRun, AgentRunStatus } from '../api/agentrun.ts';
import { ConditionType, findCondition } from '../api/conditions.ts';
import { AuditReason, Reason, type TerminalReason } from '../api/reasons.ts';
import type { JsonObject } from '../handlers/handler.ts';
import {
  deadline,
  isAudited,
  isTerminal,
  maxAttempts,
  retryingStatus,
  terminalStatus,
} from './run-status.ts';

/** The finalizer the operator holds while deleting a run would lose work in progress. */
export const FINALIZER = 'agents.applylens.io/run-protection';

/** What the reconciler should do next for one AgentRun. */
export type Action =
  /** Nothing to do until something changes. */
  | { readonly type: 'none' }
  /** Look again after a delay (retry backoff, TTL). */
  | { readonly type: 'requeue'; readonly afterMs: number }
  /** Start attempt `attempt`: plan it, claim it on the status, then run the handler. */
  | { readonly type: 'start'; readonly attempt: number; readonly note?: string }
  /** Abort the attempt running in this process. */
  | { readonly type: 'abort'; readonly reason: 'Canceled'; readonly message: string }
  /** End the run without running anything (more). */
  | { readonly type: 'finish'; readonly reason: TerminalReason; readonly message: string }
  /** The run is over and nothing is pending: let a deletion proceed. */
  | { readonly type: 'releaseFinalizer' }
  /** ttlSecondsAfterFinished has passed. */
  | { readonly type: 'delete' }
  /** Queue the run's terminal audit row (again: after a restart, or when the queue was full). */
  | { readonly type: 'audit' }
  /** The terminal row is committed: set Audited=True. */
  | { readonly type: 'markAudited' }
  /** The row is still pending: hold the finalizer so deletion waits for it. */
  | { readonly type: 'protect' }
  /** The row did not land within the deadline: record the loss and let the run go. */
  | { readonly type: 'abandonAudit' }
  /** A finished run's spec changed (a late cancel): say that its status reflects it. */
  | { readonly type: 'observe' };

/** What this process knows about a run's terminal audit row; absent when auditing is off. */
export interface AuditView {
  /** This process saw the terminal row committed. */
  readonly committed: boolean;
  /** A row for the run is queued here and not committed yet. */
  readonly pending: boolean;
  /** How long after finishedAt the finalizer may wait for the row (AUDIT_FINALIZER_DEADLINE). */
  readonly deadlineMs: number;
  /**
   * When this process first queued the run's terminal row; undefined if it never did (the run
   * finished under another process, or before auditing was turned on).
   */
  readonly queuedAtMs?: number | undefined;
}

export interface DecideInput {
  /** The newest known state of the run. */
  readonly run: AgentRun;
  /** Whether this process is executing an attempt of this run right now. */
  readonly executing: boolean;
  readonly now: Date;
  /** The audit log's view of the run; undefined when auditing is off. */
  readonly audit?: AuditView | undefined;
}

/**
 * The controller's whole policy, as a pure function of the run, what this process is doing and
 * the clock. Level-based: it never asks which event happened, so replays and resyncs are safe.
 */
export function decide({ run, executing, now, audit }: DecideInput): Action {
  const { spec, metadata, status } = run;
  const deleting = metadata.deletionTimestamp !== undefined;
  const holdsFinalizer = metadata.finalizers?.includes(FINALIZER) ?? false;

  if (isTerminal(status)) {
    // Its outcome is still being written: act on the run once that is done.
    if (executing) return { type: 'none' };
    // kstatus (Flux) waits for observedGeneration to catch up with metadata.generation, so a
    // finished run whose spec changed afterwards (cancel: true) must acknowledge it.
    if (
      metadata.generation !== undefined &&
      status?.observedGeneration !== undefined &&
      status.observedGeneration !== metadata.generation
    ) {
      return { type: 'observe' };
    }
    if (audit && !isAudited(status)) {
      if (audit.committed) return { type: 'markAudited' };
      // At start-up every finished run without its row gets one try from this process, given
      // up ones included: the database may be back, and a row is worth more than a condition.
      if (audit.queuedAtMs === undefined && !audit.pending) return { type: 'audit' };
      const abandoned =
        findCondition(status?.conditions, ConditionType.Audited)?.reason === AuditReason.Abandoned;
      if (!abandoned) {
        // The deadline holds whatever the queue does: a row it refuses (full, or data the
        // database rejects) must not pin the run, its deletion or its TTL forever. It counts
        // from finishedAt, or from this process's first try if that is later: a run found
        // unaudited after a long operator outage is not given up before its row was tried.
        const since = Math.max(
          Date.parse(status?.finishedAt ?? ''),
          audit.queuedAtMs ?? Number.NEGATIVE_INFINITY,
        );
        const giveUpAt = since + audit.deadlineMs;
        if (!(giveUpAt > now.getTime())) return { type: 'abandonAudit' };
        if (!audit.pending) return { type: 'audit' };
        if (!holdsFinalizer && !deleting) return { type: 'protect' };
        // Neither released nor deleted (TTL) until the row lands or the deadline passes.
        return { type: 'requeue', afterMs: giveUpAt - now.getTime() };
      }
    }
    if (holdsFinalizer) return { type: 'releaseFinalizer' };
    if (deleting || spec.ttlSecondsAfterFinished === undefined || !status?.finishedAt) {
      return { type: 'none' };
    }
    const due = Date.parse(status.finishedAt) + spec.ttlSecondsAfterFinished * 1000;
    return due <= now.getTime()
      ? { type: 'delete' }
      : { type: 'requeue', afterMs: due - now.getTime() };
  }

  if (executing) {
    if (deleting) {
      return { type: 'abort', reason: Reason.Canceled, message: 'deleted while running' };
    }
    if (spec.cancel) {
      return { type: 'abort', reason: Reason.Canceled, message: 'canceled while running' };
    }
    // The executor enforces the deadline with its own timer.
    return { type: 'none' };
  }

  const reason = findCondition(status?.conditions, ConditionType.Succeeded)?.reason;
  const attempts = status?.attempts ?? 0;
  if (deleting) {
    return { type: 'finish', reason: Reason.Canceled, message: 'deleted before it finished' };
  }
  if (spec.cancel) {
    const message =
      attempts === 0
        ? 'canceled before it started'
        : reason === Reason.Running
          ? `canceled after attempt ${attempts} was interrupted`
          : 'canceled while waiting to retry';
    return { type: 'finish', reason: Reason.Canceled, message };
  }
  const due = deadline(run);
  if (due && due.getTime() <= now.getTime()) {
    return {
      type: 'finish',
      reason: Reason.TimedOut,
      message: `exceeded timeoutSeconds=${spec.timeoutSeconds} after ${attempts} attempt(s)`,
    };
  }
  if (reason === Reason.Running) {
    // Running on the status, yet nobody here runs it: the process that did was stopped.
    if (attempts < maxAttempts(run)) {
      return { type: 'start', attempt: attempts + 1, note: `attempt ${attempts} was interrupted` };
    }
    return {
      type: 'finish',
      reason: Reason.Interrupted,
      message: `attempt ${attempts} was interrupted (operator restarted or lost leadership) and no retries remain`,
    };
  }
  if (reason === Reason.Retrying && status?.nextRetryAt) {
    // Wake for the retry or the deadline, whichever comes first, so a timeout is not recorded late.
    const wakeAt = Math.min(
      Date.parse(status.nextRetryAt),
      due?.getTime() ?? Number.POSITIVE_INFINITY,
    );
    const wait = wakeAt - now.getTime();
    if (wait > 0) return { type: 'requeue', afterMs: wait };
  }
  return { type: 'start', attempt: attempts + 1 };
}

/** What to do about a run that should start but found every handler slot taken. */
export type NoSlotAction =
  /** Wait quietly: the executor wakes the run when a slot frees. */
  | { readonly type: 'none' }
  /** Look again when the run will have waited `queuedAfterMs`, to say it is queued. */
  | { readonly type: 'requeue'; readonly afterMs: number }
  /** Write the Queued status (once per run). */
  | { readonly type: 'markQueued' };

/**
 * A run that has never started and has waited at least `queuedAfterMs` since it was created gets
 * one Queued status; runs that start sooner get none, so short runs cost no extra write. A run
 * waiting to retry already has a status that says so. `queuedAfterMs` 0 turns this off.
 */
export function whenNoSlot(run: AgentRun, now: Date, queuedAfterMs: number): NoSlotAction {
  if (queuedAfterMs <= 0 || run.status?.phase !== undefined) return { type: 'none' };
  const created = Date.parse(run.metadata.creationTimestamp ?? '');
  // The API server always sets creationTimestamp; without one the wait cannot be known.
  if (Number.isNaN(created)) return { type: 'markQueued' };
  const left = created + queuedAfterMs - now.getTime();
  return left > 0 ? { type: 'requeue', afterMs: left } : { type: 'markQueued' };
}

/**
 * Delay before retry number `retry` (1-based): base * 2^(retry-1), capped, as batch/v1 Job does
 * (10 s, 20 s, 40 s ... 6 min by default).
 */
export function retryDelayMs(retry: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, retry - 1));
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
