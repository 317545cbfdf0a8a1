//! Partition ownership as every reader of `aloft.executions` sees it: the admission rule (requests pass, a
//! claim raises the epoch, a decision must carry the current epoch and its stream's next seq) and the fold
//! of one partition's executions under it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::events::ExecutionEvent;
use crate::ids::ExecutionId;

use super::model::ExecutionState;

/// Position and fencing data of one event, from its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    pub seq: u64,
    pub writer_epoch: u64,
}

/// What happened to an event offered to a partition fold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppliedEvent {
    Accepted,
    /// Already applied (same stream and seq): processing is idempotent.
    Duplicate,
    /// Written by an owner whose epoch is not the partition's current one.
    Fenced,
    /// Not applicable (an execution name that already exists, an unknown execution).
    Ignored(String),
}

/// The admission rule every reader of `aloft.executions` shares (propeller and admin projections):
/// requests always pass; a claim must raise the epoch; a decision must carry the current epoch and the next
/// seq of its stream.
pub fn admit(
    partition_epoch: u64,
    last_seq: Option<u64>,
    meta: &EventMeta,
    event: &ExecutionEvent,
) -> AppliedEvent {
    match event {
        ExecutionEvent::PartitionClaimed { epoch, .. } => {
            if *epoch > partition_epoch {
                AppliedEvent::Accepted
            } else {
                AppliedEvent::Fenced
            }
        }
        ExecutionEvent::ExecutionRequested { .. } => match last_seq {
            Some(_) => AppliedEvent::Ignored("an execution with this name already exists".to_string()),
            None => AppliedEvent::Accepted,
        },
        ExecutionEvent::TerminateRequested { .. }
        | ExecutionEvent::SignalReceived { .. }
        | ExecutionEvent::ChildFinished { .. } => match last_seq {
            Some(_) => AppliedEvent::Accepted,
            None => AppliedEvent::Ignored("unknown execution".to_string()),
        },
        _ => {
            if meta.writer_epoch != partition_epoch {
                return AppliedEvent::Fenced;
            }
            match last_seq {
                None => AppliedEvent::Ignored("unknown execution".to_string()),
                Some(last) if meta.seq <= last => AppliedEvent::Duplicate,
                Some(last) if meta.seq == last + 1 => AppliedEvent::Accepted,
                Some(last) => AppliedEvent::Ignored(format!("seq {} after {last} leaves a gap", meta.seq)),
            }
        }
    }
}

impl ExecutionState {
    /// The state an `ExecutionRequested` event starts (recovered nodes already taken over); `None` for any
    /// other event. The one constructor the partition fold and the history's time travel share.
    pub fn from_request(event: &ExecutionEvent) -> Option<ExecutionState> {
        let ExecutionEvent::ExecutionRequested {
            execution,
            request_id,
            workflow,
            inputs,
            launch_plan,
            requested_at,
            overwrite_cache,
            recovery,
            parent,
            ..
        } = event
        else {
            return None;
        };
        let mut state = ExecutionState::new(
            execution.clone(),
            request_id.clone(),
            Arc::new((**workflow).clone()),
            inputs.clone(),
            launch_plan.clone(),
            *requested_at,
        );
        state.overwrite_cache = *overwrite_cache;
        state.parent = parent.as_deref().cloned();
        if let Some(recovery) = recovery {
            state.recover(&recovery.nodes);
        }
        Some(state)
    }
}

/// The state of one partition of `aloft.executions`: its epoch and every execution in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionFold {
    pub epoch: u64,
    pub executions: HashMap<ExecutionId, ExecutionState>,
}

impl PartitionFold {
    pub fn apply(&mut self, meta: &EventMeta, event: &ExecutionEvent) -> AppliedEvent {
        let last_seq = event
            .execution()
            .and_then(|id| self.executions.get(id))
            .map(|state| state.last_seq);
        let verdict = admit(self.epoch, last_seq, meta, event);
        if verdict != AppliedEvent::Accepted {
            return verdict;
        }
        match event {
            ExecutionEvent::PartitionClaimed { epoch, .. } => self.epoch = *epoch,
            ExecutionEvent::ExecutionRequested { execution, .. } => {
                if let Some(state) = ExecutionState::from_request(event) {
                    self.executions.insert(execution.clone(), state);
                }
            }
            other => {
                let Some(state) = other.execution().and_then(|id| self.executions.get_mut(id)) else {
                    return AppliedEvent::Ignored("unknown execution".to_string());
                };
                if !other.is_request() {
                    state.last_seq = meta.seq;
                }
                state.apply(other);
            }
        }
        AppliedEvent::Accepted
    }
}
