//! Registrations: tasks, workflows (compiled against the registered tasks), launch plans (with their
//! schedules) and launch plan activation.

use super::*;

impl AdminApi {
    pub(super) async fn register_task(
        &self,
        project: &str,
        domain: &str,
        spec: TaskSpec,
    ) -> ApiResult<wire::RegisterResponse> {
        self.require_domain(project, domain).await?;
        spec.validate().map_err(invalid)?;
        self.check_task_pools(&spec).await?;
        let digest = content_digest(&TaskSpec {
            version: None,
            ..spec.clone()
        });
        let id = identifier_for(project, domain, &spec.name, spec.version.as_deref(), &digest);
        let existing = self
            .store
            .get_task(project, domain, &spec.name, Some(&id.version))
            .await?;
        if let Some(outcome) =
            Self::outcome("task", &id, existing.as_ref().map(|t| t.digest.as_str()), &digest)?
        {
            return Ok(wire::RegisterResponse {
                id: Some(wire::Identifier::from(&id)),
                outcome: outcome as i32,
            });
        }
        self.append_registry(RegistryEvent::TaskRegistered {
            id: id.clone(),
            spec,
            digest: digest.clone(),
            at: now_millis(),
        })
        .await?;
        let stored = self
            .store
            .get_task(project, domain, &id.name, Some(&id.version))
            .await?;
        Self::outcome("task", &id, stored.as_ref().map(|t| t.digest.as_str()), &digest)?;
        Ok(wire::RegisterResponse {
            id: Some(wire::Identifier::from(&id)),
            outcome: wire::WriteOutcome::Created as i32,
        })
    }

    async fn compile(
        &self,
        project: &str,
        domain: &str,
        id: Identifier,
        spec: &WorkflowSpec,
    ) -> ApiResult<CompiledWorkflow> {
        let (task_refs, workflow_refs, plan_refs) = spec.references();
        let mut tasks: HashMap<TaskRef, (Identifier, TaskSpec)> = HashMap::new();
        for task_ref in task_refs {
            if tasks.contains_key(&task_ref) {
                continue;
            }
            if let Some(row) = self
                .store
                .get_task(project, domain, &task_ref.name, task_ref.version.as_deref())
                .await?
            {
                tasks.insert(task_ref, (row.id, row.spec));
            }
        }
        // Subworkflows are inlined from their compiled form, so they keep the versions they were
        // registered with.
        let mut workflows: HashMap<TaskRef, (Identifier, CompiledWorkflow)> = HashMap::new();
        for workflow_ref in workflow_refs {
            if workflows.contains_key(&workflow_ref) {
                continue;
            }
            if let Some(row) = self
                .store
                .get_workflow(
                    project,
                    domain,
                    &workflow_ref.name,
                    workflow_ref.version.as_deref(),
                )
                .await?
            {
                workflows.insert(workflow_ref, (row.id, row.compiled));
            }
        }
        // Launch-plan nodes run the plan's workflow as registered, with the plan's limit and inputs.
        let mut plans: HashMap<TaskRef, ChildPlan> = HashMap::new();
        for plan_ref in plan_refs {
            if plans.contains_key(&plan_ref) {
                continue;
            }
            let Some(row) = self
                .store
                .get_launch_plan(project, domain, &plan_ref.name, plan_ref.version.as_deref())
                .await?
            else {
                continue;
            };
            let Some(workflow_row) = self
                .store
                .get_workflow(project, domain, &row.workflow.name, Some(&row.workflow.version))
                .await?
            else {
                continue;
            };
            let mut workflow = workflow_row.compiled;
            if row.spec.max_parallelism.is_some() {
                workflow.max_parallelism = row.spec.max_parallelism;
            }
            plans.insert(
                plan_ref,
                ChildPlan {
                    plan: row.id,
                    workflow,
                    default_inputs: row.default_inputs,
                    fixed_inputs: row.fixed_inputs,
                },
            );
        }
        let registry = Registry {
            task: &|task_ref| tasks.get(task_ref).cloned(),
            workflow: &|workflow_ref| workflows.get(workflow_ref).cloned(),
            launch_plan: &|plan_ref| plans.get(plan_ref).cloned(),
        };
        compile_workflow_with(id, spec, &registry).map_err(|e| invalid(e.to_string()))
    }

