//! The `container` executor: a task in its own image on a local container engine (Docker Engine's API, or
//! podman's compatible one), for `aloft dev` and single-machine deployments. One container per attempt,
//! named after the attempt (`aloft-<execution>-<node>-<attempt>-<hash>`) and labelled with it, so a
//! propeller taking over re-attaches to a container its predecessor started instead of running it again.
//!
//! The attempt's working directory is mounted at `/aloft`: inputs are staged into `/aloft/inputs` and read
//! back from `/aloft/outputs` exactly as for a process task (`$ALOFT_INPUT_DIR`, `$ALOFT_OUTPUT_DIR`), so
//! the engine must see the propeller's work directory at the same path (the propeller runs on the engine's
//! machine, or in a container with that directory mounted at the same path). Resources become cgroup limits,
//! and an ephemeral-storage limit is watched (writable layer and attempt directory, measured every second) as
//! a kubelet watches a pod's: a container over it is stopped and fails saying so. The container's output is
//! followed into the attempt's log and shipped to the blob store.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aloft_blobstore::BlobStore;
use aloft_core::quantity::human_bytes;
use aloft_core::spec::{ContainerSpec, TaskKind};
use bollard::container::{
    Config, CreateContainerOptions, KillContainerOptions, RemoveContainerOptions, StopContainerOptions,
};
use bollard::errors::Error as EngineError;
use bollard::models::{DeviceRequest, HostConfig};
use bollard::{ClientVersion, Docker};
use futures::future::BoxFuture;
use futures::FutureExt;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

mod engine;

use engine::{
    engine_failure, ensure_image, recorded_exit, started_at, storage_exceeded, wait_for_exit, write_log,
    ContainerExit, EXIT_CODE_FILE,
};

use super::attempt::{
    kind_of, system_error, user_error, AttemptId, AttemptOutcome, AttemptRequest, ExecutorError, TaskExecutor,
};
use super::log_shipper::LogShipper;
use super::secrets::{write_secret_files, SecretSource};
use super::staging::{collect_outputs, stage_inputs};
use super::workdir::{timed_out, AttemptDir};

/// Where a container finds its attempt's working directory.
const MOUNT: &str = "/aloft";
/// The API version spoken: Docker Engine 20.10 and podman 4's compatible API both answer it.
const API_VERSION: ClientVersion = ClientVersion {
    major_version: 1,
    minor_version: 41,
};
/// How long one engine request may take before it is given up (waits and log streams are not bounded).
const ENGINE_TIMEOUT_SECS: u64 = 120;

/// How the propeller reaches its container engine and what network task containers join; the same flags on
/// `aloft-propeller` and `aloft dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct ContainerOptions {
    /// The container engine's API socket that `container` tasks run on (Docker Engine, or podman's
    /// compatible API such as unix:///run/podman/podman.sock). The engine must see the work directory at the
    /// same path: attempt directories are mounted into the task containers.
    #[arg(
        long = "container-engine",
        value_name = "SOCKET",
        env = "ALOFT_CONTAINER_ENGINE",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub engine: String,
    /// The network task containers join: bridge (the engine's default), none, host, or a named network.
    #[arg(
        long = "container-network",
        env = "ALOFT_CONTAINER_NETWORK",
        default_value = "bridge"
    )]
    pub network: String,
}

impl Default for ContainerOptions {
    fn default() -> Self {
        ContainerOptions {
            engine: "unix:///var/run/docker.sock".to_string(),
            network: "bridge".to_string(),
        }
    }
}

/// The engine's socket could not be opened; every attempt fails saying so.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no container engine at {socket} ({reason}): start Docker or podman there, or point --container-engine at its socket")]
struct NoEngine {
    socket: String,
    reason: String,
}

/// Runs `container` tasks on a local container engine.
#[derive(Clone)]
pub struct ContainerExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    /// `Err`: the engine's socket could not be opened; every attempt fails saying so.
    engine: Result<Docker, NoEngine>,
    options: ContainerOptions,
    work_root: PathBuf,
    blobs: BlobStore,
    secrets: SecretSource,
    /// Between the engine's SIGTERM and its SIGKILL when an attempt is cancelled or times out.
    termination_grace: Duration,
}

impl std::fmt::Debug for ContainerExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerExecutor")
            .field("options", &self.inner.options)
            .field("work_root", &self.inner.work_root)
            .finish()
    }
}

