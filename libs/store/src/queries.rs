//! Reads of the read models, for admin's API.

use aloft_core::compiler::CompiledWorkflow;
use aloft_core::events::ExecutionEvent;
use aloft_core::events::Outputs;
use aloft_core::spec::{LaunchPlanSpec, ProjectSpec, TaskSpec, WorkflowSpec};
use aloft_core::{ExecutionId, ExecutionState, Identifier, StreamId};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{from_json, Error, Result, Store};

#[derive(Debug, Clone, PartialEq)]
pub struct ProjectRow {
    pub spec: ProjectSpec,
    pub registered_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub id: Identifier,
    pub digest: String,
    pub spec: TaskSpec,
    pub registered_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRow {
    pub id: Identifier,
    pub digest: String,
    pub spec: WorkflowSpec,
    pub compiled: CompiledWorkflow,
    pub registered_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LaunchPlanRow {
    pub id: Identifier,
    pub active: bool,
    pub digest: String,
    pub spec: LaunchPlanSpec,
    pub workflow: Identifier,
    pub default_inputs: Outputs,
    pub fixed_inputs: Outputs,
    pub registered_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRow {
    pub id: ExecutionId,
    pub request_id: String,
    pub workflow: Identifier,
    pub launch_plan: Option<Identifier>,
    pub phase: String,
    pub inputs: Outputs,
    pub outputs: Outputs,
    pub error: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub last_seq: u64,
    pub scheduled_at: Option<i64>,
    /// For a child execution: the execution and launch-plan node that launched it.
    pub parent: Option<(ExecutionId, String)>,
    pub labels: std::collections::BTreeMap<String, String>,
    /// Who launched it, when an authenticated caller did (none with authentication off).
    pub launched_by: Option<aloft_core::principal::Principal>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeRow {
    pub node_index: u32,
    pub node_id: String,
    pub task: Identifier,
    pub phase: String,
    pub attempts: u32,
    pub outputs: Option<Outputs>,
    pub error: String,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Why its attempt waits, while the node is WAITING_FOR_RESOURCES.
    pub wait_reason: String,
    /// For a launch-plan node: the child execution it launched (in the same project and domain).
    pub child_execution: String,
    /// The ids of the nodes it waits for (from the compiled workflow; none for map items).
    pub upstream: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub node_id: String,
    pub attempt: u32,
    pub phase: String,
    pub error_kind: String,
    pub error: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// What the cache did (empty until the attempt succeeds).
    pub cache_status: String,
    /// For a cache hit: `<execution>/<node>/<attempt>` whose outputs were reused.
    pub cache_source: String,
    /// The platform may interrupt it (retried as a system error).
    pub interruptible: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub log_partition: u32,
    pub log_offset: u64,
    /// The event's place within its record (a record may carry several events of one execution).
    pub log_index: u32,
    pub stream: String,
    pub seq: u64,
    pub writer_epoch: u64,
    pub occurred_at: i64,
    pub kind: String,
    pub payload_json: String,
    /// Who caused it (an API caller), as `aloft_core::principal::Principal` JSON.
    pub principal_json: Option<String>,
}

fn identifier(row: &AnyRow, name_col: &str, version_col: &str) -> Result<Identifier> {
    Ok(Identifier {
        project: row.try_get("project")?,
        domain: row.try_get("domain")?,
        name: row.try_get(name_col)?,
        version: row.try_get(version_col)?,
    })
}

/// `version = None` selects the latest registered version.
fn version_clause(version: Option<&str>) -> &'static str {
    match version {
        Some(_) => "AND version = $4",
        None => "ORDER BY registry_offset DESC LIMIT 1",
    }
}

impl Store {
    /// The limit of a defined resource pool.
    pub async fn pool_limit(&self, name: &str) -> Result<Option<u32>> {
        let row = sqlx::query("SELECT pool_limit FROM resource_pools WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(row) => Some(row.try_get::<i64, _>(0)? as u32),
            None => None,
        })
    }

    pub async fn get_project(&self, name: &str) -> Result<Option<ProjectRow>> {
        let row = sqlx::query(
            "SELECT name, description, domains_json, registered_at FROM projects WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| project_row(&row)).transpose()
    }

    pub async fn list_projects(&self) -> Result<Vec<ProjectRow>> {
        let rows =
            sqlx::query("SELECT name, description, domains_json, registered_at FROM projects ORDER BY name")
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(project_row).collect()
    }

    pub async fn get_task(
        &self,
        project: &str,
        domain: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<TaskRow>> {
        let columns = "project, domain, name, version, digest, spec_json, registered_at";
        let row = self
            .fetch_version("tasks", columns, project, domain, name, version)
            .await?;
        row.map(|row| task_row(&row)).transpose()
    }

    pub async fn list_tasks(&self, project: &str, domain: &str, name: Option<&str>) -> Result<Vec<TaskRow>> {
        let rows = list_query(self, "tasks", "digest, spec_json", project, domain, name).await?;
        rows.iter().map(task_row).collect()
    }

    pub async fn get_workflow(
        &self,
        project: &str,
        domain: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<WorkflowRow>> {
        let columns = "project, domain, name, version, digest, spec_json, compiled_json, registered_at";
        let row = self
            .fetch_version("workflows", columns, project, domain, name, version)
            .await?;
        row.map(|row| workflow_row(&row)).transpose()
    }

    pub async fn list_workflows(
        &self,
        project: &str,
        domain: &str,
        name: Option<&str>,
    ) -> Result<Vec<WorkflowRow>> {
        let rows = list_query(
            self,
            "workflows",
            "digest, spec_json, compiled_json",
            project,
            domain,
            name,
        )
        .await?;
        rows.iter().map(workflow_row).collect()
    }

    pub async fn get_launch_plan(
        &self,
        project: &str,
        domain: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<LaunchPlanRow>> {
        let columns =
            "project, domain, name, version, digest, spec_json, workflow_version, default_inputs_json, \
                       fixed_inputs_json, registered_at, active";
        let row = self
            .fetch_version("launch_plans", columns, project, domain, name, version)
            .await?;
        row.map(|row| launch_plan_row(&row)).transpose()
    }

    /// One version of a registered entity; `version = None` selects the latest registered.
    async fn fetch_version(
        &self,
        table: &str,
        columns: &str,
        project: &str,
        domain: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Option<AnyRow>> {
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE project = $1 AND domain = $2 AND name = $3 {}",
            version_clause(version)
        );
        let mut query = sqlx::query(&sql).bind(project).bind(domain).bind(name);
        if let Some(version) = version {
            query = query.bind(version);
        }
        Ok(query.fetch_optional(self.pool()).await?)
    }

    pub async fn list_launch_plans(
        &self,
        project: &str,
        domain: &str,
        name: Option<&str>,
    ) -> Result<Vec<LaunchPlanRow>> {
        let rows = list_query(
            self,
            "launch_plans",
            "digest, spec_json, workflow_version, default_inputs_json, fixed_inputs_json, active",
            project,
            domain,
            name,
        )
        .await?;
        rows.iter().map(launch_plan_row).collect()
    }

    pub async fn get_execution(&self, id: &ExecutionId) -> Result<Option<ExecutionRow>> {
        let row = sqlx::query(&format!(
            "{EXECUTION_COLUMNS} WHERE project = $1 AND domain = $2 AND name = $3"
        ))
        .bind(&id.project)
        .bind(&id.domain)
        .bind(&id.name)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| execution_row(&row)).transpose()
    }

    pub async fn node_executions(&self, id: &ExecutionId) -> Result<Vec<NodeRow>> {
        let rows = sqlx::query(&format!(
            "{NODE_COLUMNS} WHERE project = $1 AND domain = $2 AND execution = $3 ORDER BY node_index"
        ))
        .bind(&id.project)
        .bind(&id.domain)
        .bind(&id.name)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(node_row).collect()
    }

    /// The ids of execution `id`'s nodes by node index (what history summaries name nodes by), without
    /// reading their outputs.
    pub async fn node_ids(&self, id: &ExecutionId) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT node_id FROM node_executions WHERE project = $1 AND domain = $2 AND execution = $3 \
             ORDER BY node_index",
        )
        .bind(&id.project)
        .bind(&id.domain)
        .bind(&id.name)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|row| Ok(row.try_get("node_id")?)).collect()
    }

    pub async fn task_attempts(&self, id: &ExecutionId) -> Result<Vec<AttemptRow>> {
        let rows = sqlx::query(
            "SELECT node_id, attempt, phase, error_kind, error, started_at, finished_at, cache_status, cache_source, \
             interruptible FROM task_attempts \
             WHERE project = $1 AND domain = $2 AND execution = $3 ORDER BY node_index, attempt",
        )
        .bind(&id.project)
        .bind(&id.domain)
        .bind(&id.name)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AttemptRow {
                    node_id: row.try_get("node_id")?,
                    attempt: row.try_get::<i64, _>("attempt")? as u32,
                    phase: row.try_get("phase")?,
                    error_kind: row.try_get("error_kind")?,
                    error: row.try_get("error")?,
                    started_at: row.try_get("started_at")?,
                    finished_at: row.try_get("finished_at")?,
                    cache_status: row.try_get("cache_status")?,
                    cache_source: row.try_get("cache_source")?,
                    interruptible: row.try_get::<i64, _>("interruptible")? != 0,
                })
            })
            .collect()
    }

    /// Every admitted event of one execution, in log order.
    pub async fn execution_history(&self, id: &ExecutionId) -> Result<Vec<EventRow>> {
        let rows = sqlx::query(&format!(
            "{EVENT_COLUMNS} WHERE project = $1 AND domain = $2 AND execution = $3 \
             ORDER BY log_partition, log_offset, log_index"
        ))
        .bind(&id.project)
        .bind(&id.domain)
        .bind(&id.name)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(event_row).collect()
    }

    /// The `ExecutionRequested` event of execution `id` (its first), without reading the rest of its history.
    pub async fn execution_request(&self, id: &ExecutionId) -> Result<Option<EventRow>> {
        let row = sqlx::query(&format!(
            "{EVENT_COLUMNS} WHERE project = $1 AND domain = $2 AND execution = $3 AND kind = 'ExecutionRequested' \
             ORDER BY log_partition, log_offset, log_index LIMIT 1"
        ))
        .bind(&id.project)
        .bind(&id.domain)
        .bind(&id.name)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(event_row).transpose()
    }
}

