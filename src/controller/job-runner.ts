// The Job executor (issue 16): an attempt of a Job agent is a batch/v1 Job in the run's
// namespace, and this follows it. The Job's name is a function of the run and the attempt
// (job-manifest.ts), so creating it is idempotent: an attempt runs at most once however often
// it is started, by this process after a restart or by the next leader, which follow the same
// Job again. Where it stands comes from the Job's conditions and its pod (job-progress.ts), read
// from two label-selected caches that every follower shares.
import type { AgentRun } from '../api/agentrun.ts';
import { AGENT_CONTAINER } from '../handlers/agent-definitions.ts';
import type { JobTemplate, JsonObject } from '../handlers/handler.ts';
import { Informer } from '../kube/informer.ts';
import type { KubeClient } from '../kube/kube-client.ts';
import { describeKubeError, statusCodeOf } from '../kube/kube-errors.ts';
import { type Job, jobSchema, type Pod, podSchema } from '../kube/workloads.ts';
import type { Logger } from '../util/log.ts';
import { ExecutionAborted } from './executor.ts';
import { JobLabel, jobManifest, jobName } from './job-manifest.ts';
import { awaitsPodResult, jobProgress } from './job-progress.ts';
import { type AttemptStage, deadline } from './run-status.ts';

export interface JobRunnerOptions {
  readonly client: KubeClient;
  /** The namespace the operator watches; '' or undefined: all. */
  readonly namespace?: string | undefined;
  readonly logger: Logger;
  readonly resyncPeriodMs?: number | undefined;
  /**
   * How long a Job this process created may stay out of the cache before it is looked up
   * directly (and, if it is gone, the attempt fails). Default 30 s.
   */
  readonly missingJobCheckMs?: number | undefined;
}

/** One attempt to follow. */
export interface JobAttempt {
  /** The run as claimed: its uid, name, namespace and status.startedAt (the deadline). */
  readonly run: AgentRun;
  readonly attempt: number;
  readonly template: JobTemplate;
  /** The params as the agent's handler planned them. */
  readonly params: JsonObject;
  /** The attempt's stage changed: its pod is not running yet (and why), or it runs. */
  readonly report: (stage: AttemptStage, message: string) => void;
  readonly signal: AbortSignal;
  readonly logger: Logger;
  readonly now?: () => Date;
}

/** What the runs' Job attempts need of the API: the executor's side of the reconciler. */
export interface JobExecutor {
  /** Creates (or finds) the attempt's Job and resolves with its result when it ends. */
  run(attempt: JobAttempt): Promise<JsonObject>;
  /** Deletes every Job of the run still there (a run that ended without its follower). */
  stopAll(run: AgentRun): Promise<void>;
}

const JOBS_PATH = (namespace: string) =>
  `/apis/batch/v1/namespaces/${encodeURIComponent(namespace)}/jobs`;

export class JobRunner implements JobExecutor {
  readonly #options: JobRunnerOptions;
  readonly #jobs: Informer<Job>;
  readonly #pods: Informer<Pod>;
  /** run id -> cache keys of its pods. */
  readonly #podsByRun = new Map<string, Set<string>>();
  /** run id -> followers to wake when its Job or a pod changes. */
  readonly #followers = new Map<string, Set<() => void>>();

