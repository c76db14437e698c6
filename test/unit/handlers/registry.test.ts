import { describe, expect, it } from 'vitest';
import type { Handler } from '../../../src/handlers/handler.ts';
import { HandlerRegistry } from '../../../src/handlers/registry.ts';

function stub(name: string): Handler {
  return {
    name,
    description: `stub ${name}`,
    prepare: () => ({ ok: false, reason: 'InvalidParams', message: 'stub' }),
  };
}

describe('HandlerRegistry', () => {
  it('registers and looks up by name', () => {
    const noop = stub('noop');
    const registry = new HandlerRegistry([noop]).register(stub('http.check'));
    expect(registry.get('noop')).toBe(noop);
    expect(registry.has('http.check')).toBe(true);
    expect(registry.get('nope')).toBeUndefined();
    expect(registry.has('nope')).toBe(false);
    expect(registry.size).toBe(2);
  });

  it('lists names sorted, including ones registered after a listing', () => {
    const registry = new HandlerRegistry([stub('webhook-a'), stub('noop')]);
    expect(registry.names()).toEqual(['noop', 'webhook-a']);
    registry.register(stub('http.check'));
    expect(registry.names()).toEqual(['http.check', 'noop', 'webhook-a']);
  });

  it('rejects duplicates', () => {
    const registry = new HandlerRegistry([stub('noop')]);
    expect(() => registry.register(stub('noop'))).toThrow(
      'cannot register handler "noop": a handler with that name is already registered',
    );
    expect(() => new HandlerRegistry([stub('a'), stub('a')])).toThrow('already registered');
  });

  it.each([
    ['', 'must not be empty'],
    ['Upper', 'must be lowercase'],
    ['x'.repeat(129), 'must be at most 128 characters (got 129)'],
  ])('rejects the invalid name %j', (name, problem) => {
    expect(() => new HandlerRegistry().register(stub(name))).toThrow(
      `cannot register handler ${JSON.stringify(name)}: the name ${problem}`,
    );
  });

  it('explains an unknown agent with the known ones', () => {
    const registry = new HandlerRegistry([stub('webhook-a'), stub('noop'), stub('http.check')]);
    expect(registry.unknownAgentMessage('foo')).toBe(
      'no handler named "foo"; known agents: http.check, noop, webhook-a',
    );
  });

  it('says when nothing is registered', () => {
    expect(new HandlerRegistry().unknownAgentMessage('foo')).toBe(
      'no handler named "foo"; no agents are registered',
    );
  });

  it('caps the listed names and the echoed name', () => {
    const names = Array.from({ length: 25 }, (_, i) => `agent-${String(i).padStart(2, '0')}`);
    const registry = new HandlerRegistry(names.map(stub));
    const message = registry.unknownAgentMessage(`x${'y'.repeat(1000)}`);
    expect(message).toContain('agent-00, agent-01');
    expect(message).toContain('agent-19 and 5 more');
    expect(message).not.toContain('agent-20');
    expect(message.length).toBeLessThan(600);
  });
});
