import { ExponentialRateLimiter, type RateLimiter } from './rate-limiter.ts';

/**
 * Hooks for the work queue's Prometheus metrics, named after client-go's workqueue metrics. The
 * queue calls them synchronously on its hot path, so they must be cheap and must not throw.
 */
export interface WorkQueueMetrics {
  /** A key entered the queue (it was not already waiting): `workqueue_adds_total`. */
  add(): void;
  /** Keys waiting to be processed, after every change: `workqueue_depth`. */
  depth(n: number): void;
  /** Seconds a key waited between being added and handed out: `workqueue_queue_duration_seconds`. */
  queueDuration(seconds: number): void;
  /** Seconds between `get` and `done` for a key: `workqueue_work_duration_seconds`. */
  workDuration(seconds: number): void;
  /** `addRateLimited` was called: `workqueue_retries_total`. */
  retry(): void;
}

const noMetrics: WorkQueueMetrics = {
  add: () => {},
  depth: () => {},
  queueDuration: () => {},
  workDuration: () => {},
  retry: () => {},
};

export interface WorkQueueOptions {
  /** Backoff of `addRateLimited`; default per-key exponential, 5 ms doubling up to 1000 s. */
  readonly rateLimiter?: RateLimiter;
  /** Metrics hooks; default none. */
  readonly metrics?: WorkQueueMetrics;
  /** Monotonic clock in milliseconds; default `performance.now`. */
  readonly now?: () => number;
}

/**
 * A work queue of string keys (`namespace/name`) with client-go's guarantees:
 * - a key waiting in the queue is there once (adding it again is a no-op);
 * - a key is never handed to two workers at once: a key re-added while a worker holds it is
 *   marked dirty and queued again only after `done(key)`;
 * - otherwise first in, first out.
 *
 * Every worker must call `done(key)` for each key it got, whatever the outcome, and then either
 * `forget(key)` (success) or `addRateLimited(key)` (retry with backoff).
 *
 * Unlike client-go, `get()` returns `undefined` as soon as the queue is shut down, even if keys are
 * still waiting: they are dropped, since a level-based controller re-lists everything when it
 * starts again and a shutting-down operator should not start new work.
 */
export class WorkQueue {
  readonly #rateLimiter: RateLimiter;
  readonly #metrics: WorkQueueMetrics;
  readonly #now: () => number;

  /** Keys ready to be handed out, in order. */
  readonly #ready = new Fifo<string>();
  /** Keys waiting to be processed: in `ready`, or held back because a worker has them. */
  readonly #dirty = new Set<string>();
  /** Keys handed out and not yet done, with the time they were handed out. */
  readonly #processing = new Map<string, number>();
  /** When each waiting key was added, for `queueDuration`. */
  readonly #addedAt = new Map<string, number>();
  /** Pending `get()` calls, served in order. */
  readonly #waiters = new Fifo<(key: string | undefined) => void>();
  readonly #delayed = new DelayHeap();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Number.POSITIVE_INFINITY;
  #stopping = false;
  #drained: Array<() => void> = [];

