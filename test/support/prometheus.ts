import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { freePort } from './ports.ts';
import { toolPath } from './tools.ts';
import { waitFor } from './wait.ts';

export type Sample = { metric: Record<string, string>; value: [number, string] };

/** A real Prometheus server ($PROMETHEUS, which make exports) with its own temp directory. */
export class PrometheusServer {
  readonly port: number;
  /** Files written next to its configuration (rule files, tokens) go here. */
  readonly dir: string;
  readonly #process: ChildProcess;

  private constructor(port: number, dir: string, process: ChildProcess) {
    this.port = port;
    this.dir = dir;
    this.#process = process;
  }

  /**
   * Starts Prometheus with `config` (prometheus.yml as an object; `files` are written to its
   * directory first, named relative to it) and waits until it answers queries.
   */
  static async start(
    config: (dir: string) => object,
    files: Record<string, string> = {},
  ): Promise<PrometheusServer> {
    const binary = toolPath('PROMETHEUS');
    const dir = mkdtempSync(join(tmpdir(), 'agentrun-prometheus-'));
    for (const [name, content] of Object.entries(files)) {
      writeFileSync(join(dir, name), content, { mode: 0o600 });
    }
    writeFileSync(join(dir, 'prometheus.yml'), stringify(config(dir)));
    const port = await freePort();
    const child = spawn(
      binary,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: 'ignore' },
    );
    let failure: Error | undefined;
    child.once('error', (error) => {
      failure = new Error(`could not start ${binary} (run 'make tools'): ${error.message}`);
    });
    const server = new PrometheusServer(port, dir, child);
    try {
      await waitFor(
        'Prometheus to answer',
        async () => {
          if (failure) throw failure;
          if (child.exitCode !== null) throw new Error(`prometheus exited ${child.exitCode}`);
          return (await server.query('vector(1)').catch(() => undefined)) ? true : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 200 },
      );
    } catch (error) {
      await server.stop();
      throw error;
    }
    return server;
  }

  /** A GET of the HTTP API; throws unless it answers success. */
  async api<T>(path: string): Promise<T> {
    const body = (await (await fetch(`http://127.0.0.1:${this.port}/api/v1/${path}`)).json()) as {
      status: string;
      error?: string;
      data: T;
    };
    if (body.status !== 'success') throw new Error(`${path}: ${body.error ?? body.status}`);
    return body.data;
  }

  /** An instant query. */
  async query(expr: string): Promise<Sample[]> {
    return (await this.api<{ result: Sample[] }>(`query?query=${encodeURIComponent(expr)}`)).result;
  }

  /** The first sample's value, or undefined for an empty result. */
  async scalar(expr: string): Promise<number | undefined> {
    const [first] = await this.query(expr);
    return first ? Number(first.value[1]) : undefined;
  }

  async stop(): Promise<void> {
    const child = this.#process;
    // No pid: it never started, and no exit event may come.
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((done) => child.once('exit', done));
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
