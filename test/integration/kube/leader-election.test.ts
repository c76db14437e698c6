import { setTimeout as sleep } from 'node:timers/promises';
import { CoordinationV1Api } from '@kubernetes/client-node';
import { afterEach, describe, expect, it } from 'vitest';
import { LeaderElector, type LeaderElectorOptions } from '../../../src/kube/leader-election.ts';
import { createLogger } from '../../../src/util/log.ts';
import { controlPlane } from '../../support/environment.ts';
import { adminClient, adminKubeConfig, mintUser } from '../../support/envtest/users.ts';
import { createNamespace, statusOf } from '../../support/kube.ts';
import { sampleLeadership } from '../../support/leadership.ts';
import { waitFor } from '../../support/wait.ts';

const plane = controlPlane();
const admin = adminKubeConfig(plane);
const leases = admin.makeApiClient(CoordinationV1Api);

/**
 * Timings for tests. Renewals are frequent (every 0.2 s) but the leader only gives up after 4 s
 * without one, so a busy machine that delays a renewal or two does not move leadership: the
 * tests below assert what the elector does, not how punctually the event loop runs.
 */
const TIMINGS = { leaseDurationMs: 5_000, renewDeadlineMs: 4_000, retryPeriodMs: 200 } as const;
const LEASE = 'agentrun-operator-lock';

interface Candidate {
  readonly elector: LeaderElector;
  /** run() of the first term; resolves when leadership ends or the elector stops. */
  readonly done: Promise<void>;
  started: number;
  stopped: number;
  startedAt: number | undefined;
  /** Date.now() when the work started, to compare with the Lease's (wall-clock) times. */
  startedAtWall: number | undefined;
  workEndedAt: number | undefined;
  signal: AbortSignal | undefined;
}

const cleanup: LeaderElector[] = [];
afterEach(async () => {
  await Promise.all(cleanup.splice(0).map((elector) => elector.stop({ release: false })));
});

/**
 * Starts an elector whose "work" runs until its signal aborts and then takes a moment to wind
 * down, as a real controller would.
 */
function candidate(
  namespace: string,
  identity: string,
  overrides: Partial<LeaderElectorOptions> = {},
): Candidate {
  const state: Omit<Candidate, 'elector' | 'done'> = {
    started: 0,
    stopped: 0,
    startedAt: undefined,
    startedAtWall: undefined,
    workEndedAt: undefined,
    signal: undefined,
  };
  const elector = new LeaderElector({
    client: adminClient(plane),
    namespace,
    name: LEASE,
    identity,
    ...TIMINGS,
    onStartedLeading: async (signal) => {
      state.started++;
      state.startedAt = performance.now();
      state.startedAtWall = Date.now();
      state.signal = signal;
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
      await sleep(100);
      state.workEndedAt = performance.now();
    },
    onStoppedLeading: () => {
      state.stopped++;
    },
    ...overrides,
  });
  cleanup.push(elector);
  const result = Object.assign(state, { elector, done: elector.run() });
  return result;
}

async function readLease(namespace: string) {
  return leases.readNamespacedLease({ name: LEASE, namespace });
}

/**
 * A Lease time (acquireTime, renewTime) in epoch ms. client-node hands MicroTime fields back as
 * the raw strings, whatever their declared type.
 */
function wallTime(value: unknown): number {
  const ms = value instanceof Date ? value.getTime() : Date.parse(String(value));
  if (Number.isNaN(ms)) throw new Error(`not a Lease time: ${String(value)}`);
  return ms;
}

function leaderAmong(candidates: readonly Candidate[]): Promise<Candidate> {
  return waitFor(
    'a leader',
    async () => {
      const leading = candidates.filter((c) => c.elector.isLeader());
      return leading.length === 1 ? leading[0] : undefined;
    },
    { timeoutMs: 15_000, intervalMs: 20 },
  );
}

