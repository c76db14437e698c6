import { register as globalRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import {
  AGENT_RUN_LATENCY_BUCKETS_MS,
  AUDIT_WRITE_LATENCY_BUCKETS_SECONDS,
  createMetrics,
  DEFINED_AGENT,
  type MetricsOptions,
  NO_RESPONSE_CODE,
  RECONCILE_TIME_BUCKETS_SECONDS,
  UNKNOWN_AGENT,
  WORKQUEUE_DURATION_BUCKETS_SECONDS,
} from '../../../src/metrics/metrics.ts';

// --- A parser for the Prometheus text format (0.0.4), enough for assertions. ---

interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

interface Exposition {
  readonly help: ReadonlyMap<string, string>;
  readonly type: ReadonlyMap<string, string>;
  readonly samples: readonly Sample[];
}

function parseExposition(text: string): Exposition {
  const help = new Map<string, string>();
  const type = new Map<string, string>();
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      const [, kind, name = '', rest = ''] = meta;
      (kind === 'HELP' ? help : type).set(name, rest.replaceAll('\\\\', '\\'));
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)(?: -?\d+)?$/.exec(line);
    if (!sample) throw new Error(`unparseable exposition line: ${line}`);
    const [, name = '', labelText = '', raw = ''] = sample;
    const labels: Record<string, string> = {};
    for (const match of labelText.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[match[1] ?? ''] = (match[2] ?? '').replace(/\\(.)/g, (_, c: string) =>
        c === 'n' ? '\n' : c,
      );
    }
    const value =
      raw === '+Inf' ? Number.POSITIVE_INFINITY : raw === '-Inf' ? -Infinity : Number(raw);
    samples.push({ name, labels, value });
  }
  return { help, type, samples };
}

/** Samples of `name` whose labels include every pair of `labels`. */
function find(
  exposition: Exposition,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): Sample[] {
  return exposition.samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
}

