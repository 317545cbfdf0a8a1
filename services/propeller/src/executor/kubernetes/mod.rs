//! The `kubernetes` executor: `container` tasks as one Pod per attempt (kube-rs), in a namespace per
//! project/domain. It creates the attempt's pod (deterministic name and labels), watches it (one watch per
//! namespace shared by every attempt there, not polling), maps its phase and reasons to the attempt's outcome, deletes it on cancel and after
//! it ends (its log is copied to the blob store first), and a new owner re-attaches to a running pod by its
//! name instead of starting the attempt again.
//!
//! Data: with a helper image (`--kubernetes-helper-image`), helper containers stage the inputs into
//! `$ALOFT_INPUT_DIR` and upload `$ALOFT_OUTPUT_DIR` (the process task's contract, see `helpers`); without
//! one, the pod gets its inputs as `ALOFT_INPUT_<NAME>` (blobs and offloaded values as their URIs in the
//! store, which the task reads itself) and writes each output to the store under `$ALOFT_OUTPUT_URI/<NAME>`.
//! Either way the outputs end up under that prefix, and when the pod succeeds the executor reads them back
//! by type, as it reads a process task's output directory, and offloads those too large to travel inline.

mod helpers;
mod outputs;
mod pod;
pub mod pod_data;
mod status;
mod watches;

use std::sync::Arc;

use aloft_blobstore::BlobStore;
use aloft_core::events::ErrorKind;
use aloft_core::quantity::human_bytes;
use aloft_core::spec::TaskKind;
use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use tokio_util::sync::CancellationToken;

pub use helpers::DataHelper;
pub use pod::{attempt_pod, attempt_selector, pod_name, PodSettings};
pub use status::{pod_state, PodState};

use super::attempt::{
    kind_of, system_error, user_error, AttemptId, AttemptOutcome, AttemptRequest, TaskExecutor,
};
use super::log_shipper::tenant_store;

/// Where the API server is and how pods are placed.
#[derive(Debug, Clone)]
pub struct KubernetesOptions {
    /// `in-cluster` (the pod's service account), `kubeconfig` (the usual lookup), or the API server's URL.
    pub api: String,
    pub pods: PodSettings,
}

/// Runs `container` tasks as pods.
#[derive(Clone)]
pub struct KubernetesExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    options: KubernetesOptions,
    blobs: BlobStore,
    client: tokio::sync::OnceCell<kube::Client>,
    /// Namespaces known to exist: looked up (or created) once, not for every attempt.
    namespaces: std::sync::Mutex<std::collections::HashSet<String>>,
    watches: watches::PodWatches,
}

impl std::fmt::Debug for KubernetesExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesExecutor")
            .field("options", &self.inner.options)
            .finish()
    }
}

impl KubernetesExecutor {
    pub fn new(options: KubernetesOptions, blobs: BlobStore) -> KubernetesExecutor {
        KubernetesExecutor {
            inner: Arc::new(Inner {
                options,
                blobs,
                client: tokio::sync::OnceCell::new(),
                namespaces: Default::default(),
                watches: Default::default(),
            }),
        }
    }
}

impl TaskExecutor for KubernetesExecutor {
    fn kind(&self) -> &'static str {
        "container"
    }

    fn start(
        &self,
        request: AttemptRequest,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, AttemptOutcome> {
        let inner = Arc::clone(&self.inner);
        async move { inner.run(&request, cancel).await }.boxed()
    }

    fn reattach(
        &self,
        request: AttemptRequest,
        cancel: CancellationToken,
    ) -> Option<BoxFuture<'static, AttemptOutcome>> {
        if !matches!(request.task.run, TaskKind::Container(_)) {
            return None;
        }
        let inner = Arc::clone(&self.inner);
        Some(async move { inner.reattach(&request, cancel).await }.boxed())
    }
}

impl Inner {
    async fn client(&self) -> Result<kube::Client, AttemptOutcome> {
        self.client
            .get_or_try_init(|| async {
                let config = match self.options.api.as_str() {
                    "in-cluster" => kube::Config::incluster().map_err(|e| e.to_string())?,
                    "kubeconfig" => kube::Config::infer().await.map_err(|e| e.to_string())?,
                    url => kube::Config::new(
                        url.parse()
                            .map_err(|e| format!("--kubernetes {url:?} is not a URL: {e}"))?,
                    ),
                };
                kube::Client::try_from(config).map_err(|e| e.to_string())
            })
            .await
            .cloned()
            .map_err(|error: String| {
                system_error(format!(
                    "cannot reach the Kubernetes API ({}): {error}",
                    self.options.api
                ))
            })
    }

