//! Checking a registration before anything is written. Each document becomes the event that registers it
//! (or is found identical to what is registered), checked against the registered entities and against the
//! documents staged before it, so a batch is appended only once every document in it passed: one refused
//! document leaves nothing of the others registered. A single registration is a batch of one.

use crate::api::*;

/// A task, workflow or launch plan spec to register.
pub(in crate::api) enum Document {
    Task(Box<TaskSpec>),
    Workflow(WorkflowSpec),
    LaunchPlan(LaunchPlanSpec),
}

impl Document {
    /// Parses `spec_json` as the spec of `kind`.
    pub(in crate::api) fn parse(kind: wire::EntityKind, spec_json: &str) -> ApiResult<Document> {
        Ok(match kind {
            wire::EntityKind::Task => Document::Task(Box::new(parse_spec("task", spec_json)?)),
            wire::EntityKind::Workflow => Document::Workflow(parse_spec("workflow", spec_json)?),
            wire::EntityKind::LaunchPlan => Document::LaunchPlan(parse_spec("launch plan", spec_json)?),
            wire::EntityKind::Unspecified => {
                return Err(invalid("kind is required: TASK, WORKFLOW or LAUNCH_PLAN"))
            }
        })
    }
}

/// Registrations checked but not yet written, which later documents of the same batch may reference as
/// if they were registered (a reference without a version finds the staged one: it is the newest once
/// written).
#[derive(Default)]
pub(in crate::api) struct Staged {
    tasks: Vec<(Identifier, TaskSpec)>,
    workflows: Vec<(Identifier, CompiledWorkflow)>,
    /// Launch plans as a launch-plan node runs them (the plan's parallelism limit already applied).
    plans: Vec<ChildPlan>,
    /// What writing the batch appends, in order.
    writes: Vec<StagedWrite>,
}

/// One event to append, and what to check once it is projected (a concurrent registration of the same
/// version with other content wins the race and is reported as the conflict it is).
struct StagedWrite {
    kind: Kind,
    id: Identifier,
    digest: String,
    event: RegistryEvent,
}

/// What a staged write registers; its noun names it in messages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Task,
    Workflow,
    LaunchPlan,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Task => "task",
            Kind::Workflow => "workflow",
            Kind::LaunchPlan => "launch plan",
        }
    }
}

fn matches(id: &Identifier, reference: &TaskRef) -> bool {
    id.name == reference.name
        && reference
            .version
            .as_deref()
            .is_none_or(|version| version == id.version)
}

impl Staged {
    fn task(&self, reference: &TaskRef) -> Option<(Identifier, TaskSpec)> {
        self.tasks
            .iter()
            .rev()
            .find(|(id, _)| matches(id, reference))
            .cloned()
    }

    fn workflow(&self, reference: &TaskRef) -> Option<(Identifier, CompiledWorkflow)> {
        self.workflows
            .iter()
            .rev()
            .find(|(id, _)| matches(id, reference))
            .cloned()
    }

    fn plan(&self, reference: &TaskRef) -> Option<ChildPlan> {
        self.plans
            .iter()
            .rev()
            .find(|plan| matches(&plan.plan, reference))
            .cloned()
    }

    /// The digest this batch already registers `id` with.
    fn digest_of(&self, kind: Kind, id: &Identifier) -> Option<&str> {
        self.writes
            .iter()
            .find(|write| write.kind == kind && write.id == *id)
            .map(|write| write.digest.as_str())
    }

    fn stage(&mut self, kind: Kind, id: &Identifier, digest: String, event: RegistryEvent) {
        self.writes.push(StagedWrite {
            kind,
            id: id.clone(),
            digest,
            event,
        });
    }
}

/// Launch plan `plan` as a launch-plan node runs it: its workflow under the plan's parallelism limit.
fn child_plan(
    plan: Identifier,
    spec: &LaunchPlanSpec,
    mut workflow: CompiledWorkflow,
    default_inputs: Outputs,
    fixed_inputs: Outputs,
) -> ChildPlan {
    if spec.max_parallelism.is_some() {
        workflow.max_parallelism = spec.max_parallelism;
    }
    ChildPlan {
        plan,
        workflow,
        default_inputs,
        fixed_inputs,
    }
}

fn answer(id: &Identifier, outcome: wire::WriteOutcome) -> wire::RegisterResponse {
    wire::RegisterResponse {
        id: Some(wire::Identifier::from(id)),
        outcome: outcome as i32,
    }
}

impl AdminApi {
    /// Checks `document` against what is registered and what `staged` holds, and stages its event; the
    /// answer says what writing the batch will do for it. The caller has checked the project and domain.
    pub(in crate::api) async fn stage(
        &self,
        project: &str,
        domain: &str,
        document: Document,
        staged: &mut Staged,
    ) -> ApiResult<wire::RegisterResponse> {
        match document {
            Document::Task(spec) => self.stage_task(project, domain, *spec, staged).await,
            Document::Workflow(spec) => self.stage_workflow(project, domain, spec, staged).await,
            Document::LaunchPlan(spec) => self.stage_launch_plan(project, domain, spec, staged).await,
        }
    }

