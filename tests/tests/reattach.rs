//! Re-attaching: when the propeller that started a task process is SIGKILLed but the process lives on (the
//! machine did not die), the propeller that takes the partition over follows that process to its end instead
//! of running the attempt again.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use aloft_e2e::*;
use aloft_proto::v1 as wire;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_propeller_re_attaches_to_a_still_running_task_process() {
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_admin();
    let mut first = deployment.start_propeller("first");
    let mut client = deployment.client().await;
    let runs = deployment.scratch.path().join("runs");
    let spec = format!(
        r#"kind: task
name: slow-double
version: "1"
interface: {{inputs: {{x: integer}}, outputs: {{y: integer}}}}
run:
  process:
    command: ["sh", "-c", "echo started >> {runs}; sleep 10; echo $((ALOFT_INPUT_X * 2)) > \"$ALOFT_OUTPUT_DIR/y\""]
"#,
        runs = runs.display()
    );
    let spec_file = deployment.scratch.path().join("slow.yaml");
    std::fs::write(&spec_file, spec).unwrap();
    register_file(&mut client, &spec_file).await;
    let task = wire::create_execution_request::Target::Task(wire::Identifier {
        project: PROJECT.into(),
        domain: DOMAIN.into(),
        name: "slow-double".into(),
        version: String::new(),
    });
    let id = launch(&mut client, task, "slow-1", &[("x", "21")]).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&runs).unwrap_or_default().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the task never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The propeller dies; its task process does not (it is in a process group of its own).
    first.sigkill();
    tokio::time::sleep(Duration::from_secs(7)).await;
    let _second = deployment.start_propeller("second");
    deployment
        .wait_for_logs(
            &["propeller-second"],
            "re-attached to a task process started by the previous owner",
            Duration::from_secs(60),
        )
        .await;
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(60)).await;
    assert_eq!(scalar_outputs(&finished), ["y=42"]);
    assert_eq!(
        std::fs::read_to_string(&runs).unwrap().lines().count(),
        1,
        "the task ran once: the new owner followed the running process instead of retrying"
    );
    let node = &finished.nodes[0];
    assert_eq!(node.attempts, 1, "no second attempt: {node:?}");
    assert_history_gap_free(&mut client, &id).await;
}
