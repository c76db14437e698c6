// Public surface of the agentrun-operator package: build your own operator binary with custom
// handlers (see docs/library.md).

export type {
  AgentDefinition,
  AgentDefinitionSpec,
  AgentDefinitionStatus,
} from './api/agentdefinition.ts';
export {
  DEFINITION_KIND,
  DEFINITION_PLURAL,
  DefinitionReason,
  parseAgentDefinition,
} from './api/agentdefinition.ts';
export type {
  AgentRun,
  AgentRunSpec,
  AgentRunStatus,
  Phase,
} from './api/agentrun.ts';
export { API_VERSION, GROUP, KIND, PLURAL, parseAgentRun, VERSION } from './api/agentrun.ts';
export type { Condition } from './api/conditions.ts';
export { ConditionType } from './api/conditions.ts';
export { Reason } from './api/reasons.ts';
export * from './audit/index.ts';
export type { Config } from './config/config.ts';
export { ConfigError, loadConfig } from './config/config.ts';
export type { RunEvents } from './controller/agentrun-reconciler.ts';
export * from './handlers/index.ts';
export type { ClusterAccess, LoadOptions } from './kube/cluster-access.ts';
export { loadClusterAccess } from './kube/cluster-access.ts';
// Operator is a type only: createOperator is the one way to build one.
export type { Operator, OperatorOptions } from './operator.ts';
export { createOperator, LeadershipLostError } from './operator.ts';
export type { Logger } from './util/log.ts';
export { createLogger, silentLogger } from './util/log.ts';
export { OPERATOR_NAME, OPERATOR_VERSION } from './version.ts';
