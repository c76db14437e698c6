import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { KubeConfig } from '@kubernetes/client-node';
import { AgentAuditor, setAuditor } from './audit/auditor.ts';
import { migrate } from './audit/migrate.ts';
import { RetentionJob } from './audit/retention.ts';
import { type Config, loadConfig, requireDatabase } from './config/config.ts';
import type { RunEvents } from './controller/agentrun-reconciler.ts';
import { AgentRunController } from './controller/controller.ts';
import type { ControllerMetrics } from './controller/controller-metrics.ts';
import type { Handler } from './handlers/handler.ts';
import { builtinHandlers, loadHandlersConfig } from './handlers/handlers-config.ts';
import { HandlerRegistry } from './handlers/registry.ts';
import { EventRecorder } from './kube/event-recorder.ts';
import { HealthServer } from './kube/health-server.ts';
import { LeaderElector } from './kube/leader-election.ts';
import { PooledKubeConfig } from './kube/pooled-kube-config.ts';
import { createMetrics, type OperatorMetrics } from './metrics/metrics.ts';
import { type MetricsServer, serveMetrics } from './metrics/metrics-server.ts';
import { createLogger, type Logger } from './util/log.ts';

/**
 * What a graceful stop may take beyond SHUTDOWN_GRACE_SECONDS: queued audit rows, then queued
 * Events. The Deployment's terminationGracePeriodSeconds must cover all three.
 */
export const SHUTDOWN_AUDIT_FLUSH_MS = 5_000;
export const SHUTDOWN_EVENTS_FLUSH_MS = 2_000;

export interface OperatorOptions {
  /** Your own handlers, registered next to the built-ins (noop, http.check, configured webhooks). */
  readonly handlers?: readonly Handler[];
  /** Set false to register only `handlers`. */
  readonly includeBuiltins?: boolean;
  /** Default: loadConfig() from the environment. */
  readonly config?: Config;
  readonly logger?: Logger;
  /** Default: KUBECONFIG / in-cluster / ~/.kube/config, as kubectl finds it. */
  readonly kubeConfig?: KubeConfig;
  /** Where Kubernetes Events go; default an EventRecorder writing events.k8s.io/v1 Events. */
  readonly events?: RunEvents;
  /** Controller metrics; default the Prometheus ones of the operator's registry (src/metrics). */
  readonly metrics?: ControllerMetrics;
}

/** The operator lost its Lease: like controller-runtime, stop, and let the process restart. */
export class LeadershipLostError extends Error {
  constructor() {
    super('leader election lost');
    this.name = 'LeadershipLostError';
  }
}

/**
 * Builds the operator: the AgentRun controller with its handlers, health probes and, when
 * LEADER_ELECT is on, leader election. `start()` returns once it is serving; `done` settles when
 * it stops (rejecting with LeadershipLostError if the Lease was lost).
 */
export async function createOperator(options: OperatorOptions = {}): Promise<Operator> {
  const config = options.config ?? loadConfig();
  const logger = options.logger ?? createLogger(config.LOG_LEVEL);
  const registry = new HandlerRegistry();
  if (options.includeBuiltins !== false) {
    const handlersConfig = config.HANDLERS_CONFIG
      ? await loadHandlersConfig(config.HANDLERS_CONFIG)
      : {};
    for (const handler of builtinHandlers(handlersConfig)) registry.register(handler);
  }
  for (const handler of options.handlers ?? []) registry.register(handler);
  const metrics = createMetrics({
    controller: 'agentrun',
    agents: registry.names(),
    enabled: config.APPLYLENS_AGENT_METRICS_ENABLED,
    ...(config.LEADER_ELECT ? { leaderElectionName: config.LEADER_ELECTION_ID } : {}),
  });
  // Every client of the operator shares one connection pool (see PooledKubeConfig), which also
  // counts requests for rest_client_requests_total.
  const kubeConfig = PooledKubeConfig.from(
    options.kubeConfig ?? defaultKubeConfig(config),
    metrics.restClient,
  );
  requireDatabase(config);
  let auditor: AgentAuditor | undefined;
  let pendingMigration = false;
  if (config.APPLYLENS_AGENT_AUDIT_ENABLED) {
    // Connects lazily: an unreachable database queues rows; it never stops the operator.
    auditor = AgentAuditor.connect(config.DATABASE_URL, {
      logger: logger.child({ component: 'audit' }),
      metrics: metrics.audit,
    });
    // Under an advisory lock, so replicas starting together do not race. A database that is
    // down at start-up must not keep runs from running: the operator starts anyway, rows queue,
    // and the operator retries the migration in the background (see Operator.start).
    pendingMigration = config.AUDIT_MIGRATE && !(await tryMigrate(auditor, logger));
    // getAuditor(), the original get_auditor(): library code in this process reads through it.
    setAuditor(auditor);
  }
  return new Operator(
    config,
    logger,
    kubeConfig,
    registry,
    metrics,
    options,
    auditor,
    pendingMigration,
  );
}

