import type pg from 'pg';
import type { Logger } from '../util/log.ts';
import type { AuditRecord, AuditStatus } from './audit-record.ts';
import {
  type AuditEntry,
  AuditStore,
  type AuditSummary,
  type RecentRunsQuery,
} from './audit-store.ts';
import {
  type AuditMetrics,
  type AuditSink,
  AuditWriter,
  type AuditWriterOptions,
} from './audit-writer.ts';
import { createAuditPool, describeDatabase } from './pool.ts';

/** What the original log_start took (docs/compatibility.md): who runs what. */
export interface RunStart {
  readonly runId: string;
  readonly namespace: string;
  readonly name: string;
  readonly agent: string;
  readonly objective: string;
  readonly plan?: unknown;
  readonly userEmail?: string | null | undefined;
  /** Default true, as in the original auditor and the AgentRun API. */
  readonly dryRun?: boolean | undefined;
  /** Default 1. */
  readonly attempts?: number | undefined;
  /** Default now. */
  readonly startedAt?: Date | undefined;
}

/**
 * What the original log_finish took, plus the start fields: each write carries the whole run, so
 * a finish whose start was never written still makes a complete row.
 */
export interface RunFinish extends RunStart {
  readonly status: Exclude<AuditStatus, 'running'>;
  readonly reason?: string | null | undefined;
  /** Default now. */
  readonly finishedAt?: Date | undefined;
  /** Default finishedAt - startedAt when startedAt is given, else null. */
  readonly durationMs?: number | null | undefined;
  readonly artifacts?: unknown;
  readonly error?: string | null | undefined;
}

/**
 * The AgentAuditor API, kept compatible (docs/compatibility.md). Writing (write, logStart,
 * logFinish) is fail-safe: it never throws, never rejects and never waits for the database (see
 * AuditSink). Reading (getRun, getRecentRuns) rejects on database errors: its callers (the CLI)
 * report them.
 */
export interface Auditor extends AuditSink {
  /** False for the no-op auditor (APPLYLENS_AGENT_AUDIT_ENABLED=false). */
  readonly enabled: boolean;
  logStart(start: RunStart): Promise<boolean>;
  logFinish(finish: RunFinish): Promise<boolean>;
  getRun(runId: string): Promise<AuditEntry | undefined>;
  getRecentRuns(query?: RecentRunsQuery): Promise<AuditSummary[]>;
  /** Resolves true once every queued record is committed, false after `timeoutMs`. */
  flush(timeoutMs: number): Promise<boolean>;
  /** Drains for up to `timeoutMs` (default 5 s), then stops writing and closes connections. */
  close(timeoutMs?: number): Promise<void>;
}

export interface AgentAuditorOptions
  extends Omit<AuditWriterOptions, 'store' | 'logger' | 'metrics' | 'database'> {
  readonly logger: Logger;
  readonly metrics?: AuditMetrics;
}

/** The audit log in PostgreSQL: an AuditWriter for writes and an AuditStore for reads. */
export class AgentAuditor implements Auditor {
  readonly enabled = true;
  readonly store: AuditStore;
  readonly #writer: AuditWriter;
  readonly #pool: pg.Pool;
  readonly #ownsPool: boolean;

  /** Uses `pool` (the caller ends it) unless `ownsPool`. */
  constructor(
    pool: pg.Pool,
    options: AgentAuditorOptions & { database?: string },
    ownsPool = false,
  ) {
    const { logger, metrics, database, ...writerOptions } = options;
    this.#pool = pool;
    this.#ownsPool = ownsPool;
    this.store = new AuditStore(
      pool,
      writerOptions.jsonMaxBytes === undefined ? {} : { jsonMaxBytes: writerOptions.jsonMaxBytes },
    );
    this.#writer = new AuditWriter({
      ...writerOptions,
      store: this.store,
      logger,
      ...(metrics ? { metrics } : {}),
      ...(database ? { database } : {}),
    });
  }

  /**
   * An auditor with a pool of its own (createAuditPool: at most 4 connections). Connects lazily:
   * an unreachable database makes writes queue, never this call fail.
   */
  static connect(databaseUrl: string, options: AgentAuditorOptions): AgentAuditor {
    const database = describeDatabase(databaseUrl);
    const pool = createAuditPool(databaseUrl, options.logger);
    return new AgentAuditor(pool, { ...options, database }, true);
  }

  get pool(): pg.Pool {
    return this.#pool;
  }

  write(record: AuditRecord): Promise<boolean> {
    return this.#writer.write(record);
  }

  isPending(runId: string): boolean {
    return this.#writer.isPending(runId);
  }

  failing(): boolean {
    return this.#writer.failing();
  }

  onFailure(listener: () => void): () => void {
    return this.#writer.onFailure(listener);
  }

  pending(): number {
    return this.#writer.pending();
  }

  logStart(start: RunStart): Promise<boolean> {
    return this.write(startRecord(start));
  }

  logFinish(finish: RunFinish): Promise<boolean> {
    return this.write(finishRecord(finish));
  }

  getRun(runId: string): Promise<AuditEntry | undefined> {
    return this.store.getRun(runId);
  }

  getRecentRuns(query: RecentRunsQuery = {}): Promise<AuditSummary[]> {
    return this.store.getRecentRuns(query);
  }

  flush(timeoutMs: number): Promise<boolean> {
    return this.#writer.flush(timeoutMs);
  }

  async close(timeoutMs = 5_000): Promise<void> {
    await this.#writer.stop(timeoutMs);
    if (this.#ownsPool) await this.#pool.end();
  }
}

