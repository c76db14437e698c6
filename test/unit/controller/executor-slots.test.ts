import { describe, expect, it } from 'vitest';
import { Executor } from '../../../src/controller/executor.ts';
import {
  execution,
  flush,
  forever,
  harness,
  ManualHandler,
  onFakeTimers,
  reserveAndStart,
} from './executor-harness.ts';

/** Executor slots: reserving up to MAX_CONCURRENT_RUNS, and waking the keys that waited. */

onFakeTimers();

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

  it('a key woken while its own reconcile runs keeps the slot for the reconcile the wake enqueued', () => {
    const { executor, woken } = harness({ maxConcurrent: 1 });
    expect(executor.reserve('a')).toBe(true);
    expect(executor.reserve('b')).toBe(false);
    // b's next reconcile starts, finds no slot, and writes its Queued status; meanwhile a's slot
    // frees and b is woken.
    const ticket = executor.ticket();
    expect(executor.reserve('b')).toBe(false);
    expect(executor.reserve('c')).toBe(false);
    executor.release();
    expect(woken).toEqual(['b']);
    executor.reconciled('b', ticket);
    // The slot stays b's: c, which came later, is not woken ahead of it.
    expect(woken).toEqual(['b']);
    expect(executor.reserve('c')).toBe(false);
    // The reconcile the wake enqueued takes it.
    expect(executor.reserve('b')).toBe(true);
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
