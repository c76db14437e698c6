import { ApiException } from '@kubernetes/client-node';

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

/** The reason and message of a metav1.Status body, which client-node hands over as text or JSON. */
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
