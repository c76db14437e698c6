import { z } from 'zod';
import { AUDIT_STATUSES } from '../audit/audit-record.ts';
import { RECENT_RUNS_MAX_LIMIT } from '../audit/audit-store.ts';
import { escapeChar, replaceUnsafe } from './table.ts';

/**
 * A small, strict command-line parser for the CLI's subcommands, in the manner of kubectl
 * (pflag): `--flag value`, `--flag=value`, `-f value`, `-fvalue`, `-f=value`, boolean flags
 * without a value, flags and arguments in any order, `--` ends the flags. Unknown flags, a flag
 * given twice, a missing value and too many or too few arguments are UsageErrors (exit code 2).
 * Values are validated afterwards with zod (parseFlags). No value is ever echoed for a flag
 * marked `secret`.
 */

export interface FlagSpec {
  /** Long name, without the dashes: `agent` for `--agent`. */
  readonly name: string;
  /** One letter: `o` for `-o`. */
  readonly short?: string;
  /** Boolean flags take no value (`--yes`, or `--yes=true|false`). */
  readonly boolean?: boolean;
  /** Placeholder in the help text: `--agent AGENT`. */
  readonly value?: string;
  readonly help: string;
  /** Never echo the value (a DATABASE_URL carries a password). */
  readonly secret?: boolean;
}

export interface CommandSpec {
  /** How the command is called, for messages: `agentrun-operator audit ls`. */
  readonly path: string;
  /** The arguments after the path, for the usage line: `[flags]`, `<run-id> [flags]`. */
  readonly synopsis: string;
  readonly description: string;
  readonly flags: readonly FlagSpec[];
  /** Names of the positional arguments, for messages; `optional` ones may be left out. */
  readonly args?: ReadonlyArray<{ readonly name: string; readonly optional?: boolean }>;
  /** Extra help text (environment, examples), printed after the flags. */
  readonly more?: string;
}

export interface ParsedArgs {
  /** Long flag name -> raw value (`'true'`/`'false'` for boolean flags). */
  readonly flags: Readonly<Record<string, string>>;
  readonly args: readonly string[];
  /** `-h`/`--help` was given: print the help and stop (nothing else is checked). */
  readonly help: boolean;
}

/** A mistake in how the command was called: exit code 2, with the command's usage. */
export class UsageError extends Error {
  readonly command: CommandSpec | undefined;
  constructor(message: string, command?: CommandSpec) {
    super(message);
    this.name = 'UsageError';
    this.command = command;
  }
}

/** A failure while doing the work (database unreachable, run not found): exit code 1. */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliError';
  }
}

const HELP: FlagSpec = { name: 'help', short: 'h', boolean: true, help: 'show this help' };

export function parseArgs(spec: CommandSpec, argv: readonly string[]): ParsedArgs {
  const end = argv.indexOf('--');
  const flagPart = end === -1 ? argv : argv.slice(0, end);
  if (flagPart.includes('--help') || flagPart.includes('-h')) {
    return { flags: {}, args: [], help: true };
  }
  const flags: Record<string, string> = {};
  const args: string[] = [];
  const set = (flag: FlagSpec, value: string): void => {
    if (flags[flag.name] !== undefined) {
      throw new UsageError(`flag --${flag.name} given more than once`, spec);
    }
    flags[flag.name] = value;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (i === end) {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (arg === '-' || !arg.startsWith('-')) {
      args.push(arg);
      continue;
    }
    let flag: FlagSpec | undefined;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq === -1 ? undefined : arg.slice(eq + 1);
      flag = spec.flags.find((f) => f.name === name);
      // Only the part before "=": the value may be a secret.
      if (!flag || name === '') throw new UsageError(`unknown flag --${name}`, spec);
    } else {
      const letter = arg.slice(1, 2);
      flag = spec.flags.find((f) => f.short === letter);
      if (!flag) throw new UsageError(`unknown flag -${letter}`, spec);
      if (arg.length > 2) inline = arg.slice(arg[2] === '=' ? 3 : 2);
    }
    if (flag.boolean) {
      if (inline === undefined) set(flag, 'true');
      else if (inline === 'true' || inline === 'false') set(flag, inline);
      else throw new UsageError(`flag --${flag.name} takes no value (or =true / =false)`, spec);
      continue;
    }
    if (inline === undefined) {
      // Like pflag, the next word is the value whatever it looks like ("--limit -1" is a bad
      // limit, not a missing one).
      if (i + 1 >= argv.length || i + 1 === end) {
        throw new UsageError(`flag --${flag.name} needs a value`, spec);
      }
      inline = argv[++i] as string;
    }
    set(flag, inline);
  }
  const declared = spec.args ?? [];
  const required = declared.filter((a) => !a.optional).length;
  if (args.length > declared.length) {
    const extra = args[declared.length] as string;
    throw new UsageError(`unexpected argument "${printable(extra)}"`, spec);
  }
  if (args.length < required) {
    throw new UsageError(`missing ${declared[args.length]?.name ?? 'argument'}`, spec);
  }
  return { flags, args, help: false };
}

