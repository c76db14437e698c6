import { describe, expect, it } from 'vitest';
import { formatDuration } from '../../../src/util/duration.ts';

describe('formatDuration', () => {
  it.each<[number, string]>([
    [0, '0ms'],
    [1, '1ms'],
    [850, '850ms'],
    [999, '999ms'],
    [1000, '1s'],
    [1010, '1.01s'],
    [1250, '1.25s'],
    [1500, '1.5s'],
    [1999, '1.99s'],
    [12_000, '12s'],
    [59_990, '59.99s'],
    [59_999, '59.99s'],
    [60_000, '1m0s'],
    [60_999, '1m0s'],
    [184_000, '3m4s'],
    [3_599_999, '59m59s'],
    [3_600_000, '1h0m0s'],
    [3_723_000, '1h2m3s'],
    [86_400_000, '24h0m0s'],
    [7 * 86_400_000, '168h0m0s'],
  ])('%i ms -> %s', (ms, expected) => {
    expect(formatDuration(ms)).toBe(expected);
  });

  it('never rounds a sub-second duration up to 1000ms', () => {
    expect(formatDuration(999.6)).toBe('999ms');
  });
});
