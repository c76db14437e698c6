import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  EventRecorder,
  type EventRecorderOptions,
  type EventSink,
  type EventsV1Event,
  type EventsV1EventSeries,
  NOTE_MAX_BYTES,
  truncateNote,
} from '../../../src/kube/event-recorder.ts';
import { KubeHttpError } from '../../../src/kube/kube-errors.ts';
import { WritePriority } from '../../../src/kube/write-priority.ts';
import { createLogger } from '../../../src/util/log.ts';
import { unreachableClient } from '../../support/kube-client.ts';

describe('truncateNote', () => {
  it('leaves a note within 1 KiB alone', () => {
    expect(truncateNote('short')).toBe('short');
    const exact = 'x'.repeat(NOTE_MAX_BYTES);
    expect(truncateNote(exact)).toBe(exact);
  });

  it('cuts to 1024 bytes ending in "..."', () => {
    const cut = truncateNote('y'.repeat(5_000));
    expect(Buffer.byteLength(cut)).toBe(1024);
    expect(cut.endsWith('y...')).toBe(true);
  });

  it('counts bytes, not characters, and never splits a character', () => {
    // 400 euro signs are 400 characters but 1200 bytes.
    const cut = truncateNote('€'.repeat(400));
    expect(Buffer.byteLength(cut)).toBeLessThanOrEqual(1024);
    expect(cut).toBe(`${'€'.repeat(340)}...`);
    const emoji = truncateNote(`a${'😀'.repeat(300)}`);
    expect(Buffer.byteLength(emoji)).toBeLessThanOrEqual(1024);
    expect(emoji).not.toContain('\uFFFD');
  });
});

interface Call {
  readonly op: 'create' | 'patch';
  readonly namespace: string;
  readonly name: string;
  readonly event?: EventsV1Event;
  readonly series?: EventsV1EventSeries;
  readonly signal: AbortSignal;
}

/** Records every write; `failWith` makes writes fail, `hold()` makes them wait for release. */
class FakeSink implements EventSink {
  readonly calls: Call[] = [];
  failWith: ((call: Call) => unknown) | undefined;
  private gate: Promise<void> | undefined;
  private open: (() => void) | undefined;

  hold(): void {
    this.gate = new Promise((resolve) => {
      this.open = resolve;
    });
  }

  release(): void {
    this.open?.();
    this.gate = undefined;
  }

  creates(): Call[] {
    return this.calls.filter((call) => call.op === 'create');
  }

  patches(): Call[] {
    return this.calls.filter((call) => call.op === 'patch');
  }

  async create(namespace: string, event: EventsV1Event, signal: AbortSignal): Promise<void> {
    await this.write({ op: 'create', namespace, name: event.metadata?.name ?? '', event, signal });
  }

  async patchSeries(
    namespace: string,
    name: string,
    series: EventsV1EventSeries,
    signal: AbortSignal,
  ): Promise<void> {
    await this.write({ op: 'patch', namespace, name, series, signal });
  }

  private async write(call: Call): Promise<void> {
    this.calls.push(call);
    const gate = this.gate;
    if (gate) {
      // Like a real request, a held write gives up when its signal aborts.
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(call.signal.reason);
        call.signal.addEventListener('abort', onAbort, { once: true });
        void gate.then(() => {
          call.signal.removeEventListener('abort', onAbort);
          resolve();
        });
      });
    }
    const error = this.failWith?.(call);
    if (error) throw error;
  }
}

const client = unreachableClient();

function run(name: string, uid = `uid-${name}`) {
  return {
    apiVersion: 'agents.applylens.io/v1alpha1',
    kind: 'AgentRun',
    metadata: { namespace: 'team-a', name, uid, resourceVersion: '42' },
  };
}

function apiError(code: number, message: string): KubeHttpError {
  return new KubeHttpError(
    code,
    JSON.stringify({ kind: 'Status', reason: code === 403 ? 'Forbidden' : 'NotFound', message }),
  );
}

