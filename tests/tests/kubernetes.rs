//! The Kubernetes executor against a real API server (kube-apiserver v1.20.2 on etcd, started by
//! `scripts/test.sh`), with Kafka and Postgres. There is no kubelet here: the test plays it, reporting pod
//! status through the API (and writing a succeeded pod's outputs to the blob store as its task would).
//! Checked: the pod's spec (resources, GPU, tolerations, node selector, labels, secrets, deadline); phases
//! and reasons map to outcomes (success with typed and blob outputs, OOMKilled, ImagePullBackOff, Evicted
//! retried as a system error); terminate deletes the pod; a successor re-attaches by name, no second pod.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use aloft_e2e::*;
use aloft_proto::v1 as wire;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

mod kube_support;
use kube_support::*;

const TRAIN: &str = r#"kind: task
name: train
version: "1"
interface: {inputs: {rate: float}, outputs: {score: float, model: blob}}
resources: {cpu: 2, memory: 4Gi, limits: {memory: 8Gi}, gpu: 1, accelerator: nvidia-t4}
interruptible: true
timeout: 10m
secrets: [{name: hf-token, env: HF_TOKEN}, {name: gcs-key, file: key.json}]
run:
  container: {image: "registry.example.com/ml/train:1", command: ["python", "-m", "train"], args: ["--fast"]}
"#;

/// A pod per attempt with the task's spec; a succeeded pod's outputs are read back by type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_is_a_pod_with_its_resources_and_its_outputs_come_back() {
    // The services are bound, not left to `..`: dropping them would stop them.
    let Some(KubeFleet {
        deployment,
        pods,
        mut client,
        admin: _admin,
        propeller: _propeller,
        ..
    }) = kube_fleet(None, &[]).await
    else {
        return;
    };
    register_text(&mut client, deployment.scratch.path(), "train.yaml", TRAIN).await;
    let train_name = unique("train");
    let id = launch(&mut client, task("train", "1"), &train_name, &[("rate", "0.5")])
        .await
        .unwrap();
    let pod = wait_for_pods(&pods, &train_name, 1).await.remove(0);
    let spec = pod.spec.clone().unwrap();
    let container = &spec.containers[0];
    assert_eq!(
        container.image.as_deref(),
        Some("registry.example.com/ml/train:1")
    );
    assert_eq!(container.command.clone().unwrap(), ["python", "-m", "train"]);
    assert_eq!(container.args.clone().unwrap(), ["--fast"]);
    let resources = container.resources.clone().unwrap();
    let requests = resources.requests.unwrap();
    let limits = resources.limits.unwrap();
    assert_eq!(requests["cpu"].0, "2");
    assert_eq!(requests["memory"].0, "4Gi");
    assert_eq!(limits["memory"].0, "8Gi");
    assert_eq!(limits["nvidia.com/gpu"].0, "1");
    assert_eq!(spec.node_selector.unwrap()["aloft.dev/accelerator"], "nvidia-t4");
    let tolerations: Vec<String> = spec
        .tolerations
        .unwrap()
        .into_iter()
        .filter_map(|t| t.key)
        .collect();
    // The API server's DefaultTolerationSeconds admission adds the not-ready/unreachable ones after ours.
    assert_eq!(tolerations[..2], ["nvidia.com/gpu", "aloft.dev/interruptible"]);
    assert_eq!(spec.active_deadline_seconds, Some(600));
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    let labels = pod.metadata.labels.clone().unwrap();
    assert_eq!(labels["aloft.dev/execution"], train_name);
    assert_eq!(labels["app.kubernetes.io/managed-by"], "aloft");
    let hf = env_of(&pod, "HF_TOKEN")
        .unwrap()
        .value_from
        .unwrap()
        .secret_key_ref
        .unwrap();
    assert_eq!((hf.name.as_str(), hf.key.as_str()), ("hf-token", "value"));
    assert_eq!(
        env_of(&pod, "ALOFT_INPUT_RATE").unwrap().value.as_deref(),
        Some("0.5")
    );
    let mounts = container.volume_mounts.clone().unwrap();
    assert_eq!(mounts[0].mount_path, "/etc/aloft/secrets/key.json");

    report(
        &pods,
        pod.metadata.name.as_deref().unwrap(),
        serde_json::json!({"phase": "Running"}),
    )
    .await;
    write_output(&deployment, &pod, "score", b"0.93\n").await;
    write_output(&deployment, &pod, "model", b"weights").await;
    report(&pods, pod.metadata.name.as_deref().unwrap(), succeeded()).await;
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(60)).await;
    assert_eq!(scalar_outputs(&finished), ["score=0.93"]);
    let model = finished.outputs.unwrap().values["model"].clone();
    assert!(
        format!("{model:?}").contains(&format!("/{train_name}/train/1/model")),
        "{model:?}"
    );
    wait_gone(&pods, pod.metadata.name.as_deref().unwrap()).await;
}

