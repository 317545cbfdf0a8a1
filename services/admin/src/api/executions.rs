//! Launching executions: what a launch plan, workflow or task resolves to, and its inputs merged and
//! type-checked.

use super::*;

/// How an execution is launched, beyond what it runs.
#[derive(Debug, Default)]
pub(super) struct LaunchOptions {
    /// Cached tasks skip the lookup, run, and replace the stored result.
    pub overwrite_cache: bool,
    /// Replaces the launch plan's and the project's notification rules; empty disables them all.
    pub notifications: Option<Vec<aloft_core::notify::NotificationRule>>,
    /// The nodes taken over from a failed execution this one recovers.
    pub recovery: Option<aloft_core::events::Recovery>,
    /// The span of the API call that launches it: the execution's trace continues from it.
    pub traceparent: String,
    /// Labels to find it by; validated.
    pub labels: BTreeMap<String, String>,
}

/// The parts of an earlier execution's request that a relaunch or a recovery repeats.
pub(super) struct SourceRequest {
    pub workflow: CompiledWorkflow,
    pub inputs: Outputs,
    pub launch_plan: Option<Identifier>,
    pub notifications: Option<Vec<aloft_core::notify::NotificationRule>>,
    pub labels: BTreeMap<String, String>,
}

impl AdminApi {
    /// The id of a new execution: the given name (validated) or a generated one; refused if it exists.
    pub(super) async fn new_execution_id(
        &self,
        project: &str,
        domain: &str,
        name: &str,
    ) -> ApiResult<ExecutionId> {
        let name = if name.is_empty() {
            execution_name()
        } else {
            name.to_string()
        };
        let id = ExecutionId {
            project: project.to_string(),
            domain: domain.to_string(),
            name,
        };
        id.validate().map_err(|e| invalid(e.to_string()))?;
        if self.store.get_execution(&id).await?.is_some() {
            return Err(ApiError::AlreadyExists(format!(
                "execution {id} already exists; choose another name"
            )));
        }
        Ok(id)
    }

