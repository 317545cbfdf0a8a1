//! Wire <-> domain conversions. Domain -> wire is `From` (always possible); wire -> domain is `TryFrom`,
//! validating what it reads, so junk from a peer becomes an error that names the field.

use aloft_core::cache::CacheStatus;
use aloft_core::events::WaitingFor;
use aloft_core::state::{AttemptPhase, ErrorKind, ExecutionPhase, NodePhase};
use aloft_core::{ExecutionId, Identifier};

use crate::v1 as wire;

/// A wire value that is not a valid domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct WireError {
    pub field: &'static str,
    pub reason: String,
}

impl From<&ExecutionId> for wire::ExecutionIdentifier {
    fn from(id: &ExecutionId) -> Self {
        wire::ExecutionIdentifier {
            project: id.project.clone(),
            domain: id.domain.clone(),
            name: id.name.clone(),
        }
    }
}

impl TryFrom<&wire::ExecutionIdentifier> for ExecutionId {
    type Error = WireError;

    fn try_from(id: &wire::ExecutionIdentifier) -> Result<Self, WireError> {
        let execution = ExecutionId {
            project: id.project.clone(),
            domain: id.domain.clone(),
            name: id.name.clone(),
        };
        execution.validate().map_err(|error| WireError {
            field: "execution id",
            reason: error.to_string(),
        })?;
        Ok(execution)
    }
}

impl From<&Identifier> for wire::Identifier {
    fn from(id: &Identifier) -> Self {
        wire::Identifier {
            project: id.project.clone(),
            domain: id.domain.clone(),
            name: id.name.clone(),
            version: id.version.clone(),
        }
    }
}

impl From<ExecutionPhase> for wire::ExecutionPhase {
    fn from(phase: ExecutionPhase) -> Self {
        match phase {
            ExecutionPhase::Queued => wire::ExecutionPhase::Queued,
            ExecutionPhase::Running => wire::ExecutionPhase::Running,
            ExecutionPhase::Succeeded => wire::ExecutionPhase::Succeeded,
            ExecutionPhase::Failed => wire::ExecutionPhase::Failed,
            ExecutionPhase::Aborted => wire::ExecutionPhase::Aborted,
            ExecutionPhase::TimedOut => wire::ExecutionPhase::TimedOut,
        }
    }
}

impl TryFrom<wire::ExecutionPhase> for ExecutionPhase {
    type Error = WireError;

    fn try_from(phase: wire::ExecutionPhase) -> Result<Self, WireError> {
        Ok(match phase {
            wire::ExecutionPhase::Queued => ExecutionPhase::Queued,
            wire::ExecutionPhase::Running => ExecutionPhase::Running,
            wire::ExecutionPhase::Succeeded => ExecutionPhase::Succeeded,
            wire::ExecutionPhase::Failed => ExecutionPhase::Failed,
            wire::ExecutionPhase::Aborted => ExecutionPhase::Aborted,
            wire::ExecutionPhase::TimedOut => ExecutionPhase::TimedOut,
            wire::ExecutionPhase::Unspecified => {
                return Err(WireError {
                    field: "execution phase",
                    reason: "is unspecified".to_string(),
                })
            }
        })
    }
}

impl From<NodePhase> for wire::NodePhase {
    fn from(phase: NodePhase) -> Self {
        match phase {
            NodePhase::Pending => wire::NodePhase::NodePending,
            NodePhase::Queued => wire::NodePhase::NodeQueued,
            NodePhase::Running => wire::NodePhase::NodeRunning,
            NodePhase::WaitingForResources => wire::NodePhase::NodeWaitingForResources,
            NodePhase::Succeeded => wire::NodePhase::NodeSucceeded,
            NodePhase::Failed => wire::NodePhase::NodeFailed,
            NodePhase::TimedOut => wire::NodePhase::NodeTimedOut,
            NodePhase::Skipped => wire::NodePhase::NodeSkipped,
            NodePhase::Aborted => wire::NodePhase::NodeAborted,
            NodePhase::Recovered => wire::NodePhase::NodeRecovered,
        }
    }
}

impl TryFrom<wire::NodePhase> for NodePhase {
    type Error = WireError;

    fn try_from(phase: wire::NodePhase) -> Result<Self, WireError> {
        Ok(match phase {
            wire::NodePhase::NodePending => NodePhase::Pending,
            wire::NodePhase::NodeQueued => NodePhase::Queued,
            wire::NodePhase::NodeRunning => NodePhase::Running,
            wire::NodePhase::NodeWaitingForResources => NodePhase::WaitingForResources,
            wire::NodePhase::NodeSucceeded => NodePhase::Succeeded,
            wire::NodePhase::NodeFailed => NodePhase::Failed,
            wire::NodePhase::NodeTimedOut => NodePhase::TimedOut,
            wire::NodePhase::NodeSkipped => NodePhase::Skipped,
            wire::NodePhase::NodeAborted => NodePhase::Aborted,
            wire::NodePhase::NodeRecovered => NodePhase::Recovered,
            wire::NodePhase::Unspecified => {
                return Err(WireError {
                    field: "node phase",
                    reason: "is unspecified".to_string(),
                })
            }
        })
    }
}

