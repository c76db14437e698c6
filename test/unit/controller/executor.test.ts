import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type Execution,
  Executor,
  type ExecutorOptions,
} from '../../../src/controller/executor.ts';
import type { AttemptResult } from '../../../src/controller/run-status.ts';
import type { JsonObject } from '../../../src/handlers/handler.ts';
import { errorMessage } from '../../../src/handlers/messages.ts';
import { silentLogger } from '../../../src/util/log.ts';

type Ctx = Parameters<Execution['execute']>[0];

interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (error: unknown) => void;
}

function deferred<T>(): Deferred<T> {
  let resolve: (value: T) => void = () => {};
  let reject: (error: unknown) => void = () => {};
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Lets every promise chain that is ready run to its end (no timers involved). */
async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

const logger = silentLogger();

/** A handler the test settles by hand; it records the context it was called with. */
class ManualHandler {
  readonly calls: Ctx[] = [];
  readonly #pending: Deferred<JsonObject>[] = [];

  readonly execute = (ctx: Ctx): Promise<JsonObject> => {
    this.calls.push(ctx);
    const d = deferred<JsonObject>();
    this.#pending.push(d);
    return d.promise;
  };

  resolve(artifacts: JsonObject, index = 0): void {
    this.#deferred(index).resolve(artifacts);
  }

  reject(error: unknown, index = 0): void {
    this.#deferred(index).reject(error);
  }

  #deferred(index: number): Deferred<JsonObject> {
    const d = this.#pending[index];
    if (!d) throw new Error(`handler call ${index} has not happened`);
    return d;
  }
}

/** A handler that ignores its AbortSignal and never settles. */
const forever = (): Promise<JsonObject> => new Promise<JsonObject>(() => {});

function execution(
  uid: string,
  execute: Execution['execute'],
  overrides: Partial<Omit<Execution, 'uid' | 'execute'>> = {},
): Execution {
  return {
    key: `ns/${uid}`,
    agent: 'noop',
    uid,
    attempt: 1,
    dryRun: false,
    deadline: undefined,
    logger,
    execute,
    ...overrides,
  };
}

interface Finished {
  readonly uid: string;
  readonly result: AttemptResult;
}

/** An Executor whose callbacks record what they were called with, in one ordered event log. */
function harness(options: Partial<ExecutorOptions> & { maxConcurrent: number }) {
  const finished: Finished[] = [];
  const woken: string[] = [];
  const longRunning: string[] = [];
  const events: string[] = [];
  const executor = new Executor({
    onFinished: (e, result) => {
      finished.push({ uid: e.uid, result });
      events.push(`finished:${e.uid}`);
    },
    onCapacity: (key) => {
      woken.push(key);
      events.push(`capacity:${key}`);
    },
    onLongRunning: (e) => {
      longRunning.push(e.uid);
      events.push(`long:${e.uid}`);
    },
    ...options,
  });
  return { executor, finished, woken, longRunning, events };
}

/** Reserves a slot for `exec.key` and starts `exec` on it; fails the test if no slot was free. */
function reserveAndStart(executor: Executor, exec: Execution): void {
  expect(executor.reserve(exec.key)).toBe(true);
  executor.start(exec);
}

beforeEach(() => {
  vi.useFakeTimers();
});

afterEach(() => {
  vi.useRealTimers();
});

