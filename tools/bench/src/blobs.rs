//! `aloft-bench blobs`: the data plane. A blob of `--size-mib` uploaded to and downloaded from the blob store
//! (MiB/s, and against a plain file copy on a local store); the same blob passed between two process tasks
//! of the in-process fleet, with how much the process's resident memory grew; a list of a million integers
//! (offloaded to the store, as it is too large to travel inline) passed between two tasks, against a small
//! one carried inline; and how long a line a running task prints takes to reach `GetTaskLogs --follow`
//! (p50/p99).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use aloft_blobstore::BlobStore;
use aloft_cli::client::connect;
use aloft_cli::fleet::{Fleet, FleetConfig};
use aloft_proto::v1 as wire;

pub struct BlobBench {
    pub size_mib: u64,
    pub upload_mib_s: f64,
    pub download_mib_s: f64,
    /// Upload throughput over a plain copy's, for a local store.
    pub upload_vs_copy: Option<f64>,
    pub handover_seconds: f64,
    pub rss_growth_mib: f64,
    /// Tasks that each wrote a 1 MiB blob that another task then read.
    pub staged_tasks: usize,
    pub staging_seconds: f64,
    pub log_lines: usize,
    pub log_p50_ms: f64,
    pub log_p99_ms: f64,
    /// Seconds to pass a list of `OFFLOADED_ITEMS` integers between two tasks (offloaded), and one of
    /// `INLINE_ITEMS` (inline).
    pub offloaded_seconds: f64,
    pub inline_seconds: f64,
}

/// The lists passed between two tasks: a million integers (about 6.9 MB of JSON) is offloaded; a thousand
/// travel inline.
pub const OFFLOADED_ITEMS: i64 = 1_000_000;
pub const INLINE_ITEMS: i64 = 1_000;

/// Writes `size_mib` MiB of non-repeating bytes to `path`, a MiB at a time.
fn write_sample(path: &Path, size_mib: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut block = vec![0u8; 1024 * 1024];
    for mib in 0..size_mib {
        for (i, byte) in block.iter_mut().enumerate() {
            *byte = (i as u64 ^ mib.wrapping_mul(2654435761)) as u8;
        }
        file.write_all(&block)?;
    }
    file.flush()?;
    Ok(())
}

pub async fn run(store_url: Option<&str>, size_mib: u64, staged_tasks: usize) -> anyhow::Result<BlobBench> {
    let scratch = tempfile::tempdir()?;
    let store = match store_url {
        Some(url) => BlobStore::from_url(url)?,
        None => BlobStore::local(&scratch.path().join("store"))?,
    };
    store.check().await?;
    let sample = scratch.path().join("sample.bin");
    write_sample(&sample, size_mib)?;
    let bytes = (size_mib * 1024 * 1024) as f64;
    let mib_s = |elapsed: Duration| bytes / (1024.0 * 1024.0) / elapsed.as_secs_f64();

    let started = Instant::now();
    let stored = store.upload(&sample, "bench/sample.bin").await?;
    let upload = started.elapsed();
    let started = Instant::now();
    store
        .download(&stored.uri, &scratch.path().join("back.bin"))
        .await?;
    let download = started.elapsed();
    let upload_vs_copy = match store_url {
        Some(url) if !url.starts_with("file://") && !url.starts_with('/') => None,
        _ => {
            let started = Instant::now();
            std::fs::copy(&sample, scratch.path().join("copy.bin"))?;
            Some(mib_s(upload) / mib_s(started.elapsed()))
        }
    };
    for leftover in ["back.bin", "copy.bin"] {
        let _ = std::fs::remove_file(scratch.path().join(leftover));
    }
    store.delete_prefix("bench").await?;

    let through = through_the_fleet(scratch.path(), store_url, size_mib, staged_tasks).await?;
    let (handover_seconds, rss_growth_mib, staging_seconds, latencies, (offloaded_seconds, inline_seconds)) =
        through;
    let mut latencies = latencies;
    latencies.sort_by(f64::total_cmp);
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    Ok(BlobBench {
        size_mib,
        upload_mib_s: mib_s(upload),
        download_mib_s: mib_s(download),
        upload_vs_copy,
        handover_seconds,
        rss_growth_mib,
        staged_tasks,
        staging_seconds,
        log_lines: latencies.len(),
        log_p50_ms: percentile(0.5),
        log_p99_ms: percentile(0.99),
        offloaded_seconds,
        inline_seconds,
    })
}

const SPECS: &str = r#"kind: task
name: make
version: "1"
interface: {inputs: {mib: integer}, outputs: {data: blob}}
run:
  process:
    command: ["sh", "-c", "head -c $((ALOFT_INPUT_MIB * 1048576)) /dev/urandom > \"$ALOFT_OUTPUT_DIR/data\""]
