//! Registrations: tasks, workflows (compiled against the registered tasks), launch plans (with their
//! schedules), batches of them that register together or not at all, and launch plan activation.

use super::*;

mod staged;

use staged::{Document, Staged};

impl AdminApi {
    pub(super) async fn set_launch_plan_active(
        &self,
        id: Option<wire::Identifier>,
        active: bool,
    ) -> ApiResult<wire::LaunchPlan> {
        let id = id.ok_or_else(|| invalid("id is required"))?;
        if id.version.is_empty() {
            return Err(invalid(
                "id.version is required: say which version to (de)activate",
            ));
        }
        let row = self
            .store
            .get_launch_plan(&id.project, &id.domain, &id.name, Some(&id.version))
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "launch plan {}@{} is not registered in {}/{}",
                    id.name, id.version, id.project, id.domain
                ))
            })?;
        if row.active != active {
            let at = now_millis();
            let event = if active {
                RegistryEvent::LaunchPlanActivated {
                    id: row.id.clone(),
                    at,
                }
            } else {
                RegistryEvent::LaunchPlanDeactivated {
                    id: row.id.clone(),
                    at,
                }
            };
            self.append_registry(event).await?;
        }
        let row = self
            .store
            .get_launch_plan(&id.project, &id.domain, &id.name, Some(&id.version))
            .await?
            .ok_or_else(|| ApiError::Internal("launch plan vanished".to_string()))?;
        Ok(launch_plan_to_wire(row))
    }
}

pub(super) fn task_to_wire(row: aloft_store::queries::TaskRow) -> wire::Task {
    wire::Task {
        id: Some(wire::Identifier::from(&row.id)),
        interface: Some(interface_to_wire(&row.spec.interface)),
        spec_json: serde_json::to_string(&row.spec).unwrap_or_default(),
        registered_at_millis: row.registered_at,
    }
}

pub(super) fn workflow_to_wire(row: aloft_store::queries::WorkflowRow) -> wire::Workflow {
    wire::Workflow {
        id: Some(wire::Identifier::from(&row.id)),
        interface: Some(interface_to_wire(&row.compiled.interface)),
        spec_json: serde_json::to_string(&row.spec).unwrap_or_default(),
        node_ids: row.compiled.nodes.iter().map(|n| n.id.clone()).collect(),
        registered_at_millis: row.registered_at,
    }
}

pub(super) fn launch_plan_to_wire(row: aloft_store::queries::LaunchPlanRow) -> wire::LaunchPlan {
    wire::LaunchPlan {
        id: Some(wire::Identifier::from(&row.id)),
        workflow: Some(wire::Identifier::from(&row.workflow)),
        default_inputs: Some(outputs_to_wire(&row.default_inputs)),
        fixed_inputs: Some(outputs_to_wire(&row.fixed_inputs)),
        spec_json: serde_json::to_string(&row.spec).unwrap_or_default(),
        registered_at_millis: row.registered_at,
        next_fire_at_millis: next_fire_at(&row),
        active: row.active,
    }
}

/// When an active launch plan's schedule fires next, in epoch milliseconds; 0 when it never will.
fn next_fire_at(row: &aloft_store::queries::LaunchPlanRow) -> i64 {
    let Some(schedule) = row.spec.schedule.as_ref().filter(|_| row.active) else {
        return 0;
    };
    schedule
        .compile()
        .ok()
        .and_then(|compiled| compiled.next_after(chrono::Utc::now()))
        .map_or(0, |time| time.timestamp_millis())
}

/// RPC handlers of projects and registrations (the service trait in `mod.rs` calls them through `serve`).
impl AdminApi {
    pub(super) async fn create_project_rpc(
        &self,
        request: wire::CreateProjectRequest,
    ) -> ApiResult<wire::CreateProjectResponse> {
        let project = request.project.ok_or_else(|| invalid("project is required"))?;
        let domains = if project.domains.is_empty() {
            aloft_core::spec::DEFAULT_DOMAINS
                .iter()
                .map(|d| d.to_string())
                .collect()
        } else {
            project.domains
        };
        let spec = ProjectSpec {
            name: project.name,
            description: project.description,
            domains,
        };
        spec.validate().map_err(|e| invalid(e.to_string()))?;
        let respond = |outcome: wire::WriteOutcome, spec: &ProjectSpec| wire::CreateProjectResponse {
            project: Some(wire::Project {
                name: spec.name.clone(),
                description: spec.description.clone(),
                domains: spec.domains.clone(),
            }),
            outcome: outcome as i32,
        };
        let check =
            |existing: Option<aloft_store::queries::ProjectRow>| -> ApiResult<Option<wire::WriteOutcome>> {
                match existing {
                    None => Ok(None),
                    Some(row) if row.spec == spec => Ok(Some(wire::WriteOutcome::AlreadyExistsIdentical)),
                    Some(_) => Err(ApiError::AlreadyExists(format!(
                        "project {:?} already exists with a different description or domains",
                        spec.name
                    ))),
                }
            };
        if let Some(outcome) = check(self.store.get_project(&spec.name).await?)? {
            return Ok(respond(outcome, &spec));
        }
        self.append_registry(RegistryEvent::ProjectRegistered {
            project: spec.clone(),
            at: now_millis(),
        })
        .await?;
        check(self.store.get_project(&spec.name).await?)?;
        Ok(respond(wire::WriteOutcome::Created, &spec))
    }

