//! The protocol between a launch-plan node and its child execution, as requests the owner of one appends
//! to the other's partition: the parent's owner requests the child (`ExecutionRequested` with its parent
//! link) once `ChildLaunched` is in the log; the child's owner tells the parent (`ChildFinished`) once the
//! child ends; a parent that ends with a child still running terminates it. Requests are idempotent (a
//! second request for the same child is ignored, a second `ChildFinished` changes nothing), so an owner that
//! takes over a partition sends them all again (`requests_to_resend`).

use crate::events::ExecutionEvent;
use crate::state::{ExecutionPhase, ExecutionState, NodePhase};

/// The requests for other executions that follow from `event`, just applied to `state`.
pub fn requests_after(state: &ExecutionState, event: &ExecutionEvent) -> Vec<ExecutionEvent> {
    match event {
        ExecutionEvent::ChildLaunched { node, at, .. } => {
            state.child_request(*node, *at).into_iter().collect()
        }
        ExecutionEvent::ExecutionFinished { .. } => finished_requests(state),
        _ => Vec::new(),
    }
}

/// Every request this execution's owner must have sent, for an owner that takes over its partition.
pub fn requests_to_resend(state: &ExecutionState) -> Vec<ExecutionEvent> {
    if state.phase.is_terminal() {
        return finished_requests(state);
    }
    state
        .running_children()
        .filter_map(|(node, _)| {
            let launched_at = state.nodes[node]
                .attempts
                .first()
                .map_or(state.created_at, |a| a.started_at);
            state.child_request(node, launched_at)
        })
        .collect()
}

/// Once an execution has ended: tell its parent, and terminate the children it no longer waits for.
fn finished_requests(state: &ExecutionState) -> Vec<ExecutionEvent> {
    let at = state.finished_at.unwrap_or(state.created_at);
    let mut requests = Vec::new();
    if let Some(parent) = &state.parent {
        requests.push(ExecutionEvent::ChildFinished {
            execution: parent.execution.clone(),
            node: parent.node,
            child: state.id.clone(),
            phase: state.phase,
            outputs: if state.phase == ExecutionPhase::Succeeded {
                state.outputs.clone()
            } else {
                Default::default()
            },
            error: state.error.clone(),
            requested_at: at,
        });
    }
    for node in &state.nodes {
        if let (Some(child), None, NodePhase::Aborted) = (&node.child, &node.child_result, node.phase) {
            requests.push(ExecutionEvent::TerminateRequested {
                execution: child.clone(),
                reason: format!("its parent {} ended {}", state.id, state.phase.as_str()),
                requested_at: at,
            });
        }
    }
    requests
}
