import { describe, expect, it } from 'vitest';
import { type Condition, rfc3339, setCondition } from '../../../src/api/conditions.ts';

const t0 = new Date('2026-01-01T00:00:00.750Z');
const t1 = new Date('2026-01-01T00:05:00Z');
const running = {
  type: 'Succeeded',
  status: 'Unknown',
  reason: 'Running',
  message: 'attempt 1',
} as const;

describe('setCondition', () => {
  it('appends a new condition with the current time', () => {
    expect(setCondition([], running, t0)).toEqual([
      { ...running, lastTransitionTime: '2026-01-01T00:00:00Z' },
    ]);
  });

  it('keeps lastTransitionTime when the status does not flip', () => {
    const before = setCondition([], running, t0);
    const after = setCondition(
      before,
      { ...running, reason: 'Retrying', message: 'attempt 2' },
      t1,
    );
    expect(after).toEqual([
      { ...running, reason: 'Retrying', message: 'attempt 2', lastTransitionTime: rfc3339(t0) },
    ]);
  });

  it('moves lastTransitionTime when the status flips, in place, without touching others', () => {
    const ready: Condition = {
      type: 'Ready',
      status: 'False',
      reason: 'Running',
      message: '',
      lastTransitionTime: rfc3339(t0),
    };
    const before = [...setCondition([], running, t0), ready];
    const after = setCondition(before, { ...running, status: 'True', reason: 'Succeeded' }, t1);
    expect(after).toEqual([
      { ...running, status: 'True', reason: 'Succeeded', lastTransitionTime: rfc3339(t1) },
      ready,
    ]);
    expect(before[0]?.status).toBe('Unknown');
  });
});
