import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';

export interface ControlPlaneBinaries {
  readonly kubeApiserver: string;
  /** Runs only when a test asks for it (`ControlPlaneOptions.controllerManager`). */
  readonly kubeControllerManager: string;
  readonly etcd: string;
  /** kubectl of the same release, so tests do not depend on the installed one's version skew. */
  readonly kubectl: string;
}

/**
 * Where kube-apiserver, kube-controller-manager, etcd and kubectl are: $KUBEBUILDER_ASSETS (what `make envtest` prints and every
 * make target exports). The launcher never builds them itself: a build takes minutes and belongs
 * to `make envtest`, which caches it outside the repo.
 */
export function findBinaries(env: NodeJS.ProcessEnv = process.env): ControlPlaneBinaries {
  const dir = env['KUBEBUILDER_ASSETS'];
  if (!dir) {
    throw new Error(
      'KUBEBUILDER_ASSETS is not set: run the tests through make (make test / make test-integration), ' +
        'or export KUBEBUILDER_ASSETS="$(make -s envtest | tail -n 1)"',
    );
  }
  const binaries = {
    kubeApiserver: join(dir, 'kube-apiserver'),
    kubeControllerManager: join(dir, 'kube-controller-manager'),
    etcd: join(dir, 'etcd'),
    kubectl: join(dir, 'kubectl'),
  };
  for (const file of Object.values(binaries)) {
    try {
      accessSync(file, constants.X_OK);
    } catch {
      throw new Error(`${file} is missing or not executable: run 'make envtest'`);
    }
  }
  return binaries;
}
