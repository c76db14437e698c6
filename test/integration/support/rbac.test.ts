import {
  AuthenticationV1Api,
  CoreV1Api,
  type KubeConfig,
  RbacAuthorizationV1Api,
} from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig, kubeConfigWithToken, mintUser } from '../../support/envtest/users.ts';
import { createNamespace, statusOf } from '../../support/kube.ts';
import { waitFor } from '../../support/wait.ts';

const plane = controlPlane();
const admin = adminKubeConfig(plane);

/** Grants `list configmaps` in `namespace` to a user or service account. */
async function grantListConfigMaps(
  namespace: string,
  subject: { kind: 'User' | 'ServiceAccount'; name: string },
): Promise<void> {
  const rbac = admin.makeApiClient(RbacAuthorizationV1Api);
  await rbac.createNamespacedRole({
    namespace,
    body: {
      metadata: { name: 'configmap-reader' },
      rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['list'] }],
    },
  });
  await rbac.createNamespacedRoleBinding({
    namespace,
    body: {
      metadata: { name: `configmap-reader-${subject.name}` },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'configmap-reader' },
      subjects: [
        subject.kind === 'User'
          ? { kind: 'User', apiGroup: 'rbac.authorization.k8s.io', name: subject.name }
          : { kind: 'ServiceAccount', name: subject.name, namespace },
      ],
    },
  });
}

function listConfigMaps(kc: KubeConfig, namespace: string): Promise<number> {
  return statusOf(kc.makeApiClient(CoreV1Api).listNamespacedConfigMap({ namespace }));
}

/** RBAC bindings reach the authorizer's cache a moment after they are created. */
function eventuallyAllowed(kc: KubeConfig, namespace: string): Promise<true> {
  return waitFor('the binding to take effect', async () =>
    (await listConfigMaps(kc, namespace)) === 200 ? true : undefined,
  );
}

describe('RBAC on the test control plane', () => {
  it('denies a minted user without permissions (403) and allows it once a Role is bound', async () => {
    const namespace = await createNamespace(admin, 'rbac-user');
    const alice = mintUser(plane, 'alice@example.com', ['team-a']);
    expect(await listConfigMaps(alice.kubeConfig, namespace)).toBe(403);
    await grantListConfigMaps(namespace, { kind: 'User', name: 'alice@example.com' });
    await eventuallyAllowed(alice.kubeConfig, namespace);
    // The grant is scoped: another namespace stays forbidden.
    const other = await createNamespace(admin, 'rbac-other');
    expect(await listConfigMaps(alice.kubeConfig, other)).toBe(403);
  });

  it('issues service-account tokens (TokenRequest) that authenticate as the ServiceAccount', async () => {
    const namespace = await createNamespace(admin, 'rbac-sa');
    const core = admin.makeApiClient(CoreV1Api);
    await core.createNamespacedServiceAccount({ namespace, body: { metadata: { name: 'robot' } } });
    const request = await core.createNamespacedServiceAccountToken({
      name: 'robot',
      namespace,
      body: { spec: { audiences: [], expirationSeconds: 600 } },
    });
    const token = request.status?.token ?? '';
    expect(token).not.toBe('');

    const robot = kubeConfigWithToken(plane, 'robot', token);
    const review = await robot
      .makeApiClient(AuthenticationV1Api)
      .createSelfSubjectReview({ body: {} });
    expect(review.status?.userInfo?.username).toBe(`system:serviceaccount:${namespace}:robot`);

    expect(await listConfigMaps(robot, namespace)).toBe(403);
    await grantListConfigMaps(namespace, { kind: 'ServiceAccount', name: 'robot' });
    await eventuallyAllowed(robot, namespace);
  });

  it('rejects a bearer token it did not issue (401)', async () => {
    const anonymous = kubeConfigWithToken(plane, 'nobody', 'not-a-valid-token');
    expect(await listConfigMaps(anonymous, 'default')).toBe(401);
  });
});
