import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  agentDefinitionCrd,
  agentDefinitionCrdYaml,
  agentRunCrd,
  agentRunCrdYaml,
  toStructural,
} from '../../../src/api/crd.ts';

describe('AgentRun CRD', () => {
  it('is committed exactly as generated from the zod schemas (run `make manifests`)', () => {
    const committed = readFileSync(new URL('../../../crds/agentrun.yaml', import.meta.url), 'utf8');
    expect(committed).toBe(agentRunCrdYaml());
  });

  it('has no additionalProperties anywhere (structural schema)', () => {
    expect(JSON.stringify(agentRunCrd())).not.toContain('additionalProperties');
  });

  it('keeps defaults, CEL rules and preserve-unknown-fields from the schemas', () => {
    const text = JSON.stringify(agentRunCrd());
    expect(text).toContain('"dryRun":{"default":true');
    expect(text).toContain('"x-kubernetes-validations"');
    expect(text).toContain('"x-kubernetes-preserve-unknown-fields":true');
  });
});

describe('AgentDefinition CRD', () => {
  it('is committed exactly as generated from the zod schemas (run `make manifests`)', () => {
    const committed = readFileSync(
      new URL('../../../crds/agentdefinition.yaml', import.meta.url),
      'utf8',
    );
    expect(committed).toBe(agentDefinitionCrdYaml());
  });

  it('has no additionalProperties except the maps of resource quantities', () => {
    const text = JSON.stringify(agentDefinitionCrd());
    // requests/limits are maps (additionalProperties with a schema is structural); nothing else.
    expect(text.match(/additionalProperties/g)).toHaveLength(2);
  });

  it('names: its own plural, short names, and the agents category it shares with AgentRun', () => {
    const { names } = agentDefinitionCrd()['spec'] as { names: Record<string, unknown> };
    expect(names).toEqual({
      kind: 'AgentDefinition',
      listKind: 'AgentDefinitionList',
      plural: 'agentdefinitions',
      singular: 'agentdefinition',
      shortNames: ['agentdef', 'agentdefs'],
      categories: ['agents'],
    });
    // A plural "agents" would shadow the category: `kubectl get agents` must list both kinds.
    const runNames = (agentRunCrd()['spec'] as { names: Record<string, unknown> }).names;
    expect(runNames['categories']).toEqual(['agents']);
    expect([names['plural'], runNames['plural']]).not.toContain('agents');
  });

  it('refuses both or neither kind with a readable CEL rule', () => {
    const text = JSON.stringify(agentDefinitionCrd());
    expect(text).toContain('"rule":"has(self.webhook) != has(self.job)"');
    expect(text).toContain('exactly one of spec.webhook or spec.job must be set');
  });
});

describe('toStructural', () => {
  it('drops what the API server would reject or zod adds as noise', () => {
    expect(
      toStructural({
        $schema: 'x',
        type: 'object',
        properties: {
          p: {
            type: 'object',
            'x-kubernetes-preserve-unknown-fields': true,
            additionalProperties: {},
          },
          t: { type: 'string', format: 'date-time', pattern: '^zod$' },
          n: {
            type: 'integer',
            minimum: Number.MIN_SAFE_INTEGER,
            maximum: Number.MAX_SAFE_INTEGER,
          },
          m: { type: 'integer', minimum: 1, maximum: 5 },
        },
        required: ['p'],
      }),
    ).toEqual({
      type: 'object',
      properties: {
        p: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true },
        t: { type: 'string', format: 'date-time' },
        n: { type: 'integer' },
        m: { type: 'integer', minimum: 1, maximum: 5 },
      },
      required: ['p'],
    });
  });
});
