-- Read models of admin. Everything here is derived from the event log and can be rebuilt by replay.
-- Written in the SQL dialect Postgres and SQLite share: BIGINT and TEXT only, ON CONFLICT upserts.
CREATE TABLE log_offsets (
    topic TEXT NOT NULL,
    log_partition BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    PRIMARY KEY (topic, log_partition)
);
CREATE TABLE projects (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    domains_json TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    registry_offset BIGINT NOT NULL
);
CREATE TABLE tasks (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    registry_offset BIGINT NOT NULL,
    PRIMARY KEY (project, domain, name, version)
);
CREATE TABLE workflows (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    compiled_json TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    registry_offset BIGINT NOT NULL,
    PRIMARY KEY (project, domain, name, version)
);
CREATE TABLE launch_plans (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    workflow_version TEXT NOT NULL,
    default_inputs_json TEXT NOT NULL,
    fixed_inputs_json TEXT NOT NULL,
    registered_at BIGINT NOT NULL,
    registry_offset BIGINT NOT NULL,
    PRIMARY KEY (project, domain, name, version)
);
CREATE TABLE executions (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    request_id TEXT NOT NULL,
    workflow_name TEXT NOT NULL,
    workflow_version TEXT NOT NULL,
    launch_plan_name TEXT NOT NULL,
    launch_plan_version TEXT NOT NULL,
    phase TEXT NOT NULL,
    inputs_json TEXT NOT NULL,
    outputs_json TEXT NOT NULL,
    error TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    last_seq BIGINT NOT NULL,
    log_partition BIGINT NOT NULL,
    PRIMARY KEY (project, domain, name)
);
CREATE INDEX executions_by_created ON executions (project, domain, created_at);
CREATE TABLE node_executions (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    execution TEXT NOT NULL,
    node_index BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    task_name TEXT NOT NULL,
    task_version TEXT NOT NULL,
    phase TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    outputs_json TEXT NOT NULL,
    error TEXT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    PRIMARY KEY (project, domain, execution, node_index)
);
CREATE TABLE task_attempts (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    execution TEXT NOT NULL,
    node_index BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    phase TEXT NOT NULL,
    error_kind TEXT NOT NULL,
    error TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    PRIMARY KEY (project, domain, execution, node_index, attempt)
);
CREATE TABLE execution_events (
    log_partition BIGINT NOT NULL,
    log_offset BIGINT NOT NULL,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    execution TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq BIGINT NOT NULL,
    writer_epoch BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    PRIMARY KEY (log_partition, log_offset)
);
CREATE INDEX execution_events_by_execution ON execution_events (project, domain, execution, log_partition, log_offset);
