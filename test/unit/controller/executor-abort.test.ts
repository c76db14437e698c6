import { describe, expect, it, vi } from 'vitest';
import type { JsonObject } from '../../../src/handlers/handler.ts';
import {
  type Ctx,
  execution,
  flush,
  forever,
  harness,
  ManualHandler,
  onFakeTimers,
  reserveAndStart,
} from './executor-harness.ts';

/** Executor.abort (cancel, timeout, shutdown): the execution ends at once, and only once. */

onFakeTimers();

describe('Executor: abort', () => {
  for (const reason of ['Canceled', 'TimedOut', 'Shutdown'] as const) {
    describe(`abort with ${reason}`, () => {
      it('settles at once although the handler ignores its signal and never resolves', () => {
        const { executor, finished } = harness({ maxConcurrent: 1 });
        reserveAndStart(executor, execution('u1', forever));
        expect(executor.abort('u1', reason, 'because')).toBe(true);
        // Synchronously, before any microtask ran.
        expect(finished).toEqual([
          { uid: 'u1', result: { kind: 'aborted', reason, message: 'because' } },
        ]);
        expect(executor.isExecuting('u1')).toBe(false);
        expect(executor.executingUid('ns/u1')).toBeUndefined();
        expect(executor.busy).toBe(0);
      });

      it('aborts the signal passed to the handler, with the reason in its error', async () => {
        const { executor } = harness({ maxConcurrent: 1 });
        const h = new ManualHandler();
        reserveAndStart(executor, execution('u1', h.execute));
        await flush();
        const signal = h.calls[0]?.signal;
        const onAbort = vi.fn();
        signal?.addEventListener('abort', onAbort);
        executor.abort('u1', reason, 'stop now');
        expect(signal?.aborted).toBe(true);
        expect(onAbort).toHaveBeenCalledTimes(1);
        expect(signal?.reason).toBeInstanceOf(Error);
        expect(signal?.reason).toMatchObject({ message: `${reason}: stop now` });
      });

      it('a late resolve of the handler does not call onFinished again', async () => {
        const { executor, finished } = harness({ maxConcurrent: 1 });
        const h = new ManualHandler();
        reserveAndStart(executor, execution('u1', h.execute));
        await flush();
        executor.abort('u1', reason, 'm');
        h.resolve({ late: true });
        await flush();
        await vi.advanceTimersByTimeAsync(60_000);
        expect(finished).toEqual([
          { uid: 'u1', result: { kind: 'aborted', reason, message: 'm' } },
        ]);
      });

      it('a late reject of the handler does not call onFinished again', async () => {
        const { executor, finished } = harness({ maxConcurrent: 1 });
        const h = new ManualHandler();
        reserveAndStart(executor, execution('u1', h.execute));
        await flush();
        executor.abort('u1', reason, 'm');
        h.reject(new Error('aborted by signal'));
        await flush();
        await vi.advanceTimersByTimeAsync(60_000);
        expect(finished).toEqual([
          { uid: 'u1', result: { kind: 'aborted', reason, message: 'm' } },
        ]);
      });
    });
  }

  it('a handler that rejects from its abort listener still ends once, as aborted', async () => {
    const { executor, finished } = harness({ maxConcurrent: 1 });
    const execute = ({ signal }: Ctx) =>
      new Promise<JsonObject>((_resolve, reject) => {
        signal.addEventListener('abort', () => reject(signal.reason));
      });
    reserveAndStart(executor, execution('u1', execute));
    await flush();
    executor.abort('u1', 'Canceled', 'deleted while running');
    await flush();
    expect(finished).toEqual([
      {
        uid: 'u1',
        result: { kind: 'aborted', reason: 'Canceled', message: 'deleted while running' },
      },
    ]);
  });

  it('aborting before the handler was even called settles once; the handler sees an aborted signal', async () => {
    const { executor, finished } = harness({ maxConcurrent: 1 });
    const h = new ManualHandler();
    reserveAndStart(executor, execution('u1', h.execute));
    executor.abort('u1', 'Canceled', 'early');
    await flush();
    for (const ctx of h.calls) expect(ctx.signal.aborted).toBe(true);
    h.calls.forEach((_, i) => {
      h.resolve({}, i);
    });
    await flush();
    expect(finished).toEqual([
      { uid: 'u1', result: { kind: 'aborted', reason: 'Canceled', message: 'early' } },
    ]);
  });

  it('abort() is refused for an unknown, finished or already aborted uid', async () => {
    const { executor, finished } = harness({ maxConcurrent: 2 });
    expect(executor.abort('nope', 'Canceled', 'x')).toBe(false);
    reserveAndStart(
      executor,
      execution('u1', async () => ({})),
    );
    await flush();
    expect(executor.abort('u1', 'Canceled', 'x')).toBe(false);
    reserveAndStart(executor, execution('u2', forever));
    expect(executor.abort('u2', 'Canceled', 'first')).toBe(true);
    expect(executor.abort('u2', 'TimedOut', 'second')).toBe(false);
    expect(finished.map((f) => f.result)).toEqual([
      { kind: 'succeeded', artifacts: {} },
      { kind: 'aborted', reason: 'Canceled', message: 'first' },
    ]);
  });

  it('aborting one execution leaves the others running', async () => {
    const { executor, finished } = harness({ maxConcurrent: 2 });
    const h = new ManualHandler();
    reserveAndStart(executor, execution('u1', h.execute));
    reserveAndStart(executor, execution('u2', h.execute));
    await flush();
    executor.abort('u1', 'Canceled', 'x');
    expect(h.calls[1]?.signal.aborted).toBe(false);
    expect(executor.isExecuting('u2')).toBe(true);
    h.resolve({ two: 2 }, 1);
    await flush();
    expect(finished.map((f) => [f.uid, f.result.kind])).toEqual([
      ['u1', 'aborted'],
      ['u2', 'succeeded'],
    ]);
  });

  it('an abort frees the slot for a waiting key', () => {
    const { executor, woken } = harness({ maxConcurrent: 1 });
    reserveAndStart(executor, execution('u1', forever));
    expect(executor.reserve('b')).toBe(false);
    executor.abort('u1', 'Canceled', 'x');
    expect(woken).toEqual(['b']);
    expect(executor.reserve('b')).toBe(true);
  });
});
