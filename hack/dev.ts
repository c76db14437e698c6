// `make dev`: the whole product on one machine. A local control plane (real kube-apiserver +
// etcd), a throwaway PostgreSQL unless DATABASE_URL is set, the CRD, the operator (the real CLI,
// as a child process), and the samples from deploy/samples; then it shows `kubectl get
// agentruns` and keeps everything running until Ctrl-C.
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, openSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { installCrd } from '../test/support/crds.ts';
import { ControlPlane } from '../test/support/envtest/control-plane.ts';
import { PostgresServer } from '../test/support/postgres/server.ts';
import { waitFor } from '../test/support/wait.ts';

const run = promisify(execFile);
const root = resolve(import.meta.dirname, '..');
const devDir = resolve(process.env['DEV_DIR'] ?? join(root, '.dev'));
mkdirSync(devDir, { recursive: true });

const plane = await ControlPlane.start({ baseDir: devDir });
// Its data goes to a private directory under the OS temp dir, not devDir: as root PostgreSQL runs
// as `postgres`, which cannot enter a clone in root's home.
const postgres = process.env['DATABASE_URL'] ? undefined : await PostgresServer.start();
const kubeconfig = join(devDir, 'kubeconfig');
copyFileSync(plane.info.adminKubeconfig, kubeconfig);
const kubectl = async (...args: string[]) =>
  (await run(plane.info.kubectl, ['--kubeconfig', kubeconfig, ...args])).stdout;

await installCrd(plane.info);

const logFile = join(devDir, 'operator.log');
const operator = spawn(process.execPath, [join(root, 'src/cli/main.ts'), 'run'], {
  env: {
    ...process.env,
    KUBECONFIG: kubeconfig,
    HEALTH_PROBE_BIND_ADDRESS: '127.0.0.1:0',
    // Quicker retries than production's 10 s, so the failing sample finishes while you watch.
    RETRY_BACKOFF_BASE_MS: process.env['RETRY_BACKOFF_BASE_MS'] ?? '1000',
    ...(postgres ? { DATABASE_URL: postgres.url() } : {}),
  },
  stdio: ['ignore', openSync(logFile, 'a'), openSync(logFile, 'a')],
});

let stopping = false;
async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    operator.kill('SIGTERM');
    await new Promise((done) =>
      operator.exitCode === null ? operator.once('exit', done) : done(null),
    );
    await Promise.all([plane.stop(), postgres?.destroy()]);
  }
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));
operator.once('exit', (code) => {
  if (stopping) return;
  console.error(`the operator exited (code ${code}); see ${logFile}`);
  void shutdown(1);
});

await kubectl('apply', '-n', 'default', '-f', join(root, 'deploy/samples'));
await waitFor(
  'the samples to finish',
  async () => {
    const phases = (
      await kubectl('get', 'agentruns', '-n', 'default', '-o', 'jsonpath={.items[*].status.phase}')
    ).split(' ');
    return phases.every((p) => ['Succeeded', 'Failed', 'Canceled'].includes(p)) ? true : undefined;
  },
  { timeoutMs: 60_000, intervalMs: 500 },
).catch(() => console.error('(some samples are still running)'));

const databaseUrl = process.env['DATABASE_URL'] ?? postgres?.url() ?? '';
// The audit log has the same runs (give the rows a moment to land).
await new Promise((done) => setTimeout(done, 1_000));
const auditRows = await run(process.execPath, [join(root, 'src/cli/main.ts'), 'audit', 'ls'], {
  env: { ...process.env, DATABASE_URL: databaseUrl },
}).then(
  (result) => result.stdout,
  (error: unknown) =>
    `(audit ls failed: ${error instanceof Error ? error.message : String(error)})\n`,
);

console.log(`$ kubectl get agentruns -o wide
${await kubectl('get', 'agentruns', '-n', 'default', '-o', 'wide')}
$ agentrun-operator audit ls        # the durable record in PostgreSQL
${auditRows}
agentrun-operator is running against a local control plane (kube-apiserver ${plane.info.server}).

  export KUBECONFIG=${kubeconfig}
  kubectl get agentruns                       # kubectl v1.36 also at ${plane.info.kubectl}
  kubectl describe agentrun hello
  kubectl apply -f deploy/samples/noop-hello.yaml
  kubectl wait --for=condition=Succeeded agentrun/hello
  tail -f ${logFile}
${postgres ? `\nPostgreSQL (throwaway, data in ${postgres.dir}): export DATABASE_URL=${postgres.url()}\n  node src/cli/main.ts audit ls     # or: kubectl agentrun history (with plugins/ on PATH)\n` : ''}
Press Ctrl-C to stop everything and remove its data.`);

// Keeps the event loop alive until a signal arrives.
setInterval(() => {}, 1 << 30);