describe('LeaderElector against the API server', () => {
  it('lets exactly one of two candidates lead, and both agree on who', async () => {
    const namespace = await createNamespace(admin, 'le-one');
    const a = candidate(namespace, 'candidate-a');
    const b = candidate(namespace, 'candidate-b');
    const finish = sampleLeadership(() => [a.elector.isLeader(), b.elector.isLeader()]);

    const leader = await leaderAmong([a, b]);
    const follower = leader === a ? b : a;
    await waitFor(
      'the follower to see the leader',
      async () => (follower.elector.leader() === leader.elector.identity ? true : undefined),
      { timeoutMs: 15_000, intervalMs: 20 },
    );
    const before = await readLease(namespace);
    // Longer than the lease (5 s) from the follower's first look: only the leader's renewals
    // keep the follower from taking over, and a leader that stopped renewing would have given
    // up (after 4 s) by the end.
    await sleep(TIMINGS.leaseDurationMs + 1_000);
    const { samples, overlaps } = finish();

    expect(samples).toBeGreaterThan(100);
    expect(overlaps).toBe(0);
    expect(leader.elector.isLeader()).toBe(true);
    expect(follower.elector.isLeader()).toBe(false);
    expect(leader.started).toBe(1);
    expect(follower.started).toBe(0);
    expect(follower.elector.leader()).toBe(leader.elector.identity);
    const lease = await readLease(namespace);
    expect(lease.spec?.holderIdentity).toBe(leader.elector.identity);
    expect(lease.spec?.leaseDurationSeconds).toBe(5);
    expect(lease.spec?.leaseTransitions).toBe(0);
    // Held by renewals of the same term: renewTime moved on, acquireTime did not.
    expect(wallTime(lease.spec?.acquireTime)).toBe(wallTime(before.spec?.acquireTime));
    expect(wallTime(lease.spec?.renewTime)).toBeGreaterThan(wallTime(before.spec?.renewTime));
  });

  it('hands over at once when the leader stops and releases, after its work has wound down', async () => {
    const namespace = await createNamespace(admin, 'le-release');
    // A lease far longer than the wait below: without the release, the follower could not
    // take over before the waitFor gives up, however slow the machine.
    const long = { leaseDurationMs: 120_000, renewDeadlineMs: 10_000, retryPeriodMs: 200 };
    const a = candidate(namespace, 'candidate-a', long);
    const b = candidate(namespace, 'candidate-b', long);
    const finish = sampleLeadership(() => [a.elector.isLeader(), b.elector.isLeader()]);
    const leader = await leaderAmong([a, b]);
    const follower = leader === a ? b : a;

    await leader.elector.stop();
    await leader.done;
    expect(leader.signal?.aborted).toBe(true);
    expect(leader.stopped).toBe(1);
    expect(leader.workEndedAt).toBeDefined();

    // The follower retries every 0.2-0.44 s and finds the Lease free; the lease it last saw
    // held would keep it waiting 120 s, far past this wait.
    await waitFor('the follower to lead', async () => follower.elector.isLeader() || undefined, {
      timeoutMs: 30_000,
      intervalMs: 20,
    });
    expect(finish().overlaps).toBe(0);
    // The successor starts only after the old leader's work has finished.
    expect(follower.startedAt ?? 0).toBeGreaterThan(leader.workEndedAt ?? Infinity);
    const lease = await readLease(namespace);
    expect(lease.spec?.holderIdentity).toBe(follower.elector.identity);
    expect(lease.spec?.leaseTransitions).toBe(1);
  });

  it('hands over only after the lease expires when the leader vanishes without releasing', async () => {
    const namespace = await createNamespace(admin, 'le-crash');
    const a = candidate(namespace, 'candidate-a');
    const b = candidate(namespace, 'candidate-b');
    const finish = sampleLeadership(() => [a.elector.isLeader(), b.elector.isLeader()]);
    const leader = await leaderAmong([a, b]);
    const follower = leader === a ? b : a;
    // Let the follower observe a few renewals first: a follower that timed the lease from its
    // first look rather than from the last change would take over too early below.
    await sleep(1_000);

    // A crash as far as the API server can tell: the renewals stop and nothing is released.
    expect(leader.elector.isLeader()).toBe(true);
    await leader.elector.stop({ release: false });
    const crashed = await readLease(namespace);
    expect(crashed.spec?.holderIdentity).toBe(leader.elector.identity);
    const lastRenewal = wallTime(crashed.spec?.renewTime);
    const leaseMs = (crashed.spec?.leaseDurationSeconds ?? 0) * 1000;
    expect(leaseMs).toBe(5_000);

    await waitFor(
      'the follower to take over',
      async () => follower.elector.isLeader() || undefined,
      {
        timeoutMs: 30_000,
        intervalMs: 20,
      },
    );
    expect(finish().overlaps).toBe(0);
    // The follower saw the last renewal no earlier than it was written, and must then see the
    // record unchanged for the whole lease: so it began to lead at least leaseDurationSeconds
    // after that renewal's renewTime. A lower bound: a slow machine only adds to it. (A few ms
    // of slack: the elector times with performance.now(), the Lease carries Date times.)
    expect(follower.startedAtWall ?? 0).toBeGreaterThanOrEqual(lastRenewal + leaseMs - 20);
    const lease = await readLease(namespace);
    expect(lease.spec?.holderIdentity).toBe(follower.elector.identity);
    expect(lease.spec?.leaseTransitions).toBe(1);
  });

  it('stops leading when an admin gives the lease to someone else, and leaves it to them', async () => {
    const namespace = await createNamespace(admin, 'le-steal');
    const a = candidate(namespace, 'candidate-a');
    await leaderAmong([a]);

    const lease = await readLease(namespace);
    await leases.replaceNamespacedLease({
      name: LEASE,
      namespace,
      body: {
        ...lease,
        spec: { ...lease.spec, holderIdentity: 'intruder', leaseDurationSeconds: 60 },
      },
    });

    await waitFor('the leader to notice', async () => (a.elector.isLeader() ? undefined : true), {
      timeoutMs: 15_000,
      intervalMs: 20,
    });
    await a.done;
    expect(a.signal?.aborted).toBe(true);
    expect(a.stopped).toBe(1);
    expect(a.elector.leader()).toBe('intruder');
    const after = await readLease(namespace);
    expect(after.spec?.holderIdentity).toBe('intruder');
  });

  it('stops leading when the lease is deleted behind its back', async () => {
    const namespace = await createNamespace(admin, 'le-delete');
    const a = candidate(namespace, 'candidate-a');
    await leaderAmong([a]);

    await leases.deleteNamespacedLease({ name: LEASE, namespace });
    await waitFor('the leader to notice', async () => (a.elector.isLeader() ? undefined : true), {
      timeoutMs: 15_000,
      intervalMs: 20,
    });
    await a.done;
    expect(a.signal?.aborted).toBe(true);
    expect(a.stopped).toBe(1);
    // The lost leader does not quietly recreate the Lease.
    expect(await statusOf(readLease(namespace))).toBe(404);
  });

  it('never leads without RBAC on leases, logs why, and keeps running until stopped', async () => {
    const namespace = await createNamespace(admin, 'le-rbac');
    const user = mintUser(plane, 'no-lease-rights');
    const lines: Array<{ level: string; msg: string }> = [];
    const logger = createLogger('debug', {
      write: (line: string) => {
        lines.push(JSON.parse(line));
      },
    });
    const c = candidate(namespace, 'candidate-x', {
      client: user.client,
      logger,
    });

    const errors = await waitFor(
      'an error log',
      async () => {
        const found = lines.filter((line) => line.level === 'error');
        return found.length > 0 ? found : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    expect(errors[0]?.msg).toMatch(
      /cannot read lease le-rbac-\w+\/agentrun-operator-lock: HTTP 403 Forbidden: .*no-lease-rights.*leases/,
    );
    expect(errors[0]?.msg).toMatch(/needs get, create and update on leases/);
    // Keeps trying every retryPeriod; the repeats are logged at debug, not as a flood of errors.
    await waitFor(
      'three repeats of the failure',
      async () => (lines.filter((line) => line.level === 'debug').length >= 3 ? true : undefined),
      { timeoutMs: 15_000, intervalMs: 20 },
    );
    expect(lines.filter((line) => line.level === 'error')).toHaveLength(1);
    expect(c.elector.isLeader()).toBe(false);
    expect(c.started).toBe(0);

    let settled = false;
    void c.done.then(() => {
      settled = true;
    });
    await sleep(10);
    expect(settled).toBe(false);
    await c.elector.stop();
    await expect(c.done).resolves.toBeUndefined();
    expect(c.stopped).toBe(0);
  });
});
