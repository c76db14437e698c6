import { ApiException, CustomObjectsApi, type KubeConfig, Watch } from '@kubernetes/client-node';
import {
  type AgentRun,
  API_VERSION,
  GROUP,
  KIND,
  type Phase,
  PLURAL,
  parseAgentRun,
  VERSION,
} from '../../src/api/agentrun.ts';
import { waitFor } from './wait.ts';

/** One version of an AgentRun as the watch delivered it, and when (Date.now()). */
export interface Seen {
  readonly run: AgentRun;
  readonly at: number;
}

/** Every AgentRun version a watch delivered; `stop` ends it and throws if the watch failed. */
export interface Recording {
  readonly versions: readonly Seen[];
  stop(): void;
}

export type SpecInput = Record<string, unknown> & { agent: string; objective?: string };

/** AgentRun calls for tests, in one namespace, as a user would make them. */
export class AgentRuns {
  readonly namespace: string;
  readonly #api: CustomObjectsApi;
  readonly #kc: KubeConfig;

  constructor(kc: KubeConfig, namespace: string) {
    this.namespace = namespace;
    this.#kc = kc;
    this.#api = kc.makeApiClient(CustomObjectsApi);
  }

  /**
   * Records every version of every AgentRun in the namespace from now on, as a watch delivers
   * them (each write is one event), for assertions about states a poll could miss. The API
   * server closes a watch whose reader falls behind a burst (and client-node one that is quiet
   * for 30 s); the recording then resumes from the last resourceVersion it saw, so it has no
   * gaps. `stop` throws if it could not resume (e.g. 410 Gone).
   */
  async record(): Promise<Recording> {
    const versions: Seen[] = [];
    const path = `/apis/${GROUP}/${VERSION}/namespaces/${this.namespace}/${PLURAL}`;
    let resourceVersion: string | undefined;
    let failed: string | undefined;
    let stopped = false;
    let resumes = 0;
    let request: AbortController | undefined;
    const watch = async (): Promise<void> => {
      request = await new Watch(this.#kc).watch(
        path,
        { allowWatchBookmarks: true, ...(resourceVersion ? { resourceVersion } : {}) },
        (type, raw: { metadata?: { resourceVersion?: string }; code?: number }) => {
          if (type === 'ERROR') {
            failed = `watch error ${raw.code ?? ''}`;
            return;
          }
          resourceVersion = raw.metadata?.resourceVersion ?? resourceVersion;
          if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') {
            versions.push({ run: this.#parse(raw), at: Date.now() });
          }
        },
        (error) => {
          if (stopped || failed) return;
          resumes += 1;
          // A closed or timed-out watch resumes; one that cannot connect at all gives up.
          if (resumes > 50) failed = `gave up resuming: ${String(error)}`;
          else
            watch().catch((e: unknown) => {
              failed = String(e);
            });
        },
      );
    };
    await watch();
    return {
      versions,
      stop: () => {
        stopped = true;
        request?.abort();
        if (failed) throw new Error(`the recording watch failed: ${failed}`);
      },
    };
  }

  #ref() {
    return { group: GROUP, version: VERSION, namespace: this.namespace, plural: PLURAL };
  }

  async create(name: string, spec: SpecInput): Promise<AgentRun> {
    const body = {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: { name },
      spec: { objective: `test ${name}`, ...spec },
    };
    return this.#parse(await this.#api.createNamespacedCustomObject({ ...this.#ref(), body }));
  }

  async get(name: string): Promise<AgentRun | undefined> {
    try {
      return this.#parse(await this.#api.getNamespacedCustomObject({ ...this.#ref(), name }));
    } catch (error) {
      if (error instanceof ApiException && error.code === 404) return undefined;
      throw error;
    }
  }

  async list(): Promise<AgentRun[]> {
    const list = (await this.#api.listNamespacedCustomObject(this.#ref())) as { items: unknown[] };
    return list.items.map((item) => this.#parse(item));
  }

  /** Writes a status directly, as a previous operator process would have. */
  async writeStatus(name: string, status: Record<string, unknown>): Promise<void> {
    await this.#api.patchNamespacedCustomObjectStatus({
      ...this.#ref(),
      name,
      body: [{ op: 'add', path: '/status', value: status }],
    });
  }

  async cancel(name: string): Promise<void> {
    await this.#api.patchNamespacedCustomObject({
      ...this.#ref(),
      name,
      body: [{ op: 'replace', path: '/spec/cancel', value: true }],
    });
  }

  async delete(name: string): Promise<void> {
    await this.#api.deleteNamespacedCustomObject({ ...this.#ref(), name });
  }

  /** Waits until the run satisfies `done`; the error names what was awaited and the last state. */
  async waitUntil(
    name: string,
    what: string,
    done: (run: AgentRun) => boolean,
    timeoutMs = 30_000,
  ): Promise<AgentRun> {
    let last: AgentRun | undefined;
    try {
      return await waitFor(
        `${this.namespace}/${name} ${what}`,
        async () => {
          last = await this.get(name);
          return last && done(last) ? last : undefined;
        },
        { timeoutMs, intervalMs: 50 },
      );
    } catch (error) {
      throw new Error(`${(error as Error).message}; last status: ${JSON.stringify(last?.status)}`);
    }
  }

  waitForPhase(name: string, phase: Phase, timeoutMs?: number): Promise<AgentRun> {
    return this.waitUntil(name, `phase ${phase}`, (r) => r.status?.phase === phase, timeoutMs);
  }

  /** Waits until the object is gone. */
  async waitForDeletion(name: string, timeoutMs = 30_000): Promise<void> {
    await waitFor(
      `${this.namespace}/${name} deleted`,
      async () => ((await this.get(name)) === undefined ? true : undefined),
      { timeoutMs, intervalMs: 50 },
    );
  }

  #parse(raw: unknown): AgentRun {
    const run = parseAgentRun(raw);
    if (!run) throw new Error(`not a valid AgentRun: ${JSON.stringify(raw).slice(0, 500)}`);
    return run;
  }
}
