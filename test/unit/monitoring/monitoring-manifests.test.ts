import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { createMetrics } from '../../../src/metrics/metrics.ts';

/**
 * deploy/monitoring as data: the PrometheusRule is generated from the plain rule file, every alert
 * is documented and tested, the dashboard parses and only queries metrics the operator exports,
 * and the Service, ServiceMonitor and rules agree on names, ports and the job label.
 * (promtool and the server-side dry run are in test/integration/monitoring/.)
 */

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MONITORING = join(ROOT, 'deploy/monitoring');
const RULES_FILE = join(MONITORING, 'rules/agentrun.rules.yaml');
const PROMETHEUS_RULE_FILE = join(MONITORING, 'base/prometheusrule.yaml');
const DASHBOARD_FILE = join(MONITORING, 'base/dashboards/agentrun-operator.json');
const PROMTOOL_TESTS = join(ROOT, 'test/prometheus');
const RUNBOOK_URL = 'https://github.com/applylens/agentrun-operator/blob/main/docs/runbooks/';

/** Grafana's reference to the dashboard's data source variable. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's variable syntax, not JavaScript's
const DATASOURCE_UID = '${datasource}';

/** What the ServiceMonitor's targets are labelled job=...: the metrics Service's name. */
const JOB = 'agentrun-operator-metrics';

/** The metrics the rules and the dashboard may use (the list), with their types. */
const METRICS: Record<string, 'counter' | 'gauge' | 'histogram'> = {
  agent_runs_total: 'counter',
  agent_run_latency_ms: 'histogram',
  agent_runs_in_flight: 'gauge',
  agent_runs_queued: 'gauge',
  agent_audit_writes_total: 'counter',
  agent_audit_pending: 'gauge',
  agent_audit_write_latency_seconds: 'histogram',
  controller_runtime_reconcile_total: 'counter',
  controller_runtime_reconcile_errors_total: 'counter',
  controller_runtime_reconcile_time_seconds: 'histogram',
  workqueue_depth: 'gauge',
  leader_election_master_status: 'gauge',
  process_start_time_seconds: 'gauge',
  // Not exported by the operator: Prometheus records it for every scrape.
  up: 'gauge',
};

/** Series names as Prometheus stores them (a histogram is _bucket, _sum and _count). */
const SERIES = new Set(
  Object.entries(METRICS).flatMap(([name, type]) =>
    type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name],
  ),
);

/** PromQL words that look like identifiers but are not metric names. */
const PROMQL_KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/**
 * The metric names a PromQL expression selects. Not a parser, but enough for our expressions:
 * drops strings, label matchers, ranges and grouping label lists; what remains that is neither a
 * function call (an identifier before "(") nor a keyword is a metric name.
 */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const match of stripped.matchAll(/(?<![\w$.:])([a-zA-Z_:][\w:]*)\b(?!\s*\()/g)) {
    const name = match[1] ?? '';
    if (!PROMQL_KEYWORDS.has(name.toLowerCase())) names.add(name);
  }
  return [...names];
}

/** The selector inside Grafana's label_values(selector, label) (the label is no metric). */
function grafanaVariableExpr(query: string): string {
  return query.replace(/^\s*label_values\((.*),\s*[a-zA-Z_]\w*\s*\)\s*$/s, '$1');
}

/** Every `job` matcher value in an expression. */
function jobMatchers(expr: string): string[] {
  return [...expr.matchAll(/\bjob\s*(=~|!=|!~|=)\s*"([^"]*)"/g)].map((m) => `${m[1]}${m[2]}`);
}

const read = (file: string) => readFileSync(file, 'utf8');

/**
 * The PrometheusRule, generated from the plain rule file: its `spec` is that file without the
 * header comment, indented (comments and block scalars survive as written).
 */
function prometheusRuleYaml(rulesText: string): string {
  const lines = rulesText.split('\n');
  const body = lines.slice(lines.findIndex((line) => line !== '' && !line.startsWith('#')));
  return [
    '# GENERATED from ../rules/agentrun.rules.yaml: do not edit. Edit that file, then run',
    '#   npx vitest run -u test/unit/monitoring/monitoring-manifests.test.ts',
    '# test/integration/monitoring/monitoring-promtool.test.ts runs promtool on both files.',
    '#',
    '# kube-prometheus-stack selects only PrometheusRules labelled `release: <its Helm release>` by',
    '# default: add that label, or set prometheus.prometheusSpec.ruleSelectorNilUsesHelmValues=false.',
    'apiVersion: monitoring.coreos.com/v1',
    'kind: PrometheusRule',
    'metadata:',
    '  name: agentrun-operator',
    '  namespace: agentrun-system',
    '  labels:',
    '    app.kubernetes.io/name: agentrun-operator',
    '    app.kubernetes.io/component: metrics',
    '    app.kubernetes.io/part-of: agentrun-operator',
    'spec:',
    ...body.map((line) => (line === '' ? '' : `  ${line}`)),
  ]
    .join('\n')
    .replace(/\n*$/, '\n');
}

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: { name: string; rules: Rule[] }[];
}

