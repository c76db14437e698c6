import type { JsonObject } from '../handlers/handler.ts';
import type { Logger } from '../util/log.ts';
import { type AttemptResult, attemptFailure, attemptResult } from './run-status.ts';

/** One attempt to execute: what the reconciler hands over after claiming it. */
export interface Execution {
  readonly key: string;
  /** The handler's name, for metrics. */
  readonly agent: string;
  readonly uid: string;
  readonly attempt: number;
  readonly dryRun: boolean;
  /** Absolute deadline of the run (timeoutSeconds after its first start). */
  readonly deadline: Date | undefined;
  readonly logger: Logger;
  /**
   * Where its slot comes from: MAX_CONCURRENT_RUNS for handlers in this process (default), or
   * MAX_CONCURRENT_JOB_RUNS for Job agents, whose work runs in the cluster. A Job execution only
   * follows its Job, so a shutdown stops following at once and leaves the Job running.
   */
  readonly pool?: Pool | undefined;
  readonly execute: (ctx: {
    runId: string;
    attempt: number;
    dryRun: boolean;
    signal: AbortSignal;
    logger: Logger;
  }) => Promise<JsonObject>;
}

export type Pool = 'handlers' | 'jobs';

/**
 * Why an execution's signal aborted: handlers see it as `signal.reason`. A Job execution
 * deletes its Job when canceled or timed out, and leaves it for the next leader on Shutdown.
 */
export class ExecutionAborted extends Error {
  readonly reason: 'Canceled' | 'TimedOut' | 'Shutdown';
  constructor(reason: 'Canceled' | 'TimedOut' | 'Shutdown', message: string) {
    super(`${reason}: ${message}`);
    this.name = 'ExecutionAborted';
    this.reason = reason;
  }
}

export interface ExecutorOptions {
  /** Handler executions in flight at once (MAX_CONCURRENT_RUNS). */
  readonly maxConcurrent: number;
  /** Job executions followed at once (MAX_CONCURRENT_JOB_RUNS); default unbounded. */
  readonly maxConcurrentJobs?: number;
  /** Called once per execution when it ends, however it ends. */
  readonly onFinished: (execution: Execution, result: AttemptResult) => void;
  /** Called when a run waiting for capacity may now proceed. */
  readonly onCapacity: (key: string) => void;
  /** Called once if an execution is still running after `longRunningAfterMs`. */
  readonly onLongRunning?: (execution: Execution) => void;
  readonly longRunningAfterMs?: number;
}

type AbortReason = {
  readonly reason: 'Canceled' | 'TimedOut' | 'Shutdown';
  readonly message: string;
};

interface Running {
  readonly execution: Execution;
  readonly pool: Slots;
  readonly controller: AbortController;
  readonly timers: NodeJS.Timeout[];
  settle: (result: AttemptResult) => void;
  abortedWith?: AbortReason;
}

/**
 * Runs handler attempts apart from the reconcile workers, bounded by MAX_CONCURRENT_RUNS. An
 * execution ends exactly once: when the handler settles, or at once when it is aborted (cancel,
 * timeout, shutdown); a handler that ignores its AbortSignal cannot hold its slot or the run.
 */
/** One pool of slots, with the keys waiting for one and the keys woken to take one. */
class Slots {
  readonly max: number;
  running = 0;
  reserved = 0;
  /** Keys waiting for a free slot, in arrival order; a Set keeps each once. */
  readonly waiting = new Set<string>();
  /**
   * Keys woken for a free slot whose reconcile has not run yet: each holds that slot. The value
   * is the wake's number in the sequence `ticket()` reads.
   */
  readonly woken = new Map<string, number>();

  constructor(max: number) {
    this.max = max;
  }

  get busy(): number {
    return this.running + this.reserved;
  }

  get full(): boolean {
    return this.busy + this.woken.size >= this.max;
  }
}

/**
 * Runs handler attempts apart from the reconcile workers, bounded by MAX_CONCURRENT_RUNS (and Job
 * attempts by MAX_CONCURRENT_JOB_RUNS, a pool of their own). An execution ends exactly once:
 * when the handler settles, or at once when it is aborted (cancel, timeout, shutdown); a handler
 * that ignores its AbortSignal cannot hold its slot or the run.
 */
export class Executor {
  readonly #options: ExecutorOptions;
  readonly #byUid = new Map<string, Running>();
  readonly #byKey = new Map<string, string>();
  readonly #pools: Readonly<Record<Pool, Slots>>;
  #wakes = 0;

