import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import type { AuditRecord, SanitisedRecord } from '../../../src/audit/audit-record.ts';
import { type AuditMetrics, AuditWriter, type RowWriter } from '../../../src/audit/audit-writer.ts';
import { silentLogger } from '../../../src/util/log.ts';

/**
 * The writer's queue logic against an in-memory RowWriter (the PostgreSQL side is tested in
 * test/integration/audit/audit-writer.test.ts). Each statement takes one turn of the event loop.
 */
class MemoryRows implements RowWriter {
  readonly rows = new Map<string, SanitisedRecord>();
  readonly statements: string[][] = [];
  /** Makes the next statements fail with this, while `failures` > 0. */
  failures = 0;
  failWith: unknown = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  /** Rows the "database" refuses whatever happens (a data error, SQLSTATE 22P05). */
  readonly poison = new Set<string>();
  /** Set to hold statements until released. */
  gate: Promise<void> | undefined;

  async upsertRows(rows: readonly SanitisedRecord[]): Promise<void> {
    this.statements.push(rows.map((r) => r.runId));
    await nextTurn();
    if (this.gate) await this.gate;
    if (this.failures > 0) {
      this.failures -= 1;
      throw this.failWith;
    }
    if (rows.some((r) => this.poison.has(r.runId))) {
      throw Object.assign(new Error('character has no equivalent'), { code: '22P05' });
    }
    for (const row of rows) this.rows.set(row.runId, row);
  }
}

class CountingMetrics implements AuditMetrics {
  success = 0;
  error = 0;
  latencies = 0;
  lastPending = -1;
  written(result: 'success' | 'error', rows: number): void {
    this[result] += rows;
  }
  latency(): void {
    this.latencies += 1;
  }
  pending(n: number): void {
    this.lastPending = n;
  }
  lost(): void {}
}

function record(runId: string, overrides: Partial<AuditRecord> = {}): AuditRecord {
  return {
    runId,
    namespace: 'agents',
    name: runId,
    agent: 'noop',
    objective: 'say hello',
    status: 'running',
    reason: 'Running',
    attempts: 1,
    startedAt: new Date('2026-03-01T10:00:00Z'),
    finishedAt: null,
    durationMs: null,
    plan: null,
    artifacts: null,
    error: null,
    userEmail: null,
    dryRun: true,
    ...overrides,
  };
}

const finished = (runId: string, overrides: Partial<AuditRecord> = {}) =>
  record(runId, {
    status: 'succeeded',
    reason: 'Succeeded',
    finishedAt: new Date('2026-03-01T10:00:01Z'),
    durationMs: 1000,
    ...overrides,
  });

function writer(
  store: RowWriter,
  options: Partial<ConstructorParameters<typeof AuditWriter>[0]> = {},
) {
  return new AuditWriter({
    store,
    logger: silentLogger(),
    retryBaseMs: 5,
    retryMaxMs: 40,
    random: () => 1,
    ...options,
  });
}

