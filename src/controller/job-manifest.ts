// The batch/v1 Job that runs one attempt of an AgentRun whose agent is a container image
// (issue 16): its name, labels, owner, and how the run's input reaches the container. Pure: the
// reconciler creates what this returns.
import { createHash } from 'node:crypto';
import { type AgentRun, API_VERSION, GROUP, KIND } from '../api/agentrun.ts';
import type { JsonObject, PodSpec } from '../handlers/handler.ts';

/** Label keys on the Job and its pod; the run id selects an attempt's pods across restarts. */
export const JobLabel = {
  ManagedBy: 'app.kubernetes.io/managed-by',
  RunId: `${GROUP}/run-id`,
  Attempt: `${GROUP}/attempt`,
  Agent: `${GROUP}/agent`,
} as const;

/** The pod annotation that holds the input document, mounted as a file by the downward API. */
export const INPUT_ANNOTATION = `${GROUP}/input`;
/** Where the input document appears in every container. */
export const INPUT_DIR = '/var/run/agentrun';
export const INPUT_FILE = `${INPUT_DIR}/input.json`;
const INPUT_VOLUME = 'agentrun-input';

/** Environment variables the operator sets in every container; the agent's own may not. */
export const RESERVED_ENV = [
  'AGENTRUN_ID',
  'AGENTRUN_ATTEMPT',
  'AGENTRUN_NAME',
  'AGENTRUN_NAMESPACE',
  'AGENTRUN_AGENT',
  'AGENTRUN_OBJECTIVE',
  'AGENTRUN_DRY_RUN',
  'AGENTRUN_PARAMS',
  'AGENTRUN_INPUT_FILE',
] as const;

/** Kubernetes limits a Job's name to 63 characters: it becomes a label value on its pods. */
export const JOB_NAME_MAX_LENGTH = 63;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;

/**
 * The Job's name for attempt `attempt` of `run`: deterministic, so an operator restarted while
 * the Job runs finds it instead of creating a second one; unique per run uid and attempt, so a
 * run deleted and created again under the same name gets new Jobs; at most 63 characters, a
 * valid DNS label (`<run name, shortened>-<8 hex of a hash of the uid>-<attempt>`).
 */
export function jobName(
  run: { readonly metadata: { readonly name: string; readonly uid: string } },
  attempt: number,
): string {
  const hash = createHash('sha256').update(run.metadata.uid).digest('hex').slice(0, 8);
  const suffix = `-${hash}-${attempt}`;
  // A run's name is a DNS subdomain: dots become dashes, and the cut must not end on a dash.
  const base = run.metadata.name
    .replaceAll('.', '-')
    .slice(0, JOB_NAME_MAX_LENGTH - suffix.length)
    .replace(/-+$/, '');
  return `${base}${suffix}`;
}

/** What the agent's container gets as input: the document mounted at INPUT_FILE. */
export interface JobInput {
  readonly runId: string;
  readonly attempt: number;
  readonly name: string;
  readonly namespace: string;
  readonly agent: string;
  readonly objective: string;
  readonly dryRun: boolean;
  readonly params: JsonObject;
  readonly requestedBy?: string;
}

export function jobInput(run: AgentRun, attempt: number, params: JsonObject): JobInput {
  return {
    runId: run.metadata.uid,
    attempt,
    name: run.metadata.name,
    namespace: run.metadata.namespace,
    agent: run.spec.agent,
    objective: run.spec.objective,
    dryRun: run.spec.dryRun,
    params,
    ...(run.spec.requestedBy !== undefined ? { requestedBy: run.spec.requestedBy } : {}),
  };
}

export interface JobManifestOptions {
  /** The agent's pod spec (from its AgentDefinition): containers, serviceAccountName, ... */
  readonly podSpec: PodSpec;
  /** The params after the handler's validation (what the container receives). */
  readonly params: JsonObject;
  /**
   * activeDeadlineSeconds: what is left of the run's timeoutSeconds since its first start (the
   * caller computes it; the deadline covers every attempt); undefined: no deadline.
   */
  readonly deadlineSeconds?: number | undefined;
}

