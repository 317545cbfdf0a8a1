//! Per-tenant API rate limits on admin, shared through Redis: a tenant over its rate is refused with
//! RESOURCE_EXHAUSTED and a retry-after, while another tenant is unaffected.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use aloft_e2e::*;
use aloft_fairq::pools::ResourcePools;
use aloft_proto::v1 as wire;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_api_rate_is_told_to_wait_and_another_is_unaffected() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let Some(redis) = real_redis() else {
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
        ..Default::default()
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

/// A deployment whose propeller has two slots; a `pause` task in development and production that records
/// its tenant in `starts` when its process really starts; and a `blocker` (staging) that holds a slot until
/// the file `release` exists.
struct SaturatedPropeller {
    deployment: Deployment,
    client: aloft_cli::client::AdminClient,
    ops_port: u16,
    starts: std::path::PathBuf,
    release: std::path::PathBuf,
    _services: Vec<Service>,
}

async fn saturated_propeller(brokers: &str, database: &str) -> SaturatedPropeller {
    let deployment = Deployment::new(brokers, database).await;
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
    SaturatedPropeller {
        _services: vec![_admin, _propeller],
        deployment,
        client,
        ops_port,
        starts,
        release,
    }
}

/// Weights 3:1 on a saturated propeller (two slots): while both tenants have attempts waiting, three of
/// every four that really start running are the heavier tenant's (each task appends its tenant to a file
/// when its process starts). Quotas come from the registry, set while the propeller runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_three_to_one_split_the_started_attempts_75_25() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let SaturatedPropeller {
        deployment,
        mut client,
        ops_port,
        starts,
        release,
        _services,
    } = saturated_propeller(&brokers, &database).await;
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
    let unknown = client
        .set_tenant_quota(wire::SetTenantQuotaRequest {
            project: "nobody".into(),
            domain: "production".into(),
            weight: 1,
            max_running: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{}", unknown.message());
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
    let mut launched = start_blockers(&mut client).await;
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

/// Launches the two blockers and waits until both run, so they hold both slots before anything else is
/// launched (executions sit in different partitions, which the propeller may read in any order).
async fn start_blockers(client: &mut aloft_cli::client::AdminClient) -> Vec<wire::ExecutionIdentifier> {
    let mut blockers = Vec::new();
    for name in ["blocker-1", "blocker-2"] {
        blockers.push(start_task(client, "staging", "blocker", name).await);
    }
    for id in &blockers {
        wait_until(client, id, Duration::from_secs(60), |execution| {
            execution
                .nodes
                .iter()
                .any(|node| node.phase == wire::NodePhase::NodeRunning as i32)
        })
        .await;
    }
    blockers
}

/// The propeller's `aloft_propeller_attempts_queued` gauge, read from its /metrics.
async fn queued_attempts(port: u16) -> f64 {
    metric(port, "aloft_propeller_attempts_queued").await
}

/// A tenant that becomes active behind another's long queue is served at the next free slots, not after
/// that queue (with first-come-first-served it would start last).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newly_active_tenant_is_not_stuck_behind_a_busy_tenants_queue() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let SaturatedPropeller {
        // Kept alive to the end: it owns the scratch directory and the topics.
        deployment: _deployment,
        mut client,
        ops_port,
        starts,
        release,
        _services,
    } = saturated_propeller(&brokers, &database).await;
    let mut launched = start_blockers(&mut client).await;
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
    // The busy tenant's attempts waited, and the wait is on the per-tenant metrics.
    let waited = metric(
        ops_port,
        "aloft_propeller_tenant_wait_seconds_total{tenant=\"default/development\"}",
    )
    .await;
    assert!(waited > 0.0, "development waited {waited} s in all");
    // Equal weights alternate: the late tenant's three attempts are among the first six to run.
    assert!(
        late.iter().all(|position| *position < 6),
        "production started at {late:?} of {}",
        order.len()
    );
}

