import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { GROUP, KIND } from '../../../src/api/agentrun.ts';
import { queuedStatus, withAudited } from '../../../src/controller/run-status.ts';
import { toolPath } from '../../support/tools.ts';
import {
  agentRun,
  at,
  finished,
  retrying,
  running,
  SECOND,
  T0,
  TERMINAL_REASONS,
  withStatus,
} from '../controller/fixtures.ts';

/**
 * The Argo CD health check (deploy/gitops/argocd/health.lua) run in Argo CD's own Lua VM
 * (hack/tools/argocd-lua: gopher-lua, a Lua 5.1, with only the libraries Argo CD opens for an
 * argocd-cm customization) against AgentRuns whose status comes from the operator's own status
 * builders, so the check follows what the operator writes.
 *
 * Each resource is evaluated as Argo CD evaluates it: the global `obj` set from its JSON, the
 * returned table read as {status, message}. One harness process evaluates a whole batch.
 */

const ARGOCD = fileURLToPath(new URL('../../../deploy/gitops/argocd/', import.meta.url));
const HEALTH_LUA = join(ARGOCD, 'health.lua');
const KEY = `resource.customizations.health.${GROUP}_${KIND}`;

/** What Argo CD makes of a health check's run: its health, or the error it reports. */
interface Health {
  readonly status?: string;
  readonly message?: string;
  readonly error?: string;
}

/** Runs `script` in Argo CD's VM once for each resource, in order, in one process. */
function argoHealth(script: string, resources: readonly unknown[]): Health[] {
  const harness = toolPath('ARGOCD_LUA');
  const run = spawnSync(harness, [script], { input: JSON.stringify(resources), encoding: 'utf8' });
  if (run.error || run.status !== 0) {
    throw new Error(
      `${harness} ${script} failed (exit ${run.status}): ${run.error?.message ?? run.stderr}`,
    );
  }
  const results = JSON.parse(run.stdout) as Health[];
  // A harness that stopped early must not pass for one that evaluated every resource.
  expect(results).toHaveLength(resources.length);
  return results;
}

interface Case {
  readonly name: string;
  /** The AgentRun as Argo CD sees it: plain JSON. */
  readonly obj: unknown;
  readonly status: 'Healthy' | 'Progressing' | 'Degraded' | 'Suspended';
  readonly message: string;
}

const json = (value: unknown): unknown => JSON.parse(JSON.stringify(value));

const base = agentRun({ spec: { backoffLimit: 1 } });
const started = running(base, 1, T0);