    fn pods(&self, client: &kube::Client, attempt: &AttemptId) -> (Api<Pod>, String) {
        let namespace = self
            .options
            .pods
            .namespace(&attempt.execution.project, &attempt.execution.domain);
        (Api::namespaced(client.clone(), &namespace), namespace)
    }

    /// The store prefix an attempt's pod writes its outputs under.
    fn output_key(&self, attempt: &AttemptId) -> String {
        attempt.output_key("").trim_end_matches('/').to_string()
    }

    async fn run(&self, request: &AttemptRequest, cancel: CancellationToken) -> AttemptOutcome {
        let TaskKind::Container(container) = &request.task.run else {
            return system_error(format!(
                "the kubernetes executor cannot run a {} task",
                kind_of(&request.task)
            ));
        };
        let client = match self.client().await {
            Ok(client) => client,
            Err(outcome) => return outcome,
        };
        let id = request.id();
        let (pods, namespace) = self.pods(&client, &id);
        let known = self
            .namespaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .contains(&namespace);
        if !known {
            if let Err(outcome) = ensure_namespace(&client, &namespace).await {
                return outcome;
            }
            self.namespaces
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(namespace.clone());
        }
        let output_uri = tenant_store(&self.blobs, &id).uri_of(&self.output_key(&id));
        let mut pod = attempt_pod(
            &self.options.pods,
            &id,
            &request.task,
            container,
            &request.inputs,
            &output_uri,
            request.task.interruptible,
        );
        if let (Some(helper), Some(spec)) = (&self.options.pods.data_helper, pod.spec.as_mut()) {
            let output_key = self.output_key(&id);
            if let Err(error) =
                helpers::add_data_helpers(spec, helper, &self.blobs, &id, &request.inputs, &output_key)
            {
                return system_error(format!("cannot give the pod its inputs: {error}"));
            }
        }
        let name = pod_name(&id);
        // Before creating it, so that no event of the pod is missed.
        let following = self.watches.follow(&client, &namespace, &name);
        match pods.create(&PostParams::default(), &pod).await {
            Ok(created) => following.seed(created),
            // Ours from an earlier start of this very attempt: follow it from where it is.
            Err(kube::Error::Api(status)) if status.code == 409 => match pods.get_opt(&name).await {
                Ok(Some(existing)) => following.seed(existing),
                Ok(None) => {
                    return system_error(format!("pod {namespace}/{name} was deleted as it was created"))
                }
                Err(error) => return system_error(format!("cannot read pod {namespace}/{name}: {error}")),
            },
            Err(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
                return user_error(format!("pod {namespace}/{name} was refused: {}", status.message))
            }
            Err(error) => return system_error(format!("cannot create pod {namespace}/{name}: {error}")),
        }
        self.follow(&pods, &name, following, request, cancel).await
    }

    async fn reattach(&self, request: &AttemptRequest, cancel: CancellationToken) -> AttemptOutcome {
        let client = match self.client().await {
            Ok(client) => client,
            Err(outcome) => return outcome,
        };
        let id = request.id();
        let (pods, namespace) = self.pods(&client, &id);
        let name = pod_name(&id);
        let following = self.watches.follow(&client, &namespace, &name);
        match pods.get_opt(&name).await {
            Ok(Some(pod)) => {
                tracing::info!(pod = %name, %namespace, "re-attached to the pod of a previous owner");
                following.seed(pod);
                self.follow(&pods, &name, following, request, cancel).await
            }
            Ok(None) => system_error(format!("attempt lost: its pod {namespace}/{name} is gone")),
            Err(error) => system_error(format!("cannot read pod {namespace}/{name}: {error}")),
        }
    }

    /// Follows pod `name` through the namespace's watch until it ends (or `cancel`), then reads its outcome,
    /// keeps its log and deletes it.
    async fn follow(
        &self,
        pods: &Api<Pod>,
        name: &str,
        mut following: watches::Following,
        request: &AttemptRequest,
        cancel: CancellationToken,
    ) -> AttemptOutcome {
        let ended = loop {
            match &*following.seen.borrow_and_update() {
                watches::Seen::Present(pod) => {
                    let state = pod_state(pod);
                    if state != PodState::Going {
                        break Some(state);
                    }
                }
                watches::Seen::Deleted => break None,
                watches::Seen::NotYet => {}
            }
            tokio::select! {
                changed = following.seen.changed() => {
                    if changed.is_err() {
                        // Unreachable while `following` is held; said rather than spun on.
                        return system_error(format!("stopped following pod {name}"));
                    }
                }
                _ = cancel.cancelled() => {
                    let _ = pods.delete(name, &DeleteParams::background()).await;
                    return AttemptOutcome::Cancelled;
                }
            }
        };
        drop(following);
        let Some(state) = ended else {
            return system_error(format!("attempt lost: its pod {name} was deleted while it ran"));
        };
        self.keep_log(pods, name, &request.id()).await;
        let outcome = self.outcome(state, request).await;
        let _ = pods.delete(name, &DeleteParams::background()).await;
        outcome
    }

