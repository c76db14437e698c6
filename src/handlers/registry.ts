// The set of agents an operator can run, keyed by the name users write in `spec.agent`.

import { ELLIPSIS, truncate } from '../util/text.ts';
import type { Handler } from './handler.ts';
import { handlerNameProblem } from './handler.ts';

/** How many known names an unknown-agent message lists before "and N more". */
const LISTED_NAMES = 20;

export class HandlerRegistry {
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
    const quoted = JSON.stringify(truncate(name, 140, ELLIPSIS));
    const names = this.names();
    if (names.length === 0) return `no handler named ${quoted}; no agents are registered`;
    const listed = names.slice(0, LISTED_NAMES).join(', ');
    const more = names.length > LISTED_NAMES ? ` and ${names.length - LISTED_NAMES} more` : '';
    return `no handler named ${quoted}; known agents: ${listed}${more}`;
  }
}
