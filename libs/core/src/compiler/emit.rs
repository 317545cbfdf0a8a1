//! Emitting: checked nodes laid out as the flat list the state machine runs (subworkflows inlined, branch
//! cases and map and dynamic controls as control nodes).

use std::collections::{BTreeMap, BTreeSet};

use crate::condition::Condition;
use crate::ids::Identifier;
use crate::spec::{Interface, RetryPolicy, TaskKind, TaskSpec};
use crate::types::Value;

use super::check::{binding_node, CheckedKind, CheckedNode};
use super::compiled::*;

/// Lays checked nodes out as the flat, topologically ordered list the state machine runs.
pub(super) struct Emitter {
    pub(super) workflow_id: Identifier,
    pub(super) nodes: Vec<CompiledNode>,
    /// Top-level spec node index -> the index of the node holding its outputs.
    pub(super) exit_of: Vec<usize>,
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

pub(super) fn map_condition(
    condition: &Condition<NodeBinding>,
    f: &dyn Fn(&NodeBinding) -> NodeBinding,
) -> Condition<NodeBinding> {
    match condition.try_map(&mut |b| Ok::<_, std::convert::Infallible>(f(b))) {
        Ok(mapped) => mapped,
        Err(never) => match never {},
    }
}

/// Marks case members while their branch's index is not yet known.
pub(super) const BRANCH_PENDING: usize = usize::MAX;

impl Emitter {
    pub(super) fn map_binding(&self, binding: &NodeBinding) -> NodeBinding {
        match binding {
            NodeBinding::NodeOutput { node, output } => NodeBinding::NodeOutput {
                node: self.exit_of[*node],
                output: output.clone(),
            },
            other => other.clone(),
        }
    }

    pub(super) fn control_node(id: String, workflow_id: &Identifier, control: Control) -> CompiledNode {
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
                secrets: Vec::new(),
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
    pub(super) fn emit(
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
