import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { type AuditMetrics, noAuditMetrics } from '../audit/audit-writer.ts';
import { type ControllerMetrics, noControllerMetrics } from '../controller/controller-metrics.ts';
import type { LeaderElectionMetrics } from '../kube/leader-election.ts';
import type { OnResponse } from '../kube/rest-client-metrics.ts';
import type { WorkQueueMetrics } from '../kube/workqueue.ts';

/**
 * Every Prometheus metric of the operator, on one prom-client Registry of its own (never the
 * global one, so two operators in one process, or tests, do not collide).
 *
 * Names, labels, help texts and buckets follow the compatible names (agent_runs_total,
 * agent_run_latency_ms; docs/compatibility.md) and controller-runtime v0.20+
 * (controller_runtime_*, workqueue_*, leader_election_master_status, rest_client_requests_total),
 * so existing dashboards and alerts work unchanged. Labels are bounded: agent names from the
 * handler registry and fixed words, never a run name, id, objective or user.
 */

/** The compatible buckets of agent_run_latency_ms (docs/compatibility.md): sub-second to 30 s. */
export const AGENT_RUN_LATENCY_BUCKETS_MS: readonly number[] = [
  50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
];

/** controller-runtime's controller_runtime_reconcile_time_seconds buckets (5 ms to 60 s). */
export const RECONCILE_TIME_BUCKETS_SECONDS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9,
  1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60,
];

/** client-go/controller-runtime's workqueue histograms: ExponentialBuckets(10e-9, 10, 12). */
export const WORKQUEUE_DURATION_BUCKETS_SECONDS: readonly number[] = [
  1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 10, 100, 1000,
];

/** Prometheus clients' default buckets (client_golang DefBuckets), for audit write latency. */
export const AUDIT_WRITE_LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/**
 * The `agent` label of runs naming an agent that is not registered (they end Failed/UnknownAgent).
 * spec.agent is user input: labelling it as given would let anyone with `create agentruns` grow
 * the series without bound. It cannot collide with a real agent, whose names start [a-z0-9].
 */
export const UNKNOWN_AGENT = '_unknown';

/**
 * The `agent` label of runs of AgentDefinitions (docs/agents.md). Whoever may create
 * AgentDefinitions picks their names, so they share one series for the same reason; the audit
 * log and the runs' status name the agent.
 */
export const DEFINED_AGENT = '_defined';

export const RUN_STATUSES = ['succeeded', 'failed', 'canceled'] as const;
export const RECONCILE_RESULTS = ['success', 'error', 'requeue', 'requeue_after'] as const;
export const AUDIT_WRITE_RESULTS = ['success', 'error'] as const;

/** rest_client_requests_total's `code` for a request that got no HTTP response (client-go's). */
export const NO_RESPONSE_CODE = '<error>';

/**
 * Options for KubeClient: `new KubeClient(access, metrics.restClient)`. Empty when metrics are
 * off, so requests report to nothing at all.
 */
export interface RestClientMetrics {
  readonly onResponse?: OnResponse;
}

/** What the collect-time gauges read: WorkQueue implements it. */
export interface QueueProbe {
  unfinishedWorkSeconds(): number;
  longestRunningProcessorSeconds(): number;
}

export interface MetricsOptions {
  /** The `controller` label, and the work queue's `name` (controller-runtime uses both alike). */
  readonly controller: string;
  /**
   * The registered agents: each gets its own series, pre-initialised at 0. Any other agent is
   * recorded as UNKNOWN_AGENT.
   */
  readonly agents: readonly string[];
  /** APPLYLENS_AGENT_METRICS_ENABLED. False: every recorder is a no-op and nothing is registered. */
  readonly enabled: boolean;
  /**
   * The Lease name, to create leader_election_master_status{name} at 0 up front; default none
   * (the LeaderElector reports 0 itself when it is constructed).
   */
  readonly leaderElectionName?: string;
  /** Node process and runtime metrics (prom-client's collectDefaultMetrics); default true. */
  readonly defaultMetrics?: boolean;
}

