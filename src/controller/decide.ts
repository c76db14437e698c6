import { type AgentRun, PARAMS_MAX_BYTES, PARAMS_MAX_DEPTH } from '../api/agentrun.ts';
import { ConditionType, findCondition } from '../api/conditions.ts';
import { AuditReason, Reason, type TerminalReason } from '../api/reasons.ts';
import type { JobTemplate, Prepared } from '../handlers/handler.ts';
import { errorMessage } from '../handlers/messages.ts';
import type { AgentResolver } from '../handlers/registry.ts';
import { jsonProblem } from '../util/json.ts';
import {
  deadline,
  isAttemptActive,
  isAudited,
  isTerminal,
  maxAttempts,
  STORED_JSON_MAX_DEPTH,
} from './run-status.ts';

/** Plans are stored whole in the audit log, which keeps JSON up to this depth. */
const PLAN_MAX_DEPTH = STORED_JSON_MAX_DEPTH;

/** The finalizer the operator holds while deleting a run would lose work in progress. */
export const FINALIZER = 'agents.applylens.io/run-protection';

/** A handler's validated plan for one attempt, ready to execute. */
export type PreparedRun = Extract<Prepared, { readonly ok: true }>;

/** What the reconciler should do next for one AgentRun. */
export type Action =
  /** Nothing to do until something changes. */
  | { readonly type: 'none' }
  /** Look again after a delay (retry backoff, TTL). */
  | { readonly type: 'requeue'; readonly afterMs: number }
  /** Claim attempt `attempt` on the status (when a handler slot is free), then execute it. */
  | {
      readonly type: 'start';
      readonly attempt: number;
      readonly prepared: PreparedRun;
      readonly note?: string;
      /** A Job agent's: the attempt runs as a Job built from this. */
      readonly job?: JobTemplate;
      /**
       * The attempt is claimed already and its Job runs on without this process (which
       * restarted, or took over from another leader): follow it again, without a new claim.
       */
      readonly resume?: true;
    }
  /**
   * The run names no agent yet, within the grace for AgentDefinitions applied with it: say so
   * (Pending/AgentNotFound, written once) and look again after `afterMs` at the latest.
   */
  | { readonly type: 'awaitAgent'; readonly message: string; readonly afterMs: number }
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

/** The agents a run can name: HandlerRegistry, or AgentCatalog with AgentDefinitions. */
export type Handlers = AgentResolver;

export interface DecideInput {
  /** The newest known state of the run. */
  readonly run: AgentRun;
  /** Whether this process is executing an attempt of this run right now. */
  readonly executing: boolean;
  readonly now: Date;
  /** Where a run about to start finds its handler; planning is pure (Handler.prepare). */
  readonly handlers: Handlers;
  /** The audit log's view of the run; undefined when auditing is off. */
  readonly audit?: AuditView | undefined;
  /**
   * UNKNOWN_AGENT_GRACE_SECONDS in ms: how long after its creation a run naming no known agent
   * waits (Pending/AgentNotFound) for one to appear before it ends Failed/UnknownAgent. 0 or
   * absent: it ends at once.
   */
  readonly unknownAgentGraceMs?: number | undefined;
}

/**
 * The controller's whole policy, as a pure function of the run, what this process is doing, the
 * handlers' plans and the clock. Level-based: it never asks which event happened, so replays and
 * resyncs are safe. The reconciler only carries out what it returns.
 */
export function decide(input: DecideInput): Action {
  if (isTerminal(input.run.status)) {
    // Its outcome is still being written: act on the run once that is done.
    return input.executing ? { type: 'none' } : afterTheEnd(input);
  }
  return input.executing ? whileExecuting(input.run) : beforeAnAttempt(input);
}

/** A finished run: acknowledge a late spec change, get its audit row in, then release or TTL. */
function afterTheEnd({ run, now, audit }: DecideInput): Action {
  const { metadata, status } = run;
  // kstatus (Flux) waits for observedGeneration to catch up with metadata.generation, so a
  // finished run whose spec changed afterwards (cancel: true) must acknowledge it.
  if (
    metadata.generation !== undefined &&
    status?.observedGeneration !== undefined &&
    status.observedGeneration !== metadata.generation
  ) {
    return { type: 'observe' };
  }
  const waiting = audit && !isAudited(status) ? awaitAuditRow(run, audit, now) : undefined;
  if (waiting) return waiting;
  if (metadata.finalizers?.includes(FINALIZER)) return { type: 'releaseFinalizer' };
  return afterTtl(run, now);
}

/**
 * What a finished run whose row is not known to be committed needs, or undefined once nothing
 * holds it any more (the row was given up).
 */
