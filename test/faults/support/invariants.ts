import type { AgentRun } from '../../../src/api/agentrun.ts';
import type { AuditRow } from './harness.ts';
import { audited, isTerminal, reasonOf } from './harness.ts';
import type { IncarnationReport } from './operator-process.ts';
import type { Call } from './webhook-agent.ts';

/** What the invariants of issue 15 found after a scenario, every number counted, none assumed. */
export interface Findings {
  readonly created: number;
  /** Created runs that are gone (none of these scenarios deletes a run). */
  readonly vanished: readonly string[];
  /** Runs not terminal when the bound ran out: "runs lost". */
  readonly notTerminal: readonly string[];
  /** Runs whose Audited condition is not True at the end. */
  readonly notAudited: readonly string[];
  /** Calls the webhook agent received (executions of webhook runs). */
  readonly executions: number;
  /** Sum over (run, attempt) of calls beyond the first: the same attempt executed again. */
  readonly duplicateExecutions: number;
  /** Calls for an attempt the run's status does not record (attempt > status.attempts). */
  readonly unrecordedExecutions: number;
  /** Runs whose status records more than one attempt (a retry, after a failure or a fault). */
  readonly retried: number;
  /** Runs that ended Failed/Interrupted (a fault hit their last allowed attempt). */
  readonly interrupted: number;
  readonly missingRows: readonly string[];
  readonly duplicateRows: number;
  /** Rows of runs that do not exist in the namespace. */
  readonly strayRows: number;
  /** For each run whose row differs from its final status: `name field: row=... status=...; ...`. */
  readonly rowMismatches: readonly string[];
  readonly outcomes: Readonly<Record<string, number>>;
  /** agent_runs_total: sum over processes of each one's last scrape. */
  readonly counted: number;
  /** What Prometheus's increase() would read over the scrapes (resets handled as it does). */
  readonly prometheusIncrease: number;
  /** Runs whose "run ... :" finish line was logged by more than one process (counted twice). */
  readonly countedTwice: number;
  /**
   * Terminal runs whose finish no process logged: their terminal status was written by a process
   * killed before the API server's answer reached it, so no process counted them.
   */
  readonly loggedByNone: number;
  readonly crashedProcesses: number;
  readonly errorLines: readonly string[];
  readonly maxRssMiB: number;
  readonly incarnations: readonly IncarnationReport[];
}

