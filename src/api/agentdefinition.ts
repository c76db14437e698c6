import { z } from 'zod';
import { API_VERSION, objectMetaSchema } from './agentrun.ts';
import { conditionSchema } from './conditions.ts';

/**
 * The AgentDefinition API, agents.applylens.io/v1alpha1: an agent registered with kubectl (or
 * GitOps) rather than in the operator's code or config file. A run in namespace N that names
 * `spec.agent: X` runs the AgentDefinition X of namespace N, unless X is a built-in or
 * config-file agent (those are the operator's and cannot be shadowed). docs/agents.md.
 *
 * Like agentrun.ts, these zod schemas are the source of crds/agentdefinition.yaml (crd.ts).
 * The schemas start narrow on purpose: widening a CRD schema later is compatible, narrowing it
 * would strand stored objects.
 */
export const DEFINITION_KIND = 'AgentDefinition';
/** Not `agents`: that would shadow the `agents` category, which lists runs and definitions. */
export const DEFINITION_PLURAL = 'agentdefinitions';
export const DEFINITION_SINGULAR = 'agentdefinition';
export const DEFINITION_SHORT_NAMES = ['agentdef', 'agentdefs'];

export const DESCRIPTION_MAX_LENGTH = 1024;
export const WEBHOOK_URL_MAX_LENGTH = 2048;
/** As the config file's webhooks: `timeoutMs` 1 ms to 1 h, default 30 s. */
export const DEFINITION_WEBHOOK_TIMEOUT_MS_MAX = 3_600_000;
export const DEFINITION_WEBHOOK_TIMEOUT_MS_DEFAULT = 30_000;

export const definitionWebhookSchema = z
  .object({
    url: z
      .string()
      .min(1)
      .max(WEBHOOK_URL_MAX_LENGTH)
      .meta({
        'x-kubernetes-validations': [
          {
            rule: "isURL(self) && (url(self).getScheme() == 'http' || url(self).getScheme() == 'https')",
            message: 'spec.webhook.url must be an absolute http:// or https:// URL',
          },
        ],
      })
      .describe(
        "Where the operator POSTs each run (the webhook contract of docs/handlers.md). Goes through the operator's address policy: loopback, link-local, cloud metadata and the API server are refused; private addresses only when the admin allows them.",
      ),
    timeoutMs: z
      .number()
      .int()
      .min(1)
      .max(DEFINITION_WEBHOOK_TIMEOUT_MS_MAX)
      .default(DEFINITION_WEBHOOK_TIMEOUT_MS_DEFAULT)
      .describe('Deadline of one request and its answer, in milliseconds (default 30000).'),
  })
  .describe(
    'A webhook agent: each attempt POSTs the run to url. No credentials in this version (docs/agents.md says why).',
  );
export type DefinitionWebhook = z.infer<typeof definitionWebhookSchema>;

/** An environment variable name, as the kubelet accepts them (C identifier-like, no "="). */
const ENV_NAME_PATTERN = /^[-._a-zA-Z][-._a-zA-Z0-9]*$/;
/** A resource quantity such as 500m, 1Gi, 2 (resource.Quantity's grammar, simplified). */
const QUANTITY_PATTERN =
  /^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][-+]?[0-9]+))?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const quantity = z
  .union([z.int().min(0), z.string().max(64).regex(QUANTITY_PATTERN)])
  .meta({ 'x-kubernetes-int-or-string': true });
const resourceList = z.record(z.string().min(1).max(253), quantity).meta({ maxProperties: 16 });

