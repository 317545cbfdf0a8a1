//! `aloft-bench chain|fanout|map`: engine overhead on chains and fan-outs of `noop` nodes, on the embedded backend or on
//! Kafka (+ Postgres). Times come from the events themselves: engine time is `ExecutionStarted` to
//! `ExecutionFinished` as stamped by the propeller; wall time is from the create call until admin's
//! read model shows the execution finished.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aloft_core::spec::{Interface, NodeSpec, RetryPolicy, TaskKind, TaskSpec, WorkflowSpec};
use aloft_eventlog::{LogBackend, Topics};
use aloft_proto::v1 as wire;

use aloft_cli::client::connect;
use aloft_cli::fleet::{Fleet, FleetConfig};
use aloft_cli::render::is_terminal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// n0 -> n1 -> ... : one node at a time, measures per-step latency.
    Chain,
    /// N independent nodes: measures throughput.
    Fanout,
    /// One map node over N items of a noop task: measures map throughput.
    Map,
}

/// The map shape's task: a noop taking one integer item.
const ITEM_TASK: &str = "noop-item";

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub shape: Shape,
    pub nodes: usize,
    pub kafka_brokers: Option<String>,
    pub database_url: Option<String>,
    pub runs: usize,
    /// The noop task is cached and each node gets its own key (its index as input).
    pub cached: bool,
    /// The propeller stores snapshots this often while the bench runs.
    pub snapshot_interval: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct BenchResult {
    pub engine_millis: i64,
    pub wall_millis: u128,
    pub phase: String,
}

/// Chain or fan-out of `noop` nodes; `cached` ones take their index as input, so each has its own key.
pub fn workflow_spec(shape: Shape, nodes: usize, cached: bool) -> WorkflowSpec {
    if shape == Shape::Map {
        let items: Vec<usize> = (0..nodes).collect();
        let inputs = [(
            "i".to_string(),
            aloft_core::spec::BindingSpec::Constant {
                value: serde_json::Value::from(items),
            },
        )];
        let map = NodeSpec {
            task: None,
            map: Some(aloft_core::spec::MapSpec {
                item_resources: None,
                task: ITEM_TASK.to_string(),
                over: "i".to_string(),
                concurrency: None,
                min_success_ratio: None,
            }),
            ..NodeSpec::task("m", ITEM_TASK, inputs.into_iter().collect())
        };
        return WorkflowSpec {
            name: format!("bench-map-{nodes}"),
            version: None,
            interface: Interface::default(),
            nodes: vec![map],
            outputs: Default::default(),
            max_parallelism: None,
            on_failure: Default::default(),
        };
    }
    let node_specs = (0..nodes)
        .map(|index| NodeSpec {
            id: format!("n{index}"),
            task: Some(if cached { "cached-noop" } else { "noop" }.to_string()),
            workflow: None,
            branch: None,
            gate: None,
            map: None,
            dynamic: None,
            launch_plan: None,
            inputs: if cached {
                [(
                    "i".to_string(),
                    aloft_core::spec::BindingSpec::Constant {
                        value: serde_json::Value::from(index),
                    },
                )]
                .into_iter()
                .collect()
            } else {
                Default::default()
            },
            after: match shape {
                Shape::Chain if index > 0 => vec![format!("n{}", index - 1)],
                _ => vec![],
            },
            retries: None,
            timeout: None,
            interruptible: None,
            resources: None,
        })
        .collect();
    WorkflowSpec {
        name: format!(
            "bench-{}{}-{nodes}",
            if shape == Shape::Chain { "chain" } else { "fanout" },
            if cached { "-cached" } else { "" }
        ),
        version: None,
        interface: Interface::default(),
        nodes: node_specs,
        outputs: Default::default(),
        max_parallelism: None,
        on_failure: Default::default(),
    }
}

pub async fn run(options: BenchOptions) -> anyhow::Result<Vec<BenchResult>> {
    let scratch = tempfile::tempdir()?;
    let mut config = FleetConfig::embedded(scratch.path(), SocketAddr::from(([127, 0, 0, 1], 0)));
    config.bootstrap_project = Some("bench".to_string());
    if let Some(brokers) = &options.kafka_brokers {
        config = config.on_kafka(brokers, "bench");
    }
    if let Some(url) = &options.database_url {
        config = config.on_database(url).await?;
    }
    config.snapshot_interval = options.snapshot_interval;
    let fleet = Fleet::start(config).await?;
    let outcome = run_on(&fleet, &options).await;
    fleet.stop().await?;
    outcome
}

