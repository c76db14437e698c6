import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { agentRunCrd, agentRunCrdYaml, toStructural } from '../../../src/api/crd.ts';

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