const rulesText = read(RULES_FILE);
const ruleFile = parse(rulesText) as RuleFile;
const alerts = ruleFile.groups.flatMap((group) => group.rules).filter((rule) => rule.alert);

interface PromtoolTestFile {
  rule_files: string[];
  tests: {
    name?: string;
    alert_rule_test?: { alertname: string; eval_time: string; exp_alerts?: unknown[] }[];
  }[];
}
const promtoolTests = readdirSync(PROMTOOL_TESTS)
  .filter((name) => name.endsWith('.test.yaml'))
  .map((name) => ({
    file: join(PROMTOOL_TESTS, name),
    content: parse(read(join(PROMTOOL_TESTS, name))) as PromtoolTestFile,
  }));

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
  };
  spec?: Record<string, unknown>;
}
interface Kustomization {
  resources?: string[];
  patches?: { path?: string; target?: Record<string, string> }[];
  configMapGenerator?: {
    name: string;
    namespace?: string;
    files?: string[];
    options?: { labels?: Record<string, string>; disableNameSuffixHash?: boolean };
  }[];
}
const kustomization = (dir: string) =>
  parse(read(join(MONITORING, dir, 'kustomization.yaml'))) as Kustomization;
const object = (file: string) => parse(read(join(MONITORING, file))) as K8sObject;

describe('PrometheusRule', () => {
  it('is generated from rules/agentrun.rules.yaml (npx vitest run -u to regenerate)', async () => {
    await expect(
      prometheusRuleYaml(rulesText),
      'deploy/monitoring/base/prometheusrule.yaml is generated from rules/agentrun.rules.yaml: edit ' +
        'the rule file, then `npx vitest run -u test/unit/monitoring/monitoring-manifests.test.ts`',
    ).toMatchFileSnapshot(PROMETHEUS_RULE_FILE);
  });

  it('has exactly the rule file as its spec', () => {
    const documents = parseAllDocuments(read(PROMETHEUS_RULE_FILE));
    expect(documents).toHaveLength(1);
    const rule = documents[0]?.toJS() as K8sObject;
    expect(rule.apiVersion).toBe('monitoring.coreos.com/v1');
    expect(rule.kind).toBe('PrometheusRule');
    expect(rule.metadata.namespace).toBe('agentrun-system');
    expect(rule.spec).toEqual(ruleFile);
  });
});

