// Which agent a run's `spec.agent` names: the operator's own agents first (built-ins, the config
// file's webhooks, a custom build's handlers), which no AgentDefinition can shadow; then the
// AgentDefinition of that name in the run's namespace (never another namespace's: a Job must live
// in its run's namespace anyway, and a namespace's users must not reach another's agents).
import type { AgentDefinition } from '../api/agentdefinition.ts';
import { type DefinitionVerdict, judgeDefinition } from '../handlers/agent-definitions.ts';
import type { TargetVetter } from '../handlers/outbound.ts';
import {
  type AgentResolver,
  type HandlerRegistry,
  type Resolution,
  unknownAgentMessage,
} from '../handlers/registry.ts';

/** Read access to the AgentDefinition informer's cache. */
export interface DefinitionStore {
  get(key: string): AgentDefinition | undefined;
  list(): AgentDefinition[];
}

export interface AgentCatalogOptions {
  readonly registry: HandlerRegistry;
  /** Absent when AgentDefinitions are turned off (AGENT_DEFINITIONS_ENABLED=false). */
  readonly definitions?: DefinitionStore | undefined;
  readonly vetter: TargetVetter;
  /** The Job executor runs: AgentDefinitions of kind job are usable. */
  readonly jobs?: boolean | undefined;
}

export class AgentCatalog implements AgentResolver {
  readonly #registry: HandlerRegistry;
  readonly #definitions: DefinitionStore | undefined;
  readonly #vetter: TargetVetter;
  readonly #jobs: boolean;
  /**
   * Verdicts per cached object. The informer replaces an object on every change and never
   * mutates one, so a verdict (and its handler) is built once per resourceVersion.
   */
  readonly #verdicts = new WeakMap<AgentDefinition, DefinitionVerdict>();

  constructor(options: AgentCatalogOptions) {
    this.#registry = options.registry;
    this.#definitions = options.definitions;
    this.#vetter = options.vetter;
    this.#jobs = options.jobs ?? false;
  }

  resolve(name: string, namespace: string): Resolution {
    const own = this.#registry.get(name);
    if (own) return { found: true, handler: own };
    const definition = this.#definitions?.get(`${namespace}/${name}`);
    if (!definition)
      return { found: false, reason: 'UnknownAgent', message: this.#unknown(name, namespace) };
    const verdict = this.judge(definition);
    if (verdict.ready) return { found: true, handler: verdict.handler };
    return {
      found: false,
      reason: verdict.runReason ?? 'InvalidAgent',
      message: `the AgentDefinition "${name}" cannot run (${verdict.reason}): ${verdict.message}`,
    };
  }

  /** What `definition` amounts to: its Ready condition and, when ready, its handler. */
  judge(definition: AgentDefinition): DefinitionVerdict {
    let verdict = this.#verdicts.get(definition);
    if (!verdict) {
      verdict = judgeDefinition(definition, {
        vetter: this.#vetter,
        reserved: (name) => this.#registry.has(name),
        jobs: this.#jobs,
      });
      this.#verdicts.set(definition, verdict);
    }
    return verdict;
  }

  #unknown(name: string, namespace: string): string {
    const defined = (this.#definitions?.list() ?? [])
      .filter((d) => d.metadata.namespace === namespace && !this.#registry.has(d.metadata.name))
      .map((d) => d.metadata.name);
    const known = [...new Set([...this.#registry.names(), ...defined])].sort();
    const where = this.#definitions
      ? `; no AgentDefinition "${name}" in namespace ${namespace}`
      : '';
    return `${unknownAgentMessage(name, known)}${where}`;
  }
}
