//! The data plane on Kafka, Postgres and a real S3-compatible server (moto, started by `scripts/test.sh`):
//! blobs move through the blob store between propellers that share no disk, task logs are read through the
//! API (followed live, and after their propeller died), and a bad store or a missing input fails naming
//! what is wrong.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use aloft_e2e::*;
use aloft_proto::v1 as wire;

mod data_support;
use data_support::*;

const HAND_OVER: &str = r#"kind: task
name: make
version: "1"
interface: {outputs: {data: blob, digest: string}}
run:
  process:
    command: ["sh", "-c", "head -c 3000000 /dev/urandom > \"$ALOFT_OUTPUT_DIR/data\" && sha256sum \"$ALOFT_OUTPUT_DIR/data\" | cut -d' ' -f1 > \"$ALOFT_OUTPUT_DIR/digest\" && echo made the data"]
---
kind: task
name: check
version: "1"
interface: {inputs: {data: blob}, outputs: {digest: string}}
run:
  process:
    command: ["sh", "-c", "sha256sum \"$ALOFT_INPUT_DATA\" | cut -d' ' -f1 > \"$ALOFT_OUTPUT_DIR/digest\""]
---
kind: workflow
name: hand-over
interface: {outputs: {made: string, read: string}}
nodes:
  - {id: make, task: make}
  - {id: go, gate: {signal: {name: go}}, after: [make]}
  - {id: check, task: check, inputs: {data: make.data}, after: [go]}
outputs: {made: make.digest, read: check.digest}
"#;

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn blob_literal(blob: &wire::Blob) -> wire::Literal {
    wire::Literal {
        value: Some(wire::literal::Value::Blob(blob.clone())),
    }
}

/// Registers `specs` in `domain` of the default project.
async fn register_text_in(client: &mut AdminClient, domain: &str, specs: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("specs.yaml");
    std::fs::write(&path, specs).unwrap();
    let documents = aloft_cli::specs::read_spec_file(&path).unwrap();
    aloft_cli::specs::register_documents(client, PROJECT, domain, documents)
        .await
        .unwrap();
}

fn node_phase(execution: &wire::Execution, node: &str) -> i32 {
    execution
        .nodes
        .iter()
        .find(|n| n.node_id == node)
        .map_or(-1, |n| n.phase)
}

