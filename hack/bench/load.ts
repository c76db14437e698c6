import { setTimeout as sleep } from 'node:timers/promises';
import type { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import {
  type AgentRun,
  API_VERSION,
  GROUP,
  KIND,
  PLURAL,
  VERSION,
} from '../../src/api/agentrun.ts';
import { AuditReason } from '../../src/api/reasons.ts';
import { runningStatus, terminalStatus, withAudited } from '../../src/controller/run-status.ts';
import { watchPhases } from './watch.ts';

/**
 * The load generator: creates AgentRuns from K concurrent creators, as fast as they go or at a
 * fixed offered rate, and measures from outside, on a watch opened before the first create,
 * with this process's clock: runs/s until every run has finished, and create->Running and
 * create->Succeeded latency. It measures the way the Go peer's load generator does
 * (../shared/peer/go-controller/cmd/loadgen), so the figures compare: the same run spec, the
 * "created" stamp taken just before the create request, "Running" at the first event showing
 * phase Running (or already Succeeded), "Succeeded" at the first event showing it, and the same
 * percentile rule.
 */

export interface Percentiles {
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
}

export interface LoadResult {
  readonly runs: number;
  readonly creators: number;
  /** Offered runs/s; 0: as fast as the creators go (a burst). */
  readonly offeredRate: number;
  readonly succeeded: number;
  /** Runs that ended Failed or Canceled (a noop run should not). */
  readonly failed: number;
  readonly createErrors: number;
  /** Runs seen with phase Pending (marked Queued) on the way. */
  readonly queued: number;
  /** From the first create until every run finished (or the timeout). */
  readonly elapsedS: number;
  /** From the first create until the last create returned. */
  readonly createPhaseS: number;
  /** Succeeded runs / elapsedS. */
  readonly runsPerS: number;
  /** create -> first event with phase Running (or Succeeded), ms. */
  readonly runningMs: Percentiles | undefined;
  /** create -> first event with phase Succeeded, ms. */
  readonly succeededMs: Percentiles | undefined;
  /** True when the timeout ended the wait before every run finished. */
  readonly timedOut: boolean;
}

export interface LoadOptions {
  readonly kc: KubeConfig;
  readonly namespace: string;
  readonly runs: number;
  readonly creators: number;
  /** Offered runs/s; 0 or absent: as fast as the creators go. */
  readonly rate?: number;
  /** Run names are `<prefix>-000000`, `<prefix>-000001`, ... */
  readonly prefix: string;
  /** What "one run" costs the client: a create (an operator does the rest), or the replay. */
  readonly start: (name: string, i: number) => Promise<unknown>;
  readonly timeoutMs?: number;
  /** Rejects when the measurement must stop at once (the operator died). */
  readonly abort?: Promise<never>;
}

interface Stamp {
  readonly created: number;
  running?: number;
  finished?: number;
  phase?: string;
  queued?: boolean;
}

const DEFAULT_TIMEOUT_MS = 10 * 60_000;

export async function drive(options: LoadOptions): Promise<LoadResult> {
  const { runs, creators } = options;
  const rate = options.rate ?? 0;
  const stamps = new Map<string, Stamp>();
  let expected = runs;
  let finished = 0;
  let createErrors = 0;
  let allDone = () => {};
  const done = new Promise<void>((resolve) => {
    allDone = resolve;
  });
  const watch = await watchPhases(options.kc, options.namespace, (name, phase, at) => {
    const stamp = stamps.get(name);
    if (!stamp) return;
    if (phase === 'Pending') stamp.queued = true;
    if ((phase === 'Running' || phase === 'Succeeded') && stamp.running === undefined) {
      stamp.running = at;
    }
    if (stamp.finished === undefined && isFinal(phase)) {
      stamp.finished = at;
      stamp.phase = phase;
      if (++finished === expected) allDone();
    }
  });

  const start = performance.now();
  const intervalMs = rate > 0 ? 1000 / rate : 0;
  let due = start;
  let next = 0;
  await Promise.all(
    Array.from({ length: creators }, async () => {
      while (next < runs) {
        const i = next++;
        if (intervalMs > 0) {
          // A ticker: one create per interval, handed to a free creator. When every creator is
          // busy past its slot the schedule slips rather than catching up in a burst.
          const at = Math.max(due, performance.now());
          due = at + intervalMs;
          const wait = at - performance.now();
          if (wait > 0) await sleep(wait);
        }
        const name = runName(options.prefix, i);
        stamps.set(name, { created: performance.now() });
        try {
          await options.start(name, i);
        } catch (error) {
          stamps.delete(name);
          if (++createErrors <= 5) console.error(`bench: ${name}: ${String(error)}`);
          if (--expected === finished) allDone();
        }
      }
    }),
  );
  const createPhaseS = (performance.now() - start) / 1000;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    done.then(() => false),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), timeoutMs);
    }),
    ...(options.abort ? [options.abort] : []),
  ]).finally(() => {
    clearTimeout(timer);
    watch.stop();
  });
  const elapsedS = (performance.now() - start) / 1000;

  const toRunning: number[] = [];
  const toSucceeded: number[] = [];
  let succeeded = 0;
  let queued = 0;
  for (const stamp of stamps.values()) {
    if (stamp.queued) queued++;
    if (stamp.running !== undefined) toRunning.push(stamp.running - stamp.created);
    if (stamp.phase === 'Succeeded' && stamp.finished !== undefined) {
      succeeded++;
      toSucceeded.push(stamp.finished - stamp.created);
    }
  }
  return {
    runs,
    creators,
    offeredRate: rate,
    succeeded,
    failed: finished - succeeded,
    createErrors,
    queued,
    elapsedS,
    createPhaseS,
    runsPerS: succeeded / elapsedS,
    runningMs: percentiles(toRunning),
    succeededMs: percentiles(toSucceeded),
    timedOut,
  };
}

