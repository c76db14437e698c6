// Webhook handlers against a real HTTP server on 127.0.0.1: no fetch mocks.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { HandlerContext, JsonObject, Prepared } from '../../../src/handlers/handler.ts';
import type { WebhookOptions } from '../../../src/handlers/webhook.ts';
import { WEBHOOK_MAX_RESPONSE_BYTES, webhookHandler } from '../../../src/handlers/webhook.ts';
import { createLogger, silentLogger } from '../../../src/util/log.ts';
import { type Respond, serve } from '../../support/recording-server.ts';

function reply(status: number, body: string, contentType = 'application/json'): Respond {
  return (_req, res) => res.writeHead(status, { 'content-type': contentType }).end(body);
}

function context(overrides: Partial<HandlerContext> = {}): HandlerContext {
  return {
    runId: 'run-7',
    attempt: 2,
    dryRun: false,
    signal: new AbortController().signal,
    logger: silentLogger(),
    ...overrides,
  };
}

function hook(origin: string, overrides: Partial<WebhookOptions> = {}) {
  return webhookHandler({
    name: 'webhook-a',
    url: `${origin}/hook`,
    timeoutMs: 5_000,
    ...overrides,
  });
}

function ready(prepared: Prepared) {
  if (!prepared.ok) throw new Error(prepared.message);
  return prepared;
}

async function call(
  origin: string,
  params: unknown = { k: 'v' },
  ctx: Partial<HandlerContext> = {},
  options: Partial<WebhookOptions> = {},
): Promise<JsonObject> {
  const prepared = ready(
    hook(origin, options).prepare({ objective: 'fix it', params, dryRun: ctx.dryRun ?? false }),
  );
  return prepared.execute(context(ctx));
}

async function failure(promise: Promise<unknown>): Promise<string> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof Error)) throw new Error(`expected an Error, got ${String(error)}`);
  return error.message;
}

describe('webhook plan and params', () => {
  it('plans the endpoint name, dry-run flag and params, never the URL', () => {
    const handler = webhookHandler({
      name: 'deploy-bot',
      url: 'https://hooks.example/run?token=s3cret',
      timeoutMs: 1_000,
    });
    const prepared = ready(
      handler.prepare({
        objective: 'deploy',
        params: { service: 'api', replicas: 3 },
        dryRun: true,
      }),
    );
    expect(prepared.plan).toEqual({
      endpoint: 'deploy-bot',
      dryRun: true,
      params: { service: 'api', replicas: 3 },
    });
    expect(JSON.stringify(prepared.plan)).not.toContain('hooks.example');
    expect(handler.name).toBe('deploy-bot');
    expect(handler.description).toBe('POSTs the run to the "deploy-bot" webhook endpoint.');
  });

  it('uses the configured description', () => {
    const handler = webhookHandler({
      name: 'a',
      url: 'https://hooks.example/',
      timeoutMs: 1,
      description: 'Opens a ticket',
    });
    expect(handler.description).toBe('Opens a ticket');
  });

  it('treats absent params as {}', () => {
    const prepared = ready(
      hook('http://127.0.0.1:9').prepare({ objective: 'x', params: undefined, dryRun: false }),
    );
    expect(prepared.plan).toEqual({ endpoint: 'webhook-a', dryRun: false, params: {} });
  });

  it.each([
    ['a list', [1, 2], 'params: must be a JSON object'],
    ['a string', 'x', 'params: must be a JSON object'],
    [
      'a non-JSON value',
      { when: () => 1 },
      'params.when: must be JSON (a string, number, boolean, null, array or object)',
    ],
  ])('rejects %s as InvalidParams', (_what, params, message) => {
    expect(hook('http://127.0.0.1:9').prepare({ objective: 'x', params, dryRun: false })).toEqual({
      ok: false,
      reason: 'InvalidParams',
      message,
    });
  });
});

