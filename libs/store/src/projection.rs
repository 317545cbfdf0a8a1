//! Applying log events to the read models, inside the projector's transaction. The admission rule
//! (fencing, dedupe by seq) is `aloft_core::state::admit`, the same one the propeller folds with.

use aloft_core::events::{ExecutionEvent, RegistryEvent};
use aloft_core::state::{admit, AppliedEvent, EventMeta, NodePhase};
use aloft_core::ExecutionId;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::{to_json, Result};

/// The table where a projection commits its offsets, in the transaction of the rows it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetsTable {
    /// Admin's read models.
    ReadModels,
    /// The catalog's tables.
    Catalog,
    /// The notifier's rules, executions and deliveries.
    Notifier,
}

impl OffsetsTable {
    /// The projection's name in metrics.
    pub fn projection(self) -> &'static str {
        match self {
            OffsetsTable::ReadModels => "read_models",
            OffsetsTable::Catalog => "catalog",
            OffsetsTable::Notifier => "notifier",
        }
    }

    fn name(self) -> &'static str {
        match self {
            OffsetsTable::ReadModels => "log_offsets",
            OffsetsTable::Catalog => "catalog_offsets",
            OffsetsTable::Notifier => "notifier_offsets",
        }
    }
}

/// `(topic, partition, next_offset, epoch)` for every partition the projection has seen.
pub async fn load_offsets(pool: &AnyPool, table: OffsetsTable) -> Result<Vec<(String, u32, u64, u64)>> {
    let rows = sqlx::query(&format!(
        "SELECT topic, log_partition, next_offset, epoch FROM {}",
        table.name()
    ))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok((
                row.try_get::<String, _>(0)?,
                row.try_get::<i64, _>(1)? as u32,
                row.try_get::<i64, _>(2)? as u64,
                row.try_get::<i64, _>(3)? as u64,
            ))
        })
        .collect()
}

pub async fn save_offset(
    conn: &mut AnyConnection,
    table: OffsetsTable,
    topic: &str,
    partition: u32,
    next_offset: u64,
    epoch: u64,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO {} (topic, log_partition, next_offset, epoch) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (topic, log_partition) DO UPDATE SET next_offset = excluded.next_offset, epoch = excluded.epoch",
        table.name()
    ))
    .bind(topic)
    .bind(partition as i64)
    .bind(next_offset as i64)
    .bind(epoch as i64)
    .execute(conn)
    .await?;
    Ok(())
}