  constructor(options: JobRunnerOptions) {
    this.#options = options;
    const common = {
      client: options.client,
      namespace: options.namespace,
      // Only what the operator created: the run-id label is on its Jobs and their pods.
      labelSelector: JobLabel.RunId,
      logger: options.logger,
      ...(options.resyncPeriodMs !== undefined ? { resyncPeriodMs: options.resyncPeriodMs } : {}),
    };
    this.#jobs = new Informer<Job>({
      ...common,
      group: 'batch',
      version: 'v1',
      plural: 'jobs',
      parse: (raw) => jobSchema.parse(raw),
      transform: slimJob,
    });
    this.#pods = new Informer<Pod>({
      ...common,
      group: '',
      version: 'v1',
      plural: 'pods',
      parse: (raw) => podSchema.parse(raw),
      transform: slimPod,
    });
    const wake = (object: Job | Pod): void => {
      const runId = object.metadata.labels?.[JobLabel.RunId];
      if (runId === undefined) return;
      for (const follower of this.#followers.get(runId) ?? []) follower();
    };
    this.#jobs.addEventHandler({
      onAdd: wake,
      onUpdate: (_old, job) => wake(job),
      onDelete: wake,
    });
    const podKey = (pod: Pod) => `${pod.metadata.namespace}/${pod.metadata.name}`;
    this.#pods.addEventHandler({
      onAdd: (pod) => {
        const runId = pod.metadata.labels?.[JobLabel.RunId];
        if (runId === undefined) return;
        const keys = this.#podsByRun.get(runId) ?? new Set<string>();
        this.#podsByRun.set(runId, keys);
        keys.add(podKey(pod));
        wake(pod);
      },
      onUpdate: (_old, pod) => wake(pod),
      onDelete: (pod) => {
        const runId = pod.metadata.labels?.[JobLabel.RunId];
        if (runId === undefined) return;
        const keys = this.#podsByRun.get(runId);
        keys?.delete(podKey(pod));
        if (keys?.size === 0) this.#podsByRun.delete(runId);
        wake(pod);
      },
    });
  }

  async startCache(signal?: AbortSignal): Promise<void> {
    this.#jobs.start();
    this.#pods.start();
    await Promise.all([this.#jobs.waitForSync(signal), this.#pods.waitForSync(signal)]);
  }

  hasSynced(): boolean {
    return this.#jobs.hasSynced() && this.#pods.hasSynced();
  }

  async stop(): Promise<void> {
    await Promise.all([this.#jobs.stop(), this.#pods.stop()]);
  }

  async run(a: JobAttempt): Promise<JsonObject> {
    const { run, attempt, signal } = a;
    const namespace = run.metadata.namespace;
    const runId = run.metadata.uid;
    const name = jobName(run, attempt);
    const key = `${namespace}/${name}`;
    let dirty = true;
    let wake: () => void = () => {};
    const follower = (): void => {
      dirty = true;
      wake();
    };
    const followers = this.#followers.get(runId) ?? new Set<() => void>();
    this.#followers.set(runId, followers);
    followers.add(follower);
    const checkMs = this.#options.missingJobCheckMs ?? 30_000;
    let reported = '';
    let running = false;
    const report = (stage: AttemptStage, message: string): void => {
      // A pod that ran does not start again (restartPolicy Never): no way back to Starting.
      if (stage === 'Starting' && running) return;
      running ||= stage === 'Running';
      if (`${stage}\n${message}` === reported) return;
      reported = `${stage}\n${message}`;
      a.report(stage, message);
    };
    try {
      let seen = this.#jobs.get(key) !== undefined;
      if (!seen) await this.#create(a, name);
      let missingSince = Date.now();
      for (;;) {
        signal.throwIfAborted();
        dirty = false;
        const job = this.#jobs.get(key);
        if (job === undefined) {
          if (seen) throw new Error(`the agent's Job ${name} was deleted before it finished`);
          // Created, and not in the cache yet; unless it was deleted before the cache saw it.
          if (Date.now() - missingSince >= checkMs) {
            if (!(await this.#exists(namespace, name, signal))) {
              throw new Error(`the agent's Job ${name} was deleted before it finished`);
            }
            missingSince = Date.now();
          }
        } else {
          seen = true;
          const owner = job.metadata.ownerReferences?.find((o) => o.controller === true);
          if (owner?.uid !== runId) {
            throw new Error(
              `a Job named ${name} exists in namespace ${namespace} and belongs to ${owner ? `${owner.kind ?? 'an object'} ${owner.name ?? ''}`.trim() : 'no AgentRun'}; delete it or rename the run`,
            );
          }
          const options = { container: AGENT_CONTAINER };
          let pods = this.#podsOf(runId, attempt);
          if (awaitsPodResult(job, pods, options)) {
            pods = (await this.#readPods(namespace, runId, attempt, signal)) ?? pods;
          }
          const progress = jobProgress(job, pods, options);
          switch (progress.kind) {
            case 'pending':
              report(
                'Starting',
                `attempt ${attempt} (Job ${name}): ${progress.reason}: ${progress.message}`,
              );
              break;
            case 'running':
              report('Running', `attempt ${attempt} running as Job ${name}`);
              break;
            case 'succeeded':
              return progress.artifacts ?? {};
            case 'failed':
              throw new Error(progress.message);
          }
        }
        if (!dirty) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, checkMs);
            const done = (): void => {
              clearTimeout(timer);
              signal.removeEventListener('abort', done);
              resolve();
            };
            wake = done;
            signal.addEventListener('abort', done, { once: true });
          });
          wake = () => {};
        }
      }
    } catch (error) {
      // Canceled or timed out: the Job goes too. Shutdown: it runs on for the next leader.
      const reason = signal.aborted ? signal.reason : undefined;
      if (
        reason !== undefined &&
        !(reason instanceof ExecutionAborted && reason.reason === 'Shutdown')
      ) {
        await this.#delete(namespace, name, a.logger);
      }
      throw signal.aborted ? signal.reason : error;
    } finally {
      followers.delete(follower);
      if (followers.size === 0) this.#followers.delete(runId);
    }
  }

  async stopAll(run: AgentRun): Promise<void> {
    const runId = run.metadata.uid;
    const logger = this.#options.logger;
    const doomed = this.#jobs
      .list()
      .filter(
        (job) => job.metadata.labels?.[JobLabel.RunId] === runId && !job.metadata.deletionTimestamp,
      );
    await Promise.all(
      doomed.map((job) =>
        this.#delete(job.metadata.namespace ?? '', job.metadata.name ?? '', logger),
      ),
    );
  }

  #podsOf(runId: string, attempt: number): Pod[] {
    const pods: Pod[] = [];
    for (const key of this.#podsByRun.get(runId) ?? []) {
      const pod = this.#pods.get(key);
      if (pod?.metadata.labels?.[JobLabel.Attempt] === String(attempt)) pods.push(pod);
    }
    return pods;
  }

  /**
   * The attempt's pods as the API server has them now, or undefined when it cannot say (the
   * cache's then stand: without a pod the verdict is taken as it is, as before).
   */
  async #readPods(
    namespace: string,
    runId: string,
    attempt: number,
    signal: AbortSignal,
  ): Promise<Pod[] | undefined> {
    const selector = encodeURIComponent(
      `${JobLabel.RunId}=${runId},${JobLabel.Attempt}=${attempt}`,
    );
    try {
      const list = (await this.#options.client.request(
        'GET',
        `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods?labelSelector=${selector}`,
        { signal },
      )) as { items?: unknown[] } | undefined;
      return (list?.items ?? []).map((item) => podSchema.parse(item));
    } catch {
      if (signal.aborted) throw signal.reason;
      return undefined;
    }
  }

  async #create(a: JobAttempt, name: string): Promise<void> {
    const { run, attempt } = a;
    const now = (a.now ?? (() => new Date()))();
    const due = deadline(run);
    const manifest = jobManifest(run, attempt, {
      podSpec: a.template.podSpec,
      params: a.params,
      deadlineSeconds: due ? Math.max(1, (due.getTime() - now.getTime()) / 1000) : undefined,
    });
    try {
      await this.#options.client.request('POST', JOBS_PATH(run.metadata.namespace), {
        body: JSON.stringify(manifest),
        signal: a.signal,
      });
      a.logger.debug({ job: name }, 'created the Job of the attempt');
    } catch (error) {
      // Created before (by this process before a restart, or by another leader): follow it.
      if (statusCodeOf(error) === 409) return;
      if (a.signal.aborted) throw a.signal.reason;
      throw new Error(`could not create the agent's Job ${name}: ${describeKubeError(error)}`, {
        cause: error,
      });
    }
  }

  async #exists(namespace: string, name: string, signal: AbortSignal): Promise<boolean> {
    try {
      await this.#options.client.request(
        'GET',
        `${JOBS_PATH(namespace)}/${encodeURIComponent(name)}`,
        {
          signal,
        },
      );
      return true;
    } catch (error) {
      if (statusCodeOf(error) === 404) return false;
      if (signal.aborted) throw signal.reason;
      // Unknown (the API server unreachable): not proof that it is gone; look again later.
      return true;
    }
  }

  /** Deletes a Job and, first, its pods (foreground): best effort, a failure is logged. */
  async #delete(namespace: string, name: string, logger: Logger): Promise<void> {
    try {
      await this.#options.client.request(
        'DELETE',
        `${JOBS_PATH(namespace)}/${encodeURIComponent(name)}`,
        {
          body: JSON.stringify({
            kind: 'DeleteOptions',
            apiVersion: 'v1',
            propagationPolicy: 'Foreground',
          }),
        },
      );
      logger.debug({ job: name }, 'deleted the Job of the attempt');
    } catch (error) {
      if (statusCodeOf(error) === 404) return;
      logger.warn({ err: error, job: name }, 'could not delete the Job of the attempt');
    }
  }
}

/** What the cache keeps of a Job: what jobProgress and the owner check read. */
function slimJob(job: Job): Job {
  const { metadata, spec, status } = job;
  return {
    metadata: slimMetadata(metadata),
    ...(spec?.activeDeadlineSeconds !== undefined
      ? { spec: { activeDeadlineSeconds: spec.activeDeadlineSeconds } }
      : {}),
    ...(status ? { status } : {}),
  };
}

/** What the cache keeps of a pod: its status (the input annotation and spec can be large). */
function slimPod(pod: Pod): Pod {
  return { metadata: slimMetadata(pod.metadata), ...(pod.status ? { status: pod.status } : {}) };
}

function slimMetadata(metadata: Job['metadata']): Job['metadata'] {
  const { annotations: _annotations, ...rest } = metadata;
  return rest;
}