/// A blob written on propeller A is read on propeller B after A was SIGKILLed and its disk wiped: the
/// consumer gets the right bytes from the store, and A's task log is still readable through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_written_on_a_killed_propeller_is_read_on_its_successor() {
    let Some(deployment) = s3_deployment().await else {
        return;
    };
    let _admin = deployment.start_admin();
    let _catalog = deployment.start_catalog();
    let mut first = propeller_on_own_disk(&deployment, "a");
    let mut client = deployment.client().await;
    register_text(
        &mut client,
        deployment.scratch.path(),
        "hand-over.yaml",
        HAND_OVER,
    )
    .await;
    let id = launch(&mut client, workflow("hand-over"), "handover", &[])
        .await
        .unwrap();
    let running = wire::NodePhase::NodeRunning as i32;
    let waiting = wait_until(&mut client, &id, Duration::from_secs(60), |e| {
        node_phase(e, "go") == running
    })
    .await;
    let made = waiting.nodes.iter().find(|n| n.node_id == "make").unwrap();
    let data = made.outputs.as_ref().and_then(|o| o.values.get("data")).cloned();
    let Some(wire::literal::Value::Blob(blob)) = data.and_then(|d| d.value) else {
        panic!("make wrote no blob: {made:?}")
    };
    assert!(
        blob.uri.starts_with("s3://"),
        "the blob lives in the store: {}",
        blob.uri
    );
    assert_eq!(blob.size, 3_000_000);
    assert!(blob.digest.starts_with("sha256:"), "{}", blob.digest);

    let _second = fail_over_and_go(&deployment, &mut first, propeller_on_own_disk, &mut client, &id).await;
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(120)).await;
    let outputs = scalar_outputs(&finished);
    let made_digest = outputs
        .iter()
        .find_map(|o| o.strip_prefix("made="))
        .unwrap()
        .to_string();
    assert_eq!(
        outputs,
        [format!("made={made_digest}"), format!("read={made_digest}")]
    );
    assert_eq!(
        blob.digest,
        format!("sha256:{}", made_digest.trim_matches('"')),
        "the store's digest is the bytes'"
    );

    // The blob downloads through the API and the CLI with the bytes the store's digest names.
    let downloaded = download_data(
        &mut client,
        wire::DownloadDataRequest {
            id: Some(id.clone()),
            node_id: "make".into(),
            name: "data".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(downloaded.len(), 3_000_000);
    assert_eq!(format!("sha256:{}", sha256_hex(&downloaded)), blob.digest);
    let file = deployment.scratch.path().join("downloaded.bin");
    let cli = std::process::Command::new(binary("aloft"))
        .args(["--admin", &format!("http://127.0.0.1:{}", deployment.admin_port)])
        .args(["download", "handover", "data", "--node", "make", "--to"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert_eq!(std::fs::read(&file).unwrap(), downloaded);
    // A signed URL reads the same bytes without credentials.
    let cli = std::process::Command::new(binary("aloft"))
        .args(["--admin", &format!("http://127.0.0.1:{}", deployment.admin_port)])
        .args(["download", "handover", "data", "--node", "make", "--url"])
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let url = String::from_utf8_lossy(&cli.stdout).trim().to_string();
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let signed = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(&signed[..], &downloaded[..]);
    let cli = std::process::Command::new(binary("aloft"))
        .args(["--admin", &format!("http://127.0.0.1:{}", deployment.admin_port)])
        .args(["get", "handover", "--output", "read"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&cli.stdout),
        made_digest.trim_matches('"')
    );

    // Another domain's execution given this blob's URI as an input may use it, but not download it.
    let check = wire::create_execution_request::Target::Task(wire::Identifier {
        project: PROJECT.into(),
        domain: "staging".into(),
        name: "check".into(),
        version: "1".into(),
    });
    register_text_in(&mut client, "staging", HAND_OVER).await;
    let inputs = [("data".to_string(), blob_literal(&blob))];
    let staged = client
        .create_execution(wire::CreateExecutionRequest {
            project: PROJECT.into(),
            domain: "staging".into(),
            name: "borrowed".into(),
            target: Some(check),
            inputs: Some(wire::LiteralMap {
                values: inputs.into_iter().collect(),
            }),
            ..Default::default()
        })
        .await
        .expect("launch in staging")
        .into_inner()
        .id
        .unwrap();
    wait_succeeded(&mut client, &staged, Duration::from_secs(60)).await;
    let refused = client
        .download_data(wire::DownloadDataRequest {
            id: Some(staged),
            name: "data".into(),
            from_inputs: true,
            ..Default::default()
        })
        .await
        .map(|_| ())
        .expect_err("another domain's blob");
    assert_eq!(
        refused.code(),
        tonic::Code::PermissionDenied,
        "{}",
        refused.message()
    );

    let log = read_task_log(&mut client, &id, "make").await;
    assert_eq!(
        log, "made the data\n",
        "the log of an attempt whose propeller died"
    );
}

/// `GetTaskLogs` with follow streams a line while the task still runs; after its propeller is SIGKILLed,
/// the log up to the kill stays readable. Unknown nodes and attempts are NOT_FOUND naming them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_tasks_log_is_followed_and_outlives_its_propeller() {
    let Some(deployment) = s3_deployment().await else {
        return;
    };
    let _admin = deployment.start_admin();
    let mut propeller = propeller_on_own_disk(&deployment, "a");
    let mut client = deployment.client().await;
    let release = deployment.scratch.path().join("release");
    let script = format!(
        // Bounded: the test SIGKILLs the propeller, and the orphaned task must not outlive it for long.
        "echo first line; i=0; while [ ! -f {release} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done; echo second line",
        release = release.display()
    );
    register_process_task(&mut client, DOMAIN, "talker", &script).await;
    let id = start_task(&mut client, DOMAIN, "talker", "talk").await;
    let running = wire::NodePhase::NodeRunning as i32;
    let execution = wait_until(&mut client, &id, Duration::from_secs(60), |e| {
        e.nodes.first().is_some_and(|n| n.phase == running)
    })
    .await;
    let node = execution.nodes[0].node_id.clone();

    let asked = Instant::now();
    let mut follow = client
        .get_task_logs(wire::GetTaskLogsRequest {
            id: Some(id.clone()),
            node_id: node.clone(),
            follow: true,
            ..Default::default()
        })
        .await
        .expect("follow the log")
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(30), follow.message())
        .await
        .expect("the first line arrives while the task runs")
        .expect("a chunk")
        .expect("the stream is open");
    assert_eq!(String::from_utf8_lossy(&first.data), "first line\n");
    assert_eq!(first.offset, 0);
    eprintln!("first followed line after {:?}", asked.elapsed());

    propeller.sigkill();
    drop(follow);
    assert_eq!(read_task_log(&mut client, &id, &node).await, "first line\n");
    let cli = std::process::Command::new(binary("aloft"))
        .args(["--admin", &format!("http://127.0.0.1:{}", deployment.admin_port)])
        .args(["logs", "talk", &node])
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert_eq!(
        String::from_utf8_lossy(&cli.stdout),
        "first line\n",
        "aloft logs prints the log"
    );

    let missing = client
        .get_task_logs(wire::GetTaskLogsRequest {
            id: Some(id.clone()),
            node_id: "nope".into(),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .expect_err("an unknown node");
    assert_eq!(missing.code(), tonic::Code::NotFound);
    assert!(missing.message().contains("\"nope\""), "{}", missing.message());
    let missing = client
        .get_task_logs(wire::GetTaskLogsRequest {
            id: Some(id.clone()),
            node_id: node.clone(),
            attempt: 9,
            ..Default::default()
        })
        .await
        .map(|_| ())
        .expect_err("an unknown attempt");
    assert!(
        missing.message().contains("no attempt 9"),
        "{}",
        missing.message()
    );
    std::fs::write(&release, "").unwrap();
}

/// A blob input URI in the store with nothing behind it fails the attempt as the user's error naming the
/// input; a store with an unknown scheme stops the propeller at start naming the setting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_blob_input_and_a_bad_store_are_named() {
    let Some(deployment) = s3_deployment().await else {
        return;
    };
    let _admin = deployment.start_admin();
    let _propeller = propeller_on_own_disk(&deployment, "a");
    let mut client = deployment.client().await;
    let spec = r#"kind: task
name: reader
version: "1"
interface: {inputs: {data: blob}}
run:
  process:
    command: ["sh", "-c", "cat \"$ALOFT_INPUT_DATA\""]
"#;
    register_text(&mut client, deployment.scratch.path(), "reader.yaml", spec).await;
    let store = deployment.blob_store.clone().unwrap();
    let root = store.split('?').next().unwrap().to_string();
    let missing_uri = format!("{root}/nothing/here");
    let id = launch(
        &mut client,
        task("reader", "1"),
        "reads-nothing",
        &[("data", missing_uri.as_str())],
    )
    .await
    .unwrap();
    let finished = wait_finished(&mut client, &id, Duration::from_secs(60)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Failed as i32);
    let attempt = finished.attempts.first().expect("one attempt");
    assert_eq!(attempt.error_kind, "USER", "{attempt:?}");
    assert!(
        attempt.error.contains("input \"data\"") && attempt.error.contains(&missing_uri),
        "{}",
        attempt.error
    );

    let output = std::process::Command::new(binary("aloft-propeller"))
        .env("ALOFT_KAFKA_BROKERS", &deployment.brokers)
        .env("ALOFT_TOPIC_PREFIX", &deployment.topic_prefix)
        .env("ALOFT_DATA_DIR", deployment.scratch.path())
        .env("ALOFT_SNAPSHOT_INTERVAL_SECS", "0")
        .env("ALOFT_BLOB_STORE", "ftp://somewhere/data")
        .output()
        .expect("run the propeller");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--blob-store") && stderr.contains("unknown scheme \"ftp\""),
        "{stderr}"
    );
    // A raw-data store that does not say whose it is, or names a bad project, stops it naming the entry.
    for (entry, said) in [
        (
            "s3://aloft-test/y".to_string(),
            "expected PROJECT=URL or PROJECT/DOMAIN=URL",
        ),
        (format!("Bad Name={store}"), "--raw-data-store"),
    ] {
        let output = std::process::Command::new(binary("aloft-propeller"))
            .env("ALOFT_KAFKA_BROKERS", &deployment.brokers)
            .env("ALOFT_TOPIC_PREFIX", &deployment.topic_prefix)
            .env("ALOFT_DATA_DIR", deployment.scratch.path())
            .env("ALOFT_SNAPSHOT_INTERVAL_SECS", "0")
            .env("ALOFT_BLOB_STORE", &store)
            .env("ALOFT_RAW_DATA_STORES", &entry)
            .output()
            .expect("run the propeller");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("--raw-data-store (ALOFT_RAW_DATA_STORES)") && stderr.contains(said),
            "{entry}: {stderr}"
        );
    }
    // A store nobody answers stops it too, naming the setting, within seconds.
    let started = std::time::Instant::now();
    let output = std::process::Command::new(binary("aloft-propeller"))
        .env("ALOFT_KAFKA_BROKERS", &deployment.brokers)
        .env("ALOFT_TOPIC_PREFIX", &deployment.topic_prefix)
        .env("ALOFT_DATA_DIR", deployment.scratch.path())
        .env("ALOFT_SNAPSHOT_INTERVAL_SECS", "0")
        .env(
            "ALOFT_BLOB_STORE",
            format!("s3://aloft-test/x?endpoint=http://127.0.0.1:{}", free_port()),
        )
        .env("AWS_ACCESS_KEY_ID", "aloft-test-key-id")
        .env("AWS_SECRET_ACCESS_KEY", "aloft-test-secret")
        .output()
        .expect("run the propeller");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--blob-store") && stderr.contains("cannot write to s3://aloft-test/x"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("aloft-test-secret") && !stderr.contains("aloft-test-key-id"),
        "no credential in the error: {stderr}"
    );
    eprintln!(
        "an unreachable store stopped the propeller after {:?}",
        started.elapsed()
    );
}

