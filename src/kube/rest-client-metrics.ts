import type { RequestContext } from '@kubernetes/client-node';

/**
 * An undici interceptor that reports the outcome of every request passing through a dispatcher,
 * for rest_client_requests_total{code,method,host}: PooledKubeConfig composes it onto its pooled
 * dispatchers, so every API call and watch of the operator is counted once per HTTP response
 * (like client-go, which counts each attempt).
 *
 * The undici types come from client-node's RequestContext rather than an import of 'undici',
 * which is client-node's dependency, not ours.
 */

type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;
type Dispatch = Dispatcher['dispatch'];
type DispatchOptions = Parameters<Dispatch>[0];
type DispatchHandler = Parameters<Dispatch>[1];
type DispatchController = Parameters<NonNullable<DispatchHandler['onResponseStart']>>[0];
type Headers = Parameters<NonNullable<DispatchHandler['onResponseStart']>>[2];
type Socket = Parameters<NonNullable<DispatchHandler['onRequestUpgrade']>>[3];

/** A dispatch interceptor as `Dispatcher.compose` takes it. */
export type DispatchInterceptor = (dispatch: Dispatch) => Dispatch;

/**
 * Told once per request: the HTTP method, the final status code (0 when no response came: a
 * connection, TLS or abort error before the headers) and the `host:port` of the server.
 * Called on undici's hot path: must be cheap; exceptions are swallowed.
 */
export type OnResponse = (method: string, code: number, host: string) => void;

/** Wraps `onResponse` as an interceptor for `dispatcher.compose(...)`. */
export function countResponses(onResponse: OnResponse): DispatchInterceptor {
  // Few origins (one per cluster): parse each once.
  const hosts = new Map<string, string>();
  const hostOf = (origin: DispatchOptions['origin']): string => {
    if (origin === undefined) return '';
    if (typeof origin !== 'string') return origin.host;
    let host = hosts.get(origin);
    if (host === undefined) {
      try {
        host = new URL(origin).host;
      } catch {
        host = '';
      }
      if (hosts.size < 64) hosts.set(origin, host);
    }
    return host;
  };
  const report: OnResponse = (method, code, host) => {
    try {
      onResponse(method, code, host);
    } catch {
      // Metrics must never break a request.
    }
  };
  return (dispatch: Dispatch): Dispatch =>
    (options, handler) =>
      dispatch(
        options,
        new CountingHandler(handler, (code) =>
          report(options.method ?? 'GET', code, hostOf(options.origin)),
        ),
      );
}

/** Forwards every callback to the request's own handler, reporting the status once. */
class CountingHandler implements DispatchHandler {
  readonly #handler: DispatchHandler;
  readonly #report: (code: number) => void;
  #reported = false;

  constructor(handler: DispatchHandler, report: (code: number) => void) {
    this.#handler = handler;
    this.#report = report;
  }

  #once(code: number): void {
    if (this.#reported) return;
    this.#reported = true;
    this.#report(code);
  }

  onRequestStart(controller: DispatchController, context: unknown): void {
    this.#handler.onRequestStart?.(controller, context);
  }

  onRequestUpgrade(
    controller: DispatchController,
    statusCode: number,
    headers: Headers,
    socket: Socket,
  ): void {
    this.#once(statusCode);
    this.#handler.onRequestUpgrade?.(controller, statusCode, headers, socket);
  }

  onResponseStarted(): void {
    this.#handler.onResponseStarted?.();
  }

  onResponseStart(
    controller: DispatchController,
    statusCode: number,
    headers: Headers,
    statusMessage?: string,
  ): void {
    // 1xx interim responses (103 Early Hints) precede the final one.
    if (statusCode >= 200) this.#once(statusCode);
    this.#handler.onResponseStart?.(controller, statusCode, headers, statusMessage);
  }

  onResponseData(controller: DispatchController, chunk: Buffer): void {
    this.#handler.onResponseData?.(controller, chunk);
  }

  onResponseEnd(controller: DispatchController, trailers: Headers): void {
    this.#handler.onResponseEnd?.(controller, trailers);
  }

  onResponseError(controller: DispatchController, error: Error): void {
    // An error after the headers (a watch closed mid-stream) was already counted by its status.
    this.#once(0);
    this.#handler.onResponseError?.(controller, error);
  }

  onBodySent(chunk: Buffer): void {
    this.#handler.onBodySent?.(chunk);
  }

  onRequestSent(): void {
    this.#handler.onRequestSent?.();
  }
}