export class Operator {
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: HandlerRegistry;
  readonly controller: AgentRunController;
  readonly metrics: OperatorMetrics;
  readonly done: Promise<void>;
  readonly #kubeConfig: PooledKubeConfig;
  readonly #elector: LeaderElector | undefined;
  #recorder: EventRecorder | undefined;
  #health: HealthServer | undefined;
  #metricsServer: MetricsServer | undefined;
  readonly auditor: AgentAuditor | undefined;
  readonly #retention: RetentionJob | undefined;
  #pendingMigration: boolean;
  #migrationTimer: NodeJS.Timeout | undefined;
  #stopping: Promise<void> | undefined;
  #finish: (error?: Error) => void = () => {};

  constructor(
    config: Config,
    logger: Logger,
    kubeConfig: PooledKubeConfig,
    registry: HandlerRegistry,
    metrics: OperatorMetrics,
    options: OperatorOptions,
    auditor?: AgentAuditor,
    pendingMigration = false,
  ) {
    this.config = config;
    this.#kubeConfig = kubeConfig;
    this.metrics = metrics;
    this.auditor = auditor;
    this.#pendingMigration = pendingMigration;
    this.#retention =
      auditor && config.AUDIT_RETENTION_DAYS > 0
        ? new RetentionJob({
            store: auditor.store,
            retentionDays: config.AUDIT_RETENTION_DAYS,
            logger: logger.child({ component: 'audit-retention' }),
          })
        : undefined;
    this.logger = logger;
    this.registry = registry;
    this.done = new Promise<void>((resolve, reject) => {
      this.#finish = (error) => (error ? reject(error) : resolve());
    });
    // Nobody may be awaiting `done` yet; an unobserved rejection must not crash the process.
    this.done.catch(() => {});
    let events = options.events;
    if (!events) {
      this.#recorder = new EventRecorder({ kubeConfig, component: 'agentrun-operator', logger });
      events = this.#recorder;
    }
    this.controller = new AgentRunController({
      kubeConfig,
      namespace: config.WATCH_NAMESPACE,
      registry,
      events,
      logger,
      maxConcurrentRuns: config.MAX_CONCURRENT_RUNS,
      workers: config.RECONCILE_WORKERS,
      retry: { baseMs: config.RETRY_BACKOFF_BASE_MS, maxMs: config.RETRY_BACKOFF_MAX_MS },
      resyncPeriodMs: config.RESYNC_PERIOD_SECONDS * 1000,
      finalizerAfterMs: config.FINALIZER_AFTER_MS,
      queuedStatusAfterMs: config.QUEUED_STATUS_AFTER_MS,
      metrics: options.metrics ?? metrics.controller,
      queueMetrics: metrics.workqueue,
      attachQueue: (queue) => metrics.attachQueue(queue),
      ...(auditor
        ? {
            audit: {
              sink: auditor,
              syncWaitMs: config.AUDIT_SYNC_WAIT_MS,
              deadlineMs: config.AUDIT_FINALIZER_DEADLINE_SECONDS * 1000,
              onLost: () => metrics.audit.lost(),
            },
          }
        : {}),
    });
    this.#elector = config.LEADER_ELECT
      ? new LeaderElector({
          kubeConfig,
          namespace: leaderElectionNamespace(config),
          name: config.LEADER_ELECTION_ID,
          identity: `${hostname()}_${crypto.randomUUID()}`,
          leaseDurationMs: config.LEASE_DURATION_SECONDS * 1000,
          renewDeadlineMs: config.RENEW_DEADLINE_SECONDS * 1000,
          retryPeriodMs: config.RETRY_PERIOD_SECONDS * 1000,
          logger: logger.child({ component: 'leader-election' }),
          metrics: metrics.leaderElection,
          onStartedLeading: () => {
            logger.info('became leader; starting workers');
            this.#lead();
          },
          onStoppedLeading: () => {
            if (this.#stopping) return;
            logger.error('lost the leader lease; stopping');
            void this.#stop(0, new LeadershipLostError());
          },
        })
      : undefined;
  }

  /** Serves probes, syncs the cache, then reconciles (as leader, when elections are on). */
  async start(): Promise<void> {
    const address = this.config.HEALTH_PROBE_BIND_ADDRESS;
    if (address) {
      this.#health = await HealthServer.listen(
        { healthy: () => true, ready: () => this.ready() },
        address,
      );
    }
    this.#metricsServer = await serveMetrics({
      registry: this.metrics.registry,
      enabled: this.metrics.enabled,
      address: this.config.METRICS_BIND_ADDRESS,
      secure: this.config.METRICS_SECURE,
      certDir: this.config.METRICS_CERT_DIR,
      kubeConfig: this.#kubeConfig,
      logger: this.logger,
    });
    this.logger.info(
      {
        agents: this.registry.names(),
        watchNamespace: this.config.WATCH_NAMESPACE || '(all)',
        maxConcurrentRuns: this.config.MAX_CONCURRENT_RUNS,
        leaderElect: this.config.LEADER_ELECT,
      },
      'starting agentrun-operator',
    );
    if (this.#pendingMigration) this.#retryMigration(1_000);
    await this.controller.startCache();
    if (this.#elector) {
      void this.#elector.run();
    } else {
      this.#lead();
    }
  }

  /** Retries the start-up migration with backoff until it succeeds or the operator stops. */
  #retryMigration(delayMs: number): void {
    this.#migrationTimer = setTimeout(async () => {
      const auditor = this.auditor;
      if (!auditor || this.#stopping) return;
      if (await tryMigrate(auditor, this.logger)) {
        this.#pendingMigration = false;
        this.logger.info('audit migrations applied; queued rows follow');
      } else if (!this.#stopping) {
        this.#retryMigration(Math.min(delayMs * 2, 60_000));
      }
    }, delayMs);
    this.#migrationTimer.unref();
  }

  /** The leader's work: reconcile, and prune old audit rows (one replica is enough). */
  #lead(): void {
    this.controller.startWorkers();
    this.#retention?.start();
  }

  /** /readyz: the cache has synced (a follower is ready too: it is waiting for the Lease). */
  ready(): boolean {
    return this.controller.hasSynced() && this.#stopping === undefined;
  }

  get healthPort(): number | undefined {
    return this.#health?.port;
  }

  get metricsPort(): number | undefined {
    return this.#metricsServer?.port;
  }

  get isLeader(): boolean {
    return this.#elector ? this.#elector.isLeader() : this.#stopping === undefined;
  }

  /** Graceful stop (SIGTERM): no new work, in-flight handlers get SHUTDOWN_GRACE_SECONDS. */
  stop(): Promise<void> {
    return this.#stop(this.config.SHUTDOWN_GRACE_SECONDS * 1000);
  }

  #stop(graceMs: number, error?: Error): Promise<void> {
    this.#stopping ??= (async () => {
      try {
        await this.controller.stop(graceMs);
        this.#retention?.stop();
        clearTimeout(this.#migrationTimer);
        // Rows still queued get a few seconds; any left are re-audited from the runs' status by
        // the next leader (their finalizer keeps them).
        await this.auditor?.close(SHUTDOWN_AUDIT_FLUSH_MS);
        await this.#recorder?.flush(SHUTDOWN_EVENTS_FLUSH_MS);
        await this.#recorder?.stop();
        await this.#elector?.stop();
        await this.#health?.close();
        await this.#metricsServer?.close();
        await this.#kubeConfig.close();
      } finally {
        this.logger.info('stopped');
        this.#finish(error);
      }
    })();
    return this.#stopping;
  }
}

async function tryMigrate(auditor: AgentAuditor, logger: Logger): Promise<boolean> {
  try {
    await migrate(auditor.pool, 'up', logger);
    return true;
  } catch (error) {
    logger.warn({ err: error }, 'audit migrations failed; will retry, audit rows queue meanwhile');
    return false;
  }
}

function defaultKubeConfig(config: Config): KubeConfig {
  const kc = new KubeConfig();
  if (config.KUBECONFIG) kc.loadFromFile(config.KUBECONFIG);
  else kc.loadFromDefault();
  return kc;
}

const SERVICE_ACCOUNT_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

function leaderElectionNamespace(config: Config): string {
  if (config.LEADER_ELECTION_NAMESPACE) return config.LEADER_ELECTION_NAMESPACE;
  if (config.POD_NAMESPACE) return config.POD_NAMESPACE;
  try {
    return readFileSync(SERVICE_ACCOUNT_NAMESPACE, 'utf8').trim();
  } catch {
    return 'default';
  }
}
