//! One owned partition: its fold of the log, how far it is read, and the ownership protocol on top of
//! it. Folding an event returns what must follow as a plain [`AfterEvent`]; the engine carries it out.
//!
//! Ownership: after reading a newly assigned partition to its end, the owner appends
//! `PartitionClaimed{epoch = last + 1}` and starts deciding only when it reads its own claim back, in log
//! order. A paused old owner's later decisions carry the old epoch and are discarded by every reader.

use std::collections::HashMap;

use aloft_core::events::ExecutionEvent;
use aloft_core::state::{decide, AppliedEvent, EventMeta, ExecutionState, PartitionFold, ResolveError};
use aloft_core::{ExecutionId, StreamId};
use aloft_eventlog::{Envelope, Payload};
use tracing::{debug, info, warn};

use std::collections::HashSet;

use aloft_eventlog::Record;
use tracing::error;

use crate::attempts::{AttemptFinished, AttemptKey, AttemptToReattach};
use crate::executor::{AttemptOutcome, AttemptRequest};
use crate::metrics;

/// What a partition whose claim was just read back must do.
pub struct Activation {
    /// Requests for other executions to send again (children to launch, parents to tell).
    pub requests: Vec<ExecutionEvent>,
    /// Attempts the log says run but that this propeller did not start: follow them if they still run.
    pub to_follow: Vec<AttemptToReattach>,
    /// Such attempts whose inputs no longer resolve: lost.
    pub unresolvable: Vec<AttemptKey>,
    /// Every live execution, to decide.
    pub to_decide: Vec<ExecutionId>,
}

/// Decisions sequenced for appending: the records to append (packed envelopes, keyed by the execution's
/// partition key) and the decisions to apply when the log acknowledges them.
pub struct Sequenced {
    pub records: Vec<(String, Vec<u8>)>,
    pub decisions: Vec<(EventMeta, ExecutionEvent)>,
}

