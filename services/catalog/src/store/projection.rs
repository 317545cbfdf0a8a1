//! The catalog's projection of the log: evictions from `aloft.registry`; from `aloft.executions`, the
//! executions it follows (their workflows), the artifacts each attempt produced and read, and the results of
//! cached tasks that succeeded (stored even when the propeller could not put them).

use std::collections::HashMap;

use aloft_core::cache::CacheOutcome;
use aloft_core::compiler::{CompiledNode, CompiledWorkflow, NodeBinding};
use aloft_core::events::{ExecutionEvent, Outputs, RegistryEvent};
use aloft_core::state::AppliedEvent;
use aloft_core::{ExecutionId, Value};
use sqlx::{AnyConnection, Row};

use aloft_store::admission::{Admission, LoggedEvent};
use aloft_store::{from_json, to_json, Result};

use super::cache::{evict, put_entry, CacheEntry, Eviction};
use super::lineage::{artifact_id, INPUTS_NODE};

/// Evictions are the only registry events the catalog keeps.
pub async fn apply_registry_event(conn: &mut AnyConnection, event: &RegistryEvent) -> Result<()> {
    if let RegistryEvent::CacheEvicted {
        project,
        domain,
        task_name,
        cache_version,
        key,
        at,
    } = event
    {
        let eviction = Eviction {
            project: project.clone(),
            domain: domain.clone(),
            task_name: task_name.clone(),
            cache_version: cache_version.clone(),
            key: key.clone(),
            at: *at,
        };
        evict(conn, &eviction).await?;
    }
    Ok(())
}

/// The admission rule's last seq of an execution the catalog knows.
/// An execution's compiled workflow: from memory, else read (and kept) once per execution in flight.
async fn workflow_of(
    conn: &mut AnyConnection,
    workflows: &mut WorkflowCache,
    id: &ExecutionId,
) -> Result<Option<std::sync::Arc<CompiledWorkflow>>> {
    if let Some(workflow) = workflows.workflows.get(id) {
        return Ok(Some(std::sync::Arc::clone(workflow)));
    }
    let row = sqlx::query(
        "SELECT workflow_json FROM lineage_executions WHERE project = $1 AND domain = $2 AND name = $3",
    )
    .bind(&id.project)
    .bind(&id.domain)
    .bind(&id.name)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let workflow: CompiledWorkflow = from_json("lineage_executions", &row.try_get::<String, _>(0)?)?;
    let workflow = std::sync::Arc::new(workflow);
    workflows
        .workflows
        .insert(id.clone(), std::sync::Arc::clone(&workflow));
    Ok(Some(workflow))
}

/// Compiled workflows of executions in flight, so each succeeded attempt does not re-read and re-parse
/// its execution's workflow. Dropped when the execution finishes.
#[derive(Default)]
pub struct WorkflowCache {
    workflows: HashMap<ExecutionId, std::sync::Arc<CompiledWorkflow>>,
}

/// Applies one event of `aloft.executions` to the catalog, under the same admission rule as every other
/// reader (fenced and duplicate decisions change nothing); `admission` is for `lineage_executions`. Returns
/// the verdict.
pub async fn apply_execution_event(
    conn: &mut AnyConnection,
    admission: &mut Admission,
    workflows: &mut WorkflowCache,
    partition_epoch: &mut u64,
    logged: &LoggedEvent<'_>,
) -> Result<AppliedEvent> {
    let event = logged.event;
    let id = match admission.admit(conn, partition_epoch, logged).await? {
        Ok(id) => id,
        Err(verdict) => return Ok(verdict),
    };
    match event {
        ExecutionEvent::ExecutionRequested {
            workflow,
            inputs,
            requested_at,
            recovery,
            ..
        } => {
            sqlx::query(
                "INSERT INTO lineage_executions (project, domain, name, workflow_json, phase, requested_at, last_seq) \
                 VALUES ($1, $2, $3, $4, 'QUEUED', $5, 0) ON CONFLICT DO NOTHING",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .bind(to_json(workflow))
            .bind(*requested_at)
            .execute(&mut *conn)
            .await?;
            for (name, value) in inputs {
                let type_text = workflow
                    .interface
                    .inputs
                    .get(name)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let artifact = NewArtifact {
                    execution: id,
                    node: INPUTS_NODE,
                    output: name,
                    value_json: value.to_plain_json().to_string(),
                    type_text,
                    attempt: 0,
                    task: String::new(),
                    cached_from: String::new(),
                    created_at: *requested_at,
                };
                insert_artifact(conn, &artifact).await?;
            }
            // A RECOVERED node's outputs are the recovered execution's: linked to them as reused (attempt 0,
            // since nothing ran here), so lineage walks back to what really produced them.
            if let Some(recovery) = recovery {
                for (node_id, outputs) in &recovery.nodes {
                    let Some(node) = workflow.nodes.iter().find(|node| &node.id == node_id) else {
                        continue;
                    };
                    for (output, value) in outputs {
                        let from = artifact_id(&recovery.from, node_id, output);
                        let artifact = NewArtifact::output(id, node, output, value, 0, from, *requested_at);
                        insert_artifact(conn, &artifact).await?;
                    }
                }
            }
            workflows
                .workflows
                .insert(id.clone(), std::sync::Arc::new((**workflow).clone()));
        }
        ExecutionEvent::AttemptSucceeded { .. } | ExecutionEvent::NodeCacheHit { .. } => {
            let Some((node, attempt, outputs, cache, at)) = event.node_success() else {
                return Ok(AppliedEvent::Accepted);
            };
            let Some(workflow) = workflow_of(conn, workflows, id).await? else {
                return Ok(AppliedEvent::Accepted);
            };
            record_attempt(conn, id, &workflow, node, attempt, outputs, cache, at).await?;
        }
        ExecutionEvent::ExecutionFinished { phase, .. } => {
            sqlx::query(
                "UPDATE lineage_executions SET phase = $1 WHERE project = $2 AND domain = $3 AND name = $4",
            )
            .bind(phase.as_str())
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .execute(&mut *conn)
            .await?;
            workflows.workflows.remove(id);
        }
        ExecutionEvent::ExecutionStarted { .. } => {
            sqlx::query(
                "UPDATE lineage_executions SET phase = 'RUNNING' WHERE project = $1 AND domain = $2 AND name = $3 \
                 AND phase = 'QUEUED'",
            )
            .bind(&id.project)
            .bind(&id.domain)
            .bind(&id.name)
            .execute(&mut *conn)
            .await?;
        }
        _ => {}
    }
    Ok(AppliedEvent::Accepted)
}

struct NewArtifact<'a> {
    execution: &'a ExecutionId,
    node: &'a str,
    output: &'a str,
    value_json: String,
    type_text: String,
    attempt: u32,
    task: String,
    cached_from: String,
    created_at: i64,
}