  constructor(options: WorkQueueOptions = {}) {
    this.#rateLimiter = options.rateLimiter ?? new ExponentialRateLimiter();
    this.#metrics = options.metrics ?? noMetrics;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Queues the key unless it is already waiting. Ignored after shutdown. */
  add(key: string): void {
    if (this.#stopping || this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (!this.#addedAt.has(key)) this.#addedAt.set(key, this.#now());
    this.#metrics.add();
    this.#metrics.depth(this.#dirty.size);
    if (!this.#processing.has(key)) this.#enqueue(key);
  }

  /**
   * Queues the key after `delayMs` (immediately if not positive). If the key is already waiting
   * for a delay, the earlier of the two deadlines wins.
   */
  addAfter(key: string, delayMs: number): void {
    if (this.#stopping) return;
    if (!(delayMs > 0)) {
      this.add(key);
      return;
    }
    this.#delayed.setEarliest(key, this.#now() + delayMs);
    this.#schedule();
  }

  /** Queues the key after the rate limiter's backoff for it; counts a retry. */
  addRateLimited(key: string): void {
    if (this.#stopping) return;
    this.#metrics.retry();
    this.addAfter(key, this.#rateLimiter.when(key));
  }

  /** Resets the key's backoff. Does not remove the key from the queue. */
  forget(key: string): void {
    this.#rateLimiter.forget(key);
  }

  /** Failures counted for the key since it was last forgotten. */
  numRequeues(key: string): number {
    return this.#rateLimiter.numRequeues(key);
  }

  /**
   * The next key to process, waiting for one if the queue is empty; `undefined` once the queue is
   * shut down. The caller owns the key until it calls `done(key)`.
   */
  get(): Promise<string | undefined> {
    if (this.#stopping) return Promise.resolve(undefined);
    const key = this.#ready.shift();
    if (key !== undefined) {
      this.#handOut(key);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Ends the processing of a key; if it was re-added meanwhile it is queued again now. */
  done(key: string): void {
    const startedAt = this.#processing.get(key);
    if (startedAt === undefined) return;
    this.#processing.delete(key);
    this.#metrics.workDuration((this.#now() - startedAt) / 1000);
    if (this.#stopping) {
      if (this.#processing.size === 0) this.#resolveDrained();
      return;
    }
    if (this.#dirty.has(key)) this.#enqueue(key);
  }

  /** Keys ready to be handed out (client-go's `Len`: excludes keys held back while in flight). */
  len(): number {
    return this.#ready.length;
  }

  get shuttingDown(): boolean {
    return this.#stopping;
  }

  /**
   * Stops the queue: pending and future `get()` calls return `undefined`, waiting and delayed keys
   * are dropped, later adds are ignored. Keys already handed out may still be marked `done`.
   */
  shutDown(): void {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#delayed.clear();
    this.#ready.clear();
    this.#dirty.clear();
    this.#addedAt.clear();
    this.#metrics.depth(0);
    for (let waiter = this.#waiters.shift(); waiter; waiter = this.#waiters.shift()) {
      waiter(undefined);
    }
    if (this.#processing.size === 0) this.#resolveDrained();
  }

  /** Shuts the queue down and resolves once every key handed out has been marked `done`. */
  shutDownWithDrain(): Promise<void> {
    const drained = new Promise<void>((resolve) => this.#drained.push(resolve));
    this.shutDown();
    if (this.#processing.size === 0) this.#resolveDrained();
    return drained;
  }

  /** Seconds of work in progress, summed over keys handed out and not done (for a collector). */
  unfinishedWorkSeconds(): number {
    const now = this.#now();
    let total = 0;
    for (const startedAt of this.#processing.values()) total += now - startedAt;
    return total / 1000;
  }

  /** Seconds the longest-running key in progress has been held (for a collector). */
  longestRunningProcessorSeconds(): number {
    const now = this.#now();
    let longest = 0;
    for (const startedAt of this.#processing.values()) longest = Math.max(longest, now - startedAt);
    return longest / 1000;
  }

  #enqueue(key: string): void {
    const waiter = this.#waiters.shift();
    if (waiter === undefined) {
      this.#ready.push(key);
      return;
    }
    this.#handOut(key);
    waiter(key);
  }

  #handOut(key: string): void {
    const now = this.#now();
    this.#dirty.delete(key);
    this.#processing.set(key, now);
    const addedAt = this.#addedAt.get(key);
    if (addedAt !== undefined) {
      this.#addedAt.delete(key);
      this.#metrics.queueDuration((now - addedAt) / 1000);
    }
    this.#metrics.depth(this.#dirty.size);
  }

  /** Keeps one timer, armed for the earliest delayed key. */
  #schedule(): void {
    const next = this.#delayed.peekTime();
    if (next === undefined) {
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerAt = Number.POSITIVE_INFINITY;
      return;
    }
    if (this.#timer !== undefined && this.#timerAt <= next) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = next;
    this.#timer = setTimeout(() => this.#fire(), Math.max(0, Math.ceil(next - this.#now())));
    // A pending requeue must not keep an otherwise finished process alive.
    this.#timer.unref();
  }

  #fire(): void {
    this.#timer = undefined;
    this.#timerAt = Number.POSITIVE_INFINITY;
    const now = this.#now();
    for (let key = this.#delayed.popDue(now); key !== undefined; key = this.#delayed.popDue(now)) {
      this.add(key);
    }
    if (!this.#stopping) this.#schedule();
  }

  #resolveDrained(): void {
    const waiting = this.#drained;
    this.#drained = [];
    for (const resolve of waiting) resolve();
  }
}

/**
 * A first-in first-out buffer on a growable ring: push and shift are O(1), unlike
 * `Array.prototype.shift`, which moves every remaining element.
 */
export class Fifo<T> {
  #slots: Array<T | undefined> = new Array(16);
  #head = 0;
  #size = 0;

  get length(): number {
    return this.#size;
  }

  push(value: T): void {
    if (this.#size === this.#slots.length) this.#grow();
    this.#slots[(this.#head + this.#size) & (this.#slots.length - 1)] = value;
    this.#size += 1;
  }

  shift(): T | undefined {
    if (this.#size === 0) return undefined;
    const value = this.#slots[this.#head];
    // Release the reference so the buffer does not retain handed-out values.
    this.#slots[this.#head] = undefined;
    this.#head = (this.#head + 1) & (this.#slots.length - 1);
    this.#size -= 1;
    return value;
  }

  clear(): void {
    this.#slots = new Array(16);
    this.#head = 0;
    this.#size = 0;
  }

  /** Doubles the capacity, keeping it a power of two so indices wrap with a mask. */
  #grow(): void {
    const next: Array<T | undefined> = new Array(this.#slots.length * 2);
    for (let i = 0; i < this.#size; i++) {
      next[i] = this.#slots[(this.#head + i) & (this.#slots.length - 1)];
    }
    this.#slots = next;
    this.#head = 0;
  }
}

interface Delayed {
  readonly key: string;
  readyAt: number;
  index: number;
}

/** Delayed keys in a binary min-heap by deadline, with at most one entry per key. */
class DelayHeap {
  readonly #heap: Delayed[] = [];
  readonly #byKey = new Map<string, Delayed>();

  /** Adds the key with this deadline, or moves an existing entry earlier (never later). */
  setEarliest(key: string, readyAt: number): void {
    const existing = this.#byKey.get(key);
    if (existing) {
      if (readyAt < existing.readyAt) {
        existing.readyAt = readyAt;
        this.#up(existing.index);
      }
      return;
    }
    const entry: Delayed = { key, readyAt, index: this.#heap.length };
    this.#heap.push(entry);
    this.#byKey.set(key, entry);
    this.#up(entry.index);
  }

  peekTime(): number | undefined {
    return this.#heap[0]?.readyAt;
  }

  /** Removes and returns the earliest key if its deadline is at or before `now`. */
  popDue(now: number): string | undefined {
    const top = this.#heap[0];
    if (top === undefined || top.readyAt > now) return undefined;
    const last = this.#heap.pop() as Delayed;
    if (last !== top) {
      last.index = 0;
      this.#heap[0] = last;
      this.#down(0);
    }
    this.#byKey.delete(top.key);
    return top.key;
  }

  clear(): void {
    this.#heap.length = 0;
    this.#byKey.clear();
  }

  #up(index: number): void {
    const entry = this.#heap[index] as Delayed;
    let i = index;
    while (i > 0) {
      const parentIndex = (i - 1) >> 1;
      const parent = this.#heap[parentIndex] as Delayed;
      if (parent.readyAt <= entry.readyAt) break;
      this.#place(parent, i);
      i = parentIndex;
    }
    this.#place(entry, i);
  }

  #down(index: number): void {
    const entry = this.#heap[index] as Delayed;
    const n = this.#heap.length;
    let i = index;
    for (;;) {
      const left = 2 * i + 1;
      if (left >= n) break;
      const right = left + 1;
      let child = left;
      if (
        right < n &&
        (this.#heap[right] as Delayed).readyAt < (this.#heap[left] as Delayed).readyAt
      ) {
        child = right;
      }
      const smaller = this.#heap[child] as Delayed;
      if (smaller.readyAt >= entry.readyAt) break;
      this.#place(smaller, i);
      i = child;
    }
    this.#place(entry, i);
  }

  #place(entry: Delayed, index: number): void {
    this.#heap[index] = entry;
    entry.index = index;
  }
}
