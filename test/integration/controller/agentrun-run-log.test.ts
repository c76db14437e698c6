import { beforeAll, describe, expect, it } from 'vitest';
import type { AgentRun } from '../../../src/api/agentrun.ts';
import { AgentRuns } from '../../support/agentruns.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { capturingLogger } from '../../support/logs.ts';
import { startOperator } from '../../support/operator.ts';
import { waitFor } from '../../support/wait.ts';

/**
 * The operator's log at its default level has one line per finished run, with the fields an
 * operator greps for: runId, agent, namespace, name, phase, reason, durationMs, attempts, and
 * for failures the error.
 */

const plane = controlPlane();
const kc = adminKubeConfig(plane);

beforeAll(async () => {
  await installCrd(plane);
});

/** Levels at or above the default LOG_LEVEL (info); the operator logs level labels. */
const SHOWN = new Set(['info', 'warn', 'error', 'fatal']);

describe('one log line per finished run', () => {
  it('at info for Succeeded and Canceled, at warn with the error for failures and timeouts', async () => {
    const namespace = await createNamespace(kc, 'run-log');
    const { logger, lines } = capturingLogger('info');
    // `nobody` fails at once: the unknown-agent grace has its own tests (agentdefinition.test.ts).
    await startOperator({
      kubeConfig: kc,
      namespace,
      logger,
      env: { UNKNOWN_AGENT_GRACE_SECONDS: '0' },
    });
    const runs = new AgentRuns(kc, namespace);

    const created = new Map<string, AgentRun>();
    for (const [name, spec] of [
      ['ok', { agent: 'noop' }],
      ['broken', { agent: 'noop', params: { fail: 'boom' } }],
      ['slow', { agent: 'noop', params: { delayMs: 600_000 }, timeoutSeconds: 1 }],
      ['stopped', { agent: 'noop', params: { delayMs: 600_000 } }],
      ['nobody', { agent: 'no-such-agent' }],
    ] as const) {
      created.set(name, await runs.create(name, { ...spec }));
    }
    await runs.waitForPhase('stopped', 'Running');
    await runs.cancel('stopped');
    for (const [name, phase] of [
      ['ok', 'Succeeded'],
      ['broken', 'Failed'],
      ['slow', 'Failed'],
      ['stopped', 'Canceled'],
      ['nobody', 'Failed'],
    ] as const) {
      await runs.waitForPhase(name, phase);
    }

    const linesOf = (name: string) =>
      lines.filter(
        (l) => l['runId'] === created.get(name)?.metadata.uid && SHOWN.has(String(l['level'])),
      );
    await waitFor('a log line for every run', async () =>
      [...created.keys()].every((name) => linesOf(name).length > 0) ? true : undefined,
    );

    const expected: Record<
      string,
      { level: string; phase: string; reason: string; attempts: number }
    > = {
      ok: { level: 'info', phase: 'Succeeded', reason: 'Succeeded', attempts: 1 },
      broken: { level: 'warn', phase: 'Failed', reason: 'Failed', attempts: 1 },
      slow: { level: 'warn', phase: 'Failed', reason: 'TimedOut', attempts: 1 },
      stopped: { level: 'info', phase: 'Canceled', reason: 'Canceled', attempts: 1 },
      nobody: { level: 'warn', phase: 'Failed', reason: 'UnknownAgent', attempts: 0 },
    };
    for (const [name, want] of Object.entries(expected)) {
      const found = linesOf(name);
      expect(found, name).toHaveLength(1);
      const [line] = found;
      expect(line, name).toMatchObject({
        ...want,
        agent: created.get(name)?.spec.agent,
        namespace,
        name,
      });
      expect(line?.['durationMs'], name).toEqual(expect.any(Number));
      expect(String(line?.['msg']), name).toMatch(/^run (succeeded|failed|canceled): /);
    }
    expect(linesOf('broken')[0]?.['error']).toBe('boom');
    expect(String(linesOf('slow')[0]?.['error'])).toMatch(/timeoutSeconds/);
    expect(String(linesOf('nobody')[0]?.['error'])).toMatch(/no-such-agent/);
    expect(linesOf('ok')[0]?.['error']).toBeUndefined();
  });
});
