//! Metrics of the shared projector loop, labelled by projection (read_models, catalog, notifier) and topic.

use aloft_telemetry::ops::Metric;

pub static PROJECTION_LAG: Metric = Metric::gauge(
    "aloft_projection_lag_records",
    "Records on the log not yet applied by a projection, summed over the topic's partitions (refreshed every 5 s).",
    &["projection", "topic"],
);
pub static APPLY_LATENCY: Metric = Metric::gauge(
    "aloft_projection_apply_latency_seconds",
    "For the last batch a projection committed: seconds from its newest event's occurrence to the commit.",
    &["projection"],
);

pub fn register() {
    for metric in [&PROJECTION_LAG, &APPLY_LATENCY] {
        metric.register();
    }
}
