// AgentDefinitions: a cache of them (on every replica, so that a new leader resolves agents at
// once) for AgentCatalog, and, on the leader, a small reconciler that writes each definition's
// status: its executor and a Ready condition for the generation it judged.
import {
  type AgentDefinition,
  type AgentDefinitionStatus,
  DEFINITION_PLURAL,
  parseAgentDefinition,
} from '../api/agentdefinition.ts';
import { GROUP, VERSION } from '../api/agentrun.ts';
import type { DefinitionVerdict } from '../handlers/agent-definitions.ts';
import { Informer, type InformerEventHandler } from '../kube/informer.ts';
import { ContentType, type KubeClient } from '../kube/kube-client.ts';
import { describeKubeError, KubeHttpError } from '../kube/kube-errors.ts';
import { objectKey } from '../kube/kube-object.ts';
import { WorkQueue } from '../kube/workqueue.ts';
import type { Logger } from '../util/log.ts';
import { definitionStatus, statusDiffers } from './definition-status.ts';

export interface AgentDefinitionControllerOptions {
  readonly client: KubeClient;
  /** '' watches every namespace (WATCH_NAMESPACE, as for runs). */
  readonly namespace: string;
  readonly logger: Logger;
  readonly resyncPeriodMs: number;
  /** What a definition amounts to (AgentCatalog.judge). */
  readonly judge: (definition: AgentDefinition) => DefinitionVerdict;
  readonly now?: () => Date;
}

/** One status writer is plenty: definitions change at human speed. */
const WORKERS = 2;

export class AgentDefinitionController {
  readonly informer: Informer<AgentDefinition>;
  readonly #options: AgentDefinitionControllerOptions;
  readonly #queue = new WorkQueue();
  readonly #log: Logger;
  #workers: Promise<void>[] = [];

  constructor(options: AgentDefinitionControllerOptions) {
    this.#options = options;
    this.#log = options.logger.child({ controller: 'agentdefinition' });
    this.informer = new Informer<AgentDefinition>({
      client: options.client,
      group: GROUP,
      version: VERSION,
      plural: DEFINITION_PLURAL,
      namespace: options.namespace,
      parse: parseAgentDefinition,
      logger: options.logger,
      resyncPeriodMs: options.resyncPeriodMs,
    });
    const enqueue = (definition: AgentDefinition): void => {
      const key = objectKey(definition);
      if (key) this.#queue.add(key);
    };
    this.informer.addEventHandler({
      onAdd: enqueue,
      onUpdate: (_old, definition) => enqueue(definition),
      onResync: enqueue,
    });
  }

  /** Also told of every change: the run controller wakes runs waiting for a definition. */
  addEventHandler(handler: InformerEventHandler<AgentDefinition>): () => void {
    return this.informer.addEventHandler(handler);
  }

  async startCache(signal?: AbortSignal): Promise<void> {
    this.informer.start();
    await this.informer.waitForSync(signal);
  }

  hasSynced(): boolean {
    return this.informer.hasSynced();
  }

  /** Starts the status writers (on the leader). */
  startWorkers(): void {
    if (this.#workers.length > 0) return;
    for (const key of this.informer.keys()) this.#queue.add(key);
    this.#workers = Array.from({ length: WORKERS }, () => this.#work());
  }

  async stop(): Promise<void> {
    this.#queue.shutDown();
    await Promise.all(this.#workers);
    await this.informer.stop();
  }

  async #work(): Promise<void> {
    for (;;) {
      const key = await this.#queue.get();
      if (key === undefined) return;
      try {
        await this.#reconcile(key);
        this.#queue.forget(key);
      } catch (error) {
        this.#log.error({ err: error, key }, 'writing the status of an AgentDefinition failed');
        this.#queue.addRateLimited(key);
      } finally {
        this.#queue.done(key);
      }
    }
  }

  async #reconcile(key: string): Promise<void> {
    const definition = this.informer.get(key);
    if (!definition || definition.metadata.deletionTimestamp) return;
    const now = this.#options.now?.() ?? new Date();
    const desired = definitionStatus(definition, this.#options.judge(definition), now);
    if (!statusDiffers(definition.status, desired)) return;
    await this.#writeStatus(definition, desired);
  }

  async #writeStatus(definition: AgentDefinition, status: AgentDefinitionStatus): Promise<void> {
    const { namespace, name, uid, resourceVersion } = definition.metadata;
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(namespace)}/${DEFINITION_PLURAL}/${encodeURIComponent(name)}/status`;
    // Same name is not same definition; and a status judged on an older version must not land
    // on a newer spec (the watch brings the newer one, and its reconcile writes).
    const body = JSON.stringify([
      { op: 'test', path: '/metadata/uid', value: uid },
      { op: 'add', path: '/status', value: status },
      { op: 'replace', path: '/metadata/resourceVersion', value: resourceVersion },
    ]);
    try {
      await this.#options.client.request('PATCH', path, {
        contentType: ContentType.JsonPatch,
        body,
      });
      const ready = status.conditions?.find((c) => c.type === 'Ready');
      this.#log.debug(
        { namespace, name, ready: ready?.status, reason: ready?.reason },
        'AgentDefinition status written',
      );
    } catch (error) {
      // Changed or gone meanwhile: the watch brings the new state, whose reconcile decides.
      if (error instanceof KubeHttpError) {
        if (error.code === 404 || error.code === 409) return;
        // The uid test failed: another object has the name now.
        if (error.code === 422 && error.body.includes('due to an error in our request')) return;
      }
      if (error instanceof KubeHttpError) throw new Error(describeKubeError(error));
      throw error;
    }
  }
}