describe('Executor: capacity', () => {
  it('reserves up to maxConcurrent slots, then refuses and remembers the key', () => {
    const { executor } = harness({ maxConcurrent: 3 });
    expect(executor.busy).toBe(0);
    expect(executor.reserve('a')).toBe(true);
    expect(executor.reserve('b')).toBe(true);
    expect(executor.reserve('c')).toBe(true);
    expect(executor.busy).toBe(3);
    expect(executor.waiting).toBe(0);
    expect(executor.reserve('d')).toBe(false);
    expect(executor.busy).toBe(3);
    expect(executor.waiting).toBe(1);
  });

  it('keeps a key that is refused repeatedly in the waiting list once', () => {
    const { executor } = harness({ maxConcurrent: 1 });
    expect(executor.reserve('a')).toBe(true);
    expect(executor.reserve('b')).toBe(false);
    expect(executor.reserve('b')).toBe(false);
    expect(executor.reserve('c')).toBe(false);
    expect(executor.reserve('b')).toBe(false);
    expect(executor.waiting).toBe(2);
  });

  it('release() gives a reserved slot back', () => {
    const { executor } = harness({ maxConcurrent: 1 });
    expect(executor.reserve('a')).toBe(true);
    executor.release();
    expect(executor.busy).toBe(0);
    expect(executor.reserve('b')).toBe(true);
    expect(executor.busy).toBe(1);
  });

  it('an unmatched release() cannot create slots beyond maxConcurrent', () => {
    const { executor } = harness({ maxConcurrent: 1 });
    executor.release();
    executor.release();
    expect(executor.busy).toBe(0);
    expect(executor.reserve('a')).toBe(true);
    expect(executor.reserve('b')).toBe(false);
    expect(executor.busy).toBe(1);
  });

  it('start() turns a reservation into an execution without taking a second slot', () => {
    const { executor } = harness({ maxConcurrent: 2 });
    expect(executor.reserve('ns/u1')).toBe(true);
    expect(executor.busy).toBe(1);
    executor.start(execution('u1', forever));
    expect(executor.busy).toBe(1);
    expect(executor.isExecuting('u1')).toBe(true);
    expect(executor.reserve('ns/u2')).toBe(true);
    expect(executor.reserve('ns/u3')).toBe(false);
  });

  it('executions hold their slots until they end, then reservations succeed again', async () => {
    const { executor } = harness({ maxConcurrent: 2 });
    const h = new ManualHandler();
    reserveAndStart(executor, execution('u1', h.execute));
    reserveAndStart(executor, execution('u2', h.execute));
    await flush();
    expect(executor.reserve('x')).toBe(false);
    h.resolve({}, 0);
    await flush();
    expect(executor.busy).toBe(1);
    // 'x' was woken for the free slot and holds it.
    expect(executor.reserve('x')).toBe(true);
    expect(executor.busy).toBe(2);
  });

  it('a successful reserve() takes the key off the waiting list', async () => {
    const { executor, woken } = harness({ maxConcurrent: 1 });
    const h = new ManualHandler();
    reserveAndStart(executor, execution('u1', h.execute));
    expect(executor.reserve('b')).toBe(false);
    expect(executor.waiting).toBe(1);
    await flush();
    h.resolve({});
    await flush();
    expect(woken).toEqual(['b']);
    expect(executor.waiting).toBe(0);
    expect(executor.reserve('b')).toBe(true);
    expect(executor.waiting).toBe(0);
  });
});

