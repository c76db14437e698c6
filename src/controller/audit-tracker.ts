import type { AgentRun, AgentRunStatus } from '../api/agentrun.ts';
import type { AuditSink } from '../audit/audit-writer.ts';
import { auditRecord } from './audit-records.ts';
import type { AuditView } from './decide.ts';
import { isAudited, isTerminal } from './run-status.ts';

/** Where audit rows go (src/audit's AuditWriter), and how long runs wait for them. */
export interface RunAudit {
  readonly sink: Pick<AuditSink, 'write' | 'isPending' | 'failing' | 'onFailure'>;
  /** How long a terminal status write waits for its row while the database is healthy. */
  readonly syncWaitMs: number;
  /** How long after finishedAt the finalizer waits for a pending row. */
  readonly deadlineMs: number;
  /** A row was given up after the deadline (agent_audit_lost_total). */
  readonly onLost?: () => void;
}

/**
 * This process's bookkeeping of the runs' audit rows: which terminal rows it queued and when,
 * which it saw committed, and which runs have a status saying Audited=False that must be looked
 * at again once the row lands. The reconciler asks it two things: `view()` for decide(), and
 * `record()`: "is this outcome's row durable, now or after a short wait?".
 */
export class AuditTracker {
  readonly #audit: RunAudit;
  readonly #enqueue: (key: string) => void;
  readonly #now: () => Date;
  /** uids whose terminal audit row this process saw committed. */
  readonly #committed = new Set<string>();
  /** uid -> when this process first queued the run's terminal row (see AuditView.queuedAtMs). */
  readonly #queuedAt = new Map<string, number>();
  /** uids whose status was written with Audited=False: look again when the row lands. */
  readonly #awaited = new Set<string>();
  /** False after a row missed syncWaitMs; terminal writes then stop waiting until one commits. */
  #healthy = true;

  constructor(audit: RunAudit, enqueue: (key: string) => void, now: () => Date) {
    this.#audit = audit;
    this.#enqueue = enqueue;
    this.#now = now;
  }

  get deadlineMs(): number {
    return this.#audit.deadlineMs;
  }

  /** What decide() needs to know of the run's row. A status that says Audited ends the watch. */
  view(run: AgentRun): AuditView {
    const uid = run.metadata.uid;
    if (isAudited(run.status)) this.forget(uid);
    return {
      committed: this.#committed.has(uid),
      pending: this.#audit.sink.isPending(uid),
      deadlineMs: this.#audit.deadlineMs,
      queuedAtMs: this.#queuedAt.get(uid),
    };
  }

  /** A row for the run is queued and not committed yet. */
  isPending(uid: string): boolean {
    return this.#audit.sink.isPending(uid);
  }

  /** The run's terminal row was seen committed (and its status does not say so yet). */
  isCommitted(uid: string): boolean {
    return this.#committed.has(uid);
  }

  /** The run's status says Audited=False (or nothing): enqueue it when its row lands. */
  await(uid: string): void {
    this.#awaited.add(uid);
  }

  forget(uid: string): void {
    this.#committed.delete(uid);
    this.#awaited.delete(uid);
    this.#queuedAt.delete(uid);
  }

  /** Queues the run's row for `status`; resolves true once committed. Never rejects. */
  queue(key: string, run: AgentRun, status: AgentRunStatus, artifacts?: unknown): Promise<boolean> {
    const uid = run.metadata.uid;
    const terminal = isTerminal(status);
    if (terminal && !this.#queuedAt.has(uid)) this.#queuedAt.set(uid, this.#now().getTime());
    return this.#audit.sink.write(auditRecord(run, status, artifacts)).then((ok) => {
      if (!terminal) return ok;
      if (ok) {
        this.#committed.add(uid);
        this.#healthy = true;
      }
      // A status that says Audited=False needs another look once the row is in. (A refused row
      // is retried by the reconcile that sees Audited=False, with a delay.)
      if (ok && this.#awaited.has(uid)) this.#enqueue(key);
      return ok;
    });
  }

  /**
   * Queues the terminal row of an outcome and says whether it is durable. While the database is
   * healthy it waits up to syncWaitMs for the commit, so the status can say Audited=True in the
   * same write; otherwise (or when the wait runs out) it answers false at once and marks the run
   * as awaited: audit trouble never delays a run's outcome.
   */
  async record(
    key: string,
    run: AgentRun,
    status: AgentRunStatus,
    artifacts?: unknown,
  ): Promise<boolean> {
    const committed = this.queue(key, run, status, artifacts);
    const recorded = this.#mayWait() && (await this.#waitFor(committed));
    if (!recorded) this.#awaited.add(run.metadata.uid);
    return recorded;
  }

  #mayWait(): boolean {
    return this.#healthy && !this.#audit.sink.failing() && this.#audit.syncWaitMs > 0;
  }

  /**
   * The commit, or false at syncWaitMs or at the first failed statement, whichever comes first: a
   * refused connection is known within milliseconds, and an outage must not delay outcomes. A
   * wait that did not end in a commit marks the database unhealthy until a row commits.
   */
  async #waitFor(committed: Promise<boolean>): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    let unsubscribe: (() => void) | undefined;
    const giveUp = new Promise<undefined>((resolve) => {
      timer = setTimeout(resolve, this.#audit.syncWaitMs, undefined);
      unsubscribe = this.#audit.sink.onFailure(() => resolve(undefined));
    });
    const result = await Promise.race([committed, giveUp]);
    clearTimeout(timer);
    unsubscribe?.();
    if (result === undefined) this.#healthy = false;
    return result === true;
  }
}
