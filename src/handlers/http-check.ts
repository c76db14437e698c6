// `http.check`: one HTTP probe against a URL the AgentRun author chooses, judged on status and
// latency. Because the author picks the URL, the operator's admin can restrict hosts.
import { z } from 'zod';
import { OPERATOR_NAME, OPERATOR_VERSION } from '../version.ts';
import type { Handler, HandlerContext, JsonObject } from './handler.ts';
import { defineHandler } from './handler.ts';
import { withDeadline } from './http.ts';

export const HTTP_CHECK_NAME = 'http.check';
export const HTTP_CHECK_MAX_MS = 600_000;

export interface HttpCheckOptions {
  /**
   * Hosts runs may probe: exact hostnames or IP addresses, or `*.example.com` for any subdomain
   * (not the apex). Ports are not restricted. Empty or undefined allows every host, including
   * cluster-internal ones: admins should set it.
   */
  readonly allowedHosts?: readonly string[] | undefined;
}

export type HttpCheckPlan = {
  url: string;
  method: 'GET' | 'HEAD';
  expectedStatus: number[];
  latencyBudgetMs: number;
  timeoutMs: number;
  dryRun: boolean;
};

const statusCode = z.int().min(100).max(599);
const duration = z.int().min(1).max(HTTP_CHECK_MAX_MS);

export function httpCheckHandler(options: HttpCheckOptions = {}): Handler {
  const allowList = compileAllowList(options.allowedHosts ?? []);
  const params = z.strictObject({
    url: z.string().superRefine((value, ctx) => {
      const problem = urlProblem(value, allowList);
      if (problem !== undefined) ctx.addIssue(problem);
    }),
    method: z.enum(['GET', 'HEAD']).default('GET'),
    expectedStatus: z
      .union([statusCode, z.array(statusCode).min(1).max(50)], {
        error: 'must be an HTTP status code (100-599) or a non-empty list of them',
      })
      .default(200),
    latencyBudgetMs: duration.default(2_000),
    timeoutMs: duration.default(10_000),
  });

  return defineHandler({
    name: HTTP_CHECK_NAME,
    description:
      'Probes params.url once; fails unless the status is expected and the latency within budget.',
    params,
    plan: ({ params: p, dryRun }): HttpCheckPlan => ({
      url: new URL(p.url).href,
      method: p.method,
      expectedStatus: typeof p.expectedStatus === 'number' ? [p.expectedStatus] : p.expectedStatus,
      latencyBudgetMs: p.latencyBudgetMs,
      timeoutMs: p.timeoutMs,
      dryRun,
    }),
    run: probe,
  });
}

async function probe(plan: HttpCheckPlan, ctx: HandlerContext): Promise<JsonObject> {
  // Either flag is enough: a dry run must never send the request.
  if (plan.dryRun || ctx.dryRun) {
    const { url, method, expectedStatus, latencyBudgetMs, timeoutMs } = plan;
    return {
      dryRun: true,
      wouldRequest: { url, method, expectedStatus, latencyBudgetMs, timeoutMs },
    };
  }

  const what = `${plan.method} ${plan.url}`;
  const { status, latencyMs } = await withDeadline(
    what,
    ctx.signal,
    plan.timeoutMs,
    async (signal) => {
      const started = performance.now();
      const response = await fetch(plan.url, {
        method: plan.method,
        signal,
        // Following redirects would let an allowed host send the probe to any other host.
        redirect: 'manual',
        headers: { 'user-agent': `${OPERATOR_NAME}/${OPERATOR_VERSION} (http.check)` },
      });
      // Latency is time to the response headers: the body is not part of the check.
      const elapsed = Math.round(performance.now() - started);
      await response.body?.cancel();
      return { status: response.status, latencyMs: elapsed };
    },
  );

  const ok = plan.expectedStatus.includes(status);
  const withinBudget = latencyMs <= plan.latencyBudgetMs;
  ctx.logger.debug({ url: plan.url, status, latencyMs, ok, withinBudget }, 'http.check probe done');
  const problems: string[] = [];
  if (!ok) problems.push(`answered ${status}, expected ${describeExpected(plan.expectedStatus)}`);
  if (!withinBudget) {
    problems.push(`took ${latencyMs} ms, over the ${plan.latencyBudgetMs} ms latency budget`);
  }
  if (problems.length > 0) throw new Error(`${what} ${problems.join(' and ')}`);
  return { status, latencyMs, ok, withinBudget };
}

function describeExpected(expected: readonly number[]): string {
  return expected.length === 1 ? String(expected[0]) : `one of ${expected.join(', ')}`;
}

type AllowList = { readonly entries: readonly string[]; allows(hostname: string): boolean };

function compileAllowList(entries: readonly string[]): AllowList {
  const exact = new Set<string>();
  const suffixes: string[] = [];
  for (const entry of entries) {
    const problem = allowedHostProblem(entry);
    if (problem !== undefined) {
      throw new Error(`http.check allowedHosts entry ${JSON.stringify(entry)} ${problem}`);
    }
    const host = normalizeHost(entry);
    if (host.startsWith('*.')) suffixes.push(host.slice(1));
    else exact.add(host);
  }
  return {
    entries,
    allows(hostname) {
      if (entries.length === 0) return true;
      const host = normalizeHost(hostname);
      return exact.has(host) || suffixes.some((suffix) => host.endsWith(suffix));
    },
  };
}

const hostnameEntry = /^(\*\.)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/i;
const ipv6Entry = /^\[?[0-9a-f:.]*:[0-9a-f:.]*\]?$/i;

/** Why an allow-list entry is unusable, or undefined. Shared with the config file schema. */
export function allowedHostProblem(entry: string): string | undefined {
  if (hostnameEntry.test(entry) || ipv6Entry.test(entry)) return undefined;
  return 'must be a hostname, an IP address or "*.domain" (no scheme, port or path)';
}

/** Lowercase, no IPv6 brackets, no trailing root dot: the form both sides are compared in. */
function normalizeHost(host: string): string {
  let h = host.toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

const MAX_LISTED_HOSTS = 20;

function urlProblem(value: string, allowList: AllowList): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'must be an absolute http:// or https:// URL';
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return `scheme "${url.protocol.slice(0, -1)}" is not supported; use http or https`;
  }
  if (url.username !== '' || url.password !== '') {
    return 'must not contain credentials (user:password@): the URL is stored in the run status';
  }
  if (!allowList.allows(url.hostname)) {
    const listed = allowList.entries.slice(0, MAX_LISTED_HOSTS).join(', ');
    const more =
      allowList.entries.length > MAX_LISTED_HOSTS
        ? ` and ${allowList.entries.length - MAX_LISTED_HOSTS} more`
        : '';
    return `host "${url.hostname}" is not allowed by the operator's http.check allow-list (allowed: ${listed}${more})`;
  }
  return undefined;
}
