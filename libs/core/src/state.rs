//! The execution state machine: `apply(state, event)` folds one event into the state and `decide(state,
//! now)` returns the decisions that follow from it. Both are pure; the propeller and every replay run the
//! same code, so replaying a partition from offset 0 rebuilds exactly the live state.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::compiler::{CompiledWorkflow, NodeBinding};
use crate::events::{ErrorKind, ExecutionEvent, Outputs};
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

#[derive(Debug, Clone, PartialEq)]
pub struct AttemptState {
    pub number: u32,
    pub phase: AttemptPhase,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub error: Option<(ErrorKind, String)>,
    /// Why it has not run yet, while it waits for resources.
    pub waiting_for: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeState {
    pub phase: NodePhase,
    pub attempts: Vec<AttemptState>,
    pub user_failures: u32,
    pub system_failures: u32,
    pub outputs: Option<Outputs>,
    pub error: Option<String>,
    waiting_on: usize,
}

impl NodeState {
    pub fn running_attempt(&self) -> Option<&AttemptState> {
        self.attempts.last().filter(|a| a.phase == AttemptPhase::Running)
    }
}

#[derive(Debug, Clone, PartialEq)]
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
    downstream: Arc<Vec<Vec<usize>>>,
    /// Nodes in phase Queued, i.e. ready for an attempt (or out of budget, see `decide`).
    ready: BTreeSet<usize>,
    succeeded_nodes: usize,
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
        for (index, node) in workflow.nodes.iter().enumerate() {
            for &up in &node.upstream {
                downstream[up].push(index);
            }
            let phase = if node.upstream.is_empty() {
                ready.insert(index);
                NodePhase::Queued
            } else {
                NodePhase::Pending
            };
            nodes.push(NodeState {
                phase,
                attempts: Vec::new(),
                user_failures: 0,
                system_failures: 0,
                outputs: None,
                error: None,
                waiting_on: node.upstream.len(),
            });
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
            downstream: Arc::new(downstream),
            ready,
            succeeded_nodes: 0,
            failed_node: None,
            running_nodes: 0,
        }
    }

    /// Marks `recovered` nodes as done with the given outputs (RECOVERED) and readies what depends only on
    /// them. Applied with the request, so replay gives the same state.
    pub fn recover(&mut self, recovered: &BTreeMap<String, Outputs>) {
        for (node_id, outputs) in recovered {
            let Some(node) = self.workflow.nodes.iter().position(|n| &n.id == node_id) else {
                continue;
            };
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
        state.phase = phase;
        state.outputs = Some(outputs.clone());
        self.succeeded_nodes += 1;
        let downstream = Arc::clone(&self.downstream);
        for &down in &downstream[node] {
            let down_state = &mut self.nodes[down];
            down_state.waiting_on -= 1;
            if down_state.waiting_on == 0 && down_state.phase == NodePhase::Pending {
                down_state.phase = NodePhase::Queued;
                self.ready.insert(down);
            }
        }
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
                node, attempt, at, ..
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
                });
                self.ready.remove(node);
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
                if state.phase != NodePhase::Queued {
                    return;
                }
                state.phase = *phase;
                state.error = Some(message.clone());
                self.ready.remove(node);
                self.failed_node.get_or_insert(*node);
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
    // Under `complete_others` the execution fails once nothing that can still run is left.
    let failed_and_done = fail_fast || (state.running_nodes == 0 && state.ready.is_empty());
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
    if state.succeeded_nodes == state.nodes.len() {
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
            if fail_fast {
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
    // Ready nodes start in index order (a topological order) while the parallelism limit allows.
    let limit = state
        .workflow
        .max_parallelism
        .map_or(usize::MAX, |max| max as usize);
    debug_assert!(
        state.running_nodes <= limit,
        "more nodes running than max_parallelism allows"
    );
    let free_slots = limit.saturating_sub(state.running_nodes);
    for &node in state
        .ready
        .iter()
        .filter(|node| !failing.contains(node))
        .take(free_slots)
    {
        let attempt = state.nodes[node].attempts.len() as u32 + 1;
        decisions.push(ExecutionEvent::AttemptStarted {
            execution: execution.clone(),
            node,
            attempt,
            at: now,
        });
    }
    decisions
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
        ExecutionEvent::TerminateRequested { .. } => match last_seq {
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

impl PartitionFold {
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