async fn run_on(fleet: &Fleet, options: &BenchOptions) -> anyhow::Result<Vec<BenchResult>> {
    let mut client = connect(&fleet.endpoint()).await?;
    let (project, domain) = ("bench", "development");
    let noop = TaskSpec {
        name: "noop".to_string(),
        version: Some("1".to_string()),
        interface: Interface::default(),
        run: TaskKind::Noop,
        retries: RetryPolicy::default(),
        timeout: None,
        cache: None,
        resources: None,
        interruptible: false,
        secrets: Vec::new(),
    };
    let register = |spec_json: String| wire::RegisterRequest {
        project: project.into(),
        domain: domain.into(),
        spec_json,
    };
    register_when_ready(&mut client, "task", register(serde_json::to_string(&noop)?)).await?;
    let cached_noop = TaskSpec {
        name: "cached-noop".to_string(),
        interface: Interface {
            inputs: [("i".to_string(), aloft_core::LiteralType::Integer)]
                .into_iter()
                .collect(),
            outputs: Default::default(),
            ..Default::default()
        },
        cache: Some(aloft_core::cache::CacheConfig {
            version: "1".to_string(),
            serialize: false,
            ignored_inputs: Vec::new(),
        }),
        ..noop.clone()
    };
    if options.cached {
        client
            .register_task(register(serde_json::to_string(&cached_noop)?))
            .await
            .map_err(|s| anyhow::anyhow!("registering the cached noop task: {}", s.message()))?;
    }
    if options.shape == Shape::Map {
        let item_task = TaskSpec {
            name: ITEM_TASK.to_string(),
            cache: None,
            ..cached_noop.clone()
        };
        client
            .register_task(register(serde_json::to_string(&item_task)?))
            .await
            .map_err(|s| anyhow::anyhow!("registering the map's noop task: {}", s.message()))?;
    }
    let workflow = workflow_spec(options.shape, options.nodes, options.cached);
    let registered = client
        .register_workflow(register(serde_json::to_string(&workflow)?))
        .await
        .map_err(|s| anyhow::anyhow!("registering the workflow: {}", s.message()))?
        .into_inner();
    let workflow_id = registered.id.unwrap_or_default();
    let mut results = Vec::new();
    for _ in 0..options.runs.max(1) {
        let target = wire::create_execution_request::Target::Workflow(workflow_id.clone());
        results.push(launch_and_wait(&mut client, project, domain, target, Default::default()).await?);
    }
    Ok(results)
}

/// Registers a `kind` ("task" or "workflow") document, retrying while the request's project is not visible
/// yet (the bootstrap project is created by admin at start).
pub async fn register_when_ready(
    client: &mut aloft_cli::client::AdminClient,
    kind: &str,
    request: wire::RegisterRequest,
) -> anyhow::Result<wire::RegisterResponse> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = match kind {
            "task" => client.register_task(request.clone()).await,
            "workflow" => client.register_workflow(request.clone()).await,
            other => anyhow::bail!("the bench registers tasks and workflows, not a {other}"),
        };
        match answer {
            Ok(registered) => return Ok(registered.into_inner()),
            Err(status) if Instant::now() < deadline && status.code() == tonic::Code::NotFound => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(status) => anyhow::bail!("registering the {kind}: {}", status.message()),
        }
    }
}

