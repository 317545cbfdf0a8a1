//! Re-attaching: when the propeller that started a task process is SIGKILLed but the process lives on (the
//! machine did not die), the propeller that takes the partition over follows that process to its end instead
//! of running the attempt again. A propeller stopped gracefully interrupts its interruptible attempts (retried
//! at once as system errors) and leaves the others running for its successor.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use aloft_e2e::*;
use aloft_proto::v1 as wire;

/// How many times the task logging to `path` started (each run appends a line); 0 before it has.
fn runs_of(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).unwrap_or_default().lines().count()
}

/// Waits until the task of each run file has started.
async fn wait_until_started(paths: &[&std::path::Path]) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while paths.iter().any(|path| runs_of(path) == 0) {
        assert!(std::time::Instant::now() < deadline, "the tasks never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replacement_propeller_re_attaches_to_a_still_running_task_process() {
    let Some((deployment, mut services, mut client)) = deploy(Some("first")).await else {
        return;
    };
    let first = &mut services[1];
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
    register_text(&mut client, deployment.scratch.path(), "slow.yaml", &spec).await;
    let task = task("slow-double", "");
    let id = launch(&mut client, task, "slow-1", &[("x", "21")]).await.unwrap();
    wait_until_started(&[&runs]).await;
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
        runs_of(&runs),
        1,
        "the task ran once: the new owner followed the running process instead of retrying"
    );
    let node = &finished.nodes[0];
    assert_eq!(node.attempts, 1, "no second attempt: {node:?}");
    assert_history_gap_free(&mut client, &id).await;
}

/// A task that appends a line to `runs` when it starts, sleeps, then outputs `done`; one system retry.
fn logging_task(name: &str, runs: &std::path::Path, interruptible: bool) -> String {
    format!(
        r#"kind: task
name: {name}
version: "1"
interface: {{outputs: {{done: boolean}}}}
interruptible: {interruptible}
retries: {{system: 1}}
run:
  process:
    command: ["sh", "-c", "echo started >> {runs}; sleep 6; echo true > \"$ALOFT_OUTPUT_DIR/done\""]
---
"#,
        runs = runs.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_propeller_interrupts_interruptible_attempts_and_leaves_the_others_running() {
    let Some((deployment, mut services, mut client)) = deploy(Some("first")).await else {
        return;
    };
    let first = &mut services[1];
    let scratch = deployment.scratch.path();
    let (spare_runs, steady_runs) = (scratch.join("spare-runs"), scratch.join("steady-runs"));
    let spec = format!(
        "{}{}kind: workflow\nname: mixed\nnodes:\n  - {{id: spare, task: spare}}\n  - {{id: steady, task: steady}}\n",
        logging_task("spare", &spare_runs, true),
        logging_task("steady", &steady_runs, false),
    );
    register_text(&mut client, scratch, "mixed.yaml", &spec).await;
    let id = launch(&mut client, workflow("mixed"), "mixed-1", &[])
        .await
        .unwrap();
    wait_until_started(&[&spare_runs, &steady_runs]).await;
    first.signal(nix::sys::signal::Signal::SIGTERM);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while first.child.try_wait().unwrap().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the propeller did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stopping_log = deployment.log("propeller-first");
    assert!(
        stopping_log.contains("interrupted=1") && stopping_log.contains("left_running=1"),
        "the stopping propeller interrupts one attempt and leaves one running:\n{stopping_log}"
    );
    let _second = deployment.start_propeller("second");
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(90)).await;
    let attempts_of = |node: &str| -> Vec<&wire::TaskAttempt> {
        finished.attempts.iter().filter(|a| a.node_id == node).collect()
    };
    let spare = attempts_of("spare");
    assert_eq!(spare.len(), 2, "the interrupted attempt was retried: {spare:?}");
    assert_eq!(spare[0].error_kind, "SYSTEM");
    assert!(
        spare[0].error.starts_with("interrupted: propeller first stopped"),
        "{spare:?}"
    );
    assert!(spare[0].interruptible, "{spare:?}");
    assert!(
        !spare[1].interruptible,
        "spare has one system retry left, so its retry may not be interrupted: {spare:?}"
    );
    assert_eq!(runs_of(&spare_runs), 2);
    let steady = attempts_of("steady");
    assert_eq!(
        steady.len(),
        1,
        "the steady attempt was followed, not retried: {steady:?}"
    );
    assert!(!steady[0].interruptible);
    assert_eq!(runs_of(&steady_runs), 1, "the steady task ran once");
    let history = assert_history_gap_free(&mut client, &id).await;
    assert!(
        history
            .iter()
            .any(|e| e.summary == "node spare attempt 1 started (interruptible)"),
        "{history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_attached_attempt_still_times_out_at_its_tasks_timeout() {
    let Some((deployment, mut services, mut client)) = deploy(Some("first")).await else {
        return;
    };
    let first = &mut services[1];
    let scratch = deployment.scratch.path();
    let (runs, finished_marker) = (scratch.join("runs"), scratch.join("finished"));
    let spec = format!(
        r#"kind: task
name: overlong
version: "1"
timeout: 6s
run:
  process:
    command: ["sh", "-c", "echo started >> {runs}; sleep 40; echo done > {finished}"]
"#,
        runs = runs.display(),
        finished = finished_marker.display()
    );
    register_text(&mut client, scratch, "overlong.yaml", &spec).await;
    let task = task("overlong", "");
    let id = launch(&mut client, task, "overlong-1", &[]).await.unwrap();
    wait_until_started(&[&runs]).await;
    let started = std::time::Instant::now();
    // Stopped gracefully, the propeller leaves the (non-interruptible) attempt running for its successor.
    first.signal(nix::sys::signal::Signal::SIGTERM);
    let _second = deployment.start_propeller("second");
    let finished = wait_finished(&mut client, &id, Duration::from_secs(60)).await;
    assert_eq!(
        finished.phase,
        wire::ExecutionPhase::Failed as i32,
        "{}",
        finished.error
    );
    assert!(
        started.elapsed() < Duration::from_secs(35),
        "the attempt ended at its timeout, not when its 40 s sleep did"
    );
    assert_eq!(finished.attempts.len(), 1, "{:?}", finished.attempts);
    let attempt = &finished.attempts[0];
    assert_eq!(attempt.error_kind, "TIMEOUT", "{attempt:?}");
    assert_eq!(attempt.error, "timed out after 6s");
    assert_eq!(runs_of(&runs), 1, "the task ran once: the new owner followed it");
    deployment
        .wait_for_logs(
            &["propeller-second"],
            "re-attached to a task process started by the previous owner",
            Duration::from_secs(5),
        )
        .await;
    // Killed, its process group never gets past the sleep.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!finished_marker.exists(), "the timed-out process was killed");
    assert_history_gap_free(&mut client, &id).await;
}
