import { z } from 'zod';
import { EVENT_REASONS } from '../api/reasons.ts';

/**
 * The operator's configuration: 12-factor environment variables, each overridable by a
 * command-line flag of the same name in kebab case (MAX_CONCURRENT_RUNS <-> --max-concurrent-runs).
 * Parsed once by zod into a frozen object; every default is documented here and in
 * docs/configuration.md.
 */

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

/** Whole decimal numbers only: "0x10", "1e3" and " " are mistakes, not numbers. */
const int = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, 'expected a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min).max(max));

/** "host:port", ":port" (all interfaces) or "0" (disabled), as controller-runtime takes them. */
const bindAddress = z
  .string()
  .regex(/^(0|(\[[0-9a-fA-F:.]+\]|[^:\s]*):\d{1,5})$/, 'expected host:port, :port or 0')
  .transform((value) => {
    if (value === '0') return undefined;
    const i = value.lastIndexOf(':');
    const host = value.slice(0, i).replace(/^\[|\]$/g, '');
    return { host: host === '' ? undefined : host, port: Number(value.slice(i + 1)) };
  })
  .refine(
    (address) => address === undefined || address.port <= 65535,
    'port must be at most 65535',
  );
export type BindAddress = { host: string | undefined; port: number };

/** A comma-separated list of Event reasons, each one the operator records. */
const eventReasons = z.string().transform((value, ctx) => {
  const reasons = value
    .split(',')
    .map((reason) => reason.trim())
    .filter((reason) => reason !== '');
  const known: ReadonlySet<string> = new Set(EVENT_REASONS);
  const unknown = reasons.find((reason) => !known.has(reason));
  if (unknown === undefined) return reasons;
  ctx.issues.push({
    code: 'custom',
    input: value,
    message: `"${unknown}" is not a reason of the operator's Events; expected some of ${EVENT_REASONS.join(', ')}`,
  });
  return z.NEVER;
});

const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

export const configSchema = z.object({
  /** kubeconfig file(s), ':'-separated; empty: $KUBECONFIG, ~/.kube/config, then in-cluster. */
  KUBECONFIG: z.string().default(''),
  /**
   * HTTP/2 to an https API server that offers it (one multiplexed connection, as client-go):
   * less CPU per request (docs/architecture.md); false keeps a pool of HTTP/1.1 connections.
   */
  KUBE_API_HTTP2: bool.default(true),
  /** Namespace to watch; empty watches all namespaces. */
  WATCH_NAMESPACE: z.string().default(''),
  /** Handler executions in flight at once, across all runs. */
  MAX_CONCURRENT_RUNS: int(1, 10_000).default(10),
  /** Reconciles in flight at once (they only decide and write status; handlers run apart). */
  RECONCILE_WORKERS: int(1, 1_000).default(16),
  /** Only the holder of a coordination.k8s.io Lease reconciles. On in the shipped Deployment. */
  LEADER_ELECT: bool.default(false),
  LEADER_ELECTION_ID: z.string().min(1).default('agentrun-operator.agents.applylens.io'),
  /** Namespace of the Lease; empty: POD_NAMESPACE, the in-cluster namespace, else "default". */
  LEADER_ELECTION_NAMESPACE: z.string().default(''),
  /**
   * The pod's own namespace, which the shipped Deployment sets from the downward API; read here
   * so that every setting goes through this schema. Only the Lease's namespace falls back to it.
   */
  POD_NAMESPACE: z.string().default(''),
  LEASE_DURATION_SECONDS: int(1, 3600).default(15),
  RENEW_DEADLINE_SECONDS: int(1, 3600).default(10),
  RETRY_PERIOD_SECONDS: int(1, 3600).default(2),
  /** /healthz and /readyz. */
  HEALTH_PROBE_BIND_ADDRESS: bindAddress.prefault(':8081'),
  LOG_LEVEL: logLevel.default('info'),
  /** Optional YAML/JSON file with webhook agents and the http.check allow-list. */
  HANDLERS_CONFIG: z.string().default(''),
  /** On SIGTERM, how long in-flight handlers may run on before they are aborted. */
  SHUTDOWN_GRACE_SECONDS: int(0, 3600).default(20),
  /** First retry delay after a failed attempt; doubles per retry up to the max (batch/v1 Job's). */
  RETRY_BACKOFF_BASE_MS: int(0, 86_400_000).default(10_000),
  RETRY_BACKOFF_MAX_MS: int(0, 86_400_000).default(360_000),
  /** How often every cached AgentRun is reconciled again even without changes. */
  RESYNC_PERIOD_SECONDS: int(0, 86_400).default(600),
  /** Handlers that run this long get the finalizer that makes deletion wait for them. */
  FINALIZER_AFTER_MS: int(0, 3_600_000).default(1_000),
  /**
   * A run still waiting for a handler slot this long after its creation gets one status write:
   * phase Pending, reason Queued. 0: never (runs waiting for a slot then have no status).
   */
  QUEUED_STATUS_AFTER_MS: int(0, 3_600_000).default(2_000),
  /**
   * Watch AgentDefinitions (agents registered with kubectl, docs/agents.md); their CRD must be
   * installed. false: only built-in and config-file agents, and the CRD may be absent.
   */
  AGENT_DEFINITIONS_ENABLED: bool.default(true),
  /**
   * A run naming no known agent waits this long after its creation (Pending/AgentNotFound) for an
   * AgentDefinition of that name, applied with it, before it ends Failed/UnknownAgent. 0: at once.
   */
  UNKNOWN_AGENT_GRACE_SECONDS: int(0, 3_600).default(10),
  /**
   * Run AgentDefinitions of kind job, each attempt a batch/v1 Job in the run's namespace (needs
   * AGENT_DEFINITIONS_ENABLED and the jobs and pods rules of deploy/rbac). false: such runs end
   * Failed/ExecutorUnavailable, and the operator neither watches nor creates Jobs.
   */
  JOB_AGENTS_ENABLED: bool.default(true),
  /** Job attempts followed at once (their work runs in the cluster, not in MAX_CONCURRENT_RUNS). */
  MAX_CONCURRENT_JOB_RUNS: int(1, 100_000).default(500),

  /**
   * Event reasons the operator does not record, comma-separated (as Kyverno's --omitEvents):
   * "Started" leaves one Event per run, its outcome, and saves one of the four API writes the
   * operator makes per run. The status and the audit row keep everything an Event says. Empty: all Events.
   */
  EVENTS_OMIT: eventReasons.default([]),

  /** The audit log in PostgreSQL (docs/compatibility.md). Off: no connection, no finalizer. */
  APPLYLENS_AGENT_AUDIT_ENABLED: bool.default(true),
  /** postgres://user:password@host:5432/db; required while auditing is on. Never logged. */
  DATABASE_URL: z.string().default(''),
  /** Apply pending migrations at start-up (under an advisory lock, so replicas do not race). */
  AUDIT_MIGRATE: bool.default(true),
  /** Rows older than this are deleted, in small batches, by the leader; 0 keeps them forever. */
  AUDIT_RETENTION_DAYS: int(0, 36_500).default(90),
  /** How long a finished run's status write waits for its audit row, while PostgreSQL is healthy. */
  AUDIT_SYNC_WAIT_MS: int(0, 60_000).default(250),
  /**
   * How long the finalizer keeps a finished run whose audit row cannot be written; then it is
   * released, with a Warning Event and agent_audit_lost_total, so a dead database cannot pin
   * resources forever.
   */
  AUDIT_FINALIZER_DEADLINE_SECONDS: int(0, 30 * 86_400).default(3_600),

  /** Metrics toggle (docs/compatibility.md): off turns /metrics off and recording into no-ops. */
  APPLYLENS_AGENT_METRICS_ENABLED: bool.default(true),
  /** /metrics; "0" turns the endpoint off. */
  METRICS_BIND_ADDRESS: bindAddress.prefault(':8080'),
  /** HTTPS with TokenReview + SubjectAccessReview, like controller-runtime's secure serving. */
  METRICS_SECURE: bool.default(false),
  /** tls.crt and tls.key for secure metrics; empty: a self-signed certificate. */
  METRICS_CERT_DIR: z.string().default(''),
});

