//! The notifier: Slack, email (SMTP) and signed-webhook notifications when executions end in the phases
//! their rules name, each delivered once and surviving restarts.
//!
//! It owns the notifier tables (`store`, with its own migrations): rules from `aloft.registry` (launch plans,
//! project/domain defaults), the executions it follows on `aloft.executions`, and one delivery per finished
//! execution, rule and recipient under a deterministic id. Every attempt and its outcome is recorded with
//! the delivery's state and published to `aloft.deliveries`, where admin shows it in `aloft history`.
//! It decides nothing about executions.
//!
//! Run one active notifier per database: two would send the same pending delivery twice.

pub mod channels;
pub mod metrics;
pub mod outbox;
pub mod projector;
pub mod sender;
pub mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aloft_eventlog::{EventLog, Topics};
use aloft_store::Store;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

pub use sender::DeliveryPolicy;

#[derive(Clone)]
pub struct NotifierOptions {
    pub topics: Topics,
    /// Base URL of the console; messages link to `<console>/projects/<p>/domains/<d>/executions/<name>`.
    pub console_url: String,
    pub policy: DeliveryPolicy,
    /// Serves /healthz, /readyz and /metrics here when set.
    pub ops_listen: Option<std::net::SocketAddr>,
    /// TLS on the operations endpoints; `None`: plain HTTP.
    pub tls: Option<aloft_runtime::tls::Tls>,
}

impl NotifierOptions {
    pub fn new(topics: Topics) -> NotifierOptions {
        NotifierOptions {
            topics,
            console_url: "http://localhost:8088".to_string(),
            policy: DeliveryPolicy::default(),
            ops_listen: None,
            tls: None,
        }
    }
}

/// Reads the log, sends and publishes until `shutdown`: the projector stops first, then the sends in
/// flight finish and are recorded, then the last attempts are published.
pub async fn run(
    options: NotifierOptions,
    store: Store,
    log: Arc<dyn EventLog>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    metrics::register();
    store.migrate(&store::MIGRATIONS).await?;
    let (progress_tx, progress_rx) = watch::channel(projector::Progress::new());
    let serving = Arc::new(AtomicBool::new(false));
    if let Some(address) = options.ops_listen {
        let readiness: aloft_telemetry::ops::ReadinessCheck = Arc::new(aloft_store::projector::readiness(
            store.clone(),
            Arc::clone(&log),
            options.topics.executions.clone(),
            progress_rx,
            Arc::clone(&serving),
        ));
        aloft_runtime::tls::spawn_ops(
            address,
            options.tls.clone(),
            aloft_telemetry::ops::router(readiness),
            shutdown.clone(),
        )
        .await?;
    }
    let deliveries_ready = Arc::new(Notify::new());
    let attempts_recorded = Arc::new(Notify::new());
    let projector = tokio::spawn(projector::run(
        store.clone(),
        Arc::clone(&log),
        options.topics.clone(),
        options.console_url.clone(),
        Arc::clone(&deliveries_ready),
        progress_tx,
        shutdown.clone(),
    ));
    let outbox_shutdown = CancellationToken::new();
    let outbox = tokio::spawn(outbox::run(
        store.clone(),
        log,
        options.topics.clone(),
        Arc::clone(&attempts_recorded),
        outbox_shutdown.clone(),
    ));
    serving.store(true, Ordering::SeqCst);
    tracing::info!("notifier running");
    let sent = sender::run(
        store,
        options.policy,
        deliveries_ready,
        attempts_recorded,
        shutdown.clone(),
    )
    .await;
    let _ = projector.await;
    outbox_shutdown.cancel();
    let _ = outbox.await;
    sent
}
