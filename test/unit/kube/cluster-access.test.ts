import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type ClusterAccess,
  inClusterAccess,
  LazyClientNodeAuth,
  loadClusterAccess,
  TokenFileAuth,
} from '../../../src/kube/cluster-access.ts';
import { fromKubeConfigLike } from '../../../src/kube/kube-config-access.ts';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'cluster-access-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const b64 = (text: string) => Buffer.from(text).toString('base64');

/** Writes a kubeconfig (JSON is YAML) into the test's directory and returns its path. */
function kubeconfig(name: string, document: Record<string, unknown>): string {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(document));
  return file;
}

function oneContext(
  server: string,
  user: Record<string, unknown>,
  extra: { cluster?: Record<string, unknown>; namespace?: string; prefix?: string } = {},
): Record<string, unknown> {
  const p = extra.prefix ?? '';
  return {
    clusters: [{ name: `${p}cluster`, cluster: { server, ...extra.cluster } }],
    users: [{ name: `${p}user`, user }],
    contexts: [
      {
        name: `${p}context`,
        context: {
          cluster: `${p}cluster`,
          user: `${p}user`,
          ...(extra.namespace ? { namespace: extra.namespace } : {}),
        },
      },
    ],
    'current-context': `${p}context`,
  };
}

/** Loads with nothing of the real machine: no $KUBECONFIG, no home, no service account. */
function load(options: Parameters<typeof loadClusterAccess>[0] = {}): ClusterAccess {
  return loadClusterAccess({
    env: {},
    home: join(dir, 'no-home'),
    serviceAccountDir: join(dir, 'no-sa'),
    ...options,
  });
}

