// Webhook agents: the operator's admin configures endpoints (URL, headers with credentials) and
// names them; an AgentRun only picks a name and sends params. The URL and headers never come
// from, nor appear in, the run: plans, errors and logs name the endpoint instead.
//
// The same handler serves AgentDefinition webhooks (agent-definitions.ts), whose URL a namespace
// user chose: with a `vetter`, the URL goes through the address policy (resolved once, every
// address checked, the connection made to those addresses only), as http.check's does.
import { OPERATOR_NAME, OPERATOR_VERSION } from '../version.ts';
import type { Handler, HandlerContext, JsonObject, JsonValue } from './handler.ts';
import { handlerNameProblem, jsonObjectSchema, parseParams } from './handler.ts';
import { excerpt, sendHttp, withDeadline } from './http.ts';
import type { TargetVetter } from './outbound.ts';

/** Responses are artifacts on the run's status; anything larger is a misbehaving endpoint. */
export const WEBHOOK_MAX_RESPONSE_BYTES = 1024 * 1024;

export interface WebhookOptions {
  /** The agent name users put in `spec.agent`. */
  readonly name: string;
  /** http or https, without userinfo (put credentials in `headers`). */
  readonly url: string | URL;
  /** Deadline for the request and its response body. */
  readonly timeoutMs: number;
  /** Sent with every request; may carry credentials, so they are never logged or reported. */
  readonly headers?: Readonly<Record<string, string>> | undefined;
  readonly description?: string | undefined;
  /**
   * Checks the URL's addresses before every request (AgentDefinition webhooks): a refused target
   * fails the attempt with the policy's message and nothing is sent. Absent for the config
   * file's webhooks, whose URLs an admin chose.
   */
  readonly vetter?: TargetVetter | undefined;
  /** Added to every plan (an AgentDefinition's identity and generation). */
  readonly planExtra?: JsonObject | undefined;
}

export type WebhookPlan = {
  endpoint: string;
  dryRun: boolean;
  params: JsonObject;
  [extra: string]: JsonValue;
};

/** The JSON body POSTed to the endpoint. */
export type WebhookRequestBody = {
  runId: string;
  attempt: number;
  objective: string;
  dryRun: boolean;
  plan: WebhookPlan;
  params: JsonObject;
};

export function webhookHandler(options: WebhookOptions): Handler {
  const { name, timeoutMs } = options;
  const nameProblem = handlerNameProblem(name);
  if (nameProblem !== undefined) {
    throw new Error(`webhook name ${JSON.stringify(name)} ${nameProblem}`);
  }
  const parsed = parseUrl(options.url);
  if (parsed === undefined) throw new Error(`webhook "${name}" url is not a valid absolute URL`);
  const url: URL = parsed;
  const urlIssue = webhookUrlProblem(url);
  if (urlIssue !== undefined) throw new Error(`webhook "${name}" url ${urlIssue}`);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    throw new Error(`webhook "${name}" timeoutMs must be a positive integer (got ${timeoutMs})`);
  }
  const headers = requestHeaders(name, options.headers ?? {});
  const what = `webhook "${name}"`;

  async function call(
    objective: string,
    plan: WebhookPlan,
    ctx: HandlerContext,
  ): Promise<JsonObject> {
    const body: WebhookRequestBody = {
      runId: ctx.runId,
      attempt: ctx.attempt,
      objective,
      dryRun: plan.dryRun || ctx.dryRun,
      plan,
      params: plan.params,
    };
    const started = performance.now();
    const vetter = options.vetter;
    const outcome = await withDeadline(what, ctx.signal, timeoutMs, async (signal) => {
      let addresses: readonly string[] | undefined;
      if (vetter) {
        const target = await vetter.vet(url, signal);
        if ('denied' in target) return target;
        addresses = target.addresses;
      }
      return sendHttp(url, {
        method: 'POST',
        headers,
        body: JSON.stringify(body),
        signal,
        addresses,
        maxBodyBytes: WEBHOOK_MAX_RESPONSE_BYTES,
      });
    });
    if ('denied' in outcome) {
      ctx.logger.info({ endpoint: name, denied: outcome.denied.message }, 'webhook refused');
      throw new Error(`${what} not sent: ${outcome.denied.message}`);
    }
    const response = outcome;
    const latencyMs = Math.round(performance.now() - started);
    ctx.logger.debug({ endpoint: name, status: response.status, latencyMs }, 'webhook answered');
    return artifactsFrom(what, response.status, response.body);
  }

  return {
    name,
    description: options.description ?? `POSTs the run to the "${name}" webhook endpoint.`,
    prepare(input) {
      const params = parseParams(jsonObjectSchema, input.params);
      if (!params.ok) return params;
      const plan: WebhookPlan = {
        ...options.planExtra,
        endpoint: name,
        dryRun: input.dryRun,
        params: params.value,
      };
      return { ok: true, plan, execute: (ctx) => call(input.objective, plan, ctx) };
    },
  };
}

