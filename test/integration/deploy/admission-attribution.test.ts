import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ApiException,
  CoreV1Api,
  CustomObjectsApi,
  type KubeConfig,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from '../../../src/api/agentrun.ts';
import { AgentRuns } from '../../support/agentruns.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane, useFreshDatabase } from '../../support/environment.ts';
import { adminKubeConfig, kubeConfigWithToken, mintUser } from '../../support/envtest/users.ts';
import { createNamespace, statusOf } from '../../support/kube.ts';
import { kubectlFor, succeeded } from '../../support/kubectl.ts';
import { startOperator } from '../../support/operator.ts';
import { waitFor } from '../../support/wait.ts';

/**
 * deploy/admission on the real API server: the ValidatingAdmissionPolicy that ties
 * spec.requestedBy to the authenticated user and the MutatingAdmissionPolicy that fills it in,
 * exercised by two minted users (alice, bob), a service account and the system:masters admin.
 *
 * The policies are the shipped ones (`kubectl kustomize deploy/admission`) with their CEL
 * untouched. Because every integration test file shares one API server, each scenario installs
 * its own copy: cluster-scoped names get a suffix, the bindings match only the scenario's
 * namespace, and the parameter ConfigMap lives in that namespace.
 */

const plane = controlPlane();
const admin = adminKubeConfig(plane);
const auditDb = useFreshDatabase('attribution');
const ALICE = 'alice@example.com';
const BOB = 'bob@example.com';
const alice = mintUser(plane, ALICE);
const bob = mintUser(plane, BOB);

const kubectl = kubectlFor(plane);
const mustKubectl = (args: readonly string[], input?: string) =>
  succeeded(kubectl(args, input === undefined ? {} : { input }), ['kubectl', ...args]);

// --- the shipped manifests -----------------------------------------------------------------

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string } & Record<string, unknown>;
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}

async function build(dir: string): Promise<Manifest[]> {
  const yaml = await mustKubectl(['kustomize', join('deploy/admission', dir)]);
  return parseAllDocuments(yaml).map((doc) => doc.toJS() as Manifest);
}

function only(manifests: readonly Manifest[], kind: string): Manifest {
  const found = manifests.filter((m) => m.kind === kind);
  expect(
    found.map((m) => m.metadata.name),
    kind,
  ).toHaveLength(1);
  return found[0] as Manifest;
}

/** The cluster-scoped objects the scenarios created, deleted after the file. */
const created: { kind: string; name: string }[] = [];

interface Scenario {
  readonly namespace: string;
  /** data.requireRequestedBy of the parameter ConfigMap. */
  readonly requireRequestedBy: boolean;
  /** Also install the MutatingAdmissionPolicy. */
  readonly mutating: boolean;
}

/** Installs the shipped policies for `scenario.namespace` only (see the file comment). */
async function installPolicies(scenario: Scenario): Promise<void> {
  const { namespace } = scenario;
  const items: Manifest[] = [];
  for (const shipped of await build('')) {
    const m = structuredClone(shipped);
    const spec = m.spec ?? {};
    switch (m.kind) {
      case 'ConfigMap':
        m.metadata.namespace = namespace;
        m.data = { ...m.data, requireRequestedBy: String(scenario.requireRequestedBy) };
        break;
      case 'ValidatingAdmissionPolicy':
      case 'MutatingAdmissionPolicy':
        m.metadata.name = `${m.metadata.name}-${namespace}`;
        break;
      case 'ValidatingAdmissionPolicyBinding':
      case 'MutatingAdmissionPolicyBinding': {
        m.metadata.name = `${m.metadata.name}-${namespace}`;
        spec['policyName'] = `${String(spec['policyName'])}-${namespace}`;
        spec['matchResources'] = {
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } },
        };
        const paramRef = spec['paramRef'] as Record<string, unknown> | undefined;
        if (paramRef) paramRef['namespace'] = namespace;
        break;
      }
      default:
        throw new Error(`deploy/admission has an unexpected ${m.kind}`);
    }
    if (!scenario.mutating && m.kind.startsWith('Mutating')) continue;
    items.push(m);
    if (m.metadata.namespace === undefined) created.push({ kind: m.kind, name: m.metadata.name });
  }
  await mustKubectl(
    ['apply', '-f', '-'],
    JSON.stringify({ apiVersion: 'v1', kind: 'List', items }),
  );
}

