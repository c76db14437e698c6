// AgentDefinitions: agents registered with kubectl. This module judges a definition (can runs use
// it, and if not, why: the Ready condition's reason) and builds its handler. Pure apart from the
// handler it builds: the controller feeds it definitions from its cache (agent-catalog.ts).
//
// The webhook URL of a definition was chosen by whoever may create AgentDefinitions in its
// namespace, not by the operator's admin: it goes through the address policy (address-policy.ts)
// with the allow-list `agentDefinitions.allowedHosts`, so that a definition cannot point the
// operator at the cloud metadata service, the API server or a private Service the admin did not
// open. The answer becomes the run's artifacts, so this matters more than for http.check.
import type { AgentDefinition, DefinitionJob } from '../api/agentdefinition.ts';
import { DefinitionReason, executorOf } from '../api/agentdefinition.ts';
import { AGENT_NAME_MAX_LENGTH } from '../api/agentrun.ts';
import type { Handler, JsonObject, PodSpec } from './handler.ts';
import { handlerNameProblem, jsonObjectSchema, parseParams } from './handler.ts';
import type { TargetVetter } from './outbound.ts';
import { webhookHandler, webhookUrlProblem } from './webhook.ts';

export interface DefinitionOptions {
  /** Checks webhook URLs (createTargetVetter with AGENT_WEBHOOK_POLICY and the allow-list). */
  readonly vetter: TargetVetter;
  /** Names of built-in and config-file agents: definitions cannot take them. */
  readonly reserved: (name: string) => boolean;
  /** The Job executor runs: definitions of kind job are usable. */
  readonly jobs?: boolean | undefined;
}

/** What a definition amounts to: usable (with its handler), or the reason it is not. */
export type DefinitionVerdict =
  | { readonly ready: true; readonly message: string; readonly handler: Handler }
  | {
      readonly ready: false;
      readonly reason: Exclude<DefinitionReason, 'Accepted'>;
      readonly message: string;
      /** How a run naming it ends; undefined for NameTaken (the run gets the built-in). */
      readonly runReason?: 'InvalidAgent' | 'ExecutorUnavailable';
    };

/**
 * Judges a definition. Cheap and pure: a name decided only by resolving it is Accepted here and
 * checked again, resolved once, at every request.
 */
export function judgeDefinition(
  definition: AgentDefinition,
  options: DefinitionOptions,
): DefinitionVerdict {
  const { name, namespace } = definition.metadata;
  if (options.reserved(name)) {
    return {
      ready: false,
      reason: DefinitionReason.NameTaken,
      message: `"${name}" is a built-in or configured agent of the operator; runs naming it run that agent, not this definition. Rename the definition`,
    };
  }
  const nameProblem = handlerNameProblem(name);
  if (nameProblem !== undefined) {
    return invalid(
      `the name ${nameProblem}${name.length > AGENT_NAME_MAX_LENGTH ? ': no AgentRun can name it' : ''}`,
    );
  }
  const { spec } = definition;
  const identity: JsonObject = { name, uid: definition.metadata.uid };
  if (definition.metadata.generation !== undefined) {
    identity['generation'] = definition.metadata.generation;
  }
  if (spec.job !== undefined && executorOf(spec) === 'job') {
    if (!options.jobs) {
      return {
        ready: false,
        reason: DefinitionReason.ExecutorUnavailable,
        message:
          'agents of kind job need the Job executor, which is turned off in this operator (JOB_AGENTS_ENABLED=false); runs naming this agent end Failed/ExecutorUnavailable',
        runReason: 'ExecutorUnavailable',
      };
    }
    return {
      ready: true,
      handler: jobAgentHandler(name, spec.job, spec.description, identity),
      message: `runs in namespace ${namespace} naming "${name}" run as a Job of image ${spec.job.image}, one per attempt`,
    };
  }
  const webhook = spec.webhook;
  if (webhook === undefined) return invalid('spec.webhook or spec.job must be set');
  let url: URL;
  try {
    url = new URL(webhook.url);
  } catch {
    return invalid('spec.webhook.url is not an absolute http:// or https:// URL');
  }
  const urlProblem = webhookUrlProblem(url);
  if (urlProblem !== undefined) return invalid(`spec.webhook.url ${urlProblem}`);
  const verdict = options.vetter.policy.checkHost(url.hostname);
  if (verdict.allowed === false) {
    return {
      ready: false,
      reason: DefinitionReason.AddressNotAllowed,
      message: `spec.webhook.url: ${verdict.message}`,
      runReason: 'InvalidAgent',
    };
  }
  const handler = webhookHandler({
    name,
    url,
    timeoutMs: webhook.timeoutMs,
    description: spec.description,
    vetter: options.vetter,
    planExtra: { agentDefinition: identity },
  });
  return {
    ready: true,
    handler,
    message:
      verdict.allowed === true
        ? `runs in namespace ${namespace} naming "${name}" POST to this webhook`
        : `runs in namespace ${namespace} naming "${name}" POST to this webhook; its host is resolved and checked against the address policy at each request`,
  };
}

/** The pod spec a job definition describes: one container, named `agent`. */
export function definitionPodSpec(job: DefinitionJob): PodSpec {
  const container: Record<string, unknown> = { name: AGENT_CONTAINER, image: job.image };
  if (job.command !== undefined) container['command'] = job.command;
  if (job.args !== undefined) container['args'] = job.args;
  if (job.env !== undefined) container['env'] = job.env;
  if (job.resources !== undefined) container['resources'] = job.resources;
  return {
    ...(job.serviceAccountName !== undefined ? { serviceAccountName: job.serviceAccountName } : {}),
    containers: [container],
  };
}

/** The name of the agent's container in its Job's pod (`kubectl logs -c agent`). */
export const AGENT_CONTAINER = 'agent';

/**
 * A Job agent: params are any JSON object (the container validates them); the plan names the
 * definition and image. The Job executor runs the attempts; `execute` only says it is missing.
 */
function jobAgentHandler(
  name: string,
  job: DefinitionJob,
  description: string | undefined,
  identity: JsonObject,
): Handler {
  return {
    name,
    description: description ?? `Runs the image ${job.image} as a Job per attempt.`,
    job: { podSpec: definitionPodSpec(job) },
    prepare(input) {
      const params = parseParams(jsonObjectSchema, input.params);
      if (!params.ok) return params;
      const plan: JsonObject = {
        agentDefinition: identity,
        image: job.image,
        dryRun: input.dryRun,
        params: params.value,
      };
      return {
        ok: true,
        plan,
        execute: () =>
          Promise.reject(new Error(`agent "${name}" runs as a Job; only the Job executor runs it`)),
      };
    },
  };
}

function invalid(message: string): DefinitionVerdict {
  return { ready: false, reason: DefinitionReason.InvalidSpec, message, runReason: 'InvalidAgent' };
}
