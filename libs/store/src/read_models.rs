//! Admin's read models of `aloft.executions` (executions, node executions, task attempts, history), applied
//! inside the projector's transaction.
//!
//! Over 600 lines: the SQL projection of execution events, which issue 16 section 3 replaces by writing the
//! transitions core's `apply` reports (not done yet).

use aloft_core::events::ExecutionEvent;
use aloft_core::state::{AppliedEvent, NodePhase};
use aloft_core::ExecutionId;
use sqlx::AnyConnection;

use crate::admission::{Admission, LoggedEvent};
use crate::{to_json, Result};

/// History rows inserted by one statement at most: 13 parameters each stays far below the 32,766 SQLite and
/// 65,535 Postgres allow.
const HISTORY_ROWS_PER_INSERT: usize = 1000;

/// Admin's projection of `aloft.executions`. Each admitted event changes the rows it concerns at once; its
/// history row is kept until `flush`, which inserts the batch's rows together, as the projector does just
/// before committing.
pub struct ExecutionReadModels {
    admission: Admission,
    history: Vec<HistoryRow>,
}

impl Default for ExecutionReadModels {
    fn default() -> Self {
        ExecutionReadModels {
            admission: Admission::new("executions"),
            history: Vec::new(),
        }
    }
}

impl ExecutionReadModels {
    /// Applies one event if the admission rule accepts it; claims move `partition_epoch`. Returns the verdict.
    pub async fn apply(
        &mut self,
        conn: &mut AnyConnection,
        partition_epoch: &mut u64,
        logged: &LoggedEvent<'_>,
    ) -> Result<AppliedEvent> {
        apply_execution_event(
            conn,
            &mut self.admission,
            &mut self.history,
            partition_epoch,
            logged,
        )
        .await
    }

    /// Writes what the open transaction's events left for the end: admitted seqs and history rows.
    pub async fn flush(&mut self, conn: &mut AnyConnection) -> Result<()> {
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
    }