export type Config = Readonly<z.infer<typeof configSchema>>;
export type ConfigInput = Partial<Record<keyof z.input<typeof configSchema>, string>>;

/** Turns `--max-concurrent-runs=5`, `--max-concurrent-runs 5` and `--leader-elect` into keys. */
export function flagsToEnv(argv: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    const match = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(arg);
    // Only the part before "=": the value may be a secret.
    if (!match?.[1]) throw new ConfigError([`unexpected argument "${arg.split('=')[0]}"`]);
    const key = match[1].toUpperCase().replaceAll('-', '_');
    if (match[2] !== undefined) {
      out[key] = match[2];
    } else if (argv[i + 1] !== undefined && !argv[i + 1]?.startsWith('--')) {
      out[key] = argv[++i] ?? '';
    } else {
      out[key] = 'true';
    }
  }
  return out;
}

/** The operator needs a database while auditing is on (checked when the operator is built). */
export function requireDatabase(config: Config): void {
  if (config.APPLYLENS_AGENT_AUDIT_ENABLED && !config.DATABASE_URL) {
    throw new ConfigError([
      'DATABASE_URL is required while APPLYLENS_AGENT_AUDIT_ENABLED is true (or set it to false to run without the audit log)',
    ]);
  }
}

export class ConfigError extends Error {
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

const KNOWN = new Set(Object.keys(configSchema.shape));

/**
 * Reads the configuration from the environment and flags (flags win). Unknown flags are errors;
 * unrelated environment variables are ignored. Values are never echoed in errors, since some
 * settings (later DATABASE_URL) carry secrets.
 */
export function loadConfig(
  env: Readonly<Record<string, string | undefined>> = process.env,
  argv: readonly string[] = [],
): Config {
  const flags = flagsToEnv(argv);
  const unknown = Object.keys(flags).filter((k) => !KNOWN.has(k));
  if (unknown.length > 0) {
    throw new ConfigError(
      unknown.map((k) => `unknown flag --${k.toLowerCase().replaceAll('_', '-')}`),
    );
  }
  const input: Record<string, string> = {};
  for (const key of KNOWN) {
    const value = flags[key] ?? env[key];
    if (value !== undefined && value !== '') input[key] = value;
  }
  const result = configSchema.safeParse(input);
  if (!result.success) {
    throw new ConfigError(
      result.error.issues.map((issue) => `${issue.path.join('.') || '(config)'}: ${issue.message}`),
    );
  }
  const config = result.data;
  if (config.DATABASE_URL && !/^postgres(ql)?:\/\//.test(config.DATABASE_URL)) {
    throw new ConfigError(['DATABASE_URL must be a postgres:// or postgresql:// URL']);
  }
  if (config.RENEW_DEADLINE_SECONDS >= config.LEASE_DURATION_SECONDS) {
    throw new ConfigError([
      'RENEW_DEADLINE_SECONDS must be shorter than LEASE_DURATION_SECONDS, or two leaders could overlap',
    ]);
  }
  return Object.freeze(config);
}
