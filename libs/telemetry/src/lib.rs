//! Telemetry, a leaf crate: logs (`init_tracing`), distributed traces exported over OTLP (`trace`), and
//! metrics with the operations endpoints that expose them (`ops`: Prometheus `/metrics`, `/healthz`,
//! `/readyz`). It depends on no other Aloft crate; flags, config files, shutdown and secrets are
//! `aloft-runtime`'s.

pub mod ops;
pub mod trace;

use tracing_subscriber::EnvFilter;

/// Logs to stderr at `default_level` (e.g. "info" for services, "warn" for the CLI); `RUST_LOG` overrides it.
pub fn init_tracing(service: &str, default_level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},sqlx=warn,librdkafka=warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: log files and collectors get plain `key=value` fields.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
    tracing::debug!(service, "tracing initialised");
    if let Err(error) = trace::init_otlp(service) {
        // A collector address that cannot be used is bad config: stop, naming the setting.
        tracing::error!(%error, "cannot export spans");
        std::process::exit(2);
    }
}
