import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface HealthChecks {
  /** Liveness: false only when the process is wedged and a restart would help. */
  readonly healthy: () => boolean;
  /** Readiness: the cache has synced and leader election (if on) is running. */
  readonly ready: () => boolean;
}

/**
 * controller-runtime's health probe endpoints: GET /healthz and /readyz answer 200 "ok" or 500
 * with the failing check, for the kubelet's liveness and readiness probes.
 */
export class HealthServer {
  readonly #server: Server;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async listen(
    checks: HealthChecks,
    address: { host: string | undefined; port: number },
  ): Promise<HealthServer> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0] ?? '';
      const check =
        path === '/healthz' ? checks.healthy : path === '/readyz' ? checks.ready : undefined;
      if (!check) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      const ok = safely(check);
      res.writeHead(ok ? 200 : 500, { 'content-type': 'text/plain' });
      res.end(ok ? 'ok\n' : `${path.slice(1)} check failed\n`);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(address.port, address.host, () => resolve());
    });
    return new HealthServer(server);
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}

function safely(check: () => boolean): boolean {
  try {
    return check();
  } catch {
    return false;
  }
}
