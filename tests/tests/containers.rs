//! The container executor on a real container engine (Docker Engine, started by `scripts/test.sh`), with
//! Kafka and Postgres: tasks in three different images pass typed values and a blob, a task over its
//! memory limit fails as out of memory naming the limit, one over its ephemeral-storage limit is stopped
//! naming that, a missing image fails with the engine's message,
//! terminating an execution kills its container, a propeller SIGKILLed mid-task is succeeded by one that
//! re-attaches to the running container (the task runs once), and bad images or quantities are refused at
//! registration. Images are built in the test from a static busybox; nothing is pulled.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use aloft_e2e::*;
use aloft_proto::v1 as wire;

/// A deployment on Kafka, Postgres and the container engine, and the engine's socket.
async fn container_deployment() -> Option<(Deployment, String)> {
    let engine = real_container_engine()?;
    let (brokers, database) = real_backends()?;
    Some((Deployment::new(&brokers, &database).await, engine))
}

/// A propeller whose container tasks run on `engine` with no network (tests never address the engine's
/// bridge).
fn container_propeller(deployment: &Deployment, engine: &str, member: &str) -> Service {
    deployment.start_with_env(
        "aloft-propeller",
        &format!("propeller-{member}"),
        &[
            ("ALOFT_MEMBER_ID", member.to_string()),
            ("ALOFT_CONTAINER_ENGINE", engine.to_string()),
            ("ALOFT_CONTAINER_NETWORK", "none".to_string()),
        ],
    )
}

/// Waits until a container of `execution` runs.
async fn wait_running(engine: &str, execution: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let filter = format!("label=aloft.execution={execution}");
    while docker(
        engine,
        &["ps", "--filter", &filter, "--filter", "status=running", "-q"],
    )
    .unwrap_or_default()
    .trim()
    .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "{execution}: the task's container never ran"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn node<'a>(execution: &'a wire::Execution, id: &str) -> &'a wire::NodeExecution {
    execution
        .nodes
        .iter()
        .find(|n| n.node_id == id)
        .unwrap_or_else(|| panic!("node {id} in {execution:?}"))
}

const THREE_IMAGES: &str = r#"kind: task
name: produce
version: "1"
interface: {outputs: {where: string, n: integer, data: blob}}
resources: {cpu: 0.5, memory: 64Mi}
run:
  container:
    image: aloft-test/stage-a:1
    command: ["sh", "-c"]
    args: ["cat /etc/image-name > $ALOFT_OUTPUT_DIR/where && echo 21 > $ALOFT_OUTPUT_DIR/n && head -c 100000 /dev/urandom > $ALOFT_OUTPUT_DIR/data && echo produced in $(cat /etc/image-name)"]
---
kind: task
name: transform
version: "1"
interface: {inputs: {n: integer, data: blob}, outputs: {where: string, doubled: integer, size: integer}}
run:
  container:
    image: aloft-test/stage-b:1
    command: ["sh", "-c", "cat /etc/image-name > $ALOFT_OUTPUT_DIR/where && expr $ALOFT_INPUT_N \\* 2 > $ALOFT_OUTPUT_DIR/doubled && wc -c < $ALOFT_INPUT_DATA | tr -d ' ' > $ALOFT_OUTPUT_DIR/size"]
---
kind: task
name: report
version: "1"
interface: {inputs: {doubled: integer, size: integer}, outputs: {where: string, line: string}}
run:
  container:
    image: aloft-test/stage-c:1
    command: ["sh", "-c", "cat /etc/image-name > $ALOFT_OUTPUT_DIR/where && echo \"$GREETING $(cat $ALOFT_INPUT_DIR/doubled) from $(cat $ALOFT_INPUT_DIR/size) bytes\" > $ALOFT_OUTPUT_DIR/line"]
    env: {GREETING: got}
---
kind: workflow
name: three-images
interface: {outputs: {a: string, b: string, c: string, line: string}}
nodes:
  - {id: produce, task: produce}
  - {id: transform, task: transform, inputs: {n: produce.n, data: produce.data}}
  - {id: report, task: report, inputs: {doubled: transform.doubled, size: transform.size}}
outputs: {a: produce.where, b: transform.where, c: report.where, line: report.line}
"#;

