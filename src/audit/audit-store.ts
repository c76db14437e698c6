import type pg from 'pg';
import {
  type AuditRecord,
  type AuditStatus,
  dedupeByRunId,
  type SanitisedRecord,
  type SanitiseOptions,
  sanitiseRecord,
} from './audit-record.ts';

/** A row as read back: the record plus what the table adds. */
export interface AuditEntry extends AuditRecord {
  readonly id: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** A row in a list: scalar columns only, so listing never reads the (possibly large) jsonb. */
export type AuditSummary = Omit<AuditEntry, 'plan' | 'artifacts'>;

export interface RecentRunsQuery {
  readonly agent?: string;
  readonly status?: AuditStatus;
  readonly namespace?: string;
  /** The AgentRun's name; best with `namespace` (served by the namespace/name index). */
  readonly name?: string;
  readonly userEmail?: string;
  /** Only runs that started at or after this instant. */
  readonly since?: Date;
  /** Default 100 (as in the original API), at most RECENT_RUNS_MAX_LIMIT. */
  readonly limit?: number;
}

export const RECENT_RUNS_DEFAULT_LIMIT = 100;
export const RECENT_RUNS_MAX_LIMIT = 10_000;
/** Rows per statement: large enough to amortise a round trip, small enough to stay short. */
export const UPSERT_MAX_ROWS = 500;

/** Column, its array type for unnest, and where its value comes from. */
const INSERT_COLUMNS: ReadonlyArray<readonly [string, string, (row: SanitisedRecord) => unknown]> =
  [
    ['run_id', 'varchar[]', (r) => r.runId],
    ['namespace', 'varchar[]', (r) => r.namespace],
    ['name', 'varchar[]', (r) => r.name],
    ['agent', 'varchar[]', (r) => r.agent],
    ['objective', 'varchar[]', (r) => r.objective],
    ['status', 'varchar[]', (r) => r.status],
    ['reason', 'varchar[]', (r) => r.reason],
    ['attempts', 'integer[]', (r) => r.attempts],
    ['started_at', 'timestamptz[]', (r) => r.startedAt],
    ['finished_at', 'timestamptz[]', (r) => r.finishedAt],
    ['duration_ms', 'float8[]', (r) => r.durationMs],
    ['plan', 'jsonb[]', (r) => r.planJson],
    ['artifacts', 'jsonb[]', (r) => r.artifactsJson],
    ['error', 'varchar[]', (r) => r.error],
    ['user_email', 'varchar[]', (r) => r.userEmail],
    ['dry_run', 'boolean[]', (r) => r.dryRun],
  ];

/*
 * The upsert's conflict rule, which makes every write idempotent and replays harmless:
 * - a running record only ever updates a running row, and only with at least as many attempts
 *   (a replayed older start cannot undo a retry, a start replayed after the finish changes
 *   nothing);
 * - a terminal record always replaces a running row. It replaces a terminal row only when it
 *   comes from a later decision: more attempts, or as many and a later finished_at. That is an
 *   operator killed after its terminal row committed and before the status write that ends the
 *   run (the row goes first, so that Audited=True lands in that write): the next operator finds
 *   the run Running and ends it otherwise (a retry, or Interrupted), and the row must follow the
 *   status Kubernetes keeps. A replayed finish (the same finished_at) or an older one changes
 *   nothing;
 * - attempts and started_at only move one way (the most attempts, the earliest start), and
 *   plan/user_email are filled in, never erased. Except for a run that never started (0
 *   attempts on both sides): its started_at is only its finish time, so a later decision's
 *   finish replaces it with its own. Otherwise a process killed between its row and its status
 *   ("canceled before it started") leaves a start the status never shows (scenario 1 found it).
 */
const ON_CONFLICT = `
ON CONFLICT (run_id) DO UPDATE SET
  namespace = EXCLUDED.namespace,
  name = EXCLUDED.name,
  agent = EXCLUDED.agent,
  objective = EXCLUDED.objective,
  status = EXCLUDED.status,
  reason = EXCLUDED.reason,
  attempts = GREATEST(agent_audit_log.attempts, EXCLUDED.attempts),
  started_at = CASE
    WHEN EXCLUDED.attempts = 0 AND agent_audit_log.attempts = 0 THEN EXCLUDED.started_at
    ELSE LEAST(agent_audit_log.started_at, EXCLUDED.started_at)
  END,
  finished_at = EXCLUDED.finished_at,
  duration_ms = EXCLUDED.duration_ms,
  plan = COALESCE(EXCLUDED.plan, agent_audit_log.plan),
  artifacts = EXCLUDED.artifacts,
  error = EXCLUDED.error,
  user_email = COALESCE(EXCLUDED.user_email, agent_audit_log.user_email),
  dry_run = EXCLUDED.dry_run,
  updated_at = now()
WHERE CASE
  WHEN EXCLUDED.status = 'running'
    THEN agent_audit_log.status = 'running' AND EXCLUDED.attempts >= agent_audit_log.attempts
  WHEN agent_audit_log.status = 'running' THEN true
  ELSE EXCLUDED.attempts > agent_audit_log.attempts
    OR (EXCLUDED.attempts = agent_audit_log.attempts
        AND EXCLUDED.finished_at > agent_audit_log.finished_at)
END`;

/**
 * One statement for any number of rows: one array parameter per column, zipped by unnest. Its
 * text never changes, so it is prepared once per connection; measured about twice as fast as a
 * VALUES list with 16 parameters per row (see docs/audit.md).
 */
const UPSERT_SQL = `INSERT INTO agent_audit_log (${INSERT_COLUMNS.map(([c]) => c).join(', ')})
SELECT * FROM unnest(${INSERT_COLUMNS.map(([, type], i) => `$${i + 1}::${type}`).join(', ')})
${ON_CONFLICT}`;

const SUMMARY_COLUMNS = `id, run_id, namespace, name, agent, objective, status, reason, attempts,
  started_at, finished_at, duration_ms, error, user_email, dry_run, created_at, updated_at`;

/**
 * Rows a retention pass may delete: finished (or, if never finished, started) before the cutoff.
 * finished_at >= started_at, so such a row also has started_at < cutoff; saying so lets the
 * started_at btree find the candidates (a BitmapOr with its IS NULL search) instead of a scan.
 */
export const EXPIRED_ROWS_SQL = `SELECT id FROM agent_audit_log
  WHERE (started_at < $1 OR started_at IS NULL)
    AND COALESCE(finished_at, started_at, created_at) < $1
  LIMIT $2`;

/** One retention batch; ARRAY(...) runs the sub-select once, as its own plan with its LIMIT. */
const DELETE_EXPIRED_BATCH_SQL = `DELETE FROM agent_audit_log WHERE id = ANY (ARRAY(${EXPIRED_ROWS_SQL}))`;

/**
 * Reads and writes `agent_audit_log` (migrations/001.do.sql) over a caller-owned pool. All
 * values travel as query parameters; no text from a record is ever part of the SQL.
 */
export class AuditStore {
  readonly #pool: pg.Pool;
  readonly #sanitise: SanitiseOptions;