describe('Executor: waking keys that waited for capacity', () => {
  it('wakes waiting keys in arrival order, one per freed slot', async () => {
    const { executor, woken } = harness({ maxConcurrent: 2 });
    const h = new ManualHandler();
    reserveAndStart(executor, execution('u1', h.execute));
    reserveAndStart(executor, execution('u2', h.execute));
    await flush();
    expect(executor.reserve('c')).toBe(false);
    expect(executor.reserve('d')).toBe(false);
    expect(executor.reserve('e')).toBe(false);
    expect(woken).toEqual([]);

    h.resolve({}, 1);
    await flush();
    expect(woken).toEqual(['c']);
    h.resolve({}, 0);
    await flush();
    expect(woken).toEqual(['c', 'd']);
    expect(executor.waiting).toBe(1);

    expect(executor.reserve('c')).toBe(true);
    expect(executor.reserve('d')).toBe(true);
    expect(executor.busy).toBe(2);
    expect(woken).toEqual(['c', 'd']);
  });

  it('wakes at most as many keys as there are free slots', () => {
    const { executor, woken } = harness({ maxConcurrent: 3 });
    for (const k of ['a', 'b', 'c']) expect(executor.reserve(k)).toBe(true);
    for (const k of ['w1', 'w2', 'w3', 'w4']) expect(executor.reserve(k)).toBe(false);
    executor.release();
    expect(woken).toEqual(['w1']);
    executor.release();
    expect(woken).toEqual(['w1', 'w2']);
    expect(executor.waiting).toBe(2);
  });

  it('a woken key holds its slot against newcomers until it reconciles', () => {
    const { executor, woken } = harness({ maxConcurrent: 1 });
    expect(executor.reserve('a')).toBe(true);
    expect(executor.reserve('b')).toBe(false);
    executor.release();
    expect(woken).toEqual(['b']);
    // The slot is free but promised to 'b'.
    expect(executor.busy).toBe(0);
    expect(executor.reserve('newcomer')).toBe(false);
    expect(executor.reserve('b')).toBe(true);
    expect(executor.reserve('other')).toBe(false);
  });

  it('a newcomer refused while a woken key holds the slot waits behind the older keys', () => {
    const { executor, woken } = harness({ maxConcurrent: 1 });
    expect(executor.reserve('a')).toBe(true);
    expect(executor.reserve('b')).toBe(false);
    expect(executor.reserve('c')).toBe(false);
    executor.release();
    expect(executor.reserve('newcomer')).toBe(false);
    executor.reconciled('b'); // declines
    expect(woken).toEqual(['b', 'c']);
    executor.reconciled('c'); // declines
    expect(woken).toEqual(['b', 'c', 'newcomer']);
  });

  it('maxConcurrent 1, three waiting keys, the first woken one declines: the slot passes on', async () => {
    const { executor, woken, finished } = harness({ maxConcurrent: 1 });
    const h = new ManualHandler();
    reserveAndStart(executor, execution('a', h.execute, { key: 'a' }));
    await flush();
    for (const k of ['b', 'c', 'd']) expect(executor.reserve(k)).toBe(false);
    expect(executor.waiting).toBe(3);

    h.resolve({ done: true }, 0);
    await flush();
    expect(finished.map((f) => f.uid)).toEqual(['a']);
    expect(woken).toEqual(['b']);

    // 'b' was canceled meanwhile: its reconcile ends without reserving.
    executor.reconciled('b');
    expect(woken).toEqual(['b', 'c']);
    expect(executor.waiting).toBe(1);

    // 'c' takes the slot and runs; 'd' stays waiting while it does.
    expect(executor.reserve('c')).toBe(true);
    executor.reconciled('c');
    expect(woken).toEqual(['b', 'c']);
    executor.start(execution('c', h.execute, { key: 'c' }));
    await flush();
    expect(executor.reserve('d')).toBe(false);
    executor.reconciled('d');
    expect(woken).toEqual(['b', 'c']);

    h.resolve({}, 1);
    await flush();
    expect(woken).toEqual(['b', 'c', 'd']);
    expect(executor.reserve('d')).toBe(true);
    executor.start(execution('d', h.execute, { key: 'd' }));
    await flush();
    h.resolve({}, 2);
    await flush();

    expect(finished.map((f) => f.uid)).toEqual(['a', 'c', 'd']);
    expect(executor.waiting).toBe(0);
    expect(executor.busy).toBe(0);
    // Nothing left promised: a newcomer gets the slot.
    expect(executor.reserve('e')).toBe(true);
  });

  it('every woken key declining in turn reaches the last waiting key, then frees the slot', () => {
    const { executor, woken } = harness({ maxConcurrent: 1 });
    expect(executor.reserve('a')).toBe(true);
    for (const k of ['b', 'c', 'd']) expect(executor.reserve(k)).toBe(false);
    executor.release();
    executor.reconciled('b');
    executor.reconciled('c');
    executor.reconciled('d');
    expect(woken).toEqual(['b', 'c', 'd']);
    expect(executor.waiting).toBe(0);
    expect(executor.reserve('z')).toBe(true);
  });

  it('reconciled() of a key that was not woken wakes nobody', () => {
    const { executor, woken } = harness({ maxConcurrent: 1 });
    expect(executor.reserve('a')).toBe(true);
    expect(executor.reserve('b')).toBe(false);
    executor.reconciled('a');
    executor.reconciled('b');
    executor.reconciled('unknown');
    expect(woken).toEqual([]);
    expect(executor.waiting).toBe(1);
  });

  it('reconciled() of a woken key that did reserve wakes nobody else', () => {
    const { executor, woken } = harness({ maxConcurrent: 1 });
    expect(executor.reserve('a')).toBe(true);
    expect(executor.reserve('b')).toBe(false);
    expect(executor.reserve('c')).toBe(false);
    executor.release();
    expect(executor.reserve('b')).toBe(true);
    executor.reconciled('b');
    expect(woken).toEqual(['b']);
    expect(executor.reserve('c')).toBe(false);
  });

  it('a woken key that reserved and then released passes the slot on', () => {
    const { executor, woken } = harness({ maxConcurrent: 1 });
    expect(executor.reserve('a')).toBe(true);
    expect(executor.reserve('b')).toBe(false);
    expect(executor.reserve('c')).toBe(false);
    executor.release();
    expect(executor.reserve('b')).toBe(true);
    executor.release(); // the claim could not be written
    executor.reconciled('b');
    expect(woken).toEqual(['b', 'c']);
  });

  it('wakes after onFinished has seen the execution end', async () => {
    const { executor, events } = harness({ maxConcurrent: 1 });
    const h = new ManualHandler();
    reserveAndStart(executor, execution('u1', h.execute));
    expect(executor.reserve('b')).toBe(false);
    await flush();
    h.resolve({});
    await flush();
    expect(events).toEqual(['finished:u1', 'capacity:b']);
  });

  it('still wakes waiting keys when onFinished throws', () => {
    const { executor, woken } = harness({
      maxConcurrent: 1,
      onFinished: () => {
        throw new Error('onFinished failed');
      },
    });
    reserveAndStart(executor, execution('u1', forever));
    expect(executor.reserve('b')).toBe(false);
    try {
      executor.abort('u1', 'Canceled', 'x');
    } catch {
      // Whether abort() passes the callback's error on is not what this test is about.
    }
    expect(woken).toEqual(['b']);
    expect(executor.busy).toBe(0);
    expect(executor.isExecuting('u1')).toBe(false);
  });

  it('copes with onCapacity reserving or declining synchronously', () => {
    const woken: string[] = [];
    const decline = new Set(['b', 'd']);
    const executor: Executor = new Executor({
      maxConcurrent: 2,
      onFinished: () => {},
      onCapacity: (key) => {
        woken.push(key);
        if (decline.has(key)) executor.reconciled(key);
        else expect(executor.reserve(key)).toBe(true);
      },
    });
    expect(executor.reserve('x')).toBe(true);
    expect(executor.reserve('y')).toBe(true);
    for (const k of ['b', 'c', 'd', 'e', 'f']) expect(executor.reserve(k)).toBe(false);
    executor.release();
    expect(woken).toEqual(['b', 'c']);
    expect(executor.busy).toBe(2);
    executor.release();
    expect(woken).toEqual(['b', 'c', 'd', 'e']);
    expect(executor.busy).toBe(2);
    expect(executor.waiting).toBe(1);
  });
});

