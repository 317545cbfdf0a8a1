//! The propeller's metrics (labels: outcome or result only).

use aloft_telemetry::ops::Metric;

pub static EVENTS_APPLIED: Metric = Metric::counter(
    "aloft_propeller_events_applied_total",
    "Events of owned partitions applied to the state (read back or acknowledged).",
    &[],
);
pub static DECISIONS_APPENDED: Metric = Metric::counter(
    "aloft_propeller_decisions_appended_total",
    "Decisions appended to aloft.executions.",
    &[],
);
pub static ATTEMPTS_STARTED: Metric = Metric::counter(
    "aloft_propeller_attempts_started_total",
    "Task attempts started by this propeller.",
    &[],
);
pub static ATTEMPTS_FINISHED: Metric = Metric::counter(
    "aloft_propeller_attempts_finished_total",
    "Task attempts finished, by outcome (succeeded, user, timeout, system, cancelled).",
    &["outcome"],
);
pub static PARTITIONS_OWNED: Metric = Metric::gauge(
    "aloft_propeller_partitions_owned",
    "Partitions of aloft.executions assigned to this propeller.",
    &[],
);
pub static PARTITIONS_ACTIVE: Metric = Metric::gauge(
    "aloft_propeller_partitions_active",
    "Owned partitions caught up and claimed (deciding).",
    &[],
);

pub static CACHE_LOOKUPS: Metric = Metric::counter(
    "aloft_propeller_cache_lookups_total",
    "Catalog lookups of cached tasks, by result (hit, miss, failure).",
    &["result"],
);

pub static LAG: Metric = Metric::gauge(
    "aloft_propeller_lag_records",
    "Records on this propeller's partitions not folded yet (consumer lag, refreshed every 5 s).",
    &[],
);

pub static ATTEMPTS_QUEUED: Metric = Metric::gauge(
    "aloft_propeller_attempts_queued",
    "Attempts waiting in the tenants' queues for an executor slot on this propeller.",
    &[],
);

pub static TENANT_QUEUED: Metric = Metric::gauge(
    "aloft_propeller_tenant_queued_attempts",
    "Attempts waiting for a slot on this propeller, by tenant (project/domain).",
    &["tenant"],
);
pub static TENANT_RUNNING: Metric = Metric::gauge(
    "aloft_propeller_tenant_running_attempts",
    "Attempts running on this propeller, by tenant.",
    &["tenant"],
);
pub static TENANT_WAIT_SECONDS: Metric = Metric::counter(
    "aloft_propeller_tenant_wait_seconds_total",
    "Seconds attempts waited for a slot before starting, summed by tenant.",
    &["tenant"],
);

pub static QUEUE_WAIT: Metric = Metric::histogram(
    "aloft_propeller_attempt_queue_wait_seconds",
    "Seconds an attempt waited in its tenant's queue for a slot (and its pools' tokens), by tenant.",
    &["tenant"],
);

pub fn register() {
    for metric in [
        &EVENTS_APPLIED,
        &DECISIONS_APPENDED,
        &ATTEMPTS_STARTED,
        &ATTEMPTS_FINISHED,
        &PARTITIONS_OWNED,
        &PARTITIONS_ACTIVE,
        &CACHE_LOOKUPS,
        &LAG,
        &ATTEMPTS_QUEUED,
        &TENANT_QUEUED,
        &TENANT_RUNNING,
        &TENANT_WAIT_SECONDS,
        &QUEUE_WAIT,
    ] {
        metric.register();
    }
}
