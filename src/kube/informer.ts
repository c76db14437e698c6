import { abortable } from '../util/abortable.ts';
import type { Logger } from '../util/log.ts';
import { sleep } from '../util/sleep.ts';
import type { KubeClient } from './kube-client.ts';
import { statusCodeOf } from './kube-errors.ts';
import { isExpired, KubeListWatch, type ListWatch, type WatchEvent } from './kube-list-watch.ts';
import { isRecord, type KubeObject, objectKey, stripManagedFields } from './kube-object.ts';
import { Backoff, type BackoffOptions } from './rate-limiter.ts';

/**
 * Callbacks for cache changes. They run synchronously inside the informer and must be cheap
 * (enqueue a key and return); a handler that throws is logged and does not stop the informer.
 * Handlers must be idempotent: after a relist they see synthetic adds, updates and deletes.
 *
 * Objects passed to handlers are the cached objects themselves: never mutate them (copy first).
 */
export interface InformerEventHandler<T> {
  onAdd?(object: T): void;
  /** The object changed (a different resourceVersion than the cached one). */
  onUpdate?(oldObject: T, newObject: T): void;
  /** The object is gone: its final state from the DELETED event, or the last cached one. */
  onDelete?(lastKnown: T): void;
  /** The periodic resync: every cached object is offered again, unchanged. */
  onResync?(object: T): void;
}

/** A change to the cache, as found by `diffCache` or `watchEventChanges`. */
export type CacheChange<T> =
  | { readonly type: 'add'; readonly object: T }
  | { readonly type: 'update'; readonly old: T; readonly object: T }
  | { readonly type: 'delete'; readonly object: T };

export const DEFAULT_RESYNC_PERIOD_MS = 10 * 60_000;
export const DEFAULT_INACTIVITY_TIMEOUT_MS = 90_000;
export const DEFAULT_PAGE_SIZE = 500;

interface InformerCommonOptions<T> {
  /** The API group; '' for the core group (pods). */
  readonly group: string;
  readonly version: string;
  /** The resource's plural name, e.g. `agentruns`. */
  readonly plural: string;
  /** Namespace to cache; '' or undefined caches all namespaces. */
  readonly namespace?: string | undefined;
  /** Caches only objects with these labels (a label selector: `key`, `key=value`, ...). */
  readonly labelSelector?: string | undefined;
  /**
   * Validates a raw object (managedFields already removed) into T; objects it rejects (returns
   * undefined or throws) are left out of the cache and logged once at warn per name.
   */
  readonly parse: (raw: unknown) => T | undefined;
  /**
   * Turns a parsed object into what the cache keeps (client-go's `SetTransform`): e.g. a slim
   * copy without fields no reader of the cache needs. It runs once per resourceVersion, before
   * the object is cached or handed to any handler, so handlers, `get` and `list` all see its
   * result; it must keep `metadata` (namespace, name, uid, resourceVersion) and must not throw.
   * Default: the parsed object as it is.
   */
  readonly transform?: ((object: T) => T) | undefined;
  readonly logger: Logger;
  /** Period of `onResync` for every cached object; default 10 min; 0 turns resync off. */
  readonly resyncPeriodMs?: number;
  /**
   * Server-side timeout of each watch request; default a random 300-600 s per watch, like
   * client-go, so that many watches do not all reconnect at once.
   */
  readonly watchTimeoutSeconds?: number;
  /**
   * Restart a watch that has delivered nothing, not even a bookmark, for this long; default
   * 90 s. The API server sends a bookmark about once a minute, so a silent watch is a dead one.
   */
  readonly inactivityTimeoutMs?: number;
  /** Retry delays after list or watch failures; default 1 s doubling to 30 s, with jitter. */
  readonly backoff?: BackoffOptions;
  /** Objects per list page; default 500. */
  readonly pageSize?: number;
}

/** Options of `Informer`: the resource, plus either a KubeClient or a `ListWatch` (for tests). */
export type InformerOptions<T> = InformerCommonOptions<T> &
  (
    | { readonly client: KubeClient; readonly listWatch?: never }
    | { readonly listWatch: ListWatch; readonly client?: never }
  );

/**
 * A list/watch cache of one resource kind. It lists (paginated), then watches from the list's
 * resourceVersion with bookmarks, and resumes each new watch from the last resourceVersion seen.
 * On 410 Gone it relists and reports the differences as adds, updates and deletes. Any other
 * failure (429 while a new CRD's watch cache warms up, 5xx, network errors) is retried with
 * backoff until `stop()`: the informer never gives up on its own.
 *
 * Cached objects have `metadata.managedFields` removed (and pass through `transform`, if given)
 * and are shared with every caller: treat what `get`, `list` and the handlers return as
 * read-only. An object is parsed once per resourceVersion: a relist that finds an object at the
 * version already cached keeps the cached one without parsing it again.
 */
