import { describe, expect, it } from 'vitest';
import {
  AUDIT_ARTIFACTS_MAX_BYTES,
  type AuditRecord,
  type AuditStatus,
  COLUMN_MAX_LENGTH,
  cleanText,
  dedupeByRunId,
  JSON_MAX_DEPTH,
  JSON_PREVIEW_CHARS,
  jsonColumn,
  mergeRecords,
  type SanitisedRecord,
  sanitiseRecord,
  supersedes,
  toJsonSafe,
} from '../../../src/audit/audit-record.ts';
import { TRUNCATION_MARKER } from '../../../src/util/text.ts';

const T0 = new Date('2026-03-01T10:00:00.000Z');
const T1 = new Date('2026-03-01T10:00:01.250Z');

function record(overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    runId: '6f1c1a9e-0000-4000-8000-000000000001',
    namespace: 'agents',
    name: 'check-site',
    agent: 'http.check',
    objective: 'check the site answers',
    status: 'running',
    reason: 'Running',
    attempts: 1,
    startedAt: T0,
    finishedAt: null,
    durationMs: null,
    plan: { steps: ['check'] },
    artifacts: null,
    error: null,
    userEmail: 'ada@example.com',
    dryRun: true,
    ...overrides,
  };
}

function sanitised(overrides: Partial<AuditRecord> = {}): SanitisedRecord {
  const result = sanitiseRecord(record(overrides), { now: T1 });
  if (!result.ok) throw new Error(result.problem);
  return result.record;
}

describe('sanitiseRecord', () => {
  it('passes a clean record through, with plan and artifacts as jsonb text', () => {
    const { bytes, ...row } = sanitised({ status: 'succeeded', finishedAt: T1, durationMs: 1250 });
    expect(row).toStrictEqual({
      runId: '6f1c1a9e-0000-4000-8000-000000000001',
      namespace: 'agents',
      name: 'check-site',
      agent: 'http.check',
      objective: 'check the site answers',
      status: 'succeeded',
      reason: 'Running',
      attempts: 1,
      startedAt: T0,
      finishedAt: T1,
      durationMs: 1250,
      planJson: '{"steps":["check"]}',
      artifactsJson: null,
      error: null,
      userEmail: 'ada@example.com',
      dryRun: true,
    });
    expect(bytes).toBeGreaterThan(0);
  });

  it.each([
    ['an empty runId', { runId: '' }, /runId/],
    ['a runId over 128 characters', { runId: 'x'.repeat(129) }, /runId/],
    ['an unknown status', { status: 'done' as AuditStatus }, /status/],
  ])('refuses %s: there is no row it could go to', (_, overrides, problem) => {
    const result = sanitiseRecord(record(overrides));
    expect(result.ok).toBe(false);
    expect(result.ok ? '' : result.problem).toMatch(problem);
  });

  it('replaces U+0000 in every text column, which PostgreSQL text rejects', () => {
    const row = sanitised({
      objective: 'a\u0000b',
      error: '\u0000boom',
      agent: 'x\u0000',
      userEmail: 'u\u0000@x',
      reason: 'R\u0000',
      namespace: 'n\u0000',
      name: 'm\u0000',
    });
    expect(row.objective).toBe('a\uFFFDb');
    expect(row.error).toBe('\uFFFDboom');
    expect(row.agent).toBe('x\uFFFD');
    expect(row.userEmail).toBe('u\uFFFD@x');
    expect(row.reason).toBe('R\uFFFD');
    expect([row.namespace, row.name]).toEqual(['n\uFFFD', 'm\uFFFD']);
  });

  it('replaces lone surrogates and keeps valid pairs', () => {
    const row = sanitised({ objective: 'hi \uD800 there \uDC00 😀' });
    expect(row.objective).toBe('hi \uFFFD there \uFFFD 😀');
  });

  it('cuts each text column to its width, with a visible marker', () => {
    const row = sanitised({
      error: 'e'.repeat(5000),
      objective: 'o'.repeat(600),
      agent: 'a'.repeat(200),
      userEmail: 'u'.repeat(400),
      name: 'n'.repeat(300),
      namespace: 's'.repeat(100),
      reason: 'r'.repeat(200),
    });
    expect(row.error).toHaveLength(COLUMN_MAX_LENGTH.error);
    expect(row.error?.endsWith(TRUNCATION_MARKER)).toBe(true);
    expect(row.objective).toHaveLength(512);
    expect(row.agent).toHaveLength(128);
    expect(row.userEmail).toHaveLength(320);
    expect(row.name).toHaveLength(253);
    expect(row.namespace).toHaveLength(63);
    expect(row.reason).toHaveLength(128);
  });

  it('keeps text that exactly fits', () => {
    expect(sanitised({ error: 'e'.repeat(2048) }).error).toBe('e'.repeat(2048));
  });

  it('coerces attempts to a whole int4 and drops non-finite durations', () => {
    expect(sanitised({ attempts: 2.7 }).attempts).toBe(2);
    expect(sanitised({ attempts: -1 }).attempts).toBe(0);
    expect(sanitised({ attempts: Number.NaN }).attempts).toBe(0);
    expect(sanitised({ attempts: 1e12 }).attempts).toBe(2_147_483_647);
    expect(sanitised({ durationMs: Number.POSITIVE_INFINITY }).durationMs).toBeNull();
    expect(sanitised({ durationMs: Number.NaN }).durationMs).toBeNull();
    expect(sanitised({ durationMs: 0 }).durationMs).toBe(0);
  });

  it('never leaves started_at NULL: finishedAt, else the write time', () => {
    expect(sanitised({ startedAt: null, finishedAt: T1, status: 'failed' }).startedAt).toBe(T1);
    expect(sanitised({ startedAt: null }).startedAt).toBe(T1);
    expect(sanitised({ startedAt: new Date(Number.NaN) }).startedAt).toBe(T1);
    expect(sanitised({ finishedAt: new Date('nonsense') }).finishedAt).toBeNull();
  });

  it('treats only an explicit false as a real run', () => {
    expect(sanitised({ dryRun: false }).dryRun).toBe(false);
    expect(sanitised({ dryRun: undefined as unknown as boolean }).dryRun).toBe(true);
  });

  it('stores SQL-looking text as it is (it only ever travels as a parameter)', () => {
    const objective = "'); DROP TABLE agent_audit_log; --";
    expect(sanitised({ objective }).objective).toBe(objective);
  });
});

