//! Admin's metrics (labels: topic, phase or tenant only).

use aloft_telemetry::ops::{Metric, MetricKind};

pub const EVENTS_PROJECTED: Metric = Metric {
    name: "aloft_admin_events_projected_total",
    kind: MetricKind::Counter,
    help: "Log records applied to the read models, by topic.",
};
pub const PROJECTION_BATCHES: Metric = Metric {
    name: "aloft_admin_projection_batches_total",
    kind: MetricKind::Counter,
    help: "Projection transactions committed (each stores its log offsets with its rows).",
};

pub const EXECUTION_PHASES: Metric = Metric {
    name: "aloft_admin_execution_phase_changes_total",
    kind: MetricKind::Counter,
    help: "Execution phase changes projected (QUEUED on request, RUNNING, and each terminal phase).",
};

pub const RATE_LIMITED: Metric = Metric {
    name: "aloft_admin_rate_limited_total",
    kind: MetricKind::Counter,
    help: "API calls refused with RESOURCE_EXHAUSTED because the tenant was over its rate, by tenant.",
};

pub fn register() {
    RATE_LIMITED.register();
    EVENTS_PROJECTED.register();
    PROJECTION_BATCHES.register();
    EXECUTION_PHASES.register();
}
