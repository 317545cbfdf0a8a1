//! The rows of one execution in admin's read models (`executions`, `node_executions`, `task_attempts`) as a
//! rendering of its core state: what changes while it runs (phases, attempts, outputs, errors, timings,
//! waits). The projector writes the rendering of the parts `apply` reports changed; `read` gives the same
//! shape back from the tables, so a test can hold the read model against the state it must equal.

use aloft_core::cache::CacheStatus;
use aloft_core::state::{AttemptPhase, AttemptState, ExecutionState, NodePhase, NodeState};
use aloft_core::ExecutionId;
use sqlx::{AnyConnection, Row};

use crate::{to_json, Result};

/// Rows written by one statement at most (16 parameters each: far below SQLite's 32,766 and Postgres' 65,535).
const ROWS_PER_STATEMENT: usize = 500;

/// The changing columns of an `executions` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionColumns {
    pub phase: String,
    pub outputs_json: String,
    pub error: String,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

/// A `node_executions` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeColumns {
    pub node_index: i64,
    pub node_id: String,
    pub task_name: String,
    pub task_version: String,
    pub phase: String,
    pub attempts: i64,
    pub outputs_json: String,
    pub error: String,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub wait_reason: String,
    pub child_execution: String,
    pub upstream_json: String,
}

/// A `task_attempts` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptColumns {
    pub node_index: i64,
    pub attempt: i64,
    pub node_id: String,
    pub phase: String,
    pub error_kind: String,
    pub error: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub interruptible: i64,
    pub cache_status: String,
    pub cache_source: String,
}

/// Every changing row of one execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionRows {
    pub execution: ExecutionColumns,
    pub nodes: Vec<NodeColumns>,
    pub attempts: Vec<AttemptColumns>,
}

pub fn execution_columns(state: &ExecutionState) -> ExecutionColumns {
    ExecutionColumns {
        phase: state.phase.as_str().to_string(),
        outputs_json: to_json(&state.outputs),
        error: state.error.clone().unwrap_or_default(),
        started_at: state.started_at,
        finished_at: state.finished_at,
    }
}

/// Node `index`'s row.
pub fn node_columns(state: &ExecutionState, index: usize) -> NodeColumns {
    let node = &state.nodes[index];
    let compiled = &state.workflow.nodes[index];
    let upstream: Vec<&str> = compiled
        .upstream
        .iter()
        .filter_map(|&up| state.workflow.nodes.get(up).map(|n| n.id.as_str()))
        .collect();
    NodeColumns {
        node_index: index as i64,
        node_id: compiled.id.clone(),
        task_name: compiled.task_id.name.clone(),
        task_version: compiled.task_id.version.clone(),
        phase: node.phase.as_str().to_string(),
        attempts: node.attempts.last().map_or(0, |last| i64::from(last.number)),
        outputs_json: node.outputs.as_ref().map(to_json).unwrap_or_default(),
        error: node_error(node),
        started_at: node.started_at,
        finished_at: node.finished_at,
        wait_reason: wait_reason(state, node),
        child_execution: node
            .child
            .as_ref()
            .map(|child| child.name.clone())
            .unwrap_or_default(),
        upstream_json: to_json(&upstream),
    }
}

/// The node's own failure, else its latest failed attempt's (what a retry is recovering from).
fn node_error(node: &NodeState) -> String {
    node.error
        .clone()
        .or_else(|| {
            node.attempts
                .iter()
                .rev()
                .find_map(|attempt| attempt.error.as_ref().map(|(_, message)| message.clone()))
        })
        .unwrap_or_default()
}

/// What a node that has not ended waits for, in words: resources, a gate's opening, a child execution.
fn wait_reason(state: &ExecutionState, node: &NodeState) -> String {
    match node.phase {
        NodePhase::WaitingForResources => node
            .attempts
            .last()
            .and_then(|last| last.waiting_for.clone())
            .unwrap_or_default(),
        NodePhase::Running => match (&node.gate, &node.child) {
            (Some(gate), _) => aloft_proto::convert::describe_wait(gate, &state.id.name),
            (None, Some(child)) => format!("child execution {}", child.name),
            (None, None) => String::new(),
        },
        _ => String::new(),
    }
}

/// The rows of node `index`'s attempts.
pub fn attempt_columns(state: &ExecutionState, index: usize) -> impl Iterator<Item = AttemptColumns> + '_ {
    let node_id = &state.workflow.nodes[index].id;
    state.nodes[index]
        .attempts
        .iter()
        .map(move |attempt| attempt_row(index, node_id, attempt))
}

