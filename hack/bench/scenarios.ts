import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { createNamespace } from '../../test/support/kube.ts';
import {
  createRun,
  drive,
  type LoadResult,
  pool,
  replayRun,
  runName,
  seedFinishedRun,
} from './load.ts';
import { type MemoryUsage, OperatorProcess, type Sample, sum } from './operator-process.ts';
import { cpuMs, mib, RssSampler, rss } from './process-stats.ts';
import type { Settings } from './settings.ts';

/** What every scenario needs: the cluster, the database and where the operator logs go. */
export interface BenchContext {
  readonly settings: Settings;
  readonly kc: KubeConfig;
  readonly api: CustomObjectsApi;
  /** The kubeconfig file the operator process reads. */
  readonly kubeconfig: string;
  readonly databaseUrl: string | undefined;
  readonly logDir: string;
}

/** The operator under one load: what the load generator saw and what the process cost. */
export interface OperatorLoad {
  readonly load: LoadResult;
  /** From spawning the operator to /readyz 200 (empty namespace). */
  readonly readyMs: number;
  /** Operator CPU (user + system) during the load / runs, ms (the warm-up excluded). */
  readonly cpuMsPerRun: number;
  /** The process's peak RSS (VmHWM: start-up, warm-up and load), MiB: the peer's figure. */
  readonly peakRssMiB: number;
  /** The largest RSS sampled every 250 ms during the load alone, MiB. */
  readonly loadPeakRssMiB: number;
  /** Right after the last run finished (not settled), MiB. */
  readonly rssAfterMiB: number;
  /** nodejs_heap_size_used_bytes right after the last run finished, MiB. */
  readonly heapUsedAfterMiB: number;
}

export interface BurstResult {
  readonly operator: OperatorLoad;
  readonly replay: LoadResult;
  /** operator runs/s / replay runs/s. */
  readonly e: number;
}

export interface MemPoint {
  /** Finished AgentRuns in the watched namespace. */
  readonly runs: number;
  /** Which start of the operator on them (1, 2, ...). */
  readonly start: number;
  /** From spawning the process to /readyz 200: its cache has listed and synced every run. */
  readonly readyMs: number;
  /** CPU used until ready, ms. */
  readonly cpuMsToReady: number;
  readonly rssAtReadyMiB: number;
  /** How long until the process was idle (< 2% of a core over 2 s), after ready. */
  readonly quietAfterMs: number;
  /** CPU used from start until idle, ms (every cached run is reconciled once at start-up). */
  readonly cpuMsToIdle: number;
  /** RSS once idle plus SETTLE_MS: what a dashboard shows for an idle operator. */
  readonly idleRssMiB: number;
  /** VmHWM: the peak over start-up and sync, what a memory limit must allow. */
  readonly peakRssMiB: number;
  /** nodejs_heap_size_used_bytes when idle: live objects plus garbage not yet collected. */
  readonly heapUsedMiB: number;
  readonly heapTotalMiB: number;
  /** process.memoryUsage() right after a full GC: the live heap. */
  readonly afterGc: MemoryUsage;
  /** Create/update/patch/delete requests the operator made since it started (expected: 0). */
  readonly apiWrites: number;
}

export interface MemResult {
  /** Whether auditing was on for the operator (and the seeded runs carry Audited=True). */
  readonly audit: boolean;
  /** How long seeding took to reach each size (create + terminal status per run). */
  readonly seeding: readonly { readonly runs: number; readonly seconds: number }[];
  readonly points: readonly MemPoint[];
  /** Per size: (value with N runs - value with none) / N, means over the starts, KiB per run. */
  readonly perRun: readonly {
    readonly runs: number;
    readonly liveHeapKiB: number;
    readonly heapUsedKiB: number;
    readonly idleRssKiB: number;
  }[];
}

/** Idle time after the operator went quiet before memory is read (the peer waits 10 s too). */
const SETTLE_MS = 10_000;
const WARM_UP_RUNS = 50;
const WARM_UP_CREATORS = 8;

function say(message: string): void {
  console.error(`bench: ${message}`);
}

