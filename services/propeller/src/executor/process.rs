//! The `process` executor: a local command in a fresh working directory per attempt (inputs staged in as
//! files and environment variables, outputs read back by type and blobs uploaded to the blob store, a log
//! file shipped to the store while it runs, timeout and cancel stop its process group: SIGTERM, then SIGKILL
//! after the termination grace). A wrapper shell
//! records the exit status next to the pid, so a propeller taking over on the same machine re-attaches to a
//! process its predecessor started.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use aloft_blobstore::BlobStore;
use aloft_core::spec::TaskKind;
use futures::future::BoxFuture;
use futures::FutureExt;
use nix::unistd::Pid;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::attempt::{
    kind_of, system_error, user_error, AttemptId, AttemptOutcome, AttemptRequest, ExecutorError, TaskExecutor,
};
use super::log_shipper::LogShipper;
use super::secrets::{write_secret_files, SecretSource};
use super::staging::{collect_outputs, stage_inputs};
use super::termination::{stop_group, DEFAULT_TERMINATION_GRACE};
use super::workdir::{timed_out, AttemptDir};

/// Runs `process` tasks under `work_root`, one directory per attempt, their data in `blobs`.
#[derive(Debug, Clone)]
pub struct ProcessExecutor {
    work_root: PathBuf,
    blobs: BlobStore,
    secrets: SecretSource,
    /// Between SIGTERM and SIGKILL when an attempt is cancelled or times out.
    termination_grace: Duration,
}

impl ProcessExecutor {
    /// `work_root` is made absolute: commands run inside their attempt directory.
    pub fn new(work_root: PathBuf, blobs: BlobStore, secrets: SecretSource) -> ProcessExecutor {
        let work_root = std::path::absolute(&work_root).unwrap_or(work_root);
        ProcessExecutor {
            work_root,
            blobs,
            secrets,
            termination_grace: DEFAULT_TERMINATION_GRACE,
        }
    }

    /// The same executor, giving a stopped attempt `grace` between SIGTERM and SIGKILL.
    pub fn with_termination_grace(mut self, grace: Duration) -> ProcessExecutor {
        self.termination_grace = grace;
        self
    }

    /// The working directory of one attempt, named after its id.
    pub fn attempt_dir(&self, attempt: &AttemptId) -> PathBuf {
        AttemptDir::of(&self.work_root, attempt).path
    }
}

impl TaskExecutor for ProcessExecutor {
    fn kind(&self) -> &'static str {
        "process"
    }

    fn writes_work_dir(&self) -> bool {
        true
    }

    fn record_end(&self, attempt: &AttemptId) -> BoxFuture<'static, ()> {
        AttemptDir::of(&self.work_root, attempt).record_end().boxed()
    }

    fn clean_up(&self, attempt: &AttemptId) -> BoxFuture<'static, ()> {
        AttemptDir::of(&self.work_root, attempt).remove().boxed()
    }

    fn start(
        &self,
        request: AttemptRequest,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, AttemptOutcome> {
        let dir = AttemptDir::of(&self.work_root, &request.id());
        let blobs = self.blobs.clone();
        let secrets = self.secrets.clone();
        let grace = self.termination_grace;
        async move { run_process(&blobs, &secrets, &dir, &request, grace, cancel).await }.boxed()
    }

    fn reattach(
        &self,
        request: AttemptRequest,
        cancel: CancellationToken,
    ) -> Option<BoxFuture<'static, AttemptOutcome>> {
        if !matches!(request.task.run, TaskKind::Process { .. }) {
            return None;
        }
        let dir = AttemptDir::of(&self.work_root, &request.id());
        reattach_in(self.blobs.clone(), dir, request, self.termination_grace, cancel)
    }

    fn logs(&self, attempt: &AttemptId) -> BoxFuture<'static, Result<String, ExecutorError>> {
        AttemptDir::of(&self.work_root, attempt).read_log(attempt)
    }
}

