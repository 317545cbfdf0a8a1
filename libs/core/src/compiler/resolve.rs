//! Resolving: every node of a spec with what it references (tasks, subworkflows, launch plans, map and
//! dynamic tasks) looked up through the `Registry`, before any binding is checked.

use std::collections::{BTreeMap, BTreeSet};

use crate::condition::{parse_condition, Condition};
use crate::ids::{validate_name, Identifier};
use crate::spec::{BindingSpec, GateSpec, Interface, NodeSpec, NodeSpecKind, TaskRef, TaskSpec};
use crate::types::{parse_duration_millis, LiteralType, Value};

use super::compiled::*;
use super::errors::{node_error, CompileError};

/// A shorthand binding that is neither `inputs.NAME` nor `NODE.OUTPUT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "binding {text:?} is not understood; write inputs.NAME, NODE.OUTPUT, {{value: ...}}, {{input: NAME}} \
     or {{node: NODE, output: NAME}}"
)]
pub struct BindingSyntaxError {
    pub text: String,
}

pub(super) fn parse_binding(spec: &BindingSpec) -> Result<BindingSpec, BindingSyntaxError> {
    let BindingSpec::Shorthand(text) = spec else {
        return Ok(spec.clone());
    };
    match text.split_once('.') {
        Some(("inputs", input)) if !input.is_empty() => Ok(BindingSpec::WorkflowInput {
            input: input.to_string(),
        }),
        Some((node, output)) if !node.is_empty() && !output.is_empty() => Ok(BindingSpec::NodeOutput {
            node: node.to_string(),
            output: output.to_string(),
        }),
        _ => Err(BindingSyntaxError { text: text.clone() }),
    }
}

/// Looks up registered tasks, (for subworkflow nodes) registered workflows in their compiled form, and (for
/// launch-plan nodes) launch plans with what a child execution of them runs.
pub struct Registry<'a> {
    pub task: &'a dyn Fn(&TaskRef) -> Option<(Identifier, TaskSpec)>,
    pub workflow: &'a dyn Fn(&TaskRef) -> Option<(Identifier, CompiledWorkflow)>,
    pub launch_plan: &'a dyn Fn(&TaskRef) -> Option<ChildPlan>,
}

/// A node with what it references looked up, before its bindings are checked.
pub(super) struct ResolvedNode {
    pub(super) kind: ResolvedKind,
    pub(super) interface: Interface,
}

pub(super) enum ResolvedKind {
    Task(Identifier, Box<TaskSpec>),
    Workflow(Identifier, Box<CompiledWorkflow>),
    Gate(CompiledGate),
    Branch(Vec<(Condition<String>, ResolvedNode)>, Option<Box<ResolvedNode>>),
    Map(Box<MapControl>),
    /// The planner, and the control with `plan` still unset.
    Dynamic(Identifier, Box<TaskSpec>, Box<DynamicControl>),
    LaunchPlan(Box<ChildPlan>),
}

/// `task` with the node's own timeout (checked like a task's), `interruptible` flag and resources, where it
/// sets them.
pub(super) fn with_node_overrides(node: &NodeSpec, mut task: TaskSpec) -> Result<TaskSpec, CompileError> {
    if let Some(interruptible) = node.interruptible {
        task.interruptible = interruptible;
    }
    if let Some(overrides) = &node.resources {
        let resources = task
            .resources
            .clone()
            .unwrap_or_default()
            .overridden_by(overrides);
        resources
            .validate(&task.name)
            .map_err(|e| node_error(&node.id, format!("resources: {e}")))?;
        task.resources = Some(resources);
    }
    if let Some(timeout) = &node.timeout {
        match parse_duration_millis(timeout) {
            Ok(millis) if millis > 0 => task.timeout = Some(timeout.clone()),
            Ok(_) => return Err(node_error(&node.id, "timeout must be positive".to_string())),
            Err(e) => return Err(node_error(&node.id, format!("timeout: {e}"))),
        }
    }
    Ok(task)
}

