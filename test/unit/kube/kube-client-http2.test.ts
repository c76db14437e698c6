import { spawn } from 'node:child_process';
import {
  constants,
  createSecureServer,
  type Http2SecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type ServerHttp2Session,
} from 'node:http2';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import {
  type AddressInfo,
  createServer as createTcpServer,
  type Server,
  type Socket,
  connect as tcpConnect,
} from 'node:net';
import { resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ContentType, KubeClient, type KubeClientOptions } from '../../../src/kube/kube-client.ts';
import { selfSignedCertificate } from '../../../src/metrics/self-signed.ts';

// Real TLS servers on loopback (node:http2 and node:https), no mocks: what matters here is what
// goes over the wire, which ALPN picks, and how a session ends.

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly httpVersion: string;
  readonly body: string;
  readonly authorization: string | undefined;
}

type Handler = (req: Http2ServerRequest, res: Http2ServerResponse, body: string) => void;

const certificate = selfSignedCertificate();
const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/**
 * Listens on a loopback port; after the test, `held()` (the connections still open) is
 * destroyed and the server closed.
 */
async function listen(
  server: Server | Http2SecureServer | HttpsServer,
  held: () => Iterable<{ destroy(): void }>,
  host = '127.0.0.1',
): Promise<number> {
  await new Promise<void>((done) => server.listen(0, host, done));
  closers.push(
    () =>
      new Promise<void>((done) => {
        for (const connection of held()) connection.destroy();
        server.close(() => done());
      }),
  );
  return (server.address() as AddressInfo).port;
}

/** An HTTP/2 server that also answers HTTP/1.1 (as the API server does); counts its sessions. */
async function serveH2(handler: Handler) {
  const seen: Seen[] = [];
  const sessions: ServerHttp2Session[] = [];
  const server = createSecureServer(
    { cert: certificate.cert, key: certificate.key, allowHTTP1: true },
    (req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (chunk: string) => {
        body += chunk;
      });
      req.on('end', () => {
        seen.push({
          method: req.method,
          url: req.url,
          httpVersion: req.httpVersion,
          body,
          authorization: req.headers.authorization,
        });
        handler(req, res, body);
      });
    },
  );
  server.on('session', (session) => sessions.push(session));
  const port = await listen(server, () => sessions);
  return { port, seen, sessions };
}

/** A client that asks for HTTP/2 (off by default), unless `options` says otherwise. */
function client(port: number, options: KubeClientOptions = {}): KubeClient {
  const created = new KubeClient(
    {
      server: `https://127.0.0.1:${port}`,
      tls: { rejectUnauthorized: true, ca: Buffer.from(certificate.cert) },
      namespace: undefined,
      auth: { authorization: () => 'Bearer t0ken' },
    },
    { http2: true, ...options },
  );
  closers.push(() => created.close());
  return created;
}

const ok = (res: Http2ServerResponse, body: unknown) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

