import { describe, expect, it, vi } from 'vitest';
import { type Execution, Executor } from '../../../src/controller/executor.ts';
import {
  execution,
  flush,
  forever,
  harness,
  ManualHandler,
  onFakeTimers,
  reserveAndStart,
} from './executor-harness.ts';

/** Executor timers: a run's deadline (TimedOut) and the onLongRunning warning. */

onFakeTimers();

describe('Executor: deadline', () => {
  it('a deadline in the past times the execution out at once, without calling the handler', async () => {
    const { executor, finished } = harness({ maxConcurrent: 1 });
    const h = new ManualHandler();
    const deadline = new Date(Date.now() - 60_000);
    reserveAndStart(executor, execution('u1', h.execute, { deadline }));
    expect(finished).toEqual([
      {
        uid: 'u1',
        result: { kind: 'aborted', reason: 'TimedOut', message: 'exceeded its timeoutSeconds' },
      },
    ]);
    await vi.advanceTimersByTimeAsync(0);
    expect(h.calls).toHaveLength(0);
    expect(executor.busy).toBe(0);
  });

  it('a deadline in the future times the execution out exactly then, and aborts its signal', async () => {
    const { executor, finished } = harness({ maxConcurrent: 1 });
    const h = new ManualHandler();
    const deadline = new Date(Date.now() + 5_000);
    reserveAndStart(executor, execution('u1', h.execute, { deadline }));
    await vi.advanceTimersByTimeAsync(4_999);
    expect(finished).toEqual([]);
    expect(h.calls[0]?.signal.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(finished).toEqual([
      {
        uid: 'u1',
        result: { kind: 'aborted', reason: 'TimedOut', message: 'exceeded its timeoutSeconds' },
      },
    ]);
    expect(h.calls[0]?.signal.aborted).toBe(true);
    h.resolve({});
    await vi.advanceTimersByTimeAsync(60_000);
    expect(finished).toHaveLength(1);
  });

  it('an execution that ends before its deadline is not timed out, and leaves no timer behind', async () => {
    const { executor, finished } = harness({ maxConcurrent: 1 });
    const h = new ManualHandler();
    reserveAndStart(
      executor,
      execution('u1', h.execute, { deadline: new Date(Date.now() + 5_000) }),
    );
    await vi.advanceTimersByTimeAsync(1_000);
    h.resolve({ ok: true });
    await flush();
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(finished).toEqual([
      { uid: 'u1', result: { kind: 'succeeded', artifacts: { ok: true } } },
    ]);
  });

  it('an execution canceled before its deadline is not also timed out', async () => {
    const { executor, finished } = harness({ maxConcurrent: 1 });
    reserveAndStart(executor, execution('u1', forever, { deadline: new Date(Date.now() + 5_000) }));
    executor.abort('u1', 'Canceled', 'x');
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(10_000);
    expect(finished.map((f) => f.result)).toEqual([
      { kind: 'aborted', reason: 'Canceled', message: 'x' },
    ]);
  });

  it('without a deadline an execution runs as long as it takes', async () => {
    const { executor, finished } = harness({ maxConcurrent: 1 });
    reserveAndStart(executor, execution('u1', forever));
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(7 * 24 * 3600 * 1000);
    expect(finished).toEqual([]);
    expect(executor.isExecuting('u1')).toBe(true);
  });
});

describe('Executor: onLongRunning', () => {
  it('fires once, after longRunningAfterMs', async () => {
    const { executor, longRunning, finished } = harness({
      maxConcurrent: 1,
      longRunningAfterMs: 1_000,
    });
    reserveAndStart(executor, execution('u1', forever));
    await vi.advanceTimersByTimeAsync(999);
    expect(longRunning).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(longRunning).toEqual(['u1']);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(longRunning).toEqual(['u1']);
    expect(finished).toEqual([]);
  });

  it('receives the execution itself', async () => {
    const seen: Execution[] = [];
    const executor = new Executor({
      maxConcurrent: 1,
      onFinished: () => {},
      onCapacity: () => {},
      onLongRunning: (e) => seen.push(e),
      longRunningAfterMs: 10,
    });
    const exec = execution('u1', forever);
    reserveAndStart(executor, exec);
    await vi.advanceTimersByTimeAsync(10);
    expect(seen).toHaveLength(1);
    expect(seen[0]).toBe(exec);
  });

  it('does not fire for an execution that succeeded before', async () => {
    const { executor, longRunning } = harness({ maxConcurrent: 1, longRunningAfterMs: 1_000 });
    const h = new ManualHandler();
    reserveAndStart(executor, execution('u1', h.execute));
    await vi.advanceTimersByTimeAsync(500);
    h.resolve({});
    await flush();
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(5_000);
    expect(longRunning).toEqual([]);
  });

  it('does not fire for an execution that failed or was aborted before', async () => {
    const { executor, longRunning } = harness({ maxConcurrent: 2, longRunningAfterMs: 1_000 });
    reserveAndStart(
      executor,
      execution('u1', () => Promise.reject(new Error('x'))),
    );
    reserveAndStart(executor, execution('u2', forever));
    await vi.advanceTimersByTimeAsync(100);
    executor.abort('u2', 'Canceled', 'x');
    await vi.advanceTimersByTimeAsync(5_000);
    expect(longRunning).toEqual([]);
  });

  it('fires for each long execution separately', async () => {
    const { executor, longRunning } = harness({ maxConcurrent: 2, longRunningAfterMs: 1_000 });
    reserveAndStart(executor, execution('u1', forever));
    await vi.advanceTimersByTimeAsync(500);
    reserveAndStart(executor, execution('u2', forever));
    await vi.advanceTimersByTimeAsync(500);
    expect(longRunning).toEqual(['u1']);
    await vi.advanceTimersByTimeAsync(500);
    expect(longRunning).toEqual(['u1', 'u2']);
  });

  it('is off when longRunningAfterMs is not set', async () => {
    const { executor, longRunning } = harness({ maxConcurrent: 1 });
    reserveAndStart(executor, execution('u1', forever));
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(3_600_000);
    expect(longRunning).toEqual([]);
  });

  it('longRunningAfterMs 0 fires on the next timer tick, not synchronously', async () => {
    const { executor, longRunning } = harness({ maxConcurrent: 1, longRunningAfterMs: 0 });
    reserveAndStart(executor, execution('u1', forever));
    expect(longRunning).toEqual([]);
    await vi.advanceTimersByTimeAsync(0);
    expect(longRunning).toEqual(['u1']);
  });
});