/// Launches `target` in `project/domain` with `text_inputs` and waits until admin's read model shows it
/// ended: its phase, the engine's time (`ExecutionStarted` to `ExecutionFinished`) and the wall time.
pub async fn launch_and_wait(
    client: &mut aloft_cli::client::AdminClient,
    project: &str,
    domain: &str,
    target: wire::create_execution_request::Target,
    text_inputs: std::collections::HashMap<String, String>,
) -> anyhow::Result<BenchResult> {
    let started = Instant::now();
    let created = client
        .create_execution(wire::CreateExecutionRequest {
            project: project.into(),
            domain: domain.into(),
            target: Some(target),
            text_inputs,
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("creating the execution: {}", s.message()))?
        .into_inner();
    let id = created.id.unwrap_or_default();
    let phase = loop {
        let executions = client
            .list_executions(wire::ListExecutionsRequest {
                project: project.into(),
                domain: domain.into(),
                limit: 5,
                ..Default::default()
            })
            .await?
            .into_inner()
            .executions;
        if let Some(execution) = executions
            .iter()
            .find(|e| e.id.as_ref().is_some_and(|i| i.name == id.name))
        {
            if is_terminal(execution.phase) {
                break aloft_cli::render::execution_phase(execution.phase).to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let wall_millis = started.elapsed().as_millis();
    let history = client
        .get_execution_history(wire::GetExecutionRequest {
            id: Some(id.clone()),
            ..Default::default()
        })
        .await?
        .into_inner();
    let time_of = |kind: &str| {
        history
            .events
            .iter()
            .find(|e| e.kind == kind)
            .map(|e| e.occurred_at_millis)
    };
    let engine_millis = match (time_of("ExecutionStarted"), time_of("ExecutionFinished")) {
        (Some(start), Some(end)) => end - start,
        _ => anyhow::bail!("execution {} has no start/finish events", id.name),
    };
    Ok(BenchResult {
        engine_millis,
        wall_millis,
        phase,
    })
}

/// Appends records grouped by partition, one batch per partition, all in flight at once (how the benches
/// load the log as many admins or propellers would).
pub async fn append_by_partition(
    log: &dyn aloft_eventlog::EventLog,
    topic: &str,
    batches: std::collections::HashMap<u32, Vec<(String, Vec<u8>)>>,
) -> anyhow::Result<()> {
    let appends: Vec<_> = batches
        .into_iter()
        .map(|(partition, records)| log.append_batch(topic, partition, records))
        .collect();
    for append in appends {
        append.await?;
    }
    Ok(())
}

/// Latency percentiles of the event log itself, in microseconds.
#[derive(Debug, Clone)]
pub struct LogLatency {
    pub ack_p50: u128,
    pub ack_p99: u128,
    pub read_back_p50: u128,
    pub read_back_p99: u128,
}

/// Appends `samples` records one at a time; measures the acknowledgement and the time until a reader that
/// follows the partition sees each one (the propeller's decide -> apply round trip).
pub async fn log_round_trip(kafka_brokers: Option<&str>, samples: usize) -> anyhow::Result<LogLatency> {
    let scratch = tempfile::tempdir()?;
    let backend = match kafka_brokers {
        Some(brokers) => LogBackend::Kafka {
            brokers: brokers.to_string(),
        },
        None => LogBackend::Embedded {
            dir: scratch.path().to_path_buf(),
        },
    };
    let topics = Topics::with_prefix(&format!("bench-{}.", uuid::Uuid::new_v4().simple()));
    let log = aloft_eventlog::open(&backend, &topics, 1).await?;
    let mut reader = log.read(vec![(topics.executions.clone(), 0, 0)]).await?;
    let (mut acks, mut read_backs) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for index in 0..samples {
        let started = Instant::now();
        log.append_batch(
            &topics.executions,
            0,
            vec![("k".to_string(), index.to_le_bytes().to_vec())],
        )
        .await?;
        acks.push(started.elapsed().as_micros());
        let mut seen = false;
        while !seen {
            seen = reader
                .next_batch(10)
                .await?
                .iter()
                .any(|r| r.offset == index as u64);
        }
        read_backs.push(started.elapsed().as_micros());
    }
    let percentile = |values: &mut Vec<u128>, p: f64| {
        values.sort_unstable();
        values[((values.len() as f64 - 1.0) * p).round() as usize]
    };
    Ok(LogLatency {
        ack_p50: percentile(&mut acks, 0.5),
        ack_p99: percentile(&mut acks, 0.99),
        read_back_p50: percentile(&mut read_backs, 0.5),
        read_back_p99: percentile(&mut read_backs, 0.99),
    })
}

/// Fire lag of `count` every-minute schedules on one scheduler (embedded log, wall clock), in milliseconds,
/// with the CPU time and resident memory of this process over the measured minutes.
#[derive(Debug, Clone)]
pub struct ScheduleBench {
    pub fires: usize,
    pub lag_p50_millis: i64,
    pub lag_p99_millis: i64,
    pub lag_max_millis: i64,
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    pub resident_mib: f64,
}

fn process_cpu_seconds() -> f64 {
    // utime + stime, fields 14 and 15 of /proc/self/stat, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn resident_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

pub async fn schedules(count: usize, minutes: u32) -> anyhow::Result<ScheduleBench> {
    use aloft_core::compiler::CompiledWorkflow;
    use aloft_core::events::{RegistryEvent, ScheduleEvent};
    use aloft_core::schedule::{CatchUp, ScheduleSpec};
    use aloft_core::spec::LaunchPlanSpec;
    use aloft_core::Identifier;
    use aloft_eventlog::{Envelope, Payload};
    use std::sync::Arc;

    let scratch = tempfile::tempdir()?;
    let topics = Topics::with_prefix("");
    let log = aloft_eventlog::open(
        &LogBackend::Embedded {
            dir: scratch.path().to_path_buf(),
        },
        &topics,
        8,
    )
    .await?;
    let id = |name: String| Identifier {
        project: "bench".into(),
        domain: "development".into(),
        name,
        version: "1".into(),
    };
    let workflow_id = id("noop".into());
    let noop = TaskSpec {
        name: "noop".into(),
        version: Some("1".into()),
        interface: Interface::default(),
        run: TaskKind::Noop,
        retries: RetryPolicy::default(),
        timeout: None,
        cache: None,
        resources: None,
        interruptible: false,
        secrets: Vec::new(),
    };
    let now = chrono::Utc::now().timestamp_millis();
    let mut events = vec![RegistryEvent::WorkflowRegistered {
        id: workflow_id.clone(),
        spec: workflow_spec(Shape::Fanout, 1, false),
        compiled: Box::new(CompiledWorkflow::for_single_task(workflow_id.clone(), noop)),
        digest: "bench".into(),
        at: now,
    }];
    for index in 0..count {
        let plan = id(format!("schedule-{index}"));
        let spec = LaunchPlanSpec {
            name: plan.name.clone(),
            version: Some("1".into()),
            workflow: "noop@1".into(),
            default_inputs: Default::default(),
            fixed_inputs: Default::default(),
            schedule: Some(ScheduleSpec {
                cron: Some("* * * * *".into()),
                fixed_rate: None,
                timezone: None,
                kickoff_time_input: None,
                catch_up: CatchUp::Latest,
                catch_up_max: None,
            }),
            max_parallelism: None,
            notifications: Vec::new(),
        };
        events.push(RegistryEvent::LaunchPlanRegistered {
            id: plan.clone(),
            spec,
            workflow: workflow_id.clone(),
            default_inputs: Default::default(),
            fixed_inputs: Default::default(),
            digest: "bench".into(),
            at: now,
        });
        events.push(RegistryEvent::LaunchPlanActivated { id: plan, at: now });
    }
    let records = events
        .into_iter()
        .map(|event| {
            let stream = event.stream();
            let envelope = Envelope::unsequenced(stream.clone(), now, Payload::Registry(event));
            Ok((stream, envelope.encode()?))
        })
        .collect::<Result<Vec<_>, aloft_eventlog::Error>>()?;
    log.append_batch(&topics.registry, 0, records).await?;

    let options = aloft_scheduler::SchedulerOptions::new(topics.clone(), "bench".into());
    let clock = Arc::new(aloft_scheduler::clock::SystemClock {
        interval: Duration::from_millis(500),
    });
    let (scheduler, _handle) = aloft_scheduler::Scheduler::new(options, Arc::clone(&log), clock);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(scheduler.run(shutdown.clone()));
    // Measure whole minutes: from just after the next boundary to just after the last one.
    let until_boundary = 60_000 - chrono::Utc::now().timestamp_millis().rem_euclid(60_000);
    tokio::time::sleep(Duration::from_millis(until_boundary as u64 + 100)).await;
    let cpu_before = process_cpu_seconds();
    let wall = Instant::now();
    tokio::time::sleep(Duration::from_secs(60 * u64::from(minutes.max(1)))).await;
    // Leave time for the last boundary's fires to finish.
    let deadline = Instant::now() + Duration::from_secs(30);
    let expected = count * (minutes.max(1) as usize + 1);
    let mut lags = Vec::new();
    loop {
        lags.clear();
        let end = log.end_offset(&topics.schedules, 0).await?;
        let mut reader = log.read(vec![(topics.schedules.clone(), 0, 0)]).await?;
        let mut next = 0;
        while next < end {
            for record in reader.next_batch(10_000).await? {
                next = record.offset + 1;
                if let Ok(Envelope {
                    payload:
                        Payload::Schedule(ScheduleEvent::ScheduleFired {
                            scheduled_at,
                            fired_at,
                            ..
                        }),
                    ..
                }) = Envelope::decode(&record.payload)
                {
                    lags.push(fired_at - scheduled_at);
                }
            }
        }
        if lags.len() >= expected || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cpu_seconds = process_cpu_seconds() - cpu_before;
    let wall_seconds = wall.elapsed().as_secs_f64();
    let resident = resident_mib();
    shutdown.cancel();
    task.await??;
    lags.sort_unstable();
    let percentile = |p: f64| {
        lags.get(((lags.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    Ok(ScheduleBench {
        fires: lags.len(),
        lag_p50_millis: percentile(0.5),
        lag_p99_millis: percentile(0.99),
        lag_max_millis: lags.last().copied().unwrap_or(0),
        cpu_seconds,
        wall_seconds,
        resident_mib: resident,
    })
}
