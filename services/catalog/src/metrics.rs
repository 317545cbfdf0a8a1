//! The catalog's metrics (labels: result or topic only).

use aloft_telemetry::ops::{Metric, MetricKind};

pub const LOOKUPS: Metric = Metric {
    name: "aloft_catalog_lookups_total",
    kind: MetricKind::Counter,
    help: "Cache lookups answered, by result (hit, reserved, held, miss).",
};
pub const PUTS: Metric = Metric {
    name: "aloft_catalog_puts_total",
    kind: MetricKind::Counter,
    help: "Results offered to the cache, by result (stored, kept_existing).",
};
pub const EVENTS_PROJECTED: Metric = Metric {
    name: "aloft_catalog_events_projected_total",
    kind: MetricKind::Counter,
    help: "Log events the catalog projected, by topic (registry, executions).",
};

pub fn register() {
    for metric in [LOOKUPS, PUTS, EVENTS_PROJECTED] {
        metric.register();
    }
}