  constructor(pool: pg.Pool, sanitise: SanitiseOptions = {}) {
    this.#pool = pool;
    this.#sanitise = sanitise;
  }

  /**
   * Sanitises, dedupes and upserts `records` (see upsertRows). Throws on a record without a
   * usable runId or status; the writer checks those before queueing.
   */
  async upsert(records: readonly AuditRecord[]): Promise<void> {
    const rows = records.map((record) => {
      const result = sanitiseRecord(record, this.#sanitise);
      if (!result.ok) throw new TypeError(`audit record ${record.runId}: ${result.problem}`);
      return result.record;
    });
    await this.upsertRows(rows);
  }

  /**
   * Writes sanitised rows with one multi-row INSERT ... ON CONFLICT statement per
   * UPSERT_MAX_ROWS, after keeping one row per runId (dedupeByRunId).
   */
  async upsertRows(rows: readonly SanitisedRecord[]): Promise<void> {
    const unique = dedupeByRunId(rows);
    for (let i = 0; i < unique.length; i += UPSERT_MAX_ROWS) {
      const chunk = unique.slice(i, i + UPSERT_MAX_ROWS);
      await this.#pool.query({
        name: 'agent_audit_log_upsert',
        text: UPSERT_SQL,
        values: INSERT_COLUMNS.map(([, , value]) => chunk.map(value)),
      });
    }
  }

