import { z } from 'zod';
import { conditionSchema } from './conditions.ts';

/**
 * The AgentRun API, agents.applylens.io/v1alpha1. These zod schemas are the single source of
 * truth: `make manifests` generates crds/agentrun.yaml from them (see crd.ts) and the operator
 * parses every object it reads with them.
 */
export const GROUP = 'agents.applylens.io';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'AgentRun';
export const PLURAL = 'agentruns';
export const SINGULAR = 'agentrun';

/** Handler names: DNS-subdomain-like, so `warehouse.health` and `http.check` are valid. */
export const AGENT_NAME_PATTERN = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;
export const AGENT_NAME_MAX_LENGTH = 128;
export const OBJECTIVE_MAX_LENGTH = 512;
export const REQUESTED_BY_MAX_LENGTH = 320;
export const ERROR_MAX_LENGTH = 2048;
/** Top-level keys of spec.params; the serialised size is checked by the operator at plan time. */
export const PARAMS_MAX_PROPERTIES = 64;
export const PARAMS_MAX_BYTES = 64 * 1024;
/** Nesting of spec.params (objects and arrays), also checked when planned: `{a: {b: 1}}` is 2. */
export const PARAMS_MAX_DEPTH = 32;

const DAY = 24 * 60 * 60;

/** Fields that may never change after create; each gets its own readable admission message. */
const IMMUTABLE_FIELDS = [
  'agent',
  'objective',
  'dryRun',
  'params',
  'requestedBy',
  'timeoutSeconds',
  'backoffLimit',
  'ttlSecondsAfterFinished',
] as const;

function immutableRule(field: (typeof IMMUTABLE_FIELDS)[number]) {
  return {
    rule: `has(self.${field}) == has(oldSelf.${field}) && (!has(self.${field}) || self.${field} == oldSelf.${field})`,
    message: `spec.${field} is immutable: create a new AgentRun instead`,
  };
}

export const agentRunSpecSchema = z
  .object({
    agent: z
      .string()
      .min(1)
      .max(AGENT_NAME_MAX_LENGTH)
      .regex(AGENT_NAME_PATTERN)
      .describe(
        'Name of the handler to run (lowercase letters, digits, "-" and "."), e.g. noop, http.check.',
      ),
    objective: z
      .string()
      .min(1)
      .max(OBJECTIVE_MAX_LENGTH)
      .describe('What the run should achieve, in words; recorded in the audit log.'),
    dryRun: z
      .boolean()
      .default(true)
      .describe('Plan and report without side effects. Defaults to true: safe by default.'),
    params: z
      .record(z.string(), z.unknown())
      .optional()
      .meta({
        'x-kubernetes-preserve-unknown-fields': true,
        maxProperties: PARAMS_MAX_PROPERTIES,
      })
      .describe(
        "Handler parameters, validated by the handler's own schema when the run is planned (at most 64 KiB).",
      ),
    requestedBy: z
      .string()
      .min(1)
      .max(REQUESTED_BY_MAX_LENGTH)
      .optional()
      .describe('Who asked for the run (user or e-mail); recorded in the audit log.'),
    timeoutSeconds: z
      .number()
      .int()
      .min(1)
      .max(7 * DAY)
      .default(600)
      .describe(
        'Deadline for the whole run, retries included, counted from the first start; then Failed/TimedOut.',
      ),
    backoffLimit: z
      .number()
      .int()
      .min(0)
      .max(20)
      .default(0)
      .describe(
        'Retries after a failed attempt. Defaults to 0 because agent side effects are not idempotent.',
      ),
    ttlSecondsAfterFinished: z
      .number()
      .int()
      .min(0)
      .max(365 * DAY)
      .optional()
      .describe(
        'Delete the AgentRun this long after it finished. Beware with GitOps: a deleted run is re-created.',
      ),
    cancel: z
      .boolean()
      .default(false)
      .describe('Set to true to cancel the run: a running handler is aborted. Cannot be undone.'),
  })
  .meta({
    'x-kubernetes-validations': [
      ...IMMUTABLE_FIELDS.map(immutableRule),
      { rule: '!oldSelf.cancel || self.cancel', message: 'spec.cancel cannot be undone' },
    ],
  })
  .describe('What to run. Immutable after create, except that cancel may go from false to true.');
export type AgentRunSpec = z.infer<typeof agentRunSpecSchema>;

export const PHASES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Canceled'] as const;
export const phaseSchema = z.enum(PHASES);
export type Phase = z.infer<typeof phaseSchema>;

const timestamp = () => z.string().meta({ format: 'date-time' });

export const agentRunStatusSchema = z
  .object({
    observedGeneration: z
      .number()
      .int()
      .min(0)
      .optional()
      .describe('The metadata.generation this status reflects.'),
    runId: z.string().max(128).optional().describe('Run id (the AgentRun uid): the audit key.'),
    phase: phaseSchema.optional().describe('Summary for display and field selectors.'),
    conditions: z
      .array(conditionSchema)
      .max(16)
      .optional()
      .meta({ 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] })
      .describe('Succeeded (primary), Ready, Reconciling and Stalled.'),
    attempts: z.number().int().min(0).optional().describe('Attempts started so far.'),
    startedAt: timestamp().optional().describe('When the first attempt started.'),
    finishedAt: timestamp().optional().describe('When the run reached a terminal phase.'),
    durationMs: z
      .number()
      .min(0)
      .optional()
      .describe('finishedAt - startedAt in milliseconds (0 if it never started).'),
    duration: z.string().max(32).optional().describe('durationMs for display, e.g. 1.25s, 3m4s.'),
    nextRetryAt: timestamp()
      .optional()
      .describe('When the next attempt starts, while waiting to retry.'),
    plan: z
      .record(z.string(), z.unknown())
      .optional()
      .meta({ 'x-kubernetes-preserve-unknown-fields': true })
      .describe("The handler's plan for this run."),
    artifacts: z
      .record(z.string(), z.unknown())
      .optional()
      .meta({ 'x-kubernetes-preserve-unknown-fields': true })
      .describe('What the handler returned (a size-capped copy).'),
    error: z
      .string()
      .max(ERROR_MAX_LENGTH)
      .optional()
      .describe('Why the last attempt failed (truncated to 2048 characters).'),
  })
  .describe('Observed state of the run, written by the operator.');
export type AgentRunStatus = z.infer<typeof agentRunStatusSchema>;

/** The object metadata the operator relies on; everything else passes through untouched. */
export const objectMetaSchema = z.looseObject({
  name: z.string(),
  namespace: z.string(),
  uid: z.string(),
  resourceVersion: z.string(),
  generation: z.number().int().optional(),
  creationTimestamp: z.string().optional(),
  deletionTimestamp: z.string().optional(),
  finalizers: z.array(z.string()).optional(),
  labels: z.record(z.string(), z.string()).optional(),
  annotations: z.record(z.string(), z.string()).optional(),
});

/** An AgentRun as the API server returns it (after defaulting). */
export const agentRunSchema = z.object({
  apiVersion: z.literal(API_VERSION),
  kind: z.literal(KIND),
  metadata: objectMetaSchema,
  spec: agentRunSpecSchema,
  status: agentRunStatusSchema.optional(),
});
export type AgentRun = z.infer<typeof agentRunSchema>;

/** Parses an object from the API server; undefined when it is not a valid AgentRun. */
export function parseAgentRun(raw: unknown): AgentRun | undefined {
  const result = agentRunSchema.safeParse(raw);
  return result.success ? result.data : undefined;
}
