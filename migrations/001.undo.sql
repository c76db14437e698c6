-- Drops the audit log with its indexes. This deletes every audit row: back the table up first
-- (pg_dump -t agent_audit_log) if the rows matter.
DROP TABLE IF EXISTS agent_audit_log;