/// Folds the history rows of execution `id` (in log order) into its state, as the propeller folded those
/// events: what `GetExecutionState` shows as of an event, and what admin's projection rebuilds on a miss.
pub fn fold_history(id: &ExecutionId, rows: &[EventRow]) -> Result<ExecutionState> {
    let mut state: Option<ExecutionState> = None;
    for row in rows {
        let event: ExecutionEvent = serde_json::from_str(&row.payload_json).map_err(|e| Error::Corrupt {
            table: "execution_events",
            reason: format!("event at offset {} of {id} is unreadable: {e}", row.log_offset),
        })?;
        match &mut state {
            None => state = ExecutionState::from_request(&event),
            Some(state) => {
                if !StreamId::is_request(&row.stream) {
                    state.last_seq = row.seq;
                }
                state.apply(&event);
            }
        }
    }
    state.ok_or_else(|| Error::Corrupt {
        table: "execution_events",
        reason: format!("the history of {id} does not start with its request"),
    })
}

pub(crate) const EVENT_COLUMNS: &str =
    "SELECT log_partition, log_offset, log_index, stream, seq, writer_epoch, occurred_at, kind, \
     payload_json, principal_json FROM execution_events";

pub(crate) fn event_row(row: &AnyRow) -> Result<EventRow> {
    Ok(EventRow {
        log_partition: row.try_get::<i64, _>("log_partition")? as u32,
        log_offset: row.try_get::<i64, _>("log_offset")? as u64,
        log_index: row.try_get::<i64, _>("log_index")? as u32,
        stream: row.try_get("stream")?,
        seq: row.try_get::<i64, _>("seq")? as u64,
        writer_epoch: row.try_get::<i64, _>("writer_epoch")? as u64,
        occurred_at: row.try_get("occurred_at")?,
        kind: row.try_get("kind")?,
        payload_json: row.try_get("payload_json")?,
        principal_json: row.try_get("principal_json")?,
    })
}

