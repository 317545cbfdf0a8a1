//! Reading executions: one execution with its nodes and attempts, listings, data and history, as the API
//! answers them (typed phases, error kinds and cache statuses next to their texts).

use super::*;

/// RPC handlers that read executions (the service trait in `mod.rs` calls them through `serve`).
impl AdminApi {
    pub(super) async fn get_execution_rpc(
        &self,
        request: wire::GetExecutionRequest,
    ) -> ApiResult<wire::Execution> {
        let id = execution_id_from_wire(request.id.as_ref())?;
        let row = self.execution_row(&id).await?;
        let mut execution = execution_to_wire(row)?;
        if request.without_nodes {
            return Ok(execution);
        }
        execution.nodes = self
            .store
            .node_executions(&id)
            .await?
            .into_iter()
            .map(|node| node_to_wire(&id, node))
            .collect::<ApiResult<_>>()?;
        execution.attempts = self
            .store
            .task_attempts(&id)
            .await?
            .into_iter()
            .map(|attempt| attempt_to_wire(&id, attempt))
            .collect::<ApiResult<_>>()?;
        // A node's cache status is its last attempt's.
        for node in &mut execution.nodes {
            if let Some(last) = execution
                .attempts
                .iter()
                .rev()
                .find(|a| a.node_id == node.node_id)
            {
                node.cache_status = last.cache_status.clone();
            }
        }
        Ok(execution)
    }

    pub(super) async fn get_execution_data_rpc(
        &self,
        request: wire::GetExecutionRequest,
    ) -> ApiResult<wire::ExecutionData> {
        let id = execution_id_from_wire(request.id.as_ref())?;
        let row = self.execution_row(&id).await?;
        let node_outputs = self
            .store
            .node_executions(&id)
            .await?
            .into_iter()
            .filter_map(|node| {
                node.outputs
                    .map(|outputs| (node.node_id, outputs_to_wire(&outputs)))
            })
            .collect();
        Ok(wire::ExecutionData {
            inputs: Some(outputs_to_wire(&row.inputs)),
            outputs: Some(outputs_to_wire(&row.outputs)),
            node_outputs,
        })
    }

    /// One node's inputs and outputs.
    pub(super) async fn get_node_data_rpc(
        &self,
        request: wire::GetNodeDataRequest,
    ) -> ApiResult<wire::NodeData> {
        let id = execution_id_from_wire(request.id.as_ref())?;
        if request.node_id.is_empty() {
            return Err(invalid("node_id is required: say which node of the execution"));
        }
        self.execution_row(&id).await?;
        let (inputs, outputs) = self.node_data(&id, &request.node_id).await?;
        Ok(wire::NodeData {
            node_id: request.node_id,
            inputs: inputs.as_ref().map(outputs_to_wire),
            outputs: outputs.as_ref().map(outputs_to_wire),
        })
    }

    /// The inputs (`None` until every upstream value it reads exists) and outputs (`None` until it
    /// succeeded) of node `node_id` of execution `id`, whose row the caller has found: from the history
    /// folded by the engine's own rules, as the read model keeps outputs only and a node's inputs are its
    /// bindings resolved against that state.
    pub(super) async fn node_data(
        &self,
        id: &ExecutionId,
        node_id: &str,
    ) -> ApiResult<(Option<Outputs>, Option<Outputs>)> {
        let history = self.store.execution_history(id).await?;
        let mut state = aloft_store::queries::fold_history(id, &history)?;
        let Some(index) = state.workflow.nodes.iter().position(|node| node.id == node_id) else {
            let known: Vec<&str> = state.workflow.nodes.iter().map(|n| n.id.as_str()).collect();
            return Err(ApiError::NotFound(format!(
                "execution {id} has no node {node_id:?}; its nodes are {}",
                known.join(", ")
            )));
        };
        // A map item of an offloaded list: its input is an element of the list, fetched as the engine does.
        if let (Err(aloft_core::state::ResolveError::Offloaded { .. }), Some(blobs)) =
            (state.node_inputs(index), &self.blobs)
        {
            let store = blobs.for_tenant(&id.project, &id.domain);
            for reference in state.fetches_needed_by(index) {
                if let (aloft_core::Value::Offloaded { uri, .. }, Ok(value)) =
                    (&reference, store.resolve(&reference).await)
                {
                    state.store_fetched(uri.clone(), value);
                }
            }
        }
        let inputs = state.node_inputs(index).ok();
        let outputs = state.nodes.get(index).and_then(|node| node.outputs.clone());
        Ok((inputs, outputs))
    }

