import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { GROUP, KIND } from '../../src/api/agentrun.ts';
import { withAudited } from '../../src/controller/run-status.ts';
import {
  agentRun,
  at,
  finished,
  retrying,
  running,
  SECOND,
  T0,
  TERMINAL_REASONS,
} from './controller/fixtures.ts';

/**
 * The Argo CD health check (deploy/gitops/argocd/health.lua) run by a real Lua interpreter
 * (Debian's lua5.4; Argo CD itself embeds gopher-lua, a Lua 5.1) against AgentRuns whose status
 * comes from the operator's own status builders, so the check follows what the operator writes.
 *
 * A small Lua harness loads the script once, runs it for each case with the global `obj` set
 * (as Argo CD does), compares the returned status and message, and prints one line per case.
 */

const ARGOCD = fileURLToPath(new URL('../../deploy/gitops/argocd/', import.meta.url));
const HEALTH_LUA = join(ARGOCD, 'health.lua');
const KEY = `resource.customizations.health.${GROUP}_${KIND}`;
const LUA = process.env['LUA'] ?? 'lua5.4';

const HARNESS = `
local script, casesFile = arg[1], arg[2]
local check = assert(loadfile(script))
local cases = dofile(casesFile)
local failures = 0
for _, case in ipairs(cases) do
  obj = case.obj
  local ok, hs = pcall(check)
  if not ok then
    failures = failures + 1
    print("not ok " .. case.name .. ": error: " .. tostring(hs))
  elseif type(hs) ~= "table" or hs.status ~= case.status or hs.message ~= case.message then
    failures = failures + 1
    local got = type(hs) == "table" and string.format("%s %q", tostring(hs.status), tostring(hs.message)) or tostring(hs)
    print(string.format("not ok %s: got %s, want %s %q", case.name, got, case.status, case.message))
  else
    print("ok " .. case.name)
  end
end
os.exit(failures == 0 and 0 or 1)
`;

/** A JSON value as a Lua literal (objects become tables with string keys, arrays sequences). */
function toLua(value: unknown): string {
  if (value === null || value === undefined) return 'nil';
  if (typeof value === 'string') return luaString(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `{${value.map(toLua).join(', ')}}`;
  if (typeof value === 'object') {
    const fields = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `[${luaString(k)}] = ${toLua(v)}`);
    return `{${fields.join(', ')}}`;
  }
  throw new Error(`no Lua literal for ${typeof value}`);
}

function luaString(s: string): string {
  let out = '"';
  for (const byte of Buffer.from(s, 'utf8')) {
    if (byte === 0x22) out += '\\"';
    else if (byte === 0x5c) out += '\\\\';
    else if (byte >= 0x20 && byte < 0x7f) out += String.fromCharCode(byte);
    else out += `\\${String(byte).padStart(3, '0')}`;
  }
  return `${out}"`;
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

function luaVersion(): string | undefined {
  const probe = spawnSync(LUA, ['-v'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) return undefined;
  return `${probe.stdout}${probe.stderr}`.trim();
}

const temp = mkdtempSync(join(tmpdir(), 'agentrun-argocd-health-'));
afterAll(() => rmSync(temp, { recursive: true, force: true }));

describe('Argo CD health check for AgentRun (deploy/gitops/argocd/health.lua)', () => {
  it(`runs under a real Lua interpreter (${LUA})`, () => {
    const version = luaVersion();
    if (!version) {
      throw new Error(
        `${LUA} not found: install the Lua interpreter (Debian/Ubuntu: apt-get install lua5.4), ` +
          'or point LUA at a Lua 5.1+ binary',
      );
    }
    expect(version).toMatch(/^Lua 5\.\d/);
  });

  it('maps the Succeeded condition to Argo CD health, for statuses the operator writes', () => {
    if (!luaVersion()) throw new Error(`${LUA} not found (see the previous test)`);
    const harness = join(temp, 'harness.lua');
    const cases = join(temp, 'cases.lua');
    writeFileSync(harness, HARNESS);
    writeFileSync(
      cases,
      `return {\n${CASES.map(
        (c) =>
          `  {name = ${luaString(c.name)}, status = ${luaString(c.status)}, message = ${luaString(
            c.message,
          )}, obj = ${toLua(c.obj)}},`,
      ).join('\n')}\n}\n`,
    );
    const result = spawnSync(LUA, [harness, HEALTH_LUA, cases], { encoding: 'utf8' });
    const output = `${result.stdout}${result.stderr}`;
    expect(result.status, output).toBe(0);
    // Every case ran and passed (a harness that stopped early would exit 0 with fewer lines).
    expect(result.stdout.trim().split('\n')).toEqual(CASES.map((c) => `ok ${c.name}`));
  });

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

  it('toLua writes JSON as Lua table literals', () => {
    expect(toLua({ a: [1, 'x', true], 'b-c': { d: null } })).toBe(
      '{["a"] = {1, "x", true}, ["b-c"] = {["d"] = nil}}',
    );
    expect(luaString('é"\\\n')).toBe('"\\195\\169\\"\\\\\\010"');
  });
});
