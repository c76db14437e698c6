import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { AgentRuns } from '../../support/agentruns.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { startOperator } from '../../support/operator.ts';
import { tableRows } from '../../support/table.ts';

const run = promisify(execFile);
const plane = controlPlane();
const kc = adminKubeConfig(plane);
let namespace = '';

const kubectl = async (...args: string[]) =>
  (await run(plane.kubectl, ['--kubeconfig', plane.adminKubeconfig, '-n', namespace, ...args]))
    .stdout;

const table = tableRows;

beforeAll(async () => {
  await installCrd(plane);
  namespace = await createNamespace(kc, 'kubectl');
  await startOperator({ kubeConfig: kc, namespace });
  const runs = new AgentRuns(kc, namespace);
  await runs.create('good', {
    agent: 'noop',
    objective: 'works',
    requestedBy: 'alice@example.com',
  });
  await runs.create('bad', { agent: 'noop', objective: 'breaks', params: { fail: 'boom' } });
  await runs.waitForPhase('good', 'Succeeded');
  await runs.waitForPhase('bad', 'Failed');
});

describe('AgentRuns through the real kubectl', () => {
  it('kubectl wait --for=condition=Succeeded returns once the run succeeded', async () => {
    const runs = new AgentRuns(kc, namespace);
    await runs.create('waited', { agent: 'noop', params: { delayMs: 500 } });
    const out = await kubectl(
      'wait',
      '--for=condition=Succeeded',
      'agentrun/waited',
      '--timeout=30s',
    );
    expect(out.trim()).toBe('agentrun.agents.applylens.io/waited condition met');
  });

  it('kubectl get shows AGENT, PHASE, REASON, DRY-RUN, DURATION and AGE', async () => {
    const rows = table(await kubectl('get', 'agentruns', 'good', 'bad'));
    expect(rows[0]).toEqual(['NAME', 'AGENT', 'PHASE', 'REASON', 'DRY-RUN', 'DURATION', 'AGE']);
    expect(rows[1]?.slice(0, 5)).toEqual(['good', 'noop', 'Succeeded', 'Succeeded', 'true']);
    expect(rows[1]?.[5]).toMatch(/^\d+(ms|(\.\d+)?s)$/);
    expect(rows[2]?.slice(0, 5)).toEqual(['bad', 'noop', 'Failed', 'Failed', 'true']);
  });

  it('-o wide adds RUN-ID, REQUESTED-BY, ATTEMPTS and OBJECTIVE', async () => {
    const good = await new AgentRuns(kc, namespace).get('good');
    const rows = table(await kubectl('get', 'agentrun', 'good', '-o', 'wide'));
    expect(rows[0]).toEqual([
      'NAME',
      'AGENT',
      'PHASE',
      'REASON',
      'DRY-RUN',
      'DURATION',
      'AGE',
      'RUN-ID',
      'REQUESTED-BY',
      'ATTEMPTS',
      'OBJECTIVE',
    ]);
    expect(rows[1]?.slice(7)).toEqual([good?.metadata.uid, 'alice@example.com', '1', 'works']);
  });

  it('selects runs by phase and agent with field selectors', async () => {
    const failed = await kubectl(
      'get',
      'agentruns',
      '--field-selector',
      'status.phase=Failed',
      '-o',
      'name',
    );
    expect(failed.trim()).toBe('agentrun.agents.applylens.io/bad');
    const byAgent = await kubectl(
      'get',
      'agentruns',
      '--field-selector',
      'spec.agent=noop',
      '-o',
      'name',
    );
    expect(byAgent).toContain('agentrun.agents.applylens.io/good');
  });

  it('knows the short name arun and the category agents', async () => {
    expect(await kubectl('get', 'arun', 'good', '-o', 'name')).toContain('/good');
    expect(await kubectl('get', 'agents', '-o', 'name')).toContain(
      'agentrun.agents.applylens.io/bad',
    );
  });
});
