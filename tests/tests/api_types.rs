//! The typed forms the API gives next to its texts: an attempt's phase, error kind and cache status as enums
//! (the REST API and console read these). Runs in one process on Kafka and Postgres (the embedded log without
//! them).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use aloft_e2e::*;
use aloft_proto::v1 as wire;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_carry_their_phase_error_kind_and_cache_status_as_enums() {
    let scratch = tempfile::tempdir().unwrap();
    let fleet = start_fleet(&scratch.path().join("data")).await;
    let mut client = wait_for_client(&fleet.endpoint(), String::new).await;
    let spec_file = scratch.path().join("flaky.yaml");
    // Fails its first attempt (a user error), succeeds the second, and is cached.
    let marker = scratch.path().join("ran-once");
    std::fs::write(
        &spec_file,
        format!(
            r#"kind: task
name: flaky
version: "1"
interface: {{inputs: {{x: integer}}, outputs: {{y: integer}}}}
retries: {{user: 1}}
cache: {{version: "1"}}
run:
  process:
    command: ["sh", "-c", "test -f {marker} || {{ touch {marker}; echo 'first try fails' >&2; exit 3; }}; echo $ALOFT_INPUT_X > \"$ALOFT_OUTPUT_DIR/y\""]
"#,
            marker = marker.display()
        ),
    )
    .unwrap();
    register_file(&mut client, &spec_file).await;
    let id = launch(&mut client, task("flaky", "1"), "typed", &[("x", "7")])
        .await
        .unwrap();
    let finished = wait_finished(&mut client, &id, Duration::from_secs(60)).await;
    assert_eq!(
        finished.phase,
        wire::ExecutionPhase::Succeeded as i32,
        "{}",
        finished.error
    );
    let typed: Vec<(i32, i32, i32)> = finished
        .attempts
        .iter()
        .map(|attempt| (attempt.attempt_phase, attempt.kind, attempt.cache))
        .collect();
    assert_eq!(
        typed,
        vec![
            (
                wire::AttemptPhase::AttemptFailed as i32,
                wire::ErrorKind::User as i32,
                // A failed attempt records no cache status (its text is empty too).
                wire::CacheStatus::Unspecified as i32
            ),
            (
                wire::AttemptPhase::AttemptSucceeded as i32,
                wire::ErrorKind::Unspecified as i32,
                wire::CacheStatus::CachePopulated as i32
            ),
        ],
        "{:?}",
        finished.attempts
    );
    // The texts still say the same.
    assert_eq!(finished.attempts[0].phase, "FAILED");
    assert_eq!(finished.attempts[0].error_kind, "USER");
    fleet.stop().await.unwrap();
}
