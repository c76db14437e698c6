import { describe, expect, it } from 'vitest';
import type { AuditEntry, AuditSummary } from '../../../src/audit/audit-store.ts';
import { durationText, renderRun, renderRuns } from '../../../src/cli/runs-view.ts';
import {
  cell,
  formatKeyValues,
  formatTable,
  formatTime,
  safeLine,
  toJson,
} from '../../../src/cli/table.ts';

describe('formatTable', () => {
  it('pads columns to the widest cell, three spaces apart, with no trailing spaces', () => {
    expect(
      formatTable(
        ['NAME', 'AGENT', 'USER'],
        [
          ['hello', 'noop', 'alice@example.com'],
          ['a-much-longer-name', 'http.check', null],
        ],
      ),
    ).toBe(
      [
        'NAME                 AGENT        USER',
        'hello                noop         alice@example.com',
        'a-much-longer-name   http.check   <none>',
        '',
      ].join('\n'),
    );
  });

  it('prints only the header for no rows', () => {
    expect(formatTable(['A', 'B'], [])).toBe('A   B\n');
  });

  it('counts code points, not UTF-16 units, as kubectl counts runes', () => {
    expect(
      formatTable(
        ['N', 'X'],
        [
          ['😀', 'y'],
          ['ab', 'z'],
        ],
      ),
    ).toBe('N    X\n😀    y\nab   z\n');
  });

  it('keeps every row on one line and control characters away from the terminal', () => {
    const out = formatTable(['A', 'B'], [['x\ny\tz', 'evil\u001b[2J\u202etxt']]);
    expect(out).toBe('A       B\nx y z   evil\uFFFD[2J\uFFFDtxt\n');
  });
});

describe('cells and values', () => {
  it('empty values are <none>; numbers and booleans print as text', () => {
    expect(cell(null)).toBe('<none>');
    expect(cell(undefined)).toBe('<none>');
    expect(cell('')).toBe('<none>');
    expect(cell(0)).toBe('0');
    expect(cell(false)).toBe('false');
  });

  it('safeLine replaces C0, DEL, C1 and bidi controls', () => {
    expect(safeLine('a\u0000b\u007fc\u009bd\u2066e\r\nf')).toBe('a\uFFFDb\uFFFDc\uFFFDd\uFFFDe  f');
    expect(safeLine('plain text ü 日本')).toBe('plain text ü 日本');
  });

  it('formatTime is RFC 3339 in UTC to the second', () => {
    expect(formatTime(new Date('2025-01-31T09:30:00.789+01:00'))).toBe('2025-01-31T08:30:00Z');
    expect(formatTime(null)).toBe('<none>');
    expect(formatTime(new Date(Number.NaN))).toBe('<none>');
  });

  it('durationText prints like kubectl get agentruns', () => {
    expect(durationText(534)).toBe('534ms');
    expect(durationText(1250)).toBe('1.25s');
    expect(durationText(65_000)).toBe('1m5s');
    expect(durationText(3_723_000)).toBe('1h2m3s');
    expect(durationText(null)).toBe('<none>');
    expect(durationText(-1)).toBe('<none>');
  });

  it('toJson indents, and escapes C1 and bidi controls that JSON.stringify leaves raw', () => {
    const out = toJson({ a: 'x\u009b\u202ey\u001b', n: [1] });
    expect(out).toBe('{\n  "a": "x\\u009b\\u202ey\\u001b",\n  "n": [\n    1\n  ]\n}\n');
    expect(JSON.parse(out)).toEqual({ a: 'x\u009b\u202ey\u001b', n: [1] });
  });
});

describe('formatKeyValues', () => {
  it('aligns values after the labels; multi-line values go under their label, indented', () => {
    expect(
      formatKeyValues([
        ['Name', 'hello'],
        ['Error', 'first\nsecond'],
        ['Dry Run', true],
        ['User', null],
      ]),
    ).toBe(
      [
        'Name:      hello',
        'Error:',
        '  first',
        '  second',
        'Dry Run:   true',
        'User:      <none>',
        '',
      ].join('\n'),
    );
  });
});

