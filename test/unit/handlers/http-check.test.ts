// http.check against a real HTTP server on 127.0.0.1: no fetch mocks. Loopback is blocked by
// default, so the tests that probe the server allow 127.0.0.1 explicitly (LOCAL).
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import type { HandlerContext, JsonObject, Prepared } from '../../../src/handlers/handler.ts';
import type { HttpCheckOptions } from '../../../src/handlers/http-check.ts';
import { httpCheckHandler } from '../../../src/handlers/http-check.ts';
import { selfSignedCertificate } from '../../../src/metrics/self-signed.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { type Respond, serve } from '../../support/recording-server.ts';

function status(code: number, delayMs = 0): Respond {
  return (_req, res) => {
    setTimeout(() => res.writeHead(code, { 'content-type': 'text/plain' }).end('body'), delayMs);
  };
}

function context(overrides: Partial<HandlerContext> = {}): HandlerContext {
  return {
    runId: 'run-1',
    attempt: 1,
    dryRun: false,
    signal: new AbortController().signal,
    logger: silentLogger(),
    ...overrides,
  };
}

/** What an admin configures to probe the local test server. */
const LOCAL: HttpCheckOptions = { allowedHosts: ['127.0.0.1'] };

function prepare(params: unknown, dryRun = false, options?: HttpCheckOptions): Prepared {
  return httpCheckHandler(options).prepare({ objective: 'check', params, dryRun });
}

function check(
  params: unknown,
  ctx: Partial<HandlerContext> = {},
  options: HttpCheckOptions = LOCAL,
): Promise<JsonObject> {
  const prepared = prepare(params, ctx.dryRun ?? false, options);
  if (!prepared.ok) throw new Error(prepared.message);
  return prepared.execute(context(ctx));
}

function invalid(prepared: Prepared): string {
  if (prepared.ok) throw new Error(`expected InvalidParams, got ${JSON.stringify(prepared.plan)}`);
  return prepared.message;
}

describe('http.check plan', () => {
  it('applies defaults and describes the probe', () => {
    const prepared = prepare({ url: 'https://Example.com/health' });
    expect(prepared.ok && prepared.plan).toEqual({
      url: 'https://example.com/health',
      method: 'GET',
      expectedStatus: [200],
      latencyBudgetMs: 2000,
      timeoutMs: 10000,
      dryRun: false,
    });
  });

  it('keeps explicit values', () => {
    const prepared = prepare(
      {
        url: 'http://a.example/x?y=1',
        method: 'HEAD',
        expectedStatus: [200, 204],
        latencyBudgetMs: 50,
        timeoutMs: 100,
      },
      true,
    );
    expect(prepared.ok && prepared.plan).toEqual({
      url: 'http://a.example/x?y=1',
      method: 'HEAD',
      expectedStatus: [200, 204],
      latencyBudgetMs: 50,
      timeoutMs: 100,
      dryRun: true,
    });
  });

  it.each([
    [{}, 'params.url: Invalid input: expected string, received undefined'],
    [{ url: 'example.com' }, 'params.url: must be an absolute http:// or https:// URL'],
    [
      { url: 'ftp://example.com/x' },
      'params.url: scheme "ftp" is not supported; use http or https',
    ],
    [
      { url: 'file:///etc/passwd' },
      'params.url: scheme "file" is not supported; use http or https',
    ],
    [
      { url: 'https://user:pw@example.com/' },
      'params.url: must not contain credentials (user:password@): the URL is stored in the run status',
    ],
    [
      { url: 'https://example.com', method: 'POST' },
      'params.method: Invalid option: expected one of "GET"|"HEAD"',
    ],
    [
      { url: 'https://example.com', expectedStatus: 'ok' },
      'params.expectedStatus: must be an HTTP status code (100-599) or a non-empty list of them',
    ],
    [
      { url: 'https://example.com', expectedStatus: 99 },
      'params.expectedStatus: Too small: expected number to be >=100',
    ],
    [
      { url: 'https://example.com', expectedStatus: [200, 600] },
      'params.expectedStatus[1]: Too big: expected number to be <=599',
    ],
    [
      { url: 'https://example.com', expectedStatus: [] },
      'params.expectedStatus: Too small: expected array to have >=1 items',
    ],
    [
      { url: 'https://example.com', latencyBudgetMs: 0, timeoutMs: 1.5 },
      'params.latencyBudgetMs: Too small: expected number to be >=1; params.timeoutMs: Invalid input: expected int, received number',
    ],
    [{ url: 'https://example.com', expectedstatus: 200 }, 'params.expectedstatus: unknown field'],
  ])('rejects %j', (params, message) => {
    expect(invalid(prepare(params))).toBe(message);
  });
});

