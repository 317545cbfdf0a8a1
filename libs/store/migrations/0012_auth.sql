-- Authentication and audit: API keys (only a digest of each secret), role bindings made through the API,
-- the audit trail (every event an authenticated caller caused, by whom), and who launched each execution
-- and caused each history event.
CREATE TABLE api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at BIGINT
)
;
CREATE INDEX api_keys_by_project ON api_keys (project, created_at)
;
CREATE TABLE role_bindings (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    member TEXT NOT NULL,
    role TEXT NOT NULL,
    bound_at BIGINT NOT NULL,
    PRIMARY KEY (project, domain, member, role)
)
;
CREATE TABLE audit_events (
    topic TEXT NOT NULL,
    log_partition BIGINT NOT NULL,
    log_offset BIGINT NOT NULL,
    log_index BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    subject TEXT NOT NULL,
    display_name TEXT NOT NULL,
    via TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (topic, log_partition, log_offset, log_index)
)
;
CREATE INDEX audit_events_by_project ON audit_events (project, occurred_at)
;
ALTER TABLE executions ADD COLUMN launched_by_json TEXT
;
ALTER TABLE execution_events ADD COLUMN principal_json TEXT
