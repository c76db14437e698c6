import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { type ClientHttp2Stream, constants } from 'node:http2';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Readable } from 'node:stream';
import { withDeadline } from '../util/deadline.ts';
import { type ClusterAccess, type LoadOptions, loadClusterAccess } from './cluster-access.ts';
import { Http2Connection, type Http2ConnectionOptions } from './http2-connection.ts';
import { KubeHttpError } from './kube-errors.ts';
import { type OnResponse, safeOnResponse } from './rest-client-metrics.ts';

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** Content types of the request bodies the operator sends. */
export const ContentType = {
  Json: 'application/json',
  JsonPatch: 'application/json-patch+json',
  MergePatch: 'application/merge-patch+json',
} as const;

export interface RequestOptions {
  /** The body, already serialised (the hot-path writers build their JSON by hand). */
  readonly body?: string | undefined;
  /** Default application/json when there is a body. */
  readonly contentType?: string | undefined;
  /** Aborts the request (and reading its answer); it rejects with the signal's reason. */
  readonly signal?: AbortSignal | undefined;
  /**
   * Gives up after this long, rejecting with a TimeoutError; default the client's
   * `requestTimeoutMs`; 0: never.
   */
  readonly timeoutMs?: number | undefined;
}

export interface WatchRequestOptions {
  /** Ends the watch: it then resolves. */
  readonly signal: AbortSignal;
  /**
   * Fails the watch when no byte arrives for this long, headers included; default none. A
   * server-side timeoutSeconds ends quiet watches normally; this catches a connection that died
   * without closing.
   */
  readonly idleTimeoutMs?: number | undefined;
}

export interface KubeClientOptions {
  /** Told the outcome of every request, e.g. for rest_client_requests_total; default none. */
  readonly onResponse?: OnResponse | undefined;
  /**
   * The User-Agent header, which the API server's audit log and its apiserver_request metrics
   * show; default none (Node sends none).
   */
  readonly userAgent?: string | undefined;
  /**
   * How long a request (not a watch) may take, answer included, before it fails with a
   * TimeoutError; default 60 s, the API server's own --request-timeout; 0: no limit. Without it a
   * request on a connection that died in silence (a partition, a lost load balancer) waits for
   * the kernel's retransmission timeout, a quarter of an hour, holding its worker; client-go
   * bounds the same case with HTTP/2 health-check pings.
   */
  readonly requestTimeoutMs?: number | undefined;
  /**
   * Talk HTTP/2 to an https API server that offers it (as client-go does); default false:
   * HTTP/1.1 with a keep-alive pool. The operator sets it from KUBE_API_HTTP2 (default true,
   * docs/configuration.md). Servers that do not offer h2 get HTTP/1.1 anyway. An object is true with other health-check pings than
   * client-go's 30 s + 15 s.
   */
  readonly http2?: boolean | Http2ConnectionOptions | undefined;
}

/** An answer's status and body, whichever protocol carried it. */
interface Answer {
  readonly statusCode: number;
  readonly body: Readable;
  /** Whether the whole body arrived: a 'close' without it is a cut connection. */
  complete(): boolean;
}

/** A stream the server refused unprocessed, with the stream's own error. */
class RefusedStream extends Error {
  readonly streamError: Error;
  constructor(streamError: Error) {
    super(streamError.message);
    this.streamError = streamError;
  }
}

const MAX_REFUSED_RETRIES = 3;

export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000;

const ACCEPT = 'application/json, */*;q=0.8';

/**
 * The operator's Kubernetes REST client: JSON requests and watches over node:http(s), with the
 * authentication of a ClusterAccess.
 *
 * Ours rather than @kubernetes/client-node's because of what that costs and does not give:
 * importing it loads ~2,700 model classes and undici (~25 MiB of heap, docs/performance.md); its
 * generated APIs (de)serialise every body through those models; and client-node 2.0 builds a new
 * undici Agent for every request (KubeConfig.createDispatcher), so every call and every watch
 * opened a fresh TLS connection: measured here, TLS handshakes were most of the operator's CPU
 * time at ~100 runs/s. So one client holds one keep-alive Agent for its cluster and user, and
 * every part of the operator shares the client. Credentials are asked for per request (tokens
 * rotate); only the TLS connection settings live in the Agent.
 */
