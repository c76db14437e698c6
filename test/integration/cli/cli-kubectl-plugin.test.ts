import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { copyFileSync, mkdtempSync } from 'node:fs';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../../src/audit/audit-record.ts';
import { AuditStore } from '../../../src/audit/audit-store.ts';
import { migrate } from '../../../src/audit/migrate.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { AgentRuns } from '../../support/agentruns.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane, useFreshDatabase } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { startOperator } from '../../support/operator.ts';
import { firstColumn, tableRows } from '../../support/table.ts';

/**
 * The kubectl plugin: plugins/kubectl-agentrun run directly (process.execPath + the launcher)
 * and through the real kubectl with the plugin's directory on PATH, against a real PostgreSQL
 * database and the test API server.
 */

const plane = controlPlane();
const kc = adminKubeConfig(plane);
const db = useFreshDatabase('cli_history');
const pluginDir = new URL('../../../plugins/', import.meta.url).pathname;
const launcher = join(pluginDir, 'kubectl-agentrun');
/** kubectl finds kubectl-agentrun here; its `#!/usr/bin/env node` finds this test's node. */
const PATH = [pluginDir.replace(/\/$/, ''), dirname(process.execPath), process.env['PATH']]
  .filter(Boolean)
  .join(':');

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function exec(
  command: string,
  args: readonly string[],
  env: Record<string, string | undefined>,
): Promise<Result> {
  const full: Record<string, string | undefined> = { ...process.env, PATH, ...env };
  for (const key of Object.keys(full)) if (full[key] === undefined) delete full[key];
  return new Promise((resolve) => {
    execFile(command, args, { env: full }, (error, stdout, stderr) => {
      resolve({
        code: error ? Number((error as { code?: unknown }).code ?? 1) : 0,
        stdout,
        stderr,
      });
    });
  });
}

let kubeconfig = '';
/** Runs the plugin directly; DATABASE_URL and KUBECONFIG are this file's unless overridden. */
const plugin = (args: readonly string[], env: Record<string, string | undefined> = {}) =>
  exec(process.execPath, [launcher, ...args], {
    DATABASE_URL: db.url,
    KUBECONFIG: kubeconfig,
    ...env,
  });
/** Runs the real kubectl, which finds the plugin on PATH. */
const kubectl = (args: readonly string[], env: Record<string, string | undefined> = {}) =>
  exec(plane.kubectl, args, { DATABASE_URL: db.url, KUBECONFIG: kubeconfig, ...env });

const table = tableRows;
/** The RUN-ID of each data row. */
const runIds = firstColumn;

let ns = '';
let other = '';
const now = Date.now();
const HOUR = 3_600_000;
const id = {
  hello1: randomUUID(),
  hello2: randomUUID(),
  probe: randomUUID(),
  otherHello: randomUUID(),
  inDefault: randomUUID(),
};

const record = (overrides: Partial<AuditRecord> & Pick<AuditRecord, 'runId'>): AuditRecord => ({
  namespace: ns,
  name: 'hello',
  agent: 'noop',
  objective: 'say hello',
  status: 'succeeded',
  reason: 'Succeeded',
  attempts: 1,
  startedAt: new Date(now - HOUR),
  finishedAt: new Date(now - HOUR + 20),
  durationMs: 20,
  plan: null,
  artifacts: null,
  error: null,
  userEmail: null,
  dryRun: true,
  ...overrides,
});

beforeAll(async () => {
  await installCrd(plane);
  ns = await createNamespace(kc, 'history');
  other = await createNamespace(kc, 'history-b');
  await migrate(db.url, 'up', silentLogger());
  const pool = new pg.Pool({ connectionString: db.url, max: 1 });
  try {
    await new AuditStore(pool).upsert([
      record({ runId: id.hello1, startedAt: new Date(now - 3 * HOUR) }),
      record({
        runId: id.hello2,
        status: 'failed',
        reason: 'Failed',
        error: 'boom',
        startedAt: new Date(now - 2 * HOUR),
        userEmail: 'alice@example.com',
      }),
      record({ runId: id.probe, name: 'probe', agent: 'http.check', durationMs: 1_250 }),
      record({ runId: id.otherHello, namespace: other, startedAt: new Date(now - 30 * 60_000) }),
      record({ runId: id.inDefault, namespace: 'default', name: 'hello' }),
    ]);
  } finally {
    await pool.end();
  }
  // A kubeconfig whose current context's namespace is `ns`, plus a second context in `other`.
  const dir = mkdtempSync(join(plane.dir, 'history-kubeconfig-'));
  kubeconfig = join(dir, 'config');
  copyFileSync(plane.adminKubeconfig, kubeconfig);
  const kube = async (...args: string[]) => {
    const result = await exec(plane.kubectl, ['--kubeconfig', kubeconfig, ...args], {});
    expect(result.code, result.stderr).toBe(0);
    return result.stdout;
  };
  await kube('config', 'set-context', '--current', `--namespace=${ns}`);
  const [cluster, user] = (
    await kube(
      'config',
      'view',
      '--minify',
      '-o',
      'jsonpath={.contexts[0].context.cluster} {.contexts[0].context.user}',
    )
  ).split(' ');
  await kube(
    'config',
    'set-context',
    'other',
    `--cluster=${cluster}`,
    `--user=${user}`,
    `--namespace=${other}`,
  );
});

