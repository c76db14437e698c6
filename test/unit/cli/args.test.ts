import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  type CommandSpec,
  formatHelp,
  limitValue,
  listFlagValues,
  parseArgs,
  parseFlags,
  parseSince,
  shortUsage,
  statusValue,
  UsageError,
} from '../../../src/cli/args.ts';

const spec: CommandSpec = {
  path: 'tool list',
  synopsis: '[NAME] [flags]',
  description: 'List things.',
  args: [{ name: 'NAME', optional: true }],
  flags: [
    { name: 'agent', value: 'AGENT', help: 'an agent' },
    { name: 'limit', value: 'N', help: 'how many' },
    { name: 'output', short: 'o', value: 'FORMAT', help: 'table or json' },
    { name: 'namespace', short: 'n', value: 'NS', help: 'a namespace' },
    { name: 'all-namespaces', short: 'A', boolean: true, help: 'every namespace' },
    { name: 'database-url', value: 'URL', help: 'the database', secret: true },
  ],
};

const required: CommandSpec = { ...spec, path: 'tool get', args: [{ name: '<run-id>' }] };

function usageError(fn: () => unknown): UsageError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    return error as UsageError;
  }
  throw new Error('expected a UsageError');
}

describe('parseArgs', () => {
  it('takes --flag value, --flag=value, -f value, -fvalue and -f=value', () => {
    expect(parseArgs(spec, ['--agent', 'noop', '--limit=5', '-o', 'json', '-nteam-a'])).toEqual({
      flags: { agent: 'noop', limit: '5', output: 'json', namespace: 'team-a' },
      args: [],
      help: false,
    });
    expect(parseArgs(spec, ['-o=json']).flags).toEqual({ output: 'json' });
  });

  it('takes flags and arguments in any order, and everything after -- as arguments', () => {
    expect(parseArgs(spec, ['-A', 'hello', '--agent', 'x'])).toEqual({
      flags: { 'all-namespaces': 'true', agent: 'x' },
      args: ['hello'],
      help: false,
    });
    expect(parseArgs(spec, ['--', '--weird-name']).args).toEqual(['--weird-name']);
  });

  it('boolean flags take no value, or =true / =false', () => {
    expect(parseArgs(spec, ['--all-namespaces=false']).flags).toEqual({
      'all-namespaces': 'false',
    });
    expect(usageError(() => parseArgs(spec, ['--all-namespaces=yes'])).message).toBe(
      'flag --all-namespaces takes no value (or =true / =false)',
    );
  });

  it('the next word is the value, whatever it looks like (as pflag does)', () => {
    expect(parseArgs(spec, ['--limit', '-1']).flags).toEqual({ limit: '-1' });
  });

  it('rejects unknown flags, naming only the part before "="', () => {
    const error = usageError(() => parseArgs(spec, ['--password=hunter2']));
    expect(error.message).toBe('unknown flag --password');
    expect(error.command).toBe(spec);
    expect(usageError(() => parseArgs(spec, ['-x'])).message).toBe('unknown flag -x');
    expect(usageError(() => parseArgs(spec, ['--='])).message).toBe('unknown flag --');
  });

  it('rejects a flag without its value, a flag given twice, and a stray argument', () => {
    expect(usageError(() => parseArgs(spec, ['--agent'])).message).toBe(
      'flag --agent needs a value',
    );
    expect(usageError(() => parseArgs(spec, ['--agent', '--', 'x'])).message).toBe(
      'flag --agent needs a value',
    );
    expect(usageError(() => parseArgs(spec, ['-o', 'json', '--output=table'])).message).toBe(
      'flag --output given more than once',
    );
    expect(usageError(() => parseArgs(spec, ['a', 'b'])).message).toBe('unexpected argument "b"');
  });

  it('requires required arguments', () => {
    expect(usageError(() => parseArgs(required, ['-o', 'json'])).message).toBe('missing <run-id>');
    expect(parseArgs(required, ['abc']).args).toEqual(['abc']);
  });

  it('-h or --help wins over everything else, except after --', () => {
    expect(parseArgs(required, ['--bogus', '-h']).help).toBe(true);
    expect(parseArgs(required, ['--help']).help).toBe(true);
    expect(parseArgs(spec, ['--', '--help'])).toEqual({
      flags: {},
      args: ['--help'],
      help: false,
    });
  });

  it('escapes control characters it quotes', () => {
    expect(usageError(() => parseArgs(spec, ['a', 'b\u001b[2J'])).message).toBe(
      'unexpected argument "b\\u001b[2J"',
    );
  });
});

