//! The scheduler's metrics.

use aloft_telemetry::ops::{Metric, MetricKind};

pub const FIRES: Metric = Metric {
    name: "aloft_scheduler_fires_total",
    kind: MetricKind::Counter,
    help: "Scheduled executions requested by this scheduler.",
};
pub const LEADER: Metric = Metric {
    name: "aloft_scheduler_leader",
    kind: MetricKind::Gauge,
    help: "1 while this scheduler leads (owns aloft.schedules), else 0.",
};
pub const ACTIVE_SCHEDULES: Metric = Metric {
    name: "aloft_scheduler_active_schedules",
    kind: MetricKind::Gauge,
    help: "Launch plan versions with an active schedule.",
};

pub fn register() {
    for metric in [FIRES, LEADER, ACTIVE_SCHEDULES] {
        metric.register();
    }
}