    /// After the open transaction rolled back.
    pub fn rolled_back(&mut self) {
        self.admission.rolled_back();
        self.history.clear();
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
    let mut sql = String::from(
        "INSERT INTO execution_events (log_partition, log_offset, log_index, project, domain, execution, stream, \
         seq, writer_epoch, occurred_at, kind, payload_json, principal_json) VALUES ",
    );
    for row in 0..rows.len() {
        if row > 0 {
            sql.push_str(", ");
        }
        let placeholders: Vec<String> = (1..=COLUMNS)
            .map(|column| format!("${}", row * COLUMNS + column))
            .collect();
        sql.push('(');
        sql.push_str(&placeholders.join(", "));
        sql.push(')');
    }
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

/// A node the state machine runs itself (a deciding branch, a waiting gate) is RUNNING; `wait_reason` says
/// what a gate waits for.
async fn set_node_running(
    conn: &mut AnyConnection,
    id: &ExecutionId,
    node: usize,
    wait_reason: &str,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE node_executions SET phase = 'RUNNING', wait_reason = $1, started_at = COALESCE(started_at, $2) \
         WHERE project = $3 AND domain = $4 AND execution = $5 AND node_index = $6 AND phase IN ('PENDING', 'QUEUED')",
    )
    .bind(wait_reason)
    .bind(at)
    .bind(&id.project)
    .bind(&id.domain)
    .bind(&id.name)
    .bind(node as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Applies one execution-topic event if the admission rule accepts it; `partition_epoch` is updated by
/// claims. Returns the verdict.
async fn apply_execution_event(
    conn: &mut AnyConnection,
    admission: &mut Admission,
    history: &mut Vec<HistoryRow>,
    partition_epoch: &mut u64,
    logged: &LoggedEvent<'_>,
) -> Result<AppliedEvent> {
    let event = logged.event;
    let id = match admission.admit(conn, partition_epoch, logged).await? {
        Ok(id) => id,
        Err(verdict) => return Ok(verdict),
    };
    let (p, d, n) = (id.project.as_str(), id.domain.as_str(), id.name.as_str());
    match event {
        ExecutionEvent::ExecutionRequested {
            request_id,
            workflow,
            inputs,
            launch_plan,
            requested_at,
            scheduled_at,
            recovery,
            parent,
            labels,
            ..
        } => {
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
            for (index, node) in workflow.nodes.iter().enumerate() {
                let recovered = recovery
                    .as_ref()
                    .and_then(|recovery| recovery.nodes.get(&node.id));
                let phase = if recovered.is_some() {
                    NodePhase::Recovered
                } else if node.upstream.is_empty() && node.case_of.is_none() {
                    NodePhase::Queued
                } else {
                    NodePhase::Pending
                };
                let upstream: Vec<&str> = node
                    .upstream
                    .iter()
                    .filter_map(|&up| workflow.nodes.get(up).map(|n| n.id.as_str()))
                    .collect();
                sqlx::query(
                    "INSERT INTO node_executions (project, domain, execution, node_index, node_id, task_name, \
                     task_version, phase, attempts, outputs_json, error, upstream_json) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, '', $10)",
                )
                .bind(p)
                .bind(d)
                .bind(n)
                .bind(index as i64)
                .bind(&node.id)
                .bind(&node.task_id.name)
                .bind(&node.task_id.version)
                .bind(phase.as_str())
                .bind(recovered.map(to_json).unwrap_or_default())
                .bind(to_json(&upstream))
                .execute(&mut *conn)
                .await?;
            }
        }
        ExecutionEvent::TerminateRequested { .. }
        | ExecutionEvent::SignalReceived { .. }
        | ExecutionEvent::ChildFinished { .. }
        | ExecutionEvent::PartitionClaimed { .. } => {}
        ExecutionEvent::ChildLaunched { node, child, at, .. } => {
            set_node_running(conn, id, *node, &format!("child execution {}", child.name), *at).await?;
            sqlx::query(
                "UPDATE node_executions SET child_execution = $1 \
                 WHERE project = $2 AND domain = $3 AND execution = $4 AND node_index = $5",
            )
            .bind(&child.name)
            .bind(p)
            .bind(d)
            .bind(n)
            .bind(*node as i64)
            .execute(&mut *conn)
            .await?;
        }
        ExecutionEvent::NodeSucceeded {
            node, outputs, at, ..
        } => {
            sqlx::query(
                "UPDATE node_executions SET phase = 'SUCCEEDED', outputs_json = $1, wait_reason = '', \
                 started_at = COALESCE(started_at, $2), finished_at = $2 \
                 WHERE project = $3 AND domain = $4 AND execution = $5 AND node_index = $6 \
                 AND phase IN ('PENDING', 'QUEUED', 'RUNNING')",
            )
            .bind(to_json(outputs))
            .bind(*at)
            .bind(p)
            .bind(d)
            .bind(n)
            .bind(*node as i64)
            .execute(&mut *conn)
            .await?;
        }
        ExecutionEvent::BranchTaken {
            node, skipped, at, ..
        } => {
            set_node_running(conn, id, *node, "", *at).await?;
            for &skipped_node in skipped {
                sqlx::query(
                    "UPDATE node_executions SET phase = 'SKIPPED', finished_at = $1 \
                     WHERE project = $2 AND domain = $3 AND execution = $4 AND node_index = $5 AND phase = 'PENDING'",
                )
                .bind(*at)
                .bind(p)
                .bind(d)
                .bind(n)
                .bind(skipped_node as i64)
                .execute(&mut *conn)
                .await?;
            }
        }
        ExecutionEvent::GateWaiting {
            node,
            waiting_for,
            at,
            ..
        } => {
            let reason = aloft_proto::convert::describe_wait(waiting_for, &id.name);
            set_node_running(conn, id, *node, &reason, *at).await?
        }
        ExecutionEvent::DynamicExpanded {
            node,
            first,
            added,
            at,
            ..
        } => {
            set_node_running(conn, id, *node, "", *at).await?;
            for (offset, added_node) in added.iter().enumerate() {
                let index = first + offset;
                sqlx::query(
                    "INSERT INTO node_executions (project, domain, execution, node_index, node_id, task_name, \
                     task_version, phase, attempts, outputs_json, error) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'PENDING', 0, '', '')",
                )
                .bind(p)
                .bind(d)
                .bind(n)
                .bind(index as i64)
                .bind(&added_node.id)
                .bind(&added_node.task.name)
                .bind(&added_node.task.version)
                .execute(&mut *conn)
                .await?;
            }
        }
        ExecutionEvent::MapExpanded {
            node,
            first,
            items,
            task,
            at,
            ..
        } => {
            set_node_running(conn, id, *node, "", *at).await?;
            let map_id: String = sqlx::query_scalar(
                "SELECT node_id FROM node_executions WHERE project = $1 AND domain = $2 AND execution = $3 \
                 AND node_index = $4",
            )
            .bind(p)
            .bind(d)
            .bind(n)
            .bind(*node as i64)
            .fetch_optional(&mut *conn)
            .await?
            .unwrap_or_default();
            // Many items: one multi-row insert per chunk rather than a round trip per item.
            for chunk_start in (0..*items).step_by(500) {
                let chunk_end = (chunk_start + 500).min(*items);
                let mut sql = String::from(
                    "INSERT INTO node_executions (project, domain, execution, node_index, node_id, task_name, \
                     task_version, phase, attempts, outputs_json, error) VALUES ",
                );
                for (position, _) in (chunk_start..chunk_end).enumerate() {
                    let base = position * 2 + 6;
                    if position > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!(
                        "($1, $2, $3, ${base}, ${}, $4, $5, 'QUEUED', 0, '', '')",
                        base + 1
                    ));
                }
                let mut query = sqlx::query(&sql)
                    .bind(p)
                    .bind(d)
                    .bind(n)
                    .bind(&task.name)
                    .bind(&task.version);
                for item in chunk_start..chunk_end {
                    query = query
                        .bind((first + item) as i64)
                        .bind(format!("{map_id}[{item}]"));
                }
                query.execute(&mut *conn).await?;
            }
        }
        ExecutionEvent::ExecutionStarted { at, .. } => {
            sqlx::query(
                "UPDATE executions SET phase = 'RUNNING', started_at = $1 \
                 WHERE project = $2 AND domain = $3 AND name = $4 AND phase = 'QUEUED'",
            )
            .bind(*at)
            .bind(p)
            .bind(d)
            .bind(n)
            .execute(&mut *conn)
            .await?;
        }
        ExecutionEvent::AttemptStarted {
            node,
            attempt,
            interruptible,
            at,
            ..
        } => {
            let updated = sqlx::query(
                "UPDATE node_executions SET phase = 'RUNNING', attempts = $1, started_at = COALESCE(started_at, $2) \
                 WHERE project = $3 AND domain = $4 AND execution = $5 AND node_index = $6 AND phase IN ('QUEUED', 'PENDING')",
            )
            .bind(*attempt as i64)
            .bind(*at)
            .bind(p)
            .bind(d)
            .bind(n)
            .bind(*node as i64)
            .execute(&mut *conn)
            .await?;
            if updated.rows_affected() > 0 {
                sqlx::query(
                    "INSERT INTO task_attempts (project, domain, execution, node_index, attempt, node_id, phase, \
                     error_kind, error, started_at, interruptible) \
                     SELECT $1, $2, $3, $4, $5, node_id, 'RUNNING', '', '', $6, $7 \
                     FROM node_executions WHERE project = $1 AND domain = $2 AND execution = $3 AND node_index = $4",
                )
                .bind(p)
                .bind(d)
                .bind(n)
                .bind(*node as i64)
                .bind(*attempt as i64)
                .bind(*at)
                .bind(i64::from(*interruptible))
                .execute(&mut *conn)
                .await?;
            }
        }
        ExecutionEvent::AttemptWaiting {
            node,
            attempt,
            reason,
            ..
        } => {
            sqlx::query(
                "UPDATE node_executions SET phase = 'WAITING_FOR_RESOURCES', wait_reason = $1 \
                 WHERE project = $2 AND domain = $3 AND execution = $4 AND node_index = $5 AND phase = 'RUNNING' \
                 AND attempts = $6",
            )
            .bind(reason)
            .bind(p)
            .bind(d)
            .bind(n)
            .bind(*node as i64)
            .bind(*attempt as i64)
            .execute(&mut *conn)
            .await?;
            set_attempt_phase(conn, id, *node, *attempt, "RUNNING", "WAITING_FOR_RESOURCES").await?;
        }
        ExecutionEvent::AttemptDispatched { node, attempt, .. } => {
            set_attempt_phase(conn, id, *node, *attempt, "WAITING_FOR_RESOURCES", "RUNNING").await?;
            sqlx::query(
                "UPDATE node_executions SET phase = 'RUNNING', wait_reason = '' \
                 WHERE project = $1 AND domain = $2 AND execution = $3 AND node_index = $4 \
                 AND phase = 'WAITING_FOR_RESOURCES' AND attempts = $5",
            )
            .bind(p)
            .bind(d)
            .bind(n)
            .bind(*node as i64)
            .bind(*attempt as i64)
            .execute(&mut *conn)
            .await?;
        }
        ExecutionEvent::AttemptSucceeded {
            node,
            attempt,
            outputs,
            at,
            cache,
            ..
        } => {
            let (cache_status, cache_source) = match cache {
                Some(outcome) => (
                    outcome.status.as_str(),
                    outcome
                        .source
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                ),
                None => (aloft_core::cache::CacheStatus::Disabled.as_str(), String::new()),
            };
            sqlx::query(
                "UPDATE task_attempts SET phase = 'SUCCEEDED', finished_at = $1, cache_status = $2, cache_source = $3 \
                 WHERE project = $4 AND domain = $5 AND execution = $6 AND node_index = $7 AND attempt = $8 \
                 AND phase IN ('RUNNING', 'WAITING_FOR_RESOURCES')",
            )
            .bind(*at)
            .bind(cache_status)
            .bind(cache_source)
            .bind(p)
            .bind(d)
            .bind(n)
            .bind(*node as i64)
            .bind(*attempt as i64)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE node_executions SET phase = 'SUCCEEDED', outputs_json = $1, finished_at = $2, wait_reason = '' \
                 WHERE project = $3 AND domain = $4 AND execution = $5 AND node_index = $6 \
                 AND phase IN ('RUNNING', 'WAITING_FOR_RESOURCES') \
                 AND attempts = $7",
            )
            .bind(to_json(outputs))
            .bind(*at)
            .bind(p)
            .bind(d)
            .bind(n)
            .bind(*node as i64)
            .bind(*attempt as i64)
            .execute(&mut *conn)
            .await?;
        }
        ExecutionEvent::NodeCacheHit {
            node,
            attempt,
            outputs,
            cache,
            at,
            ..
        } => {
            let updated = sqlx::query(
                "UPDATE node_executions SET phase = 'SUCCEEDED', attempts = $1, outputs_json = $2, \
                 started_at = COALESCE(started_at, $3), finished_at = $3 \
                 WHERE project = $4 AND domain = $5 AND execution = $6 AND node_index = $7 \
                 AND phase IN ('QUEUED', 'PENDING')",
            )
            .bind(*attempt as i64)
            .bind(to_json(outputs))
            .bind(*at)
            .bind(p)
            .bind(d)
            .bind(n)
            .bind(*node as i64)
            .execute(&mut *conn)
            .await?;
            if updated.rows_affected() > 0 {
                let source = cache.source.as_ref().map(ToString::to_string).unwrap_or_default();
                sqlx::query(
                    "INSERT INTO task_attempts (project, domain, execution, node_index, attempt, node_id, phase, \
                     error_kind, error, started_at, finished_at, cache_status, cache_source) \
                     SELECT $1, $2, $3, $4, $5, node_id, 'SUCCEEDED', '', '', $6, $6, $7, $8 \
                     FROM node_executions WHERE project = $1 AND domain = $2 AND execution = $3 AND node_index = $4",
                )
                .bind(p)
                .bind(d)
                .bind(n)
                .bind(*node as i64)
                .bind(*attempt as i64)
                .bind(*at)
                .bind(cache.status.as_str())
                .bind(source)
                .execute(&mut *conn)
                .await?;
            }
        }
        ExecutionEvent::AttemptFailed {
            node,
            attempt,
            kind,
            message,
            at,
            ..
        } => {
            fail_attempt(conn, id, *node, *attempt, kind.as_str(), message, *at).await?;
            sqlx::query(
                "UPDATE node_executions SET phase = 'QUEUED', error = $1, wait_reason = '' \
                 WHERE project = $2 AND domain = $3 AND execution = $4 AND node_index = $5 \
                 AND phase IN ('RUNNING', 'WAITING_FOR_RESOURCES') \
                 AND attempts = $6",
            )
            .bind(message)
            .bind(p)
            .bind(d)
            .bind(n)
            .bind(*node as i64)
            .bind(*attempt as i64)
            .execute(&mut *conn)
            .await?;
        }
        ExecutionEvent::NodeFailed {
            node,
            phase,
            message,
            at,
            ..
        } => {
            sqlx::query(
                "UPDATE node_executions SET phase = $1, error = $2, finished_at = $3 \
                 WHERE project = $4 AND domain = $5 AND execution = $6 AND node_index = $7",
            )
            .bind(phase.as_str())
            .bind(message)
            .bind(*at)
            .bind(p)
            .bind(d)
            .bind(n)
            .bind(*node as i64)
            .execute(&mut *conn)
            .await?;
        }
        ExecutionEvent::ExecutionFinished {
            phase,
            outputs,
            error,
            at,
            ..
        } => {
            sqlx::query(
                "UPDATE executions SET phase = $1, outputs_json = $2, error = $3, finished_at = $4 \
                 WHERE project = $5 AND domain = $6 AND name = $7",
            )
            .bind(phase.as_str())
            .bind(to_json(outputs))
            .bind(error.clone().unwrap_or_default())
            .bind(*at)
            .bind(p)
            .bind(d)
            .bind(n)
            .execute(&mut *conn)
            .await?;
            for (from, to) in [
                ("'RUNNING', 'WAITING_FOR_RESOURCES'", "ABORTED"),
                ("'PENDING', 'QUEUED'", "SKIPPED"),
            ] {
                sqlx::query(&format!(
                    "UPDATE node_executions SET phase = $1, finished_at = $2, wait_reason = '' \
                     WHERE project = $3 AND domain = $4 AND execution = $5 AND phase IN ({from})"
                ))
                .bind(to)
                .bind(*at)
                .bind(p)
                .bind(d)
                .bind(n)
                .execute(&mut *conn)
                .await?;
            }
            sqlx::query(
                "UPDATE task_attempts SET phase = 'ABORTED', finished_at = $1 \
                 WHERE project = $2 AND domain = $3 AND execution = $4 \
                 AND phase IN ('RUNNING', 'WAITING_FOR_RESOURCES')",
            )
            .bind(*at)
            .bind(p)
            .bind(d)
            .bind(n)
            .execute(&mut *conn)
            .await?;
        }
    }
    history.push(HistoryRow {
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

/// Moves an attempt's row from phase `from` to `to` (waiting for resources and back).
async fn set_attempt_phase(
    conn: &mut AnyConnection,
    id: &ExecutionId,
    node: usize,
    attempt: u32,
    from: &str,
    to: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE task_attempts SET phase = $1 \
         WHERE project = $2 AND domain = $3 AND execution = $4 AND node_index = $5 AND attempt = $6 AND phase = $7",
    )
    .bind(to)
    .bind(&id.project)
    .bind(&id.domain)
    .bind(&id.name)
    .bind(node as i64)
    .bind(attempt as i64)
    .bind(from)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a running attempt's failure.
async fn fail_attempt(
    conn: &mut AnyConnection,
    id: &ExecutionId,
    node: usize,
    attempt: u32,
    error_kind: &str,
    error: &str,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE task_attempts SET phase = 'FAILED', error_kind = $1, error = $2, finished_at = $3 \
         WHERE project = $4 AND domain = $5 AND execution = $6 AND node_index = $7 AND attempt = $8 \
         AND phase IN ('RUNNING', 'WAITING_FOR_RESOURCES')",
    )
    .bind(error_kind)
    .bind(error)
    .bind(at)
    .bind(&id.project)
    .bind(&id.domain)
    .bind(&id.name)
    .bind(node as i64)
    .bind(attempt as i64)
    .execute(conn)
    .await?;
    Ok(())
}
