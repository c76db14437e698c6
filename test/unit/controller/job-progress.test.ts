import { describe, expect, it } from 'vitest';
import {
  awaitsPodResult,
  exitMessage,
  jobProgress,
  resultOf,
} from '../../../src/controller/job-progress.ts';
import type { Job, Pod } from '../../../src/kube/workloads.ts';

const T = '2026-03-01T10:00:00Z';

function job(
  conditions: { type: string; status?: string; reason?: string; message?: string }[] = [],
): Job {
  return {
    metadata: { name: 'run-1a2b3c4d-1' },
    spec: { activeDeadlineSeconds: 30 },
    status: {
      conditions: conditions.map((c) => ({
        status: 'True',
        lastTransitionTime: T,
        ...c,
      })),
    },
  };
}

function pod(status: NonNullable<Pod['status']>, created = T): Pod {
  return { metadata: { name: 'p', creationTimestamp: created }, status };
}

const terminated = (
  exitCode: number,
  message?: string,
  reason = exitCode === 0 ? 'Completed' : 'Error',
) => ({
  phase: exitCode === 0 ? 'Succeeded' : 'Failed',
  containerStatuses: [
    {
      name: 'agent',
      state: {
        terminated: {
          exitCode,
          reason,
          ...(message === undefined ? {} : { message }),
          startedAt: T,
          finishedAt: T,
        },
      },
    },
  ],
});

describe('jobProgress', () => {
  it('is pending until the Job has a pod', () => {
    expect(jobProgress(job(), [])).toEqual({
      kind: 'pending',
      reason: 'JobCreated',
      message: "waiting for the Job's pod",
    });
  });

  it('mirrors an unscheduled pod and an image that cannot be pulled, with the kubelet’s words', () => {
    const unschedulable = pod({
      phase: 'Pending',
      conditions: [
        {
          type: 'PodScheduled',
          status: 'False',
          reason: 'Unschedulable',
          message: '0/3 nodes are available: 3 Insufficient cpu.',
        },
      ],
    });
    expect(jobProgress(job(), [unschedulable])).toEqual({
      kind: 'pending',
      reason: 'Unschedulable',
      message: '0/3 nodes are available: 3 Insufficient cpu.',
    });
    const pulling = pod({
      phase: 'Pending',
      containerStatuses: [
        {
          name: 'agent',
          state: {
            waiting: {
              reason: 'ImagePullBackOff',
              message: 'Back-off pulling image "example.test/nope:1"',
            },
          },
        },
      ],
    });
    expect(jobProgress(job(), [pulling])).toEqual({
      kind: 'pending',
      reason: 'ImagePullBackOff',
      message: 'Back-off pulling image "example.test/nope:1"',
    });
    expect(jobProgress(job(), [pod({ phase: 'Pending' })]).kind).toBe('pending');
  });

  it('is running once the pod runs, and still running when the pod ended before the Job’s verdict', () => {
    const running = pod({
      phase: 'Running',
      startTime: T,
      containerStatuses: [{ name: 'agent', state: { running: { startedAt: T } } }],
    });
    expect(jobProgress(job(), [running])).toEqual({ kind: 'running', startedAt: T });
    // SuccessCriteriaMet comes before Complete while the job controller finishes up.
    expect(
      jobProgress(job([{ type: 'SuccessCriteriaMet' }]), [pod(terminated(0, '{}'))]).kind,
    ).toBe('running');
    expect(jobProgress(job([{ type: 'FailureTarget' }]), [pod(terminated(1))]).kind).toBe(
      'running',
    );
  });

  it('is still running when the job controller deleted the pod before its final condition', () => {
    // activeDeadlineSeconds: the pod is killed and gone, FailureTarget set, Failed not yet.
    const deciding = job([{ type: 'FailureTarget', reason: 'DeadlineExceeded' }]);
    expect(jobProgress(deciding, []).kind).toBe('running');
    const counted: Job = { ...job(), status: { failed: 1 } };
    expect(jobProgress(counted, []).kind).toBe('running');
  });

  it('succeeds with the termination message as the result', () => {
    expect(
      jobProgress(job([{ type: 'Complete' }]), [pod(terminated(0, '{"triaged": 12}\n'))]),
    ).toEqual({ kind: 'succeeded', artifacts: { triaged: 12 }, finishedAt: T });
  });

  it('fails with the exit code and the agent’s message, from the newest pod', () => {
    const old = pod(terminated(2, 'old attempt'), '2026-03-01T09:00:00Z');
    const progress = jobProgress(job([{ type: 'Failed', reason: 'BackoffLimitExceeded' }]), [
      old,
      pod(terminated(3, 'no alerts source configured')),
    ]);
    expect(progress).toEqual({
      kind: 'failed',
      reason: 'Failed',
      message: 'the agent container ended with exit code 3 (Error): no alerts source configured',
      finishedAt: T,
    });
  });

  it('times out when the Job ran past its activeDeadlineSeconds (the run’s timeout)', () => {
    expect(jobProgress(job([{ type: 'Failed', reason: 'DeadlineExceeded' }]), [])).toEqual({
      kind: 'failed',
      reason: 'TimedOut',
      message: "the agent's Job ran past the run's timeout (activeDeadlineSeconds 30)",
      finishedAt: T,
    });
  });

  it('falls back to the Job’s own message when no container ended', () => {
    const progress = jobProgress(
      job([
        { type: 'Failed', reason: 'PodFailurePolicy', message: 'Container agent for pod p failed' },
      ]),
      [],
    );
    expect(progress).toMatchObject({ kind: 'failed', message: 'Container agent for pod p failed' });
  });

  it('reads the named container when the pod has sidecars', () => {
    const sidecars = pod({
      phase: 'Succeeded',
      containerStatuses: [
        { name: 'a-proxy', state: { terminated: { exitCode: 0, message: '{"proxy": true}' } } },
        { name: 'agent', state: { terminated: { exitCode: 0, message: '{"agent": true}' } } },
      ],
    });
    expect(
      jobProgress(job([{ type: 'Complete' }]), [sidecars], { container: 'agent' }),
    ).toMatchObject({ artifacts: { agent: true } });
  });
});

