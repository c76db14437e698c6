import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import type {
  Handler,
  HandlerContext,
  JsonObject,
  Prepared,
} from '../../../src/handlers/handler.ts';
import {
  defineHandler,
  HANDLER_NAME_MAX_LENGTH,
  HANDLER_NAME_PATTERN,
  handlerNameProblem,
  MAX_INVALID_PARAMS_MESSAGE,
  parseParams,
} from '../../../src/handlers/handler.ts';
import { errorMessage, formatPath, joinCapped } from '../../../src/handlers/messages.ts';
import { silentLogger } from '../../../src/util/log.ts';

function context(overrides: Partial<HandlerContext> = {}): HandlerContext {
  return {
    runId: 'run-1',
    attempt: 1,
    dryRun: false,
    signal: new AbortController().signal,
    logger: silentLogger(),
    ...overrides,
  };
}

const greet = defineHandler({
  name: 'greet',
  description: 'says hello',
  params: z.strictObject({
    who: z.string().min(1),
    times: z.int().min(1).max(3).default(1),
    tags: z.array(z.string()).optional(),
  }),
  plan: ({ objective, params, dryRun }) => ({
    objective,
    greeting: `hello ${params.who}`,
    times: params.times,
    dryRun,
  }),
  run: async (plan, ctx) => ({ said: plan.greeting, runId: ctx.runId, attempt: ctx.attempt }),
});

function expectInvalid(prepared: Prepared): string {
  if (prepared.ok)
    throw new Error(`expected InvalidParams, got plan ${JSON.stringify(prepared.plan)}`);
  expect(prepared.reason).toBe('InvalidParams');
  return prepared.message;
}

describe('defineHandler', () => {
  it('validates, plans and executes', async () => {
    const prepared = greet.prepare({ objective: 'be nice', params: { who: 'ada' }, dryRun: true });
    if (!prepared.ok) throw new Error(prepared.message);
    expect(prepared.plan).toEqual({
      objective: 'be nice',
      greeting: 'hello ada',
      times: 1,
      dryRun: true,
    });
    await expect(prepared.execute(context({ runId: 'r-9', attempt: 2 }))).resolves.toEqual({
      said: 'hello ada',
      runId: 'r-9',
      attempt: 2,
    });
  });

  it('keeps name and description', () => {
    expect(greet.name).toBe('greet');
    expect(greet.description).toBe('says hello');
  });

  it('validates absent params as {}', () => {
    const noParams = defineHandler({
      name: 'no-params',
      description: '',
      params: z.object({ level: z.int().default(3) }),
      plan: ({ params }) => ({ level: params.level }),
      run: async () => ({}),
    });
    const prepared = noParams.prepare({ objective: 'x', params: undefined, dryRun: false });
    expect(prepared.ok && prepared.plan).toEqual({ level: 3 });
    expect(expectInvalid(greet.prepare({ objective: 'x', params: undefined, dryRun: false }))).toBe(
      'params.who: Invalid input: expected string, received undefined',
    );
  });

  it('lists every issue with its params path', () => {
    const message = expectInvalid(
      greet.prepare({
        objective: 'x',
        params: { who: '', times: 7, tags: ['a', 3], extra: true, 'odd-key': 1 },
        dryRun: false,
      }),
    );
    expect(message).toBe(
      [
        'params.who: Too small: expected string to have >=1 characters',
        'params.times: Too big: expected number to be <=3',
        'params.tags[1]: Invalid input: expected string, received number',
        'params.extra: unknown field',
        'params["odd-key"]: unknown field',
      ].join('; '),
    );
  });

  it('reports a non-object params value at the top', () => {
    expect(expectInvalid(greet.prepare({ objective: 'x', params: 'who=ada', dryRun: false }))).toBe(
      'params: Invalid input: expected object, received string',
    );
  });

  it('caps long messages at about 1 KiB and counts what was left out', () => {
    const wide = defineHandler({
      name: 'wide',
      description: '',
      params: z.record(z.string(), z.number()),
      plan: (input) => input.params,
      run: async () => ({}),
    });
    const params = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`field${i}`, 'x']));
    const message = expectInvalid(wide.prepare({ objective: 'x', params, dryRun: false }));
    expect(message.length).toBeLessThanOrEqual(MAX_INVALID_PARAMS_MESSAGE);
    expect(
      message.startsWith('params.field0: Invalid input: expected number, received string;'),
    ).toBe(true);
    const shown = message.split('; ').filter((part) => part.startsWith('params.')).length;
    expect(message.endsWith(`; … and ${200 - shown} more`)).toBe(true);
    expect(shown).toBeGreaterThan(5);
  });

  it('turns a throwing plan into InvalidParams with its message', () => {
    const picky = defineHandler({
      name: 'picky',
      description: '',
      params: z.object({ n: z.int() }),
      plan: ({ params }) => {
        if (params.n % 2 === 1) throw new Error('n must be even for this agent');
        return { n: params.n };
      },
      run: async () => ({}),
    });
    expect(expectInvalid(picky.prepare({ objective: 'x', params: { n: 3 }, dryRun: false }))).toBe(
      'n must be even for this agent',
    );
    expect(picky.prepare({ objective: 'x', params: { n: 4 }, dryRun: false }).ok).toBe(true);
  });

  it('caps a huge thrown plan message too', () => {
    const loud = defineHandler({
      name: 'loud',
      description: '',
      params: z.object({}),
      plan: () => {
        throw new Error('x'.repeat(5000));
      },
      run: async () => ({}),
    });
    const message = expectInvalid(loud.prepare({ objective: 'x', params: {}, dryRun: false }));
    expect(message.length).toBe(MAX_INVALID_PARAMS_MESSAGE);
    expect(message.endsWith('…')).toBe(true);
  });

  it('turns a synchronous throw in run into a rejection', async () => {
    const sync = defineHandler({
      name: 'sync-throw',
      description: '',
      params: z.object({}),
      plan: () => ({}),
      run: () => {
        throw new Error('boom');
      },
    });
    const prepared = sync.prepare({ objective: 'x', params: {}, dryRun: false });
    if (!prepared.ok) throw new Error(prepared.message);
    const pending = prepared.execute(context());
    expect(pending).toBeInstanceOf(Promise);
    await expect(pending).rejects.toThrow('boom');
  });

  it('rejects invalid names at definition time', () => {
    expect(() =>
      defineHandler({
        name: 'Bad_Name',
        description: '',
        params: z.object({}),
        plan: () => ({}),
        run: async () => ({}),
      }),
    ).toThrow('handler name "Bad_Name" must be lowercase letters, digits');
  });

  it('types: plans must be JSON objects and the result is type-erased', () => {
    expectTypeOf(greet).toEqualTypeOf<Handler>();
    expectTypeOf<Prepared>()
      .extract<{ ok: true }>()
      .toHaveProperty('plan')
      .toEqualTypeOf<JsonObject>();
    defineHandler({
      name: 'typed',
      description: '',
      params: z.object({ n: z.int() }),
      plan: ({ params }) => {
        expectTypeOf(params).toEqualTypeOf<{ n: number }>();
        return { n: params.n };
      },
      run: async (plan) => {
        expectTypeOf(plan).toEqualTypeOf<{ n: number }>();
        return plan;
      },
    });
    defineHandler({
      name: 'not-json',
      description: '',
      params: z.object({}),
      // @ts-expect-error a Date is not a JSON value, so it cannot be a plan
      plan: () => ({ at: new Date() }),
      run: async () => ({}),
    });
  });
});