const started = new Date('2025-01-31T10:00:00Z');
const summary: AuditSummary = {
  id: 7,
  runId: '139b4c42-10d5-4a89-88d1-8d97c6f1387f',
  namespace: 'team-a',
  name: 'hello',
  agent: 'noop',
  objective: 'say hello',
  status: 'succeeded',
  reason: 'Succeeded',
  attempts: 1,
  startedAt: started,
  finishedAt: new Date(started.getTime() + 534),
  durationMs: 534,
  error: null,
  userEmail: 'alice@example.com',
  dryRun: true,
  createdAt: started,
  updatedAt: started,
};
const running: AuditSummary = {
  ...summary,
  id: 8,
  runId: 'r2',
  name: 'slow',
  status: 'running',
  reason: null,
  finishedAt: null,
  durationMs: null,
  userEmail: null,
};

describe('renderRuns', () => {
  it('a kubectl-style table with the audit columns', () => {
    expect(renderRuns([summary, running], 'table')).toBe(
      [
        'RUN-ID                                 NAMESPACE   NAME    AGENT   STATUS      REASON      STARTED                DURATION   USER',
        '139b4c42-10d5-4a89-88d1-8d97c6f1387f   team-a      hello   noop    succeeded   Succeeded   2025-01-31T10:00:00Z   534ms      alice@example.com',
        'r2                                     team-a      slow    noop    running     <none>      2025-01-31T10:00:00Z   <none>     <none>',
        '',
      ].join('\n'),
    );
  });

  it('without the NAMESPACE column for one namespace', () => {
    const [header, row] = renderRuns([summary], 'table', { namespaceColumn: false }).split('\n');
    expect(header?.split(/\s{2,}/)).toEqual([
      'RUN-ID',
      'NAME',
      'AGENT',
      'STATUS',
      'REASON',
      'STARTED',
      'DURATION',
      'USER',
    ]);
    expect(row).not.toContain('team-a');
  });

  it('json: an array of the rows, times as ISO strings', () => {
    const parsed = JSON.parse(renderRuns([summary], 'json'));
    expect(parsed).toEqual([
      {
        ...summary,
        startedAt: '2025-01-31T10:00:00.000Z',
        finishedAt: '2025-01-31T10:00:00.534Z',
        createdAt: '2025-01-31T10:00:00.000Z',
        updatedAt: '2025-01-31T10:00:00.000Z',
      },
    ]);
    expect(JSON.parse(renderRuns([], 'json'))).toEqual([]);
  });
});

describe('renderRun', () => {
  const entry: AuditEntry = {
    ...summary,
    status: 'failed',
    reason: 'Failed',
    error: 'boom',
    plan: { steps: ['a'] },
    artifacts: null,
  };

  it('a describe-style view with every column; plan and artifacts as indented JSON', () => {
    const out = renderRun(entry, 'table');
    expect(out.split('\n')).toEqual([
      'Run ID:      139b4c42-10d5-4a89-88d1-8d97c6f1387f',
      'Namespace:   team-a',
      'Name:        hello',
      'Agent:       noop',
      'Objective:   say hello',
      'Status:      failed',
      'Reason:      Failed',
      'Attempts:    1',
      'Dry Run:     true',
      'User:        alice@example.com',
      'Started:     2025-01-31T10:00:00Z',
      'Finished:    2025-01-31T10:00:00Z',
      'Duration:    534ms',
      'Error:       boom',
      'Created:     2025-01-31T10:00:00Z',
      'Updated:     2025-01-31T10:00:00Z',
      'Plan:',
      '  {',
      '    "steps": [',
      '      "a"',
      '    ]',
      '  }',
      'Artifacts:   <none>',
      '',
    ]);
  });

  it('json: the whole row, plan and artifacts included', () => {
    expect(JSON.parse(renderRun(entry, 'json'))).toMatchObject({
      runId: summary.runId,
      plan: { steps: ['a'] },
      artifacts: null,
      error: 'boom',
    });
  });
});