fn attempt_row(index: usize, node_id: &str, attempt: &AttemptState) -> AttemptColumns {
    let phase = match attempt.phase {
        AttemptPhase::Running if attempt.waiting_for.is_some() => NodePhase::WaitingForResources.as_str(),
        other => other.as_str(),
    };
    let (cache_status, cache_source) = match (&attempt.cache, attempt.phase) {
        (Some(outcome), _) => (
            outcome.status.as_str(),
            outcome
                .source
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
        ),
        (None, AttemptPhase::Succeeded) => (CacheStatus::Disabled.as_str(), String::new()),
        (None, _) => ("", String::new()),
    };
    let (error_kind, error) = match &attempt.error {
        Some((kind, message)) => (kind.as_str(), message.clone()),
        None => ("", String::new()),
    };
    AttemptColumns {
        node_index: index as i64,
        attempt: i64::from(attempt.number),
        node_id: node_id.to_string(),
        phase: phase.to_string(),
        error_kind: error_kind.to_string(),
        error,
        started_at: attempt.started_at,
        finished_at: attempt.finished_at,
        interruptible: i64::from(attempt.interruptible),
        cache_status: cache_status.to_string(),
        cache_source,
    }
}

/// Every changing row of the execution, as the read model must hold it.
pub fn render(state: &ExecutionState) -> ExecutionRows {
    ExecutionRows {
        execution: execution_columns(state),
        nodes: (0..state.nodes.len())
            .map(|index| node_columns(state, index))
            .collect(),
        attempts: (0..state.nodes.len())
            .flat_map(|index| attempt_columns(state, index))
            .collect(),
    }
}

/// Writes the execution's changing columns (its row exists: the request inserted it).
pub async fn write_execution(
    conn: &mut AnyConnection,
    id: &ExecutionId,
    row: &ExecutionColumns,
) -> Result<()> {
    sqlx::query(
        "UPDATE executions SET phase = $1, outputs_json = $2, error = $3, started_at = $4, finished_at = $5 \
         WHERE project = $6 AND domain = $7 AND name = $8",
    )
    .bind(&row.phase)
    .bind(&row.outputs_json)
    .bind(&row.error)
    .bind(row.started_at)
    .bind(row.finished_at)
    .bind(&id.project)
    .bind(&id.domain)
    .bind(&id.name)
    .execute(conn)
    .await?;
    Ok(())
}

