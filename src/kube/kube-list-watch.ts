import type { KubeClient } from './kube-client.ts';
import { KubeApiError, KubeHttpError, parseStatus, statusCodeOf } from './kube-errors.ts';
import { isRecord } from './kube-object.ts';

/** One page of a list: raw objects as decoded from JSON, which the caller may modify. */
export interface ListPage {
  readonly items: readonly unknown[];
  /** The collection's resourceVersion: where a watch that follows the list starts. */
  readonly resourceVersion: string;
  /** Set when more pages follow (paginated list). */
  readonly continueToken: string | undefined;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK';

export interface WatchEvent {
  readonly type: WatchEventType;
  /** The object as decoded from JSON (for BOOKMARK only its metadata.resourceVersion counts). */
  readonly object: unknown;
}

export interface ListOptions {
  readonly limit: number;
  readonly continueToken?: string | undefined;
  readonly signal: AbortSignal;
}

export interface WatchOptions {
  readonly resourceVersion: string;
  /** Server-side timeout of the watch request. */
  readonly timeoutSeconds: number;
  readonly signal: AbortSignal;
}

/**
 * The two API calls an informer makes, kept apart from the caching logic so that the logic can
 * be tested without a server.
 */
export interface ListWatch {
  /** One page of a consistent (quorum) list. Rejects with `KubeApiError` for API errors. */
  list(options: ListOptions): Promise<ListPage>;
  /**
   * Streams events after `resourceVersion`, calling `onEvent` synchronously for each, until the
   * server ends the stream or `signal` aborts (resolves), or it fails (rejects). A watch refused
   * with an HTTP status, or ended by an ERROR event, rejects with a `KubeApiError` carrying the
   * status code (410 when the resourceVersion is too old). After it settles, no more events are
   * delivered.
   */
  watch(options: WatchOptions, onEvent: (event: WatchEvent) => void): Promise<void>;
}

/** True for 410 Gone: the resourceVersion (or continue token) has been compacted away. */
export function isExpired(error: unknown): boolean {
  return statusCodeOf(error) === 410;
}

export interface CustomResourceRef {
  /** '' for the core group (pods): served under /api rather than /apis. */
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  /** Namespace to list and watch; '' or undefined for all namespaces. */
  readonly namespace?: string | undefined;
  /** Only objects with these labels (`key`, `key=value`, comma-separated). */
  readonly labelSelector?: string | undefined;
}

export interface KubeListWatchOptions extends CustomResourceRef {
  /**
   * Fails a watch that receives no data for this long (headers included). Keep it above the informer's inactivity watchdog so that the watchdog, which
   * restarts without backoff, fires first. (client-node's own timer, which this replaces,
   * defaulted to 30 s, which would reconnect every quiet watch twice a minute.)
   */
  readonly requestTimeoutMs: number;
}

/** `ListWatch` for one custom resource, over KubeClient. */
export class KubeListWatch implements ListWatch {
  readonly #client: KubeClient;
  readonly #requestTimeoutMs: number;
  readonly #path: string;
  readonly #labelSelector: string | undefined;

  constructor(client: KubeClient, options: KubeListWatchOptions) {
    this.#client = client;
    this.#requestTimeoutMs = options.requestTimeoutMs;
    const { group, version, plural, namespace } = options;
    const base = group === '' ? `/api/${version}` : `/apis/${group}/${version}`;
    this.#path = namespace
      ? `${base}/namespaces/${encodeURIComponent(namespace)}/${plural}`
      : `${base}/${plural}`;
    this.#labelSelector = options.labelSelector;
  }

  async list(options: ListOptions): Promise<ListPage> {
    const query = new URLSearchParams({ limit: String(options.limit) });
    if (this.#labelSelector) query.set('labelSelector', this.#labelSelector);
    if (options.continueToken) query.set('continue', options.continueToken);
    let body: unknown;
    try {
      body = await this.#client.request('GET', `${this.#path}?${query}`, {
        signal: options.signal,
      });
    } catch (error) {
      throw toKubeApiError(error, `list ${this.#path}`);
    }
    return parseListPage(body, this.#path);
  }

