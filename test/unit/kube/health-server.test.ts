import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type HealthChecks, HealthServer } from '../../../src/kube/health-server.ts';

interface Reply {
  readonly status: number;
  readonly contentType: string | undefined;
  readonly body: string;
}

function get(port: number, path: string, agent?: Agent, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method, ...(agent ? { agent } : { agent: false }) },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          body += chunk;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], body }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Mutable checks the tests flip between requests. */
function checks(initial: { healthy?: boolean; ready?: boolean } = {}) {
  const state = { healthy: initial.healthy ?? true, ready: initial.ready ?? true };
  const calls = { healthy: 0, ready: 0 };
  const value: HealthChecks = {
    healthy: () => {
      calls.healthy++;
      return state.healthy;
    },
    ready: () => {
      calls.ready++;
      return state.ready;
    },
  };
  return { state, calls, checks: value };
}

/** Rejects if `promise` has not settled after `ms`: a liveness bound, so a hang fails clearly. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const servers: HealthServer[] = [];
const agents: Agent[] = [];

async function listen(c: HealthChecks): Promise<HealthServer> {
  const server = await HealthServer.listen(c, { host: '127.0.0.1', port: 0 });
  servers.push(server);
  return server;
}

afterEach(async () => {
  for (const agent of agents.splice(0)) agent.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('HealthServer', () => {
  it('listens on the port it was given, or a free one for port 0', async () => {
    const server = await listen(checks().checks);
    expect(server.port).toBeGreaterThan(0);
    const again = await HealthServer.listen(checks().checks, { host: '127.0.0.1', port: 0 });
    servers.push(again);
    expect(again.port).not.toBe(server.port);
  });

  it('answers /healthz and /readyz with 200 "ok" while the checks pass', async () => {
    const { checks: c } = checks();
    const server = await listen(c);
    for (const path of ['/healthz', '/readyz']) {
      expect(await get(server.port, path)).toEqual({
        status: 200,
        contentType: 'text/plain',
        body: 'ok\n',
      });
    }
  });

  it('answers 500 naming the failing check', async () => {
    const { checks: c } = checks({ healthy: false, ready: false });
    const server = await listen(c);
    expect(await get(server.port, '/healthz')).toEqual({
      status: 500,
      contentType: 'text/plain',
      body: 'healthz check failed\n',
    });
    expect(await get(server.port, '/readyz')).toEqual({
      status: 500,
      contentType: 'text/plain',
      body: 'readyz check failed\n',
    });
  });

  it('runs only the check of the endpoint asked for', async () => {
    const { checks: c, calls } = checks({ healthy: true, ready: false });
    const server = await listen(c);
    expect((await get(server.port, '/healthz')).status).toBe(200);
    expect(calls).toEqual({ healthy: 1, ready: 0 });
    expect((await get(server.port, '/readyz')).status).toBe(500);
    expect(calls).toEqual({ healthy: 1, ready: 1 });
  });

  it('asks the check on every request, so the answer follows its state', async () => {
    const { checks: c, state } = checks({ ready: false });
    const server = await listen(c);
    expect((await get(server.port, '/readyz')).status).toBe(500);
    state.ready = true;
    expect((await get(server.port, '/readyz')).status).toBe(200);
    state.ready = false;
    expect((await get(server.port, '/readyz')).status).toBe(500);
    expect((await get(server.port, '/healthz')).status).toBe(200);
  });

  it('counts a check that throws as failing, and keeps serving', async () => {
    const server = await listen({
      healthy: () => {
        throw new Error('wedged');
      },
      ready: () => {
        throw 'not an Error';
      },
    });
    expect(await get(server.port, '/healthz')).toEqual({
      status: 500,
      contentType: 'text/plain',
      body: 'healthz check failed\n',
    });
    expect(await get(server.port, '/readyz')).toEqual({
      status: 500,
      contentType: 'text/plain',
      body: 'readyz check failed\n',
    });
    expect((await get(server.port, '/nope')).status).toBe(404);
  });

  it('does not echo the error a check threw', async () => {
    const server = await listen({
      healthy: () => {
        throw new Error('secret-detail');
      },
      ready: () => true,
    });
    expect((await get(server.port, '/healthz')).body).not.toContain('secret-detail');
  });

  for (const path of [
    '/',
    '/livez',
    '/healthz/',
    '/healthz/extra',
    '/readyz/',
    '/HEALTHZ',
    '/metrics',
    '//healthz',
    '/healthzz',
  ]) {
    it(`answers 404 for ${path}`, async () => {
      const { checks: c, calls } = checks();
      const server = await listen(c);
      expect(await get(server.port, path)).toEqual({
        status: 404,
        contentType: 'text/plain',
        body: 'not found\n',
      });
      expect(calls).toEqual({ healthy: 0, ready: 0 });
    });
  }

  for (const path of ['/healthz?verbose', '/healthz?verbose=1&exclude=x', '/healthz?']) {
    it(`ignores the query string in ${path}`, async () => {
      const { checks: c, state } = checks();
      const server = await listen(c);
      expect(await get(server.port, path)).toEqual({
        status: 200,
        contentType: 'text/plain',
        body: 'ok\n',
      });
      state.healthy = false;
      expect(await get(server.port, path)).toEqual({
        status: 500,
        contentType: 'text/plain',
        body: 'healthz check failed\n',
      });
    });
  }

  it('ignores the query string on /readyz too, and does not route by it', async () => {
    const { checks: c } = checks({ ready: false });
    const server = await listen(c);
    expect((await get(server.port, '/readyz?x=/healthz')).status).toBe(500);
    expect((await get(server.port, '/nope?/healthz')).status).toBe(404);
  });

  it('serves several requests over one keep-alive connection', async () => {
    const server = await listen(checks().checks);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(agent);
    for (let i = 0; i < 3; i++)
      expect((await get(server.port, '/healthz', agent)).status).toBe(200);
  });

  it('close() resolves even while a keep-alive connection is open, and stops listening', async () => {
    const { checks: c } = checks();
    const server = await HealthServer.listen(c, { host: '127.0.0.1', port: 0 });
    const port = server.port;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    agents.push(agent);
    expect((await get(port, '/healthz', agent)).status).toBe(200);
    // The socket stays open in the agent's pool.
    expect(Object.values(agent.freeSockets).flat()).toHaveLength(1);

    await within(server.close(), 3_000, 'close()');

    await expect(get(port, '/healthz')).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('close() resolves while a client is in the middle of sending a request', async () => {
    const server = await HealthServer.listen(checks().checks, { host: '127.0.0.1', port: 0 });
    const socket: Socket = connect(server.port, '127.0.0.1');
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    // Headers not finished: the connection is active, not idle.
    await new Promise<void>((resolve) =>
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n', () => resolve()),
    );

    await within(server.close(), 3_000, 'close()');
    await within(closed, 3_000, 'the client socket');
  });

  it('close() resolves with no connection ever made', async () => {
    const server = await HealthServer.listen(checks().checks, { host: '127.0.0.1', port: 0 });
    await expect(server.close()).resolves.toBeUndefined();
  });

  it('listen() rejects when the address is taken', async () => {
    const first = await listen(checks().checks);
    await expect(
      HealthServer.listen(checks().checks, { host: '127.0.0.1', port: first.port }),
    ).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });

  it('listens on all interfaces when no host is given', async () => {
    const server = await HealthServer.listen(checks().checks, { host: undefined, port: 0 });
    servers.push(server);
    expect((await get(server.port, '/readyz')).status).toBe(200);
  });
});
