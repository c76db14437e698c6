/**
 * The hook behind rest_client_requests_total{code,method,host}: KubeClient reports every request
 * it makes, API call or watch, once per HTTP response (like client-go, which counts each attempt).
 */

/**
 * Told once per request: the HTTP method, the final status code (0 when no response came: a
 * connection, TLS or abort error before the headers) and the `host:port` of the server.
 * Called on the request's hot path: must be cheap; exceptions are swallowed (see safeOnResponse).
 */
export type OnResponse = (method: string, code: number, host: string) => void;

/** `onResponse` made harmless: metrics must never break a request. */
export function safeOnResponse(onResponse: OnResponse): OnResponse {
  return (method, code, host) => {
    try {
      onResponse(method, code, host);
    } catch {
      // Swallowed on purpose: a broken metric is not a failed request.
    }
  };
}
