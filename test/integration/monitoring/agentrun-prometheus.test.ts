import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { AgentRuns } from '../../support/agentruns.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane, useFreshDatabase } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { startOperator } from '../../support/operator.ts';
import { freePort } from '../../support/ports.ts';
import { PrometheusServer, type Sample } from '../../support/prometheus.ts';
import { waitFor } from '../../support/wait.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const MONITORING = join(ROOT, 'deploy/monitoring/base');
/** Where the shipped ServiceMonitor's relabelling would put the operator. */
const TARGET_LABELS = { namespace: 'agentrun-system', pod: 'agentrun-operator-0' };

const plane = controlPlane();
const db = useFreshDatabase('prometheus');
const kc = adminKubeConfig(plane);
let prometheus: PrometheusServer | undefined;

const query = (expr: string): Promise<Sample[]> => (prometheus as PrometheusServer).query(expr);
const scalar = (expr: string) => (prometheus as PrometheusServer).scalar(expr);
const api = <T>(path: string): Promise<T> => (prometheus as PrometheusServer).api<T>(path);

/** The shipped PrometheusRule's groups, as the rule file Prometheus Operator would generate. */
function shippedRules(): string {
  const rule = parse(readFileSync(join(MONITORING, 'prometheusrule.yaml'), 'utf8')) as {
    spec: unknown;
  };
  return stringify(rule.spec);
}

/** Every panel query of the shipped dashboard, with Grafana's variables filled in. */
function dashboardQueries(): { title: string; expr: string }[] {
  type Panel = { title?: string; targets?: { expr: string }[]; panels?: Panel[] };
  const dashboard = JSON.parse(
    readFileSync(join(MONITORING, 'dashboards/agentrun-operator.json'), 'utf8'),
  ) as { panels: Panel[] };
  const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
  return panels.flatMap((panel) =>
    (panel.targets ?? []).map((target) => ({
      title: panel.title ?? '',
      expr: target.expr
        .replaceAll('$namespace', TARGET_LABELS.namespace)
        .replaceAll('$agent', '.*')
        .replaceAll('$__rate_interval', '1m')
        .replaceAll('$__range', '1h'),
    })),
  );
}

beforeAll(async () => {
  await installCrd(plane);
});

afterAll(async () => {
  await prometheus?.stop();
});

