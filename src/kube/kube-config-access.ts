import { type ClusterAccess, fromKubeconfig } from './cluster-access.ts';
import { isRecord } from './kube-object.ts';

/**
 * The fields of a @kubernetes/client-node KubeConfig that say how to reach the cluster, by shape:
 * createOperator still accepts one (docs/library.md), and reading it must not load client-node.
 */
export interface KubeConfigLike {
  readonly clusters: readonly object[];
  readonly users: readonly object[];
  readonly contexts: readonly object[];
  readonly currentContext: string;
}

/** True for a client-node KubeConfig (or anything shaped like one). */
export function isKubeConfigLike(value: unknown): value is KubeConfigLike {
  return (
    isRecord(value) &&
    Array.isArray(value['clusters']) &&
    Array.isArray(value['users']) &&
    Array.isArray(value['contexts']) &&
    typeof value['currentContext'] === 'string'
  );
}

/**
 * The access a client-node KubeConfig gives through its current context, by translating its
 * parsed entries back to kubeconfig fields. In-cluster configs (client-node's `tokenFile`
 * auth-provider) become a token file read again as it rotates; exec plugins and other
 * auth-providers are still run by client-node (LazyClientNodeAuth).
 */
export function fromKubeConfigLike(kc: KubeConfigLike): ClusterAccess {
  const clusters = new Map<string, Record<string, unknown>>();
  for (const cluster of kc.clusters.filter(isRecord)) {
    clusters.set(String(cluster['name']), {
      server: cluster['server'],
      'certificate-authority-data': cluster['caData'],
      'certificate-authority': cluster['caFile'],
      'insecure-skip-tls-verify': cluster['skipTLSVerify'],
      'tls-server-name': cluster['tlsServerName'],
    });
  }
  const users = new Map<string, Record<string, unknown>>();
  for (const user of kc.users.filter(isRecord)) {
    const provider = isRecord(user['authProvider']) ? user['authProvider'] : undefined;
    const providerConfig = isRecord(provider?.['config']) ? provider['config'] : {};
    const tokenFile = provider?.['name'] === 'tokenFile' ? providerConfig['tokenFile'] : undefined;
    users.set(String(user['name']), {
      token: user['token'],
      username: user['username'],
      password: user['password'],
      'client-certificate-data': user['certData'],
      'client-certificate': user['certFile'],
      'client-key-data': user['keyData'],
      'client-key': user['keyFile'],
      tokenFile,
      exec: user['exec'],
      'auth-provider': tokenFile === undefined ? provider : undefined,
    });
  }
  const contexts = new Map<string, Record<string, unknown>>();
  for (const context of kc.contexts.filter(isRecord)) {
    contexts.set(String(context['name']), {
      cluster: context['cluster'],
      user: context['user'],
      namespace: context['namespace'],
    });
  }
  return fromKubeconfig({
    files: ['(KubeConfig object)'],
    clusters,
    users,
    contexts,
    currentContext: kc.currentContext || undefined,
  });
}