export function findings(input: {
  names: readonly string[];
  runs: readonly AgentRun[];
  calls: readonly Call[];
  rows: readonly AuditRow[];
  incarnations: readonly IncarnationReport[];
  prometheusIncrease: number;
}): Findings {
  const byName = new Map(input.runs.map((r) => [r.metadata.name, r]));
  const byUid = new Map(input.runs.map((r) => [r.metadata.uid, r]));
  const vanished = input.names.filter((n) => !byName.has(n));
  const notTerminal = input.runs.filter((r) => !isTerminal(r)).map((r) => r.metadata.name);
  const notAudited = input.runs
    .filter((r) => audited(r) !== 'Recorded')
    .map((r) => `${r.metadata.name} (${audited(r) ?? 'no Audited condition'})`);

  const perAttempt = new Map<string, number>();
  let unrecordedExecutions = 0;
  for (const call of input.calls) {
    const key = `${call.runId}#${call.attempt}`;
    perAttempt.set(key, (perAttempt.get(key) ?? 0) + 1);
    const run = byUid.get(call.runId);
    if (!run || call.attempt < 1 || call.attempt > (run.status?.attempts ?? 0)) {
      unrecordedExecutions += 1;
    }
  }
  let duplicateExecutions = 0;
  for (const n of perAttempt.values()) duplicateExecutions += n - 1;

  const rowsByRun = new Map<string, AuditRow[]>();
  for (const row of input.rows) {
    rowsByRun.set(row.run_id, [...(rowsByRun.get(row.run_id) ?? []), row]);
  }
  const missingRows: string[] = [];
  const rowMismatches: string[] = [];
  let duplicateRows = 0;
  for (const run of input.runs) {
    const rows = rowsByRun.get(run.metadata.uid) ?? [];
    if (rows.length === 0) missingRows.push(run.metadata.name);
    duplicateRows += Math.max(0, rows.length - 1);
    const row = rows[0];
    const diffs = row ? compare(run, row) : [];
    if (diffs.length > 0) rowMismatches.push(diffs.join('; '));
  }
  const strayRows = input.rows.filter((r) => !byUid.has(r.run_id)).length;

  const outcomes: Record<string, number> = {};
  for (const run of input.runs) {
    const key = `${run.status?.phase ?? 'none'}/${reasonOf(run) ?? '-'}`;
    outcomes[key] = (outcomes[key] ?? 0) + 1;
  }

  const loggedBy = new Map<string, number>();
  for (const inc of input.incarnations) {
    for (const id of new Set(inc.finishedRunIds)) loggedBy.set(id, (loggedBy.get(id) ?? 0) + 1);
  }
  return {
    created: input.names.length,
    vanished,
    notTerminal,
    notAudited,
    executions: input.calls.length,
    duplicateExecutions,
    unrecordedExecutions,
    retried: input.runs.filter((r) => (r.status?.attempts ?? 0) > 1).length,
    interrupted: input.runs.filter((r) => reasonOf(r) === 'Interrupted').length,
    missingRows,
    duplicateRows,
    strayRows,
    rowMismatches,
    outcomes,
    counted: input.incarnations.reduce((n, inc) => n + inc.lastCounted, 0),
    prometheusIncrease: input.prometheusIncrease,
    countedTwice: [...loggedBy.values()].filter((n) => n > 1).length,
    loggedByNone: input.runs.filter((r) => isTerminal(r) && !loggedBy.has(r.metadata.uid)).length,
    crashedProcesses: input.incarnations.filter((inc) => inc.ended === 'crashed').length,
    errorLines: input.incarnations.flatMap((inc) =>
      inc.errorLines.map((l) => `#${inc.incarnation}: ${l}`),
    ),
    maxRssMiB: Math.round(Math.max(0, ...input.incarnations.map((i) => i.maxRssBytes)) / 2 ** 20),
    incarnations: input.incarnations,
  };
}

/** The differences between a run's final status and its audit row. */
export function compare(run: AgentRun, row: AuditRow): string[] {
  const s = run.status ?? {};
  const phase = s.phase ?? '';
  const expected: Record<string, unknown> = {
    status: ['Succeeded', 'Failed', 'Canceled'].includes(phase) ? phase.toLowerCase() : 'running',
    reason: reasonOf(run) ?? null,
    attempts: s.attempts ?? 0,
    started_at: ms(s.startedAt ?? s.finishedAt),
    finished_at: ms(s.finishedAt),
    duration_ms: s.finishedAt ? (s.durationMs ?? null) : null,
    error: s.error ?? null,
  };
  const actual: Record<string, unknown> = {
    status: row.status,
    reason: row.reason,
    attempts: row.attempts,
    started_at: row.started_at?.getTime() ?? null,
    finished_at: row.finished_at?.getTime() ?? null,
    duration_ms: row.duration_ms,
    error: row.error,
  };
  return Object.keys(expected)
    .filter((k) => expected[k] !== actual[k])
    .map(
      (k) =>
        `${run.metadata.name} ${k}: row=${JSON.stringify(actual[k])} status=${JSON.stringify(expected[k])}`,
    );
}

function ms(value: string | undefined): number | null {
  return value === undefined ? null : Date.parse(value);
}

/** The memory limit of the shipped Deployment (deploy/manager/manager.yaml): no process may reach it. */
export const MEMORY_LIMIT_MIB = 512;

