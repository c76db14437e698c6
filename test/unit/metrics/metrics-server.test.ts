import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics } from '../../../src/metrics/metrics.ts';
import type { AuthDecision } from '../../../src/metrics/metrics-auth.ts';
import {
  type MetricsAuthorizer,
  MetricsServer,
  serveMetrics,
} from '../../../src/metrics/metrics-server.ts';
import { selfSignedCertificate } from '../../../src/metrics/self-signed.ts';
import { unreachableClient } from '../../support/kube-client.ts';

interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  readonly peerCertificate?: string;
}

interface Get {
  readonly path?: string;
  readonly method?: string;
  readonly headers?: Record<string, string>;
  /** HTTPS, trusting this PEM. */
  readonly ca?: string;
}

function get(port: number, options: Get = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const common = {
      host: '127.0.0.1',
      port,
      path: options.path ?? '/metrics',
      method: options.method ?? 'GET',
      headers: options.headers ?? {},
      agent: false as const,
    };
    const req = (options.ca ? httpsRequest : httpRequest)(
      options.ca ? { ...common, ca: options.ca } : common,
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const socket = res.socket as { getPeerCertificate?: () => { raw?: Buffer } };
          const raw = socket.getPeerCertificate?.().raw;
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
            ...(raw ? { peerCertificate: raw.toString('base64') } : {}),
          });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The base64 DER inside a PEM, to compare with a peer certificate. */
function derOf(pem: string): string {
  return pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, '');
}

/** An authorizer that answers from a table of tokens and records what it was asked. */
function tableAuthorizer(table: Record<string, AuthDecision>) {
  const asked: Array<[string | undefined, string, string]> = [];
  const authorizer: MetricsAuthorizer = {
    async check(header, verb, path) {
      asked.push([header, verb, path]);
      const token = header?.replace(/^Bearer /, '');
      if (token === 'explode') throw new Error('authorizer bug');
      return (token && table[token]) || { status: 401, reason: 'no token' };
    },
  };
  return { authorizer, asked };
}

const user = { username: 'system:serviceaccount:monitoring:prometheus', groups: [], extra: {} };