  async watch(options: WatchOptions, onEvent: (event: WatchEvent) => void): Promise<void> {
    const query = new URLSearchParams({
      watch: 'true',
      allowWatchBookmarks: 'true',
      resourceVersion: options.resourceVersion,
      timeoutSeconds: String(options.timeoutSeconds),
    });
    if (this.#labelSelector) query.set('labelSelector', this.#labelSelector);
    // What onEvent threw goes back to the caller as it is, not dressed as a watch failure.
    let handlerError: { readonly error: unknown } | undefined;
    const onLine = (line: unknown): void => {
      const type = isRecord(line) ? line['type'] : undefined;
      const object = isRecord(line) ? line['object'] : undefined;
      if (type === 'ERROR') throw statusEventError(object, this.#path);
      if (typeof type !== 'string' || !isWatchEventType(type)) return;
      try {
        onEvent({ type, object });
      } catch (error) {
        handlerError = { error };
        throw error;
      }
    };
    try {
      await this.#client.watch(
        `${this.#path}?${query}`,
        { signal: options.signal, idleTimeoutMs: this.#requestTimeoutMs },
        onLine,
      );
    } catch (error) {
      if (handlerError) throw handlerError.error;
      throw toKubeApiError(error, `watch ${this.#path}`);
    }
  }
}

function isWatchEventType(type: string): type is WatchEventType {
  return type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED' || type === 'BOOKMARK';
}

function parseListPage(body: unknown, path: string): ListPage {
  if (!isRecord(body) || !Array.isArray(body['items']) || !isRecord(body['metadata'])) {
    throw new Error(`list ${path}: the response is not a Kubernetes list`);
  }
  const metadata = body['metadata'];
  const resourceVersion = metadata['resourceVersion'];
  if (typeof resourceVersion !== 'string' || resourceVersion === '') {
    throw new Error(`list ${path}: the response has no metadata.resourceVersion`);
  }
  const continueToken = metadata['continue'];
  return {
    items: body['items'],
    resourceVersion,
    continueToken:
      typeof continueToken === 'string' && continueToken !== '' ? continueToken : undefined,
  };
}

/** An ERROR watch event carries a metav1.Status; 410 means the resourceVersion is too old. */
function statusEventError(object: unknown, path: string): KubeApiError {
  const status = isRecord(object) ? object : {};
  const code = typeof status['code'] === 'number' ? status['code'] : 500;
  const reason = typeof status['reason'] === 'string' ? status['reason'] : undefined;
  const message = typeof status['message'] === 'string' ? status['message'] : 'no message';
  return new KubeApiError(code, reason, `watch ${path}: ERROR event ${code}: ${message}`);
}

/**
 * One line that names the call, the status and the server's message (rather than the bare
 * "HTTP 404" of the client); network errors keep their cause, said once (a stream of a dropped
 * HTTP/2 session carries the session's error as its cause, with the same message). Errors the
 * event handler threw, and ERROR events (already KubeApiErrors), pass unchanged.
 */
export function toKubeApiError(error: unknown, call: string): unknown {
  if (error instanceof KubeHttpError) {
    const status = parseStatus(error.body);
    const message = status.message ?? `HTTP ${error.code}`;
    return new KubeApiError(error.code, status.reason, `${call}: ${error.code}: ${message}`, {
      cause: error,
    });
  }
  if (error instanceof KubeApiError) return error;
  const code = statusCodeOf(error);
  if (code !== undefined) {
    const text = error instanceof Error ? error.message : String(error);
    return new KubeApiError(code, undefined, `${call}: ${code}: ${text}`, { cause: error });
  }
  if (error instanceof Error) {
    const cause =
      error.cause instanceof Error && !error.message.includes(error.cause.message)
        ? `: ${error.cause.message}`
        : '';
    return new Error(`${call}: ${error.message}${cause}`, { cause: error });
  }
  return new Error(`${call}: ${String(error)}`);
}
