//! The `kubernetes` executor: `container` tasks as one Pod per attempt (kube-rs), in a namespace per
//! project/domain. It creates the attempt's pod (deterministic name and labels), watches it (one watch per
//! namespace shared by every attempt there, not polling), maps its phase and reasons to the attempt's outcome, deletes it on cancel and after
//! it ends (its log follows it into the blob store, see `logs`), and a new owner re-attaches to a running pod by its
//! name instead of starting the attempt again.
//!
//! Data: with a helper image (`--kubernetes-helper-image`), helper containers stage the inputs into
//! `$ALOFT_INPUT_DIR` and upload `$ALOFT_OUTPUT_DIR` (the process task's contract, see `helpers`); without
//! one, the pod gets its inputs as `ALOFT_INPUT_<NAME>` (blobs and offloaded values as their URIs in the
//! store, which the task reads itself) and writes each output to the store under `$ALOFT_OUTPUT_URI/<NAME>`.
//! Either way the outputs end up under that prefix, and when the pod succeeds the executor reads them back
//! by type, as it reads a process task's output directory, and offloads those too large to travel inline.

mod helpers;
mod logs;
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
use kube::api::{Api, DeleteParams, PostParams};
use tokio_util::sync::CancellationToken;

pub use helpers::DataHelper;
pub use pod::{attempt_pod, attempt_selector, pod_name, PodSettings};
pub use status::{pod_state, task_started, PodState};

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
    watches: watches::PodWatches,
    /// Namespaces this propeller created (`--kubernetes-create-namespaces`).
    created_namespaces: tokio::sync::Mutex<std::collections::HashSet<String>>,
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
                watches: Default::default(),
                created_namespaces: Default::default(),
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
        let log = match self.create_pod(&client, &pods, &namespace, &pod).await {
            Ok(created) => {
                following.seed(created);
                logs::PodLog::new(&pods, &name, &self.blobs, &request.id())
            }
            // Ours from an earlier start of this very attempt: follow it from where it is.
            Err(kube::Error::Api(status)) if status.code == 409 => match pods.get_opt(&name).await {
                Ok(Some(existing)) => {
                    following.seed(existing);
                    logs::PodLog::resumed(&pods, &name, &self.blobs, &request.id()).await
                }
                Ok(None) => {
                    return system_error(format!("pod {namespace}/{name} was deleted as it was created"))
                }
                Err(error) => return system_error(format!("cannot read pod {namespace}/{name}: {error}")),
            },
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return system_error(format!(
                    "namespace {namespace} does not exist ({}): create it, or let the propeller create the \
                     namespaces of projects and domains (--kubernetes-create-namespaces, with the RBAC of \
                     deploy/k8s/components/task-namespaces)",
                    status.message
                ))
            }
            Err(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
                return user_error(format!("pod {namespace}/{name} was refused: {}", status.message))
            }
            Err(error) => return system_error(format!("cannot create pod {namespace}/{name}: {error}")),
        };
        self.follow(&pods, &name, following, log, request, cancel).await
    }

    /// Creates the attempt's pod. A namespace that does not exist is created first when the propeller may
    /// (`--kubernetes-create-namespaces`); otherwise the attempt fails naming it. No namespace is looked up
    /// beforehand: the pod's creation says when one is missing, and the propeller needs no right to read
    /// namespaces.
    async fn create_pod(
        &self,
        client: &kube::Client,
        pods: &Api<Pod>,
        namespace: &str,
        pod: &Pod,
    ) -> Result<Pod, kube::Error> {
        match pods.create(&PostParams::default(), pod).await {
            Err(kube::Error::Api(status)) if status.code == 404 && self.options.pods.create_namespaces => {
                {
                    // One creation per namespace, however many attempts found it missing at once.
                    let mut created = self.created_namespaces.lock().await;
                    if !created.contains(namespace) {
                        create_namespace(client, namespace).await?;
                        tracing::info!(%namespace, "created the namespace of a project and domain");
                        created.insert(namespace.to_string());
                    }
                }
                pods.create(&PostParams::default(), pod).await
            }
            created => created,
        }
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
                let log = logs::PodLog::resumed(&pods, &name, &self.blobs, &id).await;
                self.follow(&pods, &name, following, log, request, cancel).await
            }
            Ok(None) => system_error(format!("attempt lost: its pod {namespace}/{name} is gone")),
            Err(error) => system_error(format!("cannot read pod {namespace}/{name}: {error}")),
        }
    }

    /// Follows pod `name` through the namespace's watch until it ends (or `cancel`), its log into the store
    /// from when its task starts, then reads its outcome, stores the rest of its log and deletes it.
    async fn follow(
        &self,
        pods: &Api<Pod>,
        name: &str,
        mut following: watches::Following,
        mut log: logs::PodLog,
        request: &AttemptRequest,
        cancel: CancellationToken,
    ) -> AttemptOutcome {
        let ended = loop {
            match &*following.seen.borrow_and_update() {
                watches::Seen::Present(pod) => {
                    if task_started(pod) {
                        log.task_started();
                    }
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
                    log.finish().await;
                    let _ = pods.delete(name, &DeleteParams::background()).await;
                    return AttemptOutcome::Cancelled;
                }
            }
        };
        drop(following);
        let Some(state) = ended else {
            return system_error(format!("attempt lost: its pod {name} was deleted while it ran"));
        };
        log.finish().await;
        let outcome = self.outcome(state, request).await;
        let _ = pods.delete(name, &DeleteParams::background()).await;
        outcome
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

/// Creates `namespace` (one that appeared meanwhile will do).
async fn create_namespace(client: &kube::Client, namespace: &str) -> Result<(), kube::Error> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let mut wanted = Namespace::default();
    wanted.metadata.name = Some(namespace.to_string());
    wanted.metadata.labels = Some([(pod::LABEL_MANAGED_BY.to_string(), "aloft".to_string())].into());
    match namespaces.create(&PostParams::default(), &wanted).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}
