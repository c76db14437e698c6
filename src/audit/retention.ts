import type { Logger } from '../util/log.ts';
import type { AuditStore } from './audit-store.ts';
import { errorSummary } from './pool.ts';

export const AUDIT_RETENTION_DAYS = 90;
export const RETENTION_INTERVAL_MS = 60 * 60 * 1000;
export const RETENTION_BATCH_SIZE = 1_000;

const DAY_MS = 24 * 60 * 60 * 1000;

export interface RetentionOptions {
  readonly store: Pick<AuditStore, 'deleteOlderThan'>;
  readonly logger: Logger;
  /** Rows whose run ended (or, never ended, started) longer ago are deleted; 0 keeps all. */
  readonly retentionDays: number;
  /** Default RETENTION_INTERVAL_MS (hourly). */
  readonly intervalMs?: number;
  /** Rows per DELETE; default RETENTION_BATCH_SIZE. */
  readonly batchSize?: number;
  readonly now?: () => Date;
}

/**
 * The original retention advice (docs/compatibility.md), done gently: every `intervalMs` it
 * deletes rows older than `retentionDays` (by COALESCE(finished_at, started_at, created_at), so a
 * run still going is judged by its start and never deleted while younger than the cutoff),
 * `batchSize` rows per statement. Start it on the leader only: deleting is idempotent, but one
 * deleter is enough. A failed pass is logged and tried again at the next interval.
 */
export class RetentionJob {
  readonly #o: RetentionOptions;
  readonly #now: () => Date;
  #timer: NodeJS.Timeout | undefined;
  #pass: Promise<number> | undefined;
  #abort: AbortController | undefined;

  constructor(options: RetentionOptions) {
    this.#o = options;
    this.#now = options.now ?? (() => new Date());
  }

  get running(): boolean {
    return this.#timer !== undefined;
  }

  /** Runs a pass now and then every interval, until stop(). Idempotent. */
  start(): void {
    if (this.#timer !== undefined || this.#o.retentionDays <= 0) return;
    const intervalMs = this.#o.intervalMs ?? RETENTION_INTERVAL_MS;
    this.#timer = setInterval(() => void this.#runQuietly(), intervalMs);
    // The job never keeps the process alive on its own.
    this.#timer.unref();
    void this.#runQuietly();
  }

  /** Stops the schedule and ends a pass in progress after its current batch. */
  async stop(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#abort?.abort();
    await this.#pass?.catch(() => 0);
  }

  /** One pass; resolves to the rows deleted. A pass already running is joined, not repeated. */
  runOnce(): Promise<number> {
    if (this.#pass) return this.#pass;
    if (this.#o.retentionDays <= 0) return Promise.resolve(0);
    const abort = new AbortController();
    this.#abort = abort;
    const cutoff = new Date(this.#now().getTime() - this.#o.retentionDays * DAY_MS);
    const started = performance.now();
    this.#pass = this.#o.store
      .deleteOlderThan(cutoff, this.#o.batchSize ?? RETENTION_BATCH_SIZE, abort.signal)
      .then((deleted) => {
        const details = { deleted, cutoff, ms: Math.round(performance.now() - started) };
        if (deleted > 0) this.#o.logger.info(details, 'audit retention deleted old rows');
        else this.#o.logger.debug(details, 'audit retention: nothing to delete');
        return deleted;
      })
      .finally(() => {
        this.#pass = undefined;
        this.#abort = undefined;
      });
    return this.#pass;
  }

  async #runQuietly(): Promise<void> {
    try {
      await this.runOnce();
    } catch (error) {
      this.#o.logger.warn({ err: errorSummary(error) }, 'audit retention pass failed');
    }
  }
}
