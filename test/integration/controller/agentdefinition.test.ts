// AgentDefinitions through the real operator and API server: agents registered with kubectl,
// no restart. A definition applied with its run runs it (the unknown-agent grace covers the two
// watches' order); the operator's own agents cannot be shadowed; a definition's webhook goes
// through the address policy and sends nothing it refuses; admission refuses both or neither
// kind with a readable message.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CustomObjectsApi } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import type { AgentDefinition } from '../../../src/api/agentdefinition.ts';
import type { AgentRun } from '../../../src/api/agentrun.ts';
import { AgentRuns } from '../../support/agentruns.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';
import { kubectlFor } from '../../support/kubectl.ts';
import { startOperator } from '../../support/operator.ts';
import { serve } from '../../support/recording-server.ts';
import { waitFor } from '../../support/wait.ts';

const plane = controlPlane();
const kc = adminKubeConfig(plane);
const kubectl = kubectlFor(plane);
const API = 'agents.applylens.io/v1alpha1';

beforeAll(async () => {
  await installCrd(plane);
});

/** The test server is on 127.0.0.1, which the policy refuses unless the admin lists it. */
const LOOPBACK_ALLOWED = 'agentDefinitions:\n  allowedHosts: ["127.0.0.1"]\n';

async function setup(prefix: string, handlersYaml?: string, env: Record<string, string> = {}) {
  const namespace = await createNamespace(kc, prefix);
  const all = { ...env };
  if (handlersYaml !== undefined) {
    const file = join(mkdtempSync(join(tmpdir(), 'agentdef-')), 'handlers.yaml');
    writeFileSync(file, handlersYaml);
    all['HANDLERS_CONFIG'] = file;
  }
  await startOperator({ kubeConfig: kc, namespace, env: all });
  return { namespace, runs: new AgentRuns(kc, namespace) };
}

function webhookDefinition(name: string, url: string, extra: Record<string, unknown> = {}) {
  return {
    apiVersion: API,
    kind: 'AgentDefinition',
    metadata: { name },
    spec: { description: `the ${name} agent`, webhook: { url, timeoutMs: 5_000 }, ...extra },
  };
}

function run(name: string, agent: string, params: Record<string, unknown> = {}) {
  return {
    apiVersion: API,
    kind: 'AgentRun',
    metadata: { name },
    spec: { agent, objective: `run ${agent}`, dryRun: false, params },
  };
}

/** `kubectl apply -f -` of a List, as a user or a GitOps tool applies a directory. */
async function apply(namespace: string, ...items: unknown[]) {
  return kubectl(['apply', '-n', namespace, '-f', '-'], {
    input: JSON.stringify({ apiVersion: 'v1', kind: 'List', items }),
  });
}

async function getDefinition(namespace: string, name: string): Promise<AgentDefinition> {
  return (await kc.makeApiClient(CustomObjectsApi).getNamespacedCustomObject({
    group: 'agents.applylens.io',
    version: 'v1alpha1',
    namespace,
    plural: 'agentdefinitions',
    name,
  })) as AgentDefinition;
}

/** The definition's Ready condition once the operator has judged its current generation. */
async function readyOf(namespace: string, name: string) {
  return waitFor(`${name} judged`, async () => {
    const def = await getDefinition(namespace, name);
    const ready = def.status?.conditions?.find((c) => c.type === 'Ready');
    return ready && def.status?.observedGeneration === def.metadata.generation
      ? { ready, status: def.status, generation: def.metadata.generation }
      : undefined;
  });
}

const succeededOf = (r: AgentRun) => r.status?.conditions?.find((c) => c.type === 'Succeeded');

