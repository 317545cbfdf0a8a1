//! The workflow compiler: turns a `WorkflowSpec` plus the task specs it references into a
//! `CompiledWorkflow`, or explains exactly what is wrong (naming the node and the variable).
//!
//! The compiled form embeds the resolved task specs, so an execution keeps running the versions it was
//! launched with even when newer ones are registered, and the log alone is enough to replay it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::condition::{parse_condition, Condition};
use crate::ids::{validate_name, Identifier};
use crate::spec::{
    content_digest, BindingSpec, FailurePolicy, GateSpec, Interface, NodeSpec, NodeSpecKind, RetryPolicy,
    TaskKind, TaskRef, TaskSpec, WorkflowSpec,
};
use crate::types::{parse_duration_millis, LiteralType, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("workflow has no nodes")]
    Empty,
    #[error("{0}")]
    InvalidName(String),
    #[error("node id {node:?} is used more than once")]
    DuplicateNodeId { node: String },
    #[error("node {node:?}: task {task:?} is not registered")]
    UnknownTask { node: String, task: String },
    #[error("node {node:?}: input {input:?} refers to unknown node {referenced:?}")]
    UnknownNode {
        node: String,
        input: String,
        referenced: String,
    },
    #[error("node {node:?}: input {input:?} refers to {referenced:?}.{output}, but task of {referenced:?} has no output {output:?}")]
    UnknownOutput {
        node: String,
        input: String,
        referenced: String,
        output: String,
    },
    #[error("node {node:?}: input {input:?} refers to workflow input {name:?}, which the workflow does not declare")]
    UnknownWorkflowInput {
        node: String,
        input: String,
        name: String,
    },
    #[error("node {node:?}: binds {input:?}, which its task does not declare as an input")]
    UnknownInput { node: String, input: String },
    #[error("node {node:?}: input {input:?} is not bound")]
    UnboundInput { node: String, input: String },
    #[error("node {node:?}: input {input:?} has type {expected}, but is bound to {found}")]
    TypeMismatch {
        node: String,
        input: String,
        expected: String,
        found: String,
    },
    #[error("node {node:?}: input {input:?}: constant does not fit: {reason}")]
    BadConstant {
        node: String,
        input: String,
        reason: String,
    },
    #[error("node {node:?}: input {input:?}: {reason}")]
    BadBinding {
        node: String,
        input: String,
        reason: String,
    },
    #[error("node {node:?}: 'after' names unknown node {referenced:?}")]
    UnknownAfter { node: String, referenced: String },
    #[error("the workflow has a cycle through nodes {}", nodes.join(" -> "))]
    Cycle { nodes: Vec<String> },
    #[error("workflow output {output:?}: {reason}")]
    BadOutput { output: String, reason: String },
    #[error("node {node:?}: {message}")]
    BadNode { node: String, message: String },
    #[error("workflow output {output:?} is declared but not bound")]
    UnboundOutput { output: String },
}

/// A resolved source for a node input or workflow output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeBinding {
    WorkflowInput(String),
    NodeOutput { node: usize, output: String },
    Constant(Value),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledNode {
    pub id: String,
    /// The task a task node runs. A control node (see `control`) carries a synthetic no-op task named after
    /// its kind (`branch`, `gate`, the subworkflow's name) so read models can show what it is.
    pub task_id: Identifier,
    pub task: TaskSpec,
    pub inputs: BTreeMap<String, NodeBinding>,
    /// Indices of every node this one waits for (data and `after` dependencies), sorted.
    pub upstream: Vec<usize>,
    pub retries: RetryPolicy,
    /// Set for nodes that run no task; the state machine settles them itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<Control>,
    /// Set for nodes inside a branch case: they run only if the branch takes that case, else are SKIPPED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_of: Option<CaseRef>,
    /// Set for the item nodes a map node adds at run time: the map node's index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_of: Option<usize>,
}

impl CompiledNode {
    pub fn is_task(&self) -> bool {
        self.control.is_none()
    }
}

/// A node inside case `case` of branch node `branch` (`case == cases.len()` is the `else`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRef {
    pub branch: usize,
    pub case: usize,
}

/// Nodes the state machine runs itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// The end of an inlined subworkflow: it waits for every inner node and its outputs are its `inputs`
    /// (the subworkflow's output bindings).
    Subworkflow {
        workflow: Identifier,
    },
    /// Decides once the nodes its conditions read are done, then waits for the taken case's nodes; its
    /// outputs are the taken case's exit node's outputs.
    Branch {
        cases: Vec<CompiledCase>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        otherwise: Option<CaseArm>,
        outputs: Vec<String>,
    },
    Gate(CompiledGate),
    /// Expands, once its inputs are ready, into one item node per element of input `over`; done when
    /// every item is, with each output gathered as a list in item order.
    Map(MapControl),
    /// Runs the workflow its planner (the node before it) wrote, inlined under it at run time; done when
    /// every planned node is, with the planned workflow's outputs.
    Dynamic(Box<DynamicControl>),
    /// Launches a child execution of a launch plan and takes its outputs when it succeeds.
    LaunchPlan(Box<ChildPlan>),
}

