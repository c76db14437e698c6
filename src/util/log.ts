import { pino } from 'pino';

/** The structured JSON logger every module receives; child loggers carry runId, agent, namespace/name. */
export type Logger = pino.Logger;

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

/**
 * A pino logger writing JSON lines to stdout. Anything named like a credential is redacted, so a
 * DATABASE_URL or token that slips into a log object never reaches the output.
 */
export function createLogger(
  level: LogLevel = 'info',
  destination?: pino.DestinationStream,
): Logger {
  return pino(
    {
      level,
      base: { component: 'agentrun-operator' },
      redact: {
        paths: [
          'password',
          '*.password',
          'token',
          '*.token',
          'databaseUrl',
          '*.databaseUrl',
          'authorization',
          '*.authorization',
        ],
        censor: '[redacted]',
      },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

/** A logger that drops everything, for tests and library callers that bring no logger. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
