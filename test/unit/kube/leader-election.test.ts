import { describe, expect, it } from 'vitest';
import {
  decide,
  LEADER_ELECTION_DEFAULTS,
  LeaderElector,
  type LeaderElectorOptions,
  type LeaseRecord,
  leaseRecordOf,
  sameRecord,
  type V1Lease,
} from '../../../src/kube/leader-election.ts';
import { microTime } from '../../../src/kube/micro-time.ts';
import { unreachableClient } from '../../support/kube-client.ts';

function record(overrides: Partial<LeaseRecord> = {}): LeaseRecord {
  return {
    holderIdentity: 'other',
    leaseDurationSeconds: 15,
    acquireTime: '2026-01-01T00:00:00.000000Z',
    renewTime: '2026-01-01T00:00:10.000000Z',
    leaseTransitions: 3,
    ...overrides,
  };
}

describe('decide', () => {
  const cases: ReadonlyArray<{
    name: string;
    record: LeaseRecord;
    observedAt: number;
    now: number;
    expected: ReturnType<typeof decide>;
  }> = [
    {
      name: 'renews a Lease that names us, however old',
      record: record({ holderIdentity: 'me' }),
      observedAt: 0,
      now: 1_000_000,
      expected: { action: 'renew' },
    },
    {
      name: 'takes over a released Lease at once',
      record: record({ holderIdentity: '', leaseDurationSeconds: 1 }),
      observedAt: 1000,
      now: 1000,
      expected: { action: 'takeover' },
    },
    {
      name: 'waits while another holder is within leaseDuration of our observation',
      record: record(),
      observedAt: 1000,
      now: 15_999,
      expected: { action: 'wait', holder: 'other', expiresInMs: 1 },
    },
    {
      name: 'takes over once leaseDuration has passed since our observation',
      record: record(),
      observedAt: 1000,
      now: 16_000,
      expected: { action: 'takeover' },
    },
    {
      name: 'treats a holder without a duration as expired',
      record: record({ leaseDurationSeconds: 0 }),
      observedAt: 1000,
      now: 1000,
      expected: { action: 'takeover' },
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(decide(c.record, 'me', c.observedAt, c.now)).toEqual(c.expected);
    });
  }

  it('ignores the remote timestamps: a renewTime far in the past is still valid if just observed', () => {
    const stale = record({ renewTime: '1999-01-01T00:00:00.000000Z' });
    expect(decide(stale, 'me', 50_000, 50_001).action).toBe('wait');
  });
});

describe('leaseRecordOf / sameRecord', () => {
  it('reads MicroTime fields as the same strings whether we wrote them (microTime) or read them', () => {
    const written: V1Lease = {
      spec: {
        holderIdentity: 'a',
        leaseDurationSeconds: 2,
        acquireTime: microTime(new Date('2026-01-01T00:00:00.123Z')),
        renewTime: microTime(new Date('2026-01-01T00:00:01.000Z')),
        leaseTransitions: 1,
      },
    };
    const read = {
      spec: {
        holderIdentity: 'a',
        leaseDurationSeconds: 2,
        acquireTime: '2026-01-01T00:00:00.123000Z',
        renewTime: '2026-01-01T00:00:01.000000Z',
        leaseTransitions: 1,
      },
    } satisfies V1Lease;
    expect(leaseRecordOf(written)).toEqual(leaseRecordOf(read));
    expect(sameRecord(leaseRecordOf(written), leaseRecordOf(read))).toBe(true);
  });

  it('defaults an empty spec to a free Lease', () => {
    expect(leaseRecordOf({})).toEqual({
      holderIdentity: '',
      leaseDurationSeconds: 0,
      acquireTime: undefined,
      renewTime: undefined,
      leaseTransitions: 0,
    });
  });

  it('sees a renewal as a change', () => {
    expect(sameRecord(record(), record({ renewTime: '2026-01-01T00:00:12.000000Z' }))).toBe(false);
  });
});

describe('LeaderElector settings', () => {
  const base: LeaderElectorOptions = {
    client: unreachableClient(),
    namespace: 'ns',
    name: 'lock',
    onStartedLeading: () => undefined,
    onStoppedLeading: () => undefined,
  };

  it("defaults to controller-runtime's 15 s / 10 s / 2 s and a hostname_uuid identity", () => {
    const elector = new LeaderElector(base);
    expect(elector.leaseDurationMs).toBe(LEADER_ELECTION_DEFAULTS.leaseDurationMs);
    expect(elector.renewDeadlineMs).toBe(10_000);
    expect(elector.retryPeriodMs).toBe(2_000);
    expect(elector.identity).toMatch(/^.+_[0-9a-f-]{36}$/);
    expect(elector.isLeader()).toBe(false);
    expect(elector.leader()).toBeUndefined();
  });

  it('rejects timings under which two leaders could overlap', () => {
    expect(() => new LeaderElector({ ...base, leaseDurationMs: 10_000 })).toThrow(
      /leaseDurationMs \(10000\) must be greater than renewDeadlineMs \(10000\)/,
    );
    expect(
      () => new LeaderElector({ ...base, renewDeadlineMs: 2_000, retryPeriodMs: 2_000 }),
    ).toThrow(/renewDeadlineMs \(2000\) must be greater than 1.2 \* retryPeriodMs/);
    expect(() => new LeaderElector({ ...base, identity: '' })).toThrow(/identity is empty/);
  });

  it('reports 0 to the metrics hook before anything happens', () => {
    const calls: Array<[string, boolean]> = [];
    new LeaderElector({
      ...base,
      metrics: { setLeader: (name, leading) => calls.push([name, leading]) },
    });
    expect(calls).toEqual([['lock', false]]);
  });

  it('returns from run() at once after stop(), without touching the API server', async () => {
    const elector = new LeaderElector(base);
    await elector.stop();
    await elector.run();
    expect(elector.isLeader()).toBe(false);
  });
});
