import { hostname } from 'node:os';
import { LRUCache } from 'lru-cache';
import { withDeadline } from '../util/deadline.ts';
import { type Logger, silentLogger } from '../util/log.ts';
import { sleep } from '../util/sleep.ts';
import { ContentType, type KubeClient } from './kube-client.ts';
import { describeKubeError, statusCodeOf } from './kube-errors.ts';
import { microTime } from './micro-time.ts';
import { TokenBucket } from './token-bucket.ts';

/** events.k8s.io/v1 limits (k8s.io/kubernetes pkg/apis/core/validation/events.go). */
export const NOTE_MAX_BYTES = 1024;
const FIELD_MAX_LENGTH = 128;
const NAME_MAX_LENGTH = 253;

/** Defaults; every one can be overridden in EventRecorderOptions. */
export const EVENT_RECORDER_DEFAULTS = {
  component: 'agentrun-operator',
  maxPending: 1000,
  qps: 50,
  burst: 100,
  // client-go's EventSourceObjectSpamFilter: 25 events per object, then one every 5 minutes.
  perObjectBurst: 25,
  perObjectQps: 1 / 300,
  correlationWindowMs: 10 * 60_000,
  requestTimeoutMs: 10_000,
} as const;

/** Entries kept for correlation and for the spam filter (client-go's LRU size). */
const CACHE_SIZE = 4096;
const LOG_INTERVAL_MS = 30_000;
const REASON_PATTERN = /^[A-Z][A-Za-z0-9]*$/;

export type EventType = 'Normal' | 'Warning';

/** Any Kubernetes object; what record() needs is checked at run time so it never throws. */
export interface EventSubject {
  readonly apiVersion?: string | undefined;
  readonly kind?: string | undefined;
  readonly metadata?:
    | {
        readonly namespace?: string | undefined;
        readonly name?: string | undefined;
        readonly uid?: string | undefined;
        readonly resourceVersion?: string | undefined;
      }
    | undefined;
}

/** An object reference (core/v1 ObjectReference), the `regarding` of an Event. */
export interface ObjectReference {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly namespace?: string;
  readonly name?: string;
  readonly uid?: string;
  readonly resourceVersion?: string;
}

/** The fields of an events.k8s.io/v1 Event this recorder writes (times as MicroTime strings). */
export interface EventsV1Event {
  readonly metadata?: { readonly name?: string; readonly namespace?: string };
  readonly eventTime: string;
  readonly type?: string;
  readonly reason?: string;
  readonly action?: string;
  readonly note?: string;
  readonly reportingController?: string;
  readonly reportingInstance?: string;
  readonly regarding?: ObjectReference;
  /** Set by the API server's answers once repeats are folded in; we patch it separately. */
  readonly series?: EventsV1EventSeries;
}

/** events.k8s.io/v1 EventSeries. */
export interface EventsV1EventSeries {
  readonly count: number;
  readonly lastObservedTime: string;
}

/** Where events go; the default writes events.k8s.io/v1 Events. Tests bring their own. */
export interface EventSink {
  create(namespace: string, event: EventsV1Event, signal: AbortSignal): Promise<unknown>;
  patchSeries(
    namespace: string,
    name: string,
    series: EventsV1EventSeries,
    signal: AbortSignal,
  ): Promise<unknown>;
}