describe('agents registered with kubectl', () => {
  it('a definition applied together with its run: the run POSTs to the webhook and succeeds', async () => {
    const server = await serve((_req, res) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ticket":"OPS-7"}'),
    );
    const { namespace, runs } = await setup('agentdef-apply', LOOPBACK_ALLOWED);
    // One apply, run first: its watch may well see it before the definitions' watch sees the
    // definition, which the grace covers.
    const applied = await apply(
      namespace,
      run('open-ticket', 'ticket-bot', { queue: 'ops' }),
      webhookDefinition('ticket-bot', `${server.origin}/hooks/run`),
    );
    expect(applied.code, applied.stderr).toBe(0);
    expect(applied.stdout).toContain('agentdefinition.agents.applylens.io/ticket-bot created');

    const done = await runs.waitForPhase('open-ticket', 'Succeeded');
    expect(done.status?.artifacts).toEqual({ ticket: 'OPS-7' });
    expect(done.status?.plan).toEqual({
      agentDefinition: {
        name: 'ticket-bot',
        uid: expect.any(String),
        generation: 1,
      },
      endpoint: 'ticket-bot',
      dryRun: false,
      params: { queue: 'ops' },
    });
    expect(server.seen).toHaveLength(1);
    const body = JSON.parse(server.seen[0]?.body ?? '{}');
    expect(body).toMatchObject({
      runId: done.metadata.uid,
      attempt: 1,
      objective: 'run ticket-bot',
      dryRun: false,
      params: { queue: 'ops' },
    });
    expect(server.seen[0]?.path).toBe('/hooks/run');

    const { ready, status } = await readyOf(namespace, 'ticket-bot');
    expect(ready).toMatchObject({ status: 'True', reason: 'Accepted', observedGeneration: 1 });
    expect(status?.executor).toBe('webhook');

    // `kubectl get agents` lists runs and definitions (the category), with the printer columns.
    const listed = await kubectl(['get', 'agents', '-n', namespace]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(
      /agentrun\.agents\.applylens\.io\/open-ticket\s+ticket-bot\s+Succeeded/,
    );
    expect(listed.stdout).toMatch(
      /agentdefinition\.agents\.applylens\.io\/ticket-bot\s+webhook\s+True\s+Accepted/,
    );
    const short = await kubectl(['get', 'agentdef', '-n', namespace, '-o', 'name']);
    expect(short.stdout.trim()).toBe('agentdefinition.agents.applylens.io/ticket-bot');
  });

  it('a changed definition serves the runs started after the change, recording its generation', async () => {
    const first = await serve((_req, res) => res.writeHead(200).end('{"from":"first"}'));
    const second = await serve((_req, res) => res.writeHead(200).end('{"from":"second"}'));
    const { namespace, runs } = await setup('agentdef-change', LOOPBACK_ALLOWED);
    await apply(namespace, webhookDefinition('bot', `${first.origin}/`));
    await readyOf(namespace, 'bot');
    await apply(namespace, run('before', 'bot'));
    expect((await runs.waitForPhase('before', 'Succeeded')).status?.artifacts).toEqual({
      from: 'first',
    });
    await apply(namespace, webhookDefinition('bot', `${second.origin}/`));
    await waitFor('generation 2 judged', async () =>
      (await readyOf(namespace, 'bot')).generation === 2 ? true : undefined,
    );
    await apply(namespace, run('after', 'bot'));
    const after = await runs.waitForPhase('after', 'Succeeded');
    expect(after.status?.artifacts).toEqual({ from: 'second' });
    expect(after.status?.plan?.['agentDefinition']).toMatchObject({ generation: 2 });
    expect([first.seen.length, second.seen.length]).toEqual([1, 1]);
  });

  it('cannot shadow a built-in: NameTaken on the definition, and the built-in runs', async () => {
    const server = await serve((_req, res) => res.writeHead(200).end('{}'));
    const { namespace, runs } = await setup('agentdef-clash', LOOPBACK_ALLOWED);
    await apply(namespace, webhookDefinition('noop', `${server.origin}/`));
    const { ready } = await readyOf(namespace, 'noop');
    expect(ready).toMatchObject({ status: 'False', reason: 'NameTaken' });
    expect(ready.message).toContain('"noop" is a built-in or configured agent of the operator');
    await apply(namespace, run('plain', 'noop', { hello: 'world' }));
    const done = await runs.waitForPhase('plain', 'Succeeded');
    expect(done.status?.artifacts).toEqual({ hello: 'world' });
    expect(done.status?.plan?.['agentDefinition']).toBeUndefined();
    expect(server.seen).toEqual([]);
  });

  it('a run in another namespace does not see the definition', async () => {
    const server = await serve((_req, res) => res.writeHead(200).end('{}'));
    const { namespace } = await setup('agentdef-home', LOOPBACK_ALLOWED, {
      UNKNOWN_AGENT_GRACE_SECONDS: '0',
    });
    // One operator watching one namespace cannot show this; the catalog's unit tests do, and
    // here the definition lives in a namespace the run is not in.
    const other = await createNamespace(kc, 'agentdef-other');
    await apply(other, webhookDefinition('only-there', `${server.origin}/`));
    const runs = new AgentRuns(kc, namespace);
    await apply(namespace, run('elsewhere', 'only-there'));
    const failed = await runs.waitForPhase('elsewhere', 'Failed');
    expect(succeededOf(failed)).toMatchObject({
      reason: 'UnknownAgent',
      message: expect.stringContaining(`no AgentDefinition "only-there" in namespace ${namespace}`),
    });
    expect(server.seen).toEqual([]);
  });
});

describe("a definition's webhook and the address policy", () => {
  it('refuses loopback and metadata by default: the run fails saying why, nothing is sent', async () => {
    const server = await serve((_req, res) => res.writeHead(200).end('{}'));
    const port = new URL(server.origin).port;
    const { namespace, runs } = await setup('agentdef-ssrf');
    await apply(
      namespace,
      webhookDefinition('loop', `http://127.0.0.1:${port}/`),
      webhookDefinition('meta', 'http://169.254.169.254/latest/meta-data/'),
      webhookDefinition('by-name', `http://localhost:${port}/`),
    );
    for (const [name, address] of [
      // Here the API server itself listens on 127.0.0.1, which the policy names first.
      ['loop', /127\.0\.0\.1, (a loopback address|the Kubernetes API server's address)/],
      ['meta', /169\.254\.169\.254, a cloud metadata address/],
    ] as const) {
      const { ready } = await readyOf(namespace, name);
      expect(ready, name).toMatchObject({ status: 'False', reason: 'AddressNotAllowed' });
      expect(ready.message, name).toMatch(
        new RegExp(`blocked by the operator's agent webhook policy: ${address.source}`),
      );
    }
    expect((await readyOf(namespace, 'by-name')).ready.status).toBe('True');

    await apply(namespace, run('r-loop', 'loop'), run('r-meta', 'meta'), run('r-name', 'by-name'));
    for (const name of ['r-loop', 'r-meta']) {
      const failed = await runs.waitForPhase(name, 'Failed');
      expect(succeededOf(failed)?.reason, name).toBe('InvalidAgent');
      expect(succeededOf(failed)?.message, name).toMatch(
        /cannot run \(AddressNotAllowed\): spec\.webhook\.url: blocked by the operator's agent webhook policy: /,
      );
      expect(failed.status?.attempts ?? 0, name).toBe(0);
    }
    // A name is resolved when the run executes; a refusal fails the attempt.
    const byName = await runs.waitForPhase('r-name', 'Failed');
    expect(byName.status?.error).toMatch(
      /^webhook "by-name" not sent: blocked by the operator's agent webhook policy: localhost resolves to /,
    );
    expect(server.seen).toEqual([]);
  });
});

describe('unknown agents: the grace', () => {
  it('a run waits Pending/AgentNotFound and runs when its definition appears within the grace', async () => {
    const server = await serve((_req, res) => res.writeHead(200).end('{"late":true}'));
    const { namespace, runs } = await setup('agentdef-grace', LOOPBACK_ALLOWED, {
      UNKNOWN_AGENT_GRACE_SECONDS: '60',
    });
    await apply(namespace, run('early', 'late-bot'));
    const waiting = await runs.waitUntil(
      'early',
      'AgentNotFound',
      (r) => succeededOf(r)?.reason === 'AgentNotFound',
    );
    expect(waiting.status?.phase).toBe('Pending');
    expect(succeededOf(waiting)?.message).toBe(
      `no agent named "late-bot" in namespace ${namespace} yet; waiting up to 60s`,
    );
    await apply(namespace, webhookDefinition('late-bot', `${server.origin}/`));
    // Woken by the definition's arrival, long before the grace is over.
    const done = await runs.waitForPhase('early', 'Succeeded', 20_000);
    expect(done.status?.artifacts).toEqual({ late: true });
  });

  it('after the grace the run ends Failed/UnknownAgent, and stays failed when the agent comes', async () => {
    const server = await serve((_req, res) => res.writeHead(200).end('{}'));
    const { namespace, runs } = await setup('agentdef-nograce', LOOPBACK_ALLOWED, {
      UNKNOWN_AGENT_GRACE_SECONDS: '2',
    });
    await apply(namespace, run('orphan', 'nobody'));
    await runs.waitUntil(
      'orphan',
      'AgentNotFound',
      (r) => succeededOf(r)?.reason === 'AgentNotFound',
    );
    const failed = await runs.waitForPhase('orphan', 'Failed');
    expect(succeededOf(failed)?.reason).toBe('UnknownAgent');
    expect(succeededOf(failed)?.message).toMatch(/^no handler named "nobody"; known agents: /);
    const waited =
      Date.parse(failed.status?.finishedAt ?? '') -
      Date.parse(failed.metadata.creationTimestamp ?? '');
    expect(waited).toBeGreaterThanOrEqual(1_500);
    await apply(namespace, webhookDefinition('nobody', `${server.origin}/`));
    await readyOf(namespace, 'nobody');
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await runs.get('orphan'))?.status?.phase).toBe('Failed');
    expect(server.seen).toEqual([]);
  });
});

describe('job definitions, with the Job executor turned off', () => {
  it('are accepted by the CRD, not Ready (ExecutorUnavailable), and their runs end saying so', async () => {
    const { namespace, runs } = await setup('agentdef-job', undefined, {
      JOB_AGENTS_ENABLED: 'false',
    });
    const applied = await apply(namespace, {
      apiVersion: API,
      kind: 'AgentDefinition',
      metadata: { name: 'builder' },
      spec: {
        job: {
          image: 'registry.example/agents/builder:1.2',
          command: ['/agent'],
          args: ['--verbose'],
          env: [{ name: 'MODE', value: 'fast' }],
          resources: { requests: { cpu: '250m', memory: '128Mi' }, limits: { cpu: 1 } },
          serviceAccountName: 'builder',
        },
      },
    });
    expect(applied.code, applied.stderr).toBe(0);
    const { ready, status } = await readyOf(namespace, 'builder');
    expect(status?.executor).toBe('job');
    expect(ready).toMatchObject({ status: 'False', reason: 'ExecutorUnavailable' });
    await apply(namespace, run('build', 'builder'));
    const failed = await runs.waitForPhase('build', 'Failed');
    expect(succeededOf(failed)?.reason).toBe('ExecutorUnavailable');
    expect(succeededOf(failed)?.message).toContain('need the Job executor');
  });
});

describe('admission of AgentDefinitions', () => {
  it.each([
    [
      'both kinds',
      { webhook: { url: 'https://x.example/' }, job: { image: 'x' } },
      'exactly one of spec.webhook or spec.job must be set',
    ],
    [
      'neither kind',
      { description: 'nothing' },
      'exactly one of spec.webhook or spec.job must be set',
    ],
    [
      'an ftp URL',
      { webhook: { url: 'ftp://x.example/' } },
      'spec.webhook.url must be an absolute http:// or https:// URL',
    ],
    [
      'a relative URL',
      { webhook: { url: '/hooks' } },
      'spec.webhook.url must be an absolute http:// or https:// URL',
    ],
    [
      'a zero timeout',
      { webhook: { url: 'https://x.example/', timeoutMs: 0 } },
      'spec.webhook.timeoutMs: Invalid value: 0',
    ],
    ['a job without image', { job: { command: ['x'] } }, 'missing required field "image"'],
    [
      'a bad quantity',
      { job: { image: 'x', resources: { limits: { cpu: 'lots' } } } },
      'spec.job.resources.limits.cpu',
    ],
  ])('refuses %s with a readable message', async (_what, spec, message) => {
    const namespace = await createNamespace(kc, 'agentdef-admission');
    const result = await apply(namespace, {
      apiVersion: API,
      kind: 'AgentDefinition',
      metadata: { name: 'bad' },
      spec,
    });
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(message);
  });
});
