import { beforeAll, describe, expect, it } from 'vitest';
import { AgentRuns } from '../../support/agentruns.ts';
import { countingHandler } from '../../support/counting-handler.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { startOperator } from '../../support/operator.ts';
import { waitFor } from '../../support/wait.ts';

const plane = controlPlane();
const kc = adminKubeConfig(plane);

beforeAll(async () => {
  await installCrd(plane);
});

describe('many runs at once', () => {
  it('takes 100 concurrent runs to Succeeded, executing each handler exactly once', async () => {
    const namespace = await createNamespace(kc, 'many');
    const counting = countingHandler();
    await startOperator({ kubeConfig: kc, namespace, handlers: [counting.handler] });
    const runs = new AgentRuns(kc, namespace);
    const created = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        runs.create(`run-${i}`, { agent: 'count', params: { delayMs: 20 } }),
      ),
    );
    await waitFor(
      'all 100 runs to succeed',
      async () => {
        const all = await runs.list();
        return all.filter((r) => r.status?.phase === 'Succeeded').length === 100 ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    expect(counting.executions.size).toBe(100);
    for (const run of created) expect(counting.executions.get(run.metadata.uid)).toBe(1);
    const all = await runs.list();
    expect(all.every((r) => r.status?.attempts === 1)).toBe(true);
  });
});
