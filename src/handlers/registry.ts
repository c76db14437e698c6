// The set of agents an operator can run, keyed by the name users write in `spec.agent`.

import { ELLIPSIS, truncate } from '../util/text.ts';
import type { Handler } from './handler.ts';
import { handlerNameProblem } from './handler.ts';

/** How many known names an unknown-agent message lists before "and N more". */
const LISTED_NAMES = 20;

/**
 * What an agent name comes to for a run: a handler, or the terminal reason why there is none.
 * `UnknownAgent` may still turn into a handler (an AgentDefinition applied with the run), so the
 * controller waits UNKNOWN_AGENT_GRACE_SECONDS before it ends the run; the others are final.
 */
export type Resolution =
  | { readonly found: true; readonly handler: Handler }
  | {
      readonly found: false;
      readonly reason: 'UnknownAgent' | 'InvalidAgent' | 'ExecutorUnavailable';
      readonly message: string;
    };

/** Where the controller looks up the agent a run names (the registry, or AgentCatalog). */
export interface AgentResolver {
  /** The agent `name` means for a run in `namespace`. */
  resolve(name: string, namespace: string): Resolution;
}

/** `no handler named "x"; known agents: a, b and N more`, the UnknownAgent message. */
export function unknownAgentMessage(name: string, known: readonly string[]): string {
  const quoted = JSON.stringify(truncate(name, 140, ELLIPSIS));
  if (known.length === 0) return `no handler named ${quoted}; no agents are registered`;
  const listed = known.slice(0, LISTED_NAMES).join(', ');
  const more = known.length > LISTED_NAMES ? ` and ${known.length - LISTED_NAMES} more` : '';
  return `no handler named ${quoted}; known agents: ${listed}${more}`;
}

export class HandlerRegistry implements AgentResolver {
  readonly #handlers = new Map<string, Handler>();
  #sortedNames: readonly string[] | undefined;

  constructor(handlers: Iterable<Handler> = []) {
    for (const handler of handlers) this.register(handler);
  }

  /** Throws on an invalid or already registered name: both are operator set-up mistakes. */
  register(handler: Handler): this {
    const problem = handlerNameProblem(handler.name);
    if (problem !== undefined) {
      throw new Error(
        `cannot register handler ${JSON.stringify(handler.name)}: the name ${problem}`,
      );
    }
    if (this.#handlers.has(handler.name)) {
      throw new Error(
        `cannot register handler "${handler.name}": a handler with that name is already registered`,
      );
    }
    this.#handlers.set(handler.name, handler);
    this.#sortedNames = undefined;
    return this;
  }

  get(name: string): Handler | undefined {
    return this.#handlers.get(name);
  }

  has(name: string): boolean {
    return this.#handlers.has(name);
  }

  get size(): number {
    return this.#handlers.size;
  }

  /** Registered names in code-point order (stable across runs, for messages and docs). */
  names(): readonly string[] {
    this.#sortedNames ??= [...this.#handlers.keys()].sort();
    return this.#sortedNames;
  }

  /** The status message for a run whose `spec.agent` names no registered handler. */
  unknownAgentMessage(name: string): string {
    return unknownAgentMessage(name, this.names());
  }

  /** The registered handler; the registry knows no namespaces. */
  resolve(name: string, _namespace?: string): Resolution {
    const handler = this.#handlers.get(name);
    return handler
      ? { found: true, handler }
      : { found: false, reason: 'UnknownAgent', message: this.unknownAgentMessage(name) };
  }
}