function operatorEnv(ctx: BenchContext): Record<string, string> {
  return {
    ...ctx.settings.operatorEnv,
    APPLYLENS_AGENT_AUDIT_ENABLED: String(ctx.settings.audit),
    ...(ctx.databaseUrl ? { DATABASE_URL: ctx.databaseUrl } : {}),
  };
}

async function startOperator(
  ctx: BenchContext,
  namespace: string,
  label: string,
): Promise<OperatorProcess> {
  return OperatorProcess.start({
    kubeconfig: ctx.kubeconfig,
    namespace,
    env: operatorEnv(ctx),
    logFile: join(ctx.logDir, `operator-${label}.log`),
  });
}

/** A few runs first, so the JIT, connections and the API server's watch cache are warm. */
async function warmUp(
  ctx: BenchContext,
  namespace: string,
  start: (name: string, i: number) => Promise<unknown>,
  abort?: Promise<never>,
): Promise<void> {
  const result = await drive({
    kc: ctx.kc,
    namespace,
    runs: WARM_UP_RUNS,
    creators: WARM_UP_CREATORS,
    prefix: 'warm',
    start,
    timeoutMs: 120_000,
    ...(abort ? { abort } : {}),
  });
  if (result.succeeded !== WARM_UP_RUNS) {
    throw new Error(`warm-up: ${result.succeeded} of ${WARM_UP_RUNS} runs succeeded`);
  }
}

/** A fresh operator on a fresh namespace under `runs` creates, as fast as possible or at `rate`. */
export async function operatorUnderLoad(
  ctx: BenchContext,
  label: string,
  runs: number,
  rate = 0,
): Promise<OperatorLoad> {
  const namespace = await createNamespace(ctx.kc, `bench-${label}`);
  const operator = await startOperator(ctx, namespace, label);
  try {
    const { readyMs } = await operator.waitReady();
    await warmUp(
      ctx,
      namespace,
      (name, i) => createRun(ctx.api, namespace, name, i),
      operator.died,
    );
    say(`${label}: operator ready in ${(readyMs / 1000).toFixed(1)} s, warmed up; ${runs} runs`);
    const cpuBefore = cpuMs(operator.pid);
    const sampler = new RssSampler(operator.pid);
    const load = await drive({
      kc: ctx.kc,
      namespace,
      runs,
      creators: ctx.settings.concurrency,
      rate,
      prefix: 'r',
      start: (name, i) => createRun(ctx.api, namespace, name, i),
      abort: operator.died,
    });
    const cpuMsPerRun = (cpuMs(operator.pid) - cpuBefore) / runs;
    const loadPeakRssMiB = sampler.stop();
    const after = rss(operator.pid);
    const metrics = await operator.metrics();
    return {
      load,
      readyMs,
      cpuMsPerRun,
      peakRssMiB: after.hwmMiB,
      loadPeakRssMiB,
      rssAfterMiB: after.rssMiB,
      heapUsedAfterMiB: mib(sum(metrics, 'nodejs_heap_size_used_bytes')),
    };
  } finally {
    await operator.stop();
  }
}

/** The burst: RUNS creates from CONCURRENCY creators with the operator, then the replay. */
export async function burst(ctx: BenchContext): Promise<BurstResult> {
  const { runs, concurrency, audit } = ctx.settings;
  const operator = await operatorUnderLoad(ctx, 'burst', runs);
  say(`burst: operator ${operator.load.runsPerS.toFixed(1)} runs/s; now the replay`);
  const namespace = await createNamespace(ctx.kc, 'bench-replay');
  const one = (name: string, i: number) => replayRun(ctx.api, namespace, name, i, audit);
  await warmUp(ctx, namespace, one);
  const replay = await drive({
    kc: ctx.kc,
    namespace,
    runs,
    creators: concurrency,
    prefix: 'r',
    start: one,
  });
  say(`burst: replay ${replay.runsPerS.toFixed(1)} runs/s`);
  return { operator, replay, e: operator.load.runsPerS / replay.runsPerS };
}

/** One steady offered rate with a fresh operator. */
export function steady(ctx: BenchContext, rate: number): Promise<OperatorLoad> {
  return operatorUnderLoad(ctx, `rate-${rate}`, ctx.settings.rateN, rate);
}

