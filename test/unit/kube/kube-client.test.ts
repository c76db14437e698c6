import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Server, Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type ClusterAccess, NO_AUTH, staticAuth } from '../../../src/kube/cluster-access.ts';
import { ContentType, KubeClient } from '../../../src/kube/kube-client.ts';
import { describeKubeError, KubeHttpError, statusCodeOf } from '../../../src/kube/kube-errors.ts';
import { selfSignedCertificate } from '../../../src/metrics/self-signed.ts';

interface Seen {
  readonly method: string | undefined;
  readonly url: string | undefined;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
  /** Which connection carried it (a number per accepted socket). */
  readonly connection: number;
}

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

interface TestServer {
  readonly base: string;
  readonly seen: Seen[];
  readonly server: Server;
}

const servers: Server[] = [];
const clients: KubeClient[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  await Promise.all(
    servers.splice(0).map(
      (server) =>
        new Promise((resolve) => {
          server.close(resolve);
          (server as unknown as { closeAllConnections(): void }).closeAllConnections();
        }),
    ),
  );
});

const certificate = selfSignedCertificate();

async function serve(handler: Handler, tls = false): Promise<TestServer> {
  const seen: Seen[] = [];
  const sockets = new WeakMap<Socket, number>();
  let connections = 0;
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
    });
    req.on('end', () => {
      let connection = sockets.get(req.socket);
      if (connection === undefined) {
        connection = ++connections;
        sockets.set(req.socket, connection);
      }
      seen.push({ method: req.method, url: req.url, headers: req.headers, body, connection });
      handler(req, res, body);
    });
  };
  const server = tls
    ? createHttpsServer({ cert: certificate.cert, key: certificate.key }, listener)
    : createHttpServer(listener);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return { base: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`, seen, server };
}

function client(
  server: string,
  access: Partial<ClusterAccess> = {},
  onResponse?: (m: string, c: number, h: string) => void,
): KubeClient {
  const created = new KubeClient(
    {
      server,
      tls: { rejectUnauthorized: true },
      namespace: undefined,
      auth: NO_AUTH,
      ...access,
    },
    onResponse ? { onResponse } : {},
  );
  clients.push(created);
  return created;
}

/** What `call` rejects with; fails the test if it resolves. */
async function rejection(call: Promise<unknown>): Promise<Error> {
  try {
    await call;
  } catch (error) {
    if (error instanceof Error) return error;
    throw new Error(`rejected with a non-Error: ${String(error)}`);
  }
  throw new Error('expected a rejection');
}

const json = (res: ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

describe('KubeClient.request', () => {
  it('sends the body as given with its content type and credentials, under the server path prefix', async () => {
    const { base, seen } = await serve((_req, res) => json(res, 200, { ok: true }));
    const kube = client(`${base}/proxy`, { auth: staticAuth('Bearer secret-token') });
    const answer = await kube.request('PATCH', '/apis/g/v1/namespaces/ns/things/a/status', {
      contentType: ContentType.JsonPatch,
      body: '[{"op":"add","path":"/status","value":{"phase":"Ünïcode"}}]',
    });
    expect(answer).toEqual({ ok: true });
    expect(seen[0]).toMatchObject({
      method: 'PATCH',
      url: '/proxy/apis/g/v1/namespaces/ns/things/a/status',
      body: '[{"op":"add","path":"/status","value":{"phase":"Ünïcode"}}]',
    });
    expect(seen[0]?.headers['content-type']).toBe('application/json-patch+json');
    expect(seen[0]?.headers['authorization']).toBe('Bearer secret-token');
    expect(seen[0]?.headers['accept']).toContain('application/json');
    expect(seen[0]?.headers['user-agent']).toBeUndefined();
    const tagged = new KubeClient(kube.access, { userAgent: 'agentrun-operator/1.2.3' });
    clients.push(tagged);
    await tagged.request('GET', '/');
    expect(seen[1]?.headers['user-agent']).toBe('agentrun-operator/1.2.3');
  });

  it('resolves undefined for an empty answer, and sends no content type without a body', async () => {
    const { base, seen } = await serve((_req, res) => {
      res.writeHead(200);
      res.end();
    });
    expect(await client(base).request('GET', '/api')).toBeUndefined();
    expect(seen[0]?.headers['content-type']).toBeUndefined();
    expect(seen[0]?.headers['authorization']).toBeUndefined();
  });

  it('rejects non-2xx answers with KubeHttpError: status code and body text', async () => {
    const status = { kind: 'Status', reason: 'Conflict', message: 'the object changed', code: 409 };
    const { base } = await serve((req, res) => {
      if (req.url === '/conflict') json(res, 409, status);
      else if (req.url === '/gone') json(res, 410, { kind: 'Status', reason: 'Expired' });
      else {
        res.writeHead(429);
        res.end('slow down');
      }
    });
    const kube = client(base);
    const conflict = await kube.request('PUT', '/conflict', { body: '{}' }).catch((e) => e);
    expect(conflict).toBeInstanceOf(KubeHttpError);
    expect(statusCodeOf(conflict)).toBe(409);
    expect((conflict as KubeHttpError).statusCode).toBe(409);
    expect((conflict as KubeHttpError).reason).toBe('Conflict');
    expect(JSON.parse((conflict as KubeHttpError).body)).toEqual(status);
    expect(describeKubeError(conflict)).toBe('HTTP 409 Conflict: the object changed');
    expect(statusCodeOf(await kube.request('GET', '/gone').catch((e) => e))).toBe(410);
    const throttled = await kube.request('GET', '/other').catch((e) => e);
    expect(statusCodeOf(throttled)).toBe(429);
    expect(describeKubeError(throttled)).toBe('HTTP 429: slow down');
  });

  it('rejects with the signal reason when aborted, and with a TimeoutError after timeoutMs', async () => {
    const { base } = await serve(() => {
      // Never answers.
    });
    const kube = client(base);
    const controller = new AbortController();
    const aborted = rejection(kube.request('GET', '/slow', { signal: controller.signal }));
    setTimeout(() => controller.abort(), 20);
    expect((await aborted).name).toBe('AbortError');
    const timedOut = await rejection(kube.request('GET', '/slow', { timeoutMs: 30 }));
    expect(timedOut.name).toBe('TimeoutError');
    expect(describeKubeError(timedOut)).toBe('the request timed out');
  });

  it('bounds every request by the client’s requestTimeoutMs unless the request says otherwise', async () => {
    // A connection that went silent (a partition): the server took the request and says nothing.
    const { base } = await serve(() => {});
    const kube = new KubeClient(
      { server: base, tls: { rejectUnauthorized: true }, namespace: undefined, auth: NO_AUTH },
      { requestTimeoutMs: 50 },
    );
    clients.push(kube);
    const timedOut = await rejection(kube.request('PATCH', '/silent', { body: '{}' }));
    expect(timedOut.name).toBe('TimeoutError');
    // 0 lifts the limit for one request: it is still waiting when aborted well after 50 ms.
    const controller = new AbortController();
    const unlimited = rejection(
      kube.request('GET', '/silent', { timeoutMs: 0, signal: controller.signal }),
    );
    setTimeout(() => controller.abort(), 200);
    expect((await unlimited).name).toBe('AbortError');
  });

  it('reuses one keep-alive connection for sequential requests', async () => {
    const { base, seen } = await serve((_req, res) => json(res, 200, {}));
    const kube = client(base);
    for (let i = 0; i < 5; i++) await kube.request('GET', `/r${i}`);
    expect(new Set(seen.map((s) => s.connection))).toEqual(new Set([1]));
  });

  it('speaks TLS, trusting the CA it is given', async () => {
    const { base } = await serve((_req, res) => json(res, 200, { secure: true }), true);
    const trusting = client(base, {
      tls: { rejectUnauthorized: true, ca: Buffer.from(certificate.cert) },
    });
    expect(await trusting.request('GET', '/')).toEqual({ secure: true });
    await expect(client(base).request('GET', '/')).rejects.toThrow(/self.signed|certificate/i);
    const insecure = client(base, { tls: { rejectUnauthorized: false } });
    expect(await insecure.request('GET', '/')).toEqual({ secure: true });
  });

  it('reports every request once to onResponse: method, code (0 without an answer), host', async () => {
    const { base } = await serve((req, res) => json(res, req.url === '/missing' ? 404 : 200, {}));
    const calls: Array<[string, number, string]> = [];
    const kube = client(base, {}, (method, code, host) => {
      calls.push([method, code, host]);
      throw new Error('a broken metric must not break the request');
    });
    await kube.request('GET', '/');
    await kube.request('GET', '/missing').catch(() => undefined);
    const host = new URL(base).host;
    expect(calls).toEqual([
      ['GET', 200, host],
      ['GET', 404, host],
    ]);
    const closed = await serve(() => undefined);
    closed.server.close();
    (closed.server as unknown as { closeAllConnections(): void }).closeAllConnections();
    const nowhere = client(closed.base, {}, (method, code, h) => calls.push([method, code, h]));
    await expect(nowhere.request('POST', '/', { body: '{}' })).rejects.toThrow(/ECONNREFUSED/);
    expect(calls.at(-1)).toEqual(['POST', 0, new URL(closed.base).host]);
  });
});

describe('KubeClient.send', () => {
  it('resolves once a 2xx answer has been read, whatever it holds, and reuses the connection', async () => {
    const { base, seen } = await serve((req, res) => {
      if (req.url === '/refused') return json(res, 422, { kind: 'Status', reason: 'Invalid' });
      // Not JSON: request() would fail to parse it; send() never looks at it.
      res.writeHead(201, { 'content-type': 'application/json' });
      res.end('{"kind":"Event", cut');
    });
    const kube = client(base);
    await expect(kube.send('POST', '/events', { body: '{"a":1}' })).resolves.toBeUndefined();
    await expect(kube.send('POST', '/events', { body: '{"a":2}' })).resolves.toBeUndefined();
    expect(seen.map((s) => [s.body, s.connection])).toEqual([
      ['{"a":1}', 1],
      ['{"a":2}', 1],
    ]);
    const refused = await rejection(kube.send('POST', '/refused', { body: '{}' }));
    expect(refused).toBeInstanceOf(KubeHttpError);
    expect((refused as KubeHttpError).reason).toBe('Invalid');
  });
});

describe('KubeClient.watch', () => {
  it('decodes JSON lines split anywhere across chunks, multi-byte characters included', async () => {
    const events = [
      { type: 'ADDED', object: { metadata: { name: 'ä-1' } } },
      { type: 'MODIFIED', object: { metadata: { name: '二' } } },
      { type: 'DELETED', object: { metadata: { name: 'last' } } },
    ];
    const text = Buffer.from(events.map((e) => JSON.stringify(e)).join('\n'));
    const { base, seen } = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      // Three bytes at a time, splitting lines and UTF-8 sequences; no newline after the last.
      let offset = 0;
      const next = () => {
        if (offset >= text.length) {
          res.end();
          return;
        }
        res.write(text.subarray(offset, offset + 3));
        offset += 3;
        setImmediate(next);
      };
      next();
    });
    const received: unknown[] = [];
    await client(base).watch(
      '/apis/g/v1/things?watch=true',
      { signal: new AbortController().signal },
      (event) => received.push(event),
    );
    expect(received).toEqual(events);
    expect(seen[0]?.url).toBe('/apis/g/v1/things?watch=true');
  });

  it('resolves when its signal aborts, and delivers nothing after', async () => {
    const { base } = await serve((_req, res) => {
      res.writeHead(200);
      res.write(`${JSON.stringify({ type: 'ADDED', object: {} })}\n`);
      const timer = setInterval(
        () => res.write(`${JSON.stringify({ type: 'MODIFIED', object: {} })}\n`),
        5,
      );
      res.on('close', () => clearInterval(timer));
    });
    const controller = new AbortController();
    const received: unknown[] = [];
    const watching = client(base).watch('/w', { signal: controller.signal }, (event) => {
      received.push(event);
      if (received.length === 3) controller.abort();
    });
    await expect(watching).resolves.toBeUndefined();
    const count = received.length;
    await new Promise((r) => setTimeout(r, 30));
    expect(received.length).toBe(count);
    expect(count).toBe(3);
  });

  it('rejects a refused watch with KubeHttpError, and stops with what the handler throws', async () => {
    const { base } = await serve((req, res) => {
      if (req.url === '/refused') {
        json(res, 403, { kind: 'Status', reason: 'Forbidden', message: 'no' });
        return;
      }
      res.writeHead(200);
      res.write(`${JSON.stringify({ type: 'ADDED', object: {} })}\n`);
    });
    const kube = client(base);
    const signal = new AbortController().signal;
    const refused = await kube.watch('/refused', { signal }, () => undefined).catch((e) => e);
    expect(refused).toBeInstanceOf(KubeHttpError);
    expect(statusCodeOf(refused)).toBe(403);
    const boom = new Error('handler failed');
    await expect(
      kube.watch('/w', { signal }, () => {
        throw boom;
      }),
    ).rejects.toBe(boom);
  });

  it('fails a watch that receives nothing for idleTimeoutMs', async () => {
    const { base } = await serve((_req, res) => {
      res.writeHead(200);
      res.flushHeaders();
    });
    const signal = new AbortController().signal;
    await expect(
      client(base).watch('/quiet', { signal, idleTimeoutMs: 50 }, () => undefined),
    ).rejects.toThrow(/no data from the API server for 50 ms/);
  });

  it('rejects when the connection dies mid-stream', async () => {
    const { base } = await serve((req, res) => {
      res.writeHead(200);
      res.write('{"type":"ADDED","obj');
      setTimeout(() => req.socket.destroy(), 10);
    });
    await expect(
      client(base).watch('/w', { signal: new AbortController().signal }, () => undefined),
    ).rejects.toThrow();
  });
});