/** A small deterministic PRNG (mulberry32), so the simulation is reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('Executor: a simulated reconciler never overbooks and never strands a key', () => {
  for (const seed of [1, 2, 3, 42, 1234, 99_999]) {
    it(`seed ${seed}`, async () => {
      const random = prng(seed);
      const maxConcurrent = 1 + Math.floor(random() * 3);
      const keys = Array.from({ length: 12 }, (_, i) => `ns/run-${i}`);
      let inFlight = 0;
      let maxInFlight = 0;
      let maxBusy = 0;
      const done = new Set<string>();

      const executor: Executor = new Executor({
        maxConcurrent,
        onFinished: (e, result) => {
          expect(result.kind).toBe('succeeded');
          done.add(e.key);
        },
        // Like the work queue: the woken key's reconcile runs a little later.
        onCapacity: (key) => {
          setTimeout(() => reconcile(key), Math.floor(random() * 5));
        },
      });

      const observe = () => {
        maxBusy = Math.max(maxBusy, executor.busy);
      };

      const reconcile = (key: string): void => {
        try {
          if (done.has(key) || executor.executingUid(key)) return;
          // Sometimes the run was canceled meanwhile: it gives up without reserving.
          if (random() < 0.15) {
            done.add(key);
            return;
          }
          if (!executor.reserve(key)) return;
          observe();
          // Sometimes the claim cannot be written: the slot goes back and the key tries later.
          if (random() < 0.2) {
            executor.release();
            setTimeout(() => reconcile(key), 10);
            return;
          }
          const ms = 1 + Math.floor(random() * 50);
          executor.start({
            key,
            agent: 'noop',
            uid: `${key}-uid`,
            attempt: 1,
            dryRun: false,
            deadline: undefined,
            logger,
            execute: () => {
              inFlight++;
              maxInFlight = Math.max(maxInFlight, inFlight);
              return new Promise<JsonObject>((resolve) =>
                setTimeout(() => {
                  inFlight--;
                  resolve({});
                }, ms),
              );
            },
          });
          observe();
        } finally {
          executor.reconciled(key);
        }
      };

      for (const key of keys) setTimeout(() => reconcile(key), Math.floor(random() * 20));
      await vi.advanceTimersByTimeAsync(10_000);

      expect(maxInFlight).toBeLessThanOrEqual(maxConcurrent);
      expect(maxBusy).toBeLessThanOrEqual(maxConcurrent);
      expect([...done].sort()).toEqual([...keys].sort());
      expect(executor.busy).toBe(0);
      expect(executor.waiting).toBe(0);
      expect(inFlight).toBe(0);
    });
  }
});

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

describe('errorMessage', () => {
  const cases: ReadonlyArray<{ name: string; error: unknown; expected: string }> = [
    { name: 'an Error', error: new Error('boom'), expected: 'boom' },
    { name: 'an Error subclass', error: new TypeError('bad type'), expected: 'bad type' },
    { name: 'an Error with an empty message', error: new Error(''), expected: 'Error' },
    { name: 'an empty TypeError', error: new TypeError(), expected: 'TypeError' },
    {
      name: 'an empty Error with a custom name',
      error: Object.assign(new Error(''), { name: 'HandlerError' }),
      expected: 'HandlerError',
    },
    { name: 'a string', error: 'just text', expected: 'just text' },
    { name: 'an empty string', error: '', expected: '' },
    {
      name: 'an object',
      error: { code: 'E1', retry: false },
      expected: '{"code":"E1","retry":false}',
    },
    { name: 'an array', error: [1, 'two'], expected: '[1,"two"]' },
    { name: 'a number', error: 42, expected: '42' },
    { name: 'null', error: null, expected: 'null' },
    { name: 'undefined', error: undefined, expected: 'undefined' },
  ];
  for (const { name, error, expected } of cases) {
    it(name, () => {
      expect(errorMessage(error)).toBe(expected);
    });
  }
});
