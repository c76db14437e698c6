import { TokenBucket } from './token-bucket.ts';

/**
 * Decides how long a key waits before it is retried (client-go's `workqueue.RateLimiter`). The
 * work queue calls `when` on every `addRateLimited` and `forget` once the key has succeeded.
 */
export interface RateLimiter {
  /** The delay in milliseconds before `key` is handed out again; counts one more failure. */
  when(key: string): number;
  /** Resets the key's failure count (call after a successful reconcile). */
  forget(key: string): void;
  /** How many times `when` was called for the key since it was last forgotten. */
  numRequeues(key: string): number;
}

export interface ExponentialRateLimiterOptions {
  /** Delay after the first failure; default 5 ms (client-go). */
  readonly baseDelayMs?: number;
  /** Upper bound of the delay; default 1000 s (client-go). */
  readonly maxDelayMs?: number;
}

export const DEFAULT_BASE_DELAY_MS = 5;
export const DEFAULT_MAX_DELAY_MS = 1_000_000;

/**
 * Per-key exponential backoff, client-go's `ItemExponentialFailureRateLimiter`: the n-th
 * consecutive failure of a key waits `base * 2^(n-1)`, capped at `max`. Memory is one map entry
 * per failing key, released by `forget`.
 */
export class ExponentialRateLimiter implements RateLimiter {
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #failures = new Map<string, number>();

  constructor(options: ExponentialRateLimiterOptions = {}) {
    this.#baseDelayMs = options.baseDelayMs ?? DEFAULT_BASE_DELAY_MS;
    this.#maxDelayMs = options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS;
    if (!(this.#baseDelayMs >= 0) || !(this.#maxDelayMs >= this.#baseDelayMs)) {
      throw new RangeError(
        `rate limiter needs 0 <= baseDelayMs <= maxDelayMs, got ${this.#baseDelayMs} and ${this.#maxDelayMs}`,
      );
    }
  }

  when(key: string): number {
    const exponent = this.#failures.get(key) ?? 0;
    this.#failures.set(key, exponent + 1);
    // 2 ** exponent overflows to Infinity long before the count does, and min() caps that.
    return Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** exponent);
  }

  forget(key: string): void {
    this.#failures.delete(key);
  }

  numRequeues(key: string): number {
    return this.#failures.get(key) ?? 0;
  }
}

/**
 * One token bucket shared by every key (client-go's `BucketRateLimiter`): retries of all keys
 * together get `ratePerSecond` after a burst, however many keys fail at once. Keeps no per-key
 * state.
 */
export class BucketRateLimiter implements RateLimiter {
  readonly #bucket: TokenBucket;

  constructor(options: { ratePerSecond: number; burst: number; now?: () => number }) {
    this.#bucket = new TokenBucket(options);
  }

  when(_key: string): number {
    return this.#bucket.reserve();
  }

  forget(_key: string): void {}

  numRequeues(_key: string): number {
    return 0;
  }
}

/** The longest delay of several limiters, each told of every failure (client-go's `MaxOf`). */
export class MaxOfRateLimiter implements RateLimiter {
  readonly #limiters: readonly RateLimiter[];

  constructor(...limiters: RateLimiter[]) {
    this.#limiters = limiters;
  }

  when(key: string): number {
    let delay = 0;
    for (const limiter of this.#limiters) delay = Math.max(delay, limiter.when(key));
    return delay;
  }

  forget(key: string): void {
    for (const limiter of this.#limiters) limiter.forget(key);
  }

  numRequeues(key: string): number {
    let n = 0;
    for (const limiter of this.#limiters) n = Math.max(n, limiter.numRequeues(key));
    return n;
  }
}

/**
 * controller-runtime's default for a controller's queue (client-go's
 * `DefaultTypedControllerRateLimiter`): per key 5 ms doubling up to 1000 s, and for all keys
 * together 10 retries a second after a burst of 100. The second part is what keeps an outage
 * (every reconcile failing at once) from turning into hundreds of retries and error lines a
 * second.
 */
export function defaultControllerRateLimiter(now?: () => number): RateLimiter {
  return new MaxOfRateLimiter(
    new ExponentialRateLimiter(),
    new BucketRateLimiter({ ratePerSecond: 10, burst: 100, ...(now ? { now } : {}) }),
  );
}

export interface BackoffOptions {
  /** First delay; default 1 s. */
  readonly initialMs?: number;
  /** Largest delay; default 30 s. */
  readonly maxMs?: number;
  /**
   * Fraction of each delay that is randomised away, 0..1; default 0.25: a delay d is drawn from
   * [d * (1 - jitter), d], so that clients restarted together do not retry in lockstep.
   */
  readonly jitter?: number;
  /** Source of randomness in [0, 1); default Math.random (tests pin it). */
  readonly random?: () => number;
}

/**
 * Backoff for one stream of attempts (a list/watch loop), doubling from `initialMs` to `maxMs`
 * with jitter. `reset()` after a success starts over at `initialMs`.
 */
export class Backoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #jitter: number;
  readonly #random: () => number;
  #failures = 0;

  constructor(options: BackoffOptions = {}) {
    this.#initialMs = options.initialMs ?? 1_000;
    this.#maxMs = options.maxMs ?? 30_000;
    this.#jitter = options.jitter ?? 0.25;
    this.#random = options.random ?? Math.random;
    if (!(this.#initialMs > 0) || !(this.#maxMs >= this.#initialMs)) {
      throw new RangeError(
        `backoff needs 0 < initialMs <= maxMs, got ${this.#initialMs} and ${this.#maxMs}`,
      );
    }
    if (!(this.#jitter >= 0 && this.#jitter <= 1)) {
      throw new RangeError(`backoff jitter must be within [0, 1], got ${this.#jitter}`);
    }
  }

  /** The delay before the next attempt, in milliseconds; each call counts one failure. */
  next(): number {
    const ceiling = Math.min(this.#maxMs, this.#initialMs * 2 ** this.#failures);
    this.#failures += 1;
    return Math.round(ceiling * (1 - this.#jitter * this.#random()));
  }

  /** Consecutive failures since the last reset. */
  get attempts(): number {
    return this.#failures;
  }

  reset(): void {
    this.#failures = 0;
  }
}
