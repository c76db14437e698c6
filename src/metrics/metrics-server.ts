import { readFile } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { Registry } from 'prom-client';
import type { KubeClient } from '../kube/kube-client.ts';
import { type Logger, silentLogger } from '../util/log.ts';
import { type AuthDecision, DelegatingAuth, kubeReviewClient } from './metrics-auth.ts';
import { type CertificateAndKey, selfSignedCertificate } from './self-signed.ts';

const gzipAsync = promisify(gzip);

export const METRICS_PATH = '/metrics';

/** Decides whether a request may read /metrics (DelegatingAuth implements it). */
export interface MetricsAuthorizer {
  check(authorization: string | undefined, verb: string, path: string): Promise<AuthDecision>;
}

export interface SecureServingOptions {
  /** Who may scrape: TokenReview + SubjectAccessReview (`new DelegatingAuth(kubeReviewClient(kc))`). */
  readonly authorizer: MetricsAuthorizer;
  /**
   * Directory of the serving certificate (METRICS_CERT_DIR, e.g. a mounted kubernetes.io/tls
   * Secret); default none. When `certName` or `keyName` is missing from it, or no directory is
   * given, a self-signed certificate is generated, as controller-runtime does.
   */
  readonly certDir?: string;
  /** Default tls.crt. */
  readonly certName?: string;
  /** Default tls.key. */
  readonly keyName?: string;
  /**
   * How often a mounted certificate is re-read, so a renewed Secret is served without a restart
   * (controller-runtime's certwatcher); default 10 s; 0 turns it off.
   */
  readonly reloadIntervalMs?: number;
}

export interface MetricsServerOptions {
  readonly registry: Registry;
  /** Host (undefined: every interface) and port (0: any free port). */
  readonly address: { readonly host: string | undefined; readonly port: number };
  /** HTTPS with authentication and authorization; default plain HTTP, open to anyone. */
  readonly secure?: SecureServingOptions;
  readonly logger?: Logger;
}

/**
 * controller-runtime's metrics server: GET /metrics in the Prometheus text format (gzip when the
 * scraper accepts it), over plain HTTP or, in secure mode, HTTPS with every request authenticated
 * and authorized by the API server (401 / 403 otherwise). Only /metrics is served (404 else).
 */
export class MetricsServer {
  readonly #server: ReturnType<typeof createHttpServer> | HttpsServer;
  readonly #reload: NodeJS.Timeout | undefined;
  readonly #tls: { certificate: string | undefined };

  private constructor(
    server: ReturnType<typeof createHttpServer> | HttpsServer,
    reload: NodeJS.Timeout | undefined,
    tls: { certificate: string | undefined },
  ) {
    this.#server = server;
    this.#reload = reload;
    this.#tls = tls;
  }

