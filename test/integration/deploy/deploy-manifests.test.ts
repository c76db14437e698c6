import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CoreV1Api,
  type V1ClusterRole,
  type V1ClusterRoleBinding,
  type V1Container,
  type V1Deployment,
  type V1NetworkPolicy,
  type V1NetworkPolicyPeer,
  type V1PodDisruptionBudget,
  type V1PodSpec,
  type V1PodTemplateSpec,
  type V1Role,
  type V1RoleBinding,
  type V1Secret,
  type V1Service,
  type V1StatefulSet,
} from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { configSchema, loadConfig } from '../../../src/config/config.ts';
import { SHUTDOWN_AUDIT_FLUSH_MS, SHUTDOWN_EVENTS_FLUSH_MS } from '../../../src/operator.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace, statusOf } from '../../support/kube.ts';
import { kubectlFor, runCommand } from '../../support/kubectl.ts';

/**
 * The install manifests (deploy/crd, rbac, manager, default, postgres) against the real API
 * server with the AgentRun CRD and the Prometheus Operator CRDs installed: every kustomization
 * passes `kubectl apply --dry-run=server --validate=strict`; the rendered objects agree with each
 * other and with the operator's configuration schema; and the pods of the Deployment and of the
 * PostgreSQL StatefulSet are admitted by Pod Security admission into a namespace enforcing
 * `restricted`. RBAC is exercised for real in deploy-rbac.test.ts.
 */

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const NAMESPACE = 'agentrun-system';
const VERSION = (
  JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
).version;

const plane = controlPlane();
const admin = adminKubeConfig(plane);

const kubectl = (args: readonly string[], input = '') => kubectlFor(plane)(args, { input });

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
}

async function render(dir: string): Promise<Manifest[]> {
  const result = await kubectl(['kustomize', dir]);
  expect(result.code, result.stderr).toBe(0);
  return parseAllDocuments(result.stdout).map((doc) => doc.toJS() as Manifest);
}

function one<T>(objects: readonly Manifest[], kind: string, name: string): T {
  const found = objects.filter((o) => o.kind === kind && o.metadata.name === name);
  expect(found, `${kind} ${name}`).toHaveLength(1);
  return found[0] as T;
}

/** `kubectl apply` output lines without the " created (server dry run)" tails, sorted. */
const appliedNames = (stdout: string) =>
  stdout
    .trim()
    .split('\n')
    .map((line) =>
      line.replace(/ (created|configured|unchanged|serverside-applied) \(server dry run\)$/, ''),
    )
    .sort();

// What each kustomization installs, as kubectl names the objects.
const CRD = [
  'customresourcedefinition.apiextensions.k8s.io/agentruns.agents.applylens.io',
  'customresourcedefinition.apiextensions.k8s.io/agentdefinitions.agents.applylens.io',
];
const RBAC = [
  'serviceaccount/agentrun-operator',
  'clusterrole.rbac.authorization.k8s.io/agentrun-manager',
  'clusterrolebinding.rbac.authorization.k8s.io/agentrun-manager',
  'role.rbac.authorization.k8s.io/agentrun-leader-election',
  'rolebinding.rbac.authorization.k8s.io/agentrun-leader-election',
  'clusterrole.rbac.authorization.k8s.io/agentrun-admin',
  'clusterrole.rbac.authorization.k8s.io/agentrun-editor',
  'clusterrole.rbac.authorization.k8s.io/agentrun-viewer',
  'clusterrole.rbac.authorization.k8s.io/agentdefinition-editor',
  'clusterrole.rbac.authorization.k8s.io/agentdefinition-viewer',
];
const METRICS_AUTH = [
  'clusterrole.rbac.authorization.k8s.io/agentrun-metrics-auth',
  'clusterrolebinding.rbac.authorization.k8s.io/agentrun-metrics-auth',
];
const MANAGER = [
  'namespace/agentrun-system',
  'deployment.apps/agentrun-operator',
  'networkpolicy.networking.k8s.io/agentrun-operator',
  'poddisruptionbudget.policy/agentrun-operator',
];
const MONITORING = [
  'service/agentrun-operator-metrics',
  'servicemonitor.monitoring.coreos.com/agentrun-operator-metrics',
  'prometheusrule.monitoring.coreos.com/agentrun-operator',
  'configmap/agentrun-operator-dashboard',
];
const METRICS_READER = [
  'clusterrole.rbac.authorization.k8s.io/agentrun-operator-metrics-reader',
  'clusterrolebinding.rbac.authorization.k8s.io/agentrun-operator-metrics-reader-prometheus',
];
const POSTGRES = [
  'secret/agentrun-postgres',
  'secret/agentrun-operator-database',
  'service/agentrun-postgres',
  'statefulset.apps/agentrun-postgres',
  'networkpolicy.networking.k8s.io/agentrun-postgres',
];
const DEFAULT = [...CRD, ...RBAC, ...MANAGER, ...MONITORING];

