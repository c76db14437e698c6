/**
 * Run in a child process by test/integration/deploy/memory-limit.test.ts, with the Deployment's
 * NODE_OPTIONS and --expose-gc: the AgentRun controller as the operator wires it (informer,
 * parse, cache transform, work queue, reconciler with auditing on) syncs from the API server at
 * argv[2], reconciles every cached run once as at start-up, and then prints one JSON line with
 * its memory after a full garbage collection, before the sync and after it.
 */

import { AgentRunController } from '../../../src/controller/controller.ts';
import { noopHandler } from '../../../src/handlers/noop.ts';
import { HandlerRegistry } from '../../../src/handlers/registry.ts';
import { NO_AUTH } from '../../../src/kube/cluster-access.ts';
import { KubeClient } from '../../../src/kube/kube-client.ts';
import type { WorkQueue } from '../../../src/kube/workqueue.ts';
import { silentLogger } from '../../../src/util/log.ts';

const [server = '', namespace = ''] = process.argv.slice(2);
const gc = globalThis.gc;
if (!gc) throw new Error('run me with --expose-gc');

function collect(): NodeJS.MemoryUsage {
  // Twice: the first can leave garbage that only becomes unreachable through finalization.
  gc?.();
  gc?.();
  return process.memoryUsage();
}

const client = new KubeClient({
  server,
  tls: { rejectUnauthorized: false },
  namespace: undefined,
  auth: NO_AUTH,
});
let queue: WorkQueue | undefined;
const controller = new AgentRunController({
  client,
  namespace,
  registry: new HandlerRegistry([noopHandler]),
  events: { record: () => {} },
  logger: silentLogger(),
  maxConcurrentRuns: 10,
  workers: 4,
  retry: { baseMs: 1000, maxMs: 60_000 },
  resyncPeriodMs: 0,
  finalizerAfterMs: 10_000,
  attachQueue: (q) => {
    queue = q;
  },
  audit: {
    sink: {
      write: () => Promise.resolve(true),
      isPending: () => false,
      failing: () => false,
      onFailure: () => () => {},
    },
    syncWaitMs: 250,
    deadlineMs: 600_000,
  },
});

const before = collect();
await controller.startCache();
controller.startWorkers();
// Every cached run is reconciled once; a settled run needs nothing, so the queue empties.
while ((queue?.len() ?? 0) > 0) await new Promise((resolve) => setTimeout(resolve, 50));
await new Promise((resolve) => setTimeout(resolve, 200));
const after = collect();
const heapLimit = (await import('node:v8')).getHeapStatistics().heap_size_limit;
process.stdout.write(`${JSON.stringify({ before, after, heapLimit })}\n`);
await controller.stop(0);
process.exit(0);
