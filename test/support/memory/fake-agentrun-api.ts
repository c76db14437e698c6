import { randomUUID } from 'node:crypto';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type AgentRun,
  API_VERSION,
  GROUP,
  KIND,
  PLURAL,
  VERSION,
} from '../../../src/api/agentrun.ts';
import { AuditReason } from '../../../src/api/reasons.ts';
import { runningStatus, terminalStatus, withAudited } from '../../../src/controller/run-status.ts';

/**
 * A tiny stand-in for the API server's AgentRun endpoints, enough for an informer: a paginated
 * list of `count` finished runs (Audited=True, as a previous operator left them, with the
 * managedFields a real server keeps), generated page by page so the server itself holds none of
 * them, and watches that stay open and quiet. Everything else is 404.
 */
export class FakeAgentRunApi {
  readonly #server: Server;
  readonly #count: number;
  readonly #namespace: string;
  readonly #watches = new Set<ServerResponse>();
  lists = 0;

  private constructor(count: number, namespace: string) {
    this.#count = count;
    this.#namespace = namespace;
    this.#server = createServer((request, response) => {
      const url = new URL(request.url ?? '/', 'http://localhost');
      const path = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${PLURAL}`;
      if (request.method !== 'GET' || url.pathname !== path) {
        response.writeHead(404, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ kind: 'Status', code: 404, message: 'not found' }));
        return;
      }
      if (url.searchParams.get('watch') === 'true') {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.flushHeaders();
        this.#watches.add(response);
        response.on('close', () => this.#watches.delete(response));
        return;
      }
      this.lists += 1;
      const limit = Number(url.searchParams.get('limit') ?? this.#count) || this.#count;
      const from = Number(url.searchParams.get('continue') ?? 0);
      const to = Math.min(from + limit, this.#count);
      const items: string[] = [];
      for (let i = from; i < to; i++) items.push(JSON.stringify(this.#run(i)));
      const metadata = {
        resourceVersion: String(this.#count + 1000),
        ...(to < this.#count ? { continue: String(to) } : {}),
      };
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(
        `{"apiVersion":"${API_VERSION}","kind":"${KIND}List","metadata":${JSON.stringify(metadata)},"items":[${items.join(',')}]}`,
      );
    });
  }

  static async start(count: number, namespace = 'memory'): Promise<FakeAgentRunApi> {
    const api = new FakeAgentRunApi(count, namespace);
    await new Promise<void>((resolve) => api.#server.listen(0, '127.0.0.1', resolve));
    return api;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    for (const watch of this.#watches) watch.destroy();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  /** Run `i`: created, run once by noop and finished a second later, its row recorded. */
  #run(i: number): object {
    const created = new Date(Date.UTC(2026, 0, 1) + i * 1000);
    const time = `${created.toISOString().slice(0, 19)}Z`;
    const run = {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: {
        name: `run-${String(i).padStart(6, '0')}`,
        namespace: this.#namespace,
        uid: randomUUID(),
        resourceVersion: String(1000 + i),
        generation: 1,
        creationTimestamp: time,
        labels: { 'app.kubernetes.io/part-of': 'memory-test' },
      },
      spec: {
        agent: 'noop',
        objective: 'a run the memory test keeps in the cluster',
        dryRun: false,
        params: { i },
        timeoutSeconds: 600,
        backoffLimit: 0,
        cancel: false,
      },
    } satisfies AgentRun;
    const started = new Date(created.getTime() + 100);
    const ended = new Date(started.getTime() + 1000);
    const running = { ...run, status: runningStatus(run, 1, { i }, started) };
    const outcome = {
      reason: 'Succeeded',
      message: 'attempt 1 succeeded',
      artifacts: { i },
    } as const;
    const status = withAudited(
      terminalStatus(running, outcome, ended),
      run,
      AuditReason.Recorded,
      'the audit row is committed',
      ended,
    );
    const managedFields = [
      managedEntry('kubectl', 'Update', time, {
        'f:spec': fields(['agent', 'objective', 'dryRun', 'params']),
      }),
      managedEntry(
        'agentrun-operator',
        'Update',
        time,
        { 'f:status': fields(Object.keys(status)) },
        'status',
      ),
    ];
    return { ...run, metadata: { ...run.metadata, managedFields }, status };
  }
}

function fields(names: readonly string[]): Record<string, object> {
  return Object.fromEntries([['.', {}], ...names.map((n) => [`f:${n}`, {}])]);
}

function managedEntry(
  manager: string,
  operation: string,
  time: string,
  fieldsV1: object,
  subresource?: string,
) {
  return {
    manager,
    operation,
    apiVersion: API_VERSION,
    time,
    fieldsType: 'FieldsV1',
    fieldsV1,
    ...(subresource ? { subresource } : {}),
  };
}
