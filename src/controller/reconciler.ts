import { type AgentRun, type AgentRunStatus, PARAMS_MAX_BYTES } from '../api/agentrun.ts';
import { ConditionType, findCondition } from '../api/conditions.ts';
import { Reason } from '../api/reasons.ts';
import type { HandlerRegistry } from '../handlers/registry.ts';
import type { Logger } from '../log.ts';
import { type AgentRunWriter, ConflictError, NotFoundError } from './agentrun-client.ts';
import { type ControllerMetrics, noControllerMetrics } from './controller-metrics.ts';
import {
  type Action,
  type AttemptResult,
  decide,
  FINALIZER,
  type RetryPolicy,
  statusAfterAttempt,
} from './decide.ts';
import { type Execution, Executor } from './executor.ts';
import { deadline, isTerminal, progress, runningStatus, terminalStatus } from './run-status.ts';

/** Read access to the informer's cache. */
export interface RunStore {
  get(key: string): AgentRun | undefined;
}

/** Where the reconciler reports Kubernetes Events; must never block or throw. */
export interface RunEvents {
  record(run: AgentRun, type: 'Normal' | 'Warning', reason: string, message: string): void;
}

/**
 * Seams for the audit log and metrics: told about every status the controller writes. Must not
 * throw or block (they queue work of their own).
 */
export interface RunObserver {
  statusWritten(run: AgentRun, previous: AgentRunStatus | undefined): void;
}

export interface ReconcilerOptions {
  readonly store: RunStore;
  readonly writer: AgentRunWriter;
  readonly registry: HandlerRegistry;
  readonly events: RunEvents;
  readonly logger: Logger;
  readonly maxConcurrentRuns: number;
  readonly retry: RetryPolicy;
  /** Handlers still running after this long get the deletion-blocking finalizer. */
  readonly finalizerAfterMs: number;
  /** Puts a key back on the work queue (after an execution ends or a slot frees). */
  readonly enqueue: (key: string) => void;
  readonly observers?: readonly RunObserver[];
  readonly metrics?: ControllerMetrics;
  readonly now?: () => Date;
}

export type ReconcileResult = { readonly requeueAfterMs?: number };

/**
 * Reconcile decides (decide.ts, pure) and this class does the I/O the decision asks for. It also
 * keeps the newest status this process wrote per run, because the informer cache lags behind
 * our own writes: without it a reconcile right after an attempt ended would see "Running" with
 * nothing executing and take it for an interrupted attempt. Status only moves forward
 * (progress()), so the further-along of cache and memory is the current one. A claim decided on
 * a stale view is refused by its resourceVersion precondition, so no attempt runs twice.
 */
export class Reconciler {
  readonly executor: Executor;
  readonly #o: ReconcilerOptions;
  readonly #now: () => Date;
  readonly #metrics: ControllerMetrics;
  /** uid -> the run as this process last wrote it (confirmed by the API server). */
  readonly #written = new Map<string, AgentRun>();
  /** uid -> a status the controller must still write (the first try failed). */
  readonly #unwritten = new Map<string, AgentRunStatus>();
  /** Outcome writes in flight, so a shutdown can wait for them. */
  readonly #inFlight = new Set<Promise<void>>();
  /**
   * uids whose handler has ended but whose outcome is not written yet. Until it is, the run still
   * counts as executing here: its status says Running and must not be taken for an interrupted
   * attempt.
   */
  readonly #finishing = new Set<string>();

