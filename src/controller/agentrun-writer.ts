import {
  type AgentRun,
  type AgentRunStatus,
  GROUP,
  PLURAL,
  parseAgentRun,
  VERSION,
} from '../api/agentrun.ts';
import { ContentType, type KubeClient } from '../kube/kube-client.ts';
import { describeKubeError, KubeHttpError } from '../kube/kube-errors.ts';
import { isRecord, stripManagedFields } from '../kube/kube-object.ts';

/** The AgentRun writes the controller makes; a thin adapter over the API server. */
export interface AgentRunWriter {
  /**
   * Replaces the status. With `expectResourceVersion` the write only succeeds if the object is
   * still at that version (a claim): otherwise it throws ConflictError.
   */
  writeStatus(
    run: AgentRun,
    status: AgentRunStatus,
    expectResourceVersion?: string,
  ): Promise<AgentRun>;
  /** Adds `finalizer` to metadata.finalizers, only if the object is still at run's resourceVersion. */
  addFinalizer(run: AgentRun, finalizer: string): Promise<AgentRun>;
  /** Removes `finalizer`, only if the object is still at run's resourceVersion. */
  removeFinalizer(run: AgentRun, finalizer: string): Promise<AgentRun>;
  /** Deletes the run if it is still the same object (uid precondition); absent is fine. */
  delete(run: AgentRun): Promise<void>;
  /** The run as the API server has it now (not the cache); undefined when it is gone. */
  read(run: AgentRun): Promise<AgentRun | undefined>;
}

/** The object changed since it was read; re-read and decide again. */
export class ConflictError extends Error {
  constructor(what: string) {
    super(`${what}: the AgentRun changed since it was read`);
    this.name = 'ConflictError';
  }
}

/** The object is gone. */
export class NotFoundError extends Error {
  constructor(what: string) {
    super(`${what}: the AgentRun no longer exists`);
    this.name = 'NotFoundError';
  }
}

const FAILED_PATCH_TEST = 'the server rejected our request due to an error in our request';

/** Answers kept for the watch at most; more means the watch is not delivering them anyway. */
const MAX_ANSWERS = 1_000;

export class KubeAgentRunWriter implements AgentRunWriter {
  readonly #client: KubeClient;
  /** The latest object each write answered with, by uid, until the watch brings it (`answered`). */
  readonly #answers = new Map<string, AgentRun>();

  constructor(client: KubeClient) {
    this.#client = client;
  }

