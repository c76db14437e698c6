import { afterEach } from 'vitest';
import type { AgentRun, AgentRunStatus } from '../../../src/api/agentrun.ts';
import { ConditionType, findCondition } from '../../../src/api/conditions.ts';
import {
  AgentRunReconciler,
  type ReconcilerOptions,
  type RunEvents,
  type RunStore,
} from '../../../src/controller/agentrun-reconciler.ts';
import {
  type AgentRunWriter,
  ConflictError,
  NotFoundError,
} from '../../../src/controller/agentrun-writer.ts';
import { noopHandler } from '../../../src/handlers/noop.ts';
import { HandlerRegistry } from '../../../src/handlers/registry.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { RETRY } from './fixtures.ts';

/**
 * An in-memory API server and informer cache for the reconciler's unit tests. Writes apply at
 * once to `runs` (the API server's truth) and, unless `lagging` is set, to the cache the
 * reconciler reads: a lagging cache keeps what it had, as an informer does before the watch
 * event of our own write arrives. Preconditions behave like the API server's: a resourceVersion
 * that moved on is a ConflictError, a vanished object a NotFoundError.
 */
export class FakeCluster implements AgentRunWriter, RunStore, RunEvents {
  readonly runs = new Map<string, AgentRun>();
  readonly cache = new Map<string, AgentRun>();
  readonly statusWrites: Array<{ key: string; status: AgentRunStatus }> = [];
  readonly events: Array<{ key: string; type: string; reason: string; message: string }> = [];
  /** While true, writes reach `runs` but not the cache. */
  lagging = false;
  /** Status writes to refuse (with a 500-like error) before accepting again. */
  failStatusWrites = 0;
  /** The next status write lands, and then throws as if its answer was lost (a timeout). */
  loseNextAnswer = false;
  /** Reads to fail (as in an outage) before answering again. */
  failReads = 0;
  #version = 100;

  /** Creates (or replaces) the object in the API server and the cache; returns its key. */
  add(run: AgentRun): string {
    const key = keyOf(run);
    this.runs.set(key, run);
    this.cache.set(key, run);
    return key;
  }

  /** Deletes the object outright (no finalizer), as the watch would report it. */
  remove(key: string): void {
    this.runs.delete(key);
    this.cache.delete(key);
  }

  /** The cache catches up with the API server. */
  sync(): void {
    this.cache.clear();
    for (const [key, run] of this.runs) this.cache.set(key, run);
  }

  get(key: string): AgentRun | undefined {
    return this.cache.get(key);
  }

  async read(run: AgentRun): Promise<AgentRun | undefined> {
    if (this.failReads > 0) {
      this.failReads--;
      throw new Error('read failed: the API server did not answer an HTTP/2 ping');
    }
    const stored = this.runs.get(keyOf(run));
    return stored?.metadata.uid === run.metadata.uid ? stored : undefined;
  }

  reasonOf(key: string): string | undefined {
    return findCondition(this.runs.get(key)?.status?.conditions, ConditionType.Succeeded)?.reason;
  }

  conditionOf(key: string, type: ConditionType) {
    return findCondition(this.runs.get(key)?.status?.conditions, type);
  }

  record(run: AgentRun, type: string, reason: string, message: string): void {
    this.events.push({ key: keyOf(run), type, reason, message });
  }

  async writeStatus(run: AgentRun, status: AgentRunStatus, expect?: string): Promise<AgentRun> {
    const current = this.#current(run, 'status write');
    if (this.failStatusWrites > 0) {
      this.failStatusWrites--;
      throw new Error('status write failed: 500 Internal Server Error');
    }
    if (expect !== undefined && expect !== current.metadata.resourceVersion) {
      throw new ConflictError('status write');
    }
    const written = this.#store({ ...current, status });
    this.statusWrites.push({ key: keyOf(run), status });
    if (this.loseNextAnswer) {
      this.loseNextAnswer = false;
      throw new Error('answer lost: the operation was aborted due to timeout');
    }
    return written;
  }

