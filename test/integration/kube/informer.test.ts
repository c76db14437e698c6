import {
  ApiextensionsV1Api,
  CustomObjectsApi,
  type V1CustomResourceDefinition,
} from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { Informer, type InformerEventHandler } from '../../../src/kube/informer.ts';
import { KubeListWatch, type ListWatch } from '../../../src/kube/kube-list-watch.ts';
import { isRecord } from '../../../src/kube/kube-object.ts';
import { type Logger, silentLogger } from '../../../src/util/log.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminClient, adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { capturingLogger } from '../../support/logs.ts';
import { waitFor } from '../../support/wait.ts';

const plane = controlPlane();
const kc = adminKubeConfig(plane);
const objects = kc.makeApiClient(CustomObjectsApi);

const group = 'informer.agentrun.test';
const version = 'v1';
const plural = 'gadgets';
const gadgetCrd: V1CustomResourceDefinition = {
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  metadata: { name: `${plural}.${group}` },
  spec: {
    group,
    scope: 'Namespaced',
    names: { plural, singular: 'gadget', kind: 'Gadget', listKind: 'GadgetList' },
    versions: [
      {
        name: version,
        served: true,
        storage: true,
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              // size is optional in the schema so that objects the informer's parse rejects exist.
              spec: {
                type: 'object',
                properties: { size: { type: 'integer' }, color: { type: 'string' } },
              },
            },
          },
        },
      },
    ],
  },
};

interface Gadget {
  metadata: { namespace?: string; name?: string; uid?: string; resourceVersion?: string };
  spec: { size: number };
}

function parseGadget(raw: unknown): Gadget | undefined {
  if (!isRecord(raw) || !isRecord(raw['metadata']) || !isRecord(raw['spec'])) return undefined;
  return typeof raw['spec']['size'] === 'number' ? (raw as unknown as Gadget) : undefined;
}

type Seen = [type: string, key: string, size: number];

function recorder(): { seen: Seen[]; handler: InformerEventHandler<Gadget> } {
  const seen: Seen[] = [];
  const key = (g: Gadget) => `${g.metadata.namespace}/${g.metadata.name}`;
  return {
    seen,
    handler: {
      onAdd: (g) => seen.push(['add', key(g), g.spec.size]),
      onUpdate: (_, g) => seen.push(['update', key(g), g.spec.size]),
      onDelete: (g) => seen.push(['delete', key(g), g.spec.size]),
    },
  };
}

function gadgetInformer(
  namespace: string,
  options: { logger?: Logger; inactivityTimeoutMs?: number; listWatch?: ListWatch } = {},
): Informer<Gadget> {
  const common = {
    group,
    version,
    plural,
    namespace,
    parse: parseGadget,
    logger: options.logger ?? silentLogger(),
    // Short, so a freshly created CRD's 429s (watch cache warming up) cost little test time.
    backoff: { initialMs: 100, maxMs: 1_000 },
    ...(options.inactivityTimeoutMs === undefined
      ? {}
      : { inactivityTimeoutMs: options.inactivityTimeoutMs }),
  };
  return options.listWatch
    ? new Informer<Gadget>({ ...common, listWatch: options.listWatch })
    : new Informer<Gadget>({ ...common, client: adminClient(plane) });
}

async function create(namespace: string, name: string, size?: number): Promise<void> {
  await objects.createNamespacedCustomObject({
    group,
    version,
    namespace,
    plural,
    body: {
      apiVersion: `${group}/${version}`,
      kind: 'Gadget',
      metadata: { name },
      spec: size === undefined ? { color: 'red' } : { size },
    },
  });
}

/** JSON Patch (client-node's default for custom objects); `add` also replaces. */
async function patch(namespace: string, name: string, path: string, value: unknown) {
  await objects.patchNamespacedCustomObject({
    group,
    version,
    namespace,
    plural,
    name,
    body: [{ op: 'add', path, value }],
  });
}

async function remove(namespace: string, name: string): Promise<void> {
  await objects.deleteNamespacedCustomObject({ group, version, namespace, plural, name });
}

/** What the API server holds: key -> resourceVersion. */
async function serverState(namespace: string): Promise<Map<string, string>> {
  const list: unknown = await objects.listNamespacedCustomObject({
    group,
    version,
    namespace,
    plural,
  });
  const state = new Map<string, string>();
  const items = isRecord(list) && Array.isArray(list['items']) ? list['items'] : [];
  for (const item of items) {
    const g = item as Gadget;
    state.set(`${g.metadata.namespace}/${g.metadata.name}`, g.metadata.resourceVersion ?? '');
  }
  return state;
}

function cacheState(informer: Informer<Gadget>): Map<string, string> {
  return new Map(
    informer
      .list()
      .map((g) => [`${g.metadata.namespace}/${g.metadata.name}`, g.metadata.resourceVersion ?? '']),
  );
}