/// Why decisions were not sequenced (nothing of them was: the execution's sequence numbers are untaken).
#[derive(Debug)]
pub enum Unsequenced {
    /// They could not be encoded.
    Encode(aloft_eventlog::Error),
    /// A record of them would be over the log's limit (`aloft_eventlog::MAX_RECORD_BYTES`): the kinds of
    /// the decisions it held, its size, and the events, given back.
    TooLarge {
        kinds: String,
        bytes: usize,
        events: Vec<ExecutionEvent>,
    },
}

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
    /// Another owner's claim outbid ours before ours was read back: this member never decided here.
    ClaimLost,
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
    /// Another owner's claim won over ours (we stood down, or our claim was outbid before it was read
    /// back). Nothing is decided here until the group assigns the partition to this member again: it is
    /// then rebuilt and claimed anew. Without this a partition the group kept assigning here after an
    /// overlap had no owner at all (found by the fault harness after a broker pause).
    pub claim_lost: bool,
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
                    self.claim_lost = true;
                    self.pending.clear();
                    return AfterEvent::StandDown;
                }
                if self.claimed_epoch.is_some_and(|ours| *epoch >= ours) {
                    warn!(partition, epoch, owner = %owner, "another owner's claim outbid ours; waiting for the group to assign the partition again");
                    self.claim_lost = true;
                    return AfterEvent::ClaimLost;
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

    /// Sequences `events` of `execution` after everything already appended for it, under this partition's
    /// epoch, packed into as few records of at most `record_bytes` as hold them (a broker's cost is per
    /// record, and a 10,000-item map decides thousands of starts and results). `None`: nothing to append.
    pub fn sequence(
        &mut self,
        execution: &ExecutionId,
        events: Vec<ExecutionEvent>,
        record_bytes: usize,
    ) -> Result<Option<Sequenced>, Unsequenced> {
        let Some(state) = self.fold.executions.get(execution) else {
            return Ok(None);
        };
        let first_seq = self
            .pending
            .get(execution)
            .copied()
            .unwrap_or(0)
            .max(state.last_seq)
            + 1;
        let epoch = self.fold.epoch;
        let traceparent = self.trace_of(execution);
        let stream = StreamId::Execution(execution.clone()).to_string();
        let envelopes: Vec<Envelope> = events
            .into_iter()
            .zip(first_seq..)
            .map(|(event, seq)| Envelope {
                stream: stream.clone(),
                seq,
                writer_epoch: epoch,
                occurred_at: event.occurred_at(),
                traceparent: traceparent.clone(),
                payload: Payload::Execution(event),
                principal: None,
            })
            .collect();
        let Some(last_seq) = envelopes.last().map(|envelope| envelope.seq) else {
            return Ok(None);
        };
        let key = execution.partition_key();
        let records: Vec<(String, Vec<u8>)> = Envelope::pack(&envelopes, record_bytes)
            .map_err(Unsequenced::Encode)?
            .into_iter()
            .map(|payload| (key.clone(), payload))
            .collect();
        // Refused here, before the sequence numbers are taken, so the caller can decide something else
        // (the log would refuse the record, and deciding again would make it again).
        if let Some(bytes) = records
            .iter()
            .map(|(key, payload)| key.len() + payload.len())
            .find(|bytes| *bytes > aloft_eventlog::MAX_RECORD_BYTES)
        {
            let mut kinds: Vec<&str> = envelopes
                .iter()
                .filter_map(|envelope| match &envelope.payload {
                    Payload::Execution(event) => Some(event.kind()),
                    _ => None,
                })
                .collect();
            kinds.dedup();
            let kinds = kinds.join(", ");
            let events = envelopes
                .into_iter()
                .filter_map(|envelope| match envelope.payload {
                    Payload::Execution(event) => Some(event),
                    _ => None,
                })
                .collect();
            return Err(Unsequenced::TooLarge { kinds, bytes, events });
        }
        let decisions = envelopes
            .into_iter()
            .filter_map(|envelope| match envelope.payload {
                Payload::Execution(event) => Some((
                    EventMeta {
                        seq: envelope.seq,
                        writer_epoch: envelope.writer_epoch,
                    },
                    event,
                )),
                _ => None,
            })
            .collect();
        self.pending.insert(execution.clone(), last_seq);
        Ok(Some(Sequenced { records, decisions }))
    }

    /// What the state machine decides once attempt `results` of `execution` are folded, so that they go out
    /// in the same record as the results (a record is appended whole or not at all, and its decisions take
    /// effect on acknowledgement, as always): a chain's next start then costs no round trip of its own.
    /// Decided on a copy; nothing when `execution` has appends in flight (its state is not final yet), when
    /// it has more than `max_nodes` nodes (a copy per result would cost more than the round trip it saves),
    /// or when a start it decides is one the cache gate `holds_back`.
    pub fn decided_after(
        &self,
        execution: &ExecutionId,
        results: &[ExecutionEvent],
        max_nodes: usize,
        now: i64,
        holds_back: impl Fn(&ExecutionState, usize) -> bool,
    ) -> Vec<ExecutionEvent> {
        if !self.active || self.pending.contains_key(execution) {
            return Vec::new();
        }
        let Some(state) = self.fold.executions.get(execution) else {
            return Vec::new();
        };
        if state.nodes.len() > max_nodes {
            return Vec::new();
        }
        let mut next = state.clone();
        for result in results {
            next.apply(result);
        }
        // A list to fetch first: decided on the way that fetches it.
        if !next.fetches_needed().is_empty() {
            return Vec::new();
        }
        let decisions = decide(&next, now);
        let asks_cache = |event: &ExecutionEvent| match event {
            ExecutionEvent::AttemptStarted { node, .. } => holds_back(&next, *node),
            _ => false,
        };
        if decisions.iter().any(asks_cache) {
            return Vec::new();
        }
        decisions
    }

    /// The event that records how `finished` ended, if this (active) owner's execution still waits for that
    /// attempt; a cancelled attempt records nothing.
    pub fn result_event(&self, finished: AttemptFinished) -> Option<ExecutionEvent> {
        if !self.active {
            return None;
        }
        let AttemptKey {
            execution,
            node,
            attempt,
        } = finished.key;
        let still_running = self
            .fold
            .executions
            .get(&execution)
            .and_then(|state| state.nodes.get(node))
            .and_then(|n| n.running_attempt())
            .is_some_and(|a| a.number == attempt);
        if !still_running {
            return None;
        }
        let at = finished.memoized.finished_at;
        match finished.memoized.outcome {
            AttemptOutcome::Succeeded(outputs) => Some(ExecutionEvent::AttemptSucceeded {
                execution,
                node,
                attempt,
                outputs,
                at,
                cache: finished.memoized.cache,
            }),
            AttemptOutcome::Failed { kind, message } => Some(ExecutionEvent::AttemptFailed {
                execution,
                node,
                attempt,
                kind,
                message,
                at,
            }),
            AttemptOutcome::Cancelled => None,
        }
    }

    /// Folds every envelope of `record` (a propeller may append several together), saying what must follow
    /// each; a record already folded, or one that does not decode, is skipped.
    pub fn fold_record(&mut self, member: &str, record: Record) -> Vec<AfterEvent> {
        if record.offset < self.next_offset {
            return Vec::new();
        }
        self.next_offset = record.offset + 1;
        let caught_up = record.offset + 1 >= self.catch_up_end;
        let envelopes = match Envelope::decode_all(&record.payload) {
            Ok(envelopes) => envelopes,
            Err(error) => {
                error!(partition = record.partition, offset = record.offset, %error, "skipping an undecodable record");
                return Vec::new();
            }
        };
        let mut follow_ups = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let Payload::Execution(event) = &envelope.payload else {
                continue;
            };
            if let ExecutionEvent::ExecutionRequested { execution, .. } = event {
                if !envelope.traceparent.is_empty() {
                    self.traces
                        .insert(execution.clone(), envelope.traceparent.clone());
                }
            }
            let meta = EventMeta {
                seq: envelope.seq,
                writer_epoch: envelope.writer_epoch,
            };
            follow_ups.push(self.fold_event(member, &meta, event, caught_up));
        }
        follow_ups
    }

    /// What to do once this owner's claim of `partition` is read back, given the attempts already `handed`
    /// to the attempt service.
    pub fn activation(&self, partition: u32, handed: &HashSet<AttemptKey>) -> Activation {
        let mut activation = Activation {
            requests: Vec::new(),
            to_follow: Vec::new(),
            unresolvable: Vec::new(),
            to_decide: Vec::new(),
        };
        for (execution, state) in &self.fold.executions {
            activation
                .requests
                .extend(aloft_core::children::requests_to_resend(state));
            if state.phase.is_terminal() {
                continue;
            }
            activation.to_decide.push(execution.clone());
            for (node, attempt) in state.running_attempts() {
                let key = AttemptKey {
                    execution: execution.clone(),
                    node,
                    attempt,
                };
                if handed.contains(&key) {
                    continue;
                }
                match attempt_request(state, node, attempt) {
                    Ok(request) => activation.to_follow.push(AttemptToReattach {
                        partition,
                        interruptible: state.nodes[node].is_interruptible(attempt),
                        key,
                        request,
                    }),
                    Err(_) => activation.unresolvable.push(key),
                }
            }
        }
        activation
    }
}

