//! The fault harness (issue 22): a steady workload on the real parts while the broker, Postgres, Redis, a
//! propeller, the notifier, the work directory's disk and one propeller's link to the broker fail in turn, then the checker over the raw log, the read models and the
//! webhooks the notifier delivered. In CI a short run with one fault of each kind; `ALOFT_FAULTS_SECONDS`
//! (with `ALOFT_FAULTS_PERIOD_SECONDS` and `ALOFT_FAULTS_LAUNCH_INTERVAL_MS`) makes a long or saturating
//! one, whose summary the README reports.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use aloft_e2e::faults::island::Island;
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
    // Ten kinds, each 14 s after the last healed (together about 52 s long): all fit in 215 s.
    let run_for = seconds_from_env("ALOFT_FAULTS_SECONDS", 215);
    let period = seconds_from_env("ALOFT_FAULTS_PERIOD_SECONDS", 14);
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
    // The second propeller in a network namespace of its own, its broker link one the harness can cut.
    let island = kinds
        .contains(&Fault::PropellerCutOff)
        .then(|| {
            Island::create(&[
                broker.port(),
                port_of(&deployment.database_url),
                redis.port(),
                deployment.catalog_port,
            ])
        })
        .flatten();
    if island.is_none() && kinds.contains(&Fault::PropellerCutOff) {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "the fault harness makes a network namespace for a propeller, which needs root"
        );
        eprintln!("cannot make a network namespace: the run leaves the propeller cut off out");
        kinds.retain(|kind| *kind != Fault::PropellerCutOff);
    }
    // With a previous release's propeller, p2 runs it beside p1 (this build) until the upgrade fault.
    let previous_propeller =
        std::env::var_os("ALOFT_FAULTS_PREVIOUS_PROPELLER").map(std::path::PathBuf::from);
    if previous_propeller.is_none() && kinds.contains(&Fault::PropellerUpgraded) {
        kinds.retain(|kind| *kind != Fault::PropellerUpgraded);
    }
    let p2_upgraded = std::cell::Cell::new(previous_propeller.is_none());
    let start_propeller = |member: &str| {
        let program = match (&previous_propeller, member) {
            (Some(previous), "p2") if !p2_upgraded.get() => previous.clone(),
            _ => binary("aloft-propeller"),
        };
        deployment.start_program(
            &program,
            "aloft-propeller",
            &format!("propeller-{member}"),
            &with_member(&redis_env, member),
            |command| {
                if let (Some(island), "p2") = (&island, member) {
                    island.enter(command);
                }
            },
        )
    };
    let _catalog = deployment.start_catalog();
    // Admin checks that a rule's secret reference resolves where it runs; the notifier signs with it.
    let hook_secret = [(workload::HOOK_SECRET_ENV, "fault-harness".to_string())];
    let _admin = deployment.start_with_env("aloft-admin", "admin", &hook_secret);
    let mut propellers = [start_propeller("p1"), start_propeller("p2")];
    // The scheduler's clock is the machine's plus the offset in this file, which the clock-step fault writes.
    let clock_offset = deployment.scratch.path().join("scheduler-clock-offset");
    let _scheduler = deployment.start_with_env(
        "aloft-scheduler",
        "scheduler-s1",
        &[
            ("ALOFT_MEMBER_ID", "s1".to_string()),
            ("ALOFT_CLOCK_OFFSET_FILE", clock_offset.display().to_string()),
        ],
    );
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
                    propellers[victim] = start_propeller(&member);
                }
                Fault::BrokerKilled => broker.kill_and_restart(Duration::from_secs(3)),
                Fault::BrokerPaused => {
                    broker.pause();
                    // Launches keep coming while it is stopped: they must be answered, not hang.
                    keep_launching(&mut workload, &mut client, Duration::from_secs(10)).await;
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
                Fault::PropellerCutOff => {
                    if let Some(island) = &island {
                        // Past the 6 s session timeout (the other propeller takes the partitions over),
                        // short of the 30 s message timeout (the cut one's queued events arrive late).
                        island.cut(broker.port());
                        keep_launching(&mut workload, &mut client, Duration::from_secs(15)).await;
                        island.heal(broker.port());
                    }
                }
                Fault::SchedulerClockStepped => {
                    // Forward: the next scheduled times are due early. Back: none of them may fire again.
                    std::fs::write(&clock_offset, "90").unwrap();
                    keep_launching(&mut workload, &mut client, Duration::from_secs(10)).await;
                    std::fs::write(&clock_offset, "0").unwrap();
                }
                Fault::PropellerUpgraded => {
                    propellers[1].signal(nix::sys::signal::Signal::SIGTERM);
                    stop_within(&mut propellers[1], Duration::from_secs(15)).await;
                    p2_upgraded.set(true);
                    propellers[1] = start_propeller("p2");
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
        .map(partition_of)
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

/// Launches (one every 500 ms) and answers gates for `how_long`, while a fault lasts.
async fn keep_launching(workload: &mut Workload, client: &mut AdminClient, how_long: Duration) {
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        workload.launch_next(client).await;
        workload.signal_gates(client).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits up to `grace` for a service told to stop to exit, then SIGKILLs it.
async fn stop_within(service: &mut Service, grace: Duration) {
    let until = Instant::now() + grace;
    while Instant::now() < until {
        if service.child.try_wait().ok().flatten().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    service.sigkill();
}

/// The port of a `postgres://user@127.0.0.1:PORT/db` URL.
fn port_of(url: &str) -> u16 {
    url.split_once("127.0.0.1:")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no 127.0.0.1:PORT in {url}"))
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
/// propeller (its ops endpoints on `propeller_ops_port`), or `None` (skipped).
async fn on_own_broker(
    dir: &std::path::Path,
    ops_port: u16,
    propeller_ops_port: u16,
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
        deployment.start_with_env(
            "aloft-propeller",
            "propeller-p1",
            &[
                ("ALOFT_MEMBER_ID", "p1".to_string()),
                ("ALOFT_OPS_LISTEN", format!("127.0.0.1:{propeller_ops_port}")),
            ],
        ),
    ];
    let mut client = deployment.client().await;
    register_process_task(&mut client, DOMAIN, "hello", "echo hi").await;
    Some((broker, deployment, services, client))
}

/// The harness's network partition: a process in the island reaches a port of the machine through it
/// until the link is cut, reaches nothing (and is not told) while it is, and reaches it again once healed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_in_the_island_reaches_a_forwarded_port_only_while_its_link_is_up() {
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = echo.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = connection.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    let Some(island) = Island::create(&[port]) else {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "the fault harness makes network namespaces, which needs root"
        );
        return;
    };
    // Sends "ping" and prints what comes back within 2 s.
    let ping = || {
        let mut command = std::process::Command::new("bash");
        command.args([
            "-c",
            &format!("exec 3<>/dev/tcp/127.0.0.1/{port} && printf ping >&3 && timeout 2 head -c 4 <&3"),
        ]);
        island.enter(&mut command);
        let output = command.output().expect("run bash in the island");
        String::from_utf8_lossy(&output.stdout).to_string()
    };
    assert_eq!(ping(), "ping", "the link is up");
    island.cut(port);
    assert_eq!(ping(), "", "nothing comes back across the cut link");
    island.heal(port);
    assert_eq!(ping(), "ping", "the healed link carries again");

    // The island has a loopback of its own: a port the machine listens on but the island does not
    // forward is not reached from inside.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    let mut command = std::process::Command::new("bash");
    command.args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{other_port}")]);
    island.enter(&mut command);
    let output = command.output().unwrap();
    assert!(
        !output.status.success(),
        "a port not forwarded is closed inside the island"
    );
}

/// Regression (found by the harness): a Kafka read error during a broker restart ended the propeller's
/// engine, so the process exited and nothing ran until someone restarted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_propeller_keeps_running_through_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some((mut broker, _deployment, mut services, mut client)) =
        on_own_broker(dir.path(), free_port(), free_port()).await
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
/// hanging, and admin's and the propeller's /readyz say they are not ready; once the broker answers again
/// the write goes through and both are ready again, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_answered_unavailable_while_the_broker_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let (ops_port, propeller_ops_port) = (free_port(), free_port());
    let Some((broker, _deployment, _services, mut client)) =
        on_own_broker(dir.path(), ops_port, propeller_ops_port).await
    else {
        return;
    };
    wait_for_readiness(ops_port, 200).await;
    wait_for_readiness(propeller_ops_port, 200).await;
    broker.pause();
    let (status, body) = wait_for_readiness(ops_port, 503).await;
    assert!(body.contains("event log"), "{status}: {body}");
    let (status, body) = wait_for_readiness(propeller_ops_port, 503).await;
    assert!(body.contains("event log"), "the propeller: {status}: {body}");
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
    wait_for_readiness(propeller_ops_port, 200).await;
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
