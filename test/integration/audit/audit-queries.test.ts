import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EXPIRED_ROWS_SQL,
  type RecentRunsQuery,
  recentRunsSql,
} from '../../../src/audit/audit-store.ts';
import { migrate } from '../../../src/audit/migrate.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { useFreshDatabase } from '../../support/environment.ts';

/**
 * The original SQL examples (docs/compatibility.md) and the store's own queries against a table
 * with 100 days of runs: each uses the index meant for it (EXPLAIN) and returns the expected rows.
 */
const db = useFreshDatabase('audit_queries');
const ROWS = 20_000;
const DAYS = 100;
let pool: pg.Pool;

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: db.url, max: 2 });
  pool.on('error', () => {}); // idle connections cut when the database is dropped
  await migrate(pool, 'up', silentLogger());
  // Runs spread evenly over the last 100 days: 20 busy agents, 1000 users (20 runs each), 1 in 20
  // runs failed (all of agent-7's), 1 in 50 canceled, the newest 10 still running, one in 10
  // without a user; plus 40 runs of a rarely used agent, all older than a week. Selective filters (a rare agent, one
  // user) are where an index must be used; for a busy agent, walking started_at backwards and
  // filtering is the planner's (correct) choice under a small LIMIT.
  await pool.query(
    `INSERT INTO agent_audit_log (run_id, namespace, name, agent, objective, status, reason,
       attempts, started_at, finished_at, duration_ms, plan, artifacts, error, user_email, dry_run)
     SELECT 'run-' || i, 'ns-' || (i % 5), 'run-' || i, 'agent-' || (i % 20), 'objective ' || i,
            CASE WHEN i > $1 - 10 THEN 'running' WHEN i % 20 = 7 THEN 'failed'
                 WHEN i % 50 = 3 THEN 'canceled' ELSE 'succeeded' END,
            NULL, 1,
            now() - make_interval(secs => ($1 - i) * ($2 * 86400.0 / $1)),
            CASE WHEN i > $1 - 10 THEN NULL
                 ELSE now() - make_interval(secs => ($1 - i) * ($2 * 86400.0 / $1)) + interval '2 s' END,
            CASE WHEN i > $1 - 10 THEN NULL ELSE 100 + (i % 7) * 100 END,
            '{"steps": ["x"]}', '{"ok": true}',
            CASE WHEN i % 20 = 7 THEN 'boom ' || i END,
            CASE WHEN i % 10 = 0 THEN NULL ELSE 'user' || (i % 1000) || '@example.com' END,
            true
       FROM generate_series(1, $1) AS i`,
    [ROWS, DAYS],
  );
  await pool.query(
    `INSERT INTO agent_audit_log (run_id, namespace, name, agent, objective, status, started_at)
     SELECT 'rare-' || i, 'ns-rare', 'rare-' || i, 'agent-rare', 'rarely', 'succeeded',
            now() - make_interval(days => 8 + i * 2)
       FROM generate_series(1, 40) AS i`,
  );
  await pool.query('ANALYZE agent_audit_log');
});

afterAll(async () => {
  await pool.end();
});

interface PlanNode {
  'Node Type': string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}

/** Node types and index names of the chosen plan, depth first. */
async function plan(sql: string, values: unknown[] = []): Promise<string[]> {
  const client = await pool.connect();
  try {
    const { rows } = await client.query<{ 'QUERY PLAN': [{ Plan: PlanNode }] }>(
      `EXPLAIN (FORMAT JSON) ${sql}`,
      values,
    );
    const out: string[] = [];
    const walk = (node: PlanNode): void => {
      out.push(
        node['Index Name'] ? `${node['Node Type']} ${node['Index Name']}` : node['Node Type'],
      );
      for (const child of node.Plans ?? []) walk(child);
    };
    const root = rows[0]?.['QUERY PLAN'][0].Plan;
    if (root) walk(root);
    return out;
  } finally {
    client.release();
  }
}

function usesIndex(nodes: string[], index: string): boolean {
  return nodes.some((n) => /Index/.test(n) && n.endsWith(` ${index}`));
}

const ORIGINAL = {
  recent: `SELECT run_id, agent, objective, status, duration_ms, started_at
             FROM agent_audit_log ORDER BY started_at DESC LIMIT 50`,
  failedForAgent: `SELECT run_id, objective, error, started_at FROM agent_audit_log
                    WHERE agent = 'agent-7' AND status = 'failed' ORDER BY started_at DESC`,
  latencyByAgent: `SELECT agent, AVG(duration_ms) AS avg_ms, COUNT(*) AS total_runs,
                          SUM(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) AS successes
                     FROM agent_audit_log WHERE started_at > NOW() - INTERVAL '7 days'
                    GROUP BY agent`,
  byRunId: `SELECT run_id, plan, artifacts, error FROM agent_audit_log WHERE run_id = 'run-1234'`,
  userActivity: `SELECT run_id, agent, status, started_at FROM agent_audit_log
                  WHERE user_email = 'user7@example.com' ORDER BY started_at DESC LIMIT 50`,
};

