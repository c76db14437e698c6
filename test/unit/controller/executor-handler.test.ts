import { describe, expect, it, vi } from 'vitest';
import { type Execution, Executor } from '../../../src/controller/executor.ts';
import type { JsonObject } from '../../../src/handlers/handler.ts';
import {
  execution,
  flush,
  harness,
  logger,
  ManualHandler,
  onFakeTimers,
  reserveAndStart,
} from './executor-harness.ts';

/** Executor: how the handler is called, and onFinished once for each execution that settles. */

onFakeTimers();

describe('Executor: the handler call', () => {
  it('passes runId, attempt, dryRun, an unaborted signal and the logger', async () => {
    const { executor } = harness({ maxConcurrent: 1 });
    const h = new ManualHandler();
    const child = logger.child({ attempt: 3 });
    reserveAndStart(
      executor,
      execution('u1', h.execute, { attempt: 3, dryRun: true, logger: child }),
    );
    await flush();
    expect(h.calls).toHaveLength(1);
    const ctx = h.calls[0];
    expect(ctx?.runId).toBe('u1');
    expect(ctx?.attempt).toBe(3);
    expect(ctx?.dryRun).toBe(true);
    expect(ctx?.logger).toBe(child);
    expect(ctx?.signal.aborted).toBe(false);
  });

  it('calls the handler once per execution', async () => {
    const { executor } = harness({ maxConcurrent: 2 });
    const execute = vi.fn(async (): Promise<JsonObject> => ({}));
    reserveAndStart(executor, execution('u1', execute));
    await flush();
    await vi.advanceTimersByTimeAsync(1_000);
    expect(execute).toHaveBeenCalledTimes(1);
  });
});