impl ContainerExecutor {
    /// An executor on the engine `options` names, its attempts' directories under `work_root`.
    pub fn new(
        options: ContainerOptions,
        work_root: PathBuf,
        blobs: BlobStore,
        secrets: SecretSource,
        termination_grace: Duration,
    ) -> ContainerExecutor {
        let work_root = std::path::absolute(&work_root).unwrap_or(work_root);
        let engine =
            Docker::connect_with_unix(&options.engine, ENGINE_TIMEOUT_SECS, &API_VERSION).map_err(|error| {
                NoEngine {
                    socket: options.engine.clone(),
                    reason: error.to_string(),
                }
            });
        ContainerExecutor {
            inner: Arc::new(Inner {
                engine,
                options,
                work_root,
                blobs,
                secrets,
                termination_grace,
            }),
        }
    }
}

/// The container of an attempt: deterministic, so a successor finds it. Engines allow `[a-zA-Z0-9_.-]`;
/// the hash of the whole id keeps two ids that sanitise alike apart.
pub fn container_name(attempt: &AttemptId) -> String {
    let id = attempt.to_string();
    let readable: String = format!(
        "{}-{}-{}-{}-{}",
        attempt.execution.project,
        attempt.execution.domain,
        attempt.execution.name,
        attempt.node_id,
        attempt.attempt
    )
    .chars()
    .map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
            c
        } else {
            '_'
        }
    })
    .take(180)
    .collect();
    let hash = hex::encode(&Sha256::digest(id.as_bytes())[..4]);
    format!("aloft-{readable}-{hash}")
}

impl TaskExecutor for ContainerExecutor {
    fn kind(&self) -> &'static str {
        "container"
    }

    /// The attempt directory is mounted into the container.
    fn writes_work_dir(&self) -> bool {
        true
    }

    fn record_end(&self, attempt: &AttemptId) -> BoxFuture<'static, ()> {
        AttemptDir::of(&self.inner.work_root, attempt)
            .record_end()
            .boxed()
    }

    fn clean_up(&self, attempt: &AttemptId) -> BoxFuture<'static, ()> {
        AttemptDir::of(&self.inner.work_root, attempt).remove().boxed()
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

    fn logs(&self, attempt: &AttemptId) -> BoxFuture<'static, Result<String, ExecutorError>> {
        AttemptDir::of(&self.inner.work_root, attempt).read_log(attempt)
    }
}

impl Inner {
    fn engine(&self) -> Result<&Docker, AttemptOutcome> {
        self.engine
            .as_ref()
            .map_err(|error| system_error(error.to_string()))
    }

    async fn run(&self, request: &AttemptRequest, cancel: CancellationToken) -> AttemptOutcome {
        let TaskKind::Container(spec) = &request.task.run else {
            return system_error(format!(
                "the container executor cannot run a {} task",
                kind_of(&request.task)
            ));
        };
        let engine = match self.engine() {
            Ok(engine) => engine,
            Err(outcome) => return outcome,
        };
        let dir = AttemptDir::of(&self.work_root, &request.id());
        match self.create(engine, spec, &dir, request, &cancel).await {
            Ok(name) => self.follow(engine, &name, &dir, request, 0, cancel).await,
            Err(outcome) => {
                dir.remove_secrets().await;
                outcome
            }
        }
    }

