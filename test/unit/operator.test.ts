import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { apiServerHosts, leaderElectionNamespace } from '../../src/operator.ts';

describe('leaderElectionNamespace', () => {
  const dir = mkdtempSync(join(tmpdir(), 'agentrun-sa-'));
  const serviceAccountFile = join(dir, 'namespace');
  writeFileSync(serviceAccountFile, 'from-service-account\n');
  const absent = join(dir, 'absent');

  it('takes LEADER_ELECTION_NAMESPACE first', () => {
    const config = { LEADER_ELECTION_NAMESPACE: 'ops', POD_NAMESPACE: 'agentrun-system' };
    expect(leaderElectionNamespace(config, serviceAccountFile)).toBe('ops');
  });

  it("then the pod's namespace from the config (POD_NAMESPACE)", () => {
    const config = { LEADER_ELECTION_NAMESPACE: '', POD_NAMESPACE: 'agentrun-system' };
    expect(leaderElectionNamespace(config, serviceAccountFile)).toBe('agentrun-system');
  });

  it("then the service account's namespace file", () => {
    const config = { LEADER_ELECTION_NAMESPACE: '', POD_NAMESPACE: '' };
    expect(leaderElectionNamespace(config, serviceAccountFile)).toBe('from-service-account');
  });

  it('else "default"', () => {
    const config = { LEADER_ELECTION_NAMESPACE: '', POD_NAMESPACE: '' };
    expect(leaderElectionNamespace(config, absent)).toBe('default');
  });
});

describe('apiServerHosts', () => {
  it('takes the in-cluster service host and the kubeconfig server, once each', () => {
    expect(
      apiServerHosts('https://10.96.0.1:443', { KUBERNETES_SERVICE_HOST: '10.96.0.1' }),
    ).toEqual(['10.96.0.1']);
    expect(
      apiServerHosts('https://API.cluster.example:6443', {
        KUBERNETES_SERVICE_HOST: 'fd00:10:96::1',
      }),
    ).toEqual(['fd00:10:96::1', 'api.cluster.example']);
  });

  it('drops IPv6 brackets and ignores what is absent or unparsable', () => {
    expect(apiServerHosts('https://[::1]:6443', {})).toEqual(['::1']);
    expect(apiServerHosts(undefined, { KUBERNETES_SERVICE_HOST: '' })).toEqual([]);
    expect(apiServerHosts('not a url', {})).toEqual([]);
  });
});
