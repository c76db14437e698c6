import { z } from 'zod';
import { RECENT_RUNS_DEFAULT_LIMIT, type RecentRunsQuery } from '../audit/audit-store.ts';
import { describeDatabase } from '../audit/pool.ts';
import {
  CliError,
  type CommandSpec,
  type FlagSpec,
  formatHelp,
  listFlagValues,
  nonEmptyValue,
  outputValue,
  parseArgs,
  parseFlags,
} from './args.ts';
import { type CliIo, type CommandGroup, runGroup } from './command.ts';
import { DATABASE_URL_FLAG, resolveDatabaseUrl, withDatabase } from './database.ts';
import { renderRun, renderRuns } from './runs-view.ts';

/** `agentrun-operator audit get|ls`: read the audit log (docs/cli.md). */

export const OUTPUT_FLAG: FlagSpec = {
  name: 'output',
  short: 'o',
  value: 'FORMAT',
  help: 'table (default) or json',
};

/** The filters `audit ls` and `kubectl agentrun history` share. */
export const LIST_FLAGS: readonly FlagSpec[] = [
  { name: 'agent', value: 'AGENT', help: 'only runs of this agent (spec.agent)' },
  {
    name: 'status',
    value: 'STATUS',
    help: 'only runs with this status: running, succeeded, failed or canceled',
  },
  {
    name: 'since',
    value: 'WHEN',
    help: 'only runs started since: a duration back from now (30m, 24h, 7d, 1h30m) or an RFC 3339 time',
  },
  {
    name: 'limit',
    value: 'N',
    help: `at most N runs, newest first (1 to 10000, default ${RECENT_RUNS_DEFAULT_LIMIT})`,
  },
];

export const DATABASE_HELP = `Environment:
  DATABASE_URL   the audit database, postgres://user:password@host:5432/db (--database-url wins)`;

export const AUDIT_GET: CommandSpec = {
  path: 'agentrun-operator audit get',
  synopsis: '<run-id> [-o table|json] [flags]',
  description:
    "Show one run from the audit log: every column, including the plan and the artifacts.\nThe run id is the AgentRun's uid (status.runId).",
  args: [{ name: '<run-id>' }],
  flags: [OUTPUT_FLAG, DATABASE_URL_FLAG],
  more: `${DATABASE_HELP}

Exit status: 0 found, 1 not found or the database failed, 2 a usage mistake.`,
};

export const AUDIT_LS: CommandSpec = {
  path: 'agentrun-operator audit ls',
  synopsis:
    '[--agent AGENT] [--status STATUS] [--since WHEN] [--limit N] [-n NAMESPACE] [--name NAME] [--user EMAIL] [-o table|json]',
  description:
    'List runs from the audit log, newest first (scalar columns only: no plan, no artifacts).',
  flags: [
    ...LIST_FLAGS,
    { name: 'namespace', short: 'n', value: 'NAMESPACE', help: 'only runs in this namespace' },
    { name: 'name', value: 'NAME', help: 'only runs of AgentRuns with this name' },
    { name: 'user', value: 'EMAIL', help: 'only runs requested by this user (spec.requestedBy)' },
    OUTPUT_FLAG,
    DATABASE_URL_FLAG,
  ],
  more: `${DATABASE_HELP}

Examples:
  agentrun-operator audit ls --agent http.check --status failed --since 7d
  agentrun-operator audit ls -n team-a --name nightly-check -o json`,
};

const databaseUrlValue = z.string().optional();

const getFlags = z.object({
  output: outputValue.default('table'),
  'database-url': databaseUrlValue,
});

const lsFlags = z.object({
  ...listFlagValues,
  namespace: nonEmptyValue.optional(),
  name: nonEmptyValue.optional(),
  user: nonEmptyValue.optional(),
  'database-url': databaseUrlValue,
});

export async function auditGet(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseArgs(AUDIT_GET, argv);
  if (parsed.help) {
    io.out(formatHelp(AUDIT_GET));
    return 0;
  }
  const flags = parseFlags(AUDIT_GET, getFlags, parsed.flags);
  const runId = parsed.args[0] as string;
  const url = resolveDatabaseUrl(flags['database-url'], io.env, AUDIT_GET);
  const entry = await withDatabase(url, (_pool, store) => store.getRun(runId));
  if (!entry) {
    throw new CliError(
      `run ${JSON.stringify(runId)} not found in the audit log at ${describeDatabase(url)} (the run id is the AgentRun's uid; 'audit ls' lists runs)`,
    );
  }
  io.out(renderRun(entry, flags.output));
  return 0;
}

export async function auditLs(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseArgs(AUDIT_LS, argv);
  if (parsed.help) {
    io.out(formatHelp(AUDIT_LS));
    return 0;
  }
  const flags = parseFlags(AUDIT_LS, lsFlags, parsed.flags);
  const url = resolveDatabaseUrl(flags['database-url'], io.env, AUDIT_LS);
  const query: RecentRunsQuery = {
    ...(flags.agent === undefined ? {} : { agent: flags.agent }),
    ...(flags.status === undefined ? {} : { status: flags.status }),
    ...(flags.since === undefined ? {} : { since: flags.since }),
    ...(flags.limit === undefined ? {} : { limit: flags.limit }),
    ...(flags.namespace === undefined ? {} : { namespace: flags.namespace }),
    ...(flags.name === undefined ? {} : { name: flags.name }),
    ...(flags.user === undefined ? {} : { userEmail: flags.user }),
  };
  const runs = await withDatabase(url, (_pool, store) => store.getRecentRuns(query));
  printRuns(io, runs, flags.output, { limit: flags.limit, empty: 'No runs found.' });
  return 0;
}

/**
 * Prints a listing: JSON always (an empty array too); a table, or a kubectl-style note on stderr
 * when there is nothing to show, plus a hint when the default limit cut the list.
 */
export function printRuns(
  io: CliIo,
  runs: Parameters<typeof renderRuns>[0],
  output: z.output<typeof outputValue>,
  options: { limit: number | undefined; empty: string; namespaceColumn?: boolean },
): void {
  if (output === 'table' && runs.length === 0) {
    io.err(`${options.empty}\n`);
    return;
  }
  io.out(
    renderRuns(
      runs,
      output,
      options.namespaceColumn === undefined ? {} : { namespaceColumn: options.namespaceColumn },
    ),
  );
  if (
    output === 'table' &&
    options.limit === undefined &&
    runs.length >= RECENT_RUNS_DEFAULT_LIMIT
  ) {
    io.err(`(the newest ${RECENT_RUNS_DEFAULT_LIMIT} runs; --limit N shows up to 10000)\n`);
  }
}

export const AUDIT_GROUP: CommandGroup = {
  path: 'agentrun-operator audit',
  description:
    'Read the audit log in PostgreSQL: one row per AgentRun, kept after the resource is deleted.',
  commands: [
    { name: 'get', summary: 'show one run in full (plan, artifacts, error)', run: auditGet },
    { name: 'ls', summary: 'list runs, newest first, with filters', run: auditLs },
  ],
  more: DATABASE_HELP,
};

export function auditCommand(argv: readonly string[], io: CliIo): Promise<number> {
  return runGroup(AUDIT_GROUP, argv, io);
}
