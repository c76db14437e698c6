import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type CacheChange,
  diffCache,
  Informer,
  type InformerEventHandler,
  objectChanges,
  watchEventChanges,
} from '../../../src/kube/informer.ts';
import { KubeApiError } from '../../../src/kube/kube-errors.ts';
import type {
  ListOptions,
  ListPage,
  ListWatch,
  WatchEvent,
  WatchEventType,
  WatchOptions,
} from '../../../src/kube/kube-list-watch.ts';
import { isRecord } from '../../../src/kube/kube-object.ts';
import { capturingLogger } from '../../support/logs.ts';

interface Widget {
  metadata: { namespace?: string; name?: string; uid?: string; resourceVersion?: string };
  spec: { size: number };
}

interface RawWidget {
  apiVersion: string;
  kind: string;
  metadata: {
    namespace: string;
    name: string;
    uid: string;
    resourceVersion: string;
    managedFields?: unknown[];
  };
  spec: { size: unknown };
}

/** Accepts widgets whose spec.size is a number, like a schema would. */
function parseWidget(raw: unknown): Widget | undefined {
  if (!isRecord(raw) || !isRecord(raw['metadata']) || !isRecord(raw['spec'])) return undefined;
  if (typeof raw['spec']['size'] !== 'number') return undefined;
  return raw as unknown as Widget;
}

/**
 * An in-memory API server for one resource: objects, an event history that watches replay from
 * any resourceVersion still held, compaction (older watches get 410), pagination with continue
 * tokens that expire on compaction, and queued failures.
 */
class FakeServer implements ListWatch {
  readonly objects = new Map<string, RawWidget>();
  readonly lists: ListOptions[] = [];
  readonly watches: WatchOptions[] = [];
  readonly listErrors: unknown[] = [];
  readonly watchErrors: unknown[] = [];
  private rv = 100;
  private uids = 0;
  private compactedTo = 0;
  private history: Array<{ rv: number; type: WatchEventType; object: RawWidget }> = [];
  private live:
    | { onEvent: (event: WatchEvent) => void; resolve: () => void; reject: (e: unknown) => void }
    | undefined;

  get watching(): boolean {
    return this.live !== undefined;
  }

  async list(options: ListOptions): Promise<ListPage> {
    this.lists.push(options);
    const error = this.listErrors.shift();
    if (error !== undefined) throw error;
    let offset = 0;
    if (options.continueToken !== undefined) {
      const [rv, at] = options.continueToken.split(':').map(Number) as [number, number];
      if (rv < this.compactedTo) throw new KubeApiError(410, 'Expired', 'continue token expired');
      offset = at;
    }
    const all = [...this.objects.keys()].sort();
    const keys = all.slice(offset, offset + options.limit);
    const next = offset + options.limit;
    return {
      items: keys.map((key) => structuredClone(this.objects.get(key))),
      resourceVersion: String(this.rv),
      continueToken: next < all.length ? `${this.rv}:${next}` : undefined,
    };
  }

  watch(options: WatchOptions, onEvent: (event: WatchEvent) => void): Promise<void> {
    this.watches.push(options);
    const error = this.watchErrors.shift();
    if (error !== undefined) return Promise.reject(error);
    const from = Number(options.resourceVersion);
    if (from < this.compactedTo) {
      return Promise.reject(new KubeApiError(410, 'Expired', `too old resource version: ${from}`));
    }
    return new Promise((resolve, reject) => {
      const session = { onEvent, resolve, reject };
      this.live = session;
      options.signal.addEventListener('abort', () => {
        if (this.live === session) this.live = undefined;
        resolve();
      });
      for (const event of this.history) {
        if (event.rv > from) onEvent({ type: event.type, object: structuredClone(event.object) });
      }
    });
  }

  create(name: string, size: unknown = 1, namespace = 'ns'): void {
    this.uids += 1;
    this.write('ADDED', {
      apiVersion: 'test/v1',
      kind: 'Widget',
      metadata: { namespace, name, uid: `uid-${this.uids}`, resourceVersion: '' },
      spec: { size },
    });
  }