/// Three tasks, three images: each runs in its own (it reads its image's name), typed values and a blob
/// pass between them through the mounted directories and the blob store, and the log of a container is
/// read through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_of_three_images_passes_typed_values_and_a_blob() {
    let Some((deployment, engine)) = container_deployment().await else {
        return;
    };
    for tag in [
        "aloft-test/stage-a:1",
        "aloft-test/stage-b:1",
        "aloft-test/stage-c:1",
    ] {
        busybox_image(&engine, tag).unwrap();
    }
    let _admin = deployment.start_admin();
    let _propeller = container_propeller(&deployment, &engine, "a");
    let mut client = deployment.client().await;
    register_text(&mut client, deployment.scratch.path(), "three.yaml", THREE_IMAGES).await;
    let id = launch(&mut client, workflow("three-images"), "three-images-1", &[])
        .await
        .unwrap();
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(120)).await;
    assert_eq!(
        scalar_outputs(&finished),
        [
            "a=\"aloft-test/stage-a:1\"",
            "b=\"aloft-test/stage-b:1\"",
            "c=\"aloft-test/stage-c:1\"",
            "line=\"got 42 from 100000 bytes\""
        ]
    );
    let mut stream = client
        .get_task_logs(wire::GetTaskLogsRequest {
            id: Some(id.clone()),
            node_id: "produce".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut log = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        log.extend_from_slice(&chunk.data);
    }
    assert_eq!(
        String::from_utf8_lossy(&log),
        "produced in aloft-test/stage-a:1\n"
    );
    assert!(
        attempt_containers(&engine, "three-images-1").is_empty(),
        "finished attempts' containers are removed"
    );
}

/// Over its memory limit, a task is killed and fails as out of memory, naming the limit (over its
/// ephemeral-storage limit, likewise); an image that cannot be pulled fails with the engine's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_memory_and_a_missing_image_fail_saying_why() {
    let Some((deployment, engine)) = container_deployment().await else {
        return;
    };
    busybox_image(&engine, "aloft-test/stage-a:1").unwrap();
    let _admin = deployment.start_admin();
    let _propeller = container_propeller(&deployment, &engine, "a");
    let mut client = deployment.client().await;
    let specs = r#"kind: task
name: hungry
version: "1"
resources: {memory: 16Mi}
retries: {user: 0}
run:
  container:
    image: aloft-test/stage-a:1
    command: ["sh", "-c", "echo filling memory; a=$(yes | head -c 80000000); echo never here ${#a}"]
---
kind: task
name: nowhere
version: "1"
run:
  container:
    image: 127.0.0.1:1/aloft-test/missing:1
    command: ["true"]
---
kind: task
name: hoarder
version: "1"
resources: {ephemeral_storage: 8Mi}
retries: {user: 0}
run:
  container:
    image: aloft-test/stage-a:1
    command: ["sh", "-c", "echo filling the disk; dd if=/dev/zero of=/tmp/fill bs=1048576 count=32; sleep 120"]
"#;
    register_text(&mut client, deployment.scratch.path(), "fail.yaml", specs).await;
    let hungry = launch(&mut client, task("hungry", "1"), "hungry-1", &[])
        .await
        .unwrap();
    let nowhere = launch(&mut client, task("nowhere", "1"), "nowhere-1", &[])
        .await
        .unwrap();
    let hoarder = launch(&mut client, task("hoarder", "1"), "hoarder-1", &[])
        .await
        .unwrap();
    let finished = wait_finished(&mut client, &hungry, Duration::from_secs(120)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Failed as i32);
    let error = &node(&finished, "hungry").error;
    assert!(error.contains("out of memory"), "{error}");
    assert!(error.contains("16 MiB"), "the limit is named: {error}");
    assert!(
        error.contains("filling memory"),
        "the log's end is quoted: {error}"
    );
    let finished = wait_finished(&mut client, &nowhere, Duration::from_secs(120)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Failed as i32);
    let error = &node(&finished, "nowhere").error;
    assert!(
        error.contains("image 127.0.0.1:1/aloft-test/missing:1 cannot be pulled"),
        "{error}"
    );
    assert!(error.contains("127.0.0.1:1"), "the engine's message: {error}");
    assert_eq!(
        node(&finished, "nowhere").attempts,
        1,
        "a pull failure is the user's: not retried"
    );
    // Over its ephemeral-storage limit, a task is stopped (long before its sleep ends) naming the limit.
    let finished = wait_finished(&mut client, &hoarder, Duration::from_secs(90)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Failed as i32);
    let error = &node(&finished, "hoarder").error;
    assert!(error.contains("local storage"), "{error}");
    assert!(error.contains("8 MiB"), "the limit is named: {error}");
    assert!(
        error.contains("filling the disk"),
        "the log's end is quoted: {error}"
    );
}

/// Terminating an execution kills its running container (and removes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_an_execution_kills_its_container() {
    let Some((deployment, engine)) = container_deployment().await else {
        return;
    };
    busybox_image(&engine, "aloft-test/stage-a:1").unwrap();
    let _admin = deployment.start_admin();
    let _propeller = container_propeller(&deployment, &engine, "a");
    let mut client = deployment.client().await;
    let specs = r#"kind: task
name: forever
version: "1"
run:
  container:
    image: aloft-test/stage-a:1
    command: ["sleep", "600"]
