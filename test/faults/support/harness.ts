import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { KubeConfig } from '@kubernetes/client-node';
import pg from 'pg';
import type { AgentRun } from '../../../src/api/agentrun.ts';
import { ConditionType, findCondition } from '../../../src/api/conditions.ts';
import { AgentRuns, type SpecInput } from '../../support/agentruns.ts';
import { installCrd } from '../../support/crds.ts';
import { ControlPlane, type ControlPlaneOptions } from '../../support/envtest/control-plane.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { createDatabase } from '../../support/postgres/databases.ts';
import { PostgresServer } from '../../support/postgres/server.ts';
import { OperatorProcesses } from './operator-process.ts';
import { WebhookAgent } from './webhook-agent.ts';

/**
 * The fault harness: a control plane, a PostgreSQL server and a webhook agent of the scenario's
 * own (so a scenario may kill any of them), the operator as a restartable child process, a burst
 * of mixed runs, and the invariants of issue 15 computed from what each part recorded.
 */
export class FaultEnvironment {
  readonly dir: string;
  readonly plane: ControlPlane;
  readonly postgres: PostgresServer;
  readonly databaseUrl: string;
  readonly kc: KubeConfig;
  readonly namespace: string;
  readonly runs: AgentRuns;
  readonly agent: WebhookAgent;
  readonly operators: OperatorProcesses;

  private constructor(parts: {
    dir: string;
    plane: ControlPlane;
    postgres: PostgresServer;
    databaseUrl: string;
    kc: KubeConfig;
    namespace: string;
    agent: WebhookAgent;
    operators: OperatorProcesses;
  }) {
    this.dir = parts.dir;
    this.plane = parts.plane;
    this.postgres = parts.postgres;
    this.databaseUrl = parts.databaseUrl;
    this.kc = parts.kc;
    this.namespace = parts.namespace;
    this.runs = new AgentRuns(parts.kc, parts.namespace);
    this.agent = parts.agent;
    this.operators = parts.operators;
  }

  static async start(
    name: string,
    env: Record<string, string> = {},
    planeOptions: ControlPlaneOptions = {},
  ): Promise<FaultEnvironment> {
    const dir = mkdtempSync(join(tmpdir(), `agentrun-faults-${name}-`));
    const [plane, postgres, agent] = await Promise.all([
      ControlPlane.start(planeOptions),
      PostgresServer.start(),
      WebhookAgent.start(),
    ]);
    await installCrd(plane.info);
    const kc = adminKubeConfig(plane.info);
    const namespace = await createNamespace(kc, name);
    const db = await createDatabase(postgres.url(), 'faults');
    // The throwaway server runs with synchronous_commit=off for speed, which may lose the last
    // commits when the server process is killed; the operator's promise assumes the default.
    const admin = new pg.Client({ connectionString: postgres.url() });
    await admin.connect();
    await admin.query(`ALTER DATABASE "${db.name}" SET synchronous_commit = on`);
    await admin.end();
    const handlersConfig = join(dir, 'handlers.yaml');
    writeFileSync(handlersConfig, agent.handlersConfig());
    const operators = new OperatorProcesses(dir, {
      KUBECONFIG: plane.info.adminKubeconfig,
      WATCH_NAMESPACE: namespace,
      HANDLERS_CONFIG: handlersConfig,
      DATABASE_URL: db.url,
      LOG_LEVEL: process.env['FAULTS_LOG_LEVEL'] ?? 'info',
      MAX_CONCURRENT_RUNS: '20',
      RETRY_BACKOFF_BASE_MS: '200',
      RETRY_BACKOFF_MAX_MS: '1000',
      SHUTDOWN_GRACE_SECONDS: '2',
      AUDIT_RETENTION_DAYS: '0',
      ...env,
    });
    return new FaultEnvironment({
      dir,
      plane,
      postgres,
      databaseUrl: db.url,
      kc,
      namespace,
      agent,
      operators,
    });
  }

  async stop(): Promise<void> {
    await this.operators.stop().catch(() => {});
    await Promise.allSettled([this.agent.close(), this.plane.stop(), this.postgres.destroy()]);
    if (!process.env['FAULTS_KEEP']) rmSync(this.dir, { recursive: true, force: true });
  }

  /** SIGKILL to the postmaster only (its backends notice and exit), as an OOM kill would. */
  killPostgres(): void {
    const pid = Number(
      readFileSync(join(this.postgres.dir, 'data', 'postmaster.pid'), 'utf8').split('\n')[0],
    );
    process.kill(pid, 'SIGKILL');
  }

  /** Starts PostgreSQL again on the same data directory, after crash recovery. */
  async restartPostgres(): Promise<void> {
    // A restart fails while orphaned backends still hold the old shared memory: try again.
    for (let tries = 0; ; tries++) {
      try {
        await this.postgres.resume();
        return;
      } catch (error) {
        if (tries >= 20) throw error;
        await sleep(500);
      }
    }
  }

