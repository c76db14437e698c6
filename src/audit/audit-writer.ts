import type { Logger } from '../util/log.ts';
import {
  type AuditRecord,
  mergeRecords,
  type SanitisedRecord,
  type SanitiseResult,
  sanitiseRecord,
} from './audit-record.ts';
import { isRowDataError } from './audit-store.ts';
import { errorSummary } from './pool.ts';

/** Where audit records go. The controller's only view of the audit log's write path. */
export interface AuditSink {
  /**
   * Queues `record` and resolves true once a row reflecting it (or a newer record of the same
   * run) is committed, however long that takes, or false if it was not accepted (queue full,
   * writer stopped, no usable runId/status) or was given up (see AuditWriter). Never rejects and
   * never waits for the database before returning.
   */
  write(record: AuditRecord): Promise<boolean>;
  /** Whether a record of this run is queued or being written. */
  isPending(runId: string): boolean;
  /** Records queued or being written. */
  pending(): number;
  /** Whether the last statement failed for a transient reason: rows wait for a retry. */
  failing(): boolean;
  /**
   * Calls `listener` once, at the next statement that fails for a transient reason. Returns a
   * function that unsubscribes it. Lets a caller stop waiting for a commit that cannot come soon.
   */
  onFailure(listener: () => void): () => void;
}

/**
 * Audit-log health: agent_audit_writes_total{result}, agent_audit_write_latency_seconds,
 * agent_audit_pending (told by the writer) and agent_audit_lost_total (told by the reconciler).
 * Cheap; must not throw.
 */
export interface AuditMetrics {
  /** After each statement: how many rows it committed, or how many it failed to. */
  written(result: 'success' | 'error', rows: number): void;
  /** Duration of each successful statement. */
  latency(seconds: number): void;
  /** Records queued or being written, after every change. */
  pending(n: number): void;
  /**
   * A run's row was given up after AUDIT_FINALIZER_DEADLINE_SECONDS (the reconciler's
   * RunAudit.onLost); the writer never calls it.
   */
  lost(): void;
}

export const noAuditMetrics: AuditMetrics = {
  written() {},
  latency() {},
  pending() {},
  lost() {},
};

/** What the writer needs from the store (AuditStore.upsertRows). */
export interface RowWriter {
  upsertRows(rows: readonly SanitisedRecord[]): Promise<void>;
}

/** Default bound of the queue: about 100 MB of typical rows (1-2 KB each). */
export const AUDIT_QUEUE_MAX_ROWS = 50_000;
/** Default bound on the memory the queue holds, whatever the rows' sizes. */
export const AUDIT_QUEUE_MAX_BYTES = 128 * 1024 * 1024;
/** Default rows per statement. */
export const AUDIT_BATCH_MAX_ROWS = 500;
export const AUDIT_RETRY_BASE_MS = 100;
export const AUDIT_RETRY_MAX_MS = 30_000;

export interface AuditWriterOptions {
  readonly store: RowWriter;
  readonly logger: Logger;
  readonly metrics?: AuditMetrics;
  /** "host:port/db" for log lines (see describeDatabase); never the URL itself. */
  readonly database?: string;
  /** Default AUDIT_QUEUE_MAX_ROWS. */
  readonly maxPendingRows?: number;
  /** Default AUDIT_QUEUE_MAX_BYTES. */
  readonly maxPendingBytes?: number;
  /** Default AUDIT_BATCH_MAX_ROWS. */
  readonly batchSize?: number;
  /** First retry delay after a failed statement, doubled per failure up to retryMaxMs. */
  readonly retryBaseMs?: number;
  readonly retryMaxMs?: number;
  /** Cap on plan and artifacts JSON; default AUDIT_ARTIFACTS_MAX_BYTES. */
  readonly jsonMaxBytes?: number;
  /** For tests: the jitter source, default Math.random. */
  readonly random?: () => number;
}

interface Entry {
  record: SanitisedRecord;
  readonly waiters: Array<(committed: boolean) => void>;
}