afterAll(async () => {
  for (const { kind, name } of created.reverse()) {
    await kubectl(['delete', kind, name, '--ignore-not-found', '--wait=false']);
  }
});

// --- AgentRun calls ------------------------------------------------------------------------

interface Run {
  metadata: { name: string; uid: string };
  spec: { requestedBy?: string } & Record<string, unknown>;
}

interface Outcome {
  /** 201 when created (200 when patched), else the HTTP status of the refusal. */
  readonly code: number;
  /** The API server's message when refused. */
  readonly message: string;
  readonly run?: Run;
}

async function outcome(call: Promise<unknown>, success = 201): Promise<Outcome> {
  try {
    return { code: success, message: '', run: (await call) as Run };
  } catch (error) {
    if (!(error instanceof ApiException)) throw error;
    const body = (typeof error.body === 'string' ? JSON.parse(error.body) : error.body) as {
      message?: string;
    };
    return { code: error.code, message: body.message ?? String(error.body) };
  }
}

function create(
  kc: KubeConfig,
  namespace: string,
  name: string,
  requestedBy: string | undefined,
  options: { dryRun?: boolean } = {},
): Promise<Outcome> {
  const spec: Record<string, unknown> = { agent: 'noop', objective: `attribution test ${name}` };
  if (requestedBy !== undefined) spec['requestedBy'] = requestedBy;
  return outcome(
    kc.makeApiClient(CustomObjectsApi).createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL,
      body: { apiVersion: API_VERSION, kind: KIND, metadata: { name }, spec },
      ...(options.dryRun ? { dryRun: 'All' } : {}),
    }),
  );
}

/** Sets spec fields with a JSON patch (`add` replaces a field that is there). */
function patchSpec(
  kc: KubeConfig,
  namespace: string,
  name: string,
  spec: Record<string, unknown>,
): Promise<Outcome> {
  const body = Object.entries(spec).map(([field, value]) => ({
    op: 'add',
    path: `/spec/${field}`,
    value,
  }));
  return outcome(
    kc.makeApiClient(CustomObjectsApi).patchNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL,
      name,
      body,
    }),
    200,
  );
}

// --- set-up --------------------------------------------------------------------------------

const REQUESTER_ROLE = 'agentrun-requester';

/** Lets the subjects create, read and patch AgentRuns in `namespace`. */
async function grantRequester(
  namespace: string,
  subjects: { kind: 'User' | 'ServiceAccount'; name: string }[],
): Promise<void> {
  const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
  await rbac.createNamespacedRole({
    namespace,
    body: {
      metadata: { name: REQUESTER_ROLE },
      rules: [{ apiGroups: [GROUP], resources: [PLURAL], verbs: ['create', 'get', 'patch'] }],
    },
  });
  await rbac.createNamespacedRoleBinding({
    namespace,
    body: {
      metadata: { name: REQUESTER_ROLE },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: REQUESTER_ROLE },
      subjects: subjects.map((s) =>
        s.kind === 'User'
          ? { kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name: s.name }
          : { kind: 'ServiceAccount', name: s.name, namespace },
      ),
    },
  });
}

/** RBAC bindings reach the authorizer a moment after they are written. */
async function untilAllowed(kc: KubeConfig, namespace: string, as: string): Promise<void> {
  await waitFor(`${as} may create AgentRuns in ${namespace}`, async () => {
    const o = await create(kc, namespace, 'rbac-probe', as, { dryRun: true });
    if (o.code === 201) return true;
    throw new Error(`${o.code} ${o.message}`);
  });
}

/**
 * Policies, bindings and parameters reach the admission plugins through informers, a moment
 * after they are written: dry-run creates until the policy refuses a foreign requestedBy (and,
 * when installed, the mutating policy fills an empty one).
 */