    pub(super) async fn get_execution_history_rpc(
        &self,
        request: wire::GetExecutionRequest,
    ) -> ApiResult<wire::ExecutionHistory> {
        let id = execution_id_from_wire(request.id.as_ref())?;
        let rows = self.store.execution_history(&id).await?;
        if rows.is_empty() {
            return Err(ApiError::NotFound(format!("execution {id} not found")));
        }
        let node_ids = self.store.node_ids(&id).await?;
        let mut events: Vec<wire::HistoryEvent> = rows
            .into_iter()
            .enumerate()
            .map(|(place, row)| self.history_event(row, place as u64 + 1, &node_ids))
            .collect();
        // Delivery attempts happen after the execution ended: they follow its events.
        let deliveries = aloft_store::deliveries::delivery_events_of(self.store.pool(), &id).await?;
        events.extend(deliveries.into_iter().map(|row| wire::HistoryEvent {
            summary: row.summary,
            log_partition: 0,
            log_offset: 0,
            stream: format!("delivery/{}", row.delivery_id),
            seq: u64::from(row.attempt),
            writer_epoch: 0,
            occurred_at_millis: row.occurred_at,
            kind: row.kind,
            payload_json: row.payload_json,
            topic: self.topics.deliveries.clone(),
            index: 0,
            principal: None,
        }));
        Ok(wire::ExecutionHistory { events })
    }
}

impl AdminApi {
    /// One event of an execution's history as the API answers it; `index` is its place in the history.
    pub(super) fn history_event(
        &self,
        row: aloft_store::queries::EventRow,
        index: u64,
        node_ids: &[String],
    ) -> wire::HistoryEvent {
        wire::HistoryEvent {
            summary: summarize(&row.payload_json, node_ids),
            log_partition: row.log_partition,
            log_offset: row.log_offset,
            stream: row.stream,
            seq: row.seq,
            writer_epoch: row.writer_epoch,
            occurred_at_millis: row.occurred_at,
            kind: row.kind,
            payload_json: row.payload_json,
            topic: self.topics.executions.clone(),
            index,
            principal: principal_wire(
                row.principal_json
                    .as_deref()
                    .and_then(|text| serde_json::from_str(text).ok())
                    .as_ref(),
            ),
        }
    }
}

/// A node as the API answers it.
pub(super) fn node_to_wire(
    id: &ExecutionId,
    node: aloft_store::queries::NodeRow,
) -> ApiResult<wire::NodeExecution> {
    Ok(wire::NodeExecution {
        phase: node_phase_of(id, &node.node_id, &node.phase)? as i32,
        upstream: node.upstream,
        node_id: node.node_id,
        task: Some(wire::Identifier::from(&node.task)),
        attempts: node.attempts,
        outputs: node.outputs.as_ref().map(outputs_to_wire),
        error: node.error,
        started_at_millis: node.started_at.unwrap_or(0),
        finished_at_millis: node.finished_at.unwrap_or(0),
        cache_status: String::new(),
        wait_reason: node.wait_reason,
        child_execution: node.child_execution,
    })
}

