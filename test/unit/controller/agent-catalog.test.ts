// AgentCatalog: which agent a run's spec.agent names (the operator's own first, then the
// AgentDefinition of that name in the run's namespace), and the definitions' status.
import { describe, expect, it } from 'vitest';
import { type AgentDefinition, agentDefinitionSchema } from '../../../src/api/agentdefinition.ts';
import { API_VERSION } from '../../../src/api/agentrun.ts';
import { AgentCatalog } from '../../../src/controller/agent-catalog.ts';
import { definitionStatus, statusDiffers } from '../../../src/controller/definition-status.ts';
import { judgeDefinition } from '../../../src/handlers/agent-definitions.ts';
import { agentDefinitionVetter } from '../../../src/handlers/handlers-config.ts';
import { noopHandler } from '../../../src/handlers/noop.ts';
import { HandlerRegistry } from '../../../src/handlers/registry.ts';
import { at, T0 } from './fixtures.ts';

function definition(
  name: string,
  spec: Record<string, unknown>,
  namespace = 'team-a',
  generation = 1,
): AgentDefinition {
  return agentDefinitionSchema.parse({
    apiVersion: API_VERSION,
    kind: 'AgentDefinition',
    metadata: {
      name,
      namespace,
      uid: `uid-${namespace}-${name}`,
      resourceVersion: '7',
      generation,
    },
    spec,
  });
}

const hook = (url = 'https://hooks.example/run') => ({ webhook: { url } });

function catalogOf(definitions: AgentDefinition[], jobs = false) {
  const registry = new HandlerRegistry([noopHandler]);
  const store = {
    get: (key: string) =>
      definitions.find((d) => `${d.metadata.namespace}/${d.metadata.name}` === key),
    list: () => definitions,
  };
  return new AgentCatalog({
    registry,
    definitions: store,
    vetter: agentDefinitionVetter({}, { apiServerHosts: ['10.96.0.1'] }),
    jobs,
  });
}

describe('AgentCatalog.resolve', () => {
  it('finds a definition in the run’s namespace only', () => {
    const catalog = catalogOf([definition('ticket-bot', hook())]);
    const found = catalog.resolve('ticket-bot', 'team-a');
    expect(found.found && found.handler.name).toBe('ticket-bot');
    const elsewhere = catalog.resolve('ticket-bot', 'team-b');
    expect(elsewhere).toEqual({
      found: false,
      reason: 'UnknownAgent',
      message:
        'no handler named "ticket-bot"; known agents: noop; no AgentDefinition "ticket-bot" in namespace team-b',
    });
  });

  it('lists the namespace’s own definitions among the known agents', () => {
    const catalog = catalogOf([
      definition('ticket-bot', hook()),
      definition('other', hook(), 'team-b'),
    ]);
    const missing = catalog.resolve('tiket-bot', 'team-a');
    expect(!missing.found && missing.message).toBe(
      'no handler named "tiket-bot"; known agents: noop, ticket-bot; no AgentDefinition "tiket-bot" in namespace team-a',
    );
  });

  it('the operator’s own agents win: a definition cannot shadow them', () => {
    const catalog = catalogOf([definition('noop', hook())]);
    const resolved = catalog.resolve('noop', 'team-a');
    expect(resolved.found && resolved.handler).toBe(noopHandler);
  });

  it('a job definition runs as a Job when the executor runs: one container, the plan names the image', () => {
    const job = {
      image: 'registry.example/builder:1',
      command: ['/agent'],
      env: [{ name: 'MODE', value: 'fast' }],
      serviceAccountName: 'builder',
    };
    const resolved = catalogOf([definition('builder', { job })], true).resolve('builder', 'team-a');
    if (!resolved.found) throw new Error(resolved.message);
    expect(resolved.handler.job?.podSpec).toEqual({
      serviceAccountName: 'builder',
      containers: [
        {
          name: 'agent',
          image: 'registry.example/builder:1',
          command: ['/agent'],
          env: [{ name: 'MODE', value: 'fast' }],
        },
      ],
    });
    const prepared = resolved.handler.prepare({
      objective: 'build',
      params: { ref: 'main' },
      dryRun: true,
    });
    expect(prepared).toMatchObject({
      ok: true,
      plan: {
        agentDefinition: { name: 'builder', uid: 'uid-team-a-builder', generation: 1 },
        image: 'registry.example/builder:1',
        dryRun: true,
        params: { ref: 'main' },
      },
    });
    expect(resolved.handler.prepare({ objective: 'b', params: [1], dryRun: false }).ok).toBe(false);
  });

  it('a job definition ends its runs ExecutorUnavailable when the Job executor is off', () => {
    const catalog = catalogOf([definition('builder', { job: { image: 'busybox' } })]);
    expect(catalog.resolve('builder', 'team-a')).toMatchObject({
      found: false,
      reason: 'ExecutorUnavailable',
      message: expect.stringContaining(
        'the AgentDefinition "builder" cannot run (ExecutorUnavailable)',
      ),
    });
  });

  it('a definition whose URL the policy refuses ends its runs InvalidAgent, naming the address', () => {
    const catalog = catalogOf([definition('meta', hook('http://169.254.169.254/latest'))]);
    expect(catalog.resolve('meta', 'team-a')).toMatchObject({
      found: false,
      reason: 'InvalidAgent',
      message: expect.stringContaining('169.254.169.254, a cloud metadata address'),
    });
  });

  it('without AgentDefinitions (AGENT_DEFINITIONS_ENABLED=false): the registry alone, as before', () => {
    const catalog = new AgentCatalog({
      registry: new HandlerRegistry([noopHandler]),
      vetter: agentDefinitionVetter(),
    });
    expect(catalog.resolve('ticket-bot', 'team-a')).toEqual({
      found: false,
      reason: 'UnknownAgent',
      message: 'no handler named "ticket-bot"; known agents: noop',
    });
  });

  it('judges each version of a definition once (same handler until it changes)', () => {
    const v1 = definition('ticket-bot', hook());
    const catalog = catalogOf([v1]);
    const a = catalog.resolve('ticket-bot', 'team-a');
    const b = catalog.resolve('ticket-bot', 'team-a');
    expect(a.found && b.found && a.handler === b.handler).toBe(true);
  });

  it('the plan names the definition and the generation the run used', () => {
    const catalog = catalogOf([definition('ticket-bot', hook(), 'team-a', 4)]);
    const resolved = catalog.resolve('ticket-bot', 'team-a');
    if (!resolved.found) throw new Error('not found');
    const prepared = resolved.handler.prepare({ objective: 'o', params: { q: 1 }, dryRun: true });
    expect(prepared.ok && prepared.plan).toEqual({
      agentDefinition: { name: 'ticket-bot', uid: 'uid-team-a-ticket-bot', generation: 4 },
      endpoint: 'ticket-bot',
      dryRun: true,
      params: { q: 1 },
    });
    // The URL stays out of the plan, as for config-file webhooks.
    expect(JSON.stringify(prepared)).not.toContain('hooks.example');
  });
});

