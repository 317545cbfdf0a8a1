//! Live and past views of one execution from its history: the watch (its events after a place in the
//! history, then each new one as admin projects it) and time travel (its state right after any event,
//! folded by the engine's own `ExecutionState::apply`).

use aloft_core::state::ExecutionState;
use aloft_store::queries::EventRow;
use tokio::sync::mpsc;

use super::reads::execution_to_wire;
use super::*;

/// How long the watch waits for the projector before looking again anyway (a write by another admin
/// replica moves this replica's projector too, so this is only a backstop).
const WATCH_BACKSTOP: Duration = Duration::from_secs(1);

/// Events a watch may have in flight to a slow client; it pauses reading the store when they are.
const WATCH_BUFFER: usize = 512;

impl AdminApi {
    pub(super) async fn watch_execution_rpc(
        &self,
        request: wire::WatchExecutionRequest,
    ) -> ApiResult<HistoryStream> {
        let id = execution_id_from_wire(request.id.as_ref())?;
        self.execution_row(&id).await?;
        let history = self.store.execution_history(&id).await?;
        let (tx, rx) = mpsc::channel(WATCH_BUFFER);
        let api = self.clone();
        tokio::spawn(async move {
            if let Err(error) = api.watch(id, history, request.after_index, &tx).await {
                let _ = tx.send(Err(Status::from(error))).await;
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx)))
    }

    /// Sends `history` past `after_index`, then every event projected after it, until the execution has
    /// ended and its last event was sent, or the client went away.
    async fn watch(
        &self,
        id: ExecutionId,
        history: Vec<EventRow>,
        after_index: u64,
        tx: &mpsc::Sender<Result<wire::HistoryEvent, Status>>,
    ) -> ApiResult<()> {
        let mut node_ids = self.store.node_ids(&id).await?;
        let mut sent = 0u64;
        let mut last = None;
        let mut progress = self.progress.clone();
        let mut pending = history;
        loop {
            for row in pending {
                sent += 1;
                last = Some((row.log_partition, row.log_offset, row.log_index));
                if sent <= after_index {
                    continue;
                }
                // A map or dynamic node added nodes: their ids name what the later summaries are about.
                if matches!(row.kind.as_str(), "MapExpanded" | "DynamicExpanded") {
                    node_ids = self.store.node_ids(&id).await?;
                }
                if tx
                    .send(Ok(self.history_event(row, sent, &node_ids)))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
            // Ended and nothing newer: done. (Read before the events, so an event appended after the final
            // one is not missed by a race with this check.)
            let ended = self
                .execution_row(&id)
                .await?
                .phase
                .parse::<aloft_core::state::ExecutionPhase>();
            let ended = ended.is_ok_and(|phase| phase.is_terminal());
            pending = match last {
                Some(position) => self.store.execution_events_after(&id, position).await?,
                None => self.store.execution_history(&id).await?,
            };
            if ended && pending.is_empty() {
                return Ok(());
            }
            if pending.is_empty() {
                tokio::select! {
                    _ = progress.changed() => {}
                    _ = tokio::time::sleep(WATCH_BACKSTOP) => {}
                    _ = tx.closed() => return Ok(()),
                }
            }
        }
    }

    pub(super) async fn get_execution_state_rpc(
        &self,
        request: wire::GetExecutionStateRequest,
    ) -> ApiResult<wire::Execution> {
        let id = execution_id_from_wire(request.id.as_ref())?;
        let row = self.execution_row(&id).await?;
        let history = self.store.execution_history(&id).await?;
        if request.at_index == 0 || request.at_index > history.len() as u64 {
            return Err(invalid(format!(
                "at_index {} is not a place in the history of {id}: it has events 1 to {}",
                request.at_index,
                history.len()
            )));
        }
        let state = aloft_store::queries::fold_history(&id, &history[..request.at_index as usize])?;
        let mut execution = execution_to_wire(row)?;
        fold_into(&mut execution, &state);
        Ok(execution)
    }
}

/// Overwrites what changes while an execution runs (phase, outputs, timings, nodes, attempts) with the
/// folded `state`; what was fixed at its request (id, workflow, inputs, labels, parent) stays.
fn fold_into(execution: &mut wire::Execution, state: &ExecutionState) {
    execution.phase = wire::ExecutionPhase::from(state.phase) as i32;
    execution.outputs = Some(outputs_to_wire(&state.outputs));
    execution.error = state.error.clone().unwrap_or_default();
    execution.started_at_millis = state.started_at.unwrap_or(0);
    execution.finished_at_millis = state.finished_at.unwrap_or(0);
    let workflow = &state.workflow;
    execution.nodes = Vec::with_capacity(state.nodes.len());
    execution.attempts = Vec::new();
    for (index, node) in state.nodes.iter().enumerate() {
        let Some(compiled) = workflow.nodes.get(index) else {
            continue;
        };
        let waiting = node.running_attempt().and_then(|a| a.waiting_for.clone());
        let phase = if waiting.is_some() {
            wire::NodePhase::NodeWaitingForResources
        } else {
            wire::NodePhase::from(node.phase)
        };
        execution.nodes.push(wire::NodeExecution {
            node_id: compiled.id.clone(),
            phase: phase as i32,
            task: Some(wire::Identifier::from(&compiled.task_id)),
            attempts: node.attempts.len() as u32,
            outputs: node.outputs.as_ref().map(outputs_to_wire),
            error: node.error.clone().unwrap_or_default(),
            started_at_millis: node.attempts.first().map_or(0, |a| a.started_at),
            finished_at_millis: node.attempts.last().and_then(|a| a.finished_at).unwrap_or(0),
            cache_status: String::new(),
            wait_reason: waiting.unwrap_or_default(),
            child_execution: node.child.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
            upstream: compiled
                .upstream
                .iter()
                .filter_map(|&up| workflow.nodes.get(up).map(|n| n.id.clone()))
                .collect(),
        });
        for attempt in &node.attempts {
            let (kind, error) = attempt
                .error
                .as_ref()
                .map(|(kind, message)| (Some(*kind), message.clone()))
                .unwrap_or((None, String::new()));
            // The texts the read model stores, next to their typed forms.
            let (phase, phase_text) = if attempt.waiting_for.is_some() {
                (
                    wire::AttemptPhase::AttemptWaitingForResources,
                    "WAITING_FOR_RESOURCES",
                )
            } else {
                (wire::AttemptPhase::from(attempt.phase), attempt.phase.as_str())
            };
            execution.attempts.push(wire::TaskAttempt {
                node_id: compiled.id.clone(),
                attempt: attempt.number,
                phase: phase_text.to_string(),
                error_kind: kind.map(|k| k.as_str().to_string()).unwrap_or_default(),
                error,
                started_at_millis: attempt.started_at,
                finished_at_millis: attempt.finished_at.unwrap_or(0),
                cache_status: String::new(),
                cache_source: String::new(),
                interruptible: attempt.interruptible,
                attempt_phase: phase as i32,
                kind: kind.map_or(wire::ErrorKind::Unspecified, wire::ErrorKind::from) as i32,
                cache: wire::CacheStatus::Unspecified as i32,
            });
        }
    }
}
