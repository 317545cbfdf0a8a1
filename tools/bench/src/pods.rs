//! `aloft-bench pods`: the Kubernetes executor holding `--nodes` concurrent attempts on a real API server
//! (`KUBECONFIG`). It measures how long creating every attempt's pod takes, the resident memory of this
//! process while it watches them all, the API requests per second it causes while they run (one watch per
//! namespace shared by all of them, so idle attempts should cause none), and, playing the kubelet, how long after a pod is reported
//! Succeeded its attempt's outcome arrives (p50/p99).

use std::time::{Duration, Instant};

use aloft_blobstore::BlobStore;
use aloft_core::ExecutionId;
use aloft_propeller::executor::{
    AttemptOutcome, AttemptRequest, KubernetesExecutor, KubernetesOptions, PodSettings, TaskExecutor,
};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use tokio_util::sync::CancellationToken;

pub struct PodBench {
    pub attempts: usize,
    pub create_seconds: f64,
    pub rss_growth_mib: f64,
    pub idle_requests_per_second: f64,
    pub requests_per_attempt: f64,
    pub outcome_p50_ms: f64,
    pub outcome_p99_ms: f64,
}

/// Every request the API server has served, from its own counter.
async fn served_requests(client: &kube::Client) -> anyhow::Result<f64> {
    let request = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(request).await?;
    Ok(text
        .lines()
        .filter(|line| line.starts_with("apiserver_request_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

pub async fn run(attempts: usize) -> anyhow::Result<PodBench> {
    let client = kube::Client::try_default().await?;
    let namespace_pattern = format!("bench-{}", std::process::id());
    let namespace = namespace_pattern.clone();
    let scratch = tempfile::tempdir()?;
    let executor = KubernetesExecutor::new(
        KubernetesOptions {
            api: "kubeconfig".into(),
            pods: PodSettings {
                namespace_pattern,
                create_namespaces: true,
                ..Default::default()
            },
        },
        BlobStore::local(&scratch.path().join("blobs"))?,
    );
    let task = crate::shared::noop_container_task("noop-pod", "busybox:1");
    let rss_before = crate::shared::rss_kib();
    let requests_before = served_requests(&client).await?;
    let started = Instant::now();
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    for index in 0..attempts {
        let request = AttemptRequest {
            execution: ExecutionId {
                project: "bench".into(),
                domain: "pods".into(),
                name: format!("pods-{index}"),
            },
            node_id: "noop".into(),
            attempt: 1,
            task: task.clone(),
            task_version: "1".into(),
            inputs: Default::default(),
            keep_inline: Default::default(),
        };
        let executor = executor.clone();
        let done = done_tx.clone();
        tokio::spawn(async move {
            let outcome = executor.start(request, CancellationToken::new()).await;
            let _ = done.send((index, outcome, Instant::now()));
        });
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let mut polls = 1.0;
    loop {
        let listed = pods.list_metadata(&ListParams::default()).await?;
        if listed.items.len() >= attempts {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "only {} of {attempts} pods after 10 minutes",
            listed.items.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
        polls += 1.0;
    }
    let create_seconds = started.elapsed().as_secs_f64();
    // Every attempt now watches its pending pod: hold them and count what the executor asks meanwhile.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_from = served_requests(&client).await?;
    let idle = Duration::from_secs(10);
    tokio::time::sleep(idle).await;
    let idle_to = served_requests(&client).await?;
    // Our own /metrics read is one request.
    let idle_requests_per_second = (idle_to - idle_from - 1.0).max(0.0) / idle.as_secs_f64();
    let rss_growth_mib = crate::shared::rss_kib().saturating_sub(rss_before) as f64 / 1024.0;
    // The kubelet's part: report each pod Succeeded and time until its outcome arrives.
    let mut reported = vec![Instant::now(); attempts];
    let listed = pods.list_metadata(&ListParams::default()).await?;
    for pod in &listed.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let index: usize = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("aloft.dev/attempt"))
            .and_then(|id| id.split('/').nth(2))
            .and_then(|execution| execution.strip_prefix("pods-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        pods.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"phase": "Succeeded"}})),
        )
        .await?;
        if index < attempts {
            reported[index] = Instant::now();
        }
    }
    let mut latencies = Vec::with_capacity(attempts);
    for _ in 0..attempts {
        let (index, outcome, at) = tokio::time::timeout(Duration::from_secs(120), done_rx.recv())
            .await?
            .ok_or_else(|| anyhow::anyhow!("an attempt vanished"))?;
        anyhow::ensure!(
            matches!(outcome, AttemptOutcome::Succeeded(_)),
            "attempt {index}: {outcome:?}"
        );
        latencies.push(at.saturating_duration_since(reported[index]));
    }
    let requests_after = served_requests(&client).await?;
    // Ours: the reads of /metrics, the pod lists while waiting, and one status patch per pod.
    let ours = 4.0 + polls + 1.0 + attempts as f64;
    let requests_per_attempt = (requests_after - requests_before - ours).max(0.0) / attempts as f64;
    latencies.sort();
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client);
    let _ = namespaces.delete(&namespace, &DeleteParams::default()).await;
    Ok(PodBench {
        attempts,
        create_seconds,
        rss_growth_mib,
        idle_requests_per_second,
        requests_per_attempt,
        outcome_p50_ms: crate::shared::percentile_ms(&latencies, 0.5),
        outcome_p99_ms: crate::shared::percentile_ms(&latencies, 0.99),
    })
}
