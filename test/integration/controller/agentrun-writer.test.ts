import { beforeAll, describe, expect, it } from 'vitest';
import {
  ConflictError,
  KubeAgentRunWriter,
  NotFoundError,
} from '../../../src/controller/agentrun-writer.ts';
import { runningStatus } from '../../../src/controller/run-status.ts';
import { AgentRuns } from '../../support/agentruns.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminClient, adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';

const plane = controlPlane();
const kc = adminKubeConfig(plane);
const writer = new KubeAgentRunWriter(adminClient(plane));
let runs: AgentRuns;

beforeAll(async () => {
  await installCrd(plane);
  runs = new AgentRuns(kc, await createNamespace(kc, 'writer'));
});

describe('KubeAgentRunWriter', () => {
  it('claims with a resourceVersion precondition: a stale claim is refused', async () => {
    const run = await runs.create('claim', { agent: 'noop' });
    const claimed = await writer.writeStatus(
      run,
      runningStatus(run, 1, {}, new Date()),
      run.metadata.resourceVersion,
    );
    expect(claimed.status?.phase).toBe('Running');
    // A second process deciding on the same (now stale) version must not claim again.
    await expect(
      writer.writeStatus(run, runningStatus(run, 1, {}, new Date()), run.metadata.resourceVersion),
    ).rejects.toBeInstanceOf(ConflictError);
  });

  it('hands the answer of a write to the watch once, for that very version only', async () => {
    const run = await runs.create('answered', { agent: 'noop' });
    const written = await writer.writeStatus(run, runningStatus(run, 1, {}, new Date()));
    const path = `/apis/agents.applylens.io/v1alpha1/namespaces/${run.metadata.namespace}/agentruns/answered`;
    // What a watch event carries for this version: the stored object, managedFields and all.
    const raw = await adminClient(plane).request('GET', path);
    expect(writer.answered(structuredClone(run))).toBeUndefined();
    expect(writer.answered(raw)).toBe(written);
    expect(writer.answered(raw)).toBeUndefined();
  });

  it("never writes one run's status onto another object of the same name", async () => {
    const old = await runs.create('reused', { agent: 'noop' });
    await runs.delete('reused');
    await runs.waitForDeletion('reused');
    const recreated = await runs.create('reused', { agent: 'noop' });
    await expect(
      writer.writeStatus(old, runningStatus(old, 1, {}, new Date())),
    ).rejects.toBeInstanceOf(NotFoundError);
    expect((await runs.get('reused'))?.status).toBeUndefined();
    expect(recreated.metadata.uid).not.toBe(old.metadata.uid);
  });

  it('reports a deleted run as NotFound and ignores it on delete', async () => {
    const run = await runs.create('gone', { agent: 'noop' });
    await runs.delete('gone');
    await runs.waitForDeletion('gone');
    await expect(
      writer.writeStatus(run, runningStatus(run, 1, {}, new Date())),
    ).rejects.toBeInstanceOf(NotFoundError);
    await expect(writer.delete(run)).resolves.toBeUndefined();
  });

  it('updates finalizers only on the version it read', async () => {
    const run = await runs.create('fin', { agent: 'noop' });
    const withFinalizer = await writer.addFinalizer(run, 'example.com/keep');
    expect(withFinalizer.metadata.finalizers).toEqual(['example.com/keep']);
    // Read before the first finalizer was added: writing it would drop that one.
    await expect(writer.addFinalizer(run, 'example.com/other')).rejects.toBeInstanceOf(
      ConflictError,
    );
    const both = await writer.addFinalizer(withFinalizer, 'example.com/other');
    expect(both.metadata.finalizers).toEqual(['example.com/keep', 'example.com/other']);
    const cleared = await writer.removeFinalizer(both, 'example.com/keep');
    expect(cleared.metadata.finalizers).toEqual(['example.com/other']);
    await writer.removeFinalizer(cleared, 'example.com/other');
  });
});