async fn run_process(
    blobs: &BlobStore,
    secrets: &SecretSource,
    dir: &AttemptDir,
    request: &AttemptRequest,
    grace: Duration,
    cancel: CancellationToken,
) -> AttemptOutcome {
    let TaskKind::Process {
        command,
        env,
        blobs_by_uri,
    } = &request.task.run
    else {
        return system_error(format!(
            "the process executor cannot run a {} task",
            kind_of(&request.task)
        ));
    };
    let inputs_dir = dir.inputs();
    let outputs_dir = dir.outputs();
    if let Err(outcome) = dir.prepare().await {
        return outcome;
    }
    let log_path = dir.log();
    let log_file = match std::fs::File::create(&log_path) {
        Ok(file) => file,
        Err(error) => return system_error(format!("cannot create {}: {error}", log_path.display())),
    };
    let log_file_for_stderr = match log_file.try_clone() {
        Ok(file) => file,
        Err(error) => return system_error(format!("cannot open {}: {error}", log_path.display())),
    };
    // A shell runs the command and records its exit status in the attempt directory, so a propeller that
    // takes over after this one died can re-attach to the process and still learn how it ended.
    let mut process = Command::new("sh");
    process
        .arg("-c")
        .arg(format!(
            "command -v \"$1\" >/dev/null 2>&1 || {{ echo \"cannot start $1: not found\" >&2; echo 127 > {EXIT_STATUS_FILE}; exit 127; }}; \
             \"$@\"; status=$?; echo $status > {EXIT_STATUS_FILE}; exit $status"
        ))
        .arg("aloft-task")
        .args(command)
        .current_dir(&dir.path)
        .env("ALOFT_INPUT_DIR", &inputs_dir)
        .env("ALOFT_OUTPUT_DIR", &outputs_dir)
        .env("ALOFT_EXECUTION", request.execution.to_string())
        .env("ALOFT_NODE", &request.node_id)
        .env("ALOFT_ATTEMPT", request.attempt.to_string())
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_file_for_stderr)
        // Its own process group, so a timeout or cancel kills everything the command started. Not killed on
        // drop: a propeller that stops leaves a non-interruptible attempt running for the next owner.
        .process_group(0)
        .kill_on_drop(false);
    match stage_inputs(blobs, &inputs_dir, &request.inputs, *blobs_by_uri).await {
        Ok(inputs) => process.envs(inputs),
        Err(outcome) => return outcome,
    };
    process.envs(env);
    // The propeller's own secret variables are not the task's: it gets only the secrets it names.
    for name in secrets.own_variables() {
        process.env_remove(name);
    }
    let resolved = match secrets.resolve_all(&request.task.secrets) {
        Ok(resolved) => resolved,
        Err(outcome) => return outcome,
    };
    let secrets_dir = dir.secrets();
    match write_secret_files(&secrets_dir, &resolved).await {
        Ok(true) => {
            process.env("ALOFT_SECRETS_DIR", &secrets_dir);
        }
        Ok(false) => {}
        Err(outcome) => return outcome,
    }
    for secret in &resolved {
        if let Some(env) = &secret.secret.env {
            process.env(env, &secret.value);
        }
    }
    drop(resolved);
    let mut child = match process.spawn() {
        Ok(child) => child,
        Err(error) => return user_error(format!("cannot start {:?}: {error}", command[0])),
    };
    let shipper = LogShipper::spawn(blobs.clone(), &request.id(), log_path.clone(), 0);
    let process_group = child.id().map(|pid| Pid::from_raw(pid as i32));
    if let Some(pid) = child.id() {
        if let Err(error) = tokio::fs::write(dir.path.join(PID_FILE), pid.to_string()).await {
            tracing::warn!(%error, "cannot record the attempt's pid; it cannot be re-attached");
        }
    }
    let timeout = request
        .task
        .timeout_millis()
        .map(|m| Duration::from_millis(m.max(0) as u64));
    let ended = tokio::select! {
        status = child.wait() => Ok(status),
        _ = async { match timeout { Some(t) => tokio::time::sleep(t).await, None => std::future::pending().await } } => {
            Err(timed_out(&request.task))
        }
        _ = cancel.cancelled() => Err(AttemptOutcome::Cancelled),
    };
    let status = match ended {
        Ok(status) => status,
        Err(outcome) => {
            if let Some(group) = process_group {
                stop_group(group, grace, || {
                    let _ = child.try_wait();
                })
                .await;
            }
            let _ = child.wait().await;
            shipper.finish().await;
            dir.remove_secrets().await;
            return outcome;
        }
    };
    // The whole log is in the store before the attempt's end is reported.
    shipper.finish().await;
    let status = match status {
        Ok(status) => status,
        Err(error) => return system_error(format!("waiting for the process failed: {error}")),
    };
    process_ended(blobs, dir, request, status.code()).await
}

