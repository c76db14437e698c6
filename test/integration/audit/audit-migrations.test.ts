import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATIONS_DIR, MIGRATIONS_TABLE, migrate } from '../../../src/audit/migrate.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { useFreshDatabase } from '../../support/environment.ts';

const db = useFreshDatabase('audit_migrations');
const racing = useFreshDatabase('audit_migrations_race');
const broken = useFreshDatabase('audit_migrations_broken');
const logger = silentLogger();

let pool: pg.Pool;
beforeAll(() => {
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
  pool.on('error', () => {}); // idle connections cut when the database is dropped
});
afterAll(async () => {
  await pool.end();
});

async function columns(p: pg.Pool): Promise<string[]> {
  const { rows } = await p.query<{ c: string }>(
    `SELECT column_name || ' ' || data_type
            || COALESCE('(' || character_maximum_length || ')', '')
            || CASE WHEN is_nullable = 'NO' THEN ' not null' ELSE '' END
            || COALESCE(' default ' || column_default, '')
            || CASE WHEN is_identity = 'YES' THEN ' identity' ELSE '' END AS c
       FROM information_schema.columns
      WHERE table_name = 'agent_audit_log' AND table_schema = current_schema()
      ORDER BY ordinal_position`,
  );
  return rows.map((r) => r.c);
}

async function indexes(p: pg.Pool): Promise<string[]> {
  const { rows } = await p.query<{ indexdef: string }>(
    `SELECT indexdef FROM pg_indexes WHERE tablename = 'agent_audit_log' ORDER BY indexname`,
  );
  return rows.map((r) => r.indexdef.replace(/ USING btree|public\./g, ''));
}

