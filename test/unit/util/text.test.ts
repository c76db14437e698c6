import { describe, expect, it } from 'vitest';
import { ELLIPSIS, TRUNCATION_MARKER, truncate } from '../../../src/util/text.ts';

// The markers users see on statuses, audit rows and handler messages.
const MARKER = '... [truncated]';

describe('truncate', () => {
  it('has the markers users see', () => {
    expect(TRUNCATION_MARKER).toBe(MARKER);
    expect(ELLIPSIS).toBe('…');
  });

  it.each<[string, string, number, string]>([
    ['shorter', 'abc', 20, 'abc'],
    ['exactly max', 'a'.repeat(20), 20, 'a'.repeat(20)],
    ['one over', 'a'.repeat(21), 20, `aaaaa${MARKER}`],
    ['empty', '', 0, ''],
  ])('%s', (_name, text, max, expected) => {
    expect(truncate(text, max)).toBe(expected);
    expect(truncate(text, max).length).toBeLessThanOrEqual(max);
  });
});

describe('truncate: surrogates, small widths and other markers', () => {
  it('never splits a surrogate pair when cutting', () => {
    const keep = 30 - TRUNCATION_MARKER.length - 1;
    const text = `${'a'.repeat(keep)}😀${'tail'.repeat(10)}`;
    const cut = truncate(text, 30);
    expect(cut).toBe(`${'a'.repeat(keep)}${TRUNCATION_MARKER}`);
    expect(cut.isWellFormed()).toBe(true);
  });

  it('cuts without a marker when the width is smaller than the marker', () => {
    expect(truncate('abcdefghij', 3)).toBe('abc');
    expect(truncate('abcdefghij', -1)).toBe('');
  });

  it('ends in the marker it is given', () => {
    expect(truncate('x'.repeat(300), 200, ELLIPSIS)).toBe(`${'x'.repeat(199)}…`);
  });
});