/**
 * The auditor when auditing is off: no connection, nothing recorded. Writes resolve false (not
 * accepted), so nobody mistakes them for committed rows; reads find nothing.
 */
export class NoopAuditor implements Auditor {
  readonly enabled = false;
  write(_record: AuditRecord): Promise<boolean> {
    return Promise.resolve(false);
  }
  isPending(_runId: string): boolean {
    return false;
  }
  failing(): boolean {
    return false;
  }
  onFailure(_listener: () => void): () => void {
    return () => {};
  }
  pending(): number {
    return 0;
  }
  logStart(_start: RunStart): Promise<boolean> {
    return Promise.resolve(false);
  }
  logFinish(_finish: RunFinish): Promise<boolean> {
    return Promise.resolve(false);
  }
  getRun(_runId: string): Promise<AuditEntry | undefined> {
    return Promise.resolve(undefined);
  }
  getRecentRuns(_query?: RecentRunsQuery): Promise<AuditSummary[]> {
    return Promise.resolve([]);
  }
  flush(_timeoutMs: number): Promise<boolean> {
    return Promise.resolve(true);
  }
  close(_timeoutMs?: number): Promise<void> {
    return Promise.resolve();
  }
}

/** The settings createAuditor reads (names as in src/config/config.ts). */
export interface AuditorSettings {
  readonly APPLYLENS_AGENT_AUDIT_ENABLED: boolean;
  readonly DATABASE_URL: string;
}

/**
 * The auditor the settings ask for: NoopAuditor when APPLYLENS_AGENT_AUDIT_ENABLED is false (no
 * database connection at all), otherwise AgentAuditor.connect(DATABASE_URL). Throws when auditing
 * is on without a DATABASE_URL; the message never contains the URL.
 */
export function createAuditor(settings: AuditorSettings, options: AgentAuditorOptions): Auditor {
  if (!settings.APPLYLENS_AGENT_AUDIT_ENABLED) return new NoopAuditor();
  if (!settings.DATABASE_URL) {
    throw new Error('DATABASE_URL is required while APPLYLENS_AGENT_AUDIT_ENABLED is true');
  }
  return AgentAuditor.connect(settings.DATABASE_URL, options);
}

let current: Auditor = new NoopAuditor();

/**
 * The process-wide auditor (the original get_auditor()): whatever setAuditor installed, else a
 * NoopAuditor. It never connects on its own; the operator installs the real one at start-up.
 */
export function getAuditor(): Auditor {
  return current;
}

/** Installs `auditor` as the process-wide one and returns the previous one (to close it). */
export function setAuditor(auditor: Auditor): Auditor {
  const previous = current;
  current = auditor;
  return previous;
}

export function startRecord(start: RunStart, now: Date = new Date()): AuditRecord {
  return {
    runId: start.runId,
    namespace: start.namespace,
    name: start.name,
    agent: start.agent,
    objective: start.objective,
    status: 'running',
    reason: null,
    attempts: start.attempts ?? 1,
    startedAt: start.startedAt ?? now,
    finishedAt: null,
    durationMs: null,
    plan: start.plan ?? null,
    artifacts: null,
    error: null,
    userEmail: start.userEmail ?? null,
    dryRun: start.dryRun ?? true,
  };
}

export function finishRecord(finish: RunFinish, now: Date = new Date()): AuditRecord {
  const finishedAt = finish.finishedAt ?? now;
  const durationMs =
    finish.durationMs !== undefined
      ? finish.durationMs
      : finish.startedAt
        ? Math.max(0, finishedAt.getTime() - finish.startedAt.getTime())
        : null;
  return {
    ...startRecord(finish, now),
    // No start time known: the stored row keeps the one its start wrote (the upsert keeps the
    // earliest), and a row made by this finish alone starts when it ended.
    startedAt: finish.startedAt ?? null,
    status: finish.status,
    reason: finish.reason ?? null,
    finishedAt,
    durationMs,
    artifacts: finish.artifacts ?? null,
    error: finish.error ?? null,
  };
}