describe('webhook configuration', () => {
  const base = { name: 'w', url: 'https://hooks.example/', timeoutMs: 1_000 };

  it.each([
    [{ name: 'Bad Name' }, 'webhook name "Bad Name" must be lowercase'],
    [{ url: 'not a url?token=abc' }, 'webhook "w" url is not a valid absolute URL'],
    [{ url: 'ftp://hooks.example/' }, 'webhook "w" url must use http or https, not "ftp"'],
    [
      { url: 'https://bot:pw@hooks.example/' },
      'webhook "w" url must not contain credentials (user:password@); send them in headers instead',
    ],
    [{ timeoutMs: 0 }, 'webhook "w" timeoutMs must be a positive integer (got 0)'],
    [
      { headers: { 'bad header': 'x' } },
      'webhook "w" header "bad header" must be a valid HTTP header name (a token such as x-api-key)',
    ],
    [
      { headers: { 'Content-Type': 'text/plain' } },
      'webhook "w" header "Content-Type" cannot be configured: the operator sets it',
    ],
    [
      { headers: { authorization: 'Bearer abc\r\nx-injected: 1' } },
      'webhook "w" header "authorization" must not contain control characters such as newlines',
    ],
  ])('refuses %j', (override, message) => {
    expect(() => webhookHandler({ ...base, ...override })).toThrow(message);
  });

  it('never quotes a URL or header value in its errors', () => {
    const messages = [
      () => webhookHandler({ ...base, url: 'nope://x?token=abc' }),
      () => webhookHandler({ ...base, url: 'https://u:abc@x/' }),
      () => webhookHandler({ ...base, headers: { authorization: 'abc\n' } }),
    ].map((build) => {
      try {
        build();
        return 'did not throw';
      } catch (error) {
        return (error as Error).message;
      }
    });
    for (const message of messages) expect(message).not.toContain('abc');
  });
});

