//! The scheduler against the embedded log with a manual clock: a simulated hour, downtime under each
//! catch-up policy, and leader kills with two replicas.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aloft_core::compiler::CompiledWorkflow;
use aloft_core::events::{ExecutionEvent, RegistryEvent};
use aloft_core::schedule::{CatchUp, ScheduleSpec};
use aloft_core::spec::{Interface, LaunchPlanSpec, RetryPolicy, TaskKind, TaskSpec};
use aloft_core::{Identifier, LiteralType, Value};
use aloft_eventlog::{Envelope, EventLog, LogBackend, Payload, Topics};
use aloft_scheduler::clock::{Clock, ManualClock};
use aloft_scheduler::{Scheduler, SchedulerHandle, SchedulerOptions};
use chrono::{DateTime, Duration as Minutes, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn start_time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn id(name: &str) -> Identifier {
    Identifier {
        project: "p".into(),
        domain: "d".into(),
        name: name.into(),
        version: "1".into(),
    }
}

async fn append_registry(log: &Arc<dyn EventLog>, topics: &Topics, event: RegistryEvent) {
    let stream = event.stream();
    let envelope = Envelope::unsequenced(stream.clone(), event.at(), Payload::Registry(event));
    log.append(&topics.registry, &stream, envelope.encode().unwrap())
        .await
        .unwrap();
}

/// A workflow with a `kickoff` datetime input, and an every-minute launch plan per policy, activated at start.
async fn register(log: &Arc<dyn EventLog>, topics: &Topics, plans: &[(&str, CatchUp)]) {
    let task = TaskSpec {
        name: "job".into(),
        version: Some("1".into()),
        interface: Interface {
            inputs: [("kickoff".to_string(), LiteralType::Datetime)].into(),
            outputs: BTreeMap::new(),
            ..Default::default()
        },
        run: TaskKind::Noop,
        retries: RetryPolicy::default(),
        timeout: None,
        cache: None,
        resources: None,
        interruptible: false,
        secrets: Vec::new(),
    };
    let workflow = CompiledWorkflow::for_single_task(id("job"), task);
    let event = RegistryEvent::WorkflowRegistered {
        id: id("job"),
        spec: aloft_core::spec::WorkflowSpec {
            name: "job".into(),
            version: None,
            interface: Interface::default(),
            nodes: vec![],
            outputs: BTreeMap::new(),
            max_parallelism: None,
            on_failure: Default::default(),
        },
        compiled: Box::new(workflow),
        digest: "d".into(),
        at: 0,
    };
    append_registry(log, topics, event).await;
    for (name, policy) in plans {
        let spec = LaunchPlanSpec {
            name: name.to_string(),
            version: Some("1".into()),
            workflow: "job@1".into(),
            default_inputs: BTreeMap::new(),
            fixed_inputs: BTreeMap::new(),
            schedule: Some(ScheduleSpec {
                cron: Some("*/1 * * * *".into()),
                fixed_rate: None,
                timezone: None,
                kickoff_time_input: Some("kickoff".into()),
                catch_up: *policy,
                catch_up_max: None,
            }),
            max_parallelism: None,
            notifications: Vec::new(),
        };
        let registered = RegistryEvent::LaunchPlanRegistered {
            id: id(name),
            spec,
            workflow: id("job"),
            default_inputs: BTreeMap::new(),
            fixed_inputs: BTreeMap::new(),
            digest: "d".into(),
            at: 0,
        };
        append_registry(log, topics, registered).await;
        append_registry(
            log,
            topics,
            RegistryEvent::LaunchPlanActivated {
                id: id(name),
                at: start_time().timestamp_millis(),
            },
        )
        .await;
    }
}

struct Running {
    handle: SchedulerHandle,
    task: JoinHandle<anyhow::Result<()>>,
    shutdown: CancellationToken,
}

fn start(log: &Arc<dyn EventLog>, topics: &Topics, clock: &Arc<ManualClock>, member: &str) -> Running {
    start_with(log, clock, SchedulerOptions::new(topics.clone(), member.into()))
}

fn start_with(log: &Arc<dyn EventLog>, clock: &Arc<ManualClock>, options: SchedulerOptions) -> Running {
    let (scheduler, handle) = Scheduler::new(options, Arc::clone(log), Arc::clone(clock) as Arc<dyn Clock>);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(scheduler.run(shutdown.clone()));
    Running {
        handle,
        task,
        shutdown,
    }
}

/// Waits until one of `schedulers` leads and has processed everything up to `time`.
async fn wait_processed(
    log: &Arc<dyn EventLog>,
    topics: &Topics,
    schedulers: &[&SchedulerHandle],
    time: DateTime<Utc>,
) {
    let registry_end = log.end_offset(&topics.registry, 0).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let done = schedulers.iter().any(|handle| {
            let progress = *handle.progress.borrow();
            progress.leader
                && progress.registry_offset >= registry_end
                && progress.processed_until.is_some_and(|p| p >= time)
        });
        if done {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no scheduler processed {time}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every `ExecutionRequested` on the log: (launch plan, execution name, scheduled time, kickoff input).
async fn requests(log: &Arc<dyn EventLog>, topics: &Topics) -> Vec<(String, String, i64, Option<Value>)> {
    let partitions = log.partition_count(&topics.executions).await.unwrap();
    let mut found = Vec::new();
    for partition in 0..partitions {
        let end = log.end_offset(&topics.executions, partition).await.unwrap();
        if end == 0 {
            continue;
        }
        let mut reader = log
            .read(vec![(topics.executions.clone(), partition, 0)])
            .await
            .unwrap();
        let mut next = 0;
        while next < end {
            for record in reader.next_batch(1000).await.unwrap() {
                next = record.offset + 1;
                if let Payload::Execution(ExecutionEvent::ExecutionRequested {
                    execution,
                    launch_plan,
                    scheduled_at,
                    inputs,
                    ..
                }) = Envelope::decode(&record.payload).unwrap().payload
                {
                    found.push((
                        launch_plan.unwrap().name,
                        execution.name,
                        scheduled_at.unwrap(),
                        inputs.get("kickoff").cloned(),
                    ));
                }
            }
        }
    }
    // Executions spread over partitions by name: order them by schedule time.
    found.sort_by_key(|request| request.2);
    found
}

/// The scheduled times `plan` fired at, as minutes after the start, in order.
fn minutes_fired(fired: &[(String, String, i64, Option<Value>)], plan: &str) -> Vec<i64> {
    fired
        .iter()
        .filter(|f| f.0 == plan)
        .map(|f| (f.2 - start_time().timestamp_millis()) / 60_000)
        .collect()
}

/// An embedded log of four partitions in a fresh directory (kept while the test holds it).
async fn setup() -> (tempfile::TempDir, Topics, Arc<dyn EventLog>) {
    let dir = tempfile::tempdir().unwrap();
    let topics = Topics::with_prefix("");
    let backend = LogBackend::Embedded {
        dir: dir.path().into(),
    };
    let log = aloft_eventlog::open(&backend, &topics, 4).await.unwrap();
    (dir, topics, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_every_minute_schedule_fires_sixty_times_in_a_simulated_hour_with_the_kickoff_time() {
    let (_dir, topics, log) = setup().await;
    register(&log, &topics, &[("hourly-report", CatchUp::Latest)]).await;
    let clock = Arc::new(ManualClock::new(start_time()));
    let scheduler = start(&log, &topics, &clock, "only");
    for _ in 0..60 {
        clock.advance(Minutes::minutes(1));
        wait_processed(&log, &topics, &[&scheduler.handle], clock.now()).await;
    }
    let fired = requests(&log, &topics).await;
    assert_eq!(fired.len(), 60);
    for (index, (_, name, scheduled_at, kickoff)) in fired.iter().enumerate() {
        let expected = start_time() + Minutes::minutes(index as i64 + 1);
        assert_eq!(*scheduled_at, expected.timestamp_millis());
        assert_eq!(kickoff, &Some(Value::Datetime(expected)));
        assert_eq!(
            name,
            &aloft_scheduler::execution_name(&id("hourly-report"), expected)
        );
    }
    scheduler.shutdown.cancel();
    scheduler.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_minutes_of_downtime_follow_each_catch_up_policy() {
    let (_dir, topics, log) = setup().await;
    register(
        &log,
        &topics,
        &[
            ("all", CatchUp::All),
            ("latest", CatchUp::Latest),
            ("none", CatchUp::None),
        ],
    )
    .await;
    let clock = Arc::new(ManualClock::new(start_time()));
    let first = start(&log, &topics, &clock, "first");
    clock.advance(Minutes::minutes(1));
    wait_processed(&log, &topics, &[&first.handle], clock.now()).await;
    first.shutdown.cancel();
    first.task.await.unwrap().unwrap();

    // Down from 12:01 to 12:11:45: 12:02 ... 12:11 are missed (all further back than the on-time grace).
    clock.advance(Minutes::minutes(10) + Minutes::seconds(45));
    let second = start(&log, &topics, &clock, "second");
    wait_processed(&log, &topics, &[&second.handle], clock.now()).await;
    let fired = requests(&log, &topics).await;
    let times = |plan: &str| minutes_fired(&fired, plan);
    assert_eq!(
        times("all"),
        (1..=11).collect::<Vec<_>>(),
        "all fires every missed time once, in order"
    );
    assert_eq!(
        times("latest"),
        vec![1, 11],
        "latest fires only the most recent missed time"
    );
    assert_eq!(times("none"), vec![1], "none fires none of them");

    // And the skipped times stay skipped after another restart.
    second.task.abort();
    let third = start(&log, &topics, &clock, "third");
    wait_processed(&log, &topics, &[&third.handle], clock.now()).await;
    assert_eq!(requests(&log, &topics).await.len(), fired.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_killing_the_leader_twenty_times_fires_each_time_exactly_once() {
    let (_dir, topics, log) = setup().await;
    register(&log, &topics, &[("ha", CatchUp::All)]).await;
    let clock = Arc::new(ManualClock::new(start_time()));
    let mut replicas = vec![
        start(&log, &topics, &clock, "replica-0"),
        start(&log, &topics, &clock, "replica-1"),
    ];
    let mut generation = 2;
    for round in 0..20u64 {
        clock.advance(Minutes::minutes(1));
        // Kill the leader at a varying point: before, during or after it handles the new minute.
        tokio::time::sleep(Duration::from_micros((round * 7919) % 3000)).await;
        let leader = replicas.iter().position(|r| r.handle.progress.borrow().leader);
        if let Some(leader) = leader {
            let killed = replicas.remove(leader);
            killed.task.abort();
            let _ = killed.task.await;
            replicas.push(start(&log, &topics, &clock, &format!("replica-{generation}")));
            generation += 1;
        }
        let handles: Vec<&SchedulerHandle> = replicas.iter().map(|r| &r.handle).collect();
        wait_processed(&log, &topics, &handles, clock.now()).await;
    }
    let fired = requests(&log, &topics).await;
    let names: BTreeSet<&String> = fired.iter().map(|f| &f.1).collect();
    let times: BTreeSet<i64> = fired.iter().map(|f| f.2).collect();
    let expected: BTreeSet<i64> = (1..=20)
        .map(|m| (start_time() + Minutes::minutes(m)).timestamp_millis())
        .collect();
    assert_eq!(times, expected, "every scheduled time fired, none extra");
    assert_eq!(
        names.len(),
        20,
        "one execution per scheduled time (a re-fire reuses the name)"
    );
    let duplicates = fired.len() - names.len();
    eprintln!("re-fired requests recognised as duplicates: {duplicates}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_starts_from_the_last_cursor_snapshot_and_fires_nothing_twice() {
    let (_dir, topics, log) = setup().await;
    register(&log, &topics, &[("snapshotted", CatchUp::All)]).await;
    let clock = Arc::new(ManualClock::new(start_time()));
    let mut options = SchedulerOptions::new(topics.clone(), "first".into());
    options.snapshot_every = 5;
    let first = start_with(&log, &clock, options.clone());
    for _ in 0..30 {
        clock.advance(Minutes::minutes(1));
        wait_processed(&log, &topics, &[&first.handle], clock.now()).await;
    }
    assert_eq!(
        first.handle.progress.borrow().cursors_loaded_from,
        0,
        "the first leader had no snapshot"
    );
    first.shutdown.cancel();
    first.task.await.unwrap().unwrap();

    options.member_id = "second".into();
    let second = start_with(&log, &clock, options);
    for _ in 0..5 {
        clock.advance(Minutes::minutes(1));
        wait_processed(&log, &topics, &[&second.handle], clock.now()).await;
    }
    let loaded_from = second.handle.progress.borrow().cursors_loaded_from;
    assert!(
        loaded_from >= 25,
        "the new leader must start at a recent snapshot, not at offset {loaded_from}"
    );
    let fired = requests(&log, &topics).await;
    let names: BTreeSet<&String> = fired.iter().map(|f| &f.1).collect();
    assert_eq!(fired.len(), 35, "every minute fired once across the restart");
    assert_eq!(names.len(), 35);
}

/// The host's clock stepped back (an NTP correction) and then forward (a suspended VM resuming): times
/// already fired are not fired again when the clock passes them a second time, and the jump forward is
/// caught up by each policy as downtime is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_steps_back_and_forward_fire_no_time_twice_and_catch_up_by_each_policy() {
    let (_dir, topics, log) = setup().await;
    register(
        &log,
        &topics,
        &[
            ("all", CatchUp::All),
            ("latest", CatchUp::Latest),
            ("none", CatchUp::None),
        ],
    )
    .await;
    let clock = Arc::new(ManualClock::new(start_time()));
    let scheduler = start(&log, &topics, &clock, "only");
    for _ in 0..5 {
        clock.advance(Minutes::minutes(1));
        wait_processed(&log, &topics, &[&scheduler.handle], clock.now()).await;
    }
    // Back three minutes to 12:02, then through 12:03 ... 12:05 again, minute by minute; the scheduler is
    // given time to look at each (it has processed past them already, so waiting for progress proves nothing).
    clock.set(start_time() + Minutes::minutes(2));
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        clock.advance(Minutes::minutes(1));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    clock.advance(Minutes::minutes(1));
    wait_processed(&log, &topics, &[&scheduler.handle], clock.now()).await;
    // Forward 10 min 45 s at once (12:06 -> 12:16:45): 12:07 ... 12:16 were never on time.
    clock.advance(Minutes::minutes(10) + Minutes::seconds(45));
    wait_processed(&log, &topics, &[&scheduler.handle], clock.now()).await;
    clock.advance(Minutes::seconds(15));
    wait_processed(&log, &topics, &[&scheduler.handle], clock.now()).await;

    let fired = requests(&log, &topics).await;
    let minutes = |plan: &str| minutes_fired(&fired, plan);
    assert_eq!(
        minutes("all"),
        (1..=17).collect::<Vec<_>>(),
        "all: every time once, the jump's missed ones in order"
    );
    assert_eq!(
        minutes("latest"),
        [1, 2, 3, 4, 5, 6, 16, 17],
        "latest: only the most recent of the jump"
    );
    assert_eq!(
        minutes("none"),
        [1, 2, 3, 4, 5, 6, 17],
        "none: nothing of the jump"
    );
    scheduler.shutdown.cancel();
    scheduler.task.await.unwrap().unwrap();
}
