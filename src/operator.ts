import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { getHeapStatistics } from 'node:v8';
import { AgentAuditor, setAuditor } from './audit/auditor.ts';
import { migrate } from './audit/migrate.ts';
import { RetentionJob } from './audit/retention.ts';
import { type Config, loadConfig, requireDatabase } from './config/config.ts';
import { AgentCatalog } from './controller/agent-catalog.ts';
import { AgentDefinitionController } from './controller/agentdefinition-controller.ts';
import type { RunEvents } from './controller/agentrun-reconciler.ts';
import { AgentRunController } from './controller/controller.ts';
import type { ControllerMetrics } from './controller/controller-metrics.ts';
import { JobRunner } from './controller/job-runner.ts';
import type { Handler } from './handlers/handler.ts';
import {
  agentDefinitionVetter,
  builtinHandlers,
  type HandlersConfig,
  loadHandlersConfig,
} from './handlers/handlers-config.ts';
import type { Resolver, TargetVetter } from './handlers/outbound.ts';
import { HandlerRegistry } from './handlers/registry.ts';
import { type ClusterAccess, loadClusterAccess } from './kube/cluster-access.ts';
import { EventRecorder } from './kube/event-recorder.ts';
import { HealthServer } from './kube/health-server.ts';
import { KubeClient } from './kube/kube-client.ts';
import { fromKubeConfigLike, type KubeConfigLike } from './kube/kube-config-access.ts';
import { LeaderElector } from './kube/leader-election.ts';
import { type Component, LEADER_ELECTION, Manager } from './kube/manager.ts';
import { WritePriority } from './kube/write-priority.ts';
import { createMetrics, DEFINED_AGENT, type OperatorMetrics } from './metrics/metrics.ts';
import { type MetricsServer, serveMetrics } from './metrics/metrics-server.ts';
import { createLogger, type Logger } from './util/log.ts';
import { OPERATOR_NAME, OPERATOR_VERSION } from './version.ts';

export { LeadershipLostError } from './kube/manager.ts';

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
  /**
   * The cluster to work in, from loadClusterAccess() or your own. Default: the KUBECONFIG
   * setting, else $KUBECONFIG, ~/.kube/config or the in-cluster service account.
   */
  readonly clusterAccess?: ClusterAccess;
  /**
   * Or, as before, a @kubernetes/client-node KubeConfig: its current context is read once, and
   * the operator's own client makes the requests. Ignored when `clusterAccess` is given.
   */
  readonly kubeConfig?: KubeConfigLike;
  /** Where Kubernetes Events go; default an EventRecorder writing events.k8s.io/v1 Events. */
  readonly events?: RunEvents;
  /** Controller metrics; default the Prometheus ones of the operator's registry (src/metrics). */
  readonly metrics?: ControllerMetrics;
  /**
   * How AgentDefinition webhook hosts are resolved before the address policy checks them;
   * default dns.lookup. For tests that script DNS answers.
   */
  readonly resolve?: Resolver;
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
  const clusterAccess = clusterAccessOf(options, config);
  const apiServer = apiServerHosts(clusterAccess.server, process.env);
  // Read whether or not the built-ins are registered: it also says where AgentDefinitions'
  // webhooks may go.
  const handlersConfig: HandlersConfig = config.HANDLERS_CONFIG
    ? await loadHandlersConfig(config.HANDLERS_CONFIG)
    : {};
  if (options.includeBuiltins !== false) {
    // http.check must never be a way to the API server this operator talks to.
    const builtins = builtinHandlers(handlersConfig, { apiServerHosts: apiServer });
    for (const handler of builtins) registry.register(handler);
  }
  for (const handler of options.handlers ?? []) registry.register(handler);
  const metrics = createMetrics({
    controller: 'agentrun',
    agents: registry.names(),
    enabled: config.APPLYLENS_AGENT_METRICS_ENABLED,
    ...(config.LEADER_ELECT ? { leaderElectionName: config.LEADER_ELECTION_ID } : {}),
  });
  // Every part of the operator shares one client, so one connection pool (see KubeClient), which
  // also counts requests for rest_client_requests_total.
  const client = new KubeClient(clusterAccess, {
    ...metrics.restClient,
    userAgent: `${OPERATOR_NAME}/${OPERATOR_VERSION}`,
    http2: config.KUBE_API_HTTP2,
  });
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
    // and the operator retries the migration in the background (migrationRetry).
    pendingMigration = config.AUDIT_MIGRATE && !(await tryMigrate(auditor, logger));
    // getAuditor(), the original get_auditor(): library code in this process reads through it.
    setAuditor(auditor);
  }
  // Nor may an AgentDefinition's webhook, whose URL a namespace user chose (docs/agents.md).
  const definitionVetter = agentDefinitionVetter(handlersConfig, {
    apiServerHosts: apiServer,
    resolve: options.resolve,
  });
  return new Operator({
    config,
    logger,
    client,
    registry,
    definitionVetter,
    metrics,
    options,
    auditor,
    pendingMigration,
  });
}