export class KubeClient {
  readonly access: ClusterAccess;
  readonly #agent: HttpAgent;
  readonly #h2: Http2Connection | undefined;
  readonly #send: typeof httpRequest;
  readonly #protocol: string;
  readonly #hostname: string;
  readonly #port: string;
  /** The server URL's path prefix ('' or e.g. /proxy), put before every API path. */
  readonly #basePath: string;
  /** host:port of the server, the `host` label of rest_client_requests_total. */
  readonly #host: string;
  readonly #onResponse: OnResponse | undefined;
  readonly #userAgent: string | undefined;
  readonly #requestTimeoutMs: number;

  constructor(access: ClusterAccess, options: KubeClientOptions = {}) {
    this.access = access;
    const url = new URL(access.server);
    const secure = url.protocol === 'https:';
    this.#protocol = url.protocol;
    this.#hostname = url.hostname.replace(/^\[(.*)\]$/, '$1');
    this.#port = url.port || (secure ? '443' : '80');
    this.#basePath = url.pathname.replace(/\/+$/, '');
    this.#host = url.host;
    this.#onResponse = options.onResponse ? safeOnResponse(options.onResponse) : undefined;
    this.#userAgent = options.userAgent;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    const { tls } = access;
    this.#agent = secure
      ? new HttpsAgent({
          keepAlive: true,
          ...(tls.ca ? { ca: tls.ca } : {}),
          ...(tls.cert ? { cert: tls.cert } : {}),
          ...(tls.key ? { key: tls.key } : {}),
          ...(tls.servername ? { servername: tls.servername } : {}),
          rejectUnauthorized: tls.rejectUnauthorized,
        })
      : new HttpAgent({ keepAlive: true });
    this.#send = secure ? httpsRequest : httpRequest;
    const http2 = options.http2 ?? false;
    this.#h2 =
      secure && http2 !== false
        ? new Http2Connection(url, tls, http2 === true ? {} : http2)
        : undefined;
  }

  /** A client for the cluster loadClusterAccess(options) finds (KUBECONFIG, ~/.kube/config, ...). */
  static load(options: LoadOptions & KubeClientOptions = {}): KubeClient {
    return new KubeClient(loadClusterAccess(options), options);
  }

  /** The namespace of the kubeconfig context (or the pod's own), if any. */
  get namespace(): string | undefined {
    return this.access.namespace;
  }

