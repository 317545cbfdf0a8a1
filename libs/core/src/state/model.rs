//! The state of one execution as the log has built it: its nodes, their attempts, and the questions
//! `decide` and the propeller ask of it (inputs of a node, running attempts, gate deadlines, children).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cache::CacheOutcome;
use crate::compiler::{CompiledWorkflow, Control, NodeBinding};
use crate::events::{ExecutionEvent, ParentLink, WaitingFor};
use crate::ids::{ExecutionId, Identifier};
use crate::interface::Outputs;
use crate::phase::{AttemptPhase, ErrorKind, ExecutionPhase, NodePhase};
use crate::types::Value;

use super::errors::{GatherError, PlannedError, ResolveError};
use super::transitions::Recorder;

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
    /// For a cached task: the lookup's outcome (a hit, a miss that stored, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheOutcome>,
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
    /// For a waiting gate: what it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<WaitingFor>,
    /// When it first ran (an attempt started, a gate opened, a branch decided, a map expanded, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// When it ended (succeeded, failed, skipped, aborted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    pub(super) waiting_on: usize,
    /// False for a branch case's node until its branch takes that case.
    pub(super) released: bool,
}

impl NodeState {
    /// A node that has not run: `phase` Queued or Pending, waiting for `waiting_on` upstream nodes, and
    /// `released` unless its branch has yet to take its case.
    pub(super) fn fresh(phase: NodePhase, waiting_on: usize, released: bool) -> NodeState {
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
            gate: None,
            started_at: None,
            finished_at: None,
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

/// Offloaded values fetched for the engine, by the URI of their reference (see `fetched`): a cache beside
/// the state, so two states that differ only here are equal.
#[derive(Debug, Clone, Default)]
pub struct FetchedValues(pub(super) std::collections::HashMap<String, Arc<Value>>);

impl PartialEq for FetchedValues {
    fn eq(&self, _other: &FetchedValues) -> bool {
        true
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
    pub(super) downstream: Arc<Vec<Vec<usize>>>,
    /// Nodes in phase Queued, i.e. ready for an attempt (or out of budget, see `decide`).
    pub(super) ready: BTreeSet<usize>,
    /// Branch nodes that have not chosen a case yet.
    pub(super) undecided_branches: BTreeSet<usize>,
    /// Gate nodes waiting now.
    pub(super) open_gates: BTreeSet<usize>,
    /// Launch-plan nodes whose child execution runs now.
    pub(super) running_children: BTreeSet<usize>,
    /// Nodes done for good without failing the execution: succeeded, recovered, skipped, or failed map items.
    pub(super) settled_nodes: usize,
    /// Running items per map node (bounded by its `concurrency`).
    pub(super) running_items: BTreeMap<usize, usize>,
    pub(super) failed_node: Option<usize>,
    /// Nodes with an attempt running now (bounded by the workflow's `max_parallelism`).
    pub(super) running_nodes: usize,
    /// Expanded maps whose list was offloaded: their items are bound to elements of it (see `fetched`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(super) offloaded_maps: BTreeSet<usize>,
    /// Offloaded values the propeller fetched for the engine; not part of the state (see `fetched`).
    #[serde(skip)]
    pub(super) fetched: FetchedValues,
    /// What the event being applied changed (see `Transitions`); empty between events.
    #[serde(skip)]
    pub(super) changes: Recorder,
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
            offloaded_maps: BTreeSet::new(),
            fetched: FetchedValues::default(),
            changes: Recorder::default(),
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
            self.complete_node(node, NodePhase::Recovered, outputs, None);
        }
    }

    /// Whether `node` is a ready, not yet expanded node of the kind `is_kind` accepts (a map or a dynamic
    /// node) in a running execution.
    pub(super) fn may_expand(&self, node: usize, is_kind: fn(&Control) -> bool) -> bool {
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
    pub fn planned_workflow(&self, node: usize) -> Result<CompiledWorkflow, PlannedError> {
        let compiled = &self.workflow.nodes[node];
        let Some(Control::Dynamic(control)) = &compiled.control else {
            return Err(PlannedError::NotDynamic);
        };
        let plan = self
            .resolve(&control.plan)
            .and_then(|plan| self.read_whole(plan))?;
        Ok(control.compile_plan(&compiled.id, &self.workflow.id, &plan)?)
    }

    /// A map whose items are all done: its outputs gathered as lists in item order (an empty place for a
    /// failed item), or why too few items succeeded.
    pub(super) fn gather_map(&self, map: usize) -> Result<Outputs, GatherError> {
        let (Some(Control::Map(control)), Some(items)) =
            (&self.workflow.nodes[map].control, self.nodes[map].items.clone())
        else {
            return Err(GatherError::NotExpanded);
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
            return Err(GatherError::TooFewSucceeded {
                succeeded,
                total,
                min_success_ratio: control.min_success_ratio,
                first_failure,
            });
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

    /// Every branch that can decide now: not yet decided, its case taken (if nested) and the nodes its
    /// conditions read done.
    pub(super) fn decidable_branches(&self) -> impl Iterator<Item = usize> + '_ {
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
            labels: Default::default(),
        })
    }

    /// The outputs of `node` the engine itself reads and which must stay inline, where `apply` sees them,
    /// rather than be offloaded to the blob store: a dynamic node's plan, also through the end of a
    /// subworkflow that passes one on. (A map's list or a condition's operand is fetched when offloaded.)
    pub fn outputs_read_by_the_engine(&self, node: usize) -> BTreeSet<String> {
        self.engine_reads(node, 0)
    }

    fn engine_reads(&self, node: usize, depth: usize) -> BTreeSet<String> {
        /// Subworkflows nest far less deep than this; it only bounds the walk.
        const MAX_NESTING: usize = 32;
        let mut read = BTreeSet::new();
        let mut note = |binding: &NodeBinding| {
            if let NodeBinding::NodeOutput { node: source, output } = binding {
                if *source == node {
                    read.insert(output.clone());
                }
            }
        };
        // Whatever reads a node's output is downstream of it.
        for &reader in self.downstream.get(node).map_or(&[][..], Vec::as_slice) {
            let compiled = &self.workflow.nodes[reader];
            compiled
                .bindings_read_by_the_engine()
                .into_iter()
                .for_each(&mut note);
            // A subworkflow's end passes its inputs on as its outputs: what the engine reads of those, it
            // reads of the nodes they come from.
            if matches!(compiled.control, Some(Control::Subworkflow { .. })) && depth < MAX_NESTING {
                self.engine_reads(reader, depth + 1)
                    .iter()
                    .filter_map(|output| compiled.inputs.get(output))
                    .for_each(&mut note);
            }
        }
        read
    }

    /// The input values of a node, resolved from workflow inputs, constants and upstream outputs.
    pub fn node_inputs(&self, node: usize) -> Result<Outputs, ResolveError> {
        let compiled = &self.workflow.nodes[node];
        compiled
            .inputs
            .iter()
            .map(|(name, binding)| self.resolve(binding).map(|value| (name.clone(), value)))
            .collect()
    }

    pub(super) fn resolve(&self, binding: &NodeBinding) -> Result<Value, ResolveError> {
        match binding {
            NodeBinding::Constant(value) => Ok(value.clone()),
            NodeBinding::WorkflowInput(name) => self
                .inputs
                .get(name)
                .cloned()
                .ok_or_else(|| ResolveError::WorkflowInput { name: name.clone() }),
            NodeBinding::NodeOutput { node, output } => self.nodes[*node]
                .outputs
                .as_ref()
                .and_then(|outputs| outputs.get(output))
                .cloned()
                .ok_or_else(|| ResolveError::NodeOutput {
                    node: self.workflow.nodes[*node].id.clone(),
                    output: output.clone(),
                }),
            NodeBinding::Item { list, index } => self.resolve_item(list, *index),
        }
    }

    /// Whether a gate waits or a launch-plan node's child execution runs: nodes that are running without a task
    /// attempt, which `complete_others` also lets finish.
    pub(super) fn awaits_gates_or_children(&self) -> bool {
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

    pub(super) fn is_running_attempt(&self, node: usize, attempt: u32) -> bool {
        !self.phase.is_terminal()
            && self
                .nodes
                .get(node)
                .and_then(NodeState::running_attempt)
                .is_some_and(|a| a.number == attempt)
    }

    pub(super) fn budget_exhausted(&self, node: usize) -> Option<(NodePhase, String)> {
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