describe('parseFlags', () => {
  const schema = z.object({
    ...listFlagValues,
    'database-url': z.string().min(20, 'too short'),
  });

  it('returns typed values with defaults', () => {
    const flags = parseFlags(spec, schema, {
      limit: '25',
      status: 'failed',
      'database-url': 'postgres://x:y@host/db',
    });
    expect(flags).toEqual({
      limit: 25,
      status: 'failed',
      output: 'table',
      'database-url': 'postgres://x:y@host/db',
    });
  });

  it('names the flag and its value in a one-line error', () => {
    const error = usageError(() =>
      parseFlags(spec, schema, { limit: '0', 'database-url': 'postgres://x:y@host/db' }),
    );
    expect(error.message).toBe('invalid --limit "0": must be a whole number from 1 to 10000');
    expect(error.message).not.toContain('\n');
  });

  it('never echoes the value of a secret flag', () => {
    const error = usageError(() => parseFlags(spec, schema, { 'database-url': 'postgres://u:pw' }));
    expect(error.message).toBe('invalid --database-url: too short');
  });
});

describe('values', () => {
  it('limit: whole numbers from 1 to 10000', () => {
    expect(limitValue.parse('1')).toBe(1);
    expect(limitValue.parse('10000')).toBe(10_000);
    for (const bad of ['0', '10001', '-1', '1.5', '1e3', '0x10', ' 5', '', 'ten']) {
      expect(limitValue.safeParse(bad).success, bad).toBe(false);
    }
  });

  it('status: the four audit statuses', () => {
    for (const status of ['running', 'succeeded', 'failed', 'canceled']) {
      expect(statusValue.parse(status)).toBe(status);
    }
    const result = statusValue.safeParse('Failed');
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.message).toBe(
      'must be one of running, succeeded, failed, canceled',
    );
  });

  it('output: table or json', () => {
    expect(z.object(listFlagValues).parse({}).output).toBe('table');
    expect(z.object(listFlagValues).safeParse({ output: 'yaml' }).success).toBe(false);
  });
});

describe('parseSince', () => {
  const now = new Date('2025-03-10T12:00:00Z');

  it('durations count back from now: s, m, h, d, w, combined', () => {
    expect(parseSince('90s', now)?.toISOString()).toBe('2025-03-10T11:58:30.000Z');
    expect(parseSince('30m', now)?.toISOString()).toBe('2025-03-10T11:30:00.000Z');
    expect(parseSince('24h', now)?.toISOString()).toBe('2025-03-09T12:00:00.000Z');
    expect(parseSince('7d', now)?.toISOString()).toBe('2025-03-03T12:00:00.000Z');
    expect(parseSince('2w', now)?.toISOString()).toBe('2025-02-24T12:00:00.000Z');
    expect(parseSince('1h30m', now)?.toISOString()).toBe('2025-03-10T10:30:00.000Z');
  });

  it('RFC 3339 times with a zone', () => {
    expect(parseSince('2025-01-31T09:30:00Z', now)?.toISOString()).toBe('2025-01-31T09:30:00.000Z');
    expect(parseSince('2025-01-31T09:30:00.250+02:00', now)?.toISOString()).toBe(
      '2025-01-31T07:30:00.250Z',
    );
    expect(parseSince('2024-02-29t00:00:00z', now)?.toISOString()).toBe('2024-02-29T00:00:00.000Z');
  });

  it('refuses everything else, including impossible dates', () => {
    for (const bad of [
      '',
      '0h',
      '7',
      '7days',
      '-1h',
      '1.5h',
      'h',
      'yesterday',
      '2025-01-31',
      '2025-01-31T09:30:00',
      '2025-02-30T00:00:00Z',
      '2025-02-29T00:00:00Z',
      '2025-13-01T00:00:00Z',
      '2025-01-01T24:00:00Z',
      '2025-01-01T00:60:00Z',
      '2025-01-01T00:00:00+25:00',
      '99999999999999999999d',
    ]) {
      expect(parseSince(bad, now), bad).toBeUndefined();
    }
  });
});

describe('help', () => {
  it('lists every flag with its short form, value and help, plus -h', () => {
    const help = formatHelp(spec);
    expect(help).toContain('Usage:\n  tool list [NAME] [flags]');
    expect(help).toContain('  -o, --output FORMAT');
    expect(help).toContain('      --agent AGENT');
    expect(help).toContain('  -A, --all-namespaces');
    expect(help).toContain('  -h, --help');
  });

  it('shortUsage points at --help', () => {
    expect(shortUsage(spec)).toBe(
      "Usage: tool list [NAME] [flags]\nRun 'tool list --help' for more information.",
    );
  });
});