  /**
   * One JSON request. Resolves with the parsed answer (undefined for an empty one) on 2xx;
   * rejects with KubeHttpError (status code and body text) otherwise, with the signal's reason
   * when aborted or timed out, and with Node's network error when no answer came.
   */
  request(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<unknown> {
    return this.#withTimeout(options, (signal) => this.#answer(method, path, options, signal));
  }

  /**
   * A request whose answer the caller does not use (Event writes): as `request`, but a 2xx
   * answer is read to its end without being decoded or parsed. A refusal still rejects with
   * KubeHttpError and its body text.
   */
  send(method: HttpMethod, path: string, options: RequestOptions = {}): Promise<void> {
    return this.#withTimeout(options, (signal) => this.#sendOnly(method, path, options, signal));
  }

  #withTimeout<T>(
    options: RequestOptions,
    fn: (signal: AbortSignal | undefined) => Promise<T>,
  ): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.#requestTimeoutMs;
    if (timeoutMs === 0) return fn(options.signal);
    return withDeadline(options.signal, timeoutMs, fn);
  }

  async #answer(
    method: HttpMethod,
    path: string,
    options: RequestOptions,
    signal: AbortSignal | undefined,
  ): Promise<unknown> {
    const answer = await this.#start(method, path, options, signal, undefined);
    const text = await readText(answer, signal);
    const status = answer.statusCode;
    if (status < 200 || status > 299) throw new KubeHttpError(status, text);
    return text === '' ? undefined : JSON.parse(text);
  }

  async #sendOnly(
    method: HttpMethod,
    path: string,
    options: RequestOptions,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const answer = await this.#start(method, path, options, signal, undefined);
    const status = answer.statusCode;
    if (status < 200 || status > 299)
      throw new KubeHttpError(status, await readText(answer, signal));
    await drain(answer, signal);
  }

  /**
   * A watch (`path` with its query, `watch=true` included): calls `onEvent` synchronously with
   * each decoded line, `{type, object}`, until the server ends the stream or `signal` aborts
   * (resolves), or it fails (rejects: KubeHttpError when refused, else the network or idle
   * error). If `onEvent` throws, the watch stops and rejects with that error. No event is
   * delivered after it settles.
   */
  async watch(
    path: string,
    options: WatchRequestOptions,
    onEvent: (event: unknown) => void,
  ): Promise<void> {
    const { signal } = options;
    if (signal.aborted) return;
    let answer: Answer;
    try {
      answer = await this.#start('GET', path, {}, signal, options.idleTimeoutMs);
    } catch (error) {
      if (signal.aborted) return;
      throw error;
    }
    const response = answer.body;
    // Aborted while the headers were on their way in: the connection is being torn down.
    if (signal.aborted) {
      response.destroy();
      return;
    }
    const status = answer.statusCode;
    if (status < 200 || status > 299) {
      throw new KubeHttpError(status, await readText(answer, signal));
    }
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      let partial = '';
      const finish = (error?: unknown): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        response.removeListener('data', onData);
        response.destroy();
        if (error === undefined) resolve();
        else reject(error);
      };
      const onAbort = (): void => finish();
      const deliver = (line: string): void => {
        if (line.trim() === '') return;
        onEvent(JSON.parse(line));
      };
      // Events arrive as JSON lines, split anywhere across chunks: keep the unfinished tail.
      const onData = (chunk: string): void => {
        if (settled) return;
        const lines = (partial + chunk).split('\n');
        partial = lines.pop() ?? '';
        try {
          for (const line of lines) {
            deliver(line);
            if (settled) return;
          }
        } catch (error) {
          finish(error);
        }
      };
      signal.addEventListener('abort', onAbort, { once: true });
      response.setEncoding('utf8');
      response.on('data', onData);
      response.once('end', () => {
        try {
          if (!settled) deliver(partial);
          finish();
        } catch (error) {
          finish(error);
        }
      });
      response.on('error', (error) => finish(signal.aborted ? undefined : error));
      // 'end' never comes when the connection dies mid-stream: 'close' without 'end'.
      response.once('close', () => {
        if (answer.complete() || signal.aborted) finish();
        else finish(new Error('the watch connection closed mid-stream'));
      });
    });
  }

  /** Closes the pooled connections (on shutdown); requests in flight fail. */
  close(): void {
    this.#agent.destroy();
    this.#h2?.close();
  }

  /** Sends the request; resolves at the response headers, whatever the status. */
  async #start(
    method: HttpMethod,
    path: string,
    options: RequestOptions,
    signal: AbortSignal | undefined,
    idleTimeoutMs: number | undefined,
  ): Promise<Answer> {
    signal?.throwIfAborted();
    // Lower case: HTTP/2 requires it, HTTP/1.1 does not mind.
    const headers: Record<string, string> = { accept: ACCEPT };
    if (this.#userAgent) headers['user-agent'] = this.#userAgent;
    const authorization = this.access.auth.authorization();
    const header = typeof authorization === 'string' ? authorization : await authorization;
    if (header !== undefined) headers['authorization'] = header;
    if (options.body !== undefined) {
      headers['content-type'] = options.contentType ?? ContentType.Json;
      headers['content-length'] = String(Buffer.byteLength(options.body));
    }
    signal?.throwIfAborted();
    if (this.#h2) {
      for (let attempt = 1; ; attempt++) {
        const stream = await this.#h2
          .request(
            { ...headers, ':method': method, ':path': `${this.#basePath}${path}` },
            options.body !== undefined,
            signal,
          )
          .catch((error: unknown) => {
            this.#onResponse?.(method, 0, this.#host);
            throw error;
          });
        if (!stream) break;
        try {
          return await this.#exchange(stream, method, options, signal, idleTimeoutMs);
        } catch (error) {
          // REFUSED_STREAM: the server did not process it (an API server going away refuses
          // the streams it will not serve), so it is sent again on a new session, as Go's
          // transport does. A few times at most: the server may be going down for good.
          if (!(error instanceof RefusedStream)) throw error;
          if (attempt >= MAX_REFUSED_RETRIES) {
            this.#onResponse?.(method, 0, this.#host);
            throw error.streamError;
          }
        }
      }
    }
    const response = await this.#http1(method, path, headers, options, signal, idleTimeoutMs);
    return {
      statusCode: response.statusCode ?? 0,
      body: response,
      complete: () => response.complete,
    };
  }

  /** Sends the body on an HTTP/2 stream; resolves at the response headers. */
  #exchange(
    stream: ClientHttp2Stream,
    method: HttpMethod,
    options: RequestOptions,
    signal: AbortSignal | undefined,
    idleTimeoutMs: number | undefined,
  ): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      let answered = false;
      const report = (code: number): void => this.#onResponse?.(method, code, this.#host);
      const onAbort = (): void => {
        stream.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      if (signal?.aborted) onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      stream.once('close', () => signal?.removeEventListener('abort', onAbort));
      if (idleTimeoutMs !== undefined) {
        stream.setTimeout(idleTimeoutMs, () => {
          stream.destroy(new Error(`no data from the API server for ${idleTimeoutMs} ms`));
        });
      }
      stream.once('response', (headers) => {
        answered = true;
        const status = Number(headers[':status'] ?? 0);
        report(status);
        resolve({ statusCode: status, body: stream, complete: () => stream.readableEnded });
      });
      stream.on('error', (error) => {
        if (answered) return;
        if (stream.rstCode === constants.NGHTTP2_REFUSED_STREAM) {
          reject(new RefusedStream(error));
          return;
        }
        report(0);
        reject(error);
      });
      if (options.body !== undefined) stream.end(options.body);
    });
  }

  /** The HTTP/1.1 exchange through the keep-alive Agent; resolves at the response headers. */
  #http1(
    method: HttpMethod,
    path: string,
    headers: Record<string, string>,
    options: RequestOptions,
    signal: AbortSignal | undefined,
    idleTimeoutMs: number | undefined,
  ): Promise<IncomingMessage> {
    return new Promise<IncomingMessage>((resolve, reject) => {
      let answer: IncomingMessage | undefined;
      const report = (code: number): void => this.#onResponse?.(method, code, this.#host);
      const request = this.#send({
        agent: this.#agent,
        protocol: this.#protocol,
        hostname: this.#hostname,
        port: this.#port,
        method,
        path: `${this.#basePath}${path}`,
        headers,
      });
      // The signal's reason (AbortError, TimeoutError) is the error, as with fetch and undici.
      const onAbort = (): void => {
        request.destroy(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      request.once('close', () => signal?.removeEventListener('abort', onAbort));
      if (idleTimeoutMs !== undefined) {
        request.setTimeout(idleTimeoutMs, () => {
          // Once the answer has started, its stream must carry the error, not a bare "aborted".
          const error = new Error(`no data from the API server for ${idleTimeoutMs} ms`);
          (answer ?? request).destroy(error);
        });
      }
      request.once('response', (response) => {
        answer = response;
        // Until the caller listens: an abort in between must not be an uncaught stream error.
        response.on('error', () => undefined);
        report(response.statusCode ?? 0);
        resolve(response);
      });
      // `on`, not `once`: a second error with no listener would be an uncaught exception.
      request.on('error', (error) => {
        if (!answer) report(0);
        reject(error);
      });
      request.end(options.body);
    });
  }
}

/** The whole body as text; rejects with the signal's reason if it aborts first. */
function readText(answer: Answer, signal: AbortSignal | undefined): Promise<string> {
  let text = '';
  answer.body.setEncoding('utf8');
  return consume(answer, signal, (chunk) => {
    text += String(chunk);
  }).then(() => text);
}

/** Reads an answer's body to its end and drops it. */
function drain(answer: Answer, signal: AbortSignal | undefined): Promise<void> {
  return consume(answer, signal, () => {});
}

function consume(
  answer: Answer,
  signal: AbortSignal | undefined,
  onData: (chunk: string | Buffer) => void,
): Promise<void> {
  const response = answer.body;
  return new Promise<void>((resolve, reject) => {
    response.on('data', onData);
    response.once('end', () => resolve());
    response.on('error', (error) => reject(signal?.aborted ? signal.reason : error));
    response.once('close', () => {
      if (!answer.complete()) {
        reject(signal?.aborted ? signal.reason : new Error('the connection closed mid-answer'));
      }
    });
  });
}
