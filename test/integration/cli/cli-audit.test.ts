import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../../src/audit/audit-record.ts';
import { AuditStore } from '../../../src/audit/audit-store.ts';
import { migrate } from '../../../src/audit/migrate.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { useFreshDatabase } from '../../support/environment.ts';
import { freePort } from '../../support/ports.ts';
import { firstColumn, tableRows } from '../../support/table.ts';

/**
 * `agentrun-operator migrate` and `agentrun-operator audit`, run as real processes (the CLI from
 * source, as `make run` does) against a real PostgreSQL database of this file's own.
 */

const cli = new URL('../../../src/cli/main.ts', import.meta.url).pathname;
const migrations = useFreshDatabase('cli_migrate');
const audit = useFreshDatabase('cli_audit');

/** The URL with a password, so every test can check it is never printed. */
function withPassword(url: string): { url: string; password: string } {
  const parsed = new URL(url);
  // A trust-auth test server ignores it; a server that needs one already has it in the URL.
  if (!parsed.password) parsed.password = 'Sup3r-s3cret-pw';
  return { url: parsed.toString(), password: decodeURIComponent(parsed.password) };
}

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

let secret = '';

/** Runs the CLI with DATABASE_URL (unless overridden) and checks no output shows the password. */
async function run(
  args: readonly string[],
  options: { url?: string | undefined; env?: Record<string, string | undefined> } = {},
): Promise<Result> {
  const env: Record<string, string | undefined> = { ...process.env, DATABASE_URL: options.url };
  for (const [key, value] of Object.entries(options.env ?? {})) env[key] = value;
  for (const key of Object.keys(env)) if (env[key] === undefined) delete env[key];
  const result = await new Promise<Result>((resolve) => {
    execFile(process.execPath, [cli, ...args], { env }, (error, stdout, stderr) => {
      resolve({
        code: error ? Number((error as { code?: unknown }).code ?? 1) : 0,
        stdout,
        stderr,
      });
    });
  });
  if (secret) {
    expect(result.stdout).not.toContain(secret);
    expect(result.stderr).not.toContain(secret);
  }
  return result;
}

/** host:port/database, as the CLI names a database. */
function where(url: string): string {
  const u = new URL(url);
  return `${u.hostname}:${u.port || '5432'}${decodeURIComponent(u.pathname)}`;
}

const table = tableRows;
/** The RUN-ID of each data row. */
const runIds = firstColumn;