export const definitionJobSchema = z
  .object({
    image: z.string().min(1).max(1024).describe('The container image of the agent.'),
    command: z
      .array(z.string().max(4096))
      .max(64)
      .optional()
      .describe("The container's entrypoint; the image's own when absent."),
    args: z.array(z.string().max(4096)).max(256).optional().describe("The entrypoint's arguments."),
    env: z
      .array(
        z.object({
          name: z.string().min(1).max(256).regex(ENV_NAME_PATTERN),
          value: z.string().max(32_768).default(''),
        }),
      )
      .max(64)
      .optional()
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['name'] })
      .describe('Plain environment variables (no valueFrom in this version).'),
    resources: z
      .object({ requests: resourceList.optional(), limits: resourceList.optional() })
      .optional()
      .describe('Compute resources of the container, as in a Pod.'),
    serviceAccountName: z
      .string()
      .min(1)
      .max(253)
      .regex(DNS_SUBDOMAIN)
      .optional()
      .describe("The pod's ServiceAccount, in the definition's namespace."),
  })
  .describe(
    'A container-image agent, run as a batch/v1 Job per attempt by the Job executor (not in this operator version: runs end Failed/ExecutorUnavailable).',
  );
export type DefinitionJob = z.infer<typeof definitionJobSchema>;

export const agentDefinitionSpecSchema = z
  .object({
    description: z
      .string()
      .max(DESCRIPTION_MAX_LENGTH)
      .optional()
      .describe('One line about what the agent does; shown by kubectl get -o wide.'),
    webhook: definitionWebhookSchema.optional(),
    job: definitionJobSchema.optional(),
    paramsSchema: z
      .record(z.string(), z.unknown())
      .optional()
      .meta({ 'x-kubernetes-preserve-unknown-fields': true })
      .describe(
        'A JSON Schema of spec.params, documentation only in this version: the operator does not validate params with it yet.',
      ),
  })
  .meta({
    'x-kubernetes-validations': [
      {
        rule: 'has(self.webhook) != has(self.job)',
        message: 'exactly one of spec.webhook or spec.job must be set',
      },
    ],
  })
  .describe('How the agent runs: exactly one of webhook or job.');
export type AgentDefinitionSpec = z.infer<typeof agentDefinitionSpecSchema>;

export const agentDefinitionStatusSchema = z
  .object({
    observedGeneration: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('The metadata.generation this status reflects.'),
    executor: z
      .enum(['webhook', 'job'])
      .optional()
      .describe('Which executor runs this agent (for display).'),
    conditions: z
      .array(conditionSchema)
      .max(8)
      .optional()
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] })
      .describe('Ready: whether runs naming this agent run it.'),
  })
  .describe('Observed state of the definition, written by the operator.');
export type AgentDefinitionStatus = z.infer<typeof agentDefinitionStatusSchema>;

/** Reasons of an AgentDefinition's `Ready` condition. */
export const DefinitionReason = {
  /** True: runs in this namespace naming the agent run this definition. */
  Accepted: 'Accepted',
  /** False: a built-in or config-file agent has the name; runs get that agent instead. */
  NameTaken: 'NameTaken',
  /** False: the spec passed admission but cannot work (e.g. a URL with user:password@). */
  InvalidSpec: 'InvalidSpec',
  /** False: the URL is an address the operator's policy refuses. */
  AddressNotAllowed: 'AddressNotAllowed',
  /** False: no executor of this kind in this operator (the Job executor is not built yet). */
  ExecutorUnavailable: 'ExecutorUnavailable',
} as const;
export type DefinitionReason = (typeof DefinitionReason)[keyof typeof DefinitionReason];

export const agentDefinitionSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(DEFINITION_KIND),
  metadata: objectMetaSchema,
  spec: agentDefinitionSpecSchema,
  status: agentDefinitionStatusSchema.optional(),
});
export type AgentDefinition = z.infer<typeof agentDefinitionSchema>;

/** Parses an object from the API server; undefined when it is not a valid AgentDefinition. */
export function parseAgentDefinition(raw: unknown): AgentDefinition | undefined {
  const result = agentDefinitionSchema.safeParse(raw);
  return result.success ? result.data : undefined;
}

/** Which executor a definition names. */
export function executorOf(spec: AgentDefinitionSpec): 'webhook' | 'job' {
  return spec.job !== undefined && spec.webhook === undefined ? 'job' : 'webhook';
}
