/**
 * One row of `agent_audit_log` as the operator writes it, and the pure rules applied before it
 * reaches PostgreSQL: sanitising (so that no value can make the INSERT fail) and which of two
 * records for the same run wins (so that replays never move a row backwards).
 */

import { cleanText, truncateCharacters } from '../util/text.ts';

export { cleanText };

export const AUDIT_STATUSES = ['running', 'succeeded', 'failed', 'canceled'] as const;
export type AuditStatus = (typeof AUDIT_STATUSES)[number];

/** A complete snapshot of a run: every write carries all fields, so any one of them can insert. */
export interface AuditRecord {
  /** The AgentRun's uid: the key of the row. 1 to 128 characters. */
  runId: string;
  namespace: string;
  name: string;
  agent: string;
  objective: string;
  status: AuditStatus;
  /** The Succeeded condition's reason (Succeeded, Failed, TimedOut, Canceled, ...). */
  reason: string | null;
  attempts: number;
  startedAt: Date | null;
  finishedAt: Date | null;
  durationMs: number | null;
  plan: unknown;
  artifacts: unknown;
  error: string | null;
  userEmail: string | null;
  dryRun: boolean;
}

/** Column widths of migrations/001.do.sql; longer text is cut with TRUNCATION_MARKER. */
export const COLUMN_MAX_LENGTH = {
  runId: 128,
  // Kubernetes' own limits: a namespace is a DNS label, an object name a DNS subdomain.
  namespace: 63,
  name: 253,
  agent: 128,
  objective: 512,
  reason: 128,
  error: 2048,
  userEmail: 320,
} as const;

/** Largest plan or artifacts document stored, as UTF-8 JSON; bigger ones become a marker. */
export const AUDIT_ARTIFACTS_MAX_BYTES = 256 * 1024;
/** Characters of the original JSON kept in the marker that replaces an oversized document. */
export const JSON_PREVIEW_CHARS = 1024;
/** Nesting kept in plan/artifacts; deeper values become a string (PostgreSQL's parser recurses). */
export const JSON_MAX_DEPTH = 64;

const INT4_MAX = 2_147_483_647;

/** A record made safe for PostgreSQL: JSON already serialised, text within column widths. */
export interface SanitisedRecord {
  readonly runId: string;
  readonly namespace: string;
  readonly name: string;
  readonly agent: string;
  readonly objective: string;
  readonly status: AuditStatus;
  readonly reason: string | null;
  readonly attempts: number;
  /** Never null: see sanitiseRecord. */
  readonly startedAt: Date;
  readonly finishedAt: Date | null;
  readonly durationMs: number | null;
  /** jsonb text, or null for SQL NULL. */
  readonly planJson: string | null;
  readonly artifactsJson: string | null;
  readonly error: string | null;
  readonly userEmail: string | null;
  readonly dryRun: boolean;
  /** Rough memory held by the record (UTF-16 text), for the writer's queue bound. */
  readonly bytes: number;
}

export interface SanitiseOptions {
  /** Default AUDIT_ARTIFACTS_MAX_BYTES; applies to plan and artifacts separately. */
  readonly jsonMaxBytes?: number;
  /** The write time, used as started_at when the record has none. */
  readonly now?: Date;
}

export type SanitiseResult =
  | { readonly ok: true; readonly record: SanitisedRecord }
  | { readonly ok: false; readonly problem: string };

export function isAuditStatus(value: unknown): value is AuditStatus {
  return typeof value === 'string' && (AUDIT_STATUSES as readonly string[]).includes(value);
}

export function isTerminalStatus(status: AuditStatus): boolean {
  return status !== 'running';
}

/**
 * Makes a record storable whatever it holds. Only a record without a usable key or status is
 * refused (there is no row it could be written to); everything else is repaired:
 * - text: U+0000 (rejected by text and jsonb) and lone UTF-16 surrogates become U+FFFD, then text
 *   longer than its column is cut, ending in TRUNCATION_MARKER;
 * - plan/artifacts: made JSON-safe (see toJsonSafe) and, above `jsonMaxBytes` of JSON, replaced by
 *   `{ _truncated: true, bytes, preview }`;
 * - numbers: attempts becomes a whole number in int4 range, a non-finite duration becomes null;
 * - dates: invalid ones become null; started_at falls back to finishedAt, then the write time, so
 *   it is never NULL and `ORDER BY started_at DESC` (served by its btree) needs no NULLS LAST. A
 *   run that ended without starting (unknown agent, canceled while pending) thus shows
 *   started_at = finished_at, as its status shows a duration of 0.
 */
