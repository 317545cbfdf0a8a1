//! The execution state machine: `apply(state, event)` folds one event into the state and `decide(state,
//! now)` returns the decisions that follow from it. Both are pure; the propeller and every replay run the
//! same code, so replaying a partition from offset 0 rebuilds exactly the live state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::compiler::{
    approval_signal, inline_workflow, CompiledGate, CompiledNode, CompiledWorkflow, Control, NodeBinding,
};
use crate::events::{AddedNode, ErrorKind, ExecutionEvent, Outputs, ParentLink};
use crate::ids::{ExecutionId, Identifier};
use crate::types::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExecutionPhase {
    Queued,
    Running,
    Succeeded,
    Failed,
    Aborted,
    TimedOut,
}

impl ExecutionPhase {
    pub fn is_terminal(&self) -> bool {
        !matches!(self, ExecutionPhase::Queued | ExecutionPhase::Running)
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ExecutionPhase::Queued => "QUEUED",
            ExecutionPhase::Running => "RUNNING",
            ExecutionPhase::Succeeded => "SUCCEEDED",
            ExecutionPhase::Failed => "FAILED",
            ExecutionPhase::Aborted => "ABORTED",
            ExecutionPhase::TimedOut => "TIMED_OUT",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodePhase {
    /// Waiting for upstream nodes.
    Pending,
    /// Ready to run (first attempt or a retry).
    Queued,
    Running,
    /// Its attempt is started but waits for an executor slot, the tenant's quota or a resource pool.
    WaitingForResources,
    Succeeded,
    Failed,
    TimedOut,
    Skipped,
    Aborted,
    /// Took its outputs from the execution this one recovers; never ran here.
    Recovered,
}

impl NodePhase {
    pub fn as_str(&self) -> &'static str {
        match self {
            NodePhase::Pending => "PENDING",
            NodePhase::Queued => "QUEUED",
            NodePhase::Running => "RUNNING",
            NodePhase::WaitingForResources => "WAITING_FOR_RESOURCES",
            NodePhase::Succeeded => "SUCCEEDED",
            NodePhase::Failed => "FAILED",
            NodePhase::TimedOut => "TIMED_OUT",
            NodePhase::Skipped => "SKIPPED",
            NodePhase::Aborted => "ABORTED",
            NodePhase::Recovered => "RECOVERED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttemptPhase {
    Running,
    Succeeded,
    Failed,
    Aborted,
}

impl AttemptPhase {
    pub fn as_str(&self) -> &'static str {
        match self {
            AttemptPhase::Running => "RUNNING",
            AttemptPhase::Succeeded => "SUCCEEDED",
            AttemptPhase::Failed => "FAILED",
            AttemptPhase::Aborted => "ABORTED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptState {
    pub number: u32,
    pub phase: AttemptPhase,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub error: Option<(ErrorKind, String)>,
    /// Why it has not run yet, while it waits for resources.
    pub waiting_for: Option<String>,
    /// The platform may interrupt it (retried as a system error).
    #[serde(default)]
    pub interruptible: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    pub phase: NodePhase,
    pub attempts: Vec<AttemptState>,
    pub user_failures: u32,
    pub system_failures: u32,
    pub outputs: Option<Outputs>,
    pub error: Option<String>,
    /// For a branch: the case it took (`cases.len()` is the `else`).
    pub taken_case: Option<usize>,
    /// For a waiting gate: when it opens (sleep) or times out.
    pub gate_until: Option<i64>,
    /// For an expanded map or dynamic node: the indices of the nodes it added.
    pub items: Option<std::ops::Range<usize>>,
    /// For an expanded dynamic node: where its outputs come from (the planned workflow's output bindings).
    pub planned_outputs: Option<BTreeMap<String, NodeBinding>>,
    /// For a launch-plan node: the child execution it launched, and how that ended once it has.
    pub child: Option<ExecutionId>,
    pub child_result: Option<(ExecutionPhase, Outputs, Option<String>)>,
    waiting_on: usize,
    /// False for a branch case's node until its branch takes that case.
    released: bool,
}

impl NodeState {
    /// A node that has not run: `phase` Queued or Pending, waiting for `waiting_on` upstream nodes, and
    /// `released` unless its branch has yet to take its case.
    fn fresh(phase: NodePhase, waiting_on: usize, released: bool) -> NodeState {
        NodeState {
            phase,
            attempts: Vec::new(),
            user_failures: 0,
            system_failures: 0,
            outputs: None,
            error: None,
            taken_case: None,
            gate_until: None,
            items: None,
            planned_outputs: None,
            child: None,
            child_result: None,
            waiting_on,
            released,
        }
    }

    pub fn running_attempt(&self) -> Option<&AttemptState> {
        self.attempts.last().filter(|a| a.phase == AttemptPhase::Running)
    }

    /// Whether attempt `number`, the node's latest, was started interruptible.
    pub fn is_interruptible(&self, number: u32) -> bool {
        self.attempts
            .last()
            .is_some_and(|last| last.number == number && last.interruptible)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionState {
    pub id: ExecutionId,
    pub request_id: String,
    pub workflow: Arc<CompiledWorkflow>,
    pub inputs: Outputs,
    pub launch_plan: Option<Identifier>,
    /// Cached tasks skip the lookup and replace the stored result.
    pub overwrite_cache: bool,
    pub phase: ExecutionPhase,
    pub nodes: Vec<NodeState>,
    /// The seq of the last decision applied; the next must be `last_seq + 1`.
    pub last_seq: u64,
    pub outputs: Outputs,
    pub error: Option<String>,
    pub terminate_reason: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Signals received (first value wins), by name; approvals are `approve:NODE`.
    pub signals: BTreeMap<String, Value>,
    /// Set for a child execution: the launch-plan node to tell when it ends.
    pub parent: Option<ParentLink>,
    downstream: Arc<Vec<Vec<usize>>>,
    /// Nodes in phase Queued, i.e. ready for an attempt (or out of budget, see `decide`).
    ready: BTreeSet<usize>,
    /// Branch nodes that have not chosen a case yet.
    undecided_branches: BTreeSet<usize>,
    /// Gate nodes waiting now.
    open_gates: BTreeSet<usize>,
    /// Launch-plan nodes whose child execution runs now.
    running_children: BTreeSet<usize>,
    /// Nodes done for good without failing the execution: succeeded, recovered, skipped, or failed map items.
    settled_nodes: usize,
    /// Running items per map node (bounded by its `concurrency`).
    running_items: BTreeMap<usize, usize>,
    failed_node: Option<usize>,
    /// Nodes with an attempt running now (bounded by the workflow's `max_parallelism`).
    running_nodes: usize,
}

impl ExecutionState {
    pub fn new(
        id: ExecutionId,
        request_id: String,
        workflow: Arc<CompiledWorkflow>,
        inputs: Outputs,
        launch_plan: Option<Identifier>,
        created_at: i64,
    ) -> ExecutionState {
        let mut downstream = vec![Vec::new(); workflow.nodes.len()];
        let mut nodes = Vec::with_capacity(workflow.nodes.len());
        let mut ready = BTreeSet::new();
        let mut undecided_branches = BTreeSet::new();
        for (index, node) in workflow.nodes.iter().enumerate() {
            for &up in &node.upstream {
                downstream[up].push(index);
            }
            if matches!(node.control, Some(Control::Branch { .. })) {
                undecided_branches.insert(index);
            }
            let released = node.case_of.is_none();
            let phase = if node.upstream.is_empty() && released {
                ready.insert(index);
                NodePhase::Queued
            } else {
                NodePhase::Pending
            };
            nodes.push(NodeState::fresh(phase, node.upstream.len(), released));
        }
        ExecutionState {
            id,
            request_id,
            workflow,
            inputs,
            launch_plan,
            overwrite_cache: false,
            phase: ExecutionPhase::Queued,
            nodes,
            last_seq: 0,
            outputs: Outputs::new(),
            error: None,
            terminate_reason: None,
            created_at,
            started_at: None,
            finished_at: None,
            signals: BTreeMap::new(),
            parent: None,
            downstream: Arc::new(downstream),
            ready,
            undecided_branches,
            open_gates: BTreeSet::new(),
            running_children: BTreeSet::new(),
            settled_nodes: 0,
            running_items: BTreeMap::new(),
            failed_node: None,
            running_nodes: 0,
        }
    }

    /// Marks `recovered` nodes as done with the given outputs (RECOVERED) and readies what depends only on
    /// them. Applied with the request, so replay gives the same state. Branches and the nodes in their
    /// cases run again (the branch decides anew), so a recovered node is never one a branch would skip.
    pub fn recover(&mut self, recovered: &BTreeMap<String, Outputs>) {
        for (node_id, outputs) in recovered {
            let Some(node) = self.workflow.nodes.iter().position(|n| &n.id == node_id) else {
                continue;
            };
            let compiled = &self.workflow.nodes[node];
            if compiled.case_of.is_some() || matches!(compiled.control, Some(Control::Branch { .. })) {
                continue;
            }
            let state = &mut self.nodes[node];
            if !matches!(state.phase, NodePhase::Pending | NodePhase::Queued) {
                continue;
            }
            self.ready.remove(&node);
            self.complete_node(node, NodePhase::Recovered, outputs);
        }
    }

    /// Ends `node` with `outputs` (SUCCEEDED or RECOVERED) and readies what waited only for it.
    fn complete_node(&mut self, node: usize, phase: NodePhase, outputs: &Outputs) {
        let state = &mut self.nodes[node];
        state.outputs = Some(outputs.clone());
        self.settle(node, phase);
    }

    /// Ends `node` for good in `phase` (one that does not fail the execution) and readies what waited
    /// only for it.
    fn settle(&mut self, node: usize, phase: NodePhase) {
        self.nodes[node].phase = phase;
        self.ready.remove(&node);
        self.open_gates.remove(&node);
        self.undecided_branches.remove(&node);
        self.running_children.remove(&node);
        self.settled_nodes += 1;
        let downstream = Arc::clone(&self.downstream);
        for &down in &downstream[node] {
            self.nodes[down].waiting_on -= 1;
            self.ready_if_unblocked(down);
        }
    }

    /// Queues `node` once nothing holds it back: its upstream nodes are done, its case (if any) was taken,
    /// and, for a branch, it has decided (a deciding branch shows as RUNNING while its case runs).
    fn ready_if_unblocked(&mut self, node: usize) {
        let state = &self.nodes[node];
        let waiting_phase = match self.workflow.nodes[node].control {
            // A deciding branch, or an expanded map waiting for its items.
            Some(Control::Branch { .. }) => state.phase == NodePhase::Running,
            Some(Control::Map(_) | Control::Dynamic(_)) => {
                state.phase == NodePhase::Pending
                    || (state.phase == NodePhase::Running && state.items.is_some())
            }
            _ => state.phase == NodePhase::Pending,
        };
        if state.waiting_on == 0 && state.released && waiting_phase {
            self.nodes[node].phase = NodePhase::Queued;
            self.ready.insert(node);
        }
    }

    /// Applies a branch's choice: the taken case's own nodes may run, every node of the other cases
    /// (nested ones too: each case is a contiguous block) is SKIPPED.
    fn take_case(&mut self, branch: usize, taken: usize) {
        let Some(Control::Branch { cases, otherwise, .. }) = self.workflow.nodes[branch].control.clone()
        else {
            return;
        };
        self.undecided_branches.remove(&branch);
        self.nodes[branch].taken_case = Some(taken);
        self.nodes[branch].phase = NodePhase::Running;
        let arms = cases.iter().map(|case| case.arm).chain(otherwise);
        for (case, arm) in arms.enumerate() {
            for member in arm.first..=arm.exit {
                if case == taken {
                    let direct = self.workflow.nodes[member]
                        .case_of
                        .is_some_and(|c| c.branch == branch && c.case == case);
                    if direct {
                        self.nodes[member].released = true;
                        self.ready_if_unblocked(member);
                    }
                } else if self.nodes[member].phase == NodePhase::Pending {
                    self.settle(member, NodePhase::Skipped);
                }
            }
        }
    }

    /// Adds `map`'s item nodes, one per element of its `over` input: ordinary task nodes (ids `MAP[i]`)
    /// the map waits for.
    fn expand_map(&mut self, map: usize) {
        let Some(Control::Map(control)) = self.workflow.nodes[map].control.clone() else {
            return;
        };
        let Ok(inputs) = self.node_inputs(map) else {
            return;
        };
        let Some(Value::List(values)) = inputs.get(&control.over) else {
            return;
        };
        let first = self.nodes.len();
        let map_id = self.workflow.nodes[map].id.clone();
        let shared: BTreeMap<String, NodeBinding> = self.workflow.nodes[map]
            .inputs
            .iter()
            .filter(|(name, _)| **name != control.over)
            .map(|(name, binding)| (name.clone(), binding.clone()))
            .collect();
        let workflow = Arc::make_mut(&mut self.workflow);
        let downstream = Arc::make_mut(&mut self.downstream);
        for (index, value) in values.iter().enumerate() {
            let mut item_inputs = shared.clone();
            item_inputs.insert(control.over.clone(), NodeBinding::Constant(value.clone()));
            workflow.nodes.push(CompiledNode {
                id: format!("{map_id}[{index}]"),
                task_id: control.task_id.clone(),
                task: (*control.task).clone(),
                inputs: item_inputs,
                upstream: Vec::new(),
                retries: control.retries,
                control: None,
                case_of: None,
                item_of: Some(map),
            });
            downstream.push(vec![map]);
            self.nodes.push(NodeState::fresh(NodePhase::Queued, 0, true));
            self.ready.insert(first + index);
        }
        let end = self.nodes.len();
        let state = &mut self.nodes[map];
        state.items = Some(first..end);
        state.waiting_on = values.len();
        state.phase = NodePhase::Running;
        self.ready.remove(&map);
        // An empty list: the map is done at once.
        self.ready_if_unblocked(map);
    }

    /// Whether `node` is a ready, not yet expanded node of the kind `is_kind` accepts (a map or a dynamic
    /// node) in a running execution.
    fn may_expand(&self, node: usize, is_kind: fn(&Control) -> bool) -> bool {
        let kind_matches = self
            .workflow
            .nodes
            .get(node)
            .and_then(|n| n.control.as_ref())
            .is_some_and(is_kind);
        kind_matches
            && !self.phase.is_terminal()
            && self.nodes[node].phase == NodePhase::Queued
            && self.nodes[node].items.is_none()
    }

    /// The planned workflow of dynamic node `node`, compiled (the planner has succeeded).
    pub fn planned_workflow(&self, node: usize) -> Result<CompiledWorkflow, String> {
        let compiled = &self.workflow.nodes[node];
        let Some(Control::Dynamic(control)) = &compiled.control else {
            return Err("not a dynamic node".to_string());
        };
        let plan = self.resolve(&control.plan)?;
        control.compile_plan(&compiled.id, &self.workflow.id, &plan)
    }

    /// Adds the planned workflow's nodes under dynamic node `node`, which then waits for them all.
    fn expand_dynamic(&mut self, node: usize) {
        let Ok(planned) = self.planned_workflow(node) else {
            return;
        };
        let first = self.nodes.len();
        let compiled = &self.workflow.nodes[node];
        let (added, outputs) = inline_workflow(
            &planned,
            &compiled.id,
            first,
            &compiled.inputs,
            &BTreeSet::new(),
            None,
        );
        let count = added.len();
        let workflow = Arc::make_mut(&mut self.workflow);
        let downstream = Arc::make_mut(&mut self.downstream);
        for (offset, added_node) in added.into_iter().enumerate() {
            let index = first + offset;
            downstream.push(vec![node]);
            let mut waiting_on = 0;
            for &up in &added_node.upstream {
                // Outside nodes the plan reads were done before the node could plan; only added ones wait.
                if up >= first || self.nodes[up].outputs.is_none() {
                    downstream[up].push(index);
                    waiting_on += 1;
                }
            }
            let released = added_node.case_of.is_none();
            if matches!(added_node.control, Some(Control::Branch { .. })) {
                self.undecided_branches.insert(index);
            }
            let phase = if waiting_on == 0 && released {
                self.ready.insert(index);
                NodePhase::Queued
            } else {
                NodePhase::Pending
            };
            workflow.nodes.push(added_node);
            self.nodes.push(NodeState::fresh(phase, waiting_on, released));
        }
        let state = &mut self.nodes[node];
        state.items = Some(first..first + count);
        state.planned_outputs = Some(outputs);
        state.waiting_on = count;
        state.phase = NodePhase::Running;
        self.ready.remove(&node);
        self.ready_if_unblocked(node);
    }

    /// A map whose items are all done: its outputs gathered as lists in item order (an empty place for a
    /// failed item), or why too few items succeeded.
    fn gather_map(&self, map: usize) -> Result<Outputs, String> {
        let (Some(Control::Map(control)), Some(items)) =
            (&self.workflow.nodes[map].control, self.nodes[map].items.clone())
        else {
            return Err("the map has not expanded".to_string());
        };
        let total = items.len();
        let succeeded = items
            .clone()
            .filter(|&item| self.nodes[item].phase == NodePhase::Succeeded)
            .count();
        if total > 0 && (succeeded as f64) < control.min_success_ratio * total as f64 - 1e-9 {
            let first_failure = items
                .clone()
                .find(|&item| self.nodes[item].phase != NodePhase::Succeeded)
                .map(|item| {
                    let error = self.nodes[item].error.clone().unwrap_or_default();
                    format!("; first failure: {} {error}", self.workflow.nodes[item].id)
                })
                .unwrap_or_default();
            return Err(format!(
                "{succeeded} of {total} items succeeded, below min_success_ratio {}{first_failure}",
                control.min_success_ratio
            ));
        }
        Ok(control
            .task
            .interface
            .outputs
            .keys()
            .map(|name| {
                let values = items
                    .clone()
                    .map(|item| {
                        self.nodes[item]
                            .outputs
                            .as_ref()
                            .and_then(|outputs| outputs.get(name))
                            .cloned()
                            .unwrap_or(Value::None)
                    })
                    .collect();
                (name.clone(), Value::List(values))
            })
            .collect())
    }

    fn item_started_or_ended(&mut self, node: usize, started: bool) {
        let Some(map) = self.workflow.nodes[node].item_of else {
            return;
        };
        let running = self.running_items.entry(map).or_default();
        if started {
            *running += 1;
        } else {
            *running = running.saturating_sub(1);
        }
    }

    /// Every branch that can decide now: not yet decided, its case taken (if nested) and the nodes its
    /// conditions read done.
    fn decidable_branches(&self) -> impl Iterator<Item = usize> + '_ {
        self.undecided_branches.iter().copied().filter(|&branch| {
            let state = &self.nodes[branch];
            let Some(Control::Branch { cases, .. }) = &self.workflow.nodes[branch].control else {
                return false;
            };
            state.released
                && state.phase == NodePhase::Pending
                && cases.iter().all(|case| {
                    case.condition.refs().into_iter().all(|binding| match binding {
                        NodeBinding::NodeOutput { node, .. } => self.nodes[*node].outputs.is_some(),
                        _ => true,
                    })
                })
        })
    }

    /// Gates waiting now, and the earliest time one of them opens or times out (the engine wakes then).
    pub fn next_gate_deadline(&self) -> Option<i64> {
        self.open_gates
            .iter()
            .filter_map(|&gate| self.nodes[gate].gate_until)
            .min()
    }

    /// Launch-plan nodes whose child execution runs (as far as this execution knows): `(node, child)`.
    pub fn running_children(&self) -> impl Iterator<Item = (usize, &ExecutionId)> + '_ {
        self.running_children
            .iter()
            .filter_map(|&node| self.nodes[node].child.as_ref().map(|child| (node, child)))
    }

    /// The request that launches launch-plan node `node`'s child execution (decided by `ChildLaunched` at
    /// `at`): the plan's workflow with the node's inputs, the plan's defaults and its fixed inputs.
    pub fn child_request(&self, node: usize, at: i64) -> Option<ExecutionEvent> {
        let compiled = &self.workflow.nodes[node];
        let Some(Control::LaunchPlan(plan)) = &compiled.control else {
            return None;
        };
        let child = self.nodes[node].child.clone()?;
        let mut inputs = plan.default_inputs.clone();
        for (name, value) in self.node_inputs(node).ok()? {
            if value != Value::None || !inputs.contains_key(&name) {
                inputs.insert(name, value);
            }
        }
        inputs.extend(plan.fixed_inputs.clone());
        Some(ExecutionEvent::ExecutionRequested {
            execution: child,
            request_id: format!("{}/{}", self.id, compiled.id),
            workflow: Box::new(plan.workflow.clone()),
            inputs,
            launch_plan: Some(plan.plan.clone()),
            requested_at: at,
            scheduled_at: None,
            overwrite_cache: self.overwrite_cache,
            notifications: None,
            recovery: None,
            parent: Some(Box::new(ParentLink {
                execution: self.id.clone(),
                node,
                node_id: compiled.id.clone(),
            })),
        })
    }

    /// The input values of a node, resolved from workflow inputs, constants and upstream outputs.
    pub fn node_inputs(&self, node: usize) -> Result<Outputs, String> {
        let compiled = &self.workflow.nodes[node];
        compiled
            .inputs
            .iter()
            .map(|(name, binding)| self.resolve(binding).map(|value| (name.clone(), value)))
            .collect()
    }

    fn resolve(&self, binding: &NodeBinding) -> Result<Value, String> {
        match binding {
            NodeBinding::Constant(value) => Ok(value.clone()),
            NodeBinding::WorkflowInput(name) => self
                .inputs
                .get(name)
                .cloned()
                .ok_or_else(|| format!("workflow input {name:?} has no value")),
            NodeBinding::NodeOutput { node, output } => self.nodes[*node]
                .outputs
                .as_ref()
                .and_then(|outputs| outputs.get(output))
                .cloned()
                .ok_or_else(|| {
                    format!(
                        "node {:?} has no output {output:?}",
                        self.workflow.nodes[*node].id
                    )
                }),
        }
    }

    /// Whether a gate waits or a launch-plan node's child execution runs: nodes that are running without a task
    /// attempt, which `complete_others` also lets finish.
    fn awaits_gates_or_children(&self) -> bool {
        self.nodes
            .iter()
            .zip(&self.workflow.nodes)
            .any(|(node, compiled)| {
                node.phase == NodePhase::Running
                    && matches!(
                        compiled.control,
                        Some(Control::Gate(_)) | Some(Control::LaunchPlan(_))
                    )
            })
    }

    pub fn running_attempts(&self) -> impl Iterator<Item = (usize, u32)> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(index, node)| node.running_attempt().map(|attempt| (index, attempt.number)))
    }

    /// Folds one event about this execution into the state. Events that no longer fit (a result for an
    /// attempt that was aborted) change nothing but are still part of the history.
    pub fn apply(&mut self, event: &ExecutionEvent) {
        match event {
            ExecutionEvent::TerminateRequested { reason, .. } => {
                if !self.phase.is_terminal() && self.terminate_reason.is_none() {
                    self.terminate_reason = Some(reason.clone());
                }
            }
            ExecutionEvent::ExecutionStarted { at, .. } => {
                if self.phase == ExecutionPhase::Queued {
                    self.phase = ExecutionPhase::Running;
                    self.started_at = Some(*at);
                }
            }
            ExecutionEvent::AttemptStarted {
                node,
                attempt,
                interruptible,
                at,
                ..
            } => {
                let Some(state) = self.nodes.get_mut(*node) else {
                    return;
                };
                if state.phase != NodePhase::Queued || self.phase.is_terminal() {
                    return;
                }
                debug_assert_eq!(
                    *attempt as usize,
                    state.attempts.len() + 1,
                    "attempts are numbered 1, 2, ..."
                );
                state.phase = NodePhase::Running;
                self.running_nodes += 1;
                state.attempts.push(AttemptState {
                    number: *attempt,
                    phase: AttemptPhase::Running,
                    started_at: *at,
                    finished_at: None,
                    error: None,
                    waiting_for: None,
                    interruptible: *interruptible,
                });
                self.ready.remove(node);
                self.item_started_or_ended(*node, true);
            }
            ExecutionEvent::AttemptWaiting {
                node,
                attempt,
                reason,
                ..
            } => {
                if !self.is_running_attempt(*node, *attempt) {
                    return;
                }
                let state = &mut self.nodes[*node];
                state.phase = NodePhase::WaitingForResources;
                if let Some(last) = state.attempts.last_mut() {
                    last.waiting_for = Some(reason.clone());
                }
            }
            ExecutionEvent::AttemptDispatched { node, attempt, .. } => {
                if !self.is_running_attempt(*node, *attempt) {
                    return;
                }
                let state = &mut self.nodes[*node];
                state.phase = NodePhase::Running;
                if let Some(last) = state.attempts.last_mut() {
                    last.waiting_for = None;
                }
            }
            ExecutionEvent::AttemptSucceeded {
                node,
                attempt,
                outputs,
                at,
                ..
            } => {
                if !self.is_running_attempt(*node, *attempt) {
                    return;
                }
                self.running_nodes -= 1;
                self.item_started_or_ended(*node, false);
                let state = &mut self.nodes[*node];
                if let Some(last) = state.attempts.last_mut() {
                    last.phase = AttemptPhase::Succeeded;
                    last.waiting_for = None;
                    last.finished_at = Some(*at);
                }
                self.complete_node(*node, NodePhase::Succeeded, outputs);
            }
            ExecutionEvent::NodeCacheHit {
                node,
                attempt,
                outputs,
                at,
                ..
            } => {
                let Some(state) = self.nodes.get_mut(*node) else {
                    return;
                };
                if state.phase != NodePhase::Queued || self.phase.is_terminal() {
                    return;
                }
                state.attempts.push(AttemptState {
                    number: *attempt,
                    phase: AttemptPhase::Succeeded,
                    started_at: *at,
                    finished_at: Some(*at),
                    error: None,
                    waiting_for: None,
                    interruptible: false,
                });
                self.ready.remove(node);
                self.complete_node(*node, NodePhase::Succeeded, outputs);
            }
            ExecutionEvent::AttemptFailed {
                node,
                attempt,
                kind,
                message,
                at,
                ..
            } => {
                if !self.is_running_attempt(*node, *attempt) {
                    return;
                }
                self.running_nodes -= 1;
                self.item_started_or_ended(*node, false);
                let state = &mut self.nodes[*node];
                if let Some(last) = state.attempts.last_mut() {
                    last.phase = AttemptPhase::Failed;
                    last.waiting_for = None;
                    last.finished_at = Some(*at);
                    last.error = Some((*kind, message.clone()));
                }
                match kind {
                    ErrorKind::System => state.system_failures += 1,
                    ErrorKind::User | ErrorKind::Timeout => state.user_failures += 1,
                }
                // Back to the queue: `decide` either retries it or, out of budget, fails the node.
                state.phase = NodePhase::Queued;
                self.ready.insert(*node);
            }
            ExecutionEvent::NodeFailed {
                node, phase, message, ..
            } => {
                let Some(state) = self.nodes.get_mut(*node) else {
                    return;
                };
                // A task node fails from the queue (budget used up); a branch that matched no case fails
                // undecided, a gate fails while it waits (timed out).
                let failable = state.phase == NodePhase::Queued
                    || self.undecided_branches.contains(node)
                    || self.open_gates.contains(node)
                    || self.running_children.contains(node);
                if !failable || self.phase.is_terminal() {
                    return;
                }
                state.error = Some(message.clone());
                if self.workflow.nodes[*node].item_of.is_some() {
                    // A failed map item is done for good; its map decides whether enough succeeded.
                    self.settle(*node, *phase);
                    return;
                }
                let state = &mut self.nodes[*node];
                state.phase = *phase;
                self.ready.remove(node);
                self.open_gates.remove(node);
                self.undecided_branches.remove(node);
                self.running_children.remove(node);
                self.failed_node.get_or_insert(*node);
            }
            ExecutionEvent::ChildLaunched { node, child, .. } => {
                let is_plan = matches!(
                    self.workflow.nodes.get(*node).map(|n| &n.control),
                    Some(Some(Control::LaunchPlan(_)))
                );
                if !is_plan || self.phase.is_terminal() || self.nodes[*node].phase != NodePhase::Queued {
                    return;
                }
                let state = &mut self.nodes[*node];
                state.phase = NodePhase::Running;
                state.child = Some(child.clone());
                self.ready.remove(node);
                self.running_children.insert(*node);
            }
            ExecutionEvent::ChildFinished {
                node,
                child,
                phase,
                outputs,
                error,
                ..
            } => {
                let Some(state) = self.nodes.get_mut(*node) else {
                    return;
                };
                if state.child.as_ref() == Some(child) && state.child_result.is_none() {
                    state.child_result = Some((*phase, outputs.clone(), error.clone()));
                }
            }
            ExecutionEvent::DynamicExpanded { node, .. } => {
                if self.may_expand(*node, |control| matches!(control, Control::Dynamic(_))) {
                    self.expand_dynamic(*node);
                }
            }
            ExecutionEvent::MapExpanded { node, .. } => {
                if self.may_expand(*node, |control| matches!(control, Control::Map(_))) {
                    self.expand_map(*node);
                }
            }
            ExecutionEvent::BranchTaken { node, case, .. } => {
                if self.phase.is_terminal() || !self.undecided_branches.contains(node) {
                    return;
                }
                self.take_case(*node, *case);
            }
            ExecutionEvent::GateWaiting { node, until, .. } => {
                let Some(state) = self.nodes.get_mut(*node) else {
                    return;
                };
                if state.phase != NodePhase::Queued || self.phase.is_terminal() {
                    return;
                }
                state.phase = NodePhase::Running;
                state.gate_until = *until;
                self.ready.remove(node);
                self.open_gates.insert(*node);
            }
            ExecutionEvent::NodeSucceeded { node, outputs, .. } => {
                let Some(state) = self.nodes.get(*node) else {
                    return;
                };
                let settles = (state.phase == NodePhase::Queued && !self.workflow.nodes[*node].is_task())
                    || self.open_gates.contains(node)
                    || self.running_children.contains(node);
                if !settles || self.phase.is_terminal() {
                    return;
                }
                self.complete_node(*node, NodePhase::Succeeded, outputs);
            }
            ExecutionEvent::SignalReceived { signal, value, .. } => {
                if !self.phase.is_terminal() {
                    self.signals
                        .entry(signal.clone())
                        .or_insert_with(|| value.clone());
                }
            }
            ExecutionEvent::ExecutionFinished {
                phase,
                outputs,
                error,
                at,
                ..
            } => {
                if self.phase.is_terminal() {
                    return;
                }
                self.phase = *phase;
                self.outputs = outputs.clone();
                self.error = error.clone();
                self.finished_at = Some(*at);
                // A terminate request read before or after the finish leaves the same state: the owner
                // applies its own decisions on acknowledgement, possibly before a request that precedes
                // them in the log, and replay must still give the live state.
                self.terminate_reason = None;
                self.running_nodes = 0;
                for state in &mut self.nodes {
                    match state.phase {
                        NodePhase::Running | NodePhase::WaitingForResources => {
                            state.phase = NodePhase::Aborted;
                            if let Some(last) = state.attempts.last_mut() {
                                last.phase = AttemptPhase::Aborted;
                                last.waiting_for = None;
                                last.finished_at = Some(*at);
                            }
                        }
                        NodePhase::Pending | NodePhase::Queued => state.phase = NodePhase::Skipped,
                        _ => {}
                    }
                }
                self.ready.clear();
                self.open_gates.clear();
                self.undecided_branches.clear();
                self.running_items.clear();
                self.running_children.clear();
            }
            ExecutionEvent::ExecutionRequested { .. } | ExecutionEvent::PartitionClaimed { .. } => {}
        }
    }

    fn is_running_attempt(&self, node: usize, attempt: u32) -> bool {
        !self.phase.is_terminal()
            && self
                .nodes
                .get(node)
                .and_then(NodeState::running_attempt)
                .is_some_and(|a| a.number == attempt)
    }

    fn budget_exhausted(&self, node: usize) -> Option<(NodePhase, String)> {
        let state = &self.nodes[node];
        let retries = self.workflow.nodes[node].retries;
        let over_user = state.user_failures > retries.user;
        let over_system = state.system_failures > retries.system;
        if !over_user && !over_system {
            return None;
        }
        let (kind, message) = state
            .attempts
            .last()
            .and_then(|a| a.error.clone())
            .unwrap_or((ErrorKind::System, "failed".to_string()));
        let phase = if kind == ErrorKind::Timeout {
            NodePhase::TimedOut
        } else {
            NodePhase::Failed
        };
        let budget = if over_system { "system" } else { "user" };
        Some((
            phase,
            format!(
                "{} after {} attempt(s), {budget} retries used up: {message}",
                phase.as_str(),
                state.attempts.len()
            ),
        ))
    }
}

/// The most attempts one `decide` starts.
pub const MAX_STARTS_PER_DECISION: usize = 500;

/// The decisions that follow from `state` at time `now` (unix millis). Applying them in order is valid.
pub fn decide(state: &ExecutionState, now: i64) -> Vec<ExecutionEvent> {
    if state.phase.is_terminal() {
        return Vec::new();
    }
    let execution = state.id.clone();
    let finish = |phase, outputs, error| ExecutionEvent::ExecutionFinished {
        execution: execution.clone(),
        phase,
        outputs,
        error,
        at: now,
    };
    if let Some(reason) = &state.terminate_reason {
        return vec![finish(
            ExecutionPhase::Aborted,
            Outputs::new(),
            Some(format!("terminated: {reason}")),
        )];
    }
    let mut decisions = Vec::new();
    if state.phase == ExecutionPhase::Queued {
        decisions.push(ExecutionEvent::ExecutionStarted {
            execution: execution.clone(),
            at: now,
        });
    }
    let fail_fast = state.workflow.on_failure.is_fail_fast();
    // Under `complete_others` the execution fails once nothing that can still run is left: no attempt, no
    // ready node, no waiting gate and no running child execution.
    let failed_and_done = fail_fast
        || (state.running_nodes == 0 && state.ready.is_empty() && !state.awaits_gates_or_children());
    if let Some(failed) = state.failed_node.filter(|_| failed_and_done) {
        let node = &state.workflow.nodes[failed];
        let message = state.nodes[failed].error.clone().unwrap_or_default();
        decisions.push(finish(
            ExecutionPhase::Failed,
            Outputs::new(),
            Some(format!("node {:?} {message}", node.id)),
        ));
        return decisions;
    }
    if state.settled_nodes == state.nodes.len() {
        let outputs: Result<Outputs, String> = state
            .workflow
            .outputs
            .iter()
            .map(|(name, binding)| state.resolve(binding).map(|v| (name.clone(), v)))
            .collect();
        decisions.push(match outputs {
            Ok(outputs) => finish(ExecutionPhase::Succeeded, outputs, None),
            Err(error) => finish(ExecutionPhase::Failed, Outputs::new(), Some(error)),
        });
        return decisions;
    }
    let mut failing = BTreeSet::new();
    for &node in &state.ready {
        if let Some((phase, message)) = state.budget_exhausted(node) {
            let node_id = state.workflow.nodes[node].id.clone();
            decisions.push(ExecutionEvent::NodeFailed {
                execution: execution.clone(),
                node,
                phase,
                message: message.clone(),
                at: now,
            });
            let map_item = state.workflow.nodes[node].item_of.is_some();
            if fail_fast && !map_item {
                // Running attempts are aborted by the finish.
                decisions.push(finish(
                    ExecutionPhase::Failed,
                    Outputs::new(),
                    Some(format!("node {node_id:?} {message}")),
                ));
                return decisions;
            }
            failing.insert(node);
        }
    }
    decide_control_nodes(state, now, &mut decisions);
    // Ready task nodes start in index order (a topological order) while the parallelism limit allows.
    let limit = state
        .workflow
        .max_parallelism
        .map_or(usize::MAX, |max| max as usize);
    debug_assert!(
        state.running_nodes <= limit,
        "more nodes running than max_parallelism allows"
    );
    // At most MAX_STARTS_PER_DECISION starts at once, so one decision never floods the log (a 10,000-item
    // map starts in rounds, each after the previous round's starts are acknowledged).
    let mut free_slots = limit
        .saturating_sub(state.running_nodes)
        .min(MAX_STARTS_PER_DECISION);
    // Items of a map with a concurrency bound start while their map has room.
    let mut item_room: BTreeMap<usize, usize> = BTreeMap::new();
    for &node in &state.ready {
        if free_slots == 0 {
            break;
        }
        let compiled = &state.workflow.nodes[node];
        if failing.contains(&node) || !compiled.is_task() {
            continue;
        }
        if let Some(map) = compiled.item_of {
            let room = item_room
                .entry(map)
                .or_insert_with(|| match &state.workflow.nodes[map].control {
                    Some(Control::Map(control)) => control
                        .concurrency
                        .map_or(usize::MAX, |c| c as usize)
                        .saturating_sub(state.running_items.get(&map).copied().unwrap_or(0)),
                    _ => usize::MAX,
                });
            if *room == 0 {
                continue;
            }
            *room -= 1;
        }
        free_slots -= 1;
        let node_state = &state.nodes[node];
        let attempt = node_state.attempts.len() as u32 + 1;
        // The last attempt the system budget allows runs non-interruptible: interruptions alone never fail a node.
        let interruptible =
            compiled.task.interruptible && node_state.system_failures < compiled.retries.system;
        decisions.push(ExecutionEvent::AttemptStarted {
            execution: execution.clone(),
            node,
            attempt,
            interruptible,
            at: now,
        });
    }
    decisions
}

/// Decisions for the nodes the state machine runs itself: branches that can choose, ready subworkflow ends,
/// branches and gates, and waiting gates whose signal came or whose time is up.
fn decide_control_nodes(state: &ExecutionState, now: i64, decisions: &mut Vec<ExecutionEvent>) {
    let execution = &state.id;
    let failed = |node: usize, phase: NodePhase, message: String| ExecutionEvent::NodeFailed {
        execution: execution.clone(),
        node,
        phase,
        message,
        at: now,
    };
    let succeeded = |node: usize, outputs: Outputs| ExecutionEvent::NodeSucceeded {
        execution: execution.clone(),
        node,
        outputs,
        at: now,
    };
    for branch in state.decidable_branches() {
        let Some(Control::Branch { cases, otherwise, .. }) = &state.workflow.nodes[branch].control else {
            continue;
        };
        let mut tried = Vec::new();
        let mut taken = None;
        for (index, case) in cases.iter().enumerate() {
            match case.condition.evaluate(&|binding| state.resolve(binding)) {
                Ok(true) => {
                    taken = Some(index);
                    break;
                }
                Ok(false) => tried.push(format!("{} is false", case.text)),
                Err(error) => {
                    tried.push(format!("{} cannot be evaluated: {error}", case.text));
                }
            }
        }
        let taken = taken.or(otherwise.map(|_| cases.len()));
        decisions.push(match taken {
            Some(case) => ExecutionEvent::BranchTaken {
                execution: execution.clone(),
                node: branch,
                case,
                condition: cases
                    .get(case)
                    .map_or_else(|| "else".to_string(), |c| c.text.clone()),
                skipped: cases
                    .iter()
                    .map(|c| c.arm)
                    .chain(*otherwise)
                    .enumerate()
                    .filter(|(index, _)| *index != case)
                    .flat_map(|(_, arm)| arm.first..=arm.exit)
                    .collect(),
                at: now,
            },
            None => failed(
                branch,
                NodePhase::Failed,
                format!(
                    "no case matched ({}) and the branch has no else",
                    tried.join("; ")
                ),
            ),
        });
    }
    for &node in &state.ready {
        let compiled = &state.workflow.nodes[node];
        match &compiled.control {
            None => {}
            Some(Control::Subworkflow { .. }) => match state.node_inputs(node) {
                Ok(outputs) => decisions.push(succeeded(node, outputs)),
                Err(error) => decisions.push(failed(node, NodePhase::Failed, error)),
            },
            Some(Control::Branch {
                cases,
                otherwise,
                outputs,
            }) => {
                let taken = state.nodes[node].taken_case;
                let exit = taken
                    .and_then(|case| cases.get(case).map(|c| c.arm).or(*otherwise))
                    .map(|arm| arm.exit);
                let exit_outputs = exit.and_then(|exit| state.nodes[exit].outputs.as_ref());
                let branch_outputs = outputs
                    .iter()
                    .filter_map(|name| {
                        exit_outputs
                            .and_then(|o| o.get(name))
                            .map(|v| (name.clone(), v.clone()))
                    })
                    .collect();
                decisions.push(succeeded(node, branch_outputs));
            }
            Some(Control::LaunchPlan(_)) => decisions.push(ExecutionEvent::ChildLaunched {
                execution: execution.clone(),
                node,
                child: child_execution_id(execution, &compiled.id),
                at: now,
            }),
            Some(Control::Dynamic(_)) => match &state.nodes[node].planned_outputs {
                Some(planned) => {
                    let outputs: Result<Outputs, String> = planned
                        .iter()
                        .map(|(name, binding)| state.resolve(binding).map(|value| (name.clone(), value)))
                        .collect();
                    decisions.push(match outputs {
                        Ok(outputs) => succeeded(node, outputs),
                        Err(error) => failed(node, NodePhase::Failed, error),
                    });
                }
                None => decisions.push(match state.planned_workflow(node) {
                    Ok(planned) => ExecutionEvent::DynamicExpanded {
                        execution: execution.clone(),
                        node,
                        first: state.nodes.len(),
                        added: planned
                            .nodes
                            .iter()
                            .map(|added| AddedNode {
                                id: format!("{}/{}", compiled.id, added.id),
                                task: added.task_id.clone(),
                            })
                            .collect(),
                        at: now,
                    },
                    Err(error) => failed(node, NodePhase::Failed, error),
                }),
            },
            Some(Control::Map(control)) => match state.nodes[node].items {
                Some(_) => decisions.push(match state.gather_map(node) {
                    Ok(outputs) => succeeded(node, outputs),
                    Err(message) => failed(node, NodePhase::Failed, message),
                }),
                None => {
                    let items = match state
                        .node_inputs(node)
                        .map(|mut inputs| inputs.remove(&control.over))
                    {
                        Ok(Some(Value::List(values))) => Ok(values.len()),
                        Ok(other) => Err(format!(
                            "map input {:?} is not a list: {}",
                            control.over,
                            other.map_or_else(|| "missing".to_string(), |v| v.kind_name().to_string())
                        )),
                        Err(error) => Err(error),
                    };
                    decisions.push(match items {
                        Ok(items) => ExecutionEvent::MapExpanded {
                            execution: execution.clone(),
                            node,
                            first: state.nodes.len(),
                            items,
                            task: control.task_id.clone(),
                            at: now,
                        },
                        Err(message) => failed(node, NodePhase::Failed, message),
                    });
                }
            },
            Some(Control::Gate(gate)) => {
                let (until, waiting_for) = match gate {
                    CompiledGate::Sleep { millis } => (Some(now + millis), "the end of a sleep".to_string()),
                    CompiledGate::Signal {
                        name, timeout_millis, ..
                    } => (
                        timeout_millis.map(|millis| now + millis),
                        format!("signal {name:?} (aloft signal {} {name} ...)", execution.name),
                    ),
                    CompiledGate::Approve { timeout_millis } => (
                        timeout_millis.map(|millis| now + millis),
                        format!("approval (aloft approve {} {})", execution.name, compiled.id),
                    ),
                };
                decisions.push(ExecutionEvent::GateWaiting {
                    execution: execution.clone(),
                    node,
                    until,
                    waiting_for,
                    at: now,
                });
            }
        }
    }
    for &node in &state.running_children {
        let Some((phase, outputs, error)) = &state.nodes[node].child_result else {
            continue;
        };
        let child = state.nodes[node]
            .child
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        decisions.push(match phase {
            ExecutionPhase::Succeeded => succeeded(node, outputs.clone()),
            other => failed(
                node,
                NodePhase::Failed,
                format!(
                    "child execution {child} ended {}: {}",
                    other.as_str(),
                    error.clone().unwrap_or_default()
                ),
            ),
        });
    }
    for &node in &state.open_gates {
        let compiled = &state.workflow.nodes[node];
        let Some(Control::Gate(gate)) = &compiled.control else {
            continue;
        };
        let until = state.nodes[node].gate_until;
        let due = until.is_some_and(|until| now >= until);
        match gate {
            CompiledGate::Sleep { .. } => {
                if due {
                    decisions.push(succeeded(node, Outputs::new()));
                }
            }
            CompiledGate::Signal { value_type, .. } => {
                let Some(signal) = gate.signal_name(&compiled.id) else {
                    continue;
                };
                if let Some(value) = state.signals.get(&signal) {
                    let outputs = match value_type {
                        Some(_) => Outputs::from([("value".to_string(), value.clone())]),
                        None => Outputs::new(),
                    };
                    decisions.push(succeeded(node, outputs));
                } else if due {
                    let message = format!("timed out waiting for signal {signal:?}");
                    decisions.push(failed(node, NodePhase::TimedOut, message));
                }
            }
            CompiledGate::Approve { .. } => {
                if state.signals.contains_key(&approval_signal(&compiled.id)) {
                    decisions.push(succeeded(node, Outputs::new()));
                } else if due {
                    let message = "timed out waiting for an approval".to_string();
                    decisions.push(failed(node, NodePhase::TimedOut, message));
                }
            }
        }
    }
}

/// The id of the child execution launch-plan node `node_id` of `parent` launches: in the parent's project
/// and domain, named after both (a valid name; a hash keeps long ones unique).
pub fn child_execution_id(parent: &ExecutionId, node_id: &str) -> ExecutionId {
    let cleaned: String = node_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("{}-{cleaned}", parent.name);
    if name.len() > crate::ids::MAX_NAME_LEN {
        let digest = crate::spec::content_digest(&(&parent.name, node_id));
        name.truncate(crate::ids::MAX_NAME_LEN - digest.len() - 1);
        name = format!("{name}-{digest}");
    }
    ExecutionId {
        project: parent.project.clone(),
        domain: parent.domain.clone(),
        name,
    }
}

/// Position and fencing data of one event, from its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    pub seq: u64,
    pub writer_epoch: u64,
}

/// What happened to an event offered to a partition fold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppliedEvent {
    Accepted,
    /// Already applied (same stream and seq): processing is idempotent.
    Duplicate,
    /// Written by an owner whose epoch is not the partition's current one.
    Fenced,
    /// Not applicable (an execution name that already exists, an unknown execution).
    Ignored(String),
}

