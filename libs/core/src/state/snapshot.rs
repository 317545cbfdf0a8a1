//! The snapshot codec of a partition fold: the propeller stores it now and then and, on taking a partition,
//! replays only the log after it.

use serde::{Deserialize, Serialize};

use super::fencing::PartitionFold;
use super::model::ExecutionState;

/// A snapshot that cannot be written or read back.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot encode the partition's state: {0}")]
    Encode(serde_json::Error),
    #[error("the snapshot is unreadable: {0}")]
    Unreadable(serde_json::Error),
}

/// A partition fold as stored in a snapshot (JSON objects need string keys, so executions are a list).
#[derive(Serialize, Deserialize)]
struct StoredFold {
    epoch: u64,
    executions: Vec<ExecutionState>,
}

impl PartitionFold {
    /// The fold as a snapshot: restoring it and folding the events after it gives the same state as
    /// folding every event from offset 0.
    pub fn to_snapshot(&self) -> Result<Vec<u8>, SnapshotError> {
        let mut executions: Vec<&ExecutionState> = self.executions.values().collect();
        executions.sort_by_key(|state| state.id.to_string());
        #[derive(Serialize)]
        struct Borrowed<'a> {
            epoch: u64,
            executions: Vec<&'a ExecutionState>,
        }
        serde_json::to_vec(&Borrowed {
            epoch: self.epoch,
            executions,
        })
        .map_err(SnapshotError::Encode)
    }

    pub fn from_snapshot(bytes: &[u8]) -> Result<PartitionFold, SnapshotError> {
        let stored: StoredFold = serde_json::from_slice(bytes).map_err(SnapshotError::Unreadable)?;
        Ok(PartitionFold {
            epoch: stored.epoch,
            executions: stored
                .executions
                .into_iter()
                .map(|state| (state.id.clone(), state))
                .collect(),
        })
    }
}
