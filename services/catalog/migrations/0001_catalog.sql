-- The catalog's tables (made by aloft-store's migration 3 in databases older than this one, hence IF NOT
-- EXISTS): memoized results, their reservations, evictions, and artifact lineage. Everything
-- but the reservations (leases, not history) is derived from the log and rebuilt by replaying it.
CREATE TABLE IF NOT EXISTS cache_entries (
    cache_key TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    task_name TEXT NOT NULL,
    cache_version TEXT NOT NULL,
    outputs_json TEXT NOT NULL,
    execution TEXT NOT NULL,
    node TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    task_version TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- Which of several results for one key is kept, whatever order they arrive in: the earliest plain
    -- result (-created_at), beaten by any overwrite, the latest overwrite winning (+created_at).
    precedence BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_entries_by_task ON cache_entries (project, domain, task_name, cache_version);
CREATE TABLE IF NOT EXISTS cache_reservations (
    cache_key TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS cache_evictions (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    task_name TEXT NOT NULL,
    cache_version TEXT NOT NULL,
    cache_key TEXT NOT NULL,
    evicted_at BIGINT NOT NULL,
    PRIMARY KEY (project, domain, task_name, cache_version, cache_key, evicted_at)
);
CREATE TABLE IF NOT EXISTS lineage_executions (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    workflow_json TEXT NOT NULL,
    phase TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    -- The admission rule's per-execution sequence (aloft_core::state::admit), as in admin's projection.
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (project, domain, name)
);
CREATE TABLE IF NOT EXISTS artifacts (
    artifact_id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    execution TEXT NOT NULL,
    node TEXT NOT NULL,
    output TEXT NOT NULL,
    value_json TEXT NOT NULL,
    type_text TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    task TEXT NOT NULL,
    cached_from TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS artifacts_by_node ON artifacts (project, domain, execution, node);
CREATE INDEX IF NOT EXISTS artifacts_by_cached_from ON artifacts (cached_from);
CREATE TABLE IF NOT EXISTS artifact_consumers (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    execution TEXT NOT NULL,
    node TEXT NOT NULL,
    input_name TEXT NOT NULL,
    artifact_id TEXT NOT NULL,
    PRIMARY KEY (project, domain, execution, node, input_name)
);
CREATE INDEX IF NOT EXISTS artifact_consumers_by_artifact ON artifact_consumers (artifact_id);
CREATE TABLE IF NOT EXISTS catalog_offsets (
    topic TEXT NOT NULL,
    log_partition BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    PRIMARY KEY (topic, log_partition)
);
