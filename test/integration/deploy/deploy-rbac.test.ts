import { randomBytes } from 'node:crypto';
import {
  AppsV1Api,
  AuthenticationV1Api,
  AuthorizationV1Api,
  BatchV1Api,
  CoordinationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  EventsV1Api,
  type KubeConfig,
  PatchStrategy,
  RbacAuthorizationV1Api,
  setHeaderOptions,
  V1MicroTime,
  type V1ResourceAttributes,
} from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { AgentRuns } from '../../support/agentruns.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane, useFreshDatabase } from '../../support/environment.ts';
import {
  adminKubeConfig,
  kubeConfigWithToken,
  type MintedUser,
  mintUser,
} from '../../support/envtest/users.ts';
import { createNamespace, statusOf } from '../../support/kube.ts';
import { kubectlFor, succeeded } from '../../support/kubectl.ts';
import { startOperator } from '../../support/operator.ts';
import { waitFor } from '../../support/wait.ts';

/**
 * The RBAC of deploy/rbac applied for real to the API server, then exercised with real requests:
 * the operator's ServiceAccount (a token from the TokenRequest API) can do what the operator
 * does and nothing else (no Secrets, ConfigMaps, Pods, workloads, Leases elsewhere, token or
 * access reviews without deploy/rbac/metrics-auth), and people bound to agentrun-viewer,
 * agentrun-editor and agentrun-admin get what their names say.
 *
 * The manifests name the namespace agentrun-system; here their namespaced objects and the
 * subjects of their bindings move to a fresh namespace ("home"), and the ClusterRoleBindings get
 * a suffix, so that test files sharing the API server do not meet. The ClusterRoles are applied
 * as they are. Aggregation into admin/edit/view needs the controller-manager, which is absent:
 * the agentrun-* ClusterRoles are bound directly.
 */

const GROUP = 'agents.applylens.io';
const VERSION = 'v1alpha1';
const PLURAL = 'agentruns';
const SERVICE_ACCOUNT = 'agentrun-operator';

const plane = controlPlane();
const admin = adminKubeConfig(plane);
const auditDb = useFreshDatabase('deploy_rbac');
const mergePatch = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

interface Manifest {
  kind: string;
  metadata: { name: string; namespace?: string };
  subjects?: { kind: string; name: string; namespace?: string }[];
}

const kubectl = kubectlFor(plane);
const mustKubectl = (args: readonly string[], input = '') =>
  succeeded(kubectl(args, { input }), ['kubectl', ...args]);

/**
 * Renders a kustomization, moves it to `home` (see above) and applies it for real. Returns the
 * names of the ClusterRoleBindings created, for clean-up.
 */
async function applyInto(dir: string, home: string, suffix: string): Promise<string[]> {
  const objects = parseAllDocuments(await mustKubectl(['kustomize', dir])).map(
    (doc) => doc.toJS() as Manifest,
  );
  for (const object of objects) {
    if (object.metadata.namespace) object.metadata.namespace = home;
    if (object.kind === 'ClusterRoleBinding') object.metadata.name += `-${suffix}`;
    for (const subject of object.subjects ?? []) {
      if (subject.kind === 'ServiceAccount') subject.namespace = home;
    }
  }
  await mustKubectl(
    ['apply', '--server-side', '--force-conflicts', '--field-manager=deploy-rbac-test', '-f', '-'],
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }),
  );
  return objects.filter((o) => o.kind === 'ClusterRoleBinding').map((o) => o.metadata.name);
}