  update(name: string, size: unknown, namespace = 'ns'): void {
    const current = this.objects.get(`${namespace}/${name}`);
    if (!current) throw new Error(`no ${namespace}/${name}`);
    this.write('MODIFIED', { ...structuredClone(current), spec: { size } });
  }

  remove(name: string, namespace = 'ns'): void {
    const current = this.objects.get(`${namespace}/${name}`);
    if (!current) throw new Error(`no ${namespace}/${name}`);
    this.write('DELETED', structuredClone(current));
  }

  bookmark(): void {
    this.live?.onEvent({
      type: 'BOOKMARK',
      object: { kind: 'Widget', metadata: { resourceVersion: String(this.rv) } },
    });
  }

  /** Sends an event again, as a flaky transport might. */
  redeliverLast(): void {
    const last = this.history.at(-1);
    if (last) this.live?.onEvent({ type: last.type, object: structuredClone(last.object) });
  }

  /** Ends the current watch cleanly, as the server does at timeoutSeconds. */
  closeWatch(): void {
    const session = this.live;
    this.live = undefined;
    session?.resolve();
  }

  failWatch(error: unknown): void {
    const session = this.live;
    this.live = undefined;
    session?.reject(error);
  }

  /** Forgets history up to now: older watches and continue tokens get 410 Gone. */
  compact(): void {
    this.rv += 1;
    this.compactedTo = this.rv;
    this.history = [];
  }

  private write(type: WatchEventType, object: RawWidget): void {
    this.rv += 1;
    object.metadata.resourceVersion = String(this.rv);
    object.metadata.managedFields = [{ manager: 'kubectl', operation: 'Update' }];
    const key = `${object.metadata.namespace}/${object.metadata.name}`;
    if (type === 'DELETED') this.objects.delete(key);
    else this.objects.set(key, object);
    this.history.push({ rv: this.rv, type, object });
    this.live?.onEvent({ type, object: structuredClone(object) });
  }
}

type Seen = [string, string, ...unknown[]];

/** Records handler calls as compact tuples: [event, key, size (, old size)]. */
function recorder(): { seen: Seen[]; handler: InformerEventHandler<Widget> } {
  const seen: Seen[] = [];
  const key = (w: Widget) => `${w.metadata.namespace}/${w.metadata.name}`;
  return {
    seen,
    handler: {
      onAdd: (w) => seen.push(['add', key(w), w.spec.size]),
      onUpdate: (old, w) => seen.push(['update', key(w), old.spec.size, w.spec.size]),
      onDelete: (w) => seen.push(['delete', key(w), w.spec.size]),
      onResync: (w) => seen.push(['resync', key(w), w.spec.size]),
    },
  };
}

