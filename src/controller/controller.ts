import type { AgentDefinition } from '../api/agentdefinition.ts';
import { type AgentRun, GROUP, PLURAL, parseAgentRun, VERSION } from '../api/agentrun.ts';
import type { AgentResolver } from '../handlers/registry.ts';
import { Informer, type InformerEventHandler } from '../kube/informer.ts';
import type { KubeClient } from '../kube/kube-client.ts';
import { objectKey } from '../kube/kube-object.ts';
import { defaultControllerRateLimiter } from '../kube/rate-limiter.ts';
import { WorkQueue, type WorkQueueMetrics } from '../kube/workqueue.ts';
import type { WritePriority } from '../kube/write-priority.ts';
import type { Logger } from '../util/log.ts';
import { AgentRunReconciler, type RunEvents } from './agentrun-reconciler.ts';
import { ConflictError, KubeAgentRunWriter, NotFoundError } from './agentrun-writer.ts';
import type { RunAudit } from './audit-tracker.ts';
import { agentRunCacheTransform } from './cache-transform.ts';
import { type ControllerMetrics, noControllerMetrics } from './controller-metrics.ts';
import type { JobExecutor } from './job-runner.ts';
import { isTerminal } from './run-status.ts';

export interface ControllerOptions {
  readonly client: KubeClient;
  /** '' watches every namespace. */
  readonly namespace: string;
  /** Where runs find their agent: the HandlerRegistry, or AgentCatalog with AgentDefinitions. */
  readonly registry: AgentResolver;
  /**
   * AgentDefinitions' changes: runs waiting for an agent of that name (AgentNotFound) are looked
   * at again at once. Absent when AgentDefinitions are off.
   */
  readonly definitions?: {
    addEventHandler(handler: InformerEventHandler<AgentDefinition>): () => void;
  };
  /** UNKNOWN_AGENT_GRACE_SECONDS in ms; 0 or absent: an unknown agent fails the run at once. */
  readonly unknownAgentGraceMs?: number;
  /** The `agent` label of a run's metrics (definition agents share one); default spec.agent. */
  readonly metricsAgent?: (run: AgentRun) => string;
  readonly events: RunEvents;
  readonly logger: Logger;
  readonly maxConcurrentRuns: number;
  /** The Job executor (Job agents); absent when they are off. */
  readonly jobs?: JobExecutor | undefined;
  /** MAX_CONCURRENT_JOB_RUNS. */
  readonly maxConcurrentJobRuns?: number | undefined;
  readonly workers: number;
  readonly retry: { readonly baseMs: number; readonly maxMs: number };
  readonly resyncPeriodMs: number;
  readonly finalizerAfterMs: number;
  /** QUEUED_STATUS_AFTER_MS: when a run waiting for a handler slot says so; 0: never. */
  readonly queuedStatusAfterMs?: number;
  readonly queueMetrics?: WorkQueueMetrics;
  /** Given the work queue once, for gauges read at scrape time (OperatorMetrics.attachQueue). */
  readonly attachQueue?: (queue: WorkQueue) => void;
  readonly metrics?: ControllerMetrics;
  /** The audit log; absent when auditing is off. */
  readonly audit?: RunAudit;
  /** Status writes are tracked here so that Events give way to them (operator.ts). */
  readonly statusWrites?: WritePriority;
}

/**
 * The AgentRun controller, shaped like sample-controller: an informer keeps the cache and turns
 * every change into a namespace/name key on a work queue; workers take keys (never the same key
 * twice at once) and reconcile them; failures go back with per-key exponential backoff, all
 * keys together at most 10 a second after a burst of 100 (controller-runtime's default).
 *
 * The informer starts with `startCache()` on every replica so a new leader starts warm; the
 * workers start only with `startWorkers()`, on the leader.
 */
export class AgentRunController {
  readonly #informer: Informer<AgentRun>;
  readonly #queue: WorkQueue;
  readonly #reconciler: AgentRunReconciler;
  readonly #options: ControllerOptions;
  readonly #metrics: ControllerMetrics;
  #workers: Promise<void>[] = [];

