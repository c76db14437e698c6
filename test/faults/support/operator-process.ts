import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../support/ports.ts';
import { ManagedProcess } from '../../support/process.ts';
import { waitFor } from '../../support/wait.ts';

const CLI = new URL('../../../src/cli/main.ts', import.meta.url).pathname;

/** One scrape of an operator's /metrics: the agent_runs_total series and memory. */
export interface Scrape {
  readonly incarnation: number;
  /** The replica (pod) the process ran as: restarts of one replica continue its series. */
  readonly replica: string;
  readonly at: number;
  /** `agent|status` -> value of agent_runs_total. */
  readonly runsTotal: ReadonlyMap<string, number>;
  readonly rssBytes: number;
  readonly heapUsedBytes: number;
  /** Sum of controller_runtime_reconcile_total over its results. */
  readonly reconciles: number;
  /** process_cpu_seconds_total. */
  readonly cpuSeconds: number;
  /** leader_election_master_status: 1 while it leads, 0 on standby; absent without election. */
  readonly leader: number | undefined;
}

/** What one operator process left behind, read from its log and its scrapes. */
export interface IncarnationReport {
  readonly incarnation: number;
  readonly replica: string;
  /** How it ended: killed by the suite, stopped at the end, or exited by itself (a crash). */
  readonly ended: 'killed' | 'stopped' | 'crashed' | 'running';
  /** Sum of agent_runs_total at its last scrape. */
  readonly lastCounted: number;
  /** Log lines at level error (50) or fatal (60), and lines that are not JSON (stack traces). */
  readonly errorLines: readonly string[];
  /** Warnings other than the "run failed" lines, as `msg (err)`: what a fault looked like. */
  readonly warnings: readonly string[];
  /** runIds of the one "run succeeded|failed|canceled" line per run this process logged. */
  readonly finishedRunIds: readonly string[];
  readonly maxRssBytes: number;
  readonly maxHeapUsedBytes: number;
  /** controller_runtime_reconcile_total (all results) and CPU seconds at its last scrape. */
  readonly reconciles: number;
  readonly cpuSeconds: number;
}

/**
 * The real `agentrun-operator run` command as a child process, restartable: each start is a new
 * incarnation with its own log file and ports. A background loop scrapes /metrics every
 * `scrapeEveryMs`, as Prometheus would, so counters can be compared across restarts.
 */