/** The failures among the findings, as messages (empty: every invariant held). */
export function violations(f: Findings): string[] {
  const out: string[] = [];
  const add = (what: string, items: readonly unknown[] | number) => {
    const n = typeof items === 'number' ? items : items.length;
    if (n > 0) {
      const list = typeof items === 'number' ? '' : `: ${items.slice(0, 10).join('; ')}`;
      out.push(`${n} ${what}${list}`);
    }
  };
  add('runs vanished', f.vanished);
  add('runs not terminal within the bound', f.notTerminal);
  add('runs not Audited=True', f.notAudited);
  add('attempts executed more than once', f.duplicateExecutions);
  add('executions of attempts the status does not record', f.unrecordedExecutions);
  add('runs without an audit row', f.missingRows);
  add('duplicate audit rows', f.duplicateRows);
  add('audit rows of unknown runs', f.strayRows);
  add('audit rows differing from the final status', f.rowMismatches);
  add('runs counted by two processes', f.countedTwice);
  add('operator processes that exited on their own', f.crashedProcesses);
  add('error or non-JSON log lines', f.errorLines);
  if (f.counted > f.created) out.push(`agent_runs_total counted ${f.counted} > ${f.created} runs`);
  if (f.maxRssMiB >= MEMORY_LIMIT_MIB) {
    out.push(
      `peak RSS ${f.maxRssMiB} MiB, at or over the Deployment's ${MEMORY_LIMIT_MIB} MiB limit`,
    );
  }
  return out;
}

/** The result table's row cells, in the order of `RESULT_HEADER`. */
export function resultRow(f: Findings, faults: string, recover: string): string {
  const cells = [
    String(f.created),
    faults,
    String(f.vanished.length + f.notTerminal.length),
    String(f.duplicateExecutions),
    `${f.missingRows.length} / ${f.duplicateRows}`,
    String(f.rowMismatches.length),
    recover,
  ];
  return `| ${cells.join(' | ')} |`;
}

export const RESULT_HEADER =
  '| runs | faults injected | runs lost | duplicate executions | missing / duplicate audit rows | rows differing from status | time to recover |\n' +
  '| ---: | --- | ---: | ---: | ---: | ---: | --- |';

/** The detail lines under a scenario's table. */
export function detailLines(f: Findings): string[] {
  const outcomes = Object.entries(f.outcomes)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const replicas = new Set(f.incarnations.map((i) => i.replica)).size;
  const perProcess = f.incarnations
    .map(
      (i) =>
        `#${i.incarnation}${replicas > 1 ? ` (replica ${i.replica})` : ''} ${i.ended} ${i.lastCounted}`,
    )
    .join(', ');
  return [
    `- Outcomes: ${outcomes}.`,
    `- Webhook executions received by the agent: ${f.executions}; the same attempt executed twice: ${f.duplicateExecutions}; executions of an attempt the status does not record: ${f.unrecordedExecutions}. Runs whose status records a retry: ${f.retried}; ended Interrupted: ${f.interrupted}.`,
    `- Audit: ${f.created - f.missingRows.length} rows for ${f.created} runs, ${f.duplicateRows} duplicates, ${f.strayRows} stray, ${f.rowMismatches.length} differing from the final status; runs not Audited=True at the end: ${f.notAudited.length}.`,
    `- \`agent_runs_total\` (sum of each process's last scrape, every 250 ms and right before each kill): ${perProcess}; total ${f.counted} of ${f.created} runs. Prometheus-style \`increase()\` over the same scrapes: ${f.prometheusIncrease}. Runs whose finish was logged (and counted) by two processes: ${f.countedTwice}; by none (the process that wrote it was killed before the answer came back, or before its log line was out): ${f.loggedByNone}.`,
    `- Operator processes that exited on their own: ${f.crashedProcesses}; error or non-JSON log lines: ${f.errorLines.length}; peak RSS of any process: ${f.maxRssMiB} MiB.`,
    `- Warnings logged (other than failed runs): ${warningSummary(f.incarnations)}.`,
  ];
}

/** Each distinct warning with its count, errors' codes and messages shortened. */
function warningSummary(incarnations: readonly IncarnationReport[]): string {
  const counts = new Map<string, number>();
  for (const w of incarnations.flatMap((i) => i.warnings)) {
    const short = w.length > 200 ? `${w.slice(0, 200)}…` : w;
    counts.set(short, (counts.get(short) ?? 0) + 1);
  }
  if (counts.size === 0) return 'none';
  return [...counts].map(([w, n]) => `${n} × \`${w.replaceAll('`', "'")}\``).join('; ');
}