pub(super) fn resolve_node(node: &NodeSpec, registry: &Registry) -> Result<ResolvedNode, CompileError> {
    validate_name("node id", &node.id).map_err(|e| CompileError::InvalidSpec(e.into()))?;
    let runs_tasks = node.task.is_some() || node.map.is_some();
    let overrides = [
        (node.timeout.is_some(), "a timeout (a gate has its own)"),
        (node.interruptible.is_some(), "an interruptible flag"),
        (node.resources.is_some(), "resources"),
    ];
    if let Some((_, what)) = overrides.iter().find(|(set, _)| *set && !runs_tasks) {
        return Err(node_error(
            &node.id,
            format!("only task and map nodes take {what}"),
        ));
    }
    match node.kind()? {
        NodeSpecKind::Task(task) => {
            let (id, spec) =
                (registry.task)(&TaskRef::parse(task)).ok_or_else(|| CompileError::UnknownTask {
                    node: node.id.clone(),
                    task: task.to_string(),
                })?;
            let spec = with_node_overrides(node, spec)?;
            Ok(ResolvedNode {
                interface: spec.interface.clone(),
                kind: ResolvedKind::Task(id, Box::new(spec)),
            })
        }
        NodeSpecKind::Workflow(workflow) => {
            let (id, compiled) = (registry.workflow)(&TaskRef::parse(workflow))
                .ok_or_else(|| node_error(&node.id, format!("workflow {workflow:?} is not registered")))?;
            Ok(ResolvedNode {
                interface: compiled.interface.clone(),
                kind: ResolvedKind::Workflow(id, Box::new(compiled)),
            })
        }
        NodeSpecKind::LaunchPlan(plan_ref) => {
            let plan = (registry.launch_plan)(&TaskRef::parse(plan_ref))
                .ok_or_else(|| node_error(&node.id, format!("launch plan {plan_ref:?} is not registered")))?;
            if let Some(fixed) = node
                .inputs
                .keys()
                .find(|name| plan.fixed_inputs.contains_key(*name))
            {
                return Err(node_error(
                    &node.id,
                    format!("input {fixed:?} is fixed by launch plan {plan_ref} and cannot be bound"),
                ));
            }
            // Fixed inputs are not the node's; inputs with a default may be left unbound.
            let mut interface = plan.workflow.interface.clone();
            interface
                .inputs
                .retain(|name, _| !plan.fixed_inputs.contains_key(name));
            for (name, input_type) in interface.inputs.iter_mut() {
                if plan.default_inputs.contains_key(name) && !matches!(input_type, LiteralType::Optional(_)) {
                    *input_type = LiteralType::Optional(Box::new(input_type.clone()));
                }
            }
            Ok(ResolvedNode {
                interface,
                kind: ResolvedKind::LaunchPlan(Box::new(plan)),
            })
        }
        NodeSpecKind::Dynamic(dynamic) => {
            let (planner_id, planner) =
                (registry.task)(&TaskRef::parse(&dynamic.task)).ok_or_else(|| CompileError::UnknownTask {
                    node: node.id.clone(),
                    task: dynamic.task.clone(),
                })?;
            if planner.interface.outputs.get("workflow") != Some(&LiteralType::Struct) {
                return Err(node_error(
                    &node.id,
                    format!(
                        "the planner task {} needs an output `workflow` of type struct",
                        planner.name
                    ),
                ));
            }
            let mut tasks = BTreeMap::new();
            for used in &dynamic.uses {
                let resolved =
                    (registry.task)(&TaskRef::parse(used)).ok_or_else(|| CompileError::UnknownTask {
                        node: node.id.clone(),
                        task: used.clone(),
                    })?;
                tasks.insert(used.clone(), resolved);
            }
            let control = DynamicControl {
                plan: NodeBinding::Constant(Value::None),
                tasks,
                input_types: planner.interface.inputs.clone(),
                outputs: dynamic.outputs.clone(),
            };
            Ok(ResolvedNode {
                interface: Interface {
                    inputs: planner.interface.inputs.clone(),
                    outputs: dynamic.outputs.clone(),
                    ..Default::default()
                },
                kind: ResolvedKind::Dynamic(planner_id, Box::new(planner), Box::new(control)),
            })
        }
        NodeSpecKind::Map(map) => {
            let (task_id, task) =
                (registry.task)(&TaskRef::parse(&map.task)).ok_or_else(|| CompileError::UnknownTask {
                    node: node.id.clone(),
                    task: map.task.clone(),
                })?;
            let mut interface = task.interface.clone();
            let Some(item_type) = interface.inputs.get(&map.over).cloned() else {
                return Err(node_error(
                    &node.id,
                    format!(
                        "map over {:?}: task {} has no input of that name",
                        map.over, task.name
                    ),
                ));
            };
            interface
                .inputs
                .insert(map.over.clone(), LiteralType::List(Box::new(item_type.clone())));
            if map.concurrency == Some(0) {
                return Err(node_error(
                    &node.id,
                    "map concurrency must be at least 1".to_string(),
                ));
            }
            let ratio = map.min_success_ratio.unwrap_or(1.0);
            if !(ratio > 0.0 && ratio <= 1.0) {
                return Err(node_error(
                    &node.id,
                    format!("map min_success_ratio must be above 0 and at most 1, not {ratio}"),
                ));
            }
            for output in interface.outputs.values_mut() {
                let item = if ratio < 1.0 {
                    LiteralType::Optional(Box::new(output.clone()))
                } else {
                    output.clone()
                };
                *output = LiteralType::List(Box::new(item));
            }
            let task = with_node_overrides(node, task)?;
            if let Some(template) = &map.item_resources {
                crate::item_resources::check(template, &item_type, &task)
                    .map_err(|reason| node_error(&node.id, reason))?;
            }
            let control = MapControl {
                task_id,
                retries: node.retries.unwrap_or(task.retries),
                task: Box::new(task),
                over: map.over.clone(),
                concurrency: map.concurrency,
                min_success_ratio: ratio,
                item_resources: map.item_resources.clone().map(Box::new),
            };
            Ok(ResolvedNode {
                kind: ResolvedKind::Map(Box::new(control)),
                interface,
            })
        }
        NodeSpecKind::Gate(gate) => {
            if !node.inputs.is_empty() {
                return Err(node_error(
                    &node.id,
                    "a gate takes no inputs; order it with `after`".to_string(),
                ));
            }
            let timeout = |timeout: &Option<String>| -> Result<Option<i64>, CompileError> {
                timeout
                    .as_deref()
                    .map(|text| match parse_duration_millis(text) {
                        Ok(millis) if millis > 0 => Ok(millis),
                        Ok(_) => Err(node_error(&node.id, "gate timeout must be positive".to_string())),
                        Err(e) => Err(node_error(&node.id, format!("gate timeout: {e}"))),
                    })
                    .transpose()
            };
            let (compiled, outputs) = match gate {
                GateSpec::Sleep(duration) => {
                    let millis = parse_duration_millis(duration)
                        .map_err(|e| node_error(&node.id, format!("gate sleep: {e}")))?;
                    (CompiledGate::Sleep { millis }, BTreeMap::new())
                }
                GateSpec::Signal {
                    name,
                    value_type,
                    timeout: limit,
                } => {
                    validate_name("signal name", name).map_err(|e| node_error(&node.id, e.to_string()))?;
                    let outputs = value_type
                        .iter()
                        .map(|t| ("value".to_string(), t.clone()))
                        .collect();
                    let gate = CompiledGate::Signal {
                        name: name.clone(),
                        value_type: value_type.clone(),
                        timeout_millis: timeout(limit)?,
                    };
                    (gate, outputs)
                }
                GateSpec::Approve { timeout: limit } => (
                    CompiledGate::Approve {
                        timeout_millis: timeout(limit)?,
                    },
                    BTreeMap::new(),
                ),
            };
            Ok(ResolvedNode {
                kind: ResolvedKind::Gate(compiled),
                interface: Interface {
                    inputs: BTreeMap::new(),
                    outputs,
                    ..Default::default()
                },
            })
        }
        NodeSpecKind::Branch(branch) => {
            if !node.inputs.is_empty() {
                return Err(node_error(
                    &node.id,
                    "a branch takes no inputs; its conditions and cases read what they need".to_string(),
                ));
            }
            if branch.cases.is_empty() {
                return Err(node_error(
                    &node.id,
                    "a branch needs at least one case".to_string(),
                ));
            }
            let mut seen = BTreeSet::new();
            let mut arms = Vec::new();
            for case in &branch.cases {
                let condition =
                    parse_condition(&case.condition).map_err(|e| node_error(&node.id, e.to_string()))?;
                arms.push((condition, case.then.as_ref()));
            }
            let mut resolve_arm = |arm: &NodeSpec| -> Result<ResolvedNode, CompileError> {
                if !seen.insert(arm.id.clone()) {
                    return Err(node_error(
                        &node.id,
                        format!("case node id {:?} is used more than once", arm.id),
                    ));
                }
                resolve_node(arm, registry)
            };
            let mut cases = Vec::new();
            for (condition, arm) in arms {
                cases.push((condition, resolve_arm(arm)?));
            }
            let otherwise = match &branch.otherwise {
                Some(arm) => Some(Box::new(resolve_arm(arm)?)),
                None => None,
            };
            // The branch has the outputs every case has, with the same type.
            let mut arm_interfaces = cases
                .iter()
                .map(|(_, arm)| &arm.interface)
                .chain(otherwise.iter().map(|arm| &arm.interface));
            let mut outputs = arm_interfaces
                .next()
                .map(|i| i.outputs.clone())
                .unwrap_or_default();
            for interface in arm_interfaces {
                outputs.retain(|name, output_type| interface.outputs.get(name) == Some(output_type));
            }
            Ok(ResolvedNode {
                kind: ResolvedKind::Branch(cases, otherwise),
                interface: Interface {
                    inputs: BTreeMap::new(),
                    outputs,
                    ..Default::default()
                },
            })
        }
    }
}
