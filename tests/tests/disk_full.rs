//! The work directory's disk filled (issue 22), on Kafka + Postgres with a propeller whose work directory is
//! a 16 MiB tmpfs: attempts wait, saying why, while the filesystem has less than `--min-free-disk` free and
//! start once space returns; a task that fails while the filesystem is full failed for want of space, a
//! system error, not a fault of its own; and an ended attempt's directory is removed after the retention,
//! so the work directory does not fill with every attempt ever run. Needs root to mount the tmpfs (as CI and the dev machine have).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use aloft_e2e::faults::parts::SmallDisk;
use aloft_e2e::*;
use aloft_proto::v1 as wire;

const WRITER: &str = r#"
kind: task
name: writer
version: "1"
interface: {inputs: {mib: integer}, outputs: {n: integer}}
run:
  process:
    command: ["sh", "-c", "head -c $((ALOFT_INPUT_MIB * 1048576)) /dev/zero > scratch || exit 1; echo $ALOFT_INPUT_MIB > $ALOFT_OUTPUT_DIR/n"]
"#;

fn node<'a>(execution: &'a wire::Execution, id: &str) -> Option<&'a wire::NodeExecution> {
    execution.nodes.iter().find(|n| n.node_id == id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_wait_while_the_work_directory_is_full_and_a_task_failing_short_of_space_is_a_system_error()
{
    let Some((deployment, mut services, mut client)) = deploy(None).await else {
        return;
    };
    let work = deployment.scratch.path().join("small-work");
    let Some(disk) = SmallDisk::mount(&work, "16m") else {
        assert!(
            std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
            "the disk-full test mounts a tmpfs, which needs root (CI runs as root)"
        );
        eprintln!("skipping: cannot mount a tmpfs here");
        return;
    };
    services.push(deployment.start_with_env(
        "aloft-propeller",
        "propeller-p1",
        &[
            ("ALOFT_MEMBER_ID", "p1".to_string()),
            ("ALOFT_WORK_DIR", disk.path.display().to_string()),
            ("ALOFT_MIN_FREE_DISK", "4Mi".to_string()),
            // An ended attempt's directory goes a second after its end: the greedy task's leftovers free
            // the disk for its own retries and the next task.
            ("ALOFT_ATTEMPT_DIR_RETENTION_SECS", "1".to_string()),
        ],
    ));
    register_file(&mut client, &repo_root().join("examples/diamond.yaml")).await;
    register_text(&mut client, deployment.scratch.path(), "writer.yaml", WRITER).await;

    // Something else fills the disk to 2 MiB free: the diamond's first node waits, naming the shortage.
    let filler = disk.path.join("filler");
    std::fs::write(&filler, vec![0u8; 14 * 1024 * 1024]).unwrap();
    let diamond = launch(&mut client, workflow("diamond"), "while-full", &[("x", "3")])
        .await
        .unwrap();
    let waiting = wait_until(&mut client, &diamond, Duration::from_secs(60), |e| {
        node(e, "a").is_some_and(|a| a.wait_reason.contains("disk: the work directory"))
    })
    .await;
    let reason = &node(&waiting, "a").unwrap().wait_reason;
    assert!(
        reason.contains(&disk.path.display().to_string()) && reason.contains("--min-free-disk"),
        "{reason}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let still = get(&mut client, &diamond).await;
    assert_eq!(
        node(&still, "a").unwrap().phase,
        wire::NodePhase::NodeWaitingForResources as i32,
        "nothing starts on a full disk: {still:?}"
    );

    // Space returns: it starts on its own and succeeds.
    std::fs::remove_file(&filler).unwrap();
    let done = wait_succeeded(&mut client, &diamond, Duration::from_secs(60)).await;
    assert_eq!(scalar_outputs(&done), ["result=24"]);

    // A task that fills the disk itself fails for want of space: a system error, saying so, each attempt
    // (retried from the system budget once its predecessor's files are removed; it fails again as it
    // needs more than there is).
    let greedy = launch(&mut client, task("writer", "1"), "greedy", &[("mib", "32")])
        .await
        .unwrap();
    let failed = wait_finished(&mut client, &greedy, Duration::from_secs(60)).await;
    assert_eq!(failed.phase, wire::ExecutionPhase::Failed as i32, "{failed:?}");
    assert!(!failed.attempts.is_empty());
    for attempt in &failed.attempts {
        assert_eq!(attempt.error_kind, "SYSTEM", "{attempt:?}");
        assert!(
            attempt.error.contains("short of space") && attempt.error.contains("retried as a system error"),
            "{attempt:?}"
        );
    }
    // One that fits runs: the greedy attempts' files were removed after them.
    let modest = launch(&mut client, task("writer", "1"), "modest", &[("mib", "2")])
        .await
        .unwrap();
    let fitted = wait_succeeded(&mut client, &modest, Duration::from_secs(60)).await;
    assert_eq!(scalar_outputs(&fitted), ["n=2"]);
    drop(services);
}