function awaitAuditRow(run: AgentRun, audit: AuditView, now: Date): Action | undefined {
  if (audit.committed) return { type: 'markAudited' };
  // At start-up every finished run without its row gets one try from this process, given up
  // ones included: the database may be back, and a row is worth more than a condition.
  if (audit.queuedAtMs === undefined && !audit.pending) return { type: 'audit' };
  const audited = findCondition(run.status?.conditions, ConditionType.Audited);
  if (audited?.reason === AuditReason.Abandoned) return undefined;
  // The deadline holds whatever the queue does: a row it refuses (full, or data the database
  // rejects) must not pin the run, its deletion or its TTL forever. It counts from finishedAt, or
  // from this process's first try if that is later: a run found unaudited after a long operator
  // outage is not given up before its row was tried.
  const finishedAt = timeMs(run.status?.finishedAt);
  // A hand-written terminal status without a readable finishedAt has no deadline to wait for:
  // it is let go at once (its row, tried above, stays queued best-effort).
  if (finishedAt === undefined) return { type: 'abandonAudit' };
  const left =
    Math.max(finishedAt, audit.queuedAtMs ?? finishedAt) + audit.deadlineMs - now.getTime();
  if (left <= 0) return { type: 'abandonAudit' };
  if (!audit.pending) return { type: 'audit' };
  const { deletionTimestamp, finalizers } = run.metadata;
  if (!finalizers?.includes(FINALIZER) && deletionTimestamp === undefined) {
    return { type: 'protect' };
  }
  // Neither released nor deleted (TTL) until the row lands or the deadline passes.
  return { type: 'requeue', afterMs: left };
}

/** ttlSecondsAfterFinished: delete when due. A run being deleted, or without a TTL, stays. */
function afterTtl(run: AgentRun, now: Date): Action {
  const ttlSeconds = run.spec.ttlSecondsAfterFinished;
  // A hand-written terminal status may lack finishedAt: no TTL can count from it.
  const finishedAt = timeMs(run.status?.finishedAt);
  if (run.metadata.deletionTimestamp !== undefined || ttlSeconds === undefined) {
    return { type: 'none' };
  }
  if (finishedAt === undefined) return { type: 'none' };
  const left = finishedAt + ttlSeconds * 1000 - now.getTime();
  return left <= 0 ? { type: 'delete' } : { type: 'requeue', afterMs: left };
}

/** An attempt runs in this process: only a cancel or a deletion changes anything. */
function whileExecuting(run: AgentRun): Action {
  if (run.metadata.deletionTimestamp !== undefined) {
    return { type: 'abort', reason: Reason.Canceled, message: 'deleted while running' };
  }
  if (run.spec.cancel) {
    return { type: 'abort', reason: Reason.Canceled, message: 'canceled while running' };
  }
  // The executor enforces the deadline with its own timer.
  return { type: 'none' };
}

/** Not finished and nothing executes here: end it, wait for its retry, or start an attempt. */
function beforeAnAttempt(input: DecideInput): Action {
  const { run, now } = input;
  const { spec, metadata, status } = run;
  const reason = findCondition(status?.conditions, ConditionType.Succeeded)?.reason;
  const attempts = status?.attempts ?? 0;
  if (metadata.deletionTimestamp !== undefined) {
    return finish(Reason.Canceled, 'deleted before it finished');
  }
  if (spec.cancel) {
    const message =
      attempts === 0
        ? 'canceled before it started'
        : isAttemptActive(reason)
          ? `canceled after attempt ${attempts} was interrupted`
          : 'canceled while waiting to retry';
    return finish(Reason.Canceled, message);
  }
  const due = deadline(run);
  if (due && due.getTime() <= now.getTime()) {
    return finish(
      Reason.TimedOut,
      `exceeded timeoutSeconds=${spec.timeoutSeconds} after ${attempts} attempt(s)`,
    );
  }
  if (isAttemptActive(reason)) {
    // A Job agent's attempt goes on in its Job whoever watches it: follow it again.
    const resumed = resume(input, attempts);
    if (resumed) return resumed;
    // Running on the status, yet nobody here runs it: the process that did was stopped.
    if (attempts < maxAttempts(run)) {
      return start(input, attempts + 1, `attempt ${attempts} was interrupted`);
    }
    return finish(
      Reason.Interrupted,
      `attempt ${attempts} was interrupted (the operator running it stopped, lost leadership or lost its connection to the API server) and no retries remain`,
    );
  }
  const retryAt = reason === Reason.Retrying ? timeMs(status?.nextRetryAt) : undefined;
  if (retryAt !== undefined) {
    // Wake for the retry or the deadline, whichever comes first, so a timeout is not recorded late.
    const wait = Math.min(retryAt, due?.getTime() ?? Number.POSITIVE_INFINITY) - now.getTime();
    if (wait > 0) return { type: 'requeue', afterMs: wait };
  }
  return start(input, attempts + 1);
}

