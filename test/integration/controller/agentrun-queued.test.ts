import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AgentRun } from '../../../src/api/agentrun.ts';
import { ConditionType, findCondition } from '../../../src/api/conditions.ts';
import { AgentRuns } from '../../support/agentruns.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { startOperator } from '../../support/operator.ts';
import { tableRows } from '../../support/table.ts';
import { waitFor } from '../../support/wait.ts';

/**
 * A run waiting for a handler slot (MAX_CONCURRENT_RUNS) says so after QUEUED_STATUS_AFTER_MS,
 * in one status write, so that `kubectl get` tells "queued" from "no operator". The slot is held
 * by a run that waits until the test cancels it, so nothing here depends on how fast the
 * machine is.
 */

const plane = controlPlane();
const kc = adminKubeConfig(plane);
const exec = promisify(execFile);

beforeAll(async () => {
  await installCrd(plane);
});

const reasonOf = (run: AgentRun) =>
  findCondition(run.status?.conditions, ConditionType.Succeeded)?.reason;

/** The (phase/reason) of each version of `name` the watch delivered, in order. */
function states(versions: readonly { run: AgentRun }[], name: string): string[] {
  return versions
    .filter((v) => v.run.metadata.name === name)
    .map((v) => `${v.run.status?.phase ?? '-'}/${reasonOf(v.run) ?? '-'}`);
}

/**
 * An operator with one handler slot, held by the run 'holder' until the test cancels it, and a
 * recording of every AgentRun version in the namespace from before the holder was created.
 */
async function oneSlotTaken(queuedStatusAfterMs: string) {
  const namespace = await createNamespace(kc, 'queued');
  await startOperator({
    kubeConfig: kc,
    namespace,
    env: { MAX_CONCURRENT_RUNS: '1', QUEUED_STATUS_AFTER_MS: queuedStatusAfterMs },
  });
  const runs = new AgentRuns(kc, namespace);
  const recording = await runs.record();
  await runs.create('holder', { agent: 'noop', params: { delayMs: 600_000 } });
  await runs.waitForPhase('holder', 'Running');
  return { namespace, runs, recording };
}

/**
 * Waits until the recording's own watch has delivered `name` Succeeded: the phase was read
 * through another request, and a watch may deliver the same change a moment later.
 */
function recorded(versions: readonly { run: AgentRun }[], name: string): Promise<true> {
  return waitFor(`the recording's Succeeded version of ${name}`, async () =>
    versions.some((v) => v.run.metadata.name === name && v.run.status?.phase === 'Succeeded')
      ? true
      : undefined,
  );
}

/** The versions of a run that was claimed without a Queued status. */
const NEVER_QUEUED = ['-/-', 'Running/Running', 'Succeeded/Succeeded'];

describe('a run waiting for a free handler slot', () => {
  it('shows Pending/Queued, written once, then runs when the slot frees; a run that starts at once is never Queued', async () => {
    const { namespace, runs, recording } = await oneSlotTaken('300');
    await runs.create('waiting', { agent: 'noop' });
    const queued = await runs.waitUntil('waiting', 'Queued', (r) => reasonOf(r) === 'Queued');
    expect(queued.status?.phase).toBe('Pending');
    expect(queued.status?.runId).toBe(queued.metadata.uid);
    expect(queued.status?.observedGeneration).toBe(queued.metadata.generation);
    expect(findCondition(queued.status?.conditions, ConditionType.Succeeded)).toMatchObject({
      status: 'Unknown',
      message:
        'waiting for a free handler slot: 1 of MAX_CONCURRENT_RUNS=1 in use, 1 run(s) waiting',
    });

    const { stdout } = await exec(plane.kubectl, [
      '--kubeconfig',
      plane.adminKubeconfig,
      '-n',
      namespace,
      'get',
      'agentrun',
      'waiting',
    ]);
    const rows = tableRows(stdout);
    expect(rows[0]?.slice(0, 4)).toEqual(['NAME', 'AGENT', 'PHASE', 'REASON']);
    expect(rows[1]?.slice(0, 4)).toEqual(['waiting', 'noop', 'Pending', 'Queued']);

    await runs.cancel('holder');
    await runs.waitForPhase('waiting', 'Succeeded');
    // With the slot free, a new run is claimed by its first reconcile.
    await runs.create('quick', { agent: 'noop' });
    await runs.waitForPhase('quick', 'Succeeded');
    await recorded(recording.versions, 'waiting');
    await recorded(recording.versions, 'quick');
    recording.stop();

    expect(states(recording.versions, 'waiting')).toEqual([
      '-/-',
      'Pending/Queued',
      'Running/Running',
      'Succeeded/Succeeded',
    ]);
    expect(states(recording.versions, 'quick')).toEqual(NEVER_QUEUED);
  });

  it('QUEUED_STATUS_AFTER_MS=0 leaves a waiting run without status, as before', async () => {
    const { runs, recording } = await oneSlotTaken('0');
    await runs.create('waiting', { agent: 'noop' });
    // The run is parked with the executor (its wait shows as the queued-runs gauge); cancel the
    // holder once 'waiting' has been seen and had time to be reconciled at least once.
    await runs.waitUntil('waiting', 'created', () => true);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect((await runs.get('waiting'))?.status).toBeUndefined();
    await runs.cancel('holder');
    await runs.waitForPhase('waiting', 'Succeeded');
    await recorded(recording.versions, 'waiting');
    recording.stop();
    expect(states(recording.versions, 'waiting')).toEqual(NEVER_QUEUED);
  });
});