/** What createOperator prepares for the Operator; nothing else builds one. */
interface OperatorParts {
  readonly config: Config;
  readonly logger: Logger;
  readonly client: KubeClient;
  readonly registry: HandlerRegistry;
  readonly definitionVetter: TargetVetter;
  readonly metrics: OperatorMetrics;
  readonly options: OperatorOptions;
  readonly auditor: AgentAuditor | undefined;
  /** The start-up migration failed; retry it in the background. */
  readonly pendingMigration: boolean;
}

/**
 * The operator createOperator returns. Its parts are started and stopped by a Manager
 * (src/kube/manager.ts) in the order declared here; only the type is public, so that the way to
 * build one stays createOperator.
 */
class Operator {
  readonly config: Config;
  readonly logger: Logger;
  readonly registry: HandlerRegistry;
  readonly metrics: OperatorMetrics;
  readonly auditor: AgentAuditor | undefined;
  /** Settles when the operator stops; rejects with LeadershipLostError if the Lease was lost. */
  readonly done: Promise<void>;
  readonly #client: KubeClient;
  readonly #controller: AgentRunController;
  readonly #definitions: AgentDefinitionController | undefined;
  readonly #jobs: JobRunner | undefined;
  readonly #manager: Manager;
  #health: HealthServer | undefined;
  #metricsServer: MetricsServer | undefined;

