// The AgentDefinition webhook address corpus (test/corpus/agent-webhook/): every case through
// judgeDefinition and the real webhook handler, against a real server on 127.0.0.1.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { type AgentDefinition, agentDefinitionSchema } from '../../../src/api/agentdefinition.ts';
import { API_VERSION } from '../../../src/api/agentrun.ts';
import { judgeDefinition } from '../../../src/handlers/agent-definitions.ts';
import {
  agentDefinitionVetter,
  parseHandlersConfig,
} from '../../../src/handlers/handlers-config.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { serve } from '../../support/recording-server.ts';

interface Case {
  readonly name: string;
  readonly url: string;
  readonly dns?: Record<string, string[]>;
  readonly rebindTo?: string;
  readonly allowedHosts?: string[];
  readonly httpCheckAllowedHosts?: string[];
  readonly expect: 'sent' | { readonly refused: string };
}

const corpus = JSON.parse(
  readFileSync(new URL('../../corpus/agent-webhook/addresses.json', import.meta.url), 'utf8'),
) as { cases: Case[] };

function definition(url: string): AgentDefinition {
  return agentDefinitionSchema.parse({
    apiVersion: API_VERSION,
    kind: 'AgentDefinition',
    metadata: {
      name: 'hook',
      namespace: 'team',
      uid: 'd-1',
      resourceVersion: '1',
      generation: 1,
    },
    spec: { webhook: { url, timeoutMs: 5_000 } },
  });
}

describe('AgentDefinition webhooks: where they may go (corpus)', () => {
  it('has cases of both kinds', () => {
    expect(corpus.cases.filter((c) => c.expect === 'sent').length).toBeGreaterThan(1);
    expect(corpus.cases.filter((c) => c.expect !== 'sent').length).toBeGreaterThan(10);
  });

  it.each(corpus.cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const server = await serve((_req, res) =>
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'),
    );
    const port = new URL(server.origin).port;
    const url = c.url.replaceAll('{port}', port);
    const lookups = new Map<string, number>();
    const config = parseHandlersConfig(
      JSON.stringify({
        ...(c.allowedHosts ? { agentDefinitions: { allowedHosts: c.allowedHosts } } : {}),
        ...(c.httpCheckAllowedHosts
          ? { httpCheck: { allowedHosts: c.httpCheckAllowedHosts } }
          : {}),
      }),
      'corpus',
    );
    const vetter = agentDefinitionVetter(config, {
      apiServerHosts: ['10.96.0.1', 'api.cluster.test'],
      resolve: async (host) => {
        const seen = lookups.get(host) ?? 0;
        lookups.set(host, seen + 1);
        if (seen > 0 && c.rebindTo !== undefined) return [c.rebindTo];
        const answer = c.dns?.[host];
        if (answer === undefined) throw new Error(`getaddrinfo ENOTFOUND ${host}`);
        return answer;
      },
    });
    const verdict = judgeDefinition(definition(url), { vetter, reserved: () => false });
    let outcome: string;
    if (!verdict.ready) {
      outcome = `definition refused (${verdict.reason}): ${verdict.message}`;
    } else {
      const prepared = verdict.handler.prepare({ objective: 'o', params: {}, dryRun: false });
      if (!prepared.ok) throw new Error(prepared.message);
      outcome = await prepared
        .execute({
          runId: 'run-1',
          attempt: 1,
          dryRun: false,
          signal: new AbortController().signal,
          logger: silentLogger(),
        })
        .then(
          () => 'sent',
          (error: Error) => error.message,
        );
    }
    if (c.expect === 'sent') {
      expect(outcome).toBe('sent');
      expect(server.seen).toHaveLength(1);
      expect(server.seen[0]?.headers.host).toBe(new URL(url).host);
      // A rebinding answer was never asked for: one lookup, whose addresses were connected to.
      expect(Math.max(0, ...lookups.values())).toBeLessThanOrEqual(1);
    } else {
      expect(outcome).toContain(c.expect.refused);
      expect(outcome).toMatch(/blocked by the operator's agent webhook policy|not sent/);
      expect(server.seen).toHaveLength(0);
    }
  });
});
