import { Writable } from 'node:stream';
import { createLogger, type Logger, type LogLevel } from '../../src/util/log.ts';

/** A real pino logger whose JSON lines are kept, parsed, for assertions about what was logged. */
export function capturingLogger(level: LogLevel = 'debug'): {
  logger: Logger;
  lines: Array<Record<string, unknown>>;
} {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      callback();
    },
  });
  return { logger: createLogger(level, stream), lines };
}
