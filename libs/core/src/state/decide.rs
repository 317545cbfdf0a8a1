//! `decide`: the decisions that follow from an execution's state at a time. Pure: the same state and time
//! always decide the same events.

use std::collections::{BTreeMap, BTreeSet};

use crate::compiler::{approval_signal, CompiledGate, Control};
use crate::events::{AddedNode, ExecutionEvent, WaitingFor};
use crate::ids::ExecutionId;
use crate::interface::Outputs;
use crate::phase::{ExecutionPhase, NodePhase};
use crate::types::Value;

use super::model::ExecutionState;

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
        let outputs: Result<Outputs, _> = state
            .workflow
            .outputs
            .iter()
            .map(|(name, binding)| state.resolve(binding).map(|v| (name.clone(), v)))
            .collect();
        decisions.push(match outputs {
            Ok(outputs) => finish(ExecutionPhase::Succeeded, outputs, None),
            Err(error) => finish(ExecutionPhase::Failed, Outputs::new(), Some(error.to_string())),
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
        // An offloaded operand is read as the propeller fetched it; until it has, the branch waits.
        if cases
            .iter()
            .flat_map(|case| case.condition.refs())
            .any(|operand| state.awaits_fetch(operand))
        {
            continue;
        }
        let mut tried = Vec::new();
        let mut taken = None;
        for (index, case) in cases.iter().enumerate() {
            match case
                .condition
                .evaluate(&|binding| state.resolve(binding).and_then(|value| state.read_whole(value)))
            {
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
                Err(error) => decisions.push(failed(node, NodePhase::Failed, error.to_string())),
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
                    let outputs: Result<Outputs, _> = planned
                        .iter()
                        .map(|(name, binding)| state.resolve(binding).map(|value| (name.clone(), value)))
                        .collect();
                    decisions.push(match outputs {
                        Ok(outputs) => succeeded(node, outputs),
                        Err(error) => failed(node, NodePhase::Failed, error.to_string()),
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
                    Err(error) => failed(node, NodePhase::Failed, error.to_string()),
                }),
            },
            Some(Control::Map(control)) => match state.nodes[node].items {
                Some(_) => decisions.push(match state.gather_map(node) {
                    Ok(outputs) => succeeded(node, outputs),
                    Err(error) => failed(node, NodePhase::Failed, error.to_string()),
                }),
                None => {
                    let over = state
                        .node_inputs(node)
                        .map(|mut inputs| inputs.remove(&control.over));
                    // An offloaded list is read as the propeller fetched it; until it has (see
                    // `fetches_needed`), the map waits.
                    let fetched = match &over {
                        Ok(Some(reference @ Value::Offloaded { .. })) => match state.fetched_value(reference)
                        {
                            Some(list) => Some(list),
                            None => continue,
                        },
                        _ => None,
                    };
                    let items = match fetched
                        .map_or_else(|| over.as_ref().map(Option::as_ref), |list| Ok(Some(list)))
                    {
                        // Items are checked only when they name their own resources: otherwise every one
                        // runs the map's task as it is, and nothing needs building per item here.
                        Ok(Some(Value::List(values))) => match control.item_resources.as_deref() {
                            None => Ok(values.len()),
                            Some(template) => values
                                .iter()
                                .enumerate()
                                .try_for_each(|(index, item)| {
                                    crate::item_resources::item_task(&control.task, Some(template), item)
                                        .map(drop)
                                        .map_err(|reason| format!("map item {index}: {reason}"))
                                })
                                .map(|()| values.len()),
                        },
                        Ok(other) => Err(format!(
                            "map input {:?} is not a list: {}",
                            control.over,
                            other.map_or_else(|| "missing".to_string(), |v| v.kind_name().to_string())
                        )),
                        Err(error) => Err(error.to_string()),
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
                        Err(error) => failed(node, NodePhase::Failed, error.to_string()),
                    });
                }
            },
            Some(Control::Gate(gate)) => {
                let (until, waiting_for) = match gate {
                    CompiledGate::Sleep { millis } => (Some(now + millis), WaitingFor::EndOfSleep),
                    CompiledGate::Signal {
                        name, timeout_millis, ..
                    } => (
                        timeout_millis.map(|millis| now + millis),
                        WaitingFor::Signal { name: name.clone() },
                    ),
                    CompiledGate::Approve { timeout_millis } => (
                        timeout_millis.map(|millis| now + millis),
                        WaitingFor::Approval {
                            node: compiled.id.clone(),
                        },
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

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