    pub(super) async fn register_workflow(
        &self,
        project: &str,
        domain: &str,
        spec: WorkflowSpec,
    ) -> ApiResult<wire::RegisterResponse> {
        self.require_domain(project, domain).await?;
        spec.validate_names().map_err(invalid)?;
        let digest = content_digest(&WorkflowSpec {
            version: None,
            ..spec.clone()
        });
        let id = identifier_for(project, domain, &spec.name, spec.version.as_deref(), &digest);
        let compiled = self.compile(project, domain, id.clone(), &spec).await?;
        let existing = self
            .store
            .get_workflow(project, domain, &spec.name, Some(&id.version))
            .await?;
        if let Some(outcome) = Self::outcome(
            "workflow",
            &id,
            existing.as_ref().map(|w| w.digest.as_str()),
            &digest,
        )? {
            return Ok(wire::RegisterResponse {
                id: Some(wire::Identifier::from(&id)),
                outcome: outcome as i32,
            });
        }
        let event = RegistryEvent::WorkflowRegistered {
            id: id.clone(),
            spec,
            compiled: Box::new(compiled),
            digest: digest.clone(),
            at: now_millis(),
        };
        self.append_registry(event).await?;
        let stored = self
            .store
            .get_workflow(project, domain, &id.name, Some(&id.version))
            .await?;
        Self::outcome(
            "workflow",
            &id,
            stored.as_ref().map(|w| w.digest.as_str()),
            &digest,
        )?;
        Ok(wire::RegisterResponse {
            id: Some(wire::Identifier::from(&id)),
            outcome: wire::WriteOutcome::Created as i32,
        })
    }

    pub(super) async fn register_launch_plan(
        &self,
        project: &str,
        domain: &str,
        spec: LaunchPlanSpec,
    ) -> ApiResult<wire::RegisterResponse> {
        self.require_domain(project, domain).await?;
        spec.validate_names().map_err(invalid)?;
        super::notifications::check_rules(&format!("launch plan {}", spec.name), &spec.notifications)?;
        let workflow_ref = TaskRef::parse(&spec.workflow);
        let workflow = self
            .store
            .get_workflow(
                project,
                domain,
                &workflow_ref.name,
                workflow_ref.version.as_deref(),
            )
            .await?
            .ok_or_else(|| {
                invalid(format!(
                    "launch plan {}: workflow {:?} is not registered",
                    spec.name, spec.workflow
                ))
            })?;
        let convert = |inputs: &BTreeMap<String, serde_json::Value>, field: &str| -> ApiResult<Outputs> {
            inputs
                .iter()
                .map(|(name, json)| {
                    let input_type = workflow.compiled.interface.inputs.get(name).ok_or_else(|| {
                        invalid(format!(
                            "launch plan {}: {field}.{name}: the workflow has no input {name:?}",
                            spec.name
                        ))
                    })?;
                    input_type
                        .from_json(json)
                        .map(|value| (name.clone(), value))
                        .map_err(|e| invalid(format!("launch plan {}: {field}.{name}: {e}", spec.name)))
                })
                .collect()
        };
        let default_inputs = convert(&spec.default_inputs, "default_inputs")?;
        let fixed_inputs = convert(&spec.fixed_inputs, "fixed_inputs")?;
        if let Some(schedule) = &spec.schedule {
            validate_schedule(
                &spec.name,
                schedule,
                &workflow.compiled,
                &default_inputs,
                &fixed_inputs,
            )?;
        }
        let pinned = LaunchPlanSpec {
            version: None,
            workflow: format!("{}@{}", workflow.id.name, workflow.id.version),
            ..spec.clone()
        };
        let digest = content_digest(&pinned);
        let id = identifier_for(project, domain, &spec.name, spec.version.as_deref(), &digest);
        let existing = self
            .store
            .get_launch_plan(project, domain, &spec.name, Some(&id.version))
            .await?;
        if let Some(outcome) = Self::outcome(
            "launch plan",
            &id,
            existing.as_ref().map(|l| l.digest.as_str()),
            &digest,
        )? {
            return Ok(wire::RegisterResponse {
                id: Some(wire::Identifier::from(&id)),
                outcome: outcome as i32,
            });
        }
        let event = RegistryEvent::LaunchPlanRegistered {
            id: id.clone(),
            spec,
            workflow: workflow.id.clone(),
            default_inputs,
            fixed_inputs,
            digest: digest.clone(),
            at: now_millis(),
        };
        self.append_registry(event).await?;
        let stored = self
            .store
            .get_launch_plan(project, domain, &id.name, Some(&id.version))
            .await?;
        Self::outcome(
            "launch plan",
            &id,
            stored.as_ref().map(|l| l.digest.as_str()),
            &digest,
        )?;
        Ok(wire::RegisterResponse {
            id: Some(wire::Identifier::from(&id)),
            outcome: wire::WriteOutcome::Created as i32,
        })
    }
}

