// The audit log's public surface (docs/audit.md).
export type { AuditRecord, AuditStatus, SanitisedRecord, SanitiseResult } from './audit-record.ts';
export {
  AUDIT_ARTIFACTS_MAX_BYTES,
  AUDIT_STATUSES,
  COLUMN_MAX_LENGTH,
  dedupeByRunId,
  mergeRecords,
  sanitiseRecord,
  supersedes,
} from './audit-record.ts';
export type { AuditEntry, AuditSummary, RecentRunsQuery } from './audit-store.ts';
export { AuditStore } from './audit-store.ts';
export type { AuditMetrics, AuditSink, AuditWriterOptions } from './audit-writer.ts';
export {
  AUDIT_QUEUE_MAX_BYTES,
  AUDIT_QUEUE_MAX_ROWS,
  AuditWriter,
  noAuditMetrics,
} from './audit-writer.ts';
export type { Auditor, AuditorSettings, RunFinish, RunStart } from './auditor.ts';
export {
  AgentAuditor,
  createAuditor,
  getAuditor,
  NoopAuditor,
  setAuditor,
} from './auditor.ts';
export type { MigrateCommand, MigrationResult } from './migrate.ts';
export { MIGRATIONS_DIR, migrate } from './migrate.ts';
export { AUDIT_POOL_MAX, createAuditPool, describeDatabase } from './pool.ts';
export { RetentionJob } from './retention.ts';