    /// Appends what `staged` holds, in order, each waited for until admin's projection has applied it.
    pub(in crate::api) async fn write_staged(&self, staged: Staged) -> ApiResult<()> {
        for write in staged.writes {
            self.append_registry(write.event).await?;
            let stored = self.registered_digest(write.kind, &write.id).await?;
            Self::outcome(write.kind.noun(), &write.id, stored.as_deref(), &write.digest)?;
        }
        Ok(())
    }

    /// Registers one document (a batch of one).
    pub(in crate::api) async fn register_one(
        &self,
        project: &str,
        domain: &str,
        document: Document,
    ) -> ApiResult<wire::RegisterResponse> {
        self.require_domain(project, domain).await?;
        let mut staged = Staged::default();
        let answer = self.stage(project, domain, document, &mut staged).await?;
        self.write_staged(staged).await?;
        Ok(answer)
    }

    /// What version `id` of a `kind` is registered with: staged in this batch, else in the store.
    async fn existing_digest(
        &self,
        kind: Kind,
        id: &Identifier,
        staged: &Staged,
    ) -> ApiResult<Option<String>> {
        if let Some(digest) = staged.digest_of(kind, id) {
            return Ok(Some(digest.to_string()));
        }
        self.registered_digest(kind, id).await
    }

    async fn registered_digest(&self, kind: Kind, id: &Identifier) -> ApiResult<Option<String>> {
        let (project, domain, name, version) = (&id.project, &id.domain, &id.name, Some(id.version.as_str()));
        Ok(match kind {
            Kind::Task => self
                .store
                .get_task(project, domain, name, version)
                .await?
                .map(|row| row.digest),
            Kind::Workflow => self
                .store
                .get_workflow(project, domain, name, version)
                .await?
                .map(|row| row.digest),
            Kind::LaunchPlan => self
                .store
                .get_launch_plan(project, domain, name, version)
                .await?
                .map(|row| row.digest),
        })
    }

    /// Whether `id` is new (`None`: stage its event) or already registered identically.
    async fn is_registered(
        &self,
        kind: Kind,
        id: &Identifier,
        digest: &str,
        staged: &Staged,
    ) -> ApiResult<Option<wire::WriteOutcome>> {
        let existing = self.existing_digest(kind, id, staged).await?;
        Self::outcome(kind.noun(), id, existing.as_deref(), digest)
    }

    async fn stage_task(
        &self,
        project: &str,
        domain: &str,
        spec: TaskSpec,
        staged: &mut Staged,
    ) -> ApiResult<wire::RegisterResponse> {
        spec.validate().map_err(invalid)?;
        self.check_task_pools(&spec).await?;
        let digest = content_digest(&TaskSpec {
            version: None,
            ..spec.clone()
        });
        let id = identifier_for(project, domain, &spec.name, spec.version.as_deref(), &digest);
        if let Some(outcome) = self.is_registered(Kind::Task, &id, &digest, staged).await? {
            return Ok(answer(&id, outcome));
        }
        staged.tasks.push((id.clone(), spec.clone()));
        let event = RegistryEvent::TaskRegistered {
            id: id.clone(),
            spec,
            digest: digest.clone(),
            at: now_millis(),
        };
        staged.stage(Kind::Task, &id, digest, event);
        Ok(answer(&id, wire::WriteOutcome::Created))
    }

    async fn stage_workflow(
        &self,
        project: &str,
        domain: &str,
        spec: WorkflowSpec,
        staged: &mut Staged,
    ) -> ApiResult<wire::RegisterResponse> {
        spec.validate_names().map_err(invalid)?;
        let digest = content_digest(&WorkflowSpec {
            version: None,
            ..spec.clone()
        });
        let id = identifier_for(project, domain, &spec.name, spec.version.as_deref(), &digest);
        let compiled = self.compile(project, domain, id.clone(), &spec, staged).await?;
        if let Some(outcome) = self.is_registered(Kind::Workflow, &id, &digest, staged).await? {
            return Ok(answer(&id, outcome));
        }
        staged.workflows.push((id.clone(), compiled.clone()));
        let event = RegistryEvent::WorkflowRegistered {
            id: id.clone(),
            spec,
            compiled: Box::new(compiled),
            digest: digest.clone(),
            at: now_millis(),
        };
        staged.stage(Kind::Workflow, &id, digest, event);
        Ok(answer(&id, wire::WriteOutcome::Created))
    }

