export interface TokenBucketOptions {
  /** Tokens added per second; may be fractional (client-go's event spam filter uses 1/300). */
  readonly ratePerSecond: number;
  /** Capacity, and the number of tokens a new bucket starts with. */
  readonly burst: number;
  /** Milliseconds on any monotonic-enough scale; default `Date.now` (which fake timers control). */
  readonly now?: () => number;
}

/**
 * The classic token bucket (client-go's `flowcontrol` rate limiter, golang.org/x/time/rate):
 * up to `burst` takes at once, then `ratePerSecond` on average. Refill is computed lazily from
 * the clock, so an idle bucket costs nothing and needs no timer.
 */
export class TokenBucket {
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly #now: () => number;
  #tokens: number;
  #updatedAt: number;

  constructor(options: TokenBucketOptions) {
    if (!(options.ratePerSecond > 0) || !Number.isFinite(options.ratePerSecond)) {
      throw new RangeError(
        `token bucket: ratePerSecond must be a positive finite number, got ${options.ratePerSecond}`,
      );
    }
    if (!Number.isInteger(options.burst) || options.burst < 1) {
      throw new RangeError(`token bucket: burst must be an integer >= 1, got ${options.burst}`);
    }
    this.ratePerSecond = options.ratePerSecond;
    this.burst = options.burst;
    this.#now = options.now ?? Date.now;
    this.#tokens = options.burst;
    this.#updatedAt = this.#now();
  }

  /** Takes one token if one is available; never waits. */
  tryTake(): boolean {
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /**
   * Takes one token now, borrowing against future refills when none is left (golang.org/x/time
   * /rate's `Reserve`), and returns how long the caller must wait for it to be its own: 0 while
   * tokens last, then 1/rate more per reservation outstanding.
   */
  reserve(): number {
    this.#refill();
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / this.ratePerSecond) * 1000);
  }

  /** Milliseconds until `tryTake()` would succeed; 0 when a token is available now. */
  delayMs(): number {
    this.#refill();
    if (this.#tokens >= 1) return 0;
    return Math.ceil(((1 - this.#tokens) / this.ratePerSecond) * 1000);
  }

  /** Tokens available now (fractional while refilling); for tests and diagnostics. */
  available(): number {
    this.#refill();
    return this.#tokens;
  }

  #refill(): void {
    const now = this.#now();
    // A clock that steps backwards must not drain the bucket; just restart the interval.
    const elapsed = Math.max(0, now - this.#updatedAt);
    this.#updatedAt = now;
    this.#tokens = Math.min(this.burst, this.#tokens + (elapsed / 1000) * this.ratePerSecond);
  }
}
