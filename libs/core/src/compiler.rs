//! The workflow compiler: turns a `WorkflowSpec` plus the task specs it references into a
//! `CompiledWorkflow`, or explains exactly what is wrong (naming the node and the variable).
//!
//! The compiled form embeds the resolved task specs, so an execution keeps running the versions it was
//! launched with even when newer ones are registered, and the log alone is enough to replay it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::ids::Identifier;
use crate::spec::{BindingSpec, FailurePolicy, Interface, RetryPolicy, TaskRef, TaskSpec, WorkflowSpec};
use crate::types::{LiteralType, Value};

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
    pub task_id: Identifier,
    pub task: TaskSpec,
    pub inputs: BTreeMap<String, NodeBinding>,
    /// Indices of every node this one waits for (data and `after` dependencies), sorted.
    pub upstream: Vec<usize>,
    pub retries: RetryPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompiledWorkflow {
    pub id: Identifier,
    pub interface: Interface,
    /// In a topological order: every node comes after all of its upstream nodes.
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

/// Compiles `spec` into a type-checked DAG. `resolve_task` looks up registered tasks by reference.
pub fn compile_workflow(
    workflow_id: Identifier,
    spec: &WorkflowSpec,
    resolve_task: &dyn Fn(&TaskRef) -> Option<(Identifier, TaskSpec)>,
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
    let mut resolved_tasks = Vec::with_capacity(spec.nodes.len());
    for node in &spec.nodes {
        let task = resolve_task(&TaskRef::parse(&node.task)).ok_or_else(|| CompileError::UnknownTask {
            node: node.id.clone(),
            task: node.task.clone(),
        })?;
        resolved_tasks.push(task);
    }

    // Resolve bindings and check types against the referenced outputs.
    let mut bindings_per_node = Vec::with_capacity(spec.nodes.len());
    let mut upstream_per_node = Vec::with_capacity(spec.nodes.len());
    for (index, node) in spec.nodes.iter().enumerate() {
        let task_interface = &resolved_tasks[index].1.interface;
        let mut upstream = BTreeSet::new();
        let mut bindings = BTreeMap::new();
        for input in node.inputs.keys() {
            if !task_interface.inputs.contains_key(input) {
                return Err(CompileError::UnknownInput {
                    node: node.id.clone(),
                    input: input.clone(),
                });
            }
        }
        for (input, expected_type) in &task_interface.inputs {
            let Some(binding_spec) = node.inputs.get(input) else {
                if matches!(expected_type, LiteralType::Optional(_)) {
                    bindings.insert(input.clone(), NodeBinding::Constant(Value::None));
                    continue;
                }
                return Err(CompileError::UnboundInput {
                    node: node.id.clone(),
                    input: input.clone(),
                });
            };
            let binding = resolve_binding(spec, &index_by_id, &resolved_tasks, binding_spec, expected_type)
                .map_err(|failure| failure.into_error(&node.id, input))?;
            if let NodeBinding::NodeOutput {
                node: upstream_index, ..
            } = &binding
            {
                upstream.insert(*upstream_index);
            }
            bindings.insert(input.clone(), binding);
        }
        for after in &node.after {
            let upstream_index =
                *index_by_id
                    .get(after.as_str())
                    .ok_or_else(|| CompileError::UnknownAfter {
                        node: node.id.clone(),
                        referenced: after.clone(),
                    })?;
            upstream.insert(upstream_index);
        }
        bindings_per_node.push(bindings);
        upstream_per_node.push(upstream.into_iter().collect::<Vec<_>>());
    }

    let order = topological_order(spec, &upstream_per_node)?;
    let mut new_index = vec![0usize; order.len()];
    for (position, &old) in order.iter().enumerate() {
        new_index[old] = position;
    }
    let remap = |binding: NodeBinding| match binding {
        NodeBinding::NodeOutput { node, output } => NodeBinding::NodeOutput {
            node: new_index[node],
            output,
        },
        other => other,
    };

    let mut outputs = BTreeMap::new();
    for (output, expected_type) in &spec.interface.outputs {
        let binding_spec = spec
            .outputs
            .get(output)
            .ok_or_else(|| CompileError::UnboundOutput {
                output: output.clone(),
            })?;
        let binding = resolve_binding(spec, &index_by_id, &resolved_tasks, binding_spec, expected_type)
            .map_err(|failure| CompileError::BadOutput {
                output: output.clone(),
                reason: failure.reason(),
            })?;
        outputs.insert(output.clone(), remap(binding));
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

    let mut nodes = Vec::with_capacity(order.len());
    for &old in &order {
        let node_spec = &spec.nodes[old];
        let (task_id, task) = resolved_tasks[old].clone();
        let mut upstream: Vec<usize> = upstream_per_node[old].iter().map(|&u| new_index[u]).collect();
        upstream.sort_unstable();
        nodes.push(CompiledNode {
            id: node_spec.id.clone(),
            task_id,
            retries: node_spec.retries.unwrap_or(task.retries),
            task,
            inputs: bindings_per_node[old]
                .clone()
                .into_iter()
                .map(|(k, v)| (k, remap(v)))
                .collect(),
            upstream,
        });
    }
    Ok(CompiledWorkflow {
        id: workflow_id,
        interface: spec.interface.clone(),
        nodes,
        outputs,
        max_parallelism: spec.max_parallelism,
        on_failure: spec.on_failure,
    })
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

fn resolve_binding(
    spec: &WorkflowSpec,
    index_by_id: &HashMap<&str, usize>,
    resolved_tasks: &[(Identifier, TaskSpec)],
    binding_spec: &BindingSpec,
    expected_type: &LiteralType,
) -> Result<NodeBinding, BindingFailure> {
    let mismatch = |found: &LiteralType, what: String| {
        BindingFailure::TypeMismatch(expected_type.to_string(), format!("{what} of type {found}"))
    };
    match parse_binding(binding_spec).map_err(BindingFailure::Syntax)? {
        BindingSpec::WorkflowInput { input } => {
            let found = spec
                .interface
                .inputs
                .get(&input)
                .ok_or_else(|| BindingFailure::UnknownWorkflowInput(input.clone()))?;
            if !found.is_assignable_to(expected_type) {
                return Err(mismatch(found, format!("workflow input {input:?}")));
            }
            Ok(NodeBinding::WorkflowInput(input))
        }
        BindingSpec::NodeOutput { node, output } => {
            let upstream_index = *index_by_id
                .get(node.as_str())
                .ok_or_else(|| BindingFailure::UnknownNode(node.clone()))?;
            let found = resolved_tasks[upstream_index]
                .1
                .interface
                .outputs
                .get(&output)
                .ok_or_else(|| BindingFailure::UnknownOutput(node.clone(), output.clone()))?;
            if !found.is_assignable_to(expected_type) {
                return Err(mismatch(found, format!("{node}.{output}")));
            }
            Ok(NodeBinding::NodeOutput {
                node: upstream_index,
                output,
            })
        }
        BindingSpec::Constant { value } => expected_type
            .from_json(&value)
            .map(NodeBinding::Constant)
            .map_err(BindingFailure::BadConstant),
        BindingSpec::Shorthand(_) => Err(BindingFailure::Syntax("unparsed shorthand".to_string())),
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
        NodeSpec {
            id: id.into(),
            task: task.into(),
            inputs: inputs
                .iter()
                .map(|(k, v)| (k.to_string(), BindingSpec::Shorthand(v.to_string())))
                .collect(),
            after: vec![],
            retries: None,
        }
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
