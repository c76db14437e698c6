import type { AgentRun, AgentRunStatus } from '../api/agentrun.ts';
import { ConditionType, findCondition } from '../api/conditions.ts';
import { AuditReason, EventReason, Reason } from '../api/reasons.ts';
import type { JsonObject } from '../handlers/handler.ts';
import { TokenBucket } from '../kube/token-bucket.ts';
import type { Logger } from '../util/log.ts';
import { type AgentRunWriter, ConflictError, NotFoundError } from './agentrun-writer.ts';
import { AuditTracker, type RunAudit } from './audit-tracker.ts';
import { type ControllerMetrics, noControllerMetrics } from './controller-metrics.ts';
import { type Action, decide, FINALIZER, type Handlers, whenNoSlot } from './decide.ts';
import { type Execution, Executor, type Pool } from './executor.ts';
import type { JobExecutor } from './job-runner.ts';
import {
  type AttemptResult,
  type AttemptStage,
  awaitingAgentStatus,
  deadline,
  isTerminal,
  observedStatus,
  progress,
  queuedStatus,
  type RetryPolicy,
  runningStatus,
  stageStatus,
  statusAfterAttempt,
  terminalStatus,
  withAudited,
} from './run-status.ts';

/** Read access to the informer's cache. */
export interface RunStore {
  get(key: string): AgentRun | undefined;
}

/** Where the reconciler reports Kubernetes Events; must never block or throw. */
export interface RunEvents {
  record(run: AgentRun, type: 'Normal' | 'Warning', reason: string, message: string): void;
}

export interface ReconcilerOptions {
  readonly store: RunStore;
  readonly writer: AgentRunWriter;
  readonly handlers: Handlers;
  readonly events: RunEvents;
  readonly logger: Logger;
  readonly maxConcurrentRuns: number;
  readonly retry: RetryPolicy;
  /** Handlers still running after this long get the deletion-blocking finalizer. */
  readonly finalizerAfterMs: number;
  /**
   * A run that waits this long for a handler slot gets one Queued status (QUEUED_STATUS_AFTER_MS);
   * 0 or absent: never.
   */
  readonly queuedStatusAfterMs?: number;
  /** The `agent` label of a run's metrics; default spec.agent (controller.ts). */
  readonly metricsAgent?: (run: AgentRun) => string;
  /** UNKNOWN_AGENT_GRACE_SECONDS in ms (decide.ts); 0 or absent: an unknown agent fails at once. */
  readonly unknownAgentGraceMs?: number;
  /** The Job executor; absent: Job agents are not resolvable (the catalog says so). */
  readonly jobs?: JobExecutor | undefined;
  /** MAX_CONCURRENT_JOB_RUNS: Job attempts followed at once; default unbounded. */
  readonly maxConcurrentJobRuns?: number | undefined;
  /** Puts a key back on the work queue (after an execution ends or a slot frees). */
  readonly enqueue: (key: string) => void;
  readonly metrics?: ControllerMetrics;
  /** The audit log; absent when APPLYLENS_AGENT_AUDIT_ENABLED is false. */
  readonly audit?: RunAudit;
  /** Told of every status write, so best-effort writes (Events) can give way to them. */
  readonly statusWrites?: { track<T>(write: Promise<T>): Promise<T> };
  readonly now?: () => Date;
}

export type ReconcileResult = { readonly requeueAfterMs?: number };

/** The params a Job agent's plan carries (agent-definitions.ts puts them there). */
function jobParams(plan: JsonObject): JsonObject {
  const params = plan['params'];
  return typeof params === 'object' && params !== null && !Array.isArray(params) ? params : {};
}

/** How soon a run whose audit row the queue refused is tried again. */
const AUDIT_RETRY_MS = 5_000;

/**
 * Queued statuses written per second at most, across all runs. A Queued status only informs, so
 * in a burst of thousands of waiting runs it must not take the API server from runs that can
 * progress: the first to wait are marked, the rest start without one (docs/performance.md).
 */
const QUEUED_WRITES_PER_SECOND = 10;

/**
 * Reconcile decides (decide.ts, pure) and this class does the I/O the decision asks for. It also
 * keeps the newest status this process wrote per run, because the informer cache lags behind
 * our own writes: without it a reconcile right after an attempt ended would see "Running" with
 * nothing executing and take it for an interrupted attempt. Status only moves forward
 * (progress()), so the further-along of cache and memory is the current one. A claim decided on
 * a stale view is refused by its resourceVersion precondition, so no attempt runs twice.
 */