/// What a launch-plan node runs: the plan's workflow (compiled, with the plan's limits) and its inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildPlan {
    pub plan: Identifier,
    pub workflow: CompiledWorkflow,
    /// Used for inputs the node leaves unbound.
    pub default_inputs: BTreeMap<String, Value>,
    /// Always used; the node may not bind these.
    pub fixed_inputs: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DynamicControl {
    /// Where the planned spec comes from: the planner's output `workflow`.
    pub plan: NodeBinding,
    /// The tasks the plan may use, by the reference it writes (`name` or `name@version`).
    pub tasks: BTreeMap<String, (Identifier, TaskSpec)>,
    /// The types of the node's inputs, which the planned workflow's inputs must accept.
    pub input_types: BTreeMap<String, LiteralType>,
    pub outputs: BTreeMap<String, LiteralType>,
}

impl DynamicControl {
    /// Compiles a planned workflow spec (the planner's output) against the allowed tasks and checks its
    /// interface against the node's; the error says what is wrong, as a registration would.
    pub fn compile_plan(
        &self,
        node_id: &str,
        project: &Identifier,
        plan: &Value,
    ) -> Result<CompiledWorkflow, String> {
        let Value::Struct(json) = plan else {
            return Err(format!(
                "the planner's output `workflow` is a {}, not a workflow spec",
                plan.kind_name()
            ));
        };
        let spec: WorkflowSpec = serde_json::from_value(json.clone())
            .map_err(|e| format!("the planned workflow is not a valid workflow spec: {e}"))?;
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
        let compiled = compile_workflow_with(id, &spec, &registry).map_err(|e| {
            let allowed: Vec<&str> = self.tasks.keys().map(String::as_str).collect();
            format!(
                "the planned workflow does not compile: {e} (it may use the tasks: {})",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            )
        })?;
        for (input, wanted) in &compiled.interface.inputs {
            match self.input_types.get(input) {
                Some(given) if given.is_assignable_to(wanted) => {}
                Some(given) => {
                    return Err(format!(
                        "the planned workflow's input {input:?} has type {wanted}, but the node gives {given}"
                    ))
                }
                None if matches!(wanted, LiteralType::Optional(_)) => {}
                None => {
                    return Err(format!(
                        "the planned workflow needs input {input:?}, which the node does not have"
                    ))
                }
            }
        }
        for (output, wanted) in &self.outputs {
            match compiled.interface.outputs.get(output) {
                Some(found) if found.is_assignable_to(wanted) => {}
                Some(found) => {
                    return Err(format!(
                        "the planned workflow's output {output:?} is {found}, not {wanted}"
                    ))
                }
                None => return Err(format!("the planned workflow has no output {output:?}")),
            }
        }
        Ok(compiled)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MapControl {
    pub task_id: Identifier,
    pub task: Box<TaskSpec>,
    pub over: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    pub min_success_ratio: f64,
    /// Each item's retry budget.
    pub retries: RetryPolicy,
}

impl Control {
    fn kind_name(&self) -> &'static str {
        match self {
            Control::Subworkflow { .. } => "subworkflow",
            Control::Branch { .. } => "branch",
            Control::Gate(_) => "gate",
            Control::Map(_) => "map",
            Control::Dynamic(_) => "dynamic",
            Control::LaunchPlan(_) => "launch_plan",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledCase {
    /// The condition as written, for messages.
    pub text: String,
    pub condition: Condition<NodeBinding>,
    pub arm: CaseArm,
}

/// A case's nodes: the contiguous indices `first..=exit`; `exit` is the case's own node (whose outputs are
/// the branch's), the rest are nested inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseArm {
    pub first: usize,
    pub exit: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompiledGate {
    Sleep {
        millis: i64,
    },
    Signal {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value_type: Option<LiteralType>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_millis: Option<i64>,
    },
    Approve {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_millis: Option<i64>,
    },
}

impl CompiledGate {
    /// The signal name that opens this gate: the declared name, or `approve:NODE` for an approval (signal
    /// names cannot contain ':', so the two never collide).
    pub fn signal_name(&self, node_id: &str) -> Option<String> {
        match self {
            CompiledGate::Sleep { .. } => None,
            CompiledGate::Signal { name, .. } => Some(name.clone()),
            CompiledGate::Approve { .. } => Some(approval_signal(node_id)),
        }
    }
}

/// The signal an approval of node `node_id` sends.
pub fn approval_signal(node_id: &str) -> String {
    format!("approve:{node_id}")
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledWorkflow {
    pub id: Identifier,
    pub interface: Interface,
    /// In a topological order: every node comes after all of its upstream nodes. Subworkflows and branch
    /// cases are flattened in, each in a contiguous block that ends with its own node.
    pub nodes: Vec<CompiledNode>,
    pub outputs: BTreeMap<String, NodeBinding>,
    /// At most this many nodes run at once; `None` is no limit. Set from the workflow spec, or from the
    /// launch plan when an execution is launched through one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallelism: Option<u32>,
    #[serde(default, skip_serializing_if = "FailurePolicy::is_fail_fast")]
    pub on_failure: FailurePolicy,
}

impl CompiledWorkflow {
    /// A workflow of one node that runs a single task, so `aloft run TASK` goes through the same engine.
    pub fn for_single_task(task_id: Identifier, task: TaskSpec) -> CompiledWorkflow {
        let inputs = task
            .interface
            .inputs
            .keys()
            .map(|name| (name.clone(), NodeBinding::WorkflowInput(name.clone())));
        let outputs = task.interface.outputs.keys().map(|name| {
            (
                name.clone(),
                NodeBinding::NodeOutput {
                    node: 0,
                    output: name.clone(),
                },
            )
        });
        CompiledWorkflow {
            id: task_id.clone(),
            interface: task.interface.clone(),
            outputs: outputs.collect(),
            nodes: vec![CompiledNode {
                id: task.name.clone(),
                task_id,
                inputs: inputs.collect(),
                upstream: vec![],
                retries: task.retries,
                task,
                control: None,
                case_of: None,
                item_of: None,
            }],
            max_parallelism: None,
            on_failure: FailurePolicy::FailFast,
        }
    }
}

fn parse_binding(spec: &BindingSpec) -> Result<BindingSpec, String> {
    let BindingSpec::Shorthand(text) = spec else {
        return Ok(spec.clone());
    };
    match text.split_once('.') {
        Some(("inputs", input)) if !input.is_empty() => Ok(BindingSpec::WorkflowInput { input: input.to_string() }),
        Some((node, output)) if !node.is_empty() && !output.is_empty() => {
            Ok(BindingSpec::NodeOutput { node: node.to_string(), output: output.to_string() })
        }
        _ => Err(format!(
            "binding {text:?} is not understood; write inputs.NAME, NODE.OUTPUT, {{value: ...}}, {{input: NAME}} \
             or {{node: NODE, output: NAME}}"
        )),
    }
}

/// Looks up registered tasks, (for subworkflow nodes) registered workflows in their compiled form, and (for
/// launch-plan nodes) launch plans with what a child execution of them runs.
pub struct Registry<'a> {
    pub task: &'a dyn Fn(&TaskRef) -> Option<(Identifier, TaskSpec)>,
    pub workflow: &'a dyn Fn(&TaskRef) -> Option<(Identifier, CompiledWorkflow)>,
    pub launch_plan: &'a dyn Fn(&TaskRef) -> Option<ChildPlan>,
}

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
    spec.validate_names().map_err(CompileError::InvalidName)?;
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

/// A node with what it references looked up, before its bindings are checked.
struct ResolvedNode {
    kind: ResolvedKind,
    interface: Interface,
}

enum ResolvedKind {
    Task(Identifier, Box<TaskSpec>),
    Workflow(Identifier, Box<CompiledWorkflow>),
    Gate(CompiledGate),
    Branch(Vec<(Condition<String>, ResolvedNode)>, Option<Box<ResolvedNode>>),
    Map(Box<MapControl>),
    /// The planner, and the control with `plan` still unset.
    Dynamic(Identifier, Box<TaskSpec>, Box<DynamicControl>),
    LaunchPlan(Box<ChildPlan>),
}

fn node_error(node: &str, message: String) -> CompileError {
    CompileError::BadNode {
        node: node.to_string(),
        message,
    }
}

/// `task` with the node's own timeout (checked like a task's) and `interruptible` flag, where it sets them.
fn with_node_overrides(node: &NodeSpec, mut task: TaskSpec) -> Result<TaskSpec, CompileError> {
    if let Some(interruptible) = node.interruptible {
        task.interruptible = interruptible;
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

fn resolve_node(node: &NodeSpec, registry: &Registry) -> Result<ResolvedNode, CompileError> {
    validate_name("node id", &node.id).map_err(|e| CompileError::InvalidName(e.to_string()))?;
    let runs_tasks = node.task.is_some() || node.map.is_some();
    let overrides = [
        (node.timeout.is_some(), "a timeout (a gate has its own)"),
        (node.interruptible.is_some(), "an interruptible flag"),
    ];
    if let Some((_, what)) = overrides.iter().find(|(set, _)| *set && !runs_tasks) {
        return Err(node_error(
            &node.id,
            format!("only task and map nodes take {what}"),
        ));
    }
    match node.kind().map_err(CompileError::InvalidName)? {
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
                .insert(map.over.clone(), LiteralType::List(Box::new(item_type)));
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
            let control = MapControl {
                task_id,
                retries: node.retries.unwrap_or(task.retries),
                task: Box::new(task),
                over: map.over.clone(),
                concurrency: map.concurrency,
                min_success_ratio: ratio,
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
                let condition = parse_condition(&case.condition).map_err(|e| node_error(&node.id, e))?;
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
                },
            })
        }
    }
}

/// A node with its bindings checked; node references are indices of the top-level spec nodes.
struct CheckedNode {
    id: String,
    kind: CheckedKind,
    inputs: BTreeMap<String, NodeBinding>,
    after: Vec<usize>,
    retries: Option<RetryPolicy>,
    interface: Interface,
}

enum CheckedKind {
    Task(Identifier, Box<TaskSpec>),
    Workflow(Identifier, Box<CompiledWorkflow>),
    Gate(CompiledGate),
    /// Cases as (condition as written, condition, node), and the `else`.
    Branch(
        Vec<(String, Condition<NodeBinding>, CheckedNode)>,
        Option<Box<CheckedNode>>,
    ),
    Map(Box<MapControl>),
    Dynamic(Identifier, Box<TaskSpec>, Box<DynamicControl>),
    LaunchPlan(Box<ChildPlan>),
}

impl CheckedNode {
    /// The top-level nodes this node (and everything nested in it) reads from or runs after.
    fn collect_deps(&self, deps: &mut BTreeSet<usize>) {
        deps.extend(self.after.iter().copied());
        deps.extend(self.inputs.values().filter_map(binding_node));
        if let CheckedKind::Branch(cases, otherwise) = &self.kind {
            for (_, condition, arm) in cases {
                deps.extend(condition.refs().into_iter().filter_map(binding_node));
                arm.collect_deps(deps);
            }
            if let Some(arm) = otherwise {
                arm.collect_deps(deps);
            }
        }
    }
}

fn binding_node(binding: &NodeBinding) -> Option<usize> {
    match binding {
        NodeBinding::NodeOutput { node, .. } => Some(*node),
        _ => None,
    }
}

struct Scope<'a> {
    spec: &'a WorkflowSpec,
    index_by_id: &'a HashMap<&'a str, usize>,
    interfaces: &'a [Interface],
}

impl Scope<'_> {
    fn check(&self, node: &NodeSpec, resolved: ResolvedNode) -> Result<CheckedNode, CompileError> {
        let interface = resolved.interface;
        for input in node.inputs.keys() {
            if !interface.inputs.contains_key(input) {
                return Err(CompileError::UnknownInput {
                    node: node.id.clone(),
                    input: input.clone(),
                });
            }
        }
        let mut inputs = BTreeMap::new();
        for (input, expected_type) in &interface.inputs {
            let Some(binding_spec) = node.inputs.get(input) else {
                if matches!(expected_type, LiteralType::Optional(_)) {
                    inputs.insert(input.clone(), NodeBinding::Constant(Value::None));
                    continue;
                }
                return Err(CompileError::UnboundInput {
                    node: node.id.clone(),
                    input: input.clone(),
                });
            };
            let binding = self
                .resolve_binding(binding_spec, expected_type)
                .map_err(|failure| failure.into_error(&node.id, input))?;
            inputs.insert(input.clone(), binding);
        }
        let mut after = Vec::new();
        for referenced in &node.after {
            let index =
                *self
                    .index_by_id
                    .get(referenced.as_str())
                    .ok_or_else(|| CompileError::UnknownAfter {
                        node: node.id.clone(),
                        referenced: referenced.clone(),
                    })?;
            after.push(index);
        }
        let kind = match resolved.kind {
            ResolvedKind::Task(id, task) => CheckedKind::Task(id, task),
            ResolvedKind::Workflow(id, compiled) => CheckedKind::Workflow(id, compiled),
            ResolvedKind::Gate(gate) => CheckedKind::Gate(gate),
            ResolvedKind::Map(map) => CheckedKind::Map(map),
            ResolvedKind::Dynamic(id, planner, control) => CheckedKind::Dynamic(id, planner, control),
            ResolvedKind::LaunchPlan(plan) => CheckedKind::LaunchPlan(plan),
            ResolvedKind::Branch(cases, otherwise) => {
                let Some(branch) = &node.branch else {
                    return Err(node_error(&node.id, "branch without cases".to_string()));
                };
                let mut checked_cases = Vec::new();
                for ((condition, arm), case_spec) in cases.into_iter().zip(&branch.cases) {
                    let condition = self.check_condition(&node.id, &condition)?;
                    checked_cases.push((
                        case_spec.condition.clone(),
                        condition,
                        self.check(&case_spec.then, arm)?,
                    ));
                }
                let otherwise = match (otherwise, &branch.otherwise) {
                    (Some(arm), Some(arm_spec)) => Some(Box::new(self.check(arm_spec, *arm)?)),
                    _ => None,
                };
                CheckedKind::Branch(checked_cases, otherwise)
            }
        };
        Ok(CheckedNode {
            id: node.id.clone(),
            kind,
            inputs,
            after,
            retries: node.retries,
            interface,
        })
    }

    fn check_condition(
        &self,
        node: &str,
        condition: &Condition<String>,
    ) -> Result<Condition<NodeBinding>, CompileError> {
        let mut types = HashMap::new();
        let resolved = condition.try_map(&mut |reference: &String| {
            let (binding, found) = self
                .reference(&BindingSpec::Shorthand(reference.clone()))
                .map_err(|failure| node_error(node, format!("condition: {}", failure.reason())))?;
            types.insert(reference.clone(), found);
            Ok::<_, CompileError>(binding)
        })?;
        condition
            .check_types(&|reference: &String| types.get(reference).cloned().unwrap_or(LiteralType::Struct))
            .map_err(|e| node_error(node, e))?;
        Ok(resolved)
    }

    /// Resolves a reference to a workflow input or an upstream output, with its type.
    fn reference(&self, binding_spec: &BindingSpec) -> Result<(NodeBinding, LiteralType), BindingFailure> {
        match parse_binding(binding_spec).map_err(BindingFailure::Syntax)? {
            BindingSpec::WorkflowInput { input } => {
                let found = self
                    .spec
                    .interface
                    .inputs
                    .get(&input)
                    .ok_or_else(|| BindingFailure::UnknownWorkflowInput(input.clone()))?;
                Ok((NodeBinding::WorkflowInput(input), found.clone()))
            }
            BindingSpec::NodeOutput { node, output } => {
                let upstream_index = *self
                    .index_by_id
                    .get(node.as_str())
                    .ok_or_else(|| BindingFailure::UnknownNode(node.clone()))?;
                let found = self.interfaces[upstream_index]
                    .outputs
                    .get(&output)
                    .ok_or_else(|| BindingFailure::UnknownOutput(node.clone(), output.clone()))?;
                Ok((
                    NodeBinding::NodeOutput {
                        node: upstream_index,
                        output,
                    },
                    found.clone(),
                ))
            }
            BindingSpec::Constant { .. } | BindingSpec::Shorthand(_) => {
                Err(BindingFailure::Syntax("expected a reference".to_string()))
            }
        }
    }

    fn resolve_binding(
        &self,
        binding_spec: &BindingSpec,
        expected_type: &LiteralType,
    ) -> Result<NodeBinding, BindingFailure> {
        if let BindingSpec::Constant { value } = binding_spec {
            return expected_type
                .from_json(value)
                .map(NodeBinding::Constant)
                .map_err(BindingFailure::BadConstant);
        }
        let (binding, found) = self.reference(binding_spec)?;
        if !found.is_assignable_to(expected_type) {
            let what = match &binding {
                NodeBinding::WorkflowInput(input) => format!("workflow input {input:?}"),
                NodeBinding::NodeOutput { node, output } => {
                    format!("{}.{output}", self.spec.nodes[*node].id)
                }
                NodeBinding::Constant(_) => "a constant".to_string(),
            };
            return Err(BindingFailure::TypeMismatch(
                expected_type.to_string(),
                format!("{what} of type {found}"),
            ));
        }
        Ok(binding)
    }
}

/// Lays checked nodes out as the flat, topologically ordered list the state machine runs.
struct Emitter {
    workflow_id: Identifier,
    nodes: Vec<CompiledNode>,
    /// Top-level spec node index -> the index of the node holding its outputs.
    exit_of: Vec<usize>,
}

/// `child`'s nodes renumbered to start at index `base`, with ids under `id/`: its workflow inputs become
/// `inputs` (bindings in the parent), every node also waits for `after`, and nodes outside the child's own
/// branch cases sit in `case_of`. Returns the nodes and the child's output bindings, renumbered the same way.
pub(crate) fn inline_workflow(
    child: &CompiledWorkflow,
    id: &str,
    base: usize,
    inputs: &BTreeMap<String, NodeBinding>,
    after: &BTreeSet<usize>,
    case_of: Option<CaseRef>,
) -> (Vec<CompiledNode>, BTreeMap<String, NodeBinding>) {
    let substitute = |binding: &NodeBinding| -> NodeBinding {
        match binding {
            NodeBinding::WorkflowInput(name) => inputs
                .get(name)
                .cloned()
                .unwrap_or(NodeBinding::Constant(Value::None)),
            NodeBinding::NodeOutput { node, output } => NodeBinding::NodeOutput {
                node: node + base,
                output: output.clone(),
            },
            constant => constant.clone(),
        }
    };
    let mut nodes = Vec::with_capacity(child.nodes.len());
    for inner in &child.nodes {
        let inner_inputs: BTreeMap<String, NodeBinding> = inner
            .inputs
            .iter()
            .map(|(name, b)| (name.clone(), substitute(b)))
            .collect();
        let mut upstream: BTreeSet<usize> = inner.upstream.iter().map(|u| u + base).collect();
        upstream.extend(after.iter().copied());
        upstream.extend(inner_inputs.values().filter_map(binding_node));
        let control = inner.control.as_ref().map(|control| match control {
            Control::Branch {
                cases,
                otherwise,
                outputs,
            } => {
                let shift = |arm: &CaseArm| CaseArm {
                    first: arm.first + base,
                    exit: arm.exit + base,
                };
                let cases = cases
                    .iter()
                    .map(|case| CompiledCase {
                        text: case.text.clone(),
                        condition: map_condition(&case.condition, &substitute),
                        arm: shift(&case.arm),
                    })
                    .collect::<Vec<_>>();
                for case in &cases {
                    upstream.extend(case.condition.refs().into_iter().filter_map(binding_node));
                }
                Control::Branch {
                    cases,
                    otherwise: otherwise.as_ref().map(shift),
                    outputs: outputs.clone(),
                }
            }
            Control::Dynamic(dynamic) => {
                let plan = substitute(&dynamic.plan);
                upstream.extend(binding_node(&plan));
                Control::Dynamic(Box::new(DynamicControl {
                    plan,
                    ..(**dynamic).clone()
                }))
            }
            other => other.clone(),
        });
        nodes.push(CompiledNode {
            id: format!("{id}/{}", inner.id),
            task_id: inner.task_id.clone(),
            task: inner.task.clone(),
            inputs: inner_inputs,
            upstream: upstream.into_iter().collect(),
            retries: inner.retries,
            control,
            case_of: match inner.case_of {
                Some(inner_case) => Some(CaseRef {
                    branch: inner_case.branch + base,
                    case: inner_case.case,
                }),
                None => case_of,
            },
            item_of: None,
        });
    }
    let outputs = child
        .outputs
        .iter()
        .map(|(name, b)| (name.clone(), substitute(b)))
        .collect();
    (nodes, outputs)
}

fn map_condition(
    condition: &Condition<NodeBinding>,
    f: &dyn Fn(&NodeBinding) -> NodeBinding,
) -> Condition<NodeBinding> {
    match condition.try_map(&mut |b| Ok::<_, std::convert::Infallible>(f(b))) {
        Ok(mapped) => mapped,
        Err(never) => match never {},
    }
}

/// Marks case members while their branch's index is not yet known.
const BRANCH_PENDING: usize = usize::MAX;

impl Emitter {
    fn map_binding(&self, binding: &NodeBinding) -> NodeBinding {
        match binding {
            NodeBinding::NodeOutput { node, output } => NodeBinding::NodeOutput {
                node: self.exit_of[*node],
                output: output.clone(),
            },
            other => other.clone(),
        }
    }

