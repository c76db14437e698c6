import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from '../../../src/api/agentrun.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { kubectlFor } from '../../support/kubectl.ts';

/**
 * What docs/gitops.md says about AgentRuns under Argo CD and Flux, checked on the real API
 * server with the two ways those tools write objects: client-side `kubectl apply` (Argo CD's
 * default) and server-side apply (Flux's kustomize-controller; Argo CD with ServerSideApply=true).
 * No operator runs here: these are the API's rules (names, immutability), which decide whether a
 * Git change re-runs an agent.
 */

const plane = controlPlane();
const admin = adminKubeConfig(plane);
let namespace = '';
const dir = mkdtempSync(join(tmpdir(), 'agentrun-gitops-'));

beforeAll(async () => {
  await installCrd(plane);
  namespace = await createNamespace(admin, 'gitops');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const kubectl = kubectlFor(plane);

/** The manifest "in Git": written to a file, as a GitOps tool would read it. */
function gitFile(
  name: string,
  spec: Record<string, unknown>,
  metadata: Record<string, unknown> = {},
): string {
  const file = join(dir, `${name}-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(
    file,
    JSON.stringify({
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name, namespace, ...metadata },
      spec: { agent: 'noop', objective: 'nightly check', ...spec },
    }),
  );
  return file;
}

interface Live {
  metadata: { uid: string; generation: number; labels?: Record<string, string> };
  spec: Record<string, unknown>;
}

async function live(name: string): Promise<Live> {
  return (await admin.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: PLURAL,
    name,
  })) as Live;
}

const MODES = [
  { mode: 'client-side apply (Argo CD default)', args: [] as string[], suffix: 'csa' },
  {
    mode: 'server-side apply (Flux, Argo CD ServerSideApply=true)',
    args: ['--server-side', '--field-manager=kustomize-controller'],
    suffix: 'ssa',
  },
];

describe('AgentRuns under GitOps apply', () => {
  it('apply cannot create from generateName (create can): Git-managed runs need a fixed name', async () => {
    const file = join(dir, 'generate-name.yaml');
    writeFileSync(
      file,
      JSON.stringify({
        apiVersion: API_VERSION,
        kind: KIND,
        metadata: { generateName: 'nightly-', namespace },
        spec: { agent: 'noop', objective: 'generated' },
      }),
    );
    for (const { args } of MODES) {
      const r = await kubectl(['apply', ...args, '-f', file]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/cannot use generate name with apply|name.*required/i);
    }
    const created = await kubectl(['create', '-f', file, '-o', 'name']);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout.trim()).toMatch(/^agentrun\.agents\.applylens\.io\/nightly-[a-z0-9]{5}$/);
  });

  describe.each(MODES)('$mode', ({ args, suffix }) => {
    const apply = (file: string) => kubectl(['apply', ...args, '-f', file]);

    it('re-applying an unchanged manifest is a no-op: the same run, not a new one', async () => {
      const name = `once-${suffix}`;
      const file = gitFile(name, {});
      expect((await apply(file)).code).toBe(0);
      const first = await live(name);
      for (let i = 0; i < 3; i++) expect((await apply(file)).code).toBe(0);
      const after = await live(name);
      expect(after.metadata.uid).toBe(first.metadata.uid);
      expect(after.metadata.generation).toBe(1);
    });

    it('a spec change in Git is refused as immutable (422), so the sync fails', async () => {
      const name = `edited-${suffix}`;
      expect((await apply(gitFile(name, {}))).code).toBe(0);
      const r = await apply(gitFile(name, { objective: 'a different objective' }));
      expect(r.code).not.toBe(0);
      // Flux's force: true recreates objects on such errors (HTTP 422 Invalid, "is immutable"),
      // which means running the agent again.
      expect(r.stderr).toContain('is invalid');
      expect(r.stderr).toContain('spec.objective is immutable: create a new AgentRun instead');
    });

    it('metadata changes apply without touching the run (generation unchanged)', async () => {
      const name = `relabeled-${suffix}`;
      expect((await apply(gitFile(name, {}, { labels: { team: 'a' } }))).code).toBe(0);
      const r = await apply(gitFile(name, {}, { labels: { team: 'b' } }));
      expect(r.code, r.stderr).toBe(0);
      const after = await live(name);
      expect(after.metadata.labels?.['team']).toBe('b');
      expect(after.metadata.generation).toBe(1);
    });

    it('cancel: true can be added in Git, and cannot be taken out again', async () => {
      const name = `canceled-${suffix}`;
      expect((await apply(gitFile(name, {}))).code).toBe(0);
      const cancel = await apply(gitFile(name, { cancel: true }));
      expect(cancel.code, cancel.stderr).toBe(0);
      expect((await live(name)).spec['cancel']).toBe(true);
      const undo = await apply(gitFile(name, {}));
      expect(undo.code).not.toBe(0);
      expect(undo.stderr).toContain('spec.cancel cannot be undone');
    });

    it('requestedBy, once in Git, cannot be taken out again', async () => {
      const name = `attributed-${suffix}`;
      expect((await apply(gitFile(name, { requestedBy: 'envtest-admin' }))).code).toBe(0);
      const r = await apply(gitFile(name, {}));
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('spec.requestedBy is immutable');
    });

    it('a deleted run (TTL, kubectl delete) comes back on the next apply as a new run', async () => {
      const name = `ttl-${suffix}`;
      const file = gitFile(name, { ttlSecondsAfterFinished: 60 });
      expect((await apply(file)).code).toBe(0);
      const first = await live(name);
      // What the operator does ttlSecondsAfterFinished after the run finished.
      expect((await kubectl(['delete', '-n', namespace, 'agentrun', name])).code).toBe(0);
      expect((await apply(file)).code).toBe(0);
      const again = await live(name);
      expect(again.metadata.uid).not.toBe(first.metadata.uid);
    });
  });
});
