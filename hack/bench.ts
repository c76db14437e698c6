// `make bench`: AgentRun throughput on this machine. Starts a local control plane, runs the real
// operator (the CLI, as a child process), creates RUNS noop AgentRuns as fast as CONCURRENCY
// clients can, and measures runs/s from the first create to the last Succeeded. Then a "replay"
// baseline: a plain client that makes the same API writes per run (create + Running status +
// terminal status) with no operator. E = operator runs/s / replay runs/s says how much of what
// the API server can do the operator achieves. Prints figures; asserts nothing.
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { CustomObjectsApi, type KubeConfig, Watch } from '@kubernetes/client-node';
import { type AgentRun, API_VERSION, GROUP, KIND, PLURAL, VERSION } from '../src/api/agentrun.ts';
import { runningStatus, terminalStatus } from '../src/controller/run-status.ts';
import { PooledKubeConfig } from '../src/kube/pooled-kube-config.ts';
import { installCrd } from '../test/support/crds.ts';
import { ControlPlane } from '../test/support/envtest/control-plane.ts';
import { adminKubeConfig } from '../test/support/envtest/users.ts';
import { createNamespace } from '../test/support/kube.ts';
import { PostgresServer } from '../test/support/postgres/server.ts';

const RUNS = Number(process.env['RUNS'] ?? 2000);
// The product's default: every run gets its audit row (AUDIT=0 measures without).
const AUDIT = process.env['AUDIT'] !== '0';
const CONCURRENCY = Number(process.env['CONCURRENCY'] ?? 32);
const root = resolve(import.meta.dirname, '..');
/** USER_HZ, the unit of /proc/PID/stat's times: 100 on every Linux architecture Node runs on. */
const CLOCK_TICKS_PER_SECOND = 100;

const plane = await ControlPlane.start();
const postgres = AUDIT ? await PostgresServer.start() : undefined;
try {
  // The load generator pools its connections too, as any sensible client would.
  const kc = PooledKubeConfig.from(adminKubeConfig(plane.info));
  await installCrd(plane.info);
  const api = kc.makeApiClient(CustomObjectsApi);

  const opNamespace = await createNamespace(kc, 'bench-operator');
  // The operator logs at its production level (a line per finished run) into a file, as a
  // container's stdout would be collected, so the benchmark pays what production pays.
  mkdirSync(join(root, '.reports'), { recursive: true });
  const logFile = join(root, '.reports/bench-operator.log');
  const log = openSync(logFile, 'w');
  const operator = spawn(process.execPath, [join(root, 'src/cli/main.ts'), 'run'], {
    env: {
      ...process.env,
      KUBECONFIG: plane.info.adminKubeconfig,
      WATCH_NAMESPACE: opNamespace,
      HEALTH_PROBE_BIND_ADDRESS: '0',
      LOG_LEVEL: process.env['LOG_LEVEL'] ?? 'info',
      MAX_CONCURRENT_RUNS: process.env['MAX_CONCURRENT_RUNS'] ?? '10',
      METRICS_BIND_ADDRESS: '0',
      APPLYLENS_AGENT_AUDIT_ENABLED: String(AUDIT),
      ...(postgres ? { DATABASE_URL: postgres.url() } : {}),
    },
    stdio: ['ignore', log, 'inherit'],
  });
  try {
    await warmUp(api, kc, opNamespace);
    const cpuBefore = cpuMs(operator.pid);
    const op = await measure('operator', kc, opNamespace, (name) => create(api, opNamespace, name));
    const cpuPerRun = (cpuMs(operator.pid) - cpuBefore) / RUNS;

    const replayNamespace = await createNamespace(kc, 'bench-replay');
    await warmUp(api, kc, replayNamespace, true);
    const replay = await measure('replay', kc, replayNamespace, async (name) => {
      const run = await create(api, replayNamespace, name);
      const running = runningStatus(run, 1, {}, new Date());
      await writeStatus(api, run, running);
      await writeStatus(
        api,
        { ...run, status: running },
        terminalStatus(
          { ...run, status: running },
          { reason: 'Succeeded', message: 'attempt 1 succeeded (dry run)', artifacts: {} },
          new Date(),
        ),
      );
    });

    console.log(
      `\nRUNS=${RUNS} CONCURRENCY=${CONCURRENCY} AUDIT=${AUDIT ? 1 : 0} MAX_CONCURRENT_RUNS=${process.env['MAX_CONCURRENT_RUNS'] ?? '10'} on ${(await import('node:os')).cpus().length} cores`,
    );
    console.log(
      `operator: ${op.rate.toFixed(1)} runs/s; ${op.queued} of ${RUNS} runs waited long enough for a slot to be marked Queued (QUEUED_STATUS_AFTER_MS=${process.env['QUEUED_STATUS_AFTER_MS'] ?? '2000'})`,
    );
    console.log(`replay:   ${replay.rate.toFixed(1)} runs/s (same writes, no operator)`);
    console.log(`E = ${(op.rate / replay.rate).toFixed(2)}`);
    if (Number.isFinite(cpuPerRun)) {
      console.log(`operator CPU: ${cpuPerRun.toFixed(2)} ms per run (user + system)`);
    }
    const lines = readFileSync(logFile, 'utf8').split('\n').filter(Boolean).length;
    console.log(
      `operator log: ${lines} lines at LOG_LEVEL=${process.env['LOG_LEVEL'] ?? 'info'} (${logFile})`,
    );
  } finally {
    operator.kill('SIGTERM');
    await new Promise((done) => operator.once('exit', done));
  }
} finally {
  await plane.stop();
  await postgres?.destroy();
}

