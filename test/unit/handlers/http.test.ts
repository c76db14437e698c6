import { getEventListeners } from 'node:events';
import { gzipSync } from 'node:zlib';
import { describe, expect, it, vi } from 'vitest';
import {
  excerpt,
  type HttpRequest,
  redactUrl,
  sendHttp,
  withDeadline,
} from '../../../src/handlers/http.ts';
import { type Respond, serve } from '../../support/recording-server.ts';

function chunked(chunks: string[]): Respond {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    for (const chunk of chunks) res.write(chunk);
    res.end();
  };
}

function get(origin: string, init: Partial<HttpRequest> = {}) {
  const signal = init.signal ?? new AbortController().signal;
  return sendHttp(new URL(`${origin}/x`), { method: 'GET', headers: {}, signal, ...init });
}

describe('sendHttp', () => {
  it('reads a body made of several chunks', async () => {
    const server = await serve(chunked(['{"a":', '1}']));
    await expect(get(server.origin, { maxBodyBytes: 100 })).resolves.toEqual({
      status: 200,
      body: { text: '{"a":1}', truncated: false },
    });
  });

  it('stops at the limit, even inside a chunk', async () => {
    const server = await serve(chunked(['abcd', 'efgh', 'ijkl']));
    const answer = await get(server.origin, { maxBodyBytes: 6 });
    expect(answer.body).toEqual({ text: 'abcdef', truncated: true });
  });

  it('reads exactly the limit as complete', async () => {
    const server = await serve(chunked(['abc', 'def']));
    const answer = await get(server.origin, { maxBodyBytes: 6 });
    expect(answer.body).toEqual({ text: 'abcdef', truncated: false });
  });

  it('decodes a compressed answer and applies the limit to the decoded bytes', async () => {
    const server = await serve((req, res) => {
      const encoding = req.headers['accept-encoding']?.includes('gzip') ? 'gzip' : 'identity';
      const body = JSON.stringify({ pad: '0'.repeat(100_000) });
      res.writeHead(200, { 'content-encoding': encoding });
      res.end(encoding === 'gzip' ? gzipSync(body) : body);
    });
    const answer = await get(server.origin, { maxBodyBytes: 50_000 });
    expect(answer.body.truncated).toBe(true);
    expect(answer.body.text).toMatch(/^\{"pad":"0+$/);
    expect(answer.body.text).toHaveLength(50_000);
  });

  it('refuses an answer in an encoding it cannot read, naming it', async () => {
    const server = await serve((_req, res) =>
      res.writeHead(200, { 'content-encoding': 'zstd' }).end('x'),
    );
    await expect(get(server.origin, { maxBodyBytes: 10 })).rejects.toThrow(
      'the answer\'s content-encoding "zstd" is not one of gzip, deflate, br',
    );
  });

  it('answers on the headers without reading the body when no limit is given', async () => {
    const server = await serve((_req, res) => {
      // Headers, then a body that never ends.
      res.writeHead(204).flushHeaders();
    });
    await expect(get(server.origin)).resolves.toEqual({
      status: 204,
      body: { text: '', truncated: false },
    });
  });

  it('sends the Host of the URL and the body with its length to pinned addresses', async () => {
    const server = await serve(chunked(['ok']));
    const port = new URL(server.origin).port;
    await sendHttp(new URL(`http://agent.invalid:${port}/hook`), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"é":1}',
      signal: new AbortController().signal,
      addresses: ['127.0.0.1'],
      maxBodyBytes: 10,
    });
    expect(server.seen[0]?.headers).toMatchObject({
      host: `agent.invalid:${port}`,
      'content-length': '8',
    });
    expect(server.seen[0]?.body).toBe('{"é":1}');
  });

  it('keeps connections to configured endpoints alive, pinned ones not', async () => {
    const server = await serve(chunked(['ok']));
    for (let i = 0; i < 3; i++) await get(server.origin, { maxBodyBytes: 10 });
    expect(server.connections()).toBe(1);
    for (let i = 0; i < 2; i++)
      await get(server.origin, { maxBodyBytes: 10, addresses: ['127.0.0.1'] });
    expect(server.connections()).toBe(3);
  });

  it("closes an aborted request's connection and opens no spare one", async () => {
    const server = await serve(() => {
      // Never answers.
    });
    const controller = new AbortController();
    const request = get(server.origin, { signal: controller.signal, maxBodyBytes: 10 });
    await vi.waitFor(() => expect(server.seen).toHaveLength(1));
    controller.abort(new Error('enough'));
    await expect(request).rejects.toThrow();
    // undici (fetch) connected a second socket here and never used it.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(server.connections()).toBe(1);
  });
});

describe('withDeadline', () => {
  it('returns the result and leaves no listener on the run signal', async () => {
    const controller = new AbortController();
    await expect(withDeadline('job', controller.signal, 1_000, async () => 42)).resolves.toBe(42);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('aborts the work on its deadline', async () => {
    let seen: AbortSignal | undefined;
    const work = (signal: AbortSignal) =>
      new Promise<never>((_resolve, reject) => {
        seen = signal;
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    await expect(withDeadline('job', new AbortController().signal, 20, work)).rejects.toThrow(
      'job timed out after 20 ms',
    );
    expect(seen?.aborted).toBe(true);
  });

  it('rethrows the run signal reason, not a wrapped error', async () => {
    const controller = new AbortController();
    const reason = new Error('cancelled');
    const work = (signal: AbortSignal) =>
      new Promise<never>((_resolve, reject) => {
        signal.addEventListener('abort', () => reject(new Error('something else')), { once: true });
        setTimeout(() => controller.abort(reason), 5);
      });
    await expect(withDeadline('job', controller.signal, 10_000, work)).rejects.toBe(reason);
  });

  it('wraps other failures with what failed and the underlying cause', async () => {
    const cause = new Error('connect ECONNREFUSED 127.0.0.1:1');
    const work = async () => {
      throw new TypeError('fetch failed', { cause });
    };
    const error = await withDeadline(
      'GET http://x/',
      new AbortController().signal,
      1_000,
      work,
    ).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toBe('GET http://x/ failed: connect ECONNREFUSED 127.0.0.1:1');
    expect((error as Error).cause).toBeInstanceOf(TypeError);
  });
});

describe('excerpt and redactUrl', () => {
  it('flattens whitespace and cuts long text', () => {
    expect(excerpt('  a\n\n b\tc ')).toBe('a b c');
    expect(excerpt('x'.repeat(300))).toBe(`${'x'.repeat(199)}…`);
  });

  it('drops userinfo, query and fragment', () => {
    expect(redactUrl(new URL('https://u:p@h.example:8443/a/b?token=t#f'))).toBe(
      'https://h.example:8443/a/b',
    );
  });
});
