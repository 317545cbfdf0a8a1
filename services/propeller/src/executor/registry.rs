//! `Executors`: every executor of this propeller, by the task kind it runs.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use aloft_core::spec::TaskSpec;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::attempt::{
    kind_of, system_error, AttemptId, AttemptOutcome, AttemptRequest, ExecutorError, TaskExecutor,
};
use super::builtin::BuiltinExecutor;
use super::process::ProcessExecutor;

/// Every executor of this propeller, by the task kind it runs.
#[derive(Clone)]
pub struct Executors {
    /// Shared: every running attempt holds a clone of the registry.
    by_kind: Arc<HashMap<&'static str, Arc<dyn TaskExecutor>>>,
    process: Arc<ProcessExecutor>,
}

impl fmt::Debug for Executors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<&str> = self.by_kind.keys().copied().collect();
        kinds.sort_unstable();
        f.debug_struct("Executors").field("kinds", &kinds).finish()
    }
}

impl Executors {
    /// The process executor, working under `work_root` with its data in `blobs` and giving a stopped
    /// attempt `termination_grace` between SIGTERM and SIGKILL, and the built-ins.
    pub fn new(
        work_root: PathBuf,
        blobs: aloft_blobstore::BlobStore,
        secrets: super::secrets::SecretSource,
        termination_grace: std::time::Duration,
    ) -> Executors {
        let process = Arc::new(
            ProcessExecutor::new(work_root, blobs, secrets).with_termination_grace(termination_grace),
        );
        let mut executors = Executors {
            by_kind: Arc::new(HashMap::new()),
            process: Arc::clone(&process),
        };
        executors.register(process);
        for builtin in BuiltinExecutor::all() {
            executors.register(Arc::new(builtin));
        }
        executors
    }

    /// Runs tasks of `executor.kind()` with `executor` from now on (replacing any other for that kind).
    pub fn register(&mut self, executor: Arc<dyn TaskExecutor>) {
        Arc::make_mut(&mut self.by_kind).insert(executor.kind(), executor);
    }

    /// The executor that runs `task`.
    pub fn for_task(&self, task: &TaskSpec) -> Result<Arc<dyn TaskExecutor>, ExecutorError> {
        let kind = kind_of(task);
        self.by_kind
            .get(kind)
            .cloned()
            .ok_or(ExecutorError::NoExecutor(kind))
    }

    /// Whether `task`'s executor writes to the work directory (`TaskExecutor::writes_work_dir`).
    pub fn writes_work_dir(&self, task: &TaskSpec) -> bool {
        self.for_task(task)
            .is_ok_and(|executor| executor.writes_work_dir())
    }

    /// The working directory of one process attempt; deterministic, so a repeat is recognised.
    pub fn attempt_dir(&self, request: &AttemptRequest) -> PathBuf {
        self.process.attempt_dir(&request.id())
    }

    /// Runs `request` to its end with the executor of its task kind.
    pub async fn run(&self, request: AttemptRequest, cancel: CancellationToken) -> AttemptOutcome {
        match self.for_task(&request.task) {
            Ok(executor) => executor.start(request, cancel).await,
            Err(error) => system_error(error.to_string()),
        }
    }

    /// Re-attaches to an attempt an earlier owner started (`TaskExecutor::reattach`).
    pub fn reattach(
        &self,
        request: AttemptRequest,
        cancel: CancellationToken,
    ) -> Option<BoxFuture<'static, AttemptOutcome>> {
        self.for_task(&request.task).ok()?.reattach(request, cancel)
    }

    /// The log of an attempt of `task`.
    pub async fn logs(&self, task: &TaskSpec, attempt: &AttemptId) -> Result<String, ExecutorError> {
        self.for_task(task)?.logs(attempt).await
    }
}
