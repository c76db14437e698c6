import type { KubeConfig } from '@kubernetes/client-node';
import { afterEach } from 'vitest';
import { type Config, loadConfig } from '../../src/config/config.ts';
import type { RunEvents } from '../../src/controller/agentrun-reconciler.ts';
import type { Handler } from '../../src/handlers/handler.ts';
import { createOperator, type Operator } from '../../src/operator.ts';
import { createLogger, type Logger, type LogLevel, silentLogger } from '../../src/util/log.ts';

const running = new Set<Operator>();

afterEach(async () => {
  await Promise.all([...running].map((op) => op.stop()));
  running.clear();
});

export interface TestOperatorOptions {
  readonly kubeConfig: KubeConfig;
  readonly namespace: string;
  readonly handlers?: readonly Handler[];
  readonly env?: Record<string, string>;
  readonly events?: RunEvents;
  /** Where the operator logs (capturingLogger() to assert on it); silent by default. */
  readonly logger?: Logger;
}

/**
 * Starts the real operator in this process, watching only `namespace`, with test-friendly
 * timings; it is stopped after the test.
 */
export async function startOperator(options: TestOperatorOptions): Promise<Operator> {
  const config: Config = loadConfig({
    WATCH_NAMESPACE: options.namespace,
    HEALTH_PROBE_BIND_ADDRESS: '127.0.0.1:0',
    RETRY_BACKOFF_BASE_MS: '100',
    RETRY_BACKOFF_MAX_MS: '1000',
    SHUTDOWN_GRACE_SECONDS: '2',
    FINALIZER_AFTER_MS: '200',
    LOG_LEVEL: 'silent',
    // Tests that need them turn these on (with their own database / port).
    APPLYLENS_AGENT_AUDIT_ENABLED: 'false',
    METRICS_BIND_ADDRESS: '0',
    ...options.env,
  });
  const operator = await createOperator({
    config,
    // TEST_OPERATOR_LOG=debug shows the operator's logs when a test needs explaining.
    logger:
      options.logger ??
      (process.env['TEST_OPERATOR_LOG']
        ? createLogger(process.env['TEST_OPERATOR_LOG'] as LogLevel)
        : silentLogger()),
    kubeConfig: options.kubeConfig,
    ...(options.handlers ? { handlers: options.handlers } : {}),
    ...(options.events ? { events: options.events } : {}),
  });
  running.add(operator);
  await operator.start();
  return operator;
}