/// OOMKilled and ImagePullBackOff are the task's errors, said plainly; a missing Kubernetes Secret and an
/// evicted pod are the platform's failures (the evicted attempt is retried in a new pod).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_failures_map_to_user_and_system_errors() {
    // The services are bound, not left to `..`: dropping them would stop them.
    let Some(KubeFleet {
        deployment,
        pods,
        mut client,
        admin: _admin,
        propeller: _propeller,
        ..
    }) = kube_fleet(None, &[]).await
    else {
        return;
    };
    let specs = r#"kind: task
name: hungry
version: "1"
resources: {memory: 16Mi}
run: {container: {image: "busybox:1", command: ["true"]}}
---
kind: task
name: nowhere
version: "1"
run: {container: {image: "registry.example.com/missing:1", command: ["true"]}}
---
kind: task
name: secretive
version: "1"
retries: {system: 0}
secrets: [{name: missing-token, env: TOKEN}]
run: {container: {image: "busybox:1", command: ["true"]}}
"#;
    register_text(&mut client, deployment.scratch.path(), "fail.yaml", specs).await;
    let (hungry_name, nowhere_name, evicted_name) = (unique("hungry"), unique("nowhere"), unique("evicted"));
    let hungry = launch(&mut client, task("hungry", "1"), &hungry_name, &[])
        .await
        .unwrap();
    let nowhere = launch(&mut client, task("nowhere", "1"), &nowhere_name, &[])
        .await
        .unwrap();
    let evicted = launch(&mut client, task("hungry", "1"), &evicted_name, &[])
        .await
        .unwrap();

    let pod = wait_for_pods(&pods, &hungry_name, 1).await.remove(0);
    report(
        &pods,
        pod.metadata.name.as_deref().unwrap(),
        serde_json::json!({"phase": "Failed", "containerStatuses": terminated(137, "OOMKilled")}),
    )
    .await;
    let finished = wait_finished(&mut client, &hungry, Duration::from_secs(60)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Failed as i32);
    assert!(finished.error.contains("out of memory"), "{}", finished.error);
    assert!(finished.error.contains("16 MiB"), "{}", finished.error);

    let pod = wait_for_pods(&pods, &nowhere_name, 1).await.remove(0);
    report(&pods, pod.metadata.name.as_deref().unwrap(), serde_json::json!({"phase": "Pending",
        "containerStatuses": [{"name": "task", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"registry.example.com/missing:1\""}}}]}))
    .await;
    let finished = wait_finished(&mut client, &nowhere, Duration::from_secs(60)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Failed as i32);
    assert!(
        finished
            .error
            .contains("image cannot be pulled (ImagePullBackOff)"),
        "{}",
        finished.error
    );
    assert!(
        finished.error.contains("registry.example.com/missing:1"),
        "{}",
        finished.error
    );

    // The task's secret is a Kubernetes Secret the pod reads itself; one that does not exist keeps the
    // container from starting, and the attempt fails as the platform's error naming it.
    let secretive_name = unique("secretive");
    let secretive = launch(&mut client, task("secretive", "1"), &secretive_name, &[])
        .await
        .unwrap();
    let pod = wait_for_pods(&pods, &secretive_name, 1).await.remove(0);
    report(&pods, pod.metadata.name.as_deref().unwrap(), serde_json::json!({"phase": "Pending",
        "containerStatuses": [{"name": "task", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "secret \"missing-token\" not found"}}}]}))
    .await;
    let finished = wait_finished(&mut client, &secretive, Duration::from_secs(60)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Failed as i32);
    assert!(
        finished.error.contains(
            "the pod cannot start (CreateContainerConfigError): secret \"missing-token\" not found"
        ),
        "{}",
        finished.error
    );

    let first = wait_for_pods(&pods, &evicted_name, 1).await.remove(0);
    report(
        &pods,
        first.metadata.name.as_deref().unwrap(),
        serde_json::json!({"phase": "Failed",
        "reason": "Evicted", "message": "The node was low on resource: memory."}),
    )
    .await;
    // Retried as a system error: attempt 2 is a pod of its own.
    let deadline = Instant::now() + Duration::from_secs(60);
    let second = loop {
        let listed = pods
            .list(&ListParams::default().labels(&format!("aloft.dev/execution={evicted_name}")))
            .await
            .unwrap();
        if let Some(pod) = listed
            .items
            .into_iter()
            .find(|p| p.metadata.name != first.metadata.name)
        {
            break pod;
        }
        assert!(Instant::now() < deadline, "the evicted attempt was never retried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        second.metadata.name.as_deref().unwrap().contains("-2-"),
        "{:?}",
        second.metadata.name
    );
    report(&pods, second.metadata.name.as_deref().unwrap(), succeeded()).await;
    let finished = wait_succeeded(&mut client, &evicted, Duration::from_secs(60)).await;
    let attempts: Vec<(u32, String)> = finished
        .attempts
        .iter()
        .map(|a| (a.attempt, a.error_kind.clone()))
        .collect();
    assert_eq!(attempts[0], (1, "SYSTEM".to_string()), "{attempts:?}");
    assert!(
        finished.attempts[0].error.contains("Evicted"),
        "{:?}",
        finished.attempts[0]
    );
}