describe('http.check allow-list', () => {
  const options = {
    allowedHosts: ['status.example.com', '*.internal.example', '127.0.0.1', '::1'],
  };

  it.each([
    'https://status.example.com/health',
    'https://STATUS.example.com:8443/',
    'https://status.example.com./',
    'http://a.internal.example/',
    'http://a.b.internal.example/',
    'http://127.0.0.1:9/',
    'http://[::1]:8080/',
  ])('plans %s', (url) => {
    expect(prepare({ url }, false, options).ok).toBe(true);
  });

  it.each([
    'https://example.com/',
    'https://evil-status.example.com/',
    'https://status.example.com.evil.net/',
    'http://internal.example/',
  ])('rejects %s naming the allowed hosts', (url) => {
    const names = { allowedHosts: ['status.example.com', '*.internal.example'] };
    const host = new URL(url).hostname;
    expect(invalid(prepare({ url }, false, names))).toBe(
      `params.url: host "${host}" is not allowed by the operator's http.check allow-list (allowed: status.example.com, *.internal.example)`,
    );
  });

  it('rejects an address next to a listed loopback address', () => {
    expect(invalid(prepare({ url: 'http://127.0.0.2/' }, false, options))).toBe(
      "params.url: blocked by the operator's http.check policy: 127.0.0.2, a loopback address; only an httpCheck.allowedHosts entry naming 127.0.0.2 or a CIDR inside 127.0.0.0/8 opens it (hostnames and wider CIDRs do not)",
    );
  });

  it('plans any name when the list is empty or absent: its addresses are checked when it runs', () => {
    expect(prepare({ url: 'http://anything.example/' }, false, { allowedHosts: [] }).ok).toBe(true);
    expect(prepare({ url: 'http://anything.example/' }, false, {}).ok).toBe(true);
  });

  it('caps the hosts it lists', () => {
    const allowedHosts = Array.from({ length: 30 }, (_, i) => `h${i}.example`);
    const message = invalid(prepare({ url: 'http://other.example/' }, false, { allowedHosts }));
    expect(message).toContain('h19.example and 10 more)');
    expect(message).not.toContain('h20.example');
  });

  it.each(['https://example.com', 'example.com/path', 'user@example.com', 'example.com:443', ''])(
    'refuses the unusable entry %j when the handler is built',
    (entry) => {
      expect(() => httpCheckHandler({ allowedHosts: [entry] })).toThrow(
        `http.check allowedHosts entry ${JSON.stringify(entry)} must be a hostname, an IP address, a CIDR such as 10.0.0.0/8, or "*.domain"`,
      );
    },
  );
});

describe('http.check dry run', () => {
  it('sends nothing and says what it would have requested', async () => {
    const server = await serve(status(200));
    const url = `${server.origin}/health`;
    await expect(check({ url, method: 'HEAD' }, { dryRun: true })).resolves.toEqual({
      dryRun: true,
      wouldRequest: {
        url,
        method: 'HEAD',
        expectedStatus: [200],
        latencyBudgetMs: 2000,
        timeoutMs: 10000,
      },
    });
    expect(server.seen).toEqual([]);
  });

  it('sends nothing when only the plan or only the context says dry run', async () => {
    const server = await serve(status(200));
    const url = `${server.origin}/health`;
    const planned = prepare({ url }, true, LOCAL);
    if (!planned.ok) throw new Error(planned.message);
    await expect(planned.execute(context({ dryRun: false }))).resolves.toMatchObject({
      dryRun: true,
    });
    const live = prepare({ url }, false, LOCAL);
    if (!live.ok) throw new Error(live.message);
    await expect(live.execute(context({ dryRun: true }))).resolves.toMatchObject({ dryRun: true });
    expect(server.seen).toEqual([]);
  });
});

