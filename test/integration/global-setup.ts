import type { TestProject } from 'vitest/node';
import { ControlPlane } from '../support/envtest/control-plane.ts';
import { PostgresServer } from '../support/postgres/server.ts';

/**
 * Starts one real kube-apiserver + etcd and, unless DATABASE_URL points at a server, one
 * ephemeral PostgreSQL for the whole integration run. Tests isolate themselves with a fresh
 * namespace or database each.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const databaseUrl = process.env['DATABASE_URL'];
  const [plane, postgres] = await Promise.all([
    ControlPlane.start(),
    databaseUrl ? Promise.resolve(undefined) : PostgresServer.start(),
  ]);
  project.provide('controlPlane', plane.info);
  project.provide('postgresAdminUrl', databaseUrl ?? postgres?.url() ?? '');
  return async () => {
    await Promise.all([plane.stop(), postgres?.destroy()]);
  };
}