    /// Prepares the attempt's directory, makes sure the image is here, and creates and starts the
    /// container; answers its name.
    async fn create(
        &self,
        engine: &Docker,
        spec: &ContainerSpec,
        dir: &AttemptDir,
        request: &AttemptRequest,
        cancel: &CancellationToken,
    ) -> Result<String, AttemptOutcome> {
        dir.prepare().await?;
        // The image's user may not be root: it must be able to write its outputs.
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = tokio::fs::set_permissions(dir.outputs(), std::fs::Permissions::from_mode(0o777)).await;
        }
        let mut env: Vec<String> = vec![
            format!("ALOFT_INPUT_DIR={MOUNT}/inputs"),
            format!("ALOFT_OUTPUT_DIR={MOUNT}/outputs"),
            format!("ALOFT_EXECUTION={}", request.execution),
            format!("ALOFT_NODE={}", request.node_id),
            format!("ALOFT_ATTEMPT={}", request.attempt),
        ];
        let host_inputs = dir.inputs().display().to_string();
        for (name, value) in stage_inputs(&self.blobs, &dir.inputs(), &request.inputs, false).await? {
            // A staged blob's path on this machine is a path under the mount inside the container.
            let value = match value.strip_prefix(&host_inputs) {
                Some(rest) => format!("{MOUNT}/inputs{rest}"),
                None => value,
            };
            env.push(format!("{name}={value}"));
        }
        env.extend(spec.env.iter().map(|(name, value)| format!("{name}={value}")));
        let resolved = self.secrets.resolve_all(&request.task.secrets)?;
        if write_secret_files(&dir.secrets(), &resolved).await? {
            env.push(format!(
                "ALOFT_SECRETS_DIR={MOUNT}/{}",
                super::workdir::SECRETS_DIR
            ));
        }
        for secret in &resolved {
            if let Some(name) = &secret.secret.env {
                env.push(format!("{name}={}", secret.value));
            }
        }
        drop(resolved);
        tokio::select! {
            ready = ensure_image(engine, &spec.image) => ready?,
            _ = cancel.cancelled() => return Err(AttemptOutcome::Cancelled),
        }
        let name = container_name(&request.id());
        // A container of this very attempt left by an owner that died before it started is replaced.
        remove(engine, &name).await;
        let resources = request.task.resources.clone().unwrap_or_default();
        let limits = resources.limits();
        let requests = resources.requests();
        let id = request.id();
        let labels: HashMap<String, String> = [
            ("aloft.attempt", id.to_string()),
            ("aloft.project", id.execution.project.clone()),
            ("aloft.domain", id.execution.domain.clone()),
            ("aloft.execution", id.execution.name.clone()),
            ("aloft.node", id.node_id.clone()),
            ("aloft.attempt-number", id.attempt.to_string()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();
        let host_config = HostConfig {
            binds: Some(vec![format!("{}:{MOUNT}", dir.path.display())]),
            network_mode: Some(self.options.network.clone()),
            memory: limits.memory_bytes.map(|bytes| bytes as i64),
            // No swap beyond the limit: a task over its memory is killed, not slowed to a crawl.
            memory_swap: limits.memory_bytes.map(|bytes| bytes as i64),
            memory_reservation: requests.memory_bytes.map(|bytes| bytes as i64),
            nano_cpus: limits.cpu_millis.map(|millis| millis as i64 * 1_000_000),
            device_requests: (requests.gpu > 0).then(|| {
                vec![DeviceRequest {
                    driver: Some("nvidia".to_string()),
                    count: Some(i64::from(requests.gpu)),
                    capabilities: Some(vec![vec!["gpu".to_string()]]),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        };
        let config = Config {
            image: Some(spec.image.clone()),
            entrypoint: (!spec.command.is_empty()).then(|| spec.command.clone()),
            cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
            env: Some(env),
            working_dir: spec.working_dir.clone(),
            labels: Some(labels),
            host_config: Some(host_config),
            ..Default::default()
        };
        engine
            .create_container(
                Some(CreateContainerOptions {
                    name: name.clone(),
                    platform: None,
                }),
                config,
            )
            .await
            .map_err(|error| engine_failure(&format!("cannot create container {name}"), error))?;
        if let Err(error) = engine.start_container::<String>(&name, None).await {
            remove(engine, &name).await;
            // The engine refuses to start what the image cannot run (no such executable, bad working dir).
            return Err(match error {
                EngineError::DockerResponseServerError { message, .. } => {
                    user_error(format!("container {name} cannot start: {message}"))
                }
                other => system_error(format!("container {name} cannot start: {other}")),
            });
        }
        Ok(name)
    }

    /// For an attempt an earlier owner started: follows its container if it still exists, or reports how
    /// it ended if it recorded that before its container was removed.
    async fn reattach(&self, request: &AttemptRequest, cancel: CancellationToken) -> AttemptOutcome {
        let engine = match self.engine() {
            Ok(engine) => engine,
            Err(outcome) => return outcome,
        };
        let dir = AttemptDir::of(&self.work_root, &request.id());
        let name = container_name(&request.id());
        match engine.inspect_container(&name, None).await {
            Ok(_) => {
                let from = LogShipper::resume_offset(&self.blobs, &request.id()).await;
                tracing::info!(container = %name, "re-attached to the running container of a previous owner");
                self.follow(engine, &name, &dir, request, from, cancel).await
            }
            Err(EngineError::DockerResponseServerError { status_code: 404, .. }) => {
                match recorded_exit(&dir).await {
                    Some(exit) => self.ended(&dir, request, exit).await,
                    None => system_error(format!(
                        "attempt lost: its container {name} is gone and recorded no exit code"
                    )),
                }
            }
            Err(error) => system_error(format!("cannot inspect container {name}: {error}")),
        }
    }

    /// Follows container `name` to its end: its output into the attempt's log (shipped from byte `from`),
    /// the task's timeout (counted from the container's start) and `cancel`; then reads its outcome and
    /// removes it.
    async fn follow(
        &self,
        engine: &Docker,
        name: &str,
        dir: &AttemptDir,
        request: &AttemptRequest,
        from: u64,
        cancel: CancellationToken,
    ) -> AttemptOutcome {
        let log_writer = tokio::spawn(write_log(engine.clone(), name.to_string(), dir.log()));
        let shipper = LogShipper::spawn(self.blobs.clone(), &request.id(), dir.log(), from);
        let left = match request.task.timeout_millis() {
            Some(limit) => {
                let started = started_at(engine, name).await;
                let elapsed = started
                    .map(|at| (chrono::Utc::now() - at).to_std().unwrap_or_default())
                    .unwrap_or_default();
                Some(Duration::from_millis(limit.max(0) as u64).saturating_sub(elapsed))
            }
            None => None,
        };
        let storage_limit = request
            .task
            .resources
            .as_ref()
            .and_then(|resources| resources.limits().ephemeral_storage_bytes);
        enum End {
            Exited,
            TimedOut,
            Cancelled,
            OverStorage(u64),
        }
        let end = tokio::select! {
            _ = wait_for_exit(engine, name) => End::Exited,
            used = storage_exceeded(engine, name, &dir.path, storage_limit) => End::OverStorage(used),
            _ = async { match left { Some(left) => tokio::time::sleep(left).await, None => std::future::pending().await } } => End::TimedOut,
            _ = cancel.cancelled() => End::Cancelled,
        };
        if !matches!(end, End::Exited) {
            // The engine sends SIGTERM, and SIGKILL once the grace has passed.
            let grace = self.termination_grace.as_secs().try_into().unwrap_or(i64::MAX);
            let stopped = engine
                .stop_container(name, Some(StopContainerOptions { t: grace }))
                .await;
            if stopped.is_err() {
                let _ = engine
                    .kill_container(name, Some(KillContainerOptions { signal: "SIGKILL" }))
                    .await;
            }
            wait_for_exit(engine, name).await;
        }
        // The log stream ends with the container; bounded in case the engine holds it open.
        let _ = tokio::time::timeout(Duration::from_secs(10), log_writer).await;
        shipper.finish().await;
        let exit = match end {
            End::Exited => match engine.inspect_container(name, None).await {
                Ok(inspected) => {
                    let state = inspected.state.unwrap_or_default();
                    let exit = ContainerExit {
                        code: state.exit_code.unwrap_or(-1),
                        oom_killed: state.oom_killed.unwrap_or(false),
                    };
                    let _ = tokio::fs::write(dir.path.join(EXIT_CODE_FILE), exit.record()).await;
                    Some(exit)
                }
                Err(error) => {
                    dir.remove_secrets().await;
                    return system_error(format!("cannot read how container {name} ended: {error}"));
                }
            },
            _ => None,
        };
        remove(engine, name).await;
        match (end, exit) {
            (End::Exited, Some(exit)) => self.ended(dir, request, exit).await,
            (End::TimedOut, _) => {
                dir.remove_secrets().await;
                timed_out(&request.task)
            }
            (End::OverStorage(used), _) => {
                dir.remove_secrets().await;
                let limit = storage_limit.unwrap_or_default();
                let how = format!(
                    "stopped for using {} of local storage (its writable layer and /aloft), more than its limit of {} \
                     (resources.ephemeral_storage, or resources.limits.ephemeral_storage)",
                    human_bytes(used),
                    human_bytes(limit)
                );
                dir.failed(request, &how).await
            }
            _ => {
                dir.remove_secrets().await;
                AttemptOutcome::Cancelled
            }
        }
    }

    /// The outcome of a container that exited: its outputs, or a user error that says why it failed.
    async fn ended(&self, dir: &AttemptDir, request: &AttemptRequest, exit: ContainerExit) -> AttemptOutcome {
        dir.remove_secrets().await;
        let limit = request
            .task
            .resources
            .as_ref()
            .and_then(|resources| resources.limits().memory_bytes);
        // podman 4 under cgroup v2 does not report OOMKilled through its compatible API: a container with a
        // memory limit that this executor did not stop and that died of SIGKILL (137) was, almost surely,
        // killed by the kernel over that limit.
        if let (false, 137, Some(bytes)) = (exit.oom_killed, exit.code, limit) {
            let how = format!(
                "out of memory, most likely: killed by SIGKILL (exit 137) under its memory limit of {}                  (resources.memory, or resources.limits.memory); the engine did not say why",
                human_bytes(bytes)
            );
            return dir.failed(request, &how).await;
        }
        if exit.oom_killed {
            let how = match limit {
                Some(bytes) => format!(
                    "killed for using more memory than its limit of {} (resources.memory, or resources.limits.memory)",
                    human_bytes(bytes)
                ),
                None => "killed by the kernel for lack of memory (the task sets no memory limit)".to_string(),
            };
            return dir.failed(request, &format!("out of memory: {how}")).await;
        }
        if exit.code == 0 {
            return collect_outputs(
                &self.blobs,
                &request.id(),
                &dir.outputs(),
                &request.task,
                &request.keep_inline,
            )
            .await;
        }
        dir.failed(request, &format!("exited with {}", exit.code)).await
    }
}

/// Removes container `name`, running or not (nothing there is no error).
async fn remove(engine: &Docker, name: &str) {
    let _ = engine
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
}
