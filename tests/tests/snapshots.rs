//! Snapshots on Kafka + Postgres: a propeller stores the state of its partitions; after it is SIGKILLed, its
//! replacement restores that state and replays only the records after it, and every execution still ends
//! right with a gap-free history.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use aloft_e2e::*;
use aloft_proto::v1 as wire;

const SPEC: &str = r#"kind: task
name: inc
version: "1"
interface: {inputs: {n: integer}, outputs: {n: integer}}
run: {process: {command: ["sh", "-c", "echo $((ALOFT_INPUT_N + 1)) > \"$ALOFT_OUTPUT_DIR/n\""]}}
---
kind: workflow
name: nap-then-inc
interface: {inputs: {x: integer}, outputs: {result: integer}}
nodes:
  - {id: first, task: inc, inputs: {n: inputs.x}}
  - {id: nap, gate: {sleep: 12s}, after: [first]}
  - {id: last, task: inc, inputs: {n: first.n}, after: [nap]}
outputs: {result: last.n}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_propeller_restores_the_snapshot_and_replays_only_the_tail() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_admin();
    let snapshot_env = |member: &str| {
        vec![
            ("ALOFT_MEMBER_ID", member.to_string()),
            ("ALOFT_SNAPSHOT_INTERVAL_SECS", "1".to_string()),
        ]
    };
    let mut first = deployment.start_with_env("aloft-propeller", "propeller-first", &snapshot_env("first"));
    let mut client = deployment.client().await;
    let spec_file = deployment.scratch.path().join("nap.yaml");
    std::fs::write(&spec_file, SPEC).unwrap();
    register_file(&mut client, &spec_file).await;

    let mut ids = Vec::new();
    for index in 0..12 {
        let id = launch(
            &mut client,
            workflow("nap-then-inc"),
            &format!("nap-{index}"),
            &[("x", &index.to_string())],
        )
        .await
        .unwrap();
        ids.push(id);
    }
    // Every execution is in its nap before the kill, and a snapshot has been stored since.
    for id in &ids {
        wait_until(&mut client, id, Duration::from_secs(60), |e| {
            e.nodes
                .iter()
                .any(|n| n.node_id == "nap" && n.phase == wire::NodePhase::NodeRunning as i32)
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let store = aloft_store::Store::connect(&deployment.database_url)
        .await
        .unwrap();
    let topic = format!("{}aloft.executions", deployment.topic_prefix);
    let mut stored = 0;
    for partition in 0..4 {
        if let Some(snapshot) = store.load_snapshot(&topic, partition).await.unwrap() {
            assert!(snapshot.next_offset > 0 && snapshot.epoch > 0, "{snapshot:?}");
            stored += 1;
        }
    }
    assert!(
        stored > 0,
        "the first propeller stored snapshots of its partitions"
    );

    first.sigkill();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let _replacement = deployment.start_with_env(
        "aloft-propeller",
        "propeller-replacement",
        &snapshot_env("replacement"),
    );
    deployment
        .wait_for_logs(
            &["propeller-replacement"],
            "restored partition from its snapshot; replaying the tail",
            Duration::from_secs(60),
        )
        .await;
    let log = deployment.log("propeller-replacement");
    let assignments: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("assigned partition; catching up"))
        .collect();
    assert!(!assignments.is_empty(), "{log}");
    for line in assignments {
        assert!(
            !line.contains("from_offset=0 "),
            "replayed from offset 0 despite a snapshot: {line}"
        );
    }
    for (index, id) in ids.iter().enumerate() {
        let finished = wait_succeeded(&mut client, id, Duration::from_secs(90)).await;
        assert_eq!(scalar_outputs(&finished), [format!("result={}", index + 2)]);
        let history = assert_history_gap_free(&mut client, id).await;
        // The nap was decided once, before the kill: the restored state knew it was under way.
        let naps = history.iter().filter(|e| e.kind == "GateWaiting").count();
        assert_eq!(naps, 1, "{}", id.name);
    }
}
