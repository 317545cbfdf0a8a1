//! `aloft-bench executions`: N concurrent executions of a 3-node workflow whose middle node sleeps, held by
//! ONE `aloft-propeller` process on Kafka. Reports the propeller's resident memory once every execution is
//! in its sleep (total and per execution), then SIGKILLs it and times a replacement's recovery: from the
//! kill until it owns the partitions (the broker's session timeout) and from then until it has rebuilt every
//! execution from the log and claimed the partitions (its /readyz).
//!
//! The requests are appended to the log as admin would write them, so the figures are the propeller's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aloft_core::compiler::compile_workflow;
use aloft_core::events::{ExecutionEvent, Outputs};
use aloft_core::spec::{Interface, NodeSpec, RetryPolicy, TaskKind, TaskRef, TaskSpec, WorkflowSpec};
use aloft_core::{ExecutionId, Identifier};
use aloft_eventlog::{partition_for_key, Envelope, LogBackend, Payload, Topics};

#[derive(Debug, Clone)]
pub struct ExecutionsBenchResult {
    pub executions: usize,
    pub append_seconds: f64,
    pub all_sleeping_seconds: f64,
    pub rss_bytes: u64,
    pub kill_to_assigned_seconds: f64,
    pub assigned_to_ready_seconds: f64,
}

const PARTITIONS: u32 = 8;

fn task(name: &str, run: TaskKind) -> TaskSpec {
    TaskSpec {
        name: name.to_string(),
        version: Some("1".to_string()),
        interface: Interface::default(),
        run,
        retries: RetryPolicy::default(),
        timeout: None,
        cache: None,
        resources: None,
        interruptible: false,
        secrets: Vec::new(),
    }
}

/// noop -> sleep(`sleep`) -> noop.
fn workflow(sleep: &str) -> anyhow::Result<aloft_core::CompiledWorkflow> {
    let node = |id: &str, task: &str, after: Option<&str>| NodeSpec {
        after: after.map(|a| vec![a.to_string()]).unwrap_or_default(),
        ..NodeSpec::task(id, task, Default::default())
    };
    let spec = WorkflowSpec {
        name: "bench-hold".to_string(),
        version: Some("1".to_string()),
        interface: Interface::default(),
        nodes: vec![
            node("start", "noop", None),
            node("hold", "sleep", Some("start")),
            node("end", "noop", Some("hold")),
        ],
        outputs: Default::default(),
        max_parallelism: None,
        on_failure: Default::default(),
    };
    let sleep = sleep.to_string();
    let resolve = move |task_ref: &TaskRef| {
        let spec = match task_ref.name.as_str() {
            "noop" => task("noop", TaskKind::Noop),
            "sleep" => task(
                "sleep",
                TaskKind::Sleep {
                    duration: sleep.clone(),
                },
            ),
            _ => return None,
        };
        let id = Identifier {
            project: "bench".into(),
            domain: "development".into(),
            name: task_ref.name.clone(),
            version: "1".into(),
        };
        Some((id, spec))
    };
    let id = Identifier {
        project: "bench".into(),
        domain: "development".into(),
        name: "bench-hold".into(),
        version: "1".into(),
    };
    compile_workflow(id, &spec, &resolve).map_err(|e| anyhow::anyhow!("bench workflow: {e}"))
}

/// An `aloft-propeller` process of this benchmark, with its ops endpoint.
struct Propeller {
    child: Child,
    ops_port: u16,
}

