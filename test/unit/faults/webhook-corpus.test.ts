// The webhook-response bad-input corpus (test/corpus/webhook/*.json): each case is served by a
// real HTTP server on 127.0.0.1 to the webhook handler, and its result goes through the same
// path as in the operator (attemptResult, statusAfterAttempt, the audit record). Every case ends
// the attempt as expected, with a readable error, a valid status and an audit row equal to it.
// test/integration/faults/bad-input.test.ts runs the same cases through a running operator.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AgentRun, agentRunSchema, agentRunStatusSchema } from '../../../src/api/agentrun.ts';
import { ConditionType, findCondition } from '../../../src/api/conditions.ts';
import { sanitiseRecord } from '../../../src/audit/audit-record.ts';
import { auditRecord } from '../../../src/controller/audit-records.ts';
import {
  type AttemptResult,
  attemptFailure,
  attemptResult,
  runningStatus,
  statusAfterAttempt,
} from '../../../src/controller/run-status.ts';
import { webhookHandler } from '../../../src/handlers/webhook.ts';
import { silentLogger } from '../../../src/util/log.ts';
import { loadWebhookCorpus, respond } from '../../support/bad-input.ts';

const CASES = loadWebhookCorpus();
const T0 = new Date('2026-03-01T10:00:00.000Z');
let server: Server;
let origin: string;

beforeAll(async () => {
  server = createServer((req, res) => {
    const c = CASES[Number(req.url?.slice(1))];
    req.resume();
    req.on('end', () => (c ? respond(c, res) : res.writeHead(404).end()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

function run(): AgentRun {
  return agentRunSchema.parse({
    apiVersion: 'agents.applylens.io/v1alpha1',
    kind: 'AgentRun',
    metadata: { name: 'hook', namespace: 'corpus', uid: 'uid-hook', resourceVersion: '1' },
    spec: { agent: 'corpus-hook', objective: 'webhook corpus', params: { q: 1 } },
  });
}

describe('the webhook bad-input corpus, through the handler and the status path', () => {
  it('has its cases', () => {
    expect(CASES.length).toBeGreaterThanOrEqual(40);
  });

  it.each(CASES.map((c, index) => [c.id, c, index] as const))('%s', async (_id, c, index) => {
    const handler = webhookHandler({
      name: 'corpus-hook',
      url: `${origin}/${index}`,
      timeoutMs: c.timeoutMs,
    });
    const prepared = handler.prepare({
      objective: 'webhook corpus',
      params: { q: 1 },
      dryRun: true,
    });
    if (!prepared.ok) throw new Error(prepared.message);
    let result: AttemptResult;
    try {
      const ctx = {
        runId: 'uid-hook',
        attempt: 1,
        dryRun: true,
        signal: new AbortController().signal,
        logger: silentLogger(),
      };
      result = attemptResult(await prepared.execute(ctx));
    } catch (error) {
      result = attemptFailure(error);
    }
    const claimed = { ...run(), status: runningStatus(run(), 1, prepared.plan, T0) };
    const status = statusAfterAttempt(claimed, result, new Date(T0.getTime() + 5), {
      baseMs: 100,
      maxMs: 100,
    });
    const condition = findCondition(status.conditions, ConditionType.Succeeded);
    const expected = c.expect.outcome;
    expect(status.phase).toBe(expected.phase);
    if (expected.reason) expect(condition?.reason).toBe(expected.reason);
    if (expected.message) expect(condition?.message).toContain(expected.message);
    if (expected.error) expect(status.error).toContain(expected.error);
    if (c.expect.artifacts) expect(status.artifacts).toMatchObject(c.expect.artifacts);
    expect(agentRunStatusSchema.safeParse(status).success).toBe(true);
    // The row: what the status says, and the full artifacts.
    const artifacts = result.kind === 'succeeded' ? result.artifacts : undefined;
    const row = sanitiseRecord(auditRecord(claimed, status, artifacts), { now: T0 });
    if (!row.ok) throw new Error(row.problem);
    expect(row.record.status).toBe(status.phase?.toLowerCase());
    expect(row.record.reason).toBe(condition?.reason);
    expect(row.record.error).toBe(status.error ?? null);
    expect(row.record.attempts).toBe(1);
  });
});