describe('loadClusterAccess: kubeconfig files', () => {
  it('reads server, CA, client certificate and key from -data fields, token, namespace', async () => {
    const file = kubeconfig(
      'config',
      oneContext(
        'https://api.example:6443/',
        {
          token: 't0k3n',
          'client-certificate-data': b64('CERT'),
          'client-key-data': b64('KEY'),
        },
        {
          cluster: {
            'certificate-authority-data': b64('CA'),
            'tls-server-name': 'kubernetes',
          },
          namespace: 'team-a',
        },
      ),
    );
    const access = load({ kubeconfig: file });
    expect(access.server).toBe('https://api.example:6443');
    expect(access.tls.ca?.toString()).toBe('CA');
    expect(access.tls.cert?.toString()).toBe('CERT');
    expect(access.tls.key?.toString()).toBe('KEY');
    expect(access.tls.servername).toBe('kubernetes');
    expect(access.tls.rejectUnauthorized).toBe(true);
    expect(access.namespace).toBe('team-a');
    expect(await access.auth.authorization()).toBe('Bearer t0k3n');
  });

  it('reads file fields relative to the kubeconfig, and -data wins over the file', () => {
    mkdirSync(join(dir, 'pki'));
    writeFileSync(join(dir, 'pki', 'ca.crt'), 'CA-FILE');
    writeFileSync(join(dir, 'pki', 'client.crt'), 'CERT-FILE');
    writeFileSync(join(dir, 'pki', 'client.key'), 'KEY-FILE');
    const file = kubeconfig(
      'config',
      oneContext(
        'https://api',
        {
          'client-certificate': 'pki/client.crt',
          'client-key': join(dir, 'pki', 'client.key'),
          'client-key-data': b64('KEY-DATA'),
        },
        { cluster: { 'certificate-authority': 'pki/ca.crt', 'insecure-skip-tls-verify': true } },
      ),
    );
    const access = load({ kubeconfig: file });
    expect(access.tls.ca?.toString()).toBe('CA-FILE');
    expect(access.tls.cert?.toString()).toBe('CERT-FILE');
    expect(access.tls.key?.toString()).toBe('KEY-DATA');
    expect(access.tls.rejectUnauthorized).toBe(false);
  });

  it('sends basic auth for username/password, and nothing for a user without credentials', async () => {
    const basic = load({
      kubeconfig: kubeconfig('basic', oneContext('https://api', { username: 'u', password: 'p' })),
    });
    expect(await basic.auth.authorization()).toBe(`Basic ${b64('u:p')}`);
    const none = load({ kubeconfig: kubeconfig('none', oneContext('https://api', {})) });
    expect(await none.auth.authorization()).toBeUndefined();
  });

  it('merges a KUBECONFIG list like kubectl: the first file wins per name and for current-context', async () => {
    const first = kubeconfig('first', {
      ...oneContext('https://first', { token: 'first' }),
      'current-context': 'context',
    });
    const second = kubeconfig('second', {
      clusters: [
        { name: 'cluster', cluster: { server: 'https://second' } },
        { name: 'other', cluster: { server: 'https://other' } },
      ],
      users: [{ name: 'user', user: { token: 'second' } }],
      contexts: [{ name: 'elsewhere', context: { cluster: 'other', user: 'user' } }],
      'current-context': 'elsewhere',
    });
    const access = load({ env: { KUBECONFIG: [first, '', second].join(delimiter) } });
    expect(access.server).toBe('https://first');
    expect(await access.auth.authorization()).toBe('Bearer first');
    // A context only the second file defines is found, with the first file's user.
    const other = load({
      env: { KUBECONFIG: [first, second].join(delimiter) },
      context: 'elsewhere',
    });
    expect(other.server).toBe('https://other');
    expect(await other.auth.authorization()).toBe('Bearer first');
    // A current-context only in a later file is used when earlier files set none.
    const noCurrent = kubeconfig('no-current', { clusters: [], 'current-context': '' });
    expect(load({ env: { KUBECONFIG: [noCurrent, second].join(delimiter) } }).server).toBe(
      'https://other',
    );
  });

  it('takes the KUBECONFIG setting over $KUBECONFIG, and $KUBECONFIG over ~/.kube/config', () => {
    const setting = kubeconfig('setting', oneContext('https://setting', {}));
    const env = kubeconfig('env', oneContext('https://env', {}));
    mkdirSync(join(dir, 'home', '.kube'), { recursive: true });
    writeFileSync(
      join(dir, 'home', '.kube', 'config'),
      JSON.stringify(oneContext('https://home', {})),
    );
    const home = join(dir, 'home');
    expect(load({ kubeconfig: setting, env: { KUBECONFIG: env }, home }).server).toBe(
      'https://setting',
    );
    expect(load({ env: { KUBECONFIG: env }, home }).server).toBe('https://env');
    expect(load({ home }).server).toBe('https://home');
  });

  it('falls back to http://localhost:8080 without credentials when nothing is configured', async () => {
    const access = load();
    expect(access.server).toBe('http://localhost:8080');
    expect(await access.auth.authorization()).toBeUndefined();
  });

  it.each<[string, Record<string, unknown>, RegExp]>([
    [
      'no current-context',
      { ...oneContext('https://api', {}), 'current-context': '' },
      /no current-context is set/,
    ],
    [
      'an undefined context',
      { ...oneContext('https://api', {}), 'current-context': 'nope' },
      /context "nope" is not defined/,
    ],
    [
      'a context naming an undefined cluster',
      { ...oneContext('https://api', {}), clusters: [] },
      /context "context" names no defined cluster \(cluster\)/,
    ],
    [
      'a cluster without a server',
      { ...oneContext('https://api', {}), clusters: [{ name: 'cluster', cluster: {} }] },
      /cluster "cluster" has no server/,
    ],
    [
      'an undefined user',
      { ...oneContext('https://api', {}), users: [] },
      /names an undefined user "user"/,
    ],
    [
      'a missing CA file',
      oneContext('https://api', {}, { cluster: { 'certificate-authority': 'missing.crt' } }),
      /certificate-authority: cannot read .*missing\.crt/,
    ],
    [
      'a missing token file',
      oneContext('https://api', { tokenFile: 'missing-token' }),
      /tokenFile: cannot read .*missing-token/,
    ],
  ])('fails clearly on %s', (_name, document, message) => {
    const file = kubeconfig('broken', document);
    expect(() => load({ kubeconfig: file })).toThrow(message);
    expect(() => load({ kubeconfig: file })).toThrow(file);
  });

  it('fails clearly on a file that does not exist or is not a mapping', () => {
    expect(() => load({ kubeconfig: join(dir, 'absent') })).toThrow(/kubeconfig .*absent: ENOENT/);
    writeFileSync(join(dir, 'list'), '- 1\n- 2\n');
    expect(() => load({ kubeconfig: join(dir, 'list') })).toThrow(/not a YAML mapping/);
  });

  it('leaves exec plugins to client-node, loaded only when a credential is asked for', () => {
    const file = kubeconfig(
      'exec',
      oneContext('https://api', {
        exec: { apiVersion: 'client.authentication.k8s.io/v1', command: 'true' },
      }),
    );
    expect(load({ kubeconfig: file }).auth).toBeInstanceOf(LazyClientNodeAuth);
  });

  it('runs an exec plugin through client-node and sends the token it prints', async () => {
    const plugin = join(dir, 'plugin.sh');
    const credential = {
      apiVersion: 'client.authentication.k8s.io/v1',
      kind: 'ExecCredential',
      status: { token: 'from-exec' },
    };
    writeFileSync(plugin, `#!/bin/sh\necho '${JSON.stringify(credential)}'\n`, { mode: 0o755 });
    const file = kubeconfig(
      'exec',
      oneContext('https://api', {
        exec: { apiVersion: 'client.authentication.k8s.io/v1', command: plugin },
      }),
    );
    expect(await load({ kubeconfig: file }).auth.authorization()).toBe('Bearer from-exec');
  });
});

