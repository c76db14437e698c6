import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { freePort } from '../../test/support/ports.ts';
import { cpuMs, type Rss, rss } from './process-stats.ts';

const root = join(import.meta.dirname, '../..');

export interface OperatorOptions {
  readonly kubeconfig: string;
  readonly namespace: string;
  /** The operator's own settings (APPLYLENS_AGENT_AUDIT_ENABLED, DATABASE_URL, ...). */
  readonly env: Readonly<Record<string, string>>;
  /** Receives the operator's stdout and stderr, as a container's log would. */
  readonly logFile: string;
}

/**
 * Fills Node's compile cache (when `env` names one) with every module `run` loads, so the first
 * operator the bench starts reads them from it like the later ones: no start pays for type
 * stripping, as none does in the image.
 */
export function warmCompileCache(env: Readonly<Record<string, string>>): void {
  if (!env['NODE_COMPILE_CACHE']) return;
  const operator = pathToFileURL(join(root, 'src/operator.ts')).href;
  const options = { env: { ...process.env, ...env }, stdio: 'ignore' } as const;
  spawnSync(process.execPath, [join(root, 'src/cli/main.ts'), 'version'], options);
  spawnSync(
    process.execPath,
    ['--input-type=module', '-e', `await import('${operator}')`],
    options,
  );
}

/** One Prometheus sample. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** process.memoryUsage() of the operator, in bytes. */
export interface MemoryUsage {
  readonly rss: number;
  readonly heapTotal: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
}

export interface Readiness {
  /** From spawning the process to the first 200 from /readyz (its cache has synced), ms. */
  readonly readyMs: number;
  /** CPU the process used until then, ms. */
  readonly cpuMs: number;
  readonly rss: Rss;
}

/**
 * The real operator CLI (`node src/cli/main.ts run`) as a child process, as it runs in a
 * container: its health probes and metrics on loopback ports of their own (both on by default in
 * the product), its log in a file. Observed from outside: CPU and RSS from /proc, readiness from
 * /readyz, the V8 heap from its Prometheus metrics (prom-client's nodejs_heap_size_used_bytes),
 * and, on request, process.memoryUsage() after a full garbage collection through the inspector
 * (activated by SIGUSR1 on a port chosen at start; nothing listens until then).
 */
export class OperatorProcess {
  readonly pid: number;
  /** Rejects if the process exits before stop() is called. */
  readonly died: Promise<never>;
  readonly #child: ChildProcess;
  readonly #exited: Promise<void>;
  readonly #startedAt: number;
  readonly #healthPort: number;
  readonly #metricsPort: number;
  readonly #inspectorPort: number;
  #stopping = false;

