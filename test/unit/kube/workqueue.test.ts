import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ExponentialRateLimiter } from '../../../src/kube/rate-limiter.ts';
import { Fifo, WorkQueue, type WorkQueueMetrics } from '../../../src/kube/workqueue.ts';

/** Resolves to the value if the promise settled during the current microtask flush, else 'pending'. */
async function settled<T>(promise: Promise<T>): Promise<T | 'pending'> {
  return Promise.race([
    promise,
    new Promise<'pending'>((resolve) => setImmediate(resolve, 'pending')),
  ]);
}

/** Takes every key that is ready right now, without waiting. */
async function drainReady(queue: WorkQueue): Promise<string[]> {
  const keys: string[] = [];
  while (queue.len() > 0) {
    const key = await queue.get();
    if (key !== undefined) keys.push(key);
  }
  return keys;
}

class RecordingMetrics implements WorkQueueMetrics {
  adds = 0;
  retries = 0;
  depths: number[] = [];
  queueDurations: number[] = [];
  workDurations: number[] = [];
  add(): void {
    this.adds += 1;
  }
  depth(n: number): void {
    this.depths.push(n);
  }
  queueDuration(seconds: number): void {
    this.queueDurations.push(seconds);
  }
  workDuration(seconds: number): void {
    this.workDurations.push(seconds);
  }
  retry(): void {
    this.retries += 1;
  }
}

describe('WorkQueue: ordering and dedupe', () => {
  it('hands keys out first in, first out', async () => {
    const queue = new WorkQueue();
    for (const key of ['ns/a', 'ns/b', 'ns/c']) queue.add(key);
    expect(queue.len()).toBe(3);
    expect(await drainReady(queue)).toEqual(['ns/a', 'ns/b', 'ns/c']);
    expect(queue.len()).toBe(0);
  });

  it('keeps a waiting key once, at its first position', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    queue.add('b');
    queue.add('a');
    queue.add('a');
    expect(queue.len()).toBe(2);
    expect(await drainReady(queue)).toEqual(['a', 'b']);
  });

  it('makes get() wait for the next add', async () => {
    const queue = new WorkQueue();
    const pending = queue.get();
    expect(await settled(pending)).toBe('pending');
    queue.add('a');
    expect(await pending).toBe('a');
    expect(queue.len()).toBe(0);
  });

  it('serves waiting workers in the order they asked', async () => {
    const queue = new WorkQueue();
    const first = queue.get();
    const second = queue.get();
    queue.add('a');
    queue.add('b');
    expect(await first).toBe('a');
    expect(await second).toBe('b');
  });
});

describe('WorkQueue: a key is processed by one worker at a time', () => {
  it('holds back a key re-added while in flight and queues it again on done()', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    expect(await queue.get()).toBe('a');
    queue.add('a');
    queue.add('a');
    expect(queue.len()).toBe(0);
    const second = queue.get();
    expect(await settled(second)).toBe('pending');
    queue.done('a');
    expect(await second).toBe('a');
    queue.done('a');
    expect(queue.len()).toBe(0);
  });

  it('puts the re-added key behind keys that were already waiting', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    expect(await queue.get()).toBe('a');
    queue.add('a');
    queue.add('b');
    queue.done('a');
    expect(await drainReady(queue)).toEqual(['b', 'a']);
  });

  it('does not queue a key again on done() if nobody re-added it', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    await queue.get();
    queue.done('a');
    expect(queue.len()).toBe(0);
  });

  it('ignores done() for keys that are not in flight', async () => {
    const queue = new WorkQueue();
    queue.done('never-added');
    queue.add('a');
    queue.done('a');
    queue.done('a');
    expect(queue.len()).toBe(1);
    expect(await drainReady(queue)).toEqual(['a']);
  });

  it('never hands a key to two workers, under a random interleaving of adds, gets and dones', async () => {
    let seed = 42;
    const random = () => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const queue = new WorkQueue();
    const keys = Array.from({ length: 8 }, (_, i) => `k${i}`);
    const inFlight = new Set<string>();
    const needsProcessing = new Set<string>();
    for (let step = 0; step < 5_000; step++) {
      const roll = random();
      if (roll < 0.45) {
        const key = keys[Math.floor(random() * keys.length)] as string;
        queue.add(key);
        needsProcessing.add(key);
      } else if (roll < 0.75) {
        if (queue.len() > 0) {
          const key = (await queue.get()) as string;
          expect(inFlight.has(key)).toBe(false);
          inFlight.add(key);
          needsProcessing.delete(key);
        }
      } else if (inFlight.size > 0) {
        const key = [...inFlight][Math.floor(random() * inFlight.size)] as string;
        inFlight.delete(key);
        queue.done(key);
      }
    }
    // Finish everything: every key added after its last hand-out must come out once more.
    for (const key of inFlight) queue.done(key);
    inFlight.clear();
    const rest = await drainReady(queue);
    expect(new Set(rest).size).toBe(rest.length);
    expect(new Set(rest)).toEqual(needsProcessing);
  });
});