    /// Compiles `spec` against the registered (and staged) tasks, workflows and launch plans it names.
    async fn compile(
        &self,
        project: &str,
        domain: &str,
        id: Identifier,
        spec: &WorkflowSpec,
        staged: &Staged,
    ) -> ApiResult<CompiledWorkflow> {
        let (task_refs, workflow_refs, plan_refs) = spec.references();
        let mut tasks: HashMap<TaskRef, (Identifier, TaskSpec)> = HashMap::new();
        for task_ref in task_refs {
            if tasks.contains_key(&task_ref) {
                continue;
            }
            if let Some(found) = self.find_task(project, domain, &task_ref, staged).await? {
                tasks.insert(task_ref, found);
            }
        }
        // Subworkflows are inlined from their compiled form, so they keep the versions they were
        // registered with.
        let mut workflows: HashMap<TaskRef, (Identifier, CompiledWorkflow)> = HashMap::new();
        for workflow_ref in workflow_refs {
            if workflows.contains_key(&workflow_ref) {
                continue;
            }
            if let Some(found) = self.find_workflow(project, domain, &workflow_ref, staged).await? {
                workflows.insert(workflow_ref, found);
            }
        }
        // Launch-plan nodes run the plan's workflow as registered, with the plan's limit and inputs.
        let mut plans: HashMap<TaskRef, ChildPlan> = HashMap::new();
        for plan_ref in plan_refs {
            if plans.contains_key(&plan_ref) {
                continue;
            }
            if let Some(found) = self.find_plan(project, domain, &plan_ref, staged).await? {
                plans.insert(plan_ref, found);
            }
        }
        let registry = Registry {
            task: &|task_ref| tasks.get(task_ref).cloned(),
            workflow: &|workflow_ref| workflows.get(workflow_ref).cloned(),
            launch_plan: &|plan_ref| plans.get(plan_ref).cloned(),
        };
        compile_workflow_with(id, spec, &registry).map_err(|e| invalid(e.to_string()))
    }

    async fn find_task(
        &self,
        project: &str,
        domain: &str,
        reference: &TaskRef,
        staged: &Staged,
    ) -> ApiResult<Option<(Identifier, TaskSpec)>> {
        if let Some(found) = staged.task(reference) {
            return Ok(Some(found));
        }
        let row = self
            .store
            .get_task(project, domain, &reference.name, reference.version.as_deref())
            .await?;
        Ok(row.map(|row| (row.id, row.spec)))
    }

    async fn find_workflow(
        &self,
        project: &str,
        domain: &str,
        reference: &TaskRef,
        staged: &Staged,
    ) -> ApiResult<Option<(Identifier, CompiledWorkflow)>> {
        if let Some(found) = staged.workflow(reference) {
            return Ok(Some(found));
        }
        let row = self
            .store
            .get_workflow(project, domain, &reference.name, reference.version.as_deref())
            .await?;
        Ok(row.map(|row| (row.id, row.compiled)))
    }

    async fn find_plan(
        &self,
        project: &str,
        domain: &str,
        reference: &TaskRef,
        staged: &Staged,
    ) -> ApiResult<Option<ChildPlan>> {
        if let Some(found) = staged.plan(reference) {
            return Ok(Some(found));
        }
        let Some(row) = self
            .store
            .get_launch_plan(project, domain, &reference.name, reference.version.as_deref())
            .await?
        else {
            return Ok(None);
        };
        let Some(workflow_row) = self
            .store
            .get_workflow(project, domain, &row.workflow.name, Some(&row.workflow.version))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(child_plan(
            row.id,
            &row.spec,
            workflow_row.compiled,
            row.default_inputs,
            row.fixed_inputs,
        )))
    }

    async fn stage_launch_plan(
        &self,
        project: &str,
        domain: &str,
        spec: LaunchPlanSpec,
        staged: &mut Staged,
    ) -> ApiResult<wire::RegisterResponse> {
        spec.validate_names().map_err(invalid)?;
        notifications::check_rules(&format!("launch plan {}", spec.name), &spec.notifications)?;
        let workflow_ref = TaskRef::parse(&spec.workflow);
        let (workflow_id, workflow) = self
            .find_workflow(project, domain, &workflow_ref, staged)
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
                    let input_type = workflow.interface.inputs.get(name).ok_or_else(|| {
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
            validate_schedule(&spec.name, schedule, &workflow, &default_inputs, &fixed_inputs)?;
        }
        let pinned = LaunchPlanSpec {
            version: None,
            workflow: format!("{}@{}", workflow_id.name, workflow_id.version),
            ..spec.clone()
        };
        let digest = content_digest(&pinned);
        let id = identifier_for(project, domain, &spec.name, spec.version.as_deref(), &digest);
        if let Some(outcome) = self.is_registered(Kind::LaunchPlan, &id, &digest, staged).await? {
            return Ok(answer(&id, outcome));
        }
        staged.plans.push(child_plan(
            id.clone(),
            &spec,
            workflow,
            default_inputs.clone(),
            fixed_inputs.clone(),
        ));
        let event = RegistryEvent::LaunchPlanRegistered {
            id: id.clone(),
            spec,
            workflow: workflow_id,
            default_inputs,
            fixed_inputs,
            digest: digest.clone(),
            at: now_millis(),
        };
        staged.stage(Kind::LaunchPlan, &id, digest, event);
        Ok(answer(&id, wire::WriteOutcome::Created))
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