  constructor(parts: OperatorParts) {
    const { config, logger, client, metrics, auditor, options } = parts;
    this.config = config;
    this.logger = logger;
    this.registry = parts.registry;
    this.metrics = metrics;
    this.auditor = auditor;
    this.#client = client;
    let events = options.events;
    let recorder: EventRecorder | undefined;
    // Events give way to status writes (write-priority.ts says why).
    const statusWrites = new WritePriority();
    if (!events) {
      recorder = new EventRecorder({
        client,
        component: 'agentrun-operator',
        logger,
        yieldTo: statusWrites,
        omitReasons: config.EVENTS_OMIT,
      });
      events = recorder;
    }
    // AgentDefinitions: agents registered with kubectl, resolved after the operator's own.
    let catalog: AgentCatalog | undefined;
    const definitions = config.AGENT_DEFINITIONS_ENABLED
      ? new AgentDefinitionController({
          client,
          namespace: config.WATCH_NAMESPACE,
          logger,
          resyncPeriodMs: config.RESYNC_PERIOD_SECONDS * 1000,
          judge: (definition) => (catalog as AgentCatalog).judge(definition),
        })
      : undefined;
    // Job agents: each attempt a Job in the run's namespace, followed through two caches.
    const jobs =
      definitions && config.JOB_AGENTS_ENABLED
        ? new JobRunner({
            client,
            namespace: config.WATCH_NAMESPACE,
            logger: logger.child({ component: 'jobs' }),
            resyncPeriodMs: config.RESYNC_PERIOD_SECONDS * 1000,
          })
        : undefined;
    catalog = new AgentCatalog({
      registry: parts.registry,
      definitions: definitions?.informer,
      vetter: parts.definitionVetter,
      jobs: jobs !== undefined,
    });
    const registry = parts.registry;
    const controller = new AgentRunController({
      client,
      namespace: config.WATCH_NAMESPACE,
      registry: catalog,
      ...(definitions ? { definitions } : {}),
      unknownAgentGraceMs: config.UNKNOWN_AGENT_GRACE_SECONDS * 1000,
      // Definition agents' names are chosen by namespace users: one label for all of them.
      metricsAgent: (run) =>
        registry.has(run.spec.agent) ||
        (run.status?.plan?.['agentDefinition'] === undefined &&
          !definitions?.informer.get(`${run.metadata.namespace}/${run.spec.agent}`))
          ? run.spec.agent
          : DEFINED_AGENT,
      events,
      logger,
      maxConcurrentRuns: config.MAX_CONCURRENT_RUNS,
      jobs,
      maxConcurrentJobRuns: config.MAX_CONCURRENT_JOB_RUNS,
      workers: config.RECONCILE_WORKERS,
      retry: { baseMs: config.RETRY_BACKOFF_BASE_MS, maxMs: config.RETRY_BACKOFF_MAX_MS },
      resyncPeriodMs: config.RESYNC_PERIOD_SECONDS * 1000,
      finalizerAfterMs: config.FINALIZER_AFTER_MS,
      queuedStatusAfterMs: config.QUEUED_STATUS_AFTER_MS,
      metrics: options.metrics ?? metrics.controller,
      queueMetrics: metrics.workqueue,
      attachQueue: (queue) => metrics.attachQueue(queue),
      statusWrites,
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
    this.#controller = controller;
    this.#definitions = definitions;
    this.#jobs = jobs;
    const retention =
      auditor && config.AUDIT_RETENTION_DAYS > 0
        ? new RetentionJob({
            store: auditor.store,
            retentionDays: config.AUDIT_RETENTION_DAYS,
            logger: logger.child({ component: 'audit-retention' }),
          })
        : undefined;
    const components: Component[] = [
      {
        name: 'health-probes',
        start: () => this.#serveProbes(),
        stop: () => this.#health?.close(),
      },
      {
        name: 'metrics-server',
        start: () => this.#serveMetrics(),
        stop: () => this.#metricsServer?.close(),
      },
      migrationRetry(parts.pendingMigration ? auditor : undefined, logger),
      // On every replica, and before the runs' cache: no run is decided before the definitions
      // it may name are known (a run applied with its definition is not failed as unknown).
      {
        name: 'agent-definitions',
        start: (signal) => definitions?.startCache(signal),
        stop: () => definitions?.stop(),
      },
      // Jobs and pods of Job agents, on every replica: a new leader follows running Jobs at once.
      {
        name: 'job-cache',
        start: (signal) => jobs?.startCache(signal),
        stop: () => jobs?.stop(),
      },
      // On every replica, so that a new leader starts with a warm cache.
      {
        name: 'controller',
        start: () => controller.startCache(),
        stop: (graceMs) => controller.stop(graceMs),
      },
      // Stopped with the controller, whose stop() drains them.
      { name: 'workers', leaderOnly: true, start: () => controller.startWorkers() },
      // Writes the definitions' status (Ready); stopped with 'agent-definitions'.
      {
        name: 'agent-definition-status',
        leaderOnly: true,
        start: () => definitions?.startWorkers(),
      },
      // One deleter is enough.
      {
        name: 'audit-retention',
        leaderOnly: true,
        start: () => retention?.start(),
        // Not awaited: a pass in flight ends after its batch, and closing the auditor's pool,
        // next, waits for that batch.
        stop: () => void retention?.stop(),
      },
      // Rows still queued get a few seconds; any left are re-audited from the runs' status by the
      // next leader (their finalizer keeps them).
      { name: 'auditor', stop: () => auditor?.close(SHUTDOWN_AUDIT_FLUSH_MS) },
      {
        name: 'event-recorder',
        stop: async () => {
          await recorder?.flush(SHUTDOWN_EVENTS_FLUSH_MS);
          await recorder?.stop();
        },
      },
      { name: 'kube-client', stop: () => client.close() },
    ];
    this.#manager = new Manager({
      logger,
      components,
      // Work first, then what the work writes to, then the Lease (handed back only once the
      // leader's work has stopped), the probes and /metrics (scraped to the end), and last the
      // connections every other part used.
      stopOrder: [
        'controller',
        'workers',
        'agent-definition-status',
        'agent-definitions',
        'job-cache',
        'audit-retention',
        'audit-migration',
        'auditor',
        'event-recorder',
        LEADER_ELECTION,
        'health-probes',
        'metrics-server',
        'kube-client',
      ],
      ...(config.LEADER_ELECT
        ? {
            leaderElection: (callbacks) =>
              new LeaderElector({
                client,
                namespace: leaderElectionNamespace(config),
                name: config.LEADER_ELECTION_ID,
                identity: `${hostname()}_${crypto.randomUUID()}`,
                leaseDurationMs: config.LEASE_DURATION_SECONDS * 1000,
                renewDeadlineMs: config.RENEW_DEADLINE_SECONDS * 1000,
                retryPeriodMs: config.RETRY_PERIOD_SECONDS * 1000,
                logger: logger.child({ component: 'leader-election' }),
                metrics: metrics.leaderElection,
                ...callbacks,
              }),
          }
        : {}),
    });
    this.done = this.#manager.done;
  }