/** Lets the informer's loop run: settles promises and fires timers due now. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await vi.advanceTimersByTimeAsync(0);
}

describe('Informer', () => {
  let server: FakeServer;
  let informer: Informer<Widget>;
  let log: ReturnType<typeof capturingLogger>;

  function makeInformer(
    options: Partial<{
      resyncPeriodMs: number;
      pageSize: number;
      parse: (raw: unknown) => Widget | undefined;
      transform: (widget: Widget) => Widget;
    }> = {},
  ) {
    return new Informer<Widget>({
      listWatch: server,
      group: 'test',
      version: 'v1',
      plural: 'widgets',
      parse: parseWidget,
      logger: log.logger,
      inactivityTimeoutMs: 90_000,
      backoff: { random: () => 0 },
      ...options,
    });
  }

  beforeEach(() => {
    vi.useFakeTimers();
    server = new FakeServer();
    log = capturingLogger();
    informer = makeInformer();
  });

  afterEach(async () => {
    await informer.stop();
    expect(vi.getTimerCount()).toBe(0);
    vi.useRealTimers();
  });

  describe('initial list', () => {
    it('lists every page, reports each object once, then syncs and watches from the list', async () => {
      for (const name of ['a', 'b', 'c', 'd', 'e']) server.create(name);
      informer = makeInformer({ pageSize: 2 });
      const { seen, handler } = recorder();
      informer.addEventHandler(handler);
      expect(informer.hasSynced()).toBe(false);
      const synced = informer.waitForSync();
      informer.start();
      await synced;

      expect(server.lists.map((l) => [l.limit, l.continueToken])).toEqual([
        [2, undefined],
        [2, '105:2'],
        [2, '105:4'],
      ]);
      expect(seen).toEqual(['a', 'b', 'c', 'd', 'e'].map((n) => ['add', `ns/${n}`, 1]));
      expect(informer.hasSynced()).toBe(true);
      expect(informer.keys().sort()).toEqual(['ns/a', 'ns/b', 'ns/c', 'ns/d', 'ns/e']);
      expect(informer.list()).toHaveLength(5);
      expect(informer.size).toBe(5);
      expect(informer.get('ns/c')?.spec.size).toBe(1);
      expect(informer.get('ns/zzz')).toBeUndefined();
      expect(informer.lastActivity()).toBe(Date.now());

      await settle();
      const watch = server.watches[0];
      expect(watch?.resourceVersion).toBe('105');
      expect(watch?.timeoutSeconds).toBeGreaterThanOrEqual(300);
      expect(watch?.timeoutSeconds).toBeLessThan(600);
      expect(log.lines.find((l) => l['msg'] === 'synced')).toMatchObject({
        resource: 'widgets.test',
        objects: 5,
        pages: 3,
      });
    });

    it('syncs on an empty list', async () => {
      informer.start();
      await informer.waitForSync();
      expect(informer.list()).toEqual([]);
    });

    it('caches objects without metadata.managedFields', async () => {
      server.create('a');
      informer.start();
      await informer.waitForSync();
      await settle();
      server.create('b');
      expect(informer.get('ns/a')?.metadata).not.toHaveProperty('managedFields');
      expect(informer.get('ns/b')?.metadata).not.toHaveProperty('managedFields');
      expect(informer.get('ns/b')?.metadata.uid).toBe('uid-2');
    });

    it('replays existing objects as adds to a handler registered after sync', async () => {
      server.create('a');
      server.create('b');
      informer.start();
      await informer.waitForSync();
      const { seen, handler } = recorder();
      const remove = informer.addEventHandler(handler);
      expect(seen).toEqual([
        ['add', 'ns/a', 1],
        ['add', 'ns/b', 1],
      ]);
      remove();
      await settle();
      server.create('c');
      expect(seen).toHaveLength(2);
    });
  });

  describe('watch', () => {
    async function started(): Promise<Seen[]> {
      const { seen, handler } = recorder();
      informer.addEventHandler(handler);
      informer.start();
      await informer.waitForSync();
      await settle();
      return seen;
    }

    it('reports adds, updates and deletes in order and keeps the cache current', async () => {
      const seen = await started();
      server.create('a', 1);
      server.update('a', 2);
      server.create('b', 7);
      server.remove('a');
      expect(seen).toEqual([
        ['add', 'ns/a', 1],
        ['update', 'ns/a', 1, 2],
        ['add', 'ns/b', 7],
        ['delete', 'ns/a', 2],
      ]);
      expect(informer.keys()).toEqual(['ns/b']);
    });

    it('does not report an event delivered twice', async () => {
      const seen = await started();
      server.create('a', 1);
      server.redeliverLast();
      server.update('a', 2);
      server.redeliverLast();
      expect(seen).toEqual([
        ['add', 'ns/a', 1],
        ['update', 'ns/a', 1, 2],
      ]);
    });

    it('resumes from the last event after the server ends the watch, losing nothing', async () => {
      const seen = await started();
      server.create('a');
      server.closeWatch();
      // Written while no watch is open: the next watch replays it from history.
      server.create('b');
      await settle();
      expect(server.watches.map((w) => w.resourceVersion)).toEqual(['100', '101']);
      expect(server.lists).toHaveLength(1);
      expect(seen.map(([type, key]) => `${type} ${key}`)).toEqual(['add ns/a', 'add ns/b']);
    });

    it('resumes from the resourceVersion of the last bookmark', async () => {
      await started();
      server.create('a');
      server.compact();
      server.bookmark();
      server.closeWatch();
      await settle();
      expect(server.watches.at(-1)?.resourceVersion).toBe('102');
      expect(server.lists).toHaveLength(1);
    });

    it('backs off before re-watching after a watch that ended without any event', async () => {
      await started();
      server.closeWatch();
      await settle();
      expect(server.watches).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(999);
      expect(server.watches).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(1);
      expect(server.watches).toHaveLength(2);
    });

    it('restarts a watch that delivered nothing for inactivityTimeoutMs, from where it was', async () => {
      const seen = await started();
      server.create('a');
      await vi.advanceTimersByTimeAsync(60_000);
      server.bookmark();
      await vi.advanceTimersByTimeAsync(89_000);
      expect(server.watches).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(1_000);
      await settle();
      expect(server.watches).toHaveLength(2);
      expect(server.watches[1]?.resourceVersion).toBe('101');
      expect(log.lines.some((l) => String(l['msg']).startsWith('watch delivered nothing'))).toBe(
        true,
      );
      server.create('b');
      expect(seen.map(([, key]) => key)).toEqual(['ns/a', 'ns/b']);
    });

    it('restarts the watch on restartWatch() without backoff or relist, losing nothing', async () => {
      const seen = await started();
      for (let i = 0; i < 20; i++) {
        server.create(`w${i}`, i);
        informer.restartWatch();
        expect(server.watching).toBe(false);
        server.update(`w${i}`, i + 100);
        await settle();
        expect(server.watching).toBe(true);
      }
      expect(server.lists).toHaveLength(1);
      expect(server.watches).toHaveLength(21);
      expect(seen).toHaveLength(40);
      for (let i = 0; i < 20; i++) expect(informer.get(`ns/w${i}`)?.spec.size).toBe(i + 100);
    });
  });

  describe('410 Gone', () => {
    it('relists after an expired watch and reports only the differences', async () => {
      server.create('keep', 1);
      server.create('change', 1);
      server.create('gone', 1);
      server.create('recreated', 1);
      const { seen, handler } = recorder();
      informer.addEventHandler(handler);
      informer.start();
      await informer.waitForSync();
      await settle();
      seen.length = 0;

      // Changes the informer misses: the watch breaks and history is compacted away meanwhile.
      informer.restartWatch();
      server.update('change', 2);
      server.remove('gone');
      server.remove('recreated');
      server.create('recreated', 9);
      server.create('new', 5);
      server.compact();
      await settle();
      expect(server.lists).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(1_000);
      await settle();

      expect(server.lists).toHaveLength(2);
      expect(seen).toEqual([
        ['delete', 'ns/gone', 1],
        ['update', 'ns/change', 1, 2],
        ['add', 'ns/new', 5],
        ['delete', 'ns/recreated', 1],
        ['add', 'ns/recreated', 9],
      ]);
      expect(informer.keys().sort()).toEqual(['ns/change', 'ns/keep', 'ns/new', 'ns/recreated']);
      expect(server.watches.at(-1)?.resourceVersion).toBe('110');
      expect(log.lines.some((l) => l['msg'] === 'relisted' && l['changes'] === 5)).toBe(true);
    });

    it('relists after an ERROR event with code 410 in the middle of a watch', async () => {
      const { seen, handler } = recorder();
      informer.addEventHandler(handler);
      informer.start();
      await informer.waitForSync();
      await settle();
      server.create('a');
      server.compact();
      server.failWatch(new KubeApiError(410, 'Expired', 'too old resource version'));
      await vi.advanceTimersByTimeAsync(1_000);
      await settle();
      expect(server.lists).toHaveLength(2);
      expect(seen).toEqual([['add', 'ns/a', 1]]);
      expect(server.watching).toBe(true);
    });

    it('starts the list over when a continue token expires', async () => {
      for (const name of ['a', 'b', 'c']) server.create(name);
      informer = makeInformer({ pageSize: 2 });
      const { seen, handler } = recorder();
      informer.addEventHandler(handler);
      const list = server.list.bind(server);
      let compacted = false;
      server.list = async (options) => {
        const page = await list(options);
        if (!compacted) {
          compacted = true;
          server.compact();
        }
        return page;
      };
      informer.start();
      await settle();
      await vi.advanceTimersByTimeAsync(1_000);
      await informer.waitForSync();
      expect(server.lists.map((l) => l.continueToken)).toEqual([
        undefined,
        '103:2',
        undefined,
        '104:2',
      ]);
      expect(seen.map(([, key]) => key)).toEqual(['ns/a', 'ns/b', 'ns/c']);
    });
  });

  describe('failures', () => {
    it('retries a failing list with growing backoff and never gives up', async () => {
      server.listErrors.push(
        new KubeApiError(500, 'InternalError', 'boom'),
        new KubeApiError(429, 'TooManyRequests', 'storage is (re)initializing'),
        new TypeError('fetch failed'),
        new KubeApiError(503, undefined, 'unavailable'),
      );
      informer.start();
      await settle();
      const times: number[] = [];
      let previous = server.lists.length;
      const startedAt = Date.now();
      while (!informer.hasSynced()) {
        await vi.advanceTimersByTimeAsync(100);
        if (server.lists.length !== previous) {
          previous = server.lists.length;
          times.push(Date.now() - startedAt);
        }
      }
      expect(times).toEqual([1_000, 3_000, 7_000, 15_000]);
      const warnings = log.lines.filter((l) => l['msg'] === 'list failed; retrying');
      expect(warnings.map((l) => [l['status'], l['retryInMs']])).toEqual([
        [500, 1_000],
        [429, 2_000],
        [undefined, 4_000],
        [503, 8_000],
      ]);
    });

    it('caps the backoff at 30 s', async () => {
      for (let i = 0; i < 10; i++) server.listErrors.push(new KubeApiError(500, undefined, 'x'));
      informer.start();
      await settle();
      await vi.advanceTimersByTimeAsync(10 * 30_000);
      const delays = log.lines.filter((l) => l['level'] === 'warn').map((l) => l['retryInMs']);
      expect(delays).toEqual([
        1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000, 30_000, 30_000,
      ]);
      expect(informer.hasSynced()).toBe(true);
    });

    it('retries a refused watch from the same resourceVersion without relisting', async () => {
      server.watchErrors.push(
        new KubeApiError(429, 'TooManyRequests', 'storage is (re)initializing'),
        new KubeApiError(429, 'TooManyRequests', 'storage is (re)initializing'),
      );
      informer.start();
      await informer.waitForSync();
      await settle();
      await vi.advanceTimersByTimeAsync(1_000);
      await vi.advanceTimersByTimeAsync(2_000);
      expect(server.watches.map((w) => w.resourceVersion)).toEqual(['100', '100', '100']);
      expect(server.lists).toHaveLength(1);
      expect(server.watching).toBe(true);
    });

    it('resets the backoff once a watch delivers events again', async () => {
      informer.start();
      await informer.waitForSync();
      await settle();
      for (const code of [500, 500]) {
        server.failWatch(new KubeApiError(code, undefined, 'x'));
        await vi.advanceTimersByTimeAsync(4_000);
      }
      server.create('a');
      server.failWatch(new KubeApiError(500, undefined, 'x'));
      await settle();
      const delays = log.lines.filter((l) => l['level'] === 'warn').map((l) => l['retryInMs']);
      expect(delays).toEqual([1_000, 2_000, 1_000]);
    });

    it('survives a handler that throws, and still calls the other handlers', async () => {
      const { seen, handler } = recorder();
      informer.addEventHandler({
        onAdd: () => {
          throw new Error('handler bug');
        },
      });
      informer.addEventHandler(handler);
      informer.start();
      await informer.waitForSync();
      await settle();
      server.create('a');
      server.create('b');
      expect(seen.map(([, key]) => key)).toEqual(['ns/a', 'ns/b']);
      const errors = log.lines.filter((l) => l['msg'] === 'event handler threw');
      expect(errors).toHaveLength(2);
      expect(errors[0]).toMatchObject({ handler: 'onAdd', namespace: 'ns', name: 'a' });
    });
  });

  describe('transform and parsing', () => {
    it('caches what transform returns, for handlers, get and list alike', async () => {
      server.create('a', 1);
      const transform = (w: Widget): Widget => ({
        metadata: w.metadata,
        spec: { size: -w.spec.size },
      });
      informer = makeInformer({ transform });
      const { seen, handler } = recorder();
      informer.addEventHandler(handler);
      informer.start();
      await informer.waitForSync();
      await settle();
      server.update('a', 2);
      expect(seen).toEqual([
        ['add', 'ns/a', -1],
        ['update', 'ns/a', -1, -2],
      ]);
      expect(informer.get('ns/a')?.spec.size).toBe(-2);
      expect(informer.list().map((w) => w.spec.size)).toEqual([-2]);
    });

    it('parses and transforms an object once per resourceVersion, also across a relist', async () => {
      server.create('keep', 1);
      server.create('change', 1);
      const parsed: string[] = [];
      const transformed: string[] = [];
      informer = makeInformer({
        parse: (raw) => {
          const widget = parseWidget(raw);
          if (widget) parsed.push(`${widget.metadata.name}@${widget.metadata.resourceVersion}`);
          return widget;
        },
        transform: (w) => {
          transformed.push(`${w.metadata.name}@${w.metadata.resourceVersion}`);
          return { ...w };
        },
      });
      informer.start();
      await informer.waitForSync();
      await settle();
      const kept = informer.get('ns/keep');
      server.redeliverLast();

      informer.restartWatch();
      server.update('change', 2);
      server.compact();
      await vi.advanceTimersByTimeAsync(1_000);
      await settle();

      expect(server.lists).toHaveLength(2);
      expect(parsed).toEqual(['change@102', 'keep@101', 'change@103']);
      expect(transformed).toEqual(parsed);
      // The unchanged object is the very one cached before the relist.
      expect(informer.get('ns/keep')).toBe(kept);
      expect(informer.get('ns/change')?.spec.size).toBe(2);
    });

    it('parses again an object re-created under its name at the same resourceVersion', async () => {
      server.create('a', 1);
      informer.start();
      await informer.waitForSync();
      const first = informer.get('ns/a');
      // Another uid with the cached resourceVersion (cannot happen with one etcd, but the key
      // alone must not decide).
      const raw = structuredClone(server.objects.get('ns/a'));
      if (!raw) throw new Error('no ns/a');
      raw.metadata.uid = 'other';
      raw.spec.size = 7;
      server.objects.set('ns/a', raw);
      informer.restartWatch();
      server.compact();
      await vi.advanceTimersByTimeAsync(1_000);
      await settle();
      expect(informer.get('ns/a')).not.toBe(first);
      expect(informer.get('ns/a')?.spec.size).toBe(7);
    });

    it('leaves out an object whose transform throws, like one that does not parse', async () => {
      server.create('a', 1);
      informer = makeInformer({
        transform: () => {
          throw new Error('boom');
        },
      });
      informer.start();
      await informer.waitForSync();
      expect(informer.size).toBe(0);
      expect(log.lines.find((l) => l['level'] === 'warn')).toMatchObject({
        name: 'a',
        reason: 'boom',
      });
    });
  });

  describe('objects that do not parse', () => {
    it('are skipped and logged once per name until they parse', async () => {
      server.create('bad', 'not a number');
      server.create('good', 1);
      const { seen, handler } = recorder();
      informer.addEventHandler(handler);
      informer.start();
      await informer.waitForSync();
      await settle();
      server.update('bad', 'still not');
      server.update('bad', 'nope');
      expect(informer.keys()).toEqual(['ns/good']);
      const warnings = log.lines.filter((l) => l['level'] === 'warn');
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toMatchObject({ namespace: 'ns', name: 'bad', resourceVersion: '101' });

      server.update('bad', 3);
      expect(seen.at(-1)).toEqual(['add', 'ns/bad', 3]);
      // Broken again: it leaves the cache (as a relist would leave it out) and is logged again.
      server.update('bad', 'broken');
      expect(seen.at(-1)).toEqual(['delete', 'ns/bad', 3]);
      expect(informer.get('ns/bad')).toBeUndefined();
      expect(log.lines.filter((l) => l['level'] === 'warn')).toHaveLength(2);
      // Deleting an object the handlers never saw reports nothing.
      server.remove('bad');
      expect(seen.at(-1)).toEqual(['delete', 'ns/bad', 3]);
    });

    it('are skipped when parse throws, with the reason', async () => {
      server.create('a');
      informer = new Informer<Widget>({
        listWatch: server,
        group: 'test',
        version: 'v1',
        plural: 'widgets',
        parse: () => {
          throw new Error('spec.size: expected number');
        },
        logger: log.logger,
      });
      informer.start();
      await informer.waitForSync();
      expect(informer.size).toBe(0);
      expect(log.lines.find((l) => l['level'] === 'warn')).toMatchObject({
        name: 'a',
        reason: 'spec.size: expected number',
      });
    });
  });

  describe('resync', () => {
    it('offers every cached object again each period', async () => {
      server.create('a');
      server.create('b');
      informer = makeInformer({ resyncPeriodMs: 60_000 });
      const { seen, handler } = recorder();
      informer.addEventHandler(handler);
      informer.start();
      await informer.waitForSync();
      seen.length = 0;
      await vi.advanceTimersByTimeAsync(59_999);
      expect(seen).toEqual([]);
      await vi.advanceTimersByTimeAsync(1);
      expect(seen).toEqual([
        ['resync', 'ns/a', 1],
        ['resync', 'ns/b', 1],
      ]);
      await vi.advanceTimersByTimeAsync(60_000);
      expect(seen).toHaveLength(4);
    });

    it('is off when resyncPeriodMs is 0', async () => {
      server.create('a');
      informer = makeInformer({ resyncPeriodMs: 0 });
      const { seen, handler } = recorder();
      informer.addEventHandler(handler);
      informer.start();
      await informer.waitForSync();
      await vi.advanceTimersByTimeAsync(3_600_000);
      expect(seen.filter(([type]) => type === 'resync')).toEqual([]);
    });
  });

  describe('stop and waitForSync', () => {
    it('stops watching, clears its timers and calls no handler afterwards', async () => {
      const { seen, handler } = recorder();
      informer.addEventHandler(handler);
      informer.start();
      await informer.waitForSync();
      await settle();
      await informer.stop();
      expect(server.watching).toBe(false);
      expect(vi.getTimerCount()).toBe(0);
      server.create('a');
      await vi.advanceTimersByTimeAsync(3_600_000);
      expect(seen).toEqual([]);
      informer.start();
      expect(server.lists).toHaveLength(1);
    });

    it('stops while waiting out a backoff', async () => {
      server.listErrors.push(new KubeApiError(500, undefined, 'x'));
      informer.start();
      await settle();
      expect(vi.getTimerCount()).toBe(1);
      await informer.stop();
      expect(vi.getTimerCount()).toBe(0);
      expect(server.lists).toHaveLength(1);
    });

    it('rejects pending waitForSync calls on stop, and later ones at once', async () => {
      server.listErrors.push(new KubeApiError(500, undefined, 'x'));
      informer.start();
      const waiting = informer.waitForSync();
      await informer.stop();
      await expect(waiting).rejects.toThrow(/informer for widgets.test stopped before it synced/);
      await expect(informer.waitForSync()).rejects.toThrow(/stopped before it synced/);
    });

    it('rejects waitForSync with the abort reason of its signal', async () => {
      server.listErrors.push(new KubeApiError(500, undefined, 'x'));
      informer.start();
      const controller = new AbortController();
      const waiting = informer.waitForSync(controller.signal);
      controller.abort(new Error('gave up waiting'));
      await expect(waiting).rejects.toThrow('gave up waiting');
      await expect(informer.waitForSync(controller.signal)).rejects.toThrow('gave up waiting');
    });

    it('hands the stop signal to an in-flight list', async () => {
      let signal: AbortSignal | undefined;
      server.list = (options) => {
        signal = options.signal;
        return new Promise(() => {});
      };
      informer.start();
      await settle();
      await informer.stop();
      expect(signal?.aborted).toBe(true);
    });
  });

  it('rejects a non-positive inactivity timeout', () => {
    expect(
      () =>
        new Informer<Widget>({
          listWatch: server,
          group: 'test',
          version: 'v1',
          plural: 'widgets',
          parse: parseWidget,
          logger: log.logger,
          inactivityTimeoutMs: 0,
        }),
    ).toThrow(/inactivityTimeoutMs must be positive/);
  });
});

describe('objectChanges / diffCache / watchEventChanges', () => {
  const w = (name: string, rv: string, uid = `uid-${name}`, size = 1): Widget => ({
    metadata: { namespace: 'ns', name, uid, resourceVersion: rv },
    spec: { size },
  });
  const brief = (changes: CacheChange<Widget>[]) =>
    changes.map((c) =>
      c.type === 'update'
        ? `update ${c.object.metadata.name} ${c.old.metadata.resourceVersion}->${c.object.metadata.resourceVersion}`
        : `${c.type} ${c.object.metadata.name}@${c.object.metadata.resourceVersion}`,
    );

  it.each([
    ['nothing to nothing', undefined, undefined, []],
    ['new object', undefined, w('a', '1'), ['add a@1']],
    ['gone object', w('a', '1'), undefined, ['delete a@1']],
    ['same resourceVersion', w('a', '1'), w('a', '1'), []],
    ['new resourceVersion', w('a', '1'), w('a', '2'), ['update a 1->2']],
    [
      're-created under the same name',
      w('a', '1', 'u1'),
      w('a', '5', 'u2'),
      ['delete a@1', 'add a@5'],
    ],
    ['no uid known', w('a', '1', ''), w('a', '2', ''), ['update a 1->2']],
  ] as const)('%s', (_, previous, next, expected) => {
    expect(brief(objectChanges<Widget>(previous, next))).toEqual(expected);
  });

  it('diffs a relist: deletes first, then adds and updates in list order', () => {
    const cache = new Map([
      ['ns/a', w('a', '1')],
      ['ns/b', w('b', '1')],
      ['ns/c', w('c', '1')],
    ]);
    const listed = new Map([
      ['ns/d', w('d', '7')],
      ['ns/c', w('c', '1')],
      ['ns/a', w('a', '4')],
    ]);
    expect(brief(diffCache(cache, listed))).toEqual(['delete b@1', 'add d@7', 'update a 1->4']);
    expect(diffCache(cache, cache)).toEqual([]);
    expect(brief(diffCache(new Map(), listed))).toEqual(['add d@7', 'add c@1', 'add a@4']);
    expect(brief(diffCache(cache, new Map()))).toEqual(['delete a@1', 'delete b@1', 'delete c@1']);
  });

  it('maps watch events, preferring the final state of a deleted object', () => {
    expect(brief(watchEventChanges('DELETED', w('a', '1'), w('a', '2')))).toEqual(['delete a@2']);
    expect(brief(watchEventChanges('DELETED', w('a', '1'), undefined))).toEqual(['delete a@1']);
    expect(watchEventChanges('DELETED', undefined, w('a', '2'))).toEqual([]);
    expect(brief(watchEventChanges('ADDED', w('a', '1'), w('a', '2')))).toEqual(['update a 1->2']);
    expect(brief(watchEventChanges('MODIFIED', undefined, w('a', '2')))).toEqual(['add a@2']);
    expect(brief(watchEventChanges('MODIFIED', w('a', '1'), undefined))).toEqual(['delete a@1']);
  });
});
