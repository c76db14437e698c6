import { randomBytes } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { KubeClient } from '../../../src/kube/kube-client.ts';
import { statusCodeOf } from '../../../src/kube/kube-errors.ts';
import { type Job, type Pod, trueCondition } from '../../../src/kube/workloads.ts';
import { ControlPlane } from '../../support/envtest/control-plane.ts';
import { adminClient } from '../../support/envtest/users.ts';
import { JOB_NAME_LABEL, Jobs } from '../../support/jobs.ts';
import {
  FakeKubelet,
  fail,
  type PodScript,
  pullError,
  runForever,
  succeed,
} from '../../support/kubelet.ts';
import { waitFor } from '../../support/wait.ts';

// A control plane of this file's own, with kube-controller-manager, and a fake kubelet: Jobs
// run as in a cluster, minus containers.
let plane: ControlPlane;
let client: KubeClient;
let kubelet: FakeKubelet;
let jobs: Jobs;
/** What each Job's pods do, by Job name; set before the Job is created. */
const scripts = new Map<string, PodScript>();

beforeAll(async () => {
  plane = await ControlPlane.start({ controllerManager: true });
  client = adminClient(plane.info);
  const namespace = `kcm-${randomBytes(3).toString('hex')}`;
  await client.request('POST', '/api/v1/namespaces', {
    body: JSON.stringify({ metadata: { name: namespace } }),
  });
  // The ServiceAccount admission plugin is on: pods wait for the controller's `default`.
  await waitFor('ServiceAccount default', () =>
    client.request('GET', `/api/v1/namespaces/${namespace}/serviceaccounts/default`),
  );
  jobs = new Jobs(client, namespace);
  kubelet = await FakeKubelet.start(client, {
    namespace,
    script: (pod) => scripts.get(pod.metadata.labels?.[JOB_NAME_LABEL] ?? ''),
  });
});

afterAll(async () => {
  await kubelet?.stop();
  client?.close();
  await plane?.stop();
});

afterEach(() => {
  expect(kubelet.failures()).toEqual([]);
});

function conditionTypes(job: Job): string[] {
  return (job.status?.conditions ?? []).filter((c) => c.status === 'True').map((c) => c.type);
}

async function onlyPod(jobName: string): Promise<Pod> {
  const pods = await jobs.pods(jobName);
  expect(pods).toHaveLength(1);
  return pods[0] as Pod;
}