describe('kubectl agentrun, found by the real kubectl', () => {
  it('kubectl plugin list shows it when its directory is on PATH', async () => {
    // (kubectl plugin list exits 1 when some other kubectl-* on PATH has a problem: not ours.)
    const result = await kubectl(['plugin', 'list']);
    expect(result.stdout).toContain(launcher);
  });

  it('kubectl agentrun --help and kubectl agentrun history --help', async () => {
    const top = await kubectl(['agentrun', '--help']);
    expect(top.code, top.stderr).toBe(0);
    expect(top.stdout).toContain('Usage:\n  kubectl agentrun <command> [flags]');
    expect(top.stdout).toContain(
      '  history   past runs from the audit log, also of deleted AgentRuns',
    );
    const history = await kubectl(['agentrun', 'history', '--help']);
    expect(history.code, history.stderr).toBe(0);
    expect(history.stdout).toContain(
      'Usage:\n  kubectl agentrun history [NAME] [--agent AGENT] [-n NAMESPACE | -A]',
    );
    expect(history.stdout).toContain('  -A, --all-namespaces');
    expect(history.stdout).toContain('DATABASE_URL');
  });

  it('kubectl agentrun history NAME -n NAMESPACE', async () => {
    const result = await kubectl(['agentrun', 'history', 'hello', '-n', ns]);
    expect(result.code, result.stderr).toBe(0);
    const rows = table(result.stdout);
    expect(rows[0]).toEqual([
      'RUN-ID',
      'NAME',
      'AGENT',
      'STATUS',
      'REASON',
      'STARTED',
      'DURATION',
      'USER',
    ]);
    expect(runIds(result.stdout)).toEqual([id.hello2, id.hello1]);
    expect(rows[1]?.slice(1)).toEqual([
      'hello',
      'noop',
      'failed',
      'Failed',
      new Date(now - 2 * HOUR).toISOString().replace(/\.\d+Z$/, 'Z'),
      '20ms',
      'alice@example.com',
    ]);
  });

  it('exit codes come through kubectl: a usage mistake is 2', async () => {
    const result = await kubectl(['agentrun', 'history', '--limit', '0']);
    expect(result.code).toBe(2);
    expect(result.stderr.split('\n')[0]).toBe(
      'kubectl agentrun history: invalid --limit "0": must be a whole number from 1 to 10000',
    );
  });
});

