// http.check through the real operator: a target the address policy refuses ends the run Failed
// with a message that says why, and nothing reaches it; an admin's allow-list entry opens it.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AgentRun } from '../../../src/api/agentrun.ts';
import { AgentRuns } from '../../support/agentruns.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { startOperator } from '../../support/operator.ts';
import { serve } from '../../support/recording-server.ts';

const plane = controlPlane();
const kc = adminKubeConfig(plane);

beforeAll(async () => {
  await installCrd(plane);
});

async function setup(prefix: string, handlersYaml?: string) {
  const namespace = await createNamespace(kc, prefix);
  const env: Record<string, string> = {};
  if (handlersYaml !== undefined) {
    const file = join(mkdtempSync(join(tmpdir(), 'agentrun-http-check-')), 'handlers.yaml');
    writeFileSync(file, handlersYaml);
    env['HANDLERS_CONFIG'] = file;
  }
  await startOperator({ kubeConfig: kc, namespace, env });
  return new AgentRuns(kc, namespace);
}

function succeeded(run: AgentRun) {
  return run.status?.conditions?.find((c) => c.type === 'Succeeded');
}

describe('http.check address policy in the operator', () => {
  it('refuses loopback, metadata and names resolving to them by default, sending nothing', async () => {
    const server = await serve((_req, res) => res.writeHead(200).end());
    const port = new URL(server.origin).port;
    const runs = await setup('ssrf-default');
    const probe = (name: string, url: string) =>
      runs.create(name, { agent: 'http.check', dryRun: false, params: { url } });

    await probe('loopback', `http://127.0.0.1:${port}/`);
    await probe('decimal', `http://2130706433:${port}/`);
    await probe('metadata', 'http://169.254.169.254/latest/meta-data/');
    await probe('by-name', `http://localhost:${port}/`);

    for (const name of ['loopback', 'decimal', 'metadata']) {
      const run = await runs.waitForPhase(name, 'Failed');
      expect(succeeded(run)?.reason, name).toBe('InvalidParams');
      expect(succeeded(run)?.message, name).toMatch(
        /^params\.url: blocked by the operator's http\.check policy: /,
      );
      expect(run.status?.attempts ?? 0, name).toBe(0);
    }
    const byName = await runs.waitForPhase('by-name', 'Failed');
    expect(succeeded(byName)?.reason).toBe('Failed');
    expect(byName.status?.error).toMatch(
      new RegExp(
        `^GET http://localhost:${port}/ not sent: blocked by the operator's http\\.check policy: localhost resolves to `,
      ),
    );
    expect(server.seen).toEqual([]);
  });

  it('probes a local service once an admin lists its addresses', async () => {
    const server = await serve((_req, res) => res.writeHead(204).end());
    const port = new URL(server.origin).port;
    const runs = await setup('ssrf-allowed', 'httpCheck:\n  allowedHosts: ["127.0.0.1", "::1"]\n');
    await runs.create('local', {
      agent: 'http.check',
      dryRun: false,
      params: { url: `http://localhost:${port}/ready`, expectedStatus: 204 },
    });
    const run = await runs.waitForPhase('local', 'Succeeded');
    expect(run.status?.artifacts).toMatchObject({ status: 204, ok: true });
    expect(server.seen.map((s) => s.path)).toEqual(['/ready']);
  });
});
