// An operator binary with one custom agent next to the built-ins. Run it from the repository root
// with: node examples/custom-operator/main.ts (it reads the same environment as `make run`).
// docs/library.md shows this file as it looks in your own project, where it imports from
// 'agentrun-operator' instead of the relative path.
import { createOperator } from '../../src/index.ts';
import { diskReport } from './disk-report.ts';

const operator = await createOperator({ handlers: [diskReport] });
process.once('SIGTERM', () => void operator.stop());
process.once('SIGINT', () => void operator.stop());
await operator.start();
await operator.done;
