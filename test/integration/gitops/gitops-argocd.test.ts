import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { statusOf } from '../../support/kube.ts';

/**
 * The two ways deploy/gitops/argocd installs the AgentRun health check, built and dry-run on
 * the real API server: the kustomize component merged into an Argo CD install's argocd-cm, and
 * the argocd-cm.yaml snippet. (The Lua itself is tested in test/unit/gitops/gitops-argocd-health.)
 */

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const ARGOCD = join(ROOT, 'deploy/gitops/argocd');
const KEY = 'resource.customizations.health.agents.applylens.io_AgentRun';
const plane = controlPlane();
const lua = readFileSync(join(ARGOCD, 'health.lua'), 'utf8');
const temp = mkdtempSync(join(tmpdir(), 'agentrun-argocd-'));

const kubectl = (...args: string[]) =>
  run(plane.kubectl, ['--kubeconfig', plane.adminKubeconfig, ...args], { cwd: ROOT });

beforeAll(async () => {
  // Shared with other test files and never deleted (namespaces never finish deleting here).
  const status = await statusOf(
    adminKubeConfig(plane)
      .makeApiClient(CoreV1Api)
      .createNamespace({ body: { metadata: { name: 'argocd' } } }),
  );
  expect([200, 201, 409]).toContain(status);
});
afterAll(() => rmSync(temp, { recursive: true, force: true }));

describe('deploy/gitops/argocd', () => {
  it('the component adds the health check to an Argo CD install, keeping argocd-cm as it is', async () => {
    // An Argo CD kustomization: install.yaml stands in for Argo CD's manifests.
    cpSync(ARGOCD, join(temp, 'component'), { recursive: true });
    const app = join(temp, 'argocd');
    mkdirSync(app);
    writeFileSync(
      join(app, 'install.yaml'),
      [
        'apiVersion: v1',
        'kind: ConfigMap',
        'metadata:',
        '  name: argocd-cm',
        '  labels: {app.kubernetes.io/name: argocd-cm, app.kubernetes.io/part-of: argocd}',
        'data:',
        '  url: https://argocd.example.com',
      ].join('\n'),
    );
    writeFileSync(
      join(app, 'kustomization.yaml'),
      'namespace: argocd\nresources: [install.yaml]\ncomponents: [../component]\n',
    );
    const { stdout } = await kubectl('kustomize', app);
    const cm = parse(stdout) as {
      metadata: { name: string; namespace: string; labels: Record<string, string> };
      data: Record<string, string>;
    };
    expect(cm.metadata.name).toBe('argocd-cm');
    expect(cm.metadata.namespace).toBe('argocd');
    expect(cm.metadata.labels['app.kubernetes.io/part-of']).toBe('argocd');
    expect(cm.data).toEqual({ url: 'https://argocd.example.com', [KEY]: lua });

    const dryRun = await kubectl('apply', '--dry-run=server', '--validate=strict', '-k', app);
    expect(dryRun.stdout).toContain('configmap/argocd-cm');
  });

  it('argocd-cm.yaml merges into an existing argocd-cm as documented (kubectl patch)', async () => {
    const file = join(ARGOCD, 'argocd-cm.yaml');
    const applied = await kubectl('apply', '--dry-run=server', '--validate=strict', '-f', file);
    expect(applied.stdout).toContain('configmap/argocd-cm');
    // An argocd-cm with settings of its own, then the documented merge patch (server dry run).
    const existing = await kubectl(
      'create',
      'configmap',
      'argocd-cm',
      '-n',
      'argocd',
      '--from-literal=url=https://argocd.example.com',
      '--dry-run=client',
      '-o',
      'yaml',
    );
    writeFileSync(join(temp, 'existing.yaml'), existing.stdout);
    await kubectl('apply', '--server-side', '--force-conflicts', '-f', join(temp, 'existing.yaml'));
    const patched = await kubectl(
      'patch',
      'configmap',
      'argocd-cm',
      '-n',
      'argocd',
      '--type',
      'merge',
      '--patch-file',
      file,
      '--dry-run=server',
      '-o',
      'json',
    );
    const cm = JSON.parse(patched.stdout) as { data: Record<string, string> };
    expect(cm.data).toEqual({ url: 'https://argocd.example.com', [KEY]: lua });
  });
});
