import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { audited, FaultEnvironment, isTerminal, writeScenarioBlock } from './support/harness.ts';
import {
  detailLines,
  findings,
  RESULT_HEADER,
  resultRow,
  violations,
} from './support/invariants.ts';

/**
 * Scenario 5 of issue 15: the PostgreSQL postmaster is killed with SIGKILL in the middle of the
 * burst (while the audit writer is sending batches), and started again on the same data
 * directory a few seconds later, after crash recovery.
 */
const RUNS = Number(process.env['FAULT_RUNS'] ?? 300);
const SETTLE_BOUND_MS = 120_000;
const DOWN_MS = 4_000;

let env: FaultEnvironment;

beforeAll(async () => {
  env = await FaultEnvironment.start('pgkill');
});

afterAll(async () => {
  await env?.stop();
});

describe('scenario 5: PostgreSQL killed mid-batch', () => {
  it('loses no audit row and writes none twice; every run ends Audited=True as its status says', async () => {
    const began = Date.now();
    await env.operators.start();
    const creating = env.createBurst(RUNS);
    await env.waitForTerminal(Math.ceil(RUNS * 0.4), 300_000);
    const killedAt = Date.now();
    env.killPostgres();
    await sleep(DOWN_MS);
    const duringOutage = await env.terminalCount();
    const pendingDuringOutage = duringOutage.list.filter(
      (r) => isTerminal(r) && audited(r) !== 'Recorded',
    ).length;
    await env.restartPostgres();
    const backAt = Date.now();
    // Recovered: every finished run's row is in again (Audited=True), while the burst goes on.
    let caughtUpAt = 0;
    while (caughtUpAt === 0 && Date.now() - backAt < SETTLE_BOUND_MS) {
      const { list } = await env.terminalCount();
      if (list.filter(isTerminal).every((r) => audited(r) === 'Recorded')) caughtUpAt = Date.now();
      else await sleep(100);
    }
    const names = await creating;
    const { list, at } = await env.settle(SETTLE_BOUND_MS);
    await env.operators.stop();

    const f = findings({
      names,
      runs: list,
      calls: env.agent.calls,
      rows: await env.auditRows(),
      incarnations: env.operators.reports(),
      prometheusIncrease: env.operators.prometheusIncrease(),
    });
    const recover = caughtUpAt
      ? `${((caughtUpAt - backAt) / 1000).toFixed(1)} s after the restart (${((caughtUpAt - killedAt) / 1000).toFixed(1)} s after the kill)`
      : 'not within the bound';
    writeScenarioBlock(
      'postgres-kill',
      [
        `Last run: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${Math.round((Date.now() - began) / 1000)} s in all. PostgreSQL was down ${((backAt - killedAt) / 1000).toFixed(1)} s (kill, ${DOWN_MS / 1000} s wait, crash recovery); ${pendingDuringOutage} finished runs said Audited=False/Pending during the outage, and the operator kept running all along.`,
        '',
        RESULT_HEADER,
        resultRow(
          f,
          '1 × SIGKILL of the PostgreSQL postmaster (at 40 % terminal), restarted on the same data',
          recover,
        ),
        '',
        `Every run terminal and audited ${((at - backAt) / 1000).toFixed(1)} s after PostgreSQL was back (bound ${SETTLE_BOUND_MS / 1000} s).`,
        '',
        ...detailLines(f),
      ].join('\n'),
    );
    expect(violations(f)).toEqual([]);
  });
});
