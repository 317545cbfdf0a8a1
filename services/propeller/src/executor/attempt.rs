//! What executors are asked and answer: an attempt's request, its deterministic id, its outcome, and the
//! `TaskExecutor` trait every way of running tasks implements.

use std::collections::BTreeSet;
use std::fmt;

use aloft_core::events::{ErrorKind, Outputs};
use aloft_core::spec::{TaskKind, TaskSpec};
use aloft_core::ExecutionId;
use futures::future::BoxFuture;
use futures::FutureExt;
use tokio_util::sync::CancellationToken;

/// Everything an executor needs to run one attempt.
#[derive(Debug, Clone)]
pub struct AttemptRequest {
    pub execution: ExecutionId,
    pub node_id: String,
    pub attempt: u32,
    pub task: TaskSpec,
    /// The registered version of the task (recorded with cached results and lineage).
    pub task_version: String,
    pub inputs: Outputs,
    /// Outputs the engine reads while applying an event (a dynamic plan): they stay inline in the result
    /// rather than be offloaded to the blob store, however large. (A map's list or a condition's operand
    /// may be offloaded: the engine fetches it.)
    pub keep_inline: BTreeSet<String>,
}

impl AttemptRequest {
    pub fn id(&self) -> AttemptId {
        AttemptId {
            execution: self.execution.clone(),
            node_id: self.node_id.clone(),
            attempt: self.attempt,
        }
    }
}

/// The deterministic identity of one attempt: whoever runs or re-attaches to it names its working
/// directory, container or pod after it, so a repeat of the same attempt is recognised.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttemptId {
    pub execution: ExecutionId,
    pub node_id: String,
    pub attempt: u32,
}

impl AttemptId {
    /// The store key of output `output` of this attempt (with an empty name: the folder of its outputs).
    pub fn output_key(&self, output: &str) -> String {
        let id = &self.execution;
        aloft_blobstore::attempt_key(
            &id.project,
            &id.domain,
            &id.name,
            &self.node_id,
            self.attempt,
            output,
        )
    }
}

impl fmt::Display for AttemptId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.execution, self.node_id, self.attempt)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Succeeded(Outputs),
    Failed {
        kind: ErrorKind,
        message: String,
    },
    /// Cancelled by the engine (execution aborted or ownership lost); nothing is reported.
    Cancelled,
}

impl AttemptOutcome {
    /// The metric label of the outcome.
    pub fn label(&self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded(_) => "succeeded",
            AttemptOutcome::Failed {
                kind: ErrorKind::User,
                ..
            } => "user",
            AttemptOutcome::Failed {
                kind: ErrorKind::Timeout,
                ..
            } => "timeout",
            AttemptOutcome::Failed {
                kind: ErrorKind::System,
                ..
            } => "system",
            AttemptOutcome::Cancelled => "cancelled",
        }
    }
}

pub(crate) fn user_error(message: impl Into<String>) -> AttemptOutcome {
    AttemptOutcome::Failed {
        kind: ErrorKind::User,
        message: message.into(),
    }
}

pub(crate) fn system_error(message: impl Into<String>) -> AttemptOutcome {
    AttemptOutcome::Failed {
        kind: ErrorKind::System,
        message: message.into(),
    }
}

/// An executor could not answer a question about an attempt (its logs).
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("no executor runs tasks of kind {0}")]
    NoExecutor(&'static str),
    #[error("attempt {attempt} has no log here: {reason}")]
    NoLog { attempt: String, reason: String },
}

/// One way of running task attempts. The engine never learns which: it starts an attempt, awaits its
/// outcome, cancels it through the token, asks for its logs, and after a take-over asks to re-attach to an
/// attempt a previous owner started, by the attempt's deterministic id.
pub trait TaskExecutor: Send + Sync {
    /// The task kind it runs, as the spec spells it (`process`, `noop`, ...).
    fn kind(&self) -> &'static str;

    /// Starts `request` and watches it until it ends. Cancelling `cancel` stops it (its processes are
    /// killed) and the future answers `Cancelled`. Dropping the future leaves the attempt running: a
    /// propeller that stops hands non-interruptible attempts to its successor.
    fn start(&self, request: AttemptRequest, cancel: CancellationToken)
        -> BoxFuture<'static, AttemptOutcome>;

    /// For an attempt started by an earlier owner of its partition: a future that watches it to its end
    /// as if this propeller had started it, when it still runs here or recorded how it ended. `None`: the
    /// attempt is lost (retried as a system error).
    fn reattach(
        &self,
        request: AttemptRequest,
        cancel: CancellationToken,
    ) -> Option<BoxFuture<'static, AttemptOutcome>> {
        let _ = (request, cancel);
        None
    }

    /// Whether its attempts write to the propeller's work directory (their files, inputs, outputs and
    /// log): those wait while its filesystem is short of space.
    fn writes_work_dir(&self) -> bool {
        false
    }

    /// Notes in the work directory that the attempt ended, however it ended: a cancelled or timed-out
    /// attempt records no exit of its own, and without the note a propeller stopped before `clean_up` ran
    /// would leave its directory for good (the sweep only removes ended attempts').
    fn record_end(&self, attempt: &AttemptId) -> BoxFuture<'static, ()> {
        let _ = attempt;
        async {}.boxed()
    }

    /// Removes what an ended attempt left in the work directory. Called a while after its end was
    /// reported (`--attempt-dir-retention-secs`), so a successor that takes over before the end is on the
    /// log still finds how it ended.
    fn clean_up(&self, attempt: &AttemptId) -> BoxFuture<'static, ()> {
        let _ = attempt;
        async {}.boxed()
    }

    /// What the attempt wrote to its log so far (all of it once it ended).
    fn logs(&self, attempt: &AttemptId) -> BoxFuture<'static, Result<String, ExecutorError>> {
        let attempt = attempt.to_string();
        async move {
            Err(ExecutorError::NoLog {
                attempt,
                reason: "this executor keeps no logs".to_string(),
            })
        }
        .boxed()
    }
}

/// The kind name of a task, as its executor registers it.
pub fn kind_of(task: &TaskSpec) -> &'static str {
    match &task.run {
        TaskKind::Noop => "noop",
        TaskKind::Sleep { .. } => "sleep",
        TaskKind::Echo => "echo",
        TaskKind::Process { .. } => "process",
        TaskKind::Container(_) => "container",
    }
}
