//! A light tenant behind a heavy one: tenant A (development) queues 1,000 `sleep` tasks on a propeller with
//! 40 slots, then tenant B (production) submits 10. B's attempts start at the next free slots (not after
//! A's queue), B finishes within twice its time alone, and A's waiting attempts are WAITING_FOR_RESOURCES
//! in `aloft get` with the limit and their place in the queue.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use aloft_e2e::*;
use aloft_proto::v1 as wire;
use futures::StreamExt;

const SLOTS: usize = 40;

/// Starts `count` executions of `nap` in `domain` (eight calls in flight) and returns their ids in order.
async fn start_naps(
    client: &AdminClient,
    domain: &str,
    prefix: &str,
    count: usize,
) -> Vec<wire::ExecutionIdentifier> {
    futures::stream::iter(0..count)
        .map(|index| {
            let mut client = client.clone();
            let name = format!("{prefix}-{index}");
            async move { start_task(&mut client, domain, "nap", &name).await }
        })
        .buffered(8)
        .collect()
        .await
}

/// Waits for every execution to succeed and returns when the last one finished (server clock, millis).
async fn last_finish(client: &mut AdminClient, ids: &[wire::ExecutionIdentifier]) -> i64 {
    let mut last = 0;
    for id in ids {
        let execution = wait_succeeded(client, id, Duration::from_secs(120)).await;
        last = last.max(execution.finished_at_millis);
    }
    last
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_light_tenant_behind_a_thousand_queued_attempts_finishes_within_twice_its_time_alone() {
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
            ("ALOFT_MAX_RUNNING_ATTEMPTS", SLOTS.to_string()),
            ("ALOFT_OPS_LISTEN", format!("127.0.0.1:{ops_port}")),
        ],
    );
    let mut client = deployment.client().await;
    let starts = deployment.scratch.path().join("starts");
    for domain in ["development", "production"] {
        let script = format!(
            "echo \"{domain} $(date +%s%3N)\" >> {}; sleep 1",
            starts.display()
        );
        register_process_task(&mut client, domain, "nap", &script).await;
    }

    // B alone.
    let submitted = now_millis();
    let alone = start_naps(&client, "production", "alone", 10).await;
    let alone_millis = last_finish(&mut client, &alone).await - submitted;

    // A queues 1,000; the propeller is saturated with hundreds waiting when B comes.
    let busy = start_naps(&client, "development", "busy", 1000).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(ops_port, "aloft_propeller_attempts_queued").await < 100.0 {
        assert!(Instant::now() < deadline, "A's attempts never queued up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What `aloft get` shows for one of A's waiting attempts.
    let last_busy = busy.last().unwrap();
    let waiting = wait_until(&mut client, last_busy, Duration::from_secs(30), |e| {
        e.nodes
            .first()
            .is_some_and(|n| n.phase == wire::NodePhase::NodeWaitingForResources as i32)
    })
    .await;
    assert_eq!(waiting.attempts[0].phase, "WAITING_FOR_RESOURCES");
    let reason = &waiting.nodes[0].wait_reason;
    assert!(
        reason.starts_with(&format!(
            "executor capacity: {SLOTS} of {SLOTS} slots in use; position "
        )) && reason.ends_with("in default/development's queue"),
        "{reason}"
    );

    let shared_submitted = now_millis();
    let shared = start_naps(&client, "production", "shared", 10).await;
    let shared_millis = last_finish(&mut client, &shared).await - shared_submitted;
    eprintln!("B alone: {alone_millis} ms; B behind 1,000 of A's: {shared_millis} ms");
    assert!(
        shared_millis <= 2 * alone_millis,
        "B took {shared_millis} ms behind A's queue, {alone_millis} ms alone"
    );

    // Real process starts in order: once B's first attempt waits, B is served at the next free slot —
    // only A's attempts already dispatched before it queued (processes still starting) come first. B's others
    // are served among the next few dozen starts (behind A's queue of hundreds, first in first
    // out, they would start last). Equal weights alternate while B has attempts waiting; B's submissions
    // trickle in, and A takes the slots B has no attempt for (work-conserving).
    let first_shared = get_history(&mut client, &shared[0]).await;
    let lines = std::fs::read_to_string(&starts).unwrap();
    let order: Vec<(&str, i64)> = lines
        .lines()
        .filter_map(|line| {
            let (domain, at) = line.split_once(' ')?;
            Some((domain, at.parse().ok()?))
        })
        .collect();
    let b_first = order
        .iter()
        .position(|(domain, at)| *domain == "production" && *at >= shared_submitted)
        .unwrap();
    if let Some(waited_at) = first_shared
        .events
        .iter()
        .find(|event| event.kind == "AttemptWaiting")
        .map(|event| event.occurred_at_millis)
    {
        let a_in_between = order[..b_first]
            .iter()
            .filter(|(domain, at)| *domain == "development" && *at > waited_at)
            .count();
        assert!(
            a_in_between <= 4,
            "{a_in_between} of A's attempts started after B's first waited and before it ran"
        );
    }
    let b_starts_after_first: Vec<usize> = order[b_first..]
        .iter()
        .enumerate()
        .filter(|(_, (domain, _))| *domain == "production")
        .map(|(offset, _)| offset)
        .collect();
    assert_eq!(b_starts_after_first.len(), 10);
    assert!(
        b_starts_after_first.iter().all(|offset| *offset < 40),
        "B's starts counted from its first: {b_starts_after_first:?}"
    );
    // A's waits are on the per-tenant metrics.
    let waited = metric(
        ops_port,
        "aloft_propeller_tenant_wait_seconds_total{tenant=\"default/development\"}",
    )
    .await;
    assert!(waited > 0.0, "development waited {waited} s in all");
}

async fn get_history(client: &mut AdminClient, id: &wire::ExecutionIdentifier) -> wire::ExecutionHistory {
    client
        .get_execution_history(wire::GetExecutionRequest {
            id: Some(id.clone()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}