const servers: MetricsServer[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function start(options: Partial<Parameters<typeof MetricsServer.listen>[0]> = {}) {
  const metrics = createMetrics({
    controller: 'agentrun',
    agents: ['noop'],
    enabled: true,
    defaultMetrics: false,
  });
  metrics.controller.runFinished('noop', 'succeeded', 120);
  const server = await MetricsServer.listen({
    registry: metrics.registry,
    address: { host: '127.0.0.1', port: 0 },
    ...options,
  });
  servers.push(server);
  return { server, metrics };
}

describe('MetricsServer, plain HTTP', () => {
  it('serves the registry on GET /metrics in the Prometheus text format', async () => {
    const { server } = await start();
    expect(server.certificate).toBeUndefined();
    const reply = await get(server.port);
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = reply.body.toString();
    expect(text).toContain('# TYPE agent_runs_total counter');
    expect(text).toContain('agent_runs_total{agent="noop",status="succeeded"} 1');
  });

  it('reflects new recordings on every scrape', async () => {
    const { server, metrics } = await start();
    metrics.controller.runFinished('noop', 'failed', 10);
    expect((await get(server.port)).body.toString()).toContain(
      'agent_runs_total{agent="noop",status="failed"} 1',
    );
  });

  it('gzips when the scraper accepts it, as Prometheus does', async () => {
    const { server } = await start();
    const reply = await get(server.port, { headers: { 'accept-encoding': 'gzip' } });
    expect(reply.headers['content-encoding']).toBe('gzip');
    expect(gunzipSync(reply.body).toString()).toContain('agent_runs_total');
  });

  it('answers HEAD without a body, 404 elsewhere and 405 for other methods', async () => {
    const { server } = await start();
    const head = await get(server.port, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.body.length).toBe(0);
    expect((await get(server.port, { path: '/' })).status).toBe(404);
    expect((await get(server.port, { path: '/metrics/x' })).status).toBe(404);
    expect((await get(server.port, { path: '/metrics?x=1' })).status).toBe(200);
    const post = await get(server.port, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers['allow']).toBe('GET, HEAD');
  });

  it('answers 500 when the registry fails to collect, and keeps serving', async () => {
    const { server, metrics } = await start();
    const original = metrics.registry.metrics.bind(metrics.registry);
    metrics.registry.metrics = () => Promise.reject(new Error('collector failed'));
    expect((await get(server.port)).status).toBe(500);
    metrics.registry.metrics = original;
    expect((await get(server.port)).status).toBe(200);
  });

  it('rejects when the port is taken', async () => {
    const { server } = await start();
    await expect(
      MetricsServer.listen({
        registry: createMetrics({ controller: 'c', agents: [], enabled: false }).registry,
        address: { host: '127.0.0.1', port: server.port },
      }),
    ).rejects.toThrow(/EADDRINUSE/);
  });
});

describe('MetricsServer, secure', () => {
  const table: Record<string, AuthDecision> = {
    allowed: { status: 200, user },
    denied: { status: 403, user, reason: 'no RBAC rule' },
    broken: { status: 500, reason: 'TokenReview failed: ECONNREFUSED' },
  };

  it('serves HTTPS with a self-signed certificate by default', async () => {
    const { authorizer } = tableAuthorizer(table);
    const { server } = await start({ secure: { authorizer } });
    const ca = server.certificate ?? '';
    expect(ca).toContain('BEGIN CERTIFICATE');
    const reply = await get(server.port, { ca, headers: { authorization: 'Bearer allowed' } });
    expect(reply.status).toBe(200);
    expect(reply.peerCertificate).toBe(derOf(ca));
    expect(reply.body.toString()).toContain('agent_runs_total');
  });

  it('maps decisions to 401, 403 and 500, passing the header, verb "get" and the path', async () => {
    const { authorizer, asked } = tableAuthorizer(table);
    const { server } = await start({ secure: { authorizer } });
    const ca = server.certificate ?? '';
    const none = await get(server.port, { ca });
    expect(none.status).toBe(401);
    expect(none.body.toString()).toBe('Unauthorized\n');
    expect(none.headers['www-authenticate']).toBe('Bearer realm="metrics"');
    const denied = await get(server.port, { ca, headers: { authorization: 'Bearer denied' } });
    expect(denied.status).toBe(403);
    expect(denied.body.toString()).toBe(`Authorization denied for user ${user.username}\n`);
    expect(
      (await get(server.port, { ca, headers: { authorization: 'Bearer broken' } })).status,
    ).toBe(500);
    expect(
      (await get(server.port, { ca, headers: { authorization: 'Bearer explode' } })).status,
    ).toBe(500);
    expect(asked).toEqual([
      [undefined, 'get', '/metrics'],
      ['Bearer denied', 'get', '/metrics'],
      ['Bearer broken', 'get', '/metrics'],
      ['Bearer explode', 'get', '/metrics'],
    ]);
    // Other paths are not served, so they cost no review.
    expect((await get(server.port, { ca, path: '/healthz' })).status).toBe(404);
    expect(asked).toHaveLength(4);
  });

  it('does not answer plain HTTP', async () => {
    const { authorizer } = tableAuthorizer(table);
    const { server } = await start({ secure: { authorizer } });
    await expect(get(server.port)).rejects.toThrow();
  });

  it('serves a mounted certificate from certDir (tls.crt, tls.key)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'metrics-certs-'));
    dirs.push(dir);
    const pair = selfSignedCertificate({ commonName: 'mounted' });
    writeFileSync(join(dir, 'tls.crt'), pair.cert);
    writeFileSync(join(dir, 'tls.key'), pair.key);
    const { authorizer } = tableAuthorizer(table);
    const { server } = await start({ secure: { authorizer, certDir: dir } });
    expect(server.certificate).toBe(pair.cert);
    const reply = await get(server.port, {
      ca: pair.cert,
      headers: { authorization: 'Bearer allowed' },
    });
    expect(reply.status).toBe(200);
    expect(reply.peerCertificate).toBe(derOf(pair.cert));
  });

  it('takes other file names', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'metrics-certs-'));
    dirs.push(dir);
    const pair = selfSignedCertificate({ commonName: 'named' });
    writeFileSync(join(dir, 'cert.pem'), pair.cert);
    writeFileSync(join(dir, 'key.pem'), pair.key);
    const { authorizer } = tableAuthorizer(table);
    const { server } = await start({
      secure: { authorizer, certDir: dir, certName: 'cert.pem', keyName: 'key.pem' },
    });
    expect(server.certificate).toBe(pair.cert);
  });

  it('falls back to a self-signed certificate when the directory lacks the files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'metrics-certs-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'tls.crt'), selfSignedCertificate().cert); // no key
    const { authorizer } = tableAuthorizer(table);
    const { server } = await start({ secure: { authorizer, certDir: dir } });
    const ca = server.certificate ?? '';
    expect(ca).toContain('BEGIN CERTIFICATE');
    expect(
      (await get(server.port, { ca, headers: { authorization: 'Bearer allowed' } })).status,
    ).toBe(200);
  });

  it('refuses to start with a key that does not match the certificate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'metrics-certs-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'tls.crt'), selfSignedCertificate().cert);
    writeFileSync(join(dir, 'tls.key'), selfSignedCertificate().key);
    const { authorizer } = tableAuthorizer(table);
    await expect(start({ secure: { authorizer, certDir: dir } })).rejects.toThrow();
  });

  it('reloads a renewed mounted certificate without a restart, and ignores a broken one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'metrics-certs-'));
    dirs.push(dir);
    const first = selfSignedCertificate({ commonName: 'first' });
    writeFileSync(join(dir, 'tls.crt'), first.cert);
    writeFileSync(join(dir, 'tls.key'), first.key);
    const { authorizer } = tableAuthorizer(table);
    const { server } = await start({ secure: { authorizer, certDir: dir, reloadIntervalMs: 20 } });
    const headers = { authorization: 'Bearer allowed' };
    expect((await get(server.port, { ca: first.cert, headers })).peerCertificate).toBe(
      derOf(first.cert),
    );

    // A half-written pair (new certificate, old key) is not applied.
    const second = selfSignedCertificate({ commonName: 'second' });
    writeFileSync(join(dir, 'tls.crt'), second.cert);
    await new Promise((r) => setTimeout(r, 100));
    expect(server.certificate).toBe(first.cert);

    writeFileSync(join(dir, 'tls.key'), second.key);
    const deadline = Date.now() + 5_000;
    while (server.certificate !== second.cert && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(server.certificate).toBe(second.cert);
    const reply = await get(server.port, { ca: second.cert, headers });
    expect(reply.peerCertificate).toBe(derOf(second.cert));
  });
});

