import type { KubeClient } from '../../src/kube/kube-client.ts';
import { statusCodeOf } from '../../src/kube/kube-errors.ts';
import { isRecord } from '../../src/kube/kube-object.ts';
import {
  type Job,
  jobSchema,
  type Pod,
  podSchema,
  trueCondition,
} from '../../src/kube/workloads.ts';
import { waitFor } from './wait.ts';

/** The label the Job controller puts on every pod of a Job. */
export const JOB_NAME_LABEL = 'batch.kubernetes.io/job-name';

export interface JobOptions {
  /** batch/v1 JobSpec fields besides the template; backoffLimit defaults to 0. */
  readonly spec?: Record<string, unknown>;
  readonly ownerReferences?: readonly Record<string, unknown>[];
  readonly labels?: Record<string, string>;
}

/** Jobs and their pods in one namespace, through the operator's own client. */
export class Jobs {
  readonly #client: KubeClient;
  readonly namespace: string;

  constructor(client: KubeClient, namespace: string) {
    this.#client = client;
    this.namespace = namespace;
  }

  /** Creates a Job of one container that runs once (restartPolicy Never). */
  async create(name: string, options: JobOptions = {}): Promise<Job> {
    const body = {
      apiVersion: 'batch/v1',
      kind: 'Job',
      metadata: {
        name,
        ...(options.labels ? { labels: options.labels } : {}),
        ...(options.ownerReferences ? { ownerReferences: options.ownerReferences } : {}),
      },
      spec: {
        backoffLimit: 0,
        ...options.spec,
        template: {
          spec: {
            restartPolicy: 'Never',
            containers: [{ name: 'agent', image: 'registry.example/agent:1' }],
          },
        },
      },
    };
    const created = await this.#client.request('POST', this.#path('jobs'), {
      body: JSON.stringify(body),
    });
    return jobSchema.parse(created);
  }

  /** The Job, or undefined once it is gone. */
  async get(name: string): Promise<Job | undefined> {
    try {
      return jobSchema.parse(await this.#client.request('GET', this.#path('jobs', name)));
    } catch (error) {
      if (statusCodeOf(error) === 404) return undefined;
      throw error;
    }
  }

  async list(labelSelector: string): Promise<Job[]> {
    const query = new URLSearchParams({ labelSelector });
    return items(await this.#client.request('GET', `${this.#path('jobs')}?${query}`), jobSchema);
  }

  /** The pods of the Job, by the label the Job controller gives them. */
  async pods(jobName: string): Promise<Pod[]> {
    const query = new URLSearchParams({ labelSelector: `${JOB_NAME_LABEL}=${jobName}` });
    return items(await this.#client.request('GET', `${this.#path('pods')}?${query}`), podSchema);
  }

  /** Waits for the Job's condition `type` to be True and returns the Job. */
  waitForCondition(name: string, type: string, timeoutMs = 60_000): Promise<Job> {
    return waitFor(
      `condition ${type} of Job ${this.namespace}/${name}`,
      async () => {
        const job = await this.get(name);
        if (!job) throw new Error('the Job is gone');
        return trueCondition(job.status?.conditions, type) ? job : undefined;
      },
      { timeoutMs, intervalMs: 200 },
    );
  }

  /** Waits until the Job and all its pods are gone. */
  async waitForGone(name: string, timeoutMs = 60_000): Promise<void> {
    await waitFor(
      `Job ${this.namespace}/${name} and its pods gone`,
      async () => {
        const [job, pods] = await Promise.all([this.get(name), this.pods(name)]);
        if (job || pods.length > 0) {
          throw new Error(`still there: ${job ? 'the Job, ' : ''}${pods.length} pod(s)`);
        }
        return true;
      },
      { timeoutMs, intervalMs: 200 },
    );
  }

  #path(plural: 'jobs' | 'pods', name?: string): string {
    const base =
      plural === 'jobs'
        ? `/apis/batch/v1/namespaces/${this.namespace}/jobs`
        : `/api/v1/namespaces/${this.namespace}/pods`;
    return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
  }
}

function items<T>(list: unknown, schema: { parse(raw: unknown): T }): T[] {
  if (!isRecord(list) || !Array.isArray(list['items'])) throw new Error('not a list');
  return list['items'].map((item) => schema.parse(item));
}
