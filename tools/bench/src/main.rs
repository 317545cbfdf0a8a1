//! `aloft-bench`: Aloft's benchmarks, apart from the user CLI. Each measures one target of the README's
//! performance table on the real backends it names (the embedded log and SQLite by default, Kafka and
//! Postgres with `--kafka-brokers` / `--database-url`), running the fleet in this process as `aloft dev`
//! does; `executions` starts `aloft-propeller` from the directory of this binary.

mod auth;
mod blobs;
mod cache;
mod console;
mod containers;
mod engine;
mod executions;
mod fairness;
mod listing;
mod notify;
mod pods;
mod sdk;
mod shared;
mod watch;

use clap::{Parser, ValueEnum};

use crate::engine::{BenchOptions, Shape};

/// Measure the engine on chains, fan-outs and maps (optionally cached), the log's latency, schedules, cache
/// lookups, notification delivery, fair sharing and one propeller's memory and recovery.
#[derive(Parser, Debug)]
#[command(name = "aloft-bench", version)]
pub struct BenchArgs {
    /// What to measure.
    pub shape: BenchShape,
    #[arg(long, default_value_t = 1000)]
    pub nodes: usize,
    /// Benchmark on Kafka instead of the embedded log.
    #[arg(long, env = "ALOFT_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Read-model database (a scratch database is created on a Postgres server).
    #[arg(long, env = "ALOFT_DATABASE_URL")]
    pub database_url: Option<String>,
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// chain/fanout: make the noop task cached (each node a different key); the first run populates the
    /// cache, the later ones are served from it.
    #[arg(long)]
    pub cached: bool,
    /// chain/fanout/map: the propeller stores snapshots of its partitions this often (seconds) while the
    /// bench runs; left out, no snapshots.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_interval_secs: Option<u64>,
    /// cache: stored results to fill the catalog's table with.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: u64,
    /// cache: lookups to time.
    #[arg(long, default_value_t = 10_000)]
    pub samples: usize,
    /// fairness: executor slots.
    #[arg(long, default_value_t = 16)]
    pub capacity: usize,
    /// notify: the notifier's limit of messages per second to one SMTP server.
    #[arg(long, default_value_t = 500)]
    pub smtp_per_second: u32,
    /// blobs: the blob store to measure (default: a local directory).
    #[arg(long, env = "ALOFT_BLOB_STORE")]
    pub blob_store: Option<String>,
    /// blobs: the size of the blob passed around, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub size_mib: u64,
    /// containers: the container engine's API socket.
    #[arg(
        long,
        env = "ALOFT_CONTAINER_ENGINE",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub container_engine: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BenchShape {
    /// n0 -> n1 -> ... -> n(N-1): per-step latency of the engine.
    Chain,
    /// N independent nodes: throughput of the engine.
    Fanout,
    /// One map node running a noop task over N items: map throughput.
    Map,
    /// N single appends: acknowledgement and append-to-read-back latency of the log.
    Log,
    /// N launch plans scheduled every minute on one scheduler: fire lag, CPU and memory.
    Schedules,
    /// Catalog lookups through its gRPC API with --entries stored results (Postgres with --database-url).
    Cache,
    /// --nodes executions failing within one second, each emailing a local SMTP server: delivery lag.
    Notify,
    /// The fair-queue dispatcher: 10 equal-weight tenants, one with 100x the load (--nodes attempts per
    /// other tenant, --capacity slots): per-tenant shares, Jain's index, time per decision.
    Fairness,
    /// --nodes concurrent executions of noop -> sleep -> noop held by one aloft-propeller process (Kafka
    /// only): its resident memory, and its replacement's recovery time after a SIGKILL.
    Executions,
    /// A --size-mib blob up to and down from the blob store (MiB/s, against a plain copy), passed between
    /// two tasks (time, resident-memory growth of the process); --nodes tasks each writing a 1 MiB blob that
    /// another reads; and `GetTaskLogs --follow` latency.
    Blobs,
    /// --nodes attempts of a no-op `container` task through the container executor, one at a time, against
    /// the engine's own create+start+wait+remove of the same image: p50/p99 of each and the overhead.
    Containers,
    /// --nodes concurrent attempts of a `container` task as Kubernetes pods on the API server KUBECONFIG names
    /// (the bench plays the kubelet): pod creation time, this process's memory while it watches them, the API
    /// requests per second they cause while running, and status-to-outcome latency.
    Pods,
    /// --nodes executions in admin's read model on --database-url (Postgres; rows written straight into the
    /// tables): p50/p95 of --samples REST list calls per filter, twenty pages deep by token, and the counts.
    Listing,
    /// A map of --nodes no-op items watched live over REST (server-sent events) from its launch, then the
    /// ended execution's history read whole: events per second of each.
    Watch,
    /// The console's page of a --nodes-item map in headless Chromium (--runs times): first row of the node
    /// table after navigation, and the JavaScript heap after scrolling to the last item.
    Console,
    /// What authentication and authorization add per call: --samples CreateExecution and GetExecution
    /// calls on a fleet without auth and on one checking OIDC tokens (cached JWKS), alternately; p50/p99
    /// of each and the ratio.
    Auth,
    /// The Python SDK: its task entrypoint on a no-op task against `python -c pass` (--samples each, at most
    /// 200), and a
    /// fan-out of --nodes no-op SDK tasks (a map compiled from Python) end to end, --runs times.
    Sdk,
}

fn main() {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            std::process::exit(2);
        }
    };
    let args = BenchArgs::parse();
    aloft_telemetry::init_tracing("aloft-bench", "warn");
    match runtime.block_on(run(args)) {
        Ok(code) => std::process::exit(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::exit(2);
        }
    }
}