  /**
   * Creates `n` runs, a mix of handlers (see `burstSpec`), `concurrency` creates at a time, and
   * cancels every tenth a moment after its creation. Returns the names.
   */
  async createBurst(n: number, concurrency = 8): Promise<string[]> {
    const names = Array.from({ length: n }, (_, i) => `run-${String(i).padStart(4, '0')}`);
    let next = 0;
    const cancels: Promise<void>[] = [];
    const worker = async () => {
      while (next < names.length) {
        const i = next++;
        const name = names[i] as string;
        const { spec, cancelAfterMs } = burstSpec(i);
        await this.runs.create(name, spec);
        if (cancelAfterMs !== undefined) {
          cancels.push(
            sleep(cancelAfterMs).then(() =>
              this.runs.cancel(name).catch(() => {
                // Already finished and gone is fine; a cancel of a finished run changes nothing.
              }),
            ),
          );
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    await Promise.all(cancels);
    return names;
  }

  /**
   * Lists the runs, trying again for up to 30 s on an error: an API server that was just started
   * again answers 429 ("storage is (re)initializing") for a moment after its /readyz.
   */
  async listRuns(): Promise<AgentRun[]> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        return await this.runs.list();
      } catch (error) {
        if (Date.now() > deadline) throw error;
        await sleep(250);
      }
    }
  }

  async terminalCount(): Promise<{ terminal: number; total: number; list: AgentRun[] }> {
    const list = await this.listRuns();
    return { terminal: list.filter(isTerminal).length, total: list.length, list };
  }

  /** Waits until at least `count` runs are terminal; returns when. */
  async waitForTerminal(count: number, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { terminal } = await this.terminalCount();
      if (terminal >= count) return Date.now();
      if (Date.now() > deadline) {
        throw new Error(`only ${terminal} of ${count} runs terminal after ${timeoutMs} ms`);
      }
      await sleep(100);
    }
  }

  /**
   * Waits (up to `timeoutMs`) until every run is terminal and Audited=True; returns the runs as
   * last seen and whether the wait ended with everything settled.
   */
  async settle(timeoutMs: number): Promise<{ list: AgentRun[]; settled: boolean; at: number }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const list = await this.listRuns();
      const done = list.every((r) => isTerminal(r) && audited(r) === 'Recorded');
      if (done || Date.now() > deadline) return { list, settled: done, at: Date.now() };
      await sleep(250);
    }
  }

  async auditRows(namespace = this.namespace): Promise<AuditRow[]> {
    const client = new pg.Client({ connectionString: this.databaseUrl });
    await client.connect();
    try {
      const { rows } = await client.query<AuditRow>(
        `SELECT run_id, namespace, name, status, reason, attempts, started_at, finished_at,
                duration_ms, error
           FROM agent_audit_log WHERE namespace = $1`,
        [namespace],
      );
      return rows;
    } finally {
      await client.end();
    }
  }
}

export interface AuditRow {
  run_id: string;
  namespace: string;
  name: string;
  status: string;
  reason: string | null;
  attempts: number;
  started_at: Date | null;
  finished_at: Date | null;
  duration_ms: number | null;
  error: string | null;
}

/** The mix of the burst, by index: every tenth run of each kind. */
export function burstSpec(i: number): { spec: SpecInput; cancelAfterMs?: number } {
  const objective = `fault burst run ${i}`;
  switch (i % 10) {
    case 0:
    case 1:
      return { spec: { agent: 'noop', objective, params: { delayMs: (i * 37) % 300 } } };
    case 2:
    case 3:
      return { spec: { agent: 'hook-ok', objective, dryRun: false } };
    case 4:
      // Fails twice: BackoffLimitExceeded after a recorded retry.
      return { spec: { agent: 'hook-fail', objective, dryRun: false, backoffLimit: 1 } };
    case 5:
      return { spec: { agent: 'hook-fail', objective, dryRun: false } };
    case 6:
      return { spec: { agent: 'hook-slow', objective, dryRun: false } };
    case 7:
      // The agent never answers: the webhook's 1.5 s timeout fails the attempt.
      return { spec: { agent: 'hook-hang', objective, dryRun: false } };
    case 8:
      // Canceled: before it starts or while it runs, depending on the queue.
      return {
        spec: { agent: 'hook-slow', objective, dryRun: false },
        cancelAfterMs: 200 + ((i * 53) % 1_500),
      };
    default:
      // Retries left: an attempt interrupted by a fault is retried, not failed.
      return { spec: { agent: 'hook-ok', objective, dryRun: false, backoffLimit: 2 } };
  }
}

export function isTerminal(run: AgentRun): boolean {
  const phase = run.status?.phase;
  return phase === 'Succeeded' || phase === 'Failed' || phase === 'Canceled';
}

export function audited(run: AgentRun): string | undefined {
  const c = findCondition(run.status?.conditions, ConditionType.Audited);
  return c?.status === 'True' ? 'Recorded' : c?.reason;
}

export function reasonOf(run: AgentRun): string | undefined {
  return findCondition(run.status?.conditions, ConditionType.Succeeded)?.reason;
}

const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const RELIABILITY_DOC = join(REPO, 'docs', 'reliability.md');

/**
 * Replaces the text between `<!-- scenario:<id>:start -->` and `<!-- scenario:<id>:end -->` in
 * docs/reliability.md with `body` (the markers must exist: the page says where each table goes).
 */
export function writeScenarioBlock(id: string, body: string): void {
  const text = readFileSync(RELIABILITY_DOC, 'utf8');
  const start = `<!-- scenario:${id}:start -->`;
  const end = `<!-- scenario:${id}:end -->`;
  const from = text.indexOf(start);
  const to = text.indexOf(end);
  if (from < 0 || to < from) throw new Error(`docs/reliability.md has no markers for ${id}`);
  writeFileSync(
    RELIABILITY_DOC,
    `${text.slice(0, from + start.length)}\n${body.trim()}\n${text.slice(to)}`,
  );
}