const recorders: EventRecorder[] = [];
function recorder(sink: FakeSink, options: Partial<EventRecorderOptions> = {}): EventRecorder {
  const created = new EventRecorder({ client, sink, host: 'pod-0', ...options });
  recorders.push(created);
  return created;
}

/** Lets the background loop run (microtasks and due timers). */
async function settle(ms = 0): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
}

describe('EventRecorder', () => {
  beforeEach(() => {
    vi.useFakeTimers({ now: new Date('2026-03-01T12:00:00Z') });
  });
  afterEach(async () => {
    await Promise.all(recorders.splice(0).map((r) => r.stop()));
    vi.useRealTimers();
  });

  it('returns at once and writes an events.k8s.io/v1 Event in the background', async () => {
    const sink = new FakeSink();
    const events = recorder(sink);
    events.record(run('r1'), 'Normal', 'Started', 'agent noop started');
    expect(sink.calls).toHaveLength(0);
    await settle();

    const [call] = sink.creates();
    expect(call?.namespace).toBe('team-a');
    expect(call?.name).toMatch(/^r1\.[0-9a-f]+$/);
    expect(call?.event).toMatchObject({
      type: 'Normal',
      reason: 'Started',
      action: 'Started',
      note: 'agent noop started',
      reportingController: 'applylens.io/agentrun-operator',
      reportingInstance: 'pod-0',
      regarding: {
        apiVersion: 'agents.applylens.io/v1alpha1',
        kind: 'AgentRun',
        namespace: 'team-a',
        name: 'r1',
        uid: 'uid-r1',
        resourceVersion: '42',
      },
    });
    expect(call?.event?.series).toBeUndefined();
    // MicroTime: six fractional digits on the wire.
    expect(JSON.stringify(call?.event?.eventTime)).toBe('"2026-03-01T12:00:00.000000Z"');
    expect(events.counters()).toMatchObject({ sent: 1, failed: 0, dropped: 0 });
  });

  it('never writes an Event whose reason it was told to omit (EVENTS_OMIT), nor counts it', async () => {
    const sink = new FakeSink();
    const events = recorder(sink, { omitReasons: ['Started'] });
    events.record(run('r1'), 'Normal', 'Started', 'attempt 1 running');
    events.record(run('r1'), 'Normal', 'Succeeded', 'done');
    await settle();
    expect(sink.creates().map((call) => call.event?.reason)).toEqual(['Succeeded']);
    expect(events.counters()).toMatchObject({ sent: 1, dropped: 0 });
  });

  it('folds identical events into one Event with a series count', async () => {
    const sink = new FakeSink();
    const events = recorder(sink);
    for (let i = 0; i < 10; i++) events.record(run('r1'), 'Warning', 'Failed', 'boom');
    await settle();
    expect(sink.creates()).toHaveLength(1);
    expect(sink.creates()[0]?.event?.series?.count).toBe(10);

    // A repeat once the Event exists is a merge patch of the series on the same Event.
    await settle(5_000);
    events.record(run('r1'), 'Warning', 'Failed', 'boom');
    await settle();
    expect(sink.patches()).toHaveLength(1);
    expect(sink.patches()[0]?.name).toBe(sink.creates()[0]?.name);
    expect(sink.patches()[0]?.series?.count).toBe(11);
    expect(JSON.stringify(sink.patches()[0]?.series?.lastObservedTime)).toBe(
      '"2026-03-01T12:00:05.000000Z"',
    );
    expect(events.counters()).toMatchObject({ sent: 2, correlated: 10 });
  });

  it('patches the count of repeats that arrive while the create is on its way', async () => {
    const sink = new FakeSink();
    sink.hold();
    const events = recorder(sink);
    events.record(run('r1'), 'Normal', 'Progressing', 'step 1 of 3');
    await settle();
    events.record(run('r1'), 'Normal', 'Progressing', 'step 1 of 3');
    events.record(run('r1'), 'Normal', 'Progressing', 'step 1 of 3');
    sink.release();
    await settle();
    expect(sink.creates()[0]?.event?.series).toBeUndefined();
    expect(sink.patches().map((call) => call.series?.count)).toEqual([3]);
  });

  it('keeps different messages, reasons and objects apart, and starts afresh after the window', async () => {
    const sink = new FakeSink();
    const events = recorder(sink, { correlationWindowMs: 60_000 });
    events.record(run('r1'), 'Normal', 'Started', 'a');
    events.record(run('r1'), 'Normal', 'Started', 'b');
    events.record(run('r1'), 'Normal', 'Succeeded', 'a');
    events.record(run('r2'), 'Normal', 'Started', 'a');
    await settle();
    expect(sink.creates()).toHaveLength(4);

    await settle(60_001);
    events.record(run('r1'), 'Normal', 'Started', 'a');
    await settle();
    expect(sink.creates()).toHaveLength(5);
    expect(sink.patches()).toHaveLength(0);
  });

  it('lets one object produce 25 events, then one per 5 minutes (client-go spam filter)', async () => {
    const sink = new FakeSink();
    const events = recorder(sink);
    for (let i = 0; i < 30; i++) events.record(run('noisy'), 'Normal', 'Progressing', `step ${i}`);
    events.record(run('quiet'), 'Normal', 'Started', 'hello');
    await settle();
    expect(sink.creates().filter((c) => c.event?.regarding?.name === 'noisy')).toHaveLength(25);
    expect(sink.creates().filter((c) => c.event?.regarding?.name === 'quiet')).toHaveLength(1);
    expect(events.counters().droppedBy.spam).toBe(5);

    await settle(300_000);
    events.record(run('noisy'), 'Normal', 'Progressing', 'step 30');
    events.record(run('noisy'), 'Normal', 'Progressing', 'step 31');
    await settle();
    expect(sink.creates().filter((c) => c.event?.regarding?.name === 'noisy')).toHaveLength(26);
    expect(events.counters().droppedBy.spam).toBe(6);
  });

  it('bounds the buffer: the oldest pending events are dropped and counted', async () => {
    const sink = new FakeSink();
    const events = recorder(sink, { maxPending: 10 });
    for (let i = 0; i < 50; i++) events.record(run(`r${i}`), 'Normal', 'Started', 'go');
    expect(events.pending()).toBe(10);
    expect(events.counters().droppedBy.overflow).toBe(40);
    await settle();
    expect(sink.creates().map((c) => c.event?.regarding?.name)).toEqual(
      Array.from({ length: 10 }, (_, i) => `r${40 + i}`),
    );
  });

  it('sends at most qps per second after the burst', async () => {
    const sink = new FakeSink();
    const events = recorder(sink, { qps: 10, burst: 2 });
    for (let i = 0; i < 6; i++) events.record(run(`r${i}`), 'Normal', 'Started', 'go');
    await settle();
    expect(sink.creates()).toHaveLength(2);
    await settle(100);
    expect(sink.creates()).toHaveLength(3);
    await settle(300);
    expect(sink.creates()).toHaveLength(6);
  });

  it('never throws for failed writes; counts them and logs once, not once per event', async () => {
    const lines: Array<{ level: string; msg: string }> = [];
    const logger = createLogger('debug', { write: (line: string) => lines.push(JSON.parse(line)) });
    const sink = new FakeSink();
    sink.failWith = () =>
      apiError(403, 'events.events.k8s.io is forbidden: User "x" cannot create');
    const events = recorder(sink, { logger });
    for (let i = 0; i < 20; i++) {
      expect(() => events.record(run(`r${i}`), 'Warning', 'Failed', 'boom')).not.toThrow();
    }
    await settle();
    expect(events.counters()).toMatchObject({ sent: 0, failed: 20 });
    const warnings = lines.filter((line) => line.level === 'warn');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]?.msg).toMatch(/could not create an event: HTTP 403 Forbidden: .*forbidden/);

    // Network failures too; and an identical event after a failed create is tried again.
    sink.failWith = () => new TypeError('fetch failed', { cause: new Error('ECONNREFUSED') });
    events.record(run('r0'), 'Warning', 'Failed', 'boom');
    await settle();
    expect(sink.creates()).toHaveLength(21);
    expect(lines.filter((line) => line.level === 'warn')[1]?.msg).toMatch(
      /fetch failed \(ECONNREFUSED\)/,
    );
  });

  it('creates a new Event when the one being counted has expired (patch 404)', async () => {
    const sink = new FakeSink();
    const events = recorder(sink);
    events.record(run('r1'), 'Normal', 'Started', 'a');
    await settle();
    sink.failWith = (call) => (call.op === 'patch' ? apiError(404, 'not found') : undefined);
    events.record(run('r1'), 'Normal', 'Started', 'a');
    await settle();
    const [first, second] = sink.creates();
    expect(second?.name).not.toBe(first?.name);
    expect(second?.event?.series?.count).toBe(2);
    expect(events.counters()).toMatchObject({ sent: 2, failed: 0 });
  });

  it('drops, without throwing, events it cannot express', async () => {
    const sink = new FakeSink();
    const events = recorder(sink);
    events.record(run('r1'), 'Normal', 'not camel case', 'x');
    events.record(run('r1'), 'Normal', 'A'.repeat(129), 'x');
    events.record({ kind: 'AgentRun', metadata: { name: 'r1' } }, 'Normal', 'Started', 'x');
    events.record(run('r1'), 'Info' as 'Normal', 'Started', 'x');
    await settle();
    expect(sink.calls).toHaveLength(0);
    expect(events.counters().droppedBy.invalid).toBe(4);
  });

  it('truncates long messages before sending', async () => {
    const sink = new FakeSink();
    const events = recorder(sink);
    events.record(run('r1'), 'Warning', 'Failed', 'e'.repeat(10_000));
    await settle();
    expect(Buffer.byteLength(sink.creates()[0]?.event?.note ?? '')).toBe(1024);
  });

  it('flush waits for the queue; stop aborts the write in flight and drops the rest', async () => {
    const sink = new FakeSink();
    const events = recorder(sink);
    expect(await events.flush(10)).toBe(true);

    sink.hold();
    for (let i = 0; i < 3; i++) events.record(run(`r${i}`), 'Normal', 'Started', 'go');
    const flushed = events.flush(1_000);
    await settle(1_000);
    expect(await flushed).toBe(false);

    await events.stop();
    expect(sink.calls[0]?.signal.aborted).toBe(true);
    expect(events.counters().droppedBy.stopped).toBe(2);
    events.record(run('late'), 'Normal', 'Started', 'go');
    expect(events.counters().droppedBy.stopped).toBe(3);
    expect(await events.flush(10)).toBe(true);
  });

  it('gives way to status writes in flight, but waits at most maxWaitMs per Event', async () => {
    const sink = new FakeSink();
    const statusWrites = new WritePriority({ maxWaitMs: 1_000 });
    const events = recorder(sink, { yieldTo: statusWrites });
    let settleWrite: () => void = () => undefined;
    void statusWrites.track(new Promise<void>((resolve) => (settleWrite = resolve)));

    events.record(run('r1'), 'Normal', 'Started', 'go');
    await settle(999);
    expect(sink.calls).toHaveLength(0);
    settleWrite();
    await settle();
    expect(sink.creates().map((call) => call.name.split('.')[0])).toEqual(['r1']);

    // A status write that never ends delays each Event by maxWaitMs, no more.
    void statusWrites.track(new Promise<void>(() => undefined));
    events.record(run('r2'), 'Normal', 'Started', 'go');
    events.record(run('r3'), 'Normal', 'Started', 'go');
    await settle(1_000);
    expect(sink.creates()).toHaveLength(2);
    await settle(1_000);
    expect(sink.creates()).toHaveLength(3);
  });
});
