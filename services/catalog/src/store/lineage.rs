//! Artifact lineage: every output an execution produced (and every input it read) as an artifact with a
//! stable id, the edges between them, and the walk that answers "where did this come from, where did it go".

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use aloft_core::compiler::CompiledWorkflow;
use aloft_core::ExecutionId;
use sqlx::{AnyPool, Row};

use aloft_store::{from_json, Error, Result};

/// The pseudo node whose outputs are an execution's inputs, in artifact ids.
pub const INPUTS_NODE: &str = "@inputs";

pub fn artifact_id(execution: &ExecutionId, node: &str, output: &str) -> String {
    format!("{execution}/{node}/{output}")
}

#[derive(Debug, Clone, PartialEq)]
pub struct Artifact {
    pub id: String,
    pub execution: ExecutionId,
    pub node: String,
    pub output: String,
    pub value_json: String,
    pub type_text: String,
    pub attempt: u32,
    pub task: String,
    pub cached_from: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    pub from: String,
    pub to: String,
    /// `input NAME` or `cache`.
    pub relation: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lineage {
    pub selected: Vec<String>,
    pub artifacts: BTreeMap<String, Artifact>,
    pub edges: BTreeSet<Edge>,
    /// Why the answer may still grow (the execution is not finished), if it may.
    pub partial_reason: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    #[error("the catalog knows no execution {0} (unknown, or not caught up with the log yet)")]
    UnknownExecution(String),
    #[error("execution {execution} has no node {node:?}; its nodes are: {known}")]
    UnknownNode {
        execution: String,
        node: String,
        known: String,
    },
    #[error("node {node:?} of execution {execution} has no output {output:?}; its outputs are: {known}")]
    UnknownOutput {
        execution: String,
        node: String,
        output: String,
        known: String,
    },
    #[error(transparent)]
    Store(#[from] Error),
}

/// How an artifact that reuses another came about: a RECOVERED node's output never ran here (attempt 0); a
/// cache hit's belongs to the attempt that took it.
fn reuse_relation(artifact: &Artifact) -> &'static str {
    if artifact.attempt == 0 {
        "recovered"
    } else {
        "cache"
    }
}

const ARTIFACT_COLUMNS: &str =
    "artifact_id, project, domain, execution, node, output, value_json, type_text, attempt, task, cached_from, created_at";

fn artifact_from_row(row: &sqlx::any::AnyRow) -> Result<Artifact> {
    Ok(Artifact {
        id: row.try_get(0)?,
        execution: ExecutionId {
            project: row.try_get(1)?,
            domain: row.try_get(2)?,
            name: row.try_get(3)?,
        },
        node: row.try_get(4)?,
        output: row.try_get(5)?,
        value_json: row.try_get(6)?,
        type_text: row.try_get(7)?,
        attempt: row.try_get::<i64, _>(8)? as u32,
        task: row.try_get(9)?,
        cached_from: row.try_get(10)?,
        created_at: row.try_get(11)?,
    })
}

async fn artifact_by_id(pool: &AnyPool, id: &str) -> Result<Option<Artifact>> {
    let row = sqlx::query(&format!(
        "SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE artifact_id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(artifact_from_row).transpose()
}

async fn artifacts_of_node(pool: &AnyPool, execution: &ExecutionId, node: &str) -> Result<Vec<Artifact>> {
    let rows = sqlx::query(&format!(
        "SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE project = $1 AND domain = $2 AND execution = $3 AND node = $4 \
         ORDER BY output"
    ))
    .bind(&execution.project)
    .bind(&execution.domain)
    .bind(&execution.name)
    .bind(node)
    .fetch_all(pool)
    .await?;
    rows.iter().map(artifact_from_row).collect()
}

/// Upstream and downstream of an execution's artifacts (all of them, one node's, or one output), up to
/// `depth` steps each way (0 = unlimited).
pub async fn lineage(
    pool: &AnyPool,
    execution: &ExecutionId,
    node: Option<&str>,
    output: Option<&str>,
    depth: u32,
) -> Result<Lineage, LineageError> {
    let row = sqlx::query(
        "SELECT workflow_json, phase FROM lineage_executions WHERE project = $1 AND domain = $2 AND name = $3",
    )
    .bind(&execution.project)
    .bind(&execution.domain)
    .bind(&execution.name)
    .fetch_optional(pool)
    .await
    .map_err(Error::from)?;
    let Some(row) = row else {
        return Err(LineageError::UnknownExecution(execution.to_string()));
    };
    let workflow: CompiledWorkflow = from_json(
        "lineage_executions",
        &row.try_get::<String, _>(0).map_err(Error::from)?,
    )?;
    let phase: String = row.try_get(1).map_err(Error::from)?;
    let finished = !matches!(phase.as_str(), "QUEUED" | "RUNNING");
    let partial_reason =
        (!finished).then(|| format!("execution {execution} is {phase}; more artifacts may follow"));

    let node_ids: Vec<&str> = workflow.nodes.iter().map(|n| n.id.as_str()).collect();
    let selected_nodes: Vec<String> = match node {
        None => std::iter::once(INPUTS_NODE)
            .chain(node_ids.iter().copied())
            .map(str::to_string)
            .collect(),
        Some(node) if node == INPUTS_NODE || node_ids.contains(&node) => vec![node.to_string()],
        Some(node) => {
            return Err(LineageError::UnknownNode {
                execution: execution.to_string(),
                node: node.to_string(),
                known: node_ids.join(", "),
            })
        }
    };
    let mut selected = Vec::new();
    let mut lineage = Lineage {
        selected: Vec::new(),
        artifacts: BTreeMap::new(),
        edges: BTreeSet::new(),
        partial_reason,
    };
    for node_id in &selected_nodes {
        for artifact in artifacts_of_node(pool, execution, node_id).await? {
            if output.is_some_and(|wanted| wanted != artifact.output) {
                continue;
            }
            selected.push(artifact.id.clone());
            lineage.artifacts.insert(artifact.id.clone(), artifact);
        }
    }
    if let (Some(node), Some(output)) = (node, output) {
        if selected.is_empty() {
            let declared: Vec<String> = if node == INPUTS_NODE {
                workflow.interface.inputs.keys().cloned().collect()
            } else {
                workflow
                    .nodes
                    .iter()
                    .find(|n| n.id == node)
                    .map(|n| n.task.interface.outputs.keys().cloned().collect())
                    .unwrap_or_default()
            };
            if !declared.iter().any(|d| d == output) {
                return Err(LineageError::UnknownOutput {
                    execution: execution.to_string(),
                    node: node.to_string(),
                    output: output.to_string(),
                    known: declared.join(", "),
                });
            }
            // Declared but not produced yet: an empty, partial answer.
            if lineage.partial_reason.is_none() {
                lineage.partial_reason = Some(format!("{node}.{output} was never produced (phase {phase})"));
            }
        }
    }
    walk(pool, &mut lineage, &selected, depth, Direction::Upstream).await?;
    walk(pool, &mut lineage, &selected, depth, Direction::Downstream).await?;
    lineage.selected = selected;
    Ok(lineage)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Upstream,
    Downstream,
}

async fn walk(
    pool: &AnyPool,
    lineage: &mut Lineage,
    start: &[String],
    depth: u32,
    direction: Direction,
) -> Result<()> {
    let mut queue: VecDeque<(String, u32)> = start.iter().map(|id| (id.clone(), 0)).collect();
    let mut seen: BTreeSet<String> = start.iter().cloned().collect();
    while let Some((id, distance)) = queue.pop_front() {
        if depth != 0 && distance >= depth {
            continue;
        }
        let Some(artifact) = lineage.artifacts.get(&id).cloned() else {
            continue;
        };
        let mut next: Vec<(String, Edge)> = Vec::new();
        match direction {
            Direction::Upstream => {
                if !artifact.cached_from.is_empty() {
                    next.push((
                        artifact.cached_from.clone(),
                        Edge {
                            from: artifact.cached_from.clone(),
                            to: id.clone(),
                            relation: reuse_relation(&artifact).to_string(),
                        },
                    ));
                }
                let rows = sqlx::query(
                    "SELECT input_name, artifact_id FROM artifact_consumers WHERE project = $1 AND domain = $2 \
                     AND execution = $3 AND node = $4 ORDER BY input_name",
                )
                .bind(&artifact.execution.project)
                .bind(&artifact.execution.domain)
                .bind(&artifact.execution.name)
                .bind(&artifact.node)
                .fetch_all(pool)
                .await?;
                for row in rows {
                    let input: String = row.try_get(0)?;
                    let consumed: String = row.try_get(1)?;
                    next.push((
                        consumed.clone(),
                        Edge {
                            from: consumed,
                            to: id.clone(),
                            relation: format!("input {input}"),
                        },
                    ));
                }
            }
            Direction::Downstream => {
                let reused = sqlx::query(&format!(
                    "SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE cached_from = $1 ORDER BY artifact_id"
                ))
                .bind(&id)
                .fetch_all(pool)
                .await?;
                for row in reused {
                    let reuse = artifact_from_row(&row)?;
                    next.push((
                        reuse.id.clone(),
                        Edge {
                            from: id.clone(),
                            to: reuse.id.clone(),
                            relation: reuse_relation(&reuse).to_string(),
                        },
                    ));
                }
                let consumers = sqlx::query(
                    "SELECT project, domain, execution, node, input_name FROM artifact_consumers WHERE artifact_id = $1 \
                     ORDER BY execution, node, input_name",
                )
                .bind(&id)
                .fetch_all(pool)
                .await?;
                for row in consumers {
                    let consumer = ExecutionId {
                        project: row.try_get(0)?,
                        domain: row.try_get(1)?,
                        name: row.try_get(2)?,
                    };
                    let node: String = row.try_get(3)?;
                    let input: String = row.try_get(4)?;
                    for made in artifacts_of_node(pool, &consumer, &node).await? {
                        next.push((
                            made.id.clone(),
                            Edge {
                                from: id.clone(),
                                to: made.id.clone(),
                                relation: format!("input {input}"),
                            },
                        ));
                        lineage.artifacts.entry(made.id.clone()).or_insert(made);
                    }
                }
            }
        }
        for (neighbour, edge) in next {
            lineage.edges.insert(edge);
            if !lineage.artifacts.contains_key(&neighbour) {
                match artifact_by_id(pool, &neighbour).await? {
                    Some(found) => {
                        lineage.artifacts.insert(neighbour.clone(), found);
                    }
                    // An evicted or not yet projected artifact: the edge stays, the walk stops there.
                    None => continue,
                }
            }
            if seen.insert(neighbour.clone()) {
                queue.push_back((neighbour, distance + 1));
            }
        }
    }
    Ok(())
}
