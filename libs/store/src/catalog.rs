//! The catalog's repository: memoized results, reservations, evictions and artifact lineage (migration
//! 0003). The catalog service answers lookups from here and its projector fills it from the log; the
//! rules that make a replay give the same rows (precedence of results, evictions by time, the admission
//! rule for execution events) live here so both paths share them.
//!
//! Over 600 lines: the catalog's repository, which issue 16 section 3 moves into services/catalog with its
//! migrations (not done yet).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use aloft_core::cache::CacheOutcome;
use aloft_core::compiler::{CompiledNode, CompiledWorkflow, NodeBinding};
use aloft_core::events::{ExecutionEvent, Outputs, RegistryEvent};
use aloft_core::state::AppliedEvent;
use aloft_core::{ExecutionId, Value};
use sqlx::{AnyConnection, AnyPool, Row};

use crate::admission::{Admission, LoggedEvent};
use crate::{from_json, to_json, Error, Result};

/// The pseudo node whose outputs are an execution's inputs, in artifact ids.
pub const INPUTS_NODE: &str = "@inputs";

pub fn artifact_id(execution: &ExecutionId, node: &str, output: &str) -> String {
    format!("{execution}/{node}/{output}")
}

/// One stored result.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheEntry {
    pub key: String,
    pub project: String,
    pub domain: String,
    pub task_name: String,
    pub cache_version: String,
    pub outputs: Outputs,
    pub execution: ExecutionId,
    pub node: String,
    pub attempt: u32,
    pub task_version: String,
    pub created_at: i64,
}

/// The answer to a lookup.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Hit(Box<CacheEntry>),
    /// No result; the reservation is the caller's (until `expires_at`).
    Reserved {
        owner: String,
        expires_at: i64,
    },
    /// No result; another owner holds the reservation.
    Held {
        owner: String,
        expires_at: i64,
    },
    Miss,
}

const ENTRY_COLUMNS: &str =
    "cache_key, project, domain, task_name, cache_version, outputs_json, execution, node, \
                             attempt, task_version, created_at";

fn entry_from_row(row: &sqlx::any::AnyRow) -> Result<CacheEntry> {
    let project: String = row.try_get(1)?;
    let domain: String = row.try_get(2)?;
    Ok(CacheEntry {
        key: row.try_get(0)?,
        task_name: row.try_get(3)?,
        cache_version: row.try_get(4)?,
        outputs: from_json("cache_entries", &row.try_get::<String, _>(5)?)?,
        execution: ExecutionId {
            project: project.clone(),
            domain: domain.clone(),
            name: row.try_get(6)?,
        },
        project,
        domain,
        node: row.try_get(7)?,
        attempt: row.try_get::<i64, _>(8)? as u32,
        task_version: row.try_get(9)?,
        created_at: row.try_get(10)?,
    })
}

pub async fn get_entry(pool: &AnyPool, key: &str) -> Result<Option<CacheEntry>> {
    let row = sqlx::query(&format!(
        "SELECT {ENTRY_COLUMNS} FROM cache_entries WHERE cache_key = $1"
    ))
    .bind(key)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(entry_from_row).transpose()
}

/// Looks `key` up; on a miss with `reserve = Some((owner, ttl))`, takes the reservation if it is free,
/// expired or already the owner's (a heartbeat extends it), else reports who holds it. With `reserve`, the
/// answer is never `Miss`: a caller that is told to run holds the reservation.
pub async fn get_or_reserve(
    pool: &AnyPool,
    key: &str,
    reserve: Option<(&str, i64)>,
    now: i64,
) -> Result<Lookup> {
    let Some((owner, ttl_millis)) = reserve else {
        return Ok(match get_entry(pool, key).await? {
            Some(entry) => Lookup::Hit(Box::new(entry)),
            None => Lookup::Miss,
        });
    };
    // A holder can store its result and release between our statements; then the next round sees the
    // result (or a free reservation). Bounded, since each round follows another owner's progress.
    for _ in 0..8 {
        if let Some(entry) = get_entry(pool, key).await? {
            return Ok(Lookup::Hit(Box::new(entry)));
        }
        // One statement, so two racing owners cannot both win: the conditional upsert takes the row lock.
        sqlx::query(
            "INSERT INTO cache_reservations (cache_key, owner, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (cache_key) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at \
             WHERE cache_reservations.owner = excluded.owner OR cache_reservations.expires_at < $4",
        )
        .bind(key)
        .bind(owner)
        .bind(now + ttl_millis)
        .bind(now)
        .execute(pool)
        .await?;
        let row = sqlx::query("SELECT owner, expires_at FROM cache_reservations WHERE cache_key = $1")
            .bind(key)
            .fetch_optional(pool)
            .await?;
        let Some(row) = row else {
            continue;
        };
        let holder: String = row.try_get(0)?;
        let expires_at: i64 = row.try_get(1)?;
        if holder != owner {
            // The holder may have stored its result between our lookup and the upsert.
            if let Some(entry) = get_entry(pool, key).await? {
                return Ok(Lookup::Hit(Box::new(entry)));
            }
            return Ok(Lookup::Held {
                owner: holder,
                expires_at,
            });
        }
        // The previous holder may have stored its result and released between our lookup and the upsert,
        // leaving the row free for us: running again would compute the result twice.
        if let Some(entry) = get_entry(pool, key).await? {
            release_reservation(pool, key, owner).await?;
            return Ok(Lookup::Hit(Box::new(entry)));
        }
        return Ok(Lookup::Reserved {
            owner: holder,
            expires_at,
        });
    }
    // Still racing after several rounds: report it as held, so the caller waits and asks again.
    Ok(Lookup::Held {
        owner: String::new(),
        expires_at: now,
    })
}

