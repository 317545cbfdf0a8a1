//! Per-tenant API rate limits on admin, shared through Redis: a tenant over its rate is refused with
//! RESOURCE_EXHAUSTED and a retry-after, while another tenant is unaffected.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use aloft_e2e::*;
use aloft_proto::v1 as wire;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_api_rate_is_told_to_wait_and_another_is_unaffected() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let Ok(redis) = std::env::var("ALOFT_TEST_REDIS_URL") else {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "ALOFT_TEST_REDIS_URL is required"
        );
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_with_env(
        "aloft-admin",
        "admin",
        &[
            ("ALOFT_TENANT_RATE_PER_SECOND", "2".to_string()),
            ("ALOFT_TENANT_BURST", "3".to_string()),
            ("ALOFT_REDIS_URL", redis),
        ],
    );
    let mut client = deployment.client().await;
    let list = |domain: &str| wire::ListExecutionsRequest {
        project: PROJECT.into(),
        domain: domain.into(),
        limit: 1,
    };
    let mut refused = None;
    for _ in 0..10 {
        match client.list_executions(list("development")).await {
            Ok(_) => {}
            Err(status) => {
                refused = Some(status);
                break;
            }
        }
    }
    let status = refused.expect("ten calls at once exceed a burst of 3");
    assert_eq!(status.code(), Code::ResourceExhausted, "{}", status.message());
    assert!(
        status
            .message()
            .contains("default/development is over its API rate limit"),
        "{}",
        status.message()
    );
    let retry_after_ms: u64 = status
        .metadata()
        .get("retry-after-ms")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after_ms > 0 && retry_after_ms <= 1000, "{retry_after_ms}");
    assert_eq!(
        status.metadata().get("retry-after").unwrap().to_str().unwrap(),
        "1"
    );

    // Another tenant (the production domain) is not slowed down by development's calls.
    for _ in 0..3 {
        client.list_executions(list("production")).await.unwrap();
    }
    // Waiting as told is enough.
    tokio::time::sleep(Duration::from_millis(retry_after_ms + 50)).await;
    client.list_executions(list("development")).await.unwrap();
}

async fn register_process_task(
    client: &mut aloft_cli::client::AdminClient,
    domain: &str,
    name: &str,
    script: &str,
) {
    let spec = serde_json::json!({
        "name": name,
        "version": "1",
        "run": {"process": {"command": ["sh", "-c", script]}},
    });
    client
        .register_task(wire::RegisterRequest {
            project: PROJECT.into(),
            domain: domain.into(),
            spec_json: spec.to_string(),
        })
        .await
        .unwrap();
}