/// The admission rule every reader of `aloft.executions` shares (propeller and admin projections):
/// requests always pass; a claim must raise the epoch; a decision must carry the current epoch and the next
/// seq of its stream.
pub fn admit(
    partition_epoch: u64,
    last_seq: Option<u64>,
    meta: &EventMeta,
    event: &ExecutionEvent,
) -> AppliedEvent {
    match event {
        ExecutionEvent::PartitionClaimed { epoch, .. } => {
            if *epoch > partition_epoch {
                AppliedEvent::Accepted
            } else {
                AppliedEvent::Fenced
            }
        }
        ExecutionEvent::ExecutionRequested { .. } => match last_seq {
            Some(_) => AppliedEvent::Ignored("an execution with this name already exists".to_string()),
            None => AppliedEvent::Accepted,
        },
        ExecutionEvent::TerminateRequested { .. }
        | ExecutionEvent::SignalReceived { .. }
        | ExecutionEvent::ChildFinished { .. } => match last_seq {
            Some(_) => AppliedEvent::Accepted,
            None => AppliedEvent::Ignored("unknown execution".to_string()),
        },
        _ => {
            if meta.writer_epoch != partition_epoch {
                return AppliedEvent::Fenced;
            }
            match last_seq {
                None => AppliedEvent::Ignored("unknown execution".to_string()),
                Some(last) if meta.seq <= last => AppliedEvent::Duplicate,
                Some(last) if meta.seq == last + 1 => AppliedEvent::Accepted,
                Some(last) => AppliedEvent::Ignored(format!("seq {} after {last} leaves a gap", meta.seq)),
            }
        }
    }
}