async function untilEnforced(scenario: Scenario): Promise<void> {
  const { namespace } = scenario;
  await waitFor(`agentrun-attribution enforced in ${namespace}`, async () => {
    const o = await create(alice.kubeConfig, namespace, 'policy-probe', 'nobody@example.com', {
      dryRun: true,
    });
    if (o.code === 403 && o.message.includes('but you are authenticated as')) return true;
    throw new Error(`${o.code} ${o.message}`);
  });
  if (scenario.mutating) {
    await waitFor(`agentrun-attribution-default enforced in ${namespace}`, async () => {
      const o = await create(alice.kubeConfig, namespace, 'policy-probe', undefined, {
        dryRun: true,
      });
      if (o.run?.spec.requestedBy === ALICE) return true;
      throw new Error(`${o.code} ${o.message} ${JSON.stringify(o.run?.spec)}`);
    });
  }
  if (scenario.requireRequestedBy && !scenario.mutating) {
    await waitFor(`requireRequestedBy enforced in ${namespace}`, async () => {
      const o = await create(alice.kubeConfig, namespace, 'policy-probe', undefined, {
        dryRun: true,
      });
      if (o.code === 422 && o.message.includes('is required')) return true;
      throw new Error(`${o.code} ${o.message}`);
    });
  }
}

/** A namespace where alice and bob may create runs, with the policies installed for it. */
async function scenario(
  prefix: string,
  options: Omit<Scenario, 'namespace'>,
  before?: (namespace: string) => Promise<void>,
): Promise<string> {
  const namespace = await createNamespace(admin, prefix);
  await grantRequester(namespace, [
    { kind: 'User', name: ALICE },
    { kind: 'User', name: BOB },
  ]);
  await untilAllowed(alice.kubeConfig, namespace, ALICE);
  await untilAllowed(bob.kubeConfig, namespace, BOB);
  await before?.(namespace);
  const s = { namespace, ...options };
  await installPolicies(s);
  await untilEnforced(s);
  return namespace;
}

function forbiddenMessage(requestedBy: string, user: string): string {
  return (
    `spec.requestedBy is "${requestedBy}" but you are authenticated as "${user}": an AgentRun ` +
    `can only be requested in your own name (set spec.requestedBy to "${user}" or leave it out)`
  );
}

beforeAll(async () => {
  await installCrd(plane);
});

// --- tests ---------------------------------------------------------------------------------

describe('deploy/admission as shipped', () => {
  it('checks AgentRun CREATE only, in every namespace, and fails closed without its parameters', async () => {
    const all = await build('');
    const policy = only(all, 'ValidatingAdmissionPolicy');
    const binding = only(all, 'ValidatingAdmissionPolicyBinding');
    const mutating = only(all, 'MutatingAdmissionPolicy');
    const mutatingBinding = only(all, 'MutatingAdmissionPolicyBinding');
    const params = only(all, 'ConfigMap');

    for (const p of [policy, mutating]) {
      expect(p.apiVersion).toBe('admissionregistration.k8s.io/v1');
      expect(p.spec?.['failurePolicy']).toBe('Fail');
      expect(p.spec?.['matchConstraints']).toEqual({
        resourceRules: [
          {
            apiGroups: [GROUP],
            apiVersions: ['*'],
            operations: ['CREATE'],
            resources: [PLURAL],
          },
        ],
      });
    }
    // No matchResources: the bindings cover every namespace.
    expect(binding.spec?.['matchResources']).toBeUndefined();
    expect(mutatingBinding.spec?.['matchResources']).toBeUndefined();
    expect(binding.spec?.['policyName']).toBe(policy.metadata.name);
    expect(mutatingBinding.spec?.['policyName']).toBe(mutating.metadata.name);
    expect(binding.spec?.['validationActions']).toEqual(['Deny']);
    expect(binding.spec?.['paramRef']).toEqual({
      name: params.metadata.name,
      namespace: 'agentrun-system',
      parameterNotFoundAction: 'Deny',
    });
    expect(params.data).toEqual({ requireRequestedBy: 'false' });

    // The two halves are usable on their own: validating/ on 1.30+, mutating/ on 1.36+.
    expect((await build('validating')).map((m) => m.kind).sort()).toEqual([
      'ConfigMap',
      'ValidatingAdmissionPolicy',
      'ValidatingAdmissionPolicyBinding',
    ]);
    expect((await build('mutating')).map((m) => m.kind).sort()).toEqual([
      'MutatingAdmissionPolicy',
      'MutatingAdmissionPolicyBinding',
    ]);
  });

  it('passes kubectl apply --dry-run=server unchanged (both policy kinds are served by this API server)', async () => {
    const served = await mustKubectl(['api-resources', '--api-group=admissionregistration.k8s.io']);
    expect(served).toMatch(/mutatingadmissionpolicies\s.*admissionregistration\.k8s\.io\/v1\s/);
    expect(served).toMatch(/validatingadmissionpolicies\s.*admissionregistration\.k8s\.io\/v1\s/);
    // The ConfigMap's namespace; shared with other test files and never deleted.
    const status = await statusOf(
      admin
        .makeApiClient(CoreV1Api)
        .createNamespace({ body: { metadata: { name: 'agentrun-system' } } }),
    );
    expect([200, 201, 409]).toContain(status);
    const out = await mustKubectl([
      'apply',
      '--dry-run=server',
      '--validate=strict',
      '-k',
      'deploy/admission',
    ]);
    expect(out).toContain(
      'validatingadmissionpolicy.admissionregistration.k8s.io/agentrun-attribution',
    );
    expect(out).toContain(
      'mutatingadmissionpolicy.admissionregistration.k8s.io/agentrun-attribution-default',
    );
  });

  it('fails closed when the parameter ConfigMap is missing', async () => {
    const namespace = await scenarioWithoutParams();
    const o = await create(alice.kubeConfig, namespace, 'no-params', ALICE);
    expect(o.code).toBe(422);
    expect(o.message).toContain(
      'no params found for policy binding with `Deny` parameterNotFoundAction',
    );
  });
});