export interface EventRecorderOptions {
  /** Where the default sink writes; needed unless `sink` is given. */
  readonly client?: KubeClient;
  /**
   * Who reports: `reportingController` becomes `applylens.io/<component>` (or `component` as
   * is when it already has a `/`); default 'agentrun-operator'. kubectl shows it as "From".
   */
  readonly component?: string;
  /** `reportingInstance`, e.g. the pod name; default the hostname. */
  readonly host?: string;
  readonly logger?: Logger;
  /** Writes waiting to be sent; when full the oldest is dropped. Default 1000. */
  readonly maxPending?: number;
  /** Writes per second to the API server across all objects; default 50, burst 100. */
  readonly qps?: number;
  readonly burst?: number;
  /** New Events (and series updates) per object: a burst of 25, refilled at 1 per 5 min. */
  readonly perObjectBurst?: number;
  readonly perObjectQps?: number;
  /** Identical events within this window become one Event with a growing series.count; 10 min. */
  readonly correlationWindowMs?: number;
  /** Per write; default 10 s. */
  readonly requestTimeoutMs?: number;
  /**
   * Writes that matter more than Events (a WritePriority the status writer tracks): before each
   * write the recorder waits for `giveWay`. Default: none, Events go out as the rate allows.
   */
  readonly yieldTo?: { giveWay(signal: AbortSignal): Promise<void> } | undefined;
  /** Default kubeEventSink(client). */
  readonly sink?: EventSink;
  /** Reasons never recorded (EVENTS_OMIT): `record` drops them before anything else. */
  readonly omitReasons?: Iterable<string>;
}

export type DropReason = 'overflow' | 'spam' | 'invalid' | 'stopped';

export interface EventRecorderCounters {
  /** Successful writes (Event creates and series updates). */
  readonly sent: number;
  /** Writes the API server refused or that failed on the way (403, 5xx, network, timeout). */
  readonly failed: number;
  /** Events never written; the sum of `droppedBy`. */
  readonly dropped: number;
  readonly droppedBy: Readonly<Record<DropReason, number>>;
  /** Repeats folded into an existing Event's series.count. */
  readonly correlated: number;
}

/** One Event object and the repeats folded into it. */
interface Series {
  readonly key: string;
  readonly objectKey: string;
  readonly namespace: string;
  name: string;
  readonly event: EventsV1Event;
  count: number;
  /** The count the API server has (0 until created). */
  sentCount: number;
  lastObservedAt: number;
  state: 'pending' | 'created' | 'abandoned';
  updateQueued: boolean;
}

interface Job {
  readonly kind: 'create' | 'update';
  readonly series: Series;
}

/**
 * Records Kubernetes Events without ever slowing or failing the caller: record() only
 * enqueues, and one background loop writes events.k8s.io/v1 Events (visible in `kubectl
 * describe` and `kubectl events`) at a bounded rate. Like client-go it folds identical events
 * into one Event with a series count and limits how many events one object can produce. Every
 * failure is counted and logged (rate limited), never thrown.
 */
export class EventRecorder {
  readonly reportingController: string;
  readonly reportingInstance: string;

