// AgentDefinitions: agents registered with kubectl. This module judges a definition (can runs use
// it, and if not, why: the Ready condition's reason) and builds its handler. Pure apart from the
// handler it builds: the controller feeds it definitions from its cache (agent-catalog.ts).
//
// The webhook URL of a definition was chosen by whoever may create AgentDefinitions in its
// namespace, not by the operator's admin: it goes through the address policy (address-policy.ts)
// with the allow-list `agentDefinitions.allowedHosts`, so that a definition cannot point the
// operator at the cloud metadata service, the API server or a private Service the admin did not
// open. The answer becomes the run's artifacts, so this matters more than for http.check.
import type { AgentDefinition } from '../api/agentdefinition.ts';
import { DefinitionReason, executorOf } from '../api/agentdefinition.ts';
import { AGENT_NAME_MAX_LENGTH } from '../api/agentrun.ts';
import type { Handler, JsonObject } from './handler.ts';
import { handlerNameProblem } from './handler.ts';
import type { TargetVetter } from './outbound.ts';
import { webhookHandler, webhookUrlProblem } from './webhook.ts';

export interface DefinitionOptions {
  /** Checks webhook URLs (createTargetVetter with AGENT_WEBHOOK_POLICY and the allow-list). */
  readonly vetter: TargetVetter;
  /** Names of built-in and config-file agents: definitions cannot take them. */
  readonly reserved: (name: string) => boolean;
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
  if (executorOf(spec) === 'job') {
    return {
      ready: false,
      reason: DefinitionReason.ExecutorUnavailable,
      message:
        'agents of kind job need the Job executor, which this operator version does not have; runs naming this agent end Failed/ExecutorUnavailable',
      runReason: 'ExecutorUnavailable',
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
  const identity: JsonObject = { name, uid: definition.metadata.uid };
  if (definition.metadata.generation !== undefined) {
    identity['generation'] = definition.metadata.generation;
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

function invalid(message: string): DefinitionVerdict {
  return { ready: false, reason: DefinitionReason.InvalidSpec, message, runReason: 'InvalidAgent' };
}