/// Terminate deletes the running pod; after a SIGKILL of its propeller, the successor follows the same pod
/// (found by its name) to its end: one pod, one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminate_deletes_the_pod_and_a_successor_reattaches_without_a_second_pod() {
    let Some(kubeconfig) = kubeconfig() else { return };
    let Some((brokers, database)) = real_backends() else {
        return;
    };
    let deployment = Deployment::new(&brokers, &database).await;
    let _admin = deployment.start_admin();
    let mut first = kube_propeller(&deployment, &kubeconfig, "a");
    let pods: Api<Pod> = Api::namespaced(kube_client(&kubeconfig).await, NAMESPACE);
    let mut client = deployment.client().await;
    let specs = r#"kind: task
name: long
version: "1"
interface: {outputs: {answer: integer}}
run: {container: {image: "busybox:1", command: ["sleep", "3600"]}}
"#;
    register_text(&mut client, deployment.scratch.path(), "long.yaml", specs).await;
    let (doomed_name, kept_name) = (unique("doomed"), unique("kept"));
    let doomed = launch(&mut client, task("long", "1"), &doomed_name, &[])
        .await
        .unwrap();
    let pod = wait_for_pods(&pods, &doomed_name, 1).await.remove(0);
    report(
        &pods,
        pod.metadata.name.as_deref().unwrap(),
        serde_json::json!({"phase": "Running"}),
    )
    .await;
    client
        .terminate_execution(wire::TerminateExecutionRequest {
            id: Some(doomed.clone()),
            reason: "test".into(),
        })
        .await
        .unwrap();
    let finished = wait_finished(&mut client, &doomed, Duration::from_secs(60)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Aborted as i32);
    wait_gone(&pods, pod.metadata.name.as_deref().unwrap()).await;

    let kept = launch(&mut client, task("long", "1"), &kept_name, &[])
        .await
        .unwrap();
    let pod = wait_for_pods(&pods, &kept_name, 1).await.remove(0);
    let name = pod.metadata.name.clone().unwrap();
    report(&pods, &name, serde_json::json!({"phase": "Running"})).await;
    let _second = take_over(&deployment, &kubeconfig, &mut first).await;
    assert_eq!(
        wait_for_pods(&pods, &kept_name, 1).await.len(),
        1,
        "no second pod"
    );
    write_output(&deployment, &pod, "answer", b"42").await;
    report(&pods, &name, succeeded()).await;
    let finished = wait_succeeded(&mut client, &kept, Duration::from_secs(60)).await;
    assert_eq!(scalar_outputs(&finished), ["answer=42"]);
    assert_eq!(finished.nodes[0].attempts, 1, "followed, not retried");
    wait_gone(&pods, &name).await;
}

