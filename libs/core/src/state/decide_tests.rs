//! Unit tests of `decide`.

use super::*;
use std::sync::Arc;

use crate::compiler::{CompiledNode, CompiledWorkflow};
use crate::ids::Identifier;
use crate::phase::ErrorKind;
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
        secrets: Vec::new(),
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