  readonly #log: Logger;
  readonly #sink: EventSink;
  readonly #yieldTo: EventRecorderOptions['yieldTo'];
  readonly #maxPending: number;
  readonly #perObjectBurst: number;
  readonly #perObjectQps: number;
  readonly #correlationWindowMs: number;
  readonly #requestTimeoutMs: number;
  readonly #omitted: ReadonlySet<string>;
  readonly #bucket: TokenBucket;
  readonly #series = new LRUCache<string, Series>({ max: CACHE_SIZE });
  readonly #spam = new LRUCache<string, TokenBucket>({ max: CACHE_SIZE });
  readonly #queue: Job[] = [];
  readonly #stopController = new AbortController();
  readonly #throttle: LogThrottle;
  #worker: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  #busy = false;
  #drainWaiters: Array<() => void> = [];
  #sequence = 0;
  readonly #stats = {
    sent: 0,
    failed: 0,
    correlated: 0,
    droppedBy: { overflow: 0, spam: 0, invalid: 0, stopped: 0 } as Record<DropReason, number>,
  };

  constructor(options: EventRecorderOptions) {
    const d = EVENT_RECORDER_DEFAULTS;
    const component = options.component ?? d.component;
    this.reportingController = component.includes('/') ? component : `applylens.io/${component}`;
    this.reportingInstance = (options.host ?? hostname()).slice(0, FIELD_MAX_LENGTH);
    this.#log = (options.logger ?? silentLogger()).child({ module: 'event-recorder' });
    this.#throttle = new LogThrottle(this.#log);
    this.#maxPending = options.maxPending ?? d.maxPending;
    this.#perObjectBurst = options.perObjectBurst ?? d.perObjectBurst;
    this.#perObjectQps = options.perObjectQps ?? d.perObjectQps;
    this.#correlationWindowMs = options.correlationWindowMs ?? d.correlationWindowMs;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? d.requestTimeoutMs;
    this.#omitted = new Set(options.omitReasons ?? []);
    if (!Number.isInteger(this.#maxPending) || this.#maxPending < 1) {
      throw new RangeError(
        `event recorder: maxPending must be an integer >= 1, got ${this.#maxPending}`,
      );
    }
    this.#bucket = new TokenBucket({
      ratePerSecond: options.qps ?? d.qps,
      burst: options.burst ?? d.burst,
    });
    // Fail at construction, not on the first event, if the per-object settings are invalid.
    new TokenBucket({ ratePerSecond: this.#perObjectQps, burst: this.#perObjectBurst });
    const sink = options.sink ?? (options.client ? kubeEventSink(options.client) : undefined);
    if (!sink) throw new TypeError('EventRecorder needs a client (or a sink of its own)');
    this.#sink = sink;
    this.#yieldTo = options.yieldTo;
  }

  /**
   * Queues an event about `object` and returns at once. `reason` is a short CamelCase word
   * (Started, Succeeded, Failed, ...); `message` is truncated to 1 KiB; `action` (what the
   * controller did, required by events.k8s.io) defaults to the reason. Never throws.
   */
  record(
    object: EventSubject,
    type: EventType,
    reason: string,
    message: string,
    action: string = reason,
  ): void {
    if (this.#omitted.has(reason)) return;
    try {
      this.#enqueueEvent(object, type, reason, message, action);
    } catch (error) {
      // Only a bug can land here; the caller's reconcile must still not fail because of it.
      this.#drop('invalid', `could not record the event: ${String(error)}`);
    }
  }

  counters(): EventRecorderCounters {
    const droppedBy = { ...this.#stats.droppedBy };
    return {
      sent: this.#stats.sent,
      failed: this.#stats.failed,
      correlated: this.#stats.correlated,
      dropped: Object.values(droppedBy).reduce((sum, n) => sum + n, 0),
      droppedBy,
    };
  }

  /** Writes waiting to be sent (not counting one in flight). */
  pending(): number {
    return this.#queue.length;
  }

  /**
   * Waits until every queued write has been attempted, or `timeoutMs` passes. Resolves true if
   * the queue drained. For graceful shutdown: `await recorder.flush(5_000); await recorder.stop()`.
   */
  async flush(timeoutMs: number): Promise<boolean> {
    if (this.#idle()) return true;
    let resolveDrained: () => void = () => undefined;
    const drained = new Promise<void>((resolve) => {
      resolveDrained = resolve;
      this.#drainWaiters.push(resolve);
    });
    const timeout = new AbortController();
    const ok = await Promise.race([
      drained.then(() => true),
      sleep(timeoutMs, timeout.signal).then(() => false),
    ]);
    timeout.abort();
    this.#drainWaiters = this.#drainWaiters.filter((waiter) => waiter !== resolveDrained);
    return ok;
  }

  /** Stops the loop: a write in flight is aborted, queued ones are dropped (counted). */
  async stop(): Promise<void> {
    if (!this.#stopController.signal.aborted) {
      this.#stopController.abort();
      this.#wake?.();
      const left = this.#queue.splice(0);
      if (left.length > 0) {
        this.#stats.droppedBy.stopped += left.length;
        this.#log.info({ dropped: left.length }, 'event recorder stopped with events unsent');
      }
    }
    await this.#worker;
    this.#releaseDrainWaiters();
  }

  #enqueueEvent(
    object: EventSubject,
    type: EventType,
    reason: string,
    message: string,
    action: string,
  ): void {
    if (this.#stopController.signal.aborted) {
      this.#stats.droppedBy.stopped++;
      this.#log.debug({ reason }, 'event recorded after stop(); dropped');
      return;
    }
    const subject = checkSubject(object);
    const problem = typeof subject === 'string' ? subject : checkWords(type, reason, action);
    if (typeof subject === 'string' || problem !== undefined) {
      this.#drop('invalid', problem ?? 'invalid event');
      return;
    }
    const note = truncateNote(message);
    const now = Date.now();
    const key = JSON.stringify([subject.objectKey, type, reason, action, note]);

    const existing = this.#series.get(key);
    if (
      existing &&
      existing.state !== 'abandoned' &&
      now - existing.lastObservedAt <= this.#correlationWindowMs
    ) {
      existing.count++;
      existing.lastObservedAt = now;
      this.#stats.correlated++;
      // A queued create or update sends the count as it is when it goes out.
      if (existing.state === 'pending' || existing.updateQueued) return;
      // Over the object's budget the repeat stays counted and rides on the next allowed write.
      if (!this.#allow(existing.objectKey)) return;
      this.#push({ kind: 'update', series: existing });
      return;
    }

    if (!this.#allow(subject.objectKey)) {
      this.#drop(
        'spam',
        `${subject.reference.kind} ${subject.namespace}/${subject.name} exceeded its event budget (burst ${this.#perObjectBurst})`,
      );
      return;
    }
    const series: Series = {
      key,
      objectKey: subject.objectKey,
      namespace: subject.namespace,
      name: this.#eventName(subject.name),
      event: {
        eventTime: microTime(now),
        type,
        reason,
        action,
        note,
        reportingController: this.reportingController,
        reportingInstance: this.reportingInstance,
        regarding: subject.reference,
      },
      count: 1,
      sentCount: 0,
      lastObservedAt: now,
      state: 'pending',
      updateQueued: false,
    };
    this.#series.set(key, series);
    this.#push({ kind: 'create', series });
  }

  /** The per-object spam filter (client-go keys it by source and involved object). */
  #allow(objectKey: string): boolean {
    let bucket = this.#spam.get(objectKey);
    if (!bucket) {
      bucket = new TokenBucket({ ratePerSecond: this.#perObjectQps, burst: this.#perObjectBurst });
      this.#spam.set(objectKey, bucket);
    }
    return bucket.tryTake();
  }

  #push(job: Job): void {
    if (job.kind === 'update') job.series.updateQueued = true;
    if (this.#queue.length >= this.#maxPending) {
      const oldest = this.#queue.shift();
      if (oldest) this.#abandon(oldest);
      this.#drop('overflow', `more than ${this.#maxPending} events waiting; dropped the oldest`);
    }
    this.#queue.push(job);
    // Started on a later tick: record() itself does nothing but enqueue.
    this.#worker ??= Promise.resolve()
      .then(() => this.#pump())
      .catch((error: unknown) => {
        this.#log.error({ err: error }, 'the event loop failed; events are no longer sent');
      });
    this.#wake?.();
  }

  /** Forgets a dropped job so that the next identical event starts afresh. */
  #abandon(job: Job): void {
    if (job.kind === 'update') {
      job.series.updateQueued = false;
      return;
    }
    job.series.state = 'abandoned';
    if (this.#series.peek(job.series.key) === job.series) this.#series.delete(job.series.key);
  }

  #drop(reason: DropReason, message: string): void {
    this.#stats.droppedBy[reason]++;
    this.#throttle.warn(
      `drop:${reason}`,
      { reason, dropped: this.#stats.droppedBy[reason] },
      message,
    );
  }

  #idle(): boolean {
    return this.#queue.length === 0 && !this.#busy;
  }

  #releaseDrainWaiters(): void {
    const waiters = this.#drainWaiters.splice(0);
    for (const waiter of waiters) waiter();
  }

  async #pump(): Promise<void> {
    const stop = this.#stopController.signal;
    while (!stop.aborted) {
      if (this.#queue.length === 0) {
        this.#releaseDrainWaiters();
        await new Promise<void>((resolve) => {
          this.#wake = resolve;
        });
        this.#wake = undefined;
        continue;
      }
      const wait = this.#bucket.delayMs();
      if (wait > 0) {
        await sleep(wait, stop);
        continue;
      }
      if (this.#yieldTo) {
        await this.#yieldTo.giveWay(stop);
        if (stop.aborted) break;
      }
      const job = this.#queue.shift();
      if (!job || !this.#bucket.tryTake()) continue;
      this.#busy = true;
      try {
        await this.#send(job, stop);
      } finally {
        this.#busy = false;
      }
    }
  }

  #send(job: Job, stop: AbortSignal): Promise<void> {
    return withDeadline(stop, this.#requestTimeoutMs, (signal) => this.#sendWithin(job, signal));
  }

  async #sendWithin(job: Job, signal: AbortSignal): Promise<void> {
    const { series } = job;
    if (job.kind === 'update') {
      series.updateQueued = false;
      if (series.count <= series.sentCount) return;
      const count = series.count;
      try {
        await this.#sink.patchSeries(series.namespace, series.name, seriesOf(series), signal);
        series.sentCount = count;
        this.#stats.sent++;
        return;
      } catch (error) {
        // The Event expired (the API server's --event-ttl, 1 h by default) or was deleted.
        if (statusCodeOf(error) !== 404) {
          return this.#failed(error, series, 'update');
        }
        series.name = this.#eventName(series.event.regarding?.name ?? 'object');
      }
    }
    const count = series.count;
    try {
      await this.#sink.create(
        series.namespace,
        {
          ...series.event,
          metadata: { name: series.name, namespace: series.namespace },
          ...(count >= 2 ? { series: seriesOf(series) } : {}),
        },
        signal,
      );
      series.sentCount = count;
      series.state = 'created';
      this.#stats.sent++;
      // Repeats that arrived while the create was on its way.
      if (series.count > count && !series.updateQueued) this.#push({ kind: 'update', series });
    } catch (error) {
      series.state = 'abandoned';
      if (this.#series.peek(series.key) === series) this.#series.delete(series.key);
      this.#failed(error, series, 'create');
    }
  }

  #failed(error: unknown, series: Series, operation: string): void {
    this.#stats.failed++;
    const status = statusCodeOf(error);
    this.#throttle.warn(
      `failed:${operation}:${status ?? 'network'}`,
      {
        status,
        namespace: series.namespace,
        reason: series.event.reason,
        failed: this.#stats.failed,
      },
      `could not ${operation} an event: ${describeKubeError(error)}; dropped`,
    );
  }

  /** client-go's name: `<object>.<unix nanoseconds in hex>`, unique within this process. */
  #eventName(objectName: string): string {
    const nanos = BigInt(Date.now()) * 1_000_000n + BigInt(this.#sequence++ % 1_000_000);
    const suffix = `.${nanos.toString(16)}`;
    return objectName.slice(0, NAME_MAX_LENGTH - suffix.length) + suffix;
  }
}

