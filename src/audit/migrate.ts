import { fileURLToPath } from 'node:url';
import pg from 'pg';
import Postgrator from 'postgrator';
import type { Logger } from '../util/log.ts';
import { describeDatabase } from './pool.ts';

/** migrations/ of the package: ../../migrations from src/audit/ and from dist/audit/ alike. */
export const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

/** Postgrator's bookkeeping table (version, name, md5, run_at), next to agent_audit_log. */
export const MIGRATIONS_TABLE = 'agentrun_schema_version';

/**
 * Key of the transaction-level advisory lock every `up`/`down` holds: replicas starting at once
 * apply migrations one after another, and the later ones find nothing left to do. An arbitrary
 * constant ("agentrun" in ASCII); it only has to differ from other applications' keys.
 */
export const MIGRATION_LOCK_KEY = 0x6167656e7472756en;

export type MigrateCommand = 'up' | 'down' | 'status';

export interface AppliedMigration {
  readonly version: number;
  readonly name: string;
  readonly action: 'do' | 'undo';
}

export type MigrationResult =
  | {
      readonly command: 'up' | 'down';
      /** Schema version before and after. */
      readonly from: number;
      readonly to: number;
      readonly applied: readonly AppliedMigration[];
    }
  | {
      readonly command: 'status';
      readonly current: number;
      readonly latest: number;
      /** Versions `up` would apply, in order. */
      readonly pending: readonly number[];
    };

export interface MigrateOptions {
  /** `up`: the version to reach, default the latest. `down`: default one below the current. */
  readonly target?: number;
  /** Default MIGRATIONS_DIR. */
  readonly directory?: string;
}

/**
 * Runs the audit log's migrations (numbered `NNN.do.sql` / `NNN.undo.sql` files, applied by
 * postgrator). `up` and `down` run as one transaction that first takes an advisory lock, so a
 * failed migration leaves nothing half-applied and concurrent callers serialise; the lock goes
 * with the transaction even if the connection dies. (Consequence: a future migration cannot use
 * CREATE INDEX CONCURRENTLY.) `status` only reads. `db` is a pool (one connection is borrowed)
 * or a connection URL (a connection is opened and closed).
 */
export async function migrate(
  db: pg.Pool | string,
  command: MigrateCommand,
  logger: Logger,
  options: MigrateOptions = {},
): Promise<MigrationResult> {
  const owned = typeof db === 'string';
  const client = owned ? new pg.Client({ connectionString: db }) : await db.connect();
  const database = owned ? describeDatabase(db) : undefined;
  let broken = false;
  try {
    if (owned) await client.connect();
    const schema = await currentSchema(client);
    const postgrator = new Postgrator({
      driver: 'pg',
      migrationPattern: `${(options.directory ?? MIGRATIONS_DIR).replace(/\/$/, '')}/*.sql`,
      schemaTable: MIGRATIONS_TABLE,
      // Postgrator looks its table up by name; the schema keeps it from finding a namesake in
      // another schema of the same database. (It also sets search_path to it; reset below.)
      currentSchema: schema,
      execQuery: (sql) => client.query(sql),
    });
    if (command === 'status') {
      const migrations = await postgrator.getMigrations();
      const current = await postgrator.getDatabaseVersion();
      const pending = migrations
        .filter((m) => m.action === 'do' && m.version > current)
        .map((m) => m.version)
        .sort((a, b) => a - b);
      const latest = migrations.reduce((max, m) => Math.max(max, m.version), 0);
      return { command, current, latest, pending };
    }
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK_KEY.toString()]);
      const from = await postgrator.getDatabaseVersion();
      const requested =
        options.target ?? (command === 'up' ? await postgrator.getMaxVersion() : from - 1);
      const target = Math.max(0, requested);
      if (command === 'up' ? target < from : target > from) {
        throw new Error(`migrate ${command}: target ${target} is on the wrong side of ${from}`);
      }
      const applied =
        target === from
          ? []
          : (await postgrator.migrate(String(target))).map((m) => ({
              version: m.version,
              name: m.name,
              action: m.action,
            }));
      await client.query('COMMIT');
      const to = await postgrator.getDatabaseVersion();
      if (applied.length > 0) {
        logger.info(
          { database, from, to, applied: applied.map((m) => `${m.version}.${m.action}`) },
          `audit migrations ${command}`,
        );
      } else {
        logger.debug({ database, version: to }, 'audit schema up to date');
      }
      return { command, from, to, applied };
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    }
  } catch (error) {
    broken = true;
    throw error;
  } finally {
    if (owned) {
      await (client as pg.Client).end().catch(() => {});
    } else {
      // Undo postgrator's session-level SET search_path before the connection is reused; a
      // connection that saw an error is discarded instead.
      if (!broken) await client.query('RESET search_path').catch(() => {});
      (client as pg.PoolClient).release(broken);
    }
  }
}

async function currentSchema(client: pg.ClientBase): Promise<string> {
  const result = await client.query<{ schema: string | null }>('SELECT current_schema() AS schema');
  const schema = result.rows[0]?.schema;
  if (!schema) {
    throw new Error('audit migrations: no schema to create tables in (check search_path)');
  }
  // Postgrator writes the name into SQL unquoted; only plain identifiers survive that.
  if (!/^[a-z_][a-z0-9_]*$/.test(schema)) {
    throw new Error(
      `audit migrations: schema "${schema}" needs quoting; use a lowercase name in search_path`,
    );
  }
  return schema;
}
