import { z } from 'zod';
import { defineHandler, type Handler } from '../../src/handlers/handler.ts';
import { sleep } from '../../src/util/sleep.ts';

/** A handler that records every execution, to prove each run executes exactly once. */
export function countingHandler(name = 'count'): {
  handler: Handler;
  executions: Map<string, number>;
  total: () => number;
} {
  const executions = new Map<string, number>();
  const handler = defineHandler({
    name,
    description: 'counts its executions per run id',
    params: z.object({
      delayMs: z.int().min(0).default(0),
      /** Extra delay on attempt 1 only, so a retry can finish quickly. */
      firstAttemptDelayMs: z.int().min(0).default(0),
      fail: z.boolean().default(false),
    }),
    plan: ({ params }) => ({ ...params }),
    run: async (plan, ctx) => {
      executions.set(ctx.runId, (executions.get(ctx.runId) ?? 0) + 1);
      const delay = plan.delayMs + (ctx.attempt === 1 ? plan.firstAttemptDelayMs : 0);
      if (delay > 0) {
        await sleep(delay, ctx.signal);
        ctx.signal.throwIfAborted();
      }
      if (plan.fail) throw new Error(`attempt ${ctx.attempt} failed on purpose`);
      return { attempt: ctx.attempt };
    },
  });
  return {
    handler,
    executions,
    total: () => [...executions.values()].reduce((a, b) => a + b, 0),
  };
}
