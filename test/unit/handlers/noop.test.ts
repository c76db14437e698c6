import { describe, expect, it } from 'vitest';
import type { HandlerContext, JsonObject, Prepared } from '../../../src/handlers/handler.ts';
import { noopHandler } from '../../../src/handlers/noop.ts';
import { silentLogger } from '../../../src/util/log.ts';

function context(signal: AbortSignal = new AbortController().signal): HandlerContext {
  return { runId: 'run-1', attempt: 1, dryRun: false, signal, logger: silentLogger() };
}

function prepare(params: unknown): Prepared {
  return noopHandler.prepare({ objective: 'nothing', params, dryRun: false });
}

function execute(params: unknown, signal?: AbortSignal): Promise<JsonObject> {
  const prepared = prepare(params);
  if (!prepared.ok) throw new Error(prepared.message);
  return prepared.execute(context(signal));
}

describe('noop', () => {
  it('is registered as "noop"', () => {
    expect(noopHandler.name).toBe('noop');
  });

  it('plans its params and returns them as artifacts', async () => {
    const params = { label: 'bench', nested: { list: [1, 'two', null, true] } };
    const prepared = prepare(params);
    expect(prepared.ok && prepared.plan).toEqual(params);
    await expect(execute(params)).resolves.toEqual(params);
  });

  it('treats absent params as {}', async () => {
    await expect(execute(undefined)).resolves.toEqual({});
  });

  it('throws the requested failure', async () => {
    await expect(execute({ fail: 'disk on fire' })).rejects.toThrow(new Error('disk on fire'));
  });

  it('waits delayMs before answering', async () => {
    const started = performance.now();
    await expect(execute({ delayMs: 50, tag: 1 })).resolves.toEqual({ delayMs: 50, tag: 1 });
    // Timers may fire a millisecond early; the bound only proves that it waited.
    expect(performance.now() - started).toBeGreaterThanOrEqual(40);
  });

  it('waits, then fails', async () => {
    const started = performance.now();
    await expect(execute({ delayMs: 30, fail: 'late' })).rejects.toThrow('late');
    expect(performance.now() - started).toBeGreaterThanOrEqual(20);
  });

  it('rejects promptly with the abort reason', async () => {
    const controller = new AbortController();
    const reason = new Error('run cancelled');
    const started = performance.now();
    const pending = execute({ delayMs: 600_000 }, controller.signal);
    setTimeout(() => controller.abort(reason), 10);
    await expect(pending).rejects.toBe(reason);
    expect(performance.now() - started).toBeLessThan(5_000);
  });

  it('rejects at once when already aborted, even without a delay', async () => {
    const reason = new Error('deleted');
    await expect(execute({}, AbortSignal.abort(reason))).rejects.toBe(reason);
    await expect(execute({ delayMs: 10 }, AbortSignal.abort(reason))).rejects.toBe(reason);
  });

  it.each([
    [{ delayMs: -1 }, 'params.delayMs: Too small: expected number to be >=0'],
    [{ delayMs: 600_001 }, 'params.delayMs: Too big: expected number to be <=600000'],
    [{ delayMs: 1.5 }, 'params.delayMs: Invalid input: expected int, received number'],
    [{ delayMs: '5' }, 'params.delayMs: Invalid input: expected number, received string'],
    [{ fail: 3 }, 'params.fail: Invalid input: expected string, received number'],
    [{ fail: '' }, 'params.fail: must be a non-empty error message'],
    [
      { when: () => 1 },
      'params.when: must be JSON (a string, number, boolean, null, array or object)',
    ],
    [
      { deep: { list: [1, Number.NaN] } },
      'params.deep: must be JSON (a string, number, boolean, null, array or object)',
    ],
    [[1], 'params: Invalid input: expected object, received array'],
  ])('rejects %j', (params, message) => {
    const prepared = prepare(params);
    expect(prepared).toEqual({ ok: false, reason: 'InvalidParams', message });
  });
});
