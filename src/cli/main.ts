#!/usr/bin/env node
import { OPERATOR_NAME, OPERATOR_VERSION } from '../version.ts';

const usage = `Usage: ${OPERATOR_NAME} <command>

Commands:
  run        run the operator against the current kubeconfig
  version    print the version
`;

function main(argv: readonly string[]): number {
  const [command] = argv;
  switch (command) {
    case 'version':
    case '--version':
      console.log(`${OPERATOR_NAME} ${OPERATOR_VERSION}`);
      return 0;
    case 'run':
      // The controller arrives with the AgentRun issue; until then say so plainly.
      console.error(`${OPERATOR_NAME}: the controller is not implemented yet`);
      return 1;
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

process.exitCode = main(process.argv.slice(2));