pub(crate) const NODE_COLUMNS: &str =
    "SELECT node_index, node_id, project, domain, task_name, task_version, phase, \
     attempts, outputs_json, error, started_at, finished_at, wait_reason, child_execution, upstream_json \
     FROM node_executions";

pub(crate) fn node_row(row: &AnyRow) -> Result<NodeRow> {
    let outputs_json: String = row.try_get("outputs_json")?;
    Ok(NodeRow {
        node_index: row.try_get::<i64, _>("node_index")? as u32,
        node_id: row.try_get("node_id")?,
        task: identifier(row, "task_name", "task_version")?,
        phase: row.try_get("phase")?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        outputs: if outputs_json.is_empty() {
            None
        } else {
            Some(from_json("node_executions", &outputs_json)?)
        },
        error: row.try_get("error")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        wait_reason: row.try_get("wait_reason")?,
        child_execution: row.try_get("child_execution")?,
        upstream: from_json("node_executions", &row.try_get::<String, _>("upstream_json")?)?,
    })
}

pub(crate) const EXECUTION_COLUMNS: &str =
    "SELECT project, domain, name, request_id, workflow_name, workflow_version, \
     launch_plan_name, launch_plan_version, phase, inputs_json, outputs_json, error, created_at, started_at, \
     finished_at, last_seq, scheduled_at, parent_execution, parent_node, labels_json, launched_by_json FROM executions";