    fn control_node(id: String, workflow_id: &Identifier, control: Control) -> CompiledNode {
        let name = match &control {
            Control::Subworkflow { workflow } => workflow.name.clone(),
            other => other.kind_name().to_string(),
        };
        let version = match &control {
            Control::Subworkflow { workflow } => workflow.version.clone(),
            _ => String::new(),
        };
        CompiledNode {
            id,
            task_id: Identifier {
                project: workflow_id.project.clone(),
                domain: workflow_id.domain.clone(),
                name: name.clone(),
                version: version.clone(),
            },
            task: TaskSpec {
                name,
                version: Some(version),
                interface: Interface::default(),
                run: TaskKind::Noop,
                retries: RetryPolicy { user: 0, system: 0 },
                timeout: None,
                cache: None,
                resources: None,
                interruptible: false,
            },
            inputs: BTreeMap::new(),
            upstream: Vec::new(),
            retries: RetryPolicy { user: 0, system: 0 },
            control: Some(control),
            case_of: None,
            item_of: None,
        }
    }

    /// Appends `node` (and what it contains) and returns the index of the node holding its outputs.
    /// `outer_after` are compiled indices every emitted node must also wait for.
    fn emit(
        &mut self,
        node: &CheckedNode,
        prefix: &str,
        case_of: Option<CaseRef>,
        outer_after: &[usize],
    ) -> usize {
        let id = format!("{prefix}{}", node.id);
        let inputs: BTreeMap<String, NodeBinding> = node
            .inputs
            .iter()
            .map(|(name, b)| (name.clone(), self.map_binding(b)))
            .collect();
        let mut after: BTreeSet<usize> = outer_after.iter().copied().collect();
        after.extend(node.after.iter().map(|&n| self.exit_of[n]));
        let with_inputs = |after: &BTreeSet<usize>, inputs: &BTreeMap<String, NodeBinding>| -> Vec<usize> {
            let mut upstream = after.clone();
            upstream.extend(inputs.values().filter_map(binding_node));
            upstream.into_iter().collect()
        };
        match &node.kind {
            CheckedKind::Task(task_id, task) => {
                self.nodes.push(CompiledNode {
                    id,
                    task_id: task_id.clone(),
                    upstream: with_inputs(&after, &inputs),
                    inputs,
                    retries: node.retries.unwrap_or(task.retries),
                    task: (**task).clone(),
                    control: None,
                    case_of,
                    item_of: None,
                });
            }
            CheckedKind::Dynamic(planner_id, planner, control) => {
                // The planner runs as its own task node `ID/plan`; the dynamic node waits for it.
                let plan_index = self.nodes.len();
                self.nodes.push(CompiledNode {
                    id: format!("{id}/plan"),
                    task_id: planner_id.clone(),
                    upstream: with_inputs(&after, &inputs),
                    inputs: inputs.clone(),
                    retries: node.retries.unwrap_or(planner.retries),
                    task: (**planner).clone(),
                    control: None,
                    case_of,
                    item_of: None,
                });
                let control = DynamicControl {
                    plan: NodeBinding::NodeOutput {
                        node: plan_index,
                        output: "workflow".to_string(),
                    },
                    ..(**control).clone()
                };
                let mut compiled =
                    Self::control_node(id, &self.workflow_id, Control::Dynamic(Box::new(control)));
                let mut upstream: BTreeSet<usize> = with_inputs(&after, &inputs).into_iter().collect();
                upstream.insert(plan_index);
                compiled.upstream = upstream.into_iter().collect();
                compiled.inputs = inputs;
                compiled.case_of = case_of;
                self.nodes.push(compiled);
            }
            CheckedKind::LaunchPlan(plan) => {
                let mut compiled =
                    Self::control_node(id, &self.workflow_id, Control::LaunchPlan(plan.clone()));
                compiled.task_id = plan.plan.clone();
                compiled.upstream = with_inputs(&after, &inputs);
                compiled.inputs = inputs;
                compiled.case_of = case_of;
                self.nodes.push(compiled);
            }
            CheckedKind::Map(map) => {
                let mut compiled = Self::control_node(id, &self.workflow_id, Control::Map((**map).clone()));
                compiled.upstream = with_inputs(&after, &inputs);
                compiled.inputs = inputs;
                compiled.case_of = case_of;
                self.nodes.push(compiled);
            }
            CheckedKind::Gate(gate) => {
                let mut compiled = Self::control_node(id, &self.workflow_id, Control::Gate(gate.clone()));
                compiled.upstream = after.into_iter().collect();
                compiled.case_of = case_of;
                self.nodes.push(compiled);
            }
            CheckedKind::Workflow(workflow_id, child) => {
                let base = self.nodes.len();
                let (inner, outputs) = inline_workflow(child, &id, base, &inputs, &after, case_of);
                self.nodes.extend(inner);
                let mut end = Self::control_node(
                    id,
                    workflow_id,
                    Control::Subworkflow {
                        workflow: workflow_id.clone(),
                    },
                );
                end.inputs = outputs;
                end.upstream = (base..self.nodes.len()).collect();
                end.case_of = case_of;
                self.nodes.push(end);
            }
            CheckedKind::Branch(cases, otherwise) => {
                let arm_prefix = format!("{id}/");
                let mut compiled_cases = Vec::new();
                let first_member = self.nodes.len();
                for (case, (text, condition, arm)) in cases.iter().enumerate() {
                    let first = self.nodes.len();
                    let member_of = Some(CaseRef {
                        branch: BRANCH_PENDING,
                        case,
                    });
                    let exit = self.emit(
                        arm,
                        &arm_prefix,
                        member_of,
                        &after.iter().copied().collect::<Vec<_>>(),
                    );
                    let condition = map_condition(condition, &|b| self.map_binding(b));
                    compiled_cases.push(CompiledCase {
                        text: text.clone(),
                        condition,
                        arm: CaseArm { first, exit },
                    });
                }
                let otherwise_arm = otherwise.as_ref().map(|arm| {
                    let first = self.nodes.len();
                    let member_of = Some(CaseRef {
                        branch: BRANCH_PENDING,
                        case: cases.len(),
                    });
                    let exit = self.emit(
                        arm,
                        &arm_prefix,
                        member_of,
                        &after.iter().copied().collect::<Vec<_>>(),
                    );
                    CaseArm { first, exit }
                });
                let branch_index = self.nodes.len();
                for member in &mut self.nodes[first_member..] {
                    if let Some(case) = member.case_of.as_mut().filter(|c| c.branch == BRANCH_PENDING) {
                        case.branch = branch_index;
                    }
                }
                let mut upstream: BTreeSet<usize> = (first_member..branch_index).collect();
                upstream.extend(after.iter().copied());
                for case in &compiled_cases {
                    upstream.extend(case.condition.refs().into_iter().filter_map(binding_node));
                }
                let mut compiled = Self::control_node(
                    id,
                    &self.workflow_id,
                    Control::Branch {
                        cases: compiled_cases,
                        otherwise: otherwise_arm,
                        outputs: node.interface.outputs.keys().cloned().collect(),
                    },
                );
                compiled.upstream = upstream.into_iter().collect();
                compiled.case_of = case_of;
                self.nodes.push(compiled);
            }
        }
        self.nodes.len() - 1
    }
}
enum BindingFailure {
    UnknownNode(String),
    UnknownOutput(String, String),
    UnknownWorkflowInput(String),
    TypeMismatch(String, String),
    BadConstant(String),
    Syntax(String),
}

impl BindingFailure {
    fn into_error(self, node: &str, input: &str) -> CompileError {
        let (node, input) = (node.to_string(), input.to_string());
        match self {
            BindingFailure::UnknownNode(referenced) => CompileError::UnknownNode {
                node,
                input,
                referenced,
            },
            BindingFailure::UnknownOutput(referenced, output) => CompileError::UnknownOutput {
                node,
                input,
                referenced,
                output,
            },
            BindingFailure::UnknownWorkflowInput(name) => {
                CompileError::UnknownWorkflowInput { node, input, name }
            }
            BindingFailure::TypeMismatch(expected, found) => CompileError::TypeMismatch {
                node,
                input,
                expected,
                found,
            },
            BindingFailure::BadConstant(reason) => CompileError::BadConstant { node, input, reason },
            BindingFailure::Syntax(reason) => CompileError::BadBinding { node, input, reason },
        }
    }