impl<'a> NewArtifact<'a> {
    /// Output `output` of `node` in execution `id`, made by `attempt` (0: not run here) or reused from
    /// `cached_from` (empty: made here).
    fn output(
        id: &'a ExecutionId,
        node: &'a CompiledNode,
        output: &'a str,
        value: &Value,
        attempt: u32,
        cached_from: String,
        created_at: i64,
    ) -> NewArtifact<'a> {
        NewArtifact {
            execution: id,
            node: &node.id,
            output,
            value_json: value.to_plain_json().to_string(),
            type_text: node
                .task
                .interface
                .outputs
                .get(output)
                .map(ToString::to_string)
                .unwrap_or_default(),
            attempt,
            task: node.task_id.to_string(),
            cached_from,
            created_at,
        }
    }
}

async fn insert_artifact(conn: &mut AnyConnection, artifact: &NewArtifact<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO artifacts (artifact_id, project, domain, execution, node, output, value_json, type_text, \
         attempt, task, cached_from, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (artifact_id) DO NOTHING",
    )
    .bind(artifact_id(artifact.execution, artifact.node, artifact.output))
    .bind(&artifact.execution.project)
    .bind(&artifact.execution.domain)
    .bind(&artifact.execution.name)
    .bind(artifact.node)
    .bind(artifact.output)
    .bind(&artifact.value_json)
    .bind(&artifact.type_text)
    .bind(artifact.attempt as i64)
    .bind(&artifact.task)
    .bind(&artifact.cached_from)
    .bind(artifact.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// The outputs of a succeeded attempt become artifacts made from what the node consumed; a cached task's
/// result also becomes (or stays) the stored result for its key.
#[allow(clippy::too_many_arguments)]
async fn record_attempt(
    conn: &mut AnyConnection,
    id: &ExecutionId,
    workflow: &CompiledWorkflow,
    node_index: usize,
    attempt: u32,
    outputs: &Outputs,
    cache: Option<&CacheOutcome>,
    at: i64,
) -> Result<()> {
    let Some(node) = workflow.nodes.get(node_index) else {
        return Ok(());
    };
    for (input_name, binding) in &node.inputs {
        // A map item of an offloaded list consumes that list.
        let binding = match binding {
            NodeBinding::Item { list, .. } => list.as_ref(),
            direct => direct,
        };
        let consumed = match binding {
            NodeBinding::WorkflowInput(name) => artifact_id(id, INPUTS_NODE, name),
            NodeBinding::NodeOutput {
                node: upstream,
                output,
            } => match workflow.nodes.get(*upstream) {
                Some(upstream) => artifact_id(id, &upstream.id, output),
                None => continue,
            },
            // Constants are part of the workflow version, not artifacts.
            NodeBinding::Constant(_) | NodeBinding::Item { .. } => continue,
        };
        sqlx::query(
            "INSERT INTO artifact_consumers (project, domain, execution, node, input_name, artifact_id) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(&id.project)
        .bind(&id.domain)
        .bind(&id.name)
        .bind(&node.id)
        .bind(input_name)
        .bind(consumed)
        .execute(&mut *conn)
        .await?;
    }
    let hit_source = cache
        .filter(|outcome| outcome.status == aloft_core::cache::CacheStatus::Hit)
        .and_then(|outcome| outcome.source.as_ref());
    for (output, value) in outputs {
        let cached_from = hit_source
            .map(|source| artifact_id(&source.execution, &source.node, output))
            .unwrap_or_default();
        let artifact = NewArtifact::output(id, node, output, value, attempt, cached_from, at);
        insert_artifact(conn, &artifact).await?;
    }
    if let (Some(outcome), Some(config)) = (cache, node.task.cache.as_ref()) {
        if outcome.status.stores_result() {
            let entry = CacheEntry {
                key: outcome.key.clone(),
                project: id.project.clone(),
                domain: id.domain.clone(),
                task_name: node.task.name.clone(),
                cache_version: config.version.clone(),
                outputs: outputs.clone(),
                execution: id.clone(),
                node: node.id.clone(),
                attempt,
                task_version: node.task_id.version.clone(),
                created_at: at,
            };
            let overwrite = outcome.status == aloft_core::cache::CacheStatus::Skipped;
            put_entry(conn, &entry, overwrite).await?;
        }
    }
    Ok(())
}