/** The validating policy installed for a namespace whose parameter ConfigMap was deleted. */
async function scenarioWithoutParams(): Promise<string> {
  const namespace = await scenario('attr-noparams', { requireRequestedBy: false, mutating: false });
  await admin
    .makeApiClient(CoreV1Api)
    .deleteNamespacedConfigMap({ namespace, name: 'agentrun-attribution' });
  await waitFor('the policy to notice the ConfigMap is gone', async () => {
    const o = await create(alice.kubeConfig, namespace, 'probe', ALICE, { dryRun: true });
    if (o.code === 422) return true;
    throw new Error(`${o.code} ${o.message}`);
  });
  return namespace;
}

describe('ValidatingAdmissionPolicy agentrun-attribution', () => {
  let namespace = '';
  beforeAll(async () => {
    // carol's run predates the policy: created by the admin in carol's name.
    namespace = await scenario(
      'attr-check',
      { requireRequestedBy: false, mutating: false },
      async (ns) => {
        expect((await create(admin, ns, 'carols-run', 'carol@example.com')).code).toBe(201);
      },
    );
  });

  it('lets a user create a run in their own name', async () => {
    const o = await create(alice.kubeConfig, namespace, 'alice-own', ALICE);
    expect(o.code).toBe(201);
    expect(o.run?.spec.requestedBy).toBe(ALICE);
    expect((await create(bob.kubeConfig, namespace, 'bob-own', BOB)).code).toBe(201);
  });

  it("refuses a run in another user's name, and says why", async () => {
    const o = await create(alice.kubeConfig, namespace, 'alice-as-bob', BOB);
    expect(o.code).toBe(403);
    expect(o.message).toBe(
      `agentruns.agents.applylens.io "alice-as-bob" is forbidden: ValidatingAdmissionPolicy ` +
        `'agentrun-attribution-${namespace}' with binding 'agentrun-attribution-${namespace}' ` +
        `denied request: ${forbiddenMessage(BOB, ALICE)}`,
    );
    const back = await create(bob.kubeConfig, namespace, 'bob-as-alice', ALICE);
    expect(back.code).toBe(403);
    expect(back.message).toContain(forbiddenMessage(ALICE, BOB));
    // Nothing was stored.
    expect(await statusOf(getRun(namespace, 'alice-as-bob'))).toBe(404);
    expect(await statusOf(getRun(namespace, 'bob-as-alice'))).toBe(404);
  });

  it('compares exactly: case, a display name or a bare e-mail local part are all refused', async () => {
    for (const claimed of ['Alice@Example.com', 'alice', 'Alice Example', ` ${ALICE}`]) {
      const o = await create(alice.kubeConfig, namespace, 'alice-variant', claimed);
      expect(o.code, claimed).toBe(403);
    }
  });

  it('does not exempt system:masters; impersonation acts as the impersonated user', async () => {
    const o = await create(admin, namespace, 'admin-as-alice', ALICE);
    expect(o.code).toBe(403);
    expect(o.message).toContain(forbiddenMessage(ALICE, 'envtest-admin'));
    // kubectl --as: the request's user is alice (the API server audit log records both).
    const run = JSON.stringify({
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name: 'impersonated', namespace },
      spec: { agent: 'noop', objective: 'impersonated', requestedBy: ALICE },
    });
    await mustKubectl(['create', '--as', ALICE, '-f', '-'], run);
  });

  it('leaves requestedBy optional unless the parameter requires it', async () => {
    const o = await create(alice.kubeConfig, namespace, 'anonymous-run', undefined);
    expect(o.code).toBe(201);
    expect(o.run?.spec.requestedBy).toBeUndefined();
  });

  it('checks CREATE only: updates pass, and the CRD keeps requestedBy immutable', async () => {
    // bob cancels alice's run: an UPDATE by someone who is not its requester.
    expect((await create(alice.kubeConfig, namespace, 'to-cancel', ALICE)).code).toBe(201);
    const canceled = await patchSpec(bob.kubeConfig, namespace, 'to-cancel', { cancel: true });
    expect(canceled.code, canceled.message).toBe(200);
    expect(canceled.run?.spec['cancel']).toBe(true);
    // alice updates carol's run, created before the policy existed.
    const old = await patchSpec(alice.kubeConfig, namespace, 'carols-run', { cancel: true });
    expect(old.code, old.message).toBe(200);
    expect(old.run?.spec.requestedBy).toBe('carol@example.com');
    // Re-attributing a run is refused by the CRD's rule, not by the policy.
    const steal = await patchSpec(bob.kubeConfig, namespace, 'to-cancel', { requestedBy: BOB });
    expect(steal.code).toBe(422);
    expect(steal.message).toContain('spec.requestedBy is immutable: create a new AgentRun instead');
    expect(steal.message).not.toContain('ValidatingAdmissionPolicy');
  });

  it('lets any user apply the shipped samples (none is requested in somebody else’s name)', async () => {
    const r = await kubectl(
      ['apply', '--dry-run=server', '-n', namespace, '-f', 'deploy/samples/'],
      {
        kubeconfig: bob.kubeconfigFile,
      },
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim().split('\n')).toHaveLength(3);
  });

  it('checks creates made by kubectl apply, client-side and server-side', async () => {
    const manifest = (name: string) =>
      JSON.stringify({
        apiVersion: API_VERSION,
        kind: KIND,
        metadata: { name, namespace },
        spec: { agent: 'noop', objective: 'applied', requestedBy: ALICE },
      });
    for (const mode of [[], ['--server-side']]) {
      const name = `applied-by-bob${mode.length ? '-ssa' : ''}`;
      const r = await kubectl(['apply', ...mode, '-f', '-'], {
        kubeconfig: bob.kubeconfigFile,
        input: manifest(name),
      });
      expect(r.code, r.stdout).not.toBe(0);
      expect(r.stderr).toContain(forbiddenMessage(ALICE, BOB));
      expect(await statusOf(getRun(namespace, name))).toBe(404);
    }
  });
});

