import { NO_AUTH, staticAuth } from '../../src/kube/cluster-access.ts';
import { KubeClient } from '../../src/kube/kube-client.ts';

/** A KubeClient for unit tests whose server is never (or must not be) reached. */
export function unreachableClient(token?: string): KubeClient {
  return new KubeClient({
    server: 'https://127.0.0.1:1',
    tls: { rejectUnauthorized: true },
    namespace: undefined,
    auth: token ? staticAuth(`Bearer ${token}`) : NO_AUTH,
  });
}
