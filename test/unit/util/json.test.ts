import { describe, expect, it } from 'vitest';
import { jsonDepth, jsonProblem } from '../../../src/util/json.ts';

function nested(levels: number): unknown {
  let value: unknown = 1;
  for (let i = 0; i < levels; i++) value = i % 2 === 0 ? { a: value } : [value];
  return value;
}

describe('jsonDepth', () => {
  it.each<[string, unknown, number]>([
    ['a scalar', 'x', 0],
    ['null', null, 0],
    ['an empty object', {}, 1],
    ['a flat object', { a: 1, b: 'x' }, 1],
    ['an object holding an array', { a: [1] }, 2],
    ['the deepest branch counts', { a: 1, b: { c: { d: [] } }, e: [] }, 4],
    ['10 levels', nested(10), 10],
  ])('%s', (_what, value, depth) => {
    expect(jsonDepth(value, 100)).toBe(depth);
  });

  it('stops counting past the limit, also for values too deep for the stack', () => {
    expect(jsonDepth(nested(200_000), 32)).toBe(33);
  });

  it('counts a cycle as too deep instead of looping', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic['self'] = cyclic;
    expect(jsonDepth(cyclic, 64)).toBe(65);
  });
});

describe('jsonProblem', () => {
  it('accepts JSON within the depth', () => {
    expect(jsonProblem(nested(32), 'spec.params', 32)).toBeUndefined();
  });

  it('says how deep is too deep, naming the value', () => {
    expect(jsonProblem(nested(33), 'spec.params', 32)).toBe(
      'spec.params is nested more than 32 levels deep; the limit is 32',
    );
  });

  it('says why a value is not JSON', () => {
    expect(jsonProblem({ n: 1n }, "the handler's artifacts", 64)).toMatch(
      /^the handler's artifacts is not JSON: .*BigInt/,
    );
    const throwing = {
      toJSON() {
        throw new Error('boom');
      },
    };
    expect(jsonProblem({ x: throwing }, 'it', 64)).toBe('it is not JSON: boom');
  });
});