  async addFinalizer(run: AgentRun, finalizer: string): Promise<AgentRun> {
    const finalizers = run.metadata.finalizers ?? [];
    if (finalizers.includes(finalizer)) return run;
    return this.#setFinalizers(run, [...finalizers, finalizer]);
  }

  async removeFinalizer(run: AgentRun, finalizer: string): Promise<AgentRun> {
    const finalizers = (run.metadata.finalizers ?? []).filter((f) => f !== finalizer);
    return this.#setFinalizers(run, finalizers);
  }

  async delete(run: AgentRun): Promise<void> {
    const key = keyOf(run);
    if (this.runs.get(key)?.metadata.uid !== run.metadata.uid) return;
    const current = this.runs.get(key);
    if (current?.metadata.finalizers?.length) {
      this.#store({
        ...current,
        metadata: { ...current.metadata, deletionTimestamp: new Date().toISOString() },
      });
      return;
    }
    this.remove(key);
  }

  #setFinalizers(run: AgentRun, finalizers: string[]): AgentRun {
    const current = this.#current(run, 'finalizer update');
    if (run.metadata.resourceVersion !== current.metadata.resourceVersion) {
      throw new ConflictError('finalizer update');
    }
    const key = keyOf(run);
    if (finalizers.length === 0 && current.metadata.deletionTimestamp !== undefined) {
      this.remove(key);
      return { ...current, metadata: { ...current.metadata, finalizers } };
    }
    return this.#store({ ...current, metadata: { ...current.metadata, finalizers } });
  }

  #current(run: AgentRun, what: string): AgentRun {
    const current = this.runs.get(keyOf(run));
    if (!current || current.metadata.uid !== run.metadata.uid) throw new NotFoundError(what);
    return current;
  }

  #store(run: AgentRun): AgentRun {
    const key = keyOf(run);
    const stored = {
      ...run,
      metadata: { ...run.metadata, resourceVersion: String(++this.#version) },
    };
    this.runs.set(key, stored);
    if (!this.lagging) this.cache.set(key, stored);
    return stored;
  }
}

function keyOf(run: AgentRun): string {
  return `${run.metadata.namespace}/${run.metadata.name}`;
}

/** Resolves the next time `key` is put back on the (fake) work queue. */
export class Enqueued {
  readonly keys: string[] = [];
  #waiters: Array<{ key: string; resolve: () => void }> = [];

  readonly enqueue = (key: string): void => {
    this.keys.push(key);
    const ready = this.#waiters.filter((w) => w.key === key);
    this.#waiters = this.#waiters.filter((w) => w.key !== key);
    for (const w of ready) w.resolve();
  };

  next(key: string): Promise<void> {
    return new Promise((resolve) => this.#waiters.push({ key, resolve }));
  }
}

const reconcilers: AgentRunReconciler[] = [];
afterEach(async () => {
  for (const r of reconcilers.splice(0)) {
    await r.executor.drain(0);
    await r.settled();
  }
});

/**
 * A reconciler over a FakeCluster with the noop handler, one handler slot and a frozen clock
 * (the real time of the test, because the executor's deadline timers use the real clock).
 * Stopped after each test.
 */
export function fakeReconciler(options: Partial<ReconcilerOptions> = {}) {
  const cluster = new FakeCluster();
  const enqueued = new Enqueued();
  const now = new Date();
  const reconciler = new AgentRunReconciler({
    store: cluster,
    writer: cluster,
    handlers: new HandlerRegistry([noopHandler]),
    events: cluster,
    logger: silentLogger(),
    maxConcurrentRuns: 1,
    retry: RETRY,
    finalizerAfterMs: 60_000,
    enqueue: enqueued.enqueue,
    now: () => now,
    ...options,
  });
  reconcilers.push(reconciler);
  return { cluster, reconciler, enqueued, now };
}