describe('http.check against a server', () => {
  it('reports status and latency for a healthy endpoint', async () => {
    const server = await serve(status(200));
    const artifacts = await check({ url: `${server.origin}/health` });
    expect(artifacts).toEqual({
      status: 200,
      latencyMs: expect.any(Number),
      ok: true,
      withinBudget: true,
    });
    expect(artifacts['latencyMs']).toBeGreaterThanOrEqual(0);
    expect(server.seen).toHaveLength(1);
    expect(server.seen[0]).toMatchObject({ method: 'GET', path: '/health' });
    expect(server.seen[0]?.headers['user-agent']).toMatch(
      /^agentrun-operator\/\S+ \(http\.check\)$/,
    );
  });

  it('sends HEAD when asked and accepts any listed status', async () => {
    const server = await serve(status(204));
    await expect(
      check({ url: server.origin, method: 'HEAD', expectedStatus: [200, 204] }),
    ).resolves.toMatchObject({ status: 204, ok: true });
    expect(server.seen[0]?.method).toBe('HEAD');
  });

  it('fails on an unexpected status, saying which', async () => {
    const server = await serve(status(503));
    await expect(check({ url: `${server.origin}/health` })).rejects.toThrow(
      `GET ${server.origin}/health answered 503, expected 200`,
    );
    await expect(check({ url: server.origin, expectedStatus: [200, 204] })).rejects.toThrow(
      'answered 503, expected one of 200, 204',
    );
  });

  it('accepts a non-2xx status when that is what is expected', async () => {
    const server = await serve(status(404));
    await expect(check({ url: server.origin, expectedStatus: 404 })).resolves.toMatchObject({
      status: 404,
      ok: true,
    });
  });

  it('fails when the answer is slower than the latency budget', async () => {
    const server = await serve(status(200, 300));
    const error = await check({ url: server.origin, latencyBudgetMs: 50 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(
      /^GET http:\/\/127\.0\.0\.1:\d+\/ took \d+ ms, over the 50 ms latency budget$/,
    );
    const took = Number(/took (\d+) ms/.exec((error as Error).message)?.[1]);
    expect(took).toBeGreaterThanOrEqual(250);
  });

  it('names both problems when status and latency are wrong', async () => {
    const server = await serve(status(500, 150));
    await expect(check({ url: server.origin, latencyBudgetMs: 20 })).rejects.toThrow(
      /answered 500, expected 200 and took \d+ ms, over the 20 ms latency budget$/,
    );
  });

  it('does not follow redirects', async () => {
    const server = await serve((req, res) => {
      if (req.url === '/moved') res.writeHead(302, { location: '/elsewhere' }).end();
      else res.writeHead(200).end();
    });
    await expect(check({ url: `${server.origin}/moved` })).rejects.toThrow(
      'answered 302, expected 200',
    );
    await expect(
      check({ url: `${server.origin}/moved`, expectedStatus: 302 }),
    ).resolves.toMatchObject({ status: 302 });
    expect(server.seen.map((s) => s.path)).toEqual(['/moved', '/moved']);
  });

  it('times out on its own deadline', async () => {
    const server = await serve(() => {
      // Never answers.
    });
    const started = performance.now();
    await expect(check({ url: server.origin, timeoutMs: 100 })).rejects.toThrow(
      `GET ${server.origin}/ timed out after 100 ms`,
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
    await expect(check({ url: server.origin }, { signal: controller.signal })).rejects.toBe(reason);
    expect(server.seen).toHaveLength(1);
  });

  it('does not send anything when the run is already cancelled', async () => {
    const server = await serve(status(200));
    const reason = new Error('cancelled before start');
    await expect(check({ url: server.origin }, { signal: AbortSignal.abort(reason) })).rejects.toBe(
      reason,
    );
    expect(server.seen).toEqual([]);
  });

  it('does not wait for a long body', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(200);
      res.write('first chunk');
      // The rest never comes: the check must not wait for it.
    });
    await expect(check({ url: server.origin, timeoutMs: 2_000 })).resolves.toMatchObject({
      status: 200,
      ok: true,
    });
  });

  it('explains a refused connection', async () => {
    const server = await serve(status(200));
    const url = server.origin;
    await server.close();
    await expect(check({ url })).rejects.toThrow(`GET ${url}/ failed: connect ECONNREFUSED`);
  });
});