/// `VALUES` placeholders for `rows` rows of `columns` parameters each, for the database behind `conn`. SQLite
/// gets anonymous `?` ones: binding a named `$N` makes it look the name up in a list of every name, so a
/// statement of thousands of `$N` parameters took time quadratic in their number (it doubled the wall time of
/// a 10,000-item map). Postgres numbers them (`$N`).
pub(crate) fn placeholders(conn: &AnyConnection, rows: usize, columns: usize) -> String {
    let anonymous = conn.backend_name() == "SQLite";
    (0..rows)
        .map(|row| {
            let row: Vec<String> = (1..=columns)
                .map(|c| {
                    if anonymous {
                        "?".to_string()
                    } else {
                        format!("${}", row * columns + c)
                    }
                })
                .collect();
            format!("({})", row.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Inserts or overwrites `rows` of one execution, many per statement: `insert` is the statement up to its
/// `VALUES`, `upsert` what follows them; `bind` binds one row's `columns` parameters after the execution's
/// project, domain and name.
async fn write_rows<'r, R>(
    conn: &mut AnyConnection,
    id: &'r ExecutionId,
    rows: &'r [R],
    (insert, columns, upsert): (&str, usize, &str),
    bind: impl for<'q> Fn(AnyQuery<'q>, &'q R) -> AnyQuery<'q>,
) -> Result<()> {
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "{insert} VALUES {} {upsert}",
            placeholders(conn, chunk.len(), columns)
        );
        let mut query = sqlx::query(&sql);
        for row in chunk {
            query = bind(query.bind(&id.project).bind(&id.domain).bind(&id.name), row);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Inserts or overwrites node rows.
pub async fn write_nodes(conn: &mut AnyConnection, id: &ExecutionId, rows: &[NodeColumns]) -> Result<()> {
    let statement = (
        "INSERT INTO node_executions (project, domain, execution, node_index, node_id, task_name, task_version, \
         phase, attempts, outputs_json, error, started_at, finished_at, wait_reason, child_execution, upstream_json)",
        16,
        "ON CONFLICT (project, domain, execution, node_index) DO UPDATE SET phase = excluded.phase, \
         attempts = excluded.attempts, outputs_json = excluded.outputs_json, error = excluded.error, \
         started_at = excluded.started_at, finished_at = excluded.finished_at, \
         wait_reason = excluded.wait_reason, child_execution = excluded.child_execution",
    );
    write_rows(conn, id, rows, statement, |query, row| {
        query
            .bind(row.node_index)
            .bind(&row.node_id)
            .bind(&row.task_name)
            .bind(&row.task_version)
            .bind(&row.phase)
            .bind(row.attempts)
            .bind(&row.outputs_json)
            .bind(&row.error)
            .bind(row.started_at)
            .bind(row.finished_at)
            .bind(&row.wait_reason)
            .bind(&row.child_execution)
            .bind(&row.upstream_json)
    })
    .await
}

/// Inserts or overwrites attempt rows.
pub async fn write_attempts(
    conn: &mut AnyConnection,
    id: &ExecutionId,
    rows: &[AttemptColumns],
) -> Result<()> {
    let statement = (
        "INSERT INTO task_attempts (project, domain, execution, node_index, attempt, node_id, phase, error_kind, \
         error, started_at, finished_at, interruptible, cache_status, cache_source)",
        14,
        "ON CONFLICT (project, domain, execution, node_index, attempt) DO UPDATE SET phase = excluded.phase, \
         error_kind = excluded.error_kind, error = excluded.error, finished_at = excluded.finished_at, \
         cache_status = excluded.cache_status, cache_source = excluded.cache_source",
    );
    write_rows(conn, id, rows, statement, |query, row| {
        query
            .bind(row.node_index)
            .bind(row.attempt)
            .bind(&row.node_id)
            .bind(&row.phase)
            .bind(&row.error_kind)
            .bind(&row.error)
            .bind(row.started_at)
            .bind(row.finished_at)
            .bind(row.interruptible)
            .bind(&row.cache_status)
            .bind(&row.cache_source)
    })
    .await
}

/// The execution's changing rows as the tables hold them, in the shape `render` gives.
pub async fn read(conn: &mut AnyConnection, id: &ExecutionId) -> Result<Option<ExecutionRows>> {
    let Some(execution) = sqlx::query(
        "SELECT phase, outputs_json, error, started_at, finished_at FROM executions \
         WHERE project = $1 AND domain = $2 AND name = $3",
    )
    .bind(&id.project)
    .bind(&id.domain)
    .bind(&id.name)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let execution = ExecutionColumns {
        phase: execution.try_get("phase")?,
        outputs_json: execution.try_get("outputs_json")?,
        error: execution.try_get("error")?,
        started_at: execution.try_get("started_at")?,
        finished_at: execution.try_get("finished_at")?,
    };
    let nodes = sqlx::query(
        "SELECT node_index, node_id, task_name, task_version, phase, attempts, outputs_json, error, started_at, \
         finished_at, wait_reason, child_execution, upstream_json FROM node_executions \
         WHERE project = $1 AND domain = $2 AND execution = $3 ORDER BY node_index",
    )
    .bind(&id.project)
    .bind(&id.domain)
    .bind(&id.name)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(NodeColumns {
            node_index: row.try_get("node_index")?,
            node_id: row.try_get("node_id")?,
            task_name: row.try_get("task_name")?,
            task_version: row.try_get("task_version")?,
            phase: row.try_get("phase")?,
            attempts: row.try_get("attempts")?,
            outputs_json: row.try_get("outputs_json")?,
            error: row.try_get("error")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            wait_reason: row.try_get("wait_reason")?,
            child_execution: row.try_get("child_execution")?,
            upstream_json: row.try_get("upstream_json")?,
        })
    })
    .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
    let attempts = sqlx::query(
        "SELECT node_index, attempt, node_id, phase, error_kind, error, started_at, finished_at, interruptible, \
         cache_status, cache_source FROM task_attempts \
         WHERE project = $1 AND domain = $2 AND execution = $3 ORDER BY node_index, attempt",
    )
    .bind(&id.project)
    .bind(&id.domain)
    .bind(&id.name)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(AttemptColumns {
            node_index: row.try_get("node_index")?,
            attempt: row.try_get("attempt")?,
            node_id: row.try_get("node_id")?,
            phase: row.try_get("phase")?,
            error_kind: row.try_get("error_kind")?,
            error: row.try_get("error")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            interruptible: row.try_get("interruptible")?,
            cache_status: row.try_get("cache_status")?,
            cache_source: row.try_get("cache_source")?,
        })
    })
    .collect::<std::result::Result<Vec<_>, sqlx::Error>>()?;
    Ok(Some(ExecutionRows {
        execution,
        nodes,
        attempts,
    }))
}