---
kind: task
name: measure
version: "1"
interface: {inputs: {data: blob}, outputs: {bytes: integer}}
run:
  process:
    command: ["sh", "-c", "wc -c < \"$ALOFT_INPUT_DATA\" > \"$ALOFT_OUTPUT_DIR/bytes\""]
---
kind: workflow
name: handover
interface: {inputs: {mib: integer}, outputs: {bytes: integer}}
nodes:
  - {id: make, task: make, inputs: {mib: inputs.mib}}
  - {id: measure, task: measure, inputs: {data: make.data}}
outputs: {bytes: measure.bytes}
---
kind: task
name: write-mib
version: "1"
interface: {inputs: {i: integer}, outputs: {data: blob}}
run:
  process:
    command: ["sh", "-c", "head -c 1048576 /dev/urandom > \"$ALOFT_OUTPUT_DIR/data\""]
---
kind: workflow
name: staging
interface: {inputs: {items: list<integer>}, outputs: {sizes: list<integer>}}
nodes:
  - id: write
    map: {task: write-mib, over: i, concurrency: 100}
    inputs: {i: inputs.items}
  - id: read
    map: {task: measure, over: data, concurrency: 100}
    inputs: {data: write.data}
outputs: {sizes: read.bytes}
---
kind: task
name: big-list
version: "1"
interface: {inputs: {n: integer}, outputs: {xs: "list<integer>"}}
run:
  process:
    command: ["python3", "-c", "import json, os; json.dump(list(range(int(os.environ['ALOFT_INPUT_N']))), open(os.environ['ALOFT_OUTPUT_DIR'] + '/xs', 'w'))"]
---
kind: task
name: sum-list
version: "1"
interface: {inputs: {xs: "list<integer>"}, outputs: {total: integer}}
run:
  process:
    command: ["python3", "-c", "import json, os; open(os.environ['ALOFT_OUTPUT_DIR'] + '/total', 'w').write(str(sum(json.load(open(os.environ['ALOFT_INPUT_DIR'] + '/xs')))))"]
---
kind: workflow
name: value-handover
interface: {inputs: {n: integer}, outputs: {total: integer}}
nodes:
  - {id: make, task: big-list, inputs: {n: inputs.n}}
  - {id: sum, task: sum-list, inputs: {xs: make.xs}}
outputs: {total: sum.total}
---
kind: task
name: ticker
version: "1"
run:
  process:
    command: ["sh", "-c", "for i in $(seq 1 100); do date +%s%N; sleep 0.05; done"]
"#;