/// `aloft admin gc` removes the raw data of finished executions, keeps what a cache entry or an unfinished
/// execution references, and with --dry-run only says what it would remove.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_unreferenced_raw_data_of_finished_executions() {
    let Some(deployment) = s3_deployment().await else {
        return;
    };
    let _admin = deployment.start_admin();
    let _catalog = deployment.start_catalog();
    let _propeller = propeller_on_own_disk(&deployment, "a");
    let mut client = deployment.client().await;
    let release = deployment.scratch.path().join("release");
    let specs = format!(
        r#"kind: task
name: make
version: "1"
interface: {{inputs: {{tag: string}}, outputs: {{data: blob}}}}
run:
  process:
    command: ["sh", "-c", "echo $ALOFT_INPUT_TAG > $ALOFT_OUTPUT_DIR/data"]
---
kind: task
name: make-cached
version: "1"
interface: {{inputs: {{tag: string}}, outputs: {{data: blob}}}}
cache: {{version: "1"}}
run:
  process:
    command: ["sh", "-c", "echo $ALOFT_INPUT_TAG > $ALOFT_OUTPUT_DIR/data"]
---
kind: task
name: hold
version: "1"
interface: {{inputs: {{data: blob}}}}
run:
  process:
    command: ["sh", "-c", "i=0; while [ ! -f {release} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done"]
"#,
        release = release.display()
    );
    register_text(&mut client, deployment.scratch.path(), "gc.yaml", &specs).await;
    let mut blob_of = std::collections::HashMap::new();
    for (name, task_name) in [("plain", "make"), ("held", "make"), ("cached", "make-cached")] {
        let id = launch(&mut client, task(task_name, "1"), name, &[("tag", name)])
            .await
            .unwrap();
        let done = wait_succeeded(&mut client, &id, Duration::from_secs(60)).await;
        let data = done
            .outputs
            .as_ref()
            .and_then(|o| o.values.get("data"))
            .cloned()
            .unwrap();
        let Some(wire::literal::Value::Blob(blob)) = data.value else {
            panic!("no blob")
        };
        blob_of.insert(name, (id, blob));
    }
    // A running execution holds the `held` blob as its input.
    let holding = client
        .create_execution(wire::CreateExecutionRequest {
            project: PROJECT.into(),
            domain: DOMAIN.into(),
            name: "holding".into(),
            target: Some(task("hold", "1")),
            inputs: Some(wire::LiteralMap {
                values: [("data".to_string(), blob_literal(&blob_of["held"].1))]
                    .into_iter()
                    .collect(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id
        .unwrap();
    let running = wire::NodePhase::NodeRunning as i32;
    wait_until(&mut client, &holding, Duration::from_secs(60), |e| {
        e.nodes.first().is_some_and(|n| n.phase == running)
    })
    .await;

    let gc = |dry_run: bool| {
        let mut command = std::process::Command::new(binary("aloft"));
        command
            .args([
                "admin",
                "gc",
                "--older-than",
                "1ms",
                "--database-url",
                &deployment.database_url,
            ])
            .args(["--blob-store", deployment.blob_store.as_deref().unwrap()]);
        if dry_run {
            command.arg("--dry-run");
        }
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let present = |client: &mut AdminClient, name: &'static str| {
        let id = blob_of[name].0.clone();
        let mut client = client.clone();
        async move {
            match client
                .download_data(wire::DownloadDataRequest {
                    id: Some(id),
                    name: "data".into(),
                    ..Default::default()
                })
                .await
            {
                Ok(stream) => stream.into_inner().message().await.is_ok(),
                Err(status) => {
                    assert_eq!(status.code(), tonic::Code::NotFound, "{status}");
                    false
                }
            }
        }
    };
    let said = gc(true);
    assert!(
        said.contains("would remove 1 object(s)") && said.contains("kept 2"),
        "{said}"
    );
    assert!(present(&mut client, "plain").await, "a dry run removes nothing");
    let said = gc(false);
    assert!(said.contains("removed 1 object(s)"), "{said}");
    assert!(said.contains("default/development/plain: removed 1"), "{said}");
    assert!(
        !present(&mut client, "plain").await,
        "unreferenced data is removed"
    );
    assert!(
        present(&mut client, "held").await,
        "an unfinished execution's input is kept"
    );
    assert!(
        present(&mut client, "cached").await,
        "a cache entry's output is kept"
    );
    std::fs::write(&release, "").unwrap();
}

const OFFLOAD: &str = r#"kind: task
name: big-list
version: "1"
interface: {inputs: {n: integer}, outputs: {xs: "list<integer>"}}
run:
  process:
    command: ["python3", "-c", "import json, os; json.dump(list(range(int(os.environ['ALOFT_INPUT_N']))), open(os.environ['ALOFT_OUTPUT_DIR'] + '/xs', 'w'))"]
---
kind: task
name: sum-list
version: "1"
interface: {inputs: {xs: "list<integer>"}, outputs: {total: integer, count: integer}}
run:
  process:
    command: ["python3", "-c", "import json, os; xs = json.load(open(os.environ['ALOFT_INPUT_DIR'] + '/xs')); d = os.environ['ALOFT_OUTPUT_DIR']; open(d + '/total', 'w').write(str(sum(xs))); open(d + '/count', 'w').write(str(len(xs)))"]
---
kind: task
name: too-big
version: "1"
interface: {outputs: {data: blob, s: string}}
run:
  process:
    command: ["sh", "-c", "echo kept > \"$ALOFT_OUTPUT_DIR/data\" && head -c 9437184 /dev/zero | tr '\\0' a > \"$ALOFT_OUTPUT_DIR/s\""]
---
kind: workflow
name: offload
interface: {inputs: {n: integer}, outputs: {xs: "list<integer>", total: integer, count: integer}}
nodes:
  - {id: make, task: big-list, inputs: {n: inputs.n}}
  - {id: go, gate: {signal: {name: go}}, after: [make]}
  - {id: sum, task: sum-list, inputs: {xs: make.xs}, after: [go]}
outputs: {xs: make.xs, total: sum.total, count: sum.count}
"#;

/// A propeller with a work dir of its own and a lower ceiling on values (8 MiB), so a test can pass it.
fn propeller_with_value_ceiling(deployment: &Deployment, member: &str) -> Service {
    propeller_on_own_disk_with(
        deployment,
        member,
        &[("ALOFT_MAX_VALUE_BYTES", (8 * 1024 * 1024).to_string())],
    )
}

/// A 5 MiB list output travels as a reference to the store: the downstream node, run on another propeller
/// after the first was SIGKILLed with its disk wiped, reads the whole list; `aloft get --output` prints
/// it; a large launch input is offloaded by admin the same way; an output over the ceiling fails its
/// attempt naming its size, with nothing of the attempt stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_value_is_offloaded_and_read_back_on_another_machine() {
    let Some(deployment) = s3_deployment().await else {
        return;
    };
    let _admin = deployment.start_admin();
    let _catalog = deployment.start_catalog();
    let mut first = propeller_with_value_ceiling(&deployment, "a");
    let mut client = deployment.client().await;
    register_text(&mut client, deployment.scratch.path(), "offload.yaml", OFFLOAD).await;
    const N: u64 = 800_000;
    let id = launch(
        &mut client,
        workflow("offload"),
        "offload",
        &[("n", &N.to_string())],
    )
    .await
    .unwrap();
    let running = wire::NodePhase::NodeRunning as i32;
    let waiting = wait_until(&mut client, &id, Duration::from_secs(60), |e| {
        node_phase(e, "go") == running
    })
    .await;
    let make = waiting.nodes.iter().find(|n| n.node_id == "make").unwrap();
    let xs = offloaded_of(make.outputs.as_ref().and_then(|o| o.values.get("xs")));
    let expected: Vec<u64> = (0..N).collect();
    let expected_text = serde_json::to_string(&expected).unwrap();
    assert!(xs.uri.starts_with("s3://"), "{}", xs.uri);
    assert!(xs.uri.ends_with("/make/1/xs.value"), "{}", xs.uri);
    assert_eq!(xs.size, expected_text.len() as u64);
    assert!(xs.size > 5 * 1024 * 1024, "{}", xs.size);
    assert_eq!(
        xs.digest,
        format!("sha256:{}", sha256_hex(expected_text.as_bytes()))
    );

    let _second = fail_over_and_go(
        &deployment,
        &mut first,
        propeller_with_value_ceiling,
        &mut client,
        &id,
    )
    .await;
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(120)).await;
    let outputs = finished.outputs.as_ref().unwrap();
    assert_eq!(
        scalar_outputs(&finished)
            .into_iter()
            .filter(|o| !o.starts_with("xs="))
            .collect::<Vec<_>>(),
        [format!("count={N}"), format!("total={}", N * (N - 1) / 2)],
        "the downstream node read the whole list"
    );
    assert_eq!(offloaded_of(outputs.values.get("xs")).uri, xs.uri);
    let cli = std::process::Command::new(binary("aloft"))
        .args(["--admin", &format!("http://127.0.0.1:{}", deployment.admin_port)])
        .args(["get", "offload", "--output", "xs"])
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let printed: Vec<u64> = serde_json::from_slice(&cli.stdout).expect("the list as JSON");
    assert_eq!(printed, expected, "aloft get --output prints the offloaded list");

    // A launch input too large to travel inline is offloaded by admin, and the task reads it whole.
    let input_list: Vec<u64> = (0..200_000).collect();
    let sum_id = launch(
        &mut client,
        task("sum-list", "1"),
        "sum-input",
        &[("xs", &serde_json::to_string(&input_list).unwrap())],
    )
    .await
    .expect("a large input is offloaded, not refused");
    let summed = wait_succeeded(&mut client, &sum_id, Duration::from_secs(60)).await;
    let input = offloaded_of(summed.inputs.as_ref().and_then(|i| i.values.get("xs")));
    assert!(input.uri.ends_with("/sum-input/inputs/xs.value"), "{}", input.uri);
    assert_eq!(
        scalar_outputs(&summed),
        [
            "count=200000".to_string(),
            format!("total={}", 200_000u64 * 199_999 / 2)
        ]
    );

    // Over the ceiling: the attempt fails naming the output and its size, and nothing of it is stored.
    let big_id = launch(&mut client, task("too-big", "1"), "too-big", &[])
        .await
        .unwrap();
    let failed = wait_finished(&mut client, &big_id, Duration::from_secs(60)).await;
    assert_eq!(failed.phase, wire::ExecutionPhase::Failed as i32);
    assert!(
        failed.error.contains("output \"s\" is 9437184 bytes")
            && failed.error.contains("8388608 bytes a value may be"),
        "{}",
        failed.error
    );
    let store = aloft_blobstore::BlobStore::from_url(deployment.blob_store.as_deref().unwrap()).unwrap();
    let stored = store.list(&format!("{PROJECT}/{DOMAIN}/too-big")).await.unwrap();
    assert!(
        stored.is_empty(),
        "nothing of the failed attempt is stored: {stored:?}"
    );
}

const TENANT_DATA: &str = r#"kind: task
name: make
version: "1"
interface: {outputs: {data: blob, long: string}}
run:
  process:
    command: ["sh", "-c", "echo tenant-bytes > \"$ALOFT_OUTPUT_DIR/data\" && head -c 100000 /dev/zero | tr '\\0' t > \"$ALOFT_OUTPUT_DIR/long\" && echo made in its own store"]
---
kind: task
name: check
version: "1"
interface: {inputs: {data: blob, long: string}, outputs: {read: string, length: integer}}
run:
  process:
    command: ["sh", "-c", "cat \"$ALOFT_INPUT_DATA\" > \"$ALOFT_OUTPUT_DIR/read\" && wc -c < \"$ALOFT_INPUT_DIR/long\" > \"$ALOFT_OUTPUT_DIR/length\""]
---
kind: workflow
name: tenant-data
interface: {outputs: {read: string, length: integer, data: blob, long: string}}
nodes:
  - {id: make, task: make}
  - {id: check, task: check, inputs: {data: make.data, long: make.long}}
outputs: {read: check.read, length: check.length, data: make.data, long: make.long}
"#;

/// A domain given its own raw-data store (`--raw-data-store default/staging=URL`) has its blobs, offloaded
/// values and task logs written there, read back by the next task, through the API and by the CLI; another
/// domain's go to the deployment's store as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_domain_with_its_own_raw_data_store_keeps_its_data_there() {
    let Some(deployment) = s3_deployment().await else {
        return;
    };
    let default_store = deployment.blob_store.clone().unwrap();
    let endpoint = std::env::var("ALOFT_TEST_S3_ENDPOINT").unwrap();
    let bucket = std::env::var("ALOFT_TEST_S3_BUCKET").unwrap_or_else(|_| "aloft-test".into());
    let prefix = format!("e2e-staging-{}", uuid::Uuid::new_v4().simple());
    let staging_store = format!("s3://{bucket}/{prefix}?endpoint={endpoint}&region=us-east-1");
    let raw_data = (
        "ALOFT_RAW_DATA_STORES",
        format!("default/staging={staging_store}"),
    );
    let _admin = deployment.start_admin_with_env(std::slice::from_ref(&raw_data));
    let _propeller = propeller_on_own_disk_with(&deployment, "a", std::slice::from_ref(&raw_data));
    let mut client = deployment.client().await;
    register_text_in(&mut client, "staging", TENANT_DATA).await;
    register_text_in(&mut client, DOMAIN, TENANT_DATA).await;
    let staging_root = format!("s3://{bucket}/{prefix}/default/staging/");
    let default_root = format!(
        "{}/default/development/",
        default_store.split('?').next().unwrap()
    );

    for (domain, root) in [("staging", &staging_root), (DOMAIN, &default_root)] {
        let name = format!("tenant-{domain}");
        let id = client
            .create_execution(wire::CreateExecutionRequest {
                project: PROJECT.into(),
                domain: domain.into(),
                name: name.clone(),
                target: Some(wire::create_execution_request::Target::Workflow(
                    wire::Identifier {
                        project: PROJECT.into(),
                        domain: domain.into(),
                        name: "tenant-data".into(),
                        version: String::new(),
                    },
                )),
                ..Default::default()
            })
            .await
            .expect("launch")
            .into_inner()
            .id
            .unwrap();
        let done = wait_succeeded(&mut client, &id, Duration::from_secs(90)).await;
        let outputs = done.outputs.as_ref().unwrap();
        assert_eq!(
            scalar_outputs(&done)
                .into_iter()
                .filter(|o| !o.starts_with("long="))
                .collect::<Vec<_>>(),
            ["length=100000", "read=\"tenant-bytes\""],
            "{domain}"
        );
        let Some(wire::literal::Value::Blob(blob)) = outputs.values["data"].value.clone() else {
            panic!("no blob")
        };
        assert!(
            blob.uri.starts_with(root.as_str()),
            "{domain}: {} not under {root}",
            blob.uri
        );
        let long = offloaded_of(outputs.values.get("long"));
        assert!(
            long.uri.starts_with(root.as_str()),
            "{domain}: {} not under {root}",
            long.uri
        );
        // The offloaded text and the blob download through admin from whichever store holds them.
        let cli = std::process::Command::new(binary("aloft"))
            .args(["--admin", &format!("http://127.0.0.1:{}", deployment.admin_port)])
            .args(["--domain", domain, "get", &name, "--output", "long"])
            .output()
            .unwrap();
        assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
        assert_eq!(
            String::from_utf8_lossy(&cli.stdout),
            "t".repeat(100_000),
            "{domain}"
        );
        let downloaded = download_data(
            &mut client,
            wire::DownloadDataRequest {
                id: Some(id.clone()),
                name: "data".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(downloaded, b"tenant-bytes\n", "{domain}");
        assert_eq!(
            read_task_log(&mut client, &id, "make").await,
            "made in its own store\n",
            "{domain}"
        );
    }
    // The staging store holds the staging execution's data, and the default store none of it.
    let staging = aloft_blobstore::BlobStore::from_url(&staging_store).unwrap();
    assert!(!staging
        .list(&format!("{PROJECT}/staging/tenant-staging"))
        .await
        .unwrap()
        .is_empty());
    assert!(!staging
        .list(&format!("logs/{PROJECT}/staging/tenant-staging"))
        .await
        .unwrap()
        .is_empty());
    let default = aloft_blobstore::BlobStore::from_url(&default_store).unwrap();
    assert!(default
        .list(&format!("{PROJECT}/staging"))
        .await
        .unwrap()
        .is_empty());
    assert!(default
        .list(&format!("logs/{PROJECT}/staging"))
        .await
        .unwrap()
        .is_empty());
}
