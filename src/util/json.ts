/**
 * How deeply `value` nests objects and arrays: 0 for a scalar, 1 for `{}` or `{ a: 1 }`, 2 for
 * `{ a: [1] }`. Counting stops at `limit + 1`, so a value nested thousands of levels deep (or a
 * cyclic one) is measured in bounded time and stack, before JSON.stringify or a recursive
 * validator could overflow the stack on it.
 */
export function jsonDepth(value: unknown, limit: number): number {
  return depthOf(value, limit + 1, new Set());
}

function depthOf(value: unknown, cap: number, ancestors: Set<object>): number {
  if (typeof value !== 'object' || value === null) return 0;
  if (cap <= 1 || ancestors.has(value)) return cap;
  ancestors.add(value);
  try {
    let deepest = 0;
    for (const item of Array.isArray(value) ? value : Object.values(value)) {
      deepest = Math.max(deepest, depthOf(item, cap - 1, ancestors));
      if (deepest >= cap - 1) break;
    }
    return deepest + 1;
  } finally {
    ancestors.delete(value);
  }
}

/**
 * Why `value` cannot be stored as JSON on a status and in the audit log, or undefined when it
 * can: nested deeper than `maxDepth`, or not serialisable (a BigInt, a cycle, a throwing toJSON).
 * `what` names the value in the message, e.g. `spec.params`.
 */
export function jsonProblem(value: unknown, what: string, maxDepth: number): string | undefined {
  if (jsonDepth(value, maxDepth) > maxDepth) {
    return `${what} is nested more than ${maxDepth} levels deep; the limit is ${maxDepth}`;
  }
  try {
    JSON.stringify(value);
  } catch (error) {
    return `${what} is not JSON: ${error instanceof Error ? error.message : String(error)}`;
  }
  return undefined;
}