describe('audit migrations', () => {
  it('status on an empty database: version 0, 001 pending', async () => {
    await expect(migrate(pool, 'status', logger)).resolves.toEqual({
      command: 'status',
      current: 0,
      latest: 1,
      pending: [1],
    });
  });

  it('up creates agent_audit_log with its columns, constraints and indexes', async () => {
    await expect(migrate(pool, 'up', logger)).resolves.toEqual({
      command: 'up',
      from: 0,
      to: 1,
      applied: [{ version: 1, name: '', action: 'do' }],
    });
    expect(await columns(pool)).toEqual([
      'id bigint not null identity',
      'run_id character varying(128) not null',
      'namespace character varying(63) not null',
      'name character varying(253) not null',
      'agent character varying(128) not null',
      'objective character varying(512) not null',
      'status character varying(32) not null',
      'reason character varying(128)',
      'attempts integer not null default 0',
      'started_at timestamp with time zone',
      'finished_at timestamp with time zone',
      'duration_ms double precision',
      'plan jsonb',
      'artifacts jsonb',
      'error character varying(2048)',
      'user_email character varying(320)',
      'dry_run boolean not null default true',
      'created_at timestamp with time zone not null default now()',
      'updated_at timestamp with time zone not null default now()',
    ]);
    expect(await indexes(pool)).toEqual([
      'CREATE UNIQUE INDEX agent_audit_log_pkey ON agent_audit_log (id)',
      'CREATE UNIQUE INDEX agent_audit_log_run_id_key ON agent_audit_log (run_id)',
      'CREATE INDEX ix_agent_audit_log_agent_started_at ON agent_audit_log (agent, started_at)',
      "CREATE INDEX ix_agent_audit_log_failed_agent_started_at ON agent_audit_log (agent, started_at) WHERE ((status)::text = 'failed'::text)",
      'CREATE INDEX ix_agent_audit_log_namespace_name_started_at ON agent_audit_log (namespace, name, started_at)',
      'CREATE INDEX ix_agent_audit_log_started_at ON agent_audit_log (started_at)',
      'CREATE INDEX ix_agent_audit_log_user_email_started_at ON agent_audit_log (user_email, started_at)',
    ]);
    const status = await pool
      .query(
        "INSERT INTO agent_audit_log (run_id, namespace, name, agent, objective, status) VALUES ('x', 'n', 'm', 'a', 'o', 'done')",
      )
      .catch((error: { code?: string }) => error.code);
    expect(status).toBe('23514'); // check_violation: status must be one of the four
  });

  it('no index duplicates another: none is a prefix of another with the same predicate', async () => {
    const { rows } = await pool.query<{ name: string; keys: string; pred: string | null }>(
      `SELECT c.relname AS name, i.indkey::text AS keys, pg_get_expr(i.indpred, i.indrelid) AS pred
         FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
        WHERE i.indrelid = 'agent_audit_log'::regclass`,
    );
    for (const a of rows) {
      for (const b of rows) {
        if (a === b || a.pred !== b.pred) continue;
        const prefix = `${a.keys} `;
        expect(`${b.keys} `.startsWith(prefix), `${a.name} is a prefix of ${b.name}`).toBe(false);
      }
    }
  });

  it('up again is a no-op', async () => {
    await expect(migrate(db.url, 'up', logger)).resolves.toEqual({
      command: 'up',
      from: 1,
      to: 1,
      applied: [],
    });
  });

  it('down drops the table and its indexes; up brings them back', async () => {
    await pool.query(
      "INSERT INTO agent_audit_log (run_id, namespace, name, agent, objective, status) VALUES ('r', 'n', 'm', 'a', 'o', 'running')",
    );
    await expect(migrate(pool, 'down', logger)).resolves.toEqual({
      command: 'down',
      from: 1,
      to: 0,
      applied: [{ version: 1, name: '', action: 'undo' }],
    });
    expect(await columns(pool)).toEqual([]);
    expect(await indexes(pool)).toEqual([]);
    await expect(migrate(pool, 'status', logger)).resolves.toMatchObject({ current: 0 });
    await expect(migrate(pool, 'down', logger)).resolves.toMatchObject({
      from: 0,
      to: 0,
      applied: [],
    });

    await expect(migrate(pool, 'up', logger)).resolves.toMatchObject({ from: 0, to: 1 });
    expect(await indexes(pool)).toHaveLength(7);
    const { rows } = await pool.query('SELECT count(*)::int AS n FROM agent_audit_log');
    expect(rows).toEqual([{ n: 0 }]);
  });

  it('leaves the pooled connection as it found it (search_path) and keeps its bookkeeping table', async () => {
    const { rows } = await pool.query<{ search_path: string }>('SHOW search_path');
    expect(rows[0]?.search_path).toBe('"$user", public');
    const version = await pool.query(`SELECT max(version)::int AS v FROM ${MIGRATIONS_TABLE}`);
    expect(version.rows).toEqual([{ v: 1 }]);
  });

  it('replicas starting together: one applies, the others wait on the lock and find nothing to do', async () => {
    const results = await Promise.all(
      Array.from({ length: 4 }, () => migrate(racing.url, 'up', logger)),
    );
    expect(results.map((r) => (r.command === 'status' ? -1 : r.applied.length)).sort()).toEqual([
      0, 0, 0, 1,
    ]);
  });

  it('a failing migration leaves nothing behind: up is one transaction', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'audit-migrations-'));
    try {
      for (const file of ['001.do.sql', '001.undo.sql']) {
        copyFileSync(join(MIGRATIONS_DIR, file), join(dir, file));
      }
      writeFileSync(
        join(dir, '002.do.sql'),
        'ALTER TABLE agent_audit_log ADD COLUMN oops nonsense_type;',
      );
      writeFileSync(join(dir, '002.undo.sql'), 'ALTER TABLE agent_audit_log DROP COLUMN oops;');
      await expect(migrate(broken.url, 'up', logger, { directory: dir })).rejects.toThrow(
        /nonsense_type/,
      );
      const p = new pg.Pool({ connectionString: broken.url, max: 1 });
      try {
        expect(await columns(p)).toEqual([]);
        await expect(migrate(p, 'status', logger, { directory: dir })).resolves.toEqual({
          command: 'status',
          current: 0,
          latest: 2,
          pending: [1, 2],
        });
      } finally {
        await p.end();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