/**
 * Starts attempt `attempt` if the run names a handler and its params plan: a run that cannot
 * start ends with the reason its owner can act on (UnknownAgent, InvalidParams).
 */
function start(input: DecideInput, attempt: number, note?: string): Action {
  const { run } = input;
  const resolved = input.handlers.resolve(run.spec.agent, run.metadata.namespace);
  if (!resolved.found) {
    return resolved.reason === Reason.UnknownAgent
      ? unknownAgent(input, attempt, resolved.message)
      : finish(resolved.reason, resolved.message);
  }
  const { handler } = resolved;
  const params = run.spec.params ?? {};
  // The CRD cannot bound an object's depth: a handler's recursive schema, JSON.stringify and the
  // audit log's jsonb must never see params nested thousands of levels deep (the stack overflows,
  // and the reconcile would fail forever instead of the run ending).
  const deep = jsonProblem(params, 'spec.params', PARAMS_MAX_DEPTH);
  if (deep !== undefined) return finish(Reason.InvalidParams, deep);
  // Nor its size in bytes; a run that gets past admission with huge params must still end
  // readably instead of planning and auditing megabytes.
  const bytes = Buffer.byteLength(JSON.stringify(params));
  if (bytes > PARAMS_MAX_BYTES) {
    return finish(
      Reason.InvalidParams,
      `spec.params is ${bytes} bytes of JSON; the limit is ${PARAMS_MAX_BYTES}`,
    );
  }
  let prepared: Prepared;
  try {
    prepared = handler.prepare({
      objective: run.spec.objective,
      params,
      dryRun: run.spec.dryRun,
    });
  } catch (error) {
    // prepare must not throw for bad input; one that does (a handler's bug) still ends the run
    // with an answer rather than failing every reconcile of it.
    return finish(
      Reason.InvalidParams,
      `the "${handler.name}" handler could not plan these params: ${errorMessage(error)}`,
    );
  }
  if (!prepared.ok) return finish(Reason.InvalidParams, prepared.message);
  // The plan goes onto the status and into the audit log as it is.
  const badPlan = jsonProblem(
    prepared.plan,
    `the "${handler.name}" handler's plan`,
    PLAN_MAX_DEPTH,
  );
  if (badPlan !== undefined) return finish(Reason.InvalidParams, badPlan);
  return {
    type: 'start',
    attempt,
    prepared,
    ...(note === undefined ? {} : { note }),
    ...(handler.job === undefined ? {} : { job: handler.job }),
  };
}

/**
 * The claimed attempt `attempt` of a Job agent, to be followed again; undefined when the agent
 * is not (or no longer) a Job agent, or its params no longer plan: then the attempt counts as
 * interrupted, as an in-process one would.
 */
function resume(input: DecideInput, attempt: number): Action | undefined {
  const resolved = input.handlers.resolve(input.run.spec.agent, input.run.metadata.namespace);
  if (!resolved.found || resolved.handler.job === undefined) return undefined;
  const started = start(input, attempt);
  return started.type === 'start' && started.job !== undefined
    ? { ...started, resume: true }
    : undefined;
}

/**
 * A run whose agent is unknown. An AgentDefinition is often applied together with the run, and
 * the two watches may deliver them in either order: a run that has never started waits for the
 * grace, counted from its creation, then ends UnknownAgent. A retry whose agent has gone (its
 * definition deleted) ends at once.
 */
function unknownAgent(input: DecideInput, attempt: number, message: string): Action {
  const { run, now } = input;
  const graceMs = input.unknownAgentGraceMs ?? 0;
  const created = timeMs(run.metadata.creationTimestamp);
  if (attempt === 1 && graceMs > 0 && created !== undefined) {
    const left = created + graceMs - now.getTime();
    if (left > 0) {
      const reason = findCondition(run.status?.conditions, ConditionType.Succeeded)?.reason;
      if (reason === Reason.AgentNotFound) return { type: 'requeue', afterMs: left };
      const { agent } = run.spec;
      const seconds = Math.round(graceMs / 100) / 10;
      return {
        type: 'awaitAgent',
        message: `no agent named ${JSON.stringify(agent)} in namespace ${run.metadata.namespace} yet; waiting up to ${seconds}s`,
        afterMs: left,
      };
    }
  }
  return finish(Reason.UnknownAgent, message);
}

function finish(reason: TerminalReason, message: string): Action {
  return { type: 'finish', reason, message };
}

/** An RFC 3339 time in ms since the epoch; undefined when absent or unreadable. */
function timeMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? undefined : ms;
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
  const created = timeMs(run.metadata.creationTimestamp);
  // The API server always sets creationTimestamp; without one the wait cannot be known.
  if (created === undefined) return { type: 'markQueued' };
  const left = created + queuedAfterMs - now.getTime();
  return left > 0 ? { type: 'requeue', afterMs: left } : { type: 'markQueued' };
}