describe('KubeClient over HTTP/2', () => {
  it('sends requests and watches as streams of one session, bodies and credentials included', async () => {
    const { port, seen, sessions } = await serveH2((req, res, body) => {
      if (req.url.startsWith('/watch')) {
        res.writeHead(200);
        res.write('{"type":"ADDED","object":{"n":1}}\n{"type":"MOD');
        setTimeout(() => res.end('IFIED","object":{"n":2}}\n'), 10);
        return;
      }
      ok(res, { echo: body, method: req.method });
    });
    const kube = client(port);
    const answers = await Promise.all([
      kube.request('GET', '/a'),
      kube.request('PATCH', '/b', { body: '{"x":1}', contentType: ContentType.MergePatch }),
      // The operator's deletes carry preconditions in their body.
      kube.request('DELETE', '/c', { body: '{"preconditions":{"uid":"u"}}' }),
    ]);
    expect(answers).toEqual([
      { echo: '', method: 'GET' },
      { echo: '{"x":1}', method: 'PATCH' },
      { echo: '{"preconditions":{"uid":"u"}}', method: 'DELETE' },
    ]);
    const events: unknown[] = [];
    await kube.watch('/watch?watch=true', { signal: new AbortController().signal }, (event) =>
      events.push(event),
    );
    expect(events).toEqual([
      { type: 'ADDED', object: { n: 1 } },
      { type: 'MODIFIED', object: { n: 2 } },
    ]);
    expect(seen.map((s) => s.httpVersion)).toEqual(['2.0', '2.0', '2.0', '2.0']);
    expect(seen.every((s) => s.authorization === 'Bearer t0ken')).toBe(true);
    expect(sessions).toHaveLength(1);
  });

  it('sends the host name as SNI, as https.Agent does (a load balancer may route by it)', async () => {
    const names: (string | false | undefined)[] = [];
    const server = createSecureServer(
      { cert: certificate.cert, key: certificate.key },
      (req, res) => {
        names.push((req.socket as unknown as { servername?: string | false }).servername);
        ok(res, {});
      },
    );
    const sessions: ServerHttp2Session[] = [];
    server.on('session', (session) => sessions.push(session));
    // localhost, whichever address it resolves to first here: the client resolves the same.
    const port = await listen(server, () => sessions, 'localhost');
    const kube = new KubeClient(
      {
        server: `https://localhost:${port}`,
        tls: { rejectUnauthorized: true, ca: Buffer.from(certificate.cert) },
        namespace: undefined,
        auth: { authorization: () => undefined },
      },
      { http2: true },
    );
    closers.push(() => kube.close());
    await kube.request('GET', '/x');
    expect(names).toEqual(['localhost']);
  });

  it('keeps to HTTP/1.1 with a server that offers no h2, and when not asked for it', async () => {
    const versions: string[] = [];
    const server = createHttpsServer(
      { cert: certificate.cert, key: certificate.key },
      (req, res) => {
        versions.push(req.httpVersion);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
      },
    );
    const port = await listen(server, () => [{ destroy: () => server.closeAllConnections() }]);

    const kube = client(port);
    await kube.request('GET', '/one');
    await kube.request('GET', '/two');
    expect(versions).toEqual(['1.1', '1.1']);

    const h2 = await serveH2((_req, res) => ok(res, {}));
    await client(h2.port, { http2: false }).request('GET', '/x');
    expect(h2.seen.map((s) => s.httpVersion)).toEqual(['1.1']);
  });

  it('lets streams in flight finish on a session told to go away, and opens a new one for the next', async () => {
    let release: (() => void) | undefined;
    const { port, sessions } = await serveH2((req, res) => {
      if (req.url === '/slow') {
        release = () => ok(res, { slow: true });
        // An API server shutting down: GOAWAY, then it still answers what it had accepted.
        req.stream.session?.goaway();
        return;
      }
      ok(res, { url: req.url });
    });
    const kube = client(port);
    const slow = kube.request('GET', '/slow');
    await waitFor(() => release !== undefined);
    // Wait until the client has heard the GOAWAY: the next request must not use that session.
    await new Promise((done) => setTimeout(done, 50));
    await expect(kube.request('GET', '/next')).resolves.toEqual({ url: '/next' });
    release?.();
    await expect(slow).resolves.toEqual({ slow: true });
    expect(sessions).toHaveLength(2);
  });

  it('sends a request the server refused unprocessed (REFUSED_STREAM) again, a few times at most', async () => {
    const reported: number[] = [];
    let refusals = 0;
    const { port, seen } = await serveH2((req, res) => {
      if (req.url === '/always' || (req.url === '/once' && refusals === 0)) {
        refusals++;
        req.stream.close(constants.NGHTTP2_REFUSED_STREAM);
        return;
      }
      ok(res, { url: req.url });
    });
    const kube = client(port, { onResponse: (_method, code) => reported.push(code) });
    await expect(kube.request('POST', '/once', { body: '{"a":1}' })).resolves.toEqual({
      url: '/once',
    });
    expect(seen.filter((s) => s.url === '/once').map((s) => s.body)).toEqual([
      '{"a":1}',
      '{"a":1}',
    ]);
    await expect(kube.request('GET', '/always')).rejects.toThrow(/NGHTTP2_REFUSED_STREAM/);
    expect(seen.filter((s) => s.url === '/always')).toHaveLength(3);
    // Each request is reported once, as it ended.
    expect(reported).toEqual([200, 0]);
  });

  it('pings a silent connection and fails what waits on it when no answer comes; the next request reconnects', async () => {
    const h2 = await serveH2((req, res) => ok(res, { url: req.url }));
    const proxy = await freezableProxy(h2.port);
    const kube = client(proxy.port, { http2: { readIdleMs: 100, pingTimeoutMs: 200 } });
    await expect(kube.request('GET', '/before')).resolves.toEqual({ url: '/before' });
    // The connection dies in silence (a partition): nothing passes, nothing is closed.
    proxy.freeze();
    await expect(kube.request('GET', '/lost', { timeoutMs: 0 })).rejects.toThrow(
      /did not answer an HTTP\/2 ping within 200 ms/,
    );
    await expect(kube.request('GET', '/after')).resolves.toEqual({ url: '/after' });
    expect(h2.seen.map((s) => s.url)).toEqual(['/before', '/after']);
  });

  it('bounds a request by its timeout while the connection is still being made', async () => {
    // Accepts and never answers: the TLS handshake hangs.
    const held: Socket[] = [];
    const silent = createTcpServer((socket) => held.push(socket));
    const port = await listen(silent, () => held);
    const error = await client(port)
      .request('GET', '/x', { timeoutMs: 100 })
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'TimeoutError' });
  });

  it('does not keep a process alive once its requests are answered', async () => {
    const { port } = await serveH2((_req, res) => ok(res, { done: true }));
    const source = resolve(import.meta.dirname, '../../../src/kube/kube-client.ts');
    const script = `
      import { KubeClient } from ${JSON.stringify(source)};
      const kube = new KubeClient({
        server: 'https://127.0.0.1:${port}',
        tls: { rejectUnauthorized: true, ca: Buffer.from(${JSON.stringify(certificate.cert)}) },
        namespace: undefined,
        auth: { authorization: () => undefined },
      }, { http2: true });
      console.log(JSON.stringify(await kube.request('GET', '/x')));
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
    });
    // Without the session's unref the child would never exit, and the test time out.
    const code = await new Promise<number | null>((done) => child.once('exit', done));
    expect({ code, out: out.trim() }).toEqual({ code: 0, out: '{"done":true}' });
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((done) => setTimeout(done, 5));
}

/** A TCP proxy whose connections can be frozen: bytes stop flowing, nothing is closed. */
async function freezableProxy(target: number) {
  const frozen = new Set<Socket>();
  const sockets = new Set<Socket>();
  const server = createTcpServer((inbound: Socket) => {
    const outbound = tcpConnect(target, '127.0.0.1');
    sockets.add(inbound).add(outbound);
    const forward = (from: Socket, to: Socket) =>
      from.on('data', (chunk: Buffer) => {
        if (!frozen.has(from)) to.write(chunk);
      });
    forward(inbound, outbound);
    forward(outbound, inbound);
    inbound.on('error', () => outbound.destroy());
    outbound.on('error', () => inbound.destroy());
    inbound.on('close', () => outbound.destroy());
    outbound.on('close', () => inbound.destroy());
  });
  const port = await listen(server, () => sockets);

  return {
    port,
    /** Drops every byte of the connections open now; later connections flow. */
    freeze: () => {
      for (const socket of sockets) frozen.add(socket);
    },
  };
}
