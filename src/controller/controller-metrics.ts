/**
 * What the controller reports for Prometheus (controller-runtime's metric names plus the
 * compatible agent_* names, docs/compatibility.md). Implemented by src/metrics; called on hot
 * paths, so it must be cheap and must not throw. Labels are bounded: agent names and fixed
 * words, never run names or ids.
 */
export interface ControllerMetrics {
  /** One reconcile ended: controller_runtime_reconcile_total/_errors_total/_time_seconds. */
  reconcile(result: 'success' | 'error' | 'requeue' | 'requeue_after', seconds: number): void;
  /** controller_runtime_active_workers: +1 when a worker takes a key, -1 when it is done. */
  activeWorkers(delta: 1 | -1): void;
  /** controller_runtime_max_concurrent_reconciles. */
  maxConcurrentReconciles(n: number): void;
  /** agent_runs_in_flight{agent}: a handler execution started (+1) or ended (-1). */
  inFlight(agent: string, delta: 1 | -1): void;
  /** agent_runs_queued: runs waiting for a free MAX_CONCURRENT_RUNS slot. */
  queued(n: number): void;
  /**
   * A run reached a terminal state (recorded once per run, by the process that wrote it):
   * agent_runs_total{agent,status} and agent_run_latency_ms{agent}.
   */
  runFinished(agent: string, status: 'succeeded' | 'failed' | 'canceled', durationMs: number): void;
}

export const noControllerMetrics: ControllerMetrics = {
  reconcile: () => {},
  activeWorkers: () => {},
  maxConcurrentReconciles: () => {},
  inFlight: () => {},
  queued: () => {},
  runFinished: () => {},
};
