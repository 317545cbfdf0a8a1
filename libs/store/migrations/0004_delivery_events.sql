-- Until the notifier owned its migrations, this migration also made the notifier's tables; they are its own
-- now (services/notifier/migrations).
-- Admin's read model of aloft.deliveries, shown in `aloft history`.
CREATE TABLE delivery_events (
    delivery_id TEXT NOT NULL,
    attempt BIGINT NOT NULL,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    execution TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    summary TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
CREATE INDEX delivery_events_by_execution ON delivery_events (project, domain, execution);