export interface OperatorMetrics {
  readonly enabled: boolean;
  /** What /metrics serves. Empty when disabled. */
  readonly registry: Registry;
  readonly controller: ControllerMetrics;
  readonly workqueue: WorkQueueMetrics;
  readonly leaderElection: LeaderElectionMetrics;
  readonly audit: AuditMetrics;
  readonly restClient: RestClientMetrics;
  /** The queue read by workqueue_unfinished_work_seconds/_longest_running_processor_seconds at scrape time. */
  attachQueue(queue: QueueProbe): void;
}

/** Builds the operator's metrics (or, when `enabled` is false, no-ops with an empty registry). */
export function createMetrics(options: MetricsOptions): OperatorMetrics {
  return options.enabled ? new PrometheusMetrics(options) : disabledMetrics();
}

function disabledMetrics(): OperatorMetrics {
  return {
    enabled: false,
    registry: new Registry(),
    controller: noControllerMetrics,
    workqueue: {
      add: () => {},
      depth: () => {},
      queueDuration: () => {},
      workDuration: () => {},
      retry: () => {},
    },
    leaderElection: { setLeader: () => {} },
    audit: noAuditMetrics,
    restClient: {},
    attachQueue: () => {},
  };
}

/** Durations and sizes from callers: NaN, infinities and negatives must not throw or poison sums. */
function nonNegative(value: number): number {
  return Number.isFinite(value) && value > 0 ? value : 0;
}

interface AgentSeries {
  readonly total: Readonly<Record<(typeof RUN_STATUSES)[number], Counter.Internal>>;
  readonly latency: Histogram.Internal<'agent'>;
  readonly inFlight: Gauge.Internal<'agent'>;
}

class PrometheusMetrics implements OperatorMetrics {
  readonly enabled = true;
  readonly registry = new Registry();
  readonly controller: ControllerMetrics;
  readonly workqueue: WorkQueueMetrics;
  readonly leaderElection: LeaderElectionMetrics;
  readonly audit: AuditMetrics;
  readonly restClient: RestClientMetrics;
  #queue: QueueProbe | undefined;

  constructor(options: MetricsOptions) {
    const registers = [this.registry];
    const controller = options.controller;
    if (options.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });

    // The compatible run metrics (docs/compatibility.md) and run state.
    const runsTotal = new Counter({
      name: 'agent_runs_total',
      help: 'Total number of agent runs',
      labelNames: ['agent', 'status'] as const,
      registers,
    });
    const runLatency = new Histogram({
      name: 'agent_run_latency_ms',
      help: 'Agent run execution latency in milliseconds',
      labelNames: ['agent'] as const,
      buckets: [...AGENT_RUN_LATENCY_BUCKETS_MS],
      registers,
    });
    const inFlight = new Gauge({
      name: 'agent_runs_in_flight',
      help: 'Agent handler executions in progress',
      labelNames: ['agent'] as const,
      registers,
    });
    const queued = new Gauge({
      name: 'agent_runs_queued',
      help: 'Agent runs waiting for a free MAX_CONCURRENT_RUNS slot',
      registers,
    });
    const agents = new Map<string, AgentSeries>();
    for (const agent of new Set([...options.agents, UNKNOWN_AGENT, DEFINED_AGENT])) {
      agents.set(agent, {
        total: {
          succeeded: runsTotal.labels(agent, 'succeeded'),
          failed: runsTotal.labels(agent, 'failed'),
          canceled: runsTotal.labels(agent, 'canceled'),
        },
        latency: runLatency.labels(agent),
        inFlight: inFlight.labels(agent),
      });
      // labels() alone creates no series for prom-client histograms and counters: zero them.
      runLatency.zero({ agent });
      for (const status of RUN_STATUSES) runsTotal.labels(agent, status).inc(0);
      inFlight.labels(agent).set(0);
    }
    queued.set(0);
    const unknown = agents.get(UNKNOWN_AGENT) as AgentSeries;
    const seriesOf = (agent: string): AgentSeries => agents.get(agent) ?? unknown;

