import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { sleep } from '../../../src/util/sleep.ts';

describe('sleep', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('removes its abort listener once the timer fires', async () => {
    const controller = new AbortController();
    const pending = sleep(1, controller.signal);
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
    await pending;
    // A run that lives on after many sleeps must not accumulate listeners.
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('resolves as soon as the signal aborts, and at once when it already has', async () => {
    vi.useFakeTimers();
    const controller = new AbortController();
    let done = false;
    const pending = sleep(60_000, controller.signal).then(() => {
      done = true;
    });
    await vi.advanceTimersByTimeAsync(1000);
    expect(done).toBe(false);
    controller.abort(new Error('stop'));
    await pending;
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
    expect(vi.getTimerCount()).toBe(0);
    await expect(sleep(60_000, controller.signal)).resolves.toBeUndefined();
  });

  it('runs on the global timers, so fake timers drive it', async () => {
    vi.useFakeTimers();
    const pending = sleep(5000, new AbortController().signal, { unref: true });
    await vi.advanceTimersByTimeAsync(5000);
    await expect(pending).resolves.toBeUndefined();
  });
});