/// Registrations are first-writer-wins per identifier, so replay in log order gives the same rows.
pub async fn apply_registry_event(
    conn: &mut AnyConnection,
    offset: u64,
    event: &RegistryEvent,
) -> Result<()> {
    let offset = offset as i64;
    match event {
        RegistryEvent::ProjectRegistered { project, at } => {
            sqlx::query(
                "INSERT INTO projects (name, description, domains_json, registered_at, registry_offset) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
            )
            .bind(&project.name)
            .bind(&project.description)
            .bind(to_json(&project.domains))
            .bind(*at)
            .bind(offset)
            .execute(conn)
            .await?;
        }
        RegistryEvent::TaskRegistered { id, spec, digest, at } => {
            sqlx::query(
                "INSERT INTO tasks (project, domain, name, version, digest, spec_json, registered_at, registry_offset) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (project, domain, name, version) DO NOTHING",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .bind(&id.version)
            .bind(digest)
            .bind(to_json(spec))
            .bind(*at)
            .bind(offset)
            .execute(conn)
            .await?;
        }
        RegistryEvent::WorkflowRegistered {
            id,
            spec,
            compiled,
            digest,
            at,
        } => {
            sqlx::query(
                "INSERT INTO workflows (project, domain, name, version, digest, spec_json, compiled_json, registered_at, \
                 registry_offset) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                 ON CONFLICT (project, domain, name, version) DO NOTHING",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .bind(&id.version)
            .bind(digest)
            .bind(to_json(spec))
            .bind(to_json(compiled))
            .bind(*at)
            .bind(offset)
            .execute(conn)
            .await?;
        }
        RegistryEvent::LaunchPlanActivated { id, .. } => {
            // One active version per name: activating one deactivates the others in the same transaction.
            sqlx::query(
                "UPDATE launch_plans SET active = 0 WHERE project = $1 AND domain = $2 AND name = $3",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE launch_plans SET active = 1 WHERE project = $1 AND domain = $2 AND name = $3 AND version = $4",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .bind(&id.version)
            .execute(conn)
            .await?;
        }
        RegistryEvent::LaunchPlanDeactivated { id, .. } => {
            sqlx::query(
                "UPDATE launch_plans SET active = 0 WHERE project = $1 AND domain = $2 AND name = $3 AND version = $4",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .bind(&id.version)
            .execute(conn)
            .await?;
        }
        RegistryEvent::LaunchPlanRegistered {
            id,
            spec,
            workflow,
            default_inputs,
            fixed_inputs,
            digest,
            at,
        } => {
            sqlx::query(
                "INSERT INTO launch_plans (project, domain, name, version, digest, spec_json, workflow_version, \
                 default_inputs_json, fixed_inputs_json, registered_at, registry_offset) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT (project, domain, name, version) DO NOTHING",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .bind(&id.version)
            .bind(digest)
            .bind(to_json(spec))
            .bind(format!("{}@{}", workflow.name, workflow.version))
            .bind(to_json(default_inputs))
            .bind(to_json(fixed_inputs))
            .bind(*at)
            .bind(offset)
            .execute(conn)
            .await?;
        }
        // The catalog's business: admin keeps no cache tables.
        // Evictions are the catalog's, notification defaults the notifier's, quotas the propellers'.
        RegistryEvent::PoolDefined { name, limit, at } => {
            sqlx::query(
                "INSERT INTO resource_pools (name, pool_limit, defined_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET pool_limit = excluded.pool_limit, defined_at = excluded.defined_at \
                 WHERE resource_pools.defined_at <= excluded.defined_at",
            )
            .bind(name)
            .bind(i64::from(*limit))
            .bind(*at)
            .execute(conn)
            .await?;
        }
        RegistryEvent::CacheEvicted { .. }
        | RegistryEvent::NotificationDefaultsSet { .. }
        | RegistryEvent::TenantQuotaSet { .. } => {}
    }
    Ok(())
}

/// The admission every projection of `aloft.executions` applies, against the last seq its own table keeps
/// per execution (`table` has `project, domain, name, last_seq`): fenced and duplicate decisions change
/// nothing, claims move `partition_epoch`. `Ok(id)`: apply the event to `id` (its seq is already stored);
/// `Err(verdict)`: nothing more to do.
pub(crate) async fn admit_logged<'e>(
    conn: &mut AnyConnection,
    table: &'static str,
    partition_epoch: &mut u64,
    logged: &LoggedEvent<'e>,
) -> Result<std::result::Result<&'e ExecutionId, AppliedEvent>> {
    let event = logged.event;
    // The common case in one statement: a decision of the current epoch that is its stream's next seq moves
    // `last_seq` on. Anything else (a duplicate, a gap, an unknown execution) falls through to the rule.
    if let Some(id) = event.execution().filter(|_| !event.is_request()) {
        if logged.writer_epoch == *partition_epoch {
            let advanced = sqlx::query(&format!(
                "UPDATE {table} SET last_seq = $1 WHERE project = $2 AND domain = $3 AND name = $4 AND last_seq = $5"
            ))
            .bind(logged.seq as i64)
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .bind(logged.seq as i64 - 1)
            .execute(&mut *conn)
            .await?;
            if advanced.rows_affected() == 1 {
                return Ok(Ok(id));
            }
        }
    }
    let last = match event.execution() {
        Some(id) => last_seq(conn, table, id).await?,
        None => None,
    };
    let meta = EventMeta {
        seq: logged.seq,
        writer_epoch: logged.writer_epoch,
    };
    let verdict = admit(*partition_epoch, last, &meta, event);
    if verdict != AppliedEvent::Accepted {
        return Ok(Err(verdict));
    }
    let Some(id) = event.execution() else {
        if let ExecutionEvent::PartitionClaimed { epoch, .. } = event {
            *partition_epoch = *epoch;
        }
        return Ok(Err(verdict));
    };
    if !event.is_request() {
        sqlx::query(&format!(
            "UPDATE {table} SET last_seq = $1 WHERE project = $2 AND domain = $3 AND name = $4"
        ))
        .bind(logged.seq as i64)
        .bind(&id.project)
        .bind(&id.domain)
        .bind(&id.name)
        .execute(&mut *conn)
        .await?;
    }
    Ok(Ok(id))
}

async fn last_seq(conn: &mut AnyConnection, table: &'static str, id: &ExecutionId) -> Result<Option<u64>> {
    let row = sqlx::query(&format!(
        "SELECT last_seq FROM {table} WHERE project = $1 AND domain = $2 AND name = $3"
    ))
    .bind(&id.project)
    .bind(&id.domain)
    .bind(&id.name)
    .fetch_optional(conn)
    .await?;
    row.map(|row| Ok(row.try_get::<i64, _>(0)? as u64)).transpose()
}

/// Where an event sits in the log, from its record and envelope.
pub struct LoggedEvent<'a> {
    pub partition: u32,
    pub offset: u64,
    /// Its place among the envelopes of its record (0 unless a propeller appended several together).
    pub index: u32,
    pub stream: &'a str,
    pub seq: u64,
    pub writer_epoch: u64,
    pub occurred_at: i64,
    /// The trace context the event was written in (empty when none).
    pub traceparent: &'a str,
    pub event: &'a ExecutionEvent,
}

impl<'a> LoggedEvent<'a> {
    /// The execution event `event` carried by `envelope`, the `index`-th of `record`.
    pub fn new(
        record: &aloft_eventlog::Record,
        index: u32,
        envelope: &'a aloft_eventlog::Envelope,
        event: &'a ExecutionEvent,
    ) -> Self {
        LoggedEvent {
            partition: record.partition,
            offset: record.offset,
            index,
            stream: &envelope.stream,
            seq: envelope.seq,
            writer_epoch: envelope.writer_epoch,
            occurred_at: envelope.occurred_at,
            traceparent: &envelope.traceparent,
            event,
        }
    }
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
pub async fn apply_execution_event(
    conn: &mut AnyConnection,
    partition_epoch: &mut u64,
    logged: &LoggedEvent<'_>,
) -> Result<AppliedEvent> {
    let event = logged.event;
    let id = match admit_logged(conn, "executions", partition_epoch, logged).await? {
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
            ..
        } => {
            let (lp_name, lp_version) = launch_plan
                .as_ref()
                .map(|lp| (lp.name.as_str(), lp.version.as_str()))
                .unwrap_or(("", ""));
            sqlx::query(
                "INSERT INTO executions (project, domain, name, request_id, workflow_name, workflow_version, \
                 launch_plan_name, launch_plan_version, phase, inputs_json, outputs_json, error, created_at, \
                 last_seq, log_partition, scheduled_at, parent_execution, parent_node) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'QUEUED', $9, '{}', '', $10, 0, $11, $12, $13, $14)",
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
            .execute(&mut *conn)
            .await?;
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
                sqlx::query(
                    "INSERT INTO node_executions (project, domain, execution, node_index, node_id, task_name, \
                     task_version, phase, attempts, outputs_json, error) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, '')",
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
        } => set_node_running(conn, id, *node, waiting_for, *at).await?,
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
            finish_attempt(conn, id, *node, *attempt, "SUCCEEDED", "", "", *at).await?;
            let (cache_status, cache_source) = match cache {
                Some(outcome) => (
                    outcome.status.as_str(),
                    outcome
                        .source
                        .as_ref()
                        .map(|source| format!("{}/{}/{}", source.execution, source.node, source.attempt))
                        .unwrap_or_default(),
                ),
                None => (aloft_core::cache::CacheStatus::Disabled.as_str(), String::new()),
            };
            sqlx::query(
                "UPDATE task_attempts SET cache_status = $1, cache_source = $2 WHERE project = $3 AND domain = $4 \
                 AND execution = $5 AND node_index = $6 AND attempt = $7",
            )
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
                let source = cache
                    .source
                    .as_ref()
                    .map(|source| format!("{}/{}/{}", source.execution, source.node, source.attempt))
                    .unwrap_or_default();
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
            finish_attempt(conn, id, *node, *attempt, "FAILED", kind.as_str(), message, *at).await?;
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
    sqlx::query(
        "INSERT INTO execution_events (log_partition, log_offset, log_index, project, domain, execution, stream, \
         seq, writer_epoch, occurred_at, kind, payload_json) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (log_partition, log_offset, log_index) DO NOTHING",
    )
    .bind(logged.partition as i64)
    .bind(logged.offset as i64)
    .bind(i64::from(logged.index))
    .bind(p)
    .bind(d)
    .bind(n)
    .bind(logged.stream)
    .bind(logged.seq as i64)
    .bind(logged.writer_epoch as i64)
    .bind(logged.occurred_at)
    .bind(event.kind())
    .bind(to_json(event))
    .execute(&mut *conn)
    .await?;
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

#[allow(clippy::too_many_arguments)]
async fn finish_attempt(
    conn: &mut AnyConnection,
    id: &ExecutionId,
    node: usize,
    attempt: u32,
    phase: &str,
    error_kind: &str,
    error: &str,
    at: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE task_attempts SET phase = $1, error_kind = $2, error = $3, finished_at = $4 \
         WHERE project = $5 AND domain = $6 AND execution = $7 AND node_index = $8 AND attempt = $9 \
         AND phase IN ('RUNNING', 'WAITING_FOR_RESOURCES')",
    )
    .bind(phase)
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
