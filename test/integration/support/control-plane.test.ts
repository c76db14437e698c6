import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  type V1CustomResourceDefinition,
  VersionApi,
  Watch,
} from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { waitFor } from '../../support/wait.ts';

const run = promisify(execFile);
const plane = controlPlane();
const kc = adminKubeConfig(plane);

const group = 'smoke.agentrun.test';
const widgetCrd: V1CustomResourceDefinition = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `widgets.${group}` },
  spec: {
    group,
    scope: 'Namespaced',
    names: { plural: 'widgets', singular: 'widget', kind: 'Widget', listKind: 'WidgetList' },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: {
                type: 'object',
                required: ['size'],
                properties: { size: { type: 'integer', minimum: 1 } },
              },
            },
          },
        },
      },
    ],
  },
};

type WatchEvent = { type: string; name: string; size: number | undefined };

describe('test control plane', () => {
  it('is a real kube-apiserver of the pinned version', async () => {
    const version = await kc.makeApiClient(VersionApi).getCode();
    expect(version.gitVersion).toBe('v1.36.3');
  });

  it('serves a CRD once Established, enforces its schema, and streams watch events', async () => {
    const ext = kc.makeApiClient(ApiextensionsV1Api);
    await ext.createCustomResourceDefinition({ body: widgetCrd });
    await waitFor('widgets CRD Established', async () => {
      const crd = await ext.readCustomResourceDefinition({ name: `widgets.${group}` });
      const established = crd.status?.conditions?.find((c) => c.type === 'Established');
      return established?.status === 'True' ? true : undefined;
    });

    const namespace = await createNamespace(kc, 'smoke');
    const objects = kc.makeApiClient(CustomObjectsApi);
    const ref = { group, version: 'v1', namespace, plural: 'widgets' };

    const events: WatchEvent[] = [];
    // A just-Established CRD answers watches with 429 until its watch cache is initialised,
    // so open the watch the way an informer must: retry until it is accepted.
    const controller = await waitFor('a watch on widgets', async () => {
      let refused: unknown;
      const watch = await new Watch(kc).watch(
        `/apis/${group}/v1/namespaces/${namespace}/widgets`,
        { allowWatchBookmarks: true },
        (type, obj: { metadata?: { name?: string }; spec?: { size?: number } }) => {
          if (type !== 'BOOKMARK') {
            events.push({ type, name: obj.metadata?.name ?? '', size: obj.spec?.size });
          }
        },
        (error: unknown) => {
          refused = error;
        },
      );
      if (refused) throw refused;
      return watch;
    });
    try {
      await objects.createNamespacedCustomObject({
        ...ref,
        body: {
          apiVersion: `${group}/v1`,
          kind: 'Widget',
          metadata: { name: 'w1' },
          spec: { size: 1 },
        },
      });
      await objects.patchNamespacedCustomObject({
        ...ref,
        name: 'w1',
        body: [{ op: 'replace', path: '/spec/size', value: 2 }],
      });
      await objects.deleteNamespacedCustomObject({ ...ref, name: 'w1' });
      await waitFor('three watch events', async () => (events.length >= 3 ? true : undefined), {
        timeoutMs: 10_000,
      });
    } finally {
      controller.abort();
    }
    expect(events).toEqual([
      { type: 'ADDED', name: 'w1', size: 1 },
      { type: 'MODIFIED', name: 'w1', size: 2 },
      { type: 'DELETED', name: 'w1', size: 2 },
    ]);

    // The structural schema is enforced at admission, with a readable message.
    await expect(
      objects.createNamespacedCustomObject({
        ...ref,
        body: {
          apiVersion: `${group}/v1`,
          kind: 'Widget',
          metadata: { name: 'w2' },
          spec: { size: 0 },
        },
      }),
    ).rejects.toThrow(
      /spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1/,
    );
  });

  it('answers a real kubectl of the same release with the admin kubeconfig', async () => {
    const kubectl = (...args: string[]) =>
      run(plane.kubectl, ['--kubeconfig', plane.adminKubeconfig, ...args]);
    const version = JSON.parse((await kubectl('version', '-o', 'json')).stdout) as {
      clientVersion: { gitVersion: string };
      serverVersion: { gitVersion: string };
    };
    expect(version.clientVersion.gitVersion).toBe('v1.36.3');
    expect(version.serverVersion.gitVersion).toBe('v1.36.3');
    const { stdout } = await kubectl('get', 'namespace', 'default', '-o', 'name');
    expect(stdout.trim()).toBe('namespace/default');
  });
});
