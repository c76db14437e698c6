import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { compileCacheEnv } from '../../src/cli/compile-cache.ts';

/** `make bench`'s knobs, from the environment (docs/performance.md lists them). */

export const BENCHES = ['burst', 'rate', 'mem', 'client'] as const;
export type BenchName = (typeof BENCHES)[number];

export interface Settings {
  /** Runs in the burst, for the operator and again for the replay. */
  readonly runs: number;
  /** Concurrent creators, in every scenario. */
  readonly concurrency: number;
  /** Offered runs/s of the steady scenarios, each with a fresh operator. */
  readonly rates: readonly number[];
  /** Runs per offered rate. */
  readonly rateN: number;
  /** Finished runs present in the scale scenario, ascending (0, the idle baseline, comes first). */
  readonly memN: readonly number[];
  /** Operator starts per size in the scale scenario. */
  readonly restarts: number;
  /** Requests per protocol and round in the client bench. */
  readonly clientRequests: number;
  readonly benches: ReadonlySet<BenchName>;
  /** The product default: every run gets its audit row in a throwaway PostgreSQL. */
  readonly audit: boolean;
  /** Settings handed to the operator as they are (it reads more from the environment). */
  readonly operatorEnv: Readonly<Record<string, string>>;
}

type Env = Readonly<Record<string, string | undefined>>;

export function loadSettings(env: Env = process.env): Settings {
  const problems: string[] = [];
  const int = (key: string, fallback: number, min: number): number => {
    const raw = env[key] ?? '';
    if (raw === '') return fallback;
    const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
    if (!(value >= min)) problems.push(`${key}=${raw}: expected a whole number >= ${min}`);
    return value;
  };
  const list = (key: string, fallback: string, min: number, pattern: RegExp): number[] =>
    words(env[key] ?? fallback).map((word) => {
      const value = pattern.test(word) ? Number(word) : Number.NaN;
      if (!(value >= min)) problems.push(`${key}: "${word}" is not a number >= ${min}`);
      return value;
    });
  const benches = new Set<BenchName>();
  for (const word of words(env['BENCHES'] ?? BENCHES.join(' '))) {
    // The peer's compare.sh calls the burst "throughput".
    const name = word === 'throughput' ? 'burst' : word;
    if ((BENCHES as readonly string[]).includes(name)) benches.add(name as BenchName);
    else problems.push(`BENCHES: unknown bench "${word}" (known: ${BENCHES.join(', ')})`);
  }
  const settings: Settings = {
    runs: int('RUNS', 2000, 1),
    concurrency: int('CONCURRENCY', 32, 1),
    rates: list('RATES', '25 50 100', 0.1, /^\d+(\.\d+)?$/),
    rateN: int('RATE_N', 1000, 1),
    memN: [...new Set([0, ...list('MEM_N', '10000 50000', 1, /^\d+$/)])].sort((a, b) => a - b),
    restarts: int('MEM_RESTARTS', 2, 1),
    clientRequests: int('CLIENT_REQUESTS', 3000, 1),
    benches,
    audit: env['AUDIT'] !== '0',
    operatorEnv: {
      LOG_LEVEL: env['LOG_LEVEL'] ?? 'info',
      MAX_CONCURRENT_RUNS: env['MAX_CONCURRENT_RUNS'] ?? '10',
      QUEUED_STATUS_AFTER_MS: env['QUEUED_STATUS_AFTER_MS'] ?? '2000',
      // V8's sizing as the Deployment ships it, unless OPERATOR_NODE_OPTIONS says otherwise; the
      // bench's own NODE_OPTIONS (e.g. --cpu-prof) is added to it.
      NODE_OPTIONS: [env['OPERATOR_NODE_OPTIONS'] ?? deployedNodeOptions(), env['NODE_OPTIONS']]
        .filter(Boolean)
        .join(' '),
      // The image runs compiled JavaScript; from the sources, the compile cache (warmed before the
      // first start) spares each operator the type stripper's ~24 MiB, so the figures are the
      // image's. NODE_DISABLE_COMPILE_CACHE=1 measures a stripping start.
      ...pick(compileCacheEnv(env), 'NODE_COMPILE_CACHE'),
    },
  };
  if (problems.length > 0) throw new SettingsError(problems);
  return settings;
}

function pick(env: NodeJS.ProcessEnv, name: string): Record<string, string> {
  const value = env[name];
  return value ? { [name]: value } : {};
}

function words(value: string): string[] {
  return value.split(/[\s,]+/).filter(Boolean);
}

/** Bad knobs: said in a few lines, without a stack trace. */
export class SettingsError extends Error {
  constructor(problems: readonly string[]) {
    super(`bench settings:\n  ${problems.join('\n  ')}`);
    this.name = 'SettingsError';
  }
}

const MANAGER_YAML = join(import.meta.dirname, '../../deploy/manager/manager.yaml');

/** NODE_OPTIONS of the manager container in deploy/manager/manager.yaml ('' when it has none). */
export function deployedNodeOptions(path = MANAGER_YAML): string {
  const deployment = parse(readFileSync(path, 'utf8')) as {
    spec?: { template?: { spec?: { containers?: { name?: string; env?: unknown[] }[] } } };
  };
  const manager = deployment.spec?.template?.spec?.containers?.find((c) => c.name === 'manager');
  for (const entry of manager?.env ?? []) {
    const { name, value } = (entry ?? {}) as { name?: unknown; value?: unknown };
    if (name === 'NODE_OPTIONS' && typeof value === 'string') return value;
  }
  return '';
}
