import { describe, expect, it } from 'vitest';
import { KubeClient } from '../../../src/kube/kube-client.ts';
import { createMetrics } from '../../../src/metrics/metrics.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminClient, adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace, statusOf } from '../../support/kube.ts';
import { freePort } from '../../support/ports.ts';
import { waitFor } from '../../support/wait.ts';

const plane = controlPlane();
const admin = adminKubeConfig(plane);
const access = adminClient(plane).access;
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

describe('rest_client_requests_total through KubeClient', () => {
  it('counts every request by status code, method and host', async () => {
    const metrics = newMetrics();
    const client = new KubeClient(access, metrics.restClient);
    try {
      const namespace = await createNamespace(admin, 'rest-metrics');
      const ns = `/api/v1/namespaces/${namespace}`;
      await client.request('GET', ns); // GET 200
      await client.request('GET', ns); // GET 200
      expect(await statusOf(client.request('GET', `${ns}-missing`))).toBe(404);
      const configMap = JSON.stringify({ metadata: { name: 'c' }, data: { a: '1' } });
      await client.request('POST', `${ns}/configmaps`, { body: configMap }); // POST 201
      expect(await statusOf(client.request('POST', `${ns}/configmaps`, { body: configMap }))).toBe(
        409,
      );
      await client.request('DELETE', `${ns}/configmaps/c`); // DELETE 200

      expect(await requests(metrics, '201', 'POST')).toBe(1);
      expect(await requests(metrics, '200', 'GET')).toBe(2);
      expect(await requests(metrics, '404', 'GET')).toBe(1);
      expect(await requests(metrics, '409', 'POST')).toBe(1);
      expect(await requests(metrics, '200', 'DELETE')).toBe(1);
    } finally {
      client.close();
    }
  });

  it('counts watches when their response starts', async () => {
    const metrics = newMetrics();
    const client = new KubeClient(access, metrics.restClient);
    try {
      const namespace = await createNamespace(admin, 'rest-watch');
      const before = await requests(metrics, '200', 'GET');
      const stop = new AbortController();
      const watch = client.watch(
        `/api/v1/namespaces/${namespace}/configmaps?watch=true`,
        { signal: stop.signal },
        () => {},
      );
      await waitFor('the watch to be counted', async () =>
        (await requests(metrics, '200', 'GET')) === before + 1 ? true : undefined,
      );
      stop.abort();
      await watch;
      // Closing the stream does not count the request again.
      await new Promise((r) => setTimeout(r, 100));
      expect(await requests(metrics, '200', 'GET')).toBe(before + 1);
      expect(await requests(metrics, '<error>', 'GET')).toBe(0);
    } finally {
      client.close();
    }
  });

  it('counts requests that got no response as "<error>"', async () => {
    const metrics = newMetrics();
    const port = await freePort();
    const client = new KubeClient(
      { ...access, server: `https://127.0.0.1:${port}` },
      metrics.restClient,
    );
    try {
      await expect(client.request('GET', '/api/v1/namespaces')).rejects.toThrow();
      expect(await requests(metrics, '<error>', 'GET', `127.0.0.1:${port}`)).toBe(1);
    } finally {
      client.close();
    }
  });

  it('shares one connection pool across concurrent requests', async () => {
    const metrics = newMetrics();
    const client = new KubeClient(access, metrics.restClient);
    try {
      await Promise.all(
        Array.from({ length: 20 }, () => client.request('GET', '/api/v1/namespaces?limit=1')),
      );
      expect(await requests(metrics, '200', 'GET')).toBe(20);
    } finally {
      client.close();
    }
  });

  it('counts nothing when metrics are disabled (no hook is installed)', async () => {
    const disabled = createMetrics({ controller: 'agentrun', agents: [], enabled: false });
    const client = new KubeClient(access, disabled.restClient);
    try {
      await client.request('GET', '/api/v1/namespaces?limit=1');
      expect(await disabled.registry.metrics()).toMatch(/^\s*$/);
    } finally {
      client.close();
    }
  });
});
