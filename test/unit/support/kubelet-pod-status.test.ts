import { describe, expect, it } from 'vitest';
import { type KubeletPod, kubeTime, podStatus } from '../../support/kubelet/pod-status.ts';
import { fail } from '../../support/kubelet/scripts.ts';

const pod: KubeletPod = {
  metadata: { name: 'p', namespace: 'ns', uid: 'u1' },
  spec: { containers: [{ name: 'agent', image: 'registry.example/agent:1' }] },
};
const placement = { hostIP: '127.0.0.1', podIP: '10.88.0.2', startTime: '2026-01-01T00:00:00Z' };
const now = '2026-01-01T00:00:05Z';

function conditions(status: Record<string, unknown>): Record<string, string> {
  const list = status['conditions'] as { type: string; status: string; reason?: string }[];
  return Object.fromEntries(
    list.map((c) => [c.type, c.reason ? `${c.status}/${c.reason}` : c.status]),
  );
}

describe('the pod status the fake kubelet writes', () => {
  it('is Pending with ContainerCreating before the sandbox is up, without a pod IP', () => {
    const status = podStatus(pod, { stage: 'creating' }, placement, now);
    expect(status['phase']).toBe('Pending');
    expect(status['podIP']).toBeUndefined();
    expect(status['containerStatuses']).toEqual([
      {
        name: 'agent',
        image: 'registry.example/agent:1',
        imageID: '',
        state: { waiting: { reason: 'ContainerCreating' } },
        ready: false,
        started: false,
        restartCount: 0,
      },
    ]);
    expect(conditions(status)).toEqual({
      PodReadyToStartContainers: 'False',
      Initialized: 'True',
      Ready: 'False/ContainersNotReady',
      ContainersReady: 'False/ContainersNotReady',
      PodScheduled: 'True',
    });
  });

  it('is Running and Ready once started', () => {
    const status = podStatus(pod, { stage: 'running', startedAt: now }, placement, now);
    expect(status['phase']).toBe('Running');
    expect(status['podIP']).toBe('10.88.0.2');
    expect(status['containerStatuses']).toMatchObject([
      { state: { running: { startedAt: now } }, ready: true, started: true },
    ]);
    expect(conditions(status)['Ready']).toBe('True');
  });

  it('is Succeeded or Failed by the exit code, with the termination message', () => {
    const stage = (exitCode: number) =>
      ({
        stage: 'terminated',
        exitCode,
        reason: exitCode === 0 ? 'Completed' : 'Error',
        message: 'said',
        startedAt: placement.startTime,
        finishedAt: now,
      }) as const;
    const succeeded = podStatus(pod, stage(0), placement, now);
    expect(succeeded['phase']).toBe('Succeeded');
    expect(conditions(succeeded)['Ready']).toBe('False/PodCompleted');
    const failed = podStatus(pod, stage(2), placement, now);
    expect(failed['phase']).toBe('Failed');
    expect(conditions(failed)['Ready']).toBe('False/PodFailed');
    expect(failed['containerStatuses']).toMatchObject([
      { state: { terminated: { exitCode: 2, reason: 'Error', message: 'said' } }, ready: false },
    ]);
  });

  it('ends Failed when killed: 137 if the container ran, ContainerStatusUnknown if it never did', () => {
    const ran = podStatus(
      pod,
      { stage: 'killed', startedAt: now, finishedAt: now },
      placement,
      now,
    );
    expect(ran['phase']).toBe('Failed');
    expect(ran['containerStatuses']).toMatchObject([
      { state: { terminated: { exitCode: 137, reason: 'Error' } }, containerID: 'fake://u1/agent' },
    ]);
    const never = podStatus(
      pod,
      { stage: 'killed', startedAt: undefined, finishedAt: now },
      placement,
      now,
    );
    expect(never['containerStatuses']).toMatchObject([
      { state: { terminated: { exitCode: 137, reason: 'ContainerStatusUnknown' } } },
    ]);
    expect((never['containerStatuses'] as Record<string, unknown>[])[0]).not.toHaveProperty(
      'containerID',
    );
  });

  it('reports init containers as having completed', () => {
    const withInit: KubeletPod = {
      ...pod,
      spec: { ...pod.spec, initContainers: [{ name: 'fetch', image: 'registry.example/fetch:1' }] },
    };
    const status = podStatus(withInit, { stage: 'running', startedAt: now }, placement, now);
    expect(status['initContainerStatuses']).toMatchObject([
      { name: 'fetch', state: { terminated: { exitCode: 0, reason: 'Completed' } }, ready: false },
    ]);
  });

  it('writes times with whole seconds, as metav1.Time is', () => {
    expect(kubeTime(new Date('2026-01-02T03:04:05.678Z'))).toBe('2026-01-02T03:04:05Z');
  });

  it('refuses a failure with exit code 0', () => {
    expect(() => fail({ exitCode: 0 })).toThrow(RangeError);
  });
});