  constructor(options: ReconcilerOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => new Date());
    this.#metrics = options.metrics ?? noControllerMetrics;
    const metrics = this.#metrics;
    this.executor = new Executor({
      maxConcurrent: options.maxConcurrentRuns,
      onFinished: (execution, result) => {
        metrics.inFlight(execution.agent, -1);
        this.#finished(execution, result);
      },
      onCapacity: (key) => {
        metrics.queued(this.executor.waiting);
        options.enqueue(key);
      },
      onLongRunning: (execution) => this.#protect(execution),
      longRunningAfterMs: options.finalizerAfterMs,
    });
  }

  async reconcile(key: string): Promise<ReconcileResult> {
    try {
      const cached = this.#o.store.get(key);
      if (!cached) {
        // Deleted without our finalizer (it finished or started moments ago): stop its handler.
        const uid = this.executor.executingUid(key);
        if (uid) this.executor.abort(uid, 'Canceled', 'deleted while running');
        return {};
      }
      let run = this.#newest(cached);
      const pending = this.#unwritten.get(run.metadata.uid);
      if (pending) run = await this.#write(run, pending);
      const uid = run.metadata.uid;
      const executing = this.executor.isExecuting(uid) || this.#finishing.has(uid);
      const action = decide({ run, executing, now: this.#now() });
      return await this.#act(key, run, action);
    } finally {
      this.executor.reconciled(key);
    }
  }

  /** Forget memory of runs that left the cache. */
  forget(uid: string): void {
    this.#written.delete(uid);
    this.#unwritten.delete(uid);
  }

  async #act(key: string, run: AgentRun, action: Action): Promise<ReconcileResult> {
    switch (action.type) {
      case 'none':
        return {};
      case 'requeue':
        return { requeueAfterMs: action.afterMs };
      case 'abort':
        this.executor.abort(run.metadata.uid, action.reason, action.message);
        return {};
      case 'finish':
        await this.#write(
          run,
          terminalStatus(run, { reason: action.reason, message: action.message }, this.#now()),
        );
        return {};
      case 'start':
        return this.#start(key, run, action.attempt, action.note);
      case 'releaseFinalizer': {
        const finalizers = (run.metadata.finalizers ?? []).filter((f) => f !== FINALIZER);
        this.#remember(await this.#o.writer.setFinalizers(run, finalizers));
        return {};
      }
      case 'delete':
        await this.#o.writer.delete(run);
        this.#log(run).debug('deleted after ttlSecondsAfterFinished');
        return {};
    }
  }

  async #start(
    key: string,
    run: AgentRun,
    attempt: number,
    note?: string,
  ): Promise<ReconcileResult> {
    const handler = this.#o.registry.get(run.spec.agent);
    if (!handler) {
      return this.#act(key, run, {
        type: 'finish',
        reason: Reason.UnknownAgent,
        message: this.#o.registry.unknownAgentMessage(run.spec.agent),
      });
    }
    const params = run.spec.params ?? {};
    const bytes = Buffer.byteLength(JSON.stringify(params));
    if (bytes > PARAMS_MAX_BYTES) {
      return this.#act(key, run, {
        type: 'finish',
        reason: Reason.InvalidParams,
        message: `spec.params is ${bytes} bytes of JSON; the limit is ${PARAMS_MAX_BYTES}`,
      });
    }
    const prepared = handler.prepare({
      objective: run.spec.objective,
      params,
      dryRun: run.spec.dryRun,
    });
    if (!prepared.ok) {
      return this.#act(key, run, {
        type: 'finish',
        reason: Reason.InvalidParams,
        message: prepared.message,
      });
    }
    // Take the slot before the first await, so concurrent reconciles cannot overbook.
    const reserved = this.executor.reserve(key);
    this.#metrics.queued(this.executor.waiting);
    if (!reserved) return {};
    let claimed: AgentRun;
    try {
      // The claim carries the resourceVersion we decided on: if another process (a previous
      // leader, a stale worker) moved the run on meanwhile, the API server refuses it and no
      // second execution of this attempt starts.
      claimed = await this.#write(
        run,
        runningStatus(run, attempt, prepared.plan, this.#now(), note),
        run.metadata.resourceVersion,
      );
    } catch (error) {
      this.executor.release();
      throw error;
    }
    const logger = this.#log(claimed, { attempt });
    this.#metrics.inFlight(claimed.spec.agent, 1);
    this.executor.start({
      key,
      agent: claimed.spec.agent,
      uid: claimed.metadata.uid,
      attempt,
      dryRun: claimed.spec.dryRun,
      deadline: deadline(claimed),
      logger,
      execute: (ctx) => prepared.execute(ctx),
    });
    return {};
  }

  /** An execution ended: write the attempt's outcome, then look at the run again. */
  #finished(execution: Execution, result: AttemptResult): void {
    const cached = this.#o.store.get(execution.key);
    const run =
      cached && cached.metadata.uid === execution.uid
        ? this.#newest(cached)
        : this.#written.get(execution.uid);
    if (!run) return;
    const status = statusAfterAttempt(run, result, this.#now(), this.#o.retry);
    this.#finishing.add(run.metadata.uid);
    const write = this.#write(run, status)
      .then(
        () => {},
        (error: unknown) => {
          if (error instanceof NotFoundError) return;
          // Kept and written by the next reconcile of this key, which the enqueue below triggers
          // (the work queue backs off while the API server keeps failing).
          this.#unwritten.set(run.metadata.uid, status);
          this.#log(run).warn(
            { err: error },
            'could not write the outcome of an attempt; will retry',
          );
        },
      )
      .finally(() => {
        this.#finishing.delete(run.metadata.uid);
        this.#inFlight.delete(write);
        this.#o.enqueue(execution.key);
      });
    this.#inFlight.add(write);
  }

  /** Resolves when every outcome write started so far has settled. */
  async settled(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
  }

  /** A handler runs long: make deletion wait for it (and for its outcome to be written). */
  #protect(execution: Execution): void {
    const cached = this.#o.store.get(execution.key);
    const known = cached ? this.#newest(cached) : this.#written.get(execution.uid);
    if (!known || known.metadata.finalizers?.includes(FINALIZER)) return;
    this.#o.writer
      .setFinalizers(known, [...(known.metadata.finalizers ?? []), FINALIZER])
      .then((run) => this.#remember(run))
      .catch((error: unknown) => {
        // Best effort: without it a deletion still aborts the handler through the watch.
        this.#log(known).debug({ err: error }, 'could not add the finalizer');
      });
  }

  /** Writes `status`, remembers the result, emits the Event and tells the observers. */
  async #write(
    run: AgentRun,
    status: AgentRunStatus,
    expectResourceVersion?: string,
  ): Promise<AgentRun> {
    let written: AgentRun;
    try {
      written = await this.#o.writer.writeStatus(run, status, expectResourceVersion);
    } catch (error) {
      if (error instanceof ConflictError)
        this.#log(run).debug('status changed meanwhile; will decide again');
      throw error;
    }
    this.#unwritten.delete(run.metadata.uid);
    this.#remember(written);
    this.#announce(written, run.status);
    return written;
  }

  #announce(run: AgentRun, previous: AgentRunStatus | undefined): void {
    const now = findCondition(run.status?.conditions, ConditionType.Succeeded);
    const before = findCondition(previous?.conditions, ConditionType.Succeeded);
    if (now && (now.reason !== before?.reason || run.status?.attempts !== previous?.attempts)) {
      const type = now.status === 'False' || now.reason === Reason.Retrying ? 'Warning' : 'Normal';
      const reason = now.reason === Reason.Running ? 'Started' : now.reason;
      this.#o.events.record(run, type, reason, now.message);
      // Per-run transitions log at debug: at hundreds of runs/s an info line per run would cost
      // more than the run. The Events and the audit log are the per-run record.
      if (this.#o.logger.isLevelEnabled('debug')) {
        this.#log(run).debug({ phase: run.status?.phase, reason: now.reason }, now.message);
      }
    }
    if (isTerminal(run.status) && !isTerminal(previous)) {
      const phase = run.status?.phase;
      const status =
        phase === 'Succeeded' ? 'succeeded' : phase === 'Canceled' ? 'canceled' : 'failed';
      this.#metrics.runFinished(run.spec.agent, status, run.status?.durationMs ?? 0);
    }
    for (const observer of this.#o.observers ?? []) observer.statusWritten(run, previous);
  }

  #remember(run: AgentRun): void {
    this.#written.set(run.metadata.uid, run);
  }

  /**
   * The cached run, with our own last-written status while the cache has not caught up with it.
   * Everything else (spec, finalizers, resourceVersion) comes from the cache: a stale
   * resourceVersion only costs a refused write and a retry, while a remembered object could hide
   * a user's later change (a cancel) for good.
   */
  #newest(cached: AgentRun): AgentRun {
    const mine = this.#written.get(cached.metadata.uid);
    if (!mine) return cached;
    if (progress(cached.status) >= progress(mine.status)) {
      this.#written.delete(cached.metadata.uid);
      return cached;
    }
    return mine.status ? { ...cached, status: mine.status } : cached;
  }

  #log(run: AgentRun, extra: Record<string, unknown> = {}): Logger {
    return this.#o.logger.child({
      runId: run.metadata.uid,
      agent: run.spec.agent,
      namespace: run.metadata.namespace,
      name: run.metadata.name,
      ...extra,
    });
  }
}