/** The value of the one sample of `name` with exactly `labels`; undefined if there is none. */
function sampleValue(
  exposition: Exposition,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number | undefined {
  const matches = exposition.samples.filter(
    (s) =>
      s.name === name &&
      Object.keys(s.labels).length === Object.keys(labels).length &&
      Object.entries(labels).every(([k, v]) => s.labels[k] === v),
  );
  if (matches.length > 1) throw new Error(`${matches.length} samples of ${name}`);
  return matches[0]?.value;
}

/** The `le` bounds of a histogram's series with these labels, in order. */
function bucketsOf(
  exposition: Exposition,
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number[] {
  return find(exposition, `${name}_bucket`, labels).map((s) =>
    s.labels['le'] === '+Inf' ? Number.POSITIVE_INFINITY : Number(s.labels['le']),
  );
}

// --- Fixtures ---

const AGENTS = ['noop', 'http.check'] as const;
const C = { controller: 'agentrun' };
const Q = { name: 'agentrun', controller: 'agentrun' };

function build(overrides: Partial<MetricsOptions> = {}) {
  return createMetrics({
    controller: 'agentrun',
    agents: AGENTS,
    enabled: true,
    defaultMetrics: false,
    ...overrides,
  });
}

async function scrape(metrics: ReturnType<typeof build>): Promise<Exposition> {
  return parseExposition(await metrics.registry.metrics());
}

// --- Tests ---

describe('metric definitions', () => {
  // name, type, help (controller-runtime's and the original words), label names.
  const table: ReadonlyArray<readonly [string, string, string, readonly string[]]> = [
    ['agent_runs_total', 'counter', 'Total number of agent runs', ['agent', 'status']],
    ['agent_run_latency_ms', 'histogram', 'Agent run execution latency in milliseconds', ['agent']],
    ['agent_runs_in_flight', 'gauge', 'Agent handler executions in progress', ['agent']],
    ['agent_runs_queued', 'gauge', 'Agent runs waiting for a free MAX_CONCURRENT_RUNS slot', []],
    [
      'agent_audit_writes_total',
      'counter',
      'Audit rows written to PostgreSQL, by result',
      ['result'],
    ],
    ['agent_audit_pending', 'gauge', 'Audit rows waiting to be written to PostgreSQL', []],
    [
      'agent_audit_lost_total',
      'counter',
      'Audit rows given up after AUDIT_FINALIZER_DEADLINE_SECONDS; their runs were released without one',
      [],
    ],
    [
      'agent_audit_write_latency_seconds',
      'histogram',
      'Latency of audit writes to PostgreSQL in seconds',
      [],
    ],
    [
      'controller_runtime_reconcile_total',
      'counter',
      'Total number of reconciliations per controller',
      ['controller', 'result'],
    ],
    [
      'controller_runtime_reconcile_errors_total',
      'counter',
      'Total number of reconciliation errors per controller',
      ['controller'],
    ],
    [
      'controller_runtime_reconcile_time_seconds',
      'histogram',
      'Length of time per reconciliation per controller',
      ['controller'],
    ],
    [
      'controller_runtime_max_concurrent_reconciles',
      'gauge',
      'Maximum number of concurrent reconciles per controller',
      ['controller'],
    ],
    [
      'controller_runtime_active_workers',
      'gauge',
      'Number of currently used workers per controller',
      ['controller'],
    ],
    ['workqueue_depth', 'gauge', 'Current depth of workqueue', ['name', 'controller']],
    [
      'workqueue_adds_total',
      'counter',
      'Total number of adds handled by workqueue',
      ['name', 'controller'],
    ],
    [
      'workqueue_queue_duration_seconds',
      'histogram',
      'How long in seconds an item stays in workqueue before being requested',
      ['name', 'controller'],
    ],
    [
      'workqueue_work_duration_seconds',
      'histogram',
      'How long in seconds processing an item from workqueue takes.',
      ['name', 'controller'],
    ],
    [
      'workqueue_retries_total',
      'counter',
      'Total number of retries handled by workqueue',
      ['name', 'controller'],
    ],
    [
      'workqueue_unfinished_work_seconds',
      'gauge',
      "How many seconds of work has been done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases.",
      ['name', 'controller'],
    ],
    [
      'workqueue_longest_running_processor_seconds',
      'gauge',
      'How many seconds has the longest running processor for workqueue been running.',
      ['name', 'controller'],
    ],
    [
      'leader_election_master_status',
      'gauge',
      "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
      ['name'],
    ],
    [
      'rest_client_requests_total',
      'counter',
      'Number of HTTP requests, partitioned by status code, method, and host.',
      ['code', 'method', 'host'],
    ],
  ];

  it.each(table)('%s is a %s with its help text and labels', async (name, type, help, labels) => {
    const metrics = build({ leaderElectionName: 'lease' });
    // A sample for every metric, so each one's labels show.
    metrics.restClient.onResponse?.('GET', 200, '10.0.0.1:443');
    const exposition = await scrape(metrics);
    expect(exposition.type.get(name)).toBe(type);
    expect(exposition.help.get(name)).toBe(help);
    const suffixes = type === 'histogram' ? ['_bucket', '_sum', '_count'] : [''];
    const samples = suffixes.flatMap((suffix) => find(exposition, `${name}${suffix}`));
    expect(samples.length).toBeGreaterThan(0);
    for (const sample of samples) {
      const names = Object.keys(sample.labels).filter((l) => l !== 'le');
      expect(names.sort()).toEqual([...labels].sort());
    }
  });

  it('defines exactly these metrics besides the Node defaults', async () => {
    const exposition = await scrape(build());
    expect([...exposition.type.keys()].sort()).toEqual(table.map(([name]) => name).sort());
  });

  it('uses the compatible buckets for agent_run_latency_ms', async () => {
    const exposition = await scrape(build());
    expect(AGENT_RUN_LATENCY_BUCKETS_MS).toEqual([
      50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000,
    ]);
    expect(bucketsOf(exposition, 'agent_run_latency_ms', { agent: 'noop' })).toEqual([
      50,
      100,
      250,
      500,
      1000,
      2500,
      5000,
      10000,
      30000,
      Number.POSITIVE_INFINITY,
    ]);
  });

  it("uses controller-runtime's and client-go's buckets for the controller histograms", async () => {
    const exposition = await scrape(build());
    expect(bucketsOf(exposition, 'controller_runtime_reconcile_time_seconds', C)).toEqual([
      ...RECONCILE_TIME_BUCKETS_SECONDS,
      Number.POSITIVE_INFINITY,
    ]);
    expect(RECONCILE_TIME_BUCKETS_SECONDS).toHaveLength(40);
    expect(RECONCILE_TIME_BUCKETS_SECONDS[0]).toBe(0.005);
    expect(RECONCILE_TIME_BUCKETS_SECONDS.at(-1)).toBe(60);
    // ExponentialBuckets(10e-9, 10, 12): 10 ns to 1000 s.
    const exponential = Array.from({ length: 12 }, (_, i) => 10 ** (i - 8));
    for (const name of ['workqueue_queue_duration_seconds', 'workqueue_work_duration_seconds']) {
      const buckets = bucketsOf(exposition, name, Q);
      expect(buckets).toHaveLength(13);
      buckets.slice(0, 12).forEach((b, i) => {
        expect(b).toBeCloseTo(exponential[i] ?? Number.NaN, 15);
      });
      expect(buckets[12]).toBe(Number.POSITIVE_INFINITY);
    }
    expect(WORKQUEUE_DURATION_BUCKETS_SECONDS).toHaveLength(12);
    expect(bucketsOf(exposition, 'agent_audit_write_latency_seconds')).toEqual([
      ...AUDIT_WRITE_LATENCY_BUCKETS_SECONDS,
      Number.POSITIVE_INFINITY,
    ]);
  });

  it('registers on its own registry, never the global one', async () => {
    const before = await globalRegistry.metrics();
    const a = build();
    const b = build();
    a.controller.runFinished('noop', 'succeeded', 10);
    expect(await globalRegistry.metrics()).toBe(before);
    expect(
      sampleValue(await scrape(a), 'agent_runs_total', { agent: 'noop', status: 'succeeded' }),
    ).toBe(1);
    expect(
      sampleValue(await scrape(b), 'agent_runs_total', { agent: 'noop', status: 'succeeded' }),
    ).toBe(0);
  });

  it('includes the Node process and runtime metrics by default', async () => {
    const metrics = createMetrics({ controller: 'agentrun', agents: [], enabled: true });
    const exposition = await scrape(metrics);
    for (const name of [
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'process_start_time_seconds',
      'nodejs_eventloop_lag_seconds',
      'nodejs_heap_size_used_bytes',
      'nodejs_version_info',
    ]) {
      expect(exposition.type.has(name), name).toBe(true);
    }
  });
});

describe('pre-initialisation', () => {
  it('creates every series whose labels are known, at 0', async () => {
    const exposition = await scrape(
      build({ leaderElectionName: 'agentrun-operator.agents.applylens.io' }),
    );
    for (const agent of [...AGENTS, UNKNOWN_AGENT, DEFINED_AGENT]) {
      for (const status of ['succeeded', 'failed', 'canceled']) {
        expect(
          sampleValue(exposition, 'agent_runs_total', { agent, status }),
          `${agent} ${status}`,
        ).toBe(0);
      }
      expect(sampleValue(exposition, 'agent_run_latency_ms_count', { agent })).toBe(0);
      expect(sampleValue(exposition, 'agent_run_latency_ms_sum', { agent })).toBe(0);
      expect(sampleValue(exposition, 'agent_run_latency_ms_bucket', { agent, le: '+Inf' })).toBe(0);
      expect(sampleValue(exposition, 'agent_runs_in_flight', { agent })).toBe(0);
    }
    expect(sampleValue(exposition, 'agent_runs_queued')).toBe(0);
    for (const result of ['success', 'error', 'requeue', 'requeue_after']) {
      expect(sampleValue(exposition, 'controller_runtime_reconcile_total', { ...C, result })).toBe(
        0,
      );
    }
    expect(sampleValue(exposition, 'controller_runtime_reconcile_errors_total', C)).toBe(0);
    expect(sampleValue(exposition, 'controller_runtime_reconcile_time_seconds_count', C)).toBe(0);
    expect(sampleValue(exposition, 'controller_runtime_max_concurrent_reconciles', C)).toBe(0);
    expect(sampleValue(exposition, 'controller_runtime_active_workers', C)).toBe(0);
    for (const name of [
      'workqueue_depth',
      'workqueue_adds_total',
      'workqueue_retries_total',
      'workqueue_queue_duration_seconds_count',
      'workqueue_work_duration_seconds_count',
      'workqueue_unfinished_work_seconds',
      'workqueue_longest_running_processor_seconds',
    ]) {
      expect(sampleValue(exposition, name, Q), name).toBe(0);
    }
    expect(
      sampleValue(exposition, 'leader_election_master_status', {
        name: 'agentrun-operator.agents.applylens.io',
      }),
    ).toBe(0);
    expect(sampleValue(exposition, 'agent_audit_writes_total', { result: 'success' })).toBe(0);
    expect(sampleValue(exposition, 'agent_audit_writes_total', { result: 'error' })).toBe(0);
    expect(sampleValue(exposition, 'agent_audit_pending')).toBe(0);
    expect(sampleValue(exposition, 'agent_audit_lost_total')).toBe(0);
    expect(sampleValue(exposition, 'agent_audit_write_latency_seconds_count')).toBe(0);
    // Unknown label sets are not invented.
    expect(find(exposition, 'rest_client_requests_total')).toEqual([]);
  });

  it('creates no leader series until told the name', async () => {
    const metrics = build();
    expect(find(await scrape(metrics), 'leader_election_master_status')).toEqual([]);
    metrics.leaderElection.setLeader('lease', false);
    expect(
      sampleValue(await scrape(metrics), 'leader_election_master_status', { name: 'lease' }),
    ).toBe(0);
  });
});

describe('agent runs', () => {
  it('records one finished run as exactly one count and one observation', async () => {
    const metrics = build();
    metrics.controller.runFinished('noop', 'succeeded', 534);
    const exposition = await scrape(metrics);
    expect(
      sampleValue(exposition, 'agent_runs_total', { agent: 'noop', status: 'succeeded' }),
    ).toBe(1);
    expect(sampleValue(exposition, 'agent_runs_total', { agent: 'noop', status: 'failed' })).toBe(
      0,
    );
    expect(sampleValue(exposition, 'agent_run_latency_ms_count', { agent: 'noop' })).toBe(1);
    expect(sampleValue(exposition, 'agent_run_latency_ms_sum', { agent: 'noop' })).toBe(534);
    // Cumulative buckets: 534 ms is above 500, within 1000.
    expect(
      sampleValue(exposition, 'agent_run_latency_ms_bucket', { agent: 'noop', le: '500' }),
    ).toBe(0);
    expect(
      sampleValue(exposition, 'agent_run_latency_ms_bucket', { agent: 'noop', le: '1000' }),
    ).toBe(1);
    expect(
      sampleValue(exposition, 'agent_run_latency_ms_bucket', { agent: 'noop', le: '+Inf' }),
    ).toBe(1);
    // Nothing leaks to the other agent.
    expect(sampleValue(exposition, 'agent_run_latency_ms_count', { agent: 'http.check' })).toBe(0);
  });

  it('counts each call once, per agent and status, keeping counter and histogram in step', async () => {
    const metrics = build();
    const runs: Array<['noop' | 'http.check', 'succeeded' | 'failed' | 'canceled', number]> = [
      ['noop', 'succeeded', 40],
      ['noop', 'succeeded', 4_000],
      ['noop', 'failed', 12_000],
      ['http.check', 'canceled', 31_000],
      ['http.check', 'failed', 250],
    ];
    for (const [agent, status, ms] of runs) metrics.controller.runFinished(agent, status, ms);
    const exposition = await scrape(metrics);
    expect(
      sampleValue(exposition, 'agent_runs_total', { agent: 'noop', status: 'succeeded' }),
    ).toBe(2);
    expect(sampleValue(exposition, 'agent_runs_total', { agent: 'noop', status: 'failed' })).toBe(
      1,
    );
    expect(
      sampleValue(exposition, 'agent_runs_total', { agent: 'http.check', status: 'canceled' }),
    ).toBe(1);
    expect(
      sampleValue(exposition, 'agent_runs_total', { agent: 'http.check', status: 'failed' }),
    ).toBe(1);
    for (const agent of AGENTS) {
      const total = find(exposition, 'agent_runs_total', { agent }).reduce(
        (n, s) => n + s.value,
        0,
      );
      expect(sampleValue(exposition, 'agent_run_latency_ms_count', { agent })).toBe(total);
    }
    expect(
      sampleValue(exposition, 'agent_run_latency_ms_bucket', { agent: 'noop', le: '50' }),
    ).toBe(1);
    expect(
      sampleValue(exposition, 'agent_run_latency_ms_bucket', { agent: 'noop', le: '5000' }),
    ).toBe(2);
    expect(
      sampleValue(exposition, 'agent_run_latency_ms_bucket', { agent: 'http.check', le: '250' }),
    ).toBe(1);
    expect(
      sampleValue(exposition, 'agent_run_latency_ms_bucket', { agent: 'http.check', le: '30000' }),
    ).toBe(1);
    expect(
      sampleValue(exposition, 'agent_run_latency_ms_bucket', { agent: 'http.check', le: '+Inf' }),
    ).toBe(2);
  });

  it('labels unregistered agents as one bounded series, never as given', async () => {
    const metrics = build();
    for (let i = 0; i < 100; i++) {
      metrics.controller.runFinished(`typo-${i}`, 'failed', 1);
      metrics.controller.inFlight(`typo-${i}`, 1);
    }
    const exposition = await scrape(metrics);
    const agents = new Set(find(exposition, 'agent_runs_total').map((s) => s.labels['agent']));
    expect([...agents].sort()).toEqual([...AGENTS, UNKNOWN_AGENT, DEFINED_AGENT].sort());
    expect(
      sampleValue(exposition, 'agent_runs_total', { agent: UNKNOWN_AGENT, status: 'failed' }),
    ).toBe(100);
    expect(sampleValue(exposition, 'agent_runs_in_flight', { agent: UNKNOWN_AGENT })).toBe(100);
  });

  it('tracks handlers in flight and runs queued', async () => {
    const metrics = build();
    metrics.controller.inFlight('noop', 1);
    metrics.controller.inFlight('noop', 1);
    metrics.controller.inFlight('http.check', 1);
    metrics.controller.inFlight('noop', -1);
    metrics.controller.queued(7);
    let exposition = await scrape(metrics);
    expect(sampleValue(exposition, 'agent_runs_in_flight', { agent: 'noop' })).toBe(1);
    expect(sampleValue(exposition, 'agent_runs_in_flight', { agent: 'http.check' })).toBe(1);
    expect(sampleValue(exposition, 'agent_runs_queued')).toBe(7);
    metrics.controller.queued(0);
    exposition = await scrape(metrics);
    expect(sampleValue(exposition, 'agent_runs_queued')).toBe(0);
  });

  it('never throws or poisons sums on odd durations', async () => {
    const metrics = build();
    for (const ms of [Number.NaN, -5, Number.POSITIVE_INFINITY]) {
      expect(() => metrics.controller.runFinished('noop', 'failed', ms)).not.toThrow();
    }
    expect(() => metrics.controller.reconcile('success', Number.NaN)).not.toThrow();
    expect(() => metrics.workqueue.queueDuration(-1)).not.toThrow();
    expect(() => metrics.audit.latency(Number.NaN)).not.toThrow();
    expect(() => metrics.audit.written('success', Number.NaN)).not.toThrow();
    const exposition = await scrape(metrics);
    expect(sampleValue(exposition, 'agent_run_latency_ms_sum', { agent: 'noop' })).toBe(0);
    expect(sampleValue(exposition, 'agent_run_latency_ms_count', { agent: 'noop' })).toBe(3);
  });
});

describe('controller and work queue', () => {
  it('maps reconcile results to controller-runtime counters and the time histogram', async () => {
    const metrics = build();
    metrics.controller.reconcile('success', 0.004);
    metrics.controller.reconcile('success', 0.2);
    metrics.controller.reconcile('error', 1.1);
    metrics.controller.reconcile('requeue', 0.01);
    metrics.controller.reconcile('requeue_after', 0.01);
    metrics.controller.maxConcurrentReconciles(16);
    metrics.controller.activeWorkers(1);
    metrics.controller.activeWorkers(1);
    metrics.controller.activeWorkers(-1);
    const exposition = await scrape(metrics);
    const total = (result: string) =>
      sampleValue(exposition, 'controller_runtime_reconcile_total', { ...C, result });
    expect([total('success'), total('error'), total('requeue'), total('requeue_after')]).toEqual([
      2, 1, 1, 1,
    ]);
    expect(sampleValue(exposition, 'controller_runtime_reconcile_errors_total', C)).toBe(1);
    expect(sampleValue(exposition, 'controller_runtime_reconcile_time_seconds_count', C)).toBe(5);
    expect(
      sampleValue(exposition, 'controller_runtime_reconcile_time_seconds_bucket', {
        ...C,
        le: '0.005',
      }),
    ).toBe(1);
    expect(
      sampleValue(exposition, 'controller_runtime_reconcile_time_seconds_bucket', {
        ...C,
        le: '1',
      }),
    ).toBe(4);
    expect(sampleValue(exposition, 'controller_runtime_max_concurrent_reconciles', C)).toBe(16);
    expect(sampleValue(exposition, 'controller_runtime_active_workers', C)).toBe(1);
  });

  it('records the work queue hooks', async () => {
    const metrics = build();
    metrics.workqueue.add();
    metrics.workqueue.add();
    metrics.workqueue.depth(2);
    metrics.workqueue.queueDuration(0.0005);
    metrics.workqueue.workDuration(0.05);
    metrics.workqueue.retry();
    const exposition = await scrape(metrics);
    expect(sampleValue(exposition, 'workqueue_adds_total', Q)).toBe(2);
    expect(sampleValue(exposition, 'workqueue_depth', Q)).toBe(2);
    expect(sampleValue(exposition, 'workqueue_retries_total', Q)).toBe(1);
    expect(
      sampleValue(exposition, 'workqueue_queue_duration_seconds_bucket', { ...Q, le: '0.001' }),
    ).toBe(1);
    expect(
      sampleValue(exposition, 'workqueue_queue_duration_seconds_bucket', { ...Q, le: '0.0001' }),
    ).toBe(0);
    expect(
      sampleValue(exposition, 'workqueue_work_duration_seconds_bucket', { ...Q, le: '0.1' }),
    ).toBe(1);
    expect(
      sampleValue(exposition, 'workqueue_work_duration_seconds_bucket', { ...Q, le: '0.01' }),
    ).toBe(0);
  });

  it('reads the attached queue at scrape time for the two collect-time gauges', async () => {
    const metrics = build();
    const probe = { unfinished: 3.5, longest: 2 };
    metrics.attachQueue({
      unfinishedWorkSeconds: () => probe.unfinished,
      longestRunningProcessorSeconds: () => probe.longest,
    });
    let exposition = await scrape(metrics);
    expect(sampleValue(exposition, 'workqueue_unfinished_work_seconds', Q)).toBe(3.5);
    expect(sampleValue(exposition, 'workqueue_longest_running_processor_seconds', Q)).toBe(2);
    probe.unfinished = 10;
    probe.longest = 9;
    exposition = await scrape(metrics);
    expect(sampleValue(exposition, 'workqueue_unfinished_work_seconds', Q)).toBe(10);
    expect(sampleValue(exposition, 'workqueue_longest_running_processor_seconds', Q)).toBe(9);
  });

  it('reports 0 when the queue probe throws, and the scrape still succeeds', async () => {
    const metrics = build();
    metrics.attachQueue({
      unfinishedWorkSeconds: () => {
        throw new Error('boom');
      },
      longestRunningProcessorSeconds: () => Number.NaN,
    });
    const exposition = await scrape(metrics);
    expect(sampleValue(exposition, 'workqueue_unfinished_work_seconds', Q)).toBe(0);
    expect(sampleValue(exposition, 'workqueue_longest_running_processor_seconds', Q)).toBe(0);
  });

  it('uses the controller name for both work queue labels', async () => {
    const metrics = build({ controller: 'other' });
    metrics.workqueue.add();
    const exposition = await scrape(metrics);
    expect(
      sampleValue(exposition, 'workqueue_adds_total', { name: 'other', controller: 'other' }),
    ).toBe(1);
    expect(
      sampleValue(exposition, 'controller_runtime_active_workers', { controller: 'other' }),
    ).toBe(0);
  });
});

describe('leader election, audit and REST client', () => {
  it('sets the leader gauge to 1 and back to 0', async () => {
    const metrics = build({ leaderElectionName: 'lease' });
    metrics.leaderElection.setLeader('lease', true);
    expect(
      sampleValue(await scrape(metrics), 'leader_election_master_status', { name: 'lease' }),
    ).toBe(1);
    metrics.leaderElection.setLeader('lease', false);
    expect(
      sampleValue(await scrape(metrics), 'leader_election_master_status', { name: 'lease' }),
    ).toBe(0);
  });

  it('records audit writes by rows, latency and the pending backlog', async () => {
    const metrics = build();
    metrics.audit.written('success', 1);
    metrics.audit.written('success', 24);
    metrics.audit.written('error', 3);
    metrics.audit.written('error', 0);
    metrics.audit.latency(0.02);
    metrics.audit.latency(3);
    metrics.audit.pending(5);
    metrics.audit.lost();
    const exposition = await scrape(metrics);
    expect(sampleValue(exposition, 'agent_audit_lost_total')).toBe(1);
    expect(sampleValue(exposition, 'agent_audit_writes_total', { result: 'success' })).toBe(25);
    expect(sampleValue(exposition, 'agent_audit_writes_total', { result: 'error' })).toBe(3);
    expect(sampleValue(exposition, 'agent_audit_write_latency_seconds_count')).toBe(2);
    expect(
      sampleValue(exposition, 'agent_audit_write_latency_seconds_bucket', { le: '0.025' }),
    ).toBe(1);
    expect(sampleValue(exposition, 'agent_audit_write_latency_seconds_bucket', { le: '5' })).toBe(
      2,
    );
    expect(sampleValue(exposition, 'agent_audit_pending')).toBe(5);
  });

  it('counts API requests by code, method and host; no response is client-go\'s "<error>"', async () => {
    const metrics = build();
    const onResponse = metrics.restClient.onResponse;
    expect(onResponse).toBeTypeOf('function');
    onResponse?.('GET', 200, '10.0.0.1:443');
    onResponse?.('GET', 200, '10.0.0.1:443');
    onResponse?.('PATCH', 409, '10.0.0.1:443');
    onResponse?.('GET', 0, '10.0.0.1:443');
    const exposition = await scrape(metrics);
    const host = '10.0.0.1:443';
    expect(
      sampleValue(exposition, 'rest_client_requests_total', { code: '200', method: 'GET', host }),
    ).toBe(2);
    expect(
      sampleValue(exposition, 'rest_client_requests_total', { code: '409', method: 'PATCH', host }),
    ).toBe(1);
    expect(
      sampleValue(exposition, 'rest_client_requests_total', {
        code: NO_RESPONSE_CODE,
        method: 'GET',
        host,
      }),
    ).toBe(1);
    expect(NO_RESPONSE_CODE).toBe('<error>');
  });
});

describe('disabled (APPLYLENS_AGENT_METRICS_ENABLED=false)', () => {
  it('registers nothing and records nothing', async () => {
    const metrics = createMetrics({ controller: 'agentrun', agents: AGENTS, enabled: false });
    expect(metrics.enabled).toBe(false);
    expect(metrics.registry.getMetricsAsArray()).toEqual([]);
    metrics.controller.runFinished('noop', 'succeeded', 10);
    metrics.controller.reconcile('error', 1);
    metrics.controller.activeWorkers(1);
    metrics.controller.maxConcurrentReconciles(3);
    metrics.controller.inFlight('noop', 1);
    metrics.controller.queued(2);
    metrics.workqueue.add();
    metrics.workqueue.depth(1);
    metrics.workqueue.queueDuration(1);
    metrics.workqueue.workDuration(1);
    metrics.workqueue.retry();
    metrics.leaderElection.setLeader('lease', true);
    metrics.audit.written('success', 1);
    metrics.audit.latency(1);
    metrics.audit.pending(1);
    metrics.audit.lost();
    metrics.attachQueue({
      unfinishedWorkSeconds: () => 1,
      longestRunningProcessorSeconds: () => 1,
    });
    expect(metrics.registry.getMetricsAsArray()).toEqual([]);
    expect((await metrics.registry.metrics()).trim()).toBe('');
  });

  it('asks for no REST client interceptor', () => {
    const metrics = createMetrics({ controller: 'agentrun', agents: AGENTS, enabled: false });
    expect(metrics.restClient).toEqual({});
    expect('onResponse' in metrics.restClient).toBe(false);
  });

  it('leaves the global registry alone and adds no default collectors', async () => {
    const before = globalRegistry.getMetricsAsArray().length;
    createMetrics({ controller: 'agentrun', agents: AGENTS, enabled: false });
    expect(globalRegistry.getMetricsAsArray()).toHaveLength(before);
  });
});
