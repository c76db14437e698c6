import { describe, expect, it } from 'vitest';
import { TokenBucket } from '../../../src/kube/token-bucket.ts';

function clock(start = 1_000) {
  let now = start;
  return {
    now: () => now,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

describe('TokenBucket', () => {
  it('allows a burst, then the rate', () => {
    const time = clock();
    const bucket = new TokenBucket({ ratePerSecond: 10, burst: 3, now: time.now });
    expect([bucket.tryTake(), bucket.tryTake(), bucket.tryTake(), bucket.tryTake()]).toEqual([
      true,
      true,
      true,
      false,
    ]);
    expect(bucket.delayMs()).toBe(100);
    time.advance(99);
    expect(bucket.tryTake()).toBe(false);
    time.advance(1);
    expect(bucket.tryTake()).toBe(true);
    expect(bucket.tryTake()).toBe(false);
  });

  it('never holds more than the burst, however long it idles', () => {
    const time = clock();
    const bucket = new TokenBucket({ ratePerSecond: 100, burst: 2, now: time.now });
    time.advance(3_600_000);
    expect(bucket.available()).toBe(2);
  });

  it('supports fractional rates (one token per 5 minutes, like the event spam filter)', () => {
    const time = clock();
    const bucket = new TokenBucket({ ratePerSecond: 1 / 300, burst: 1, now: time.now });
    expect(bucket.tryTake()).toBe(true);
    expect(bucket.delayMs()).toBe(300_000);
    time.advance(299_999);
    expect(bucket.tryTake()).toBe(false);
    time.advance(1);
    expect(bucket.tryTake()).toBe(true);
  });

  it('does not drain or overfill when the clock steps backwards', () => {
    const time = clock(10_000);
    const bucket = new TokenBucket({ ratePerSecond: 1, burst: 2, now: time.now });
    bucket.tryTake();
    time.advance(-5_000);
    expect(bucket.available()).toBe(1);
    time.advance(1_000);
    expect(bucket.available()).toBe(2);
  });

  it('rejects settings that would never or always allow', () => {
    expect(() => new TokenBucket({ ratePerSecond: 0, burst: 1 })).toThrow(/ratePerSecond/);
    expect(() => new TokenBucket({ ratePerSecond: Number.POSITIVE_INFINITY, burst: 1 })).toThrow(
      /ratePerSecond/,
    );
    expect(() => new TokenBucket({ ratePerSecond: 1, burst: 0 })).toThrow(/burst/);
    expect(() => new TokenBucket({ ratePerSecond: 1, burst: 1.5 })).toThrow(/burst/);
  });
  it('reserves into debt: each reservation past the burst waits one more interval', () => {
    let now = 0;
    const bucket = new TokenBucket({ ratePerSecond: 2, burst: 1, now: () => now });
    expect(bucket.reserve()).toBe(0);
    expect(bucket.reserve()).toBe(500);
    expect(bucket.reserve()).toBe(1_000);
    expect(bucket.tryTake()).toBe(false);
    now = 1_500;
    // The debt of two is paid back after 1 s; 0.5 s more refilled one token.
    expect(bucket.tryTake()).toBe(true);
  });
});
