import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { CoreV1Api, EventsV1Api, type V1ConfigMap } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { EventRecorder, type EventRecorderOptions } from '../../../src/kube/event-recorder.ts';
import { createLogger } from '../../../src/util/log.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminClient, adminKubeConfig, mintUser } from '../../support/envtest/users.ts';
import { createNamespace } from '../../support/kube.ts';

const run = promisify(execFile);
const plane = controlPlane();
const admin = adminKubeConfig(plane);
const core = admin.makeApiClient(CoreV1Api);
const eventsApi = admin.makeApiClient(EventsV1Api);

const recorders: EventRecorder[] = [];
afterEach(async () => {
  await Promise.all(recorders.splice(0).map((recorder) => recorder.stop()));
});

function recorder(options: Partial<EventRecorderOptions> = {}): EventRecorder {
  const created = new EventRecorder({ client: adminClient(plane), host: 'test-pod-0', ...options });
  recorders.push(created);
  return created;
}

/** There is no AgentRun CRD here; any namespaced object can be the subject of an event. */
async function subject(namespace: string, name: string): Promise<V1ConfigMap> {
  return core.createNamespacedConfigMap({
    namespace,
    body: { metadata: { name }, data: { k: 'v' } },
  });
}

function kubectl(...args: string[]) {
  return run(plane.kubectl, ['--kubeconfig', plane.adminKubeconfig, ...args]);
}

describe('EventRecorder against the API server', () => {
  it('writes Events that the events APIs and kubectl show, repeats folded into a series', async () => {
    const namespace = await createNamespace(admin, 'ev-show');
    const object = await subject(namespace, 'run-1');
    const other = await subject(namespace, 'run-2');
    const events = recorder();

    events.record(object, 'Normal', 'Started', 'agent noop started (dry run)');
    for (let i = 0; i < 3; i++) events.record(object, 'Warning', 'Failed', 'handler timed out');
    events.record(other, 'Normal', 'Succeeded', 'not about run-1');
    expect(await events.flush(10_000)).toBe(true);
    expect(events.counters()).toMatchObject({ sent: 3, failed: 0, dropped: 0, correlated: 2 });

    const list = await eventsApi.listNamespacedEvent({
      namespace,
      fieldSelector: 'regarding.name=run-1',
    });
    const byReason = new Map(list.items.map((event) => [event.reason, event]));
    expect([...byReason.keys()].sort()).toEqual(['Failed', 'Started']);
    expect(byReason.get('Started')).toMatchObject({
      type: 'Normal',
      action: 'Started',
      note: 'agent noop started (dry run)',
      reportingController: 'applylens.io/agentrun-operator',
      reportingInstance: 'test-pod-0',
      regarding: { kind: 'ConfigMap', name: 'run-1', namespace, uid: object.metadata?.uid },
    });
    expect(byReason.get('Failed')?.type).toBe('Warning');
    expect(byReason.get('Failed')?.series?.count).toBe(3);

    // The same objects through core/v1, which `kubectl describe` reads.
    const legacy = await core.listNamespacedEvent({
      namespace,
      fieldSelector: `involvedObject.name=run-1,involvedObject.uid=${object.metadata?.uid}`,
    });
    expect(legacy.items.map((event) => event.reason).sort()).toEqual(['Failed', 'Started']);

    const described = (await kubectl('describe', 'configmap', 'run-1', '-n', namespace)).stdout;
    expect(described).toMatch(/Normal\s+Started\s+.*applylens\.io\/agentrun-operator/);
    expect(described).toMatch(/Warning\s+Failed\s+.*handler timed out/);
    const listed = (await kubectl('events', '-n', namespace, '--for', 'configmap/run-1')).stdout;
    expect(listed).toContain('agent noop started (dry run)');
    expect(listed).not.toContain('not about run-1');

    // Once the Event exists, a repeat is a patch of its series, not another Event.
    events.record(object, 'Warning', 'Failed', 'handler timed out');
    expect(await events.flush(10_000)).toBe(true);
    const again = await eventsApi.listNamespacedEvent({
      namespace,
      fieldSelector: 'regarding.name=run-1,reason=Failed',
    });
    expect(again.items).toHaveLength(1);
    expect(again.items[0]?.series?.count).toBe(4);
  });

  it('returns from a burst of 500 at once and bounds what it sends', async () => {
    const namespace = await createNamespace(admin, 'ev-burst');
    const events = recorder({ maxPending: 100 });
    const started = performance.now();
    for (let i = 0; i < 500; i++) {
      events.record(
        { apiVersion: 'v1', kind: 'ConfigMap', metadata: { namespace, name: `cm-${i}` } },
        'Normal',
        'Started',
        `burst ${i}`,
      );
    }
    const elapsedMs = performance.now() - started;
    // Nothing was sent or awaited during the loop: record() only enqueues.
    expect(events.counters().sent).toBe(0);
    expect(events.pending()).toBe(100);
    expect(events.counters().droppedBy.overflow).toBe(400);
    expect(elapsedMs).toBeLessThan(1_000);

    expect(await events.flush(30_000)).toBe(true);
    expect(events.counters()).toMatchObject({ sent: 100, failed: 0, dropped: 400 });
    const list = await eventsApi.listNamespacedEvent({ namespace });
    expect(list.items).toHaveLength(100);
    // Drop-oldest: the survivors are the newest hundred.
    expect(list.items.every((event) => Number(event.note?.split(' ')[1]) >= 400)).toBe(true);

    // One object hammering the recorder is cut off by the per-object spam filter.
    const object = await subject(namespace, 'noisy');
    const noisy = recorder();
    for (let i = 0; i < 500; i++) noisy.record(object, 'Normal', 'Progressing', `step ${i}`);
    expect(noisy.pending()).toBe(25);
    expect(await noisy.flush(30_000)).toBe(true);
    expect(noisy.counters()).toMatchObject({ sent: 25, droppedBy: { spam: 475 } });
    const forObject = await eventsApi.listNamespacedEvent({
      namespace,
      fieldSelector: 'regarding.name=noisy',
    });
    expect(forObject.items).toHaveLength(25);
  });

  it('neither throws nor blocks when its user may not create events', async () => {
    const namespace = await createNamespace(admin, 'ev-rbac');
    const object = await subject(namespace, 'run-1');
    const user = mintUser(plane, 'no-event-rights');
    const lines: Array<{ level: string; msg: string }> = [];
    const logger = createLogger('debug', {
      write: (line: string) => {
        lines.push(JSON.parse(line));
      },
    });
    const events = recorder({ client: user.client, logger });

    for (let i = 0; i < 10; i++) {
      expect(() => events.record(object, 'Warning', 'Failed', `attempt ${i}`)).not.toThrow();
    }
    expect(events.counters().sent).toBe(0);
    expect(await events.flush(10_000)).toBe(true);
    expect(events.counters()).toMatchObject({ sent: 0, failed: 10 });
    const warnings = lines.filter((line) => line.level === 'warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.msg).toMatch(
      /could not create an event: HTTP 403 Forbidden: .*no-event-rights.*cannot create resource "events"/,
    );
    const list = await eventsApi.listNamespacedEvent({ namespace });
    expect(list.items).toHaveLength(0);
  });
});