  constructor(options: ControllerOptions) {
    this.#options = options;
    this.#metrics = options.metrics ?? noControllerMetrics;
    this.#metrics.maxConcurrentReconciles(options.workers);
    const queue = new WorkQueue({
      rateLimiter: defaultControllerRateLimiter(),
      ...(options.queueMetrics ? { metrics: options.queueMetrics } : {}),
    });
    this.#queue = queue;
    options.attachQueue?.(queue);
    const writer = new KubeAgentRunWriter(options.client);
    this.#informer = new Informer<AgentRun>({
      client: options.client,
      group: GROUP,
      version: VERSION,
      plural: PLURAL,
      namespace: options.namespace,
      // Our own writes come back through the watch; their answers were parsed already.
      parse: (raw) => writer.answered(raw) ?? parseAgentRun(raw),
      transform: agentRunCacheTransform({ auditing: options.audit !== undefined }),
      logger: options.logger,
      resyncPeriodMs: options.resyncPeriodMs,
    });
    this.#reconciler = new AgentRunReconciler({
      store: this.#informer,
      writer,
      handlers: options.registry,
      events: options.events,
      logger: options.logger,
      maxConcurrentRuns: options.maxConcurrentRuns,
      jobs: options.jobs,
      maxConcurrentJobRuns: options.maxConcurrentJobRuns,
      retry: options.retry,
      finalizerAfterMs: options.finalizerAfterMs,
      queuedStatusAfterMs: options.queuedStatusAfterMs ?? 0,
      unknownAgentGraceMs: options.unknownAgentGraceMs ?? 0,
      ...(options.metricsAgent ? { metricsAgent: options.metricsAgent } : {}),
      enqueue: (key) => queue.add(key),
      metrics: this.#metrics,
      ...(options.audit ? { audit: options.audit } : {}),
      ...(options.statusWrites ? { statusWrites: options.statusWrites } : {}),
    });
    const enqueue = (run: AgentRun) => {
      const key = objectKey(run);
      if (key) queue.add(key);
    };
    this.#informer.addEventHandler({
      onAdd: enqueue,
      onUpdate: (_old, run) => enqueue(run),
      onDelete: (run) => {
        enqueue(run);
        this.#reconciler.forget(run.metadata.uid);
      },
      onResync: enqueue,
    });
    // A definition that appears (or changes) wakes the runs naming it that have not started.
    const wake = (definition: AgentDefinition): void => {
      const { namespace, name } = definition.metadata;
      for (const run of this.#informer.list()) {
        if (
          run.metadata.namespace === namespace &&
          run.spec.agent === name &&
          !isTerminal(run.status) &&
          (run.status?.attempts ?? 0) === 0
        ) {
          enqueue(run);
        }
      }
    };
    options.definitions?.addEventHandler({
      onAdd: wake,
      onUpdate: (_old, definition) => wake(definition),
    });
  }

  /** Starts listing and watching AgentRuns; resolves once the cache has synced. */
  async startCache(signal?: AbortSignal): Promise<void> {
    this.#informer.start();
    await this.#informer.waitForSync(signal);
  }

  /** The cache has listed every AgentRun once (what /readyz waits for). */
  hasSynced(): boolean {
    return this.#informer.hasSynced();
  }

  /** Starts the reconcile workers (on the leader). */
  startWorkers(): void {
    if (this.#workers.length > 0) return;
    // Keys queued before we led were dropped by no one: re-offer every cached run.
    for (const key of this.#informer.keys()) this.#queue.add(key);
    this.#workers = Array.from({ length: this.#options.workers }, () => this.#work());
  }

  /**
   * Stops taking work, lets running handlers finish for up to `graceMs` (then aborts them; their
   * runs are retried by the next leader if retries remain), waits for their outcomes to be
   * written, and stops the informer.
   */
  async stop(graceMs: number): Promise<void> {
    this.#queue.shutDown();
    await Promise.all(this.#workers);
    await this.#reconciler.executor.drain(graceMs);
    await this.#reconciler.settled();
    await this.#informer.stop();
  }

  async #work(): Promise<void> {
    for (;;) {
      const key = await this.#queue.get();
      if (key === undefined) return;
      this.#metrics.activeWorkers(1);
      const start = performance.now();
      let result: 'success' | 'error' | 'requeue_after' = 'success';
      try {
        const outcome = await this.#reconciler.reconcile(key);
        this.#queue.forget(key);
        if (outcome.requeueAfterMs !== undefined) {
          result = 'requeue_after';
          this.#queue.addAfter(key, outcome.requeueAfterMs);
        }
      } catch (error) {
        result = 'error';
        // A conflict (the cache was behind) or a run deleted meanwhile is routine, as for
        // controller-runtime reconcilers that ignore NotFound: the next reconcile sees it.
        if (error instanceof ConflictError || error instanceof NotFoundError) {
          this.#options.logger.debug({ key }, error.message);
        } else {
          this.#options.logger.error(
            { err: error, key },
            'reconcile failed; retrying with backoff',
          );
        }
        this.#queue.addRateLimited(key);
      } finally {
        this.#queue.done(key);
        this.#metrics.reconcile(result, (performance.now() - start) / 1000);
        this.#metrics.activeWorkers(-1);
      }
    }
  }
}