/// A map whose items say what they need (`item_resources`): each item's pod asks for its own memory over the
/// task's CPU; an item that names no valid quantity fails the map naming the item before any pod exists; a
/// template that reads nothing of the item is refused at registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_map_item_asks_for_the_resources_it_names() {
    // The services are bound, not left to `..`: dropping them would stop them.
    let Some(KubeFleet {
        deployment,
        pods,
        mut client,
        admin: _admin,
        propeller: _propeller,
        ..
    }) = kube_fleet(None, &[]).await
    else {
        return;
    };
    let specs = r#"kind: task
name: align-sample
version: "1"
interface: {inputs: {sample: struct}}
resources: {cpu: 1, memory: 32Mi}
run: {container: {image: "busybox:1", command: ["true"]}}
---
kind: workflow
name: align-samples
interface: {inputs: {samples: "list<struct>"}}
nodes:
  - id: align
    map: {task: align-sample, over: sample, item_resources: {memory: "{{item.memory}}"}}
    inputs: {sample: inputs.samples}
"#;
    register_text(&mut client, deployment.scratch.path(), "samples.yaml", specs).await;
    let name = unique("samples");
    let id = launch(
        &mut client,
        workflow("align-samples"),
        &name,
        &[(
            "samples",
            r#"[{"id": "big", "memory": "96Mi"}, {"id": "small", "memory": "16Mi"}]"#,
        )],
    )
    .await
    .unwrap();
    let mut by_item: Vec<(String, String, String)> = wait_for_pods(&pods, &name, 2)
        .await
        .iter()
        .map(|pod| {
            let task = pod
                .spec
                .as_ref()
                .unwrap()
                .containers
                .iter()
                .find(|c| c.name == "task")
                .unwrap();
            let requests = task.resources.clone().unwrap().requests.unwrap();
            let attempt = pod.metadata.annotations.clone().unwrap()["aloft.dev/attempt"].clone();
            (attempt, requests["memory"].0.clone(), requests["cpu"].0.clone())
        })
        .collect();
    by_item.sort();
    assert!(
        by_item[0].0.contains("align[0]") && by_item[1].0.contains("align[1]"),
        "{by_item:?}"
    );
    assert_eq!((by_item[0].1.as_str(), by_item[0].2.as_str()), ("96Mi", "1"));
    assert_eq!((by_item[1].1.as_str(), by_item[1].2.as_str()), ("16Mi", "1"));
    for pod in wait_for_pods(&pods, &name, 2).await {
        let pod_name = pod.metadata.name.clone().unwrap();
        report(&pods, &pod_name, succeeded()).await;
    }
    wait_succeeded(&mut client, &id, Duration::from_secs(60)).await;

    // An item whose value is no quantity: the map fails naming the item, and no pod was made for it.
    let name = unique("samples-bad");
    let id = launch(
        &mut client,
        workflow("align-samples"),
        &name,
        &[(
            "samples",
            r#"[{"id": "ok", "memory": "16Mi"}, {"id": "bad", "memory": "lots"}]"#,
        )],
    )
    .await
    .unwrap();
    let finished = wait_finished(&mut client, &id, Duration::from_secs(60)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Failed as i32);
    let error = &finished
        .nodes
        .iter()
        .find(|n| n.node_id == "align")
        .unwrap()
        .error;
    assert!(
        error.contains("map item 1") && error.contains("memory"),
        "{error}"
    );
    let listed = pods
        .list(&ListParams::default().labels(&format!("aloft.dev/execution={name}")))
        .await
        .unwrap();
    assert!(listed.items.is_empty(), "no pod for a map that failed");

    // A template that reads something other than the item is refused at registration, naming the field.
    let refused = client
        .register_workflow(wire::RegisterRequest {
            project: PROJECT.into(),
            domain: DOMAIN.into(),
            spec_json: serde_json::json!({
                "name": "align-wrong",
                "interface": {"inputs": {"samples": "list<struct>"}},
                "nodes": [{"id": "align", "inputs": {"sample": "inputs.samples"},
                    "map": {"task": "align-sample", "over": "sample", "item_resources": {"memory": "{{sample.memory}}"}}}]
            })
            .to_string(),
        })
        .await
        .expect_err("a bad template is refused");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("item_resources.memory"),
        "{}",
        refused.message()
    );
}