describe('judgeDefinition: the Ready condition’s reason', () => {
  const options = {
    vetter: agentDefinitionVetter({}, { apiServerHosts: ['10.96.0.1'] }),
    reserved: (name: string) => name === 'noop' || name === 'http.check',
  };
  it.each([
    ['a webhook to a public host', definition('ok', hook()), true, 'Accepted'],
    ['a built-in name', definition('http.check', hook()), false, 'NameTaken'],
    ['a job', definition('j', { job: { image: 'busybox' } }), false, 'ExecutorUnavailable'],
    [
      'credentials in the URL',
      definition('c', hook('https://u:p@hooks.example/')),
      false,
      'InvalidSpec',
    ],
    ['loopback', definition('l', hook('http://127.0.0.1:8080/')), false, 'AddressNotAllowed'],
    ['the API server', definition('a', hook('https://10.96.0.1/')), false, 'AddressNotAllowed'],
    [
      'a name longer than spec.agent allows',
      definition('a'.repeat(129), hook()),
      false,
      'InvalidSpec',
    ],
  ] as const)('%s', (_what, def, ready, reason) => {
    const verdict = judgeDefinition(def, options);
    expect(verdict.ready).toBe(ready);
    expect(verdict.ready ? 'Accepted' : verdict.reason).toBe(reason);
  });
});

describe('definitionStatus', () => {
  const catalog = catalogOf([]);
  it('says the executor and Ready for the generation judged', () => {
    const def = definition('ticket-bot', hook(), 'team-a', 2);
    const status = definitionStatus(def, catalog.judge(def), T0);
    expect(status).toEqual({
      executor: 'webhook',
      observedGeneration: 2,
      conditions: [
        {
          type: 'Ready',
          status: 'True',
          reason: 'Accepted',
          message:
            'runs in namespace team-a naming "ticket-bot" POST to this webhook; its host is resolved and checked against the address policy at each request',
          observedGeneration: 2,
          lastTransitionTime: '2026-03-01T10:00:00Z',
        },
      ],
    });
  });

  it('writes nothing new when nothing changed; keeps lastTransitionTime until Ready flips', () => {
    const def = definition('ticket-bot', hook());
    const first = definitionStatus(def, catalog.judge(def), T0);
    const written = { ...def, status: first };
    const again = definitionStatus(written, catalog.judge(written), at(60_000));
    expect(statusDiffers(first, again)).toBe(false);
    const changed = { ...written, spec: { job: { image: 'busybox' } } } as AgentDefinition;
    const flipped = definitionStatus(changed, catalog.judge(changed), at(60_000));
    expect(statusDiffers(first, flipped)).toBe(true);
    expect(flipped.executor).toBe('job');
    expect(flipped.conditions?.[0]).toMatchObject({
      status: 'False',
      reason: 'ExecutorUnavailable',
      lastTransitionTime: '2026-03-01T10:01:00Z',
    });
  });
});
