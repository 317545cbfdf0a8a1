use aloft_runtime::{shutdown_on_signals, BackendArgs, BlobStoreArgs};
use clap::Parser;

/// Aloft admin: the public gRPC API and the read models.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    blobs: BlobStoreArgs,
    /// Address of the gRPC API.
    #[arg(long, env = "ALOFT_ADMIN_LISTEN", default_value = "127.0.0.1:8089")]
    listen: std::net::SocketAddr,
    /// Create this project at start if it does not exist.
    #[arg(long, env = "ALOFT_BOOTSTRAP_PROJECT")]
    bootstrap_project: Option<String>,
    /// Serve /healthz, /readyz (database reachable, projector running) and /metrics on this address.
    #[arg(long, env = "ALOFT_OPS_LISTEN")]
    ops_listen: Option<std::net::SocketAddr>,
    /// API calls per second per tenant (project/domain); over it a call gets RESOURCE_EXHAUSTED with a
    /// retry-after. Unlimited when left out.
    #[arg(long, env = "ALOFT_TENANT_RATE_PER_SECOND")]
    tenant_rate_per_second: Option<std::num::NonZeroU32>,
    /// Calls a tenant may make at once above its rate (default: twice the rate).
    #[arg(long, env = "ALOFT_TENANT_BURST", requires = "tenant_rate_per_second")]
    tenant_burst: Option<std::num::NonZeroU32>,
    /// Redis shared by admin replicas for the tenant rate limits (e.g. redis://127.0.0.1:6379).
    #[arg(long, env = "ALOFT_REDIS_URL")]
    redis_url: Option<String>,
    #[command(flatten)]
    auth: aloft_auth::AuthArgs,
    #[command(flatten)]
    tls: aloft_runtime::tls::TlsArgs,
    /// The catalog (http://HOST:PORT), which answers the REST routes of lineage and cache entries.
    #[arg(long, env = "ALOFT_CATALOG")]
    catalog: Option<String>,
    /// API calls per second of one caller, across its projects (as well as per tenant). Unlimited when
    /// left out.
    #[arg(long, env = "ALOFT_CALLER_RATE_PER_SECOND")]
    caller_rate_per_second: Option<std::num::NonZeroU32>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = aloft_runtime::config::parse();
    aloft_telemetry::init_tracing("aloft-admin", "info");
    let auth = args.auth.load(args.listen).map_err(anyhow::Error::msg)?;
    let shutdown = shutdown_on_signals();
    let database_url = args.backend.database_url();
    let store = aloft_store::Store::connect(&database_url)
        .await
        .map_err(|e| anyhow::anyhow!("--database-url {database_url}: {e}"))?;
    let log = args.backend.open_log().await?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {}: {e}", args.listen))?;
    let mut options = aloft_admin::AdminOptions::new(args.backend.topics());
    options.bootstrap_project = args.bootstrap_project;
    options.ops_listen = args.ops_listen;
    options.tenant_rate_limit =
        args.tenant_rate_per_second
            .map(|per_second| aloft_fairq::ratelimit::RateLimit {
                per_second,
                burst: args
                    .tenant_burst
                    .unwrap_or(per_second.saturating_mul(std::num::NonZeroU32::MIN.saturating_add(1))),
            });
    options.redis_url = args.redis_url;
    options.auth = auth;
    options.catalog_url = args.catalog;
    options.tls = aloft_runtime::tls::Tls::from_args(&args.tls, shutdown.clone())?;
    options.principal_rate_limit =
        args.caller_rate_per_second
            .map(|per_second| aloft_fairq::ratelimit::RateLimit {
                per_second,
                burst: per_second.saturating_mul(std::num::NonZeroU32::MIN.saturating_add(1)),
            });
    options.blob_store = Some(args.blobs.open(&args.backend.data_dir).await?);
    let result = aloft_admin::run(options, store, log, listener, shutdown).await;
    // Spans still buffered go out before the process ends.
    aloft_telemetry::trace::flush();
    result
}
