import { describe, expect, it } from 'vitest';
import { kubeConfigFor, kubeconfigDocument } from '../../support/envtest/kubeconfig.ts';

const cluster = { server: 'https://127.0.0.1:6443', caData: 'CA PEM' };

describe('kubeconfigDocument', () => {
  it('embeds client certificates base64-encoded under one context', () => {
    const doc = kubeconfigDocument(cluster, 'alice', {
      kind: 'certificate',
      certData: 'CERT',
      keyData: 'KEY',
    });
    expect(doc).toMatchObject({
      'current-context': 'alice',
      clusters: [{ cluster: { server: cluster.server, 'certificate-authority-data': 'Q0EgUEVN' } }],
      users: [
        {
          name: 'alice',
          user: { 'client-certificate-data': 'Q0VSVA==', 'client-key-data': 'S0VZ' },
        },
      ],
    });
  });

  it('loads into client-node with a bearer token', () => {
    const kc = kubeConfigFor(cluster, 'robot', { kind: 'token', token: 't0k3n' });
    expect(kc.getCurrentCluster()?.server).toBe(cluster.server);
    expect(kc.getCurrentUser()?.token).toBe('t0k3n');
  });
});
