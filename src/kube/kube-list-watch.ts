import { ApiException, CustomObjectsApi, type KubeConfig, Watch } from '@kubernetes/client-node';
import { KubeApiError, parseStatus, statusCodeOf } from './kube-errors.ts';
import { isRecord } from './kube-object.ts';
import { withSignal } from './request-options.ts';

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
  readonly group: string;
  readonly version: string;
  readonly plural: string;
  /** Namespace to list and watch; '' or undefined for all namespaces. */
  readonly namespace?: string | undefined;
}

export interface KubeListWatchOptions extends CustomResourceRef {
  /**
   * client-node's own watch timer, which aborts a watch that receives no data for this long and
   * also bounds the wait for response headers. Keep it above the informer's inactivity watchdog
   * so that the watchdog, which restarts without backoff, fires first. client-node's default is
   * 30 s, which would reconnect every quiet watch twice a minute.
   */
  readonly requestTimeoutMs: number;
}

/** `ListWatch` for one custom resource, over client-node's `CustomObjectsApi` and `Watch`. */
export class KubeListWatch implements ListWatch {
  readonly #api: CustomObjectsApi;
  readonly #watcher: Watch;
  readonly #ref: CustomResourceRef;
  readonly #path: string;

  constructor(kubeConfig: KubeConfig, options: KubeListWatchOptions) {
    this.#api = kubeConfig.makeApiClient(CustomObjectsApi);
    this.#watcher = new Watch(kubeConfig);
    // Public at runtime, private only in client-node's type declarations.
    Reflect.set(this.#watcher, 'requestTimeoutMs', options.requestTimeoutMs);
    this.#ref = options;
    const { group, version, plural, namespace } = options;
    this.#path = namespace
      ? `/apis/${group}/${version}/namespaces/${encodeURIComponent(namespace)}/${plural}`
      : `/apis/${group}/${version}/${plural}`;
  }

  async list(options: ListOptions): Promise<ListPage> {
    const { group, version, plural, namespace } = this.#ref;
    const page = {
      group,
      version,
      plural,
      limit: options.limit,
      ...(options.continueToken ? { _continue: options.continueToken } : {}),
    };
    const config = withSignal(options.signal);
    let body: unknown;
    try {
      body = namespace
        ? await this.#api.listNamespacedCustomObject({ ...page, namespace }, config)
        : await this.#api.listClusterCustomObject(page, config);
    } catch (error) {
      throw toKubeApiError(error, `list ${this.#path}`);
    }
    return parseListPage(body, this.#path);
  }

  watch(options: WatchOptions, onEvent: (event: WatchEvent) => void): Promise<void> {
    const { signal } = options;
    if (signal.aborted) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      let connection: AbortController | undefined;
      const finish = (error?: unknown): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        connection?.abort();
        if (error === undefined) resolve();
        else reject(error);
      };
      const onAbort = (): void => finish();
      signal.addEventListener('abort', onAbort, { once: true });

      const query = {
        allowWatchBookmarks: true,
        resourceVersion: options.resourceVersion,
        timeoutSeconds: options.timeoutSeconds,
      };
      const onLine = (type: string, object: unknown): void => {
        // client-node may still parse lines after the stream was given up; the caller resumes
        // from the last resourceVersion it saw, so dropping them loses nothing.
        if (settled) return;
        if (type === 'ERROR') {
          finish(statusEventError(object, this.#path));
          return;
        }
        if (!isWatchEventType(type)) return;
        try {
          onEvent({ type, object });
        } catch (error) {
          finish(error);
        }
      };
      const onDone = (error: unknown): void => {
        finish(error ? toKubeApiError(error, `watch ${this.#path}`) : undefined);
      };
      this.#watcher.watch(this.#path, query, onLine, onDone).then(
        (controller) => {
          connection = controller;
          if (settled) controller.abort();
        },
        (error: unknown) => finish(toKubeApiError(error, `watch ${this.#path}`)),
      );
    });
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
 * Replaces client-node's errors, whose messages embed the full response headers, with one line
 * that names the call, the status and the server's message; network errors keep their cause.
 */
function toKubeApiError(error: unknown, call: string): unknown {
  if (error instanceof KubeApiError) return error;
  if (error instanceof ApiException) {
    const status = parseStatus(error.body);
    const message = status.message ?? `HTTP ${error.code}`;
    return new KubeApiError(error.code, status.reason, `${call}: ${error.code}: ${message}`, {
      cause: error,
    });
  }
  const code = statusCodeOf(error);
  if (code !== undefined) {
    const text = error instanceof Error ? error.message : String(error);
    return new KubeApiError(code, undefined, `${call}: ${code}: ${text}`, { cause: error });
  }
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : '';
    return new Error(`${call}: ${error.message}${cause}`, { cause: error });
  }
  return new Error(`${call}: ${String(error)}`);
}
