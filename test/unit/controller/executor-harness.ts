import { afterEach, beforeEach, expect, vi } from 'vitest';
import {
  type Execution,
  Executor,
  type ExecutorOptions,
} from '../../../src/controller/executor.ts';
import type { AttemptResult } from '../../../src/controller/run-status.ts';
import type { JsonObject } from '../../../src/handlers/handler.ts';
import { silentLogger } from '../../../src/util/log.ts';

/**
 * What the executor-*.test.ts files share: hand-settled and never-settling handlers, an
 * Execution factory, and an Executor whose callbacks record what they were called with.
 */

export type Ctx = Parameters<Execution['execute']>[0];

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
export async function flush(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve();
}

export const logger = silentLogger();

/** A handler the test settles by hand; it records the context it was called with. */
export class ManualHandler {
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
export const forever = (): Promise<JsonObject> => new Promise<JsonObject>(() => {});

export function execution(
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
export function harness(options: Partial<ExecutorOptions> & { maxConcurrent: number }) {
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
export function reserveAndStart(executor: Executor, exec: Execution): void {
  expect(executor.reserve(exec.key)).toBe(true);
  executor.start(exec);
}

/** Every executor test runs on fake timers: deadlines and long-running checks are timers. */
export function onFakeTimers(): void {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });
}