function seriesOf(series: Series): EventsV1EventSeries {
  return { count: series.count, lastObservedTime: microTime(series.lastObservedAt) };
}

interface Subject {
  readonly namespace: string;
  readonly name: string;
  readonly objectKey: string;
  readonly reference: NonNullable<EventsV1Event['regarding']>;
}

/** The object reference, or why the object cannot be the subject of an event. */
function checkSubject(object: EventSubject): Subject | string {
  const { apiVersion, kind, metadata } = object ?? {};
  const name = metadata?.name;
  if (!apiVersion || !kind || !name) {
    return `event subject needs apiVersion, kind and metadata.name (got ${kind ?? '?'}/${name ?? '?'})`;
  }
  // Cluster-scoped objects get their events in 'default', as client-go does.
  const namespace = metadata.namespace || 'default';
  const uid = metadata.uid;
  return {
    namespace,
    name,
    objectKey: uid || `${apiVersion}/${kind}/${metadata.namespace ?? ''}/${name}`,
    reference: {
      apiVersion,
      kind,
      name,
      ...(metadata.namespace ? { namespace: metadata.namespace } : {}),
      ...(uid ? { uid } : {}),
      ...(metadata.resourceVersion ? { resourceVersion: metadata.resourceVersion } : {}),
    },
  };
}

