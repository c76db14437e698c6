import pg from 'pg';
import type { Logger } from '../util/log.ts';

/** Connections the audit log uses: one batch writer, reads from the CLI, retention, migrations. */
export const AUDIT_POOL_MAX = 4;

export interface AuditPoolOptions {
  /** Default AUDIT_POOL_MAX. */
  readonly max?: number;
  /** Server-side cap on one statement; default 30 s, so a stuck flush cannot hold the writer. */
  readonly statementTimeoutMs?: number;
  /** How long a connection attempt may take; default 5 s. */
  readonly connectionTimeoutMs?: number;
}

/**
 * A small pg.Pool for the audit log. Idle connections that the server drops (a restart, a
 * failover) emit 'error' on the pool; without a listener that would crash the process, so it is
 * logged instead and the next query opens a fresh connection.
 */
export function createAuditPool(
  databaseUrl: string,
  logger: Logger,
  options: AuditPoolOptions = {},
): pg.Pool {
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    max: options.max ?? AUDIT_POOL_MAX,
    connectionTimeoutMillis: options.connectionTimeoutMs ?? 5_000,
    idleTimeoutMillis: 30_000,
    statement_timeout: options.statementTimeoutMs ?? 30_000,
    // The client-side backstop for a connection that went silent (no RST, so neither the
    // server's statement_timeout nor an error arrives): pool.query then discards the connection.
    query_timeout: 2 * (options.statementTimeoutMs ?? 30_000),
    keepAlive: true,
    application_name: 'agentrun-operator',
  });
  const database = describeDatabase(databaseUrl);
  pool.on('error', (error) => {
    logger.warn({ database, err: errorSummary(error) }, 'audit database connection lost');
  });
  return pool;
}

/**
 * "host:port/database" of a connection URL, for logs and messages: never the user or password.
 */
export function describeDatabase(databaseUrl: string): string {
  try {
    // "user:pw@/db?host=/socket" (no host part) is valid for libpq but not for WHATWG URLs.
    const url = new URL(databaseUrl.replace(/^([a-z]+:\/\/[^@/]*@)\//i, '$1localhost/'));
    const host = url.searchParams.get('host') || url.hostname || 'localhost';
    const port = url.port || '5432';
    const database = decodeURIComponent(url.pathname.replace(/^\//, '')) || '(default)';
    return `${host}:${port}/${database}`;
  } catch {
    // new URL() puts the whole input, password included, into its error: never pass it on.
    return '(unparseable database URL)';
  }
}

/** The parts of an error that are safe and useful in a log line. */
export function errorSummary(error: unknown): { message: string; code?: string } {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' ? { message: error.message, code } : { message: error.message };
  }
  return { message: String(error) };
}
