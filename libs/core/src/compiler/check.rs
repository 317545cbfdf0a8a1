//! Checking: every binding of a resolved node against the outputs of the node it names (or the workflow
//! inputs) and the type the input wants; branch conditions likewise.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::condition::Condition;
use crate::ids::Identifier;
use crate::spec::{BindingSpec, Interface, NodeSpec, RetryPolicy, TaskSpec, WorkflowSpec};
use crate::types::{LiteralType, Value};

use super::compiled::*;
use super::errors::{node_error, BindingFailure, CompileError};
use super::resolve::{parse_binding, ResolvedKind, ResolvedNode};

/// A node with its bindings checked; node references are indices of the top-level spec nodes.
pub(super) struct CheckedNode {
    pub(super) id: String,
    pub(super) kind: CheckedKind,
    pub(super) inputs: BTreeMap<String, NodeBinding>,
    pub(super) after: Vec<usize>,
    pub(super) retries: Option<RetryPolicy>,
    pub(super) interface: Interface,
}

pub(super) enum CheckedKind {
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
    pub(super) fn collect_deps(&self, deps: &mut BTreeSet<usize>) {
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

pub(super) fn binding_node(binding: &NodeBinding) -> Option<usize> {
    match binding {
        NodeBinding::NodeOutput { node, .. } => Some(*node),
        _ => None,
    }
}

pub(super) struct Scope<'a> {
    pub(super) spec: &'a WorkflowSpec,
    pub(super) index_by_id: &'a HashMap<&'a str, usize>,
    pub(super) interfaces: &'a [Interface],
}

impl Scope<'_> {
    pub(super) fn check(&self, node: &NodeSpec, resolved: ResolvedNode) -> Result<CheckedNode, CompileError> {
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

    pub(super) fn check_condition(
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
            .map_err(|e| node_error(node, e.to_string()))?;
        Ok(resolved)
    }

    /// Resolves a reference to a workflow input or an upstream output, with its type.
    pub(super) fn reference(
        &self,
        binding_spec: &BindingSpec,
    ) -> Result<(NodeBinding, LiteralType), BindingFailure> {
        match parse_binding(binding_spec).map_err(|e| BindingFailure::Syntax(e.to_string()))? {
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

    pub(super) fn resolve_binding(
        &self,
        binding_spec: &BindingSpec,
        expected_type: &LiteralType,
    ) -> Result<NodeBinding, BindingFailure> {
        if let BindingSpec::Constant { value } = binding_spec {
            return expected_type
                .from_json(value)
                .map(NodeBinding::Constant)
                .map_err(|e| BindingFailure::BadConstant(e.to_string()));
        }
        let (binding, found) = self.reference(binding_spec)?;
        if !found.is_assignable_to(expected_type) {
            let what = match &binding {
                NodeBinding::WorkflowInput(input) => format!("workflow input {input:?}"),
                NodeBinding::NodeOutput { node, output } => {
                    format!("{}.{output}", self.spec.nodes[*node].id)
                }
                NodeBinding::Constant(_) | NodeBinding::Item { .. } => "a constant".to_string(),
            };
            return Err(BindingFailure::TypeMismatch(
                expected_type.to_string(),
                format!("{what} of type {found}"),
            ));
        }
        Ok(binding)
    }
}