export class Informer<T extends KubeObject> {
  readonly #listWatch: ListWatch;
  /** `plural.group`, for logs and errors. */
  readonly #resource: string;
  readonly #parse: (raw: unknown) => T | undefined;
  readonly #transform: ((object: T) => T) | undefined;
  readonly #log: Logger;
  readonly #resyncPeriodMs: number;
  readonly #watchTimeoutSeconds: number | undefined;
  readonly #inactivityTimeoutMs: number;
  readonly #pageSize: number;
  readonly #backoff: Backoff;
  readonly #random: () => number;

  #cache = new Map<string, T>();
  /** Keys whose current version failed `parse`, so each is logged once, not on every event. */
  #rejected = new Set<string>();
  readonly #handlers = new Set<InformerEventHandler<T>>();
  #resourceVersion = '';
  #synced = false;
  #syncWaiters: Array<{ resolve: () => void; reject: (error: unknown) => void }> = [];
  #started = false;
  #stopped = false;
  readonly #stopping = new AbortController();
  #currentWatch: AbortController | undefined;
  #resyncTimer: ReturnType<typeof setInterval> | undefined;
  #lastActivityAt = 0;
  #running: Promise<void> = Promise.resolve();

  constructor(options: InformerOptions<T>) {
    const { group, version, plural } = options;
    const namespace = options.namespace || undefined;
    this.#parse = options.parse;
    this.#transform = options.transform;
    this.#resyncPeriodMs = options.resyncPeriodMs ?? DEFAULT_RESYNC_PERIOD_MS;
    this.#watchTimeoutSeconds = options.watchTimeoutSeconds;
    this.#inactivityTimeoutMs = options.inactivityTimeoutMs ?? DEFAULT_INACTIVITY_TIMEOUT_MS;
    this.#pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
    this.#random = options.backoff?.random ?? Math.random;
    this.#backoff = new Backoff(options.backoff);
    if (!(this.#inactivityTimeoutMs > 0)) {
      throw new RangeError(
        `inactivityTimeoutMs must be positive, got ${this.#inactivityTimeoutMs}`,
      );
    }
    this.#resource = group === '' ? plural : `${plural}.${group}`;
    this.#log = options.logger.child({
      resource: this.#resource,
      ...(namespace ? { watchNamespace: namespace } : {}),
    });
    this.#listWatch =
      options.listWatch ??
      new KubeListWatch(options.client, {
        group,
        version,
        plural,
        namespace,
        labelSelector: options.labelSelector,
        // Above the watchdog, so the watchdog decides; see KubeListWatchOptions.
        requestTimeoutMs: this.#inactivityTimeoutMs + 30_000,
      });
  }

  /**
   * Registers handlers; returns a function that removes them. Handlers added after the informer
   * has synced get `onAdd` for every cached object first (like client-go), so late subscribers
   * do not miss existing objects.
   */
  addEventHandler(handler: InformerEventHandler<T>): () => void {
    this.#handlers.add(handler);
    if (this.#synced && handler.onAdd) {
      for (const object of this.#cache.values()) this.#call(handler, { type: 'add', object });
    }
    return () => {
      this.#handlers.delete(handler);
    };
  }

  /** Starts listing and watching in the background. Calling it again, or after `stop()`, does nothing. */
  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    this.#running = this.#run();
  }

  /**
   * Stops watching, clears all timers and rejects pending `waitForSync` calls. The returned
   * promise resolves once the background loop has exited; handlers are not called after `stop()`
   * returns.
   */
  stop(): Promise<void> {
    if (!this.#stopped) {
      this.#stopped = true;
      this.#stopping.abort();
      this.#currentWatch?.abort();
      if (this.#resyncTimer !== undefined) clearInterval(this.#resyncTimer);
      this.#resyncTimer = undefined;
      const waiters = this.#syncWaiters;
      this.#syncWaiters = [];
      for (const waiter of waiters)
        waiter.reject(new Error(`${this.#describe()} stopped before it synced`));
    }
    return this.#running;
  }

  /** True once the first complete list has been delivered to the handlers. */
  hasSynced(): boolean {
    return this.#synced;
  }

  /** Resolves once synced; rejects if `signal` aborts or the informer stops first. */
  waitForSync(signal?: AbortSignal): Promise<void> {
    if (this.#synced) return Promise.resolve();
    if (this.#stopped)
      return Promise.reject(new Error(`${this.#describe()} stopped before it synced`));
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => {
        this.#syncWaiters = this.#syncWaiters.filter((waiter) => waiter !== entry);
        reject(signal?.reason);
      };
      const entry = {
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        reject: (error: unknown) => {
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        },
      };
      this.#syncWaiters.push(entry);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** The cached object for `namespace/name` (or `name` if cluster-scoped). Do not mutate it. */
  get(key: string): T | undefined {
    return this.#cache.get(key);
  }

  /** A snapshot array of the cached objects. Do not mutate them. */
  list(): T[] {
    return [...this.#cache.values()];
  }

  keys(): string[] {
    return [...this.#cache.keys()];
  }

  get size(): number {
    return this.#cache.size;
  }

  /**
   * When the informer last heard from the API server (a list page or any watch event, bookmarks
   * included), in epoch milliseconds; 0 before the first response. For health checks.
   */
  lastActivity(): number {
    return this.#lastActivityAt;
  }

  /**
   * Ends the current watch and opens a new one from the last resourceVersion seen, without
   * backoff. For tests and for health checks that find the informer stale.
   */
  restartWatch(): void {
    this.#currentWatch?.abort();
  }

  #describe(): string {
    return `informer for ${this.#resource}`;
  }

  async #run(): Promise<void> {
    let needsList = true;
    while (!this.#stopped) {
      try {
        if (needsList) {
          await this.#relist();
          needsList = false;
          continue;
        }
        const ending = await this.#watchOnce();
        if (ending === 'quiet') {
          await this.#retryDelay('the watch ended without any event', undefined, 'info');
        }
      } catch (error) {
        if (this.#stopped) break;
        if (isExpired(error)) {
          needsList = true;
          // Expected after long disconnects or compaction: no stack trace, just the server's word.
          this.#log.info(
            { status: 410, reason: error instanceof Error ? error.message : String(error) },
            'resourceVersion expired (410 Gone); relisting and reporting differences',
          );
          await this.#retryDelay();
        } else {
          await this.#retryDelay(needsList ? 'list failed' : 'watch failed', error);
        }
      }
    }
  }

  /** Lists every page, replaces the cache and reports the differences. */
  async #relist(): Promise<void> {
    const listed = new Map<string, T>();
    const rejected = new Set<string>();
    let continueToken: string | undefined;
    let resourceVersion = '';
    let pages = 0;
    do {
      const page = await unlessAborted(
        this.#listWatch.list({
          limit: this.#pageSize,
          continueToken,
          signal: this.#stopping.signal,
        }),
        this.#stopping.signal,
      );
      if (page === undefined || this.#stopped) return;
      this.#lastActivityAt = Date.now();
      pages += 1;
      for (const raw of page.items) {
        const { key, object } = this.#decode(raw, rejected);
        if (key !== undefined && object !== undefined) listed.set(key, object);
      }
      resourceVersion = page.resourceVersion;
      continueToken = page.continueToken;
    } while (continueToken !== undefined);

    const changes = diffCache(this.#cache, listed);
    this.#cache = listed;
    this.#rejected = rejected;
    this.#resourceVersion = resourceVersion;
    for (const change of changes) this.#emit(change);

    const fields = { objects: listed.size, pages, resourceVersion };
    if (this.#synced) {
      this.#log.info({ ...fields, changes: changes.length }, 'relisted');
      return;
    }
    this.#synced = true;
    this.#log.info(fields, 'synced');
    const waiters = this.#syncWaiters;
    this.#syncWaiters = [];
    for (const waiter of waiters) waiter.resolve();
    if (this.#resyncPeriodMs > 0) {
      this.#resyncTimer = setInterval(() => this.#resync(), this.#resyncPeriodMs);
      this.#resyncTimer.unref();
    }
  }

  /**
   * Runs one watch from the current resourceVersion. Resolves 'ended' when the server closed a
   * watch that delivered events, 'quiet' when it closed one that delivered none, 'restarted'
   * when the watchdog or `restartWatch` ended it; rejects on errors, including 410.
   */
  async #watchOnce(): Promise<'ended' | 'quiet' | 'restarted'> {
    const connection = new AbortController();
    this.#currentWatch = connection;
    let events = 0;
    let lastEventAt = Date.now();
    let watchdog: ReturnType<typeof setTimeout> | undefined;
    // Checked lazily: events only record a timestamp, the timer re-arms itself when it was not
    // yet due, so the per-event cost is one Date.now().
    const arm = (delayMs: number): void => {
      watchdog = setTimeout(() => {
        const idleMs = Date.now() - lastEventAt;
        if (idleMs < this.#inactivityTimeoutMs) {
          arm(this.#inactivityTimeoutMs - idleMs);
          return;
        }
        this.#log.info(
          { idleMs, resourceVersion: this.#resourceVersion },
          'watch delivered nothing, not even a bookmark; restarting it',
        );
        connection.abort();
      }, delayMs);
      watchdog.unref();
    };
    arm(this.#inactivityTimeoutMs);
    const timeoutSeconds = this.#watchTimeoutSeconds ?? Math.floor(300 + this.#random() * 300);
    this.#log.debug({ resourceVersion: this.#resourceVersion, timeoutSeconds }, 'watching');
    try {
      await this.#listWatch.watch(
        { resourceVersion: this.#resourceVersion, timeoutSeconds, signal: connection.signal },
        (event) => {
          if (connection.signal.aborted) return;
          events += 1;
          lastEventAt = Date.now();
          this.#lastActivityAt = lastEventAt;
          this.#backoff.reset();
          this.#apply(event);
        },
      );
    } finally {
      clearTimeout(watchdog);
      if (this.#currentWatch === connection) this.#currentWatch = undefined;
    }
    if (connection.signal.aborted) return 'restarted';
    this.#log.debug({ events, resourceVersion: this.#resourceVersion }, 'watch ended');
    return events > 0 ? 'ended' : 'quiet';
  }

  /** Applies one watch event to the cache and reports the change. */
  #apply(event: WatchEvent): void {
    const resourceVersion = resourceVersionOf(event.object);
    if (event.type !== 'BOOKMARK') {
      const { key, object } = this.#decode(event.object, this.#rejected);
      if (key !== undefined) {
        const old = this.#cache.get(key);
        const changes = watchEventChanges(event.type, old, object);
        if (event.type === 'DELETED' || object === undefined) {
          this.#cache.delete(key);
          if (event.type === 'DELETED') this.#rejected.delete(key);
        } else {
          this.#cache.set(key, object);
        }
        for (const change of changes) this.#emit(change);
      }
    }
    // Only after the event is applied: a watch resumed from here must not skip it.
    if (resourceVersion !== undefined) this.#resourceVersion = resourceVersion;
  }

  /**
   * Strips managedFields and parses a raw object. Returns its key even when parsing fails, so a
   * cached object that no longer parses can be dropped; logs a rejected key once.
   */
  #decode(raw: unknown, rejected: Set<string>): { key?: string; object?: T } {
    const rawMeta = isRecord(raw) && isRecord(raw['metadata']) ? raw['metadata'] : {};
    const namespace = typeof rawMeta['namespace'] === 'string' ? rawMeta['namespace'] : undefined;
    const name = typeof rawMeta['name'] === 'string' ? rawMeta['name'] : undefined;
    const cached = this.#unchanged(namespace, name, rawMeta);
    if (cached !== undefined) return cached;
    stripManagedFields(raw);
    let object: T | undefined;
    let failure: string | undefined;
    try {
      object = this.#parse(raw);
      if (object !== undefined && this.#transform) object = this.#transform(object);
    } catch (error) {
      object = undefined;
      failure = error instanceof Error ? error.message : String(error);
    }
    const key = object ? objectKey(object) : objectKey({ metadata: { namespace, name } });
    if (object !== undefined && key !== undefined) {
      if (rejected.size > 0) rejected.delete(key);
      return { key, object };
    }
    const logKey = key ?? '';
    if (!rejected.has(logKey) && !this.#rejected.has(logKey)) {
      this.#log.warn(
        {
          namespace,
          name,
          resourceVersion: rawMeta['resourceVersion'],
          ...(failure ? { reason: failure } : {}),
        },
        'skipping an object that does not parse; it stays out of the cache until it does',
      );
    }
    rejected.add(logKey);
    return key === undefined ? {} : { key };
  }

  /**
   * The cached object when the raw one is the same version of it (same uid and resourceVersion):
   * a relist re-delivers every unchanged object, and parsing it again would only make garbage.
   */
  #unchanged(
    namespace: string | undefined,
    name: string | undefined,
    rawMeta: Record<string, unknown>,
  ): { key: string; object: T } | undefined {
    const resourceVersion = rawMeta['resourceVersion'];
    if (typeof resourceVersion !== 'string' || resourceVersion === '') return undefined;
    const key = objectKey({ metadata: { namespace, name } });
    if (key === undefined) return undefined;
    const cached = this.#cache.get(key);
    if (cached === undefined) return undefined;
    const meta = cached.metadata;
    if (meta.resourceVersion !== resourceVersion || meta.uid !== rawMeta['uid']) return undefined;
    return { key, object: cached };
  }

  #resync(): void {
    if (this.#stopped) return;
    for (const object of this.#cache.values()) {
      for (const handler of this.#handlers) {
        if (handler.onResync) this.#invoke(() => handler.onResync?.(object), 'onResync', object);
      }
    }
  }

  #emit(change: CacheChange<T>): void {
    // A handler may stop the informer halfway through a relist's changes.
    if (this.#stopped) return;
    for (const handler of this.#handlers) this.#call(handler, change);
  }

  #call(handler: InformerEventHandler<T>, change: CacheChange<T>): void {
    switch (change.type) {
      case 'add':
        if (handler.onAdd)
          this.#invoke(() => handler.onAdd?.(change.object), 'onAdd', change.object);
        return;
      case 'update':
        if (handler.onUpdate) {
          this.#invoke(
            () => handler.onUpdate?.(change.old, change.object),
            'onUpdate',
            change.object,
          );
        }
        return;
      case 'delete':
        if (handler.onDelete) {
          this.#invoke(() => handler.onDelete?.(change.object), 'onDelete', change.object);
        }
        return;
    }
  }

  #invoke(callback: () => void, which: string, object: T): void {
    try {
      callback();
    } catch (error) {
      const { namespace, name } = object.metadata;
      this.#log.error({ err: error, handler: which, namespace, name }, 'event handler threw');
    }
  }

  /** Waits out the next backoff delay, logging why (unless `why` is omitted). */
  async #retryDelay(why?: string, error?: unknown, level: 'info' | 'warn' = 'warn'): Promise<void> {
    const delayMs = this.#backoff.next();
    if (why !== undefined) {
      const fields = {
        ...(error === undefined ? {} : { err: error, status: statusCodeOf(error) }),
        attempt: this.#backoff.attempts,
        retryInMs: delayMs,
        resourceVersion: this.#resourceVersion,
      };
      this.#log[level](fields, `${why}; retrying`);
    }
    await sleep(delayMs, this.#stopping.signal, { unref: true });
  }
}