describe('kube-controller-manager with the fake kubelet', () => {
  it('completes a Job whose pod succeeds, and the termination message is on the pod', async () => {
    scripts.set('succeeds', succeed({ afterMs: 200, message: '{"result":42}' }));
    await jobs.create('succeeds');

    const job = await jobs.waitForCondition('succeeds', 'Complete');
    expect(conditionTypes(job)).toEqual(['SuccessCriteriaMet', 'Complete']);
    expect(job.status?.succeeded).toBe(1);
    const pod = await onlyPod('succeeds');
    expect(pod.spec?.nodeName).toBe(kubelet.nodeName);
    expect(pod.status?.phase).toBe('Succeeded');
    expect(pod.status?.containerStatuses?.[0]?.state?.terminated).toMatchObject({
      exitCode: 0,
      reason: 'Completed',
      message: '{"result":42}',
    });
  });

  it('fails a Job whose pod fails, with backoffLimit 0: BackoffLimitExceeded', async () => {
    scripts.set('fails', fail({ exitCode: 3, message: 'agent crashed: out of tokens' }));
    await jobs.create('fails', { spec: { backoffLimit: 0 } });

    const job = await jobs.waitForCondition('fails', 'Failed');
    expect(conditionTypes(job)).toEqual(['FailureTarget', 'Failed']);
    expect(trueCondition(job.status?.conditions, 'Failed')?.reason).toBe('BackoffLimitExceeded');
    expect(job.status?.failed).toBe(1);
    const pod = await onlyPod('fails');
    expect(pod.status?.phase).toBe('Failed');
    expect(pod.status?.containerStatuses?.[0]?.state?.terminated).toMatchObject({
      exitCode: 3,
      reason: 'Error',
      message: 'agent crashed: out of tokens',
    });
  });

  it('fails a Job past activeDeadlineSeconds (DeadlineExceeded) and its running pod is killed and deleted', async () => {
    scripts.set('deadline', runForever());
    await jobs.create('deadline', { spec: { activeDeadlineSeconds: 2 } });
    await waitFor('the pod running', async () =>
      (await jobs.pods('deadline'))[0]?.status?.phase === 'Running' ? true : undefined,
    );

    const job = await jobs.waitForCondition('deadline', 'Failed');
    expect(conditionTypes(job)).toEqual(['FailureTarget', 'Failed']);
    expect(trueCondition(job.status?.conditions, 'Failed')?.reason).toBe('DeadlineExceeded');
    // Failed only once no pod is terminating: the kubelet has killed it, the Job controller
    // counted it and let it go.
    expect(job.status?.['terminating'] ?? 0).toBe(0);
    expect(job.status?.failed).toBe(1);
    await waitFor('the pod deleted', async () =>
      (await jobs.pods('deadline')).length === 0 ? true : undefined,
    );
  });

  it('shows an image pull error on the pod, which stays Pending while the Job waits', async () => {
    const message = 'failed to pull image "registry.example/agent:1": not found';
    scripts.set('pull', pullError({ reason: 'ErrImagePull', message }));
    await jobs.create('pull');

    const pod = await waitFor('the pull error on the pod', async () => {
      const [found] = await jobs.pods('pull');
      return found?.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'ErrImagePull'
        ? found
        : undefined;
    });
    expect(pod.status?.phase).toBe('Pending');
    expect(pod.status?.containerStatuses?.[0]?.state?.waiting?.message).toBe(message);
    const job = await jobs.get('pull');
    expect(job?.status?.active).toBe(1);
    expect(conditionTypes(job as Job)).toEqual([]);
  });

  it.each(['Foreground', 'Background'])(
    'garbage-collects a Job and its pods when their owner is deleted (%s)',
    async (policy) => {
      const name = `owned-${policy.toLowerCase()}`;
      const ownerPath = `/api/v1/namespaces/${jobs.namespace}/configmaps/owner-of-${name}`;
      const owner = (await client.request(
        'POST',
        `/api/v1/namespaces/${jobs.namespace}/configmaps`,
        {
          body: JSON.stringify({ metadata: { name: `owner-of-${name}` } }),
        },
      )) as { metadata: { uid: string } };
      scripts.set(name, runForever());
      await jobs.create(name, {
        ownerReferences: [
          {
            apiVersion: 'v1',
            kind: 'ConfigMap',
            name: `owner-of-${name}`,
            uid: owner.metadata.uid,
            blockOwnerDeletion: true,
          },
        ],
      });
      await waitFor('the pod running', async () =>
        (await jobs.pods(name))[0]?.status?.phase === 'Running' ? true : undefined,
      );

      await client.request('DELETE', ownerPath, {
        body: JSON.stringify({ propagationPolicy: policy }),
      });
      await jobs.waitForGone(name);
      // Foreground: the owner goes last, once the dependents that block it are gone.
      await waitFor('the owner gone', async () =>
        statusCodeOf(await client.request('GET', ownerPath).catch((error: unknown) => error)) ===
        404
          ? true
          : undefined,
      );
    },
  );

  it('deletes a finished Job and its pods after ttlSecondsAfterFinished', async () => {
    scripts.set('ttl', succeed());
    await jobs.create('ttl', { spec: { ttlSecondsAfterFinished: 2 } });
    await jobs.waitForCondition('ttl', 'Complete');
    await jobs.waitForGone('ttl');
  });

  it('runs 200 Jobs to Complete, each pod with its own message', {
    timeout: 360_000,
  }, async () => {
    const count = 200;
    const names = Array.from({ length: count }, (_, i) => `burst-${i}`);
    for (const [i, name] of names.entries()) {
      scripts.set(name, succeed({ afterMs: 500, message: `result ${i}` }));
    }
    const start = Date.now();
    for (let i = 0; i < count; i += 20) {
      await Promise.all(
        names.slice(i, i + 20).map((name) => jobs.create(name, { labels: { burst: 'yes' } })),
      );
    }
    const complete = await waitFor(
      `${count} Jobs Complete`,
      async () => {
        const listed = await jobs.list('burst=yes');
        const done = listed.filter((job) => trueCondition(job.status?.conditions, 'Complete'));
        if (done.length === count) return done;
        throw new Error(`${done.length} of ${count} Complete`);
      },
      { timeoutMs: 300_000, intervalMs: 1_000 },
    );
    const seconds = (Date.now() - start) / 1000;
    console.info(`${count} Jobs created and Complete in ${seconds.toFixed(1)} s`);

    expect(complete).toHaveLength(count);
    const messages = await Promise.all(
      names.map(async (name) => {
        const pod = await onlyPod(name);
        return pod.status?.containerStatuses?.[0]?.state?.terminated?.message;
      }),
    );
    expect(messages).toEqual(names.map((_, i) => `result ${i}`));
  });
});