/// The fleet in this process: one blob of `size_mib` between two tasks (seconds, resident-memory growth),
/// `staged_tasks` tasks each writing a 1 MiB blob another reads (seconds), a large and a small list between
/// two tasks (seconds each), then a task printing timestamps, followed through `GetTaskLogs` (latency of
/// each line, ms).
async fn through_the_fleet(
    scratch: &Path,
    store_url: Option<&str>,
    size_mib: u64,
    staged_tasks: usize,
) -> anyhow::Result<(f64, f64, f64, Vec<f64>, (f64, f64))> {
    let mut config = FleetConfig::embedded(&scratch.join("fleet"), SocketAddr::from(([127, 0, 0, 1], 0)));
    config.bootstrap_project = Some("bench".to_string());
    if let Some(url) = store_url {
        config.blob_store = url.to_string();
    }
    let fleet = Fleet::start(config).await?;
    let outcome = async {
        let mut client = connect(&fleet.endpoint()).await?;
        let specs = scratch.join("specs.yaml");
        std::fs::write(&specs, SPECS)?;
        let documents = aloft_cli::specs::read_spec_file(&specs)?;
        aloft_cli::specs::register_documents(&mut client, "bench", "development", documents).await?;

        let baseline = crate::shared::rss_kib();
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(baseline));
        let sampler = tokio::spawn({
            let peak = std::sync::Arc::clone(&peak);
            async move {
                loop {
                    peak.fetch_max(crate::shared::rss_kib(), std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
        let started = Instant::now();
        let mib = wire::Literal {
            value: Some(wire::literal::Value::Integer(size_mib as i64)),
        };
        let id = launch(&mut client, "handover", vec![("mib", mib)]).await?;
        let finished = wait_finished(&mut client, &id).await?;
        let handover = started.elapsed().as_secs_f64();
        sampler.abort();
        anyhow::ensure!(
            finished.phase == wire::ExecutionPhase::Succeeded as i32,
            "the handover failed: {}",
            finished.error
        );
        let growth_mib = peak
            .load(std::sync::atomic::Ordering::Relaxed)
            .saturating_sub(baseline) as f64
            / 1024.0;

        let items = wire::Literal {
            value: Some(wire::literal::Value::List(wire::LiteralList {
                values: (0..staged_tasks as i64)
                    .map(|i| wire::Literal {
                        value: Some(wire::literal::Value::Integer(i)),
                    })
                    .collect(),
            })),
        };
        let started = Instant::now();
        let id = launch(&mut client, "staging", vec![("items", items)]).await?;
        let finished = wait_finished(&mut client, &id).await?;
        let staging = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            finished.phase == wire::ExecutionPhase::Succeeded as i32,
            "the staging run failed: {}",
            finished.error
        );

        let mut list_seconds = Vec::new();
        for items in [OFFLOADED_ITEMS, INLINE_ITEMS] {
            let n = wire::Literal {
                value: Some(wire::literal::Value::Integer(items)),
            };
            let started = Instant::now();
            let id = launch(&mut client, "value-handover", vec![("n", n)]).await?;
            let finished = wait_finished(&mut client, &id).await?;
            list_seconds.push(started.elapsed().as_secs_f64());
            let total = finished
                .outputs
                .as_ref()
                .and_then(|outputs| outputs.values.get("total"))
                .and_then(|total| total.value.clone());
            anyhow::ensure!(
                total == Some(wire::literal::Value::Integer(items * (items - 1) / 2)),
                "the list of {items} was not passed whole: {} {total:?}",
                finished.error
            );
        }

        let id = launch_task(&mut client, "ticker").await?;
        let latencies = follow_latencies(&mut client, &id).await?;
        Ok::<_, anyhow::Error>((
            handover,
            growth_mib,
            staging,
            latencies,
            (list_seconds[0], list_seconds[1]),
        ))
    }
    .await;
    fleet.stop().await?;
    outcome
}

/// Starts version `version` (empty: the latest) of `name` in bench/development, as a workflow or a task.
async fn create(
    client: &mut aloft_cli::client::AdminClient,
    name: &str,
    as_task: bool,
    inputs: Vec<(&str, wire::Literal)>,
) -> anyhow::Result<wire::ExecutionIdentifier> {
    use wire::create_execution_request::Target;
    let id = wire::Identifier {
        project: "bench".into(),
        domain: "development".into(),
        name: name.into(),
        version: if as_task { "1".into() } else { String::new() },
    };
    let created = client
        .create_execution(wire::CreateExecutionRequest {
            project: "bench".into(),
            domain: "development".into(),
            target: Some(if as_task {
                Target::Task(id)
            } else {
                Target::Workflow(id)
            }),
            inputs: Some(wire::LiteralMap {
                values: inputs
                    .into_iter()
                    .map(|(name, literal)| (name.to_string(), literal))
                    .collect(),
            }),
            ..Default::default()
        })
        .await?
        .into_inner();
    created
        .id
        .ok_or_else(|| anyhow::anyhow!("a created execution without an id"))
}

async fn launch(
    client: &mut aloft_cli::client::AdminClient,
    workflow: &str,
    inputs: Vec<(&str, wire::Literal)>,
) -> anyhow::Result<wire::ExecutionIdentifier> {
    create(client, workflow, false, inputs).await
}

async fn launch_task(
    client: &mut aloft_cli::client::AdminClient,
    task: &str,
) -> anyhow::Result<wire::ExecutionIdentifier> {
    create(client, task, true, Vec::new()).await
}

async fn wait_finished(
    client: &mut aloft_cli::client::AdminClient,
    id: &wire::ExecutionIdentifier,
) -> anyhow::Result<wire::Execution> {
    loop {
        let execution = client
            .get_execution(wire::GetExecutionRequest {
                id: Some(id.clone()),
                ..Default::default()
            })
            .await?
            .into_inner();
        if aloft_cli::render::is_terminal(execution.phase) {
            return Ok(execution);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Follows the ticker's log; each line is the time it was printed (ns since the epoch).
async fn follow_latencies(
    client: &mut aloft_cli::client::AdminClient,
    id: &wire::ExecutionIdentifier,
) -> anyhow::Result<Vec<f64>> {
    // The node exists once the execution is projected; its first attempt once the propeller started it.
    let node = loop {
        let execution = client
            .get_execution(wire::GetExecutionRequest {
                id: Some(id.clone()),
                ..Default::default()
            })
            .await?
            .into_inner();
        if let Some(attempt) = execution.attempts.first() {
            break attempt.node_id.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut stream = client
        .get_task_logs(wire::GetTaskLogsRequest {
            id: Some(id.clone()),
            node_id: node,
            follow: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let (mut latencies, mut pending) = (Vec::new(), String::new());
    while let Some(chunk) = stream.message().await? {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as f64;
        pending.push_str(&String::from_utf8_lossy(&chunk.data));
        while let Some(end) = pending.find('\n') {
            let line: String = pending.drain(..=end).collect();
            if let Ok(printed) = line.trim().parse::<f64>() {
                latencies.push((now - printed) / 1e6);
            }
        }
    }
    Ok(latencies)
}