    fn reason(self) -> String {
        match self {
            BindingFailure::UnknownNode(referenced) => format!("refers to unknown node {referenced:?}"),
            BindingFailure::UnknownOutput(node, output) => format!("node {node:?} has no output {output:?}"),
            BindingFailure::UnknownWorkflowInput(name) => {
                format!("refers to undeclared workflow input {name:?}")
            }
            BindingFailure::TypeMismatch(expected, found) => {
                format!("has type {expected}, but is bound to {found}")
            }
            BindingFailure::BadConstant(reason) | BindingFailure::Syntax(reason) => reason,
        }
    }
}

/// Kahn's algorithm; on a cycle, reports the nodes of one cycle in order.
fn topological_order(spec: &WorkflowSpec, upstream: &[Vec<usize>]) -> Result<Vec<usize>, CompileError> {
    let count = upstream.len();
    let mut downstream = vec![Vec::new(); count];
    let mut remaining_upstream = vec![0usize; count];
    for (node, ups) in upstream.iter().enumerate() {
        remaining_upstream[node] = ups.len();
        for &up in ups {
            downstream[up].push(node);
        }
    }
    let mut ready: Vec<usize> = (0..count).filter(|&n| remaining_upstream[n] == 0).rev().collect();
    let mut order = Vec::with_capacity(count);
    while let Some(node) = ready.pop() {
        order.push(node);
        for &down in downstream[node].iter().rev() {
            remaining_upstream[down] -= 1;
            if remaining_upstream[down] == 0 {
                ready.push(down);
            }
        }
    }
    if order.len() == count {
        return Ok(order);
    }
    // Walk upstream edges among the unordered nodes until one repeats: that is a cycle. Every unordered
    // node has an unordered upstream node (else Kahn's algorithm would have ordered it), so the walk ends.
    let mut in_cycle_candidates: Vec<bool> = vec![true; count];
    for &done in &order {
        in_cycle_candidates[done] = false;
    }
    let start = in_cycle_candidates.iter().position(|&c| c).unwrap_or(0);
    let mut path = vec![start];
    let mut current = start;
    while let Some(&next) = upstream[current].iter().find(|&&u| in_cycle_candidates[u]) {
        if let Some(position) = path.iter().position(|&p| p == next) {
            let mut cycle: Vec<String> = path[position..]
                .iter()
                .rev()
                .map(|&n| spec.nodes[n].id.clone())
                .collect();
            cycle.push(cycle[0].clone());
            return Err(CompileError::Cycle { nodes: cycle });
        }
        path.push(next);
        current = next;
    }
    Err(CompileError::Cycle {
        nodes: path.iter().map(|&n| spec.nodes[n].id.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{NodeSpec, TaskKind};

    fn task(name: &str, inputs: &[(&str, &str)], outputs: &[(&str, &str)]) -> (Identifier, TaskSpec) {
        let interface = Interface {
            inputs: inputs
                .iter()
                .map(|(n, t)| (n.to_string(), t.parse().unwrap()))
                .collect(),
            outputs: outputs
                .iter()
                .map(|(n, t)| (n.to_string(), t.parse().unwrap()))
                .collect(),
        };
        let spec = TaskSpec {
            name: name.to_string(),
            version: Some("v1".into()),
            interface,
            run: TaskKind::Noop,
            retries: RetryPolicy::default(),
            timeout: None,
            cache: None,
            resources: None,
            interruptible: false,
        };
        let id = Identifier {
            project: "p".into(),
            domain: "d".into(),
            name: name.into(),
            version: "v1".into(),
        };
        (id, spec)
    }

    fn resolver(tasks: Vec<(Identifier, TaskSpec)>) -> impl Fn(&TaskRef) -> Option<(Identifier, TaskSpec)> {
        move |r: &TaskRef| tasks.iter().find(|(id, _)| id.name == r.name).cloned()
    }

    fn node(id: &str, task: &str, inputs: &[(&str, &str)]) -> NodeSpec {
        let inputs = inputs
            .iter()
            .map(|(k, v)| (k.to_string(), BindingSpec::Shorthand(v.to_string())))
            .collect();
        NodeSpec::task(id, task, inputs)
    }

    fn workflow(nodes: Vec<NodeSpec>) -> WorkflowSpec {
        WorkflowSpec {
            name: "wf".into(),
            version: None,
            interface: Interface {
                inputs: [("x".to_string(), LiteralType::Integer)].into(),
                outputs: BTreeMap::new(),
            },
            nodes,
            outputs: BTreeMap::new(),
            max_parallelism: None,
            on_failure: FailurePolicy::FailFast,
        }
    }

    fn wf_id() -> Identifier {
        Identifier {
            project: "p".into(),
            domain: "d".into(),
            name: "wf".into(),
            version: "1".into(),
        }
    }

    fn tasks() -> Vec<(Identifier, TaskSpec)> {
        vec![
            task("inc", &[("n", "integer")], &[("n", "integer")]),
            task("say", &[("s", "string")], &[("s", "string")]),
        ]
    }

    #[test]
    fn compiles_in_topological_order() {
        let spec = workflow(vec![
            node("b", "inc", &[("n", "a.n")]),
            node("a", "inc", &[("n", "inputs.x")]),
        ]);
        let compiled = compile_workflow(wf_id(), &spec, &resolver(tasks())).unwrap();
        assert_eq!(compiled.nodes[0].id, "a");
        assert_eq!(compiled.nodes[1].upstream, vec![0]);
    }

    #[test]
    fn rejects_cycles_naming_the_nodes() {
        let spec = workflow(vec![
            node("a", "inc", &[("n", "b.n")]),
            node("b", "inc", &[("n", "a.n")]),
        ]);
        let error = compile_workflow(wf_id(), &spec, &resolver(tasks())).unwrap_err();
        assert!(matches!(error, CompileError::Cycle { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("a") && message.contains("b"), "{message}");
    }

    #[test]
    fn rejects_type_mismatch_naming_node_and_input() {
        let spec = workflow(vec![
            node("a", "inc", &[("n", "inputs.x")]),
            node("b", "say", &[("s", "a.n")]),
        ]);
        let message = compile_workflow(wf_id(), &spec, &resolver(tasks()))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("\"b\"") && message.contains("\"s\"") && message.contains("integer"),
            "{message}"
        );
    }

    #[test]
    fn rejects_unknown_references_and_unbound_inputs() {
        let unknown_task = workflow(vec![node("a", "nope", &[])]);
        assert!(matches!(
            compile_workflow(wf_id(), &unknown_task, &resolver(tasks())),
            Err(CompileError::UnknownTask { .. })
        ));
        let unknown_node = workflow(vec![node("a", "inc", &[("n", "ghost.n")])]);
        assert!(matches!(
            compile_workflow(wf_id(), &unknown_node, &resolver(tasks())),
            Err(CompileError::UnknownNode { .. })
        ));
        let unbound = workflow(vec![node("a", "inc", &[])]);
        assert_eq!(
            compile_workflow(wf_id(), &unbound, &resolver(tasks())).unwrap_err(),
            CompileError::UnboundInput {
                node: "a".into(),
                input: "n".into()
            }
        );
        let duplicate = workflow(vec![
            node("a", "inc", &[("n", "inputs.x")]),
            node("a", "inc", &[("n", "inputs.x")]),
        ]);
        assert!(matches!(
            compile_workflow(wf_id(), &duplicate, &resolver(tasks())),
            Err(CompileError::DuplicateNodeId { .. })
        ));
        let undeclared = workflow(vec![node("a", "inc", &[("n", "inputs.y")])]);
        assert!(matches!(
            compile_workflow(wf_id(), &undeclared, &resolver(tasks())),
            Err(CompileError::UnknownWorkflowInput { .. })
        ));
    }
}
