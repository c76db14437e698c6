import { ApiException } from '@kubernetes/client-node';
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
 * The HTTP status behind a failed API call (client-node's ApiException, a KubeApiError, or an
 * error with a numeric `statusCode`), if it has one.
 */
export function statusCodeOf(error: unknown): number | undefined {
  if (error instanceof KubeApiError || error instanceof ApiException) return error.code;
  if (isRecord(error) && typeof error['statusCode'] === 'number') return error['statusCode'];
  return undefined;
}

/**
 * A one-line reason for a failed API call: the HTTP status with the API server's reason and
 * message (from its Status body), or the network error and its cause.
 */
export function describeKubeError(error: unknown): string {
  if (error instanceof ApiException) {
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