  private constructor(
    child: ChildProcess,
    startedAt: number,
    ports: { health: number; metrics: number; inspector: number },
  ) {
    if (child.pid === undefined) throw new Error('the operator process did not start');
    this.pid = child.pid;
    this.#child = child;
    this.#startedAt = startedAt;
    this.#healthPort = ports.health;
    this.#metricsPort = ports.metrics;
    this.#inspectorPort = ports.inspector;
    this.#exited = new Promise((resolve) => child.once('exit', () => resolve()));
    this.died = this.#exited.then(() => {
      throw new Error(`the operator exited (code ${child.exitCode}, signal ${child.signalCode})`);
    });
    // Only a failure before stop() matters; without this an unobserved rejection ends the bench.
    this.died.catch(() => {});
  }

  static async start(options: OperatorOptions): Promise<OperatorProcess> {
    const ports = {
      health: await freePort(),
      metrics: await freePort(),
      inspector: await freePort(),
    };
    const log = openSync(options.logFile, 'a');
    try {
      const startedAt = performance.now();
      const child = spawn(
        process.execPath,
        [`--inspect-port=127.0.0.1:${ports.inspector}`, join(root, 'src/cli/main.ts'), 'run'],
        {
          env: {
            ...process.env,
            ...options.env,
            KUBECONFIG: options.kubeconfig,
            WATCH_NAMESPACE: options.namespace,
            HEALTH_PROBE_BIND_ADDRESS: `127.0.0.1:${ports.health}`,
            METRICS_BIND_ADDRESS: `127.0.0.1:${ports.metrics}`,
            // The heap figures come from /metrics: on, plain HTTP, on loopback.
            APPLYLENS_AGENT_METRICS_ENABLED: 'true',
            METRICS_SECURE: 'false',
          },
          stdio: ['ignore', log, log],
        },
      );
      const operator = new OperatorProcess(child, startedAt, ports);
      // If the bench dies, the operator must not outlive it (its API server is gone then too).
      const kill = () => child.kill('SIGKILL');
      process.once('exit', kill);
      void operator.#exited.then(() => process.off('exit', kill));
      return operator;
    } finally {
      closeSync(log);
    }
  }

  /** Waits for /readyz to answer 200 (polling every 25 ms) and says how long it took. */
  async waitReady(timeoutMs = 10 * 60_000): Promise<Readiness> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (await this.#ok(`http://127.0.0.1:${this.#healthPort}/readyz`)) {
        return {
          readyMs: performance.now() - this.#startedAt,
          cpuMs: cpuMs(this.pid),
          rss: rss(this.pid),
        };
      }
      if (this.#child.exitCode !== null || this.#child.signalCode !== null) await this.died;
      if (performance.now() > deadline) {
        throw new Error(`the operator was not ready after ${timeoutMs} ms`);
      }
      await sleep(25);
    }
  }

  async #ok(url: string): Promise<boolean> {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      return res.ok;
    } catch {
      return false;
    }
  }

  /** The operator's /metrics, parsed. */
  async metrics(): Promise<Sample[]> {
    const res = await fetch(`http://127.0.0.1:${this.#metricsPort}/metrics`, {
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) throw new Error(`GET /metrics answered ${res.status}`);
    return parsePrometheus(await res.text());
  }

  /**
   * Waits until the process is idle: less than 2% of a core over 2 s (the peer's rule), at most
   * `timeoutMs`. Resolves how long it waited, ms.
   */
  async waitQuiet(timeoutMs = 120_000): Promise<number> {
    const start = performance.now();
    let before = cpuMs(this.pid);
    while (performance.now() - start < timeoutMs) {
      await Promise.race([sleep(2_000), this.died]);
      const now = cpuMs(this.pid);
      if (now - before < 40) break;
      before = now;
    }
    return performance.now() - start;
  }

  /**
   * process.memoryUsage() right after a full garbage collection, through the inspector protocol
   * (HeapProfiler.collectGarbage, then Runtime.evaluate). The inspector stays on afterwards, so
   * call this last, before stop().
   */
  async memoryAfterGc(): Promise<MemoryUsage> {
    this.#child.kill('SIGUSR1');
    const base = `http://127.0.0.1:${this.#inspectorPort}`;
    let target: string | undefined;
    for (let i = 0; i < 100 && !target; i++) {
      try {
        const res = await fetch(`${base}/json/list`, { signal: AbortSignal.timeout(2_000) });
        const list = (await res.json()) as { webSocketDebuggerUrl?: string }[];
        target = list[0]?.webSocketDebuggerUrl;
      } catch {
        // Not listening yet.
      }
      if (!target) await sleep(50);
    }
    if (!target) throw new Error(`the operator's inspector did not answer on ${base}`);
    const session = await InspectorSession.open(target);
    try {
      await session.call('HeapProfiler.collectGarbage');
      const reply = await session.call('Runtime.evaluate', {
        expression: 'JSON.stringify(process.memoryUsage())',
        returnByValue: true,
      });
      const value = (reply as { result?: { value?: unknown } }).result?.value;
      if (typeof value !== 'string') throw new Error('process.memoryUsage() gave no answer');
      return JSON.parse(value) as MemoryUsage;
    } finally {
      session.close();
    }
  }

  /** SIGTERM, as the kubelet stops a pod; SIGKILL after 30 s. */
  async stop(): Promise<void> {
    if (this.#stopping) return this.#exited;
    this.#stopping = true;
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return;
    this.#child.kill('SIGTERM');
    const killer = setTimeout(() => this.#child.kill('SIGKILL'), 30_000);
    await this.#exited;
    clearTimeout(killer);
  }
}

/** A minimal Chrome DevTools Protocol client over the WebSocket Node ships. */
class InspectorSession {
  readonly #socket: WebSocket;
  readonly #pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  #nextId = 1;

  private constructor(socket: WebSocket) {
    this.#socket = socket;
    socket.addEventListener('message', (event) => {
      if (typeof event.data !== 'string') return;
      const message = JSON.parse(event.data) as {
        id?: number;
        result?: unknown;
        error?: { message?: string };
      };
      const waiter = message.id === undefined ? undefined : this.#pending.get(message.id);
      if (!waiter || message.id === undefined) return;
      this.#pending.delete(message.id);
      if (message.error) waiter.reject(new Error(message.error.message ?? 'inspector error'));
      else waiter.resolve(message.result);
    });
    socket.addEventListener('close', () => {
      for (const waiter of this.#pending.values()) waiter.reject(new Error('inspector closed'));
      this.#pending.clear();
    });
  }

  static open(url: string): Promise<InspectorSession> {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(url);
      socket.addEventListener('open', () => resolve(new InspectorSession(socket)), { once: true });
      socket.addEventListener('error', () => reject(new Error(`cannot connect to ${url}`)), {
        once: true,
      });
    });
  }

  call(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#socket.send(JSON.stringify({ id, method, params }));
    });
  }

  close(): void {
    this.#socket.close();
  }
}

/** Parses the Prometheus text exposition format (samples only; comments skipped). */
export function parsePrometheus(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match?.[1] || match[3] === undefined) continue;
    const labels: Record<string, string> = {};
    for (const label of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      if (label[1] !== undefined) labels[label[1]] = label[2] ?? '';
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

/** The sum of a metric's samples whose labels pass `where`; NaN when it has none. */
export function sum(
  samples: readonly Sample[],
  name: string,
  where: (labels: Readonly<Record<string, string>>) => boolean = () => true,
): number {
  const matching = samples.filter((s) => s.name === name && where(s.labels));
  return matching.length === 0 ? Number.NaN : matching.reduce((total, s) => total + s.value, 0);
}