    /// Appends the request, waits for the read model and tells whether this request created the execution.
    pub(super) async fn request_execution(
        &self,
        id: ExecutionId,
        workflow: CompiledWorkflow,
        inputs: Outputs,
        launch_plan: Option<Identifier>,
        options: LaunchOptions,
    ) -> ApiResult<wire::CreateExecutionResponse> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let event = ExecutionEvent::ExecutionRequested {
            execution: id.clone(),
            request_id: request_id.clone(),
            workflow: Box::new(workflow),
            inputs,
            launch_plan,
            requested_at: now_millis(),
            scheduled_at: None,
            overwrite_cache: options.overwrite_cache,
            notifications: options.notifications,
            recovery: options.recovery,
            parent: None,
            labels: options.labels,
        };
        let mut envelope = Envelope::unsequenced(
            aloft_core::StreamId::request(&id, request_id.as_str()).to_string(),
            event.occurred_at(),
            Payload::Execution(event),
        );
        envelope.traceparent = options.traceparent;
        let position = self
            .append(&self.topics.executions, &id.partition_key(), envelope)
            .await?;
        self.wait_projected(&self.topics.executions, position).await?;
        let stored = self
            .store
            .get_execution(&id)
            .await?
            .ok_or_else(|| ApiError::Internal(format!("execution {id} missing after projection")))?;
        if stored.request_id != request_id {
            return Err(ApiError::AlreadyExists(format!(
                "execution {id} already exists; choose another name"
            )));
        }
        Ok(wire::CreateExecutionResponse {
            id: Some(wire::ExecutionIdentifier::from(&id)),
            outcome: wire::WriteOutcome::Created as i32,
        })
    }

    /// What an earlier execution was asked to run, from its `ExecutionRequested` event.
    pub(super) async fn source_request(&self, source: &ExecutionId) -> ApiResult<SourceRequest> {
        let requested = self
            .store
            .execution_request(source)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("execution {source} not found")))?;
        let Ok(ExecutionEvent::ExecutionRequested {
            workflow,
            inputs,
            launch_plan,
            notifications,
            labels,
            ..
        }) = serde_json::from_str::<ExecutionEvent>(&requested.payload_json)
        else {
            return Err(ApiError::Internal(format!(
                "the request of {source} is unreadable"
            )));
        };
        Ok(SourceRequest {
            workflow: *workflow,
            inputs,
            launch_plan,
            notifications,
            labels,
        })
    }

    /// A new execution of exactly the workflow version an earlier one ran, with its inputs, some replaced.
    pub(super) async fn relaunch(
        &self,
        request: wire::RelaunchExecutionRequest,
        traceparent: String,
    ) -> ApiResult<wire::CreateExecutionResponse> {
        let source = execution_id_from_wire(request.id.as_ref())?;
        let SourceRequest {
            workflow,
            mut inputs,
            launch_plan,
            notifications,
            labels,
        } = self.source_request(&source).await?;
        for (name, text) in &request.text_inputs {
            let input_type = workflow
                .interface
                .inputs
                .get(name)
                .ok_or_else(|| invalid(format!("unknown input {name:?} for workflow {}", workflow.id)))?;
            let value = input_type
                .parse_text(text)
                .map_err(|e| invalid(format!("input {name} ({input_type}): {e}")))?;
            inputs.insert(name.clone(), value);
        }
        let id = self
            .new_execution_id(&source.project, &source.domain, &request.name)
            .await?;
        // The source's offloaded inputs stay where they are (referenced again); a large replacement is
        // offloaded like a launch's.
        let inputs = self.offload_large_inputs(&id, &workflow, inputs).await?;
        // A relaunch keeps the source's notification override (a silenced run stays silent) and labels.
        let options = LaunchOptions {
            overwrite_cache: false,
            notifications,
            recovery: None,
            traceparent,
            labels,
        };
        self.request_execution(id, workflow, inputs, launch_plan, options)
            .await
    }

    /// A new execution of the failed one's workflow version and inputs, taking over the outputs of every
    /// node that succeeded there; only the others run.
    pub(super) async fn recover(
        &self,
        request: wire::RecoverExecutionRequest,
        traceparent: String,
    ) -> ApiResult<wire::CreateExecutionResponse> {
        let source = execution_id_from_wire(request.id.as_ref())?;
        self.check_rate_limit(&source.project, &source.domain).await?;
        let row = self.execution_row(&source).await?;
        match row.phase.as_str() {
            "FAILED" | "ABORTED" | "TIMED_OUT" => {}
            "SUCCEEDED" => {
                return Err(ApiError::FailedPrecondition(format!(
                    "execution {source} succeeded: there is nothing to recover (relaunch it to run it again)"
                )))
            }
            phase => {
                return Err(ApiError::FailedPrecondition(format!(
                    "execution {source} is {phase}: only a failed, aborted or timed-out execution can be recovered"
                )))
            }
        }
        let SourceRequest {
            workflow,
            inputs,
            launch_plan,
            notifications,
            labels,
        } = self.source_request(&source).await?;
        let mut nodes = std::collections::BTreeMap::new();
        for node in self.store.node_executions(&source).await? {
            if matches!(node.phase.as_str(), "SUCCEEDED" | "RECOVERED") {
                if let Some(outputs) = node.outputs {
                    nodes.insert(node.node_id, outputs);
                }
            }
        }
        let id = self
            .new_execution_id(&source.project, &source.domain, &request.name)
            .await?;
        let options = LaunchOptions {
            overwrite_cache: false,
            notifications,
            recovery: Some(aloft_core::events::Recovery { from: source, nodes }),
            traceparent,
            labels,
        };
        self.request_execution(id, workflow, inputs, launch_plan, options)
            .await
    }

    /// Resolves what to run and with which inputs, type-checking every input.
    pub(super) async fn resolve_launch(
        &self,
        request: &wire::CreateExecutionRequest,
    ) -> ApiResult<(CompiledWorkflow, Option<Identifier>, Outputs, Outputs)> {
        use wire::create_execution_request::Target;
        let (project, domain) = (request.project.as_str(), request.domain.as_str());
        let target = request
            .target
            .as_ref()
            .ok_or_else(|| invalid("target is required: a launch plan, workflow or task"))?;
        match target {
            Target::LaunchPlan(id) => {
                let plan = self
                    .store
                    .get_launch_plan(project, domain, &id.name, requested_version(id))
                    .await?
                    .ok_or_else(|| {
                        ApiError::NotFound(format!(
                            "launch plan {:?} is not registered in {project}/{domain}",
                            id.name
                        ))
                    })?;
                let workflow = self
                    .store
                    .get_workflow(project, domain, &plan.workflow.name, Some(&plan.workflow.version))
                    .await?
                    .ok_or_else(|| {
                        ApiError::Internal(format!(
                            "workflow {} of launch plan {} is missing",
                            plan.workflow, plan.id
                        ))
                    })?;
                let mut compiled = workflow.compiled;
                // The launch plan's limit wins over the workflow's; the execution carries the result.
                if plan.spec.max_parallelism.is_some() {
                    compiled.max_parallelism = plan.spec.max_parallelism;
                }
                Ok((compiled, Some(plan.id), plan.default_inputs, plan.fixed_inputs))
            }
            Target::Workflow(id) => {
                let workflow = self
                    .store
                    .get_workflow(project, domain, &id.name, requested_version(id))
                    .await?
                    .ok_or_else(|| {
                        ApiError::NotFound(format!(
                            "workflow {:?} is not registered in {project}/{domain}",
                            id.name
                        ))
                    })?;
                Ok((workflow.compiled, None, Outputs::new(), Outputs::new()))
            }
            Target::Task(id) => {
                let task = self
                    .store
                    .get_task(project, domain, &id.name, requested_version(id))
                    .await?
                    .ok_or_else(|| {
                        ApiError::NotFound(format!(
                            "task {:?} is not registered in {project}/{domain}",
                            id.name
                        ))
                    })?;
                Ok((
                    CompiledWorkflow::for_single_task(task.id, task.spec),
                    None,
                    Outputs::new(),
                    Outputs::new(),
                ))
            }
        }
    }
}

