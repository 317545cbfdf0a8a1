//! The notifier's metrics (labels: channel and outcome only).

use aloft_telemetry::ops::{Metric, MetricKind};

pub const DELIVERIES_CREATED: Metric = Metric {
    name: "aloft_notifier_deliveries_created_total",
    kind: MetricKind::Counter,
    help: "Deliveries created from finished executions (one per matching rule and recipient).",
};
pub const ATTEMPTS: Metric = Metric {
    name: "aloft_notifier_attempts_total",
    kind: MetricKind::Counter,
    help: "Delivery attempts, by channel and outcome (delivered, retry, gave_up).",
};
pub const DELIVERY_LAG: Metric = Metric {
    name: "aloft_notifier_delivery_lag_seconds_sum",
    kind: MetricKind::Counter,
    help: "Sum of seconds from an execution's end to the delivery of its notification, by channel.",
};
pub const EVENTS_PROJECTED: Metric = Metric {
    name: "aloft_notifier_events_projected_total",
    kind: MetricKind::Counter,
    help: "Log events the notifier read, by topic (registry, executions).",
};

pub fn register() {
    for metric in [DELIVERIES_CREATED, ATTEMPTS, DELIVERY_LAG, EVENTS_PROJECTED] {
        metric.register();
    }
}