describe('Executor: onFinished, once per execution', () => {
  it('a value that is not a storable JSON object fails the attempt, saying why', async () => {
    const { executor, finished } = harness({ maxConcurrent: 2 });
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    reserveAndStart(
      executor,
      execution('u1', async () => [1, 2] as unknown as JsonObject),
    );
    reserveAndStart(
      executor,
      execution('u2', async () => cyclic as JsonObject),
    );
    await flush();
    expect(finished).toEqual([
      {
        uid: 'u1',
        result: {
          kind: 'failed',
          error: 'the handler returned an array; artifacts must be a JSON object',
        },
      },
      {
        uid: 'u2',
        result: {
          kind: 'failed',
          error: "the handler's artifacts is nested more than 64 levels deep; the limit is 64",
        },
      },
    ]);
  });

  it('a rejection without a message still gets a readable error', async () => {
    const { executor, finished } = harness({ maxConcurrent: 1 });
    reserveAndStart(
      executor,
      execution('u1', () => Promise.reject(undefined)),
    );
    await flush();
    expect(finished).toEqual([
      {
        uid: 'u1',
        result: {
          kind: 'failed',
          error: 'the handler failed without saying why (it threw undefined)',
        },
      },
    ]);
  });

  it('success: the artifacts, and the execution is no longer tracked', async () => {
    const { executor, finished } = harness({ maxConcurrent: 1 });
    const h = new ManualHandler();
    reserveAndStart(executor, execution('u1', h.execute));
    await flush();
    expect(finished).toEqual([]);
    h.resolve({ answer: 42, nested: { ok: true } });
    await flush();
    expect(finished).toEqual([
      { uid: 'u1', result: { kind: 'succeeded', artifacts: { answer: 42, nested: { ok: true } } } },
    ]);
    expect(executor.isExecuting('u1')).toBe(false);
    expect(executor.executingUid('ns/u1')).toBeUndefined();
    expect(executor.busy).toBe(0);
    await vi.advanceTimersByTimeAsync(60_000);
    expect(finished).toHaveLength(1);
  });

  it('passes the execution object itself to onFinished', async () => {
    const seen: Execution[] = [];
    const executor = new Executor({
      maxConcurrent: 1,
      onFinished: (e) => seen.push(e),
      onCapacity: () => {},
    });
    const exec = execution('u1', async () => ({}));
    reserveAndStart(executor, exec);
    await flush();
    expect(seen).toEqual([exec]);
    expect(seen[0]).toBe(exec);
  });

  it('onFinished sees the execution already gone and its slot free', async () => {
    let during: { executing: boolean; uid: string | undefined; busy: number } | undefined;
    const executor: Executor = new Executor({
      maxConcurrent: 1,
      onFinished: (e) => {
        during = {
          executing: executor.isExecuting(e.uid),
          uid: executor.executingUid(e.key),
          busy: executor.busy,
        };
      },
      onCapacity: () => {},
    });
    reserveAndStart(
      executor,
      execution('u1', async () => ({})),
    );
    await flush();
    expect(during).toEqual({ executing: false, uid: undefined, busy: 0 });
  });

  const failures: ReadonlyArray<{ name: string; execute: Execution['execute']; error: string }> = [
    {
      name: 'a rejected promise with an Error',
      execute: () => Promise.reject(new Error('upstream said 503')),
      error: 'upstream said 503',
    },
    {
      name: 'an async function that throws',
      execute: async () => {
        throw new TypeError('bad params');
      },
      error: 'bad params',
    },
    {
      name: 'a synchronous throw inside execute',
      execute: () => {
        throw new Error('thrown synchronously');
      },
      error: 'thrown synchronously',
    },
    {
      name: 'a rejection with a string',
      execute: () => Promise.reject('plain string'),
      error: 'plain string',
    },
    {
      name: 'a rejection with an object',
      execute: () => Promise.reject({ code: 7 }),
      error: '{"code":7}',
    },
    {
      name: 'an Error with an empty message',
      execute: () => Promise.reject(new RangeError('')),
      error: 'RangeError',
    },
  ];

  for (const { name, execute, error } of failures) {
    it(`failure: ${name}`, async () => {
      const { executor, finished } = harness({ maxConcurrent: 1 });
      expect(executor.reserve('ns/u1')).toBe(true);
      expect(() => executor.start(execution('u1', execute))).not.toThrow();
      await flush();
      expect(finished).toEqual([{ uid: 'u1', result: { kind: 'failed', error } }]);
      expect(executor.isExecuting('u1')).toBe(false);
      expect(executor.busy).toBe(0);
      await vi.advanceTimersByTimeAsync(60_000);
      expect(finished).toHaveLength(1);
    });
  }
});

describe('Executor: isExecuting / executingUid', () => {
  it('tracks an execution by uid and by key from start to end', async () => {
    const { executor } = harness({ maxConcurrent: 2 });
    const h = new ManualHandler();
    expect(executor.isExecuting('u1')).toBe(false);
    expect(executor.executingUid('ns/a')).toBeUndefined();
    reserveAndStart(executor, execution('u1', h.execute, { key: 'ns/a' }));
    expect(executor.isExecuting('u1')).toBe(true);
    expect(executor.executingUid('ns/a')).toBe('u1');
    expect(executor.isExecuting('u2')).toBe(false);
    expect(executor.executingUid('ns/b')).toBeUndefined();
    await flush();
    h.resolve({});
    await flush();
    expect(executor.isExecuting('u1')).toBe(false);
    expect(executor.executingUid('ns/a')).toBeUndefined();
  });

  it('a recreated run under the same key keeps its own mapping when the old execution ends', async () => {
    const { executor } = harness({ maxConcurrent: 2 });
    const h = new ManualHandler();
    reserveAndStart(executor, execution('old', h.execute, { key: 'ns/a' }));
    reserveAndStart(executor, execution('new', h.execute, { key: 'ns/a' }));
    expect(executor.executingUid('ns/a')).toBe('new');
    await flush();
    h.resolve({}, 0); // the old one ends
    await flush();
    expect(executor.isExecuting('old')).toBe(false);
    expect(executor.isExecuting('new')).toBe(true);
    expect(executor.executingUid('ns/a')).toBe('new');
    executor.abort('new', 'Canceled', 'x');
    expect(executor.executingUid('ns/a')).toBeUndefined();
  });
});