describe('in-cluster access', () => {
  function serviceAccount(files: Record<string, string>): string {
    const sa = join(dir, 'sa');
    mkdirSync(sa, { recursive: true });
    for (const [name, text] of Object.entries(files)) writeFileSync(join(sa, name), text);
    return sa;
  }

  it('reads the service account: server from the env, CA, namespace, token', async () => {
    const sa = serviceAccount({ token: 'sa-token\n', 'ca.crt': 'SA-CA', namespace: 'ops\n' });
    const access = load({
      env: { KUBERNETES_SERVICE_HOST: '10.0.0.1', KUBERNETES_SERVICE_PORT: '443' },
      serviceAccountDir: sa,
    });
    expect(access.server).toBe('https://10.0.0.1:443');
    expect(access.tls.ca?.toString()).toBe('SA-CA');
    expect(access.namespace).toBe('ops');
    expect(await access.auth.authorization()).toBe('Bearer sa-token');
  });

  it('brackets IPv6 hosts', () => {
    const sa = serviceAccount({ token: 't' });
    const access = inClusterAccess(
      { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' },
      sa,
    );
    expect(access.server).toBe('https://[fd00::1]:443');
  });

  it('fails clearly without KUBERNETES_SERVICE_HOST/PORT', () => {
    const sa = serviceAccount({ token: 't' });
    expect(() => load({ serviceAccountDir: sa })).toThrow(
      /KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set/,
    );
  });

  it('prefers ~/.kube/config over the service account, as before', () => {
    const sa = serviceAccount({ token: 't' });
    mkdirSync(join(dir, 'home', '.kube'), { recursive: true });
    writeFileSync(
      join(dir, 'home', '.kube', 'config'),
      JSON.stringify(oneContext('https://home', {})),
    );
    expect(load({ serviceAccountDir: sa, home: join(dir, 'home') }).server).toBe('https://home');
  });
});

describe('TokenFileAuth', () => {
  it('reads the rotated token again once the refresh period has passed, keeps the last on failure', () => {
    const file = join(dir, 'token');
    writeFileSync(file, 'one\n');
    const auth = new TokenFileAuth(file, 0);
    expect(auth.authorization()).toBe('Bearer one');
    writeFileSync(file, 'two\n');
    utimesSync(file, new Date(), new Date());
    expect(auth.authorization()).toBe('Bearer two');
    rmSync(file);
    expect(auth.authorization()).toBe('Bearer two');
  });

  it('does not read the file again within the refresh period', () => {
    const file = join(dir, 'token');
    writeFileSync(file, 'one');
    const auth = new TokenFileAuth(file, 60_000);
    writeFileSync(file, 'two');
    expect(auth.authorization()).toBe('Bearer one');
  });
});

describe('fromKubeConfigLike (a client-node KubeConfig handed to createOperator)', () => {
  it('reads the current context of its parsed entries', async () => {
    const access = fromKubeConfigLike({
      clusters: [{ name: 'c', server: 'https://api/', caData: b64('CA'), skipTLSVerify: false }],
      users: [{ name: 'u', token: 'tok', certData: b64('CERT'), keyData: b64('KEY') }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u', namespace: 'ns' }],
      currentContext: 'x',
    });
    expect(access.server).toBe('https://api');
    expect(access.tls.ca?.toString()).toBe('CA');
    expect(access.tls.cert?.toString()).toBe('CERT');
    expect(access.namespace).toBe('ns');
    expect(await access.auth.authorization()).toBe('Bearer tok');
  });

  it("turns client-node's in-cluster tokenFile auth-provider into a rotating token file", async () => {
    const file = join(dir, 'token');
    writeFileSync(file, 'sa');
    const access = fromKubeConfigLike({
      clusters: [{ name: 'c', server: 'https://10.0.0.1:443' }],
      users: [{ name: 'u', authProvider: { name: 'tokenFile', config: { tokenFile: file } } }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    expect(access.auth).toBeInstanceOf(TokenFileAuth);
    expect(await access.auth.authorization()).toBe('Bearer sa');
  });
});
