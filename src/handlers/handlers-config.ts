// The operator's handler config file (YAML or JSON): which webhook agents exist and which hosts
// http.check may probe. It is admin input and may hold credentials in webhook headers, so nothing
// here logs it, and error messages name fields, never header values.
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { yaml } from '../util/yaml.ts';
import { AGENT_WEBHOOK_POLICY } from './address-policy.ts';
import type { Handler, JsonObject } from './handler.ts';
import { handlerNameProblem } from './handler.ts';
import { redactUrl } from './http.ts';
import { allowedHostProblem, HTTP_CHECK_NAME, httpCheckHandler } from './http-check.ts';
import { errorMessage, formatIssues } from './messages.ts';
import { noopHandler } from './noop.ts';
import { createTargetVetter, type Resolver, type TargetVetter } from './outbound.ts';
import {
  headerNameProblem,
  headerValueProblem,
  webhookHandler,
  webhookUrlProblem,
} from './webhook.ts';

export const DEFAULT_WEBHOOK_TIMEOUT_MS = 30_000;

const MAX_WEBHOOK_TIMEOUT_MS = 3_600_000;
const BUILTIN_NAMES: readonly string[] = [noopHandler.name, HTTP_CHECK_NAME];

/** Adapts a `(value) => problem | undefined` check to zod. */
function problemCheck(check: (value: string) => string | undefined) {
  return (value: string, ctx: z.core.$RefinementCtx<string>): void => {
    const problem = check(value);
    if (problem !== undefined) ctx.addIssue(problem);
  };
}

function urlCheck(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'must be an absolute http:// or https:// URL';
  }
  return webhookUrlProblem(url);
}

const webhookConfig = z.strictObject({
  name: z.string().superRefine(problemCheck(handlerNameProblem)),
  url: z.string().superRefine(problemCheck(urlCheck)),
  timeoutMs: z.int().min(1).max(MAX_WEBHOOK_TIMEOUT_MS).default(DEFAULT_WEBHOOK_TIMEOUT_MS),
  headers: z
    .record(
      z.string().superRefine(problemCheck(headerNameProblem)),
      z.string('must be a string').superRefine(problemCheck(headerValueProblem)),
    )
    .optional(),
  description: z.string().min(1).max(1024).optional(),
});

const handlersConfigSchema = z
  .strictObject({
    webhooks: z.array(webhookConfig).optional(),
    httpCheck: z
      .strictObject({
        allowedHosts: z.array(z.string().superRefine(problemCheck(allowedHostProblem))).optional(),
      })
      .optional(),
    // Where the webhooks of AgentDefinitions may go beyond public addresses (docs/agents.md).
    agentDefinitions: z
      .strictObject({
        allowedHosts: z.array(z.string().superRefine(problemCheck(allowedHostProblem))).optional(),
      })
      .optional(),
  })
  .superRefine((config, ctx) => {
    // Caught here rather than by the registry so the message can point at the entry.
    const seen = new Set<string>();
    for (const [index, webhook] of (config.webhooks ?? []).entries()) {
      const path = ['webhooks', index, 'name'];
      if (BUILTIN_NAMES.includes(webhook.name)) {
        ctx.addIssue({ code: 'custom', path, message: `"${webhook.name}" is a built-in agent` });
      } else if (seen.has(webhook.name)) {
        ctx.addIssue({ code: 'custom', path, message: `"${webhook.name}" is used twice` });
      }
      seen.add(webhook.name);
    }
  });

export type HandlersConfig = z.output<typeof handlersConfigSchema>;
export type WebhookConfig = z.output<typeof webhookConfig>;

/** Names the file, then every offending field, e.g. `... handlers.yaml: webhooks[0].url: ...`. */
export class HandlersConfigError extends Error {
  override readonly name = 'HandlersConfigError';
  readonly source: string;

  constructor(source: string, detail: string, options?: ErrorOptions) {
    super(`invalid handlers config ${source}: ${detail}`, options);
    this.source = source;
  }
}

const MAX_CONFIG_ERROR = 4096;

/** Reads and validates the config file; throws HandlersConfigError with an actionable message. */
export async function loadHandlersConfig(path: string): Promise<HandlersConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new HandlersConfigError(path, `cannot read the file: ${errorMessage(error)}`, {
      cause: error,
    });
  }
  return parseHandlersConfig(text, path);
}

/** Parses YAML or JSON text (JSON is YAML); `source` names the input in errors. */
export function parseHandlersConfig(text: string, source: string): HandlersConfig {
  const document = yaml().parseDocument(text);
  const [syntaxError] = document.errors;
  if (syntaxError !== undefined) {
    // yaml's messages carry the line and column and a pointer at the offending text.
    throw new HandlersConfigError(source, syntaxError.message, { cause: syntaxError });
  }
  const value: unknown = document.toJS() ?? {};
  const result = handlersConfigSchema.safeParse(value);
  if (!result.success) {
    throw new HandlersConfigError(source, formatIssues('', result.error.issues, MAX_CONFIG_ERROR));
  }
  return result.data;
}

/** What the built-ins need from the operator rather than from the config file. */
export interface BuiltinHandlersOptions {
  /**
   * The API server's addresses or hostnames, which http.check always refuses (see
   * `apiServerHosts` in src/operator.ts): KUBERNETES_SERVICE_HOST and the kubeconfig's server.
   */
  readonly apiServerHosts?: readonly string[] | undefined;
}

/** The handlers an operator registers by default: noop, http.check, and one per webhook. */
export function builtinHandlers(
  config: HandlersConfig = {},
  options: BuiltinHandlersOptions = {},
): Handler[] {
  return [
    noopHandler,
    httpCheckHandler({
      allowedHosts: config.httpCheck?.allowedHosts,
      apiServerHosts: options.apiServerHosts,
    }),
    ...(config.webhooks ?? []).map((webhook) => webhookHandler(webhook)),
  ];
}

/**
 * The address checks of AgentDefinition webhooks: the http.check policy's rules with the
 * config's own allow-list, `agentDefinitions.allowedHosts` (http.check's list opens nothing here),
 * and the API server always refused.
 */
export function agentDefinitionVetter(
  config: HandlersConfig = {},
  options: BuiltinHandlersOptions & { readonly resolve?: Resolver | undefined } = {},
): TargetVetter {
  return createTargetVetter({
    ...AGENT_WEBHOOK_POLICY,
    allowedHosts: config.agentDefinitions?.allowedHosts,
    apiServerHosts: options.apiServerHosts,
    resolve: options.resolve,
  });
}

/**
 * What the config configures, safe to log at start-up: webhook URLs without userinfo, query or
 * fragment, header names without values.
 */
export function summarizeHandlersConfig(config: HandlersConfig): JsonObject {
  return {
    webhooks: (config.webhooks ?? []).map((webhook) => ({
      name: webhook.name,
      url: redactUrl(new URL(webhook.url)),
      timeoutMs: webhook.timeoutMs,
      headerNames: Object.keys(webhook.headers ?? {}),
    })),
    httpCheckAllowedHosts: config.httpCheck?.allowedHosts ?? [],
    agentDefinitionsAllowedHosts: config.agentDefinitions?.allowedHosts ?? [],
  };
}