/**
 * The audit log's write path: a bounded in-memory queue keyed by runId, drained by one loop
 * that writes up to `batchSize` rows per multi-row upsert as soon as the previous statement ends
 * (so an idle writer adds no delay and a burst of finishing runs coalesces into few statements).
 *
 * Failures never reach the caller. A statement that fails for a transient reason (connection,
 * server down, undefined table while migrations are pending) puts its rows back at the head of
 * the queue and the loop retries after an exponential backoff with jitter (retryBaseMs doubling
 * to retryMaxMs), for as long as the writer runs. A statement that fails because of one row's
 * data (SQLSTATE classes 21-23; sanitising should make this impossible) is split in halves until
 * that row is alone; only that row is given up, with an error log and its write() resolving
 * false, so one bad row can never wedge the queue.
 *
 * A newer record for a run that is still queued is merged into the queued one in place (see
 * mergeRecords: the further-along record wins, completed from the other), so a run costs at
 * most one queued row; the bounds refuse only runs the writer does not hold yet, so a run's
 * finish is accepted whenever its start still waits. Rows still queued when stop() gives up are
 * not written by this process; the operator re-audits finished runs whose Audited condition is
 * not True at its next start.
 */
export class AuditWriter implements AuditSink {
  readonly #store: RowWriter;
  readonly #logger: Logger;
  readonly #metrics: AuditMetrics;
  readonly #database: string | undefined;
  readonly #maxRows: number;
  readonly #maxBytes: number;
  readonly #batchSize: number;
  readonly #retryBaseMs: number;
  readonly #retryMaxMs: number;
  readonly #jsonMaxBytes: number | undefined;
  readonly #random: () => number;

  /** Waiting rows in arrival order of each run's first record. */
  #queue = new Map<string, Entry>();
  /** Rows of the statement in progress. */
  readonly #inFlight = new Map<string, Entry>();
  /** Sum of `bytes` over #queue and #inFlight. */
  #bytes = 0;
  #loop: Promise<void> | undefined;
  #scheduled: NodeJS.Immediate | undefined;
  #retryTimer: NodeJS.Timeout | undefined;
  /** Failed statements in a row; 0 while healthy. */
  #failures = 0;
  #fullLogged = false;
  /** No new writes accepted. */
  #closed = false;
  /** No more statements started. */
  #halted = false;
  readonly #drainWaiters = new Set<() => void>();
  readonly #failureListeners = new Set<() => void>();

  constructor(options: AuditWriterOptions) {
    this.#store = options.store;
    this.#logger = options.logger;
    this.#metrics = guarded(options.metrics ?? noAuditMetrics);
    this.#database = options.database;
    this.#maxRows = options.maxPendingRows ?? AUDIT_QUEUE_MAX_ROWS;
    this.#maxBytes = options.maxPendingBytes ?? AUDIT_QUEUE_MAX_BYTES;
    this.#batchSize = Math.max(1, options.batchSize ?? AUDIT_BATCH_MAX_ROWS);
    this.#retryBaseMs = options.retryBaseMs ?? AUDIT_RETRY_BASE_MS;
    this.#retryMaxMs = options.retryMaxMs ?? AUDIT_RETRY_MAX_MS;
    this.#jsonMaxBytes = options.jsonMaxBytes;
    this.#random = options.random ?? Math.random;
  }

