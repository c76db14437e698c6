import { describe, expect, it } from 'vitest';
import { Backoff, ExponentialRateLimiter } from '../../../src/kube/rate-limiter.ts';

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