describe('AuditWriter', () => {
  it('writes at once when idle and resolves true on commit', async () => {
    const store = new MemoryRows();
    const w = writer(store);
    const committed = w.write(record('a'));
    expect(w.isPending('a')).toBe(true);
    expect(w.pending()).toBe(1);
    await expect(committed).resolves.toBe(true);
    expect(store.statements).toEqual([['a']]);
    expect(w.isPending('a')).toBe(false);
    expect(w.pending()).toBe(0);
  });

  it('coalesces a burst into statements of at most batchSize rows', async () => {
    const store = new MemoryRows();
    const metrics = new CountingMetrics();
    const w = writer(store, { batchSize: 500, metrics });
    const writes = Array.from({ length: 1200 }, (_, i) => w.write(record(`r${i}`)));
    expect(await Promise.all(writes)).toEqual(writes.map(() => true));
    expect(store.statements.map((s) => s.length)).toEqual([500, 500, 200]);
    expect(store.rows.size).toBe(1200);
    expect(metrics).toMatchObject({ success: 1200, error: 0, latencies: 3, lastPending: 0 });
  });

  it('lets rows that arrive during a statement ride the next one', async () => {
    const store = new MemoryRows();
    const w = writer(store);
    const first = w.write(record('a'));
    await nextTurn(); // the statement for "a" has started
    const later = [w.write(record('b')), w.write(record('c'))];
    await Promise.all([first, ...later]);
    expect(store.statements).toEqual([['a'], ['b', 'c']]);
  });

  it('keeps one queued row per run: the newest, unless the queued one is further along', async () => {
    const store = new MemoryRows();
    const w = writer(store);
    const writes = [
      w.write(record('a')),
      w.write(finished('a')),
      w.write(record('a')), // a replayed start: must not undo the finish
      w.write(record('b')),
      w.write(record('b', { attempts: 2 })),
    ];
    expect(w.pending()).toBe(2);
    expect(await Promise.all(writes)).toEqual([true, true, true, true, true]);
    expect(store.statements).toEqual([['a', 'b']]);
    expect(store.rows.get('a')?.status).toBe('succeeded');
    expect(store.rows.get('b')?.attempts).toBe(2);
  });

  it('refuses new runs when the row bound is reached, but still takes newer records of queued runs', async () => {
    const store = new MemoryRows();
    const w = writer(store, { maxPendingRows: 2 });
    const a = w.write(record('a'));
    const b = w.write(record('b'));
    await expect(w.write(record('c'))).resolves.toBe(false);
    const aDone = w.write(finished('a'));
    expect(await Promise.all([a, b, aDone])).toEqual([true, true, true]);
    expect(store.rows.get('a')?.status).toBe('succeeded');
    await expect(w.write(record('c'))).resolves.toBe(true);
  });

  it('takes a newer record of a run whose statement is in flight, even when full', async () => {
    const store = new MemoryRows();
    let release = (): void => {};
    store.gate = new Promise((resolve) => {
      release = resolve;
    });
    const w = writer(store, { maxPendingRows: 1 });
    const start = w.write(record('a'));
    await nextTurn(); // "a" is in flight
    await expect(w.write(record('b'))).resolves.toBe(false);
    const finish = w.write(finished('a'));
    store.gate = undefined;
    release();
    expect(await Promise.all([start, finish])).toEqual([true, true]);
    expect(store.rows.get('a')?.status).toBe('succeeded');
  });

  it('refuses new runs when the byte bound is reached', async () => {
    const store = new MemoryRows();
    const w = writer(store, { maxPendingBytes: 20_000 });
    const big = { text: 'x'.repeat(6_000) };
    const a = w.write(record('a', { plan: big }));
    await expect(w.write(record('b', { plan: big }))).resolves.toBe(false);
    await expect(a).resolves.toBe(true);
  });

  it('refuses records without a usable key or status', async () => {
    const w = writer(new MemoryRows());
    await expect(w.write(record(''))).resolves.toBe(false);
    await expect(w.write(record('x', { status: 'done' as 'running' }))).resolves.toBe(false);
    expect(w.pending()).toBe(0);
  });

  it('survives records whose data throws when read, and metrics that throw', async () => {
    const store = new MemoryRows();
    const throwing: AuditMetrics = {
      written() {
        throw new Error('metrics down');
      },
      latency() {
        throw new Error('metrics down');
      },
      pending() {
        throw new Error('metrics down');
      },
      lost() {
        throw new Error('metrics down');
      },
    };
    const w = writer(store, { metrics: throwing });
    const hostile = {
      get boom(): unknown {
        throw new Error('getter');
      },
    };
    await expect(w.write(record('a', { artifacts: hostile }))).resolves.toBe(false);
    await expect(w.write(record('b'))).resolves.toBe(true);
  });

  it('retries a failing statement with growing backoff until it commits', async () => {
    const store = new MemoryRows();
    const metrics = new CountingMetrics();
    const w = writer(store, { metrics });
    store.failures = 3;
    const started = performance.now();
    await expect(w.write(record('a'))).resolves.toBe(true);
    // 5 + 10 + 20 ms of backoff (random() = 1 takes the full ceiling).
    expect(performance.now() - started).toBeGreaterThanOrEqual(25);
    expect(store.statements).toEqual([['a'], ['a'], ['a'], ['a']]);
    expect(metrics).toMatchObject({ success: 1, error: 3 });
  });

  it('never rejects, whatever the store throws', async () => {
    const store = new MemoryRows();
    store.failures = 2;
    store.failWith = 'not even an Error';
    const w = writer(store);
    await expect(w.write(record('a'))).resolves.toBe(true);
  });

  it('reports a failed statement to listeners at once and is failing until a commit', async () => {
    const store = new MemoryRows();
    store.failures = 2;
    // A backoff long enough that the retry cannot come before the test looks.
    const w = writer(store, { retryBaseMs: 100, retryMaxMs: 200 });
    let told = 0;
    const stillListening = () => {
      told += 1;
    };
    w.onFailure(stillListening);
    const unsubscribed = w.onFailure(() => {
      throw new Error('a listener that must not break the writer');
    });
    const gone = w.onFailure(() => {
      told += 100;
    });
    gone();
    expect(w.failing()).toBe(false);
    const committed = w.write(record('a'));
    let commitDone = false;
    void committed.then(() => {
      commitDone = true;
    });
    while (told === 0) await nextTurn();
    // Told at the first failure, while the row still waits for its retry.
    expect([told, commitDone, w.failing()]).toEqual([1, false, true]);
    await expect(committed).resolves.toBe(true);
    // Listeners are called once: the second failure found none.
    expect(told).toBe(1);
    expect(w.failing()).toBe(false);
    unsubscribed();
  });

  it('does not call listeners for a row the database refuses on its data', async () => {
    const store = new MemoryRows();
    store.poison.add('bad');
    const w = writer(store);
    let told = false;
    const unsubscribe = w.onFailure(() => {
      told = true;
    });
    await expect(w.write(record('bad'))).resolves.toBe(false);
    expect([told, w.failing()]).toEqual([false, false]);
    unsubscribe();
  });

  it('merges a record that arrived during a failed statement with the one it retries', async () => {
    const store = new MemoryRows();
    store.failures = 1;
    const w = writer(store);
    const start = w.write(record('a'));
    await nextTurn(); // statement 1 (fails) is in flight
    const finish = w.write(finished('a'));
    expect(w.pending()).toBe(2);
    expect(await Promise.all([start, finish])).toEqual([true, true]);
    expect(store.statements).toEqual([['a'], ['a']]);
    expect(store.rows.get('a')?.status).toBe('succeeded');
  });

  it('keeps the retried row when it is further along than the one that arrived meanwhile', async () => {
    const store = new MemoryRows();
    store.failures = 1;
    const w = writer(store);
    const finish = w.write(finished('a'));
    await nextTurn();
    const replayedStart = w.write(record('a'));
    expect(await Promise.all([finish, replayedStart])).toEqual([true, true]);
    expect(store.rows.get('a')?.status).toBe('succeeded');
  });

  it('isolates a row the database refuses, gives up only that row and writes the rest', async () => {
    const store = new MemoryRows();
    store.poison.add('r3');
    const metrics = new CountingMetrics();
    const w = writer(store, { metrics });
    const writes = Array.from({ length: 8 }, (_, i) => w.write(record(`r${i}`)));
    expect(await Promise.all(writes)).toEqual([true, true, true, false, true, true, true, true]);
    expect([...store.rows.keys()].sort()).toEqual(['r0', 'r1', 'r2', 'r4', 'r5', 'r6', 'r7']);
    expect(metrics.success).toBe(7);
    expect(w.pending()).toBe(0);
  });

  it('flush resolves true once drained, false on timeout; a waiting retry starts at once', async () => {
    const store = new MemoryRows();
    const w = writer(store, { retryBaseMs: 60_000, retryMaxMs: 60_000 });
    await expect(w.flush(10)).resolves.toBe(true);
    store.failures = 1;
    const committed = w.write(record('a'));
    // Failed once, now waiting a minute (polled: a busy machine may take a while to get there).
    await expect.poll(() => w.failing()).toBe(true);
    expect(store.statements).toHaveLength(1);
    await expect(w.flush(1_000)).resolves.toBe(true);
    await expect(committed).resolves.toBe(true);

    store.failures = 100;
    void w.write(record('b'));
    await expect(w.flush(30)).resolves.toBe(false);
    await w.stop(0);
  });

  it('stop drains what it can, then resolves the rest false and refuses new writes', async () => {
    const store = new MemoryRows();
    const w = writer(store);
    await expect(w.write(record('a'))).resolves.toBe(true);
    store.failures = Number.POSITIVE_INFINITY;
    const stuck = w.write(record('b'));
    await expect(w.stop(50)).resolves.toEqual({ unwritten: 1 });
    await expect(stuck).resolves.toBe(false);
    await expect(w.write(record('c'))).resolves.toBe(false);
    expect(w.pending()).toBe(0);
    const statements = store.statements.length;
    await sleep(100);
    expect(store.statements).toHaveLength(statements);
  });

  it('stop waits for a healthy queue to drain', async () => {
    const store = new MemoryRows();
    const w = writer(store);
    const writes = Array.from({ length: 50 }, (_, i) => w.write(record(`r${i}`)));
    await expect(w.stop(1_000)).resolves.toEqual({ unwritten: 0 });
    expect(await Promise.all(writes)).toEqual(writes.map(() => true));
  });

  it('does not count a statement that outlives stop twice', async () => {
    const store = new MemoryRows();
    let release = (): void => {};
    store.gate = new Promise((resolve) => {
      release = resolve;
    });
    const metrics = new CountingMetrics();
    const w = writer(store, { metrics });
    const a = w.write(record('a'));
    await nextTurn();
    await expect(w.stop(10)).resolves.toEqual({ unwritten: 1 });
    await expect(a).resolves.toBe(false);
    release();
    await sleep(10);
    expect(w.pending()).toBe(0);
    expect(metrics.lastPending).toBe(0);
  });
});