/**
 * Validates raw flag values with a zod object schema keyed by long flag names; the first problem
 * becomes a one-line UsageError naming the flag (and its value, unless the flag is secret).
 */
export function parseFlags<S extends z.ZodType>(
  spec: CommandSpec,
  schema: S,
  flags: Readonly<Record<string, string>>,
): z.output<S> {
  const result = schema.safeParse(flags);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const name = String(issue?.path[0] ?? '');
  const flag = spec.flags.find((f) => f.name === name);
  const raw = flags[name];
  const shown = flag?.secret || raw === undefined ? '' : ` "${printable(raw)}"`;
  throw new UsageError(`invalid --${name}${shown}: ${issue?.message ?? 'invalid value'}`, spec);
}

/** The usage line and a pointer to the help, printed under a UsageError. */
export function shortUsage(spec: CommandSpec): string {
  return `Usage: ${spec.path} ${spec.synopsis}\nRun '${spec.path} --help' for more information.`;
}

/** The full help text of a command. */
export function formatHelp(spec: CommandSpec): string {
  const flags = [...spec.flags, HELP].map((f) => {
    const names = `${f.short ? `-${f.short}, ` : '    '}--${f.name}${f.value ? ` ${f.value}` : ''}`;
    return [names, f.help] as const;
  });
  const width = Math.max(...flags.map(([names]) => names.length));
  const lines = [
    spec.description,
    '',
    'Usage:',
    `  ${spec.path} ${spec.synopsis}`,
    '',
    'Flags:',
    ...flags.map(([names, help]) => `  ${names.padEnd(width)}   ${help}`),
  ];
  if (spec.more) lines.push('', spec.more.trimEnd());
  return `${lines.join('\n')}\n`;
}

/** Control characters would garble (or drive) the terminal; show them escaped. */
function printable(value: string): string {
  const cut = value.length > 80 ? `${value.slice(0, 80)}...` : value;
  return replaceUnsafe(cut, escapeChar);
}

// ---- values -------------------------------------------------------------------------------

const nonEmpty = z.string().min(1, 'must not be empty');

export const outputValue = z.enum(['table', 'json'], {
  error: 'must be table or json',
});
export type OutputFormat = z.output<typeof outputValue>;

/** 1..10000 (RECENT_RUNS_MAX_LIMIT), whole decimal numbers only. */
export const limitValue = z
  .string()
  .regex(/^\d+$/, `must be a whole number from 1 to ${RECENT_RUNS_MAX_LIMIT}`)
  .transform(Number)
  .pipe(
    z
      .number()
      .int()
      .min(1, `must be a whole number from 1 to ${RECENT_RUNS_MAX_LIMIT}`)
      .max(RECENT_RUNS_MAX_LIMIT, `must be a whole number from 1 to ${RECENT_RUNS_MAX_LIMIT}`),
  );

export const statusValue = z.enum(AUDIT_STATUSES, {
  error: `must be one of ${AUDIT_STATUSES.join(', ')}`,
});

/** `--since`: a duration back from now (`90m`, `24h`, `7d`, `1h30m`) or an RFC 3339 time. */
export const sinceValue = z.string().transform((value, ctx) => {
  const since = parseSince(value, new Date());
  if (since === undefined) {
    ctx.addIssue({
      code: 'custom',
      message:
        'expected a duration such as 30m, 24h or 7d, or an RFC 3339 time such as 2025-01-31T00:00:00Z',
    });
    return z.NEVER;
  }
  return since;
});

/** Flags every listing takes (audit ls and kubectl agentrun history). */
export const listFlagValues = {
  agent: nonEmpty.optional(),
  status: statusValue.optional(),
  since: sinceValue.optional(),
  limit: limitValue.optional(),
  output: outputValue.default('table'),
};

export const nonEmptyValue = nonEmpty;

const UNIT_MS: Readonly<Record<string, number>> = {
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?([Zz]|[+-](\d{2}):(\d{2}))$/;

/**
 * The instant `value` names: a positive duration before `now` (units s, m, h, d, w, combinable
 * as in `1h30m`) or an RFC 3339 date-time with a zone. Undefined when it is neither (including
 * impossible dates such as February 30, which Date would roll over).
 */
export function parseSince(value: string, now: Date): Date | undefined {
  if (/^(\d+[smhdw])+$/.test(value)) {
    let ms = 0;
    for (const [, amount, unit] of value.matchAll(/(\d+)([smhdw])/g)) {
      ms += Number(amount) * (UNIT_MS[unit as string] ?? 0);
    }
    if (!(ms > 0) || !Number.isSafeInteger(ms)) return undefined;
    const since = new Date(now.getTime() - ms);
    return Number.isNaN(since.getTime()) ? undefined : since;
  }
  const m = RFC3339.exec(value);
  if (!m) return undefined;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  if (m[9] !== undefined && (Number(m[9]) > 23 || Number(m[10]) > 59)) return undefined;
  const date = new Date(value.toUpperCase().replace(' ', 'T'));
  return Number.isNaN(date.getTime()) ? undefined : date;
}