async function create(api: CustomObjectsApi, namespace: string, name: string): Promise<AgentRun> {
  return (await api.createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: PLURAL,
    body: {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name },
      spec: { agent: 'noop', objective: 'benchmark' },
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

/** A few runs first, so watch caches, connections and the JIT are warm for both contenders. */
async function warmUp(api: CustomObjectsApi, kc: KubeConfig, namespace: string, replay = false) {
  const names = Array.from({ length: 20 }, (_, i) => `warm-${i}`);
  const done = succeeded(kc, namespace, new Set(names));
  await Promise.all(
    names.map(async (name) => {
      const run = await create(api, namespace, name);
      if (replay) {
        await writeStatus(
          api,
          run,
          terminalStatus(run, { reason: 'Succeeded', message: 'warm' }, new Date()),
        );
      }
    }),
  );
  await done;
}

/**
 * Creates RUNS runs with CONCURRENCY workers; once all have Succeeded, resolves runs/s and how
 * many runs were seen Pending (Queued) on the way.
 */
async function measure(
  label: string,
  kc: KubeConfig,
  namespace: string,
  one: (name: string) => Promise<unknown>,
): Promise<{ rate: number; queued: number }> {
  const names = Array.from({ length: RUNS }, (_, i) => `run-${i}`);
  const done = succeeded(kc, namespace, new Set(names));
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < names.length) {
        const name = names[next++] as string;
        await one(name);
      }
    }),
  );
  const created = performance.now();
  const queued = await done;
  const end = performance.now();
  console.log(
    `${label}: created ${RUNS} in ${((created - start) / 1000).toFixed(1)} s, all Succeeded after ${((end - start) / 1000).toFixed(1)} s`,
  );
  return { rate: RUNS / ((end - start) / 1000), queued };
}

/** CPU time (user + system) a process has used, from /proc; NaN where there is no /proc. */
function cpuMs(pid: number | undefined): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces) start at field 3 (state).
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15)
    return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}

/**
 * Resolves when every named run has been seen with phase Succeeded on a watch, with the number
 * of them seen Pending before.
 */
async function succeeded(kc: KubeConfig, namespace: string, names: Set<string>): Promise<number> {
  const remaining = new Set(names);
  const pending = new Set<string>();
  return new Promise<number>((resolveAll, reject) => {
    let controller: AbortController | undefined;
    const open = () =>
      new Watch(kc)
        .watch(
          `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`,
          {},
          (_type, obj: AgentRun) => {
            if (obj.status?.phase === 'Pending') pending.add(obj.metadata.name);
            if (
              obj.status?.phase === 'Succeeded' &&
              remaining.delete(obj.metadata.name) &&
              remaining.size === 0
            ) {
              controller?.abort();
              resolveAll(pending.size);
            }
          },
          (error: unknown) => {
            if (remaining.size > 0) {
              if (error) setTimeout(open, 200);
              else open();
            }
          },
        )
        .then((c) => {
          controller = c;
        }, reject);
    open();
  });
}