async function serviceAccountToken(namespace: string, name: string): Promise<KubeConfig> {
  const request = await admin.makeApiClient(CoreV1Api).createNamespacedServiceAccountToken({
    name,
    namespace,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const token = request.status?.token ?? '';
  expect(token).not.toBe('');
  return kubeConfigWithToken(plane, `system:serviceaccount:${namespace}:${name}`, token);
}

/** SelfSubjectAccessReview: may the holder of `kc` do this? */
async function can(kc: KubeConfig, attributes: V1ResourceAttributes): Promise<boolean> {
  const review = await kc
    .makeApiClient(AuthorizationV1Api)
    .createSelfSubjectAccessReview({ body: { spec: { resourceAttributes: attributes } } });
  return review.status?.allowed === true;
}

/** RBAC bindings reach the authorizer a moment after they are written. */
const eventually = (what: string, kc: KubeConfig, attributes: V1ResourceAttributes) =>
  waitFor(what, async () => ((await can(kc, attributes)) ? true : undefined));

/** Everything the holder of `kc` may do in `namespace`, one "verb group/resource" per entry. */
async function rulesIn(kc: KubeConfig, namespace: string): Promise<Set<string>> {
  const review = await kc
    .makeApiClient(AuthorizationV1Api)
    .createSelfSubjectRulesReview({ body: { spec: { namespace } } });
  expect(review.status?.incomplete).toBe(false);
  const rules = new Set<string>();
  for (const rule of review.status?.resourceRules ?? []) {
    const names = rule.resourceNames?.length ? ` [${rule.resourceNames.join(',')}]` : '';
    for (const group of rule.apiGroups ?? [])
      for (const resource of rule.resources ?? [])
        for (const verb of rule.verbs) rules.add(`${verb} ${group || 'core'}/${resource}${names}`);
  }
  for (const rule of review.status?.nonResourceRules ?? [])
    for (const url of rule.nonResourceURLs ?? [])
      for (const verb of rule.verbs) rules.add(`${verb} ${url}`);
  return rules;
}

const without = (all: Set<string>, baseline: Set<string>) =>
  [...all].filter((rule) => !baseline.has(rule)).sort();

const expand = (group: string, resource: string, verbs: string[]) =>
  verbs.map((verb) => `${verb} ${group}/${resource}`);

/** What the operator may do in any namespace (manager-role.yaml). */
const MANAGER_RULES = [
  ...expand(GROUP, 'agentruns', ['get', 'list', 'watch', 'update', 'patch', 'delete']),
  ...expand(GROUP, 'agentruns/status', ['get', 'update', 'patch']),
  ...expand(GROUP, 'agentruns/finalizers', ['update']),
  ...expand(GROUP, 'agentdefinitions', ['get', 'list', 'watch']),
  ...expand(GROUP, 'agentdefinitions/status', ['update', 'patch']),
  ...expand('batch', 'jobs', ['get', 'list', 'watch', 'create', 'delete']),
  ...expand('core', 'pods', ['get', 'list', 'watch']),
  ...expand('events.k8s.io', 'events', ['create', 'patch']),
];
/** Plus, in its own namespace only (leader-election-role.yaml). */
const LEASE_RULES = expand('coordination.k8s.io', 'leases', ['get', 'create', 'update']);
/** Plus, with secure metrics (metrics-auth/). */
const REVIEW_RULES = [
  'create authentication.k8s.io/tokenreviews',
  'create authorization.k8s.io/subjectaccessreviews',
];

function agentRun(name: string) {
  return {
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'AgentRun',
    metadata: { name },
    spec: { agent: 'noop', objective: 'rbac check' },
  };
}

let home = ''; // stands in for agentrun-system
let work = ''; // where AgentRuns live
let other = ''; // a namespace with nothing of ours
const suffix = randomBytes(3).toString('hex');
const clusterRoleBindings: string[] = [];
let operator: KubeConfig;
let stranger: KubeConfig; // a ServiceAccount without any binding: the baseline

beforeAll(async () => {
  await installCrd(plane);
  home = await createNamespace(admin, 'deploy-rbac-home');
  work = await createNamespace(admin, 'deploy-rbac-work');
  other = await createNamespace(admin, 'deploy-rbac-other');
  clusterRoleBindings.push(...(await applyInto('deploy/rbac', home, suffix)));
  operator = await serviceAccountToken(home, SERVICE_ACCOUNT);
  await admin
    .makeApiClient(CoreV1Api)
    .createNamespacedServiceAccount({ namespace: home, body: { metadata: { name: 'stranger' } } });
  stranger = await serviceAccountToken(home, 'stranger');
  await eventually('the manager binding', operator, {
    group: GROUP,
    resource: PLURAL,
    verb: 'list',
  });
  await eventually('the leader-election binding', operator, {
    group: 'coordination.k8s.io',
    resource: 'leases',
    verb: 'create',
    namespace: home,
  });
  const core = admin.makeApiClient(CoreV1Api);
  for (const namespace of [home, work]) {
    await core.createNamespacedSecret({
      namespace,
      body: { metadata: { name: 'database' }, stringData: { DATABASE_URL: 'postgres://x' } },
    });
  }
});

afterAll(async () => {
  const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
  for (const name of clusterRoleBindings) {
    await rbac.deleteClusterRoleBinding({ name }).catch(() => {});
  }
});

describe('the operator ServiceAccount, bound by deploy/rbac', () => {
  it('authenticates as the ServiceAccount (TokenRequest)', async () => {
    const review = await operator
      .makeApiClient(AuthenticationV1Api)
      .createSelfSubjectReview({ body: {} });
    expect(review.status?.userInfo?.username).toBe(
      `system:serviceaccount:${home}:${SERVICE_ACCOUNT}`,
    );
  });

  it('may do exactly what the operator does: AgentRuns and Events anywhere, Leases at home', async () => {
    const baselineHome = await rulesIn(stranger, home);
    const baselineWork = await rulesIn(stranger, work);
    expect(without(await rulesIn(operator, home), baselineHome)).toEqual(
      [...MANAGER_RULES, ...LEASE_RULES].sort(),
    );
    expect(without(await rulesIn(operator, work), baselineWork)).toEqual([...MANAGER_RULES].sort());
  });

  it('lists, watches, patches, writes the status of and deletes AgentRuns', async () => {
    const adminRuns = admin.makeApiClient(CustomObjectsApi);
    await adminRuns.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: work,
      plural: PLURAL,
      body: agentRun('r1'),
    });
    const runs = operator.makeApiClient(CustomObjectsApi);
    const target = { group: GROUP, version: VERSION, namespace: work, plural: PLURAL, name: 'r1' };
    expect(
      await statusOf(
        runs.listClusterCustomObject({ group: GROUP, version: VERSION, plural: PLURAL }),
      ),
    ).toBe(200);
    expect(await can(operator, { group: GROUP, resource: PLURAL, verb: 'watch' })).toBe(true);
    expect(await statusOf(runs.getNamespacedCustomObject(target))).toBe(200);
    // As the reconciler does: a finalizer by patch, the status by JSON patch on the subresource.
    expect(
      await statusOf(
        runs.patchNamespacedCustomObject(
          { ...target, body: { metadata: { finalizers: [`${GROUP}/run-protection`] } } },
          mergePatch,
        ),
      ),
    ).toBe(200);
    expect(
      await statusOf(
        runs.patchNamespacedCustomObjectStatus({
          ...target,
          body: [{ op: 'add', path: '/status', value: { phase: 'Running', attempts: 1 } }],
        }),
      ),
    ).toBe(200);
    expect(
      await statusOf(
        runs.patchNamespacedCustomObject(
          { ...target, body: { metadata: { finalizers: null } } },
          mergePatch,
        ),
      ),
    ).toBe(200);
    expect(await statusOf(runs.deleteNamespacedCustomObject(target))).toBe(200);
  });

  it('reads AgentDefinitions and writes their status, never creates or changes them', async () => {
    const definitions = operator.makeApiClient(CustomObjectsApi);
    const target = {
      group: GROUP,
      version: VERSION,
      namespace: work,
      plural: 'agentdefinitions',
    };
    await admin.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
      ...target,
      body: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'AgentDefinition',
        metadata: { name: 'hook' },
        spec: { webhook: { url: 'https://hooks.example/run' } },
      },
    });
    expect(
      await statusOf(
        definitions.listClusterCustomObject({
          group: GROUP,
          version: VERSION,
          plural: 'agentdefinitions',
        }),
      ),
    ).toBe(200);
    expect(await can(operator, { group: GROUP, resource: 'agentdefinitions', verb: 'watch' })).toBe(
      true,
    );
    expect(
      await statusOf(
        definitions.patchNamespacedCustomObjectStatus({
          ...target,
          name: 'hook',
          body: [{ op: 'add', path: '/status', value: { executor: 'webhook' } }],
        }),
      ),
    ).toBe(200);
    expect(
      await statusOf(
        definitions.patchNamespacedCustomObject(
          { ...target, name: 'hook', body: { spec: { description: 'forged' } } },
          mergePatch,
        ),
      ),
    ).toBe(403);
    expect(
      await statusOf(
        definitions.createNamespacedCustomObject({
          ...target,
          body: {
            apiVersion: `${GROUP}/${VERSION}`,
            kind: 'AgentDefinition',
            metadata: { name: 'forged' },
            spec: { webhook: { url: 'https://hooks.example/run' } },
          },
        }),
      ),
    ).toBe(403);
    expect(
      await statusOf(definitions.deleteNamespacedCustomObject({ ...target, name: 'hook' })),
    ).toBe(403);
  });

  it('records events.k8s.io Events in the runs’ namespaces', async () => {
    const events = operator.makeApiClient(EventsV1Api);
    const body = {
      metadata: { name: `r1.${suffix}` },
      eventTime: new V1MicroTime(),
      type: 'Normal',
      reason: 'Started',
      action: 'Run',
      note: 'attempt 1 started',
      reportingController: `${GROUP}/agentrun-operator`,
      reportingInstance: 'agentrun-operator-0',
      regarding: {
        apiVersion: `${GROUP}/${VERSION}`,
        kind: 'AgentRun',
        namespace: work,
        name: 'r1',
      },
    };
    expect(await statusOf(events.createNamespacedEvent({ namespace: work, body }))).toBe(200);
    expect(
      await statusOf(
        events.patchNamespacedEvent(
          {
            namespace: work,
            name: body.metadata.name,
            body: { series: { count: 2, lastObservedTime: new V1MicroTime() } },
          },
          mergePatch,
        ),
      ),
    ).toBe(200);
    // Not the core/v1 Events API, nor reading Events back.
    expect(await can(operator, { resource: 'events', verb: 'create', namespace: work })).toBe(
      false,
    );
    expect(await statusOf(events.listNamespacedEvent({ namespace: work }))).toBe(403);
  });

  it('takes, renews and reads the Lease in its own namespace only', async () => {
    const leases = operator.makeApiClient(CoordinationV1Api);
    const name = 'agentrun-operator.agents.applylens.io';
    const lease = {
      metadata: { name },
      spec: { holderIdentity: 'pod-a', leaseDurationSeconds: 15 },
    };
    expect(await statusOf(leases.createNamespacedLease({ namespace: home, body: lease }))).toBe(
      200,
    );
    const current = await leases.readNamespacedLease({ namespace: home, name });
    expect(
      await statusOf(
        leases.replaceNamespacedLease({
          namespace: home,
          name,
          body: { ...current, spec: { ...current.spec, holderIdentity: 'pod-b' } },
        }),
      ),
    ).toBe(200);
    expect(await statusOf(leases.listNamespacedLease({ namespace: home }))).toBe(403);
    expect(await statusOf(leases.deleteNamespacedLease({ namespace: home, name }))).toBe(403);
    expect(await statusOf(leases.createNamespacedLease({ namespace: work, body: lease }))).toBe(
      403,
    );
    expect(await statusOf(leases.readNamespacedLease({ namespace: other, name }))).toBe(403);
  });

  it('cannot create AgentRuns (only people do)', async () => {
    const runs = operator.makeApiClient(CustomObjectsApi);
    expect(
      await statusOf(
        runs.createNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: work,
          plural: PLURAL,
          body: agentRun('forged'),
        }),
      ),
    ).toBe(403);
  });

  it('cannot read Secrets: not its own namespace’s, not the runs’, not across the cluster', async () => {
    const core = operator.makeApiClient(CoreV1Api);
    expect(await statusOf(core.readNamespacedSecret({ namespace: home, name: 'database' }))).toBe(
      403,
    );
    expect(await statusOf(core.readNamespacedSecret({ namespace: work, name: 'database' }))).toBe(
      403,
    );
    expect(await statusOf(core.listNamespacedSecret({ namespace: home }))).toBe(403);
    expect(await statusOf(core.listSecretForAllNamespaces())).toBe(403);
    for (const verb of ['get', 'list', 'watch', 'create', 'update', 'delete']) {
      expect(await can(operator, { resource: 'secrets', verb, namespace: home }), verb).toBe(false);
    }
  });

  it('cannot touch other resources: ConfigMaps, pods beyond reading, Deployments, Services, namespaces, RBAC', async () => {
    const core = operator.makeApiClient(CoreV1Api);
    const apps = operator.makeApiClient(AppsV1Api);
    const rbac = operator.makeApiClient(RbacAuthorizationV1Api);
    const denied: [string, () => Promise<unknown>][] = [
      ['list configmaps', () => core.listNamespacedConfigMap({ namespace: home })],
      [
        'create configmap',
        () =>
          core.createNamespacedConfigMap({ namespace: home, body: { metadata: { name: 'x' } } }),
      ],
      [
        'create pod',
        () =>
          core.createNamespacedPod({
            namespace: work,
            body: { metadata: { name: 'x' }, spec: { containers: [{ name: 'x', image: 'x' }] } },
          }),
      ],
      ['list deployments', () => apps.listDeploymentForAllNamespaces()],
      [
        'read own deployment',
        () => apps.readNamespacedDeployment({ namespace: home, name: 'agentrun-operator' }),
      ],
      ['list services', () => core.listNamespacedService({ namespace: home })],
      ['list namespaces', () => core.listNamespace()],
      ['list serviceaccounts', () => core.listNamespacedServiceAccount({ namespace: home })],
      ['list clusterroles', () => rbac.listClusterRole()],
      [
        'create rolebinding',
        () =>
          rbac.createNamespacedRoleBinding({
            namespace: home,
            body: {
              metadata: { name: 'x' },
              roleRef: {
                apiGroup: 'rbac.authorization.k8s.io',
                kind: 'ClusterRole',
                name: 'admin',
              },
            },
          }),
      ],
    ];
    for (const [what, call] of denied) expect(await statusOf(call()), what).toBe(403);
  });

  it('cannot create token or access reviews without deploy/rbac/metrics-auth', async () => {
    expect(
      await statusOf(
        operator
          .makeApiClient(AuthenticationV1Api)
          .createTokenReview({ body: { spec: { token: 'x' } } }),
      ),
    ).toBe(403);
    expect(
      await statusOf(
        operator.makeApiClient(AuthorizationV1Api).createSubjectAccessReview({
          body: { spec: { user: 'x', nonResourceAttributes: { path: '/metrics', verb: 'get' } } },
        }),
      ),
    ).toBe(403);
  });
});

