//! A task pod's data staged by helper containers (`--kubernetes-helper-image`), on a real API server
//! (kube-apiserver, no kubelet), Kafka, Postgres and the S3 server `scripts/test.sh` starts. The test plays
//! the kubelet as before, and also runs the pod's containers as it would: the init container's and the
//! output helper's real command (`aloft admin pod-data ...`) with the environment the pod spec gives them,
//! and the task beside the output helper in one process namespace of their own (`unshare --pid`, as
//! `shareProcessNamespace` gives them), on a directory standing for the pod's volume.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aloft_e2e::*;
use aloft_proto::v1 as wire;
use k8s_openapi::api::core::v1::{Container, Pod};

mod kube_support;
use kube_support::*;

const COUNT_LINES: &str = r#"kind: task
name: count-lines
version: "1"
interface: {inputs: {lines: blob, extra: integer}, outputs: {count: integer, copy: blob, parts: "list<blob>"}}
retries: {system: 0}
run:
  container:
    image: "registry.example.com/tools/busybox:1"
    command: ["sh", "-c", "sleep 1; echo $(( $(wc -l < \"$ALOFT_INPUT_LINES\") + ALOFT_INPUT_EXTRA )) > \"$ALOFT_OUTPUT_DIR/count\"; cp \"$ALOFT_INPUT_LINES\" \"$ALOFT_OUTPUT_DIR/copy\"; cd \"$ALOFT_OUTPUT_DIR\"; mkdir parts.items; echo first > parts.items/0; echo second > parts.items/1; echo '[\"parts.items/0\",\"parts.items/1\"]' > parts"]
"#;

/// The pod's volume on this machine: `/var/run/aloft` in the pod.
fn on_volume(value: &str, volume: &Path) -> String {
    value.replace("/var/run/aloft", &volume.display().to_string())
}

/// Container `container`'s environment as the pod spec gives it (plain values), its volume at `volume`.
fn env_of_container(container: &Container, volume: &Path) -> Vec<(String, String)> {
    container
        .env
        .iter()
        .flatten()
        .filter_map(|var| Some((var.name.clone(), on_volume(var.value.as_ref()?, volume))))
        .collect()
}

fn container<'a>(pod: &'a Pod, name: &str) -> &'a Container {
    let spec = pod.spec.as_ref().unwrap();
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("the pod has no container {name}"))
}

