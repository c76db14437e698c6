import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { statusOf } from '../../support/kube.ts';
import { kubectlFor } from '../../support/kubectl.ts';

/**
 * deploy/monitoring against the real API server with the Prometheus Operator CRDs installed
 * (vendored from v0.93.0 in test/fixtures/prometheus-operator): every manifest and both
 * kustomizations pass `kubectl apply --dry-run=server` with strict field validation, so the
 * ServiceMonitor and PrometheusRule are checked against the CRDs' schemas. (The same files read
 * as data, without a server, in test/unit/monitoring/monitoring-manifests.test.ts.)
 */

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MONITORING = join(ROOT, 'deploy/monitoring');
const CRDS = join(ROOT, 'test/fixtures/prometheus-operator');
const NAMESPACE = 'agentrun-system';

const plane = controlPlane();

const run = kubectlFor(plane);
const kubectl = (...args: string[]) => run(args);

/** `kubectl apply` that must succeed; returns its output lines. */
async function apply(...args: string[]): Promise<string[]> {
  const result = await kubectl('apply', ...args);
  expect(result.code, `kubectl apply ${args.join(' ')}\n${result.stderr}`).toBe(0);
  return result.stdout.trim().split('\n');
}

interface Kustomization {
  resources: string[];
}
const resourceFiles = (dir: string) =>
  (
    parse(readFileSync(join(MONITORING, dir, 'kustomization.yaml'), 'utf8')) as Kustomization
  ).resources
    .filter((r) => r.endsWith('.yaml'))
    .map((r) => join('deploy/monitoring', dir, r));

const manifests = [...resourceFiles('base'), ...resourceFiles('secure')];

let temp = '';

beforeAll(async () => {
  await installCrd(plane, join(CRDS, 'monitoring.coreos.com_servicemonitors.yaml'));
  await installCrd(plane, join(CRDS, 'monitoring.coreos.com_prometheusrules.yaml'));
  // The manifests keep namespace: agentrun-system (kubebuilder style). Shared by test files and
  // never deleted (namespaces never finish deleting here): create it if it is not there.
  const status = await statusOf(
    adminKubeConfig(plane)
      .makeApiClient(CoreV1Api)
      .createNamespace({ body: { metadata: { name: NAMESPACE } } }),
  );
  expect([200, 201, 409]).toContain(status);
  temp = mkdtempSync(join(tmpdir(), 'agentrun-monitoring-'));
});

afterAll(() => {
  if (temp) rmSync(temp, { recursive: true, force: true });
});

describe('deploy/monitoring on the API server (dry run)', () => {
  it.each(manifests)('kubectl apply --dry-run=server -f %s', async (file) => {
    const lines = await apply('--dry-run=server', '--validate=strict', '-f', file);
    expect(lines).toEqual([
      expect.stringMatching(/ (created|configured|unchanged) \(server dry run\)$/),
    ]);
  });

  it.each(manifests)('kubectl apply --server-side --dry-run=server -f %s', async (file) => {
    const lines = await apply(
      '--server-side',
      '--field-manager=agentrun-test',
      '--dry-run=server',
      '--validate=strict',
      '-f',
      file,
    );
    expect(lines).toEqual([expect.stringMatching(/ serverside-applied \(server dry run\)$/)]);
  });

  it('kubectl apply -k deploy/monitoring: Service, ServiceMonitor, PrometheusRule, dashboard', async () => {
    const lines = await apply('--dry-run=server', '--validate=strict', '-k', 'deploy/monitoring');
    expect(
      lines
        .map((line) => line.replace(/ (created|configured|unchanged) \(server dry run\)$/, ''))
        .sort(),
    ).toEqual([
      'configmap/agentrun-operator-dashboard',
      'prometheusrule.monitoring.coreos.com/agentrun-operator',
      'service/agentrun-operator-metrics',
      'servicemonitor.monitoring.coreos.com/agentrun-operator-metrics',
    ]);
  });

  it('kubectl apply -k deploy/monitoring/secure: the same plus the metrics-reader RBAC', async () => {
    const lines = await apply(
      '--dry-run=server',
      '--validate=strict',
      '-k',
      'deploy/monitoring/secure',
    );
    expect(
      lines
        .map((line) => line.replace(/ (created|configured|unchanged) \(server dry run\)$/, ''))
        .sort(),
    ).toEqual([
      'clusterrole.rbac.authorization.k8s.io/agentrun-operator-metrics-reader',
      'clusterrolebinding.rbac.authorization.k8s.io/agentrun-operator-metrics-reader-prometheus',
      'configmap/agentrun-operator-dashboard',
      'prometheusrule.monitoring.coreos.com/agentrun-operator',
      'service/agentrun-operator-metrics',
      'servicemonitor.monitoring.coreos.com/agentrun-operator-metrics',
    ]);
  });

  it('the secure overlay renders an HTTPS Service on 8443 and a token-over-TLS ServiceMonitor', async () => {
    const rendered = await kubectl('kustomize', 'deploy/monitoring/secure');
    expect(rendered.code, rendered.stderr).toBe(0);
    const objects = parseAllDocuments(rendered.stdout).map((d) => d.toJS());
    const service = objects.find((o) => o.kind === 'Service');
    expect(service.spec.ports).toEqual([
      { name: 'metrics', port: 8443, targetPort: 'metrics', protocol: 'TCP', appProtocol: 'https' },
    ]);
    const monitor = objects.find((o) => o.kind === 'ServiceMonitor');
    expect(monitor.spec.endpoints).toEqual([
      expect.objectContaining({
        port: 'metrics',
        scheme: 'https',
        bearerTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
        tlsConfig: { insecureSkipVerify: true },
      }),
    ]);
  });

  it('renders the dashboard ConfigMap with the sidecar label and JSON that parses', async () => {
    const rendered = await kubectl('kustomize', 'deploy/monitoring');
    expect(rendered.code, rendered.stderr).toBe(0);
    const configMap = parseAllDocuments(rendered.stdout)
      .map((d) => d.toJS())
      .find((o) => o.kind === 'ConfigMap');
    expect(configMap.metadata).toMatchObject({
      name: 'agentrun-operator-dashboard',
      namespace: NAMESPACE,
      labels: { grafana_dashboard: '1' },
    });
    expect(JSON.parse(configMap.data['agentrun-operator.json']).uid).toBe('agentrun-operator');
  });

  // Controls: the dry run would catch a broken ServiceMonitor, so passing it means something.
  it.each([
    ['an unknown field', { schem: 'https' }, /unknown field "spec\.endpoints\[0\]\.schem"/],
    [
      'a scheme outside the enum',
      { scheme: 'ftp' },
      /spec\.endpoints\[0\]\.scheme: Unsupported value: "ftp"/,
    ],
  ])('rejects a ServiceMonitor with %s', async (_what, endpoint, message) => {
    const broken = join(temp, 'broken-servicemonitor.yaml');
    writeFileSync(
      broken,
      JSON.stringify({
        apiVersion: 'monitoring.coreos.com/v1',
        kind: 'ServiceMonitor',
        metadata: { name: 'broken', namespace: NAMESPACE },
        spec: {
          selector: { matchLabels: { 'app.kubernetes.io/name': 'agentrun-operator' } },
          endpoints: [{ port: 'metrics', ...endpoint }],
        },
      }),
    );
    const result = await kubectl('apply', '--dry-run=server', '--validate=strict', '-f', broken);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(message);
  });
});
