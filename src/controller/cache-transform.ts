import type { AgentRun, AgentRunSpec, AgentRunStatus } from '../api/agentrun.ts';
import { type Condition, ConditionType, findCondition } from '../api/conditions.ts';
import { isAudited, isTerminal } from './run-status.ts';

/**
 * The informer's cache transform for AgentRuns (client-go's `SetTransform`): a finished run that
 * needs nothing more from this process is cached as a slim copy, so memory does not grow with
 * the history a cluster keeps (docs/performance.md, "Memory").
 *
 * A run is slimmed only when all of these hold, because only then can no reconcile build a
 * status write, an audit row or a plan from the cached object:
 * - it is finished (Succeeded is True or False);
 * - its terminal audit row is committed (Audited=True), or auditing is off in this process: a
 *   run without its row is re-audited from its status (plan, artifacts, error), so it is kept
 *   whole;
 * - its status reflects its generation (no late spec change to acknowledge): `observe` rewrites
 *   the whole status from the cached one, so such a run is kept whole until the acknowledging
 *   write comes back through the watch.
 *
 * What a slim run keeps is what decide() and the reconciler read for such a run: the metadata
 * (name, namespace, uid, resourceVersion, generation, creation and deletion timestamps,
 * finalizers: for TTL, finalizer release and the uid precondition of a delete), the spec without
 * `params` and `requestedBy` (agent, objective and the scalar knobs: the log line, metrics and
 * TTL), and the status without `plan`, `artifacts` and `error`, with only the Succeeded and
 * Audited conditions (isTerminal, isAudited, progress). Labels, annotations and the other
 * conditions are dropped; the object in the API server is untouched, and the audit log has the
 * dropped fields. A slim run is still a valid AgentRun (agentRunSchema parses it).
 *
 * Repeated strings (namespace, agent, objective, condition reasons and messages) are shared
 * through a small bounded pool, so N finished runs do not hold N copies of "Succeeded"; unique
 * values (timestamps, uids) are not pooled.
 */
export function agentRunCacheTransform(options: {
  /** Whether this process writes audit rows (APPLYLENS_AGENT_AUDIT_ENABLED). */
  readonly auditing: boolean;
}): (run: AgentRun) => AgentRun {
  const pool = new StringPool(POOL_SIZE);
  return (run) => (isSettled(run, options.auditing) ? slim(run, pool) : run);
}

/** Distinct strings the pool shares at most; beyond that new strings are kept as they are. */
const POOL_SIZE = 4096;
/** Longer strings are not pooled: they are rarely repeated and would crowd the pool. */
const POOL_MAX_LENGTH = 256;

/** True when the cached run can no longer lead to anything but TTL and finalizer handling. */
export function isSettled(run: AgentRun, auditing: boolean): boolean {
  const { status, metadata } = run;
  if (!isTerminal(status)) return false;
  if (auditing && !isAudited(status)) return false;
  const observed = status?.observedGeneration;
  return (
    metadata.generation === undefined || observed === undefined || observed === metadata.generation
  );
}

function slim(run: AgentRun, pool: StringPool): AgentRun {
  const { metadata, spec } = run;
  const status = run.status ?? {};
  const s = (value: string): string => pool.share(value);
  const slimSpec: AgentRunSpec = {
    agent: s(spec.agent),
    objective: s(spec.objective),
    dryRun: spec.dryRun,
    timeoutSeconds: spec.timeoutSeconds,
    backoffLimit: spec.backoffLimit,
    cancel: spec.cancel,
  };
  if (spec.ttlSecondsAfterFinished !== undefined) {
    slimSpec.ttlSecondsAfterFinished = spec.ttlSecondsAfterFinished;
  }
  const slimStatus: AgentRunStatus = {};
  if (status.observedGeneration !== undefined)
    slimStatus.observedGeneration = status.observedGeneration;
  // The run id is the uid: keep one string for both.
  if (status.runId !== undefined)
    slimStatus.runId = status.runId === metadata.uid ? metadata.uid : status.runId;
  if (status.phase !== undefined) slimStatus.phase = status.phase;
  const conditions: Condition[] = [];
  for (const type of [ConditionType.Succeeded, ConditionType.Audited]) {
    const condition = findCondition(status.conditions, type);
    if (condition) conditions.push(slimCondition(condition, pool));
  }
  slimStatus.conditions = conditions;
  if (status.attempts !== undefined) slimStatus.attempts = status.attempts;
  if (status.startedAt !== undefined) slimStatus.startedAt = status.startedAt;
  if (status.finishedAt !== undefined) slimStatus.finishedAt = status.finishedAt;
  if (status.durationMs !== undefined) slimStatus.durationMs = status.durationMs;
  if (status.duration !== undefined) slimStatus.duration = s(status.duration);
  return {
    apiVersion: run.apiVersion,
    kind: run.kind,
    metadata: {
      name: metadata.name,
      namespace: s(metadata.namespace),
      uid: metadata.uid,
      resourceVersion: metadata.resourceVersion,
      ...(metadata.generation === undefined ? {} : { generation: metadata.generation }),
      ...(metadata.creationTimestamp === undefined
        ? {}
        : { creationTimestamp: metadata.creationTimestamp }),
      ...(metadata.deletionTimestamp === undefined
        ? {}
        : { deletionTimestamp: metadata.deletionTimestamp }),
      ...(metadata.finalizers === undefined ? {} : { finalizers: metadata.finalizers }),
    },
    spec: slimSpec,
    status: slimStatus,
  };
}

function slimCondition(condition: Condition, pool: StringPool): Condition {
  const slimmed: Condition = {
    type: pool.share(condition.type),
    status: condition.status,
    reason: pool.share(condition.reason),
    message: pool.share(condition.message),
    lastTransitionTime: condition.lastTransitionTime,
  };
  if (condition.observedGeneration !== undefined) {
    slimmed.observedGeneration = condition.observedGeneration;
  }
  return slimmed;
}

/**
 * Shares equal strings: the first copy seen is kept and returned for every later equal one. It
 * stops growing at `capacity` distinct strings (then returns strings as given), so an endless
 * variety of values cannot grow it.
 */
export class StringPool {
  readonly #strings = new Map<string, string>();
  readonly #capacity: number;

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  share(value: string): string {
    if (value.length > POOL_MAX_LENGTH) return value;
    const known = this.#strings.get(value);
    if (known !== undefined) return known;
    if (this.#strings.size < this.#capacity) this.#strings.set(value, value);
    return value;
  }

  get size(): number {
    return this.#strings.size;
  }
}
