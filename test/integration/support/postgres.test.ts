import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { useFreshDatabase } from '../../support/environment.ts';

const db = useFreshDatabase('smoke');

async function query<T extends pg.QueryResultRow>(
  url: string,
  sql: string,
  params: unknown[] = [],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

describe('test PostgreSQL', () => {
  it('round-trips rows, jsonb and timestamps through a real server', async () => {
    await query(
      db.url,
      'CREATE TABLE t (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, doc jsonb NOT NULL, at timestamptz NOT NULL)',
    );
    const at = new Date('2026-01-02T03:04:05.678Z');
    await query(db.url, 'INSERT INTO t (doc, at) VALUES ($1, $2)', [{ ok: true, n: [1, 2] }, at]);
    const rows = await query<{ id: string; doc: unknown; at: Date }>(
      db.url,
      'SELECT id, doc, at FROM t',
    );
    expect(rows).toEqual([{ id: '1', doc: { ok: true, n: [1, 2] }, at }]);
  });

  it('gives this file a database of its own', async () => {
    const [row] = await query<{ name: string; version: string }>(
      db.url,
      'SELECT current_database() AS name, version() AS version',
    );
    expect(row?.name).toMatch(/^smoke_[0-9a-f]{8}$/);
    expect(row?.version).toMatch(/^PostgreSQL \d+/);
  });
});
