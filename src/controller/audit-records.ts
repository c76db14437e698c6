import type { AgentRun, AgentRunStatus } from '../api/agentrun.ts';
import { ConditionType, findCondition } from '../api/conditions.ts';
import type { AuditRecord, AuditStatus } from '../audit/audit-record.ts';

/**
 * The audit row of a run in a given status. `artifacts` is the handler's full output when the
 * controller has it (the status keeps a capped copy only); re-audits after a restart fall back to
 * the status copy.
 */
export function auditRecord(
  run: AgentRun,
  status: AgentRunStatus,
  artifacts?: unknown,
): AuditRecord {
  const finishedAt = status.finishedAt ? new Date(status.finishedAt) : null;
  return {
    runId: run.metadata.uid,
    namespace: run.metadata.namespace,
    name: run.metadata.name,
    agent: run.spec.agent,
    objective: run.spec.objective,
    status: auditStatus(status),
    reason: findCondition(status.conditions, ConditionType.Succeeded)?.reason ?? null,
    attempts: status.attempts ?? 0,
    startedAt: status.startedAt ? new Date(status.startedAt) : null,
    finishedAt,
    durationMs: finishedAt ? (status.durationMs ?? null) : null,
    plan: status.plan ?? null,
    artifacts: artifacts ?? status.artifacts ?? null,
    error: status.error ?? null,
    userEmail: run.spec.requestedBy ?? null,
    dryRun: run.spec.dryRun,
  };
}

function auditStatus(status: AgentRunStatus): AuditStatus {
  switch (status.phase) {
    case 'Succeeded':
      return 'succeeded';
    case 'Failed':
      return 'failed';
    case 'Canceled':
      return 'canceled';
    default:
      return 'running';
  }
}