    /// Copies the pod's log to the store, where `aloft logs` reads it (best effort: a pod that never ran has
    /// none).
    async fn keep_log(&self, pods: &Api<Pod>, name: &str, attempt: &AttemptId) {
        match pods
            .logs(
                name,
                &LogParams {
                    container: Some("task".into()),
                    ..Default::default()
                },
            )
            .await
        {
            Ok(text) if !text.is_empty() => {
                let prefix = super::log_shipper::log_prefix(attempt);
                if let Err(error) = tenant_store(&self.blobs, attempt)
                    .put_log_chunk(&prefix, 0, bytes::Bytes::from(text))
                    .await
                {
                    tracing::warn!(pod = %name, %error, "cannot store the pod's log");
                }
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(pod = %name, %error, "the pod has no log to keep"),
        }
    }

    async fn outcome(&self, state: PodState, request: &AttemptRequest) -> AttemptOutcome {
        let read_it = format!(
            "aloft logs {} {} --attempt {}",
            request.execution.name, request.node_id, request.attempt
        );
        match state {
            PodState::Going => system_error("the pod has not ended"),
            PodState::Succeeded => {
                outputs::read_outputs(&self.blobs, &self.output_key(&request.id()), request).await
            }
            PodState::ImageUnavailable { reason, message } => {
                user_error(format!("image cannot be pulled ({reason}): {message}"))
            }
            PodState::Unconfigurable { reason, message } => {
                system_error(format!("the pod cannot start ({reason}): {message}"))
            }
            PodState::OutOfMemory => {
                let limit = request
                    .task
                    .resources
                    .as_ref()
                    .and_then(|r| r.limits().memory_bytes);
                user_error(match limit {
                    Some(bytes) => format!(
                        "out of memory: killed for using more memory than its limit of {} (resources.memory, or resources.limits.memory); {read_it}",
                        human_bytes(bytes)
                    ),
                    None => format!("out of memory: killed by the kernel (the task sets no memory limit); {read_it}"),
                })
            }
            PodState::DeadlineExceeded => AttemptOutcome::Failed {
                kind: ErrorKind::Timeout,
                message: format!(
                    "timed out after {}",
                    request.task.timeout.clone().unwrap_or_default()
                ),
            },
            PodState::StagingFailed {
                step,
                user: true,
                message,
            } => user_error(format!("{step} failed: {message}")),
            PodState::StagingFailed { step, message, .. } => {
                system_error(format!("the pod's helper failed {step}: {message}"))
            }
            PodState::Lost { reason, message } => {
                system_error(format!("the pod was lost ({reason}): {message}"))
            }
            PodState::Exited { code, message } => {
                let detail = if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                };
                user_error(format!("exited with {code}{detail}; {read_it}"))
            }
        }
    }
}

/// Creates the namespace when it does not exist yet (a deployment may also create them itself and deny this).
async fn ensure_namespace(client: &kube::Client, namespace: &str) -> Result<(), AttemptOutcome> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    match namespaces.get_opt(namespace).await {
        Ok(Some(_)) => return Ok(()),
        Ok(None) => {}
        // Not allowed to read namespaces: assume it exists; creating the pod says otherwise.
        Err(kube::Error::Api(status)) if status.code == 403 => return Ok(()),
        Err(error) => {
            return Err(system_error(format!(
                "cannot read namespace {namespace}: {error}"
            )))
        }
    }
    let wanted: Namespace = match serde_json::from_value(serde_json::json!({
        "metadata": {"name": namespace, "labels": {"app.kubernetes.io/managed-by": "aloft"}}
    })) {
        Ok(wanted) => wanted,
        Err(error) => return Err(system_error(format!("namespace {namespace}: {error}"))),
    };
    match namespaces.create(&PostParams::default(), &wanted).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(system_error(format!(
            "cannot create namespace {namespace}: {error}"
        ))),
    }
}
