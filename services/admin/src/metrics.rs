//! Admin's metrics (labels: topic, phase or tenant only).

use aloft_telemetry::ops::Metric;

pub static EVENTS_PROJECTED: Metric = Metric::counter(
    "aloft_admin_events_projected_total",
    "Log records applied to the read models, by topic.",
    &["topic"],
);
pub static PROJECTION_BATCHES: Metric = Metric::counter(
    "aloft_admin_projection_batches_total",
    "Projection transactions committed (each stores its log offsets with its rows).",
    &[],
);

pub static EXECUTION_PHASES: Metric = Metric::counter(
    "aloft_admin_execution_phase_changes_total",
    "Execution phase changes projected (QUEUED on request, RUNNING, and each terminal phase).",
    &["phase"],
);

pub static RATE_LIMITED: Metric = Metric::counter(
    "aloft_admin_rate_limited_total",
    "API calls refused with RESOURCE_EXHAUSTED because the tenant was over its rate, by tenant.",
    &["tenant"],
);

pub fn register() {
    RATE_LIMITED.register();
    EVENTS_PROJECTED.register();
    PROJECTION_BATCHES.register();
    EXECUTION_PHASES.register();
}
