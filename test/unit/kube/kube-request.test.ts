import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApiException, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubeRequest } from '../../../src/kube/kube-request.ts';

interface Seen {
  readonly method: string | undefined;
  readonly url: string | undefined;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
}

let server: Server;
let base: string;
const seen: Seen[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on('end', () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      if (req.url?.endsWith('/conflict')) {
        res.writeHead(409, { 'content-type': 'application/json' });
        res.end('{"kind":"Status","reason":"Conflict","message":"changed"}');
      } else if (req.url?.endsWith('/denied')) {
        res.writeHead(401);
        res.end('no');
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{"ok":true}');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

function config(prefix = ''): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: `${base}${prefix}`, skipTLSVerify: true }],
    users: [{ name: 'u', token: 'secret-token' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

describe('kubeRequest', () => {
  it('sends the body as given with the content type and the credentials, and parses the answer', async () => {
    const answer = await kubeRequest(config('/proxy/'), {
      method: 'PATCH',
      path: '/apis/g/v1/namespaces/ns/things/a/status',
      contentType: 'application/json-patch+json',
      body: '[{"op":"add","path":"/status","value":{}}]',
    });
    expect(answer).toEqual({ ok: true });
    const request = seen.at(-1);
    expect(request?.method).toBe('PATCH');
    expect(request?.url).toBe('/proxy/apis/g/v1/namespaces/ns/things/a/status');
    expect(request?.headers['content-type']).toBe('application/json-patch+json');
    expect(request?.headers.authorization).toBe('Bearer secret-token');
    expect(request?.body).toBe('[{"op":"add","path":"/status","value":{}}]');
  });

  it('fails like client-node: ApiException with the code and the body as text', async () => {
    const error = await kubeRequest(config(), {
      method: 'POST',
      path: '/conflict',
      contentType: 'application/json',
      body: '{}',
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiException);
    expect((error as ApiException<unknown>).code).toBe(409);
    expect(String((error as ApiException<unknown>).body)).toContain('"reason":"Conflict"');

    const denied = await kubeRequest(config(), {
      method: 'POST',
      path: '/denied',
      contentType: 'application/json',
      body: '{}',
    }).catch((e: unknown) => e);
    expect((denied as ApiException<unknown>).code).toBe(401);
  });
});
