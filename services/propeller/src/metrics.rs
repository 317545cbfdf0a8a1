//! The propeller's metrics (labels: outcome or result only).

use aloft_telemetry::ops::{Metric, MetricKind};

pub const EVENTS_APPLIED: Metric = Metric {
    name: "aloft_propeller_events_applied_total",
    kind: MetricKind::Counter,
    help: "Events of owned partitions applied to the state (read back or acknowledged).",
};
pub const DECISIONS_APPENDED: Metric = Metric {
    name: "aloft_propeller_decisions_appended_total",
    kind: MetricKind::Counter,
    help: "Decisions appended to aloft.executions.",
};
pub const ATTEMPTS_STARTED: Metric = Metric {
    name: "aloft_propeller_attempts_started_total",
    kind: MetricKind::Counter,
    help: "Task attempts started by this propeller.",
};
pub const ATTEMPTS_FINISHED: Metric = Metric {
    name: "aloft_propeller_attempts_finished_total",
    kind: MetricKind::Counter,
    help: "Task attempts finished, by outcome (succeeded, user, timeout, system, cancelled).",
};
pub const PARTITIONS_OWNED: Metric = Metric {
    name: "aloft_propeller_partitions_owned",
    kind: MetricKind::Gauge,
    help: "Partitions of aloft.executions assigned to this propeller.",
};
pub const PARTITIONS_ACTIVE: Metric = Metric {
    name: "aloft_propeller_partitions_active",
    kind: MetricKind::Gauge,
    help: "Owned partitions caught up and claimed (deciding).",
};

pub const CACHE_LOOKUPS: Metric = Metric {
    name: "aloft_propeller_cache_lookups_total",
    kind: MetricKind::Counter,
    help: "Catalog lookups of cached tasks, by result (hit, miss, failure).",
};

pub const LAG: Metric = Metric {
    name: "aloft_propeller_lag_records",
    kind: MetricKind::Gauge,
    help: "Records on this propeller's partitions not folded yet (consumer lag, refreshed every 5 s).",
};

pub const ATTEMPTS_QUEUED: Metric = Metric {
    name: "aloft_propeller_attempts_queued",
    kind: MetricKind::Gauge,
    help: "Attempts waiting in the tenants' queues for an executor slot on this propeller.",
};

pub const TENANT_QUEUED: Metric = Metric {
    name: "aloft_propeller_tenant_queued_attempts",
    kind: MetricKind::Gauge,
    help: "Attempts waiting for a slot on this propeller, by tenant (project/domain).",
};
pub const TENANT_RUNNING: Metric = Metric {
    name: "aloft_propeller_tenant_running_attempts",
    kind: MetricKind::Gauge,
    help: "Attempts running on this propeller, by tenant.",
};
pub const TENANT_WAIT_SECONDS: Metric = Metric {
    name: "aloft_propeller_tenant_wait_seconds_total",
    kind: MetricKind::Counter,
    help: "Seconds attempts waited for a slot before starting, summed by tenant.",
};

pub fn register() {
    for metric in [
        EVENTS_APPLIED,
        DECISIONS_APPENDED,
        ATTEMPTS_STARTED,
        ATTEMPTS_FINISHED,
        PARTITIONS_OWNED,
        PARTITIONS_ACTIVE,
        CACHE_LOOKUPS,
        LAG,
        ATTEMPTS_QUEUED,
        TENANT_QUEUED,
        TENANT_RUNNING,
        TENANT_WAIT_SECONDS,
    ] {
        metric.register();
    }
}