describe('with deploy/rbac/metrics-auth (secure metrics)', () => {
  beforeAll(async () => {
    clusterRoleBindings.push(...(await applyInto('deploy/rbac/metrics-auth', home, suffix)));
    await eventually('the metrics-auth binding', operator, {
      group: 'authentication.k8s.io',
      resource: 'tokenreviews',
      verb: 'create',
    });
  });

  it('reviews scrapers’ tokens and access to /metrics, and may do nothing more', async () => {
    const review = await operator
      .makeApiClient(AuthenticationV1Api)
      .createTokenReview({ body: { spec: { token: 'not-a-token' } } });
    expect(review.status?.authenticated).toBeFalsy();
    const access = await operator.makeApiClient(AuthorizationV1Api).createSubjectAccessReview({
      body: { spec: { user: 'someone', nonResourceAttributes: { path: '/metrics', verb: 'get' } } },
    });
    expect(access.status?.allowed).toBe(false);
    expect(without(await rulesIn(operator, work), await rulesIn(stranger, work))).toEqual(
      [...MANAGER_RULES, ...REVIEW_RULES].sort(),
    );
  });
});

describe('people bound to agentrun-viewer, agentrun-editor and agentrun-admin', () => {
  let viewer: MintedUser;
  let editor: MintedUser;
  let runsAdmin: MintedUser;

  const runsOf = (kc: KubeConfig) => kc.makeApiClient(CustomObjectsApi);
  const inWork = () => ({ group: GROUP, version: VERSION, namespace: work, plural: PLURAL });
  const create = (kc: KubeConfig, name: string) =>
    statusOf(runsOf(kc).createNamespacedCustomObject({ ...inWork(), body: agentRun(name) }));
  const cancel = (kc: KubeConfig, name: string) =>
    statusOf(
      runsOf(kc).patchNamespacedCustomObject(
        { ...inWork(), name, body: { spec: { cancel: true } } },
        mergePatch,
      ),
    );
  const forgeStatus = (kc: KubeConfig, name: string) =>
    statusOf(
      runsOf(kc).patchNamespacedCustomObjectStatus({
        ...inWork(),
        name,
        body: [{ op: 'add', path: '/status', value: { phase: 'Succeeded' } }],
      }),
    );

  beforeAll(async () => {
    viewer = mintUser(plane, `viewer-${suffix}@example.com`);
    editor = mintUser(plane, `editor-${suffix}@example.com`);
    runsAdmin = mintUser(plane, `runs-admin-${suffix}@example.com`);
    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    for (const [user, role] of [
      [viewer, 'agentrun-viewer'],
      [editor, 'agentrun-editor'],
      [runsAdmin, 'agentrun-admin'],
    ] as const) {
      await rbac.createNamespacedRoleBinding({
        namespace: work,
        body: {
          metadata: { name: role },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
          subjects: [{ kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name: user.name }],
        },
      });
      await eventually(`${role} for ${user.name}`, user.kubeConfig, {
        group: GROUP,
        resource: PLURAL,
        verb: 'list',
        namespace: work,
      });
    }
    await runsAdmin.kubeConfig
      .makeApiClient(CustomObjectsApi)
      .createNamespacedCustomObject({ ...inWork(), body: agentRun('existing') });
  });

  it('viewer: reads runs and their status, cannot create, cancel or delete them', async () => {
    const kc = viewer.kubeConfig;
    expect(await statusOf(runsOf(kc).listNamespacedCustomObject(inWork()))).toBe(200);
    expect(
      await statusOf(runsOf(kc).getNamespacedCustomObjectStatus({ ...inWork(), name: 'existing' })),
    ).toBe(200);
    expect(await create(kc, 'by-viewer')).toBe(403);
    expect(await cancel(kc, 'existing')).toBe(403);
    expect(
      await statusOf(runsOf(kc).deleteNamespacedCustomObject({ ...inWork(), name: 'existing' })),
    ).toBe(403);
    expect(await can(kc, { group: GROUP, resource: PLURAL, verb: 'watch', namespace: work })).toBe(
      true,
    );
  });

  it('editor: creates and cancels runs, cannot forge their status', async () => {
    const kc = editor.kubeConfig;
    expect(await create(kc, 'by-editor')).toBe(200);
    expect(await cancel(kc, 'by-editor')).toBe(200);
    const run = (await runsOf(kc).getNamespacedCustomObject({
      ...inWork(),
      name: 'by-editor',
    })) as {
      spec: { cancel?: boolean };
    };
    expect(run.spec.cancel).toBe(true);
    expect(await forgeStatus(kc, 'by-editor')).toBe(403);
    expect(
      await statusOf(runsOf(kc).deleteNamespacedCustomObject({ ...inWork(), name: 'by-editor' })),
    ).toBe(200);
    expect(await statusOf(runsOf(kc).deleteCollectionNamespacedCustomObject(inWork()))).toBe(403);
  });

  it('admin: also deletes runs in bulk, and cannot forge their status either', async () => {
    const kc = runsAdmin.kubeConfig;
    expect(await create(kc, 'by-admin')).toBe(200);
    expect(await forgeStatus(kc, 'by-admin')).toBe(403);
    expect(await statusOf(runsOf(kc).deleteCollectionNamespacedCustomObject(inWork()))).toBe(200);
  });

  it('none of them gets anything but AgentRuns, nor AgentRuns in other namespaces', async () => {
    for (const user of [viewer, editor, runsAdmin]) {
      const core = user.kubeConfig.makeApiClient(CoreV1Api);
      expect(await statusOf(core.listNamespacedSecret({ namespace: work })), user.name).toBe(403);
      expect(await statusOf(core.listNamespacedConfigMap({ namespace: work })), user.name).toBe(
        403,
      );
      expect(
        await statusOf(
          runsOf(user.kubeConfig).listNamespacedCustomObject({ ...inWork(), namespace: other }),
        ),
        user.name,
      ).toBe(403);
    }
  });
});

