//! `aloft-bench sdk`: what the Python SDK costs per task. The entrypoint's overhead (`python -m aloft.execute`
//! on a no-op task: interpreter start, import, input and output conversion) against `python -c pass`, and a
//! fan-out of --nodes no-op SDK tasks (a map compiled from Python by the SDK) end to end on the fleet in this
//! process, embedded or on Kafka (+ Postgres), two attempts per core at once. Uses `$ALOFT_PYTHON` (default `python3`) with the SDK installed.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use aloft_cli::client::connect;
use aloft_cli::fleet::{Fleet, FleetConfig};
use aloft_proto::v1 as wire;

use crate::engine::{launch_and_wait, register_when_ready, BenchResult};
use crate::shared::percentile_ms;

const MODULE: &str = r#"from aloft import map_task, task, workflow

@task
def noop(i: int) -> int:
    return i

@workflow
def fan(items: list[int]) -> list[int]:
    return map_task(noop)(i=items)
"#;

pub struct SdkBench {
    pub python_p50_ms: f64,
    pub python_p95_ms: f64,
    pub entrypoint_p50_ms: f64,
    pub entrypoint_p95_ms: f64,
    pub fan_out: Vec<BenchResult>,
}

/// The interpreter itself (`sys.executable` of `$ALOFT_PYTHON`, default `python3`), as tasks run it: a
/// launcher such as a pyenv shim would add its own start-up to every sample.
fn python() -> String {
    static RESOLVED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RESOLVED
        .get_or_init(|| {
            let named = std::env::var("ALOFT_PYTHON").unwrap_or_else(|_| "python3".into());
            Command::new(&named)
                .args(["-c", "import sys; print(sys.executable)"])
                .output()
                .ok()
                .filter(|output| output.status.success())
                .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
                .filter(|path| !path.is_empty())
                .unwrap_or(named)
        })
        .clone()
}

/// Runs `command` `samples` times and returns the sorted durations; fails naming it when a run fails.
fn time_runs(samples: usize, mut command: impl FnMut() -> Command) -> anyhow::Result<Vec<Duration>> {
    let mut durations = Vec::with_capacity(samples);
    for _ in 0..samples {
        let mut run = command();
        let started = Instant::now();
        let output = run.output()?;
        durations.push(started.elapsed());
        if !output.status.success() {
            anyhow::bail!(
                "{run:?} failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
    durations.sort();
    Ok(durations)
}

/// The entrypoint on a no-op task, against a bare interpreter: (python p50, p95, entrypoint p50, p95).
fn entrypoint_overhead(dir: &Path, samples: usize) -> anyhow::Result<(f64, f64, f64, f64)> {
    let module = dir.join("bench_tasks.py");
    let (inputs, outputs) = (dir.join("in"), dir.join("out"));
    std::fs::create_dir_all(&inputs)?;
    std::fs::create_dir_all(&outputs)?;
    std::fs::write(inputs.join("i"), "7")?;
    let bare = time_runs(samples, || {
        let mut command = Command::new(python());
        command.args(["-c", "pass"]);
        command
    })?;
    let entrypoint = time_runs(samples, || {
        let mut command = Command::new(python());
        command
            .args(["-m", "aloft.execute", "--file"])
            .arg(&module)
            .args(["--task", "noop"])
            .env("ALOFT_INPUT_DIR", &inputs)
            .env("ALOFT_OUTPUT_DIR", &outputs);
        command
    })?;
    let written = std::fs::read_to_string(outputs.join("o0"))?;
    anyhow::ensure!(written == "7", "the no-op task wrote {written:?}, not 7");
    Ok((
        percentile_ms(&bare, 0.5),
        percentile_ms(&bare, 0.95),
        percentile_ms(&entrypoint, 0.5),
        percentile_ms(&entrypoint, 0.95),
    ))
}

/// The SDK's documents for the bench module (`python -m aloft.compile`), each as (kind, spec JSON).
fn compile(module: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let output = Command::new(python())
        .args(["-m", "aloft.compile"])
        .arg(module)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "python -m aloft.compile failed (is the SDK installed? pip install ./sdk/python): {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let documents: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_slice(&output.stdout)?;
    documents
        .into_iter()
        .map(|mut document| {
            let kind = document
                .remove("kind")
                .and_then(|kind| kind.as_str().map(str::to_string))
                .ok_or_else(|| anyhow::anyhow!("a compiled document has no kind"))?;
            Ok((kind, serde_json::Value::Object(document).to_string()))
        })
        .collect()
}

pub async fn run(
    nodes: usize,
    samples: usize,
    runs: usize,
    kafka_brokers: Option<&str>,
    database_url: Option<&str>,
) -> anyhow::Result<SdkBench> {
    let scratch = tempfile::tempdir()?;
    let module = scratch.path().join("bench_tasks.py");
    std::fs::write(&module, MODULE)?;
    let (python_p50_ms, python_p95_ms, entrypoint_p50_ms, entrypoint_p95_ms) =
        entrypoint_overhead(scratch.path(), samples)?;

    let mut config = FleetConfig::embedded(scratch.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    config.bootstrap_project = Some("bench".to_string());
    // An interpreter per task: as many at once as there are cores, twice over (unlimited, 1,000 would start
    // together and starve the fleet itself of CPU).
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    config.max_running_attempts = Some(2 * cores);
    if let Some(brokers) = kafka_brokers {
        config = config.on_kafka(brokers, "bench");
    }
    if let Some(url) = database_url {
        config = config.on_database(url).await?;
    }
    let fleet = Fleet::start(config).await?;
    let outcome = fan_out(&fleet, &module, nodes, runs).await;
    fleet.stop().await?;
    Ok(SdkBench {
        python_p50_ms,
        python_p95_ms,
        entrypoint_p50_ms,
        entrypoint_p95_ms,
        fan_out: outcome?,
    })
}

async fn fan_out(
    fleet: &Fleet,
    module: &Path,
    nodes: usize,
    runs: usize,
) -> anyhow::Result<Vec<BenchResult>> {
    let mut client = connect(&fleet.endpoint()).await?;
    let (project, domain) = ("bench", "development");
    let mut workflow = None;
    for (kind, spec_json) in compile(module)? {
        let request = wire::RegisterRequest {
            project: project.into(),
            domain: domain.into(),
            spec_json,
        };
        let registered = register_when_ready(&mut client, &kind, request).await?;
        if kind == "workflow" {
            workflow = registered.id;
        }
    }
    let workflow = workflow.ok_or_else(|| anyhow::anyhow!("the bench module defines no workflow"))?;
    let items: Vec<usize> = (0..nodes).collect();
    let mut results = Vec::new();
    for _ in 0..runs.max(1) {
        let target = wire::create_execution_request::Target::Workflow(workflow.clone());
        let inputs = [("items".to_string(), serde_json::to_string(&items)?)].into();
        results.push(launch_and_wait(&mut client, project, domain, target, inputs).await?);
    }
    Ok(results)
}
