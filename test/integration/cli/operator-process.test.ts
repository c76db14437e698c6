import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cgroupMemoryLimit } from '../../../src/cli/v8-sizing.ts';
import { AgentRuns } from '../../support/agentruns.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { freePort } from '../../support/ports.ts';
import { waitFor } from '../../support/wait.ts';

const plane = controlPlane();
const kc = adminKubeConfig(plane);
const cli = new URL('../../../src/cli/main.ts', import.meta.url).pathname;
const children: ChildProcess[] = [];
const servers: Server[] = [];

beforeAll(async () => {
  await installCrd(plane);
});

afterEach(async () => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  await Promise.all(servers.splice(0).map((s) => new Promise((done) => s.close(done))));
});

/** The real `agentrun-operator run` command, as a process. */
function startCli(env: Record<string, string>): { child: ChildProcess; output: () => string } {
  let output = '';
  const child = spawn(process.execPath, [cli, 'run'], {
    env: {
      ...process.env,
      KUBECONFIG: plane.adminKubeconfig,
      LOG_LEVEL: 'info',
      APPLYLENS_AGENT_AUDIT_ENABLED: 'false',
      METRICS_BIND_ADDRESS: '0',
      NODE_OPTIONS: '', // a bare start, as a user's
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    output += chunk.toString();
  });
  children.push(child);
  return { child, output: () => output };
}

async function status(port: number, path: string): Promise<number> {
  return (await fetch(`http://127.0.0.1:${port}${path}`)).status;
}

describe('the agentrun-operator command', () => {
  it('serves /healthz and /readyz, runs an admin-configured webhook agent, and stops cleanly on SIGTERM', async () => {
    const namespace = await createNamespace(kc, 'cli');
    const received: Array<Record<string, unknown>> = [];
    const webhook = createServer(async (req: IncomingMessage, res) => {
      let body = '';
      for await (const chunk of req) body += chunk;
      received.push({ auth: req.headers['authorization'], ...JSON.parse(body) });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ticket":"OPS-42"}');
    });
    servers.push(webhook);
    await new Promise<void>((done) => webhook.listen(0, '127.0.0.1', done));
    const hookPort = (webhook.address() as AddressInfo).port;
    const configFile = join(plane.dir, `handlers-${namespace}.yaml`);
    writeFileSync(
      configFile,
      `webhooks:\n  - name: ticket-bot\n    url: http://127.0.0.1:${hookPort}/hook\n    headers:\n      Authorization: Bearer s3cret\n`,
    );

    const healthPort = await freePort();
    const { child, output } = startCli({
      WATCH_NAMESPACE: namespace,
      HANDLERS_CONFIG: configFile,
      HEALTH_PROBE_BIND_ADDRESS: `127.0.0.1:${healthPort}`,
    });
    await waitFor(
      '/readyz 200',
      async () => ((await status(healthPort, '/readyz')) === 200 ? true : undefined),
      {
        timeoutMs: 20_000,
      },
    );
    expect(await status(healthPort, '/healthz')).toBe(200);

    const runs = new AgentRuns(kc, namespace);
    const run = await runs.create('ticket', {
      agent: 'ticket-bot',
      objective: 'open a ticket',
      dryRun: false,
      params: { queue: 'ops' },
    });
    const done = await runs.waitForPhase('ticket', 'Succeeded');
    expect(done.status?.artifacts).toEqual({ ticket: 'OPS-42' });
    expect(received).toHaveLength(1);
    expect(received[0]).toMatchObject({
      auth: 'Bearer s3cret',
      runId: run.metadata.uid,
      attempt: 1,
      objective: 'open a ticket',
      dryRun: false,
      params: { queue: 'ops' },
    });

    const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    // Structured JSON logs; the webhook's secret header never appears in them.
    const lines = output()
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { msg: string; heapLimitMiB?: number });
    // A bare start sized V8 itself, and says so: the old space at half a container limit, else
    // 1 GiB, plus the young generation's 12 MiB (V8's own default here would be about 4 GiB).
    const limit = cgroupMemoryLimit();
    const oldSpaceMiB = limit === undefined ? 1024 : Math.floor(limit / 2 / 2 ** 20);
    expect(lines.find((l) => l.msg === 'starting agentrun-operator')?.heapLimitMiB).toBe(
      oldSpaceMiB + 12,
    );
    expect(lines.map((l) => l.msg)).toContain('stopped');
    expect(output()).not.toContain('s3cret');
  });

  it('refuses a bad configuration with a message naming the setting, and exits 1', async () => {
    const { child, output } = startCli({ MAX_CONCURRENT_RUNS: 'lots' });
    const code = await new Promise<number | null>((done) => child.once('exit', (c) => done(c)));
    expect(code).toBe(1);
    expect(output()).toContain('invalid configuration');
    expect(output()).toContain('MAX_CONCURRENT_RUNS: expected a whole number');
  });
});