describe('alerting rules', () => {
  it("has the issue's six alerts plus AgentRunOperatorNoLeader, and no recording rules", () => {
    expect(alerts.map((rule) => rule.alert).sort()).toEqual([
      'AgentAuditBacklogGrowing',
      'AgentRunFailureSpike',
      'AgentRunHighFailureRate',
      'AgentRunOperatorDown',
      'AgentRunOperatorNoLeader',
      'AgentRunReconcileErrors',
      'AgentRunSlowRuns',
    ]);
    expect(ruleFile.groups.flatMap((group) => group.rules).filter((rule) => rule.record)).toEqual(
      [],
    );
  });

  it.each(alerts.map((rule) => [rule.alert ?? '', rule] as const))(
    '%s has a for duration, a severity, summary, description and a runbook in docs/runbooks',
    (name, rule) => {
      expect(rule.for).toMatch(/^\d+m$/);
      expect(['warning', 'critical']).toContain(rule.labels?.['severity']);
      expect(rule.annotations?.['summary']?.trim()).toBeTruthy();
      expect(rule.annotations?.['description']?.trim()).toBeTruthy();
      expect(rule.annotations?.['runbook_url']).toBe(`${RUNBOOK_URL}${name}.md`);
      const runbook = join(ROOT, 'docs/runbooks', `${name}.md`);
      expect(existsSync(runbook), `docs/runbooks/${name}.md`).toBe(true);
      expect(read(runbook)).toMatch(new RegExp(`^# ${name}\\n`));
    },
  );

  it.each(alerts.map((rule) => [rule.alert ?? '', rule] as const))(
    '%s only queries metrics the operator exports, with job="agentrun-operator-metrics"',
    (_name, rule) => {
      for (const metric of metricNames(rule.expr)) expect(SERIES).toContain(metric);
      const jobs = jobMatchers(rule.expr);
      expect(jobs.length).toBeGreaterThan(0);
      expect(new Set(jobs)).toEqual(new Set([`=${JOB}`]));
    },
  );

  it.each(alerts.map((rule) => [rule.alert ?? ''] as const))(
    '%s has promtool tests where it fires and where it does not',
    (name) => {
      const cases = promtoolTests.flatMap(({ content }) =>
        content.tests.flatMap((test) =>
          (test.alert_rule_test ?? []).filter((t) => t.alertname === name),
        ),
      );
      expect(cases.filter((t) => (t.exp_alerts ?? []).length > 0).length).toBeGreaterThan(0);
      expect(cases.filter((t) => (t.exp_alerts ?? []).length === 0).length).toBeGreaterThan(0);
    },
  );

  it('promtool tests load the plain rule file and only name alerts that exist', () => {
    expect(promtoolTests.length).toBeGreaterThan(0);
    const names = new Set(alerts.map((rule) => rule.alert));
    for (const { file, content } of promtoolTests) {
      expect(content.rule_files.map((f) => resolve(dirname(file), f))).toEqual([RULES_FILE]);
      for (const test of content.tests)
        for (const t of test.alert_rule_test ?? []) expect(names).toContain(t.alertname);
    }
  });

  it('matches le of the 5 s bucket as Prometheus 2 and 3 store it (5000 and 5000.0)', () => {
    const slow = alerts.find((rule) => rule.alert === 'AgentRunSlowRuns');
    const le = /le=~"([^"]*)"/.exec(slow?.expr ?? '')?.[1] ?? '';
    // PromQL unescapes the string literal; Prometheus anchors the regex.
    const regex = new RegExp(`^(?:${le.replaceAll('\\\\', '\\')})$`);
    expect(['5000', '5000.0'].map((v) => regex.test(v))).toEqual([true, true]);
    expect(['50000', '500', '5000.5', '+Inf'].some((v) => regex.test(v))).toBe(false);
  });
});

describe('metricNames', () => {
  it('finds metric names and skips functions, labels, strings, ranges and grouping', () => {
    expect(
      metricNames(
        'histogram_quantile(0.95, sum by (agent, le) (rate(agent_run_latency_ms_bucket{job="x", le=~"5000(\\\\.0)?"}[$__rate_interval]))) ' +
          '/ on (agent) group_left () max without (pod) (up offset 5m) > bool 1e3 and time() - process_start_time_seconds',
      ).sort(),
    ).toEqual(['agent_run_latency_ms_bucket', 'process_start_time_seconds', 'up']);
    expect(metricNames('label_replace(foo_total > 0, "reason", "x", "", "")')).toEqual([
      'foo_total',
    ]);
  });
});

interface Panel {
  type: string;
  id: number;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: { expr: string; datasource?: { uid: string } }[];
  panels?: Panel[];
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: {
    list: { name: string; type: string; query: string | { query: string } }[];
  };
}

