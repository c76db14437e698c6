// User-facing error text: validation issues and thrown values turned into short, actionable messages.
import type { z } from 'zod';
import { ELLIPSIS, truncate } from '../util/text.ts';

/**
 * `root.a[0].b: message; root.c: message`, capped at `maxLength`; issues that do not fit are
 * counted so the user knows there is more to fix.
 */
export function formatIssues(
  root: string,
  issues: readonly z.core.$ZodIssue[],
  maxLength: number,
): string {
  const lines: string[] = [];
  for (const issue of issues) {
    // zod reports unknown keys on the parent object; pointing at each key is easier to act on.
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys)
        lines.push(`${formatPath(root, [...issue.path, key])}: unknown field`);
    } else if (issue.code === 'invalid_key') {
      // zod's own message is "Invalid key in record"; the key schema's messages say why.
      const why = issue.issues.map((inner) => inner.message).join(', ');
      lines.push(`${formatPath(root, issue.path)}: invalid key: ${why}`);
    } else {
      lines.push(`${formatPath(root, issue.path)}: ${issue.message}`);
    }
  }
  return joinCapped(lines, maxLength);
}

/** Joins with "; " and, when the list does not fit, ends with "… and N more". */
export function joinCapped(lines: readonly string[], maxLength: number): string {
  let message = '';
  for (const [index, line] of lines.entries()) {
    const next = message === '' ? line : `${message}; ${line}`;
    const remaining = lines.length - index - 1;
    // Reserve room for the suffix unless this is the last line.
    const suffix = remaining > 0 ? `; … and ${remaining} more` : '';
    if (next.length + suffix.length > maxLength) {
      if (message === '') return `${truncate(line, maxLength - suffix.length, ELLIPSIS)}${suffix}`;
      return `${message}; … and ${lines.length - index} more`;
    }
    message = next;
  }
  return message;
}

const identifier = /^[A-Za-z_$][\w$]*$/;

/**
 * `params.spec.items[0]["content-type"]`: dots for identifiers, brackets for everything else.
 * An empty root gives `spec.items`, and an empty path `(top level)`.
 */
export function formatPath(root: string, path: readonly PropertyKey[]): string {
  let out = root;
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (typeof segment === 'symbol') out += `[${String(segment)}]`;
    else if (!identifier.test(segment)) out += `[${JSON.stringify(segment)}]`;
    else out += out === '' ? segment : `.${segment}`;
  }
  return out === '' ? '(top level)' : out;
}

/** Normalises anything thrown into a message a user can read. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  if (typeof error === 'string') return error;
  try {
    return JSON.stringify(error) ?? String(error);
  } catch {
    return String(error);
  }
}