/// The helper's own command line (`aloft admin pod-data STEP`), as its container runs it.
fn helper_command(helper: &Container, volume: &Path, termination_log: &Path) -> Command {
    let args = helper.command.clone().unwrap();
    assert_eq!(args[0], "aloft");
    let mut command = Command::new(binary("aloft"));
    command
        .args(&args[1..])
        .envs(env_of_container(helper, volume))
        .env("ALOFT_TERMINATION_LOG", termination_log);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_containers_stage_a_pods_inputs_and_outputs_through_the_store() {
    let Some(store_url) = real_s3_store() else { return };
    let namespaces = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        namespaces,
        "this test runs a task and its output helper in a process namespace of their own: \
         `unshare --pid --fork --mount-proc` must work here (as root)"
    );
    let helper_image = ("ALOFT_KUBERNETES_HELPER_IMAGE", "aloft:test".to_string());
    let Some(KubeFleet {
        deployment,
        kubeconfig,
        pods,
        mut client,
        admin: _admin,
        propeller: _propeller,
    }) = kube_fleet(Some(store_url.clone()), std::slice::from_ref(&helper_image)).await
    else {
        return;
    };
    register_text(&mut client, deployment.scratch.path(), "count.yaml", COUNT_LINES).await;
    let store = aloft_blobstore::BlobStore::from_url(&store_url).unwrap();
    let lines = store
        .put(
            &format!("{}/lines.txt", unique("inputs")),
            bytes::Bytes::from_static(b"a\nb\nc\n"),
        )
        .await
        .unwrap();

    let name = unique("count");
    let id = launch(
        &mut client,
        task("count-lines", "1"),
        &name,
        &[("lines", lines.as_str()), ("extra", "2")],
    )
    .await
    .unwrap();
    let pod = wait_for_pods(&pods, &name, 1).await.remove(0);
    let pod_name = pod.metadata.name.clone().unwrap();
    let spec = pod.spec.clone().unwrap();
    assert_eq!(spec.share_process_namespace, Some(true));
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["aloft-outputs", "task"], "the output helper starts first");
    let stage_in = container(&pod, "aloft-inputs");
    assert_eq!(stage_in.image.as_deref(), Some("aloft:test"));
    assert_eq!(
        env_of(&pod, "ALOFT_INPUT_LINES").unwrap().value.as_deref(),
        Some("/var/run/aloft/inputs/lines")
    );
    assert_eq!(
        env_of(&pod, "ALOFT_OUTPUT_DIR").unwrap().value.as_deref(),
        Some("/var/run/aloft/outputs")
    );

    // The init container: the input blob is downloaded from S3 onto the pod's volume.
    let volume = deployment.scratch.path().join("pod-volume");
    let termination_log = deployment.scratch.path().join("termination-log");
    let staged = helper_command(stage_in, &volume, &termination_log)
        .output()
        .unwrap();
    assert!(
        staged.status.success(),
        "{}",
        String::from_utf8_lossy(&staged.stderr)
    );
    assert_eq!(std::fs::read(volume.join("inputs/lines")).unwrap(), b"a\nb\nc\n");
    assert_eq!(std::fs::read_to_string(volume.join("inputs/extra")).unwrap(), "2");
    report(&pods, &pod_name, serde_json::json!({"phase": "Running"})).await;

    // The output helper and the task in one process namespace: the helper waits for the task to end.
    let stage_out = container(&pod, "aloft-outputs");
    let task_container = container(&pod, "task");
    let task_script = task_container.command.clone().unwrap()[2].clone();
    let helper = helper_command(stage_out, &volume, &termination_log);
    let helper_line: Vec<String> = std::iter::once(helper.get_program())
        .chain(helper.get_args())
        .map(|part| format!("'{}'", part.to_string_lossy()))
        .collect();
    // The shell is the namespace's first process, as the pod's pause process is; the task (which sleeps a
    // second first) and the helper are the others, and nothing else comes and goes beside them.
    let pod_script = format!(
        "sh -c \"$TASK_SCRIPT\" & task=$!; {} > {}/helper.log 2>&1; helper=$?; wait $task; exit $helper",
        helper_line.join(" "),
        deployment.scratch.path().display()
    );
    let ran = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "sh", "-c", &pod_script])
        .envs(
            helper
                .get_envs()
                .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned()))),
        )
        .envs(env_of_container(task_container, &volume))
        .env("TASK_SCRIPT", &task_script)
        .output()
        .unwrap();
    let helper_log =
        std::fs::read_to_string(deployment.scratch.path().join("helper.log")).unwrap_or_default();
    assert!(
        ran.status.success(),
        "{} / helper: {helper_log}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(helper_log.contains("uploaded 4 output(s)"), "{helper_log}");
    report(&pods, &pod_name, succeeded()).await;
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(60)).await;
    let scalars = scalar_outputs(&finished);
    assert_eq!(scalars[0], "count=5");
    let outputs = finished.outputs.unwrap();
    let copy = match outputs.values["copy"].value.clone() {
        Some(wire::literal::Value::Blob(blob)) => blob,
        other => panic!("copy is not a blob: {other:?}"),
    };
    assert_eq!(&store.get(&copy.uri).await.unwrap()[..], b"a\nb\nc\n");
    // A list of blobs named by paths in the output directory (as the Python SDK writes one) comes back as
    // the URIs of the objects the helper uploaded.
    let first = copy.uri.replace("/copy", "/parts.items/0");
    assert_eq!(
        scalars[1],
        format!("parts=[{first}, {}]", first.replace("/0", "/1"))
    );
    assert_eq!(&store.get(&first).await.unwrap()[..], b"first\n");
    wait_gone(&pods, &pod_name).await;

    // An input that does not exist: the init container exits 2 naming it, and the attempt fails as USER.
    let missing = store.uri_of(&format!("{}/nothing.txt", unique("inputs")));
    let name = unique("count-missing");
    let id = launch(
        &mut client,
        task("count-lines", "1"),
        &name,
        &[("lines", missing.as_str()), ("extra", "1")],
    )
    .await
    .unwrap();
    let pod = wait_for_pods(&pods, &name, 1).await.remove(0);
    let volume = deployment.scratch.path().join("pod-volume-2");
    let staged = helper_command(container(&pod, "aloft-inputs"), &volume, &termination_log)
        .output()
        .unwrap();
    assert_eq!(
        staged.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&staged.stderr)
    );
    let message = std::fs::read_to_string(&termination_log).unwrap();
    assert!(
        message.contains("input \"lines\"") && message.contains(&missing),
        "{message}"
    );
    report(
        &pods,
        pod.metadata.name.as_deref().unwrap(),
        serde_json::json!({"phase": "Failed", "initContainerStatuses": [{
            "name": "aloft-inputs", "image": "aloft:test", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 2, "reason": "Error", "message": message}}}]}),
    )
    .await;
    let finished = wait_finished(&mut client, &id, Duration::from_secs(60)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Failed as i32);
    let attempt = finished.attempts.first().unwrap();
    assert_eq!(attempt.error_kind, "USER", "{attempt:?}");
    assert!(
        attempt.error.contains("staging its inputs failed") && attempt.error.contains("input \"lines\""),
        "{}",
        attempt.error
    );

    // Helpers need a store the pods can reach: a propeller on a local directory refuses to start.
    let refused = Command::new(binary("aloft-propeller"))
        .env("ALOFT_KUBERNETES", "kubeconfig")
        .env("KUBECONFIG", &kubeconfig)
        .env(helper_image.0, &helper_image.1)
        .env(
            "ALOFT_BLOB_STORE",
            format!("file://{}", deployment.scratch.path().display()),
        )
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("--kubernetes-helper-image") && said.contains("s3://"),
        "{said}"
    );
}