  write(record: AuditRecord): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    let result: SanitiseResult;
    try {
      result = sanitiseRecord(
        record,
        this.#jsonMaxBytes === undefined ? {} : { jsonMaxBytes: this.#jsonMaxBytes },
      );
    } catch (error) {
      // A getter or toString in the caller's data that throws; write() must not.
      result = { ok: false, problem: `unreadable record: ${errorSummary(error).message}` };
    }
    if (!result.ok) {
      this.#logger.error(
        { runId: String(record?.runId).slice(0, 200), problem: result.problem },
        'audit record refused',
      );
      return Promise.resolve(false);
    }
    const row = result.record;
    const queued = this.#queue.get(row.runId);
    const known = queued !== undefined || this.#inFlight.has(row.runId);
    if (!known && this.#full(row.bytes)) {
      if (!this.#fullLogged) {
        this.#fullLogged = true;
        this.#logger.error(
          { pending: this.pending(), bytes: this.#bytes, runId: row.runId },
          'audit queue full: refusing new records until the database catches up',
        );
      }
      return Promise.resolve(false);
    }
    return new Promise<boolean>((resolve) => {
      if (queued === undefined) {
        this.#queue.set(row.runId, { record: row, waiters: [resolve] });
        this.#bytes += row.bytes;
      } else {
        const merged = mergeRecords(queued.record, row);
        this.#bytes += merged.bytes - queued.record.bytes;
        queued.record = merged;
        queued.waiters.push(resolve);
      }
      this.#metrics.pending(this.pending());
      this.#schedule();
    });
  }

  isPending(runId: string): boolean {
    return this.#queue.has(runId) || this.#inFlight.has(runId);
  }

  pending(): number {
    return this.#queue.size + this.#inFlight.size;
  }

  failing(): boolean {
    return this.#failures > 0;
  }

  onFailure(listener: () => void): () => void {
    this.#failureListeners.add(listener);
    return () => {
      this.#failureListeners.delete(listener);
    };
  }

  /**
   * Resolves true once nothing is pending, or false after `timeoutMs`. A retry that is waiting
   * out its backoff is started at once.
   */
  flush(timeoutMs: number): Promise<boolean> {
    if (this.pending() === 0) return Promise.resolve(true);
    if (this.#retryTimer !== undefined && !this.#halted) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
      this.#schedule();
    }
    return new Promise<boolean>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#drainWaiters.delete(done);
        resolve(true);
      };
      const timer = setTimeout(() => {
        this.#drainWaiters.delete(done);
        resolve(false);
      }, timeoutMs);
      this.#drainWaiters.add(done);
    });
  }

  /**
   * Stops accepting records, gives the queue up to `timeoutMs` to drain, then stops retrying.
   * Records still pending resolve false and are logged by runId. Returns how many.
   */
  async stop(timeoutMs = 5_000): Promise<{ unwritten: number }> {
    this.#closed = true;
    await this.flush(timeoutMs);
    this.#halted = true;
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    if (this.#scheduled !== undefined) clearImmediate(this.#scheduled);
    this.#retryTimer = undefined;
    this.#scheduled = undefined;
    const left = [...this.#inFlight.values(), ...this.#queue.values()];
    if (left.length > 0) {
      this.#logger.error(
        {
          database: this.#database,
          unwritten: left.length,
          runIds: left.slice(0, 20).map((entry) => entry.record.runId),
        },
        'audit writer stopped with rows unwritten; they are re-audited from the runs status at the next start',
      );
    }
    for (const entry of left) settle(entry, false);
    this.#queue.clear();
    this.#inFlight.clear();
    this.#bytes = 0;
    this.#metrics.pending(0);
    return { unwritten: left.length };
  }

  #full(bytes: number): boolean {
    const full = this.pending() >= this.#maxRows || this.#bytes + bytes > this.#maxBytes;
    if (!full) this.#fullLogged = false;
    return full;
  }

  /** Starts the loop on the next turn of the event loop, so writes of this turn coalesce. */
  #schedule(): void {
    if (this.#loop || this.#scheduled || this.#retryTimer || this.#halted) return;
    this.#scheduled = setImmediate(() => {
      this.#scheduled = undefined;
      this.#loop = this.#drain().finally(() => {
        this.#loop = undefined;
        // A write may have come in between the loop's last look at the queue and now.
        if (this.#queue.size > 0) this.#schedule();
      });
    });
  }

  async #drain(): Promise<void> {
    while (this.#queue.size > 0 && !this.#halted) {
      for (const [runId, entry] of this.#queue) {
        if (this.#inFlight.size >= this.#batchSize) break;
        this.#inFlight.set(runId, entry);
        this.#queue.delete(runId);
      }
      try {
        await this.#writeBatch([...this.#inFlight.values()]);
      } catch (error) {
        if (!this.#halted) this.#retryLater(error);
        return;
      }
      if (this.#failures > 0) {
        this.#logger.info(
          { database: this.#database, failedAttempts: this.#failures, pending: this.pending() },
          'audit writes recovered',
        );
        this.#failures = 0;
      }
    }
    if (this.pending() === 0) for (const done of [...this.#drainWaiters]) done();
  }

  /**
   * Writes `entries` (all in #inFlight), settling and removing each one written or given up.
   * Throws on a transient failure, leaving the rest in #inFlight.
   */
  async #writeBatch(entries: readonly Entry[]): Promise<void> {
    const started = performance.now();
    try {
      await this.#store.upsertRows(entries.map((entry) => entry.record));
    } catch (error) {
      this.#metrics.written('error', entries.length);
      if (!isRowDataError(error)) throw error;
      if (entries.length > 1) {
        const half = Math.ceil(entries.length / 2);
        await this.#writeBatch(entries.slice(0, half));
        await this.#writeBatch(entries.slice(half));
        return;
      }
      const [entry] = entries;
      if (entry) {
        this.#logger.error(
          { runId: entry.record.runId, err: errorSummary(error) },
          'audit row refused by the database; giving it up',
        );
        this.#finish(entry, false);
      }
      return;
    }
    this.#metrics.latency((performance.now() - started) / 1000);
    this.#metrics.written('success', entries.length);
    for (const entry of entries) this.#finish(entry, true);
  }

  #finish(entry: Entry, committed: boolean): void {
    // stop() may have given the entry up while its statement was still running.
    if (this.#inFlight.get(entry.record.runId) !== entry) return;
    this.#inFlight.delete(entry.record.runId);
    this.#bytes -= entry.record.bytes;
    this.#metrics.pending(this.pending());
    settle(entry, committed);
  }

  /** Puts the unwritten rows back at the head of the queue and waits out the backoff. */
  #retryLater(error: unknown): void {
    const requeued = new Map<string, Entry>();
    for (const [runId, entry] of this.#inFlight) {
      const newer = this.#queue.get(runId);
      if (newer === undefined) {
        requeued.set(runId, entry);
        continue;
      }
      // A newer record of the run arrived meanwhile: keep one row, tell every waiter.
      const merged = mergeRecords(entry.record, newer.record);
      this.#bytes += merged.bytes - entry.record.bytes - newer.record.bytes;
      requeued.set(runId, { record: merged, waiters: [...entry.waiters, ...newer.waiters] });
    }
    for (const [runId, entry] of this.#queue) if (!requeued.has(runId)) requeued.set(runId, entry);
    this.#queue = requeued;
    this.#inFlight.clear();
    this.#metrics.pending(this.pending());

    this.#failures += 1;
    const listeners = [...this.#failureListeners];
    this.#failureListeners.clear();
    for (const listener of listeners) {
      try {
        listener();
      } catch {
        // A listener's trouble is not the writer's.
      }
    }
    const ceiling = Math.min(this.#retryMaxMs, this.#retryBaseMs * 2 ** (this.#failures - 1));
    // Half fixed, half random: replicas and restarts do not retry in lockstep.
    const delayMs = Math.round(ceiling / 2 + (this.#random() * ceiling) / 2);
    const details = {
      database: this.#database,
      err: errorSummary(error),
      pending: this.pending(),
      attempt: this.#failures,
      retryInMs: delayMs,
    };
    if (this.#failures === 1) {
      this.#logger.warn(details, 'audit write failed; rows stay queued and are retried');
    } else {
      this.#logger.debug(details, 'audit write failed again');
    }
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#schedule();
    }, delayMs);
    // The writer never keeps a process alive on its own; shutdown calls flush()/stop().
    this.#retryTimer.unref();
  }
}

/** Metrics hooks that cannot break the writer, whatever the implementation does. */
function guarded(metrics: AuditMetrics): AuditMetrics {
  const safe =
    <A extends unknown[]>(fn: (...args: A) => void) =>
    (...args: A): void => {
      try {
        fn(...args);
      } catch {
        // Metrics are best effort.
      }
    };
  return {
    written: safe((result: 'success' | 'error', rows: number) => metrics.written(result, rows)),
    latency: safe((seconds: number) => metrics.latency(seconds)),
    pending: safe((n: number) => metrics.pending(n)),
    lost: safe(() => metrics.lost()),
  };
}

function settle(entry: Entry, committed: boolean): void {
  for (const resolve of entry.waiters) resolve(committed);
}
