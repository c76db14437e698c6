import { setTimeout as sleep } from 'node:timers/promises';
import { CoreV1Api, CustomObjectsApi } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentRun, GROUP, PLURAL, VERSION } from '../../src/api/agentrun.ts';
import { AgentRuns, type Recording } from '../support/agentruns.ts';
import { createNamespace } from '../support/kube.ts';
import {
  type AuditRow,
  audited,
  FaultEnvironment,
  isTerminal,
  writeScenarioBlock,
} from './support/harness.ts';
import { compare, MEMORY_LIMIT_MIB } from './support/invariants.ts';

/**
 * Scenario 6 of issue 15: runs deleted while pending (not started), while running, and while
 * finished with their audit row still queued (PostgreSQL stopped); and a namespace deleted with
 * runs in it. The test control plane has no namespace controller, so the test does its part:
 * after the namespace is deleted it deletes the AgentRuns in it, as that controller would.
 */
const RUNS = Number(process.env['FAULT_RUNS'] ?? 300);
const IN_DOOMED_NAMESPACE = 40;
const BOUND_MS = 120_000;
const PER_STAGE = 20;

let env: FaultEnvironment;

beforeAll(async () => {
  // All namespaces: the doomed one too.
  env = await FaultEnvironment.start('deletes', { WATCH_NAMESPACE: '' });
});

afterAll(async () => {
  await env?.stop();
});

/** The last version of each run a watch delivered (for a deleted run: the object as deleted). */
function lastSeen(recording: Recording): Map<string, AgentRun> {
  const out = new Map<string, AgentRun>();
  for (const { run } of recording.versions) out.set(run.metadata.name, run);
  return out;
}

const claimed = (r: AgentRun) => (r.status?.attempts ?? 0) > 0;
const STAGES = ['pending', 'running', 'queued for audit', 'namespace deleted', 'not deleted'];

