import { describe, expect, it, vi } from 'vitest';
import {
  execution,
  flush,
  forever,
  harness,
  ManualHandler,
  onFakeTimers,
  reserveAndStart,
} from './executor-harness.ts';

/** Executor.drain: graceful shutdown, waiting up to a grace period, then aborting with Shutdown. */

onFakeTimers();

describe('Executor: drain', () => {
  it('returns at once when nothing is executing', async () => {
    const { executor } = harness({ maxConcurrent: 1 });
    let done = false;
    void executor.drain(10_000).then(() => {
      done = true;
    });
    await flush();
    expect(done).toBe(true);
  });

  it('waits for executions that finish within the grace period', async () => {
    const { executor, finished } = harness({ maxConcurrent: 2 });
    const h = new ManualHandler();
    reserveAndStart(executor, execution('u1', h.execute));
    reserveAndStart(executor, execution('u2', h.execute));
    let done = false;
    const drained = executor.drain(10_000).then(() => {
      done = true;
    });
    await vi.advanceTimersByTimeAsync(120);
    h.resolve({ a: 1 }, 0);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(done).toBe(false);
    h.resolve({ b: 2 }, 1);
    await vi.advanceTimersByTimeAsync(100);
    expect(done).toBe(true);
    await drained;
    expect(finished).toEqual([
      { uid: 'u1', result: { kind: 'succeeded', artifacts: { a: 1 } } },
      { uid: 'u2', result: { kind: 'succeeded', artifacts: { b: 2 } } },
    ]);
  });

  it('aborts what is still running when the grace period is over, with reason Shutdown', async () => {
    const { executor, finished } = harness({ maxConcurrent: 3 });
    const h = new ManualHandler();
    reserveAndStart(executor, execution('quick', h.execute));
    reserveAndStart(executor, execution('stuck', forever));
    reserveAndStart(executor, execution('slow', h.execute));
    let done = false;
    const drained = executor.drain(1_000).then(() => {
      done = true;
    });
    await vi.advanceTimersByTimeAsync(100);
    h.resolve({}, 0);
    await vi.advanceTimersByTimeAsync(800);
    expect(done).toBe(false);
    expect(executor.isExecuting('stuck')).toBe(true);
    await vi.advanceTimersByTimeAsync(200);
    expect(done).toBe(true);
    await drained;
    expect(executor.busy).toBe(0);
    const message = 'the operator shut down before the handler finished';
    expect(finished).toEqual([
      { uid: 'quick', result: { kind: 'succeeded', artifacts: {} } },
      { uid: 'stuck', result: { kind: 'aborted', reason: 'Shutdown', message } },
      { uid: 'slow', result: { kind: 'aborted', reason: 'Shutdown', message } },
    ]);
    // The aborted handlers finishing late change nothing.
    h.resolve({}, 1);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(finished).toHaveLength(3);
  });

  it('drain(0) aborts everything at once', async () => {
    const { executor, finished } = harness({ maxConcurrent: 2 });
    reserveAndStart(executor, execution('u1', forever));
    reserveAndStart(executor, execution('u2', forever));
    await executor.drain(0);
    expect(finished.map((f) => [f.uid, f.result.kind])).toEqual([
      ['u1', 'aborted'],
      ['u2', 'aborted'],
    ]);
    expect(
      finished.every((f) => f.result.kind === 'aborted' && f.result.reason === 'Shutdown'),
    ).toBe(true);
  });

  it('forgets waiting and woken keys: nothing is woken while shutting down', async () => {
    const { executor, woken } = harness({ maxConcurrent: 1 });
    reserveAndStart(executor, execution('u1', forever));
    expect(executor.reserve('b')).toBe(false);
    expect(executor.reserve('c')).toBe(false);
    await executor.drain(0);
    expect(executor.waiting).toBe(0);
    expect(woken).toEqual([]);
  });
});