export class OperatorProcesses {
  readonly scrapes: Scrape[] = [];
  readonly #dir: string;
  readonly #env: Record<string, string>;
  readonly #scrapeEveryMs: number;
  readonly #incarnations: Array<{
    proc: ManagedProcess;
    replica: string;
    metricsPort: number;
    ended: IncarnationReport['ended'];
  }> = [];
  #scraping: Promise<void> | undefined;
  #closed = false;

  constructor(dir: string, env: Record<string, string>, scrapeEveryMs = 250) {
    this.#dir = dir;
    this.#env = env;
    this.#scrapeEveryMs = scrapeEveryMs;
  }

  get count(): number {
    return this.#incarnations.length;
  }

  get current(): ManagedProcess | undefined {
    return this.#incarnations.at(-1)?.proc;
  }

  /**
   * Starts a new incarnation and waits for /readyz; returns when it is ready (ms since epoch).
   * `replica` names the pod it plays (default `a`): several replicas may run at once, and a
   * restart of one continues its counter series, as a container restarted in its pod does.
   * `extraEnv` adds to (or overrides) the environment given to the constructor.
   */
  async start(replica = 'a', extraEnv: Record<string, string> = {}): Promise<number> {
    const healthPort = await freePort();
    const metricsPort = await freePort();
    const n = this.#incarnations.length + 1;
    const proc = ManagedProcess.start({
      name: `operator #${n} (replica ${replica})`,
      command: process.execPath,
      args: [CLI, 'run'],
      logFile: join(this.#dir, `operator-${n}.log`),
      env: {
        ...process.env,
        ...this.#env,
        ...extraEnv,
        HEALTH_PROBE_BIND_ADDRESS: `127.0.0.1:${healthPort}`,
        METRICS_BIND_ADDRESS: `127.0.0.1:${metricsPort}`,
      },
    });
    this.#incarnations.push({ proc, replica, metricsPort, ended: 'running' });
    await waitFor(
      `${proc.name} /readyz`,
      async () => {
        proc.assertRunning();
        const res = await fetch(`http://127.0.0.1:${healthPort}/readyz`);
        return res.status === 200 ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    this.#scraping ??= this.#scrapeLoop();
    return Date.now();
  }

  /**
   * Scrapes once more (so the last sample is as late as possible), then SIGKILLs incarnation `n`
   * (default the newest): no shutdown code runs, like an OOM kill or a node failure.
   */
  async kill(n = this.#incarnations.length): Promise<void> {
    const current = this.#incarnations[n - 1];
    if (!current) return;
    await this.#scrapeOnce().catch(() => {});
    current.proc.assertRunning();
    current.ended = 'killed';
    if (current.proc.pid !== undefined) process.kill(current.proc.pid, 'SIGKILL');
    await waitFor(
      `${current.proc.name} gone`,
      async () => (current.proc.hasExited ? true : undefined),
      {
        intervalMs: 20,
      },
    );
  }

  /** A last scrape, then a clean stop (SIGTERM) of every running incarnation and the scrapes. */
  async stop(): Promise<void> {
    const running = this.#incarnations.filter((inc) => !inc.proc.hasExited);
    await this.#scrapeOnce().catch(() => {});
    for (const inc of running) if (inc.ended === 'running') inc.ended = 'stopped';
    this.#closed = true;
    await this.#scraping;
    await Promise.all(running.map((inc) => inc.proc.stop(15_000)));
  }

  /** The incarnations running now (not exited), by number. */
  running(): number[] {
    return this.#incarnations.flatMap((inc, i) => (inc.proc.hasExited ? [] : [i + 1]));
  }

  /**
   * The incarnation that says it leads (leader_election_master_status 1), asked now; undefined
   * when none does (an election in progress) or on a failed scrape.
   */
  async leader(): Promise<number | undefined> {
    for (const n of this.running()) {
      const inc = this.#incarnations[n - 1];
      if (!inc) continue;
      const text = await fetch(`http://127.0.0.1:${inc.metricsPort}/metrics`, {
        signal: AbortSignal.timeout(2_000),
      })
        .then((r) => r.text())
        .catch(() => '');
      if (parseMetrics(text).leader === 1) return n;
    }
    return undefined;
  }

  /** Which incarnations exited without being killed or stopped by the suite. */
  crashed(): number[] {
    return this.#incarnations
      .map((inc, i) => (inc.ended === 'running' && inc.proc.hasExited ? i + 1 : 0))
      .filter((n) => n > 0);
  }

  reports(): IncarnationReport[] {
    return this.#incarnations.map((inc, i) => {
      const n = i + 1;
      const mine = this.scrapes.filter((s) => s.incarnation === n);
      const last = mine.at(-1);
      const lines = readLines(inc.proc.logFile);
      const errorLines: string[] = [];
      const warnings: string[] = [];
      const finishedRunIds: string[] = [];
      for (const line of lines) {
        let entry: { level?: number | string; msg?: string; runId?: string; err?: unknown };
        try {
          entry = JSON.parse(line) as typeof entry;
        } catch {
          errorLines.push(line);
          continue;
        }
        // The operator logs level labels ("error"); numbers (50) are pino's default.
        const level = levelNumber(entry.level);
        if (level >= 50) errorLines.push(line);
        else if (level === 40 && !entry.msg?.startsWith('run failed')) {
          warnings.push(`${entry.msg} (${JSON.stringify(entry.err ?? null)})`);
        }
        if (entry.runId && /^run (succeeded|failed|canceled):/.test(entry.msg ?? '')) {
          finishedRunIds.push(entry.runId);
        }
      }
      const ended = inc.ended === 'running' && inc.proc.hasExited ? 'crashed' : inc.ended;
      return {
        incarnation: n,
        replica: inc.replica,
        ended,
        lastCounted: last ? sum(last.runsTotal) : 0,
        errorLines,
        warnings,
        finishedRunIds,
        maxRssBytes: Math.max(0, ...mine.map((s) => s.rssBytes)),
        maxHeapUsedBytes: Math.max(0, ...mine.map((s) => s.heapUsedBytes)),
        reconciles: last?.reconciles ?? 0,
        cpuSeconds: last?.cpuSeconds ?? 0,
      };
    });
  }

  /**
   * What Prometheus's increase() over the whole test would read from these scrapes for the sum of
   * agent_runs_total, computed the way Prometheus does per series (a value lower than the one
   * before is a counter reset: the new value counts in full), without extrapolation. The
   * incarnations of one replica are one series per label set, as for a container restarted in
   * its pod; each replica has series of its own (their pod label differs).
   */
  prometheusIncrease(): number {
    const previous = new Map<string, number>();
    let total = 0;
    for (const scrape of this.scrapes) {
      for (const [labels, value] of scrape.runsTotal) {
        const series = `${scrape.replica}|${labels}`;
        const before = previous.get(series);
        if (before !== undefined) total += value >= before ? value - before : value;
        previous.set(series, value);
      }
    }
    return total;
  }

  async #scrapeLoop(): Promise<void> {
    while (!this.#closed) {
      await this.#scrapeOnce().catch(() => {});
      await sleep(this.#scrapeEveryMs);
    }
  }

  async #scrapeOnce(): Promise<void> {
    await Promise.all(
      this.#incarnations.map(async (inc, i) => {
        if (inc.proc.hasExited || inc.ended !== 'running') return;
        const text = await (
          await fetch(`http://127.0.0.1:${inc.metricsPort}/metrics`, {
            signal: AbortSignal.timeout(2_000),
          })
        ).text();
        this.scrapes.push({
          incarnation: i + 1,
          replica: inc.replica,
          at: Date.now(),
          ...parseMetrics(text),
        });
      }),
    );
  }
}

