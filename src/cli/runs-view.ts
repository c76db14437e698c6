import type { AuditEntry, AuditSummary } from '../audit/audit-store.ts';
import { formatDuration } from '../util/duration.ts';
import type { OutputFormat } from './args.ts';
import { formatKeyValues, formatTable, formatTime, NONE, toJson } from './table.ts';

/** The columns of `audit ls` and `kubectl agentrun history` (which drops NAMESPACE unless -A). */
export const RUN_COLUMNS = [
  'RUN-ID',
  'NAMESPACE',
  'NAME',
  'AGENT',
  'STATUS',
  'REASON',
  'STARTED',
  'DURATION',
  'USER',
] as const;

/** Runs as a kubectl-style table, or as a JSON array of AuditSummary (scalar columns only). */
export function renderRuns(
  runs: readonly AuditSummary[],
  output: OutputFormat,
  options: { readonly namespaceColumn?: boolean } = {},
): string {
  if (output === 'json') return toJson(runs);
  const withNamespace = options.namespaceColumn ?? true;
  const headers = RUN_COLUMNS.filter((c) => withNamespace || c !== 'NAMESPACE');
  const rows = runs.map((run) => {
    const row = [
      run.runId,
      run.namespace,
      run.name,
      run.agent,
      run.status,
      run.reason,
      formatTime(run.startedAt),
      durationText(run.durationMs),
      run.userEmail,
    ];
    if (!withNamespace) row.splice(1, 1);
    return row;
  });
  return formatTable(headers, rows);
}

/** One run in full: JSON of the whole row, or a `kubectl describe`-style view. */
export function renderRun(entry: AuditEntry, output: OutputFormat): string {
  if (output === 'json') return toJson(entry);
  return formatKeyValues([
    ['Run ID', entry.runId],
    ['Namespace', entry.namespace],
    ['Name', entry.name],
    ['Agent', entry.agent],
    ['Objective', entry.objective],
    ['Status', entry.status],
    ['Reason', entry.reason],
    ['Attempts', entry.attempts],
    ['Dry Run', entry.dryRun],
    ['User', entry.userEmail],
    ['Started', formatTime(entry.startedAt)],
    ['Finished', formatTime(entry.finishedAt)],
    ['Duration', durationText(entry.durationMs)],
    ['Error', entry.error],
    ['Created', formatTime(entry.createdAt)],
    ['Updated', formatTime(entry.updatedAt)],
    ['Plan', jsonBlock(entry.plan)],
    ['Artifacts', jsonBlock(entry.artifacts)],
  ]);
}

/** Like `kubectl get agentruns` prints DURATION: 534ms, 1.25s, 3m4s. */
export function durationText(ms: number | null): string {
  return ms === null || !Number.isFinite(ms) || ms < 0 ? NONE : formatDuration(ms);
}

/** A jsonb value, indented; an object or array spans lines, so it goes under its label. */
function jsonBlock(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  return JSON.stringify(value, null, 2);
}