describe('scenario 6: deletes at every stage, and a namespace deleted with runs in it', () => {
  it('records each deleted run as its status says, runs nothing twice, and leaves no run behind', async () => {
    const began = Date.now();
    const doomedNs = await createNamespace(env.kc, 'doomed');
    const doomed = new AgentRuns(env.kc, doomedNs);
    const mainRec = await env.runs.record();
    const doomedRec = await doomed.record();
    await env.operators.start();

    const deleted = new Map<string, string>(); // name -> stage
    const del = async (names: string[], stage: string) => {
      await Promise.all(
        names.map(async (name) => {
          await env.runs.delete(name).catch(() => {});
          deleted.set(name, stage);
        }),
      );
    };

    // Doomed namespace: slow runs, so most are pending or running when it goes.
    const doomedNames = Array.from({ length: IN_DOOMED_NAMESPACE }, (_, i) => `doomed-${i}`);
    await Promise.all(
      doomedNames.map((name) =>
        doomed.create(name, {
          agent: 'hook-slow',
          objective: 'in a doomed namespace',
          dryRun: false,
        }),
      ),
    );
    const creating = env.createBurst(RUNS);

    // The namespace goes while its runs are running (the first 20 slots) or waiting.
    await sleep(700);
    await env.kc.makeApiClient(CoreV1Api).deleteNamespace({ name: doomedNs });
    await env.kc.makeApiClient(CustomObjectsApi).deleteCollectionNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: doomedNs,
      plural: PLURAL,
    });

    // Pending: not started yet (no status, or Pending/Queued).
    await sleep(800);
    const pending = (await env.runs.list())
      .filter((r) => !deleted.has(r.metadata.name) && !claimed(r))
      .slice(-PER_STAGE)
      .map((r) => r.metadata.name);
    await del(pending, 'pending');

    // PostgreSQL stops now, while runs are still finishing, so that rows queue up: the runs
    // deleted from here on wait for their rows too.
    await env.postgres.pause();
    const pausedAt = Date.now();

    // Running: claimed and executing (slow or hanging agents hold the finalizer after 1 s), or
    // waiting to retry.
    const running = await waitForSome(
      async () =>
        (await env.runs.list())
          .filter((r) => !deleted.has(r.metadata.name) && r.status?.phase === 'Running')
          .map((r) => r.metadata.name),
      PER_STAGE / 2,
    );
    await del(running.slice(0, PER_STAGE), 'running');

    // Queued for audit: finished while PostgreSQL is stopped, their row queued, then deleted.
    const unaudited = await waitForSome(
      async () =>
        (await env.runs.list())
          .filter(
            (r) => !deleted.has(r.metadata.name) && isTerminal(r) && audited(r) !== 'Recorded',
          )
          .map((r) => r.metadata.name),
      PER_STAGE,
    );
    const queuedForAudit = unaudited.slice(0, PER_STAGE);
    await del(queuedForAudit, 'queued for audit');
    await sleep(2_000);
    const present = new Set((await env.runs.list()).map((r) => r.metadata.name));
    const stillThere = queuedForAudit.filter((n) => present.has(n)).length;
    await env.postgres.resume();
    const backAt = Date.now();

    const names = await creating;
    // Every deleted run gone, every other run terminal and audited, within the bound.
    const deadline = Date.now() + BOUND_MS;
    let list: AgentRun[] = [];
    let doomedLeft: AgentRun[] = [];
    for (;;) {
      list = await env.runs.list();
      doomedLeft = await doomed.list();
      const done =
        doomedLeft.length === 0 &&
        list.every(
          (r) => !deleted.has(r.metadata.name) && isTerminal(r) && audited(r) === 'Recorded',
        );
      if (done || Date.now() > deadline) break;
      await sleep(250);
    }
    const settledAt = Date.now();
    // A run deleted without the finalizer is gone before its row: give the audit queue its time
    // (bounded) to record how those ended, before the operator is stopped.
    const deletedUids = new Set(
      [...mainRec.versions, ...doomedRec.versions]
        .filter(({ run }) => deleted.has(run.metadata.name) || run.metadata.namespace === doomedNs)
        .map(({ run }) => run.metadata.uid),
    );
    const rowsDeadline = Date.now() + 30_000;
    while (Date.now() < rowsDeadline) {
      const rows = [...(await env.auditRows()), ...(await env.auditRows(doomedNs))];
      if (!rows.some((r) => deletedUids.has(r.run_id) && r.status === 'running')) break;
      await sleep(250);
    }
    await sleep(500); // the watch delivers the last deletions
    await env.operators.stop();
    mainRec.stop();
    doomedRec.stop();

    const seen = lastSeen(mainRec);
    const seenDoomed = lastSeen(doomedRec);
    const rows = [...(await env.auditRows()), ...(await env.auditRows(doomedNs))];
    const rowsByUid = new Map<string, AuditRow[]>();
    for (const row of rows) rowsByUid.set(row.run_id, [...(rowsByUid.get(row.run_id) ?? []), row]);

    const live = new Map(list.map((r) => [r.metadata.name, r]));
    const problems: string[] = [];
    type Stat = { runs: number; rows: number; mismatches: number; recorded: Map<string, number> };
    const stageStats = new Map<string, Stat>();
    const stat = (stage: string): Stat => {
      const s = stageStats.get(stage) ?? { runs: 0, rows: 0, mismatches: 0, recorded: new Map() };
      stageStats.set(stage, s);
      return s;
    };
    let duplicateRows = 0;
    let runningRows = 0;
    const judge = (stage: string, run: AgentRun | undefined, gone: boolean, name: string) => {
      const s = stat(stage);
      s.runs += 1;
      if (!run) {
        problems.push(`${name}: never seen`);
        return;
      }
      if (!gone) problems.push(`${name} (${stage}): still exists`);
      const mine = rowsByUid.get(run.metadata.uid) ?? [];
      duplicateRows += Math.max(0, mine.length - 1);
      const row = mine[0];
      if (row) {
        s.rows += 1;
        const what = `${row.status}/${row.reason}`;
        s.recorded.set(what, (s.recorded.get(what) ?? 0) + 1);
      }
      if (row?.status === 'running') runningRows += 1;
      if (isTerminal(run)) {
        // Its last status is an outcome: the row must say the same.
        if (!row) problems.push(`${name} (${stage}): finished, no audit row`);
        else {
          const diffs = compare(run, row);
          s.mismatches += diffs.length > 0 ? 1 : 0;
          problems.push(...diffs.map((d) => `(${stage}) ${d}`));
        }
      } else if (row && row.status === 'running') {
        problems.push(`${name} (${stage}): deleted unfinished, its row still says running`);
      }
    };
    for (const name of names) {
      const stage = deleted.get(name);
      if (stage) judge(stage, seen.get(name), !live.has(name), name);
      else {
        const run = live.get(name);
        const s = stat('not deleted');
        s.runs += 1;
        if (!run || !isTerminal(run) || audited(run) !== 'Recorded') {
          problems.push(`${name}: not terminal and audited (${run?.status?.phase})`);
          continue;
        }
        const mine = rowsByUid.get(run.metadata.uid) ?? [];
        duplicateRows += Math.max(0, mine.length - 1);
        if (mine[0]) {
          s.rows += 1;
          const what = `${mine[0].status}/${mine[0].reason}`;
          s.recorded.set(what, (s.recorded.get(what) ?? 0) + 1);
          const diffs = compare(run, mine[0]);
          s.mismatches += diffs.length > 0 ? 1 : 0;
          problems.push(...diffs);
        } else problems.push(`${name}: no audit row`);
      }
    }
    for (const name of doomedNames) {
      judge(
        'namespace deleted',
        seenDoomed.get(name),
        !doomedLeft.some((r) => r.metadata.name === name),
        name,
      );
    }

    const perAttempt = new Map<string, number>();
    for (const c of env.agent.calls) {
      const key = `${c.runId}#${c.attempt}`;
      perAttempt.set(key, (perAttempt.get(key) ?? 0) + 1);
    }
    const duplicateExecutions = [...perAttempt.values()].reduce((n, c) => n + c - 1, 0);
    const reports = env.operators.reports();
    // Known, not fixed (docs/reliability.md): a status or finalizer write that finds the run
    // already deleted fails its reconcile with an error-level line. Shown, not failed on.
    const goneLines = reports
      .flatMap((r) => r.errorLines)
      .filter((l) => l.includes('NotFoundError') && l.includes('the AgentRun no longer exists'));
    const errorLines = reports.flatMap((r) => r.errorLines).filter((l) => !goneLines.includes(l));
    const crashed = reports.filter((r) => r.ended === 'crashed').length;
    const maxRssMiB = Math.round(Math.max(0, ...reports.map((r) => r.maxRssBytes)) / 2 ** 20);

    const table = [
      '| stage | runs | audit rows | rows differing from the last status | rows by status/reason |',
      '| --- | ---: | ---: | ---: | --- |',
      ...STAGES.filter((stage) => stageStats.has(stage)).map((stage) => {
        const s = stat(stage);
        const recorded = [...s.recorded]
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([k, v]) => `${k} ${v}`)
          .join(', ');
        return `| ${stage} | ${s.runs} | ${s.rows} | ${s.mismatches} | ${recorded || '-'} |`;
      }),
    ];
    writeScenarioBlock(
      'deletes',
      [
        `Last run: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${Math.round((Date.now() - began) / 1000)} s in all; every deleted run gone and every other run terminal and audited ${((settledAt - backAt) / 1000).toFixed(1)} s after PostgreSQL was back (bound ${BOUND_MS / 1000} s). While PostgreSQL was stopped, ${stillThere} of the ${queuedForAudit.length} runs deleted with their row queued were still there 2 s after the delete (held by the finalizer until the row landed).`,
        '',
        '| runs | faults injected | runs lost | duplicate executions | missing / duplicate audit rows | rows differing from status | time to recover |',
        '| ---: | --- | ---: | ---: | ---: | ---: | --- |',
        `| ${names.length + IN_DOOMED_NAMESPACE} | ${deleted.size} deletes (${[...new Set(deleted.values())].join(', ')}), 1 namespace of ${IN_DOOMED_NAMESPACE} runs deleted, PostgreSQL stopped ${((backAt - pausedAt) / 1000).toFixed(0)} s meanwhile | ${problems.filter((p) => /still exists|not terminal|never seen/.test(p)).length} | ${duplicateExecutions} | ${problems.filter((p) => /no audit row/.test(p)).length} / ${duplicateRows} | ${[...stageStats.values()].reduce((n, s) => n + s.mismatches, 0)} | ${((settledAt - backAt) / 1000).toFixed(1)} s |`,
        '',
        ...table,
        '',
        `- Rows still saying \`running\` for a deleted run: ${runningRows}. Operator processes that exited on their own: ${crashed}; error or non-JSON log lines: ${errorLines.length}, and ${goneLines.length} error lines \`reconcile failed; retrying with backoff\` for a status or finalizer write that found the run deleted (NotFound, see below); peak RSS: ${maxRssMiB} MiB.`,
      ].join('\n'),
    );
    for (const stage of ['pending', 'running', 'queued for audit']) {
      if (![...deleted.values()].includes(stage)) problems.push(`no run was deleted ${stage}`);
    }
    expect(problems).toEqual([]);
    expect(duplicateExecutions).toBe(0);
    expect(duplicateRows).toBe(0);
    expect(crashed).toBe(0);
    expect(errorLines).toEqual([]);
    expect(maxRssMiB).toBeLessThan(MEMORY_LIMIT_MIB);
  });
});

/** Polls until `probe` finds at least `atLeast` names (or 20 s pass with at least one). */
async function waitForSome(
  probe: () => Promise<string[]>,
  atLeast = 1,
  timeoutMs = 60_000,
): Promise<string[]> {
  const started = Date.now();
  for (;;) {
    const found = await probe();
    const waited = Date.now() - started;
    if (found.length >= atLeast || (found.length > 0 && waited > 20_000) || waited > timeoutMs) {
      return found;
    }
    await sleep(100);
  }
}
