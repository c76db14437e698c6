-- agent_audit_log: the durable record of every AgentRun, one row per run (run_id = the
-- AgentRun's uid). The seed's 13 columns keep their names and meaning; namespace, name,
-- reason, attempts and updated_at are the operator's additions. Written only by idempotent
-- upserts (src/audit/audit-store.ts); docs/audit.md describes every column and index.
CREATE TABLE agent_audit_log (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id      varchar(128)     NOT NULL,
  namespace   varchar(63)      NOT NULL,
  name        varchar(253)     NOT NULL,
  agent       varchar(128)     NOT NULL,
  objective   varchar(512)     NOT NULL,
  status      varchar(32)      NOT NULL,
  reason      varchar(128),
  attempts    integer          NOT NULL DEFAULT 0,
  started_at  timestamptz,
  finished_at timestamptz,
  duration_ms double precision,
  plan        jsonb,
  artifacts   jsonb,
  error       varchar(2048),
  user_email  varchar(320),
  dry_run     boolean          NOT NULL DEFAULT true,
  created_at  timestamptz      NOT NULL DEFAULT now(),
  updated_at  timestamptz      NOT NULL DEFAULT now(),
  CONSTRAINT agent_audit_log_run_id_key UNIQUE (run_id),
  CONSTRAINT agent_audit_log_status_check
    CHECK (status IN ('running', 'succeeded', 'failed', 'canceled')),
  CONSTRAINT agent_audit_log_attempts_check CHECK (attempts >= 0)
);

-- Each index serves named queries (docs/audit.md); none is a prefix of another. A btree is read
-- in both directions, so (started_at) also serves ORDER BY started_at DESC.
--   lookup by run id:                    agent_audit_log_run_id_key (the UNIQUE constraint)
--   recent runs, runs since, last 7 days: ix_agent_audit_log_started_at
CREATE INDEX ix_agent_audit_log_started_at
  ON agent_audit_log (started_at);
--   an agent's recent runs (any status), per-agent windows
CREATE INDEX ix_agent_audit_log_agent_started_at
  ON agent_audit_log (agent, started_at);
--   failed runs for an agent: only failures, so it stays small and needs no status filter
CREATE INDEX ix_agent_audit_log_failed_agent_started_at
  ON agent_audit_log (agent, started_at) WHERE status = 'failed';
--   user activity (the seed's suggested ix_audit_user_started)
CREATE INDEX ix_agent_audit_log_user_email_started_at
  ON agent_audit_log (user_email, started_at);
--   history of one AgentRun name (kubectl agentrun history NAME), also after it was deleted
CREATE INDEX ix_agent_audit_log_namespace_name_started_at
  ON agent_audit_log (namespace, name, started_at);

COMMENT ON TABLE agent_audit_log IS
  'One row per AgentRun (agents.applylens.io), written by agentrun-operator; see docs/audit.md';
COMMENT ON COLUMN agent_audit_log.run_id IS 'The AgentRun''s metadata.uid';
COMMENT ON COLUMN agent_audit_log.status IS
  'running, then one of succeeded, failed, canceled (final)';
COMMENT ON COLUMN agent_audit_log.reason IS
  'Reason of the Succeeded condition: Succeeded, Failed, TimedOut, Canceled, UnknownAgent, ...';
COMMENT ON COLUMN agent_audit_log.attempts IS 'Attempts started (1 + retries)';
COMMENT ON COLUMN agent_audit_log.started_at IS
  'When the first attempt started; for a run that never started, when it ended';
COMMENT ON COLUMN agent_audit_log.duration_ms IS 'finished_at - started_at in milliseconds';
COMMENT ON COLUMN agent_audit_log.plan IS 'The handler''s plan (JSON, at most 256 KiB)';
COMMENT ON COLUMN agent_audit_log.artifacts IS
  'What the handler returned (JSON, at most 256 KiB, else {"_truncated": true, ...})';
COMMENT ON COLUMN agent_audit_log.error IS 'Why the run failed, cut to 2048 characters';
COMMENT ON COLUMN agent_audit_log.user_email IS 'spec.requestedBy: who asked for the run';
