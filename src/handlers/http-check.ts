// `http.check`: one HTTP probe against a URL the AgentRun author chooses, judged on status and
// latency. Because the author picks the URL and the probe leaves from inside the cluster, every
// target goes through the address policy (address-policy.ts): the name is resolved once, every
// address it resolved to is checked, and the connection goes to those checked addresses only.
import { z } from 'zod';
import { OPERATOR_NAME, OPERATOR_VERSION } from '../version.ts';
import type { HostVerdict } from './address-policy.ts';
import type { Handler, HandlerContext, JsonObject } from './handler.ts';
import { defineHandler } from './handler.ts';
import { sendHttp, withDeadline } from './http.ts';
import { createTargetVetter, type Resolver } from './outbound.ts';

export { allowedHostProblem } from './address-policy.ts';

export const HTTP_CHECK_NAME = 'http.check';
export const HTTP_CHECK_MAX_MS = 600_000;

export type { Resolver } from './outbound.ts';

export interface HttpCheckOptions {
  /**
   * Who may be probed beyond public addresses: exact hostnames, `*.example.com` for any subdomain
   * (not the apex), IP addresses and CIDRs such as `10.0.0.0/8`. Ports are not restricted.
   * Empty or undefined: public addresses only. When set, only what it names. Loopback,
   * link-local, metadata and the API server open only to an IP or CIDR entry inside their range.
   */
  readonly allowedHosts?: readonly string[] | undefined;
  /**
   * The Kubernetes API server's addresses or hostnames (the in-cluster KUBERNETES_SERVICE_HOST,
   * the host of the kubeconfig's server); names are resolved at each probe. Always denied.
   */
  readonly apiServerHosts?: readonly string[] | undefined;
  /** How probe targets are resolved; default `dns.lookup` with every address. For tests. */
  readonly resolve?: Resolver | undefined;
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
  const vetter = createTargetVetter({
    allowedHosts: options.allowedHosts,
    apiServerHosts: options.apiServerHosts,
    resolve: options.resolve,
  });
  const { policy } = vetter;

  const params = z.strictObject({
    url: z.string().superRefine((value, ctx) => {
      const problem = urlProblem(value, (hostname) => policy.checkHost(hostname));
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
    const url = new URL(plan.url);
    const outcome = await withDeadline(what, ctx.signal, plan.timeoutMs, async (signal) => {
      // Latency counts from before the lookup, as it did when fetch did the lookup itself.
      const started = performance.now();
      const target = await vetter.vet(url, signal);
      if ('denied' in target) return target;
      const { status } = await sendHttp(url, {
        method: plan.method,
        headers: { 'user-agent': `${OPERATOR_NAME}/${OPERATOR_VERSION} (http.check)` },
        signal,
        addresses: target.addresses,
      });
      // Latency is time to the response headers: the body is not part of the check.
      return { status, latencyMs: Math.round(performance.now() - started) };
    });
    if ('denied' in outcome) {
      const { message } = outcome.denied;
      ctx.logger.info({ url: plan.url, denied: message }, 'http.check target refused by policy');
      throw new Error(`${what} not sent: ${message}`);
    }

    const { status, latencyMs } = outcome;
    const ok = plan.expectedStatus.includes(status);
    const withinBudget = latencyMs <= plan.latencyBudgetMs;
    ctx.logger.debug(
      { url: plan.url, status, latencyMs, ok, withinBudget },
      'http.check probe done',
    );
    const problems: string[] = [];
    if (!ok) problems.push(`answered ${status}, expected ${describeExpected(plan.expectedStatus)}`);
    if (!withinBudget) {
      problems.push(`took ${latencyMs} ms, over the ${plan.latencyBudgetMs} ms latency budget`);
    }
    if (problems.length > 0) throw new Error(`${what} ${problems.join(' and ')}`);
    return { status, latencyMs, ok, withinBudget };
  }

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

function describeExpected(expected: readonly number[]): string {
  return expected.length === 1 ? String(expected[0]) : `one of ${expected.join(', ')}`;
}

function urlProblem(
  value: string,
  checkHost: (hostname: string) => HostVerdict,
): string | undefined {
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
  // Addresses, and names the allow-list can never admit, are decided now; other names when run.
  const verdict = checkHost(url.hostname);
  if (verdict.allowed === false) return verdict.message;
  return undefined;
}
