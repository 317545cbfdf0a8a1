//! The notifier's metrics (labels: channel and outcome only).

use aloft_telemetry::ops::Metric;

pub static DELIVERIES_CREATED: Metric = Metric::counter(
    "aloft_notifier_deliveries_created_total",
    "Deliveries created from finished executions (one per matching rule and recipient).",
    &[],
);
pub static ATTEMPTS: Metric = Metric::counter(
    "aloft_notifier_attempts_total",
    "Delivery attempts, by channel and outcome (delivered, retry, gave_up).",
    &["channel", "outcome"],
);
pub static DELIVERY_LAG: Metric = Metric::histogram(
    "aloft_notifier_delivery_lag_seconds",
    "Seconds from an execution's end to the delivery of its notification, by channel.",
    &["channel"],
);
pub static EVENTS_PROJECTED: Metric = Metric::counter(
    "aloft_notifier_events_projected_total",
    "Log events the notifier read, by topic (registry, executions).",
    &["topic"],
);

pub fn register() {
    for metric in [&DELIVERIES_CREATED, &ATTEMPTS, &DELIVERY_LAG, &EVENTS_PROJECTED] {
        metric.register();
    }
}
