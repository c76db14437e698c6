import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * How the agent answers, chosen by the request path (one configured webhook per behaviour).
 * `half` and `drip` take their timing from the query (`dripUrl`).
 */
export type Behaviour = 'ok' | 'fail' | 'slow' | 'hang' | 'half' | 'drip';

/** One POST the agent received: the operator executed attempt `attempt` of run `runId`. */
export interface Call {
  readonly behaviour: string;
  readonly runId: string;
  readonly attempt: number;
  readonly at: number;
}

/** How a call ended at the agent: its whole answer written, or its connection closed first. */
export interface Ending {
  readonly call: Call;
  /** `answered`: the response was written in full; `closed`: the client closed it before. */
  readonly how: 'answered' | 'closed';
  readonly at: number;
  /** Body bytes written before the end (a dripping answer's progress when it was cut). */
  readonly bytesSent: number;
}

/** The TCP connections the agent accepted, as it saw them. */
export interface ConnectionCount {
  /** Accepted in all. */
  readonly accepted: number;
  /** Still open now. */
  readonly open: number;
  /** Still open now with a request whose answer is neither written nor cut off. */
  readonly openWithRequest: number;
  /** Closed (or still open) without ever carrying a request. */
  readonly neverUsed: number;
}

/**
 * A webhook agent as a real HTTP server on 127.0.0.1 that records every call it receives, by run
 * id and attempt, before it answers: the count of executions comes from the agent's side, not
 * from the operator's. `/ok` answers 200 at once, `/fail` 500, `/slow` 200 after `slowMs`, `/hang`
 * never (the operator's webhook timeout ends the attempt), `/half` sends 200 and its headers but
 * never a body, `/drip` sends 200, its headers, then a JSON object one byte at a time (see
 * `dripUrl`). It also records how each call ended (`endings`: answered in full, or its
 * connection closed by the client first) and every TCP connection (`connections()`).
 */
export class WebhookAgent {
  readonly calls: readonly Call[];
  readonly endings: readonly Ending[];
  readonly origin: string;
  readonly #close: () => Promise<void>;
  readonly #connections: () => ConnectionCount;

  private constructor(
    calls: readonly Call[],
    endings: readonly Ending[],
    origin: string,
    close: () => Promise<void>,
    connections: () => ConnectionCount,
  ) {
    this.calls = calls;
    this.endings = endings;
    this.origin = origin;
    this.#close = close;
    this.#connections = connections;
  }

  /**
   * The path of a dripping answer: a JSON object of exactly `bytes` bytes (at least 20), one byte
   * every `everyMs` after the headers, so the whole answer takes about `bytes * everyMs` ms.
   */
  static dripUrl(bytes: number, everyMs: number): string {
    return `drip?bytes=${bytes}&every=${everyMs}`;
  }

  /** The JSON object a `dripUrl(bytes, ...)` answer carries, for comparing with artifacts. */
  static dripBody(bytes: number): { answered: string; pad: string } {
    const empty = JSON.stringify({ answered: 'drip', pad: '' }).length;
    return { answered: 'drip', pad: 'x'.repeat(Math.max(0, bytes - empty)) };
  }

  /** Connections the agent accepted, open now, with a request in flight, never used. */
  connections(): ConnectionCount {
    return this.#connections();
  }

  static async start(slowMs = 1_500): Promise<WebhookAgent> {
    const hanging = new Set<ServerResponse>();
    const calls: Call[] = [];
    const endings: Ending[] = [];
    const sockets = new Map<Socket, { requests: number; inFlight: number }>();
    let accepted = 0;
    let neverUsedClosed = 0;
    const server = createServer((req, res) => {
      const socket = sockets.get(req.socket);
      if (socket) {
        socket.requests++;
        socket.inFlight++;
      }
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'http://agent');
        const behaviour = url.pathname.slice(1);
        let body: { runId?: unknown; attempt?: unknown } = {};
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof body;
        } catch {
          // Recorded with an empty run id; the analysis reports it.
        }
        const call: Call = {
          behaviour,
          runId: typeof body.runId === 'string' ? body.runId : '',
          attempt: typeof body.attempt === 'number' ? body.attempt : 0,
          at: Date.now(),
        };
        calls.push(call);
        let bytesSent = 0;
        let ended = false;
        const end = (how: Ending['how']) => {
          if (ended) return;
          ended = true;
          if (socket) socket.inFlight--;
          endings.push({ call, how, at: Date.now(), bytesSent });
        };
        res.on('finish', () => end('answered'));
        res.on('close', () => end('closed'));
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
          case 'half':
            // Headers, then nothing: the client has a response and waits for its body.
            res.writeHead(200, { 'content-type': 'application/json' }).flushHeaders();
            hanging.add(res);
            res.on('close', () => hanging.delete(res));
            return;
          case 'drip': {
            const bytes = Number(url.searchParams.get('bytes') ?? 100);
            const every = Number(url.searchParams.get('every') ?? 100);
            const text = Buffer.from(JSON.stringify(WebhookAgent.dripBody(bytes)));
            res.writeHead(200, { 'content-type': 'application/json' }).flushHeaders();
            hanging.add(res);
            const timer = setInterval(() => {
              if (bytesSent >= text.length) {
                clearInterval(timer);
                res.end();
                return;
              }
              res.write(text.subarray(bytesSent, bytesSent + 1));
              bytesSent++;
            }, every);
            res.on('close', () => {
              clearInterval(timer);
              hanging.delete(res);
            });
            return;
          }
          default:
            hanging.add(res);
            res.on('close', () => hanging.delete(res));
        }
      });
    });
    server.on('connection', (socket: Socket) => {
      accepted++;
      const entry = { requests: 0, inFlight: 0 };
      sockets.set(socket, entry);
      socket.on('close', () => {
        sockets.delete(socket);
        if (entry.requests === 0) {
          neverUsedClosed++;
        }
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const connections = (): ConnectionCount => {
      const open = [...sockets.values()];
      return {
        accepted,
        open: open.length,
        openWithRequest: open.filter((s) => s.inFlight > 0).length,
        neverUsed: neverUsedClosed + open.filter((s) => s.requests === 0).length,
      };
    };
    return new WebhookAgent(
      calls,
      endings,
      `http://127.0.0.1:${port}`,
      async () => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      },
      connections,
    );
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
