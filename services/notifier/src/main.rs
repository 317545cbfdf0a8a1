use std::num::NonZeroU32;
use std::time::Duration;

use aloft_runtime::{shutdown_on_signals, BackendArgs};
use clap::Parser;

/// Aloft notifier: Slack, email and webhook notifications when executions end, delivered once.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    backend: BackendArgs,
    /// TLS on the operations endpoints (--ops-listen).
    #[command(flatten)]
    tls: aloft_runtime::tls::TlsArgs,
    /// Base URL of the console that messages link to.
    #[arg(long, env = "ALOFT_CONSOLE_URL", default_value = "http://localhost:8088")]
    console_url: String,
    /// Attempts before a delivery that keeps failing transiently is given up.
    #[arg(long, env = "ALOFT_NOTIFY_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,
    /// The first retry waits about this many milliseconds; each further one twice as long.
    #[arg(long, env = "ALOFT_NOTIFY_RETRY_BASE_MS", default_value_t = 2000)]
    retry_base_ms: u64,
    /// The longest wait between retries, in milliseconds.
    #[arg(long, env = "ALOFT_NOTIFY_RETRY_MAX_MS", default_value_t = 300_000)]
    retry_max_ms: u64,
    /// Sends in flight at once.
    #[arg(long, env = "ALOFT_NOTIFY_CONCURRENCY", default_value_t = 32)]
    concurrency: usize,
    /// Messages per second to one Slack webhook (Slack allows about one).
    #[arg(long, env = "ALOFT_NOTIFY_SLACK_PER_SECOND", default_value = "1")]
    slack_per_second: NonZeroU32,
    /// Messages per second to one SMTP server.
    #[arg(long, env = "ALOFT_NOTIFY_SMTP_PER_SECOND", default_value = "50")]
    smtp_per_second: NonZeroU32,
    /// Requests per second to one webhook host.
    #[arg(long, env = "ALOFT_NOTIFY_WEBHOOK_PER_SECOND", default_value = "50")]
    webhook_per_second: NonZeroU32,
    /// Serve /healthz, /readyz (database reachable, projector running) and /metrics on this address.
    #[arg(long, env = "ALOFT_OPS_LISTEN")]
    ops_listen: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = aloft_runtime::config::parse();
    aloft_telemetry::init_tracing("aloft-notifier", "info");
    let shutdown = shutdown_on_signals();
    let database_url = args.backend.database_url();
    let store = aloft_store::Store::connect(&database_url)
        .await
        .map_err(|e| anyhow::anyhow!("--database-url {database_url}: {e}"))?;
    let log = args.backend.open_log().await?;
    let mut options = aloft_notifier::NotifierOptions::new(args.backend.topics());
    options.console_url = args.console_url;
    options.ops_listen = args.ops_listen;
    options.tls = aloft_runtime::tls::Tls::from_args(&args.tls, shutdown.clone())?;
    options.policy = aloft_notifier::DeliveryPolicy {
        max_attempts: args.max_attempts,
        retry_base: Duration::from_millis(args.retry_base_ms),
        retry_max: Duration::from_millis(args.retry_max_ms.max(args.retry_base_ms)),
        concurrency: args.concurrency.max(1),
        slack_per_second: args.slack_per_second,
        smtp_per_second: args.smtp_per_second,
        webhook_per_second: args.webhook_per_second,
    };
    let result = aloft_notifier::run(options, store, log, shutdown).await;
    // Spans still buffered go out before the process ends.
    aloft_telemetry::trace::flush();
    result
}
