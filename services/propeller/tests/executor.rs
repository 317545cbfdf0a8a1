//! The process executor against real subprocesses: typed inputs and outputs, exit codes, timeouts that kill
//! the whole process group, and cancellation.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aloft_core::events::ErrorKind;
use aloft_core::spec::{Interface, RetryPolicy, TaskKind, TaskSpec};
use aloft_core::{ExecutionId, Value};
use aloft_propeller::executor::{AttemptOutcome, AttemptRequest, Executors};
use tokio_util::sync::CancellationToken;

fn process_task(
    script: &str,
    inputs: &[(&str, &str)],
    outputs: &[(&str, &str)],
    timeout: Option<&str>,
) -> TaskSpec {
    TaskSpec {
        name: "t".into(),
        version: Some("1".into()),
        interface: Interface {
            inputs: inputs
                .iter()
                .map(|(n, t)| (n.to_string(), t.parse().unwrap()))
                .collect(),
            outputs: outputs
                .iter()
                .map(|(n, t)| (n.to_string(), t.parse().unwrap()))
                .collect(),
            ..Default::default()
        },
        run: TaskKind::Process {
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: BTreeMap::new(),
            blobs_by_uri: false,
        },
        retries: RetryPolicy::default(),
        timeout: timeout.map(str::to_string),
        cache: None,
        resources: None,
        interruptible: false,
        secrets: Vec::new(),
    }
}

fn request(task: TaskSpec, inputs: &[(&str, Value)]) -> AttemptRequest {
    AttemptRequest {
        execution: ExecutionId {
            project: "p".into(),
            domain: "d".into(),
            name: format!("e{}", uuid_like()),
        },
        node_id: "n".into(),
        attempt: 1,
        task,
        task_version: "1".into(),
        inputs: inputs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
        keep_inline: Default::default(),
    }
}

