//! The catalog: memoized task results (lookups, reservations so equal concurrent runs execute once,
//! puts, evictions) and the lineage of every artifact, behind a gRPC API.
//!
//! It owns its tables (cache entries, evictions, artifacts, lineage edges; see `store`, with its own migrations) and
//! fills them from `aloft.executions` and evictions on `aloft.registry`, so they can be dropped and rebuilt
//! by replaying the log. It decides nothing about executions: the propeller asks, and records what the cache
//! did on the log.

pub mod api;
pub mod guard;
pub mod metrics;
pub mod projector;
pub mod store;

use std::sync::Arc;

use aloft_eventlog::{EventLog, Topics};
use aloft_proto::v1::catalog_service_server::CatalogServiceServer;
use aloft_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct CatalogOptions {
    pub topics: Topics,
    /// Serves /healthz, /readyz and /metrics here when set.
    pub ops_listen: Option<std::net::SocketAddr>,
    /// Who may call (as admin's); `None`: authentication is off.
    pub auth: Option<aloft_auth::AuthConfig>,
    /// TLS on the listener (reloading its certificate); `None`: plain TCP.
    pub tls: Option<aloft_runtime::tls::Tls>,
}

impl CatalogOptions {
    pub fn new(topics: Topics) -> CatalogOptions {
        CatalogOptions {
            topics,
            ops_listen: None,
            auth: None,
            tls: None,
        }
    }
}

/// Serves the API on `listener` and runs the projector until `shutdown` is cancelled; the API stops
/// first, then the projector (which commits with every batch).
pub async fn run(
    options: CatalogOptions,
    store: Store,
    log: Arc<dyn EventLog>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    metrics::register();
    store.migrate(&store::MIGRATIONS).await?;
    let (progress_tx, progress_rx) = watch::channel(projector::Progress::new());
    let serving = Arc::new(std::sync::atomic::AtomicBool::new(false));
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
    let projector_shutdown = CancellationToken::new();
    let projector = tokio::spawn(projector::run(
        store.clone(),
        Arc::clone(&log),
        options.topics.clone(),
        progress_tx,
        projector_shutdown.clone(),
    ));
    let access = match &options.auth {
        Some(config) if config.enabled() => aloft_auth::access::AccessControl::new(config, store.clone())
            .map_err(|e| anyhow::anyhow!("--auth-config: {e}"))?,
        _ => aloft_auth::access::AccessControl::disabled(),
    };
    let api = guard::Guarded::new(
        api::CatalogApi {
            store,
            log,
            topics: options.topics,
        },
        Arc::new(access),
    );
    let address = listener.local_addr()?;
    let options_tls = options.tls.clone();
    tracing::info!(%address, "catalog API listening");
    serving.store(true, std::sync::atomic::Ordering::SeqCst);
    let served = tonic::transport::Server::builder()
        .add_service(CatalogServiceServer::new(api).max_decoding_message_size(64 * 1024 * 1024))
        .serve_with_incoming_shutdown(
            aloft_runtime::tls::incoming(listener, options_tls),
            shutdown.cancelled(),
        )
        .await;
    projector_shutdown.cancel();
    let _ = projector.await;
    served?;
    Ok(())
}
