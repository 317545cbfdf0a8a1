//! Metrics of the shared projector loop, labelled by projection (read_models, catalog, notifier) and topic.

use aloft_telemetry::ops::{Metric, MetricKind};

pub const PROJECTION_LAG: Metric = Metric {
    name: "aloft_projection_lag_records",
    kind: MetricKind::Gauge,
    help: "Records on the log not yet applied by a projection, summed over the topic's partitions (refreshed every 5 s).",
};
pub const APPLY_LATENCY: Metric = Metric {
    name: "aloft_projection_apply_latency_seconds",
    kind: MetricKind::Gauge,
    help:
        "For the last batch a projection committed: seconds from its newest event's occurrence to the commit.",
};

pub fn register() {
    for metric in [PROJECTION_LAG, APPLY_LATENCY] {
        metric.register();
    }
}
