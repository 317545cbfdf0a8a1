//! The fault harness (issue 22): a steady workload on the real parts while the broker, Postgres, Redis, a
//! propeller and the notifier fail in turn, then the checker over the raw log, the read models and the
//! webhooks the notifier delivered. In CI a short run with one fault of each kind; `ALOFT_FAULTS_SECONDS`
//! (with `ALOFT_FAULTS_PERIOD_SECONDS` and `ALOFT_FAULTS_LAUNCH_INTERVAL_MS`) makes a long or saturating
//! one, whose summary the README reports.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use aloft_e2e::faults::parts::{
    tansu_binary, terminate_database_connections, Broker, OwnPostgres, OwnRedis, SmallDisk,
};
use aloft_e2e::faults::workload::{Launched, Workload};
use aloft_e2e::faults::{checker, workload};
use aloft_e2e::faults::{quantile, Fault, Injected};
use aloft_e2e::*;

fn seconds_from_env(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

/// A fault and the wall-clock millisecond it healed at.
struct Healed {
    fault: Fault,
    at_seconds: f64,
    started_millis: i64,
    healed_millis: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fleet_rides_out_broker_database_redis_propeller_and_notifier_faults_without_losing_or_repeating_work(
) {
    let Some((_, database)) = real_backends() else {
        return;
    };
    let Some(tansu) = tansu_binary() else {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "the fault harness needs tansu with SQLite storage (ALOFT_TEST_TANSU or ~/.cargo/bin/tansu)"
        );
        eprintln!("skipping: no tansu binary for the harness's own broker");
        return;
    };
    // Eight kinds, each 16 s after the last healed (the longest, a 10 s broker stop): all fit in 170 s.
    let run_for = seconds_from_env("ALOFT_FAULTS_SECONDS", 170);
    let period = seconds_from_env("ALOFT_FAULTS_PERIOD_SECONDS", 16);
    // Two launches a second keep the fleet unsaturated; a shorter interval measures what it keeps up with.
    let launch_interval = Duration::from_millis(
        std::env::var("ALOFT_FAULTS_LAUNCH_INTERVAL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(500),
    );
    let kinds = Fault::chosen();

    let parts_dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(tansu, parts_dir.path());
    let Some(mut redis) = OwnRedis::start(parts_dir.path()) else {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "the fault harness needs redis-server"
        );
        return;
    };
    // The harness's own Postgres, so restarting it touches no other test; without Postgres's server
    // binaries the run uses the machine's and leaves the restart out.
    let mut own_postgres = OwnPostgres::start(parts_dir.path());
    let mut kinds = kinds;
    let database = match &own_postgres {
        Some(postgres) => postgres.url(),
        None => {
            assert!(
                std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
                "the fault harness needs Postgres's server binaries (initdb, postgres) for its own cluster"
            );
            eprintln!("no Postgres server binaries: the run leaves the Postgres restart out");
            kinds.retain(|kind| *kind != Fault::DatabaseRestarted);
            database
        }
    };
    let deployment = Deployment::new(&broker.address(), &database).await;
    // The propellers' work directory on a tmpfs the harness can fill (mounting needs root, as in CI).
    let work_disk = SmallDisk::mount(&deployment.scratch.path().join("work"), "256m");
    if work_disk.is_none() {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "the fault harness mounts a tmpfs for the propellers' work directory, which needs root"
        );
        eprintln!("cannot mount a tmpfs: the run leaves the full disk out");
        kinds.retain(|kind| *kind != Fault::DiskFilled);
    }
    // Leases of 6 s: after Redis restarts empty, new pool grants wait one lease (the grace in which
    // running holders renew), and the default 30 s would carry one fault's backlog into the next.
    // Attempts wait while the work directory has less than 32 MiB free.
    let redis_env = [
        ("ALOFT_REDIS_URL", redis.url()),
        ("ALOFT_POOL_LEASE_MS", "6000".to_string()),
        ("ALOFT_MIN_FREE_DISK", "32Mi".to_string()),
    ];
    let _catalog = deployment.start_catalog();
    // Admin checks that a rule's secret reference resolves where it runs; the notifier signs with it.
    let hook_secret = [(workload::HOOK_SECRET_ENV, "fault-harness".to_string())];
    let _admin = deployment.start_with_env("aloft-admin", "admin", &hook_secret);
    let mut propellers = [
        deployment.start_with_env("aloft-propeller", "propeller-p1", &with_member(&redis_env, "p1")),
        deployment.start_with_env("aloft-propeller", "propeller-p2", &with_member(&redis_env, "p2")),
    ];
    let _scheduler = deployment.start_scheduler("s1");
    // Every launched execution asks for a signed webhook when it ends; the notifier delivers them here.
    let receivers = tokio_util::sync::CancellationToken::new();
    let hooks = aloft_testkit::HttpSink::start(receivers.clone())
        .await
        .expect("start the webhook receiver");
    let notifier_env = [
        hook_secret[0].clone(),
        ("ALOFT_NOTIFY_RETRY_BASE_MS", "200".to_string()),
        ("ALOFT_NOTIFY_RETRY_MAX_MS", "5000".to_string()),
    ];
    let mut notifier = deployment.start_with_env("aloft-notifier", "notifier", &notifier_env);
    let mut client = deployment.client().await;
    let hook_url = hooks.url("/hook");
    let mut workload = Workload::register(&mut client, deployment.scratch.path(), Some(&hook_url)).await;

    let started = Instant::now();
    let run_started_millis = chrono::Utc::now().timestamp_millis();
    let mut healed: Vec<Healed> = Vec::new();
    let mut next_fault = started + period;
    let mut next_launch = started;
    while started.elapsed() < run_for {
        // Every launch due, so a short interval is offered in full (a few at most per turn, so faults and
        // gate signals keep their pace).
        for _ in 0..20 {
            if Instant::now() < next_launch {
                break;
            }
            workload.launch_next(&mut client).await;
            next_launch += launch_interval;
        }
        workload.signal_gates(&mut client).await;
        if Instant::now() >= next_fault {
            let fault = kinds[healed.len() % kinds.len()];
            let at_seconds = started.elapsed().as_secs_f64();
            let started_millis = chrono::Utc::now().timestamp_millis();
            eprintln!("t={at_seconds:.1}s: injecting {}", fault.name());
            match fault {
                Fault::PropellerKilled => {
                    let victim = healed.len() % propellers.len();
                    let member = format!("p{}", victim + 1);
                    propellers[victim].sigkill();
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    propellers[victim] = deployment.start_with_env(
                        "aloft-propeller",
                        &format!("propeller-{member}"),
                        &with_member(&redis_env, &member),
                    );
                }
                Fault::BrokerKilled => broker.kill_and_restart(Duration::from_secs(3)),
                Fault::BrokerPaused => {
                    broker.pause();
                    // Launches keep coming while it is stopped: they must be answered, not hang.
                    let until = Instant::now() + Duration::from_secs(10);
                    while Instant::now() < until {
                        workload.launch_next(&mut client).await;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    broker.resume();
                }
                Fault::DatabaseConnectionsKilled => {
                    let killed = terminate_database_connections(&deployment.database_url).await;
                    eprintln!("  {killed} connections terminated");
                }
                Fault::RedisRestartedEmpty => redis.kill_and_restart(Duration::from_secs(2)),
                Fault::DiskFilled => {
                    if let Some(disk) = &work_disk {
                        let filler = disk.fill("filler", 8 << 20);
                        eprintln!("  {} MiB left free", disk.free_bytes() >> 20);
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        let _ = std::fs::remove_file(filler);
                    }
                }
                Fault::NotifierKilled => {
                    notifier.sigkill();
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    notifier = deployment.start_with_env("aloft-notifier", "notifier", &notifier_env);
                }
                Fault::DatabaseRestarted => {
                    if let Some(postgres) = own_postgres.as_mut() {
                        postgres.restart(Duration::from_secs(3));
                    }
                }
            }
            healed.push(Healed {
                fault,
                at_seconds,
                started_millis,
                healed_millis: chrono::Utc::now().timestamp_millis(),
            });
            next_fault = Instant::now() + period;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let launching = started.elapsed();
    let launching_ended_millis = chrono::Utc::now().timestamp_millis();

    // Drain: everything launched finishes (gates are signalled until they all are).
    let deadline = Instant::now() + Duration::from_secs(240);
    let (names, _) = checker::names_to_check(&mut client, &workload).await;
    let mut pending: Vec<String> = names;
    let mut ended: Vec<String> = Vec::new();
    while !pending.is_empty() && Instant::now() < deadline {
        workload.signal_gates(&mut client).await;
        let mut still = Vec::new();
        for name in pending {
            match checker::get_execution(&mut client, &name).await {
                Ok(execution) if execution.finished_at_millis != 0 => ended.push(name),
                Err(status) if status.code() == tonic::Code::NotFound => {}
                _ => still.push(name),
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // And the webhooks of the launched executions that ended (the scheduled ones ask for none).
    let launched: std::collections::BTreeSet<&str> =
        workload.launches.iter().map(|l| l.name.as_str()).collect();
    let deadline = deadline.max(Instant::now() + Duration::from_secs(30));
    let hook_bodies = loop {
        let bodies: Vec<String> = hooks.received("/hook").into_iter().map(|r| r.body).collect();
        let delivered: std::collections::BTreeSet<String> = bodies
            .iter()
            .filter_map(|body| checker::webhook_of(body))
            .map(|(execution, _)| execution)
            .collect();
        let all = ended
            .iter()
            .filter(|name| launched.contains(name.as_str()))
            .all(|name| delivered.contains(name));
        if all || Instant::now() >= deadline {
            break bodies;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };

    let log = deployment.open_log(PARTITIONS).await;
    let topics = aloft_eventlog::Topics::with_prefix(&deployment.topic_prefix);
    let mut report = checker::check(&mut client, log.as_ref(), &topics, &workload).await;
    checker::check_notifications(&mut report, &workload, &hook_bodies);
    report.wall = started.elapsed();
    report.throughput_per_minute = report.succeeded as f64 / launching.as_secs_f64() * 60.0;
    let while_launching = report
        .finished_at_millis
        .iter()
        .filter(|at| (run_started_millis..=launching_ended_millis).contains(*at))
        .count();
    report.finished_while_launching_per_minute = while_launching as f64 / launching.as_secs_f64() * 60.0;
    report.faults = recoveries(&mut client, &workload, &healed, &report.launch_to_start).await;
    eprintln!("{report}");
    let violations = report.violations();
    if !violations.is_empty() {
        eprintln!("{}", ownership_story(&deployment, &report));
    }
    assert!(
        violations.is_empty(),
        "the checker found:\n{}\n{report}\nscratch: {}",
        violations.join("\n"),
        deployment.scratch.path().display()
    );
    assert!(
        workload.launches.iter().all(|l| l.outcome != Launched::NoAnswer),
        "a launch hung instead of being answered (UNAVAILABLE is the answer while a dependency is down):\n{report}"
    );
    // A run with faults injects every kind at least once (a baseline without faults sets a period longer
    // than the run).
    if period * kinds.len() as u32 <= run_for {
        assert_eq!(
            report
                .faults
                .iter()
                .map(|f| f.fault)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            kinds.len(),
            "every kind of fault is injected at least once (raise ALOFT_FAULTS_SECONDS)"
        );
    }
}

/// What a failed run needs to be understood where its scratch directory is gone (CI): the partitions of the
/// executions that did not succeed, and every line the propellers wrote about partitions and the group.
fn ownership_story(deployment: &Deployment, report: &checker::Report) -> String {
    let partitions: std::collections::BTreeSet<u32> = report
        .not_succeeded
        .iter()
        .filter_map(|line| line.split(':').next())
        .map(|name| {
            let id = aloft_core::ExecutionId {
                project: PROJECT.into(),
                domain: DOMAIN.into(),
                name: name.into(),
            };
            aloft_eventlog::partition_for_key(&id.partition_key(), PARTITIONS)
        })
        .collect();
    let mut story = format!("partitions of the executions not succeeded: {partitions:?}\n");
    for member in ["p1", "p2"] {
        let name = format!("propeller-{member}");
        let log = deployment.logs_of_every_run(&name);
        let lines: Vec<&str> = log
            .lines()
            .filter(|line| {
                ["partition", "group", "rejoin", "owner"]
                    .iter()
                    .any(|word| line.contains(word))
            })
            .collect();
        let shown = &lines[lines.len().saturating_sub(60)..];
        story.push_str(&format!(
            "--- {name}: its last {} lines about ownership\n",
            shown.len()
        ));
        for line in shown {
            story.push_str(line);
            story.push('\n');
        }
    }
    story
}

fn with_member(base: &[(&'static str, String)], member: &str) -> Vec<(&'static str, String)> {
    let mut env = base.to_vec();
    env.push(("ALOFT_MEMBER_ID", member.to_string()));
    env
}

/// For each fault: the time from its healing to the first execution launched after it succeeding.
async fn recoveries(
    client: &mut AdminClient,
    workload: &Workload,
    healed: &[Healed],
    launch_to_start: &[(i64, i64)],
) -> Vec<Injected> {
    let latencies = |from: i64, to: i64| -> Vec<i64> {
        launch_to_start
            .iter()
            .filter(|(created, _)| (from..to).contains(created))
            .map(|(_, ms)| *ms)
            .collect()
    };
    let mut injected = Vec::new();
    for heal in healed {
        let settled = heal.healed_millis + 10_000;
        let mut recovered_after = None;
        for launch in workload
            .launches
            .iter()
            .filter(|l| l.outcome == Launched::Accepted && l.at_millis >= heal.healed_millis)
            .take(20)
        {
            if let Ok(execution) = checker::get_execution(client, &launch.name).await {
                if execution.phase == aloft_proto::v1::ExecutionPhase::Succeeded as i32 {
                    let millis = (execution.finished_at_millis - heal.healed_millis).max(0);
                    recovered_after = Some(Duration::from_millis(millis as u64));
                    break;
                }
            }
        }
        injected.push(Injected {
            fault: heal.fault,
            at_seconds: heal.at_seconds,
            recovered_after,
            p99_during: quantile(&mut latencies(heal.started_millis, settled), 0.99),
            p99_after: quantile(&mut latencies(settled, settled + 30_000), 0.99),
        });
    }
    injected
}

/// The harness's own broker and a deployment on it with admin (its ops endpoints on `ops_port`) and one
/// propeller, or `None` (skipped).
async fn on_own_broker(
    dir: &std::path::Path,
    ops_port: u16,
) -> Option<(Broker, Deployment, Vec<Service>, AdminClient)> {
    let (_, database) = real_backends()?;
    let Some(tansu) = tansu_binary() else {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "these tests need tansu with SQLite storage (ALOFT_TEST_TANSU or ~/.cargo/bin/tansu)"
        );
        return None;
    };
    let broker = Broker::start(tansu, dir);
    let deployment = Deployment::new(&broker.address(), &database).await;
    let ops = [("ALOFT_OPS_LISTEN", format!("127.0.0.1:{ops_port}"))];
    let services = vec![
        deployment.start_with_env("aloft-admin", "admin", &ops),
        deployment.start_propeller("p1"),
    ];
    let mut client = deployment.client().await;
    register_process_task(&mut client, DOMAIN, "hello", "echo hi").await;
    Some((broker, deployment, services, client))
}

/// Regression (found by the harness): a Kafka read error during a broker restart ended the propeller's
/// engine, so the process exited and nothing ran until someone restarted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_propeller_keeps_running_through_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some((mut broker, _deployment, mut services, mut client)) =
        on_own_broker(dir.path(), free_port()).await
    else {
        return;
    };
    let before = launch(&mut client, task("hello", "1"), "before-restart", &[])
        .await
        .unwrap();
    wait_succeeded(&mut client, &before, Duration::from_secs(60)).await;
    broker.kill_and_restart(Duration::from_secs(5));
    let after = launch_when_answered(&mut client, "after-restart").await;
    wait_succeeded(&mut client, &after, Duration::from_secs(90)).await;
    assert!(
        services[1].child.try_wait().unwrap().is_none(),
        "the propeller exited during the broker's restart"
    );
}

/// While the broker does not answer, a write is answered UNAVAILABLE within seconds, saying why, instead of
/// hanging, and admin's /readyz says it is not ready; once the broker answers again the write goes through
/// and admin is ready again, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_answered_unavailable_while_the_broker_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let ops_port = free_port();
    let Some((broker, _deployment, _services, mut client)) = on_own_broker(dir.path(), ops_port).await else {
        return;
    };
    wait_for_readiness(ops_port, 200).await;
    broker.pause();
    let (status, body) = wait_for_readiness(ops_port, 503).await;
    assert!(body.contains("event log"), "{status}: {body}");
    let asked = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(20),
        launch(&mut client, task("hello", "1"), "while-stopped", &[]),
    )
    .await;
    broker.resume();
    let status = answer
        .expect("the write hung")
        .expect_err("the write cannot be acknowledged");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("did not acknowledge"),
        "{}",
        status.message()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "answered only after {:?}",
        asked.elapsed()
    );
    let after = launch_when_answered(&mut client, "after-resume").await;
    wait_succeeded(&mut client, &after, Duration::from_secs(90)).await;
    wait_for_readiness(ops_port, 200).await;
}

/// Polls `/readyz` until it answers `status`; the answer.
async fn wait_for_readiness(port: u16, status: u16) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = http_get(port, "/readyz").await;
        if let Some(answer) = answer.filter(|(got, _)| *got == status) {
            return answer;
        }
        assert!(Instant::now() < deadline, "/readyz never answered {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Launches `name`, retrying while admin answers UNAVAILABLE (the broker coming back).
async fn launch_when_answered(client: &mut AdminClient, name: &str) -> aloft_proto::v1::ExecutionIdentifier {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match launch(client, task("hello", "1"), name, &[]).await {
            Ok(id) => return id,
            Err(status) if status.code() == tonic::Code::AlreadyExists => {
                return aloft_e2e::faults::workload::execution_id(name)
            }
            Err(status) => {
                assert!(Instant::now() < deadline, "{name} never launched: {status:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