describe('Grafana dashboard', () => {
  const dashboard = JSON.parse(read(DASHBOARD_FILE)) as Dashboard;
  const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
  const queryPanels = panels.filter((panel) => panel.type !== 'row');
  const exprsOf = (title: string) =>
    (panels.find((panel) => panel.title === title)?.targets ?? []).map((t) => t.expr);

  it('is JSON with a fixed uid, unique panel ids and panels that fit the 24-column grid', () => {
    expect(dashboard.uid).toBe('agentrun-operator');
    expect(dashboard.title).toBeTruthy();
    expect(new Set(panels.map((panel) => panel.id)).size).toBe(panels.length);
    const cells = new Set<string>();
    for (const { gridPos, title } of panels) {
      expect(gridPos.x + gridPos.w, title).toBeLessThanOrEqual(24);
      for (let x = gridPos.x; x < gridPos.x + gridPos.w; x++)
        for (let y = gridPos.y; y < gridPos.y + gridPos.h; y++) {
          expect(cells.has(`${x},${y}`), `${title} overlaps another panel`).toBe(false);
          cells.add(`${x},${y}`);
        }
    }
  });

  it('queries through the datasource variable in every panel', () => {
    expect(dashboard.templating.list.find((v) => v.name === 'datasource')?.type).toBe('datasource');
    for (const panel of queryPanels) {
      expect(panel.datasource?.uid, panel.title).toBe(DATASOURCE_UID);
      expect(panel.targets?.length, panel.title).toBeGreaterThan(0);
      for (const target of panel.targets ?? [])
        expect(target.datasource?.uid, panel.title).toBe(DATASOURCE_UID);
    }
  });

  it('only queries metrics the operator exports, with job="agentrun-operator-metrics"', () => {
    const exprs = [
      ...queryPanels.flatMap((panel) => (panel.targets ?? []).map((t) => t.expr)),
      ...dashboard.templating.list
        .filter((v) => v.type === 'query')
        .map((v) => grafanaVariableExpr(typeof v.query === 'string' ? v.query : v.query.query)),
    ];
    expect(exprs.length).toBeGreaterThan(20);
    for (const expr of exprs) {
      const names = metricNames(expr);
      expect(names.length, expr).toBeGreaterThan(0);
      for (const name of names) expect(SERIES, expr).toContain(name);
      expect(new Set(jobMatchers(expr)), expr).toEqual(new Set([`=${JOB}`]));
    }
  });

  it('has the originally recommended panels: runs per hour, success rate, p50/p95/p99, errors by agent', () => {
    expect(exprsOf('Runs per hour by agent')).toEqual([
      expect.stringMatching(/^sum by \(agent\) \(increase\(agent_runs_total\{.*\}\[1h\]\)\)$/),
    ]);
    expect(exprsOf('Success rate (24h)')).toEqual([
      expect.stringMatching(
        /^sum\(increase\(agent_runs_total\{.*status="succeeded"\}\[24h\]\)\)\n\/\nsum\(increase\(agent_runs_total\{[^}]*\}\[24h\]\)\)$/,
      ),
    ]);
    expect(exprsOf('Run latency p50 / p95 / p99')).toEqual(
      ['0.50', '0.95', '0.99'].map((q) =>
        expect.stringMatching(
          new RegExp(
            `^histogram_quantile\\(${q}, sum by \\(le\\) \\(rate\\(agent_run_latency_ms_bucket\\{`,
          ),
        ),
      ),
    );
    expect(exprsOf('Failed runs per hour by agent')).toEqual([
      expect.stringMatching(/^sum by \(agent\) \(increase\(agent_runs_total\{.*status="failed"/),
    ]);
  });

  it('shows runs in flight, both queue depths and the audit backlog', () => {
    expect(exprsOf('Runs in flight by agent').join()).toContain('agent_runs_in_flight');
    const queue = exprsOf('Queue depth').join('\n');
    expect(queue).toContain('agent_runs_queued');
    expect(queue).toContain('workqueue_depth{');
    expect(queue).toContain('name="agentrun"');
    expect(exprsOf('Audit backlog').join()).toContain('agent_audit_pending');
  });

  it('is generated into a ConfigMap with the Grafana sidecar label', () => {
    const generator = kustomization('base').configMapGenerator?.find(
      (g) => g.name === 'agentrun-operator-dashboard',
    );
    expect(generator?.namespace).toBe('agentrun-system');
    expect(generator?.files).toEqual(['dashboards/agentrun-operator.json']);
    expect(generator?.options?.labels?.['grafana_dashboard']).toBe('1');
    expect(generator?.options?.disableNameSuffixHash).toBe(true);
  });
});

describe('the metric list matches what src/metrics exports', () => {
  it('every metric the rules and dashboard may use but up is on the operator registry', async () => {
    const metrics = createMetrics({
      controller: 'agentrun',
      agents: ['noop'],
      enabled: true,
      leaderElectionName: 'agentrun-operator.agents.applylens.io',
    });
    const exported = new Map(
      (await metrics.registry.getMetricsAsJSON()).map((m) => [m.name, String(m.type)]),
    );
    for (const [name, type] of Object.entries(METRICS)) {
      if (name === 'up') continue;
      expect(exported.get(name), name).toBe(type);
    }
    const text = await metrics.registry.metrics();
    expect(text).toContain('controller_runtime_reconcile_total{controller="agentrun"');
    expect(text).toContain('workqueue_depth{name="agentrun"');
    expect(text).toContain('agent_run_latency_ms_bucket{le="5000",agent="noop"}');
  });
});

describe('Service and ServiceMonitors', () => {
  const service = object('base/service.yaml');
  const monitor = object('base/servicemonitor.yaml');
  type Endpoint = Record<string, unknown> & { port: string };
  const servicePorts = (service.spec?.['ports'] ?? []) as { name: string; port: number }[];

  it('the Service selects the operator pods and exposes the port named metrics on 8080', () => {
    expect(service.metadata.name).toBe(JOB);
    expect(service.spec?.['selector']).toEqual({
      'app.kubernetes.io/name': 'agentrun-operator',
      'control-plane': 'controller-manager',
    });
    expect(servicePorts).toEqual([
      expect.objectContaining({ name: 'metrics', port: 8080, targetPort: 'metrics' }),
    ]);
  });

  it('the ServiceMonitor selects that Service, scrapes its metrics port and sets no jobLabel', () => {
    const { matchLabels: selector } = (monitor.spec?.['selector'] ?? { matchLabels: {} }) as {
      matchLabels: Record<string, string>;
    };
    expect(Object.keys(selector).length).toBeGreaterThan(0);
    expect(service.metadata.labels).toMatchObject(selector);
    expect(monitor.metadata.namespace).toBe(service.metadata.namespace);
    // No jobLabel: targets get job=<Service name>, what the rules and dashboard select.
    expect(monitor.spec?.['jobLabel']).toBeUndefined();
    expect(monitor.spec?.['namespaceSelector']).toBeUndefined();
    const endpoints = monitor.spec?.['endpoints'] as Endpoint[];
    expect(endpoints).toEqual([
      expect.objectContaining({ port: 'metrics', path: '/metrics', scheme: 'http' }),
    ]);
  });

  it('the secure variant scrapes over TLS with the Prometheus service-account token', () => {
    const patches = kustomization('secure').patches ?? [];
    const patchOf = (kind: string) =>
      parse(
        read(
          join(MONITORING, 'secure', patches.find((p) => p.target?.['kind'] === kind)?.path ?? ''),
        ),
      ) as { op: string; path: string; value: unknown }[];
    const [endpoint] = (patchOf('ServiceMonitor').find((op) => op.path === '/spec/endpoints')
      ?.value ?? []) as Endpoint[];
    expect(endpoint).toEqual({
      port: 'metrics',
      path: '/metrics',
      scheme: 'https',
      interval: '30s',
      scrapeTimeout: '10s',
      bearerTokenFile: '/var/run/secrets/kubernetes.io/serviceaccount/token',
      tlsConfig: { insecureSkipVerify: true },
    });
    expect(patchOf('Service')).toContainEqual({
      op: 'replace',
      path: '/spec/ports/0/port',
      value: 8443,
    });
    const role = parse(read(join(MONITORING, 'secure/metrics-reader-role.yaml')));
    expect(role.rules).toEqual([{ nonResourceURLs: ['/metrics'], verbs: ['get'] }]);
  });

  it('every file under deploy/monitoring is used by a kustomization (so the dry-run covers it)', () => {
    const used = new Set<string>([RULES_FILE]);
    for (const dir of ['.', 'base', 'secure']) {
      const k = kustomization(dir);
      used.add(join(MONITORING, dir, 'kustomization.yaml'));
      for (const file of [
        ...(k.resources ?? []),
        ...(k.patches ?? []).flatMap((p) => (p.path ? [p.path] : [])),
        ...(k.configMapGenerator ?? []).flatMap((g) => g.files ?? []),
      ]) {
        const path = join(MONITORING, dir, file);
        // A directory is a base (secure/ builds on ../base), checked through its own kustomization.
        if (!statSync(path).isDirectory()) used.add(path);
      }
    }
    const files = (dir: string): string[] =>
      readdirSync(dir).flatMap((name) => {
        const path = join(dir, name);
        return statSync(path).isDirectory() ? files(path) : [path];
      });
    const unused = files(MONITORING).filter((file) => !used.has(file));
    expect(unused.map((file) => relative(ROOT, file))).toEqual([]);
  });

  it('namespaced objects live in agentrun-system and carry the operator name label', () => {
    for (const file of [
      'base/service.yaml',
      'base/servicemonitor.yaml',
      'base/prometheusrule.yaml',
      'secure/metrics-reader-role.yaml',
      'secure/prometheus-metrics-reader-binding.yaml',
    ]) {
      const o = object(file);
      if (!o.kind.startsWith('Cluster')) expect(o.metadata.namespace, file).toBe('agentrun-system');
      expect(o.metadata.labels?.['app.kubernetes.io/name'], file).toBe('agentrun-operator');
    }
  });
});