function isFinal(phase: string | undefined): phase is string {
  return phase === 'Succeeded' || phase === 'Failed' || phase === 'Canceled';
}

export function runName(prefix: string, i: number): string {
  return `${prefix}-${String(i).padStart(6, '0')}`;
}

/** The peer's rule: the value at index floor(p * n), sorted ascending. */
export function percentiles(values: number[]): Percentiles | undefined {
  if (values.length === 0) return undefined;
  const sorted = values.toSorted((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: sorted[sorted.length - 1] ?? 0 };
}

/** Creates one noop run, with the peer's spec: not a dry run, params carrying its number. */
export async function createRun(
  api: CustomObjectsApi,
  namespace: string,
  name: string,
  i: number,
): Promise<AgentRun> {
  return (await api.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: PLURAL,
    body: {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name },
      spec: { agent: 'noop', objective: 'benchmark run', dryRun: false, params: { i } },
    },
  })) as AgentRun;
}

async function writeStatus(api: CustomObjectsApi, run: AgentRun, status: object): Promise<void> {
  await api.patchNamespacedCustomObjectStatus({
    group: GROUP,
    version: VERSION,
    namespace: run.metadata.namespace,
    plural: PLURAL,
    name: run.metadata.name,
    body: [{ op: 'add', path: '/status', value: status }],
  });
}

/** The status the operator leaves on a finished noop run: Succeeded, with Audited if asked. */
function finishedStatus(run: AgentRun, i: number, started: Date, audited: boolean) {
  const running = { ...run, status: runningStatus(run, 1, { i }, started) };
  const now = new Date();
  const status = terminalStatus(
    running,
    { reason: 'Succeeded', message: 'attempt 1 succeeded', artifacts: { i } },
    now,
  );
  return {
    running: running.status,
    finished: audited
      ? withAudited(status, run, AuditReason.Recorded, 'the audit row is committed', now)
      : status,
  };
}

/**
 * The raw replay: the API writes the operator makes for one run (create, Running status, the
 * terminal status), made by a plain client with no operator; the API server's limit.
 */
export async function replayRun(
  api: CustomObjectsApi,
  namespace: string,
  name: string,
  i: number,
  audited: boolean,
): Promise<void> {
  const run = await createRun(api, namespace, name, i);
  const { running, finished } = finishedStatus(run, i, new Date(), audited);
  await writeStatus(api, run, running);
  await writeStatus(api, { ...run, status: running }, finished);
}

/**
 * A run as a previous operator left it: created, then its terminal status (with Audited=True
 * when auditing is on, so an operator starting on it has nothing to do), in two writes.
 */
export async function seedFinishedRun(
  api: CustomObjectsApi,
  namespace: string,
  name: string,
  i: number,
  audited: boolean,
): Promise<void> {
  const run = await createRun(api, namespace, name, i);
  await writeStatus(api, run, finishedStatus(run, i, new Date(), audited).finished);
}

/** Runs `one(i)` for i in [from, to) from `creators` concurrent workers; rejects on a failure. */
export async function pool(
  from: number,
  to: number,
  creators: number,
  one: (i: number) => Promise<unknown>,
): Promise<void> {
  let next = from;
  await Promise.all(
    Array.from({ length: creators }, async () => {
      while (next < to) await one(next++);
    }),
  );
}