describe('people bound to agentdefinition-viewer and agentdefinition-editor', () => {
  const inWork = () => ({
    group: GROUP,
    version: VERSION,
    namespace: work,
    plural: 'agentdefinitions',
  });
  const definition = (name: string) => ({
    apiVersion: `${GROUP}/${VERSION}`,
    kind: 'AgentDefinition',
    metadata: { name },
    spec: { webhook: { url: 'https://hooks.example/run' } },
  });

  it('viewer reads definitions; editor registers, changes and deletes them; neither writes status', async () => {
    const viewer = mintUser(plane, `def-viewer-${suffix}@example.com`);
    const editor = mintUser(plane, `def-editor-${suffix}@example.com`);
    const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
    for (const [user, role] of [
      [viewer, 'agentdefinition-viewer'],
      [editor, 'agentdefinition-editor'],
    ] as const) {
      await rbac.createNamespacedRoleBinding({
        namespace: work,
        body: {
          metadata: { name: role },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
          subjects: [{ kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name: user.name }],
        },
      });
      await eventually(`${role} for ${user.name}`, user.kubeConfig, {
        group: GROUP,
        resource: 'agentdefinitions',
        verb: 'list',
        namespace: work,
      });
    }
    const asEditor = editor.kubeConfig.makeApiClient(CustomObjectsApi);
    const asViewer = viewer.kubeConfig.makeApiClient(CustomObjectsApi);
    expect(
      await statusOf(
        asEditor.createNamespacedCustomObject({ ...inWork(), body: definition('by-editor') }),
      ),
    ).toBe(200);
    expect(
      await statusOf(
        asEditor.patchNamespacedCustomObject(
          { ...inWork(), name: 'by-editor', body: { spec: { description: 'changed' } } },
          mergePatch,
        ),
      ),
    ).toBe(200);
    expect(
      await statusOf(
        asEditor.patchNamespacedCustomObjectStatus({
          ...inWork(),
          name: 'by-editor',
          body: [{ op: 'add', path: '/status', value: { executor: 'job' } }],
        }),
      ),
    ).toBe(403);
    expect(await statusOf(asViewer.listNamespacedCustomObject(inWork()))).toBe(200);
    expect(
      await statusOf(
        asViewer.createNamespacedCustomObject({ ...inWork(), body: definition('by-viewer') }),
      ),
    ).toBe(403);
    expect(
      await statusOf(asViewer.deleteNamespacedCustomObject({ ...inWork(), name: 'by-editor' })),
    ).toBe(403);
    expect(
      await statusOf(asEditor.deleteNamespacedCustomObject({ ...inWork(), name: 'by-editor' })),
    ).toBe(200);
    // Neither gets AgentRuns from these roles.
    expect(
      await statusOf(asEditor.listNamespacedCustomObject({ ...inWork(), plural: PLURAL })),
    ).toBe(403);
  });
});

