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

/// A stored or sent phase name that is none of the phases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not one of the {kind} phases ({expected})")]
pub struct UnknownPhase {
    pub kind: &'static str,
    pub text: String,
    pub expected: String,
}

macro_rules! phase_from_str {
    ($phase:ty, $kind:literal, [$($variant:expr),+ $(,)?]) => {
        impl std::str::FromStr for $phase {
            type Err = UnknownPhase;

            /// The phase `as_str` names.
            fn from_str(text: &str) -> Result<Self, UnknownPhase> {
                let all = [$($variant),+];
                all.iter().copied().find(|phase| phase.as_str() == text).ok_or_else(|| UnknownPhase {
                    kind: $kind,
                    text: text.to_string(),
                    expected: all.iter().map(|phase| phase.as_str()).collect::<Vec<_>>().join(", "),
                })
            }
        }
    };
}

phase_from_str!(
    ExecutionPhase,
    "execution",
    [
        ExecutionPhase::Queued,
        ExecutionPhase::Running,
        ExecutionPhase::Succeeded,
        ExecutionPhase::Failed,
        ExecutionPhase::Aborted,
        ExecutionPhase::TimedOut,
    ]
);
phase_from_str!(
    NodePhase,
    "node",
    [
        NodePhase::Pending,
        NodePhase::Queued,
        NodePhase::Running,
        NodePhase::WaitingForResources,
        NodePhase::Succeeded,
        NodePhase::Failed,
        NodePhase::TimedOut,
        NodePhase::Skipped,
        NodePhase::Aborted,
        NodePhase::Recovered,
    ]
);

phase_from_str!(
    AttemptPhase,
    "attempt",
    [
        AttemptPhase::Running,
        AttemptPhase::Succeeded,
        AttemptPhase::Failed,
        AttemptPhase::Aborted,
    ]
);
phase_from_str!(
    ErrorKind,
    "error kind",
    [ErrorKind::User, ErrorKind::Timeout, ErrorKind::System]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_parses_back_from_its_name_and_an_unknown_one_is_named() {
        for phase in ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"] {
            assert_eq!(phase.parse::<ExecutionPhase>().map(|p| p.as_str()), Ok(phase));
        }
        let node_phases = [
            "PENDING",
            "QUEUED",
            "RUNNING",
            "WAITING_FOR_RESOURCES",
            "SUCCEEDED",
            "FAILED",
            "TIMED_OUT",
            "SKIPPED",
            "ABORTED",
            "RECOVERED",
        ];
        for phase in node_phases {
            assert_eq!(phase.parse::<NodePhase>().map(|p| p.as_str()), Ok(phase));
        }
        let error = "PAUSED".parse::<ExecutionPhase>().unwrap_err().to_string();
        assert!(
            error.contains("\"PAUSED\" is not one of the execution phases") && error.contains("TIMED_OUT"),
            "{error}"
        );
    }
}