describe('agentrun-attribution with requireRequestedBy: "true"', () => {
  let namespace = '';
  beforeAll(async () => {
    namespace = await scenario('attr-required', { requireRequestedBy: true, mutating: false });
  });

  it('refuses a run without requestedBy, and says what to set', async () => {
    const o = await create(alice.kubeConfig, namespace, 'unattributed', undefined);
    expect(o.code).toBe(422);
    expect(o.message).toContain(
      `denied request: spec.requestedBy is required in this cluster: set it to your user name "${ALICE}"`,
    );
  });

  it('accepts the run in the user’s own name and still refuses another name', async () => {
    expect((await create(alice.kubeConfig, namespace, 'attributed', ALICE)).code).toBe(201);
    expect((await create(alice.kubeConfig, namespace, 'misattributed', BOB)).code).toBe(403);
  });
});

describe('MutatingAdmissionPolicy agentrun-attribution-default (with requireRequestedBy: "true")', () => {
  let namespace = '';
  beforeAll(async () => {
    namespace = await scenario('attr-default', { requireRequestedBy: true, mutating: true });
  });

  it('fills an empty requestedBy with the authenticated user, so the required check passes', async () => {
    const a = await create(alice.kubeConfig, namespace, 'filled-alice', undefined);
    expect(a.code, a.message).toBe(201);
    expect(a.run?.spec.requestedBy).toBe(ALICE);
    const b = await create(bob.kubeConfig, namespace, 'filled-bob', undefined);
    expect(b.run?.spec.requestedBy).toBe(BOB);
  });

  it('never overrides a requestedBy that is set: a foreign one is still refused', async () => {
    const o = await create(alice.kubeConfig, namespace, 'not-overridden', BOB);
    expect(o.code).toBe(403);
    expect(o.message).toContain(forbiddenMessage(BOB, ALICE));
  });

  it('the audit row names the authenticated user, never a name typed by someone else', async () => {
    await startOperator({
      kubeConfig: admin,
      namespace,
      env: { APPLYLENS_AGENT_AUDIT_ENABLED: 'true', DATABASE_URL: auditDb.url },
    });
    const own = await create(alice.kubeConfig, namespace, 'audited-alice', undefined);
    expect(own.code, own.message).toBe(201);
    const forged = await create(bob.kubeConfig, namespace, 'audited-forged', ALICE);
    expect(forged.code).toBe(403);
    await new AgentRuns(admin, namespace).waitUntil('audited-alice', 'Audited', (r) =>
      Boolean(r.status?.conditions?.some((c) => c.type === 'Audited' && c.status === 'True')),
    );
    const client = new pg.Client({ connectionString: auditDb.url });
    await client.connect();
    try {
      const { rows } = await client.query(
        `SELECT name, user_email FROM agent_audit_log
          WHERE namespace = $1 AND name LIKE 'audited-%' ORDER BY name`,
        [namespace],
      );
      expect(rows).toEqual([{ name: 'audited-alice', user_email: ALICE }]);
    } finally {
      await client.end();
    }
  });

  it('attributes a service account (a GitOps controller) as system:serviceaccount:NS:NAME', async () => {
    const core = admin.makeApiClient(CoreV1Api);
    await core.createNamespacedServiceAccount({
      namespace,
      body: { metadata: { name: 'gitops-controller' } },
    });
    const token = (
      await core.createNamespacedServiceAccountToken({
        name: 'gitops-controller',
        namespace,
        body: { spec: { audiences: [], expirationSeconds: 600 } },
      })
    ).status?.token;
    expect(token).toBeTruthy();
    const username = `system:serviceaccount:${namespace}:gitops-controller`;
    const robot = kubeConfigWithToken(plane, 'gitops-controller', token ?? '');
    await grantServiceAccount(namespace, 'gitops-controller');
    await untilAllowed(robot, namespace, username);

    const filled = await create(robot, namespace, 'from-git', undefined);
    expect(filled.run?.spec.requestedBy).toBe(username);
    // A human's name written in Git is not the controller's: refused.
    const fromGit = await create(robot, namespace, 'from-git-as-alice', ALICE);
    expect(fromGit.code).toBe(403);
    expect(fromGit.message).toContain(forbiddenMessage(ALICE, username));
  });

  it('re-applying a Git manifest without requestedBy is a no-op (the filled field has no owner)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'agentrun-attribution-'));
    for (const mode of [[], ['--server-side']]) {
      const name = `git-managed${mode.length ? '-ssa' : ''}`;
      const file = join(dir, `${name}.yaml`);
      writeFileSync(
        file,
        JSON.stringify({
          apiVersion: API_VERSION,
          kind: KIND,
          metadata: { name, namespace },
          spec: { agent: 'noop', objective: 'from Git' },
        }),
      );
      const args = ['apply', ...mode, '-f', file];
      for (let i = 0; i < 2; i++) {
        const r = await kubectl(args, { kubeconfig: alice.kubeconfigFile });
        expect(r.code, r.stderr).toBe(0);
      }
      const live = (await getRun(namespace, name)) as Run & {
        metadata: { managedFields?: { fieldsV1?: { 'f:spec'?: Record<string, unknown> } }[] };
      };
      expect(live.spec.requestedBy).toBe(ALICE);
      for (const entry of live.metadata.managedFields ?? []) {
        expect(Object.keys(entry.fieldsV1?.['f:spec'] ?? {})).not.toContain('f:requestedBy');
      }
    }
  });
});

async function grantServiceAccount(namespace: string, name: string): Promise<void> {
  await admin.makeApiClient(RbacAuthorizationV1Api).createNamespacedRoleBinding({
    namespace,
    body: {
      metadata: { name: `${REQUESTER_ROLE}-${name}` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: REQUESTER_ROLE },
      subjects: [{ kind: 'ServiceAccount', name, namespace }],
    },
  });
}

function getRun(namespace: string, name: string): Promise<unknown> {
  return admin.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
    group: GROUP,
    version: VERSION,
    namespace,
    plural: PLURAL,
    name,
  });
}
