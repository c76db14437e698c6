// Outbound HTTP for handlers: one deadline covering request and body, cancellation that surfaces
// the run's own abort reason, and network failures turned into messages a user can act on.
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { pipeline, type Readable, type Transform } from 'node:stream';
import zlib from 'node:zlib';
import { ELLIPSIS, truncate } from '../util/text.ts';
import { normalizeHost } from './address-policy.ts';
import { errorMessage } from './messages.ts';
import { pinnedLookup } from './outbound.ts';

/**
 * Runs `work` with a signal that aborts when `parent` aborts or after `timeoutMs`.
 * Rejects with `parent.reason` when the run was cancelled, with "<what> timed out after N ms" on
 * the deadline, and with "<what> failed: <cause>" for anything else `work` throws (network
 * errors), so callers should keep their own checks outside `work`.
 */
export async function withDeadline<T>(
  what: string,
  parent: AbortSignal,
  timeoutMs: number,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  parent.throwIfAborted();
  const controller = new AbortController();
  const onAbort = (): void => controller.abort(parent.reason);
  parent.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(
    () => controller.abort(new Error(`${what} timed out after ${timeoutMs} ms`)),
    timeoutMs,
  );
  try {
    return await work(controller.signal);
  } catch (error) {
    if (controller.signal.aborted) throw controller.signal.reason;
    throw new Error(`${what} failed: ${networkErrorMessage(error)}`, { cause: error });
  } finally {
    clearTimeout(timer);
    parent.removeEventListener('abort', onAbort);
  }
}

/** A wrapped error says less than its cause ("connect ECONNREFUSED 127.0.0.1:1"). */
function networkErrorMessage(error: unknown): string {
  if (error instanceof Error && error.cause !== undefined) return errorMessage(error.cause);
  return errorMessage(error);
}

export interface LimitedBody {
  readonly text: string;
  /** True when the body was longer than the limit and reading stopped there. */
  readonly truncated: boolean;
}

export interface HttpRequest {
  readonly method: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string | undefined;
  readonly signal: AbortSignal;
  /**
   * Connect to these vetted addresses only, whatever the URL's name resolves to later (Host, TLS
   * SNI and certificate checks keep the name), over a fresh connection: no pooled socket
   * connected for another answer. Undefined: the name is resolved as usual and connections to
   * it are kept alive and reused (endpoints from the operator's own configuration).
   */
  readonly addresses?: readonly string[] | undefined;
  /** Read at most this many bytes of the body; undefined: answer on the headers, unread. */
  readonly maxBodyBytes?: number | undefined;
}

export interface HttpAnswer {
  readonly status: number;
  readonly body: LimitedBody;
}

// Free sockets close after 4 s, before a Node server's 5 s keep-alive timeout, so a request is
// never written to a socket the server is closing. node:http rather than fetch: undici's own
// 300 s headers and body timeouts would cut a longer configured timeout, and an aborted fetch
// opened a spare connection it never used.
const keepAlive = {
  http: new http.Agent({ keepAlive: true, timeout: 4_000 }),
  https: new https.Agent({ keepAlive: true, timeout: 4_000 }),
};

/**
 * The stream that decodes a Content-Encoding (what fetch accepted before: gzip, deflate, br),
 * undefined for none, or why the answer cannot be read.
 */
function decoder(encoding: string | undefined): Transform | undefined | string {
  switch ((encoding ?? '').trim().toLowerCase()) {
    case '':
    case 'identity':
      return undefined;
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip();
    case 'deflate':
      return zlib.createInflate();
    case 'br':
      return zlib.createBrotliDecompress();
    default:
      return `the answer's content-encoding ${JSON.stringify(encoding)} is not one of gzip, deflate, br`;
  }
}

/**
 * One request with node:http. Redirects are not followed (node:http never does); the caller's
 * signal (withDeadline's) covers connecting, headers and body alike.
 */
export function sendHttp(url: URL, request: HttpRequest): Promise<HttpAnswer> {
  const hostname = normalizeHost(url.hostname);
  const secure = url.protocol === 'https:';
  const headers: Record<string, string> = { host: url.host, ...request.headers };
  if (request.maxBodyBytes !== undefined) headers['accept-encoding'] = 'gzip, deflate, br';
  if (request.body !== undefined)
    headers['content-length'] = String(Buffer.byteLength(request.body));
  const pinned = request.addresses;
  const maxBodyBytes = request.maxBodyBytes;
  return new Promise((resolve, reject) => {
    const outgoing = (secure ? https : http).request(
      {
        protocol: url.protocol,
        host: hostname,
        port: url.port === '' ? undefined : Number(url.port),
        path: `${url.pathname}${url.search}`,
        method: request.method,
        signal: request.signal,
        headers,
        ...(pinned === undefined
          ? { agent: secure ? keepAlive.https : keepAlive.http }
          : {
              agent: false,
              lookup: pinnedLookup(pinned),
              ...(secure && isIP(hostname) === 0 ? { servername: hostname } : {}),
            }),
      },
      (response) => {
        const status = response.statusCode ?? 0;
        if (maxBodyBytes === undefined) {
          resolve({ status, body: { text: '', truncated: false } });
          response.destroy();
          return;
        }
        const decoded = decoder(response.headers['content-encoding']);
        if (typeof decoded === 'string') {
          response.destroy();
          reject(new Error(decoded));
          return;
        }
        // The limit counts decoded bytes: a small compressed answer can expand a thousandfold.
        const body: Readable = decoded ? pipeline(response, decoded, () => {}) : response;
        const chunks: Buffer[] = [];
        let size = 0;
        let truncated = false;
        const done = (): void => {
          // A multi-byte character cut at the limit decodes to U+FFFD rather than throwing.
          resolve({
            status,
            body: { text: new TextDecoder().decode(Buffer.concat(chunks)), truncated },
          });
        };
        body.on('data', (chunk: Buffer) => {
          if (truncated) return;
          if (size + chunk.byteLength > maxBodyBytes) {
            chunks.push(chunk.subarray(0, maxBodyBytes - size));
            truncated = true;
            response.destroy();
            body.destroy();
            done();
            return;
          }
          chunks.push(chunk);
          size += chunk.byteLength;
        });
        body.on('end', done);
        body.on('error', reject);
      },
    );
    outgoing.on('error', reject);
    outgoing.end(request.body);
  });
}

/** A one-line body excerpt for error messages. */
export function excerpt(text: string, maxLength = 200): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return truncate(flat, maxLength, ELLIPSIS);
}

/** The URL without userinfo, query and fragment: what may appear in plans, logs and messages. */
export function redactUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}
