import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { leaderElectionNamespace } from '../../src/operator.ts';

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