describe('sanitiseRecord: column widths count characters, as PostgreSQL does', () => {
  it('keeps a 512-emoji objective and a 320-character non-BMP requestedBy whole', () => {
    const objective = '😀'.repeat(COLUMN_MAX_LENGTH.objective);
    const userEmail = '𝒶'.repeat(COLUMN_MAX_LENGTH.userEmail);
    const row = sanitised({ objective, userEmail });
    expect(row.objective).toBe(objective);
    expect(row.userEmail).toBe(userEmail);
  });

  it('cuts a longer one to the column width in characters, never inside a pair', () => {
    const row = sanitised({ objective: '😀'.repeat(COLUMN_MAX_LENGTH.objective + 1) });
    expect([...row.objective]).toHaveLength(COLUMN_MAX_LENGTH.objective);
    expect(row.objective.endsWith(TRUNCATION_MARKER)).toBe(true);
    expect(row.objective.isWellFormed()).toBe(true);
  });
});

describe('cleanText', () => {
  it('leaves ordinary text alone (the same string, no copy)', () => {
    const text = 'plain ünïcödé 😀';
    expect(cleanText(text)).toBe(text);
  });
});

describe('jsonColumn', () => {
  it('is SQL NULL for null, undefined and values JSON cannot hold', () => {
    expect(jsonColumn(null)).toBeNull();
    expect(jsonColumn(undefined)).toBeNull();
    expect(jsonColumn(() => 1)).toBeNull();
  });

  it('cleans U+0000 and lone surrogates in keys and values', () => {
    const json = jsonColumn({ 'k\u0000ey': ['v\u0000', '\uD83D'], nested: { '\uDE00': 1 } });
    expect(JSON.parse(json ?? '')).toEqual({
      'k\uFFFDey': ['v\uFFFD', '\uFFFD'],
      nested: { '\uFFFD': 1 },
    });
    expect(json).not.toMatch(/\\u0000|\\ud8|\\ude/i);
  });

  it('replaces an oversized document with a marker holding its size and a preview', () => {
    const artifacts = { body: 'x'.repeat(1024 * 1024) };
    const json = jsonColumn(artifacts) ?? '';
    const marker = JSON.parse(json) as { _truncated: boolean; bytes: number; preview: string };
    expect(marker._truncated).toBe(true);
    expect(marker.bytes).toBe(Buffer.byteLength(JSON.stringify(artifacts)));
    expect(marker.preview).toBe(JSON.stringify(artifacts).slice(0, JSON_PREVIEW_CHARS));
    expect(Buffer.byteLength(json)).toBeLessThan(2 * JSON_PREVIEW_CHARS);
  });

  it('keeps a document of exactly the cap', () => {
    const overhead = JSON.stringify({ s: '' }).length;
    const exact = { s: 'x'.repeat(AUDIT_ARTIFACTS_MAX_BYTES - overhead) };
    expect(jsonColumn(exact)).toBe(JSON.stringify(exact));
    const over = { s: 'x'.repeat(AUDIT_ARTIFACTS_MAX_BYTES - overhead + 1) };
    expect(jsonColumn(over)).toMatch(/^\{"_truncated":true/);
  });

  it('counts the cap in UTF-8 bytes, and never cuts the preview inside a character pair', () => {
    const json = jsonColumn({ s: '😀'.repeat(600) }, 1000) ?? '';
    const marker = JSON.parse(json) as { bytes: number; preview: string };
    expect(marker.bytes).toBe(Buffer.byteLength(JSON.stringify({ s: '😀'.repeat(600) })));
    expect(marker.preview.isWellFormed()).toBe(true);
  });
});

describe('toJsonSafe', () => {
  it('keeps a "__proto__" key as a key, as JSON.parse and the status do', () => {
    const artifacts = JSON.parse('{"__proto__":{"admin":true},"ok":1}');
    expect(JSON.stringify(toJsonSafe(artifacts))).toBe('{"__proto__":{"admin":true},"ok":1}');
    expect(jsonColumn(artifacts)).toBe(JSON.stringify(artifacts));
  });

  it('follows JSON.stringify for ordinary values', () => {
    const value = {
      a: 1,
      b: 'two',
      c: [true, null, undefined, () => 1],
      d: undefined,
      e: new Date(T0),
      f: Number.NaN,
    };
    expect(JSON.stringify(toJsonSafe(value))).toBe(JSON.stringify(value));
  });

  it('turns bigints into strings and cycles into a marker instead of throwing', () => {
    const cyclic: Record<string, unknown> = { n: 10n };
    cyclic['self'] = cyclic;
    expect(toJsonSafe(cyclic)).toEqual({ n: '10', self: '[Circular]' });
  });

  it('keeps a shared (non-cyclic) object in both places', () => {
    const shared = { x: 1 };
    expect(toJsonSafe({ a: shared, b: shared })).toEqual({ a: { x: 1 }, b: { x: 1 } });
  });

  it('caps nesting depth', () => {
    let deep: unknown = 'leaf';
    for (let i = 0; i < JSON_MAX_DEPTH + 10; i++) deep = [deep];
    const json = JSON.stringify(toJsonSafe(deep));
    expect(json).toContain('[Nested too deep]');
    expect(json).not.toContain('leaf');
  });

  it('survives a throwing toJSON', () => {
    const bad = {
      toJSON() {
        throw new Error('no');
      },
    };
    expect(toJsonSafe({ bad })).toEqual({ bad: '[toJSON failed]' });
  });
});

describe('supersedes and dedupeByRunId', () => {
  const running = (attempts: number) => ({ status: 'running' as const, attempts });
  const done = (status: AuditStatus, attempts: number) => ({ status, attempts });

  it.each([
    ['terminal over running', done('succeeded', 1), running(1), true],
    ['running never over terminal', running(5), done('failed', 1), false],
    ['more attempts over fewer (running)', running(2), running(1), true],
    ['fewer attempts never over more (running)', running(1), running(2), false],
    ['more attempts over fewer (terminal)', done('failed', 3), done('failed', 2), true],
    ['newer on a tie', done('canceled', 1), done('failed', 1), true],
  ])('%s', (_, next, current, expected) => {
    expect(supersedes(next, current)).toBe(expected);
  });

  const row = (runId: string, tag: string, overrides: Partial<AuditRecord> = {}) =>
    sanitised({ runId, objective: tag, ...overrides });
  const finishedRow = (runId: string, tag: string, overrides: Partial<AuditRecord> = {}) =>
    row(runId, tag, { status: 'succeeded', finishedAt: T1, ...overrides });

  it('keeps one record per run, the most advanced, in order of first appearance', () => {
    const rows = [
      row('a', 'a-start'),
      row('b', 'b-start'),
      finishedRow('a', 'a-finish'),
      row('a', 'a-replayed-start'),
      row('c', 'c-retry', { attempts: 2 }),
      row('c', 'c-old-start'),
      row('b', 'b-start-again'),
    ];
    expect(dedupeByRunId(rows).map((r) => r.objective)).toEqual([
      'a-finish',
      'b-start-again',
      'c-retry',
    ]);
  });

  it('completes a finish from the start it replaces, as the upsert does in the table', () => {
    const start = row('a', 'start', { startedAt: T0, attempts: 2 });
    const finish = finishedRow('a', 'finish', {
      startedAt: null, // falls back to finishedAt (T1), later than the real start
      plan: null,
      userEmail: null,
      attempts: 0,
      artifacts: { ok: true },
    });
    const [merged] = dedupeByRunId([start, finish]);
    expect(merged).toMatchObject({
      objective: 'finish',
      status: 'succeeded',
      startedAt: T0,
      attempts: 2,
      planJson: '{"steps":["check"]}',
      userEmail: 'ada@example.com',
      artifactsJson: '{"ok":true}',
    });
    expect(merged?.bytes).toBeGreaterThan(finish.bytes);
    expect(mergeRecords(finish, start)).toBe(finish);
  });

  it('gives a never-started run the later finish as its start, as the upsert does', () => {
    const later = new Date(T1.getTime() + 2_400);
    const never = { status: 'canceled', attempts: 0, startedAt: null } as const;
    const first = finishedRow('a', 'first', never);
    const again = finishedRow('a', 'again', { ...never, finishedAt: later });
    expect(dedupeByRunId([first, again])[0]).toMatchObject({ startedAt: later, finishedAt: later });
  });

  it('returns an empty list for no records', () => {
    expect(dedupeByRunId([])).toEqual([]);
  });
});
