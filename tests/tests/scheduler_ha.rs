//! Two schedulers on Kafka: the leader is killed (SIGKILL) after a fire, the other takes over within
//! seconds, and the next scheduled time fires exactly once. Takes about two minutes of wall-clock time
//! (schedules have minute granularity).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use aloft_e2e::*;
use aloft_proto::v1 as wire;

const SPEC: &str = r#"kind: task
name: tick
version: "1"
interface: {inputs: {at: datetime}}
run: noop
---
kind: workflow
name: tick
interface: {inputs: {at: datetime}}
nodes: [{id: tick, task: tick, inputs: {at: inputs.at}}]
---
kind: launch_plan
name: every-minute
version: "1"
workflow: tick
schedule: {fixed_rate: 1m, kickoff_time_input: at, catch_up: all}
"#;

async fn scheduled(client: &mut aloft_cli::client::AdminClient) -> Vec<wire::Execution> {
    client
        .list_executions(wire::ListExecutionsRequest {
            project: PROJECT.into(),
            domain: DOMAIN.into(),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .executions
        .into_iter()
        .filter(|e| e.scheduled_at_millis != 0)
        .collect()
}

async fn wait_for_fires(
    client: &mut aloft_cli::client::AdminClient,
    count: usize,
    within: Duration,
) -> Vec<wire::Execution> {
    let deadline = Instant::now() + within;
    loop {
        let fired = scheduled(client).await;
        if fired.len() >= count {
            return fired;
        }
        assert!(
            Instant::now() < deadline,
            "only {} scheduled executions after {within:?}",
            fired.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether a scheduler's log says it leads now (its last leadership line).
fn leads(log: &str) -> bool {
    log.lines()
        .rev()
        .find(|line| line.contains("scheduler is the leader") || line.contains("lost leadership"))
        .is_some_and(|line| line.contains("is the leader"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leading_scheduler_hands_over_with_no_missed_and_no_duplicate_fire() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_admin();
    let _propeller = deployment.start_propeller("propeller");
    let mut schedulers = vec![
        deployment.start_scheduler("scheduler-a"),
        deployment.start_scheduler("scheduler-b"),
    ];
    let mut client = deployment.client().await;
    let spec = deployment.scratch.path().join("tick.yaml");
    std::fs::write(&spec, SPEC).unwrap();
    register_file(&mut client, &spec).await;
    let plan = wire::Identifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: "every-minute".into(),
        version: "1".into(),
    };
    client
        .activate_launch_plan(wire::GetEntityRequest { id: Some(plan) })
        .await
        .unwrap();

    wait_for_fires(&mut client, 1, Duration::from_secs(90)).await;
    // The first fire can come while the group is still forming (the first member to join leads until
    // the second one's join rebalances it), so wait for leadership to settle on exactly one replica. A
    // transient overlap cannot double-fire: fires carry deterministic execution names.
    let settling_since = Instant::now();
    let leader = loop {
        let leading: Vec<usize> = (0..schedulers.len())
            .filter(|&i| leads(&deployment.log(&format!("scheduler-{}", schedulers[i].name))))
            .collect();
        if leading.len() == 1 {
            break leading[0];
        }
        assert!(
            settling_since.elapsed() < Duration::from_secs(30),
            "leadership did not settle on exactly one scheduler within 30 s: {} lead",
            leading.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut killed = schedulers.remove(leader);
    killed.sigkill();
    let survivor = schedulers[0].name.clone();
    let killed_at = Instant::now();
    while !leads(&deployment.log(&format!("scheduler-{survivor}"))) {
        // Session timeout (6 s) + idle rejoin (up to 10 s, a tansu workaround) + the join itself.
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "{survivor} did not take over within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("leadership handed over in {:?}", killed_at.elapsed());
    schedulers.push(deployment.start_scheduler("scheduler-c"));

    let fired = wait_for_fires(&mut client, 2, Duration::from_secs(100)).await;
    // Let a possible duplicate fire (there must be none) reach the read model.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fired = if scheduled(&mut client).await.len() > fired.len() {
        scheduled(&mut client).await
    } else {
        fired
    };
    let times: BTreeSet<i64> = fired.iter().map(|e| e.scheduled_at_millis).collect();
    assert_eq!(times.len(), fired.len(), "a scheduled time ran twice");
    let ordered: Vec<i64> = times.into_iter().collect();
    for pair in ordered.windows(2) {
        assert_eq!(pair[1] - pair[0], 60_000, "a minute was missed: {ordered:?}");
    }
    for execution in &fired {
        let id = execution.id.clone().unwrap();
        let finished = wait_finished(&mut client, &id, Duration::from_secs(30)).await;
        assert_eq!(finished.phase, wire::ExecutionPhase::Succeeded as i32);
    }
}