/// The state of one partition of `aloft.executions`: its epoch and every execution in it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PartitionFold {
    pub epoch: u64,
    pub executions: HashMap<ExecutionId, ExecutionState>,
}

/// A partition fold as stored in a snapshot (JSON objects need string keys, so executions are a list).
#[derive(Serialize, Deserialize)]
struct StoredFold {
    epoch: u64,
    executions: Vec<ExecutionState>,
}

impl PartitionFold {
    /// The fold as a snapshot: restoring it and folding the events after it gives the same state as
    /// folding every event from offset 0.
    pub fn to_snapshot(&self) -> Result<Vec<u8>, String> {
        let mut executions: Vec<&ExecutionState> = self.executions.values().collect();
        executions.sort_by_key(|state| state.id.to_string());
        #[derive(Serialize)]
        struct Borrowed<'a> {
            epoch: u64,
            executions: Vec<&'a ExecutionState>,
        }
        serde_json::to_vec(&Borrowed {
            epoch: self.epoch,
            executions,
        })
        .map_err(|e| format!("cannot encode the partition's state: {e}"))
    }

    pub fn from_snapshot(bytes: &[u8]) -> Result<PartitionFold, String> {
        let stored: StoredFold =
            serde_json::from_slice(bytes).map_err(|e| format!("the snapshot is unreadable: {e}"))?;
        Ok(PartitionFold {
            epoch: stored.epoch,
            executions: stored
                .executions
                .into_iter()
                .map(|state| (state.id.clone(), state))
                .collect(),
        })
    }

    pub fn apply(&mut self, meta: &EventMeta, event: &ExecutionEvent) -> AppliedEvent {
        let last_seq = event
            .execution()
            .and_then(|id| self.executions.get(id))
            .map(|state| state.last_seq);
        let verdict = admit(self.epoch, last_seq, meta, event);
        if verdict != AppliedEvent::Accepted {
            return verdict;
        }
        match event {
            ExecutionEvent::PartitionClaimed { epoch, .. } => self.epoch = *epoch,
            ExecutionEvent::ExecutionRequested {
                execution,
                request_id,
                workflow,
                inputs,
                launch_plan,
                requested_at,
                overwrite_cache,
                recovery,
                parent,
                ..
            } => {
                let mut state = ExecutionState::new(
                    execution.clone(),
                    request_id.clone(),
                    Arc::new((**workflow).clone()),
                    inputs.clone(),
                    launch_plan.clone(),
                    *requested_at,
                );
                state.overwrite_cache = *overwrite_cache;
                state.parent = parent.as_deref().cloned();
                if let Some(recovery) = recovery {
                    state.recover(&recovery.nodes);
                }
                self.executions.insert(execution.clone(), state);
            }
            other => {
                let Some(state) = other.execution().and_then(|id| self.executions.get_mut(id)) else {
                    return AppliedEvent::Ignored("unknown execution".to_string());
                };
                if !other.is_request() {
                    state.last_seq = meta.seq;
                }
                state.apply(other);
            }
        }
        AppliedEvent::Accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::CompiledNode;
    use crate::spec::{FailurePolicy, Interface, RetryPolicy, TaskKind, TaskSpec};

    fn fan_out(nodes: usize, max_parallelism: Option<u32>) -> ExecutionState {
        with_policy(nodes, max_parallelism, FailurePolicy::FailFast)
    }

    fn with_policy(nodes: usize, max_parallelism: Option<u32>, on_failure: FailurePolicy) -> ExecutionState {
        let task = TaskSpec {
            name: "noop".into(),
            version: Some("1".into()),
            interface: Interface::default(),
            run: TaskKind::Noop,
            retries: RetryPolicy::default(),
            timeout: None,
            cache: None,
            resources: None,
            interruptible: false,
        };
        let workflow = CompiledWorkflow {
            id: Identifier {
                project: "p".into(),
                domain: "d".into(),
                name: "fan".into(),
                version: "1".into(),
            },
            interface: Interface::default(),
            nodes: (0..nodes)
                .map(|index| CompiledNode {
                    id: format!("n{index}"),
                    task_id: Identifier {
                        project: "p".into(),
                        domain: "d".into(),
                        name: "noop".into(),
                        version: "1".into(),
                    },
                    task: task.clone(),
                    inputs: Default::default(),
                    upstream: vec![],
                    retries: RetryPolicy::default(),
                    control: None,
                    case_of: None,
                    item_of: None,
                })
                .collect(),
            outputs: Default::default(),
            max_parallelism,
            on_failure,
        };
        let id = ExecutionId {
            project: "p".into(),
            domain: "d".into(),
            name: "e".into(),
        };
        ExecutionState::new(id, "r".into(), Arc::new(workflow), Outputs::new(), None, 0)
    }

    fn started(decisions: &[ExecutionEvent]) -> Vec<usize> {
        decisions
            .iter()
            .filter_map(|event| match event {
                ExecutionEvent::AttemptStarted { node, .. } => Some(*node),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn max_parallelism_bounds_running_nodes_and_frees_a_slot_per_finished_one() {
        let mut state = fan_out(5, Some(2));
        let first = decide(&state, 1);
        assert_eq!(started(&first), [0, 1]);
        for event in &first {
            state.apply(event);
        }
        assert!(started(&decide(&state, 2)).is_empty(), "both slots are taken");
        state.apply(&ExecutionEvent::AttemptSucceeded {
            execution: state.id.clone(),
            node: 0,
            attempt: 1,
            outputs: Outputs::new(),
            at: 3,
            cache: None,
        });
        assert_eq!(started(&decide(&state, 4)), [2]);
        // A failed attempt frees its slot too; its retry queues behind the nodes already ready.
        state.apply(&ExecutionEvent::AttemptFailed {
            execution: state.id.clone(),
            node: 1,
            attempt: 1,
            kind: ErrorKind::System,
            message: "lost".into(),
            at: 5,
        });
        assert_eq!(started(&decide(&state, 6)), [1, 2]);
    }

    #[test]
    fn without_a_limit_every_ready_node_starts() {
        let state = fan_out(5, None);
        assert_eq!(started(&decide(&state, 1)), [0, 1, 2, 3, 4]);
    }

    #[test]
    fn one_decision_starts_at_most_a_bounded_number_of_attempts() {
        let mut state = fan_out(MAX_STARTS_PER_DECISION + 200, None);
        let first = decide(&state, 1);
        assert_eq!(started(&first).len(), MAX_STARTS_PER_DECISION);
        apply_all(&mut state, &first);
        assert_eq!(
            started(&decide(&state, 2)).len(),
            200,
            "the rest start in the next round"
        );
    }

    fn apply_all(state: &mut ExecutionState, events: &[ExecutionEvent]) {
        for event in events {
            state.apply(event);
        }
    }

    fn fail(state: &ExecutionState, node: usize) -> ExecutionEvent {
        ExecutionEvent::AttemptFailed {
            execution: state.id.clone(),
            node,
            attempt: 1,
            kind: ErrorKind::User,
            message: "exit 1".into(),
            at: 2,
        }
    }

    #[test]
    fn complete_others_lets_independent_nodes_finish_before_failing() {
        let mut state = with_policy(3, None, FailurePolicy::CompleteOthers);
        let first = decide(&state, 1);
        apply_all(&mut state, &first);
        let failed = fail(&state, 0);
        state.apply(&failed);
        // No user retries: node 0 fails for good, but the execution goes on.
        let after_failure = decide(&state, 3);
        assert!(
            matches!(
                after_failure.as_slice(),
                [ExecutionEvent::NodeFailed { node: 0, .. }]
            ),
            "{after_failure:?}"
        );
        apply_all(&mut state, &after_failure);
        assert!(decide(&state, 4).is_empty(), "nodes 1 and 2 are still running");
        for node in [1, 2] {
            state.apply(&ExecutionEvent::AttemptSucceeded {
                execution: state.id.clone(),
                node,
                attempt: 1,
                outputs: Outputs::new(),
                at: 5,
                cache: None,
            });
        }
        let end = decide(&state, 6);
        assert!(
            matches!(end.as_slice(), [ExecutionEvent::ExecutionFinished { phase: ExecutionPhase::Failed, error: Some(error), .. }] if error.contains("\"n0\"")),
            "{end:?}"
        );
        apply_all(&mut state, &end);
        assert_eq!(state.nodes[1].phase, NodePhase::Succeeded);
        assert_eq!(state.nodes[2].phase, NodePhase::Succeeded);
    }

    #[test]
    fn fail_fast_aborts_the_others_at_the_first_failure() {
        let mut state = with_policy(3, None, FailurePolicy::FailFast);
        let first = decide(&state, 1);
        apply_all(&mut state, &first);
        let failed = fail(&state, 0);
        state.apply(&failed);
        let decisions = decide(&state, 3);
        assert!(
            matches!(
                decisions.as_slice(),
                [
                    ExecutionEvent::NodeFailed { .. },
                    ExecutionEvent::ExecutionFinished {
                        phase: ExecutionPhase::Failed,
                        ..
                    }
                ]
            ),
            "{decisions:?}"
        );
        apply_all(&mut state, &decisions);
        assert_eq!(state.nodes[1].phase, NodePhase::Aborted);
    }
}