/**
 * The scale scenario: the namespace is filled with finished runs (written directly, as a
 * previous operator would have left them: terminal status, Audited=True when auditing is on, so
 * the operator has nothing to do for them), and the operator is started on it MEM_RESTARTS times
 * per size, the first size being none at all (the idle baseline).
 */
export async function memory(ctx: BenchContext): Promise<MemResult> {
  const { memN, restarts, concurrency, audit } = ctx.settings;
  const namespace = await createNamespace(ctx.kc, 'bench-mem');
  const seeding: { runs: number; seconds: number }[] = [];
  const points: MemPoint[] = [];
  let present = 0;
  for (const target of memN) {
    if (target > present) {
      say(`mem: writing ${target - present} finished runs (${present} -> ${target})`);
      const started = performance.now();
      let written = 0;
      await pool(present, target, concurrency, async (i) => {
        await seedFinishedRun(ctx.api, namespace, runName('m', i), i, audit);
        if (++written % 5000 === 0) say(`mem: ${present + written} of ${target}`);
      });
      seeding.push({ runs: target, seconds: (performance.now() - started) / 1000 });
      present = target;
    }
    for (let start = 1; start <= restarts; start++) {
      const point = await idleOperator(ctx, namespace, present, start);
      say(
        `mem: ${present} runs, start ${start}: ready in ${(point.readyMs / 1000).toFixed(1)} s, idle RSS ${point.idleRssMiB.toFixed(0)} MiB, live heap ${mib(point.afterGc.heapUsed).toFixed(1)} MiB`,
      );
      points.push(point);
    }
  }
  return { audit, seeding, points, perRun: perRun(points) };
}

async function idleOperator(
  ctx: BenchContext,
  namespace: string,
  runs: number,
  start: number,
): Promise<MemPoint> {
  const operator = await startOperator(ctx, namespace, `mem-${runs}-${start}`);
  try {
    const ready = await operator.waitReady();
    const quietAfterMs = await operator.waitQuiet();
    const cpuMsToIdle = cpuMs(operator.pid);
    await Promise.race([sleep(SETTLE_MS), operator.died]);
    const idle = rss(operator.pid);
    const metrics = await operator.metrics();
    const afterGc = await operator.memoryAfterGc();
    return {
      runs,
      start,
      readyMs: ready.readyMs,
      cpuMsToReady: ready.cpuMs,
      rssAtReadyMiB: ready.rss.rssMiB,
      quietAfterMs,
      cpuMsToIdle,
      idleRssMiB: idle.rssMiB,
      peakRssMiB: idle.hwmMiB,
      heapUsedMiB: mib(sum(metrics, 'nodejs_heap_size_used_bytes')),
      heapTotalMiB: mib(sum(metrics, 'nodejs_heap_size_total_bytes')),
      afterGc,
      apiWrites: writes(metrics),
    };
  } finally {
    await operator.stop();
  }
}

const WRITE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Write requests by the operator so far; NaN if it reports no requests at all. */
function writes(metrics: readonly Sample[]): number {
  if (!metrics.some((s) => s.name === 'rest_client_requests_total')) return Number.NaN;
  const total = sum(metrics, 'rest_client_requests_total', (l) =>
    WRITE_METHODS.has((l['method'] ?? '').toUpperCase()),
  );
  return Number.isNaN(total) ? 0 : total;
}

function perRun(points: readonly MemPoint[]): MemResult['perRun'] {
  const mean = (runs: number, value: (p: MemPoint) => number) => {
    const values = points.filter((p) => p.runs === runs).map(value);
    return values.reduce((a, b) => a + b, 0) / values.length;
  };
  const sizes = [...new Set(points.map((p) => p.runs))].filter((n) => n > 0);
  const perRunKiB = (runs: number, value: (p: MemPoint) => number) =>
    ((mean(runs, value) - mean(0, value)) / runs) * 1024;
  return sizes.map((runs) => ({
    runs,
    liveHeapKiB: perRunKiB(runs, (p) => mib(p.afterGc.heapUsed)),
    heapUsedKiB: perRunKiB(runs, (p) => p.heapUsedMiB),
    idleRssKiB: perRunKiB(runs, (p) => p.idleRssMiB),
  }));
}