/// The execution as the API answers it; a phase the read model stored that is none of the phases is an
/// internal error (the row is corrupt), never a silent UNSPECIFIED.
pub(super) fn execution_to_wire(row: aloft_store::queries::ExecutionRow) -> ApiResult<wire::Execution> {
    let phase: aloft_core::state::ExecutionPhase = row
        .phase
        .parse()
        .map_err(|e| ApiError::Internal(format!("execution {}: {e}", row.id)))?;
    Ok(wire::Execution {
        id: Some(wire::ExecutionIdentifier::from(&row.id)),
        phase: wire::ExecutionPhase::from(phase) as i32,
        workflow: Some(wire::Identifier::from(&row.workflow)),
        launch_plan: row.launch_plan.as_ref().map(wire::Identifier::from),
        inputs: Some(outputs_to_wire(&row.inputs)),
        outputs: Some(outputs_to_wire(&row.outputs)),
        error: row.error,
        created_at_millis: row.created_at,
        started_at_millis: row.started_at.unwrap_or(0),
        finished_at_millis: row.finished_at.unwrap_or(0),
        nodes: Vec::new(),
        attempts: Vec::new(),
        scheduled_at_millis: row.scheduled_at.unwrap_or(0),
        parent: row
            .parent
            .as_ref()
            .map(|(execution, _)| wire::ExecutionIdentifier::from(execution)),
        parent_node: row.parent.map(|(_, node)| node).unwrap_or_default(),
        labels: row.labels.into_iter().collect(),
        launched_by: principal_wire(row.launched_by.as_ref()),
    })
}

/// An attempt as the API answers it, with the typed forms of its stored texts (empty: UNSPECIFIED; a text
/// that is none of the values is an internal error naming the attempt, as a corrupt row).
pub(super) fn attempt_to_wire(
    execution: &ExecutionId,
    attempt: aloft_store::queries::AttemptRow,
) -> ApiResult<wire::TaskAttempt> {
    let corrupt = |what: &str, error: &dyn std::fmt::Display| {
        ApiError::Internal(format!(
            "execution {execution} node {} attempt {}: {what}: {error}",
            attempt.node_id, attempt.attempt
        ))
    };
    // The read model says WAITING_FOR_RESOURCES for a started attempt that waits for a slot (the state
    // machine's attempt is RUNNING with a reason).
    let phase = match attempt.phase.as_str() {
        "WAITING_FOR_RESOURCES" => wire::AttemptPhase::AttemptWaitingForResources,
        text => text
            .parse::<aloft_core::state::AttemptPhase>()
            .map_err(|e| corrupt("phase", &e))?
            .into(),
    };
    let kind = match attempt.error_kind.as_str() {
        "" => wire::ErrorKind::Unspecified,
        text => text
            .parse::<aloft_core::state::ErrorKind>()
            .map_err(|e| corrupt("error kind", &e))?
            .into(),
    };
    let cache = match attempt.cache_status.as_str() {
        "" => wire::CacheStatus::Unspecified,
        text => aloft_core::cache::CacheStatus::parse(text)
            .ok_or_else(|| corrupt("cache status", &format!("{text:?} is not a cache status")))?
            .into(),
    };
    Ok(wire::TaskAttempt {
        attempt_phase: phase as i32,
        kind: kind as i32,
        cache: cache as i32,
        node_id: attempt.node_id,
        attempt: attempt.attempt,
        phase: attempt.phase,
        error_kind: attempt.error_kind,
        error: attempt.error,
        started_at_millis: attempt.started_at,
        finished_at_millis: attempt.finished_at.unwrap_or(0),
        cache_status: attempt.cache_status,
        cache_source: attempt.cache_source,
        interruptible: attempt.interruptible,
    })
}

/// A node's stored phase on the wire; one that is none of the phases is an internal error (a corrupt row).
fn node_phase_of(execution: &ExecutionId, node: &str, phase: &str) -> ApiResult<wire::NodePhase> {
    let phase: aloft_core::state::NodePhase = phase
        .parse()
        .map_err(|e| ApiError::Internal(format!("execution {execution} node {node}: {e}")))?;
    Ok(phase.into())
}