const CASES: Case[] = [
  {
    name: 'Pending: no status yet',
    obj: json(base),
    status: 'Progressing',
    message: 'Waiting for the operator to start the run',
  },
  {
    name: 'status without conditions',
    obj: json({ ...base, status: { observedGeneration: 3 } }),
    status: 'Progressing',
    message: 'Waiting for the operator to start the run',
  },
  {
    name: 'conditions without Succeeded',
    obj: json({
      ...base,
      status: {
        conditions: [
          {
            type: 'Ready',
            status: 'False',
            reason: 'Other',
            message: '',
            lastTransitionTime: T0.toISOString(),
          },
        ],
      },
    }),
    status: 'Progressing',
    message: 'Waiting for the operator to start the run',
  },
  {
    name: 'Pending, queued for a handler slot',
    obj: json(
      withStatus(
        base,
        queuedStatus(
          base,
          'waiting for a free handler slot: 10 of MAX_CONCURRENT_RUNS=10 in use',
          T0,
        ),
      ),
    ),
    status: 'Progressing',
    message: 'Queued: waiting for a free handler slot: 10 of MAX_CONCURRENT_RUNS=10 in use',
  },
  {
    name: 'Running',
    obj: json(started),
    status: 'Progressing',
    message: 'Running: attempt 1 of 2 running',
  },
  {
    name: 'Running, waiting to retry',
    obj: json(retrying(started, at(11 * SECOND), at(SECOND), 'connection refused')),
    status: 'Progressing',
    message: `Retrying: attempt 1 of 2 failed, retrying at ${at(11 * SECOND).toISOString()}: connection refused`,
  },
  {
    name: 'Succeeded',
    obj: json(finished(started, 'Succeeded', at(2 * SECOND), 'attempt 1 succeeded (dry run)')),
    status: 'Healthy',
    message: 'Succeeded: attempt 1 succeeded (dry run)',
  },
  {
    name: 'Failed',
    obj: json(finished(started, 'Failed', at(2 * SECOND), 'HTTP 503 from the status page')),
    status: 'Degraded',
    message: 'Failed: HTTP 503 from the status page',
  },
  {
    name: 'Canceled',
    obj: json(finished(started, 'Canceled', at(2 * SECOND), 'canceled while running')),
    status: 'Degraded',
    message: 'Canceled: canceled while running',
  },
  {
    name: 'Canceled before it started',
    obj: json(finished(base, 'Canceled', T0, 'canceled before it started')),
    status: 'Degraded',
    message: 'Canceled: canceled before it started',
  },
  (() => {
    // The Audited condition joins the list once the audit row is written; it does not matter.
    const done = finished(started, 'Succeeded', at(2 * SECOND), 'attempt 1 succeeded');
    const status = withAudited(
      done.status ?? {},
      done,
      'Recorded',
      'audit row written',
      at(3 * SECOND),
    );
    return {
      name: 'Succeeded and Audited',
      obj: json({ ...done, status }),
      status: 'Healthy',
      message: 'Succeeded: attempt 1 succeeded',
    } as const;
  })(),
  (() => {
    // spec.cancel set after the run finished: generation moves on, the finished run does not.
    const done = finished(started, 'Succeeded', at(2 * SECOND), 'attempt 1 succeeded');
    return {
      name: 'Succeeded, canceled afterwards (observedGeneration behind)',
      obj: json({ ...done, metadata: { ...done.metadata, generation: 4 } }),
      status: 'Healthy',
      message: 'Succeeded: attempt 1 succeeded',
    } as const;
  })(),
  ...TERMINAL_REASONS.map(
    (reason): Case => ({
      name: `terminal reason ${reason}`,
      obj: json(finished(started, reason, at(5 * SECOND))),
      status: reason === 'Succeeded' ? 'Healthy' : 'Degraded',
      message: `${reason}: ended: ${reason}`,
    }),
  ),
  {
    name: 'a message with quotes, backslashes, newlines and UTF-8',
    obj: json(finished(started, 'Failed', at(SECOND), 'bad "url" C:\\x\nnext line ✗')),
    status: 'Degraded',
    message: 'Failed: bad "url" C:\\x\nnext line ✗',
  },
];