const KUSTOMIZATIONS: Record<string, string[]> = {
  'deploy/crd': CRD,
  'deploy/rbac': RBAC,
  'deploy/rbac/metrics-auth': METRICS_AUTH,
  'deploy/manager': MANAGER,
  'deploy/default': DEFAULT,
  'deploy/default/secure-metrics': [...DEFAULT, ...METRICS_AUTH, ...METRICS_READER],
  'deploy/postgres': [...DEFAULT, ...POSTGRES],
};
// The install manifests; deploy/monitoring, deploy/admission and deploy/gitops have their own
// tests (under test/integration: monitoring/, deploy/admission-attribution.test.ts, gitops/).
const INSTALL_DIRS = [
  'deploy/crd',
  'deploy/rbac',
  'deploy/manager',
  'deploy/default',
  'deploy/postgres',
];

function kustomizationDirs(dir: string): string[] {
  const here = existsSync(join(ROOT, dir, 'kustomization.yaml')) ? [dir] : [];
  const children = readdirSync(join(ROOT, dir), { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .flatMap((entry) => kustomizationDirs(`${dir}/${entry.name}`));
  return [...here, ...children];
}

beforeAll(async () => {
  await installCrd(plane);
  const fixtures = join(ROOT, 'test/fixtures/prometheus-operator');
  await installCrd(plane, join(fixtures, 'monitoring.coreos.com_servicemonitors.yaml'));
  await installCrd(plane, join(fixtures, 'monitoring.coreos.com_prometheusrules.yaml'));
  // The manifests name agentrun-system, and a dry run needs the namespace to exist. Shared by
  // test files and never deleted (namespaces never finish deleting here).
  const status = await statusOf(
    admin.makeApiClient(CoreV1Api).createNamespace({ body: { metadata: { name: NAMESPACE } } }),
  );
  expect([200, 201, 409]).toContain(status);
});

describe('deploy/ kustomizations on the API server (dry run)', () => {
  it('covers every kustomization of the install manifests', () => {
    const dirs = INSTALL_DIRS.flatMap(kustomizationDirs);
    expect(dirs.sort()).toEqual(Object.keys(KUSTOMIZATIONS).sort());
  });

  it.each(Object.keys(KUSTOMIZATIONS))('every file in %s is part of its kustomization', (dir) => {
    const kustomization = parse(readFileSync(join(ROOT, dir, 'kustomization.yaml'), 'utf8')) as {
      resources?: string[];
      patches?: { path?: string }[];
    };
    const used = new Set([
      ...(kustomization.resources ?? []),
      ...(kustomization.patches ?? []).flatMap((patch) => (patch.path ? [patch.path] : [])),
    ]);
    const files = readdirSync(join(ROOT, dir)).filter(
      (file) => /\.ya?ml$/.test(file) && file !== 'kustomization.yaml',
    );
    for (const file of files) expect(used, `${dir}/${file}`).toContain(file);
  });

  it.each(Object.entries(KUSTOMIZATIONS))(
    'kubectl apply -k %s --dry-run=server --validate=strict',
    async (dir, expected) => {
      const result = await kubectl(['apply', '--dry-run=server', '--validate=strict', '-k', dir]);
      expect(result.code, result.stderr).toBe(0);
      expect(result.stdout.trim().split('\n')).toEqual(
        expected.map(() => expect.stringMatching(/ \(server dry run\)$/)),
      );
      expect(appliedNames(result.stdout)).toEqual([...expected].sort());
    },
  );

  it.each(['deploy/default', 'deploy/default/secure-metrics', 'deploy/postgres'])(
    'kubectl apply --server-side -k %s --dry-run=server',
    async (dir) => {
      const result = await kubectl([
        'apply',
        '--server-side',
        '--field-manager=agentrun-test',
        '--dry-run=server',
        '--validate=strict',
        '-k',
        dir,
      ]);
      expect(result.code, result.stderr).toBe(0);
      expect(appliedNames(result.stdout)).toEqual([...(KUSTOMIZATIONS[dir] ?? [])].sort());
    },
  );

  it('the samples pass the AgentRun and AgentDefinition CRDs', async () => {
    const namespace = await createNamespace(admin, 'deploy-samples');
    const result = await kubectl([
      'apply',
      '--dry-run=server',
      '--validate=strict',
      '-n',
      namespace,
      '-f',
      'deploy/samples/',
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/agentrun\.agents\.applylens\.io\/hello created/);
    // The AgentDefinition samples live apart (make dev applies deploy/samples/ only).
    const agents = await kubectl([
      'create',
      '--dry-run=server',
      '--validate=strict',
      '-n',
      namespace,
      '-f',
      'deploy/samples/agents/',
    ]);
    expect(agents.code, agents.stderr).toBe(0);
    expect(agents.stdout).toMatch(/agentdefinition\.agents\.applylens\.io\/ticket-bot created/);
    expect(agents.stdout).toMatch(/agentdefinition\.agents\.applylens\.io\/builder created/);
  });

  it.each(['agentrun.yaml', 'agentdefinition.yaml'])(
    'deploy/crd/%s is its copy in crds/ (fix: cp crds/*.yaml deploy/crd/)',
    (file) => {
      expect(readFileSync(join(ROOT, 'deploy/crd', file), 'utf8')).toBe(
        readFileSync(join(ROOT, 'crds', file), 'utf8'),
      );
    },
  );

  it('make build-installer writes dist/install.yaml: deploy/default with the IMG image', async () => {
    const image = 'registry.example/agentrun/operator:9.9.9-test';
    const env = { ...process.env, MAKEFLAGS: '', MAKELEVEL: '' };
    const made = await runCommand(
      'make',
      ['-s', 'build-installer', `IMG=${image}`, `KUBECTL=${plane.kubectl}`],
      { env },
    );
    expect(made.code, made.stderr).toBe(0);
    const installer = join(ROOT, 'dist/install.yaml');
    const installed = parseAllDocuments(readFileSync(installer, 'utf8')).map(
      (doc) => doc.toJS() as Manifest,
    );
    const deployment = one<V1Deployment>(installed, 'Deployment', 'agentrun-operator');
    expect(deployment.spec?.template.spec?.containers[0]?.image).toBe(image);
    // Otherwise the same objects as deploy/default.
    (deployment.spec?.template.spec?.containers[0] as V1Container).image =
      `agentrun-operator:${VERSION}`;
    expect(installed).toEqual(await render('deploy/default'));

    const applied = await kubectl([
      'apply',
      '--dry-run=server',
      '--validate=strict',
      '-f',
      relative(ROOT, installer),
    ]);
    expect(applied.code, applied.stderr).toBe(0);
    expect(appliedNames(applied.stdout)).toEqual([...DEFAULT].sort());
  });
});

/** The literal env values of a container, as the operator would see them. */
function literalEnv(container: V1Container): Record<string, string> {
  return Object.fromEntries(
    (container.env ?? []).flatMap((e) => (e.value === undefined ? [] : [[e.name, e.value]])),
  );
}

const manager = (deployment: V1Deployment): V1Container => {
  const container = deployment.spec?.template.spec?.containers.find((c) => c.name === 'manager');
  expect(container).toBeDefined();
  return container as V1Container;
};

/** Whether a label selector (matchLabels only, as ours are) selects these labels. */
const selects = (selector: Record<string, string> | undefined, labels: Record<string, string>) =>
  Object.keys(selector ?? {}).length > 0 &&
  Object.entries(selector ?? {}).every(([key, value]) => labels[key] === value);

describe('deploy/default, rendered', () => {
  let objects: Manifest[] = [];
  let deployment: V1Deployment;
  let pod: V1PodSpec;
  let podLabels: Record<string, string>;
  let container: V1Container;

  beforeAll(async () => {
    objects = await render('deploy/default');
    deployment = one<V1Deployment>(objects, 'Deployment', 'agentrun-operator');
    pod = deployment.spec?.template.spec as V1PodSpec;
    podLabels = deployment.spec?.template.metadata?.labels ?? {};
    container = manager(deployment);
  });

  it('puts every namespaced object into agentrun-system', () => {
    const clusterScoped = new Set([
      'Namespace',
      'CustomResourceDefinition',
      'ClusterRole',
      'ClusterRoleBinding',
    ]);
    for (const object of objects) {
      expect(object.metadata.namespace, `${object.kind} ${object.metadata.name}`).toBe(
        clusterScoped.has(object.kind) ? undefined : NAMESPACE,
      );
    }
    expect(one<Manifest>(objects, 'Namespace', NAMESPACE).metadata.labels).toMatchObject({
      'pod-security.kubernetes.io/enforce': 'restricted',
    });
  });

  it('runs 2 replicas of the versioned image with leader election in their own namespace', () => {
    expect(deployment.spec?.replicas).toBe(2);
    expect(container.image).toBe(`agentrun-operator:${VERSION}`);
    expect(container.args).toEqual(['run']);
    expect(literalEnv(container)).toMatchObject({ LEADER_ELECT: 'true' });
    expect(container.env).toContainEqual({
      name: 'POD_NAMESPACE',
      valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } },
    });
    expect(container.env).toContainEqual({
      name: 'DATABASE_URL',
      valueFrom: { secretKeyRef: { name: 'agentrun-operator-database', key: 'DATABASE_URL' } },
    });
  });

  it('sets only settings the operator knows, with values it accepts', () => {
    // NODE_OPTIONS is read by Node.js itself (V8's heap sizing, memory-limit.test.ts checks it).
    const known = new Set([...Object.keys(configSchema.shape), 'POD_NAMESPACE', 'NODE_OPTIONS']);
    for (const { name } of container.env ?? []) expect(known, name).toContain(name);
    const config = loadConfig({ ...literalEnv(container), DATABASE_URL: 'postgres://u:p@db/x' });
    expect(config).toMatchObject({
      LEADER_ELECT: true,
      METRICS_SECURE: false,
      APPLYLENS_AGENT_AUDIT_ENABLED: true,
      HEALTH_PROBE_BIND_ADDRESS: { port: 8081 },
      METRICS_BIND_ADDRESS: { port: 8080 },
    });
    const ports = Object.fromEntries((container.ports ?? []).map((p) => [p.name, p.containerPort]));
    expect(ports).toEqual({ metrics: 8080, health: 8081 });
  });

  it('probes /healthz and /readyz on the health port', () => {
    expect(container.livenessProbe?.httpGet).toEqual({ path: '/healthz', port: 'health' });
    expect(container.readinessProbe?.httpGet).toEqual({ path: '/readyz', port: 'health' });
  });

  it('asks for resources and caps them', () => {
    for (const kind of ['requests', 'limits'] as const) {
      expect(Object.keys(container.resources?.[kind] ?? {}).sort()).toEqual(['cpu', 'memory']);
    }
  });

  it('waits longer than the operator drains before killing it', () => {
    const config = loadConfig({ ...literalEnv(container), DATABASE_URL: 'postgres://u:p@db/x' });
    // The handlers' grace, then the audit and Event flushes, with room for the API calls between.
    const drainSeconds =
      config.SHUTDOWN_GRACE_SECONDS + (SHUTDOWN_AUDIT_FLUSH_MS + SHUTDOWN_EVENTS_FLUSH_MS) / 1000;
    expect(pod.terminationGracePeriodSeconds ?? 30).toBeGreaterThanOrEqual(drainSeconds + 5);
  });

  it('runs unprivileged on a read-only root filesystem, with an emptyDir for /tmp', () => {
    expect(pod.securityContext).toMatchObject({
      runAsNonRoot: true,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    expect(container.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
    });
    const tmp = container.volumeMounts?.find((m) => m.mountPath === '/tmp');
    expect(pod.volumes?.find((v) => v.name === tmp?.name)?.emptyDir).toBeDefined();
  });

  it('selects its pods consistently: metrics Service, NetworkPolicy, PodDisruptionBudget', () => {
    expect(selects(deployment.spec?.selector.matchLabels, podLabels)).toBe(true);
    const service = one<V1Service>(objects, 'Service', 'agentrun-operator-metrics');
    expect(selects(service.spec?.selector, podLabels)).toBe(true);
    expect(service.spec?.ports?.[0]?.targetPort).toBe('metrics');
    const policy = one<V1NetworkPolicy>(objects, 'NetworkPolicy', 'agentrun-operator');
    expect(selects(policy.spec?.podSelector?.matchLabels, podLabels)).toBe(true);
    const budget = one<V1PodDisruptionBudget>(objects, 'PodDisruptionBudget', 'agentrun-operator');
    expect(selects(budget.spec?.selector?.matchLabels, podLabels)).toBe(true);
    expect(budget.spec?.minAvailable).toBe(1);
  });

  it('lets in only scrapes and probes; lets out DNS, the API server, PostgreSQL and agents', () => {
    const policy = one<V1NetworkPolicy>(objects, 'NetworkPolicy', 'agentrun-operator');
    expect(policy.spec?.policyTypes).toEqual(['Ingress', 'Egress']);
    const ingress = (policy.spec?.ingress ?? []).flatMap((rule) => rule.ports ?? []);
    expect(ingress.map((p) => p.port).sort()).toEqual(['health', 'metrics']);
    const containerPorts = (container.ports ?? []).map((p) => p.name);
    for (const port of ingress) expect(containerPorts).toContain(port.port);
    const egress = (policy.spec?.egress ?? []).flatMap((rule) => {
      expect(rule.to, 'egress by port, to any destination').toBeUndefined();
      return (rule.ports ?? []).map((p) => `${p.port}/${p.protocol}`);
    });
    expect([...new Set(egress)].sort()).toEqual(
      ['53/UDP', '53/TCP', '443/TCP', '6443/TCP', '5432/TCP', '80/TCP'].sort(),
    );
  });

  it('binds the roles to the ServiceAccount the pods run as', () => {
    const account = { kind: 'ServiceAccount', name: pod.serviceAccountName, namespace: NAMESPACE };
    one<Manifest>(objects, 'ServiceAccount', pod.serviceAccountName ?? '');
    const manager = one<V1ClusterRoleBinding>(objects, 'ClusterRoleBinding', 'agentrun-manager');
    expect(manager.subjects).toEqual([account]);
    expect(manager.roleRef).toMatchObject({ kind: 'ClusterRole', name: 'agentrun-manager' });
    const leader = one<V1RoleBinding>(objects, 'RoleBinding', 'agentrun-leader-election');
    expect(leader.subjects).toEqual([account]);
    expect(leader.roleRef).toMatchObject({ kind: 'Role', name: 'agentrun-leader-election' });
    // The Lease lives in the pod's namespace, which is where the Role grants it.
    expect(one<V1Role>(objects, 'Role', 'agentrun-leader-election').rules).toEqual([
      {
        apiGroups: ['coordination.k8s.io'],
        resources: ['leases'],
        verbs: ['get', 'create', 'update'],
      },
    ]);
  });

  it('grants no wildcards and nothing on Secrets', () => {
    const roles = objects.filter((o) => o.kind === 'ClusterRole' || o.kind === 'Role') as (
      | V1ClusterRole
      | V1Role
    )[];
    for (const role of roles) {
      for (const rule of role.rules ?? []) {
        const words = [...(rule.apiGroups ?? []), ...(rule.resources ?? []), ...rule.verbs];
        expect(words, role.metadata?.name).not.toContain('*');
        expect(rule.resources ?? [], role.metadata?.name).not.toContain('secrets');
      }
    }
  });

  it('aggregates the user roles into admin, edit and view', () => {
    for (const [role, into] of [
      ['agentrun-admin', 'admin'],
      ['agentrun-editor', 'edit'],
      ['agentrun-viewer', 'view'],
    ] as const) {
      expect(one<V1ClusterRole>(objects, 'ClusterRole', role).metadata?.labels).toMatchObject({
        [`rbac.authorization.k8s.io/aggregate-to-${into}`]: 'true',
      });
    }
  });
});

describe('deploy/default/secure-metrics, rendered', () => {
  it('is deploy/default with HTTPS metrics on 8443 and the review permissions', async () => {
    const plain = await render('deploy/default');
    const secure = await render('deploy/default/secure-metrics');
    const deployment = one<V1Deployment>(secure, 'Deployment', 'agentrun-operator');
    const container = manager(deployment);
    const config = loadConfig({ ...literalEnv(container), DATABASE_URL: 'postgres://u:p@db/x' });
    expect(config).toMatchObject({ METRICS_SECURE: true, METRICS_BIND_ADDRESS: { port: 8443 } });
    expect(container.ports?.find((p) => p.name === 'metrics')?.containerPort).toBe(8443);
    const service = one<V1Service>(secure, 'Service', 'agentrun-operator-metrics');
    expect(service.spec?.ports?.[0]).toMatchObject({ port: 8443, targetPort: 'metrics' });

    const binding = one<V1ClusterRoleBinding>(
      secure,
      'ClusterRoleBinding',
      'agentrun-metrics-auth',
    );
    expect(binding.subjects).toEqual([
      {
        kind: 'ServiceAccount',
        name: deployment.spec?.template.spec?.serviceAccountName,
        namespace: NAMESPACE,
      },
    ]);
    expect(one<V1ClusterRole>(secure, 'ClusterRole', 'agentrun-metrics-auth').rules).toEqual([
      { apiGroups: ['authentication.k8s.io'], resources: ['tokenreviews'], verbs: ['create'] },
      {
        apiGroups: ['authorization.k8s.io'],
        resources: ['subjectaccessreviews'],
        verbs: ['create'],
      },
    ]);

    // Apart from the metrics settings, the Deployment is deploy/default's.
    const plainDeployment = one<V1Deployment>(plain, 'Deployment', 'agentrun-operator');
    const normalize = (d: V1Deployment) => {
      const copy = structuredClone(d);
      const c = manager(copy);
      c.env = (c.env ?? []).filter((e) => !e.name.startsWith('METRICS_'));
      c.ports = (c.ports ?? []).filter((p) => p.name !== 'metrics');
      return copy;
    };
    expect(normalize(deployment)).toEqual(normalize(plainDeployment));
  });
});

describe('deploy/postgres, rendered', () => {
  let objects: Manifest[] = [];
  let defaults: Manifest[] = [];
  beforeAll(async () => {
    objects = await render('deploy/postgres');
    defaults = await render('deploy/default');
  });

  it("gives the operator a DATABASE_URL for the StatefulSet's Service and credentials", () => {
    const url = new URL(
      one<V1Secret>(objects, 'Secret', 'agentrun-operator-database').stringData?.['DATABASE_URL'] ??
        '',
    );
    const server = one<V1Secret>(objects, 'Secret', 'agentrun-postgres').stringData ?? {};
    const service = one<V1Service>(objects, 'Service', 'agentrun-postgres');
    const statefulSet = one<V1StatefulSet>(objects, 'StatefulSet', 'agentrun-postgres');
    expect(url.protocol).toBe('postgres:');
    expect(url.hostname).toBe(service.metadata?.name);
    expect(Number(url.port)).toBe(service.spec?.ports?.[0]?.port);
    expect(url.username).toBe(server['POSTGRES_USER']);
    expect(decodeURIComponent(url.password)).toBe(server['POSTGRES_PASSWORD']);
    expect(url.pathname).toBe(`/${server['POSTGRES_DB']}`);
    expect(statefulSet.spec?.serviceName).toBe(service.metadata?.name);
    expect(selects(service.spec?.selector, statefulSet.spec?.template.metadata?.labels ?? {})).toBe(
      true,
    );
    expect(statefulSet.spec?.template.spec?.containers[0]?.envFrom).toEqual([
      { secretRef: { name: 'agentrun-postgres' } },
    ]);
    const deployment = one<V1Deployment>(objects, 'Deployment', 'agentrun-operator');
    expect(
      loadConfig({ ...literalEnv(manager(deployment)), DATABASE_URL: url.href }).DATABASE_URL,
    ).toBe(url.href);
  });

  it('starts the operator once PostgreSQL accepts connections (it migrates at start-up)', () => {
    const deployment = one<V1Deployment>(objects, 'Deployment', 'agentrun-operator');
    const service = one<V1Service>(objects, 'Service', 'agentrun-postgres');
    const [wait, ...more] = deployment.spec?.template.spec?.initContainers ?? [];
    expect(more).toEqual([]);
    expect(wait?.command?.join(' ')).toContain(
      `pg_isready -h ${service.metadata?.name} -p ${service.spec?.ports?.[0]?.port}`,
    );
    const statefulSet = one<V1StatefulSet>(objects, 'StatefulSet', 'agentrun-postgres');
    expect(wait?.image).toBe(statefulSet.spec?.template.spec?.containers[0]?.image);
    // Otherwise the Deployment is deploy/default's.
    const copy = structuredClone(deployment);
    delete copy.spec?.template.spec?.initContainers;
    expect(copy).toEqual(one<V1Deployment>(defaults, 'Deployment', 'agentrun-operator'));
  });

  it('admits only the operator to PostgreSQL, and keeps the two apart', () => {
    const operator =
      one<V1Deployment>(objects, 'Deployment', 'agentrun-operator').spec?.template.metadata
        ?.labels ?? {};
    const postgres =
      one<V1StatefulSet>(objects, 'StatefulSet', 'agentrun-postgres').spec?.template.metadata
        ?.labels ?? {};
    const policy = one<V1NetworkPolicy>(objects, 'NetworkPolicy', 'agentrun-postgres');
    expect(selects(policy.spec?.podSelector?.matchLabels, postgres)).toBe(true);
    expect(policy.spec?.policyTypes).toEqual(['Ingress', 'Egress']);
    expect(policy.spec?.egress ?? []).toEqual([]);
    expect(policy.spec?.ingress).toHaveLength(1);
    // (client-node's type calls it `_from`; the manifest says `from`.)
    const rule = policy.spec?.ingress?.[0] as { from?: V1NetworkPolicyPeer[] } | undefined;
    const [from] = rule?.from ?? [];
    expect(selects(from?.podSelector?.matchLabels, operator)).toBe(true);
    // No selector of the operator's objects picks the database pod, and the other way round.
    for (const [kind, name] of [
      ['Service', 'agentrun-operator-metrics'],
      ['NetworkPolicy', 'agentrun-operator'],
      ['PodDisruptionBudget', 'agentrun-operator'],
    ] as const) {
      const object = one<{ spec: Record<string, unknown> }>(objects, kind, name).spec;
      const selector = (object['selector'] ?? object['podSelector']) as {
        matchLabels?: Record<string, string>;
      } & Record<string, string>;
      expect(selects(selector.matchLabels ?? selector, postgres), `${kind} ${name}`).toBe(false);
    }
    const service = one<V1Service>(objects, 'Service', 'agentrun-postgres');
    expect(selects(service.spec?.selector, operator)).toBe(false);
  });
});

describe('Pod Security admission, namespace enforcing restricted', () => {
  let namespace = '';
  let objects: Manifest[] = [];

  beforeAll(async () => {
    namespace = `deploy-restricted-${Math.random().toString(36).slice(2, 8)}`;
    await admin.makeApiClient(CoreV1Api).createNamespace({
      body: {
        metadata: {
          name: namespace,
          labels: {
            'pod-security.kubernetes.io/enforce': 'restricted',
            'pod-security.kubernetes.io/warn': 'restricted',
          },
        },
      },
    });
    objects = await render('deploy/postgres');
  });

  const workloads = [
    ['Deployment', 'agentrun-operator'],
    ['StatefulSet', 'agentrun-postgres'],
  ] as const;

  /** The object re-namespaced into the restricted namespace. */
  const moved = <T extends Manifest>(object: T): T => ({
    ...object,
    metadata: { ...object.metadata, namespace },
  });

  /** A Pod as the workload's controller would create it (no controllers run here). */
  function podOf(kind: string, name: string): Manifest & { spec: V1PodSpec } {
    const workload = one<{ spec: { template: V1PodTemplateSpec } }>(objects, kind, name);
    const spec = structuredClone(workload.spec.template.spec) as V1PodSpec;
    if (kind === 'StatefulSet') {
      // What the StatefulSet controller adds for the volumeClaimTemplate `data`.
      spec.volumes = [
        ...(spec.volumes ?? []),
        { name: 'data', persistentVolumeClaim: { claimName: `data-${name}-0` } },
      ];
    }
    return {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: {
        name: `${name}-0`,
        namespace,
        labels: workload.spec.template.metadata?.labels ?? {},
      },
      spec,
    };
  }

  it.each(workloads)('admits the %s %s without Pod Security warnings', async (kind, name) => {
    const object = moved(one<Manifest>(objects, kind, name));
    const result = await kubectl(
      ['apply', '--dry-run=server', '--validate=strict', '-f', '-'],
      JSON.stringify(object),
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stderr).not.toMatch(/PodSecurity/);
  });

  it.each(workloads)('admits a Pod of the %s %s', async (kind, name) => {
    const result = await kubectl(
      ['create', '--dry-run=server', '-o', 'name', '-f', '-'],
      JSON.stringify(podOf(kind, name)),
    );
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout.trim()).toBe(`pod/${name}-0`);
  });

  // Controls: the namespace does enforce, and each setting of the manifests is what passes it.
  it.each<[string, (spec: V1PodSpec) => void]>([
    ['without runAsNonRoot', (spec) => delete spec.securityContext?.runAsNonRoot],
    ['without the seccomp profile', (spec) => delete spec.securityContext?.seccompProfile],
    [
      'with privilege escalation',
      (spec) => {
        (spec.containers[0]?.securityContext ?? {}).allowPrivilegeEscalation = true;
      },
    ],
    ['keeping capabilities', (spec) => delete spec.containers[0]?.securityContext?.capabilities],
  ])('rejects the operator Pod %s', async (_what, mutate) => {
    const pod = podOf('Deployment', 'agentrun-operator');
    mutate(pod.spec);
    const result = await kubectl(
      ['create', '--dry-run=server', '-o', 'name', '-f', '-'],
      JSON.stringify(pod),
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/violates PodSecurity "restricted:latest"/);
  });
});