function parseMetrics(text: string): Omit<Scrape, 'incarnation' | 'replica' | 'at'> {
  const runsTotal = new Map<string, number>();
  let leader: number | undefined;
  let rssBytes = 0;
  let heapUsedBytes = 0;
  let reconciles = 0;
  let cpuSeconds = 0;
  for (const line of text.split('\n')) {
    const reconcile = /^controller_runtime_reconcile_total\{.*\} (\S+)$/.exec(line);
    if (reconcile) reconciles += Number(reconcile[1]);
    const lead = /^leader_election_master_status\{.*\} (\S+)$/.exec(line);
    if (lead) leader = Number(lead[1]);
    const cpu = /^process_cpu_seconds_total (\S+)$/.exec(line);
    if (cpu) cpuSeconds = Number(cpu[1]);
    const total = /^agent_runs_total\{(.*)\} (\S+)$/.exec(line);
    if (total) {
      const labels = Object.fromEntries(
        [...(total[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]),
      );
      runsTotal.set(`${labels['agent']}|${labels['status']}`, Number(total[2]));
      continue;
    }
    const rss = /^process_resident_memory_bytes (\S+)$/.exec(line);
    if (rss) rssBytes = Number(rss[1]);
    const heap = /^nodejs_heap_size_used_bytes (\S+)$/.exec(line);
    if (heap) heapUsedBytes = Number(heap[1]);
  }
  return { runsTotal, rssBytes, heapUsedBytes, reconciles, cpuSeconds, leader };
}

const LEVELS: Record<string, number> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
};

function levelNumber(level: number | string | undefined): number {
  if (typeof level === 'number') return level;
  return LEVELS[level ?? ''] ?? 0;
}

function sum(values: ReadonlyMap<string, number>): number {
  let total = 0;
  for (const v of values.values()) total += v;
  return total;
}

function readLines(file: string): string[] {
  try {
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '');
  } catch {
    return [];
  }
}
