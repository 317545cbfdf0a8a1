//! Operations endpoints of the services on Kafka + Postgres: /healthz, /readyz and /metrics (parsed as
//! Prometheus text, with the named metrics moving), and bad configuration failing with the setting named.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use aloft_e2e::*;
use aloft_proto::v1 as wire;

async fn wait_ready(port: u16, service: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, _)) = http_get(port, "/readyz").await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{service} never became ready: {:?}",
            http_get(port, "/readyz").await
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_serves_health_readiness_and_prometheus_metrics() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let ports = [
        ("aloft-admin", free_port()),
        ("aloft-propeller", free_port()),
        ("aloft-scheduler", free_port()),
        ("aloft-catalog", free_port()),
        ("aloft-notifier", free_port()),
    ];
    let _services: Vec<Service> = ports
        .iter()
        .map(|(binary, port)| {
            deployment.start_with_env(
                binary,
                binary,
                &[("ALOFT_OPS_LISTEN", format!("127.0.0.1:{port}"))],
            )
        })
        .collect();
    let mut client = deployment.client().await;
    for (binary, port) in ports {
        // Each process opens its endpoints once its own start-up is done.
        let deadline = Instant::now() + Duration::from_secs(30);
        while http_get(port, "/healthz").await.map(|(status, _)| status) != Some(200) {
            assert!(Instant::now() < deadline, "{binary} /healthz never answered 200");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        wait_ready(port, binary).await;
    }
    register_file(&mut client, &repo_root().join("examples/diamond.yaml")).await;
    let id = launch(&mut client, workflow("diamond"), "observed", &[("x", "2")])
        .await
        .unwrap();
    let finished = wait_finished(&mut client, &id, Duration::from_secs(60)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Succeeded as i32);

    let metrics = |port: u16| async move {
        let (status, body) = http_get(port, "/metrics").await.expect("metrics answer");
        assert_eq!(status, 200);
        parse_prometheus(&body)
    };
    let admin = metrics(ports[0].1).await;
    assert!(
        admin["aloft_admin_events_projected_total{topic=\"executions\"}"] >= 10.0,
        "{admin:?}"
    );
    assert!(admin["aloft_admin_projection_batches_total"] >= 1.0);
    let propeller = metrics(ports[1].1).await;
    assert_eq!(
        propeller["aloft_propeller_attempts_started_total"], 4.0,
        "{propeller:?}"
    );
    assert_eq!(
        propeller["aloft_propeller_attempts_finished_total{outcome=\"succeeded\"}"],
        4.0
    );
    assert_eq!(propeller["aloft_propeller_partitions_owned"], 4.0);
    assert_eq!(propeller["aloft_propeller_partitions_active"], 4.0);
    assert!(propeller["aloft_propeller_decisions_appended_total"] >= 10.0);
    let scheduler = metrics(ports[2].1).await;
    assert_eq!(scheduler["aloft_scheduler_leader"], 1.0, "{scheduler:?}");
    assert!(scheduler.contains_key("aloft_scheduler_fires_total"));
    assert_eq!(
        admin["aloft_admin_execution_phase_changes_total{phase=\"SUCCEEDED\"}"], 1.0,
        "{admin:?}"
    );
    // Consumer lag and event-apply latency of the projections: present, and the lag drains to zero.
    assert!(
        admin.contains_key("aloft_projection_apply_latency_seconds{projection=\"read_models\"}"),
        "{admin:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let admin = metrics(ports[0].1).await;
        let notifier = metrics(ports[4].1).await;
        let lag = |metrics: &BTreeMap<String, f64>, projection: &str| {
            metrics
                .get(&format!(
                    "aloft_projection_lag_records{{projection=\"{projection}\",topic=\"executions\"}}"
                ))
                .copied()
        };
        let propeller = metrics(ports[1].1).await;
        let propeller_lag = propeller.get("aloft_propeller_lag_records").copied();
        if lag(&admin, "read_models") == Some(0.0)
            && lag(&notifier, "notifier") == Some(0.0)
            && propeller_lag == Some(0.0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lag never reached 0: admin {:?}, notifier {:?}, propeller {propeller_lag:?}",
            lag(&admin, "read_models"),
            lag(&notifier, "notifier")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The catalog projects the same log (the diamond's tasks are not cached: no lookups).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let catalog = metrics(ports[3].1).await;
        let projected = catalog
            .get("aloft_catalog_events_projected_total{topic=\"executions\"}")
            .copied()
            .unwrap_or(0.0);
        if projected >= 10.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the catalog projected nothing: {catalog:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn bad_configuration_fails_at_start_naming_the_setting() {
    let run = |env: &[(&str, &str)]| {
        let mut command = Command::new(binary("aloft-admin"));
        command
            .env("ALOFT_ADMIN_LISTEN", "127.0.0.1:0")
            .env("RUST_LOG", "error");
        for (key, value) in env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).to_string(),
        )
    };
    let scratch = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", scratch.path().join("a.db").display());
    let (code, stderr) = run(&[("ALOFT_DATABASE_URL", "mysql://nobody@127.0.0.1/aloft")]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("--database-url") && stderr.contains("postgres://"),
        "{stderr}"
    );
    let (code, stderr) = run(&[
        ("ALOFT_DATABASE_URL", &sqlite),
        ("ALOFT_KAFKA_BROKERS", "127.0.0.1:1"),
    ]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("--kafka-brokers 127.0.0.1:1"), "{stderr}");
    let (code, stderr) = run(&[("ALOFT_DATABASE_URL", &sqlite), ("ALOFT_PARTITIONS", "0")]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("partitions"), "{stderr}");

    // A config file: its settings apply, an unknown key is named, and ALOFT_* env vars override it.
    let config = scratch.path().join("admin.yaml");
    let config_text = config.display().to_string();
    std::fs::write(&config, "kafka_broker: 127.0.0.1:9092\n").unwrap();
    let (code, stderr) = run(&[("ALOFT_CONFIG", &config_text)]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("unknown setting \"kafka_broker\"") && stderr.contains("kafka-brokers"),
        "{stderr}"
    );
    std::fs::write(&config, "database_url: mysql://nobody@127.0.0.1/aloft\n").unwrap();
    let (code, stderr) = run(&[("ALOFT_CONFIG", &config_text)]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("--database-url mysql://"),
        "the file's setting applies: {stderr}"
    );
    std::fs::write(&config, format!("database_url: {sqlite}\npartitions: 0\n")).unwrap();
    let (code, stderr) = run(&[("ALOFT_CONFIG", &config_text)]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("partitions"), "{stderr}");
    let (code, stderr) = run(&[
        ("ALOFT_CONFIG", &config_text),
        ("ALOFT_PARTITIONS", "2"),
        ("ALOFT_KAFKA_BROKERS", "127.0.0.1:1"),
    ]);
    assert_ne!(code, Some(0));
    assert!(
        stderr.contains("--kafka-brokers 127.0.0.1:1"),
        "the env var overrides the file's partitions, so start-up reaches the brokers: {stderr}"
    );
}

/// A TCP proxy to Postgres that the test can cut and restore, to make the database unreachable for one admin.
struct CuttableProxy {
    port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl CuttableProxy {
    async fn start(target: std::net::SocketAddr) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let accepting = std::sync::Arc::clone(&open);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let open = std::sync::Arc::clone(&accepting);
                tokio::spawn(async move {
                    if !open.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    // Copy both ways until either side closes or the proxy is cut.
                    let copying = tokio::io::copy_bidirectional(&mut client, &mut server);
                    tokio::pin!(copying);
                    loop {
                        tokio::select! {
                            _ = &mut copying => return,
                            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                                if !open.load(std::sync::atomic::Ordering::SeqCst) {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        CuttableProxy { port, open }
    }

    fn set_open(&self, open: bool) {
        self.open.store(open, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Waits until /readyz answers `wanted` and returns that response's body.
async fn wait_status(port: u16, wanted: u16, within: Duration, log: impl Fn() -> String) -> String {
    let deadline = Instant::now() + within;
    loop {
        let answer = http_get(port, "/readyz").await;
        if let Some((status, body)) = &answer {
            if *status == wanted {
                return body.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {wanted}; last {answer:?}; the service's log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_is_not_ready_while_its_database_is_unreachable_and_ready_again_when_it_returns() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let proxy = CuttableProxy::start("127.0.0.1:5432".parse().unwrap()).await;
    let (_, database_name) = deployment.database_url.rsplit_once('/').unwrap();
    let proxied_url = format!("postgres://postgres@127.0.0.1:{}/{database_name}", proxy.port);
    let ops_port = free_port();
    let _admin = deployment.start_with_env(
        "aloft-admin",
        "admin",
        &[
            ("ALOFT_OPS_LISTEN", format!("127.0.0.1:{ops_port}")),
            ("ALOFT_DATABASE_URL", proxied_url),
        ],
    );
    wait_status(ops_port, 200, Duration::from_secs(60), || deployment.log("admin")).await;
    proxy.set_open(false);
    let body = wait_status(ops_port, 503, Duration::from_secs(30), || deployment.log("admin")).await;
    assert!(body.contains("database"), "the reason names the database: {body}");
    assert_eq!(
        http_get(ops_port, "/healthz").await.map(|(status, _)| status),
        Some(200),
        "alive while not ready"
    );
    proxy.set_open(true);
    wait_status(ops_port, 200, Duration::from_secs(60), || deployment.log("admin")).await;
}

const SLOW_CHAIN: &str = r#"kind: task
name: slow-step
version: "1"
interface: {inputs: {n: integer, factor: integer, add: integer}, outputs: {n: integer}}
run: {process: {command: ["sh", "-c", "sleep 1; echo $((ALOFT_INPUT_N * ALOFT_INPUT_FACTOR + ALOFT_INPUT_ADD)) > $ALOFT_OUTPUT_DIR/n"]}}
---
kind: workflow
name: slow-chain
interface: {inputs: {x: integer}, outputs: {result: integer}}
nodes:
  - {id: a, task: slow-step, inputs: {n: inputs.x, factor: {value: 1}, add: {value: 1}}}
  - {id: b, task: slow-step, inputs: {n: a.n, factor: {value: 2}, add: {value: 0}}}
outputs: {result: b.n}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_event_and_commits_no_unapplied_offset() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let mut admin = deployment.start_admin();
    let mut propeller = deployment.start_propeller("propeller-1");
    let mut client = deployment.client().await;
    let spec = deployment.scratch.path().join("slow-chain.yaml");
    std::fs::write(&spec, SLOW_CHAIN).unwrap();
    register_file(&mut client, &spec).await;
    let mut ids = Vec::new();
    for index in 0..12 {
        let name = format!("load-{index}");
        let x = index.to_string();
        ids.push(
            launch(&mut client, workflow("slow-chain"), &name, &[("x", &x)])
                .await
                .unwrap(),
        );
    }
    let listing = wire::ListExecutionsRequest {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        limit: 100,
        ..Default::default()
    };
    let executions = client
        .list_executions(listing)
        .await
        .unwrap()
        .into_inner()
        .executions;
    let running = executions
        .iter()
        .filter(|e| !aloft_cli::render::is_terminal(e.phase))
        .count();
    assert!(
        running > 0,
        "the SIGTERM must land while executions are in flight"
    );
    // Stop both while executions are in flight; both must shut down on their own.
    for service in [&mut admin, &mut propeller] {
        service.signal(nix::sys::signal::Signal::SIGTERM);
    }
    for service in [&mut admin, &mut propeller] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while service.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "{} did not stop on SIGTERM",
                service.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _admin = deployment.start_admin();
    let _propeller = deployment.start_propeller("propeller-2");
    let mut client = deployment.client().await;
    for (index, id) in ids.iter().enumerate() {
        let finished = wait_succeeded(&mut client, id, Duration::from_secs(90)).await;
        let expected = format!("result={}", 2 * (index + 1));
        assert_eq!(scalar_outputs(&finished), vec![expected]);
        assert_history_gap_free(&mut client, id).await;
    }
    // The rows projected across the restart equal a replay of the log from offset 0.
    let store = aloft_store::Store::connect(&deployment.database_url)
        .await
        .unwrap();
    let before = store.dump_projections().await.unwrap();
    drop(_admin);
    store.drop_projections().await.unwrap();
    let _replaying = deployment.start_admin();
    let deadline = Instant::now() + Duration::from_secs(60);
    while store.dump_projections().await.unwrap() != before {
        assert!(
            Instant::now() < deadline,
            "replay after the SIGTERM did not rebuild identical rows"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
