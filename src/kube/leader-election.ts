import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { type Logger, silentLogger } from '../util/log.ts';
import { sleep } from '../util/sleep.ts';
import type { KubeClient, RequestOptions } from './kube-client.ts';
import { describeKubeError, statusCodeOf } from './kube-errors.ts';
import { microTime } from './micro-time.ts';

/** controller-runtime's defaults (pkg/manager: LeaseDuration 15 s, RenewDeadline 10 s, RetryPeriod 2 s). */
export const LEADER_ELECTION_DEFAULTS = {
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
} as const;

/** client-go's JitterFactor: a candidate waits retryPeriod * (1 + rand * 1.2) between tries. */
const JITTER_FACTOR = 1.2;

/** Repeats of the same failure are logged at error at most this often (debug in between). */
const ERROR_LOG_INTERVAL_MS = 30_000;

/** Receives leadership changes, e.g. for the gauge `leader_election_master_status{name}`. */
export interface LeaderElectionMetrics {
  /** Called with false once at construction (so the series exists at 0) and on every change. */
  setLeader(name: string, isLeader: boolean): void;
}

/** coordination.k8s.io/v1 LeaseSpec; times are MicroTime strings (see microTime). */
export interface V1LeaseSpec {
  readonly holderIdentity?: string;
  readonly leaseDurationSeconds?: number;
  readonly acquireTime?: string;
  readonly renewTime?: string;
  readonly leaseTransitions?: number;
  readonly strategy?: string;
  readonly preferredHolder?: string;
}

/**
 * coordination.k8s.io/v1 Lease, as read from and written back to the API server: fields we do
 * not know (metadata beyond these, future spec fields) ride along untouched in the replace.
 */
export interface V1Lease {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata?: {
    readonly name?: string;
    readonly namespace?: string;
    readonly resourceVersion?: string;
  };
  readonly spec?: V1LeaseSpec;
}

export interface LeaderElectorOptions {
  readonly client: KubeClient;
  /** Namespace of the coordination.k8s.io/v1 Lease. */
  readonly namespace: string;
  /** Name of the Lease; also the `name` label of the metric. */
  readonly name: string;
  /** Unique per process; default `<hostname>_<uuid>` like controller-runtime. */
  readonly identity?: string;
  /**
   * How long a candidate waits, from when it last saw the Lease change, before taking it over;
   * default 15 s. Written to the Lease in whole seconds, rounded up.
   */
  readonly leaseDurationMs?: number;
  /** The leader stops leading when it has not renewed for this long; default 10 s. */
  readonly renewDeadlineMs?: number;
  /** Pause between tries to acquire (jittered) and between renewals; default 2 s. */
  readonly retryPeriodMs?: number;
  /**
   * On stop(), hand the Lease back (empty holder, 1 s duration) so a successor takes over at
   * once instead of after leaseDuration; default true. Only done once the work has finished.
   */
  readonly releaseOnCancel?: boolean;
  readonly logger?: Logger;
  /**
   * Starts the leader's work. The signal aborts when leadership ends; return a promise that
   * settles when the work has stopped, so stop() releases the Lease only after it. A rejection
   * while leading makes this elector step down (the work is gone, so holding the Lease would
   * only keep a healthy replica from taking over).
   */
  readonly onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  /** Called once each time leadership ends (lost, stepped down or stopped); never before leading. */
  readonly onStoppedLeading: () => void;
  /** Called when a different holder (possibly this one) is observed. */
  readonly onNewLeader?: (identity: string) => void;
  readonly metrics?: LeaderElectionMetrics;
}

/** The leader-election fields of a Lease, normalised for comparison. */
export interface LeaseRecord {
  /** '' when nobody holds the Lease (never acquired, or released). */
  readonly holderIdentity: string;
  readonly leaseDurationSeconds: number;
  readonly acquireTime: string | undefined;
  readonly renewTime: string | undefined;
  readonly leaseTransitions: number;
}

/** What a candidate may do with the Lease it just read. */
export type LeaseDecision =
  | { readonly action: 'renew' }
  | { readonly action: 'takeover' }
  | { readonly action: 'wait'; readonly holder: string; readonly expiresInMs: number };

// The wire form of a MicroTime is a string, and that is what we write (microTime); a Date (as
// client-node's V1MicroTime once handed us) is normalised to the same ISO text.
function timeString(value: unknown): string | undefined {
  if (value instanceof Date) return value.toISOString();
  return typeof value === 'string' ? value : undefined;
}

