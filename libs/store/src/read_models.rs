//! Admin's read models of `aloft.executions` (executions, node executions, task attempts, history), applied
//! inside the projector's transaction.
//!
//! There is one definition of what an event does to an execution: core's `apply`. The projection folds
//! each execution's state with it (kept in a bounded cache, rebuilt from the history rows on a miss) and
//! writes the rows of exactly the parts `apply` reports it changed (`execution_rows`), once per transaction.

use std::collections::HashMap;

use aloft_core::events::ExecutionEvent;
use aloft_core::state::{AppliedEvent, ExecutionState, Transitions};
use aloft_core::ExecutionId;
use sqlx::AnyConnection;

use crate::admission::{Admission, LoggedEvent};
use crate::execution_rows::{
    attempt_columns, execution_columns, node_columns, placeholders, write_attempts, write_execution,
    write_nodes,
};
use crate::state_cache::StateCache;
use crate::{to_json, Result};

/// History rows inserted by one statement at most: 13 parameters each stays far below the 32,766 SQLite and
/// 65,535 Postgres allow.
const HISTORY_ROWS_PER_INSERT: usize = 1000;

/// Admin's projection of `aloft.executions`. Each admitted event is folded into its execution's state at
/// once; the rows it changed and its history row are written by `flush`, together with the rest of the
/// batch, as the projector does just before committing.
pub struct ExecutionReadModels {
    admission: Admission,
    history: Vec<HistoryRow>,
    states: StateCache,
    /// What the open transaction's events changed, per execution (every execution they touched).
    changed: HashMap<ExecutionId, Transitions>,
}

impl Default for ExecutionReadModels {
    fn default() -> Self {
        ExecutionReadModels::with_cached_executions(crate::state_cache::DEFAULT_CAPACITY)
    }
}

impl ExecutionReadModels {
    /// A projection that keeps the states of at most `capacity` executions between transactions (running
    /// ones; a finished execution's rows never change again).
    pub fn with_cached_executions(capacity: usize) -> Self {
        ExecutionReadModels {
            admission: Admission::new("executions"),
            history: Vec::new(),
            states: StateCache::new(capacity),
            changed: HashMap::new(),
        }
    }

    /// Applies one event if the admission rule accepts it; claims move `partition_epoch`. Returns the verdict.
    pub async fn apply(
        &mut self,
        conn: &mut AnyConnection,
        partition_epoch: &mut u64,
        logged: &LoggedEvent<'_>,
    ) -> Result<AppliedEvent> {
        apply_execution_event(conn, self, partition_epoch, logged).await
    }

    /// Writes what the open transaction's events left for the end: the rows they changed, admitted seqs and
    /// history rows.
    pub async fn flush(&mut self, conn: &mut AnyConnection) -> Result<()> {
        for (id, transitions) in &self.changed {
            let Some(state) = self.states.get(id) else {
                continue;
            };
            if transitions.execution {
                write_execution(conn, id, &execution_columns(state)).await?;
            }
            let nodes = transitions.changed_nodes();
            if nodes.is_empty() {
                continue;
            }
            let node_rows: Vec<_> = nodes.iter().map(|&node| node_columns(state, node)).collect();
            write_nodes(conn, id, &node_rows).await?;
            let attempt_rows: Vec<_> = nodes
                .iter()
                .flat_map(|&node| attempt_columns(state, node))
                .collect();
            write_attempts(conn, id, &attempt_rows).await?;
        }
        self.admission.flush(conn).await?;
        for chunk in self.history.chunks(HISTORY_ROWS_PER_INSERT) {
            insert_history(conn, chunk).await?;
        }
        self.history.clear();
        Ok(())
    }

    /// After the open transaction committed.
    pub fn committed(&mut self) {
        self.admission.committed();
        let touched: Vec<ExecutionId> = self.changed.drain().map(|(id, _)| id).collect();
        self.states.committed(&touched);
    }

    /// After the open transaction rolled back: the states may have moved past what the tables hold, so they
    /// are read again from the history rows when next needed.
    pub fn rolled_back(&mut self) {
        self.admission.rolled_back();
        self.history.clear();
        self.changed.clear();
        self.states.clear();
    }
}

/// One `execution_events` row, waiting for the batch's insert.
struct HistoryRow {
    partition: u32,
    offset: u64,
    index: u32,
    execution: ExecutionId,
    stream: String,
    seq: u64,
    writer_epoch: u64,
    occurred_at: i64,
    kind: &'static str,
    payload_json: String,
    /// Who caused it, when an API caller did.
    principal_json: Option<String>,
}

