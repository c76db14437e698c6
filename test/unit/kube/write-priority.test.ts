import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { WritePriority } from '../../../src/kube/write-priority.ts';

describe('WritePriority', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Resolves true if `promise` has settled once due timers and microtasks have run. */
  async function settledAfter(promise: Promise<void>, ms: number): Promise<boolean> {
    let settled = false;
    void promise.then(() => (settled = true));
    await vi.advanceTimersByTimeAsync(ms);
    return settled;
  }

  it('gives way at once when no tracked write is in flight', async () => {
    const priority = new WritePriority({ maxWaitMs: 1_000 });
    expect(await settledAfter(priority.giveWay(), 0)).toBe(true);
  });

  it('counts a write until it settles, resolved or rejected, and returns it unchanged', async () => {
    const priority = new WritePriority();
    const ok = priority.track(Promise.resolve('answer'));
    const failed = priority.track(Promise.reject(new Error('409')));
    expect(priority.inFlight).toBe(2);
    await expect(ok).resolves.toBe('answer');
    await expect(failed).rejects.toThrow('409');
    expect(priority.inFlight).toBe(0);
  });

  it('waits until the last write in flight settles', async () => {
    const priority = new WritePriority({ maxWaitMs: 60_000 });
    const ends: (() => void)[] = [];
    for (let i = 0; i < 2; i++) void priority.track(new Promise<void>((r) => ends.push(r)));
    const waiting = priority.giveWay();
    ends[0]?.();
    expect(await settledAfter(waiting, 0)).toBe(false);
    ends[1]?.();
    expect(await settledAfter(waiting, 0)).toBe(true);
  });

  it('waits no longer than maxWaitMs, nor past an abort', async () => {
    const priority = new WritePriority({ maxWaitMs: 500 });
    void priority.track(new Promise<void>(() => undefined));
    const timedOut = priority.giveWay();
    expect(await settledAfter(timedOut, 499)).toBe(false);
    expect(await settledAfter(timedOut, 1)).toBe(true);

    const stop = new AbortController();
    const aborted = priority.giveWay(stop.signal);
    stop.abort();
    expect(await settledAfter(aborted, 0)).toBe(true);
    expect(() => new WritePriority({ maxWaitMs: -1 })).toThrow(RangeError);
  });
});
