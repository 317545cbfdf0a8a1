-- The notifier's tables (made by aloft-store's migrations 4 and 6 in databases older than this one, hence IF
-- NOT EXISTS). Rules and executions are derived from the log. Deliveries are created from it (one
-- row per finished execution, rule and recipient, under a deterministic id, in the transaction that stores
-- the offset) and then carry the delivery state that makes a restart neither re-send nor forget a message.
CREATE TABLE IF NOT EXISTS notifier_launch_plans (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    rules_json TEXT NOT NULL,
    PRIMARY KEY (project, domain, name, version)
);
CREATE TABLE IF NOT EXISTS notifier_defaults (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    rules_json TEXT NOT NULL,
    set_at BIGINT NOT NULL,
    PRIMARY KEY (project, domain)
);
CREATE TABLE IF NOT EXISTS notifier_executions (
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    name TEXT NOT NULL,
    launch_plan_json TEXT NOT NULL,
    override_json TEXT NOT NULL,
    requested_at BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (project, domain, name)
);
CREATE TABLE IF NOT EXISTS notifier_deliveries (
    delivery_id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    execution TEXT NOT NULL,
    event_id TEXT NOT NULL,
    rule_name TEXT NOT NULL,
    recipient TEXT NOT NULL,
    rule_json TEXT NOT NULL,
    context_json TEXT NOT NULL,
    -- pending, delivered or failed
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT,
    -- The trace the finished execution ran in, so the delivery's spans join it.
    traceparent TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS notifier_deliveries_due ON notifier_deliveries (state, next_attempt_at);
-- Every attempt, written with the delivery's new state. `published` marks the ones already on
-- aloft.deliveries (an outbox: an attempt is recorded even if the log is briefly unreachable).
CREATE TABLE IF NOT EXISTS notifier_attempts (
    delivery_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    event_json TEXT NOT NULL,
    published BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
CREATE INDEX IF NOT EXISTS notifier_attempts_unpublished ON notifier_attempts (published);
CREATE TABLE IF NOT EXISTS notifier_offsets (
    topic TEXT NOT NULL,
    log_partition BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    PRIMARY KEY (topic, log_partition)
);
