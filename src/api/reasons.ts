import type { Phase } from './agentrun.ts';

/**
 * Reasons of the `Succeeded` condition (and, mirrored, of Ready/Reconciling/Stalled). The
 * condition moves forward only: Unknown (Pending, Queued, Running, Retrying) to True (Succeeded)
 * or False (every other reason). Users, alerts and GitOps health checks key on these strings.
 */
export const Reason = {
  Pending: 'Pending',
  /** Not started yet: every handler slot (MAX_CONCURRENT_RUNS) is taken. Phase Pending. */
  Queued: 'Queued',
  /**
   * Not started yet: no agent of that name, neither built in nor an AgentDefinition in the run's
   * namespace, within UNKNOWN_AGENT_GRACE_SECONDS of the run's creation. Phase Pending; ends
   * UnknownAgent when the grace is over.
   */
  AgentNotFound: 'AgentNotFound',
  /**
   * An attempt of a Job agent is claimed and its Job created, but the agent's pod does not run
   * yet (not scheduled, pulling its image, or failing to): phase Pending, the pod's own reason
   * and message in the condition's message.
   */
  Starting: 'Starting',
  Running: 'Running',
  Retrying: 'Retrying',
  Succeeded: 'Succeeded',
  Failed: 'Failed',
  TimedOut: 'TimedOut',
  Canceled: 'Canceled',
  UnknownAgent: 'UnknownAgent',
  InvalidParams: 'InvalidParams',
  /** The run names an AgentDefinition whose spec cannot work (its Ready condition says why). */
  InvalidAgent: 'InvalidAgent',
  /** The run names an AgentDefinition of a kind this operator cannot run (job, for now). */
  ExecutorUnavailable: 'ExecutorUnavailable',
  BackoffLimitExceeded: 'BackoffLimitExceeded',
  Interrupted: 'Interrupted',
} as const;
export type Reason = (typeof Reason)[keyof typeof Reason];

/** Reasons of Events that are not a `Succeeded` condition reason. */
export const EventReason = {
  /** An attempt's handler started (the condition's reason is then Running). */
  Started: 'Started',
  /** A run's audit row was given up after AUDIT_FINALIZER_DEADLINE_SECONDS (Warning). */
  AuditLost: 'AuditLost',
} as const;

/**
 * The reasons of every Event the operator records on an AgentRun: each change of the
 * `Succeeded` condition's reason (Running as Started; Pending and Queued have none) and
 * AuditLost. EVENTS_OMIT names some of these.
 */
export const EVENT_REASONS = [
  EventReason.Started,
  ...Object.values(Reason).filter(
    (reason) => reason !== Reason.Running && reason !== Reason.Queued && reason !== Reason.Pending,
  ),
  EventReason.AuditLost,
] as const;

/** Reasons that end a run. */
export type TerminalReason = Exclude<
  Reason,
  'Pending' | 'Queued' | 'AgentNotFound' | 'Starting' | 'Running' | 'Retrying'
>;

/** The phase a terminal reason shows as. */
export function terminalPhase(reason: TerminalReason): Phase {
  if (reason === Reason.Succeeded) return 'Succeeded';
  if (reason === Reason.Canceled) return 'Canceled';
  return 'Failed';
}

/** Reasons of the `Audited` condition. */
export const AuditReason = {
  /** True: the terminal row is committed. */
  Recorded: 'Recorded',
  /** False: the row is queued (PostgreSQL is slow or down); a finalizer keeps the run meanwhile. */
  Pending: 'Pending',
  /** False: AUDIT_FINALIZER_DEADLINE_SECONDS passed without the row landing; the run was let go. */
  Abandoned: 'Abandoned',
} as const;
export type AuditReason = (typeof AuditReason)[keyof typeof AuditReason];