describe('awaitsPodResult', () => {
  const running = pod({
    phase: 'Running',
    containerStatuses: [{ name: 'agent', state: { running: { startedAt: T } } }],
  });

  it('waits for the pod when the verdict came before the pod update that carries the result', () => {
    expect(awaitsPodResult(job([{ type: 'Complete' }]), [running])).toBe(true);
    expect(awaitsPodResult(job([{ type: 'Complete' }]), [])).toBe(true);
    expect(
      awaitsPodResult(job([{ type: 'Failed', reason: 'BackoffLimitExceeded' }]), [running]),
    ).toBe(true);
  });

  it('does not wait once the agent container ended, nor before the verdict', () => {
    expect(awaitsPodResult(job([{ type: 'Complete' }]), [pod(terminated(0, '{}'))])).toBe(false);
    expect(awaitsPodResult(job(), [running])).toBe(false);
    expect(awaitsPodResult(job([{ type: 'SuccessCriteriaMet' }]), [running])).toBe(false);
  });

  it('does not wait for a pod on a timeout, whose message does not come from the pod', () => {
    expect(awaitsPodResult(job([{ type: 'Failed', reason: 'DeadlineExceeded' }]), [running])).toBe(
      false,
    );
  });
});

describe('resultOf', () => {
  it('takes a JSON object, keeps other text as a message, and nothing as nothing', () => {
    expect(resultOf('{"a":1}')).toEqual({ a: 1 });
    expect(resultOf('[1,2]')).toEqual({ message: '[1,2]' });
    expect(resultOf('done: 3 alerts')).toEqual({ message: 'done: 3 alerts' });
    expect(resultOf(' \n')).toBeUndefined();
    expect(resultOf(undefined)).toBeUndefined();
  });
});

describe('exitMessage', () => {
  it('names a signal when the container was killed', () => {
    expect(exitMessage({ exitCode: 137, signal: 9, reason: 'OOMKilled' })).toBe(
      'the agent container ended with signal 9 (OOMKilled)',
    );
  });
});