describe('agentrun-operator migrate', () => {
  let url = '';
  beforeAll(() => {
    ({ url, password: secret } = withPassword(migrations.url));
  });
  const database = () => where(url);

  it('status on an empty database: version 0, 001 pending', async () => {
    const result = await run(['migrate', 'status'], { url });
    expect(result).toEqual({
      code: 0,
      stdout: `audit schema of ${database()}: version 0, latest 1, pending: 001 (run 'agentrun-operator migrate up')\n`,
      stderr: '',
    });
  });

  it('up applies 001 and creates the table; a second up has nothing to do', async () => {
    expect(await run(['migrate', 'up'], { url })).toEqual({
      code: 0,
      stdout: `applied 001.do.sql\naudit schema of ${database()}: version 0 -> 1\n`,
      stderr: '',
    });
    expect(await tableExists(url)).toBe(true);
    expect((await run(['migrate', 'up'], { url })).stdout).toBe(
      `audit schema of ${database()}: already at version 1, nothing to apply\n`,
    );
  });

  it('status -o json is the result as data', async () => {
    const result = await run(['migrate', 'status', '-o', 'json'], { url });
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      database: database(),
      command: 'status',
      current: 1,
      latest: 1,
      pending: [],
    });
  });

  it('down needs --yes: without it nothing changes and the exit code is 2', async () => {
    const result = await run(['migrate', 'down'], { url });
    expect(result.code).toBe(2);
    expect(result.stdout).toBe('');
    expect(result.stderr.split('\n')[0]).toBe(
      'agentrun-operator migrate: migrate down reverts the newest migration and can delete audit rows (001 drops agent_audit_log): add --yes to go ahead',
    );
    expect(result.stderr).toContain('Usage: agentrun-operator migrate up|down|status');
    expect(await tableExists(url)).toBe(true);
  });

  it('down --yes reverts 001 (the table goes), then up brings it back', async () => {
    expect(await run(['migrate', 'down', '--yes'], { url })).toEqual({
      code: 0,
      stdout: `reverted 001.undo.sql\naudit schema of ${database()}: version 1 -> 0\n`,
      stderr: '',
    });
    expect(await tableExists(url)).toBe(false);
    expect((await run(['migrate', 'down', '--yes'], { url })).stdout).toBe(
      `audit schema of ${database()}: at version 0, nothing to revert\n`,
    );
    // Reading now fails with the way out in the message.
    const ls = await run(['audit', 'ls'], { url });
    expect(ls.code).toBe(1);
    expect(ls.stderr).toBe(
      `agentrun-operator: the audit table agent_audit_log does not exist in ${database()}: run 'agentrun-operator migrate up'\n`,
    );
    expect((await run(['migrate', 'up', '--database-url', url], { url: undefined })).stdout).toBe(
      `applied 001.do.sql\naudit schema of ${database()}: version 0 -> 1\n`,
    );
    expect(await tableExists(url)).toBe(true);
  });

  it('usage mistakes exit 2 with one line and the usage', async () => {
    const bad = await run(['migrate', 'sideways'], { url });
    expect(bad.code).toBe(2);
    expect(bad.stderr.split('\n')[0]).toBe(
      'agentrun-operator migrate: unknown migrate command "sideways" (expected up, down or status)',
    );
    const missing = await run(['migrate'], { url });
    expect(missing.code).toBe(2);
    expect(missing.stderr.split('\n')[0]).toBe(
      'agentrun-operator migrate: missing up, down or status',
    );
    const noDb = await run(['migrate', 'status'], { url: undefined });
    expect(noDb.code).toBe(2);
    expect(noDb.stderr.split('\n')[0]).toBe(
      'agentrun-operator migrate: no database: set DATABASE_URL=postgres://user:password@host:5432/db or pass --database-url',
    );
    const help = await run(['migrate', '--help'], { url });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage:\n  agentrun-operator migrate up|down|status');
  });
});

