#!/usr/bin/env node
import { ConfigError, loadConfig } from '../config/config.ts';
import { createLogger } from '../log.ts';
import { createOperator, LeadershipLostError } from '../operator.ts';
import { OPERATOR_NAME, OPERATOR_VERSION } from '../version.ts';

const usage = `Usage: ${OPERATOR_NAME} <command> [flags]

Commands:
  run        run the operator (configuration: environment variables or --flags, see docs/configuration.md)
  version    print the version
`;

async function run(argv: readonly string[]): Promise<number> {
  const config = loadConfig(process.env, argv);
  const logger = createLogger(config.LOG_LEVEL);
  const operator = await createOperator({ config, logger });
  const stop = (signal: NodeJS.Signals) => {
    logger.info({ signal }, 'shutting down');
    void operator.stop();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  await operator.start();
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
      return run(rest);
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
    // Configuration mistakes get a clean message, not a stack trace.
    if (error instanceof ConfigError) console.error(`${OPERATOR_NAME}: ${error.message}`);
    else console.error(error);
    process.exitCode = 1;
  },
);
