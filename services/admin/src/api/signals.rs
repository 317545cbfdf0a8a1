//! Requests to a running execution: terminate it, send a signal to its gates, approve an approval gate.
//! Each is checked against the execution's workflow and read model, then appended to the execution's
//! partition of `aloft.executions` for its owner to fold.

use aloft_core::compiler::{approval_signal, CompiledGate, Control};
use aloft_core::Value;

use super::*;

impl AdminApi {
    /// Appends a request about `id` (not sequenced: its owner folds it) and waits for the read model.
    pub(super) async fn append_request(&self, id: &ExecutionId, event: ExecutionEvent) -> ApiResult<()> {
        let envelope = Envelope::unsequenced(
            aloft_core::StreamId::request(id, uuid::Uuid::new_v4().to_string()).to_string(),
            event.occurred_at(),
            Payload::Execution(event),
        );
        let position = self
            .append(&self.topics.executions, &id.partition_key(), envelope)
            .await?;
        self.wait_projected(&self.topics.executions, position).await
    }

    /// The execution, refused unless it still runs.
    async fn running_execution(&self, id: &ExecutionId) -> ApiResult<()> {
        let row = self.execution_row(id).await?;
        if !matches!(row.phase.as_str(), "QUEUED" | "RUNNING") {
            return Err(ApiError::FailedPrecondition(format!(
                "execution {id} already finished ({}); signals and approvals go to running executions",
                row.phase
            )));
        }
        Ok(())
    }

    /// Sends signal `signal` with `value` (text parsed by the gate's declared type) to execution `id`.
    /// A signal may be sent before its gate is reached; the gate then opens as soon as it is.
    pub(super) async fn send_signal(
        &self,
        request: wire::SignalExecutionRequest,
    ) -> ApiResult<wire::SignalExecutionResponse> {
        let id = execution_id_from_wire(request.id.as_ref())?;
        self.running_execution(&id).await?;
        let workflow = self.source_request(&id).await?.workflow;
        let declared: Vec<(&str, Option<&LiteralType>)> = workflow
            .nodes
            .iter()
            .filter_map(|node| match &node.control {
                Some(Control::Gate(CompiledGate::Signal { name, value_type, .. })) => {
                    Some((name.as_str(), value_type.as_ref()))
                }
                _ => None,
            })
            .collect();
        let Some((_, value_type)) = declared.iter().find(|(name, _)| *name == request.signal) else {
            let mut names: Vec<&str> = declared.iter().map(|(name, _)| *name).collect();
            names.sort_unstable();
            names.dedup();
            return Err(invalid(format!(
                "execution {id} has no gate waiting for signal {:?}; its signals are: {}",
                request.signal,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            )));
        };
        let value = match value_type {
            Some(value_type) => value_type.parse_text(&request.value).map_err(|e| {
                invalid(format!(
                    "signal {:?} takes a value of type {value_type}: {e}",
                    request.signal
                ))
            })?,
            None if request.value.is_empty() => Value::Boolean(true),
            None => {
                return Err(invalid(format!(
                    "signal {:?} takes no value (its gate declares no type)",
                    request.signal
                )))
            }
        };
        let event = ExecutionEvent::SignalReceived {
            execution: id.clone(),
            signal: request.signal,
            value,
            requested_at: now_millis(),
        };
        self.append_request(&id, event).await?;
        Ok(wire::SignalExecutionResponse {})
    }

    /// Approves approval gate `node` of execution `id`; refused unless that gate is waiting now.
    pub(super) async fn approve(
        &self,
        request: wire::ApproveExecutionRequest,
    ) -> ApiResult<wire::ApproveExecutionResponse> {
        let id = execution_id_from_wire(request.id.as_ref())?;
        self.running_execution(&id).await?;
        self.check_distinct_approver(&id).await?;
        let workflow = self.source_request(&id).await?.workflow;
        let approval_gates: Vec<&str> = workflow
            .nodes
            .iter()
            .filter(|node| matches!(node.control, Some(Control::Gate(CompiledGate::Approve { .. }))))
            .map(|node| node.id.as_str())
            .collect();
        if !approval_gates.contains(&request.node.as_str()) {
            return Err(invalid(format!(
                "execution {id} has no approval gate {:?}; its approval gates are: {}",
                request.node,
                if approval_gates.is_empty() {
                    "none".to_string()
                } else {
                    approval_gates.join(", ")
                }
            )));
        }
        let nodes = self.store.node_executions(&id).await?;
        let phase = nodes
            .iter()
            .find(|node| node.node_id == request.node)
            .map(|node| node.phase.as_str())
            .unwrap_or("PENDING");
        if phase != "RUNNING" {
            return Err(ApiError::FailedPrecondition(format!(
                "node {} of execution {id} is not waiting for approval (it is {phase})",
                request.node
            )));
        }
        let event = ExecutionEvent::SignalReceived {
            execution: id.clone(),
            signal: approval_signal(&request.node),
            value: Value::Boolean(true),
            requested_at: now_millis(),
        };
        self.append_request(&id, event).await?;
        Ok(wire::ApproveExecutionResponse {})
    }
}

/// The terminate RPC (the service trait in `mod.rs` calls it through `serve`).
impl AdminApi {
    pub(super) async fn terminate_execution_rpc(
        &self,
        request: wire::TerminateExecutionRequest,
    ) -> ApiResult<wire::TerminateExecutionResponse> {
        let id = execution_id_from_wire(request.id.as_ref())?;
        let row = self.execution_row(&id).await?;
        if !matches!(row.phase.as_str(), "QUEUED" | "RUNNING") {
            return Err(ApiError::FailedPrecondition(format!(
                "execution {id} already finished ({})",
                row.phase
            )));
        }
        let reason = if request.reason.is_empty() {
            "terminated by user".to_string()
        } else {
            request.reason
        };
        let event = ExecutionEvent::TerminateRequested {
            execution: id.clone(),
            reason,
            requested_at: now_millis(),
        };
        self.append_request(&id, event).await?;
        Ok(wire::TerminateExecutionResponse {})
    }
}
