import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { KubeClient } from '../../../src/kube/kube-client.ts';
import { createLeaf, readPem } from './certs.ts';
import type { ControlPlaneInfo } from './control-plane.ts';
import { type Credentials, kubeConfigFor, writeKubeconfig } from './kubeconfig.ts';

export interface MintedUser {
  readonly name: string;
  readonly groups: readonly string[];
  readonly kubeConfig: KubeConfig;
  /** The operator's own client for this user, loaded from `kubeconfigFile`. */
  readonly client: KubeClient;
  /** A kubeconfig file for kubectl. */
  readonly kubeconfigFile: string;
}

/**
 * Creates a user the API server authenticates by client certificate: the certificate's CN is the
 * user name and its O fields are the groups (`system:masters` bypasses RBAC). The user starts
 * with no permissions beyond what RBAC grants `system:authenticated`.
 */
export function mintUser(
  plane: ControlPlaneInfo,
  name: string,
  groups: readonly string[] = [],
): MintedUser {
  const dir = join(plane.dir, 'users');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = `${name.replace(/[^A-Za-z0-9_.-]/g, '_')}-${randomBytes(4).toString('hex')}`;
  const pair = createLeaf(dir, file, plane.clientCa, {
    commonName: name,
    organizations: groups,
    usage: 'client',
  });
  const credentials: Credentials = {
    kind: 'certificate',
    certData: readPem(pair.certFile),
    keyData: readPem(pair.keyFile),
  };
  const kubeconfigFile = join(dir, `${file}.kubeconfig`);
  writeKubeconfig(kubeconfigFile, plane, name, credentials);
  return {
    name,
    groups,
    kubeConfig: kubeConfigFor(plane, name, credentials),
    client: KubeClient.load({ kubeconfig: kubeconfigFile }),
    kubeconfigFile,
  };
}

/** A KubeConfig that authenticates with a bearer token, e.g. one from the TokenRequest API. */
export function kubeConfigWithToken(
  plane: ControlPlaneInfo,
  user: string,
  token: string,
): KubeConfig {
  return kubeConfigFor(plane, user, { kind: 'token', token });
}

/** The `system:masters` admin that the control plane was started with. */
export function adminKubeConfig(plane: ControlPlaneInfo): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(plane.adminKubeconfig);
  return kc;
}

/** The operator's own client (KubeClient) for the admin, loaded from its kubeconfig file. */
export function adminClient(plane: ControlPlaneInfo): KubeClient {
  return KubeClient.load({ kubeconfig: plane.adminKubeconfig });
}
