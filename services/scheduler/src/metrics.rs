//! The scheduler's metrics.

use aloft_telemetry::ops::Metric;

pub static FIRES: Metric = Metric::counter(
    "aloft_scheduler_fires_total",
    "Scheduled executions requested by this scheduler.",
    &[],
);
pub static LEADER: Metric = Metric::gauge(
    "aloft_scheduler_leader",
    "1 while this scheduler leads (owns aloft.schedules), else 0.",
    &[],
);
pub static ACTIVE_SCHEDULES: Metric = Metric::gauge(
    "aloft_scheduler_active_schedules",
    "Launch plan versions with an active schedule.",
    &[],
);

pub fn register() {
    for metric in [&FIRES, &LEADER, &ACTIVE_SCHEDULES] {
        metric.register();
    }
}
