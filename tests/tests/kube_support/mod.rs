//! What the Kubernetes tests share: the test cluster (its kubeconfig and a client), a propeller that runs
//! pods there, and playing the kubelet (waiting for pods, reporting their status).

#![allow(dead_code)] // each test file uses its own part

use std::time::{Duration, Instant};

use aloft_e2e::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};

pub const NAMESPACE: &str = "default-development";

/// An execution name no earlier run on the same API server used (pods outlive a failed test).
pub fn unique(name: &str) -> String {
    format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// The test cluster's kubeconfig, or `None` (skipped) unless real backends are required.
pub fn kubeconfig() -> Option<String> {
    match std::env::var("ALOFT_TEST_KUBECONFIG") {
        Ok(path) => Some(path),
        Err(_) => {
            assert!(
                std::env::var("ALOFT_REQUIRE_REAL_BACKENDS").is_err(),
                "ALOFT_TEST_KUBECONFIG is required (scripts/test.sh starts kube-apiserver)"
            );
            eprintln!("skipping: no Kubernetes API server");
            None
        }
    }
}

pub async fn kube_client(kubeconfig: &str) -> kube::Client {
    let config = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

pub fn kube_propeller(deployment: &Deployment, kubeconfig: &str, member: &str) -> Service {
    kube_propeller_with(deployment, kubeconfig, member, &[])
}

/// `kube_propeller` with `extra` environment.
pub fn kube_propeller_with(
    deployment: &Deployment,
    kubeconfig: &str,
    member: &str,
    extra: &[(&str, String)],
) -> Service {
    let mut env = vec![
        ("ALOFT_MEMBER_ID", member.to_string()),
        ("ALOFT_KUBERNETES", "kubeconfig".to_string()),
        ("KUBECONFIG", kubeconfig.to_string()),
        ("ALOFT_KUBERNETES_CREATE_NAMESPACES", "true".to_string()),
        // The GPUs the cluster may give this propeller's attempts (it admits GPU requests against them).
        ("ALOFT_GPUS", "4".to_string()),
    ];
    env.extend_from_slice(extra);
    deployment.start_with_env("aloft-propeller", &format!("propeller-{member}"), &env)
}

/// A deployment on Kafka + Postgres (and `blob_store`, when given) with admin and a propeller (member `a`,
/// with `extra` environment) running pods on the test cluster; `None` (skipped) without the real parts.
pub struct KubeFleet {
    pub deployment: Deployment,
    pub kubeconfig: String,
    pub pods: Api<Pod>,
    pub client: AdminClient,
    pub admin: Service,
    pub propeller: Service,
}

pub async fn kube_fleet(blob_store: Option<String>, extra: &[(&str, String)]) -> Option<KubeFleet> {
    let kubeconfig = kubeconfig()?;
    let (brokers, database) = real_backends()?;
    let mut deployment = Deployment::new(&brokers, &database).await;
    deployment.blob_store = blob_store;
    let admin = deployment.start_admin();
    let propeller = kube_propeller_with(&deployment, &kubeconfig, "a", extra);
    let pods = Api::namespaced(kube_client(&kubeconfig).await, NAMESPACE);
    let client = deployment.client().await;
    Some(KubeFleet {
        deployment,
        kubeconfig,
        pods,
        client,
        admin,
        propeller,
    })
}

/// Writes an output the way the task in the pod would: an object under `$ALOFT_OUTPUT_URI/NAME`.
pub async fn write_output(deployment: &Deployment, pod: &Pod, name: &str, bytes: &[u8]) {
    let prefix = env_of(pod, "ALOFT_OUTPUT_URI").unwrap().value.unwrap();
    let root = deployment.scratch.path().join("blobs");
    let store = aloft_blobstore::BlobStore::local(&root).unwrap();
    let root_uri = format!("{}/", store.root());
    let key = format!("{prefix}/{name}")
        .strip_prefix(&root_uri)
        .unwrap()
        .to_string();
    store
        .put(&key, bytes::Bytes::copy_from_slice(bytes))
        .await
        .unwrap();
}

/// The pods of `execution`, waiting until there are `count`.
pub async fn wait_for_pods(pods: &Api<Pod>, execution: &str, count: usize) -> Vec<Pod> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = pods
            .list(&ListParams::default().labels(&format!("aloft.dev/execution={execution}")))
            .await
            .unwrap();
        if listed.items.len() >= count {
            return listed.items;
        }
        assert!(
            Instant::now() < deadline,
            "{execution}: {count} pod(s) never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn wait_gone(pods: &Api<Pod>, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while pods.get_opt(name).await.unwrap().is_some() {
        assert!(Instant::now() < deadline, "pod {name} was never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reports `status` for pod `name`, as a kubelet would.
pub async fn report(pods: &Api<Pod>, name: &str, status: serde_json::Value) {
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "status": status })),
    )
    .await
    .unwrap();
}

/// The status of a pod whose task ran to its end.
pub fn succeeded() -> serde_json::Value {
    serde_json::json!({"phase": "Succeeded", "containerStatuses": terminated(0, "Completed")})
}

/// SIGKILLs propeller `first` and starts member `b`, which re-attaches to the running pods of `a`.
pub async fn take_over(deployment: &Deployment, kubeconfig: &str, first: &mut Service) -> Service {
    first.sigkill();
    let second = kube_propeller(deployment, kubeconfig, "b");
    deployment
        .wait_for_logs(
            &["propeller-b"],
            "re-attached to the pod of a previous owner",
            Duration::from_secs(60),
        )
        .await;
    second
}

pub fn terminated(exit_code: i32, reason: &str) -> serde_json::Value {
    serde_json::json!([{"name": "task", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code, "reason": reason}}}])
}

/// Variable `name` of the pod's task container.
pub fn env_of(pod: &Pod, name: &str) -> Option<k8s_openapi::api::core::v1::EnvVar> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .find(|container| container.name == "task")?
        .env
        .as_ref()?
        .iter()
        .find(|var| var.name == name)
        .cloned()
}

/// Registers a Node whose kubelet is `kubelet` (on 127.0.0.1), with the status a kubelet registers (the
/// API server keeps a Node's status given at creation); its name.
pub async fn fake_node(kubeconfig: &str, kubelet: &aloft_testkit::FakeKubelet) -> String {
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(kube_client(kubeconfig).await);
    let name = unique("aloft-test-node");
    let node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port()}},
            "conditions": [{"type": "Ready", "status": "True"}],
        }
    }))
    .unwrap();
    nodes
        .create(&kube::api::PostParams::default(), &node)
        .await
        .unwrap();
    name
}

/// Binds pod `name` to `node`, as the scheduler does.
pub async fn bind(pods: &Api<Pod>, name: &str, node: &str) {
    let binding = serde_json::json!({
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    pods.create_subresource::<_, serde_json::Value>(
        "binding",
        name,
        &kube::api::PostParams::default(),
        &binding,
    )
    .await
    .unwrap();
}

pub fn running() -> serde_json::Value {
    serde_json::json!([{"name": "task", "image": "x", "imageID": "", "ready": true, "restartCount": 0,
        "state": {"running": {}}}])
}
