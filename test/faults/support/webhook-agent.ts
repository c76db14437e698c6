import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** How the agent answers, chosen by the request path (one configured webhook per behaviour). */
export type Behaviour = 'ok' | 'fail' | 'slow' | 'hang';

/** One POST the agent received: the operator executed attempt `attempt` of run `runId`. */
export interface Call {
  readonly behaviour: string;
  readonly runId: string;
  readonly attempt: number;
  readonly at: number;
}

/**
 * A webhook agent as a real HTTP server on 127.0.0.1 that records every call it receives, by run
 * id and attempt, before it answers: the count of executions comes from the agent's side, not
 * from the operator's. `/ok` answers 200 at once, `/fail` 500, `/slow` 200 after `slowMs`, `/hang`
 * never (the operator's webhook timeout ends the attempt).
 */
export class WebhookAgent {
  readonly calls: readonly Call[];
  readonly origin: string;
  readonly #close: () => Promise<void>;

  private constructor(calls: readonly Call[], origin: string, close: () => Promise<void>) {
    this.calls = calls;
    this.origin = origin;
    this.#close = close;
  }

  static async start(slowMs = 1_500): Promise<WebhookAgent> {
    const hanging = new Set<ServerResponse>();
    const calls: Call[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const behaviour = (req.url ?? '/').slice(1);
        let body: { runId?: unknown; attempt?: unknown } = {};
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
        } catch {
          // Recorded with an empty run id; the analysis reports it.
        }
        calls.push({
          behaviour,
          runId: typeof body.runId === 'string' ? body.runId : '',
          attempt: typeof body.attempt === 'number' ? body.attempt : 0,
          at: Date.now(),
        });
        const json = (status: number, value: unknown) =>
          res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
        switch (behaviour) {
          case 'ok':
            json(200, { answered: 'ok' });
            return;
          case 'fail':
            json(500, { error: 'planned failure' });
            return;
          case 'slow': {
            const timer = setTimeout(() => json(200, { answered: 'slowly' }), slowMs);
            res.on('close', () => clearTimeout(timer));
            return;
          }
          default:
            hanging.add(res);
            res.on('close', () => hanging.delete(res));
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    return new WebhookAgent(calls, `http://127.0.0.1:${port}`, async () => {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });
  }

  /** The handlers config (HANDLERS_CONFIG) with one webhook agent per behaviour. */
  handlersConfig(hangTimeoutMs = 1_500): string {
    const hook = (name: string, path: Behaviour, timeoutMs: number) =>
      `  - name: ${name}\n    url: ${this.origin}/${path}\n    timeoutMs: ${timeoutMs}\n`;
    return (
      'webhooks:\n' +
      hook('hook-ok', 'ok', 10_000) +
      hook('hook-fail', 'fail', 10_000) +
      hook('hook-slow', 'slow', 10_000) +
      hook('hook-hang', 'hang', hangTimeoutMs)
    );
  }

  close(): Promise<void> {
    return this.#close();
  }
}
