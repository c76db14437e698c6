import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { NO_AUTH } from '../../../src/kube/cluster-access.ts';
import { KubeClient } from '../../../src/kube/kube-client.ts';
import { KubeApiError, statusCodeOf } from '../../../src/kube/kube-errors.ts';
import {
  KubeListWatch,
  toKubeApiError,
  type WatchEvent,
} from '../../../src/kube/kube-list-watch.ts';

const PATH = '/apis/example.io/v1/namespaces/ns/gadgets';
let server: Server | undefined;
let client: KubeClient | undefined;
afterEach(async () => {
  client?.close();
  if (server) {
    server.closeAllConnections();
    await new Promise((resolve) => server?.close(resolve));
  }
  server = undefined;
});

async function listWatch(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  requestTimeoutMs = 5_000,
): Promise<{ lw: KubeListWatch; urls: string[] }> {
  const urls: string[] = [];
  server = createServer((req, res) => {
    urls.push(req.url ?? '');
    handler(req, res);
  });
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  client = new KubeClient({
    server: `http://127.0.0.1:${port}`,
    tls: { rejectUnauthorized: true },
    namespace: undefined,
    auth: NO_AUTH,
  });
  const lw = new KubeListWatch(client, {
    group: 'example.io',
    version: 'v1',
    plural: 'gadgets',
    namespace: 'ns',
    requestTimeoutMs,
  });
  return { lw, urls };
}

const signal = () => new AbortController().signal;

describe('KubeListWatch over KubeClient', () => {
  it('lists a page with limit and continue, and reads resourceVersion and the next token', async () => {
    const { lw, urls } = await listWatch((_req, res) => {
      res.end(
        JSON.stringify({ items: [{ a: 1 }], metadata: { resourceVersion: '7', continue: 'n' } }),
      );
    });
    const page = await lw.list({ limit: 2, continueToken: 'c1', signal: signal() });
    expect(page).toEqual({ items: [{ a: 1 }], resourceVersion: '7', continueToken: 'n' });
    expect(urls).toEqual([`${PATH}?limit=2&continue=c1`]);
  });

  it("lists and watches the core group (group '') under /api, in a namespace or all of them", async () => {
    const { urls } = await listWatch((req, res) => {
      const watch = req.url?.includes('watch=true');
      res.end(watch ? '' : JSON.stringify({ items: [], metadata: { resourceVersion: '3' } }));
    });
    const core = client;
    if (!core) throw new Error('no client');
    const pods = (namespace?: string) =>
      new KubeListWatch(core, {
        group: '',
        version: 'v1',
        plural: 'pods',
        namespace,
        requestTimeoutMs: 5_000,
      });
    await pods('ns').list({ limit: 1, signal: signal() });
    await pods().list({ limit: 1, signal: signal() });
    await pods('ns').watch({ resourceVersion: '3', timeoutSeconds: 1, signal: signal() }, () => {});
    expect(urls.map((url) => url.split('?')[0])).toEqual([
      '/api/v1/namespaces/ns/pods',
      '/api/v1/pods',
      '/api/v1/namespaces/ns/pods',
    ]);
  });

  it('names the call, the status and the server message in one line when a list fails', async () => {
    const { lw } = await listWatch((_req, res) => {
      res.writeHead(403, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({ kind: 'Status', reason: 'Forbidden', message: 'gadgets is forbidden' }),
      );
    });
    const error = await lw.list({ limit: 1, signal: signal() }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(KubeApiError);
    expect((error as KubeApiError).message).toBe(`list ${PATH}: 403: gadgets is forbidden`);
    expect((error as KubeApiError).reason).toBe('Forbidden');
  });

  it('names the call and the cause when the server cannot be reached', async () => {
    const { lw } = await listWatch(() => undefined);
    server?.close();
    server?.closeAllConnections();
    server = undefined;
    await expect(lw.list({ limit: 1, signal: signal() })).rejects.toThrow(
      new RegExp(`^list ${PATH}: connect ECONNREFUSED`),
    );
  });

  it('says a network error and its cause once each, and a cause that repeats the error once', () => {
    const refused = new Error('connect ECONNREFUSED', { cause: new Error('in the pool') });
    expect((toKubeApiError(refused, 'watch /x') as Error).message).toBe(
      'watch /x: connect ECONNREFUSED: in the pool',
    );
    const ping = 'the API server did not answer an HTTP/2 ping within 15000 ms';
    const dropped = new Error(ping, { cause: new Error(ping) });
    expect((toKubeApiError(dropped, 'watch /x') as Error).message).toBe(`watch /x: ${ping}`);
  });

  it('watches with bookmarks from a resourceVersion, and turns an ERROR event into its status code', async () => {
    const { lw, urls } = await listWatch((_req, res) => {
      res.write(`${JSON.stringify({ type: 'ADDED', object: { n: 1 } })}\n`);
      res.write(
        `${JSON.stringify({ type: 'BOOKMARK', object: { metadata: { resourceVersion: '9' } } })}\n`,
      );
      res.end(
        `${JSON.stringify({ type: 'ERROR', object: { kind: 'Status', code: 410, reason: 'Expired', message: 'too old' } })}\n`,
      );
    });
    const events: WatchEvent[] = [];
    const error = await lw
      .watch({ resourceVersion: '5', timeoutSeconds: 60, signal: signal() }, (e) => events.push(e))
      .catch((e: unknown) => e);
    expect(events.map((e) => e.type)).toEqual(['ADDED', 'BOOKMARK']);
    expect(statusCodeOf(error)).toBe(410);
    expect((error as Error).message).toBe(`watch ${PATH}: ERROR event 410: too old`);
    expect(urls).toEqual([
      `${PATH}?watch=true&allowWatchBookmarks=true&resourceVersion=5&timeoutSeconds=60`,
    ]);
  });

  it('rejects with what the event handler threw, unchanged', async () => {
    const { lw } = await listWatch((_req, res) => {
      res.write(`${JSON.stringify({ type: 'ADDED', object: {} })}\n`);
    });
    const boom = new Error('handler failed');
    await expect(
      lw.watch({ resourceVersion: '1', timeoutSeconds: 60, signal: signal() }, () => {
        throw boom;
      }),
    ).rejects.toBe(boom);
  });

  it('fails a watch that stays silent past requestTimeoutMs, naming the call', async () => {
    const { lw } = await listWatch((_req, res) => {
      res.writeHead(200);
      res.flushHeaders();
    }, 50);
    await expect(
      lw.watch({ resourceVersion: '1', timeoutSeconds: 60, signal: signal() }, () => undefined),
    ).rejects.toThrow(`watch ${PATH}: no data from the API server for 50 ms`);
  });
});
