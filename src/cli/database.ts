import type pg from 'pg';
import { AuditStore } from '../audit/audit-store.ts';
import { createAuditPool, describeDatabase } from '../audit/pool.ts';
import { silentLogger } from '../util/log.ts';
import { CliError, type CommandSpec, type FlagSpec, UsageError } from './args.ts';

/** `--database-url`, which wins over DATABASE_URL (as every setting's flag does). */
export const DATABASE_URL_FLAG: FlagSpec = {
  name: 'database-url',
  value: 'URL',
  help: 'postgres://user:password@host:5432/db (default $DATABASE_URL; prefer the variable: flags show in ps)',
  secret: true,
};

/**
 * The database URL from the flag or the environment, checked as the operator's configuration
 * checks it. Never part of a message.
 */
export function resolveDatabaseUrl(
  flag: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
  command?: CommandSpec,
): string {
  const url = flag || env['DATABASE_URL'] || '';
  if (url === '') {
    throw new UsageError(
      'no database: set DATABASE_URL=postgres://user:password@host:5432/db or pass --database-url',
      command,
    );
  }
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new UsageError('the database URL must be a postgres:// or postgresql:// URL', command);
  }
  return url;
}

/**
 * Runs `fn` with a one-connection pool to the audit database, ends the pool afterwards (so the
 * process can exit), and turns database errors into a one-line CliError that names the database
 * as host:port/database only.
 */
export async function withDatabase<T>(
  databaseUrl: string,
  fn: (pool: pg.Pool, store: AuditStore) => Promise<T>,
  options: { readonly statementTimeoutMs?: number } = {},
): Promise<T> {
  const pool = createAuditPool(databaseUrl, silentLogger(), { max: 1, ...options });
  try {
    return await fn(pool, new AuditStore(pool));
  } catch (error) {
    if (error instanceof CliError || error instanceof UsageError) throw error;
    throw new CliError(describeDatabaseError(error, databaseUrl));
  } finally {
    await pool.end().catch(() => {});
  }
}

/** What went wrong, in one line, with a hint where there is one; never the user or password. */
export function describeDatabaseError(error: unknown, databaseUrl: string): string {
  const database = describeDatabase(databaseUrl);
  const code = (error as { code?: unknown } | null)?.code;
  const message = redact(
    (error instanceof Error ? error.message : String(error)) || 'unknown error',
    databaseUrl,
  )
    .replace(/\s+/g, ' ')
    .trim();
  switch (code) {
    case '42P01': // undefined_table
      return `the audit table agent_audit_log does not exist in ${database}: run 'agentrun-operator migrate up'`;
    case '3D000': // invalid_catalog_name
      return `database ${database} does not exist: check DATABASE_URL`;
    case '28P01': // invalid_password
    case '28000': // invalid_authorization_specification
      return `cannot log in to ${database}: ${message}; check the user and password in DATABASE_URL`;
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ECONNRESET':
      return `cannot connect to the audit database ${database}: ${message}`;
    default:
      if (/timeout|terminated/i.test(message)) {
        return `cannot connect to the audit database ${database}: ${message}`;
      }
      return `audit database ${database}: ${message}`;
  }
}

/** Removes the URL and its credentials from a message (drivers sometimes quote them). */
export function redact(message: string, databaseUrl: string): string {
  const secrets = [databaseUrl];
  const credentials = /^[a-z]+:\/\/([^@/]*)@/i.exec(databaseUrl)?.[1] ?? '';
  const colon = credentials.indexOf(':');
  const passwords = [
    colon === -1 ? '' : credentials.slice(colon + 1),
    // libpq also takes ?password=...
    ...[...databaseUrl.matchAll(/[?&]password=([^&#]*)/gi)].map((m) => m[1] ?? ''),
  ];
  for (const password of passwords) {
    if (password) {
      secrets.push(password);
      try {
        secrets.push(decodeURIComponent(password));
      } catch {
        // not percent-encoded: the raw form above covers it
      }
    }
  }
  let out = message;
  for (const secret of secrets.filter((s) => s.length > 0).sort((a, b) => b.length - a.length)) {
    out = out.split(secret).join('***');
  }
  return out;
}