  constructor(options: ExecutorOptions) {
    this.#options = options;
    this.#pools = {
      handlers: new Slots(options.maxConcurrent),
      jobs: new Slots(options.maxConcurrentJobs ?? Number.POSITIVE_INFINITY),
    };
  }

  /** Handler executions in flight plus slots reserved for claims being written. */
  get busy(): number {
    return this.#pools.handlers.busy;
  }

  /** Job executions followed plus slots reserved for their claims. */
  get busyJobs(): number {
    return this.#pools.jobs.busy;
  }

  /** Runs waiting for a slot, in both pools. */
  get waiting(): number {
    return this.#pools.handlers.waiting.size + this.#pools.jobs.waiting.size;
  }

  isExecuting(uid: string): boolean {
    return this.#byUid.has(uid);
  }

  /** The uid executing under `key`, if any (for runs deleted from the cache). */
  executingUid(key: string): string | undefined {
    return this.#byKey.get(key);
  }

  /**
   * Takes a slot of `pool` for a claim about to be written, synchronously, so that two
   * reconciles cannot both see the last free slot. Returns false (and remembers `key` to wake
   * later) when full.
   */
  reserve(key: string, pool: Pool = 'handlers'): boolean {
    const slots = this.#pools[pool];
    slots.woken.delete(key);
    if (slots.full) {
      slots.waiting.add(key);
      return false;
    }
    slots.waiting.delete(key);
    slots.reserved++;
    return true;
  }

  /** Read when a reconcile starts and given back to `reconciled`: which wakes it can have seen. */
  ticket(): number {
    return this.#wakes;
  }

  /**
   * The reconcile of `key` that started at `ticket` (default: after every wake so far) is over.
   * If the key had been woken for a slot before that reconcile started and did not take it (the
   * run was canceled meanwhile, say), the slot goes to the next waiting key, so nothing waits
   * forever. A key woken while its reconcile was already past `reserve` (writing its Queued
   * status, say) keeps the slot for the reconcile the wake enqueued: passing it on would send
   * the key to the back of the line.
   */
  reconciled(key: string, ticket = Number.POSITIVE_INFINITY): void {
    for (const slots of Object.values(this.#pools)) {
      const wokenAt = slots.woken.get(key);
      if (wokenAt === undefined || wokenAt > ticket) continue;
      slots.woken.delete(key);
      this.#wakeNext(slots);
    }
  }

  /** Gives back a reserved slot of `pool` whose claim was not written. */
  release(pool: Pool = 'handlers'): void {
    const slots = this.#pools[pool];
    slots.reserved = Math.max(0, slots.reserved - 1);
    this.#wakeNext(slots);
  }

  /** Starts an execution on a reserved slot. */
  start(execution: Execution): void {
    if (this.#byUid.has(execution.uid)) {
      throw new Error(`run ${execution.uid} is already executing; refusing a second execution`);
    }
    const pool = this.#pools[execution.pool ?? 'handlers'];
    pool.reserved = Math.max(0, pool.reserved - 1);
    pool.running++;
    const controller = new AbortController();
    const running: Running = { execution, pool, controller, timers: [], settle: () => {} };
    this.#byUid.set(execution.uid, running);
    this.#byKey.set(execution.key, execution.uid);

    let settled = false;
    running.settle = (result) => {
      if (settled) return;
      settled = true;
      for (const timer of running.timers) clearTimeout(timer);
      this.#byUid.delete(execution.uid);
      pool.running--;
      if (this.#byKey.get(execution.key) === execution.uid) this.#byKey.delete(execution.key);
      try {
        this.#options.onFinished(execution, result);
      } catch (error) {
        execution.logger.error({ err: error }, 'handling the end of an execution failed');
      } finally {
        this.#wakeNext(pool);
      }
    };

    if (execution.deadline) {
      const deadline = execution.deadline.getTime();
      // Timers run on a monotonic clock and may fire a millisecond before the wall clock reaches
      // the deadline; wait out the rest, so a run never ends TimedOut before its time.
      const arm = () => {
        const ms = deadline - Date.now();
        if (ms <= 0) this.abort(execution.uid, 'TimedOut', 'exceeded its timeoutSeconds');
        else running.timers.push(setTimeout(arm, ms));
      };
      running.timers.push(setTimeout(arm, Math.max(0, deadline - Date.now())));
    }
    const { onLongRunning, longRunningAfterMs } = this.#options;
    if (onLongRunning && longRunningAfterMs !== undefined) {
      running.timers.push(setTimeout(() => onLongRunning(execution), longRunningAfterMs));
    }

    const ctx = {
      runId: execution.uid,
      attempt: execution.attempt,
      dryRun: execution.dryRun,
      signal: controller.signal,
      logger: execution.logger,
    };
    // Past its deadline already: end it now, without ever calling the handler.
    if (execution.deadline && execution.deadline.getTime() <= Date.now()) {
      this.abort(execution.uid, 'TimedOut', 'exceeded its timeoutSeconds');
      return;
    }
    // A synchronous throw inside execute() becomes a rejection here. A run aborted before this
    // microtask (canceled in the same tick) never reaches its handler: agents have side effects.
    Promise.resolve()
      .then(() => {
        controller.signal.throwIfAborted();
        return execution.execute(ctx);
      })
      .then(
        (artifacts: unknown) => running.settle(attemptResult(artifacts)),
        (error: unknown) => {
          if (running.abortedWith) return; // already settled by abort()
          running.settle(attemptFailure(error));
        },
      );
  }

  /** Aborts the execution of `uid`; it ends at once with the given reason. */
  abort(uid: string, reason: AbortReason['reason'], message: string): boolean {
    const running = this.#byUid.get(uid);
    if (!running || running.abortedWith) return false;
    running.abortedWith = { reason, message };
    running.controller.abort(new ExecutionAborted(reason, message));
    running.settle({ kind: 'aborted', reason, message });
    return true;
  }

  /**
   * Graceful shutdown: stops following Jobs at once (they run on; the next leader follows them),
   * waits up to `graceMs` for handler executions to finish, then aborts the rest with reason
   * Shutdown (their runs are retried by the next leader if retries remain).
   */
  async drain(graceMs: number): Promise<void> {
    for (const slots of Object.values(this.#pools)) {
      slots.waiting.clear();
      slots.woken.clear();
    }
    const shutdown = 'the operator shut down before the handler finished';
    for (const [uid, running] of [...this.#byUid]) {
      if (running.pool === this.#pools.jobs) this.abort(uid, 'Shutdown', shutdown);
    }
    const deadline = Date.now() + graceMs;
    while (this.#byUid.size > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    for (const uid of [...this.#byUid.keys()]) this.abort(uid, 'Shutdown', shutdown);
  }

  #wakeNext(slots: Slots): void {
    for (const key of slots.waiting) {
      if (slots.full) return;
      slots.waiting.delete(key);
      slots.woken.set(key, ++this.#wakes);
      this.#options.onCapacity(key);
    }
  }
}