describe('serveMetrics (from the configuration)', () => {
  const registry = () =>
    createMetrics({ controller: 'agentrun', agents: [], enabled: true, defaultMetrics: false })
      .registry;
  const client = unreachableClient('t');
  const address = { host: '127.0.0.1', port: 0 };

  it('serves nothing when metrics are disabled or the address is "0"', async () => {
    expect(
      await serveMetrics({
        registry: registry(),
        enabled: false,
        address,
        secure: false,
        client,
      }),
    ).toBeUndefined();
    expect(
      await serveMetrics({
        registry: registry(),
        enabled: true,
        address: undefined,
        secure: true,
        client,
      }),
    ).toBeUndefined();
  });

  it('serves plain HTTP by default', async () => {
    const server = await serveMetrics({
      registry: registry(),
      enabled: true,
      address,
      secure: false,
      client,
    });
    if (!server) throw new Error('expected a server');
    servers.push(server);
    expect((await get(server.port)).status).toBe(200);
  });

  it('serves HTTPS with delegated auth in secure mode (401 before any API call without a token)', async () => {
    const server = await serveMetrics({
      registry: registry(),
      enabled: true,
      address,
      secure: true,
      certDir: '',
      client,
    });
    if (!server) throw new Error('expected a server');
    servers.push(server);
    expect((await get(server.port, { ca: server.certificate ?? '' })).status).toBe(401);
    // The API server of this kubeconfig is unreachable: a token cannot be reviewed.
    const reply = await get(server.port, {
      ca: server.certificate ?? '',
      headers: { authorization: 'Bearer some-token' },
    });
    expect(reply.status).toBe(500);
  });
});
