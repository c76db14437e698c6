import { z } from 'zod';
import { type MigrationResult, migrate } from '../audit/migrate.ts';
import { describeDatabase } from '../audit/pool.ts';
import { silentLogger } from '../util/log.ts';
import { type CommandSpec, formatHelp, parseArgs, parseFlags, UsageError } from './args.ts';
import type { CliIo } from './command.ts';
import { DATABASE_URL_FLAG, resolveDatabaseUrl, withDatabase } from './database.ts';
import { toJson } from './table.ts';

/** `agentrun-operator migrate up|down|status`: the audit log's schema (docs/audit.md). */

export const MIGRATE: CommandSpec = {
  path: 'agentrun-operator migrate',
  synopsis: 'up|down|status [--yes] [-o text|json] [flags]',
  description: `Apply, revert or show the audit log's schema migrations (migrations/*.sql).

  up       apply every pending migration (what the operator does at start-up, AUDIT_MIGRATE)
  down     revert the newest applied migration; needs --yes, since 001 drops agent_audit_log
           and every row in it
  status   show the current and latest versions and what is pending

up and down run in one transaction under an advisory lock: replicas or a second migrate wait,
and a migration that fails leaves nothing behind.`,
  args: [{ name: 'up, down or status' }],
  flags: [
    { name: 'yes', boolean: true, help: 'confirm migrate down' },
    { name: 'output', short: 'o', value: 'FORMAT', help: 'text (default) or json' },
    DATABASE_URL_FLAG,
  ],
  more: `Environment:
  DATABASE_URL   the audit database, postgres://user:password@host:5432/db (--database-url wins)`,
};

const migrateFlags = z.object({
  yes: z.enum(['true', 'false']).default('false'),
  output: z.enum(['text', 'json'], { error: 'must be text or json' }).default('text'),
  'database-url': z.string().optional(),
});

const commandValue = z.enum(['up', 'down', 'status']);

/** Migrations may build indexes over many rows: far longer than the 30 s of normal statements. */
const MIGRATE_STATEMENT_TIMEOUT_MS = 30 * 60_000;

export async function migrateCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseArgs(MIGRATE, argv);
  if (parsed.help) {
    io.out(formatHelp(MIGRATE));
    return 0;
  }
  const command = commandValue.safeParse(parsed.args[0]);
  if (!command.success) {
    throw new UsageError(
      `unknown migrate command ${JSON.stringify(parsed.args[0])} (expected up, down or status)`,
      MIGRATE,
    );
  }
  const flags = parseFlags(MIGRATE, migrateFlags, parsed.flags);
  if (command.data === 'down' && flags.yes !== 'true') {
    throw new UsageError(
      'migrate down reverts the newest migration and can delete audit rows (001 drops agent_audit_log): add --yes to go ahead',
      MIGRATE,
    );
  }
  const url = resolveDatabaseUrl(flags['database-url'], io.env, MIGRATE);
  const database = describeDatabase(url);
  const result = await withDatabase(url, (pool) => migrate(pool, command.data, silentLogger()), {
    statementTimeoutMs: MIGRATE_STATEMENT_TIMEOUT_MS,
  });
  io.out(
    flags.output === 'json' ? toJson({ database, ...result }) : describeResult(result, database),
  );
  return 0;
}

/** What migrate did, for people: one line per migration applied, then where the schema is. */
export function describeResult(result: MigrationResult, database: string): string {
  if (result.command === 'status') {
    const state =
      result.pending.length === 0
        ? 'up to date'
        : `pending: ${result.pending.map(versionText).join(', ')} (run 'agentrun-operator migrate up')`;
    return `audit schema of ${database}: version ${result.current}, latest ${result.latest}, ${state}\n`;
  }
  if (result.applied.length === 0) {
    return result.command === 'up'
      ? `audit schema of ${database}: already at version ${result.to}, nothing to apply\n`
      : `audit schema of ${database}: at version ${result.to}, nothing to revert\n`;
  }
  const lines = result.applied.map(
    (m) =>
      `${m.action === 'do' ? 'applied' : 'reverted'} ${versionText(m.version)}.${m.action}${m.name ? `.${m.name}` : ''}.sql`,
  );
  lines.push(`audit schema of ${database}: version ${result.from} -> ${result.to}`);
  return `${lines.join('\n')}\n`;
}

function versionText(version: number): string {
  return String(version).padStart(3, '0');
}
