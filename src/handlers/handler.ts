// The handler contract: what the controller may ask of an agent handler, and nothing more.
// Handlers never see the AgentRun object; they get validated params, a plan, and a HandlerContext.

import { z } from 'zod';
import { AGENT_NAME_MAX_LENGTH, AGENT_NAME_PATTERN } from '../api/agentrun.ts';
import type { Logger } from '../util/log.ts';
import { ELLIPSIS, truncate } from '../util/text.ts';
import { errorMessage, formatIssues } from './messages.ts';

export type JsonValue = null | boolean | number | string | JsonValue[] | JsonObject;
export type JsonObject = { [key: string]: JsonValue };

/** Validates any JSON value; for params that are passed through rather than interpreted. */
export const jsonValueSchema: z.ZodType<JsonValue> = z.lazy(() =>
  z.union(
    [z.string(), z.number(), z.boolean(), z.null(), z.array(jsonValueSchema), jsonObjectSchema],
    { error: 'must be JSON (a string, number, boolean, null, array or object)' },
  ),
);

/** Validates a JSON object. */
export const jsonObjectSchema: z.ZodType<JsonObject> = z.record(z.string(), jsonValueSchema, {
  error: 'must be a JSON object',
});

/**
 * Handler (agent) names, as written in `spec.agent`: lowercase DNS-subdomain-like, so they are
 * safe as metric label values and in kubectl output. The AgentRun API defines them, so that a
 * name the CRD admits is exactly a name a handler can have.
 */
export const HANDLER_NAME_PATTERN = AGENT_NAME_PATTERN.source;
export const HANDLER_NAME_MAX_LENGTH = AGENT_NAME_MAX_LENGTH;
const handlerNameRegex = AGENT_NAME_PATTERN;

/** Why `name` is not a valid handler name, or undefined when it is. */
export function handlerNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'must not be empty';
  if (name.length > HANDLER_NAME_MAX_LENGTH) {
    return `must be at most ${HANDLER_NAME_MAX_LENGTH} characters (got ${name.length})`;
  }
  if (!handlerNameRegex.test(name)) {
    return 'must be lowercase letters, digits, "-" and ".", starting and ending with a letter or digit';
  }
  return undefined;
}

/** What a handler's `run` receives. `signal` aborts on cancellation, deletion or the run deadline. */
export interface HandlerContext {
  readonly runId: string;
  /** 1 for the first execution of this run, incremented on each retry. */
  readonly attempt: number;
  readonly dryRun: boolean;
  readonly signal: AbortSignal;
  /** The run's child logger (the controller binds the run's identity); never log secrets. */
  readonly logger: Logger;
}

export interface PlanInput<P> {
  readonly objective: string;
  readonly params: P;
  readonly dryRun: boolean;
}

/**
 * A typed handler. `plan` is pure and synchronous: its output is the "planner output" stored on
 * the run's status and audit row, so it must be JSON and should not contain secrets. `run` gets
 * only the plan: put into the plan everything the execution needs.
 */
export interface HandlerDefinition<P, Plan extends JsonObject> {
  readonly name: string;
  /** One line for `names()` listings and docs. */
  readonly description: string;
  /** Validates the run's `spec.params` (absent params are validated as `{}`). */
  readonly params: z.ZodType<P>;
  /** Throwing here rejects the run as InvalidParams with the error's message. */
  plan(input: PlanInput<P>): Plan;
  /** Returns the artifacts; throwing fails the attempt. Must honour `ctx.signal`. */
  run(plan: Plan, ctx: HandlerContext): Promise<JsonObject>;
}

export interface PrepareInput {
  readonly objective: string;
  readonly params: unknown;
  readonly dryRun: boolean;
}

export type Prepared =
  | {
      readonly ok: true;
      readonly plan: JsonObject;
      execute(ctx: HandlerContext): Promise<JsonObject>;
    }
  | InvalidParams;

/** The run's params cannot work: a terminal failure the user fixes by editing `spec.params`. */
export type InvalidParams = {
  readonly ok: false;
  readonly reason: 'InvalidParams';
  readonly message: string;
};

/** A pod spec as an AgentDefinition describes it: the first container is the agent. */
export type PodSpec = Readonly<Record<string, unknown>> & {
  readonly containers: readonly Readonly<Record<string, unknown>>[];
};

/**
 * An agent that runs as a Kubernetes Job per attempt (an AgentDefinition of kind job): the
 * operator's Job executor creates the Job from this and follows it, and never calls `execute`.
 */
export interface JobTemplate {
  readonly podSpec: PodSpec;
}

/** The type-erased handler the registry and controller work with. */
export interface Handler {
  readonly name: string;
  readonly description: string;
  /** Validates and plans without side effects; never throws for bad user input. */
  prepare(input: PrepareInput): Prepared;
  /** Set for Job agents: each attempt runs as a Job built from it. */
  readonly job?: JobTemplate | undefined;
}

/** Longest InvalidParams message: it ends up in a status condition, which should stay readable. */
export const MAX_INVALID_PARAMS_MESSAGE = 1024;

export function defineHandler<P, Plan extends JsonObject>(
  def: HandlerDefinition<P, Plan>,
): Handler {
  const problem = handlerNameProblem(def.name);
  if (problem !== undefined) {
    throw new Error(`handler name ${JSON.stringify(def.name)} ${problem}`);
  }
  return {
    name: def.name,
    description: def.description,
    prepare(input) {
      const params = parseParams(def.params, input.params);
      if (!params.ok) return params;
      let plan: Plan;
      try {
        plan = def.plan({ objective: input.objective, params: params.value, dryRun: input.dryRun });
      } catch (error) {
        return invalidParams(errorMessage(error));
      }
      // async: a handler whose run throws synchronously still yields a rejected promise.
      return { ok: true, plan, execute: async (ctx) => def.run(plan, ctx) };
    },
  };
}

/**
 * Validates raw `spec.params` against a schema, for handlers that implement `Handler` directly.
 * The failure message lists every issue as `params.<path>: <message>`.
 */
export function parseParams<P>(
  schema: z.ZodType<P>,
  raw: unknown,
): { readonly ok: true; readonly value: P } | InvalidParams {
  const result = schema.safeParse(raw ?? {});
  if (result.success) return { ok: true, value: result.data };
  return invalidParams(formatIssues('params', result.error.issues, MAX_INVALID_PARAMS_MESSAGE));
}

/** An InvalidParams result, its message capped at MAX_INVALID_PARAMS_MESSAGE. */
export function invalidParams(message: string): InvalidParams {
  return {
    ok: false,
    reason: 'InvalidParams',
    message: truncate(message, MAX_INVALID_PARAMS_MESSAGE, ELLIPSIS),
  };
}
