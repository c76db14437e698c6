import { randomBytes } from 'node:crypto';
import { Informer } from '../../src/kube/informer.ts';
import { ContentType, type HttpMethod, type KubeClient } from '../../src/kube/kube-client.ts';
import { describeKubeError, statusCodeOf } from '../../src/kube/kube-errors.ts';
import { silentLogger } from '../../src/util/log.ts';
import { sleep } from '../../src/util/sleep.ts';
import {
  type KubeletPod,
  kubeletPodSchema,
  kubeTime,
  type PodPlacement,
  type PodStage,
  podStatus,
} from './kubelet/pod-status.ts';
import type { PodScript } from './kubelet/scripts.ts';

export type { KubeletPod } from './kubelet/pod-status.ts';
export {
  type FailScript,
  fail,
  type PodScript,
  type PullErrorScript,
  pullError,
  type RunForeverScript,
  runForever,
  type SucceedScript,
  succeed,
} from './kubelet/scripts.ts';

export interface FakeKubeletOptions {
  /** Only pods of this namespace; default every namespace. */
  readonly namespace?: string;
  /**
   * What the pod's containers do, asked once per pod when the kubelet first sees it (by its
   * labels, say, or its containers' command or env). undefined leaves the pod alone: unbound and
   * Pending, as if meant for another node.
   */
  readonly script: (pod: KubeletPod) => PodScript | undefined;
  /** The Node it registers and binds pods to; default `fake-kubelet-<random>`. */
  readonly nodeName?: string;
}

const HOST_IP = '127.0.0.1';
/** How long a write is retried while the API server fails or cannot be reached. */
const RETRY_FOR_MS = 30_000;

/** One pod the kubelet plays, from binding to its end. */
interface PodRun {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly script: PodScript;
  /** Ends the script between its steps: on a graceful delete, when the pod is gone, on stop. */
  readonly ending: AbortController;
  /** The pod is gone from the API: its writes stop, in flight or not. */
  readonly gone: AbortController;
  /** Set once the pod is bound here: from then on only a kill ends it properly. */
  placement: PodPlacement | undefined;
  startedAt: string | undefined;
  /** Set once the pod's status is Succeeded or Failed: nothing to kill any more. */
  terminal: boolean;
  /** The script's progress; a kill waits for it so that no write of the script lands after. */
  playing: Promise<void>;
  killing: Promise<void> | undefined;
}

/**
 * Plays the kubelet (and the scheduler) for the pods of a test control plane, which has neither:
 * it registers a Node, binds each pod it takes to it through pods/binding, and writes the pod's
 * status through pods/status as the kubelet does: Pending with ContainerCreating, then Running,
 * then terminated with an exit code, reason and termination message, Succeeded or Failed. What
 * each pod does is its PodScript; containers are never restarted, as under restartPolicy Never
 * (what Jobs for agents use). A pod deleted gracefully is killed (Failed, exit 137) and then
 * deleted for good, as the kubelet does once its containers have stopped; a pod that is gone is
 * dropped quietly. Writes that fail for another reason than the pod being gone are kept in
 * `failures()`, for tests to assert on.
 *
 * Run kube-controller-manager with it (`ControlPlane.start({ controllerManager: true })`) and
 * Jobs go through: the Job controller makes the pods, this plays them, and the Job controller
 * turns their phases into the Job's conditions.
 */
export class FakeKubelet {
  readonly nodeName: string;
  readonly #client: KubeClient;
  readonly #script: (pod: KubeletPod) => PodScript | undefined;
  readonly #informer: Informer<KubeletPod>;
  /** Pods being played, by uid. */
  readonly #runs = new Map<string, PodRun>();
  /** Pods looked at and left alone, by uid, so the script is asked once per pod. */
  readonly #ignored = new Set<string>();
  readonly #stopping = new AbortController();
  readonly #failures: string[] = [];
  #podIps = 0;