describe('kubectl agentrun history', () => {
  it('by agent', async () => {
    const result = await plugin(['history', '--agent', 'http.check', '-n', ns]);
    expect(runIds(result.stdout)).toEqual([id.probe]);
    expect(table(result.stdout)[1]?.[6]).toBe('1.25s');
  });

  it('the namespace defaults to the kubeconfig context namespace', async () => {
    const result = await plugin(['history', 'hello']);
    expect(runIds(result.stdout)).toEqual([id.hello2, id.hello1]);
    const context = await plugin(['history', 'hello', '--context', 'other']);
    expect(runIds(context.stdout)).toEqual([id.otherHello]);
  });

  it('with no kubeconfig at all, the namespace is default', async () => {
    const home = mkdtempSync(join(plane.dir, 'history-home-'));
    // (and not in a pod either, where client-node would read the service account's namespace)
    const result = await plugin(['history'], {
      KUBECONFIG: undefined,
      HOME: home,
      KUBERNETES_SERVICE_HOST: undefined,
      KUBERNETES_SERVICE_PORT: undefined,
    });
    expect(result.code, result.stderr).toBe(0);
    expect(runIds(result.stdout)).toEqual([id.inDefault]);
  });

  it('-A: every namespace, with a NAMESPACE column', async () => {
    const result = await plugin(['history', 'hello', '-A']);
    const rows = table(result.stdout);
    expect(rows[0]?.slice(0, 3)).toEqual(['RUN-ID', 'NAMESPACE', 'NAME']);
    expect(runIds(result.stdout)).toEqual([id.otherHello, id.inDefault, id.hello2, id.hello1]);
    expect(rows[1]?.[1]).toBe(other);
  });

  it('--limit, --status, --since and -o json', async () => {
    expect(runIds((await plugin(['history', '-A', '--limit', '1'])).stdout)).toEqual([
      id.otherHello,
    ]);
    expect(runIds((await plugin(['history', '--status', 'failed'])).stdout)).toEqual([id.hello2]);
    expect(runIds((await plugin(['history', '-A', '--since', '45m'])).stdout)).toEqual([
      id.otherHello,
    ]);
    const json = await plugin(['history', 'hello', '-o', 'json']);
    expect(json.code).toBe(0);
    const rows = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
    expect(rows.map((r) => [r['runId'], r['namespace'], r['status']])).toEqual([
      [id.hello2, ns, 'failed'],
      [id.hello1, ns, 'succeeded'],
    ]);
    expect(rows[0]).not.toHaveProperty('plan');
  });

  it('nothing found: a note on stderr, exit 0', async () => {
    expect(await plugin(['history', 'nope', '-n', ns])).toEqual({
      code: 0,
      stdout: '',
      stderr: `No runs of "nope" found in the audit log in namespace ${ns}.\n`,
    });
  });

  it('usage mistakes exit 2 with one line and the usage; no database is one too', async () => {
    const both = await plugin(['history', '-n', ns, '-A']);
    expect(both.code).toBe(2);
    expect(both.stderr.split('\n').slice(0, 2)).toEqual([
      'kubectl agentrun history: --namespace and --all-namespaces exclude each other',
      'Usage: kubectl agentrun history [NAME] [--agent AGENT] [-n NAMESPACE | -A] [--limit N] [-o table|json] [flags]',
    ]);
    const unknown = await plugin(['history', '--watch']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.split('\n')[0]).toBe('kubectl agentrun history: unknown flag --watch');
    const twoNames = await plugin(['history', 'a', 'b']);
    expect(twoNames.code).toBe(2);
    expect(twoNames.stderr.split('\n')[0]).toBe(
      'kubectl agentrun history: unexpected argument "b"',
    );
    const noDb = await plugin(['history'], { DATABASE_URL: undefined });
    expect(noDb.code).toBe(2);
    expect(noDb.stderr.split('\n')[0]).toBe(
      'kubectl agentrun history: no database: set DATABASE_URL=postgres://user:password@host:5432/db or pass --database-url',
    );
    const sub = await plugin(['tail']);
    expect(sub.code).toBe(2);
    expect(sub.stderr.split('\n')[0]).toBe(
      'kubectl agentrun: unknown command "tail" (expected one of history, logs)',
    );
  });
});

describe('history outlives the AgentRun', () => {
  it('a run whose AgentRun was deleted still shows, through kubectl', async () => {
    const namespace = await createNamespace(kc, 'history-gone');
    await startOperator({
      kubeConfig: kc,
      namespace,
      env: { APPLYLENS_AGENT_AUDIT_ENABLED: 'true', DATABASE_URL: db.url },
    });
    const runs = new AgentRuns(kc, namespace);
    const created = await runs.create('gone', {
      agent: 'noop',
      objective: 'leave a trace',
      requestedBy: 'carol@example.com',
    });
    await runs.waitUntil(
      'gone',
      'Audited',
      (r) => r.status?.conditions?.find((c) => c.type === 'Audited')?.status === 'True',
    );
    await runs.delete('gone');
    await runs.waitForDeletion('gone');
    const get = await kubectl(['get', 'agentrun', 'gone', '-n', namespace]);
    expect(get.code).toBe(1);
    expect(get.stderr).toContain('NotFound');

    const result = await kubectl(['agentrun', 'history', 'gone', '-n', namespace]);
    expect(result.code, result.stderr).toBe(0);
    const rows = table(result.stdout);
    expect(rows).toHaveLength(2);
    expect(rows[1]?.[0]).toBe(created.metadata.uid);
    expect(rows[1]?.slice(1, 5)).toEqual(['gone', 'noop', 'succeeded', 'Succeeded']);
    expect(rows[1]?.[7]).toBe('carol@example.com');
  });
});