/**
 * The changes that turn `previous` into `next` for one key: a new object is an add, a gone one a
 * delete, a different resourceVersion an update, and a different uid (deleted and re-created
 * under the same name) a delete followed by an add.
 */
export function objectChanges<T extends KubeObject>(
  previous: T | undefined,
  next: T | undefined,
): CacheChange<T>[] {
  if (previous === undefined) return next === undefined ? [] : [{ type: 'add', object: next }];
  if (next === undefined) return [{ type: 'delete', object: previous }];
  const before = previous.metadata;
  const after = next.metadata;
  if (before.uid !== undefined && after.uid !== undefined && before.uid !== after.uid) {
    return [
      { type: 'delete', object: previous },
      { type: 'add', object: next },
    ];
  }
  if (before.resourceVersion !== undefined && before.resourceVersion === after.resourceVersion) {
    return [];
  }
  return [{ type: 'update', old: previous, object: next }];
}

/**
 * The changes from the cache to a fresh list (after a relist): deletes for objects no longer
 * listed first, then adds and updates in list order.
 */
export function diffCache<T extends KubeObject>(
  cache: ReadonlyMap<string, T>,
  listed: ReadonlyMap<string, T>,
): CacheChange<T>[] {
  const changes: CacheChange<T>[] = [];
  for (const [key, object] of cache) {
    if (!listed.has(key)) changes.push({ type: 'delete', object });
  }
  for (const [key, object] of listed) changes.push(...objectChanges(cache.get(key), object));
  return changes;
}

/**
 * The changes one watch event causes. `parsed` is the event's object if it parsed; an object
 * that stops parsing is reported as deleted, because a relist would leave it out too.
 */
export function watchEventChanges<T extends KubeObject>(
  type: 'ADDED' | 'MODIFIED' | 'DELETED',
  cached: T | undefined,
  parsed: T | undefined,
): CacheChange<T>[] {
  if (type === 'DELETED') {
    // Nothing to report for an object the handlers never saw.
    return cached === undefined ? [] : [{ type: 'delete', object: parsed ?? cached }];
  }
  return objectChanges(cached, parsed);
}

function resourceVersionOf(raw: unknown): string | undefined {
  if (!isRecord(raw) || !isRecord(raw['metadata'])) return undefined;
  const value = raw['metadata']['resourceVersion'];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/**
 * The promise's value, or undefined as soon as `signal` aborts, so that `stop()` never waits for a
 * request that ignores its signal.
 */
function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  return abortable(promise, signal).catch((error: unknown) => {
    if (signal.aborted) return undefined;
    throw error;
  });
}