"#;
    register_text(&mut client, deployment.scratch.path(), "forever.yaml", specs).await;
    let id = launch(&mut client, task("forever", "1"), "forever-1", &[])
        .await
        .unwrap();
    wait_running(&engine, "forever-1").await;
    client
        .terminate_execution(wire::TerminateExecutionRequest {
            id: Some(id.clone()),
            reason: "test".into(),
        })
        .await
        .unwrap();
    let finished = wait_finished(&mut client, &id, Duration::from_secs(60)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Aborted as i32);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !attempt_containers(&engine, "forever-1").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the container outlived its terminated execution: {:?}",
            attempt_containers(&engine, "forever-1")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A propeller SIGKILLed while its task's container runs: the successor finds the container by name,
/// follows it to its end and reports its outputs; the task ran once (one attempt, one container start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_reattaches_to_the_running_container() {
    let Some((deployment, engine)) = container_deployment().await else {
        return;
    };
    busybox_image(&engine, "aloft-test/stage-a:1").unwrap();
    let _admin = deployment.start_admin();
    let mut first = container_propeller(&deployment, &engine, "a");
    let mut client = deployment.client().await;
    let specs = r#"kind: task
name: slow
version: "1"
interface: {outputs: {answer: integer}}
run:
  container:
    image: aloft-test/stage-a:1
    command: ["sh", "-c", "echo started; sleep 8; echo 42 > $ALOFT_OUTPUT_DIR/answer; echo done"]
"#;
    register_text(&mut client, deployment.scratch.path(), "slow.yaml", specs).await;
    let id = launch(&mut client, task("slow", "1"), "slow-1", &[])
        .await
        .unwrap();
    wait_running(&engine, "slow-1").await;
    first.sigkill();
    let _second = container_propeller(&deployment, &engine, "b");
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(120)).await;
    assert_eq!(scalar_outputs(&finished), ["answer=42"]);
    assert_eq!(
        node(&finished, "slow").attempts,
        1,
        "the successor re-attached: no second attempt"
    );
    assert!(
        deployment
            .log("propeller-b")
            .contains("re-attached to the running container of a previous owner"),
        "{}",
        deployment.log("propeller-b")
    );
    let mut stream = client
        .get_task_logs(wire::GetTaskLogsRequest {
            id: Some(id.clone()),
            node_id: "slow".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut log = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        log.extend_from_slice(&chunk.data);
    }
    assert_eq!(
        String::from_utf8_lossy(&log),
        "started\ndone\n",
        "the command ran once, its whole log shipped across the takeover"
    );
}

/// Bad image references and quantities are refused at registration, naming the field; a GPU request on a
/// propeller without GPUs waits, saying so, instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_refused_and_a_gpu_request_waits_for_a_gpu() {
    let Some((deployment, engine)) = container_deployment().await else {
        return;
    };
    let _admin = deployment.start_admin();
    let _propeller = container_propeller(&deployment, &engine, "a");
    let mut client = deployment.client().await;
    for (spec, says) in [
        (
            serde_json::json!({"name": "bad-image", "run": {"container": {"image": "Busybox:latest"}}}),
            "run.container.image",
        ),
        (
            serde_json::json!({"name": "bad-memory", "resources": {"memory": "4GB"},
                "run": {"container": {"image": "busybox"}}}),
            "resources.memory",
        ),
        (
            serde_json::json!({"name": "negative-cpu", "resources": {"cpu": "-1"},
                "run": {"process": {"command": ["true"]}}}),
            "resources.cpu",
        ),
    ] {
        let refused = client
            .register_task(wire::RegisterRequest {
                project: PROJECT.into(),
                domain: DOMAIN.into(),
                spec_json: spec.to_string(),
            })
            .await
            .expect_err("a bad spec is refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains(says), "{}", refused.message());
    }
    let spec = serde_json::json!({"name": "trainer", "version": "1", "resources": {"gpu": 1},
        "run": {"process": {"command": ["true"]}}});
    client
        .register_task(wire::RegisterRequest {
            project: PROJECT.into(),
            domain: DOMAIN.into(),
            spec_json: spec.to_string(),
        })
        .await
        .unwrap();
    let id = launch(&mut client, task("trainer", "1"), "trainer-1", &[])
        .await
        .unwrap();
    let waiting = wait_until(&mut client, &id, Duration::from_secs(60), |execution| {
        execution
            .nodes
            .iter()
            .any(|n| n.phase == wire::NodePhase::NodeWaitingForResources as i32)
    })
    .await;
    let reason = &node(&waiting, "trainer").wait_reason;
    assert!(reason.contains("gpu: wants 1"), "{reason}");
    assert!(reason.contains("no GPUs"), "{reason}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = get(&mut client, &id).await;
    assert_eq!(
        node(&still, "trainer").phase,
        wire::NodePhase::NodeWaitingForResources as i32,
        "it keeps waiting rather than failing"
    );
}