describe('the original queries use their indexes', () => {
  it('recent runs: a backward scan of the started_at btree, no sort', async () => {
    const nodes = await plan(ORIGINAL.recent);
    expect(nodes).toEqual(['Limit', 'Index Scan ix_agent_audit_log_started_at']);
    const { rows } = await pool.query<{ run_id: string }>(ORIGINAL.recent);
    expect(rows.slice(0, 3).map((r) => r.run_id)).toEqual(['run-20000', 'run-19999', 'run-19998']);
    expect(rows).toHaveLength(50);
  });

  it('failed runs for an agent: the partial index of failures, no sort', async () => {
    const nodes = await plan(ORIGINAL.failedForAgent);
    // No LIMIT and 1000 matching rows: a bitmap scan plus a sort of those rows is as good.
    expect(usesIndex(nodes, 'ix_agent_audit_log_failed_agent_started_at'), nodes.join(' > ')).toBe(
      true,
    );
    expect(nodes).not.toContain('Seq Scan');
    const { rows } = await pool.query<{ run_id: string; error: string }>(ORIGINAL.failedForAgent);
    // i % 20 = 7 is exactly agent-7's runs, all failed: 1000 of them, newest first.
    expect(rows).toHaveLength(ROWS / 20);
    expect(rows[0]).toMatchObject({ run_id: 'run-19987', error: 'boom 19987' });
  });

  it('average latency per agent over 7 days: a range scan of started_at', async () => {
    const nodes = await plan(ORIGINAL.latencyByAgent);
    expect(usesIndex(nodes, 'ix_agent_audit_log_started_at'), nodes.join(' > ')).toBe(true);
    expect(nodes).not.toContain('Seq Scan');
    const { rows } = await pool.query<{ agent: string; total_runs: string }>(
      ORIGINAL.latencyByAgent,
    );
    expect(rows).toHaveLength(20);
    const total = rows.reduce((sum, r) => sum + Number(r.total_runs), 0);
    expect(total).toBeGreaterThanOrEqual(ROWS * (7 / DAYS) - 2);
    expect(total).toBeLessThanOrEqual(ROWS * (7 / DAYS) + 2);
  });

  it('lookup by run id: the unique index', async () => {
    expect(await plan(ORIGINAL.byRunId)).toEqual(['Index Scan agent_audit_log_run_id_key']);
    const { rows } = await pool.query(ORIGINAL.byRunId);
    expect(rows).toEqual([
      { run_id: 'run-1234', plan: { steps: ['x'] }, artifacts: { ok: true }, error: null },
    ]);
  });

  it('user activity: the user_email/started_at index', async () => {
    const nodes = await plan(ORIGINAL.userActivity);
    // 20 matching rows: fetching them all and sorting them beats walking the index in order.
    expect(usesIndex(nodes, 'ix_agent_audit_log_user_email_started_at'), nodes.join(' > ')).toBe(
      true,
    );
    expect(nodes).not.toContain('Seq Scan');
    const { rows } = await pool.query<{ run_id: string }>(ORIGINAL.userActivity);
    expect(rows[0]?.run_id).toBe('run-19007');
    expect(rows).toHaveLength(20);
  });

  it('the retention policy finds its candidates through the started_at btree', async () => {
    const nodes = await plan(EXPIRED_ROWS_SQL, [new Date(Date.now() - 90 * 86_400_000), 1000]);
    expect(usesIndex(nodes, 'ix_agent_audit_log_started_at'), nodes.join(' > ')).toBe(true);
    expect(nodes).not.toContain('Seq Scan');
  });
});

describe("the store's list queries use their index", () => {
  const cases: Array<[string, RecentRunsQuery, string]> = [
    ['all runs', { limit: 20 }, 'ix_agent_audit_log_started_at'],
    ['one agent', { agent: 'agent-rare', limit: 20 }, 'ix_agent_audit_log_agent_started_at'],
    [
      "one agent's failures",
      { agent: 'agent-7', status: 'failed', limit: 20 },
      'ix_agent_audit_log_failed_agent_started_at',
    ],
    [
      'one AgentRun name',
      { namespace: 'ns-2', name: 'run-17', limit: 20 },
      'ix_agent_audit_log_namespace_name_started_at',
    ],
    [
      'one user',
      { userEmail: 'user7@example.com', limit: 20 },
      'ix_agent_audit_log_user_email_started_at',
    ],
    [
      'since a date',
      { since: new Date(Date.now() - 86_400_000), limit: 20 },
      'ix_agent_audit_log_started_at',
    ],
  ];
  it.each(cases)('%s', async (_, query, index) => {
    const { text, values } = recentRunsSql(query);
    const nodes = await plan(text, values);
    expect(usesIndex(nodes, index), nodes.join(' > ')).toBe(true);
    expect(nodes, nodes.join(' > ')).not.toContain('Seq Scan');
  });

  it('lists never read a jsonb column', () => {
    const { text } = recentRunsSql({});
    expect(text).not.toMatch(/\bplan\b|\bartifacts\b/);
    expect(text).not.toMatch(/count\(/i);
  });
});