/// What an executor needs to run attempt `attempt` of `node`; an error when its inputs do not resolve.
pub fn attempt_request(
    state: &ExecutionState,
    node: usize,
    attempt: u32,
) -> Result<AttemptRequest, ResolveError> {
    let compiled = &state.workflow.nodes[node];
    Ok(AttemptRequest {
        execution: state.id.clone(),
        node_id: compiled.id.clone(),
        attempt,
        task: state.attempt_task(node)?,
        task_version: compiled.task_id.version.clone(),
        inputs: state.node_inputs(node)?,
        keep_inline: state.outputs_read_by_the_engine(node),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(owner: &str, epoch: u64) -> (EventMeta, ExecutionEvent) {
        let meta = EventMeta {
            seq: epoch,
            writer_epoch: epoch,
        };
        let event = ExecutionEvent::PartitionClaimed {
            partition: 0,
            epoch,
            owner: owner.to_string(),
            at: 1,
        };
        (meta, event)
    }

    #[test]
    fn a_claim_outbid_before_it_is_read_back_is_lost_and_never_activates() {
        let mut runtime = PartitionRuntime::assigned(0, None);
        assert_eq!(runtime.epoch_to_claim(), Some(1));
        let (meta, theirs) = claim("other", 1);
        assert_eq!(
            runtime.fold_event("me", &meta, &theirs, true),
            AfterEvent::ClaimLost
        );
        assert!(runtime.claim_lost);
        let (meta, ours) = claim("me", 1);
        assert_eq!(runtime.fold_event("me", &meta, &ours, true), AfterEvent::Nothing);
        assert!(
            !runtime.active,
            "a fenced claim does not make this member the owner"
        );
    }

    #[test]
    fn an_active_owner_stands_down_when_another_claims_and_its_claim_is_lost() {
        let mut runtime = PartitionRuntime::assigned(0, None);
        assert_eq!(runtime.epoch_to_claim(), Some(1));
        let (meta, ours) = claim("me", 1);
        assert_eq!(
            runtime.fold_event("me", &meta, &ours, true),
            AfterEvent::Activated
        );
        assert!(runtime.active && !runtime.claim_lost);
        let (meta, theirs) = claim("other", 2);
        assert_eq!(
            runtime.fold_event("me", &meta, &theirs, true),
            AfterEvent::StandDown
        );
        assert!(!runtime.active && runtime.claim_lost);
    }

    #[test]
    fn an_earlier_claim_of_another_does_not_outbid_ours() {
        // Ours (epoch 2) was appended after theirs (epoch 1) was read: theirs is accepted first, ours wins.
        let mut runtime = PartitionRuntime::assigned(0, None);
        runtime.claimed_epoch = Some(2);
        let (meta, theirs) = claim("other", 1);
        assert_eq!(
            runtime.fold_event("me", &meta, &theirs, true),
            AfterEvent::Nothing
        );
        assert!(!runtime.claim_lost);
        let (meta, ours) = claim("me", 2);
        assert_eq!(
            runtime.fold_event("me", &meta, &ours, true),
            AfterEvent::Activated
        );
    }
}
