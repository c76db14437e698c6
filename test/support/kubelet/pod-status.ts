// The pod status a kubelet writes at each step of a pod's life, as plain JSON for the
// pods/status subresource. Pure: the FakeKubelet decides when, these functions say what, in the
// shapes pkg/kubelet/status/generate.go gives them (reasons PodCompleted, PodFailed,
// ContainersNotReady; the message "containers with unready status: [a b]").
import { z } from 'zod';

const containerSchema = z.looseObject({ name: z.string(), image: z.string().optional() });

/** The parts of a pod the fake kubelet reads. */
export const kubeletPodSchema = z.looseObject({
  metadata: z.looseObject({
    name: z.string(),
    namespace: z.string(),
    uid: z.string(),
    resourceVersion: z.string().optional(),
    deletionTimestamp: z.string().optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
  }),
  spec: z.looseObject({
    nodeName: z.string().optional(),
    restartPolicy: z.string().optional(),
    containers: z.array(containerSchema),
    initContainers: z.array(containerSchema).optional(),
  }),
  status: z.looseObject({ phase: z.string().optional() }).optional(),
});
export type KubeletPod = z.infer<typeof kubeletPodSchema>;

/** Where a pod's containers are. */
export type PodStage =
  /** Sandbox not ready yet: containers waiting with reason ContainerCreating. */
  | { readonly stage: 'creating' }
  /** The sandbox is up but the image cannot be pulled: waiting with this reason and message. */
  | { readonly stage: 'pullError'; readonly reason: string; readonly message: string }
  | { readonly stage: 'running'; readonly startedAt: string }
  /** Every container exited with `exitCode`; the pod is Succeeded for 0, else Failed. */
  | {
      readonly stage: 'terminated';
      readonly exitCode: number;
      readonly reason: string;
      readonly message: string | undefined;
      readonly startedAt: string;
      readonly finishedAt: string;
    }
  /**
   * Deleted before its containers ended: those that ran were killed (137, Error), those that
   * never started cannot be found (ContainerStatusUnknown, as the kubelet says); Failed.
   */
  | {
      readonly stage: 'killed';
      readonly startedAt: string | undefined;
      readonly finishedAt: string;
    };

/** Where the pod lives: the fake node and the pod's address. */
export interface PodPlacement {
  readonly hostIP: string;
  readonly podIP: string;
  /** When the kubelet first took the pod on (status.startTime). */
  readonly startTime: string;
}

/** RFC 3339 with whole seconds, as metav1.Time is written. */
export function kubeTime(date: Date = new Date()): string {
  return `${date.toISOString().slice(0, 19)}Z`;
}

/** The whole status for the stage: lists replace the stored ones under a merge patch. */
export function podStatus(
  pod: KubeletPod,
  stage: PodStage,
  placement: PodPlacement,
  now: string,
): Record<string, unknown> {
  const containers = pod.spec.containers;
  const phase = phaseOf(stage);
  const sandboxReady = stage.stage === 'pullError' || stage.stage === 'running';
  const started = stage.stage !== 'creating';
  const names = `[${containers.map((c) => c.name).join(' ')}]`;
  const notReady =
    phase === 'Succeeded'
      ? { status: 'False', reason: 'PodCompleted' }
      : phase === 'Failed'
        ? { status: 'False', reason: 'PodFailed' }
        : stage.stage === 'running'
          ? { status: 'True' }
          : {
              status: 'False',
              reason: 'ContainersNotReady',
              message: `containers with unready status: ${names}`,
            };
  const condition = (type: string, fields: Record<string, string>) => ({
    type,
    lastProbeTime: null,
    lastTransitionTime: now,
    ...fields,
  });
  const initContainers = pod.spec.initContainers ?? [];
  return {
    phase,
    conditions: [
      condition('PodReadyToStartContainers', { status: sandboxReady ? 'True' : 'False' }),
      condition('Initialized', { status: 'True' }),
      condition('Ready', notReady),
      condition('ContainersReady', notReady),
      condition('PodScheduled', { status: 'True' }),
    ],
    hostIP: placement.hostIP,
    hostIPs: [{ ip: placement.hostIP }],
    ...(started ? { podIP: placement.podIP, podIPs: [{ ip: placement.podIP }] } : {}),
    startTime: placement.startTime,
    // Init containers are taken to have run, and succeeded, before the sandbox was ready.
    ...(initContainers.length > 0
      ? {
          initContainerStatuses: initContainers.map((c) =>
            containerStatus(pod, c, {
              terminated: {
                exitCode: 0,
                reason: 'Completed',
                startedAt: placement.startTime,
                finishedAt: placement.startTime,
              },
            }),
          ),
        }
      : {}),
    containerStatuses: containers.map((c) => containerStatus(pod, c, containerState(stage))),
  };
}

function phaseOf(stage: PodStage): string {
  switch (stage.stage) {
    case 'creating':
    case 'pullError':
      return 'Pending';
    case 'running':
      return 'Running';
    case 'terminated':
      return stage.exitCode === 0 ? 'Succeeded' : 'Failed';
    case 'killed':
      return 'Failed';
  }
}

function containerState(stage: PodStage): Record<string, unknown> {
  switch (stage.stage) {
    case 'creating':
      return { waiting: { reason: 'ContainerCreating' } };
    case 'pullError':
      return { waiting: { reason: stage.reason, message: stage.message } };
    case 'running':
      return { running: { startedAt: stage.startedAt } };
    case 'terminated':
      return {
        terminated: {
          exitCode: stage.exitCode,
          reason: stage.reason,
          ...(stage.message === undefined ? {} : { message: stage.message }),
          startedAt: stage.startedAt,
          finishedAt: stage.finishedAt,
        },
      };
    case 'killed':
      return stage.startedAt === undefined
        ? {
            terminated: {
              exitCode: 137,
              reason: 'ContainerStatusUnknown',
              message: 'The container could not be located when the pod was terminated',
              finishedAt: stage.finishedAt,
            },
          }
        : {
            terminated: {
              exitCode: 137,
              reason: 'Error',
              startedAt: stage.startedAt,
              finishedAt: stage.finishedAt,
            },
          };
  }
}

function containerStatus(
  pod: KubeletPod,
  container: z.infer<typeof containerSchema>,
  state: Record<string, unknown>,
): Record<string, unknown> {
  const running = 'running' in state;
  const ran = running || ('terminated' in state && !isUnknown(state));
  return {
    name: container.name,
    image: container.image ?? '',
    imageID: '',
    ...(ran ? { containerID: `fake://${pod.metadata.uid}/${container.name}` } : {}),
    state,
    ready: running,
    started: running,
    restartCount: 0,
  };
}

function isUnknown(state: Record<string, unknown>): boolean {
  const terminated = state['terminated'];
  return (
    typeof terminated === 'object' &&
    terminated !== null &&
    'reason' in terminated &&
    terminated.reason === 'ContainerStatusUnknown'
  );
}