  #path(run: AgentRun, subresource = ''): string {
    const { namespace, name } = run.metadata;
    return `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(namespace)}/${PLURAL}/${encodeURIComponent(name)}${subresource}`;
  }

  async writeStatus(
    run: AgentRun,
    status: AgentRunStatus,
    expectResourceVersion?: string,
  ): Promise<AgentRun> {
    // JSON Patch "add /status" replaces the whole status in one write, so fields of an earlier
    // attempt (artifacts, nextRetryAt) cannot linger the way a merge patch would keep them.
    // Same name is not same run: a run deleted and re-created under its name must not receive
    // the old one's outcome. The API server treats a resourceVersion in the patched object as a
    // precondition. Serialised by hand: this is the one write every run makes twice.
    const body =
      `[{"op":"test","path":"/metadata/uid","value":${JSON.stringify(run.metadata.uid)}},` +
      `{"op":"add","path":"/status","value":${JSON.stringify(status)}}` +
      (expectResourceVersion
        ? `,{"op":"replace","path":"/metadata/resourceVersion","value":${JSON.stringify(expectResourceVersion)}}]`
        : ']');
    const raw: unknown = await this.#call('status write', () =>
      this.#client.request('PATCH', this.#path(run, '/status'), {
        contentType: ContentType.JsonPatch,
        body,
      }),
    );
    return this.#parse(raw, run);
  }

  addFinalizer(run: AgentRun, finalizer: string): Promise<AgentRun> {
    const finalizers = run.metadata.finalizers ?? [];
    if (finalizers.includes(finalizer)) return Promise.resolve(run);
    return this.#setFinalizers(run, [...finalizers, finalizer]);
  }

  removeFinalizer(run: AgentRun, finalizer: string): Promise<AgentRun> {
    const finalizers = run.metadata.finalizers ?? [];
    return this.#setFinalizers(
      run,
      finalizers.filter((f) => f !== finalizer),
    );
  }

  /**
   * A merge patch replaces the whole list; the resourceVersion in it is a precondition, so a
   * finalizer another controller added meanwhile is not dropped (the write is refused instead).
   */
  async #setFinalizers(run: AgentRun, finalizers: readonly string[]): Promise<AgentRun> {
    const raw: unknown = await this.#call('finalizer update', () =>
      this.#client.request('PATCH', this.#path(run), {
        contentType: ContentType.MergePatch,
        body: JSON.stringify({
          metadata: { resourceVersion: run.metadata.resourceVersion, finalizers },
        }),
      }),
    );
    return this.#parse(raw, run);
  }

  async delete(run: AgentRun): Promise<void> {
    try {
      await this.#call('delete', () =>
        this.#client.request('DELETE', this.#path(run), {
          body: JSON.stringify({ preconditions: { uid: run.metadata.uid } }),
        }),
      );
    } catch (error) {
      if (!(error instanceof NotFoundError)) throw error;
    }
  }

  async read(run: AgentRun): Promise<AgentRun | undefined> {
    try {
      const raw: unknown = await this.#call('read', () =>
        this.#client.request('GET', this.#path(run)),
      );
      stripManagedFields(raw);
      const parsed = parseAgentRun(raw);
      return parsed?.metadata.uid === run.metadata.uid ? parsed : undefined;
    } catch (error) {
      if (error instanceof NotFoundError) return undefined;
      throw error;
    }
  }

  async #call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (error) {
      if (error instanceof KubeHttpError) {
        if (error.code === 409) throw new ConflictError(what);
        if (error.code === 404) throw new NotFoundError(what);
        // A failed JSON Patch "test" of the uid (another object now has this name) comes back
        // as a bare 422; schema violations name the field instead.
        if (error.code === 422 && error.body.includes(FAILED_PATCH_TEST)) {
          throw new NotFoundError(what);
        }
        throw new Error(`${what} failed: ${describeKubeError(error)}`);
      }
      throw error;
    }
  }

  /**
   * The object a write of this writer answered with, if `raw` (a watched object) is that very
   * version (same uid and resourceVersion), so the informer need not parse it again: every run's
   * two status writes come back through the watch, and parsing them twice was ~5% of the
   * operator's CPU per run. Each answer is handed out once.
   */
  answered(raw: unknown): AgentRun | undefined {
    const metadata = isRecord(raw) && isRecord(raw['metadata']) ? raw['metadata'] : undefined;
    const uid = metadata?.['uid'];
    if (typeof uid !== 'string') return undefined;
    const answer = this.#answers.get(uid);
    if (answer?.metadata.resourceVersion !== metadata?.['resourceVersion']) return undefined;
    this.#answers.delete(uid);
    return answer;
  }

  #parse(raw: unknown, run: AgentRun): AgentRun {
    // Like the informer's cache: the reconciler keeps written objects for a while and never
    // reads the server-side apply bookkeeping, which is most of an object's size.
    stripManagedFields(raw);
    const parsed = parseAgentRun(raw);
    if (!parsed)
      throw new Error(
        `${run.metadata.namespace}/${run.metadata.name}: the API server returned an object that is not a valid AgentRun`,
      );
    const { uid } = parsed.metadata;
    // Re-inserted, so that the map's order is the order of the writes and the oldest goes first.
    this.#answers.delete(uid);
    this.#answers.set(uid, parsed);
    if (this.#answers.size > MAX_ANSWERS) {
      const oldest = this.#answers.keys().next();
      if (!oldest.done) this.#answers.delete(oldest.value);
    }
    return parsed;
  }
}