/**
 * The Job for attempt `attempt` of `run`. Owned by the run (controller reference, blocking the
 * owner's foreground deletion), so deleting the run collects the Job and its pod. The Job itself
 * never retries (backoffLimit 0, restartPolicy Never): retries are the run's, with its backoff,
 * each a new Job. The input reaches every container twice: as AGENTRUN_* environment variables
 * and as a JSON document at INPUT_FILE (the downward API mounts the pod's annotation, so no
 * ConfigMap or Secret has to be created, owned and collected).
 */
export function jobManifest(
  run: AgentRun,
  attempt: number,
  options: JobManifestOptions,
): Record<string, unknown> {
  const input = jobInput(run, attempt, options.params);
  const labels: Record<string, string> = {
    [JobLabel.ManagedBy]: 'agentrun-operator',
    [JobLabel.RunId]: run.metadata.uid,
    [JobLabel.Attempt]: String(attempt),
  };
  // Agent names may be longer than a label value allows; the input document always has it.
  if (run.spec.agent.length <= 63 && LABEL_VALUE.test(run.spec.agent)) {
    labels[JobLabel.Agent] = run.spec.agent;
  }
  const env = [
    { name: 'AGENTRUN_ID', value: input.runId },
    { name: 'AGENTRUN_ATTEMPT', value: String(attempt) },
    { name: 'AGENTRUN_NAME', value: input.name },
    { name: 'AGENTRUN_NAMESPACE', value: input.namespace },
    { name: 'AGENTRUN_AGENT', value: input.agent },
    { name: 'AGENTRUN_OBJECTIVE', value: input.objective },
    { name: 'AGENTRUN_DRY_RUN', value: String(input.dryRun) },
    { name: 'AGENTRUN_PARAMS', value: JSON.stringify(input.params) },
    { name: 'AGENTRUN_INPUT_FILE', value: INPUT_FILE },
  ];
  const reserved = new Set<string>(RESERVED_ENV);
  const { containers, volumes, ...rest } = options.podSpec;
  const podSpec = {
    ...rest,
    restartPolicy: 'Never',
    containers: containers.map((container) => withInput(container, env, reserved)),
    volumes: [
      ...(Array.isArray(volumes) ? volumes.filter((v) => nameOf(v) !== INPUT_VOLUME) : []),
      {
        name: INPUT_VOLUME,
        downwardAPI: {
          items: [
            {
              path: 'input.json',
              fieldRef: { fieldPath: `metadata.annotations['${INPUT_ANNOTATION}']` },
            },
          ],
        },
      },
    ],
  };
  return {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name: jobName(run, attempt),
      namespace: run.metadata.namespace,
      labels,
      ownerReferences: [
        {
          apiVersion: API_VERSION,
          kind: KIND,
          name: run.metadata.name,
          uid: run.metadata.uid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      backoffLimit: 0,
      completions: 1,
      parallelism: 1,
      ...(options.deadlineSeconds !== undefined
        ? { activeDeadlineSeconds: Math.max(1, Math.ceil(options.deadlineSeconds)) }
        : {}),
      template: {
        metadata: { labels, annotations: { [INPUT_ANNOTATION]: JSON.stringify(input) } },
        spec: podSpec,
      },
    },
  };
}

/** The `name` of a list item (env var, volume, mount). */
function nameOf(item: unknown): unknown {
  return typeof item === 'object' && item !== null
    ? (item as Record<string, unknown>)['name']
    : undefined;
}

function withInput(
  container: Readonly<Record<string, unknown>>,
  env: readonly { name: string; value: string }[],
  reserved: ReadonlySet<string>,
): Record<string, unknown> {
  const own = Array.isArray(container['env']) ? (container['env'] as unknown[]) : [];
  const mounts = Array.isArray(container['volumeMounts'])
    ? (container['volumeMounts'] as unknown[])
    : [];
  return {
    // A crashed agent's last log lines become its failure message when it wrote none.
    terminationMessagePolicy: 'FallbackToLogsOnError',
    ...container,
    env: [...own.filter((e) => !reserved.has(String(nameOf(e)))), ...env],
    volumeMounts: [
      ...mounts.filter((m) => nameOf(m) !== INPUT_VOLUME),
      { name: INPUT_VOLUME, mountPath: INPUT_DIR, readOnly: true },
    ],
  };
}