pub(super) fn merge_inputs(
    interface_inputs: &BTreeMap<String, LiteralType>,
    defaults: Outputs,
    fixed: &Outputs,
    request: &wire::CreateExecutionRequest,
) -> ApiResult<Outputs> {
    let mut inputs = defaults;
    let declared = |name: &str| {
        interface_inputs.get(name).ok_or_else(|| {
            let names: Vec<&str> = interface_inputs.keys().map(String::as_str).collect();
            invalid(format!(
                "unknown input {name:?}; the inputs are: {}",
                if names.is_empty() {
                    "(none)".to_string()
                } else {
                    names.join(", ")
                }
            ))
        })
    };
    for (name, literal) in request.inputs.as_ref().map(|m| &m.values).into_iter().flatten() {
        let input_type = declared(name)?;
        inputs.insert(name.clone(), value_from_wire(literal, input_type, name)?);
    }
    for (name, text) in &request.text_inputs {
        let input_type = declared(name)?;
        let value = input_type
            .parse_text(text)
            .map_err(|e| invalid(format!("input {name} ({input_type}): {e}")))?;
        inputs.insert(name.clone(), value);
    }
    for (name, value) in fixed {
        let overridden = request
            .inputs
            .as_ref()
            .is_some_and(|m| m.values.contains_key(name))
            || request.text_inputs.contains_key(name);
        if overridden {
            return Err(invalid(format!(
                "input {name:?} is fixed by the launch plan and cannot be set"
            )));
        }
        inputs.insert(name.clone(), value.clone());
    }
    for (name, input_type) in interface_inputs {
        match inputs.get(name) {
            Some(value) => input_type
                .check(value)
                .map_err(|e| invalid(format!("input {name}: {e}")))?,
            None if matches!(input_type, LiteralType::Optional(_)) => {
                inputs.insert(name.clone(), aloft_core::Value::None);
            }
            None => return Err(invalid(format!("missing input {name:?} of type {input_type}"))),
        }
    }
    Ok(inputs)
}

impl AdminApi {
    /// `inputs` with those too large to travel inline in the request's event offloaded to the blob store
    /// (all but those the engine reads); unchanged when this admin has no store.
    async fn offload_large_inputs(
        &self,
        id: &ExecutionId,
        workflow: &CompiledWorkflow,
        mut inputs: Outputs,
    ) -> ApiResult<Outputs> {
        let Some(blobs) = &self.blobs else {
            return Ok(inputs);
        };
        let blobs = blobs.for_tenant(&id.project, &id.domain);
        blobs
            .offload_large(
                &mut inputs,
                &workflow.interface.inputs,
                &workflow.inputs_read_by_the_engine(),
                blobs.value_limits(),
                |name| aloft_blobstore::input_key(&id.project, &id.domain, &id.name, name),
            )
            .await
            .map_err(|error| ApiError::Unavailable(format!("offloading large inputs: {error}")))?;
        Ok(inputs)
    }

    /// Launches what `request` names (the RPC's span gives `traceparent`, the execution's trace).
    pub(super) async fn create_execution_rpc(
        &self,
        request: wire::CreateExecutionRequest,
        traceparent: String,
    ) -> ApiResult<wire::CreateExecutionResponse> {
        self.check_rate_limit(&request.project, &request.domain).await?;
        self.require_domain(&request.project, &request.domain).await?;
        let id = self
            .new_execution_id(&request.project, &request.domain, &request.name)
            .await?;
        let (workflow, launch_plan, defaults, fixed) = self.resolve_launch(&request).await?;
        let inputs = merge_inputs(&workflow.interface.inputs, defaults, &fixed, &request)?;
        let inputs = self.offload_large_inputs(&id, &workflow, inputs).await?;
        let notifications = notifications::execution_override(&request)?;
        let labels: BTreeMap<String, String> = request.labels.clone().into_iter().collect();
        aloft_core::ids::validate_labels(&labels).map_err(|e| invalid(e.to_string()))?;
        let options = LaunchOptions {
            overwrite_cache: request.overwrite_cache,
            notifications,
            recovery: None,
            traceparent,
            labels,
        };
        self.request_execution(id, workflow, inputs, launch_plan, options)
            .await
    }
}
