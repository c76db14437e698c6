import { ApiException, CustomObjectsApi } from '@kubernetes/client-node';
import { beforeAll, describe, expect, it } from 'vitest';
import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from '../../../src/api/agentrun.ts';
import { installCrd } from '../../support/crds.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminKubeConfig } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';

const plane = controlPlane();
const kc = adminKubeConfig(plane);
const objects = kc.makeApiClient(CustomObjectsApi);
let namespace = '';

beforeAll(async () => {
  await installCrd(plane);
  namespace = await createNamespace(kc, 'crd');
});

type Obj = Record<string, unknown>;
const ref = () => ({ group: GROUP, version: VERSION, namespace, plural: PLURAL });

function agentRun(name: string, spec: Obj): Obj {
  return { apiVersion: API_VERSION, kind: KIND, metadata: { name }, spec };
}

/** The API server's Status message for a rejected request. */
async function rejection(call: Promise<unknown>): Promise<string> {
  try {
    await call;
  } catch (error) {
    if (error instanceof ApiException) {
      const body = (typeof error.body === 'string' ? JSON.parse(error.body) : error.body) as {
        message?: string;
      };
      return body.message ?? String(error.body);
    }
    throw error;
  }
  throw new Error('the request was accepted');
}

const create = (name: string, spec: Obj) =>
  objects.createNamespacedCustomObject({ ...ref(), body: agentRun(name, spec) });

describe('AgentRun CRD admission', () => {
  it('accepts a minimal run and applies the safe defaults', async () => {
    const created = (await create('minimal', { agent: 'noop', objective: 'check' })) as {
      spec: Obj;
    };
    expect(created.spec).toEqual({
      agent: 'noop',
      objective: 'check',
      dryRun: true,
      timeoutSeconds: 600,
      backoffLimit: 0,
      cancel: false,
    });
  });

  it.each([
    ['a missing agent', { objective: 'x' }, 'spec.agent: Required value'],
    ['a missing objective', { agent: 'noop' }, 'spec.objective: Required value'],
    [
      'an agent name with capitals',
      { agent: 'Noop', objective: 'x' },
      `spec.agent in body should match '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'`,
    ],
    [
      'an agent name over 128 characters',
      { agent: 'a'.repeat(129), objective: 'x' },
      'spec.agent: Too long: may not be more than 128 bytes',
    ],
    [
      'an objective over 512 characters',
      { agent: 'noop', objective: 'x'.repeat(513) },
      'spec.objective: Too long: may not be more than 512 bytes',
    ],
    [
      'a zero timeout',
      { agent: 'noop', objective: 'x', timeoutSeconds: 0 },
      'spec.timeoutSeconds in body should be greater than or equal to 1',
    ],
    [
      'a negative backoffLimit',
      { agent: 'noop', objective: 'x', backoffLimit: -1 },
      'spec.backoffLimit in body should be greater than or equal to 0',
    ],
    [
      'a requestedBy over 320 characters',
      { agent: 'noop', objective: 'x', requestedBy: 'u'.repeat(321) },
      'spec.requestedBy: Too long: may not be more than 320 bytes',
    ],
    [
      'params that are not an object',
      { agent: 'noop', objective: 'x', params: 'text' },
      'spec.params: Invalid value: "string": spec.params in body must be of type object',
    ],
    [
      'params with too many keys',
      {
        agent: 'noop',
        objective: 'x',
        params: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`k${i}`, i])),
      },
      'spec.params: Too many: 65: must have at most 64 items',
    ],
  ])('rejects %s with a readable message', async (_what, spec, message) => {
    expect(
      await rejection(create(`bad-${Math.random().toString(36).slice(2, 8)}`, spec)),
    ).toContain(message);
  });

  it('keeps the spec immutable, except cancel from false to true', async () => {
    await create('immutable', { agent: 'noop', objective: 'x', params: { a: 1 } });
    const patch = (body: Obj) =>
      objects.patchNamespacedCustomObject({ ...ref(), name: 'immutable', body: [body] });
    expect(
      await rejection(patch({ op: 'replace', path: '/spec/agent', value: 'other' })),
    ).toContain('spec.agent is immutable: create a new AgentRun instead');
    expect(await rejection(patch({ op: 'replace', path: '/spec/params/a', value: 2 }))).toContain(
      'spec.params is immutable',
    );
    expect(
      await rejection(patch({ op: 'add', path: '/spec/requestedBy', value: 'mallory' })),
    ).toContain('spec.requestedBy is immutable');
    await patch({ op: 'replace', path: '/spec/cancel', value: true });
    expect(await rejection(patch({ op: 'replace', path: '/spec/cancel', value: false }))).toContain(
      'spec.cancel cannot be undone',
    );
  });

  it('validates what is written to the status subresource', async () => {
    await create('status', { agent: 'noop', objective: 'x' });
    const message = await rejection(
      objects.patchNamespacedCustomObjectStatus({
        ...ref(),
        name: 'status',
        body: [{ op: 'add', path: '/status', value: { phase: 'Exploded' } }],
      }),
    );
    expect(message).toContain('status.phase: Unsupported value: "Exploded"');
  });
});
