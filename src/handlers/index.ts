// Public surface of the handlers module; the package entry point re-exports from here.

export type { DefinitionOptions, DefinitionVerdict } from './agent-definitions.ts';
export { judgeDefinition } from './agent-definitions.ts';
export type {
  Handler,
  HandlerContext,
  HandlerDefinition,
  InvalidParams,
  JsonObject,
  JsonValue,
  PlanInput,
  Prepared,
  PrepareInput,
} from './handler.ts';
export {
  defineHandler,
  HANDLER_NAME_MAX_LENGTH,
  HANDLER_NAME_PATTERN,
  handlerNameProblem,
  invalidParams,
  jsonObjectSchema,
  jsonValueSchema,
  MAX_INVALID_PARAMS_MESSAGE,
  parseParams,
} from './handler.ts';
export type { BuiltinHandlersOptions, HandlersConfig, WebhookConfig } from './handlers-config.ts';
export {
  agentDefinitionVetter,
  builtinHandlers,
  DEFAULT_WEBHOOK_TIMEOUT_MS,
  HandlersConfigError,
  loadHandlersConfig,
  parseHandlersConfig,
  summarizeHandlersConfig,
} from './handlers-config.ts';
export type { HttpCheckOptions, HttpCheckPlan, Resolver } from './http-check.ts';
export { HTTP_CHECK_NAME, httpCheckHandler } from './http-check.ts';
export type { NoopParams } from './noop.ts';
export { noopHandler } from './noop.ts';
export type { TargetVetter, TargetVetterOptions } from './outbound.ts';
export { createTargetVetter } from './outbound.ts';
export type { AgentResolver, Resolution } from './registry.ts';
export { HandlerRegistry } from './registry.ts';
export type { WebhookOptions, WebhookPlan, WebhookRequestBody } from './webhook.ts';
export { WEBHOOK_MAX_RESPONSE_BYTES, webhookHandler } from './webhook.ts';
