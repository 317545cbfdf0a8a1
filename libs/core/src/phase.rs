//! The phases of executions, nodes and attempts, and the kinds of attempt errors: the vocabulary every
//! other module of the core (events, state, notifications) and every reader of the log share. It sits at
//! the bottom of the core and imports nothing from it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionPhase {
    Queued,
    Running,
    Succeeded,
    Failed,
    Aborted,
    TimedOut,
}

impl ExecutionPhase {
    pub fn is_terminal(&self) -> bool {
        !matches!(self, ExecutionPhase::Queued | ExecutionPhase::Running)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ExecutionPhase::Queued => "QUEUED",
            ExecutionPhase::Running => "RUNNING",
            ExecutionPhase::Succeeded => "SUCCEEDED",
            ExecutionPhase::Failed => "FAILED",
            ExecutionPhase::Aborted => "ABORTED",
            ExecutionPhase::TimedOut => "TIMED_OUT",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodePhase {
    /// Waiting for upstream nodes.
    Pending,
    /// Ready to run (first attempt or a retry).
    Queued,
    Running,
    /// Its attempt is started but waits for an executor slot, the tenant's quota or a resource pool.
    WaitingForResources,
    Succeeded,
    Failed,
    TimedOut,
    Skipped,
    Aborted,
    /// Took its outputs from the execution this one recovers; never ran here.
    Recovered,
}

impl NodePhase {
    pub fn as_str(&self) -> &'static str {
        match self {
            NodePhase::Pending => "PENDING",
            NodePhase::Queued => "QUEUED",
            NodePhase::Running => "RUNNING",
            NodePhase::WaitingForResources => "WAITING_FOR_RESOURCES",
            NodePhase::Succeeded => "SUCCEEDED",
            NodePhase::Failed => "FAILED",
            NodePhase::TimedOut => "TIMED_OUT",
            NodePhase::Skipped => "SKIPPED",
            NodePhase::Aborted => "ABORTED",
            NodePhase::Recovered => "RECOVERED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptPhase {
    Running,
    Succeeded,
    Failed,
    Aborted,
}

impl AttemptPhase {
    pub fn as_str(&self) -> &'static str {
        match self {
            AttemptPhase::Running => "RUNNING",
            AttemptPhase::Succeeded => "SUCCEEDED",
            AttemptPhase::Failed => "FAILED",
            AttemptPhase::Aborted => "ABORTED",
        }
    }
}

/// Why an attempt failed; user and system errors have separate retry budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The task itself failed (non-zero exit, bad outputs). Counts against `retries.user`.
    User,
    /// The attempt ran longer than the task's timeout. Counts against `retries.user`.
    Timeout,
    /// The executor or the machine failed (could not start, lost on restart). Counts against `retries.system`.
    System,
}

impl ErrorKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorKind::User => "USER",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::System => "SYSTEM",
        }
    }
}