/// The executors of a propeller working in `dir`, its blob store a directory there.
fn executors_in(dir: &std::path::Path) -> Executors {
    let blobs = aloft_blobstore::BlobStore::local(&dir.join(".blobs")).unwrap();
    Executors::new(
        dir.to_path_buf(),
        blobs,
        aloft_propeller::executor::SecretSource::default(),
        aloft_propeller::executor::DEFAULT_TERMINATION_GRACE,
    )
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

#[tokio::test]
async fn typed_inputs_arrive_as_env_and_files_and_outputs_are_parsed_by_type() {
    let dir = tempfile::tempdir().unwrap();
    let executors = executors_in(dir.path());
    let task = process_task(
        "echo $((ALOFT_INPUT_N * 2)) > $ALOFT_OUTPUT_DIR/doubled; cat $ALOFT_INPUT_DIR/items > $ALOFT_OUTPUT_DIR/items; \
         printf 'hello' > $ALOFT_OUTPUT_DIR/report",
        &[("n", "integer"), ("items", "list<integer>")],
        &[("doubled", "integer"), ("items", "list<integer>"), ("report", "blob<txt>")],
        None,
    );
    let inputs = [
        ("n", Value::Integer(21)),
        ("items", Value::List(vec![Value::Integer(1), Value::Integer(2)])),
    ];
    let outcome = executors
        .run(request(task, &inputs), CancellationToken::new())
        .await;
    let AttemptOutcome::Succeeded(outputs) = outcome else {
        panic!("expected success, got {outcome:?}")
    };
    assert_eq!(outputs["doubled"], Value::Integer(42));
    assert_eq!(
        outputs["items"],
        Value::List(vec![Value::Integer(1), Value::Integer(2)])
    );
    let Value::Blob {
        uri, format, digest, ..
    } = &outputs["report"]
    else {
        panic!("report is a blob")
    };
    assert_eq!(format, "txt");
    // sha256("hello")
    assert_eq!(
        digest.as_deref(),
        Some("sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
    );
    assert_eq!(
        std::fs::read_to_string(uri.trim_start_matches("file://")).unwrap(),
        "hello"
    );
}

#[tokio::test]
async fn a_non_zero_exit_is_a_user_error_with_the_log_tail() {
    let dir = tempfile::tempdir().unwrap();
    let executors = executors_in(dir.path());
    let task = process_task("echo 'bad things happened' >&2; exit 7", &[], &[], None);
    let outcome = executors.run(request(task, &[]), CancellationToken::new()).await;
    let AttemptOutcome::Failed { kind, message } = outcome else {
        panic!("expected failure")
    };
    assert_eq!(kind, ErrorKind::User);
    assert!(
        message.contains("exited with 7")
            && message.contains("bad things happened")
            && message.contains("aloft logs "),
        "{message}"
    );
}

#[tokio::test]
async fn missing_or_ill_typed_outputs_are_user_errors_naming_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let executors = executors_in(dir.path());
    let missing = process_task("true", &[], &[("score", "float")], None);
    let AttemptOutcome::Failed { kind, message } = executors
        .run(request(missing, &[]), CancellationToken::new())
        .await
    else {
        panic!("expected failure")
    };
    assert_eq!(kind, ErrorKind::User);
    assert!(
        message.contains("\"score\"") && message.contains("not written"),
        "{message}"
    );
    let ill_typed = process_task(
        "echo high > $ALOFT_OUTPUT_DIR/score",
        &[],
        &[("score", "float")],
        None,
    );
    let AttemptOutcome::Failed { message, .. } = executors
        .run(request(ill_typed, &[]), CancellationToken::new())
        .await
    else {
        panic!("expected failure")
    };
    assert!(
        message.contains("\"score\"") && message.contains("float"),
        "{message}"
    );
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let executors = executors_in(dir.path());
    let marker = dir.path().join("survived");
    // The child of the shell would outlive a kill of the shell alone.
    let script = format!("(sleep 3; touch {}) & sleep 30", marker.display());
    let task = process_task(&script, &[], &[], Some("500ms"));
    let started = Instant::now();
    let outcome = executors.run(request(task, &[]), CancellationToken::new()).await;
    let AttemptOutcome::Failed { kind, message } = outcome else {
        panic!("expected timeout")
    };
    assert_eq!(kind, ErrorKind::Timeout);
    assert!(message.contains("timed out after 500ms"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!marker.exists(), "a process of the group survived the timeout");
}

#[tokio::test]
async fn cancelling_an_attempt_kills_it_and_reports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let executors = executors_in(dir.path());
    let task = process_task("sleep 30", &[], &[], None);
    let cancel = CancellationToken::new();
    let running = tokio::spawn({
        let cancel = cancel.clone();
        async move { executors.run(request(task, &[]), cancel).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    cancel.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("cancel is prompt")
        .unwrap();
    assert_eq!(outcome, AttemptOutcome::Cancelled);
}

/// Runs `script` as a process attempt under `executors`, cancels it once it has started, and returns the
/// outcome and how long the cancel took.
async fn cancel_after_start(executors: Executors, script: &str) -> (AttemptOutcome, Duration) {
    let task = process_task(script, &[], &[], None);
    let cancel = CancellationToken::new();
    let running = tokio::spawn({
        let cancel = cancel.clone();
        async move { executors.run(request(task, &[]), cancel).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cancelled = Instant::now();
    cancel.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the cancel ends")
        .unwrap();
    (outcome, cancelled.elapsed())
}

#[tokio::test]
async fn a_cancelled_task_gets_sigterm_to_clean_up_and_one_that_ignores_it_sigkill_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = aloft_blobstore::BlobStore::local(&dir.path().join(".blobs")).unwrap();
    let executors = Executors::new(
        dir.path().to_path_buf(),
        blobs,
        aloft_propeller::executor::SecretSource::default(),
        Duration::from_secs(2),
    );
    // A task that cleans up on SIGTERM, taking a moment: the attempt ends once it has.
    let cleaned = dir.path().join("cleaned");
    let script = format!(
        "trap 'sleep 0.3; touch {}; exit 143' TERM; while :; do sleep 0.1; done",
        cleaned.display()
    );
    let (outcome, _) = cancel_after_start(executors.clone(), &script).await;
    assert_eq!(outcome, AttemptOutcome::Cancelled);
    assert!(
        cleaned.exists(),
        "the task's SIGTERM handler ran before the attempt ended"
    );

    // A task that ignores SIGTERM (and so do its children) is killed once the grace has passed.
    let survived = dir.path().join("survived");
    let script = format!("trap '' TERM; (sleep 4; touch {}) & sleep 30", survived.display());
    let (outcome, took) = cancel_after_start(executors, &script).await;
    assert_eq!(outcome, AttemptOutcome::Cancelled);
    assert!(
        took >= Duration::from_secs(2),
        "SIGKILL came before the grace had passed: {took:?}"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!survived.exists(), "a process of the group survived the SIGKILL");
}

#[tokio::test]
async fn built_ins_echo_their_inputs_and_a_missing_command_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let executors = executors_in(dir.path());
    let mut echo = process_task("", &[("v", "string")], &[("v", "string")], None);
    echo.run = TaskKind::Echo;
    let outcome = executors
        .run(
            request(echo, &[("v", Value::String("hi".into()))]),
            CancellationToken::new(),
        )
        .await;
    assert_eq!(
        outcome,
        AttemptOutcome::Succeeded([("v".to_string(), Value::String("hi".into()))].into())
    );
    let mut missing = process_task("", &[], &[], None);
    missing.run = TaskKind::Process {
        command: vec!["/no/such/program".into()],
        env: BTreeMap::new(),
        blobs_by_uri: false,
    };
    let AttemptOutcome::Failed { message, .. } = executors
        .run(request(missing, &[]), CancellationToken::new())
        .await
    else {
        panic!("expected failure")
    };
    assert!(message.contains("/no/such/program"), "{message}");
}

#[tokio::test]
async fn an_attempt_that_ended_unwatched_is_re_attached_from_its_recorded_status() {
    let work = tempfile::tempdir().unwrap();
    let executors = executors_in(work.path());
    let task = process_task("echo 5 > $ALOFT_OUTPUT_DIR/n", &[], &[("n", "integer")], None);
    let attempt = request(task.clone(), &[]);
    // Never started here: nothing to re-attach to.
    assert!(executors
        .reattach(attempt.clone(), CancellationToken::new())
        .is_none());
    let ran = executors.run(attempt.clone(), CancellationToken::new()).await;
    assert_eq!(
        ran,
        AttemptOutcome::Succeeded([("n".to_string(), Value::Integer(5))].into())
    );
    // As a new owner finds it: the process is gone, its exit status and outputs are in its directory.
    let Some(waiting) = executors.reattach(attempt, CancellationToken::new()) else {
        panic!("an attempt with a recorded status is re-attached")
    };
    assert_eq!(waiting.await, ran);

    let failing = request(process_task("echo broken >&2; exit 3", &[], &[], None), &[]);
    executors.run(failing.clone(), CancellationToken::new()).await;
    let Some(waiting) = executors.reattach(failing, CancellationToken::new()) else {
        panic!("a failed attempt with a recorded status is re-attached")
    };
    let AttemptOutcome::Failed { kind, message } = waiting.await else {
        panic!("expected the recorded failure")
    };
    assert_eq!(kind, ErrorKind::User);
    assert!(
        message.contains("exited with 3") && message.contains("broken"),
        "{message}"
    );
}

#[tokio::test]
async fn an_attempts_log_is_read_back_by_its_id_and_a_built_in_says_it_keeps_none() {
    let dir = tempfile::tempdir().unwrap();
    let executors = executors_in(dir.path());
    let task = process_task("echo to stdout; echo to stderr >&2", &[], &[], None);
    let attempt = request(task.clone(), &[]);
    let outcome = executors.run(attempt.clone(), CancellationToken::new()).await;
    assert!(matches!(outcome, AttemptOutcome::Succeeded(_)), "{outcome:?}");
    let log = executors.logs(&task, &attempt.id()).await.unwrap();
    assert_eq!(log, "to stdout\nto stderr\n");

    let mut never_ran = attempt.id();
    never_ran.attempt = 2;
    let error = executors.logs(&task, &never_ran).await.unwrap_err().to_string();
    assert!(error.contains(&never_ran.to_string()), "{error}");

    let noop = TaskSpec {
        run: TaskKind::Noop,
        ..task
    };
    let error = executors
        .logs(&noop, &attempt.id())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("keeps no logs"), "{error}");
}

/// Blob outputs (a file and a directory) go to the blob store under the attempt's key with their size and
/// digest; a later attempt gets them back in its input directory; a store URI with nothing behind it is the
/// user's error naming the input.
#[tokio::test]
async fn blobs_go_through_the_store_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let executors = executors_in(dir.path());
    let make = process_task(
        "printf 'abc' > $ALOFT_OUTPUT_DIR/file; mkdir -p $ALOFT_OUTPUT_DIR/tree/sub; echo x > $ALOFT_OUTPUT_DIR/tree/sub/x",
        &[],
        &[("file", "blob"), ("tree", "blob")],
        None,
    );
    let made = request(make, &[]);
    let AttemptOutcome::Succeeded(outputs) = executors.run(made.clone(), CancellationToken::new()).await
    else {
        panic!("make failed")
    };
    let store = format!("file://{}", dir.path().join(".blobs").display());
    let Value::Blob {
        uri, size, digest, ..
    } = &outputs["file"]
    else {
        panic!("file is a blob")
    };
    assert_eq!(uri, &format!("{store}/p/d/{}/n/1/file", made.execution.name));
    assert_eq!(*size, Some(3));
    // sha256("abc")
    assert_eq!(
        digest.as_deref(),
        Some("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    );
    let Value::Blob { uri: tree, size, .. } = &outputs["tree"] else {
        panic!("tree is a blob")
    };
    assert!(tree.ends_with("/n/1/tree/"), "{tree}");
    assert_eq!(*size, Some(2));

    let read = process_task(
        "cat $ALOFT_INPUT_FILE > $ALOFT_OUTPUT_DIR/text; cat $ALOFT_INPUT_TREE/sub/x > $ALOFT_OUTPUT_DIR/inner",
        &[("file", "blob"), ("tree", "blob")],
        &[("text", "string"), ("inner", "string")],
        None,
    );
    let inputs = [
        ("file", outputs["file"].clone()),
        ("tree", outputs["tree"].clone()),
    ];
    let outcome = executors
        .run(request(read.clone(), &inputs), CancellationToken::new())
        .await;
    assert_eq!(
        outcome,
        AttemptOutcome::Succeeded(
            [
                ("text".to_string(), Value::String("abc".into())),
                ("inner".to_string(), Value::String("x".into()))
            ]
            .into()
        )
    );

    let missing = Value::Blob {
        uri: format!("{store}/p/d/gone/n/1/file"),
        format: String::new(),
        digest: None,
        size: None,
    };
    let inputs = [("file", missing), ("tree", outputs["tree"].clone())];
    let AttemptOutcome::Failed { kind, message } = executors
        .run(request(read, &inputs), CancellationToken::new())
        .await
    else {
        panic!("a missing input fails")
    };
    assert_eq!(kind, ErrorKind::User);
    assert!(
        message.contains("input \"file\"") && message.contains("/gone/"),
        "{message}"
    );
}

/// The log goes to the blob store as the attempt runs; it is all there when the attempt has ended.
#[tokio::test]
async fn the_log_is_shipped_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let executors = executors_in(dir.path());
    let attempt = request(process_task("echo one; echo two >&2", &[], &[], None), &[]);
    let outcome = executors.run(attempt.clone(), CancellationToken::new()).await;
    assert!(matches!(outcome, AttemptOutcome::Succeeded(_)), "{outcome:?}");
    let blobs = aloft_blobstore::BlobStore::local(&dir.path().join(".blobs")).unwrap();
    let prefix = aloft_propeller::executor::log_prefix(&attempt.id());
    let chunks = blobs.read_log(&prefix, 0).await.unwrap();
    let text: String = chunks
        .iter()
        .map(|c| String::from_utf8_lossy(&c.bytes).into_owned())
        .collect();
    assert_eq!(text, "one\ntwo\n");
}

/// A task's secrets arrive as the variable and the file it names (and only those: the propeller's own
/// `ALOFT_SECRET_*` variables are not inherited); the file is gone after the attempt; a missing secret is a
/// system error naming it.
#[tokio::test]
async fn secrets_reach_the_task_by_env_and_file_and_missing_ones_are_named() {
    // A secret of the propeller's own that no task names: no task may see it.
    std::env::set_var("ALOFT_SECRET_UNRELATED", "not-yours");
    let dir = tempfile::tempdir().unwrap();
    let source_dir = dir.path().join("secret-source");
    std::fs::create_dir_all(&source_dir).unwrap();
    std::fs::write(source_dir.join("token"), "t0ken\n").unwrap();
    std::fs::write(source_dir.join("key"), "k3y").unwrap();
    let blobs = aloft_blobstore::BlobStore::local(&dir.path().join(".blobs")).unwrap();
    let executors = Executors::new(
        dir.path().to_path_buf(),
        blobs,
        aloft_propeller::executor::SecretSource::new(Some(source_dir)),
        aloft_propeller::executor::DEFAULT_TERMINATION_GRACE,
    );
    let mut task = process_task(
        "printf %s \"$TOKEN\" > $ALOFT_OUTPUT_DIR/token; cat $ALOFT_SECRETS_DIR/key.json > $ALOFT_OUTPUT_DIR/key; \
         env | grep -c '^ALOFT_SECRET_' > $ALOFT_OUTPUT_DIR/inherited || true",
        &[],
        &[("token", "string"), ("key", "string"), ("inherited", "integer")],
        None,
    );
    task.secrets = vec![
        aloft_core::spec::TaskSecret {
            name: "token".into(),
            env: Some("TOKEN".into()),
            file: None,
        },
        aloft_core::spec::TaskSecret {
            name: "key".into(),
            env: None,
            file: Some("/var/run/secrets/key.json".into()),
        },
    ];
    let attempt = request(task.clone(), &[]);
    let outcome = executors.run(attempt.clone(), CancellationToken::new()).await;
    assert_eq!(
        outcome,
        AttemptOutcome::Succeeded(
            [
                ("token".to_string(), Value::String("t0ken".into())),
                ("key".to_string(), Value::String("k3y".into())),
                ("inherited".to_string(), Value::Integer(0)),
            ]
            .into()
        )
    );
    assert!(
        !executors.attempt_dir(&attempt).join(".secrets").exists(),
        "secret files are removed"
    );

    task.secrets[0].name = "absent".into();
    let AttemptOutcome::Failed { kind, message } =
        executors.run(request(task, &[]), CancellationToken::new()).await
    else {
        panic!("a missing secret fails")
    };
    assert_eq!(kind, ErrorKind::System);
    assert!(
        message.contains("secret \"absent\"") && message.contains("ALOFT_SECRET_ABSENT"),
        "{message}"
    );
}

/// An output too large to travel inline is offloaded to the store beside the attempt's blobs and given back
/// as a reference, and the next task reads the whole value from its input file; an output the engine reads
/// stays inline; one over the ceiling fails the attempt as the user's error naming it and its size, before
/// anything of the attempt is stored.
#[tokio::test]
async fn large_outputs_are_offloaded_and_staged_back_and_oversized_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = aloft_blobstore::BlobStore::local(&dir.path().join(".blobs"))
        .unwrap()
        .with_value_limits(aloft_blobstore::ValueLimits {
            inline: 64 * 1024,
            max: 1024 * 1024,
        });
    let executors = Executors::new(
        dir.path().to_path_buf(),
        blobs.clone(),
        aloft_propeller::executor::SecretSource::default(),
        aloft_propeller::executor::DEFAULT_TERMINATION_GRACE,
    );
    let make = process_task(
        "echo 1 > $ALOFT_OUTPUT_DIR/small; head -c 600000 /dev/zero | tr '\\0' 'a' > $ALOFT_OUTPUT_DIR/big; head -c 100000 /dev/zero | tr '\\0' 'b' > $ALOFT_OUTPUT_DIR/read",
        &[],
        &[("small", "integer"), ("big", "string"), ("read", "string")],
        None,
    );
    let mut made_request = request(make, &[]);
    made_request.keep_inline = ["read".to_string()].into();
    let AttemptOutcome::Succeeded(made) = executors
        .run(made_request.clone(), CancellationToken::new())
        .await
    else {
        panic!("make failed")
    };
    assert_eq!(made["small"], Value::Integer(1));
    assert_eq!(
        made["read"],
        Value::String("b".repeat(100_000)),
        "the engine reads it: inline"
    );
    let Value::Offloaded { uri, size, .. } = &made["big"] else {
        panic!("big is not offloaded: {:?}", made["big"])
    };
    assert_eq!(*size, 600_000);
    assert!(
        uri.ends_with(&format!("/{}/n/1/big.value", made_request.execution.name)),
        "{uri}"
    );
    let check = process_task(
        "wc -c < $ALOFT_INPUT_DIR/text > $ALOFT_OUTPUT_DIR/length; test \"$ALOFT_INPUT_TEXT\" = \"$ALOFT_INPUT_DIR/text\" && echo yes > $ALOFT_OUTPUT_DIR/by_path",
        &[("text", "string")],
        &[("length", "integer"), ("by_path", "string")],
        None,
    );
    let AttemptOutcome::Succeeded(checked) = executors
        .run(
            request(check, &[("text", made["big"].clone())]),
            CancellationToken::new(),
        )
        .await
    else {
        panic!("check failed")
    };
    assert_eq!(checked["length"], Value::Integer(600_000));
    assert_eq!(checked["by_path"], Value::String("yes".into()));

    let oversized = process_task(
        "echo kept > $ALOFT_OUTPUT_DIR/data; head -c 2000000 /dev/zero | tr '\\0' 'a' > $ALOFT_OUTPUT_DIR/huge",
        &[],
        &[("data", "blob"), ("huge", "string")],
        None,
    );
    let oversized_request = request(oversized, &[]);
    let AttemptOutcome::Failed { kind, message } = executors
        .run(oversized_request.clone(), CancellationToken::new())
        .await
    else {
        panic!("an oversized output fails")
    };
    assert_eq!(kind, ErrorKind::User);
    assert!(
        message.contains("output \"huge\" is 2000000 bytes, more than the 1048576 bytes a value may be")
            && message.contains("blob output"),
        "{message}"
    );
    let stored = blobs
        .list(&format!("p/d/{}", oversized_request.execution.name))
        .await
        .unwrap();
    assert!(
        stored.is_empty(),
        "nothing of the refused attempt is stored: {stored:?}"
    );
}

/// A task that reads blobs itself (`blobs_by_uri`) gets their URIs, and nothing is downloaded.
#[tokio::test]
async fn a_task_that_reads_blobs_itself_gets_their_uris() {
    let dir = tempfile::tempdir().unwrap();
    let executors = executors_in(dir.path());
    let make = process_task(
        "printf 'abc' > $ALOFT_OUTPUT_DIR/data",
        &[],
        &[("data", "blob")],
        None,
    );
    let AttemptOutcome::Succeeded(made) = executors.run(request(make, &[]), CancellationToken::new()).await
    else {
        panic!("make failed")
    };
    let Value::Blob { uri, .. } = &made["data"] else {
        panic!("data is a blob")
    };
    let mut read = process_task(
        "printf %s \"$ALOFT_INPUT_DATA\" > $ALOFT_OUTPUT_DIR/seen; cat $ALOFT_INPUT_DIR/data > $ALOFT_OUTPUT_DIR/file",
        &[("data", "blob")],
        &[("seen", "string"), ("file", "string")],
        None,
    );
    read.run = TaskKind::Process {
        command: match &read.run {
            TaskKind::Process { command, .. } => command.clone(),
            _ => unreachable!(),
        },
        env: BTreeMap::new(),
        blobs_by_uri: true,
    };
    let outcome = executors
        .run(
            request(read, &[("data", made["data"].clone())]),
            CancellationToken::new(),
        )
        .await;
    assert_eq!(
        outcome,
        AttemptOutcome::Succeeded(
            [
                ("seen".to_string(), Value::String(uri.clone())),
                ("file".to_string(), Value::String(uri.clone())),
            ]
            .into()
        )
    );
}