describe('handler names', () => {
  it.each([
    ['noop'],
    ['http.check'],
    ['webhook-a'],
    ['a'],
    ['0'],
    ['a.b-c.d9'],
    ['x'.repeat(HANDLER_NAME_MAX_LENGTH)],
  ])('accepts %j', (name) => {
    expect(handlerNameProblem(name)).toBeUndefined();
    expect(new RegExp(HANDLER_NAME_PATTERN).test(name)).toBe(true);
  });

  it.each([
    ['', 'must not be empty'],
    ['Noop', 'must be lowercase'],
    ['-a', 'must be lowercase'],
    ['a-', 'must be lowercase'],
    ['a.', 'must be lowercase'],
    ['a b', 'must be lowercase'],
    ['a_b', 'must be lowercase'],
    ['x'.repeat(HANDLER_NAME_MAX_LENGTH + 1), 'at most 128 characters (got 129)'],
  ])('rejects %j', (name, problem) => {
    expect(handlerNameProblem(name)).toContain(problem);
  });
});

describe('parseParams', () => {
  it('returns the parsed value with defaults applied', () => {
    expect(parseParams(z.object({ a: z.int().default(1) }), null)).toEqual({
      ok: true,
      value: { a: 1 },
    });
  });
});

describe('messages', () => {
  it.each([
    [[], 'params'],
    [['a', 0, 'b'], 'params.a[0].b'],
    [['content-type'], 'params["content-type"]'],
    [['$ok', '_x1'], 'params.$ok._x1'],
    [['1abc'], 'params["1abc"]'],
  ] as const)('formats path %j', (path, expected) => {
    expect(formatPath('params', path)).toBe(expected);
  });

  it('formats paths without a root', () => {
    expect(formatPath('', ['webhooks', 0, 'url'])).toBe('webhooks[0].url');
    expect(formatPath('', [])).toBe('(top level)');
  });

  it('caps a first line that alone is too long, keeping the count', () => {
    const message = joinCapped(['y'.repeat(100), 'b', 'c'], 50);
    expect(message.length).toBeLessThanOrEqual(50);
    expect(message.endsWith('; … and 2 more')).toBe(true);
  });

  it('joins everything that fits', () => {
    expect(joinCapped(['a', 'b', 'c'], 50)).toBe('a; b; c');
    expect(joinCapped([], 50)).toBe('');
  });

  it.each([
    [new Error('plain'), 'plain'],
    [new TypeError(''), 'TypeError'],
    ['a string', 'a string'],
    [{ code: 42 }, '{"code":42}'],
    [undefined, 'undefined'],
  ])('normalises thrown %j', (thrown, expected) => {
    expect(errorMessage(thrown)).toBe(expected);
  });
});

describe('errorMessage', () => {
  const cases: ReadonlyArray<{ name: string; error: unknown; expected: string }> = [
    { name: 'an Error', error: new Error('boom'), expected: 'boom' },
    { name: 'an Error subclass', error: new TypeError('bad type'), expected: 'bad type' },
    { name: 'an Error with an empty message', error: new Error(''), expected: 'Error' },
    { name: 'an empty TypeError', error: new TypeError(), expected: 'TypeError' },
    {
      name: 'an empty Error with a custom name',
      error: Object.assign(new Error(''), { name: 'HandlerError' }),
      expected: 'HandlerError',
    },
    { name: 'a string', error: 'just text', expected: 'just text' },
    { name: 'an empty string', error: '', expected: '' },
    {
      name: 'an object',
      error: { code: 'E1', retry: false },
      expected: '{"code":"E1","retry":false}',
    },
    { name: 'an array', error: [1, 'two'], expected: '[1,"two"]' },
    { name: 'a number', error: 42, expected: '42' },
    { name: 'null', error: null, expected: 'null' },
    { name: 'undefined', error: undefined, expected: 'undefined' },
  ];
  for (const { name, error, expected } of cases) {
    it(name, () => {
      expect(errorMessage(error)).toBe(expected);
    });
  }
});
