// Where an attempt that runs as a Job stands, read from the Job and its pods as the job
// controller and the kubelet report them (issue 16). Pure: the reconciler turns the answer into
// the run's status.
import type { JsonObject } from '../handlers/handler.ts';
import { type ContainerStatus, type Job, type Pod, trueCondition } from '../kube/workloads.ts';
import { truncate } from '../util/text.ts';

/** The container whose termination message is the result; default the pod's first container. */
export interface ProgressOptions {
  readonly container?: string | undefined;
}

export type JobProgress =
  /** No pod runs the agent yet: not created, not scheduled, pulling its image, failing to. */
  | { readonly kind: 'pending'; readonly reason: string; readonly message: string }
  | { readonly kind: 'running'; readonly startedAt: string | undefined }
  | {
      readonly kind: 'succeeded';
      readonly artifacts: JsonObject | undefined;
      readonly finishedAt: string | undefined;
    }
  | {
      readonly kind: 'failed';
      /** TimedOut when the Job's activeDeadlineSeconds (the run's timeout) ended it. */
      readonly reason: 'Failed' | 'TimedOut';
      readonly message: string;
      readonly finishedAt: string | undefined;
    };

/** The longest pod or Job message copied into a run's status (status.error allows 2048). */
const MESSAGE_MAX = 1024;

/**
 * Reads the Job's terminal conditions first (Complete, Failed: the job controller's verdict,
 * written once its pods are gone or finished), then the newest pod. SuccessCriteriaMet and
 * FailureTarget come before the terminal conditions while pods are still being terminated;
 * they count as still running, so the outcome is written once, from the final state.
 */
export function jobProgress(
  job: Job,
  pods: readonly Pod[],
  options: ProgressOptions = {},
): JobProgress {
  const conditions = job.status?.conditions;
  const pod = newest(pods);
  const agent = newestAgent(pods, options.container);
  const terminated = agent?.state?.terminated;

  const complete = trueCondition(conditions, 'Complete');
  if (complete) {
    return {
      kind: 'succeeded',
      artifacts: terminated ? resultOf(terminated.message) : undefined,
      finishedAt: job.status?.completionTime ?? complete.lastTransitionTime,
    };
  }
  const failed = trueCondition(conditions, 'Failed');
  if (failed) {
    const finishedAt = failed.lastTransitionTime;
    if (failed.reason === 'DeadlineExceeded') {
      const limit = job.spec?.activeDeadlineSeconds;
      return {
        kind: 'failed',
        reason: 'TimedOut',
        message: `the agent's Job ran past the run's timeout${limit !== undefined ? ` (activeDeadlineSeconds ${limit})` : ''}`,
        finishedAt,
      };
    }
    return {
      kind: 'failed',
      reason: 'Failed',
      message: terminated
        ? exitMessage(terminated)
        : clip(failed.message ?? `the agent's Job failed (${failed.reason ?? 'no reason given'})`),
      finishedAt,
    };
  }

  if (!pod) {
    // The job controller has decided (a deadline, say) and deleted the pod before it writes the
    // final condition: the attempt has run, it is not starting again.
    if (
      trueCondition(conditions, 'FailureTarget') ||
      trueCondition(conditions, 'SuccessCriteriaMet') ||
      (job.status?.failed ?? 0) + (job.status?.succeeded ?? 0) > 0
    ) {
      return { kind: 'running', startedAt: job.status?.startTime };
    }
    return { kind: 'pending', reason: 'JobCreated', message: "waiting for the Job's pod" };
  }
  const phase = pod.status?.phase;
  if (phase === 'Running' || phase === 'Succeeded' || phase === 'Failed') {
    // A finished pod before the Job's verdict: still running as far as the run is concerned.
    return {
      kind: 'running',
      startedAt: agent?.state?.running?.startedAt ?? terminated?.startedAt ?? pod.status?.startTime,
    };
  }
  const waiting = agent?.state?.waiting;
  if (waiting?.reason) {
    return {
      kind: 'pending',
      reason: conditionReason(waiting.reason),
      message: clip(waiting.message ?? waiting.reason),
    };
  }
  const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
  if (scheduled?.status === 'False') {
    return {
      kind: 'pending',
      reason: conditionReason(scheduled.reason ?? 'Unschedulable'),
      message: clip(scheduled.message ?? 'the pod is not scheduled yet'),
    };
  }
  return { kind: 'pending', reason: 'PodPending', message: 'the pod is starting' };
}

/**
 * Whether the Job has its verdict (Complete, or Failed other than by its deadline) while the
 * given pods do not show how the agent container ended: the result then lies in a pod update the
 * cache has not received yet. The Job and its pods come from two watches with no order between
 * them, and the job controller writes its verdict only after it has seen the pod end, so a
 * follower may see the verdict first. Read the pods again before taking the verdict without
 * them, or a succeeded run loses its artifacts and a failed one its exit code.
 */
export function awaitsPodResult(
  job: Job,
  pods: readonly Pod[],
  options: ProgressOptions = {},
): boolean {
  const conditions = job.status?.conditions;
  const failed = trueCondition(conditions, 'Failed');
  const decided =
    trueCondition(conditions, 'Complete') !== undefined ||
    (failed !== undefined && failed.reason !== 'DeadlineExceeded');
  return decided && newestAgent(pods, options.container)?.state?.terminated === undefined;
}

/**
 * The result the agent reported in its termination message: a JSON object is the artifacts; any
 * other text is kept as `{ message }`; nothing, or only whitespace, is no artifacts. The kubelet
 * caps termination messages at 4 KiB, within the status' artifact cap.
 */
export function resultOf(message: string | undefined): JsonObject | undefined {
  const text = message?.trim();
  if (!text) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
      return value as JsonObject;
    }
  } catch {
    // Not JSON: kept as text below.
  }
  return { message: text };
}

/** "exit code 3 (Error): <termination message>", what a user needs from a failed container. */
export function exitMessage(
  terminated: NonNullable<ContainerStatus['state']>['terminated'],
): string {
  if (!terminated) return 'the agent container ended';
  const how =
    terminated.signal !== undefined
      ? `signal ${terminated.signal}`
      : `exit code ${terminated.exitCode}`;
  const reason = terminated.reason ? ` (${terminated.reason})` : '';
  const said = terminated.message?.trim();
  return clip(`the agent container ended with ${how}${reason}${said ? `: ${said}` : ''}`);
}

function newest(pods: readonly Pod[]): Pod | undefined {
  let best: Pod | undefined;
  for (const pod of pods) {
    if (!best || (pod.metadata.creationTimestamp ?? '') > (best.metadata.creationTimestamp ?? '')) {
      best = pod;
    }
  }
  return best;
}

/** The agent container's status in the newest pod (its first container when unnamed). */
function newestAgent(pods: readonly Pod[], name: string | undefined): ContainerStatus | undefined {
  const statuses = newest(pods)?.status?.containerStatuses ?? [];
  return name === undefined ? statuses[0] : statuses.find((s) => s.name === name);
}

/** A metav1.Condition reason: CamelCase letters, digits, `_`, `,` and `:`. */
function conditionReason(reason: string): string {
  const clean = reason.replace(/[^A-Za-z0-9_,:]/g, '');
  return /^[A-Za-z]/.test(clean) ? clean.slice(0, 1024) : 'PodPending';
}

function clip(message: string): string {
  return truncate(message, MESSAGE_MAX);
}
