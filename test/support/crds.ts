import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ApiextensionsV1Api, KubeConfig } from '@kubernetes/client-node';
import type { ControlPlaneInfo } from './envtest/control-plane.ts';
import { waitFor } from './wait.ts';

const run = promisify(execFile);

/** The committed AgentRun CRD, as users install it. */
export const AGENTRUN_CRD_FILE = fileURLToPath(
  new URL('../../crds/agentrun.yaml', import.meta.url),
);

/**
 * Applies the CRD file with kubectl (server-side apply, idempotent across test files sharing one
 * API server), then waits until it is Established and fails if the API server judged its schema
 * non-structural. kubectl rather than client-node's typed API: the typed model serializer drops
 * plain-JSON fields such as `default` and `x-kubernetes-validations`.
 */
export async function installCrd(
  plane: ControlPlaneInfo,
  file: string = AGENTRUN_CRD_FILE,
): Promise<void> {
  const { stdout } = await run(plane.kubectl, [
    '--kubeconfig',
    plane.adminKubeconfig,
    'apply',
    '--server-side',
    '--force-conflicts',
    '-f',
    file,
    '-o',
    'name',
  ]);
  const name = stdout.trim().replace(/^customresourcedefinition\.apiextensions\.k8s\.io\//, '');
  const kc = new KubeConfig();
  kc.loadFromFile(plane.adminKubeconfig);
  const api = kc.makeApiClient(ApiextensionsV1Api);
  await waitFor(`CRD ${name} Established`, async () => {
    const current = await api.readCustomResourceDefinition({ name });
    const conditions = current.status?.conditions ?? [];
    const broken = conditions.find((c) => c.type === 'NonStructuralSchema' && c.status === 'True');
    if (broken) throw new Error(`non-structural schema: ${broken.message}`);
    return conditions.some((c) => c.type === 'Established' && c.status === 'True')
      ? true
      : undefined;
  });
}