/// A pool of 4 shared by three propeller replicas through Redis: never more than 4 attempts hold it
/// (sampled continuously, and from the tasks' own start/end times), and after one replica is SIGKILLed
/// while holding tokens, its tokens come back after the lease and every execution still ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_shared_by_three_propellers_is_never_over_granted_and_survives_a_kill() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let Some(redis) = real_redis() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_admin();
    let propeller_env = |_: usize| {
        vec![
            ("ALOFT_REDIS_URL", redis.clone()),
            ("ALOFT_POOL_LEASE_MS", "2000".to_string()),
        ]
    };
    let mut propellers: Vec<Service> = (0..3)
        .map(|index| {
            let mut env = propeller_env(index);
            env.push(("ALOFT_MEMBER_ID", format!("propeller-{index}")));
            deployment.start_with_env("aloft-propeller", &format!("propeller-{index}"), &env)
        })
        .collect();
    let mut client = deployment.client().await;
    // Every replica owns partitions before the load starts, so the kill below hits one that works.
    deployment
        .wait_for_logs(
            &["propeller-0", "propeller-1", "propeller-2"],
            "partition claimed; deciding",
            Duration::from_secs(60),
        )
        .await;
    let intervals = deployment.scratch.path().join("intervals");
    let script = format!(
        "echo \"start $$ $(date +%s%3N)\" >> {log}; sleep 1; echo \"end $$ $(date +%s%3N)\" >> {log}",
        log = intervals.display()
    );
    let spec = serde_json::json!({
        "name": "query", "version": "1",
        "run": {"process": {"command": ["sh", "-c", script]}},
        "resources": {"pools": {"warehouse": 1}},
    });
    let register = |spec: &serde_json::Value| wire::RegisterRequest {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        spec_json: spec.to_string(),
    };
    let unknown = client.register_task(register(&spec)).await.unwrap_err();
    assert!(
        unknown.message().contains("unknown resource pool \"warehouse\""),
        "{}",
        unknown.message()
    );
    client
        .define_pool(wire::DefinePoolRequest {
            name: "warehouse".into(),
            limit: 4,
        })
        .await
        .unwrap();
    client.register_task(register(&spec)).await.unwrap();

    // Sample the pool in Redis while everything runs.
    let sampler_pools = aloft_fairq::pools::RedisPools::connect(&redis, &deployment.topic_prefix)
        .await
        .unwrap();
    let sampling = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut most = 0;
            while !sampling.is_cancelled() {
                most = most.max(sampler_pools.in_use("warehouse").await.unwrap());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            most
        })
    };
    let mut launched = Vec::new();
    for index in 0..40 {
        launched.push(start_task(&mut client, DOMAIN, "query", &format!("query-{index}")).await);
    }
    // Attempts beyond the pool's four wait without an executor slot, and `aloft get` says for what.
    let deadline = Instant::now() + Duration::from_secs(30);
    'waiting: loop {
        for id in launched.iter().rev() {
            let execution = get(&mut client, id).await;
            if let Some(node) = execution
                .nodes
                .iter()
                .find(|n| n.phase == wire::NodePhase::NodeWaitingForResources as i32)
            {
                assert!(
                    node.wait_reason
                        .starts_with("resource pool warehouse: no tokens free; position "),
                    "{}",
                    node.wait_reason
                );
                break 'waiting;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no query was ever shown waiting for the pool"
        );
    }
    // Kill a replica once work is under way (it likely holds tokens), and start a replacement so the group
    // rebalances its partitions.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&intervals)
        .unwrap_or_default()
        .lines()
        .count()
        < 10
    {
        assert!(Instant::now() < deadline, "nothing ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    propellers[0].sigkill();
    // The replacement joins once the broker has dropped the dead member (session timeout 6 s), so the
    // rebalance it causes hands the dead member's partitions out (see the tansu notes in the README).
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut env = propeller_env(3);
    env.push(("ALOFT_MEMBER_ID", "propeller-3".to_string()));
    propellers.push(deployment.start_with_env("aloft-propeller", "propeller-3", &env));
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last_progress = Instant::now();
    let mut replacements = 0;
    for id in &launched {
        loop {
            let execution = get(&mut client, id).await;
            // tansu can leave a dead member's partitions unassigned until another member joins: when
            // nothing has moved for a while, one more replica joins (once or twice).
            if last_progress.elapsed() > Duration::from_secs(15) && replacements < 2 {
                replacements += 1;
                let name = format!("propeller-extra-{replacements}");
                let mut env = propeller_env(3 + replacements);
                env.push(("ALOFT_MEMBER_ID", name.clone()));
                propellers.push(deployment.start_with_env("aloft-propeller", &name, &env));
                last_progress = Instant::now();
            }
            if aloft_cli::render::is_terminal(execution.phase) {
                last_progress = Instant::now();
                assert_eq!(
                    execution.phase,
                    wire::ExecutionPhase::Succeeded as i32,
                    "{}",
                    id.name
                );
                break;
            }
            if Instant::now() > deadline {
                for name in ["propeller-0", "propeller-1", "propeller-2", "propeller-3"] {
                    let log = deployment.log(name);
                    let tail: Vec<&str> = log.lines().rev().take(12).collect();
                    eprintln!(
                        "--- {name}:\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
                panic!("{} did not finish: {:?}", id.name, execution.phase);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    sampling.cancel();
    let most_sampled = sampler.await.unwrap();
    assert!(
        most_sampled <= 4,
        "Redis showed {most_sampled} tokens of 4 in use"
    );

    // Each task's start and end, paired by process id: an attempt killed when its propeller died or lost
    // its partition never writes an end, and is left out (Redis, sampled above, counted its tokens).
    let mut starts: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut events: Vec<(i64, i32)> = Vec::new();
    for line in std::fs::read_to_string(&intervals).unwrap().lines() {
        let mut fields = line.split_whitespace();
        let (Some(kind), Some(pid), Some(at)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let Ok(at) = at.parse::<i64>() else { continue };
        match kind {
            "start" => {
                starts.insert(pid.to_string(), at);
            }
            _ => {
                if let Some(started) = starts.remove(pid) {
                    events.push((started, 1));
                    events.push((at, -1));
                }
            }
        }
    }
    events.sort();
    let (mut running, mut most) = (0, 0);
    for (_, change) in events {
        running += change;
        most = most.max(running);
    }
    assert!(most <= 4, "{most} tasks ran at once with a pool of 4");
    assert!(most >= 2, "the pool was shared: {most} at once");
}
