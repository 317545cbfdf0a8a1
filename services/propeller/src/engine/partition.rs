//! One owned partition: its fold of the log, how far it is read, and the ownership protocol on top of
//! it. Folding an event returns what must follow as a plain [`AfterEvent`]; the engine carries it out.
//!
//! Ownership: after reading a newly assigned partition to its end, the owner appends
//! `PartitionClaimed{epoch = last + 1}` and starts deciding only when it reads its own claim back, in log
//! order. A paused old owner's later decisions carry the old epoch and are discarded by every reader.

use std::collections::HashMap;

use aloft_core::events::ExecutionEvent;
use aloft_core::state::{AppliedEvent, EventMeta, PartitionFold};
use aloft_core::ExecutionId;
use tracing::{debug, info, warn};

use crate::metrics;

/// What must follow the application of one event.
#[derive(Debug, PartialEq)]
pub enum AfterEvent {
    Nothing,
    /// The partition is read to its end and not claimed yet: claim it.
    Claim,
    /// Our claim was read back: decide for every execution, find attempts lost with the previous owner.
    Activated,
    /// Another owner claimed the partition: stop the work started for it.
    StandDown,
    Decide {
        execution: ExecutionId,
        /// The event started this attempt (node, attempt): run it.
        start_attempt: Option<(usize, u32)>,
        /// The execution ended: cancel what still runs for it.
        finished: bool,
        /// Requests for other executions the event causes (a child to launch, a parent to tell).
        requests: Vec<ExecutionEvent>,
    },
}

#[derive(Default)]
pub struct PartitionRuntime {
    pub fold: PartitionFold,
    pub next_offset: u64,
    /// The end of the partition when it was assigned: reading up to here is catching up.
    pub catch_up_end: u64,
    pub claimed_epoch: Option<u64>,
    /// Our claim was read back and is the partition's current epoch.
    pub active: bool,
    /// Highest seq appended per execution and not applied yet: decide again only once it is.
    pub pending: HashMap<ExecutionId, u64>,
    /// Each live execution's trace context (from its request's envelope): decisions and attempt spans
    /// join the execution's trace.
    pub traces: HashMap<ExecutionId, String>,
    /// `(next_offset, epoch)` of the last snapshot stored: an idle partition is not stored again.
    pub snapshotted: Option<(u64, u64)>,
}

impl PartitionRuntime {
    /// A partition assigned with its end at `catch_up_end`, starting from `fold` at `next_offset` (a
    /// snapshot) or empty at offset 0.
    pub fn assigned(catch_up_end: u64, restored: Option<(PartitionFold, u64)>) -> PartitionRuntime {
        let (fold, next_offset) = restored.unwrap_or_default();
        PartitionRuntime {
            fold,
            next_offset,
            catch_up_end,
            ..Default::default()
        }
    }

    pub fn caught_up(&self) -> bool {
        self.next_offset >= self.catch_up_end
    }

    /// The epoch to claim, unless a claim for it is already on its way (the envelopes of one record are
    /// folded before their follow-ups run, so several may ask to claim).
    pub fn epoch_to_claim(&mut self) -> Option<u64> {
        let epoch = self.fold.epoch + 1;
        if self.claimed_epoch == Some(epoch) {
            return None;
        }
        self.claimed_epoch = Some(epoch);
        Some(epoch)
    }

    /// The trace context of `execution`, empty when it has none.
    pub fn trace_of(&self, execution: &ExecutionId) -> String {
        self.traces.get(execution).cloned().unwrap_or_default()
    }

    /// Applies one event to the fold and says what must follow. `member` is this propeller; `caught_up`:
    /// the event is at or past the end the partition had when it was assigned.
    pub fn fold_event(
        &mut self,
        member: &str,
        meta: &EventMeta,
        event: &ExecutionEvent,
        caught_up: bool,
    ) -> AfterEvent {
        let verdict = self.fold.apply(meta, event);
        if verdict == AppliedEvent::Accepted {
            metrics::EVENTS_APPLIED.increment(&[], 1.0);
        }
        if verdict == AppliedEvent::Fenced {
            debug!(kind = event.kind(), "discarded a fenced event");
        }
        if let ExecutionEvent::PartitionClaimed {
            partition,
            epoch,
            owner,
            ..
        } = event
        {
            if verdict == AppliedEvent::Accepted {
                if owner == member && Some(*epoch) == self.claimed_epoch {
                    info!(partition, epoch, "partition claimed; deciding");
                    self.active = true;
                    return AfterEvent::Activated;
                }
                if self.active {
                    warn!(partition, epoch, owner = %owner, "partition claimed by another owner; standing down");
                    self.active = false;
                    self.pending.clear();
                    return AfterEvent::StandDown;
                }
            }
            if self.claimed_epoch.is_none() && caught_up {
                return AfterEvent::Claim;
            }
            return AfterEvent::Nothing;
        }
        if self.claimed_epoch.is_none() && caught_up {
            return AfterEvent::Claim;
        }
        if !self.active || verdict != AppliedEvent::Accepted {
            return AfterEvent::Nothing;
        }
        let Some(execution) = event.execution().cloned() else {
            return AfterEvent::Nothing;
        };
        let requests = self
            .fold
            .executions
            .get(&execution)
            .map(|state| aloft_core::children::requests_after(state, event))
            .unwrap_or_default();
        if !event.is_request()
            && self
                .pending
                .get(&execution)
                .is_some_and(|pending| meta.seq >= *pending)
        {
            self.pending.remove(&execution);
        }
        let start_attempt = match event {
            ExecutionEvent::AttemptStarted { node, attempt, .. } => Some((*node, *attempt)),
            _ => None,
        };
        let finished = matches!(event, ExecutionEvent::ExecutionFinished { .. });
        if finished {
            self.traces.remove(&execution);
        }
        AfterEvent::Decide {
            execution,
            start_attempt,
            finished,
            requests,
        }
    }
}
