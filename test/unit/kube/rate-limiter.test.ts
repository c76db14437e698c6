import { describe, expect, it } from 'vitest';
import {
  Backoff,
  BucketRateLimiter,
  defaultControllerRateLimiter,
  ExponentialRateLimiter,
  MaxOfRateLimiter,
} from '../../../src/kube/rate-limiter.ts';

describe('ExponentialRateLimiter', () => {
  it('starts at 5 ms and doubles per failure, up to 1000 s (client-go defaults)', () => {
    const limiter = new ExponentialRateLimiter();
    const delays = Array.from({ length: 20 }, () => limiter.when('a'));
    expect(delays.slice(0, 5)).toEqual([5, 10, 20, 40, 80]);
    expect(delays[17]).toBe(5 * 2 ** 17);
    expect(delays[18]).toBe(1_000_000);
    expect(limiter.numRequeues('a')).toBe(20);
  });

  it('stays at the cap however many failures accumulate', () => {
    const limiter = new ExponentialRateLimiter({ baseDelayMs: 1, maxDelayMs: 60_000 });
    let last = 0;
    for (let i = 0; i < 2_000; i++) last = limiter.when('a');
    expect(last).toBe(60_000);
  });

  it('counts keys separately and forgets one key at a time', () => {
    const limiter = new ExponentialRateLimiter({ baseDelayMs: 10, maxDelayMs: 1_000 });
    limiter.when('a');
    limiter.when('a');
    expect(limiter.when('b')).toBe(10);
    expect(limiter.when('a')).toBe(40);
    limiter.forget('a');
    expect(limiter.numRequeues('a')).toBe(0);
    expect(limiter.when('a')).toBe(10);
    expect(limiter.numRequeues('b')).toBe(1);
  });

  it('rejects a cap below the base', () => {
    expect(() => new ExponentialRateLimiter({ baseDelayMs: 10, maxDelayMs: 5 })).toThrow(
      /baseDelayMs <= maxDelayMs/,
    );
  });
});

describe('BucketRateLimiter', () => {
  it('lets a burst through at once, then spaces every retry of any key by 1/rate', () => {
    let now = 0;
    const limiter = new BucketRateLimiter({ ratePerSecond: 10, burst: 3, now: () => now });
    expect(['a', 'b', 'c'].map((k) => limiter.when(k))).toEqual([0, 0, 0]);
    // Borrowed against the refill: each reservation waits 100 ms longer than the one before.
    expect(['a', 'd', 'e'].map((k) => limiter.when(k))).toEqual([100, 200, 300]);
    now = 1_000;
    // Ten tokens came back, three were owed.
    expect(limiter.when('f')).toBe(0);
  });
});

describe('MaxOfRateLimiter', () => {
  it('waits the longest of its limiters, counts the failure in each, and forgets in each', () => {
    const slow = new ExponentialRateLimiter({ baseDelayMs: 100, maxDelayMs: 10_000 });
    const fast = new ExponentialRateLimiter({ baseDelayMs: 1, maxDelayMs: 10_000 });
    const limiter = new MaxOfRateLimiter(fast, slow);
    expect(limiter.when('a')).toBe(100);
    expect(limiter.when('a')).toBe(200);
    expect(fast.numRequeues('a')).toBe(2);
    expect(limiter.numRequeues('a')).toBe(2);
    limiter.forget('a');
    expect(slow.numRequeues('a')).toBe(0);
    expect(fast.numRequeues('a')).toBe(0);
  });
});

describe('defaultControllerRateLimiter', () => {
  it('is per-key exponential until 100 retries, then 10 retries a second for all keys', () => {
    const limiter = defaultControllerRateLimiter(() => 0);
    // The first failure of 100 different keys: 5 ms each, as with per-key backoff alone.
    const first = Array.from({ length: 100 }, (_, i) => limiter.when(`k${i}`));
    expect(new Set(first)).toEqual(new Set([5]));
    // An outage: all keys keep failing; the shared bucket now decides, not the keys' 10 ms.
    expect(limiter.when('k0')).toBe(100);
    expect(limiter.when('k1')).toBe(200);
    expect(limiter.numRequeues('k0')).toBe(2);
  });
});

describe('Backoff', () => {
  it('doubles from 1 s to 30 s without jitter when randomness is pinned to 0', () => {
    const backoff = new Backoff({ random: () => 0 });
    const delays = Array.from({ length: 8 }, () => backoff.next());
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
    expect(backoff.attempts).toBe(8);
    backoff.reset();
    expect(backoff.next()).toBe(1_000);
  });

  it('draws each delay from [d * (1 - jitter), d]', () => {
    const low = new Backoff({ random: () => 0.999_999, jitter: 0.5 });
    expect(low.next()).toBe(500);
    expect(low.next()).toBe(1_000);
    const samples = new Backoff({ initialMs: 100, maxMs: 100 });
    for (let i = 0; i < 1_000; i++) {
      const delay = samples.next();
      expect(delay).toBeGreaterThanOrEqual(75);
      expect(delay).toBeLessThanOrEqual(100);
    }
  });

  it('rejects invalid settings', () => {
    expect(() => new Backoff({ initialMs: 0 })).toThrow(/initialMs/);
    expect(() => new Backoff({ initialMs: 10, maxMs: 5 })).toThrow(/maxMs/);
    expect(() => new Backoff({ jitter: 2 })).toThrow(/jitter/);
  });
});