async function until(what: string, condition: () => boolean): Promise<void> {
  await waitFor(what, async () => (condition() ? true : undefined), { intervalMs: 20 });
}

describe('Informer against a real API server', () => {
  beforeAll(async () => {
    const ext = kc.makeApiClient(ApiextensionsV1Api);
    await ext.createCustomResourceDefinition({ body: gadgetCrd });
    await waitFor('gadgets CRD Established', async () => {
      const crd = await ext.readCustomResourceDefinition({ name: `${plural}.${group}` });
      const established = crd.status?.conditions?.find((c) => c.type === 'Established');
      return established?.status === 'True' ? true : undefined;
    });
    // Deliberately no wait for the watch cache: the first informer must ride out its 429s.
  });

  it('lists existing objects, then delivers adds, updates and deletes, without managedFields', async () => {
    const ns = await createNamespace(kc, 'inf-events');
    await create(ns, 'a', 1);
    await create(ns, 'b', 2);
    const informer = gadgetInformer(ns);
    const { seen, handler } = recorder();
    informer.addEventHandler(handler);
    informer.start();
    try {
      await informer.waitForSync(AbortSignal.timeout(30_000));
      expect(informer.hasSynced()).toBe(true);
      expect(seen.sort()).toEqual([
        ['add', `${ns}/a`, 1],
        ['add', `${ns}/b`, 2],
      ]);
      // The server does keep managedFields; the cache does not.
      const fromServer = (await objects.getNamespacedCustomObject({
        group,
        version,
        namespace: ns,
        plural,
        name: 'a',
      })) as { metadata: { managedFields?: unknown[] } };
      expect(fromServer.metadata.managedFields?.length).toBeGreaterThan(0);
      expect(informer.get(`${ns}/a`)?.metadata).not.toHaveProperty('managedFields');

      seen.length = 0;
      await create(ns, 'c', 3);
      await patch(ns, 'c', '/spec/size', 4);
      await remove(ns, 'c');
      await remove(ns, 'a');
      await until('four watch events', () => seen.length >= 4);
      expect(seen).toEqual([
        ['add', `${ns}/c`, 3],
        ['update', `${ns}/c`, 4],
        ['delete', `${ns}/c`, 4],
        ['delete', `${ns}/a`, 1],
      ]);
      expect(informer.keys()).toEqual([`${ns}/b`]);
      expect(informer.get(`${ns}/b`)?.metadata).not.toHaveProperty('managedFields');
      expect(informer.lastActivity()).toBeGreaterThan(0);
    } finally {
      await informer.stop();
    }
  });

  it('caches only its namespace when scoped, and every namespace when not', async () => {
    const ns1 = await createNamespace(kc, 'inf-scope');
    const ns2 = await createNamespace(kc, 'inf-scope');
    await create(ns1, 'x', 1);
    await create(ns2, 'y', 1);
    const scoped = gadgetInformer(ns1);
    const all = gadgetInformer('');
    scoped.start();
    all.start();
    try {
      await Promise.all([scoped.waitForSync(), all.waitForSync()]);
      expect(scoped.keys()).toEqual([`${ns1}/x`]);
      expect(all.keys()).toEqual(expect.arrayContaining([`${ns1}/x`, `${ns2}/y`]));

      await create(ns2, 'z', 1);
      await create(ns1, 'w', 1);
      await until('both informers to see the new objects', () => {
        return all.get(`${ns2}/z`) !== undefined && scoped.get(`${ns1}/w`) !== undefined;
      });
      expect(scoped.keys().sort()).toEqual([`${ns1}/w`, `${ns1}/x`]);
    } finally {
      await Promise.all([scoped.stop(), all.stop()]);
    }
  });

  it('skips objects that fail parse, logging each once, and adds them once they parse', async () => {
    const ns = await createNamespace(kc, 'inf-parse');
    await create(ns, 'bad');
    await create(ns, 'good', 1);
    const log = capturingLogger();
    const informer = gadgetInformer(ns, { logger: log.logger });
    const { seen, handler } = recorder();
    informer.addEventHandler(handler);
    informer.start();
    try {
      await informer.waitForSync();
      expect(informer.keys()).toEqual([`${ns}/good`]);
      await patch(ns, 'bad', '/spec/color', 'blue');
      await patch(ns, 'bad', '/spec/color', 'green');
      // A later event proves the two updates of 'bad' were processed.
      await create(ns, 'sentinel', 1);
      await until('the sentinel', () => informer.get(`${ns}/sentinel`) !== undefined);
      const warnings = log.lines.filter((l) => l['level'] === 'warn' && l['name'] === 'bad');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ namespace: ns, resource: `${plural}.${group}` });

      await patch(ns, 'bad', '/spec/size', 7);
      await until('bad to parse', () => informer.get(`${ns}/bad`) !== undefined);
      expect(seen.at(-1)).toEqual(['add', `${ns}/bad`, 7]);
    } finally {
      await informer.stop();
    }
  });

  it('loses and duplicates no event while its watch is broken over and over', async () => {
    const ns = await createNamespace(kc, 'inf-breaks');
    const log = capturingLogger();
    // A watchdog this short also restarts the watch whenever the writer pauses.
    const informer = gadgetInformer(ns, { logger: log.logger, inactivityTimeoutMs: 200 });
    const { seen, handler } = recorder();
    informer.addEventHandler(handler);
    informer.start();
    await informer.waitForSync();
    let breaking = true;
    const breaker = (async () => {
      while (breaking) {
        informer.restartWatch();
        await new Promise((resolve) => setTimeout(resolve, 15));
      }
    })();
    try {
      const names = Array.from({ length: 30 }, (_, i) => `g${i}`);
      for (const name of names) await create(ns, name, 1);
      for (const name of names) await patch(ns, name, '/spec/size', 2);
      for (const name of names.slice(0, 10)) await remove(ns, name);
      breaking = false;
      await breaker;
      // Then quiet for a while: the watchdog restarts the silent watch a few times.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      await create(ns, 'last', 9);

      const expected = await serverState(ns);
      await until('the cache to match the server', () => {
        const cached = cacheState(informer);
        return (
          cached.size === expected.size && [...expected].every(([k, rv]) => cached.get(k) === rv)
        );
      });

      const count = (type: string, key: string) =>
        seen.filter(([t, k]) => t === type && k === key).length;
      for (const [i, name] of names.entries()) {
        const key = `${ns}/${name}`;
        expect([count('add', key), count('update', key), count('delete', key)]).toEqual([
          1,
          1,
          i < 10 ? 1 : 0,
        ]);
      }
      expect(count('add', `${ns}/last`)).toBe(1);
      const watches = log.lines.filter((l) => l['msg'] === 'watching').length;
      const watchdogRestarts = log.lines.filter((l) =>
        String(l['msg']).startsWith('watch delivered nothing'),
      ).length;
      expect(watches).toBeGreaterThan(20);
      expect(watchdogRestarts).toBeGreaterThan(0);
      expect(log.lines.filter((l) => l['msg'] === 'relisted')).toEqual([]);
    } finally {
      breaking = false;
      await breaker;
      await informer.stop();
    }
  });

  it('relists on a real 410 Gone and reports exactly what it missed', async () => {
    const ns = await createNamespace(kc, 'inf-gone');
    await create(ns, 'keep', 1);
    await create(ns, 'change', 1);
    await create(ns, 'drop', 1);
    const real = new KubeListWatch(adminClient(plane), {
      group,
      version,
      plural,
      namespace: ns,
      requestTimeoutMs: 120_000,
    });
    // The real adapter, except that the test can hold the next watch back and then make it start
    // from resourceVersion 1, which the API server's watch cache no longer holds: a real 410.
    let gate: Promise<void> | undefined;
    let stale = false;
    const listWatch: ListWatch = {
      list: (options) => real.list(options),
      watch: async (options, onEvent) => {
        if (gate) await gate;
        const from = stale ? '1' : options.resourceVersion;
        stale = false;
        return real.watch({ ...options, resourceVersion: from }, onEvent);
      },
    };
    const log = capturingLogger();
    const informer = gadgetInformer(ns, { logger: log.logger, listWatch });
    const { seen, handler } = recorder();
    informer.addEventHandler(handler);
    informer.start();
    try {
      await informer.waitForSync();
      await until('the first watch', () => log.lines.some((l) => l['msg'] === 'watching'));
      seen.length = 0;

      let open = (): void => {};
      gate = new Promise((resolve) => {
        open = resolve;
      });
      stale = true;
      informer.restartWatch();
      // Changes made while the informer is not watching.
      await patch(ns, 'change', '/spec/size', 2);
      await remove(ns, 'drop');
      await create(ns, 'new', 5);
      gate = undefined;
      open();

      await until('the relist', () => log.lines.some((l) => l['msg'] === 'relisted'));
      const expired = log.lines.find((l) => String(l['msg']).startsWith('resourceVersion expired'));
      expect(expired).toBeDefined();
      expect(seen).toEqual([
        ['delete', `${ns}/drop`, 1],
        ['update', `${ns}/change`, 2],
        ['add', `${ns}/new`, 5],
      ]);
      expect(informer.keys().sort()).toEqual([`${ns}/change`, `${ns}/keep`, `${ns}/new`]);

      // And it watches again from the relist: later changes arrive as events.
      await patch(ns, 'keep', '/spec/size', 3);
      await until('the update after the relist', () => seen.length === 4);
      expect(seen[3]).toEqual(['update', `${ns}/keep`, 3]);
    } finally {
      await informer.stop();
    }
  });
});