  async getRun(runId: string): Promise<AuditEntry | undefined> {
    const result = await this.#pool.query<EntryRow>(
      `SELECT ${SUMMARY_COLUMNS}, plan, artifacts FROM agent_audit_log WHERE run_id = $1`,
      [runId],
    );
    const row = result.rows[0];
    return row === undefined ? undefined : toEntry(row);
  }

  /** The newest runs first, optionally filtered (see recentRunsSql). */
  async getRecentRuns(query: RecentRunsQuery = {}): Promise<AuditSummary[]> {
    const { text, values } = recentRunsSql(query);
    const result = await this.#pool.query<SummaryRow>(text, values);
    return result.rows.map(toSummary);
  }

  /**
   * Deletes rows whose run finished (or, never finished, started) before `cutoff`, `batchSize`
   * rows per statement, each its own short transaction so that locks and WAL stay small; stops
   * early when `signal` aborts. A running row younger than the cutoff is never touched. Returns
   * how many rows were deleted.
   */
  async deleteOlderThan(cutoff: Date, batchSize: number, signal?: AbortSignal): Promise<number> {
    const size = Math.max(1, Math.trunc(batchSize));
    let total = 0;
    for (;;) {
      if (signal?.aborted) return total;
      const result = await this.#pool.query(DELETE_EXPIRED_BATCH_SQL, [cutoff, size]);
      const deleted = result.rowCount ?? 0;
      total += deleted;
      if (deleted < size) return total;
    }
  }
}

/**
 * The SELECT behind getRecentRuns: the newest runs first (ORDER BY started_at DESC), optionally
 * filtered, scalar columns only. No filter, agent, agent + status 'failed', namespace + name and
 * user each have an index that returns rows in this order (migrations/001.do.sql), so the cost
 * follows `limit`, not the table size; other filters ride along one of those. There is
 * deliberately no total count.
 */
export function recentRunsSql(query: RecentRunsQuery): { text: string; values: unknown[] } {
  const where: string[] = [];
  const values: unknown[] = [];
  const filter = (sql: string, value: unknown): void => {
    values.push(value);
    where.push(`${sql} $${values.length}`);
  };
  if (query.agent !== undefined) filter('agent =', query.agent);
  if (query.status !== undefined) filter('status =', query.status);
  if (query.namespace !== undefined) filter('namespace =', query.namespace);
  if (query.name !== undefined) filter('name =', query.name);
  if (query.userEmail !== undefined) filter('user_email =', query.userEmail);
  if (query.since !== undefined) filter('started_at >=', query.since);
  const requested =
    query.limit !== undefined && Number.isFinite(query.limit)
      ? Math.trunc(query.limit)
      : RECENT_RUNS_DEFAULT_LIMIT;
  const limit = Math.min(RECENT_RUNS_MAX_LIMIT, Math.max(1, requested));
  values.push(limit);
  const text = `SELECT ${SUMMARY_COLUMNS} FROM agent_audit_log${
    where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''
  } ORDER BY started_at DESC LIMIT $${values.length}`;
  return { text, values };
}

/**
 * Errors that come from one row's data rather than from the connection or the schema:
 * cardinality (21), data exceptions (22) and integrity constraints (23). Retrying such a batch
 * unchanged would fail forever; the writer splits it to find the row.
 */
export function isRowDataError(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^2[123]/.test(code);
}

interface SummaryRow {
  id: string;
  run_id: string;
  namespace: string;
  name: string;
  agent: string;
  objective: string;
  status: AuditStatus;
  reason: string | null;
  attempts: number;
  started_at: Date | null;
  finished_at: Date | null;
  duration_ms: number | null;
  error: string | null;
  user_email: string | null;
  dry_run: boolean;
  created_at: Date;
  updated_at: Date;
}

interface EntryRow extends SummaryRow {
  plan: unknown;
  artifacts: unknown;
}

function toSummary(row: SummaryRow): AuditSummary {
  return {
    id: Number(row.id),
    runId: row.run_id,
    namespace: row.namespace,
    name: row.name,
    agent: row.agent,
    objective: row.objective,
    status: row.status,
    reason: row.reason,
    attempts: row.attempts,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
    durationMs: row.duration_ms,
    error: row.error,
    userEmail: row.user_email,
    dryRun: row.dry_run,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

function toEntry(row: EntryRow): AuditEntry {
  return { ...toSummary(row), plan: row.plan, artifacts: row.artifacts };
}