async fn list_query(
    store: &Store,
    table: &str,
    columns: &str,
    project: &str,
    domain: &str,
    name: Option<&str>,
) -> Result<Vec<AnyRow>> {
    // Without a name: the latest version of every name. With one: every version of it, newest first.
    let sql = match name {
        Some(_) => format!(
            "SELECT project, domain, name, version, registered_at, {columns} FROM {table} \
             WHERE project = $1 AND domain = $2 AND name = $3 ORDER BY registry_offset DESC"
        ),
        None => format!(
            "SELECT t.project, t.domain, t.name, t.version, t.registered_at, {columns} FROM {table} t \
             WHERE t.project = $1 AND t.domain = $2 AND t.registry_offset = (SELECT MAX(registry_offset) FROM {table} u \
             WHERE u.project = t.project AND u.domain = t.domain AND u.name = t.name) ORDER BY t.name"
        ),
    };
    let mut query = sqlx::query(&sql).bind(project).bind(domain);
    if let Some(name) = name {
        query = query.bind(name);
    }
    Ok(query.fetch_all(store.pool()).await?)
}

fn project_row(row: &AnyRow) -> Result<ProjectRow> {
    let domains_json: String = row.try_get("domains_json")?;
    Ok(ProjectRow {
        spec: ProjectSpec {
            name: row.try_get("name")?,
            description: row.try_get("description")?,
            domains: from_json("projects", &domains_json)?,
        },
        registered_at: row.try_get("registered_at")?,
    })
}

fn task_row(row: &AnyRow) -> Result<TaskRow> {
    let spec_json: String = row.try_get("spec_json")?;
    Ok(TaskRow {
        id: identifier(row, "name", "version")?,
        digest: row.try_get("digest")?,
        spec: from_json("tasks", &spec_json)?,
        registered_at: row.try_get("registered_at")?,
    })
}

fn workflow_row(row: &AnyRow) -> Result<WorkflowRow> {
    let spec_json: String = row.try_get("spec_json")?;
    let compiled_json: String = row.try_get("compiled_json")?;
    Ok(WorkflowRow {
        id: identifier(row, "name", "version")?,
        digest: row.try_get("digest")?,
        spec: from_json("workflows", &spec_json)?,
        compiled: from_json("workflows", &compiled_json)?,
        registered_at: row.try_get("registered_at")?,
    })
}

fn launch_plan_row(row: &AnyRow) -> Result<LaunchPlanRow> {
    let spec: LaunchPlanSpec = from_json("launch_plans", &row.try_get::<String, _>("spec_json")?)?;
    let id = identifier(row, "name", "version")?;
    let workflow_ref: String = row.try_get("workflow_version")?;
    let (workflow_name, workflow_version) = workflow_ref
        .split_once('@')
        .unwrap_or((workflow_ref.as_str(), ""));
    Ok(LaunchPlanRow {
        workflow: Identifier {
            project: id.project.clone(),
            domain: id.domain.clone(),
            name: workflow_name.to_string(),
            version: workflow_version.to_string(),
        },
        id,
        digest: row.try_get("digest")?,
        spec,
        default_inputs: from_json("launch_plans", &row.try_get::<String, _>("default_inputs_json")?)?,
        fixed_inputs: from_json("launch_plans", &row.try_get::<String, _>("fixed_inputs_json")?)?,
        registered_at: row.try_get("registered_at")?,
        active: row.try_get::<i64, _>("active")? != 0,
    })
}

pub(crate) fn execution_row(row: &AnyRow) -> Result<ExecutionRow> {
    let launch_plan_name: String = row.try_get("launch_plan_name")?;
    let project: String = row.try_get("project")?;
    let domain: String = row.try_get("domain")?;
    let parent_execution: String = row.try_get("parent_execution")?;
    let parent = if parent_execution.is_empty() {
        None
    } else {
        let execution = ExecutionId {
            project: project.clone(),
            domain: domain.clone(),
            name: parent_execution,
        };
        Some((execution, row.try_get("parent_node")?))
    };
    Ok(ExecutionRow {
        id: ExecutionId {
            project: project.clone(),
            domain: domain.clone(),
            name: row.try_get("name")?,
        },
        request_id: row.try_get("request_id")?,
        workflow: identifier(row, "workflow_name", "workflow_version")?,
        launch_plan: if launch_plan_name.is_empty() {
            None
        } else {
            Some(Identifier {
                project,
                domain,
                name: launch_plan_name,
                version: row.try_get("launch_plan_version")?,
            })
        },
        phase: row.try_get("phase")?,
        inputs: from_json("executions", &row.try_get::<String, _>("inputs_json")?)?,
        outputs: from_json("executions", &row.try_get::<String, _>("outputs_json")?)?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        last_seq: row.try_get::<i64, _>("last_seq")? as u64,
        scheduled_at: row.try_get("scheduled_at")?,
        parent,
        labels: from_json("executions", &row.try_get::<String, _>("labels_json")?)?,
        launched_by: row
            .try_get::<Option<String>, _>("launched_by_json")?
            .map(|text| from_json("executions", &text))
            .transpose()?,
    })
}
