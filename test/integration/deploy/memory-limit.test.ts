import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { FakeAgentRunApi } from '../../support/memory/fake-agentrun-api.ts';

/**
 * Issue 14's bound: with 50,000 finished runs in the cluster the operator stays under its
 * Deployment's memory limit with 30% headroom. Creating 50,000 AgentRuns in a real API server
 * takes minutes, so a small fake API server (in this process) lists them to the real controller
 * wiring (informer, zod parse, cache transform, reconciler) running in a child process started
 * with the Deployment's own NODE_OPTIONS, which reports its memory after a full GC.
 *
 * Nothing here is timed: the bounds are on memory after garbage collection, which depends on
 * what is retained, not on how busy the machine is.
 */
const RUNS = 50_000;
const HEADROOM = 0.3;
/** What a slim cached run costs (about 1.2 KiB measured), with room; a whole one is ~2.1 KiB. */
const MAX_HEAP_PER_RUN = 1700;

const root = join(import.meta.dirname, '../../..');

interface Manager {
  readonly limitBytes: number;
  readonly nodeOptions: string[];
}

function manager(): Manager {
  const deployment = parse(readFileSync(join(root, 'deploy/manager/manager.yaml'), 'utf8'));
  const container = deployment.spec.template.spec.containers.find(
    (c: { name: string }) => c.name === 'manager',
  );
  const limit: string = container.resources.limits.memory;
  const match = /^(\d+)Mi$/.exec(limit);
  if (!match) throw new Error(`unexpected memory limit ${limit}`);
  const env: { name: string; value?: string }[] = container.env;
  const nodeOptions = env.find((e) => e.name === 'NODE_OPTIONS')?.value ?? '';
  return {
    limitBytes: Number(match[1]) * 2 ** 20,
    nodeOptions: nodeOptions.split(/\s+/).filter(Boolean),
  };
}

interface Report {
  readonly before: NodeJS.MemoryUsage;
  readonly after: NodeJS.MemoryUsage;
  readonly heapLimit: number;
}

async function runChild(
  args: string[],
): Promise<{ code: number | null; report?: Report; stderr: string }> {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const line = stdout.trim().split('\n').at(-1);
  return { code, stderr, ...(line ? { report: JSON.parse(line) as Report } : {}) };
}

describe('the Deployment memory limit', () => {
  let api: FakeAgentRunApi;
  const { limitBytes, nodeOptions } = manager();

  beforeAll(async () => {
    api = await FakeAgentRunApi.start(RUNS, 'memory');
  });

  afterAll(async () => {
    await api?.stop();
  });

  it('sets V8 heap sizing below the container limit', () => {
    const oldSpace = nodeOptions.find((o) => o.startsWith('--max-old-space-size='));
    expect(oldSpace).toBeDefined();
    expect(Number(oldSpace?.split('=')[1]) * 2 ** 20).toBeLessThanOrEqual(limitBytes / 2);
  });

  it(
    `holds ${RUNS} finished runs with ${HEADROOM * 100}% headroom`,
    async () => {
      const child = join(root, 'test/support/memory/cache-child.ts');
      const { code, report, stderr } = await runChild([
        ...nodeOptions,
        '--expose-gc',
        child,
        api.url,
        'memory',
      ]);
      expect({ code, stderr: stderr.slice(-2000) }).toEqual({ code: 0, stderr: '' });
      if (!report) throw new Error('the child reported nothing');
      const mib = (bytes: number) => Math.round(bytes / 2 ** 20);
      const perRun = (report.after.heapUsed - report.before.heapUsed) / RUNS;
      console.log(
        `${RUNS} runs: RSS after GC ${mib(report.after.rss)} MiB (limit ${mib(limitBytes)} MiB), ` +
          `live heap ${mib(report.after.heapUsed)} MiB, ${perRun.toFixed(0)} B/run, ` +
          `heap limit ${mib(report.heapLimit)} MiB`,
      );
      expect(api.lists).toBeGreaterThanOrEqual(RUNS / 500);
      expect(report.heapLimit).toBeLessThan(limitBytes);
      expect(report.after.rss).toBeLessThan(limitBytes * (1 - HEADROOM));
      expect(perRun).toBeLessThan(MAX_HEAP_PER_RUN);
    },
    5 * 60_000,
  );
});