impl Propeller {
    fn start(
        brokers: &str,
        topics: &Topics,
        work_dir: &std::path::Path,
        member: &str,
    ) -> anyhow::Result<Self> {
        let binary = std::env::current_exe()?
            .parent()
            .map(|dir| dir.join("aloft-propeller"))
            .unwrap_or_else(|| PathBuf::from("aloft-propeller"));
        let ops_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(&binary)
            .env("ALOFT_KAFKA_BROKERS", brokers)
            .env("ALOFT_TOPIC_PREFIX", &topics.prefix)
            .env("ALOFT_PARTITIONS", PARTITIONS.to_string())
            .env("ALOFT_WORK_DIR", work_dir)
            .env("ALOFT_MEMBER_ID", member)
            // Recovery is measured as a replay of the partitions from offset 0 (no snapshot database).
            .env("ALOFT_SNAPSHOT_INTERVAL_SECS", "0")
            .env("ALOFT_OPS_LISTEN", format!("127.0.0.1:{ops_port}"))
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("cannot start {} (build it next to aloft): {e}", binary.display())
            })?;
        Ok(Propeller { child, ops_port })
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        aloft_cli::ops_probe::http_get(self.ops_port, path).await
    }

    /// A counter or gauge from /metrics (0 when absent).
    async fn metric(&self, name: &str) -> f64 {
        let Some((200, body)) = self.get("/metrics").await else {
            return 0.0;
        };
        body.lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    async fn ready(&self) -> bool {
        matches!(self.get("/readyz").await, Some((200, _)))
    }

    fn rss_bytes(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find(|line| line.starts_with("VmRSS:"))
                    .and_then(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .map(|kib| kib * 1024)
            .unwrap_or(0)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Propeller {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Fails with what did not happen once `deadline` has passed.
fn check_deadline(deadline: Instant, what: &str) -> anyhow::Result<()> {
    if Instant::now() > deadline {
        anyhow::bail!("{what} did not happen in time");
    }
    Ok(())
}

const POLL: Duration = Duration::from_millis(50);

pub async fn run(kafka_brokers: Option<&str>, executions: usize) -> anyhow::Result<ExecutionsBenchResult> {
    let Some(brokers) = kafka_brokers else {
        anyhow::bail!(
            "bench executions needs --kafka-brokers: it measures a separate aloft-propeller process"
        );
    };
    let scratch = tempfile::tempdir()?;
    let topics = Topics::with_prefix(&format!("bench-{}.", uuid::Uuid::new_v4().simple()));
    let backend = LogBackend::Kafka {
        brokers: brokers.to_string(),
    };
    let log = aloft_eventlog::open(&backend, &topics, PARTITIONS).await?;
    let workflow = workflow("1h")?;
    let mut first = Propeller::start(brokers, &topics, scratch.path(), "bench-propeller-1")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !first.ready().await {
        check_deadline(deadline, "the propeller's readiness")?;
        tokio::time::sleep(POLL).await;
    }

    let started = Instant::now();
    let mut batches: HashMap<u32, Vec<(String, Vec<u8>)>> = HashMap::new();
    for index in 0..executions {
        let id = ExecutionId {
            project: "bench".into(),
            domain: "development".into(),
            name: format!("hold-{index}"),
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let at = chrono::Utc::now().timestamp_millis();
        let key = id.partition_key();
        let stream = aloft_core::StreamId::request(&id, request_id.as_str()).to_string();
        let event = ExecutionEvent::ExecutionRequested {
            execution: id,
            request_id: request_id.clone(),
            workflow: Box::new(workflow.clone()),
            inputs: Outputs::new(),
            launch_plan: None,
            requested_at: at,
            scheduled_at: None,
            overwrite_cache: false,
            notifications: None,
            recovery: None,
            parent: None,
            labels: Default::default(),
        };
        let envelope = Envelope::unsequenced(stream, at, Payload::Execution(event));
        batches
            .entry(partition_for_key(&key, PARTITIONS))
            .or_default()
            .push((key, envelope.encode()?));
    }
    crate::engine::append_by_partition(&*log, &topics.executions, batches).await?;
    let append_seconds = started.elapsed().as_secs_f64();
    eprintln!("{executions} execution requests appended in {append_seconds:.1} s; waiting until all sleep");

    // Every execution sleeps once the noop and the sleep of each have started.
    let wanted = (2 * executions) as f64;
    let mut last_report = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let started = first.metric("aloft_propeller_attempts_started_total").await;
        if started >= wanted {
            break;
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("{started}/{wanted} attempts started");
            last_report = Instant::now();
        }
        check_deadline(deadline, "every execution reaching its sleep")?;
        tokio::time::sleep(POLL).await;
    }
    let all_sleeping_seconds = started.elapsed().as_secs_f64();
    // Let the decisions in flight settle before reading memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_bytes = first.rss_bytes();
    eprintln!(
        "all {executions} asleep after {all_sleeping_seconds:.1} s; propeller RSS {} MiB; killing it",
        rss_bytes / (1024 * 1024)
    );

    first.kill();
    let killed = Instant::now();
    let second = Propeller::start(brokers, &topics, scratch.path(), "bench-propeller-2")?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while second.metric("aloft_propeller_partitions_owned").await < 1.0 {
        check_deadline(deadline, "the replacement owning partitions")?;
        tokio::time::sleep(POLL).await;
    }
    let assigned = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(600);
    while !second.ready().await {
        check_deadline(deadline, "the replacement's readiness")?;
        tokio::time::sleep(POLL).await;
    }
    Ok(ExecutionsBenchResult {
        executions,
        append_seconds,
        all_sleeping_seconds,
        rss_bytes,
        kill_to_assigned_seconds: assigned.duration_since(killed).as_secs_f64(),
        assigned_to_ready_seconds: assigned.elapsed().as_secs_f64(),
    })
}