  private constructor(client: KubeClient, options: FakeKubeletOptions) {
    this.nodeName = options.nodeName ?? `fake-kubelet-${randomBytes(3).toString('hex')}`;
    this.#client = client;
    this.#script = options.script;
    this.#informer = new Informer<KubeletPod>({
      client,
      group: '',
      version: 'v1',
      plural: 'pods',
      namespace: options.namespace,
      parse: (raw) => kubeletPodSchema.parse(raw),
      logger: silentLogger(),
      resyncPeriodMs: 0,
      backoff: { initialMs: 100, maxMs: 2_000 },
    });
    this.#informer.addEventHandler({
      onAdd: (pod) => this.#observe(pod),
      onUpdate: (old, pod) => {
        if (old.metadata.uid !== pod.metadata.uid) this.#forget(old.metadata.uid);
        this.#observe(pod);
      },
      onDelete: (pod) => this.#forget(pod.metadata.uid),
    });
  }

  /** Registers the Node, then takes on pods; resolves once it has seen every existing pod. */
  static async start(client: KubeClient, options: FakeKubeletOptions): Promise<FakeKubelet> {
    const kubelet = new FakeKubelet(client, options);
    await kubelet.#registerNode();
    kubelet.#informer.start();
    await kubelet.#informer.waitForSync();
    return kubelet;
  }

  /** Writes that failed other than because the pod was gone: `<pod>: <what>: <error>`. */
  failures(): readonly string[] {
    return [...this.#failures];
  }

  /** Stops playing (pods stay as they are) and removes the Node. */
  async stop(): Promise<void> {
    if (this.#stopping.signal.aborted) return;
    this.#stopping.abort();
    await this.#informer.stop();
    const runs = [...this.#runs.values()];
    for (const run of runs) run.ending.abort();
    await Promise.all(runs.map((run) => Promise.all([run.playing, run.killing])));
    this.#runs.clear();
    await this.#client
      .request('DELETE', `/api/v1/nodes/${encodeURIComponent(this.nodeName)}`)
      .catch(() => undefined);
  }

  async #registerNode(): Promise<void> {
    const now = kubeTime();
    const node = {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: this.nodeName,
        labels: { 'kubernetes.io/hostname': this.nodeName, 'kubernetes.io/os': 'linux' },
      },
      // A Node may be created with its status, as the kubelet registers itself.
      status: {
        conditions: [
          {
            type: 'Ready',
            status: 'True',
            reason: 'KubeletReady',
            message: 'fake kubelet is posting ready status',
            lastHeartbeatTime: now,
            lastTransitionTime: now,
          },
        ],
        addresses: [
          { type: 'InternalIP', address: HOST_IP },
          { type: 'Hostname', address: this.nodeName },
        ],
        capacity: { cpu: '2', memory: '4Gi', pods: '1000' },
        allocatable: { cpu: '2', memory: '4Gi', pods: '1000' },
      },
    };
    try {
      await this.#client.request('POST', '/api/v1/nodes', { body: JSON.stringify(node) });
    } catch (error) {
      if (statusCodeOf(error) !== 409) throw error;
    }
  }

  #observe(pod: KubeletPod): void {
    if (this.#stopping.signal.aborted) return;
    const { uid } = pod.metadata;
    const existing = this.#runs.get(uid);
    if (existing) {
      if (pod.metadata.deletionTimestamp !== undefined && existing.killing === undefined) {
        existing.killing = this.#kill(existing, pod).catch((error: unknown) =>
          this.#fail(existing, 'kill', error),
        );
      }
      return;
    }
    if (this.#ignored.has(uid)) return;
    const { nodeName } = pod.spec;
    const phase = pod.status?.phase;
    const finished = phase === 'Succeeded' || phase === 'Failed';
    if (
      (nodeName !== undefined && nodeName !== this.nodeName) ||
      finished ||
      pod.metadata.deletionTimestamp !== undefined
    ) {
      // Another node's, already over, or deleted before it was ever run here.
      this.#ignored.add(uid);
      return;
    }
    let script: PodScript | undefined;
    try {
      script = this.#script(pod);
    } catch (error) {
      this.#failures.push(
        `${pod.metadata.namespace}/${pod.metadata.name}: script: ${String(error)}`,
      );
    }
    if (script === undefined) {
      this.#ignored.add(uid);
      return;
    }
    const run: PodRun = {
      uid,
      namespace: pod.metadata.namespace,
      name: pod.metadata.name,
      script,
      ending: new AbortController(),
      gone: new AbortController(),
      placement: undefined,
      startedAt: undefined,
      terminal: false,
      playing: Promise.resolve(),
      killing: undefined,
    };
    this.#runs.set(uid, run);
    run.playing = this.#play(run, pod).catch((error: unknown) => this.#fail(run, 'play', error));
  }

  #forget(uid: string | undefined): void {
    if (uid === undefined) return;
    const run = this.#runs.get(uid);
    run?.ending.abort();
    run?.gone.abort();
    this.#runs.delete(uid);
    this.#ignored.delete(uid);
  }

  async #play(run: PodRun, pod: KubeletPod): Promise<void> {
    const ending = run.ending.signal;
    if (pod.spec.nodeName === undefined) {
      const binding = {
        apiVersion: 'v1',
        kind: 'Binding',
        metadata: { name: run.name, uid: run.uid },
        target: { apiVersion: 'v1', kind: 'Node', name: this.nodeName },
      };
      if (!(await this.#send(run, 'bind', 'POST', `${podPath(run)}/binding`, binding))) return;
    }
    run.placement = { hostIP: HOST_IP, podIP: this.#nextPodIp(), startTime: kubeTime() };
    if (ending.aborted || !(await this.#writeStatus(run, pod, { stage: 'creating' }))) return;
    const { script } = run;
    if (script.kind === 'pullError') {
      const { reason, message } = script;
      if (!ending.aborted)
        await this.#writeStatus(run, pod, { stage: 'pullError', reason, message });
      return;
    }
    if (ending.aborted) return;
    const startedAt = kubeTime();
    run.startedAt = startedAt;
    if (!(await this.#writeStatus(run, pod, { stage: 'running', startedAt }))) return;
    if (script.kind === 'runForever') return;
    await sleep(script.afterMs, ending);
    if (ending.aborted) return;
    const exit =
      script.kind === 'succeed'
        ? { exitCode: 0, reason: 'Completed' }
        : { exitCode: script.exitCode, reason: 'Error' };
    const stage: PodStage = {
      stage: 'terminated',
      ...exit,
      message: script.message,
      startedAt,
      finishedAt: kubeTime(),
    };
    if (await this.#writeStatus(run, pod, stage)) run.terminal = true;
  }

  /**
   * A graceful delete: the containers stop (those that ran exit 137), the pod ends Failed unless
   * it had already ended, and then goes for good (grace period 0, only this uid).
   */
  async #kill(run: PodRun, pod: KubeletPod): Promise<void> {
    run.ending.abort();
    await run.playing;
    // Never bound here (deleted first): the API server deletes it without a kubelet.
    if (run.placement === undefined) return;
    if (!run.terminal) {
      const stage: PodStage = { stage: 'killed', startedAt: run.startedAt, finishedAt: kubeTime() };
      if (!(await this.#writeStatus(run, pod, stage))) return;
      run.terminal = true;
    }
    const options = {
      apiVersion: 'v1',
      kind: 'DeleteOptions',
      gracePeriodSeconds: 0,
      preconditions: { uid: run.uid },
    };
    await this.#send(run, 'delete', 'DELETE', podPath(run), options);
  }

  #writeStatus(run: PodRun, pod: KubeletPod, stage: PodStage): Promise<boolean> {
    const placement = run.placement;
    if (placement === undefined) throw new Error('a pod status before the pod was placed');
    // The uid makes the patch fail for a namespace/name that is now another pod, as the
    // kubelet's own status patches do.
    const patch = {
      metadata: { uid: run.uid },
      status: podStatus(pod, stage, placement, kubeTime()),
    };
    return this.#send(run, stage.stage, 'PATCH', `${podPath(run)}/status`, patch, {
      contentType: ContentType.MergePatch,
    });
  }

  /**
   * One write, retried while the API server is unavailable. False when it did not happen: the
   * pod is gone (404, or 409: a precondition on its uid, or bound elsewhere), the kubelet
   * stopped, or another error (kept in failures). A write in flight is not cut short by the end
   * of the script: a kill must know whether the pod was bound.
   */
  async #send(
    run: PodRun,
    what: string,
    method: HttpMethod,
    path: string,
    body: unknown,
    options: { contentType?: string } = {},
  ): Promise<boolean> {
    const signal = AbortSignal.any([run.gone.signal, this.#stopping.signal]);
    const deadline = Date.now() + RETRY_FOR_MS;
    for (let delayMs = 100; ; delayMs = Math.min(delayMs * 2, 2_000)) {
      if (signal.aborted) return false;
      try {
        await this.#client.request(method, path, {
          body: JSON.stringify(body),
          contentType: options.contentType,
          signal,
        });
        return true;
      } catch (error) {
        if (signal.aborted) return false;
        const code = statusCodeOf(error);
        if (code === 404 || code === 409) return false;
        const transient = code === undefined || code === 429 || code >= 500;
        if (!transient || Date.now() >= deadline) {
          this.#fail(run, what, error);
          return false;
        }
      }
      await sleep(delayMs, signal);
    }
  }

  #fail(run: PodRun, what: string, error: unknown): void {
    this.#failures.push(`${run.namespace}/${run.name}: ${what}: ${describeKubeError(error)}`);
  }

  #nextPodIp(): string {
    this.#podIps += 1;
    return `10.88.${Math.floor(this.#podIps / 250) % 250}.${(this.#podIps % 250) + 1}`;
  }
}

function podPath(run: Pick<PodRun, 'namespace' | 'name'>): string {
  return `/api/v1/namespaces/${encodeURIComponent(run.namespace)}/pods/${encodeURIComponent(run.name)}`;
}