export function sanitiseRecord(record: AuditRecord, options: SanitiseOptions = {}): SanitiseResult {
  const runId = typeof record.runId === 'string' ? cleanText(record.runId) : '';
  if (runId.length === 0 || runId.length > COLUMN_MAX_LENGTH.runId) {
    return { ok: false, problem: `runId must have 1 to ${COLUMN_MAX_LENGTH.runId} characters` };
  }
  if (!isAuditStatus(record.status)) {
    return { ok: false, problem: `status must be one of ${AUDIT_STATUSES.join(', ')}` };
  }
  const maxBytes = options.jsonMaxBytes ?? AUDIT_ARTIFACTS_MAX_BYTES;
  const finishedAt = validDate(record.finishedAt);
  const startedAt = validDate(record.startedAt) ?? finishedAt ?? options.now ?? new Date();
  const sanitised = {
    runId,
    namespace: column(record.namespace, COLUMN_MAX_LENGTH.namespace) ?? '',
    name: column(record.name, COLUMN_MAX_LENGTH.name) ?? '',
    agent: column(record.agent, COLUMN_MAX_LENGTH.agent) ?? '',
    objective: column(record.objective, COLUMN_MAX_LENGTH.objective) ?? '',
    status: record.status,
    reason: column(record.reason, COLUMN_MAX_LENGTH.reason),
    attempts: wholeNumber(record.attempts),
    startedAt,
    finishedAt,
    durationMs:
      typeof record.durationMs === 'number' && Number.isFinite(record.durationMs)
        ? record.durationMs
        : null,
    planJson: jsonColumn(record.plan, maxBytes),
    artifactsJson: jsonColumn(record.artifacts, maxBytes),
    error: column(record.error, COLUMN_MAX_LENGTH.error),
    userEmail: column(record.userEmail, COLUMN_MAX_LENGTH.userEmail),
    dryRun: record.dryRun !== false,
  };
  return { ok: true, record: { ...sanitised, bytes: approximateBytes(sanitised) } };
}

/** Memory a record holds: its text as UTF-16 plus a fixed allowance for the rest. */
function approximateBytes(record: Omit<SanitisedRecord, 'bytes'>): number {
  const text = [
    record.runId,
    record.namespace,
    record.name,
    record.agent,
    record.objective,
    record.reason,
    record.planJson,
    record.artifactsJson,
    record.error,
    record.userEmail,
  ];
  return 256 + text.reduce((sum, s) => sum + (s === null ? 0 : s.length * 2), 0);
}

function column(value: string | null | undefined, max: number): string | null {
  if (value === null || value === undefined) return null;
  // At most `max` characters (code points), as PostgreSQL's varchar(n) counts them.
  return truncateCharacters(cleanText(String(value)), max);
}

function validDate(value: Date | null | undefined): Date | null {
  return value instanceof Date && !Number.isNaN(value.getTime()) ? value : null;
}

function wholeNumber(value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) return 0;
  return Math.min(INT4_MAX, Math.max(0, Math.trunc(value)));
}

/** The jsonb text of `value` (null and undefined are SQL NULL), capped at `maxBytes`. */
export function jsonColumn(
  value: unknown,
  maxBytes: number = AUDIT_ARTIFACTS_MAX_BYTES,
): string | null {
  const safe = toJsonSafe(value);
  if (safe === undefined || safe === null) return null;
  const json = JSON.stringify(safe);
  const bytes = Buffer.byteLength(json);
  if (bytes <= maxBytes) return json;
  return JSON.stringify({
    _truncated: true,
    bytes,
    preview: json.slice(0, JSON_PREVIEW_CHARS).toWellFormed(),
  });
}

/**
 * A copy of `value` that JSON.stringify turns into text PostgreSQL's jsonb accepts, following
 * JSON.stringify's own rules otherwise (toJSON is honoured, undefined/functions/symbols dropped
 * from objects and null in arrays, non-finite numbers null). Differences: keys and strings are
 * cleaned (cleanText), bigints become decimal strings instead of throwing, a repeated reference
 * to an object being walked becomes "[Circular]" instead of throwing, and values nested deeper
 * than JSON_MAX_DEPTH become "[Nested too deep]".
 */
