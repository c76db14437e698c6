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

/** The committed AgentDefinition CRD (agents registered with kubectl). */
export const AGENTDEFINITION_CRD_FILE = fileURLToPath(
  new URL('../../crds/agentdefinition.yaml', import.meta.url),
);

/** Every CRD the operator needs, as `make install` applies them from crds/. */
export const OPERATOR_CRD_FILES = [AGENTRUN_CRD_FILE, AGENTDEFINITION_CRD_FILE] as const;

/**
 * Applies CRD files with kubectl (server-side apply, idempotent across test files sharing one
 * API server), then waits until each is Established and fails if the API server judged its
 * schema non-structural. kubectl rather than client-node's typed API: the typed model serializer
 * drops plain-JSON fields such as `default` and `x-kubernetes-validations`. Without a file: the
 * operator's CRDs (AgentRun and AgentDefinition), which a running operator needs both of.
 */
export async function installCrd(plane: ControlPlaneInfo, file?: string): Promise<void> {
  const files = file === undefined ? OPERATOR_CRD_FILES : [file];
  const { stdout } = await run(plane.kubectl, [
    '--kubeconfig',
    plane.adminKubeconfig,
    'apply',
    '--server-side',
    '--force-conflicts',
    ...files.flatMap((f) => ['-f', f]),
    '-o',
    'name',
  ]);
  const kc = new KubeConfig();
  kc.loadFromFile(plane.adminKubeconfig);
  const api = kc.makeApiClient(ApiextensionsV1Api);
  for (const line of stdout.trim().split('\n')) {
    const name = line.trim().replace(/^customresourcedefinition\.apiextensions\.k8s\.io\//, '');
    await established(api, name);
  }
}

async function established(api: ApiextensionsV1Api, name: string): Promise<void> {
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