describe('a real Prometheus scraping the operator', () => {
  it('answers the original PromQL, evaluates the shipped alerts and every dashboard query, from a mix of runs', async () => {
    const namespace = await createNamespace(kc, 'prom');
    const metricsPort = await freePort();
    const operator = await startOperator({
      kubeConfig: kc,
      namespace,
      // As shipped: the audit log on, so its metrics and its status writes are part of the data.
      env: {
        METRICS_BIND_ADDRESS: `127.0.0.1:${metricsPort}`,
        APPLYLENS_AGENT_AUDIT_ENABLED: 'true',
        DATABASE_URL: db.url,
      },
    });
    expect(operator.metricsPort).toBe(metricsPort);

    prometheus = await PrometheusServer.start(
      (dir) => ({
        global: { scrape_interval: '1s', evaluation_interval: '1s' },
        rule_files: [join(dir, 'agentrun.rules.yaml')],
        scrape_configs: [
          {
            job_name: 'agentrun-operator-metrics',
            static_configs: [{ targets: [`127.0.0.1:${metricsPort}`], labels: TARGET_LABELS }],
          },
        ],
      }),
      { 'agentrun.rules.yaml': shippedRules() },
    );
    // Series exist at 0 before any run (pre-initialised), so rates see every increase.
    await waitFor(
      'the first scrape',
      async () => ((await scalar('up{job="agentrun-operator-metrics"}')) === 1 ? true : undefined),
      {
        timeoutMs: 30_000,
        intervalMs: 250,
      },
    );
    await waitFor('a pre-initialised agent_runs_total series', async () =>
      (await scalar('agent_runs_total{agent="noop",status="failed"}')) === 0 ? true : undefined,
    );

    const runs = new AgentRuns(kc, namespace);
    await Promise.all([
      ...['s1', 's2', 's3'].map((name) =>
        runs.create(name, { agent: 'noop', params: { delayMs: 300 } }),
      ),
      runs.create('f1', { agent: 'noop', params: { fail: 'no' } }),
      // Two attempts, one finished run: retries are not counted as runs.
      runs.create('f2', { agent: 'noop', backoffLimit: 1, params: { fail: 'no' } }),
      runs.create('c1', { agent: 'noop', params: { delayMs: 60_000 } }),
    ]);
    await runs.waitForPhase('c1', 'Running');
    await runs.cancel('c1');
    for (const name of ['s1', 's2', 's3']) await runs.waitForPhase(name, 'Succeeded');
    for (const name of ['f1', 'f2']) await runs.waitForPhase(name, 'Failed');
    await runs.waitForPhase('c1', 'Canceled');

    await waitFor('Prometheus to see all six runs', async () =>
      (await scalar('sum(agent_runs_total)')) === 6 ? true : undefined,
    );
    expect(await scalar('agent_runs_total{agent="noop",status="succeeded"}')).toBe(3);
    expect(await scalar('agent_runs_total{agent="noop",status="failed"}')).toBe(2);
    expect(await scalar('agent_runs_total{agent="noop",status="canceled"}')).toBe(1);
    expect((await runs.get('f2'))?.status?.attempts).toBe(2);
    // Each run's start and terminal rows went to PostgreSQL, and nothing is left pending.
    await waitFor('the audit rows written', async () =>
      ((await scalar('sum(agent_audit_writes_total{result="success"})')) ?? 0) >= 6
        ? true
        : undefined,
    );
    expect(await scalar('sum(agent_audit_writes_total{result="error"})')).toBe(0);
    expect(await scalar('agent_audit_pending')).toBe(0);

    // The original success rate by agent, once rate() has two samples after the runs.
    await waitFor('rates over the runs', async () =>
      ((await scalar('sum(rate(agent_runs_total[5m]))')) ?? 0) > 0 ? true : undefined,
    );
    const successRate = await scalar(
      'sum by (agent) (rate(agent_runs_total{agent="noop",status="succeeded"}[5m])) / sum by (agent) (rate(agent_runs_total{agent="noop"}[5m]))',
    );
    expect(successRate).toBeCloseTo(0.5, 6);
    // The original p95 latency: a noop run takes milliseconds; the canceled one ran a little longer.
    const p95 = await scalar(
      'histogram_quantile(0.95, sum by (le) (rate(agent_run_latency_ms_bucket[5m])))',
    );
    expect(p95).toBeGreaterThan(0);
    expect(p95).toBeLessThanOrEqual(30_000);
    // One observation per finished run, in milliseconds: three runs slept 300 ms each.
    expect(await scalar('sum(agent_run_latency_ms_count)')).toBe(6);
    expect(await scalar('sum(agent_run_latency_ms_sum)')).toBeGreaterThanOrEqual(900);
    expect(await scalar('sum(agent_run_latency_ms_sum)')).toBeLessThan(60_000);
    expect(await scalar('sum(agent_runs_in_flight)')).toBe(0);
    // The original failure spike: 2 failures in the last hour are not more than 10.
    expect(await query('increase(agent_runs_total{status="failed"}[1h]) > 10')).toEqual([]);
    expect(await scalar('sum(increase(agent_runs_total{status="failed"}[1h]))')).toBeGreaterThan(0);
    // Controller metrics with controller-runtime's names are there as well.
    expect(
      await scalar('controller_runtime_reconcile_total{controller="agentrun",result="success"}'),
    ).toBeGreaterThan(0);
    expect(await scalar('controller_runtime_max_concurrent_reconciles')).toBeGreaterThan(0);
    expect(await scalar('sum(workqueue_adds_total{name="agentrun"})')).toBeGreaterThanOrEqual(6);
    expect(await scalar('sum(rest_client_requests_total)')).toBeGreaterThan(0);

    // The shipped alerts load and evaluate on this real data, and none fires for a healthy
    // operator with a third of its runs failed (too few for the failure-rate alerts).
    type Rule = { name: string; health: string; lastError?: string; state?: string };
    const { groups } = await api<{ groups: { rules: Rule[] }[] }>('rules');
    const rules = groups.flatMap((g) => g.rules);
    expect(rules.length).toBeGreaterThanOrEqual(7);
    await waitFor('every rule evaluated', async () => {
      const { groups: now } = await api<{ groups: { rules: Rule[] }[] }>('rules');
      const all = now.flatMap((g) => g.rules);
      return all.every((r) => r.health === 'ok') ? all : undefined;
    });
    const { alerts } = await api<{ alerts: { labels: { alertname: string } }[] }>('alerts');
    expect(alerts.map((a) => a.labels.alertname)).toEqual([]);

    // Every dashboard panel query is valid PromQL for this Prometheus, and the run panels show
    // the runs.
    const panels = dashboardQueries();
    expect(panels.length).toBeGreaterThan(20);
    for (const { title, expr } of panels) {
      await expect(query(expr), `${title}: ${expr}`).resolves.toBeDefined();
    }
    for (const title of ['Success rate (24h)', 'Finished runs (24h)', 'Failed runs (24h)']) {
      const panel = panels.find((p) => p.title === title);
      expect(panel, title).toBeDefined();
      expect(await query(panel?.expr ?? ''), title).not.toEqual([]);
    }

    // Nine more failures make eleven in the hour: the failure-spike alert goes pending for the
    // agent, labelled with where the operator runs.
    const more = Array.from({ length: 9 }, (_, i) => `f${i + 3}`);
    await Promise.all(
      more.map((name) => runs.create(name, { agent: 'noop', params: { fail: 'no' } })),
    );
    for (const name of more) await runs.waitForPhase(name, 'Failed');
    type Alert = { labels: Record<string, string>; state: string };
    const spike = await waitFor(
      'AgentRunFailureSpike to go pending',
      async () => {
        const active = (await api<{ alerts: Alert[] }>('alerts')).alerts;
        return active.find((a) => a.labels['alertname'] === 'AgentRunFailureSpike');
      },
      { timeoutMs: 30_000, intervalMs: 250 },
    );
    expect(spike).toMatchObject({
      state: 'pending',
      labels: { agent: 'noop', namespace: TARGET_LABELS.namespace, severity: 'warning' },
    });
  });
});
