import { CliError, shortUsage, UsageError } from './args.ts';

/** Where a command reads its environment and writes its output (process.* in the binaries). */
export interface CliIo {
  readonly env: Readonly<Record<string, string | undefined>>;
  out(text: string): void;
  err(text: string): void;
}

let stdoutGuarded = false;

export const processIo: CliIo = {
  env: process.env,
  out: (text) => {
    if (!stdoutGuarded) {
      stdoutGuarded = true;
      // `... | head`: the reader went away. Stop quietly, as other command-line tools do, rather
      // than die of an unhandled EPIPE with a stack trace.
      process.stdout.on('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'EPIPE') process.exit();
        throw error;
      });
    }
    process.stdout.write(text);
  },
  err: (text) => {
    process.stderr.write(text);
  },
};

/** A group of subcommands (`audit get|ls`), for dispatch and help. */
export interface CommandGroup {
  readonly path: string;
  readonly description: string;
  readonly commands: ReadonlyArray<{
    readonly name: string;
    readonly summary: string;
    readonly run: (argv: readonly string[], io: CliIo) => Promise<number>;
  }>;
  readonly more?: string;
}

export function formatGroupHelp(group: CommandGroup): string {
  const width = Math.max(...group.commands.map((c) => c.name.length));
  const lines = [
    group.description,
    '',
    'Usage:',
    `  ${group.path} <command> [flags]`,
    '',
    'Commands:',
    ...group.commands.map((c) => `  ${c.name.padEnd(width)}   ${c.summary}`),
  ];
  if (group.more) lines.push('', group.more.trimEnd());
  lines.push('', `Run '${group.path} <command> --help' for a command's flags.`);
  return `${lines.join('\n')}\n`;
}

/** Runs the subcommand `argv[0]` of `group`; none, `--help` or `help` prints the group's help. */
export async function runGroup(
  group: CommandGroup,
  argv: readonly string[],
  io: CliIo,
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.out(formatGroupHelp(group));
    return 0;
  }
  const names = group.commands.map((c) => c.name).join(', ');
  const command = group.commands.find((c) => c.name === name);
  if (!command) {
    const shown = name.startsWith('-') ? name.split('=')[0] : name;
    throw new GroupUsageError(`unknown command "${shown}" (expected one of ${names})`, group);
  }
  return command.run(rest, io);
}

/** A usage mistake at the group level (no or an unknown subcommand). */
export class GroupUsageError extends UsageError {
  readonly group: CommandGroup;
  constructor(message: string, group: CommandGroup) {
    super(message);
    this.group = group;
  }
}

/**
 * The one place errors become output and exit codes: usage mistakes print one line plus the
 * usage and exit 2; runtime failures print one line and exit 1. `prefix` names the program
 * (`agentrun-operator audit ls`) in the message.
 */
export function reportError(error: unknown, program: string, io: CliIo): number | undefined {
  if (error instanceof GroupUsageError) {
    io.err(`${error.group.path}: ${error.message}\nRun '${error.group.path} --help' for usage.\n`);
    return 2;
  }
  if (error instanceof UsageError) {
    const where = error.command?.path ?? program;
    io.err(`${where}: ${error.message}\n${error.command ? `${shortUsage(error.command)}\n` : ''}`);
    return 2;
  }
  if (error instanceof CliError) {
    io.err(`${program}: ${error.message}\n`);
    return 1;
  }
  return undefined;
}

/**
 * Runs a binary's main function on process.argv and sets the exit code: 0, 1 or 2 as returned
 * or as reportError maps the error; anything unexpected is printed whole and exits 1.
 */
export function runMain(
  program: string,
  main: (argv: readonly string[], io: CliIo) => Promise<number>,
): void {
  main(process.argv.slice(2), processIo).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      const code = reportError(error, program, processIo);
      if (code === undefined) console.error(error);
      process.exitCode = code ?? 1;
    },
  );
}
