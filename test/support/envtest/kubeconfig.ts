import { writeFileSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';

/** How to reach and authenticate to an API server, in a form that crosses process boundaries. */
export interface ClusterAccess {
  readonly server: string;
  /** PEM of the CA that signed the API server's serving certificate. */
  readonly caData: string;
}

export type Credentials =
  | { readonly kind: 'certificate'; readonly certData: string; readonly keyData: string }
  | { readonly kind: 'token'; readonly token: string };

/** A kubeconfig document with one cluster, one user and one current context. */
export function kubeconfigDocument(
  cluster: ClusterAccess,
  user: string,
  credentials: Credentials,
): Record<string, unknown> {
  const b64 = (pem: string) => Buffer.from(pem).toString('base64');
  const userEntry =
    credentials.kind === 'certificate'
      ? {
          'client-certificate-data': b64(credentials.certData),
          'client-key-data': b64(credentials.keyData),
        }
      : { token: credentials.token };
  return {
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      {
        name: 'envtest',
        cluster: { server: cluster.server, 'certificate-authority-data': b64(cluster.caData) },
      },
    ],
    users: [{ name: user, user: userEntry }],
    contexts: [{ name: user, context: { cluster: 'envtest', user } }],
    'current-context': user,
  };
}

/** A client-node KubeConfig for that user. */
export function kubeConfigFor(
  cluster: ClusterAccess,
  user: string,
  credentials: Credentials,
): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(JSON.stringify(kubeconfigDocument(cluster, user, credentials)));
  return kc;
}

/** Writes the kubeconfig for kubectl (JSON is valid kubeconfig YAML). */
export function writeKubeconfig(
  file: string,
  cluster: ClusterAccess,
  user: string,
  credentials: Credentials,
): void {
  writeFileSync(file, JSON.stringify(kubeconfigDocument(cluster, user, credentials), null, 2), {
    mode: 0o600,
  });
}