const temp = mkdtempSync(join(tmpdir(), 'agentrun-argocd-health-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

describe('Argo CD health check for AgentRun (deploy/gitops/argocd/health.lua)', () => {
  // One harness run for every case, made by the first case that asks, so that each case fails
  // with the reason when the harness is missing.
  let results: Health[] | undefined;
  const resultOf = (index: number): Health | undefined => {
    results ??= argoHealth(
      HEALTH_LUA,
      CASES.map((c) => c.obj),
    );
    return results[index];
  };

  it("runs in Argo CD's VM: gopher-lua, the Lua of Argo CD 3.5", () => {
    const version = spawnSync(toolPath('ARGOCD_LUA'), ['-version'], { encoding: 'utf8' });
    expect(version.stdout.trim(), version.stderr).toMatch(/^argocd-lua \(gopher-lua v1\.1\.\d+\)$/);
  });

  it.each(CASES.map((c, index) => ({ ...c, index })))(
    'maps the Succeeded condition to Argo CD health: $name',
    ({ index, status, message }) => {
      expect(resultOf(index)).toEqual({ status, message });
    },
  );

  it('is plain Lua 5.1, as Argo CD (gopher-lua) runs it', () => {
    const code = readFileSync(HEALTH_LUA, 'utf8')
      .split('\n')
      .map((line) => line.replace(/--.*$/, '').replace(/"(?:[^"\\]|\\.)*"/g, '""'))
      .join('\n');
    for (const [what, pattern] of [
      ['goto', /\bgoto\b/],
      ['integer division //', /\/\//],
      ['bitwise operators', /[&|]|~(?!=)|<<|>>/],
      ['attributes <const>/<close>', /<\s*(const|close)\s*>/],
      ['the utf8 library', /\butf8\./],
      ['math.type, table.move, table.unpack', /\bmath\.type\b|\btable\.(move|unpack)\b/],
    ] as const) {
      expect(code, what).not.toMatch(pattern);
    }
  });
});

/**
 * Scripts stock Lua 5.3/5.4 runs but Argo CD does not: proof that the health check's cases above
 * run in Argo CD's VM and not merely in some Lua, so that a check relying on any of these fails
 * here rather than in a cluster.
 */
const STRICTER_THAN_STOCK_LUA: { name: string; script: string; want: Health }[] = [
  {
    name: 'integer division // (Lua 5.3) is a syntax error',
    script: 'return {status = "Healthy", message = tostring(7 // 2)}',
    want: { error: expect.stringContaining('syntax error') },
  },
  {
    name: 'the utf8 library (Lua 5.3) does not exist',
    script: 'return {status = "Healthy", message = utf8.char(72)}',
    want: { error: expect.stringContaining("non-table object(nil) with key 'char'") },
  },
  {
    name: 'the string library is not open (only with useOpenLibs, which argocd-cm.yaml does not set)',
    script: 'return {status = "Healthy", message = string.format("%d", 1)}',
    want: { error: expect.stringContaining("non-table object(nil) with key 'format'") },
  },
  {
    name: 'strings have no methods',
    script: 'return {status = "Healthy", message = ("run"):upper()}',
    want: { error: expect.stringContaining("non-table object(string) with key 'upper'") },
  },
  {
    name: 'no os global; require("os") gives only time and date',
    script:
      'local os2 = require("os")\n' +
      'return {status = "Healthy", message = type(os) .. " " .. type(os2.time) .. " " .. type(os2.date) .. " " .. type(os2.exit)}',
    want: { status: 'Healthy', message: 'nil function function nil' },
  },
  {
    name: 'a status that is no Argo CD health code is Unknown',
    script: 'return {status = "Fine", message = "all good"}',
    want: { status: 'Unknown', message: 'Lua returned an invalid health status' },
  },
  {
    name: 'a script must return a table',
    script: 'return "Healthy"',
    want: { error: 'expect table output from Lua script, not string' },
  },
];

describe("Argo CD's VM (hack/tools/argocd-lua) is stricter than stock Lua", () => {
  it.each(STRICTER_THAN_STOCK_LUA)('$name', ({ name, script, want }) => {
    const file = join(temp, `${name.replace(/\W+/g, '-')}.lua`);
    writeFileSync(file, script);
    expect(argoHealth(file, [json(base)])).toEqual([want]);
  });
});

describe('installing the health check', () => {
  const lua = readFileSync(HEALTH_LUA, 'utf8');

  it('argocd-cm.yaml carries health.lua verbatim under the resource.customizations key', () => {
    const cm = parse(readFileSync(join(ARGOCD, 'argocd-cm.yaml'), 'utf8')) as {
      kind: string;
      metadata: { name: string; namespace: string; labels: Record<string, string> };
      data: Record<string, string>;
    };
    expect(cm.kind).toBe('ConfigMap');
    expect(cm.metadata.name).toBe('argocd-cm');
    expect(cm.metadata.namespace).toBe('argocd');
    expect(cm.metadata.labels['app.kubernetes.io/part-of']).toBe('argocd');
    expect(Object.keys(cm.data)).toEqual([KEY]);
    expect(cm.data[KEY]).toBe(lua);
  });

  it('the kustomize component merges health.lua into argocd-cm under the same key', () => {
    const component = parse(readFileSync(join(ARGOCD, 'kustomization.yaml'), 'utf8')) as {
      kind: string;
      configMapGenerator: { name: string; behavior: string; files: string[] }[];
    };
    expect(component.kind).toBe('Component');
    expect(component.configMapGenerator).toEqual([
      { name: 'argocd-cm', behavior: 'merge', files: [`${KEY}=health.lua`] },
    ]);
  });
});