    pub(super) async fn list_projects_rpc(
        &self,
        _request: wire::ListProjectsRequest,
    ) -> ApiResult<wire::ListProjectsResponse> {
        let projects = self.visible_projects().await?;
        Ok(wire::ListProjectsResponse {
            projects: projects
                .into_iter()
                .map(|row| wire::Project {
                    name: row.spec.name,
                    description: row.spec.description,
                    domains: row.spec.domains,
                })
                .collect(),
        })
    }

    pub(super) async fn register_task_rpc(
        &self,
        request: wire::RegisterRequest,
    ) -> ApiResult<wire::RegisterResponse> {
        let document = Document::parse(wire::EntityKind::Task, &request.spec_json)?;
        self.register_one(&request.project, &request.domain, document)
            .await
    }

    pub(super) async fn get_task_rpc(&self, request: wire::GetEntityRequest) -> ApiResult<wire::Task> {
        let id = required_id(request)?;
        let row = self
            .store
            .get_task(&id.project, &id.domain, &id.name, requested_version(&id))
            .await?;
        row.map(task_to_wire).ok_or_else(|| not_found("task", &id))
    }

    pub(super) async fn list_tasks_rpc(
        &self,
        request: wire::ListEntitiesRequest,
    ) -> ApiResult<wire::ListTasksResponse> {
        // An unknown project or domain is named, not answered with an empty list.
        self.require_domain(&request.project, &request.domain).await?;
        let rows = self
            .store
            .list_tasks(&request.project, &request.domain, optional_name(&request))
            .await?;
        Ok(wire::ListTasksResponse {
            tasks: rows.into_iter().map(task_to_wire).collect(),
        })
    }

    pub(super) async fn register_workflow_rpc(
        &self,
        request: wire::RegisterRequest,
    ) -> ApiResult<wire::RegisterResponse> {
        let document = Document::parse(wire::EntityKind::Workflow, &request.spec_json)?;
        self.register_one(&request.project, &request.domain, document)
            .await
    }

    pub(super) async fn get_workflow_rpc(
        &self,
        request: wire::GetEntityRequest,
    ) -> ApiResult<wire::Workflow> {
        let id = required_id(request)?;
        let row = self
            .store
            .get_workflow(&id.project, &id.domain, &id.name, requested_version(&id))
            .await?;
        row.map(workflow_to_wire)
            .ok_or_else(|| not_found("workflow", &id))
    }

    pub(super) async fn list_workflows_rpc(
        &self,
        request: wire::ListEntitiesRequest,
    ) -> ApiResult<wire::ListWorkflowsResponse> {
        // An unknown project or domain is named, not answered with an empty list.
        self.require_domain(&request.project, &request.domain).await?;
        let rows = self
            .store
            .list_workflows(&request.project, &request.domain, optional_name(&request))
            .await?;
        Ok(wire::ListWorkflowsResponse {
            workflows: rows.into_iter().map(workflow_to_wire).collect(),
        })
    }

    pub(super) async fn register_launch_plan_rpc(
        &self,
        request: wire::RegisterRequest,
    ) -> ApiResult<wire::RegisterResponse> {
        let document = Document::parse(wire::EntityKind::LaunchPlan, &request.spec_json)?;
        self.register_one(&request.project, &request.domain, document)
            .await
    }

    /// Registers every document or none: all are checked, in order (a later one may name an earlier
    /// one), before the first is written. A refusal names the document by its place and its name.
    pub(super) async fn register_batch_rpc(
        &self,
        request: wire::RegisterBatchRequest,
    ) -> ApiResult<wire::RegisterBatchResponse> {
        if request.documents.is_empty() {
            return Err(invalid("documents is empty: nothing to register"));
        }
        self.require_domain(&request.project, &request.domain).await?;
        let count = request.documents.len();
        let mut staged = Staged::default();
        let mut results = Vec::with_capacity(count);
        for (place, document) in request.documents.into_iter().enumerate() {
            let kind = wire::EntityKind::try_from(document.kind).unwrap_or(wire::EntityKind::Unspecified);
            let refused = |error: ApiError| {
                error.map_message(|message| {
                    format!(
                        "document {} of {count}: {message}; nothing was registered",
                        place + 1
                    )
                })
            };
            let parsed = Document::parse(kind, &document.spec_json).map_err(refused)?;
            let answer = self
                .stage(&request.project, &request.domain, parsed, &mut staged)
                .await
                .map_err(refused)?;
            results.push(answer);
        }
        self.write_staged(staged).await?;
        Ok(wire::RegisterBatchResponse { results })
    }

    pub(super) async fn get_launch_plan_rpc(
        &self,
        request: wire::GetEntityRequest,
    ) -> ApiResult<wire::LaunchPlan> {
        let id = required_id(request)?;
        let row = self
            .store
            .get_launch_plan(&id.project, &id.domain, &id.name, requested_version(&id))
            .await?;
        row.map(launch_plan_to_wire)
            .ok_or_else(|| not_found("launch plan", &id))
    }

    pub(super) async fn list_launch_plans_rpc(
        &self,
        request: wire::ListEntitiesRequest,
    ) -> ApiResult<wire::ListLaunchPlansResponse> {
        // An unknown project or domain is named, not answered with an empty list.
        self.require_domain(&request.project, &request.domain).await?;
        let rows = self
            .store
            .list_launch_plans(&request.project, &request.domain, optional_name(&request))
            .await?;
        Ok(wire::ListLaunchPlansResponse {
            launch_plans: rows.into_iter().map(launch_plan_to_wire).collect(),
        })
    }
}
