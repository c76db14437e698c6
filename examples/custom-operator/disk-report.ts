// The custom agent of main.ts, in a module of its own so that a test can use it without starting
// an operator (test/unit/docs/docs-library-example.test.ts). docs/library.md shows this file as it
// looks in your own project, where it imports from 'agentrun-operator' instead of the relative path.
import { z } from 'zod';
import { defineHandler } from '../../src/index.ts';

export const diskReport = defineHandler({
  name: 'disk.report',
  description: 'Reports how full a volume is (dry-run safe: it only reads).',
  params: z.object({
    path: z.string().startsWith('/').default('/'),
    warnAbovePercent: z.int().min(1).max(100).default(90),
  }),
  // The plan is what the run will do; it is stored on the status and in the audit log.
  plan: ({ params }) => ({ path: params.path, warnAbovePercent: params.warnAbovePercent }),
  run: async (plan, ctx) => {
    const { statfs } = await import('node:fs/promises');
    ctx.signal.throwIfAborted();
    const stats = await statfs(plan.path);
    const usedPercent = Math.round((1 - stats.bavail / stats.blocks) * 100);
    ctx.logger.debug({ usedPercent }, 'measured');
    if (usedPercent > plan.warnAbovePercent) {
      throw new Error(`${plan.path} is ${usedPercent}% full (limit ${plan.warnAbovePercent}%)`);
    }
    return { path: plan.path, usedPercent };
  },
});