describe('agentrun-operator audit', () => {
  let url = '';
  const now = Date.now();
  const ago = (ms: number) => new Date(now - ms);
  const MIN = 60_000;
  const HOUR = 60 * MIN;
  const DAY = 24 * HOUR;
  const id = {
    helloOk: randomUUID(),
    helloFailed: randomUUID(),
    check: randomUUID(),
    legacy: randomUUID(),
    slow: randomUUID(),
    canceled: randomUUID(),
  };

  const record = (overrides: Partial<AuditRecord> & Pick<AuditRecord, 'runId'>): AuditRecord => ({
    namespace: 'team-a',
    name: 'hello',
    agent: 'noop',
    objective: 'say hello',
    status: 'succeeded',
    reason: 'Succeeded',
    attempts: 1,
    startedAt: ago(HOUR),
    finishedAt: ago(HOUR),
    durationMs: 534,
    plan: null,
    artifacts: null,
    error: null,
    userEmail: null,
    dryRun: true,
    ...overrides,
  });

  beforeAll(async () => {
    ({ url, password: secret } = withPassword(audit.url));
    await migrate(audit.url, 'up', silentLogger());
    const pool = new pg.Pool({ connectionString: audit.url, max: 1 });
    try {
      await new AuditStore(pool).upsert([
        record({
          runId: id.helloOk,
          startedAt: ago(2 * HOUR),
          finishedAt: new Date(ago(2 * HOUR).getTime() + 534),
          userEmail: 'alice@example.com',
          plan: { steps: ['greet'], target: 'world' },
          artifacts: { message: 'hello, world', sql: "'; DROP TABLE agent_audit_log; --" },
        }),
        record({
          runId: id.helloFailed,
          status: 'failed',
          reason: 'BackoffLimitExceeded',
          attempts: 3,
          startedAt: ago(HOUR),
          durationMs: 65_000,
          error: 'connection refused\nafter 3 attempts',
          userEmail: 'alice@example.com',
        }),
        record({
          runId: id.check,
          namespace: 'team-b',
          name: 'check',
          agent: 'http.check',
          status: 'failed',
          reason: 'TimedOut',
          startedAt: ago(3 * DAY),
          durationMs: 30_000,
          userEmail: 'bob@example.com',
          dryRun: false,
        }),
        record({ runId: id.legacy, name: 'legacy', startedAt: ago(10 * DAY), durationMs: 1_250 }),
        record({
          runId: id.slow,
          namespace: 'team-b',
          name: 'slow',
          status: 'running',
          reason: null,
          startedAt: ago(5 * MIN),
          finishedAt: null,
          durationMs: null,
        }),
        record({
          runId: id.canceled,
          namespace: 'team-b',
          name: 'check',
          agent: 'http.check',
          status: 'canceled',
          reason: 'Canceled',
          startedAt: ago(2 * DAY),
          durationMs: 10,
          userEmail: 'bob@example.com',
        }),
      ]);
    } finally {
      await pool.end();
    }
  });

  const newestFirst = () => [id.slow, id.helloFailed, id.helloOk, id.canceled, id.check, id.legacy];

  describe('get', () => {
    it('shows one run as a key/value view, plan and artifacts included', async () => {
      const result = await run(['audit', 'get', id.helloOk], { url });
      expect(result.code).toBe(0);
      expect(result.stderr).toBe('');
      const lines = result.stdout.split('\n');
      expect(lines.slice(0, 14)).toEqual([
        `Run ID:      ${id.helloOk}`,
        'Namespace:   team-a',
        'Name:        hello',
        'Agent:       noop',
        'Objective:   say hello',
        'Status:      succeeded',
        'Reason:      Succeeded',
        'Attempts:    1',
        'Dry Run:     true',
        'User:        alice@example.com',
        `Started:     ${ago(2 * HOUR)
          .toISOString()
          .replace(/\.\d+Z$/, 'Z')}`,
        expect.stringMatching(/^Finished: {4}\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/),
        'Duration:    534ms',
        'Error:       <none>',
      ]);
      expect(result.stdout).toContain('Plan:\n  {\n    "steps": [\n      "greet"\n    ],');
      expect(result.stdout).toContain(
        // jsonb keeps keys shortest first
        `Artifacts:\n  {\n    "sql": "'; DROP TABLE agent_audit_log; --",\n    "message": "hello, world"\n  }\n`,
      );
    });

    it('puts a multi-line error under its label', async () => {
      const result = await run(['audit', 'get', id.helloFailed], { url });
      expect(result.stdout).toContain('Error:\n  connection refused\n  after 3 attempts\n');
      expect(result.stdout).toContain('Reason:      BackoffLimitExceeded\nAttempts:    3\n');
    });

    it('-o json is the full row', async () => {
      const result = await run(['audit', 'get', id.helloOk, '-o', 'json'], { url });
      expect(result.code).toBe(0);
      const row = JSON.parse(result.stdout);
      expect(row).toEqual({
        id: expect.any(Number),
        runId: id.helloOk,
        namespace: 'team-a',
        name: 'hello',
        agent: 'noop',
        objective: 'say hello',
        status: 'succeeded',
        reason: 'Succeeded',
        attempts: 1,
        startedAt: ago(2 * HOUR).toISOString(),
        finishedAt: new Date(ago(2 * HOUR).getTime() + 534).toISOString(),
        durationMs: 534,
        error: null,
        userEmail: 'alice@example.com',
        dryRun: true,
        createdAt: expect.any(String),
        updatedAt: expect.any(String),
        plan: { steps: ['greet'], target: 'world' },
        artifacts: { message: 'hello, world', sql: "'; DROP TABLE agent_audit_log; --" },
      });
    });

    it('a run that is not there: exit 1, one line on stderr, nothing on stdout', async () => {
      const result = await run(['audit', 'get', 'no-such-run'], { url });
      expect(result.code).toBe(1);
      expect(result.stdout).toBe('');
      expect(result.stderr).toBe(
        `agentrun-operator: run "no-such-run" not found in the audit log at ${where(url)} (the run id is the AgentRun's uid; 'audit ls' lists runs)\n`,
      );
    });

    it('without a run id: exit 2 with the usage', async () => {
      const result = await run(['audit', 'get'], { url });
      expect(result.code).toBe(2);
      expect(result.stderr).toBe(
        "agentrun-operator audit get: missing <run-id>\nUsage: agentrun-operator audit get <run-id> [-o table|json] [flags]\nRun 'agentrun-operator audit get --help' for more information.\n",
      );
    });
  });

  describe('ls', () => {
    it('lists every run newest first, in kubectl columns', async () => {
      const result = await run(['audit', 'ls'], { url });
      expect(result.code).toBe(0);
      expect(result.stderr).toBe('');
      const rows = table(result.stdout);
      expect(rows[0]).toEqual([
        'RUN-ID',
        'NAMESPACE',
        'NAME',
        'AGENT',
        'STATUS',
        'REASON',
        'STARTED',
        'DURATION',
        'USER',
      ]);
      expect(runIds(result.stdout)).toEqual(newestFirst());
      expect(rows[1]).toEqual([
        id.slow,
        'team-b',
        'slow',
        'noop',
        'running',
        '<none>',
        ago(5 * MIN)
          .toISOString()
          .replace(/\.\d+Z$/, 'Z'),
        '<none>',
        '<none>',
      ]);
      expect(rows[2]?.slice(4)).toEqual([
        'failed',
        'BackoffLimitExceeded',
        ago(HOUR)
          .toISOString()
          .replace(/\.\d+Z$/, 'Z'),
        '1m5s',
        'alice@example.com',
      ]);
    });

    it('--agent', async () => {
      const result = await run(['audit', 'ls', '--agent', 'http.check'], { url });
      expect(runIds(result.stdout)).toEqual([id.canceled, id.check]);
    });

    it('--status', async () => {
      expect(runIds((await run(['audit', 'ls', '--status', 'failed'], { url })).stdout)).toEqual([
        id.helloFailed,
        id.check,
      ]);
      expect(runIds((await run(['audit', 'ls', '--status=running'], { url })).stdout)).toEqual([
        id.slow,
      ]);
    });

    it('--since with a duration and with an RFC 3339 time', async () => {
      expect(runIds((await run(['audit', 'ls', '--since', '24h'], { url })).stdout)).toEqual([
        id.slow,
        id.helloFailed,
        id.helloOk,
      ]);
      expect(runIds((await run(['audit', 'ls', '--since', '30m'], { url })).stdout)).toEqual([
        id.slow,
      ]);
      const since = ago(4 * DAY).toISOString();
      expect(runIds((await run(['audit', 'ls', '--since', since], { url })).stdout)).toEqual(
        newestFirst().slice(0, 5),
      );
    });

    it('--limit keeps the newest', async () => {
      expect(runIds((await run(['audit', 'ls', '--limit', '2'], { url })).stdout)).toEqual(
        newestFirst().slice(0, 2),
      );
    });

    it('--namespace (-n), --name and --user', async () => {
      expect(runIds((await run(['audit', 'ls', '--namespace', 'team-b'], { url })).stdout)).toEqual(
        [id.slow, id.canceled, id.check],
      );
      expect(
        runIds((await run(['audit', 'ls', '-n', 'team-a', '--name', 'hello'], { url })).stdout),
      ).toEqual([id.helloFailed, id.helloOk]);
      expect(runIds((await run(['audit', 'ls', '--name', 'check'], { url })).stdout)).toEqual([
        id.canceled,
        id.check,
      ]);
      expect(
        runIds((await run(['audit', 'ls', '--user', 'bob@example.com'], { url })).stdout),
      ).toEqual([id.canceled, id.check]);
    });

    it('filters combine', async () => {
      const result = await run(
        ['audit', 'ls', '--agent', 'http.check', '--status', 'failed', '--since', '7d'],
        { url },
      );
      expect(runIds(result.stdout)).toEqual([id.check]);
    });

    it('-o json is an array of the scalar columns, newest first', async () => {
      const result = await run(['audit', 'ls', '-o', 'json', '--limit', '3'], { url });
      expect(result.code).toBe(0);
      const rows = JSON.parse(result.stdout) as Array<Record<string, unknown>>;
      expect(rows.map((r) => r['runId'])).toEqual(newestFirst().slice(0, 3));
      for (const row of rows) {
        expect(Object.keys(row)).not.toContain('plan');
        expect(Object.keys(row)).not.toContain('artifacts');
      }
      expect(rows[1]).toMatchObject({
        runId: id.helloFailed,
        status: 'failed',
        reason: 'BackoffLimitExceeded',
        attempts: 3,
        error: 'connection refused\nafter 3 attempts',
        userEmail: 'alice@example.com',
        durationMs: 65_000,
        startedAt: ago(HOUR).toISOString(),
      });
    });

    it('nothing found: a note on stderr (table) or [] (json), exit 0', async () => {
      expect(await run(['audit', 'ls', '--agent', 'nobody'], { url })).toEqual({
        code: 0,
        stdout: '',
        stderr: 'No runs found.\n',
      });
      const json = await run(['audit', 'ls', '--agent', 'nobody', '-o', 'json'], { url });
      expect(JSON.parse(json.stdout)).toEqual([]);
    });

    it.each([
      [['--limit', '0'], 'invalid --limit "0": must be a whole number from 1 to 10000'],
      [['--limit', '10001'], 'invalid --limit "10001": must be a whole number from 1 to 10000'],
      [
        ['--status', 'done'],
        'invalid --status "done": must be one of running, succeeded, failed, canceled',
      ],
      [
        ['--since', 'yesterday'],
        'invalid --since "yesterday": expected a duration such as 30m, 24h or 7d, or an RFC 3339 time such as 2025-01-31T00:00:00Z',
      ],
      [['-o', 'yaml'], 'invalid --output "yaml": must be table or json'],
      [['--colour'], 'unknown flag --colour'],
      [['stray'], 'unexpected argument "stray"'],
    ])('usage mistake %j: exit 2, one line, then the usage', async (args, message) => {
      const result = await run(['audit', 'ls', ...args], { url });
      expect(result.code).toBe(2);
      expect(result.stdout).toBe('');
      const [first, usage] = result.stderr.split('\n');
      expect(first).toBe(`agentrun-operator audit ls: ${message}`);
      expect(usage).toMatch(/^Usage: agentrun-operator audit ls \[--agent AGENT\]/);
    });

    it('help', async () => {
      const ls = await run(['audit', 'ls', '--help'], { url });
      expect(ls.code).toBe(0);
      expect(ls.stdout).toContain('  -n, --namespace NAMESPACE');
      const group = await run(['audit'], { url });
      expect(group.code).toBe(0);
      expect(group.stdout).toContain('  get   show one run in full');
      const unknown = await run(['audit', 'rm'], { url });
      expect(unknown.code).toBe(2);
      expect(unknown.stderr.split('\n')[0]).toBe(
        'agentrun-operator audit: unknown command "rm" (expected one of get, ls)',
      );
    });
  });

  describe('the database', () => {
    it('DATABASE_URL missing: exit 2; --database-url works instead', async () => {
      const missing = await run(['audit', 'ls'], { url: undefined });
      expect(missing.code).toBe(2);
      expect(missing.stderr.split('\n')[0]).toBe(
        'agentrun-operator audit ls: no database: set DATABASE_URL=postgres://user:password@host:5432/db or pass --database-url',
      );
      const flag = await run(['audit', 'ls', '--limit', '1', `--database-url=${url}`], {
        url: undefined,
      });
      expect(flag.code).toBe(0);
      expect(runIds(flag.stdout)).toEqual([id.slow]);
    });

    it('a bad value of --database-url is refused without echoing it', async () => {
      const result = await run(['audit', 'ls', '--database-url', `mysql://u:${secret}@h/db`], {
        url: undefined,
      });
      expect(result.code).toBe(2);
      expect(result.stderr.split('\n')[0]).toBe(
        'agentrun-operator audit ls: the database URL must be a postgres:// or postgresql:// URL',
      );
    });

    it('an unreachable server: exit 1, one line naming host:port/database only', async () => {
      const port = await freePort();
      const result = await run(['audit', 'get', id.helloOk], {
        url: `postgres://audit:${encodeURIComponent(secret)}@127.0.0.1:${port}/audit`,
      });
      expect(result.code).toBe(1);
      expect(result.stdout).toBe('');
      expect(result.stderr).toBe(
        `agentrun-operator: cannot connect to the audit database 127.0.0.1:${port}/audit: connect ECONNREFUSED 127.0.0.1:${port}\n`,
      );
    });
  });
});

async function tableExists(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ exists: boolean }>(
      `SELECT to_regclass('agent_audit_log') IS NOT NULL AS exists`,
    );
    return rows[0]?.exists ?? false;
  } finally {
    await client.end();
  }
}