describe('WorkQueue: delayed adds', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('queues a key only once its delay has passed', async () => {
    const queue = new WorkQueue();
    queue.addAfter('a', 100);
    expect(queue.len()).toBe(0);
    vi.advanceTimersByTime(99);
    expect(queue.len()).toBe(0);
    vi.advanceTimersByTime(1);
    expect(queue.len()).toBe(1);
    expect(await queue.get()).toBe('a');
  });

  it('adds immediately when the delay is zero, negative or not a number', () => {
    const queue = new WorkQueue();
    queue.addAfter('a', 0);
    queue.addAfter('b', -5);
    queue.addAfter('c', Number.NaN);
    expect(queue.len()).toBe(3);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('keeps the earlier deadline when a delayed key is delayed again', () => {
    const queue = new WorkQueue();
    queue.addAfter('a', 1_000);
    queue.addAfter('a', 100);
    vi.advanceTimersByTime(100);
    expect(queue.len()).toBe(1);

    queue.addAfter('b', 100);
    queue.addAfter('b', 1_000);
    vi.advanceTimersByTime(100);
    expect(queue.len()).toBe(2);
    // The longer request was absorbed, not kept as a second entry.
    vi.advanceTimersByTime(10_000);
    expect(queue.len()).toBe(2);
  });

  it('releases delayed keys in deadline order, with a single timer armed', async () => {
    const queue = new WorkQueue();
    const delays = [50, 10, 40, 30, 20, 60, 5, 45, 15, 35];
    delays.forEach((delay, i) => {
      queue.addAfter(`k${i}`, delay);
      expect(vi.getTimerCount()).toBe(1);
    });
    const order: string[] = [];
    for (let t = 0; t < 60; t++) {
      vi.advanceTimersByTime(1);
      order.push(...(await drainReady(queue)));
    }
    const expected = delays
      .map((delay, i) => ({ delay, key: `k${i}` }))
      .sort((a, b) => a.delay - b.delay)
      .map(({ key }) => key);
    expect(order).toEqual(expected);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('releases keys that share a deadline together', () => {
    const queue = new WorkQueue();
    for (let i = 0; i < 100; i++) queue.addAfter(`k${i}`, 10);
    vi.advanceTimersByTime(10);
    expect(queue.len()).toBe(100);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('re-arms its timer for an earlier deadline', () => {
    const queue = new WorkQueue();
    queue.addAfter('late', 1_000);
    queue.addAfter('early', 10);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(10);
    expect(queue.len()).toBe(1);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(990);
    expect(queue.len()).toBe(2);
  });

  it('dedupes a delayed key against the same key already waiting', () => {
    const queue = new WorkQueue();
    queue.add('a');
    queue.addAfter('a', 10);
    vi.advanceTimersByTime(10);
    expect(queue.len()).toBe(1);
  });

  it('drops delayed keys and clears its timer on shutdown', () => {
    const queue = new WorkQueue();
    queue.addAfter('a', 10);
    queue.addRateLimited('b');
    queue.shutDown();
    expect(vi.getTimerCount()).toBe(0);
    queue.addAfter('c', 10);
    expect(vi.getTimerCount()).toBe(0);
    vi.advanceTimersByTime(1_000);
    expect(queue.len()).toBe(0);
  });
});

describe('WorkQueue: rate-limited adds', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('backs off per key from 5 ms, doubling, until forgotten', async () => {
    const queue = new WorkQueue();
    const releaseTimes: number[] = [];
    for (let attempt = 0; attempt < 4; attempt++) {
      const before = Date.now();
      queue.addRateLimited('a');
      expect(queue.numRequeues('a')).toBe(attempt + 1);
      while (queue.len() === 0) vi.advanceTimersByTime(1);
      releaseTimes.push(Date.now() - before);
      expect(await queue.get()).toBe('a');
      queue.done('a');
    }
    expect(releaseTimes).toEqual([5, 10, 20, 40]);
    queue.forget('a');
    expect(queue.numRequeues('a')).toBe(0);
    queue.addRateLimited('a');
    vi.advanceTimersByTime(4);
    expect(queue.len()).toBe(0);
    vi.advanceTimersByTime(1);
    expect(queue.len()).toBe(1);
  });

  it('keeps separate backoffs for separate keys', () => {
    const queue = new WorkQueue();
    queue.addRateLimited('a');
    queue.addRateLimited('a');
    queue.addRateLimited('b');
    expect(queue.numRequeues('a')).toBe(2);
    expect(queue.numRequeues('b')).toBe(1);
    queue.forget('a');
    expect(queue.numRequeues('a')).toBe(0);
    expect(queue.numRequeues('b')).toBe(1);
  });

  it('uses the rate limiter it is given', () => {
    const queue = new WorkQueue({
      rateLimiter: new ExponentialRateLimiter({ baseDelayMs: 1_000, maxDelayMs: 1_500 }),
    });
    queue.addRateLimited('a');
    vi.advanceTimersByTime(999);
    expect(queue.len()).toBe(0);
    vi.advanceTimersByTime(1);
    expect(queue.len()).toBe(1);
  });
});

describe('WorkQueue: shutdown', () => {
  it('resolves waiting and later get() calls with undefined and ignores later adds', async () => {
    const queue = new WorkQueue();
    const waiting = queue.get();
    queue.shutDown();
    expect(await waiting).toBeUndefined();
    queue.add('a');
    queue.addRateLimited('b');
    expect(queue.len()).toBe(0);
    expect(await queue.get()).toBeUndefined();
    expect(queue.shuttingDown).toBe(true);
  });

  it('drops keys still waiting', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    queue.shutDown();
    expect(queue.len()).toBe(0);
    expect(await queue.get()).toBeUndefined();
  });

  it('with drain, resolves only after every key in flight is done', async () => {
    const queue = new WorkQueue();
    queue.add('a');
    queue.add('b');
    await queue.get();
    await queue.get();
    queue.add('a');
    const drained = queue.shutDownWithDrain();
    expect(await settled(drained)).toBe('pending');
    queue.done('a');
    expect(await settled(drained)).toBe('pending');
    queue.done('b');
    expect(await settled(drained)).toBeUndefined();
    // The re-added key was not queued again while shutting down.
    expect(queue.len()).toBe(0);
  });

  it('with drain, resolves at once when nothing is in flight, also when called twice', async () => {
    const queue = new WorkQueue();
    await queue.shutDownWithDrain();
    await queue.shutDownWithDrain();
    queue.shutDown();
  });

  it('arms only unref’d timers, so a pending requeue does not keep the process alive', () => {
    const spy = vi.spyOn(globalThis, 'setTimeout');
    try {
      const queue = new WorkQueue();
      queue.addAfter('a', 60_000);
      const timer = spy.mock.results[0]?.value as NodeJS.Timeout;
      expect(timer.hasRef()).toBe(false);
      queue.shutDown();
    } finally {
      spy.mockRestore();
    }
  });
});

describe('WorkQueue: metrics', () => {
  it('reports adds, depth, queue and work durations, and retries', async () => {
    let now = 1_000;
    const metrics = new RecordingMetrics();
    const queue = new WorkQueue({ metrics, now: () => now });
    queue.add('a');
    queue.add('a');
    queue.add('b');
    expect(metrics.adds).toBe(2);
    expect(metrics.depths).toEqual([1, 2]);

    now += 250;
    expect(await queue.get()).toBe('a');
    expect(metrics.queueDurations).toEqual([0.25]);
    expect(metrics.depths.at(-1)).toBe(1);

    // Re-added while in flight: counted as an add and in depth, though not ready yet.
    queue.add('a');
    expect(metrics.adds).toBe(3);
    expect(metrics.depths.at(-1)).toBe(2);

    now += 1_500;
    queue.done('a');
    expect(metrics.workDurations).toEqual([1.5]);

    queue.addRateLimited('c');
    expect(metrics.retries).toBe(1);
    queue.shutDown();
    expect(metrics.depths.at(-1)).toBe(0);
  });

  it('measures work in progress for a collector', async () => {
    let now = 0;
    const queue = new WorkQueue({ now: () => now });
    expect(queue.unfinishedWorkSeconds()).toBe(0);
    expect(queue.longestRunningProcessorSeconds()).toBe(0);
    queue.add('a');
    queue.add('b');
    await queue.get();
    now = 2_000;
    await queue.get();
    now = 3_000;
    expect(queue.unfinishedWorkSeconds()).toBe(4);
    expect(queue.longestRunningProcessorSeconds()).toBe(3);
    queue.done('a');
    expect(queue.unfinishedWorkSeconds()).toBe(1);
    expect(queue.longestRunningProcessorSeconds()).toBe(1);
  });
});

describe('Fifo', () => {
  it('behaves like an array queue through growth and wrap-around', () => {
    const fifo = new Fifo<number>();
    const model: number[] = [];
    let next = 0;
    let seed = 7;
    for (let step = 0; step < 20_000; step++) {
      seed = (seed * 48_271) % 2_147_483_647;
      // Bias towards pushes early and shifts late so the buffer grows, then wraps while shrinking.
      const pushBias = step < 10_000 ? 0.6 : 0.4;
      if (seed / 2_147_483_647 < pushBias) {
        fifo.push(next);
        model.push(next);
        next += 1;
      } else {
        expect(fifo.shift()).toBe(model.shift());
      }
      expect(fifo.length).toBe(model.length);
    }
    while (model.length > 0) expect(fifo.shift()).toBe(model.shift());
    expect(fifo.shift()).toBeUndefined();
    fifo.push(1);
    fifo.clear();
    expect(fifo.length).toBe(0);
    expect(fifo.shift()).toBeUndefined();
  });
});