impl From<AttemptPhase> for wire::AttemptPhase {
    fn from(phase: AttemptPhase) -> Self {
        match phase {
            AttemptPhase::Running => wire::AttemptPhase::AttemptRunning,
            AttemptPhase::Succeeded => wire::AttemptPhase::AttemptSucceeded,
            AttemptPhase::Failed => wire::AttemptPhase::AttemptFailed,
            AttemptPhase::Aborted => wire::AttemptPhase::AttemptAborted,
        }
    }
}

impl From<ErrorKind> for wire::ErrorKind {
    fn from(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::User => wire::ErrorKind::User,
            ErrorKind::Timeout => wire::ErrorKind::Timeout,
            ErrorKind::System => wire::ErrorKind::System,
        }
    }
}

impl From<CacheStatus> for wire::CacheStatus {
    fn from(status: CacheStatus) -> Self {
        match status {
            CacheStatus::Disabled => wire::CacheStatus::CacheDisabled,
            CacheStatus::Miss => wire::CacheStatus::CacheMiss,
            CacheStatus::Hit => wire::CacheStatus::CacheHit,
            CacheStatus::Populated => wire::CacheStatus::CachePopulated,
            CacheStatus::LookupFailure => wire::CacheStatus::CacheLookupFailure,
            CacheStatus::PutFailure => wire::CacheStatus::CachePutFailure,
            CacheStatus::Skipped => wire::CacheStatus::CacheSkipped,
        }
    }
}

/// What a gate of execution `execution` (its name) waits for, as API clients show it: what it waits for and
/// the command that gives it.
pub fn describe_wait(waiting: &WaitingFor, execution: &str) -> String {
    match waiting {
        WaitingFor::EndOfSleep => "the end of a sleep".to_string(),
        WaitingFor::Signal { name } => format!("signal {name:?} (aloft signal {execution} {name} ...)"),
        WaitingFor::Approval { node } => format!("approval (aloft approve {execution} {node})"),
        WaitingFor::Described(text) => text.clone(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    #[test]
    fn execution_phases_go_to_the_wire_and_back_and_unspecified_is_refused() {
        for phase in ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"] {
            let phase: ExecutionPhase = phase.parse().unwrap();
            assert_eq!(
                ExecutionPhase::try_from(wire::ExecutionPhase::from(phase)),
                Ok(phase)
            );
        }
        let error = ExecutionPhase::try_from(wire::ExecutionPhase::Unspecified).unwrap_err();
        assert_eq!(error.to_string(), "execution phase: is unspecified");
    }

    #[test]
    fn an_execution_id_from_the_wire_is_validated() {
        let id = ExecutionId {
            project: "p".into(),
            domain: "d".into(),
            name: "run-1".into(),
        };
        assert_eq!(
            ExecutionId::try_from(&wire::ExecutionIdentifier::from(&id)),
            Ok(id)
        );
        let bad = wire::ExecutionIdentifier {
            project: "p".into(),
            domain: "d".into(),
            name: "no spaces allowed".into(),
        };
        let error = ExecutionId::try_from(&bad).unwrap_err().to_string();
        assert!(error.starts_with("execution id: "), "{error}");
    }

    #[test]
    fn a_wait_is_described_with_the_command_that_ends_it_and_an_old_text_as_it_was() {
        let signal = WaitingFor::Signal { name: "go".into() };
        assert_eq!(
            describe_wait(&signal, "run-1"),
            "signal \"go\" (aloft signal run-1 go ...)"
        );
        let approval = WaitingFor::Approval {
            node: "release/review".into(),
        };
        assert_eq!(
            describe_wait(&approval, "run-1"),
            "approval (aloft approve run-1 release/review)"
        );
        let old = WaitingFor::Described("approval (aloft approve x y)".into());
        assert_eq!(describe_wait(&old, "run-1"), "approval (aloft approve x y)");
    }

    #[test]
    fn attempt_phases_error_kinds_and_cache_statuses_map_to_their_wire_enums() {
        assert_eq!(
            wire::AttemptPhase::from(AttemptPhase::Failed),
            wire::AttemptPhase::AttemptFailed
        );
        assert_eq!(
            wire::ErrorKind::from(ErrorKind::Timeout),
            wire::ErrorKind::Timeout
        );
        assert_eq!(
            wire::CacheStatus::from(CacheStatus::LookupFailure),
            wire::CacheStatus::CacheLookupFailure
        );
        assert_eq!("TIMEOUT".parse::<ErrorKind>(), Ok(ErrorKind::Timeout));
        assert_eq!("ABORTED".parse::<AttemptPhase>(), Ok(AttemptPhase::Aborted));
    }
}
