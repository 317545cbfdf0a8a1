use aloft_telemetry::ops::NotReady;
use std::sync::Arc;
use std::time::Duration;

use aloft_runtime::{shutdown_on_signals, BackendArgs};
use aloft_scheduler::clock::{Clock, SteppedClock, SystemClock};
use aloft_scheduler::{Scheduler, SchedulerOptions};
use clap::Parser;

/// Aloft scheduler: fires the active launch plans that have a cron or fixed-rate schedule. Run two for high
/// availability: one leads (through the consumer group), the other takes over within seconds.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    backend: BackendArgs,
    /// TLS on the operations endpoints (--ops-listen).
    #[command(flatten)]
    tls: aloft_runtime::tls::TlsArgs,
    /// Unique name of this instance in the scheduler group (default: host name + process id).
    #[arg(long, env = "ALOFT_MEMBER_ID")]
    member_id: Option<String>,
    /// Serve /healthz, /readyz (registry read to its end) and /metrics on this address.
    #[arg(long, env = "ALOFT_OPS_LISTEN")]
    ops_listen: Option<std::net::SocketAddr>,
    /// Add the signed number of seconds this file holds to the system clock, read again every tick: a drill
    /// of the host's clock stepping forward or back (the fault harness uses it). A missing file adds nothing.
    #[arg(long, env = "ALOFT_CLOCK_OFFSET_FILE")]
    clock_offset_file: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Args = aloft_runtime::config::parse();
    aloft_telemetry::init_tracing("aloft-scheduler", "info");
    let shutdown = shutdown_on_signals();
    let log = args.backend.open_log().await?;
    let options = SchedulerOptions::new(
        args.backend.topics(),
        args.member_id.unwrap_or_else(aloft_runtime::default_member_id),
    );
    let interval = Duration::from_millis(500);
    let clock: Arc<dyn Clock> = match args.clock_offset_file {
        Some(file) => Arc::new(SteppedClock::new(interval, file)),
        None => Arc::new(SystemClock { interval }),
    };
    let registry = options.topics.registry.clone();
    let (scheduler, handle) = Scheduler::new(options, Arc::clone(&log), clock);
    aloft_scheduler::metrics::register();
    if let Some(address) = args.ops_listen {
        let readiness: aloft_telemetry::ops::ReadinessCheck = Arc::new(move || {
            let (log, registry, progress) = (Arc::clone(&log), registry.clone(), handle.progress.clone());
            Box::pin(async move {
                let end = aloft_eventlog::probe_end_offset(log.as_ref(), &registry)
                    .await
                    .map_err(NotReady::because)?;
                let read = progress.borrow().registry_offset;
                if read >= end {
                    Ok(())
                } else {
                    Err(NotReady::because(format!(
                        "registry read to offset {read} of {end}"
                    )))
                }
            })
        });
        let tls = aloft_runtime::tls::Tls::from_args(&args.tls, shutdown.clone())?;
        aloft_runtime::tls::spawn_ops(
            address,
            tls,
            aloft_telemetry::ops::router(readiness),
            shutdown.clone(),
        )
        .await?;
    }
    let result = scheduler.run(shutdown).await;
    // Spans still buffered go out before the process ends.
    aloft_telemetry::trace::flush();
    result
}
