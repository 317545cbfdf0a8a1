//! The workflow compiler: turns a `WorkflowSpec` plus the task specs it references into a
//! `CompiledWorkflow`, or explains exactly what is wrong (naming the node and the variable).
//!
//! The compiled form embeds the resolved task specs, so an execution keeps running the versions it was
//! launched with even when newer ones are registered, and the log alone is enough to replay it.
//!
//! The compiler runs in floors: `resolve` looks references up, `check` type-checks bindings, `order` sorts
//! the nodes, `emit` lays them out; `errors` says what is wrong, `compiled` is what comes out.

mod check;
mod compiled;
mod emit;
mod errors;
mod order;
mod resolve;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::ids::Identifier;
use crate::spec::{content_digest, Interface, TaskRef, TaskSpec, WorkflowSpec};
use crate::types::{LiteralType, Value};

pub use compiled::*;
pub(crate) use emit::inline_workflow;
pub use errors::{CompileError, PlanError};
pub use resolve::Registry;

use check::Scope;
use emit::Emitter;
use order::topological_order;
use resolve::resolve_node;

/// Compiles `spec` into a type-checked DAG. `resolve_task` looks up registered tasks by reference; a spec
/// with subworkflow nodes needs `compile_workflow_with`.
pub fn compile_workflow(
    workflow_id: Identifier,
    spec: &WorkflowSpec,
    resolve_task: &dyn Fn(&TaskRef) -> Option<(Identifier, TaskSpec)>,
) -> Result<CompiledWorkflow, CompileError> {
    let registry = Registry {
        task: resolve_task,
        workflow: &|_| None,
        launch_plan: &|_| None,
    };
    compile_workflow_with(workflow_id, spec, &registry)
}

/// Compiles `spec`, resolving tasks and subworkflows through `registry`.
pub fn compile_workflow_with(
    workflow_id: Identifier,
    spec: &WorkflowSpec,
    registry: &Registry,
) -> Result<CompiledWorkflow, CompileError> {
    spec.validate_names()?;
    if spec.nodes.is_empty() {
        return Err(CompileError::Empty);
    }
    let mut index_by_id: HashMap<&str, usize> = HashMap::new();
    for (index, node) in spec.nodes.iter().enumerate() {
        if index_by_id.insert(node.id.as_str(), index).is_some() {
            return Err(CompileError::DuplicateNodeId {
                node: node.id.clone(),
            });
        }
    }
    // Interfaces first (a binding is checked against its upstream node's outputs), then every binding.
    let mut resolved = Vec::with_capacity(spec.nodes.len());
    for node in &spec.nodes {
        resolved.push(resolve_node(node, registry)?);
    }
    let interfaces: Vec<Interface> = resolved.iter().map(|r| r.interface.clone()).collect();
    let scope = Scope {
        spec,
        index_by_id: &index_by_id,
        interfaces: &interfaces,
    };
    let mut checked = Vec::with_capacity(spec.nodes.len());
    for (node, resolved) in spec.nodes.iter().zip(resolved) {
        checked.push(scope.check(node, resolved)?);
    }
    let upstream_per_node: Vec<Vec<usize>> = checked
        .iter()
        .map(|c| {
            let mut deps = BTreeSet::new();
            c.collect_deps(&mut deps);
            deps.into_iter().collect()
        })
        .collect();
    let order = topological_order(spec, &upstream_per_node)?;

    let mut emitter = Emitter {
        workflow_id: workflow_id.clone(),
        nodes: Vec::new(),
        exit_of: vec![usize::MAX; spec.nodes.len()],
    };
    for &old in &order {
        let exit = emitter.emit(&checked[old], "", None, &[]);
        emitter.exit_of[old] = exit;
    }

    let mut outputs = BTreeMap::new();
    for (output, expected_type) in &spec.interface.outputs {
        let binding_spec = spec
            .outputs
            .get(output)
            .ok_or_else(|| CompileError::UnboundOutput {
                output: output.clone(),
            })?;
        let binding = scope
            .resolve_binding(binding_spec, expected_type)
            .map_err(|failure| CompileError::BadOutput {
                output: output.clone(),
                reason: failure.reason(),
            })?;
        outputs.insert(output.clone(), emitter.map_binding(&binding));
    }
    if let Some(extra) = spec
        .outputs
        .keys()
        .find(|name| !spec.interface.outputs.contains_key(*name))
    {
        return Err(CompileError::BadOutput {
            output: extra.clone(),
            reason: "is bound but not declared in interface.outputs".to_string(),
        });
    }
    Ok(CompiledWorkflow {
        id: workflow_id,
        interface: spec.interface.clone(),
        nodes: emitter.nodes,
        outputs,
        max_parallelism: spec.max_parallelism,
        on_failure: spec.on_failure,
    })
}

impl DynamicControl {
    /// Compiles a planned workflow spec (the planner's output) against the allowed tasks and checks its
    /// interface against the node's; the error says what is wrong, as a registration would.
    pub fn compile_plan(
        &self,
        node_id: &str,
        project: &Identifier,
        plan: &Value,
    ) -> Result<CompiledWorkflow, PlanError> {
        let Value::Struct(json) = plan else {
            return Err(PlanError::NotASpec {
                kind: plan.kind_name(),
            });
        };
        let spec: WorkflowSpec =
            serde_json::from_value(json.clone()).map_err(|e| PlanError::InvalidSpec {
                reason: e.to_string(),
            })?;
        let registry = Registry {
            task: &|task_ref| {
                let written = match &task_ref.version {
                    Some(version) => format!("{}@{version}", task_ref.name),
                    None => task_ref.name.clone(),
                };
                self.tasks.get(&written).cloned()
            },
            workflow: &|_| None,
            launch_plan: &|_| None,
        };
        let id = Identifier {
            project: project.project.clone(),
            domain: project.domain.clone(),
            name: format!("{node_id}-plan"),
            version: content_digest(&spec),
        };
        let compiled = compile_workflow_with(id, &spec, &registry).map_err(|error| {
            let allowed: Vec<&str> = self.tasks.keys().map(String::as_str).collect();
            PlanError::DoesNotCompile {
                error: Box::new(error),
                allowed: if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                },
            }
        })?;
        for (input, wanted) in &compiled.interface.inputs {
            match self.input_types.get(input) {
                Some(given) if given.is_assignable_to(wanted) => {}
                Some(given) => {
                    return Err(PlanError::InputType {
                        input: input.clone(),
                        wanted: wanted.clone(),
                        given: given.clone(),
                    })
                }
                None if matches!(wanted, LiteralType::Optional(_)) => {}
                None => return Err(PlanError::MissingInput { input: input.clone() }),
            }
        }
        for (output, wanted) in &self.outputs {
            match compiled.interface.outputs.get(output) {
                Some(found) if found.is_assignable_to(wanted) => {}
                Some(found) => {
                    return Err(PlanError::OutputType {
                        output: output.clone(),
                        found: found.clone(),
                        wanted: wanted.clone(),
                    })
                }
                None => {
                    return Err(PlanError::MissingOutput {
                        output: output.clone(),
                    })
                }
            }
        }
        Ok(compiled)
    }
}