    // controller-runtime's controller metrics (pkg/internal/controller/metrics).
    const reconcileTotal = new Counter({
      name: 'controller_runtime_reconcile_total',
      help: 'Total number of reconciliations per controller',
      labelNames: ['controller', 'result'] as const,
      registers,
    });
    const reconcileErrors = new Counter({
      name: 'controller_runtime_reconcile_errors_total',
      help: 'Total number of reconciliation errors per controller',
      labelNames: ['controller'] as const,
      registers,
    }).labels(controller);
    const reconcileTime = new Histogram({
      name: 'controller_runtime_reconcile_time_seconds',
      help: 'Length of time per reconciliation per controller',
      labelNames: ['controller'] as const,
      buckets: [...RECONCILE_TIME_BUCKETS_SECONDS],
      registers,
    });
    const maxConcurrent = new Gauge({
      name: 'controller_runtime_max_concurrent_reconciles',
      help: 'Maximum number of concurrent reconciles per controller',
      labelNames: ['controller'] as const,
      registers,
    }).labels(controller);
    const activeWorkers = new Gauge({
      name: 'controller_runtime_active_workers',
      help: 'Number of currently used workers per controller',
      labelNames: ['controller'] as const,
      registers,
    }).labels(controller);
    const results = {
      success: reconcileTotal.labels(controller, 'success'),
      error: reconcileTotal.labels(controller, 'error'),
      requeue: reconcileTotal.labels(controller, 'requeue'),
      requeue_after: reconcileTotal.labels(controller, 'requeue_after'),
    };
    for (const result of RECONCILE_RESULTS) results[result].inc(0);
    reconcileErrors.inc(0);
    reconcileTime.zero({ controller });
    const reconcileTimeOf = reconcileTime.labels(controller);
    maxConcurrent.set(0);
    activeWorkers.set(0);

    this.controller = {
      reconcile: (result, seconds) => {
        (results[result] ?? results.error).inc();
        if (result === 'error') reconcileErrors.inc();
        reconcileTimeOf.observe(nonNegative(seconds));
      },
      activeWorkers: (delta) => activeWorkers.inc(delta),
      maxConcurrentReconciles: (n) => maxConcurrent.set(nonNegative(n)),
      inFlight: (agent, delta) => seriesOf(agent).inFlight.inc(delta),
      queued: (n) => queued.set(nonNegative(n)),
      runFinished: (agent, status, durationMs) => {
        const series = seriesOf(agent);
        (series.total[status] ?? series.total.failed).inc();
        series.latency.observe(nonNegative(durationMs));
      },
    };

    // client-go's workqueue metrics as controller-runtime registers them (pkg/metrics/workqueue.go).
    const queueLabels = { name: controller, controller };
    const queueLabelNames = ['name', 'controller'] as const;
    const depth = new Gauge({
      name: 'workqueue_depth',
      help: 'Current depth of workqueue',
      labelNames: queueLabelNames,
      registers,
    }).labels(queueLabels);
    const adds = new Counter({
      name: 'workqueue_adds_total',
      help: 'Total number of adds handled by workqueue',
      labelNames: queueLabelNames,
      registers,
    }).labels(queueLabels);
    const queueDuration = new Histogram({
      name: 'workqueue_queue_duration_seconds',
      help: 'How long in seconds an item stays in workqueue before being requested',
      labelNames: queueLabelNames,
      buckets: [...WORKQUEUE_DURATION_BUCKETS_SECONDS],
      registers,
    });
    const workDuration = new Histogram({
      name: 'workqueue_work_duration_seconds',
      help: 'How long in seconds processing an item from workqueue takes.',
      labelNames: queueLabelNames,
      buckets: [...WORKQUEUE_DURATION_BUCKETS_SECONDS],
      registers,
    });
    const retries = new Counter({
      name: 'workqueue_retries_total',
      help: 'Total number of retries handled by workqueue',
      labelNames: queueLabelNames,
      registers,
    }).labels(queueLabels);
    const readQueue = (read: (queue: QueueProbe) => number): number => {
      const queue = this.#queue;
      if (!queue) return 0;
      try {
        return nonNegative(read(queue));
      } catch {
        return 0;
      }
    };
    new Gauge({
      name: 'workqueue_unfinished_work_seconds',
      help:
        "How many seconds of work has been done that is in progress and hasn't been observed by " +
        'work_duration. Large values indicate stuck threads. One can deduce the number of stuck ' +
        'threads by observing the rate at which this increases.',
      labelNames: queueLabelNames,
      registers,
      collect() {
        this.labels(queueLabels).set(readQueue((q) => q.unfinishedWorkSeconds()));
      },
    });
    new Gauge({
      name: 'workqueue_longest_running_processor_seconds',
      help: 'How many seconds has the longest running processor for workqueue been running.',
      labelNames: queueLabelNames,
      registers,
      collect() {
        this.labels(queueLabels).set(readQueue((q) => q.longestRunningProcessorSeconds()));
      },
    });
    depth.set(0);
    adds.inc(0);
    retries.inc(0);
    queueDuration.zero(queueLabels);
    workDuration.zero(queueLabels);
    const queueDurationOf = queueDuration.labels(queueLabels);
    const workDurationOf = workDuration.labels(queueLabels);
    this.workqueue = {
      add: () => adds.inc(),
      depth: (n) => depth.set(nonNegative(n)),
      queueDuration: (seconds) => queueDurationOf.observe(nonNegative(seconds)),
      workDuration: (seconds) => workDurationOf.observe(nonNegative(seconds)),
      retry: () => retries.inc(),
    };