/// How a process attempt in `dir` ended, given its exit code (`None`: killed by a signal): zero reads its
/// outputs; anything else is a user error quoting the tail of its log.
async fn process_ended(
    blobs: &BlobStore,
    dir: &AttemptDir,
    request: &AttemptRequest,
    code: Option<i32>,
) -> AttemptOutcome {
    dir.remove_secrets().await;
    if code == Some(0) {
        return collect_outputs(
            blobs,
            &request.id(),
            &dir.outputs(),
            &request.task,
            &request.keep_inline,
        )
        .await;
    }
    let code = code.map_or_else(|| "a signal".to_string(), |c| c.to_string());
    dir.failed(request, &format!("exited with {code}")).await
}

/// How often a re-attached attempt's process is checked (it is not this propeller's child: no wait() on it).
const REATTACHED_POLL: Duration = Duration::from_millis(100);
/// The file in an attempt directory holding the pid of the attempt's process group leader.
const PID_FILE: &str = ".aloft-pid";
/// The file the wrapper shell writes the command's exit status to when it ends.
const EXIT_STATUS_FILE: &str = super::workdir::PROCESS_EXIT_FILE;

/// Follows the process of the attempt in `dir`: if it still runs here (same pid, working in that
/// directory) or ended and recorded its exit status, a future that waits for it and reports how it ended,
/// as if this propeller had started it. `None`: the attempt is lost (its process is gone without a status,
/// or it never ran on this machine).
fn reattach_in(
    blobs: BlobStore,
    dir: AttemptDir,
    request: AttemptRequest,
    grace: Duration,
    cancel: CancellationToken,
) -> Option<BoxFuture<'static, AttemptOutcome>> {
    let pid: i32 = std::fs::read_to_string(dir.path.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let ours = std::fs::read_link(format!("/proc/{pid}/cwd"))
        .ok()
        .zip(std::fs::canonicalize(&dir.path).ok())
        .is_some_and(|(cwd, dir)| cwd == dir);
    let running = ours && process_alive(pid);
    if !running && !dir.path.join(EXIT_STATUS_FILE).exists() {
        return None;
    }
    // The task's timeout still runs from when the process started, which is when its pid was recorded.
    let deadline = request.task.timeout_millis().map(|limit| {
        let started = std::fs::metadata(dir.path.join(PID_FILE))
            .and_then(|metadata| metadata.modified())
            .unwrap_or_else(|_| std::time::SystemTime::now());
        started + Duration::from_millis(limit.max(0) as u64)
    });
    Some(
        async move {
            let id = request.id();
            let from = LogShipper::resume_offset(&blobs, &id).await;
            let shipper = LogShipper::spawn(blobs.clone(), &id, dir.log(), from);
            let outcome = follow_reattached(&blobs, &dir, &request, pid, deadline, grace, cancel).await;
            shipper.finish().await;
            outcome
        }
        .boxed(),
    )
}

/// Watches a re-attached process `pid` to its end (killing it at the task's `deadline` or on `cancel`).
async fn follow_reattached(
    blobs: &BlobStore,
    dir: &AttemptDir,
    request: &AttemptRequest,
    pid: i32,
    deadline: Option<std::time::SystemTime>,
    grace: Duration,
    cancel: CancellationToken,
) -> AttemptOutcome {
    while process_alive(pid) && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok() {
        let left = deadline.map(|deadline| {
            deadline
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
        });
        if left == Some(Duration::ZERO) {
            // Not this propeller's child: its init reaps it.
            stop_group(Pid::from_raw(pid), grace, || {}).await;
            return timed_out(&request.task);
        }
        let poll = left.map_or(REATTACHED_POLL, |left| left.min(REATTACHED_POLL));
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = cancel.cancelled() => {
                stop_group(Pid::from_raw(pid), grace, || {}).await;
                return AttemptOutcome::Cancelled;
            }
        }
    }
    let status = tokio::fs::read_to_string(dir.path.join(EXIT_STATUS_FILE)).await;
    match status.ok().and_then(|text| text.trim().parse::<i32>().ok()) {
        Some(code) => process_ended(blobs, dir, request, Some(code)).await,
        None => system_error("attempt lost: its process ended without recording an exit status"),
    }
}

/// Whether process `pid` exists and has not exited (a zombie has).
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name: `PID (NAME) S ...`.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start())
            .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}