export function leaseRecordOf(lease: V1Lease): LeaseRecord {
  const spec = lease.spec ?? {};
  return {
    holderIdentity: spec.holderIdentity ?? '',
    leaseDurationSeconds: spec.leaseDurationSeconds ?? 0,
    acquireTime: timeString(spec.acquireTime),
    renewTime: timeString(spec.renewTime),
    leaseTransitions: spec.leaseTransitions ?? 0,
  };
}

/** The answer of a Lease request; the API server's, so only its shape is checked. */
function leaseOf(value: unknown): V1Lease {
  if (typeof value !== 'object' || value === null) {
    throw new Error('the API server answered a Lease request without a Lease');
  }
  return value;
}

export function sameRecord(a: LeaseRecord, b: LeaseRecord): boolean {
  return (
    a.holderIdentity === b.holderIdentity &&
    a.leaseDurationSeconds === b.leaseDurationSeconds &&
    a.acquireTime === b.acquireTime &&
    a.renewTime === b.renewTime &&
    a.leaseTransitions === b.leaseTransitions
  );
}

/**
 * client-go's rule: a Lease held by someone else is valid until leaseDurationSeconds after WE
 * last saw its record change. The holder's renewTime is never compared with our clock, so skew
 * between machines does not matter, only the rate at which our own clock runs.
 */
export function decide(
  record: LeaseRecord,
  identity: string,
  observedAtMs: number,
  nowMs: number,
): LeaseDecision {
  if (record.holderIdentity === identity) return { action: 'renew' };
  if (record.holderIdentity === '') return { action: 'takeover' };
  const expiresInMs = observedAtMs + record.leaseDurationSeconds * 1000 - nowMs;
  if (expiresInMs > 0) return { action: 'wait', holder: record.holderIdentity, expiresInMs };
  return { action: 'takeover' };
}

/** The outcome of one try to acquire or renew. */
type Attempt =
  | { readonly kind: 'ok' }
  | { readonly kind: 'held'; readonly holder: string }
  | { readonly kind: 'lost'; readonly reason: string }
  | { readonly kind: 'error'; readonly operation: string; readonly error: unknown };

const OK: Attempt = { kind: 'ok' };

/**
 * Leader election on a coordination.k8s.io/v1 Lease with client-go's semantics: acquire when
 * the Lease is absent, free or expired (by our own clock), renew every retryPeriod, and stop
 * leading when a renewal has not succeeded within renewDeadline. Every write is a replace with
 * the resourceVersion we read, so two candidates can never both win the same round.
 */
export class LeaderElector {
  readonly identity: string;
  readonly namespace: string;
  readonly name: string;
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;

  readonly #options: LeaderElectorOptions;
  readonly #client: KubeClient;
  readonly #log: Logger;
  readonly #leaseDurationSeconds: number;
  readonly #stopController = new AbortController();
  #releaseOnStop: boolean;
  #running: Promise<void> | undefined;
  /** Aborted when the current term of leadership ends; undefined while not leading. */
  #term: AbortController | undefined;
  /** Monotonic time of the last renewal we know reached the server (when it was sent). */
  #lastRenewal = 0;
  /** The Lease as last read or written: the resourceVersion for the next write. */
  #lease: V1Lease | undefined;
  #observed: LeaseRecord | undefined;
  #observedAt = 0;
  #reportedLeader: string | undefined;
  #lastError: { message: string; at: number } | undefined;

