import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { AgentRuns } from '../../support/agentruns.ts';
import { ControlPlane } from '../../support/envtest/control-plane.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { waitFor } from '../../support/wait.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../../..');

/**
 * `make install` / `make uninstall` as a user runs them: against the cluster of the current
 * kubeconfig. A control plane of this test's own, since uninstall deletes the CRD that every other
 * test file relies on.
 */
describe('make install / make uninstall', () => {
  it('apply the CRD to the current cluster, and delete it (with every AgentRun) again', async () => {
    const plane = await ControlPlane.start();
    try {
      const make = (target: string) =>
        run('make', ['-s', target, `KUBECTL=${plane.info.kubectl}`], {
          cwd: ROOT,
          env: { ...process.env, KUBECONFIG: plane.info.adminKubeconfig },
        });
      const kubectl = async (...args: string[]) =>
        (await run(plane.info.kubectl, ['--kubeconfig', plane.info.adminKubeconfig, ...args]))
          .stdout;

      expect((await make('install')).stdout).toContain(
        'customresourcedefinition.apiextensions.k8s.io/agentruns.agents.applylens.io serverside-applied',
      );
      await kubectl(
        'wait',
        '--for=condition=Established',
        'crd/agentruns.agents.applylens.io',
        '--timeout=30s',
      );
      // Installing again changes nothing and succeeds.
      await make('install');
      const runs = new AgentRuns(adminKubeConfig(plane.info), 'default');
      const created = await waitFor('the AgentRun API to be served', () =>
        runs.create('installed', { agent: 'noop' }).catch(() => undefined),
      );
      expect(created.spec.dryRun).toBe(true);

      expect((await make('uninstall')).stdout).toContain(
        'customresourcedefinition.apiextensions.k8s.io "agentruns.agents.applylens.io" deleted',
      );
      expect(await kubectl('get', 'crd', '-o', 'name')).not.toContain('agentruns');
      // Nothing left to delete is not an error.
      await make('uninstall');
    } finally {
      await plane.stop();
    }
  });
});