async fn insert_history(conn: &mut AnyConnection, rows: &[HistoryRow]) -> Result<()> {
    const COLUMNS: usize = 13;
    let mut sql = format!(
        "INSERT INTO execution_events (log_partition, log_offset, log_index, project, domain, execution, stream, \
         seq, writer_epoch, occurred_at, kind, payload_json, principal_json) VALUES {}",
        placeholders(conn, rows.len(), COLUMNS)
    );
    sql.push_str(" ON CONFLICT (log_partition, log_offset, log_index) DO NOTHING");
    let mut query = sqlx::query(&sql);
    for row in rows {
        query = query
            .bind(row.partition as i64)
            .bind(row.offset as i64)
            .bind(i64::from(row.index))
            .bind(&row.execution.project)
            .bind(&row.execution.domain)
            .bind(&row.execution.name)
            .bind(&row.stream)
            .bind(row.seq as i64)
            .bind(row.writer_epoch as i64)
            .bind(row.occurred_at)
            .bind(row.kind)
            .bind(&row.payload_json)
            .bind(row.principal_json.as_deref());
    }
    query.execute(conn).await?;
    Ok(())
}

/// Applies one execution-topic event if the admission rule accepts it; `partition_epoch` is updated by
/// claims. Returns the verdict.
async fn apply_execution_event(
    conn: &mut AnyConnection,
    models: &mut ExecutionReadModels,
    partition_epoch: &mut u64,
    logged: &LoggedEvent<'_>,
) -> Result<AppliedEvent> {
    let event = logged.event;
    let id = match models.admission.admit(conn, partition_epoch, logged).await? {
        Ok(id) => id,
        Err(verdict) => return Ok(verdict),
    };
    if let ExecutionEvent::ExecutionRequested { .. } = event {
        insert_execution(conn, id, logged).await?;
        if let Some(state) = ExecutionState::from_request(event) {
            // The row says QUEUED already; the nodes are new.
            let added = Transitions {
                added: Some(0..state.nodes.len()),
                ..Transitions::default()
            };
            models.changed.insert(id.clone(), added);
            models.states.insert(id.clone(), state);
        }
    } else if let Some(state) = models.states.get_or_load(conn, id).await? {
        let transitions = state.apply(event);
        // Kept until the commit even when nothing shows: the state moved (a signal, a child's result).
        models.changed.entry(id.clone()).or_default().merge(transitions);
    }
    models.history.push(HistoryRow {
        partition: logged.partition,
        offset: logged.offset,
        index: logged.index,
        execution: id.clone(),
        stream: logged.stream.to_string(),
        seq: logged.seq,
        writer_epoch: logged.writer_epoch,
        occurred_at: logged.occurred_at,
        kind: event.kind(),
        payload_json: to_json(event),
        principal_json: logged.principal.map(to_json),
    });
    Ok(AppliedEvent::Accepted)
}

/// The execution's row, labels and what was fixed at its request; its nodes are written with the batch.
async fn insert_execution(
    conn: &mut AnyConnection,
    id: &ExecutionId,
    logged: &LoggedEvent<'_>,
) -> Result<()> {
    let ExecutionEvent::ExecutionRequested {
        request_id,
        workflow,
        inputs,
        launch_plan,
        requested_at,
        scheduled_at,
        parent,
        labels,
        ..
    } = logged.event
    else {
        return Ok(());
    };
    let (p, d, n) = (id.project.as_str(), id.domain.as_str(), id.name.as_str());
    let (lp_name, lp_version) = launch_plan
        .as_ref()
        .map(|lp| (lp.name.as_str(), lp.version.as_str()))
        .unwrap_or(("", ""));
    sqlx::query(
        "INSERT INTO executions (project, domain, name, request_id, workflow_name, workflow_version, \
         launch_plan_name, launch_plan_version, phase, inputs_json, outputs_json, error, created_at, \
         last_seq, log_partition, scheduled_at, parent_execution, parent_node, labels_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'QUEUED', $9, '{}', '', $10, 0, $11, $12, $13, $14, $15)",
    )
    .bind(p)
    .bind(d)
    .bind(n)
    .bind(request_id)
    .bind(&workflow.id.name)
    .bind(&workflow.id.version)
    .bind(lp_name)
    .bind(lp_version)
    .bind(to_json(inputs))
    .bind(*requested_at)
    .bind(logged.partition as i64)
    .bind(*scheduled_at)
    .bind(parent.as_ref().map_or("", |link| link.execution.name.as_str()))
    .bind(parent.as_ref().map_or("", |link| link.node_id.as_str()))
    .bind(to_json(labels))
    .execute(&mut *conn)
    .await?;
    for (key, value) in labels {
        sqlx::query(
            "INSERT INTO execution_labels (project, domain, execution, label_key, label_value) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(p)
        .bind(d)
        .bind(n)
        .bind(key)
        .bind(value)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
