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
    /// Who may call (the same file as admin's): without it authentication is off, which is allowed on a
    /// loopback address only.
    #[arg(long, env = "ALOFT_AUTH_CONFIG")]
    auth_config: Option<std::path::PathBuf>,
    /// Serve without authentication on a non-loopback address.
    #[arg(long, env = "ALOFT_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
    #[command(flatten)]
    tls: aloft_runtime::tls::TlsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = aloft_runtime::config::parse();
    aloft_telemetry::init_tracing("aloft-catalog", "info");
    let auth = match &args.auth_config {
        Some(path) => {
            Some(aloft_auth::AuthConfig::load(path).map_err(|e| anyhow::anyhow!("--auth-config {e}"))?)
        }
        None => None,
    };
    if !auth.as_ref().is_some_and(aloft_auth::AuthConfig::enabled)
        && !args.listen.ip().is_loopback()
        && !args.insecure_no_auth
    {
        anyhow::bail!(
            "--listen {} is not a loopback address and no authentication is configured: give --auth-config, \
             or --insecure-no-auth to let anyone who reaches it read and evict every project's cache",
            args.listen
        );
    }
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