pub async fn release_reservation(pool: &AnyPool, key: &str, owner: &str) -> Result<bool> {
    let deleted = sqlx::query("DELETE FROM cache_reservations WHERE cache_key = $1 AND owner = $2")
        .bind(key)
        .bind(owner)
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected() > 0)
}

/// Stores a result unless an eviction covers it or a result of higher precedence is stored (see the
/// migration). Returns whether this result is now the stored one.
pub async fn put_entry(conn: &mut AnyConnection, entry: &CacheEntry, overwrite: bool) -> Result<bool> {
    let evicted = sqlx::query(
        "SELECT 1 FROM cache_evictions WHERE project = $1 AND domain = $2 AND task_name = $3 \
         AND (cache_version = '' OR cache_version = $4) AND (cache_key = '' OR cache_key = $5) AND evicted_at >= $6",
    )
    .bind(&entry.project)
    .bind(&entry.domain)
    .bind(&entry.task_name)
    .bind(&entry.cache_version)
    .bind(&entry.key)
    .bind(entry.created_at)
    .fetch_optional(&mut *conn)
    .await?;
    if evicted.is_some() {
        return Ok(false);
    }
    let precedence = if overwrite {
        entry.created_at
    } else {
        -entry.created_at
    };
    let written = sqlx::query(&format!(
        "INSERT INTO cache_entries ({ENTRY_COLUMNS}, precedence) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (cache_key) DO UPDATE SET outputs_json = excluded.outputs_json, execution = excluded.execution, \
         node = excluded.node, attempt = excluded.attempt, task_version = excluded.task_version, \
         created_at = excluded.created_at, precedence = excluded.precedence \
         WHERE excluded.precedence > cache_entries.precedence"
    ))
    .bind(&entry.key)
    .bind(&entry.project)
    .bind(&entry.domain)
    .bind(&entry.task_name)
    .bind(&entry.cache_version)
    .bind(to_json(&entry.outputs))
    .bind(&entry.execution.name)
    .bind(&entry.node)
    .bind(entry.attempt as i64)
    .bind(&entry.task_version)
    .bind(entry.created_at)
    .bind(precedence)
    .execute(&mut *conn)
    .await?;
    Ok(written.rows_affected() > 0)
}

/// What an eviction removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub project: String,
    pub domain: String,
    pub task_name: String,
    /// Empty: every cache version.
    pub cache_version: String,
    /// Empty: every key.
    pub key: String,
    pub at: i64,
}

/// How many stored results `eviction` covers now.
pub async fn count_evictable(pool: &AnyPool, eviction: &Eviction) -> Result<u64> {
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM cache_entries WHERE project = $1 AND domain = $2 AND task_name = $3 \
         AND ($4 = '' OR cache_version = $4) AND ($5 = '' OR cache_key = $5) AND created_at <= $6",
    )
    .bind(&eviction.project)
    .bind(&eviction.domain)
    .bind(&eviction.task_name)
    .bind(&eviction.cache_version)
    .bind(&eviction.key)
    .bind(eviction.at)
    .fetch_one(pool)
    .await?;
    Ok(count.max(0) as u64)
}

/// Records an eviction and removes the results it covers; returns how many were removed.
pub async fn evict(conn: &mut AnyConnection, eviction: &Eviction) -> Result<u64> {
    sqlx::query(
        "INSERT INTO cache_evictions (project, domain, task_name, cache_version, cache_key, evicted_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&eviction.project)
    .bind(&eviction.domain)
    .bind(&eviction.task_name)
    .bind(&eviction.cache_version)
    .bind(&eviction.key)
    .bind(eviction.at)
    .execute(&mut *conn)
    .await?;
    let deleted = sqlx::query(
        "DELETE FROM cache_entries WHERE project = $1 AND domain = $2 AND task_name = $3 \
         AND ($4 = '' OR cache_version = $4) AND ($5 = '' OR cache_key = $5) AND created_at <= $6",
    )
    .bind(&eviction.project)
    .bind(&eviction.domain)
    .bind(&eviction.task_name)
    .bind(&eviction.cache_version)
    .bind(&eviction.key)
    .bind(eviction.at)
    .execute(&mut *conn)
    .await?;
    Ok(deleted.rows_affected())
}

pub async fn list_entries(
    pool: &AnyPool,
    project: &str,
    domain: &str,
    task_name: &str,
    limit: u32,
) -> Result<Vec<CacheEntry>> {
    let rows = sqlx::query(&format!(
        "SELECT {ENTRY_COLUMNS} FROM cache_entries WHERE project = $1 AND domain = $2 AND ($3 = '' OR task_name = $3) \
         ORDER BY created_at DESC, cache_key LIMIT $4"
    ))
    .bind(project)
    .bind(domain)
    .bind(task_name)
    .bind(i64::from(limit.clamp(1, 10_000)))
    .fetch_all(pool)
    .await?;
    rows.iter().map(entry_from_row).collect()
}

// ---- the catalog's projection of the log ----

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
            NodeBinding::Constant(_) => continue,
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

// ---- lineage queries ----

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
