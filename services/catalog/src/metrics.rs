//! The catalog's metrics (labels: result or topic only).

use aloft_telemetry::ops::Metric;

pub static LOOKUPS: Metric = Metric::counter(
    "aloft_catalog_lookups_total",
    "Cache lookups answered, by result (hit, reserved, held, miss).",
    &["result"],
);
pub static PUTS: Metric = Metric::counter(
    "aloft_catalog_puts_total",
    "Results offered to the cache, by result (stored, kept_existing).",
    &["result"],
);
pub static EVENTS_PROJECTED: Metric = Metric::counter(
    "aloft_catalog_events_projected_total",
    "Log events the catalog projected, by topic (registry, executions).",
    &["topic"],
);

pub fn register() {
    for metric in [&LOOKUPS, &PUTS, &EVENTS_PROJECTED] {
        metric.register();
    }
}