  static async listen(options: MetricsServerOptions): Promise<MetricsServer> {
    const logger = options.logger ?? silentLogger();
    const { registry, secure } = options;
    const handle = (req: IncomingMessage, res: ServerResponse) => {
      serve(req, res, registry, secure?.authorizer, logger).catch((error: unknown) => {
        logger.warn({ err: error }, 'metrics request failed');
        if (!res.headersSent) respond(res, 500, 'internal error\n');
        else res.destroy();
      });
    };

    let server: ReturnType<typeof createHttpServer> | HttpsServer;
    let reload: NodeJS.Timeout | undefined;
    const tls: { certificate: string | undefined } = { certificate: undefined };
    if (secure) {
      const mounted = await mountedCertificate(secure);
      const pair = mounted?.pair ?? selfSignedCertificate();
      if (mounted) {
        logger.info({ certDir: secure.certDir }, 'serving metrics with the mounted certificate');
      } else if (secure.certDir) {
        logger.warn(
          { certDir: secure.certDir },
          'no tls.crt/tls.key in the metrics certificate directory; using a self-signed certificate',
        );
      }
      tls.certificate = pair.cert;
      const https = createHttpsServer({ ...pair, minVersion: 'TLSv1.2' }, handle);
      server = https;
      const intervalMs = secure.reloadIntervalMs ?? 10_000;
      if (mounted && intervalMs > 0) {
        let current = pair;
        reload = setInterval(() => {
          void reloadCertificate(mounted.certFile, mounted.keyFile, current, (next) => {
            https.setSecureContext({ ...next, minVersion: 'TLSv1.2' });
            tls.certificate = next.cert;
            current = next;
            logger.info('reloaded the metrics serving certificate');
          }).catch((error: unknown) => {
            logger.warn({ err: error }, 'could not reload the metrics serving certificate');
          });
        }, intervalMs);
        reload.unref();
      }
    } else {
      server = createHttpServer(handle);
    }
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(options.address.port, options.address.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      if (reload) clearInterval(reload);
      throw error;
    }
    logger.info(
      { address: server.address(), secure: secure !== undefined },
      'serving metrics on /metrics',
    );
    return new MetricsServer(server, reload, tls);
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  /** PEM of the serving certificate in secure mode (to trust a self-signed one); else undefined. */
  get certificate(): string | undefined {
    return this.#tls.certificate;
  }

  close(): Promise<void> {
    if (this.#reload) clearInterval(this.#reload);
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }
}

export interface ServeMetricsOptions {
  readonly registry: Registry;
  /** APPLYLENS_AGENT_METRICS_ENABLED: false serves nothing. */
  readonly enabled: boolean;
  /** METRICS_BIND_ADDRESS as parsed by the config; undefined ("0") serves nothing. */
  readonly address: { readonly host: string | undefined; readonly port: number } | undefined;
  /** METRICS_SECURE. */
  readonly secure: boolean;
  /** METRICS_CERT_DIR; empty or absent: self-signed. */
  readonly certDir?: string;
  /** The operator's identity, which makes the TokenReviews and SubjectAccessReviews. */
  readonly client: KubeClient;
  readonly logger?: Logger;
}

/** The operator's metrics endpoint from its configuration; undefined when it is turned off. */
export async function serveMetrics(
  options: ServeMetricsOptions,
): Promise<MetricsServer | undefined> {
  if (!options.enabled || !options.address) return undefined;
  return MetricsServer.listen({
    registry: options.registry,
    address: options.address,
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.secure
      ? {
          secure: {
            authorizer: new DelegatingAuth(kubeReviewClient(options.client)),
            ...(options.certDir ? { certDir: options.certDir } : {}),
          },
        }
      : {}),
  });
}

async function serve(
  req: IncomingMessage,
  res: ServerResponse,
  registry: Registry,
  authorizer: MetricsAuthorizer | undefined,
  logger: Logger,
): Promise<void> {
  const path = (req.url ?? '').split('?')[0] ?? '';
  if (path !== METRICS_PATH) {
    respond(res, 404, 'not found\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    respond(res, 405, 'method not allowed\n');
    return;
  }
  if (authorizer) {
    // RBAC's verb for reading a non-resource URL; HEAD reveals less than GET, so it counts as get.
    const decision = await authorizer.check(req.headers.authorization, 'get', path);
    if (decision.status !== 200) {
      deny(res, decision, logger);
      return;
    }
  }
  const body = await registry.metrics();
  res.setHeader('content-type', registry.contentType);
  res.setHeader('cache-control', 'no-store');
  if (/\bgzip\b/.test(String(req.headers['accept-encoding'] ?? ''))) {
    const compressed = await gzipAsync(body);
    res.writeHead(200, { 'content-encoding': 'gzip', 'content-length': compressed.length });
    res.end(req.method === 'HEAD' ? undefined : compressed);
  } else {
    res.writeHead(200, { 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

/** controller-runtime's answers: "Unauthorized", "Authorization denied for user X", 500 on errors. */
function deny(
  res: ServerResponse,
  decision: Exclude<AuthDecision, { status: 200 }>,
  logger: Logger,
) {
  switch (decision.status) {
    case 401:
      logger.debug({ reason: decision.reason }, 'metrics request not authenticated');
      res.setHeader('www-authenticate', 'Bearer realm="metrics"');
      respond(res, 401, 'Unauthorized\n');
      return;
    case 403:
      logger.debug(
        { user: decision.user.username, reason: decision.reason },
        'metrics request not authorized',
      );
      respond(res, 403, `Authorization denied for user ${decision.user.username}\n`);
      return;
    case 500:
      logger.error({ reason: decision.reason }, 'metrics request could not be reviewed');
      respond(res, 500, 'Authentication or authorization failed\n');
      return;
  }
}

function respond(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'x-content-type-options': 'nosniff',
  });
  res.end(text);
}

interface MountedCertificate {
  readonly certFile: string;
  readonly keyFile: string;
  readonly pair: CertificateAndKey;
}

/** The certificate in certDir, or undefined when either file is missing (then: self-signed). */
async function mountedCertificate(
  secure: SecureServingOptions,
): Promise<MountedCertificate | undefined> {
  if (!secure.certDir) return undefined;
  const certFile = join(secure.certDir, secure.certName ?? 'tls.crt');
  const keyFile = join(secure.certDir, secure.keyName ?? 'tls.key');
  let pair: CertificateAndKey;
  try {
    pair = { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8') };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  // Fails here, at start-up, on a key that does not match or unreadable PEM.
  createSecureContext(pair);
  return { certFile, keyFile, pair };
}

async function reloadCertificate(
  certFile: string,
  keyFile: string,
  current: CertificateAndKey,
  apply: (next: CertificateAndKey) => void,
): Promise<void> {
  const next = { cert: await readFile(certFile, 'utf8'), key: await readFile(keyFile, 'utf8') };
  if (next.cert === current.cert && next.key === current.key) return;
  // A Secret update swaps both files at once (an atomic symlink flip), but a half-written pair
  // must not replace a working one: validate first.
  createSecureContext(next);
  apply(next);
}
