import { describe, expect, it } from 'vitest';
import {
  cleanText,
  ELLIPSIS,
  TRUNCATION_MARKER,
  truncate,
  truncateCharacters,
} from '../../../src/util/text.ts';

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

describe('truncateCharacters', () => {
  it('keeps a text that fits by characters though not by UTF-16 code units', () => {
    const emoji = '😀'.repeat(512);
    expect(emoji.length).toBe(1024);
    expect(truncateCharacters(emoji, 512)).toBe(emoji);
  });

  it('cuts by characters, never inside a surrogate pair, ending in the marker', () => {
    const cut = truncateCharacters('😀'.repeat(600), 512);
    expect([...cut]).toHaveLength(512);
    expect(cut.endsWith(TRUNCATION_MARKER)).toBe(true);
    expect(cut.isWellFormed()).toBe(true);
  });

  it('cuts without a marker when there is no room for one', () => {
    expect(truncateCharacters('😀😀😀😀', 2)).toBe('😀😀');
  });
});

describe('cleanText', () => {
  it('replaces NUL and lone surrogates with U+FFFD and keeps the rest', () => {
    expect(cleanText('a\u0000b\uD800c😀')).toBe('a\uFFFDb\uFFFDc😀');
    expect(cleanText('plain')).toBe('plain');
  });
});