/**
 * The artifacts an endpoint's answer amounts to, or an Error saying why there are none: not 2xx,
 * over WEBHOOK_MAX_RESPONSE_BYTES, not JSON, not a JSON object. Exported for the fuzz tests.
 */
export function artifactsFrom(
  what: string,
  status: number,
  body: { readonly text: string; readonly truncated: boolean },
): JsonObject {
  if (status < 200 || status > 299) {
    const hint = status >= 300 && status < 400 ? ' (redirects are not followed)' : '';
    throw new Error(`${what} answered ${status}${hint}: ${excerpt(body.text) || '(empty body)'}`);
  }
  if (body.truncated) {
    throw new Error(
      `${what} answered ${status} with a body over ${WEBHOOK_MAX_RESPONSE_BYTES} bytes; the response must be a smaller JSON object`,
    );
  }
  let parsed: JsonValue;
  try {
    // JSON.parse yields only JSON values.
    parsed = JSON.parse(body.text) as JsonValue;
  } catch {
    throw new Error(
      `${what} answered ${status} with a body that is not JSON; expected a JSON object: ${excerpt(body.text) || '(empty body)'}`,
    );
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    const kind = parsed === null ? 'null' : Array.isArray(parsed) ? 'an array' : typeof parsed;
    throw new Error(`${what} answered ${status} with JSON ${kind}; expected a JSON object`);
  }
  return parsed;
}

// URL's own error quotes the input, which may carry a token in its query.
function parseUrl(value: string | URL): URL | undefined {
  try {
    return new URL(value);
  } catch {
    return undefined;
  }
}

/** Why a webhook URL is unusable, or undefined. Shared with the config file schema. */
export function webhookUrlProblem(url: URL): string | undefined {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    return `must use http or https, not "${url.protocol.slice(0, -1)}"`;
  }
  if (url.username !== '' || url.password !== '') {
    return 'must not contain credentials (user:password@); send them in headers instead';
  }
  return undefined;
}

// RFC 9110 token, and a field value without control characters other than tab.
const headerName = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const headerValue = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Why a header name is unusable, or undefined. */
export function headerNameProblem(name: string): string | undefined {
  if (!headerName.test(name)) return 'must be a valid HTTP header name (a token such as x-api-key)';
  if (reservedHeaders.has(name.toLowerCase())) return 'cannot be configured: the operator sets it';
  return undefined;
}

/** Why a header value is unusable, or undefined. Never quotes the value: it may be a secret. */
export function headerValueProblem(value: string): string | undefined {
  if (!headerValue.test(value)) return 'must not contain control characters such as newlines';
  return undefined;
}

const reservedHeaders = new Set(['content-type', 'content-length', 'host', 'transfer-encoding']);

function requestHeaders(
  name: string,
  configured: Readonly<Record<string, string>>,
): Record<string, string> {
  const headers = new Headers();
  for (const [key, value] of Object.entries(configured)) {
    const problem = headerNameProblem(key) ?? headerValueProblem(value);
    if (problem !== undefined)
      throw new Error(`webhook "${name}" header ${JSON.stringify(key)} ${problem}`);
    headers.set(key, value);
  }
  headers.set('content-type', 'application/json');
  if (!headers.has('accept')) headers.set('accept', 'application/json');
  if (!headers.has('user-agent')) headers.set('user-agent', `${OPERATOR_NAME}/${OPERATOR_VERSION}`);
  // Lower-case names, one each: what node:http sends.
  return Object.fromEntries(headers);
}