/** Why type, reason or action would be rejected by the API server (or our CamelCase rule). */
function checkWords(type: EventType, reason: string, action: string): string | undefined {
  if (type !== 'Normal' && type !== 'Warning') {
    return `event type "${String(type)}" is neither Normal nor Warning`;
  }
  for (const [field, value] of [
    ['reason', reason],
    ['action', action],
  ] as const) {
    if (!REASON_PATTERN.test(value) || value.length > FIELD_MAX_LENGTH) {
      return `event ${field} "${value.slice(0, FIELD_MAX_LENGTH)}" is not a CamelCase word of at most ${FIELD_MAX_LENGTH} characters`;
    }
  }
  return undefined;
}

/**
 * Cuts `message` to at most `maxBytes` of UTF-8 (the API server counts bytes), ending in "..."
 * when cut, without splitting a character.
 */
export function truncateNote(message: string, maxBytes: number = NOTE_MAX_BYTES): string {
  // A UTF-16 unit is at most 3 bytes of UTF-8: most notes are measured without being encoded.
  if (message.length * 3 <= maxBytes || Buffer.byteLength(message, 'utf8') <= maxBytes) {
    return message;
  }
  const encoded = Buffer.from(message, 'utf8');
  let end = Math.max(0, maxBytes - 3);
  // Step back over continuation bytes (10xxxxxx) so the cut lands on a character boundary.
  while (end > 0 && ((encoded[end] ?? 0) & 0xc0) === 0x80) end--;
  return `${encoded.subarray(0, end).toString('utf8')}...`;
}