    // client-go's leader election gauge (controller-runtime pkg/metrics/leaderelection.go).
    const leader = new Gauge({
      name: 'leader_election_master_status',
      help:
        'Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, ' +
        "1 indicates master. 'name' is the string used to identify the lease. Please make sure " +
        'to group by name.',
      labelNames: ['name'] as const,
      registers,
    });
    if (options.leaderElectionName !== undefined) leader.labels(options.leaderElectionName).set(0);
    this.leaderElection = {
      setLeader: (name, isLeader) => leader.labels(name).set(isLeader ? 1 : 0),
    };

    // Audit-log health.
    const auditWrites = new Counter({
      name: 'agent_audit_writes_total',
      help: 'Audit rows written to PostgreSQL, by result',
      labelNames: ['result'] as const,
      registers,
    });
    const auditPending = new Gauge({
      name: 'agent_audit_pending',
      help: 'Audit rows waiting to be written to PostgreSQL',
      registers,
    });
    const auditLatency = new Histogram({
      name: 'agent_audit_write_latency_seconds',
      help: 'Latency of audit writes to PostgreSQL in seconds',
      buckets: [...AUDIT_WRITE_LATENCY_BUCKETS_SECONDS],
      registers,
    });
    const auditLost = new Counter({
      name: 'agent_audit_lost_total',
      help: 'Audit rows given up after AUDIT_FINALIZER_DEADLINE_SECONDS; their runs were released without one',
      registers,
    });
    const writes = {
      success: auditWrites.labels('success'),
      error: auditWrites.labels('error'),
    };
    for (const result of AUDIT_WRITE_RESULTS) writes[result].inc(0);
    auditPending.set(0);
    auditLost.inc(0);
    this.audit = {
      written: (result, rows) => {
        const n = nonNegative(rows);
        if (n > 0) (writes[result] ?? writes.error).inc(n);
      },
      latency: (seconds) => auditLatency.observe(nonNegative(seconds)),
      pending: (n) => auditPending.set(nonNegative(n)),
      lost: () => auditLost.inc(),
    };

    // client-go's request counter (controller-runtime pkg/metrics/client_go_adapter.go).
    const requests = new Counter({
      name: 'rest_client_requests_total',
      help: 'Number of HTTP requests, partitioned by status code, method, and host.',
      labelNames: ['code', 'method', 'host'] as const,
      registers,
    });
    this.restClient = {
      onResponse: (method, code, host) => {
        requests.labels(code > 0 ? String(code) : NO_RESPONSE_CODE, method, host).inc();
      },
    };
  }

  attachQueue(queue: QueueProbe): void {
    this.#queue = queue;
  }
}