export function toJsonSafe(value: unknown): unknown {
  return walk(value, new Set(), 0);
}

function walk(input: unknown, ancestors: Set<object>, depth: number): unknown {
  let value = input;
  if (typeof value === 'object' && value !== null && hasToJson(value)) {
    try {
      value = value.toJSON();
    } catch {
      return '[toJSON failed]';
    }
  }
  switch (typeof value) {
    case 'string':
      return cleanText(value);
    case 'number':
      return Number.isFinite(value) ? value : null;
    case 'boolean':
      return value;
    case 'bigint':
      return value.toString();
    case 'object': {
      if (value === null) return null;
      if (ancestors.has(value)) return '[Circular]';
      if (depth >= JSON_MAX_DEPTH) return '[Nested too deep]';
      ancestors.add(value);
      try {
        if (Array.isArray(value)) {
          return value.map((item) => {
            const safe = walk(item, ancestors, depth + 1);
            return safe === undefined ? null : safe;
          });
        }
        const out: Record<string, unknown> = {};
        for (const [key, item] of Object.entries(value)) {
          const safe = walk(item, ancestors, depth + 1);
          // defineProperty: a "__proto__" key (JSON.parse makes it an own property) must stay a
          // key, as it is on the status; assigning it would set the prototype and drop it.
          if (safe !== undefined) {
            Object.defineProperty(out, cleanText(key), {
              value: safe,
              enumerable: true,
              writable: true,
              configurable: true,
            });
          }
        }
        return out;
      } finally {
        ancestors.delete(value);
      }
    }
    default:
      // undefined, functions and symbols: JSON has no such values.
      return undefined;
  }
}

function hasToJson(value: object): value is { toJSON(): unknown } {
  return typeof (value as { toJSON?: unknown }).toJSON === 'function';
}

/**
 * Whether `next` should replace `current` (two records of one run): a terminal record beats a
 * running one, then more attempts beat fewer; on a tie the newer (`next`) wins. The same order
 * the upsert enforces in the table, where in addition a terminal row gives way only to a terminal
 * record of a later decision (more attempts, or a later finishedAt).
 */
export function supersedes(
  next: Pick<AuditRecord, 'status' | 'attempts'>,
  current: Pick<AuditRecord, 'status' | 'attempts'>,
): boolean {
  const nextTerminal = isTerminalStatus(next.status);
  if (nextTerminal !== isTerminalStatus(current.status)) return nextTerminal;
  return next.attempts >= current.attempts;
}

/**
 * The record to keep of two for the same run, `current` queued before `next`: `current` if
 * `next` does not supersede it, else `next` completed from `current` the way the upsert completes
 * a stored row (most attempts, the earliest start unless neither started, plan and user filled
 * in when `next` lacks them), so a start and a finish that meet in a queue lose nothing the start alone would have stored.
 */
export function mergeRecords(current: SanitisedRecord, next: SanitisedRecord): SanitisedRecord {
  if (!supersedes(next, current)) return current;
  const merged = {
    ...next,
    attempts: Math.max(next.attempts, current.attempts),
    // A run that never started has no start to keep: its startedAt is its finish (as upsert).
    startedAt:
      next.attempts === 0 && current.attempts === 0
        ? next.startedAt
        : new Date(Math.min(next.startedAt.getTime(), current.startedAt.getTime())),
    planJson: next.planJson ?? current.planJson,
    userEmail: next.userEmail ?? current.userEmail,
  };
  return { ...merged, bytes: approximateBytes(merged) };
}

/**
 * One record per runId, merged in order (mergeRecords), in order of each run's first
 * appearance. PostgreSQL refuses an INSERT ... ON CONFLICT DO UPDATE that touches a row twice.
 */
export function dedupeByRunId(records: readonly SanitisedRecord[]): SanitisedRecord[] {
  const byRunId = new Map<string, SanitisedRecord>();
  for (const record of records) {
    const current = byRunId.get(record.runId);
    byRunId.set(record.runId, current === undefined ? record : mergeRecords(current, record));
  }
  return [...byRunId.values()];
}
