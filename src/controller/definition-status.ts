// The status the operator writes on an AgentDefinition: which executor runs it and whether runs
// can use it (Ready), for the generation it judged. Pure: the verdict comes from
// judgeDefinition (src/handlers/agent-definitions.ts).
import {
  type AgentDefinition,
  type AgentDefinitionStatus,
  DefinitionReason,
  executorOf,
} from '../api/agentdefinition.ts';
import { type Condition, ConditionType, setCondition } from '../api/conditions.ts';
import type { DefinitionVerdict } from '../handlers/agent-definitions.ts';

/** The status `definition` should have given its verdict; lastTransitionTime moves only on flips. */
export function definitionStatus(
  definition: AgentDefinition,
  verdict: DefinitionVerdict,
  now: Date,
): AgentDefinitionStatus {
  const { generation } = definition.metadata;
  const ready: Omit<Condition, 'lastTransitionTime'> = {
    type: ConditionType.Ready,
    status: verdict.ready ? 'True' : 'False',
    reason: verdict.ready ? DefinitionReason.Accepted : verdict.reason,
    message: verdict.message,
    ...(generation !== undefined ? { observedGeneration: generation } : {}),
  };
  const status: AgentDefinitionStatus = {
    executor: executorOf(definition.spec),
    conditions: setCondition(definition.status?.conditions ?? [], ready, now),
  };
  if (generation !== undefined) status.observedGeneration = generation;
  return status;
}

/** Whether `desired` says anything the current status does not (so a write is due). */
export function statusDiffers(
  current: AgentDefinitionStatus | undefined,
  desired: AgentDefinitionStatus,
): boolean {
  return JSON.stringify(canonical(current ?? {})) !== JSON.stringify(canonical(desired));
}

function canonical(status: AgentDefinitionStatus): unknown {
  return {
    observedGeneration: status.observedGeneration,
    executor: status.executor,
    conditions: [...(status.conditions ?? [])]
      .sort((a, b) => a.type.localeCompare(b.type))
      .map(({ type, status: s, reason, message, observedGeneration, lastTransitionTime }) => ({
        type,
        status: s,
        reason,
        message,
        observedGeneration,
        lastTransitionTime,
      })),
  };
}