async fn start_task(
    client: &mut aloft_cli::client::AdminClient,
    domain: &str,
    task: &str,
    name: &str,
) -> wire::ExecutionIdentifier {
    client
        .create_execution(wire::CreateExecutionRequest {
            project: PROJECT.into(),
            domain: domain.into(),
            name: name.into(),
            target: Some(wire::create_execution_request::Target::Task(wire::Identifier {
                project: PROJECT.into(),
                domain: domain.into(),
                name: task.into(),
                version: "1".into(),
            })),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id
        .unwrap()
}

/// Weights 3:1 on a saturated propeller (two slots): while both tenants have attempts waiting, three of
/// every four that really start running are the heavier tenant's (each task appends its tenant to a file
/// when its process starts). Quotas come from the registry, set while the propeller runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_three_to_one_split_the_started_attempts_75_25() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_admin();
    let ops_port = free_port();
    let _propeller = deployment.start_with_env(
        "aloft-propeller",
        "propeller",
        &[
            ("ALOFT_MAX_RUNNING_ATTEMPTS", "2".to_string()),
            ("ALOFT_OPS_LISTEN", format!("127.0.0.1:{ops_port}")),
        ],
    );
    let mut client = deployment.client().await;
    let (starts, release) = (
        deployment.scratch.path().join("starts"),
        deployment.scratch.path().join("release"),
    );
    for domain in ["development", "production"] {
        let script = format!("echo {domain} >> {}; sleep 0.05", starts.display());
        register_process_task(&mut client, domain, "pause", &script).await;
    }
    let hold = format!("while [ ! -f {} ]; do sleep 0.05; done", release.display());
    register_process_task(&mut client, "staging", "blocker", &hold).await;
    for (domain, weight) in [("development", 3), ("production", 1)] {
        client
            .set_tenant_quota(wire::SetTenantQuotaRequest {
                project: PROJECT.into(),
                domain: domain.into(),
                weight,
                max_running: 0,
            })
            .await
            .unwrap();
    }
    let refused = client
        .set_tenant_quota(wire::SetTenantQuotaRequest {
            project: PROJECT.into(),
            domain: "production".into(),
            weight: 0,
            max_running: 0,
        })
        .await
        .unwrap_err();
    assert!(
        refused.message().contains("weight must be at least 1"),
        "{}",
        refused.message()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while deployment
        .log("propeller")
        .matches("tenant quota applied")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "the propeller never applied the quotas"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Two blockers hold both slots until every attempt below is queued.
    let mut launched = vec![
        start_task(&mut client, "staging", "blocker", "blocker-1").await,
        start_task(&mut client, "staging", "blocker", "blocker-2").await,
    ];
    for index in 0..40 {
        for domain in ["development", "production"] {
            launched.push(start_task(&mut client, domain, "pause", &format!("{domain}-{index}")).await);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while queued_attempts(ops_port).await < 80.0 {
        assert!(Instant::now() < deadline, "the attempts never all queued");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(&release, "").unwrap();
    for id in &launched {
        let execution = wait_finished(&mut client, id, Duration::from_secs(120)).await;
        assert_eq!(execution.phase, wire::ExecutionPhase::Succeeded as i32);
    }
    let order: Vec<String> = std::fs::read_to_string(&starts)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(order.len(), 80);
    // The first 40 real starts: both tenants had attempts waiting throughout (each submitted 40).
    let heavy = order[..40]
        .iter()
        .filter(|domain| *domain == "development")
        .count();
    assert!(
        (28..=32).contains(&heavy),
        "development started {heavy} of the first 40 (75% is 30): {order:?}"
    );
}

/// The propeller's `aloft_propeller_attempts_queued` gauge, read from its /metrics.
async fn queued_attempts(port: u16) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
        return 0.0;
    };
    let request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if stream.write_all(request.as_bytes()).await.is_err() {
        return 0.0;
    }
    let mut body = String::new();
    let _ = stream.read_to_string(&mut body).await;
    body.lines()
        .find_map(|line| line.strip_prefix("aloft_propeller_attempts_queued "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A tenant that becomes active behind another's long queue is served at the next free slots, not after
/// that queue (with first-come-first-served it would start last).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newly_active_tenant_is_not_stuck_behind_a_busy_tenants_queue() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_admin();
    let ops_port = free_port();
    let _propeller = deployment.start_with_env(
        "aloft-propeller",
        "propeller",
        &[
            ("ALOFT_MAX_RUNNING_ATTEMPTS", "2".to_string()),
            ("ALOFT_OPS_LISTEN", format!("127.0.0.1:{ops_port}")),
        ],
    );
    let mut client = deployment.client().await;
    let (starts, release) = (
        deployment.scratch.path().join("starts"),
        deployment.scratch.path().join("release"),
    );
    for domain in ["development", "production"] {
        let script = format!("echo {domain} >> {}; sleep 0.05", starts.display());
        register_process_task(&mut client, domain, "pause", &script).await;
    }
    let hold = format!("while [ ! -f {} ]; do sleep 0.05; done", release.display());
    register_process_task(&mut client, "staging", "blocker", &hold).await;
    let mut launched = vec![
        start_task(&mut client, "staging", "blocker", "blocker-1").await,
        start_task(&mut client, "staging", "blocker", "blocker-2").await,
    ];
    for index in 0..30 {
        launched.push(start_task(&mut client, "development", "pause", &format!("busy-{index}")).await);
    }
    for index in 0..3 {
        launched.push(start_task(&mut client, "production", "pause", &format!("late-{index}")).await);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while queued_attempts(ops_port).await < 33.0 {
        assert!(Instant::now() < deadline, "the attempts never all queued");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(&release, "").unwrap();
    for id in &launched {
        wait_finished(&mut client, id, Duration::from_secs(120)).await;
    }
    let order: Vec<String> = std::fs::read_to_string(&starts)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let late: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, domain)| *domain == "production")
        .map(|(position, _)| position)
        .collect();
    assert_eq!(late.len(), 3);
    // Equal weights alternate: the late tenant's three attempts are among the first six to run.
    assert!(
        late.iter().all(|position| *position < 6),
        "production started at {late:?} of {}",
        order.len()
    );
}