  constructor(options: LeaderElectorOptions) {
    this.#options = options;
    this.namespace = options.namespace;
    this.name = options.name;
    this.identity = options.identity ?? `${hostname()}_${randomUUID()}`;
    this.leaseDurationMs = options.leaseDurationMs ?? LEADER_ELECTION_DEFAULTS.leaseDurationMs;
    this.renewDeadlineMs = options.renewDeadlineMs ?? LEADER_ELECTION_DEFAULTS.renewDeadlineMs;
    this.retryPeriodMs = options.retryPeriodMs ?? LEADER_ELECTION_DEFAULTS.retryPeriodMs;
    this.#releaseOnStop = options.releaseOnCancel ?? true;
    validate(this);
    this.#leaseDurationSeconds = Math.max(1, Math.ceil(this.leaseDurationMs / 1000));
    this.#client = options.client;
    this.#log = (options.logger ?? silentLogger()).child({
      lease: `${this.namespace}/${this.name}`,
      identity: this.identity,
    });
    this.#options.metrics?.setLeader(this.name, false);
  }

  /**
   * True while this elector leads: from just before onStartedLeading until its signal aborts.
   * Also false once renewDeadline has passed since the last renewal, even if the loop has not
   * woken up to notice yet.
   */
  isLeader(): boolean {
    return (
      this.#term !== undefined &&
      !this.#term.signal.aborted &&
      performance.now() - this.#lastRenewal < this.renewDeadlineMs
    );
  }

  /** The holder last seen on the Lease, or undefined when it is absent or free. */
  leader(): string | undefined {
    return this.#observed?.holderIdentity || undefined;
  }

  /**
   * Runs one term: tries to acquire every retryPeriod, then leads and renews until leadership is
   * lost or stop() is called, and resolves. Like client-go's Run it does not try again after a
   * loss; controller-runtime exits the process then, and the caller may do the same or call
   * run() again. Never rejects for API errors: they are logged and retried.
   */
  run(): Promise<void> {
    if (this.#running) {
      return Promise.reject(
        new Error(`leader election for lease ${this.namespace}/${this.name} is already running`),
      );
    }
    const running = this.#runTerm().finally(() => {
      this.#running = undefined;
    });
    this.#running = running;
    return running;
  }

  /**
   * Ends run() for good. If leading, aborts the work's signal, waits up to renewDeadline for the
   * work to settle, then releases the Lease (unless `release` or `releaseOnCancel` is false, or
   * the work did not finish: a successor must not start while our work still runs).
   */
  async stop(options: { readonly release?: boolean } = {}): Promise<void> {
    if (options.release !== undefined) this.#releaseOnStop = options.release;
    this.#stopController.abort();
    await this.#running;
  }

  get #stopping(): boolean {
    return this.#stopController.signal.aborted;
  }

  async #runTerm(): Promise<void> {
    if (this.#stopping) return;
    this.#log.info('trying to acquire the lease');
    const acquiredAt = await this.#acquire();
    if (acquiredAt === undefined) return;
    if (this.#stopping) {
      // Acquired in the same moment as the stop: hand it straight back, nothing ran.
      if (this.#releaseOnStop) await this.#release();
      return;
    }
    await this.#lead(acquiredAt);
  }

  /** Resolves with the monotonic time the winning write was sent, or undefined when stopped. */
  async #acquire(): Promise<number | undefined> {
    for (;;) {
      if (this.#stopping) return undefined;
      const sentAt = performance.now();
      const attempt = await this.#tryAcquireOrRenew(false, this.renewDeadlineMs);
      if (attempt.kind === 'ok') {
        this.#lastError = undefined;
        return sentAt;
      }
      if (attempt.kind === 'error') this.#reportError(attempt);
      else if (attempt.kind === 'held')
        this.#log.trace({ holder: attempt.holder }, 'lease is held');
      await this.#pause(this.retryPeriodMs * (1 + Math.random() * JITTER_FACTOR));
    }
  }

  async #lead(acquiredAt: number): Promise<void> {
    const term = new AbortController();
    this.#lastRenewal = acquiredAt;
    this.#term = term;
    this.#options.metrics?.setLeader(this.name, true);
    this.#log.info('became leader');
    const work = this.#startWork(term);
    let ending: { reason: string; handBack: boolean } | undefined;
    while (!ending) {
      const untilDeadline = this.#lastRenewal + this.renewDeadlineMs - performance.now();
      await this.#pause(Math.min(this.retryPeriodMs, Math.max(0, untilDeadline)), term.signal);
      if (this.#stopping) {
        ending = { reason: 'stopped', handBack: true };
        break;
      }
      if (term.signal.aborted) {
        ending = { reason: 'the work failed', handBack: true };
        break;
      }
      const budget = this.#lastRenewal + this.renewDeadlineMs - performance.now();
      if (budget <= 0) {
        ending = {
          reason: `could not renew the lease within renewDeadline (${this.renewDeadlineMs} ms)`,
          handBack: false,
        };
        break;
      }
      const sentAt = performance.now();
      const attempt = await this.#tryAcquireOrRenew(true, budget);
      if (attempt.kind === 'ok') {
        this.#lastRenewal = sentAt;
        this.#lastError = undefined;
      } else if (attempt.kind === 'lost') {
        ending = { reason: attempt.reason, handBack: false };
      } else if (attempt.kind === 'error') {
        this.#reportError(attempt);
      }
    }
    term.abort(new Error(`leadership ended: ${ending.reason}`));
    this.#options.metrics?.setLeader(this.name, false);
    // Only a voluntary end hands the Lease back; after a loss it is not ours to release.
    if (ending.handBack) {
      this.#log.info({ reason: ending.reason }, 'stopped leading');
      await this.#releaseAfter(work);
    } else {
      this.#log.error({ reason: ending.reason }, 'lost leadership');
    }
    this.#term = undefined;
    try {
      this.#options.onStoppedLeading();
    } catch (error) {
      this.#log.error({ err: error }, 'onStoppedLeading threw');
    }
  }

  #startWork(term: AbortController): Promise<boolean> {
    return (async () => this.#options.onStartedLeading(term.signal))().then(
      () => true,
      (error: unknown) => {
        if (term.signal.aborted) {
          this.#log.debug({ err: error }, 'the work ended with an error after leadership ended');
        } else {
          this.#log.error({ err: error }, 'the work failed while leading; stepping down');
          term.abort(error);
        }
        return true;
      },
    );
  }

  async #releaseAfter(work: Promise<boolean>): Promise<void> {
    if (!this.#releaseOnStop) return;
    const finished = await Promise.race([work, delay(this.renewDeadlineMs, false, { ref: false })]);
    if (!finished) {
      this.#log.warn(
        { waitedMs: this.renewDeadlineMs },
        'the work did not finish after its signal was aborted; not releasing the lease, a successor takes over when it expires',
      );
      return;
    }
    await this.#release();
  }

  async #release(): Promise<void> {
    const lease = this.#lease;
    if (!lease || this.#observed?.holderIdentity !== this.identity) return;
    const now = microTime();
    const spec: V1LeaseSpec = {
      leaseDurationSeconds: 1,
      acquireTime: now,
      renewTime: now,
      leaseTransitions: this.#observed.leaseTransitions,
      ...(lease.spec?.strategy === undefined ? {} : { strategy: lease.spec.strategy }),
      ...(lease.spec?.preferredHolder === undefined
        ? {}
        : { preferredHolder: lease.spec.preferredHolder }),
    };
    try {
      const released = await this.#replace({ ...lease, spec }, { timeoutMs: this.renewDeadlineMs });
      this.#observe(released);
      this.#log.info('released the lease');
    } catch (error) {
      this.#log.warn(
        { error: describeKubeError(error) },
        'could not release the lease; a successor takes over when it expires',
      );
    }
  }

  /**
   * One round of client-go's tryAcquireOrRenew. While leading, first renew straight from the
   * Lease we last wrote (one request); a 409 means someone else wrote, so read and decide.
   */
  async #tryAcquireOrRenew(leading: boolean, budgetMs: number): Promise<Attempt> {
    const options: RequestOptions = { timeoutMs: Math.max(1, Math.ceil(budgetMs)) };
    const now = microTime();
    if (leading && this.#lease) {
      try {
        const body = this.#renewed(this.#lease, now);
        this.#observe(await this.#replace(body, options));
        return OK;
      } catch (error) {
        if (statusCodeOf(error) === 404) return { kind: 'lost', reason: 'the lease was deleted' };
        if (statusCodeOf(error) !== 409) return { kind: 'error', operation: 'renew', error };
      }
    }

    let current: V1Lease;
    try {
      current = leaseOf(await this.#client.request('GET', this.#leasePath(), options));
    } catch (error) {
      if (statusCodeOf(error) !== 404) return { kind: 'error', operation: 'read', error };
      if (leading) return { kind: 'lost', reason: 'the lease was deleted' };
      return this.#create(now, options);
    }
    this.#observe(current);
    const record = leaseRecordOf(current);
    const decision = decide(record, this.identity, this.#observedAt, performance.now());
    if (leading && decision.action !== 'renew') {
      return {
        kind: 'lost',
        reason: `the lease is now held by ${record.holderIdentity ? `"${record.holderIdentity}"` : 'nobody'}`,
      };
    }
    if (decision.action === 'wait') return { kind: 'held', holder: decision.holder };
    const body =
      decision.action === 'renew' ? this.#renewed(current, now) : this.#takenOver(current, now);
    try {
      this.#observe(await this.#replace(body, options));
      if (decision.action === 'takeover') {
        this.#log.info(
          { previousHolder: record.holderIdentity || undefined },
          'took over the lease',
        );
      }
      return OK;
    } catch (error) {
      // Another candidate wrote between our read and our write: it won this round.
      if (statusCodeOf(error) === 409) return { kind: 'held', holder: '(conflict)' };
      return { kind: 'error', operation: 'update', error };
    }
  }

  async #create(now: string, options: RequestOptions): Promise<Attempt> {
    const body: V1Lease = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.name, namespace: this.namespace },
      spec: {
        holderIdentity: this.identity,
        leaseDurationSeconds: this.#leaseDurationSeconds,
        acquireTime: now,
        renewTime: now,
        leaseTransitions: 0,
      },
    };
    try {
      const path = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.namespace)}/leases`;
      this.#observe(
        leaseOf(
          await this.#client.request('POST', path, { ...options, body: JSON.stringify(body) }),
        ),
      );
      this.#log.info('created the lease');
      return OK;
    } catch (error) {
      if (statusCodeOf(error) === 409) return { kind: 'held', holder: '(created concurrently)' };
      return { kind: 'error', operation: 'create', error };
    }
  }

  #leasePath(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.namespace)}/leases/${encodeURIComponent(this.name)}`;
  }

  /** PUT: the resourceVersion in `lease` makes it a compare-and-swap (409 if someone wrote). */
  async #replace(lease: V1Lease, options: RequestOptions): Promise<V1Lease> {
    const body = JSON.stringify(lease);
    return leaseOf(await this.#client.request('PUT', this.#leasePath(), { ...options, body }));
  }

  /** Our renewal of a Lease we hold: acquireTime and leaseTransitions stay. */
  #renewed(lease: V1Lease, now: string): V1Lease {
    return {
      ...lease,
      spec: {
        ...lease.spec,
        holderIdentity: this.identity,
        leaseDurationSeconds: this.#leaseDurationSeconds,
        renewTime: now,
      },
    };
  }

  #takenOver(lease: V1Lease, now: string): V1Lease {
    return {
      ...lease,
      spec: {
        ...lease.spec,
        holderIdentity: this.identity,
        leaseDurationSeconds: this.#leaseDurationSeconds,
        acquireTime: now,
        renewTime: now,
        leaseTransitions: (lease.spec?.leaseTransitions ?? 0) + 1,
      },
    };
  }

  /** Remembers the Lease; the expiry clock restarts only when its record actually changed. */
  #observe(lease: V1Lease): void {
    this.#lease = lease;
    const record = leaseRecordOf(lease);
    if (this.#observed && sameRecord(record, this.#observed)) return;
    this.#observed = record;
    this.#observedAt = performance.now();
    const holder = record.holderIdentity;
    if (holder === '' || holder === this.#reportedLeader) return;
    this.#reportedLeader = holder;
    this.#log.info({ leader: holder }, 'new leader observed');
    try {
      this.#options.onNewLeader?.(holder);
    } catch (error) {
      this.#log.error({ err: error }, 'onNewLeader threw');
    }
  }

  /** Logs at error on a new failure and at most every 30 s for a repeat; debug in between. */
  #reportError(attempt: { operation: string; error: unknown }): void {
    const status = statusCodeOf(attempt.error);
    const hint =
      status === 403
        ? ' (the identity needs get, create and update on leases.coordination.k8s.io in this namespace)'
        : '';
    const message = `cannot ${attempt.operation} lease ${this.namespace}/${this.name}: ${describeKubeError(attempt.error)}${hint}`;
    const now = performance.now();
    const repeat =
      this.#lastError?.message === message && now - this.#lastError.at < ERROR_LOG_INTERVAL_MS;
    if (repeat) {
      this.#log.debug({ status }, message);
      return;
    }
    this.#lastError = { message, at: now };
    this.#log.error({ status }, message);
  }

  /** Sleeps, waking early on stop() or when `extra` aborts. */
  async #pause(ms: number, extra?: AbortSignal): Promise<void> {
    const signal = extra
      ? AbortSignal.any([this.#stopController.signal, extra])
      : this.#stopController.signal;
    await sleep(ms, signal);
  }
}

function validate(elector: LeaderElector): void {
  const { leaseDurationMs, renewDeadlineMs, retryPeriodMs, namespace, name, identity } = elector;
  const problems: string[] = [];
  if (!namespace) problems.push('namespace is empty');
  if (!name) problems.push('name is empty');
  if (!identity) problems.push('identity is empty');
  if (!(retryPeriodMs > 0)) problems.push(`retryPeriodMs must be > 0, got ${retryPeriodMs}`);
  // client-go's checks: the leader must give up before anyone may take over, and must get more
  // than one (jittered) try at renewing before it gives up.
  if (!(leaseDurationMs > renewDeadlineMs)) {
    problems.push(
      `leaseDurationMs (${leaseDurationMs}) must be greater than renewDeadlineMs (${renewDeadlineMs})`,
    );
  }
  if (!(renewDeadlineMs > JITTER_FACTOR * retryPeriodMs)) {
    problems.push(
      `renewDeadlineMs (${renewDeadlineMs}) must be greater than ${JITTER_FACTOR} * retryPeriodMs (${retryPeriodMs})`,
    );
  }
  if (problems.length > 0) {
    throw new RangeError(`invalid leader election settings: ${problems.join('; ')}`);
  }
}