/// A schedule must parse, its kickoff input must be a datetime input of the workflow, and every other
/// required input must have a value, since nobody passes inputs to a scheduled fire.
fn validate_schedule(
    plan: &str,
    schedule: &aloft_core::schedule::ScheduleSpec,
    workflow: &CompiledWorkflow,
    defaults: &Outputs,
    fixed: &Outputs,
) -> ApiResult<()> {
    schedule
        .compile()
        .map_err(|e| invalid(format!("launch plan {plan}: {e}")))?;
    if let Some(kickoff) = &schedule.kickoff_time_input {
        match workflow.interface.inputs.get(kickoff) {
            None => {
                return Err(invalid(format!(
                    "launch plan {plan}: schedule.kickoff_time_input {kickoff:?} is not an input of workflow {}",
                    workflow.id.name
                )))
            }
            Some(input_type) if !LiteralType::Datetime.is_assignable_to(input_type) => {
                return Err(invalid(format!(
                    "launch plan {plan}: schedule.kickoff_time_input {kickoff:?} has type {input_type}, not datetime"
                )))
            }
            Some(_) if fixed.contains_key(kickoff) => {
                return Err(invalid(format!("launch plan {plan}: schedule.kickoff_time_input {kickoff:?} is also a fixed input")))
            }
            Some(_) => {}
        }
    }
    for (name, input_type) in &workflow.interface.inputs {
        let given = defaults.contains_key(name)
            || fixed.contains_key(name)
            || schedule.kickoff_time_input.as_deref() == Some(name);
        if !given && !matches!(input_type, LiteralType::Optional(_)) {
            return Err(invalid(format!(
                "launch plan {plan}: a scheduled launch plan must give every required input; {name:?} ({input_type}) has no default"
            )));
        }
    }
    Ok(())
}

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
        active: row.active,
    }
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
        let mut projects = self.store.list_projects().await?;
        // A caller sees only the projects it may read (a platform admin, or anyone with auth off, all).
        if let Some(caller) = aloft_auth::access::current_caller() {
            if let Some(readable) = caller.readable_projects(&*self.access.policy().await?) {
                projects.retain(|row| readable.contains(&row.spec.name));
            }
        }
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
        let spec: TaskSpec = parse_spec("task", &request.spec_json)?;
        self.register_task(&request.project, &request.domain, spec).await
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
        let spec: WorkflowSpec = parse_spec("workflow", &request.spec_json)?;
        self.register_workflow(&request.project, &request.domain, spec)
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
        let spec: LaunchPlanSpec = parse_spec("launch plan", &request.spec_json)?;
        self.register_launch_plan(&request.project, &request.domain, spec)
            .await
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
        let rows = self
            .store
            .list_launch_plans(&request.project, &request.domain, optional_name(&request))
            .await?;
        Ok(wire::ListLaunchPlansResponse {
            launch_plans: rows.into_iter().map(launch_plan_to_wire).collect(),
        })
    }
}
