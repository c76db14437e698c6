// The bad-input corpus of http.check targets (test/corpus/http-check/*.json), run through the
// address policy the handler uses. One file per category; each case is
// { name, input: { url, resolved?, allowedHosts?, apiServer? }, expect: { outcome, class? } }:
// `resolved` is what DNS answers for a name (required for names the policy must resolve),
// `apiServer` the API server's addresses. Add cases to the files; this test needs no change.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import type { AddressClass, Verdict } from '../../../src/handlers/address-policy.ts';
import { ADDRESS_CLASSES, createAddressPolicy } from '../../../src/handlers/address-policy.ts';

const CORPUS = join(import.meta.dirname, '../../corpus/http-check');

const caseSchema = z.strictObject({
  name: z.string().min(1),
  input: z.strictObject({
    url: z.string(),
    resolved: z.array(z.string()).optional(),
    allowedHosts: z.array(z.string()).optional(),
    apiServer: z.array(z.string()).optional(),
  }),
  expect: z.strictObject({
    outcome: z.enum(['allow', 'deny', 'invalid']),
    class: z.enum(ADDRESS_CLASSES).optional(),
  }),
});
const fileSchema = z.strictObject({
  description: z.string().min(1),
  cases: z.array(caseSchema).min(1),
});
type Case = z.output<typeof caseSchema>;

type Outcome = { outcome: 'allow' | 'deny' | 'invalid'; class?: AddressClass; message?: string };

/** What the handler would decide: the URL as it parses it, then the policy. */
function evaluate(input: Case['input']): Outcome {
  let url: URL;
  try {
    url = new URL(input.url);
  } catch {
    return { outcome: 'invalid' };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { outcome: 'invalid' };
  if (url.username !== '' || url.password !== '') return { outcome: 'invalid' };
  const policy = createAddressPolicy({
    allowedHosts: input.allowedHosts,
    apiServerAddresses: input.apiServer,
  });
  const first = policy.checkHost(url.hostname);
  let verdict: Verdict;
  if (first.allowed === 'resolve') {
    if (input.resolved === undefined) {
      throw new Error(`${input.url} needs resolving: give the case "resolved" addresses`);
    }
    verdict = policy.checkResolved(url.hostname, input.resolved);
  } else {
    verdict = first;
  }
  if (verdict.allowed) return { outcome: 'allow' };
  return {
    outcome: 'deny',
    message: verdict.message,
    ...(verdict.class === undefined ? {} : { class: verdict.class }),
  };
}

const files = readdirSync(CORPUS)
  .filter((f) => f.endsWith('.json'))
  .sort();

describe('http.check SSRF corpus', () => {
  it('has its category files', () => {
    expect(files.length).toBeGreaterThanOrEqual(5);
  });

  for (const file of files) {
    const parsed = fileSchema.parse(JSON.parse(readFileSync(join(CORPUS, file), 'utf8')));
    describe(file, () => {
      it('names each case once', () => {
        const names = parsed.cases.map((c) => c.name);
        expect(new Set(names).size).toBe(names.length);
      });

      it.each(parsed.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
        const got = evaluate(c.input);
        expect({ outcome: got.outcome, class: got.class }).toEqual({
          outcome: c.expect.outcome,
          class: c.expect.class ?? (c.expect.outcome === 'deny' ? got.class : undefined),
        });
        // A refusal always says it is the policy or the allow-list, and what to change.
        if (got.outcome === 'deny') expect(got.message).toMatch(/http\.check (policy|allow-list)/);
      });
    });
  }
});