/** Registers an agent as the cluster admin, as a person would with kubectl apply. */
async function defineAgent(namespace: string, name: string, spec: Record<string, unknown>) {
  await admin.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: 'agentdefinitions',
    body: { apiVersion: `${GROUP}/${VERSION}`, kind: 'AgentDefinition', metadata: { name }, spec },
  });
}

describe('the operator, running as its ServiceAccount with only the roles in deploy/', () => {
  it('runs, cancels, deletes and expires runs, records Events and holds its Lease', async () => {
    const namespace = await createNamespace(admin, 'deploy-rbac-life');
    const op = await startOperator({
      kubeConfig: operator,
      namespace,
      env: {
        LEADER_ELECT: 'true',
        LEADER_ELECTION_NAMESPACE: home,
        // Not the default name: a test above leaves a Lease of that name held by "pod-b".
        LEADER_ELECTION_ID: 'agentrun-lifecycle-test',
        LEASE_DURATION_SECONDS: '3',
        RENEW_DEADLINE_SECONDS: '2',
        RETRY_PERIOD_SECONDS: '1',
        // As shipped: the Audited condition and the audit finalizer need these roles too.
        APPLYLENS_AGENT_AUDIT_ENABLED: 'true',
        DATABASE_URL: auditDb.url,
      },
    });
    await waitFor('the Lease', async () => (op.isLeader ? true : undefined), { timeoutMs: 15_000 });
    const runs = new AgentRuns(admin, namespace);

    // It watches AgentDefinitions (it would not become ready otherwise) and writes their status.
    await defineAgent(namespace, 'noop', { webhook: { url: 'https://hooks.example/run' } });
    await waitFor('the definition status', async () => {
      const got = (await admin.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: 'agentdefinitions',
        name: 'noop',
      })) as { status?: { conditions?: { type: string; reason: string }[] } };
      return got.status?.conditions?.find((c) => c.type === 'Ready')?.reason;
    }).then((reason) => expect(reason).toBe('NameTaken'));
    await runs.create('ok', { agent: 'noop', ttlSecondsAfterFinished: 1 });
    await runs.create('canceled', { agent: 'noop', params: { delayMs: 60_000 } });
    await runs.create('deleted', { agent: 'noop', params: { delayMs: 60_000 } });
    await runs.waitForPhase('ok', 'Succeeded');
    await runs.waitForPhase('canceled', 'Running');
    await runs.cancel('canceled');
    await runs.waitUntil('canceled', 'Canceled and Audited', (r) =>
      Boolean(
        r.status?.phase === 'Canceled' &&
          r.status.conditions?.some((c) => c.type === 'Audited' && c.status === 'True'),
      ),
    );
    // Long enough to hold the finalizer: deletion waits for the handler to be aborted.
    await runs.waitUntil('deleted', 'finalizer', (r) =>
      (r.metadata.finalizers ?? []).includes('agents.applylens.io/run-protection'),
    );
    await runs.delete('deleted');
    await runs.waitForDeletion('deleted');
    // TTL: the operator deletes the finished run itself.
    await runs.waitForDeletion('ok');

    // A Job agent: the operator creates the attempt's Job (owned by the run, which needs
    // agentruns/finalizers with OwnerReferencesPermissionEnforcement), watches it and its pods,
    // and deletes it on cancel. This plane has no job controller: the Job never gets a pod.
    await defineAgent(namespace, 'container', { job: { image: 'registry.example/agent:1' } });
    const jobRun = await runs.create('in-a-job', { agent: 'container' });
    await runs.waitUntil('in-a-job', 'Starting', (r) =>
      Boolean(r.status?.conditions?.some((c) => c.type === 'Succeeded' && c.reason === 'Starting')),
    );
    const jobs = admin.makeApiClient(BatchV1Api);
    const selector = `agents.applylens.io/run-id=${jobRun.metadata.uid}`;
    // The claim (Starting) is written before the Job is created: wait for the Job itself.
    const job = await waitFor(
      'the Job of the attempt',
      async () => (await jobs.listNamespacedJob({ namespace, labelSelector: selector })).items[0],
    );
    expect(job.metadata?.ownerReferences?.[0]?.uid).toBe(jobRun.metadata.uid);
    await runs.cancel('in-a-job');
    await runs.waitForPhase('in-a-job', 'Canceled');
    await waitFor(
      'the Job deleted (foreground: marked, its finalizer waits for the GC)',
      async () => {
        const [left] = (await jobs.listNamespacedJob({ namespace, labelSelector: selector })).items;
        return left === undefined || left.metadata?.deletionTimestamp !== undefined
          ? true
          : undefined;
      },
    );

    const events = await admin
      .makeApiClient(EventsV1Api)
      .listNamespacedEvent({ namespace, fieldSelector: 'regarding.name=canceled' });
    expect(events.items.map((e) => e.reason).sort()).toEqual(['Canceled', 'Started']);
    const lease = await admin
      .makeApiClient(CoordinationV1Api)
      .readNamespacedLease({ namespace: home, name: 'agentrun-lifecycle-test' });
    expect(lease.spec?.holderIdentity).toBeTruthy();
  });
});
