//! Admin: Aloft's public API (gRPC, and the same API as REST/JSON under `/api/v1`), the web console
//! (`/console`) and the read models behind them. It projects every topic into Postgres or
//! SQLite and turns write requests into events on the log; it never runs or decides anything itself.

pub mod api;
pub mod console;
pub mod convert;
pub mod error;
pub mod guard;
pub mod history;
pub mod metrics;
pub mod projector;
pub mod rest;

use std::sync::Arc;
use std::time::Duration;

use aloft_eventlog::{EventLog, Topics};
use aloft_proto::v1::admin_service_server::AdminServiceServer;
use aloft_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct AdminOptions {
    pub topics: Topics,
    /// How long a write waits for its event to reach the read model before answering UNAVAILABLE.
    pub projection_wait: Duration,
    /// Creates this project (with the default domains) at start if missing: for `aloft dev`.
    pub bootstrap_project: Option<String>,
    /// Serves /healthz, /readyz and /metrics here when set.
    pub ops_listen: Option<std::net::SocketAddr>,
    /// API calls per tenant (project/domain); `None`: unlimited.
    pub tenant_rate_limit: Option<aloft_fairq::ratelimit::RateLimit>,
    /// Shares the rate limits between admin replicas through Redis; without it each replica counts alone.
    pub redis_url: Option<String>,
    /// Where task logs are read from: the store the propellers write to.
    pub blob_store: Option<aloft_blobstore::BlobStore>,
    /// Who may call (OIDC issuer, bindings, service tokens); `None`: authentication is off.
    pub auth: Option<aloft_auth::AuthConfig>,
    /// API calls per caller (across its projects); `None`: unlimited.
    pub principal_rate_limit: Option<aloft_fairq::ratelimit::RateLimit>,
    /// TLS on the listener (reloading its certificate); `None`: plain TCP.
    pub tls: Option<aloft_runtime::tls::Tls>,
    /// The catalog, for the REST routes of its lineage and cache RPCs.
    pub catalog_url: Option<String>,
}

impl AdminOptions {
    pub fn new(topics: Topics) -> AdminOptions {
        AdminOptions {
            topics,
            projection_wait: Duration::from_secs(10),
            bootstrap_project: None,
            ops_listen: None,
            tenant_rate_limit: None,
            redis_url: None,
            blob_store: None,
            auth: None,
            principal_rate_limit: None,
            tls: None,
            catalog_url: None,
        }
    }
}

/// Serves the API on `listener` and runs the projector until `shutdown` is cancelled. The API stops first,
/// then the projector (which commits with every batch).
pub async fn run(
    options: AdminOptions,
    store: Store,
    log: Arc<dyn EventLog>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    metrics::register();
    let (progress_tx, progress_rx) = watch::channel(projector::Progress::new());
    // Not ready before the bootstrap project exists and the API is about to serve.
    let serving = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(address) = options.ops_listen {
        let readiness: aloft_telemetry::ops::ReadinessCheck = Arc::new(aloft_store::projector::readiness(
            store.clone(),
            Arc::clone(&log),
            options.topics.executions.clone(),
            progress_rx.clone(),
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
    let rate_limiter = rate_limiter_of(options.tenant_rate_limit, &options).await?;
    let mut access = match &options.auth {
        Some(config) if config.enabled() => aloft_auth::access::AccessControl::new(config, store.clone())
            .map_err(|e| anyhow::anyhow!("--auth-config: {e}"))?,
        _ => aloft_auth::access::AccessControl::disabled(),
    };
    access.principal_rate_limiter = rate_limiter_of(options.principal_rate_limit, &options).await?;
    if let Some(oidc) = access.authenticator.oidc() {
        // A wrong issuer URL is found now, not by the first caller; an issuer that is down only warns (keys
        // are fetched again when a token needs them).
        match oidc.refresh().await {
            Ok(keys) => tracing::info!(issuer = %oidc.settings().issuer, keys, "OIDC issuer keys fetched"),
            Err(error) => {
                tracing::warn!(issuer = %oidc.settings().issuer, %error, "OIDC issuer keys not fetched yet")
            }
        }
    }
    let api = api::AdminApi {
        store,
        log,
        topics: options.topics.clone(),
        progress: progress_rx,
        projection_wait: options.projection_wait,
        rate_limiter,
        blobs: options.blob_store.clone(),
        access: Arc::new(access),
    };
    if let Some(project) = &options.bootstrap_project {
        bootstrap_project(&api, project).await?;
    }
    let address = listener.local_addr()?;
    let options_tls = options.tls.clone();
    tracing::info!(%address, "admin API listening");
    serving.store(true, std::sync::atomic::Ordering::SeqCst);
    // One listener answers gRPC, the REST API (/api/v1) and the console (/console).
    let guarded = guard::Guarded::new(api);
    let catalog = match &options.catalog_url {
        Some(url) => Some(
            aloft_catalog_client::CatalogClient::lazy(url)
                .map_err(|e| anyhow::anyhow!("--catalog {url}: {e}"))?
                .raw(),
        ),
        None => None,
    };
    let app = tonic::service::Routes::new(AdminServiceServer::new(guarded.clone()))
        .into_axum_router()
        .merge(rest::router(guarded, catalog)?)
        .merge(console::router());
    let served = tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(tonic::service::Routes::from(app))
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

/// A rate limiter at `limit`, shared through Redis when admin has a Redis URL.
async fn rate_limiter_of(
    limit: Option<aloft_fairq::ratelimit::RateLimit>,
    options: &AdminOptions,
) -> anyhow::Result<Option<Arc<dyn aloft_fairq::ratelimit::TenantRateLimiter>>> {
    Ok(match (limit, &options.redis_url) {
        (None, _) => None,
        (Some(limit), None) => Some(Arc::new(aloft_fairq::ratelimit::InProcessRateLimiter::new(limit))
            as Arc<dyn aloft_fairq::ratelimit::TenantRateLimiter>),
        (Some(limit), Some(url)) => Some(Arc::new(
            aloft_fairq::ratelimit::RedisRateLimiter::connect(url, &options.topics.prefix, limit)
                .await
                .map_err(|e| anyhow::anyhow!("--redis-url {url}: {e}"))?,
        ) as Arc<dyn aloft_fairq::ratelimit::TenantRateLimiter>),
    })
}

async fn bootstrap_project(api: &api::AdminApi, project: &str) -> anyhow::Result<()> {
    use aloft_proto::v1::admin_service_server::AdminService;
    // Decide from a caught-up read model: after a replay from offset 0 the project may exist in the log
    // but not yet in the tables, and registering it again would add an event to the log.
    let registry = api.topics.registry.clone();
    let end = api.log.end_offset(&registry, 0).await?;
    let mut progress = api.progress.clone();
    let caught_up = progress.wait_for(|p| p.get(&(registry.clone(), 0)).copied().unwrap_or(0) >= end);
    tokio::time::timeout(std::time::Duration::from_secs(120), caught_up)
        .await
        .map_err(|_| anyhow::anyhow!("the read model did not catch up with the registry within 120 s"))??;
    let request = aloft_proto::v1::CreateProjectRequest {
        project: Some(aloft_proto::v1::Project {
            name: project.to_string(),
            description: "created by aloft dev".to_string(),
            domains: Vec::new(),
        }),
    };
    match api.create_project(tonic::Request::new(request)).await {
        Ok(_) => Ok(()),
        Err(status) if status.code() == tonic::Code::AlreadyExists => Ok(()),
        Err(status) => Err(anyhow::anyhow!(
            "creating project {project}: {}",
            status.message()
        )),
    }
}
