import { isRecord } from './kube-object.ts';

/** An API error with its HTTP status code and, when the server sent a Status, its reason. */
export class KubeApiError extends Error {
  readonly code: number;
  readonly reason: string | undefined;

  constructor(code: number, reason: string | undefined, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KubeApiError';
    this.code = code;
    this.reason = reason;
  }
}

/**
 * An API call answered with a status outside 2xx, as KubeClient throws it: the status code and
 * the response body as text (a metav1.Status, usually), like client-node's ApiException, so that
 * callers keep telling 404, 409, 410, 422 or 429 apart and can read the server's words.
 */
export class KubeHttpError extends KubeApiError {
  /** The response body as sent, often a metav1.Status as JSON; '' when there was none. */
  readonly body: string;

  constructor(code: number, body: string) {
    const status = parseStatus(body);
    const reason = status.reason ? ` ${status.reason}` : '';
    super(
      code,
      status.reason,
      `HTTP ${code}${reason}${status.message ? `: ${status.message}` : ''}`,
    );
    this.name = 'KubeHttpError';
    this.body = body;
  }

  /** The same as `code`, under the name Node's and other HTTP errors use. */
  get statusCode(): number {
    return this.code;
  }
}

/**
 * The HTTP status behind a failed API call (a KubeApiError or KubeHttpError, client-node's
 * ApiException as the CLI still meets it, or an error with a numeric `statusCode`), if any.
 */
export function statusCodeOf(error: unknown): number | undefined {
  if (error instanceof KubeApiError) return error.code;
  if (isHttpErrorLike(error)) return error.code;
  if (isRecord(error) && typeof error['statusCode'] === 'number') return error['statusCode'];
  return undefined;
}

/**
 * client-node's ApiException by shape (a numeric `code` and a `body`), so that telling it apart
 * does not need client-node loaded.
 */
function isHttpErrorLike(error: unknown): error is Error & { code: number; body: unknown } {
  return (
    error instanceof Error && typeof Reflect.get(error, 'code') === 'number' && 'body' in error
  );
}

/**
 * A one-line reason for a failed API call: the HTTP status with the API server's reason and
 * message (from its Status body), or the network error and its cause.
 */
export function describeKubeError(error: unknown): string {
  if (error instanceof KubeHttpError) return error.message;
  if (isHttpErrorLike(error)) {
    const status = parseStatus(error.body);
    const reason = status.reason ? ` ${status.reason}` : '';
    return `HTTP ${error.code}${reason}${status.message ? `: ${status.message}` : ''}`;
  }
  if (error instanceof Error) {
    if (error.name === 'TimeoutError') return 'the request timed out';
    if (error.name === 'AbortError') return 'the request was aborted (stop)';
    const cause = error.cause instanceof Error ? ` (${error.cause.message})` : '';
    return `${error.message}${cause}`;
  }
  return String(error);
}

/**
 * The reason and message of a metav1.Status body, which client-node hands over as text or JSON;
 * a body that is not JSON is the message (its first 300 characters).
 */
export function parseStatus(body: unknown): { reason?: string; message?: string } {
  let value: unknown = body;
  if (typeof body === 'string') {
    try {
      value = JSON.parse(body);
    } catch {
      return body ? { message: body.slice(0, 300) } : {};
    }
  }
  if (typeof value !== 'object' || value === null) return {};
  const { reason, message } = value as { reason?: unknown; message?: unknown };
  return {
    ...(typeof reason === 'string' ? { reason } : {}),
    ...(typeof message === 'string' ? { message } : {}),
  };
}