/// Runs the benchmark `args` names and prints one line per result; the exit code is 0 when it met what it
/// checks.
async fn run(args: BenchArgs) -> anyhow::Result<i32> {
    let BenchArgs {
        shape,
        nodes,
        kafka_brokers,
        database_url,
        runs,
        cached,
        snapshot_interval_secs,
        entries,
        samples,
        capacity,
        smtp_per_second,
        blob_store,
        size_mib,
        container_engine,
    } = &args;
    match shape {
        BenchShape::Sdk => {
            let backend = if kafka_brokers.is_some() {
                "kafka"
            } else {
                "embedded"
            };
            // Each sample starts an interpreter: the cache bench's default of 10,000 would take minutes.
            let samples = &(*samples).min(200);
            eprintln!("bench sdk: {samples} entrypoint runs, then {nodes} no-op SDK tasks on {backend}, {runs} run(s)");
            let result = crate::sdk::run(
                *nodes,
                *samples,
                *runs,
                kafka_brokers.as_deref(),
                database_url.as_deref(),
            )
            .await?;
            println!(
                "sdk entrypoint p50 {:.1} ms p95 {:.1} ms; python -c pass p50 {:.1} ms p95 {:.1} ms; overhead p50 {:.1} ms",
                result.entrypoint_p50_ms,
                result.entrypoint_p95_ms,
                result.python_p50_ms,
                result.python_p95_ms,
                result.entrypoint_p50_ms - result.python_p50_ms
            );
            for (index, run) in result.fan_out.iter().enumerate() {
                println!(
                    "sdk fan-out nodes={nodes} backend={backend} run={} phase={} engine={} ms wall={} ms per_task={:.1} ms",
                    index + 1,
                    run.phase,
                    run.engine_millis,
                    run.wall_millis,
                    run.wall_millis as f64 / (*nodes).max(1) as f64
                );
            }
            Ok(0)
        }
        BenchShape::Auth => {
            eprintln!("bench auth: {samples} calls of each kind, without and with authentication");
            let cases = crate::auth::run(*samples, kafka_brokers.as_deref(), database_url.as_deref()).await?;
            for case in cases {
                println!(
                    "auth {}: without p50 {:.2} ms p99 {:.2} ms; with OIDC p50 {:.2} ms p99 {:.2} ms; ratio p50 {:.2}x p99 {:.2}x",
                    case.call,
                    case.plain_p50_ms,
                    case.plain_p99_ms,
                    case.auth_p50_ms,
                    case.auth_p99_ms,
                    case.auth_p50_ms / case.plain_p50_ms.max(1e-9),
                    case.auth_p99_ms / case.plain_p99_ms.max(1e-9)
                );
            }
            Ok(0)
        }
        BenchShape::Console => {
            eprintln!("bench console: the page of a {nodes}-item map in headless Chromium, {runs} runs");
            let result = crate::console::run(*nodes, *runs).await?;
            let list = |values: &[f64]| {
                values
                    .iter()
                    .map(|v| format!("{v:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            println!(
                "console map items={} first row after navigation: {} ms; JS heap after scrolling to the last item: {} MiB",
                result.items,
                list(&result.first_paint_ms),
                list(&result.heap_mib)
            );
            Ok(0)
        }
        BenchShape::Watch => {
            eprintln!("bench watch: a map of {nodes} no-op items, watched live and then read whole");
            let result = crate::watch::run(*nodes, kafka_brokers.as_deref(), database_url.as_deref()).await?;
            println!(
                "watch items={} live: {} events in {:.2} s ({:.0} events/s); catch-up: {} events in {:.2} s ({:.0} events/s)",
                result.items,
                result.live_events,
                result.live_seconds,
                result.live_events as f64 / result.live_seconds.max(1e-9),
                result.catch_up_events,
                result.catch_up_seconds,
                result.catch_up_events as f64 / result.catch_up_seconds.max(1e-9)
            );
            Ok(0)
        }
        BenchShape::Listing => {
            let url = database_url
                .as_deref()
                .ok_or_else(|| anyhow::anyhow!("bench listing needs --database-url postgres://..."))?;
            eprintln!(
                "bench listing: {nodes} executions in the read model, {samples} calls per case over REST"
            );
            let result = crate::listing::run(url, *nodes as u64, *samples).await?;
            println!(
                "listing executions={} (filled in {:.1} s)",
                result.executions, result.load_seconds
            );
            for case in &result.cases {
                println!(
                    "listing {:28} p50={:.1} ms p95={:.1} ms",
                    case.name, case.p50_ms, case.p95_ms
                );
            }
            Ok(0)
        }
        BenchShape::Pods => {
            eprintln!("bench pods: {nodes} concurrent pod attempts on the API server of KUBECONFIG");
            let result = crate::pods::run(*nodes).await?;
            println!(
                "pods attempts={} all created in {:.1} s; resident memory +{:.1} MiB ({:.1} KiB per attempt); API requests while they run: {:.2}/s; per attempt in all: {:.1}; Succeeded-to-outcome p50={:.0} ms p99={:.0} ms",
                result.attempts,
                result.create_seconds,
                result.rss_growth_mib,
                result.rss_growth_mib * 1024.0 / result.attempts as f64,
                result.idle_requests_per_second,
                result.requests_per_attempt,
                result.outcome_p50_ms,
                result.outcome_p99_ms
            );
            Ok(0)
        }
        BenchShape::Containers => {
            eprintln!("bench containers: {nodes} no-op attempts on {container_engine}, one at a time");
            let result = crate::containers::run(container_engine, *nodes).await?;
            println!(
                "containers attempts={} engine create+start+wait+remove p50={:.1} ms p99={:.1} ms; through the executor p50={:.1} ms p99={:.1} ms; overhead p50={:.1} ms p99={:.1} ms",
                result.attempts,
                result.engine_p50_ms,
                result.engine_p99_ms,
                result.aloft_p50_ms,
                result.aloft_p99_ms,
                result.aloft_p50_ms - result.engine_p50_ms,
                result.aloft_p99_ms - result.engine_p99_ms
            );
            Ok(0)
        }
        BenchShape::Blobs => {
            eprintln!(
                "bench blobs: {size_mib} MiB through {}",
                blob_store.as_deref().unwrap_or("a local directory")
            );
            let result = crate::blobs::run(blob_store.as_deref(), *size_mib, *nodes).await?;
            println!(
                "blobs size={} MiB upload={:.0} MiB/s download={:.0} MiB/s{}; between two tasks {:.1} s, resident memory +{:.0} MiB; {} tasks each passing 1 MiB on: {:.1} s ({:.0} MiB/s); a list of {} integers between two tasks (offloaded): {:.2} s, of {} (inline): {:.2} s; logs --follow lines={} p50={:.0} ms p99={:.0} ms",
                result.size_mib,
                result.upload_mib_s,
                result.download_mib_s,
                result
                    .upload_vs_copy
                    .map(|ratio| format!(" ({ratio:.2}x a plain copy)"))
                    .unwrap_or_default(),
                result.handover_seconds,
                result.rss_growth_mib,
                result.staged_tasks,
                result.staging_seconds,
                result.staged_tasks as f64 / result.staging_seconds,
                crate::blobs::OFFLOADED_ITEMS,
                result.offloaded_seconds,
                crate::blobs::INLINE_ITEMS,
                result.inline_seconds,
                result.log_lines,
                result.log_p50_ms,
                result.log_p99_ms
            );
            Ok(if result.rss_growth_mib < 64.0 { 0 } else { 1 })
        }
        BenchShape::Log => {
            let latency = crate::engine::log_round_trip(kafka_brokers.as_deref(), *nodes).await?;
            let backend = if kafka_brokers.is_some() {
                "kafka"
            } else {
                "embedded"
            };
            println!(
                "log backend={backend} samples={nodes} append_ack p50={} us p99={} us; append_to_read_back p50={} us p99={} us",
                latency.ack_p50, latency.ack_p99, latency.read_back_p50, latency.read_back_p99
            );
            Ok(0)
        }
        BenchShape::Cache => {
            let backend = if database_url.as_deref().is_some_and(|u| u.starts_with("postgres")) {
                "postgres"
            } else {
                "sqlite"
            };
            eprintln!("bench cache: {entries} stored results on {backend}, {samples} lookups through gRPC");
            let result = crate::cache::lookups(database_url.as_deref(), *entries, *samples).await?;
            println!(
                "cache lookups backend={backend} entries={} samples={} hits={} p50={} us p99={} us max={} us (fill {:.1} s)",
                result.entries,
                result.samples,
                result.hits,
                result.p50_micros,
                result.p99_micros,
                result.max_micros,
                result.fill_seconds
            );
            Ok(0)
        }
        BenchShape::Fairness => {
            eprintln!(
                "bench fairness: 10 equal-weight tenants, team-0 with {} attempts, the others {nodes} each, {capacity} slots",
                nodes * 100
            );
            let result = crate::fairness::run(10, *nodes, *capacity);
            for (tenant, share) in &result.shares {
                println!(
                    "  {tenant:28} {:5.1}% of starts while every tenant had work queued",
                    share * 100.0
                );
            }
            println!(
                "fairness tenants=10 contended_starts={} jain={:.4} decisions={} dispatcher={:.2} us/decision",
                result.contended_starts,
                result.jain,
                result.decisions,
                result.nanos_per_decision / 1000.0
            );
            Ok(0)
        }
        BenchShape::Notify => {
            let backend = if kafka_brokers.is_some() {
                "kafka"
            } else {
                "embedded"
            };
            eprintln!(
                "bench notify: {nodes} executions failing within one second, an email each, SMTP limit {smtp_per_second}/s, log {backend}"
            );
            let result = crate::notify::run(
                kafka_brokers.as_deref(),
                database_url.as_deref(),
                *nodes,
                *smtp_per_second,
            )
            .await?;
            println!(
                "notify executions={} log={backend} delivered={} duplicates={} lag p50={} ms p99={} ms max={} ms (appended over {:.2} s, SMTP limit {smtp_per_second}/s)",
                result.executions,
                result.delivered,
                result.duplicates,
                result.lag_p50_millis,
                result.lag_p99_millis,
                result.lag_max_millis,
                result.append_seconds
            );
            Ok(
                if result.delivered == result.executions && result.duplicates == 0 {
                    0
                } else {
                    1
                },
            )
        }
        BenchShape::Executions => {
            eprintln!("bench executions: {nodes} executions of noop -> sleep 1h -> noop on one propeller");
            let result = crate::executions::run(kafka_brokers.as_deref(), *nodes).await?;
            let rss_mib = result.rss_bytes as f64 / (1024.0 * 1024.0);
            println!(
                "executions={} all asleep after {:.1} s (requests appended in {:.1} s); propeller RSS {rss_mib:.0} MiB = {:.1} KiB per execution; \
                 after SIGKILL: partitions reassigned in {:.1} s, state rebuilt and claimed in {:.1} s more",
                result.executions,
                result.all_sleeping_seconds,
                result.append_seconds,
                result.rss_bytes as f64 / 1024.0 / result.executions.max(1) as f64,
                result.kill_to_assigned_seconds,
                result.assigned_to_ready_seconds
            );
            Ok(0)
        }
        BenchShape::Schedules => {
            let minutes = (*runs).max(1) as u32;
            eprintln!("bench schedules: {nodes} every-minute schedules on one scheduler (embedded log), {minutes} minute(s) + the first boundary");
            let result = crate::engine::schedules(*nodes, minutes).await?;
            println!(
                "schedules count={nodes} fires={} lag p50={} ms p99={} ms max={} ms cpu={:.1} s over {:.0} s wall ({:.0}% of a core) rss={:.0} MiB",
                result.fires,
                result.lag_p50_millis,
                result.lag_p99_millis,
                result.lag_max_millis,
                result.cpu_seconds,
                result.wall_seconds,
                100.0 * result.cpu_seconds / result.wall_seconds.max(1e-9),
                result.resident_mib
            );
            Ok(0)
        }
        BenchShape::Chain | BenchShape::Fanout | BenchShape::Map => {
            let shape = match shape {
                BenchShape::Chain => Shape::Chain,
                BenchShape::Map => Shape::Map,
                _ => Shape::Fanout,
            };
            let options = BenchOptions {
                shape,
                nodes: *nodes,
                kafka_brokers: kafka_brokers.clone(),
                database_url: database_url.clone(),
                runs: *runs,
                cached: *cached,
                snapshot_interval: snapshot_interval_secs.map(std::time::Duration::from_secs),
            };
            let backend = if kafka_brokers.is_some() {
                "kafka"
            } else {
                "embedded"
            };
            let cached_text = if *cached { " cached" } else { "" };
            let snapshot_text = snapshot_interval_secs
                .map(|s| format!(", snapshots every {s} s"))
                .unwrap_or_default();
            eprintln!(
                "bench {shape:?}: {nodes}{cached_text} noop nodes on {backend}, {runs} run(s){snapshot_text}"
            );
            for (index, result) in crate::engine::run(options).await?.iter().enumerate() {
                println!(
                    "{:?} nodes={nodes} backend={backend} run={} phase={} engine={} ms per_node={:.3} ms wall={} ms",
                    shape,
                    index + 1,
                    result.phase,
                    result.engine_millis,
                    result.engine_millis as f64 / *nodes as f64,
                    result.wall_millis
                );
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::BenchArgs::command().debug_assert();
    }
}