export class AgentRunReconciler {
  readonly executor: Executor;
  readonly #options: ReconcilerOptions;
  readonly #now: () => Date;
  readonly #metrics: ControllerMetrics;
  /** Absent when auditing is off. */
  readonly #audit: AuditTracker | undefined;
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
  /** uid -> the run as claimed, so an outcome can be audited even if the object is gone. */
  readonly #claimed = new Map<string, AgentRun>();
  readonly #queuedWrites: TokenBucket;
  /** uid -> the resourceVersion a claim was decided on, when its answer was lost. */
  readonly #doubted = new Map<string, string>();
  /** uid -> the stage write of a Job attempt in flight; its outcome is written after it. */
  readonly #stageWrites = new Map<string, Promise<void>>();

  constructor(options: ReconcilerOptions) {
    this.#options = options;
    this.#now = options.now ?? (() => new Date());
    this.#metrics = options.metrics ?? noControllerMetrics;
    this.#audit = options.audit && new AuditTracker(options.audit, options.enqueue, this.#now);
    this.#queuedWrites = new TokenBucket({
      ratePerSecond: QUEUED_WRITES_PER_SECOND,
      burst: QUEUED_WRITES_PER_SECOND,
      now: () => this.#now().getTime(),
    });
    const metrics = this.#metrics;
    this.executor = new Executor({
      maxConcurrent: options.maxConcurrentRuns,
      ...(options.maxConcurrentJobRuns !== undefined
        ? { maxConcurrentJobs: options.maxConcurrentJobRuns }
        : {}),
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
    const ticket = this.executor.ticket();
    try {
      const cached = this.#options.store.get(key);
      // Deleted without our finalizer (it started moments ago), or deleted and re-created under
      // the same name: the run being executed is gone, so stop its handler.
      const executingUid = this.executor.executingUid(key);
      if (executingUid && executingUid !== cached?.metadata.uid) {
        this.executor.abort(executingUid, 'Canceled', 'deleted while running');
      }
      if (!cached) return {};
      let run = this.#newest(cached);
      const doubted = this.#doubted.get(run.metadata.uid);
      if (doubted !== undefined) {
        // A claim whose answer was lost (a timeout, a dropped connection) may have landed: while
        // the cache still shows the version it was decided on, decide on the object as it is.
        // The doubt stays until that read succeeds: a read lost in the same outage must not
        // leave the next reconcile deciding on the stale cache (scenario 4 wrote "canceled
        // before it started" over a landed claim that way).
        if (run.metadata.resourceVersion === doubted) {
          const fresh = await this.#options.writer.read(run);
          this.#doubted.delete(run.metadata.uid);
          if (!fresh) return {};
          run = this.#newest(fresh);
        } else {
          this.#doubted.delete(run.metadata.uid);
        }
      }
      const pending = this.#unwritten.get(run.metadata.uid);
      if (pending) run = await this.#write(run, pending);
      const uid = run.metadata.uid;
      const action = decide({
        run,
        executing: this.executor.isExecuting(uid) || this.#finishing.has(uid),
        now: this.#now(),
        handlers: this.#options.handlers,
        audit: this.#audit?.view(run),
        unknownAgentGraceMs: this.#options.unknownAgentGraceMs ?? 0,
      });
      return await this.#act(key, run, action);
    } finally {
      this.executor.reconciled(key, ticket);
    }
  }

  /** Forget memory of runs that left the cache. */
  forget(uid: string): void {
    this.#doubted.delete(uid);
    this.#written.delete(uid);
    this.#unwritten.delete(uid);
    this.#audit?.forget(uid);
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
        // Ended while nobody followed its Job (canceled, timed out, deleted after a restart):
        // the Job must not run on.
        if (this.#options.jobs && (run.status?.attempts ?? 0) > 0 && this.#isJobAgent(run)) {
          await this.#options.jobs.stopAll(run);
        }
        {
          const ended = terminalStatus(
            run,
            { reason: action.reason, message: action.message },
            this.#now(),
          );
          try {
            await this.#writeTerminal(key, run, ended);
          } catch (error) {
            // The row is recorded before the status, so it may already hold this outcome: the
            // retry must write this very status, not one with a later finishedAt (scenario 4
            // found rows whose start, the first try's time, differed from the status by the
            // 60 s the failed write took).
            if (!(error instanceof NotFoundError)) this.#unwritten.set(run.metadata.uid, ended);
            throw error;
          }
        }
        return {};
      case 'audit':
        return this.#reaudit(key, run);
      case 'observe':
        await this.#write(run, observedStatus(run));
        return {};
      case 'markAudited':
        await this.#write(
          run,
          this.#audited(run, AuditReason.Recorded, 'the audit row is committed'),
        );
        return {};
      case 'protect':
        this.#remember(await this.#options.writer.addFinalizer(run, FINALIZER));
        return {};
      case 'abandonAudit':
        await this.#abandonAudit(key, run);
        return {};
      case 'start':
        return this.#start(key, run, action);
      case 'awaitAgent':
        // Preconditioned like a claim: a run another process moved on meanwhile keeps its status.
        await this.#write(
          run,
          awaitingAgentStatus(run, action.message, this.#now()),
          run.metadata.resourceVersion,
        );
        return { requeueAfterMs: action.afterMs };
      case 'releaseFinalizer':
        this.#remember(await this.#options.writer.removeFinalizer(run, FINALIZER));
        return {};
      case 'delete':
        await this.#options.writer.delete(run);
        this.#log(run).debug('deleted after ttlSecondsAfterFinished');
        return {};
    }
  }

  /** Re-audits from the status (after a restart, or when the queue refused the row). */
  #reaudit(key: string, run: AgentRun): ReconcileResult {
    const audit = this.#audit;
    if (!audit) return {};
    if (run.status) {
      // The status already says Audited=False (or nothing): look again when the row lands.
      audit.await(run.metadata.uid);
      void audit.queue(key, run, run.status);
    }
    // Queued: protect the run at once. Refused (queue full, bad data): try again later, until the
    // deadline abandons it.
    return { requeueAfterMs: audit.isPending(run.metadata.uid) ? 0 : AUDIT_RETRY_MS };
  }

  async #abandonAudit(key: string, run: AgentRun): Promise<void> {
    const audit = this.#audit;
    if (!audit) return;
    // Best effort: the row may still land (it is kept queued), and markAudited follows then.
    if (run.status && !audit.isPending(run.metadata.uid)) void audit.queue(key, run, run.status);
    const message = `the audit row was not written within ${Math.round(audit.deadlineMs / 1000)} s; letting the run go`;
    await this.#write(run, this.#audited(run, AuditReason.Abandoned, message));
    this.#options.events.record(run, 'Warning', EventReason.AuditLost, message);
    this.#options.audit?.onLost?.();
    this.#log(run).error('audit row abandoned after the deadline');
  }

  async #start(
    key: string,
    run: AgentRun,
    action: Extract<Action, { type: 'start' }>,
  ): Promise<ReconcileResult> {
    const { attempt, prepared, note, job } = action;
    const jobs = job ? this.#options.jobs : undefined;
    const pool: Pool = job ? 'jobs' : 'handlers';
    // Take the slot before the first await, so concurrent reconciles cannot overbook.
    const reserved = this.executor.reserve(key, pool);
    this.#metrics.queued(this.executor.waiting);
    if (!reserved) return this.#noSlot(run, pool);
    let claimed: AgentRun;
    if (action.resume) {
      // Claimed before: its Job is the attempt, followed again without a new claim.
      claimed = run;
    } else {
      try {
        // The claim carries the resourceVersion we decided on: if another process (a previous
        // leader, a stale worker) moved the run on meanwhile, the API server refuses it and no
        // second execution of this attempt starts.
        claimed = await this.#write(
          run,
          runningStatus(
            run,
            attempt,
            prepared.plan,
            this.#now(),
            note,
            job ? Reason.Starting : Reason.Running,
          ),
          run.metadata.resourceVersion,
        );
      } catch (error) {
        this.executor.release(pool);
        // Refused (409, 404): it did not land. Anything else: it may have; look before deciding.
        if (!(error instanceof ConflictError) && !(error instanceof NotFoundError)) {
          this.#doubted.set(run.metadata.uid, run.metadata.resourceVersion);
        }
        throw error;
      }
    }
    this.#claimed.set(claimed.metadata.uid, claimed);
    if (claimed.status && !action.resume) void this.#audit?.queue(key, claimed, claimed.status);
    const logger = this.#log(claimed, { attempt });
    if (action.resume) logger.info('following the Job of the attempt again');
    const agent = this.#options.metricsAgent?.(claimed) ?? claimed.spec.agent;
    this.#metrics.inFlight(agent, 1);
    const uid = claimed.metadata.uid;
    this.executor.start({
      key,
      agent,
      uid,
      attempt,
      dryRun: claimed.spec.dryRun,
      deadline: deadline(claimed),
      logger,
      pool,
      execute:
        jobs && job
          ? (ctx) =>
              jobs.run({
                run: claimed,
                attempt,
                template: job,
                params: jobParams(prepared.plan),
                signal: ctx.signal,
                logger: ctx.logger,
                now: this.#now,
                report: (stage, message) => this.#stage(key, uid, attempt, stage, message),
              })
          : (ctx) => prepared.execute(ctx),
    });
    return {};
  }

  /** A Job attempt's stage changed: say so on the status, in order, while it is followed. */
  #stage(key: string, uid: string, attempt: number, stage: AttemptStage, message: string): void {
    const prior = this.#stageWrites.get(uid) ?? Promise.resolve();
    const next = prior.then(async () => {
      if (!this.executor.isExecuting(uid)) return;
      const cached = this.#options.store.get(key);
      const run = cached?.metadata.uid === uid ? this.#newest(cached) : this.#written.get(uid);
      if (!run) return;
      const status = stageStatus(run, attempt, stage, message, this.#now());
      if (!status) return;
      try {
        await this.#write(run, status);
      } catch (error) {
        // Informational: the next stage, or the outcome, is written anyway.
        this.#log(run).debug({ err: error }, 'could not write the stage of a Job attempt');
      }
    });
    this.#stageWrites.set(uid, next);
    void next.finally(() => {
      if (this.#stageWrites.get(uid) === next) this.#stageWrites.delete(uid);
    });
  }

  #isJobAgent(run: AgentRun): boolean {
    const resolved = this.#options.handlers.resolve(run.spec.agent, run.metadata.namespace);
    return resolved.found && resolved.handler.job !== undefined;
  }

  /** No handler slot is free: the executor wakes the run later; say it is queued if it waits. */
  async #noSlot(run: AgentRun, pool: Pool): Promise<ReconcileResult> {
    const now = this.#now();
    const next = whenNoSlot(run, now, this.#options.queuedStatusAfterMs ?? 0);
    if (next.type === 'requeue') return { requeueAfterMs: next.afterMs };
    // Out of budget: the run waits without a status; the executor still wakes it for a slot.
    if (next.type === 'none' || !this.#queuedWrites.tryTake()) return {};
    const { busy, busyJobs, waiting } = this.executor;
    const message =
      pool === 'jobs'
        ? `waiting for a free Job slot: ${busyJobs} of MAX_CONCURRENT_JOB_RUNS=${this.#options.maxConcurrentJobRuns} in use, ${waiting} run(s) waiting`
        : `waiting for a free handler slot: ${busy} of MAX_CONCURRENT_RUNS=${this.#options.maxConcurrentRuns} ` +
          `in use, ${waiting} run(s) waiting`;
    // Preconditioned like a claim: a run another process moved on meanwhile keeps its status.
    await this.#write(run, queuedStatus(run, message, now), run.metadata.resourceVersion);
    return {};
  }

  /** An execution ended: write the attempt's outcome, then look at the run again. */
  #finished(execution: Execution, result: AttemptResult): void {
    if (execution.pool === 'jobs' && result.kind === 'aborted' && result.reason === 'Shutdown') {
      // The Job runs on, and the status says so: the next leader follows it again.
      this.#claimed.delete(execution.uid);
      return;
    }
    // A stage write still in flight goes first: the outcome must be the last word.
    const stageWrite = this.#stageWrites.get(execution.uid);
    if (stageWrite) {
      this.#finishing.add(execution.uid);
      void stageWrite.finally(() => {
        this.#finishing.delete(execution.uid);
        this.#writeOutcome(execution, result);
      });
      return;
    }
    this.#writeOutcome(execution, result);
  }

  #writeOutcome(execution: Execution, result: AttemptResult): void {
    const cached = this.#options.store.get(execution.key);
    const run =
      cached && cached.metadata.uid === execution.uid
        ? this.#newest(cached)
        : (this.#written.get(execution.uid) ?? this.#claimed.get(execution.uid));
    this.#claimed.delete(execution.uid);
    if (!run) return;
    const status = statusAfterAttempt(run, result, this.#now(), this.#options.retry);
    this.#finishing.add(run.metadata.uid);
    const artifacts = result.kind === 'succeeded' ? result.artifacts : undefined;
    if (!isTerminal(status)) void this.#audit?.queue(execution.key, run, status);
    const outcome = isTerminal(status)
      ? this.#writeTerminal(execution.key, run, status, artifacts)
      : this.#writeRetrying(execution.key, run, status);
    const write = outcome
      .then(
        () => {},
        (error: unknown) => {
          if (error instanceof NotFoundError) {
            // Deleted after the attempt ended and before a Retrying status (and the finalizer
            // that comes with it) landed: nobody will run or end it now. Its row said running
            // since the claim; record how it ended, as the status would have said.
            if (!isTerminal(status)) this.#recordDeleted(execution.key, run, status);
            return;
          }
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
        this.#options.enqueue(execution.key);
      });
    this.#inFlight.add(write);
  }

  /** The terminal audit row of a run deleted between attempts, without a status to write. */
  #recordDeleted(key: string, run: AgentRun, status: AgentRunStatus): void {
    const ended = terminalStatus(
      { ...run, status },
      { reason: Reason.Canceled, message: 'deleted before it finished' },
      this.#now(),
    );
    void this.#audit?.queue(key, run, ended);
  }

  /** Resolves when every outcome write started so far has settled. */
  async settled(): Promise<void> {
    while (this.#inFlight.size > 0) await Promise.all(this.#inFlight);
  }

  /**
   * Writes a terminal status. With auditing on, it says Audited=True when the tracker reports
   * the row durable; otherwise Audited=False/Pending, and the finalizer keeps the run until the
   * row lands.
   */
  async #writeTerminal(
    key: string,
    run: AgentRun,
    status: AgentRunStatus,
    artifacts?: unknown,
  ): Promise<AgentRun> {
    const audit = this.#audit;
    if (!audit) return this.#write(run, status);
    if (await audit.record(key, run, status, artifacts)) {
      const recorded = 'the audit row is committed';
      return this.#write(
        run,
        withAudited(status, run, AuditReason.Recorded, recorded, this.#now()),
      );
    }
    await this.#holdForAudit(key, run);
    const written = await this.#write(
      run,
      withAudited(status, run, AuditReason.Pending, 'the audit row is queued', this.#now()),
    );
    // The row may have landed while the status was being written.
    if (audit.isCommitted(run.metadata.uid)) this.#options.enqueue(key);
    return written;
  }

  /**
   * An attempt failed and a retry is due. Until it starts nothing executes, so without the
   * finalizer a deletion would let the run go with no outcome, and its audit row (written at the
   * claim) would say `running` forever. Held first (best effort, as for a pending row), the run
   * deleted while it waits ends Canceled, recorded, before the object goes. Only with auditing
   * on: the finalizer is there for the row, and it costs two writes per retried run.
   */
  async #writeRetrying(key: string, run: AgentRun, status: AgentRunStatus): Promise<AgentRun> {
    if (this.#audit) await this.#holdForAudit(key, run);
    return this.#write(run, status);
  }

  #audited(run: AgentRun, reason: AuditReason, message: string): AgentRunStatus {
    return withAudited(run.status ?? {}, run, reason, message, this.#now());
  }

  /**
   * Adds the finalizer before a status that says the row is still pending is written: added
   * afterwards (by `protect`), a deletion in between would let the object go while its row
   * exists only in this process's memory. Only taken when the database is slow or down. Best
   * effort: if it fails, the next reconcile protects the run.
   */
  async #holdForAudit(key: string, run: AgentRun): Promise<void> {
    // `run` was read before the wait for the row; what is known now is newer: our own last write
    // while the cache lags behind it, else the cache.
    const cached = this.#options.store.get(key);
    const latest =
      this.#written.get(run.metadata.uid) ??
      (cached?.metadata.uid === run.metadata.uid ? cached : run);
    const { deletionTimestamp, finalizers } = latest.metadata;
    if (deletionTimestamp || finalizers?.includes(FINALIZER)) return;
    try {
      this.#remember(await this.#options.writer.addFinalizer(latest, FINALIZER));
    } catch (error) {
      this.#log(run).debug({ err: error }, 'could not add the finalizer before the outcome');
    }
  }

  /** A handler runs long: make deletion wait for it (and for its outcome to be written). */
  #protect(execution: Execution): void {
    const cached = this.#options.store.get(execution.key);
    const known = cached ? this.#newest(cached) : this.#written.get(execution.uid);
    if (!known || known.metadata.finalizers?.includes(FINALIZER)) return;
    this.#options.writer
      .addFinalizer(known, FINALIZER)
      .then((run) => this.#remember(run))
      .catch((error: unknown) => {
        // Best effort: without it a deletion still aborts the handler through the watch.
        this.#log(known).debug({ err: error }, 'could not add the finalizer');
      });
  }

  /** Writes `status`, remembers the result and emits the Event. */
  async #write(
    run: AgentRun,
    status: AgentRunStatus,
    expectResourceVersion?: string,
  ): Promise<AgentRun> {
    let written: AgentRun;
    try {
      const write = this.#options.writer.writeStatus(run, status, expectResourceVersion);
      written = await (this.#options.statusWrites?.track(write) ?? write);
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
      const type =
        now.status === 'False' ||
        now.reason === Reason.Retrying ||
        now.reason === Reason.AgentNotFound
          ? 'Warning'
          : 'Normal';
      const reason = now.reason === Reason.Running ? EventReason.Started : now.reason;
      // No Event for Queued: the status says it, and in a burst every waiting run would add a
      // second API write to the one the status already costs.
      if (now.reason !== Reason.Queued) this.#options.events.record(run, type, reason, now.message);
      // Transitions on the way (queued, running, retrying) log at debug; the end of a run logs
      // below, once, at info.
      if (this.#options.logger.isLevelEnabled('debug')) {
        this.#log(run).debug({ phase: run.status?.phase, reason: now.reason }, now.message);
      }
    }
    if (isTerminal(run.status) && !isTerminal(previous)) {
      const phase = run.status?.phase;
      const status =
        phase === 'Succeeded' ? 'succeeded' : phase === 'Canceled' ? 'canceled' : 'failed';
      this.#metrics.runFinished(
        this.#options.metricsAgent?.(run) ?? run.spec.agent,
        status,
        run.status?.durationMs ?? 0,
      );
      this.#logFinished(run, now?.reason, now?.message ?? '');
    }
  }

  /**
   * The one log line per finished run, so that a run id can be grepped: info when it succeeded or
   * was canceled, warn with the error when it failed or timed out. pino writes asynchronously,
   * so this costs microseconds (docs/performance.md).
   */
  #logFinished(run: AgentRun, reason: string | undefined, message: string): void {
    const status = run.status;
    const fields = {
      phase: status?.phase,
      reason,
      durationMs: status?.durationMs,
      attempts: status?.attempts,
    };
    if (status?.phase === 'Failed') {
      this.#log(run).warn({ ...fields, error: status.error ?? message }, `run failed: ${message}`);
    } else {
      this.#log(run).info(
        fields,
        `run ${status?.phase === 'Canceled' ? 'canceled' : 'succeeded'}: ${message}`,
      );
    }
  }

  #remember(run: AgentRun): void {
    // A late answer to an earlier write (the finalizer #protect added while the handler ran,
    // answered after the outcome's write) must not roll this process's view back: the run would
    // look Running with nothing executing, and be ended again as Interrupted.
    const known = this.#written.get(run.metadata.uid);
    if (known && progress(known.status) > progress(run.status)) return;
    this.#written.set(run.metadata.uid, run);
  }

  /**
   * The cached run, with our own last-written status while the cache has not caught up with it.
   * Spec and finalizers come from the cache, so a remembered object never hides a user's change
   * (a cancel). The resourceVersion is our write's: the cache has not seen that write, so it is
   * older, and a claim preconditioned on it (after a Queued status) would only be refused.
   */
  #newest(cached: AgentRun): AgentRun {
    const mine = this.#written.get(cached.metadata.uid);
    if (!mine) return cached;
    if (progress(cached.status) >= progress(mine.status)) {
      this.#written.delete(cached.metadata.uid);
      return cached;
    }
    if (!mine.status) return cached;
    const { resourceVersion } = mine.metadata;
    return {
      ...cached,
      metadata: resourceVersion ? { ...cached.metadata, resourceVersion } : cached.metadata,
      status: mine.status,
    };
  }

  #log(run: AgentRun, extra: Record<string, unknown> = {}): Logger {
    return this.#options.logger.child({
      runId: run.metadata.uid,
      agent: run.spec.agent,
      namespace: run.metadata.namespace,
      name: run.metadata.name,
      ...extra,
    });
  }
}
