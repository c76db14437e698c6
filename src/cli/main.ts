#!/usr/bin/env node
import { flushCompileCache } from 'node:module';
import { ConfigError, loadConfig } from '../config/config.ts';
import { createLogger } from '../util/log.ts';
import { OPERATOR_NAME, OPERATOR_VERSION } from '../version.ts';
import { auditCommand } from './audit-command.ts';
import { processIo, reportError } from './command.ts';
import { migrateCommand } from './migrate-command.ts';
import { execWithV8Sizing } from './v8-sizing.ts';

const usage = `Usage: ${OPERATOR_NAME} <command> [flags]

Commands:
  run        run the operator (configuration: environment variables or --flags, see docs/configuration.md)
  migrate    apply, revert or show the audit log's schema migrations (up|down|status)
  audit      read the audit log: get <run-id>, ls [filters]
  version    print the version

Run '${OPERATOR_NAME} <command> --help' for a command's flags (docs/cli.md).
`;

async function run(argv: readonly string[]): Promise<number> {
  const config = loadConfig(process.env, argv);
  const logger = createLogger(config.LOG_LEVEL);
  // Loaded here, not at the top: the other commands need neither Kubernetes nor the handlers.
  const { createOperator, LeadershipLostError } = await import('../operator.ts');
  const operator = await createOperator({ config, logger });
  const stop = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'shutting down');
    void operator.stop();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await operator.start();
  // Every module is loaded by now: writing the compile cache here (when the restart turned it on)
  // lets the next start use it even if this process never exits cleanly.
  flushCompileCache();
  try {
    await operator.done;
    return 0;
  } catch (error) {
    if (error instanceof LeadershipLostError) return 1;
    throw error;
  }
}

async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'version':
    case '--version':
      console.log(`${OPERATOR_NAME} ${OPERATOR_VERSION}`);
      return 0;
    case 'run':
      // Before anything starts: V8's flags can only be set when the process begins.
      execWithV8Sizing();
      return run(rest);
    case 'migrate':
      return migrateCommand(rest, processIo);
    case 'audit':
      return auditCommand(rest, processIo);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      console.log(usage);
      return 0;
    default:
      console.error(`${OPERATOR_NAME}: unknown command '${command}'\n\n${usage}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // Usage mistakes (exit 2) and runtime failures of migrate/audit (exit 1) are one line.
    const code = reportError(error, OPERATOR_NAME, processIo);
    if (code !== undefined) {
      process.exitCode = code;
      return;
    }
    // Configuration mistakes get a clean message, not a stack trace.
    if (error instanceof ConfigError) console.error(`${OPERATOR_NAME}: ${error.message}`);
    else console.error(error);
    process.exitCode = 1;
  },
);
