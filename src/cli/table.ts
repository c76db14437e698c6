/**
 * Text output the way kubectl prints it: tables with upper-case headers and columns three spaces
 * apart, `<none>` for an empty cell, and `describe`-style key/value views. Audit rows carry
 * user-supplied text, so control characters (which could garble or drive a terminal) and bidi
 * overrides (which could make text read differently than it is) never reach the output as is.
 */

export const NONE = '<none>';
const COLUMN_GAP = '   ';

export type CellValue = string | number | boolean | null | undefined;

/** One table cell: one line, safe to print, `<none>` when empty. */
export function cell(value: CellValue): string {
  if (value === null || value === undefined || value === '') return NONE;
  return safeLine(String(value));
}

/**
 * A table: every column as wide as its widest cell (counted in code points, as kubectl's
 * tabwriter counts runes), three spaces between columns, no trailing spaces.
 */
export function formatTable(
  headers: readonly string[],
  rows: ReadonlyArray<readonly CellValue[]>,
): string {
  const cells = [
    headers.map((h) => safeLine(h)),
    ...rows.map((row) => headers.map((_, i) => cell(row[i]))),
  ];
  const widths = headers.map((_, i) => Math.max(...cells.map((row) => width(row[i] ?? ''))));
  const lines = cells.map((row) =>
    row
      .map((text, i) =>
        i === row.length - 1 ? text : text + ' '.repeat((widths[i] ?? 0) - width(text)),
      )
      .join(COLUMN_GAP)
      .trimEnd(),
  );
  return `${lines.join('\n')}\n`;
}

/**
 * A `kubectl describe`-style view: `Label:` padded to a common width, then the value; a
 * multi-line value starts on the next line, indented by two spaces.
 */
export function formatKeyValues(pairs: ReadonlyArray<readonly [string, CellValue]>): string {
  const labelWidth = Math.max(...pairs.map(([label]) => label.length + 1));
  const lines: string[] = [];
  for (const [label, value] of pairs) {
    const text = value === null || value === undefined || value === '' ? NONE : String(value);
    const valueLines = text.split(/\r\n|\n|\r/).map(safeLine);
    if (valueLines.length === 1) {
      lines.push(`${`${label}:`.padEnd(labelWidth)}   ${valueLines[0]}`.trimEnd());
    } else {
      lines.push(`${label}:`, ...valueLines.map((line) => `  ${line}`.trimEnd()));
    }
  }
  return `${lines.join('\n')}\n`;
}

/** RFC 3339 in UTC to the second (`2025-01-31T09:30:00Z`), `<none>` for no time. */
export function formatTime(date: Date | null | undefined): string {
  if (!date || Number.isNaN(date.getTime())) return NONE;
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** JSON for `-o json`: indented like kubectl's; C1 controls and bidi overrides escaped too. */
export function toJson(value: unknown): string {
  // JSON.stringify escapes C0 controls inside strings, so the only raw ones left are its own line
  // breaks; the others are valid JSON either way.
  const json = JSON.stringify(value, null, 2) ?? 'null';
  return `${replaceUnsafe(json, (c) => (c === '\n' ? c : escapeChar(c)))}\n`;
}

/** One line of text, safe for a terminal: tabs and line breaks become spaces, other controls U+FFFD. */
export function safeLine(text: string): string {
  return replaceUnsafe(text, (c) => (/\s/.test(c) ? ' ' : '\uFFFD'));
}

/** `\u001b` for ESC: how messages show a control character they quote. */
export function escapeChar(c: string): string {
  return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
}

/**
 * Replaces each character a terminal would act on rather than print: C0 and C1 controls, DEL and
 * the bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069).
 */
export function replaceUnsafe(text: string, replace: (c: string) => string): string {
  let out = '';
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const unsafe =
      code < 0x20 ||
      (code >= 0x7f && code <= 0x9f) ||
      (code >= 0x202a && code <= 0x202e) ||
      (code >= 0x2066 && code <= 0x2069);
    if (!unsafe) continue;
    out += text.slice(start, i) + replace(text.charAt(i));
    start = i + 1;
  }
  return start === 0 ? text : out + text.slice(start);
}

function width(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}
