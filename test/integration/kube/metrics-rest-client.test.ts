import { CoreV1Api, KubeConfig, Watch } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { PooledKubeConfig } from '../../../src/kube/pooled-kube-config.ts';
import { createMetrics } from '../../../src/metrics/metrics.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace, statusOf } from '../../support/kube.ts';
import { freePort } from '../../support/ports.ts';
import { waitFor } from '../../support/wait.ts';

const plane = controlPlane();
const admin = adminKubeConfig(plane);
const host = new URL(plane.server).host;

/** The value of rest_client_requests_total{code,method,host}, 0 when the series is absent. */
async function requests(
  metrics: ReturnType<typeof createMetrics>,
  code: string,
  method: string,
  server = host,
): Promise<number> {
  const text = await metrics.registry.metrics();
  const line = text
    .split('\n')
    .find((l) =>
      l.startsWith(
        `rest_client_requests_total{code="${code}",method="${method}",host="${server}"} `,
      ),
    );
  return line ? Number(line.split(' ').at(-1)) : 0;
}

function newMetrics() {
  return createMetrics({
    controller: 'agentrun',
    agents: [],
    enabled: true,
    defaultMetrics: false,
  });
}

describe('rest_client_requests_total through PooledKubeConfig', () => {
  it('counts every request by status code, method and host', async () => {
    const metrics = newMetrics();
    const kc = PooledKubeConfig.from(admin, metrics.restClient);
    try {
      const core = kc.makeApiClient(CoreV1Api);
      const namespace = await createNamespace(kc, 'rest-metrics'); // POST 201
      await core.readNamespace({ name: namespace }); // GET 200
      await core.readNamespace({ name: namespace }); // GET 200
      expect(await statusOf(core.readNamespace({ name: `${namespace}-missing` }))).toBe(404);
      await core.createNamespacedConfigMap({
        namespace,
        body: { metadata: { name: 'c' }, data: { a: '1' } },
      }); // POST 201
      expect(
        await statusOf(
          core.createNamespacedConfigMap({ namespace, body: { metadata: { name: 'c' } } }),
        ),
      ).toBe(409);
      await core.deleteNamespacedConfigMap({ namespace, name: 'c' }); // DELETE 200

      expect(await requests(metrics, '201', 'POST')).toBe(2);
      expect(await requests(metrics, '200', 'GET')).toBe(2);
      expect(await requests(metrics, '404', 'GET')).toBe(1);
      expect(await requests(metrics, '409', 'POST')).toBe(1);
      expect(await requests(metrics, '200', 'DELETE')).toBe(1);
    } finally {
      await kc.close();
    }
  });

  it('counts watches when their response starts', async () => {
    const metrics = newMetrics();
    const kc = PooledKubeConfig.from(admin, metrics.restClient);
    try {
      const namespace = await createNamespace(admin, 'rest-watch');
      const before = await requests(metrics, '200', 'GET');
      const watch = await new Watch(kc).watch(
        `/api/v1/namespaces/${namespace}/configmaps`,
        {},
        () => {},
        () => {},
      );
      await waitFor('the watch to be counted', async () =>
        (await requests(metrics, '200', 'GET')) === before + 1 ? true : undefined,
      );
      watch.abort();
      // Closing the stream does not count the request again.
      await new Promise((r) => setTimeout(r, 100));
      expect(await requests(metrics, '200', 'GET')).toBe(before + 1);
      expect(await requests(metrics, '<error>', 'GET')).toBe(0);
    } finally {
      await kc.close();
    }
  });

  it('counts requests that got no response as "<error>"', async () => {
    const metrics = newMetrics();
    const port = await freePort();
    const unreachable = new KubeConfig();
    unreachable.loadFromOptions({
      clusters: [
        {
          name: 'gone',
          server: `https://127.0.0.1:${port}`,
          caData: Buffer.from(plane.caData).toString('base64'),
          skipTLSVerify: false,
        },
      ],
      users: [{ name: 'u', token: 'x' }],
      contexts: [{ name: 'c', cluster: 'gone', user: 'u' }],
      currentContext: 'c',
    });
    const kc = PooledKubeConfig.from(unreachable, metrics.restClient);
    try {
      await expect(kc.makeApiClient(CoreV1Api).listNamespace()).rejects.toThrow();
      expect(await requests(metrics, '<error>', 'GET', `127.0.0.1:${port}`)).toBe(1);
    } finally {
      await kc.close();
    }
  });

  it('leaves the connection pool shared: one composed dispatcher per cluster and user', async () => {
    const metrics = newMetrics();
    const kc = PooledKubeConfig.from(admin, metrics.restClient);
    try {
      const core = kc.makeApiClient(CoreV1Api);
      await Promise.all(Array.from({ length: 20 }, () => core.listNamespace({ limit: 1 })));
      expect(await requests(metrics, '200', 'GET')).toBe(20);
    } finally {
      await kc.close();
    }
    // A PooledKubeConfig without the option is returned as is; with it, a counting copy is made.
    const plain = PooledKubeConfig.from(admin);
    expect(PooledKubeConfig.from(plain)).toBe(plain);
    const counting = PooledKubeConfig.from(plain, metrics.restClient);
    expect(counting).not.toBe(plain);
    await counting.makeApiClient(CoreV1Api).listNamespace({ limit: 1 });
    expect(await requests(metrics, '200', 'GET')).toBe(21);
    await counting.close();
    await plain.close();
  });

  it('counts nothing when metrics are disabled (no interceptor is installed)', async () => {
    const disabled = createMetrics({ controller: 'agentrun', agents: [], enabled: false });
    const kc = PooledKubeConfig.from(admin, disabled.restClient);
    try {
      await kc.makeApiClient(CoreV1Api).listNamespace({ limit: 1 });
      expect(await disabled.registry.metrics()).toMatch(/^\s*$/);
    } finally {
      await kc.close();
    }
  });
});
