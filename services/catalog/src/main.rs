use aloft_runtime::{shutdown_on_signals, BackendArgs};
use clap::Parser;

/// Aloft catalog: memoized task results and artifact lineage, fed by aloft.executions.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    backend: BackendArgs,
    /// Address of the gRPC API (propellers and `aloft lineage` / `aloft cache` connect here).
    #[arg(long, env = "ALOFT_CATALOG_LISTEN", default_value = "127.0.0.1:8090")]
    listen: std::net::SocketAddr,
    /// Serve /healthz, /readyz (database reachable, projector running) and /metrics on this address.
    #[arg(long, env = "ALOFT_OPS_LISTEN")]
    ops_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    auth: aloft_auth::AuthArgs,
    #[command(flatten)]
    tls: aloft_runtime::tls::TlsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = aloft_runtime::config::parse();
    aloft_telemetry::init_tracing("aloft-catalog", "info");
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
    let mut options = aloft_catalog::CatalogOptions::new(args.backend.topics());
    options.ops_listen = args.ops_listen;
    options.auth = auth;
    options.tls = aloft_runtime::tls::Tls::from_args(&args.tls, shutdown.clone())?;
    let result = aloft_catalog::run(options, store, log, listener, shutdown).await;
    // Spans still buffered go out before the process ends.
    aloft_telemetry::trace::flush();
    result
}
