import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { resolve } from 'node:path';
import { CoreV1Api, RbacAuthorizationV1Api, type V1ClusterRole } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { KubeClient } from '../../../src/kube/kube-client.ts';
import { createMetrics } from '../../../src/metrics/metrics.ts';
import { DelegatingAuth, kubeReviewClient } from '../../../src/metrics/metrics-auth.ts';
import { MetricsServer } from '../../../src/metrics/metrics-server.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminClient, adminKubeConfig, mintUser } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { startOperator } from '../../support/operator.ts';
import { freePort } from '../../support/ports.ts';
import { PrometheusServer } from '../../support/prometheus.ts';
import { waitFor } from '../../support/wait.ts';

/**
 * Secure metrics against the real API server: the operator's identity (here the admin) makes
 * the TokenReviews and SubjectAccessReviews; scrapers present ServiceAccount tokens from the
 * TokenRequest API, as Prometheus does with its own.
 */

const plane = controlPlane();
const admin = adminKubeConfig(plane);

interface Reply {
  readonly status: number;
  readonly body: string;
}

function scrape(port: number, ca: string, token?: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/metrics',
        ca,
        agent: false,
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function serviceAccountToken(namespace: string, name: string): Promise<string> {
  const core = admin.makeApiClient(CoreV1Api);
  await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name } } });
  const request = await core.createNamespacedServiceAccountToken({
    name,
    namespace,
    body: { spec: { audiences: [], expirationSeconds: 600 } },
  });
  const token = request.status?.token ?? '';
  expect(token).not.toBe('');
  return token;
}