  /** Serves probes and /metrics, syncs the cache, then reconciles (as leader, with elections). */
  async start(): Promise<void> {
    this.logger.info(
      {
        agents: this.registry.names(),
        watchNamespace: this.config.WATCH_NAMESPACE || '(all)',
        maxConcurrentRuns: this.config.MAX_CONCURRENT_RUNS,
        leaderElect: this.config.LEADER_ELECT,
        agentDefinitions: this.config.AGENT_DEFINITIONS_ENABLED,
        unknownAgentGraceSeconds: this.config.UNKNOWN_AGENT_GRACE_SECONDS,
        jobAgents: this.#jobs !== undefined,
        ...(this.#jobs ? { maxConcurrentJobRuns: this.config.MAX_CONCURRENT_JOB_RUNS } : {}),
        // What V8 was sized to (the Deployment's flags, or those `run` chose: docs/configuration.md).
        heapLimitMiB: Math.round(getHeapStatistics().heap_size_limit / 2 ** 20),
      },
      'starting agentrun-operator',
    );
    await this.#manager.start();
  }

  /** /readyz: the cache has synced (a follower is ready too: it is waiting for the Lease). */
  ready(): boolean {
    return (
      this.#controller.hasSynced() &&
      (this.#definitions?.hasSynced() ?? true) &&
      (this.#jobs?.hasSynced() ?? true) &&
      !this.#manager.stopping
    );
  }

  get healthPort(): number | undefined {
    return this.#health?.port;
  }

  get metricsPort(): number | undefined {
    return this.#metricsServer?.port;
  }

  get isLeader(): boolean {
    return this.#manager.isLeader;
  }

  /** Graceful stop (SIGTERM): no new work, in-flight handlers get SHUTDOWN_GRACE_SECONDS. */
  stop(): Promise<void> {
    return this.#manager.stop(this.config.SHUTDOWN_GRACE_SECONDS * 1000);
  }

  async #serveProbes(): Promise<void> {
    const address = this.config.HEALTH_PROBE_BIND_ADDRESS;
    if (!address) return;
    this.#health = await HealthServer.listen(
      { healthy: () => true, ready: () => this.ready() },
      address,
    );
  }

  async #serveMetrics(): Promise<void> {
    this.#metricsServer = await serveMetrics({
      registry: this.metrics.registry,
      enabled: this.metrics.enabled,
      address: this.config.METRICS_BIND_ADDRESS,
      secure: this.config.METRICS_SECURE,
      certDir: this.config.METRICS_CERT_DIR,
      client: this.#client,
      logger: this.logger,
    });
  }
}

export type { Operator };

/**
 * Retries a start-up migration that failed (the database was down) with backoff, until it
 * succeeds or the operator stops; audit rows queue meanwhile. Does nothing without an auditor.
 */
function migrationRetry(auditor: AgentAuditor | undefined, logger: Logger): Component {
  let timer: NodeJS.Timeout | undefined;
  const retry = (delayMs: number, signal: AbortSignal): void => {
    timer = setTimeout(async () => {
      if (signal.aborted || !auditor) return;
      if (await tryMigrate(auditor, logger)) {
        logger.info('audit migrations applied; queued rows follow');
      } else if (!signal.aborted) {
        retry(Math.min(delayMs * 2, 60_000), signal);
      }
    }, delayMs);
    timer.unref();
  };
  return {
    name: 'audit-migration',
    start: (signal) => {
      if (auditor) retry(1_000, signal);
    },
    stop: () => clearTimeout(timer),
  };
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

/**
 * The cluster the operator works in: the one given, else loadClusterAccess's rules from the
 * KUBECONFIG setting ($KUBECONFIG, ~/.kube/config, in-cluster), the order client-node's
 * loadFromFile / loadFromDefault used before.
 */
function clusterAccessOf(options: OperatorOptions, config: Config): ClusterAccess {
  if (options.clusterAccess) return options.clusterAccess;
  if (options.kubeConfig) return fromKubeConfigLike(options.kubeConfig);
  return loadClusterAccess({ kubeconfig: config.KUBECONFIG });
}

/**
 * The API server's own hosts, which http.check refuses to probe: the in-cluster
 * KUBERNETES_SERVICE_HOST (the `kubernetes` Service's address) and the host of the kubeconfig's
 * server, which outside a cluster may be a name (resolved by http.check at each probe).
 */
export function apiServerHosts(
  server: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): string[] {
  const hosts = new Set<string>();
  const serviceHost = env['KUBERNETES_SERVICE_HOST']?.trim();
  if (serviceHost) hosts.add(serviceHost.toLowerCase());
  if (server) {
    try {
      const { hostname } = new URL(server);
      if (hostname !== '') hosts.add(hostname.replace(/^\[(.*)\]$/, '$1'));
    } catch {
      // An unparsable server fails the operator's own requests; nothing to block here.
    }
  }
  return [...hosts];
}

const SERVICE_ACCOUNT_NAMESPACE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

/** The Lease's namespace: the setting, else the pod's own namespace, else "default". */
export function leaderElectionNamespace(
  config: Pick<Config, 'LEADER_ELECTION_NAMESPACE' | 'POD_NAMESPACE'>,
  serviceAccountNamespaceFile = SERVICE_ACCOUNT_NAMESPACE,
): string {
  if (config.LEADER_ELECTION_NAMESPACE) return config.LEADER_ELECTION_NAMESPACE;
  if (config.POD_NAMESPACE) return config.POD_NAMESPACE;
  try {
    return readFileSync(serviceAccountNamespaceFile, 'utf8').trim();
  } catch {
    return 'default';
  }
}