describe('webhook against a server', () => {
  it('POSTs exactly the documented body and returns the JSON answer as artifacts', async () => {
    const server = await serve(reply(200, '{"ticket":"OPS-1","nested":{"ok":true}}'));
    const artifacts = await call(server.origin, { service: 'api', list: [1, null] });
    expect(artifacts).toEqual({ ticket: 'OPS-1', nested: { ok: true } });
    expect(server.seen).toHaveLength(1);
    const [request] = server.seen;
    expect(request?.method).toBe('POST');
    expect(request?.path).toBe('/hook');
    expect(request?.headers['content-type']).toBe('application/json');
    expect(request?.headers['accept']).toBe('application/json');
    expect(JSON.parse(request?.body ?? '')).toStrictEqual({
      runId: 'run-7',
      attempt: 2,
      objective: 'fix it',
      dryRun: false,
      plan: { endpoint: 'webhook-a', dryRun: false, params: { service: 'api', list: [1, null] } },
      params: { service: 'api', list: [1, null] },
    });
  });

  it('still POSTs in dry-run, flagged, so the endpoint decides what dry-run means', async () => {
    const server = await serve(reply(200, '{"wouldDo":"nothing"}'));
    await expect(call(server.origin, {}, { dryRun: true })).resolves.toEqual({
      wouldDo: 'nothing',
    });
    const body = JSON.parse(server.seen[0]?.body ?? '') as JsonObject;
    expect(body['dryRun']).toBe(true);
    expect(body['plan']).toEqual({ endpoint: 'webhook-a', dryRun: true, params: {} });
  });

  it('sends the configured headers, without letting them replace the content type', async () => {
    const server = await serve(reply(200, '{}'));
    await call(
      server.origin,
      {},
      {},
      {
        headers: { authorization: 'Bearer s3cret', 'X-Team': 'ops', 'user-agent': 'custom/1' },
      },
    );
    expect(server.seen[0]?.headers).toMatchObject({
      authorization: 'Bearer s3cret',
      'x-team': 'ops',
      'user-agent': 'custom/1',
      'content-type': 'application/json',
    });
  });

  it('fails on a non-2xx status with the status and a short body excerpt', async () => {
    const server = await serve(
      reply(502, `upstream\n  exploded ${'x'.repeat(1000)}`, 'text/plain'),
    );
    const message = await failure(call(server.origin));
    expect(message).toMatch(/^webhook "webhook-a" answered 502: upstream exploded x+…$/);
    expect(message.length).toBeLessThan(300);
  });

  it('says when the error body is empty', async () => {
    const server = await serve(reply(500, ''));
    expect(await failure(call(server.origin))).toBe(
      'webhook "webhook-a" answered 500: (empty body)',
    );
  });

  it.each([
    [
      'text',
      'OK, done',
      'answered 200 with a body that is not JSON; expected a JSON object: OK, done',
    ],
    [
      'an empty body',
      '',
      'answered 200 with a body that is not JSON; expected a JSON object: (empty body)',
    ],
    ['a JSON array', '[1,2]', 'answered 200 with JSON an array; expected a JSON object'],
    ['JSON null', 'null', 'answered 200 with JSON null; expected a JSON object'],
    ['a JSON string', '"done"', 'answered 200 with JSON string; expected a JSON object'],
  ])('fails when the answer is %s', async (_what, body, message) => {
    const server = await serve(reply(200, body, 'text/plain'));
    expect(await failure(call(server.origin))).toBe(`webhook "webhook-a" ${message}`);
  });

  it('fails on an oversized answer instead of storing it', async () => {
    const big = JSON.stringify({ blob: 'x'.repeat(WEBHOOK_MAX_RESPONSE_BYTES) });
    const server = await serve(reply(200, big));
    expect(await failure(call(server.origin))).toBe(
      `webhook "webhook-a" answered 200 with a body over ${WEBHOOK_MAX_RESPONSE_BYTES} bytes; the response must be a smaller JSON object`,
    );
  });

  it('does not follow redirects', async () => {
    const server = await serve((req, res) => {
      if (req.url === '/hook') res.writeHead(307, { location: '/elsewhere' }).end();
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
    expect(await failure(call(server.origin))).toBe(
      'webhook "webhook-a" answered 307 (redirects are not followed): (empty body)',
    );
    expect(server.seen.map((s) => s.path)).toEqual(['/hook']);
  });

  it('times out, including while the body is still arriving', async () => {
    const silent = await serve(() => {
      // Never answers.
    });
    const started = performance.now();
    expect(await failure(call(silent.origin, {}, {}, { timeoutMs: 100 }))).toBe(
      'webhook "webhook-a" timed out after 100 ms',
    );
    const trickle = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"partial":');
    });
    expect(await failure(call(trickle.origin, {}, {}, { timeoutMs: 100 }))).toBe(
      'webhook "webhook-a" timed out after 100 ms',
    );
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('stops when the run is cancelled, with the cancellation reason', async () => {
    const server = await serve(() => {
      // Never answers.
    });
    const controller = new AbortController();
    const reason = new Error('run deleted');
    setTimeout(() => controller.abort(reason), 50);
    await expect(call(server.origin, {}, { signal: controller.signal })).rejects.toBe(reason);
  });

  it('reports a refused connection without the URL', async () => {
    const server = await serve(reply(200, '{}'));
    await server.close();
    const message = await failure(
      call(server.origin, {}, {}, { url: `${server.origin}/hook?token=s3cret` }),
    );
    expect(message).toMatch(/^webhook "webhook-a" failed: connect ECONNREFUSED/);
    expect(message).not.toContain('s3cret');
  });

  it('never logs the URL or header values, even at trace level', async () => {
    const server = await serve(reply(500, 'nope'));
    let output = '';
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        output += chunk.toString('utf8');
        done();
      },
    });
    const logger = createLogger('trace', sink);
    const options = {
      url: `${server.origin}/hook?token=url-s3cret`,
      headers: { 'x-api-key': 'header-s3cret' },
    };
    await failure(call(server.origin, {}, { logger }, options));
    const ok = await serve(reply(200, '{}'));
    await call(
      ok.origin,
      {},
      { logger },
      { ...options, url: `${ok.origin}/hook?token=url-s3cret` },
    );
    expect(output).toContain('webhook answered');
    expect(output).not.toContain('s3cret');
  });
});
