import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { toolPath } from '../../support/tools.ts';

/**
 * The alerting rules through Prometheus's own tool: `promtool check rules` on the plain rule file
 * and on the PrometheusRule's spec, and `promtool test rules` on test/prometheus/*.test.yaml
 * (a firing and a non-firing case for every alert; test/unit/monitoring/monitoring-manifests.test.ts
 * checks that every alert has both).
 */

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const RULES_FILE = join(ROOT, 'deploy/monitoring/rules/agentrun.rules.yaml');
const PROMETHEUS_RULE_FILE = join(ROOT, 'deploy/monitoring/base/prometheusrule.yaml');
const TESTS_DIR = join(ROOT, 'test/prometheus');
/** Resolved in beforeAll, so that a missing promtool fails the tests with its reason. */
let PROMTOOL = '';

interface Result {
  code: number;
  output: string;
}

/** Runs promtool from the repository root; resolves with its exit code and output, never throws. */
function promtool(...args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(PROMTOOL, args, { cwd: ROOT }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, output: `${stdout}${stderr}${error && code === -1 ? error.message : ''}` });
    });
  });
}

let temp = '';

beforeAll(async () => {
  PROMTOOL = toolPath('PROMTOOL');
  const version = await promtool('--version');
  if (version.code !== 0) {
    throw new Error(
      `promtool is needed to test the alerting rules but "${PROMTOOL} --version" failed:\n` +
        `${version.output}\nRebuild it with 'make tools'.`,
    );
  }
  temp = mkdtempSync(join(tmpdir(), 'agentrun-promtool-'));
});

afterAll(() => {
  if (temp) rmSync(temp, { recursive: true, force: true });
});

const testFiles = readdirSync(TESTS_DIR)
  .filter((name) => name.endsWith('.test.yaml'))
  .sort()
  .map((name) => join('test/prometheus', name));

describe('promtool', () => {
  it('check rules accepts the plain rule file, lint problems included', async () => {
    const { code, output } = await promtool('check', 'rules', '--lint-fatal', RULES_FILE);
    expect(output).toMatch(/SUCCESS: \d+ rules found/);
    expect(code, output).toBe(0);
  });

  it("check rules accepts the PrometheusRule's spec.groups (what Prometheus Operator loads)", async () => {
    const rule = parse(readFileSync(PROMETHEUS_RULE_FILE, 'utf8')) as { spec: unknown };
    const extracted = join(temp, 'prometheusrule.rules.yaml');
    writeFileSync(extracted, stringify(rule.spec));
    const { code, output } = await promtool('check', 'rules', '--lint-fatal', extracted);
    expect(code, output).toBe(0);
  });

  it.each(testFiles)('test rules %s passes', async (file) => {
    const { code, output } = await promtool('test', 'rules', file);
    expect(code, output).toBe(0);
    expect(output).toContain('SUCCESS');
  });

  it('test rules fails when an expectation is wrong (the harness is not vacuous)', async () => {
    const wrong = join(temp, 'wrong.test.yaml');
    writeFileSync(
      wrong,
      stringify({
        rule_files: [RULES_FILE],
        evaluation_interval: '1m',
        tests: [
          {
            interval: '1m',
            input_series: [{ series: 'up{job="agentrun-operator-metrics"}', values: '1x20' }],
            alert_rule_test: [
              {
                eval_time: '10m',
                alertname: 'AgentRunOperatorDown',
                exp_alerts: [
                  { exp_labels: { severity: 'critical', job: 'agentrun-operator-metrics' } },
                ],
              },
            ],
          },
        ],
      }),
    );
    const { code, output } = await promtool('test', 'rules', wrong);
    expect(code).not.toBe(0);
    expect(output).toContain('FAILED');
  });
});