/** The default sink: events.k8s.io/v1 through the operator's KubeClient. */
export function kubeEventSink(client: KubeClient): EventSink {
  const path = (namespace: string, name = ''): string =>
    `/apis/events.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/events${name ? `/${encodeURIComponent(name)}` : ''}`;
  // Plain JSON both ways, no typed models: an Event per run transition made client-node's model
  // (de)serialisation a visible part of the operator's CPU. The answers are not used, so they
  // are not decoded either (parsing them was ~1% of the operator's busy time at 50 runs/s).
  return {
    create: (namespace, body, signal) =>
      client.send('POST', path(namespace), { body: JSON.stringify(body), signal }),
    patchSeries: (namespace, name, series, signal) =>
      client.send('PATCH', path(namespace, name), {
        contentType: ContentType.MergePatch,
        body: JSON.stringify({ series }),
        signal,
      }),
  };
}

/**
 * Logs the first occurrence of each kind of trouble at warn, then at most one warn per 30 s
 * with the number suppressed in between (those go to debug): a dead API server must not turn
 * every event into a log line.
 */
class LogThrottle {
  readonly #log: Logger;
  readonly #last = new Map<string, { at: number; suppressed: number }>();

  constructor(log: Logger) {
    this.#log = log;
  }

  warn(kind: string, fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    const entry = this.#last.get(kind);
    if (entry && now - entry.at < LOG_INTERVAL_MS) {
      entry.suppressed++;
      this.#log.debug(fields, message);
      return;
    }
    this.#last.set(kind, { at: now, suppressed: 0 });
    this.#log.warn({ ...fields, suppressedSinceLast: entry?.suppressed ?? 0 }, message);
  }
}
