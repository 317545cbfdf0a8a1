//! A pod's log through `aloft logs`, and the namespaces a propeller may not create. The API server is real
//! (kube-apiserver v1.20.2 from `scripts/test.sh`) and really proxies `pods/log` to the kubelet of the pod's
//! node; no kubelet can run here, so that node's kubelet is `aloft_testkit::FakeKubelet`, a log endpoint on
//! loopback the test writes the task's lines into, and the test binds the pod to the node and reports its
//! status as the scheduler and a kubelet would.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use aloft_e2e::*;
use aloft_proto::v1 as wire;

mod kube_support;
use kube_support::*;

const TALKER: &str = r#"kind: task
name: talker
version: "1"
interface: {outputs: {answer: integer}}
run: {container: {image: "busybox:1", command: ["sh", "-c", "echo first line; sleep 60; echo second line"]}}
"#;

/// A line the pod's task prints is followed through `GetTaskLogs` while the pod runs; after its propeller
/// is SIGKILLed, the successor that re-attaches to the pod goes on from where the log was stored (no line
/// twice, none lost), and the log stays readable after the pod is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pods_log_is_followed_live_and_survives_its_propeller_and_the_pod() {
    let Some(KubeFleet {
        deployment,
        kubeconfig,
        pods,
        mut client,
        admin: _admin,
        propeller: mut first,
    }) = kube_fleet(None, &[]).await
    else {
        return;
    };
    let kubelet = aloft_testkit::FakeKubelet::start().await.unwrap();
    let node = fake_node(&kubeconfig, &kubelet).await;
    register_text(&mut client, deployment.scratch.path(), "talker.yaml", TALKER).await;
    let name = unique("talk");
    let id = launch(&mut client, task("talker", "1"), &name, &[])
        .await
        .unwrap();
    let pod = wait_for_pods(&pods, &name, 1).await.remove(0);
    let pod_name = pod.metadata.name.clone().unwrap();
    bind(&pods, &pod_name, &node).await;
    kubelet.print(NAMESPACE, &pod_name, "task", "first line\n");
    report(
        &pods,
        &pod_name,
        serde_json::json!({"phase": "Running", "containerStatuses": running()}),
    )
    .await;

    let node_id = "talker".to_string();
    let asked = Instant::now();
    let mut follow = client
        .get_task_logs(wire::GetTaskLogsRequest {
            id: Some(id.clone()),
            node_id: node_id.clone(),
            follow: true,
            ..Default::default()
        })
        .await
        .expect("follow the log")
        .into_inner();
    let line = tokio::time::timeout(Duration::from_secs(30), follow.message())
        .await
        .expect("the first line arrives while the pod runs")
        .expect("a chunk")
        .expect("the stream is open");
    assert_eq!(String::from_utf8_lossy(&line.data), "first line\n");
    eprintln!("first followed line of the pod after {:?}", asked.elapsed());
    assert!(
        kubelet.requests().iter().any(|request| request
            .starts_with(&format!("/containerLogs/{NAMESPACE}/{pod_name}/task"))
            && request.contains("follow=true")),
        "the API server proxied a follow request to the pod's kubelet: {:?}",
        kubelet.requests()
    );
    drop(follow);

    let _second = take_over(&deployment, &kubeconfig, &mut first).await;
    kubelet.print(NAMESPACE, &pod_name, "task", "second line\n");
    kubelet.end(NAMESPACE, &pod_name, "task");
    write_output(&deployment, &pod, "answer", b"7").await;
    report(&pods, &pod_name, succeeded()).await;
    let finished = wait_succeeded(&mut client, &id, Duration::from_secs(60)).await;
    assert_eq!(finished.nodes[0].attempts, 1, "followed, not retried");
    wait_gone(&pods, &pod_name).await;
    assert_eq!(
        read_task_log(&mut client, &id, &node_id).await,
        "first line\nsecond line\n",
        "the whole log, each line once, after the pod is gone"
    );
    let cli = std::process::Command::new(binary("aloft"))
        .args(["--admin", &format!("http://127.0.0.1:{}", deployment.admin_port)])
        .args(["logs", &name, &node_id])
        .output()
        .unwrap();
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    assert_eq!(String::from_utf8_lossy(&cli.stdout), "first line\nsecond line\n");
}

/// A propeller that may not create namespaces (the default) fails an attempt whose namespace does not
/// exist, naming the namespace and the way out, and creates no namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_namespace_fails_the_attempt_naming_it() {
    let missing = unique("nowhere");
    let Some(KubeFleet {
        deployment,
        kubeconfig,
        mut client,
        admin: _admin,
        propeller: _propeller,
        ..
    }) = kube_fleet(
        None,
        &[
            ("ALOFT_KUBERNETES_CREATE_NAMESPACES", "false".to_string()),
            ("ALOFT_KUBERNETES_NAMESPACE", format!("{missing}-{{domain}}")),
        ],
    )
    .await
    else {
        return;
    };
    register_text(&mut client, deployment.scratch.path(), "talker.yaml", TALKER).await;
    let id = launch(&mut client, task("talker", "1"), &unique("lost"), &[])
        .await
        .unwrap();
    let finished = wait_finished(&mut client, &id, Duration::from_secs(120)).await;
    assert_eq!(finished.phase, wire::ExecutionPhase::Failed as i32);
    let error = &finished.error;
    let namespace = format!("{missing}-development");
    assert!(
        error.contains(&format!("namespace {namespace} does not exist"))
            && error.contains("--kubernetes-create-namespaces"),
        "{error}"
    );
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(kube_client(&kubeconfig).await);
    assert!(namespaces.get_opt(&namespace).await.unwrap().is_none());
}
