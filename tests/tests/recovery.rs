//! Killing the propeller (SIGKILL) in the middle of the diamond and starting another finishes the execution
//! with the right outputs; nothing is lost and no succeeded node runs twice.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use aloft_e2e::*;
use aloft_proto::v1 as wire;

fn slow_diamond(marker: &std::path::Path) -> String {
    // Every run of a node appends its name to the marker file, so re-runs are visible.
    let step = |name: &str, inputs: &str, expression: &str| {
        format!(
            "kind: task\nname: {name}\nversion: \"1\"\ninterface:\n  inputs: {inputs}\n  outputs: {{n: integer}}\nrun:\n  process:\n    \
             command: [\"sh\", \"-c\", \"echo $ALOFT_NODE >> {marker}; sleep 2; echo $(({expression})) > $ALOFT_OUTPUT_DIR/n\"]\n",
            marker = marker.display()
        )
    };
    [
        step("slow-step", "{n: integer}", "ALOFT_INPUT_N + 1"),
        step("slow-join", "{a: integer, b: integer}", "ALOFT_INPUT_A + ALOFT_INPUT_B"),
        "kind: workflow\nname: slow-diamond\ninterface: {inputs: {x: integer}, outputs: {result: integer}}\nnodes:\n  \
         - {id: a, task: slow-step, inputs: {n: inputs.x}}\n  - {id: b, task: slow-step, inputs: {n: a.n}}\n  \
         - {id: c, task: slow-step, inputs: {n: a.n}}\n  - {id: d, task: slow-join, inputs: {a: b.n, b: c.n}}\noutputs: {result: d.n}\n"
            .to_string(),
    ]
    .join("---\n")
}

fn node_phase(execution: &wire::Execution, node: &str) -> i32 {
    execution
        .nodes
        .iter()
        .find(|n| n.node_id == node)
        .map(|n| n.phase)
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_propeller_is_replaced_and_the_execution_finishes_without_rerunning_succeeded_nodes() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let marker = deployment.scratch.path().join("runs.txt");
    let spec = deployment.scratch.path().join("slow-diamond.yaml");
    std::fs::write(&spec, slow_diamond(&marker)).unwrap();
    let _admin = deployment.start_admin();
    let mut first = deployment.start_propeller("propeller-first");
    let mut client = deployment.client().await;
    register_file(&mut client, &spec).await;
    let id = launch(&mut client, workflow("slow-diamond"), "survivor", &[("x", "3")])
        .await
        .unwrap();

    // Kill the owner while b and c are running, after a succeeded.
    wait_until(&mut client, &id, Duration::from_secs(60), |e| {
        node_phase(e, "a") == wire::NodePhase::NodeSucceeded as i32
            && node_phase(e, "b") == wire::NodePhase::NodeRunning as i32
    })
    .await;
    first.sigkill();
    let _second = deployment.start_propeller("propeller-second");

    let finished = wait_finished(&mut client, &id, Duration::from_secs(120)).await;
    assert_eq!(
        finished.phase,
        wire::ExecutionPhase::Succeeded as i32,
        "{}",
        finished.error
    );
    // a = 4, b = c = 5, d = 10
    assert_eq!(scalar_outputs(&finished), vec!["result=10"]);
    let runs = std::fs::read_to_string(&marker).unwrap();
    let count = |node: &str| runs.lines().filter(|l| *l == node).count();
    assert_eq!(
        count("a"),
        1,
        "a succeeded before the kill and must not run again; runs:\n{runs}"
    );
    assert_eq!(count("d"), 1, "d ran only after the recovery; runs:\n{runs}");
    assert!(count("b") >= 1 && count("c") >= 1);

    let history = assert_history_gap_free(&mut client, &id).await;
    let lost = history
        .iter()
        .filter(|e| e.kind == "AttemptFailed" && e.summary.contains("SYSTEM"))
        .count();
    assert!(
        lost >= 1,
        "the attempts running at the kill are marked lost and retried as system errors"
    );
    let claims = std::fs::read_to_string(deployment.scratch.path().join("propeller-propeller-second.log"))
        .unwrap_or_default();
    assert!(
        claims.contains("partition claimed"),
        "the second propeller claimed the partitions"
    );
}
