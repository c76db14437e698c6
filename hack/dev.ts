// `make dev`: a local control plane (real kube-apiserver + etcd) and, unless DATABASE_URL is set,
// a throwaway PostgreSQL, kept running until Ctrl-C. Later steps add the operator and samples.
import { copyFileSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ControlPlane } from '../test/support/envtest/control-plane.ts';
import { PostgresServer } from '../test/support/postgres/server.ts';

const devDir = resolve(process.env['DEV_DIR'] ?? '.dev');
mkdirSync(devDir, { recursive: true });

const plane = await ControlPlane.start({ baseDir: devDir });
const postgres = process.env['DATABASE_URL']
  ? undefined
  : await PostgresServer.start({ baseDir: devDir });
const kubeconfig = join(devDir, 'kubeconfig');
copyFileSync(plane.info.adminKubeconfig, kubeconfig);

console.log(`
Local control plane is up (kube-apiserver ${plane.info.server}, RBAC on; you are system:masters).

  export KUBECONFIG=${kubeconfig}
  kubectl get namespaces          # or ${plane.info.kubectl}, built with the API server
${postgres ? `\nPostgreSQL (throwaway, trust auth):\n\n  export DATABASE_URL=${postgres.url()}\n  psql "$DATABASE_URL"\n` : ''}
Logs: ${plane.info.dir}/*.log. Press Ctrl-C to stop everything and remove its data.`);

let stopping = false;
async function shutdown(signal: NodeJS.Signals): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`\n${signal}: stopping`);
  await Promise.all([plane.stop(), postgres?.destroy()]);
  process.exit(0);
}
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
// Keeps the event loop alive until a signal arrives.
setInterval(() => {}, 1 << 30);
