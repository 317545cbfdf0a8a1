//! `apply`: folds one event into an execution's state. Every transition the log records is made here and
//! only here; the propeller, replays and the read models all go through it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::compiler::{inline_workflow, CompiledNode, Control, NodeBinding};
use crate::events::ExecutionEvent;
use crate::interface::Outputs;
use crate::phase::{AttemptPhase, ErrorKind, ExecutionPhase, NodePhase};
use crate::spec::TaskSpec;
use crate::types::Value;

use super::model::{AttemptState, ExecutionState, NodeState};
use super::transitions::Transitions;

impl ExecutionState {
    /// Records that `node`'s row (phase, attempts, outputs, error, timings, wait) changed.
    pub(super) fn touch(&mut self, node: usize) {
        self.changes.0.nodes.push(node);
    }

    /// Ends `node` with `outputs` (SUCCEEDED or RECOVERED) at `at` and readies what waited only for it.
    pub(super) fn complete_node(
        &mut self,
        node: usize,
        phase: NodePhase,
        outputs: &Outputs,
        at: Option<i64>,
    ) {
        let state = &mut self.nodes[node];
        state.outputs = Some(outputs.clone());
        self.settle(node, phase, at);
    }

    /// Ends `node` for good in `phase` (one that does not fail the execution) at `at` and readies what
    /// waited only for it.
    pub(super) fn settle(&mut self, node: usize, phase: NodePhase, at: Option<i64>) {
        self.touch(node);
        let state = &mut self.nodes[node];
        state.phase = phase;
        state.gate = None;
        if at.is_some() {
            state.finished_at = at;
        }
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
    pub(super) fn ready_if_unblocked(&mut self, node: usize) {
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
            self.touch(node);
        }
    }