describe('secure metrics (TokenReview + SubjectAccessReview on the real API server)', () => {
  let namespace = '';
  let readerToken = '';
  let strangerToken = '';
  let server: MetricsServer;
  let operatorClient: KubeClient | undefined;
  let ca = '';
  const metrics = createMetrics({ controller: 'agentrun', agents: ['noop'], enabled: true });
  const clusterRole = `metrics-reader-${Math.random().toString(36).slice(2, 8)}`;

  beforeAll(async () => {
    namespace = await createNamespace(admin, 'metrics-secure');
    readerToken = await serviceAccountToken(namespace, 'prometheus');
    strangerToken = await serviceAccountToken(namespace, 'stranger');
    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    // The metrics-reader ClusterRole the deploy/ manifests ship (under a name of this test's).
    const shipped = parse(
      readFileSync(
        resolve(import.meta.dirname, '../../../deploy/monitoring/secure/metrics-reader-role.yaml'),
        'utf8',
      ),
    ) as V1ClusterRole;
    await rbac.createClusterRole({
      body: { ...shipped, metadata: { ...shipped.metadata, name: clusterRole } },
    });
    await rbac.createClusterRoleBinding({
      body: {
        metadata: { name: clusterRole },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: clusterRole },
        subjects: [{ kind: 'ServiceAccount', name: 'prometheus', namespace }],
      },
    });
    // The binding reaches the RBAC authorizer's cache a moment later: wait for it at the source,
    // so no denial gets cached by the server under test.
    const reviews = kubeReviewClient(adminClient(plane));
    await waitFor('the metrics-reader binding to take effect', async () => {
      const user = await reviews.reviewToken(readerToken);
      if (!user.authenticated) throw new Error(user.reason);
      const access = await reviews.reviewAccess({ user: user.user, verb: 'get', path: '/metrics' });
      return access.allowed ? true : undefined;
    });

    metrics.controller.runFinished('noop', 'succeeded', 42);
    operatorClient = new KubeClient(adminClient(plane).access, metrics.restClient);
    server = await MetricsServer.listen({
      registry: metrics.registry,
      address: { host: '127.0.0.1', port: 0 },
      secure: { authorizer: new DelegatingAuth(kubeReviewClient(operatorClient)) },
    });
    ca = server.certificate ?? '';
  });

  afterAll(async () => {
    await server?.close();
    operatorClient?.close();
    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    await rbac.deleteClusterRoleBinding({ name: clusterRole }).catch(() => {});
    await rbac.deleteClusterRole({ name: clusterRole }).catch(() => {});
  });

  it('serves the metrics to a ServiceAccount bound to the metrics-reader ClusterRole (200)', async () => {
    const reply = await scrape(server.port, ca, readerToken);
    expect(reply.status).toBe(200);
    expect(reply.body).toContain('agent_runs_total{agent="noop",status="succeeded"} 1');
    expect(reply.body).toContain('# TYPE controller_runtime_reconcile_total counter');
    expect(reply.body).toContain('process_cpu_seconds_total');
  });

  it('forbids a ServiceAccount without the binding (403)', async () => {
    const reply = await scrape(server.port, ca, strangerToken);
    expect(reply.status).toBe(403);
    expect(reply.body).toBe(
      `Authorization denied for user system:serviceaccount:${namespace}:stranger\n`,
    );
    expect(reply.body).not.toContain('agent_runs_total');
  });

  it('rejects a request without a token (401)', async () => {
    const reply = await scrape(server.port, ca);
    expect(reply.status).toBe(401);
    expect(reply.body).not.toContain('agent_runs_total');
  });

  it('rejects a token the API server did not issue (401)', async () => {
    const reply = await scrape(server.port, ca, 'not-a-valid-token');
    expect(reply.status).toBe(401);
    const forged = `${readerToken.slice(0, -4)}AAAA`;
    expect((await scrape(server.port, ca, forged)).status).toBe(401);
  });

  it('counts its own review calls in rest_client_requests_total', async () => {
    const reply = await scrape(server.port, ca, readerToken);
    const host = new URL(plane.server).host;
    const posts = reply.body
      .split('\n')
      .filter(
        (line) =>
          line.startsWith('rest_client_requests_total{') &&
          line.includes('method="POST"') &&
          line.includes(`host="${host}"`) &&
          line.includes('code="201"'),
      );
    expect(posts).toHaveLength(1);
    // TokenReviews and SubjectAccessReviews for the earlier scrapes, at least one of each.
    expect(Number(posts[0]?.split(' ').at(-1))).toBeGreaterThanOrEqual(2);
  });

  it('answers 500 when the operator may not create reviews, and 200 again once it may', async () => {
    // An operator identity without RBAC for tokenreviews/subjectaccessreviews.
    const weak = mintUser(plane, 'weak-operator');
    const weakServer = await MetricsServer.listen({
      registry: metrics.registry,
      address: { host: '127.0.0.1', port: 0 },
      secure: { authorizer: new DelegatingAuth(kubeReviewClient(weak.client)) },
    });
    try {
      const reply = await scrape(weakServer.port, weakServer.certificate ?? '', readerToken);
      expect(reply.status).toBe(500);
      expect(reply.body).not.toContain('agent_runs_total');
    } finally {
      await weakServer.close();
    }
  });
  it('a real Prometheus scrapes the operator (METRICS_SECURE=true) the way the secure ServiceMonitor does', async () => {
    await installCrd(plane);
    const metricsPort = await freePort();
    await startOperator({
      kubeConfig: admin,
      namespace,
      env: { METRICS_BIND_ADDRESS: `127.0.0.1:${metricsPort}`, METRICS_SECURE: 'true' },
    });
    // https, a ServiceAccount token as the bearer, and no verification of the self-signed
    // certificate: servicemonitor-https.patch.yaml.
    const job = (name: string, tokenFile: string) => ({
      job_name: name,
      scheme: 'https',
      authorization: { type: 'Bearer', credentials_file: tokenFile },
      tls_config: { insecure_skip_verify: true },
      static_configs: [{ targets: [`127.0.0.1:${metricsPort}`] }],
    });
    const prometheus = await PrometheusServer.start(
      (dir) => ({
        global: { scrape_interval: '1s' },
        scrape_configs: [
          job('agentrun-operator-metrics', `${dir}/reader.token`),
          job('stranger', `${dir}/stranger.token`),
        ],
      }),
      { 'reader.token': readerToken, 'stranger.token': strangerToken },
    );
    try {
      await waitFor(
        'both jobs scraped',
        async () => ((await prometheus.query('up')).length === 2 ? true : undefined),
        { timeoutMs: 30_000, intervalMs: 250 },
      );
      expect(await prometheus.scalar('up{job="agentrun-operator-metrics"}')).toBe(1);
      expect(await prometheus.scalar('up{job="stranger"}')).toBe(0);
      expect(
        await prometheus.scalar(
          'agent_runs_total{job="agentrun-operator-metrics",agent="noop",status="succeeded"}',
        ),
      ).toBe(0);
      expect(await prometheus.query('agent_runs_total{job="stranger"}')).toEqual([]);
    } finally {
      await prometheus.stop();
    }
  });
});