describe('http.check address policy', () => {
  /** A resolver answering from a script, one answer per call, counting the calls. */
  function scripted(...answers: string[][]) {
    const calls: string[] = [];
    const resolve = async (hostname: string): Promise<readonly string[]> => {
      calls.push(hostname);
      return answers[Math.min(calls.length, answers.length) - 1] ?? [];
    };
    return { resolve, calls };
  }

  async function failure(promise: Promise<unknown>): Promise<string> {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!(error instanceof Error)) throw new Error('expected the check to fail');
    return error.message;
  }

  it('refuses a local server by default, at plan time, sending nothing', async () => {
    const server = await serve(status(200));
    const message = invalid(prepare({ url: `${server.origin}/health` }));
    expect(message).toBe(
      "params.url: blocked by the operator's http.check policy: 127.0.0.1, a loopback address; only an httpCheck.allowedHosts entry naming 127.0.0.1 or a CIDR inside 127.0.0.0/8 opens it (hostnames and wider CIDRs do not)",
    );
    expect(server.seen).toEqual([]);
  });

  it('reaches the local server when the allow-list names 127.0.0.1', async () => {
    const server = await serve(status(200));
    await expect(check({ url: `${server.origin}/health` }, {}, LOCAL)).resolves.toMatchObject({
      status: 200,
      ok: true,
    });
    expect(server.seen).toHaveLength(1);
  });

  it.each([
    'http://169.254.169.254/latest/meta-data/',
    'http://[::ffff:169.254.169.254]/',
    'http://2130706433/',
    'http://0x7f.1/',
    'http://127.1/',
    'http://[::1]/',
    'http://0.0.0.0/',
    'http://10.0.0.1/',
    'http://[fd00:ec2::254]/',
  ])('refuses %s by default', (url) => {
    expect(invalid(prepare({ url }))).toMatch(
      /^params\.url: blocked by the operator's http\.check policy: /,
    );
  });

  it('refuses an IPv6 zone id as an invalid URL', () => {
    expect(invalid(prepare({ url: 'http://[fe80::1%25eth0]/' }))).toBe(
      'params.url: must be an absolute http:// or https:// URL',
    );
  });

  it('checks what a name resolves to when it runs, and fails the attempt without sending', async () => {
    const server = await serve(status(200));
    const port = new URL(server.origin).port;
    const dns = scripted(['127.0.0.1']);
    const url = `http://sneaky.example:${port}/`;
    const message = await failure(check({ url }, {}, { resolve: dns.resolve }));
    expect(message).toBe(
      `GET ${url} not sent: blocked by the operator's http.check policy: sneaky.example resolves to 127.0.0.1, a loopback address; only an httpCheck.allowedHosts entry naming 127.0.0.1 or a CIDR inside 127.0.0.0/8 opens it (hostnames and wider CIDRs do not)`,
    );
    expect(server.seen).toEqual([]);
    expect(dns.calls).toEqual(['sneaky.example']);
  });

  it('refuses a name when one of its addresses is blocked (public first, loopback second)', async () => {
    const server = await serve(status(200));
    const port = new URL(server.origin).port;
    const dns = scripted(['93.184.215.14', '127.0.0.1']);
    const url = `http://rebind.example:${port}/`;
    expect(await failure(check({ url }, {}, { resolve: dns.resolve }))).toContain(
      "not sent: blocked by the operator's http.check policy: rebind.example resolves to 127.0.0.1",
    );
    expect(server.seen).toEqual([]);
  });

  it('connects to the address it checked: no second lookup a rebinding DNS could answer', async () => {
    // The first answer is a listed address that routes nowhere; every later answer would be the
    // local server. The probe must go to the first answer and never reach the server.
    const server = await serve(status(200));
    const port = new URL(server.origin).port;
    const dns = scripted(['192.0.2.1'], ['127.0.0.1']);
    const message = await failure(
      check(
        { url: `http://rebind.example:${port}/`, timeoutMs: 300 },
        {},
        { allowedHosts: ['192.0.2.1'], resolve: dns.resolve },
      ),
    );
    expect(message).toMatch(
      /^GET http:\/\/rebind\.example:\d+\/ (timed out after 300 ms|failed: )/,
    );
    expect(server.seen).toEqual([]);
    expect(dns.calls).toEqual(['rebind.example']);
  });

  it('sends to the checked address with the name in Host, resolving once', async () => {
    // Allowed first answer: the local server; a second lookup would get a blocked address.
    const server = await serve(status(204));
    const port = new URL(server.origin).port;
    const dns = scripted(['127.0.0.1'], ['127.0.0.2']);
    await expect(
      check(
        { url: `http://app.example:${port}/ready`, expectedStatus: 204 },
        {},
        { allowedHosts: ['127.0.0.1'], resolve: dns.resolve },
      ),
    ).resolves.toMatchObject({ status: 204, ok: true });
    expect(dns.calls).toEqual(['app.example']);
    expect(server.seen).toHaveLength(1);
    expect(server.seen[0]?.headers.host).toBe(`app.example:${port}`);
  });

  it('keeps the name for TLS: SNI and certificate verification, while connecting to the address', async () => {
    const names: string[] = [];
    const server = createTlsServer({
      ...selfSignedCertificate({ dnsNames: ['app.example'], ipAddresses: [] }),
      SNICallback: (name, done) => {
        names.push(name);
        done(null);
      },
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const dns = scripted(['127.0.0.1']);
      const message = await failure(
        check(
          { url: `https://app.example:${port}/` },
          {},
          { allowedHosts: ['127.0.0.1'], resolve: dns.resolve },
        ),
      );
      // The certificate is not trusted here: verification ran, against the name.
      expect(message).toMatch(
        new RegExp(`^GET https://app\\.example:${port}/ failed: self-signed certificate`),
      );
      expect(names).toEqual(['app.example']);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('tries every checked address of a name, as a dual-stack host needs', async () => {
    // Whatever ::1 does here (refused, or not configured), the probe falls back to 127.0.0.1.
    const server = await serve(status(200));
    const port = new URL(server.origin).port;
    const dns = scripted(['::1', '127.0.0.1']);
    await expect(
      check(
        { url: `http://dual.example:${port}/` },
        {},
        { allowedHosts: ['127.0.0.1', '::1'], resolve: dns.resolve },
      ),
    ).resolves.toMatchObject({ status: 200 });
    expect(server.seen).toHaveLength(1);
  });

  it("refuses the API server's addresses, given as addresses or as a name resolved at probe time", async () => {
    const byAddress = prepare({ url: 'https://10.96.0.1/api' }, false, {
      allowedHosts: ['10.0.0.0/8'],
      apiServerHosts: ['10.96.0.1'],
    });
    expect(invalid(byAddress)).toBe(
      "params.url: blocked by the operator's http.check policy: 10.96.0.1, the Kubernetes API server's address; only an httpCheck.allowedHosts entry naming exactly 10.96.0.1 opens it",
    );

    const dns = {
      calls: [] as string[],
      resolve: async (hostname: string) => {
        dns.calls.push(hostname);
        // The API server's name and the alias resolve to the same public address.
        return ['93.184.215.20'];
      },
    };
    const options = { apiServerHosts: ['api.cluster.example'], resolve: dns.resolve };
    const viaOtherName = await failure(check({ url: 'https://alias.example/' }, {}, options));
    expect(viaOtherName).toContain(
      "alias.example resolves to 93.184.215.20, the Kubernetes API server's address",
    );
    const viaItsName = await failure(check({ url: 'https://api.cluster.example/' }, {}, options));
    expect(viaItsName).toContain("the Kubernetes API server's address");
    expect(dns.calls.sort()).toEqual([
      'alias.example',
      'api.cluster.example',
      'api.cluster.example',
      'api.cluster.example',
    ]);
  });

  it('reports a name that does not resolve as a failed attempt', async () => {
    const resolve = async (): Promise<readonly string[]> => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND nowhere.example'), {
        code: 'ENOTFOUND',
      });
    };
    expect(await failure(check({ url: 'http://nowhere.example/' }, {}, { resolve }))).toBe(
      'GET http://nowhere.example/ failed: getaddrinfo ENOTFOUND nowhere.example',
    );
  });

  it('stops waiting for DNS when the run is cancelled', async () => {
    const resolve = () => new Promise<readonly string[]>(() => {});
    const controller = new AbortController();
    const reason = new Error('run deleted');
    setTimeout(() => controller.abort(reason), 50);
    await expect(
      check({ url: 'http://slow-dns.example/' }, { signal: controller.signal }, { resolve }),
    ).rejects.toBe(reason);
  });

  it('does not follow a redirect to a blocked address', async () => {
    const server = await serve((_req, res) => {
      res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
    });
    await expect(check({ url: server.origin, expectedStatus: 302 })).resolves.toMatchObject({
      status: 302,
    });
    expect(server.seen).toHaveLength(1);
  });
});
