// `noop`: does nothing, optionally slowly or unsuccessfully. Tests and benchmarks drive the
// controller with it, so the run path allocates nothing beyond one timer when asked to wait.
import { z } from 'zod';
import { sleep } from '../util/sleep.ts';
import type { Handler, JsonObject } from './handler.ts';
import { defineHandler, jsonValueSchema } from './handler.ts';

export const NOOP_MAX_DELAY_MS = 600_000;

const noopParams = z
  .object({
    delayMs: z.int().min(0).max(NOOP_MAX_DELAY_MS).optional(),
    fail: z.string().min(1, 'must be a non-empty error message').optional(),
  })
  // Anything else is carried through to the artifacts, so tests can tag runs.
  .catchall(jsonValueSchema);

export type NoopParams = z.output<typeof noopParams>;

export const noopHandler: Handler = defineHandler({
  name: 'noop',
  description:
    'Does nothing: waits params.delayMs, fails with params.fail if set, returns its params.',
  params: noopParams,
  plan: ({ params }) => params,
  run: async (plan, ctx): Promise<JsonObject> => {
    ctx.signal.throwIfAborted();
    if (plan.delayMs !== undefined && plan.delayMs > 0) {
      await sleep(plan.delayMs, ctx.signal);
      ctx.signal.throwIfAborted();
    }
    if (plan.fail !== undefined) throw new Error(plan.fail);
    // The plan is the params; it is not mutated by anyone, so no copy is needed.
    return plan;
  },
});