    /// Applies a branch's choice: the taken case's own nodes may run, every node of the other cases
    /// (nested ones too: each case is a contiguous block) is SKIPPED.
    pub(super) fn take_case(&mut self, branch: usize, taken: usize, at: i64) {
        let Some(Control::Branch { cases, otherwise, .. }) = self.workflow.nodes[branch].control.clone()
        else {
            return;
        };
        self.undecided_branches.remove(&branch);
        self.touch(branch);
        let state = &mut self.nodes[branch];
        state.taken_case = Some(taken);
        state.phase = NodePhase::Running;
        state.started_at.get_or_insert(at);
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
                    self.settle(member, NodePhase::Skipped, Some(at));
                }
            }
        }
    }

    /// Adds `map`'s item nodes, one per element of its `over` input: ordinary task nodes (ids `MAP[i]`)
    /// the map waits for. An inline list gives each item its element (and the resources it names); the
    /// `items` of an offloaded list are bound to their elements, read when they run (see `fetched`).
    pub(super) fn expand_map(&mut self, map: usize, items: usize, at: i64) {
        let Some(Control::Map(control)) = self.workflow.nodes[map].control.clone() else {
            return;
        };
        let Ok(inputs) = self.node_inputs(map) else {
            return;
        };
        let elements: Vec<(NodeBinding, TaskSpec)> = match inputs.get(&control.over) {
            Some(Value::List(values)) => values
                .iter()
                .map(|value| {
                    // Checked when the map was decided; a value that no longer fits keeps the task's own.
                    let task = crate::item_resources::item_task(
                        &control.task,
                        control.item_resources.as_deref(),
                        value,
                    )
                    .unwrap_or_else(|_| (*control.task).clone());
                    (NodeBinding::Constant(value.clone()), task)
                })
                .collect(),
            Some(Value::Offloaded { .. }) => {
                let Some(list) = self.workflow.nodes[map].inputs.get(&control.over).cloned() else {
                    return;
                };
                self.offloaded_maps.insert(map);
                (0..items)
                    .map(|index| {
                        let item = NodeBinding::Item {
                            list: Box::new(list.clone()),
                            index,
                        };
                        (item, (*control.task).clone())
                    })
                    .collect()
            }
            _ => return,
        };
        let count = elements.len();
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
        for (index, (binding, task)) in elements.into_iter().enumerate() {
            let mut item_inputs = shared.clone();
            item_inputs.insert(control.over.clone(), binding);
            workflow.nodes.push(CompiledNode {
                id: format!("{map_id}[{index}]"),
                task_id: control.task_id.clone(),
                task,
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
        self.changes.0.added = Some(first..end);
        self.touch(map);
        let state = &mut self.nodes[map];
        state.items = Some(first..end);
        state.waiting_on = count;
        state.phase = NodePhase::Running;
        state.started_at.get_or_insert(at);
        self.ready.remove(&map);
        // An empty list: the map is done at once.
        self.ready_if_unblocked(map);
    }

    /// Adds the planned workflow's nodes under dynamic node `node`, which then waits for them all.
    pub(super) fn expand_dynamic(&mut self, node: usize, at: i64) {
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
        self.changes.0.added = Some(first..first + count);
        self.touch(node);
        let state = &mut self.nodes[node];
        state.items = Some(first..first + count);
        state.planned_outputs = Some(outputs);
        state.waiting_on = count;
        state.phase = NodePhase::Running;
        state.started_at.get_or_insert(at);
        self.ready.remove(&node);
        self.ready_if_unblocked(node);
    }

    pub(super) fn item_started_or_ended(&mut self, node: usize, started: bool) {
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

    /// Folds one event about this execution into the state and reports what it changed. Events that no
    /// longer fit (a result for an attempt that was aborted) change nothing but are still part of the
    /// history.
    pub fn apply(&mut self, event: &ExecutionEvent) -> Transitions {
        self.apply_event(event);
        std::mem::take(&mut self.changes.0)
    }

    fn apply_event(&mut self, event: &ExecutionEvent) {
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
                    self.changes.0.execution = true;
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
                state.started_at.get_or_insert(*at);
                self.running_nodes += 1;
                state.attempts.push(AttemptState {
                    number: *attempt,
                    phase: AttemptPhase::Running,
                    started_at: *at,
                    finished_at: None,
                    error: None,
                    waiting_for: None,
                    interruptible: *interruptible,
                    cache: None,
                });
                self.ready.remove(node);
                self.touch(*node);
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
                self.touch(*node);
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
                self.touch(*node);
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
                cache,
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
                    last.cache = cache.clone();
                }
                self.complete_node(*node, NodePhase::Succeeded, outputs, Some(*at));
            }
            ExecutionEvent::NodeCacheHit {
                node,
                attempt,
                outputs,
                cache,
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
                    cache: Some(cache.clone()),
                });
                state.started_at.get_or_insert(*at);
                self.ready.remove(node);
                self.complete_node(*node, NodePhase::Succeeded, outputs, Some(*at));
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
                self.touch(*node);
            }
            ExecutionEvent::NodeFailed {
                node,
                phase,
                message,
                at,
                ..
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
                    self.settle(*node, *phase, Some(*at));
                    return;
                }
                self.touch(*node);
                let state = &mut self.nodes[*node];
                state.phase = *phase;
                state.finished_at = Some(*at);
                self.ready.remove(node);
                self.open_gates.remove(node);
                self.undecided_branches.remove(node);
                self.running_children.remove(node);
                self.failed_node.get_or_insert(*node);
            }
            ExecutionEvent::ChildLaunched { node, child, at, .. } => {
                let is_plan = matches!(
                    self.workflow.nodes.get(*node).map(|n| &n.control),
                    Some(Some(Control::LaunchPlan(_)))
                );
                if !is_plan || self.phase.is_terminal() || self.nodes[*node].phase != NodePhase::Queued {
                    return;
                }
                self.touch(*node);
                let state = &mut self.nodes[*node];
                state.phase = NodePhase::Running;
                state.started_at.get_or_insert(*at);
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
            ExecutionEvent::DynamicExpanded { node, at, .. } => {
                if self.may_expand(*node, |control| matches!(control, Control::Dynamic(_))) {
                    self.expand_dynamic(*node, *at);
                }
            }
            ExecutionEvent::MapExpanded { node, items, at, .. } => {
                if self.may_expand(*node, |control| matches!(control, Control::Map(_))) {
                    self.expand_map(*node, *items, *at);
                }
            }
            ExecutionEvent::BranchTaken { node, case, at, .. } => {
                if self.phase.is_terminal() || !self.undecided_branches.contains(node) {
                    return;
                }
                self.take_case(*node, *case, *at);
            }
            ExecutionEvent::GateWaiting {
                node,
                until,
                waiting_for,
                at,
                ..
            } => {
                let Some(state) = self.nodes.get_mut(*node) else {
                    return;
                };
                if state.phase != NodePhase::Queued || self.phase.is_terminal() {
                    return;
                }
                state.phase = NodePhase::Running;
                state.gate_until = *until;
                state.gate = Some(waiting_for.clone());
                state.started_at.get_or_insert(*at);
                self.ready.remove(node);
                self.open_gates.insert(*node);
                self.touch(*node);
            }
            ExecutionEvent::NodeSucceeded {
                node, outputs, at, ..
            } => {
                let Some(state) = self.nodes.get(*node) else {
                    return;
                };
                let settles = (state.phase == NodePhase::Queued && !self.workflow.nodes[*node].is_task())
                    || self.open_gates.contains(node)
                    || self.running_children.contains(node);
                if !settles || self.phase.is_terminal() {
                    return;
                }
                self.nodes[*node].started_at.get_or_insert(*at);
                self.complete_node(*node, NodePhase::Succeeded, outputs, Some(*at));
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
                self.changes.0.execution = true;
                // Nothing is decided any more: lists fetched for the engine are not needed.
                self.forget_fetched();
                // A terminate request read before or after the finish leaves the same state: the owner
                // applies its own decisions on acknowledgement, possibly before a request that precedes
                // them in the log, and replay must still give the live state.
                self.terminate_reason = None;
                self.running_nodes = 0;
                for (index, state) in self.nodes.iter_mut().enumerate() {
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
                        _ => continue,
                    }
                    state.gate = None;
                    state.finished_at = Some(*at);
                    self.changes.0.nodes.push(index);
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
}
