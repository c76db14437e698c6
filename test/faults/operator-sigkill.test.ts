import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FaultEnvironment, writeScenarioBlock } from './support/harness.ts';
import {
  detailLines,
  findings,
  RESULT_HEADER,
  resultRow,
  violations,
} from './support/invariants.ts';

/**
 * Scenario 1 of issue 15: the operator is SIGKILLed three times in the middle of a burst (when
 * 25 %, 50 % and 75 % of the runs are terminal) and restarted each time.
 */
const RUNS = Number(process.env['FAULT_RUNS'] ?? 300);
/** Every run must be terminal (and audited) this long after the last restart. */
const SETTLE_BOUND_MS = 120_000;
const RESTART_AFTER_MS = 1_000;

let env: FaultEnvironment;

beforeAll(async () => {
  env = await FaultEnvironment.start('sigkill');
});

afterAll(async () => {
  await env?.stop();
});

describe('scenario 1: operator SIGKILLed three times mid-burst', () => {
  it('loses no run, executes no attempt twice, and audits every run once as its status says', async () => {
    const began = Date.now();
    await env.operators.start();
    const creating = env.createBurst(RUNS);
    const recoveries: number[] = [];
    for (const share of [0.25, 0.5, 0.75]) {
      await env.waitForTerminal(Math.ceil(RUNS * share), 300_000);
      const before = (await env.terminalCount()).terminal;
      const killedAt = Date.now();
      await env.operators.kill();
      await sleep(RESTART_AFTER_MS);
      await env.operators.start();
      // Recovered: a run reached a terminal phase that was not terminal at the kill.
      await env.waitForTerminal(before + 1, 60_000);
      recoveries.push(Date.now() - killedAt);
    }
    const names = await creating;
    const lastRestart = Date.now();
    const { list, at } = await env.settle(SETTLE_BOUND_MS);
    const settledMs = at - lastRestart;
    await env.operators.stop();

    const f = findings({
      names,
      runs: list,
      calls: env.agent.calls,
      rows: await env.auditRows(),
      incarnations: env.operators.reports(),
      prometheusIncrease: env.operators.prometheusIncrease(),
    });
    const recover = recoveries.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(', ');
    writeScenarioBlock(
      'operator-sigkill',
      [
        `Last run: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${Math.round((Date.now() - began) / 1000)} s in all; every run terminal and audited ${(settledMs / 1000).toFixed(1)} s after the last restart (bound ${SETTLE_BOUND_MS / 1000} s).`,
        '',
        RESULT_HEADER,
        resultRow(
          f,
          '3 × SIGKILL of the operator (at 25 %, 50 %, 75 % terminal), restarted 1 s later',
          recover,
        ),
        '',
        ...detailLines(f),
      ].join('\n'),
    );
    expect(violations(f)).toEqual([]);
  });
});
