//! Property tests of the execution state machine: for random valid DAGs and random completion orders
//! (including failures and retries), every execution ends in the right terminal phase with the right
//! outputs, and folding the produced events from scratch gives exactly the live state.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;

use aloft_core::cache::{CacheOutcome, CacheStatus};
use aloft_core::compiler::compile_workflow;
use aloft_core::events::{ErrorKind, ExecutionEvent, Outputs};
use aloft_core::spec::{
    BindingSpec, FailurePolicy, Interface, NodeSpec, RetryPolicy, TaskKind, TaskRef, TaskSpec, WorkflowSpec,
};
use aloft_core::state::{decide, AppliedEvent, EventMeta, ExecutionPhase, NodePhase, PartitionFold};
use aloft_core::{ExecutionId, Identifier, LiteralType, Value};
use proptest::prelude::*;

/// Node `i` sums its inputs plus one; roots read the workflow input `x`.
fn sum_task(inputs: usize) -> TaskSpec {
    TaskSpec {
        name: format!("sum{inputs}"),
        version: Some("1".into()),
        interface: Interface {
            inputs: (0..inputs)
                .map(|i| (format!("in{i}"), LiteralType::Integer))
                .collect(),
            outputs: [("n".to_string(), LiteralType::Integer)].into(),
            ..Default::default()
        },
        run: TaskKind::Noop,
        retries: RetryPolicy::default(),
        timeout: None,
        cache: None,
        resources: None,
        interruptible: false,
        secrets: Vec::new(),
    }
}

fn build(
    upstream: &[Vec<usize>],
    retries: RetryPolicy,
    max_parallelism: Option<u32>,
    on_failure: FailurePolicy,
) -> aloft_core::CompiledWorkflow {
    let nodes: Vec<NodeSpec> = upstream
        .iter()
        .enumerate()
        .map(|(index, ups)| {
            let inputs = if ups.is_empty() {
                [(
                    "in0".to_string(),
                    BindingSpec::WorkflowInput { input: "x".into() },
                )]
                .into()
            } else {
                ups.iter()
                    .enumerate()
                    .map(|(k, up)| {
                        (
                            format!("in{k}"),
                            BindingSpec::NodeOutput {
                                node: format!("n{up}"),
                                output: "n".into(),
                            },
                        )
                    })
                    .collect()
            };
            NodeSpec {
                retries: Some(retries),
                ..NodeSpec::task(&format!("n{index}"), &format!("sum{}", ups.len().max(1)), inputs)
            }
        })
        .collect();
    let last = upstream.len() - 1;
    let spec = WorkflowSpec {
        name: "prop".into(),
        version: Some("1".into()),
        interface: Interface {
            inputs: [("x".to_string(), LiteralType::Integer)].into(),
            outputs: [("result".to_string(), LiteralType::Integer)].into(),
            ..Default::default()
        },
        nodes,
        outputs: [(
            "result".to_string(),
            BindingSpec::NodeOutput {
                node: format!("n{last}"),
                output: "n".into(),
            },
        )]
        .into(),
        max_parallelism,
        on_failure,
    };
    let id = Identifier {
        project: "p".into(),
        domain: "d".into(),
        name: "prop".into(),
        version: "1".into(),
    };
    let resolve = |task_ref: &TaskRef| {
        let inputs: usize = task_ref.name.trim_start_matches("sum").parse().ok()?;
        Some((
            Identifier {
                project: "p".into(),
                domain: "d".into(),
                name: task_ref.name.clone(),
                version: "1".into(),
            },
            sum_task(inputs),
        ))
    };
    compile_workflow(id, &spec, &resolve).expect("generated workflows are valid")
}

fn expected_values(upstream: &[Vec<usize>], x: i64) -> Vec<i64> {
    let mut values = vec![0i64; upstream.len()];
    for (index, ups) in upstream.iter().enumerate() {
        values[index] = 1 + if ups.is_empty() {
            x
        } else {
            ups.iter().map(|&u| values[u]).sum()
        };
    }
    values
}

fn dag() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..10).prop_flat_map(|count| {
        let nodes: Vec<_> = (0..count)
            .map(|index| {
                proptest::collection::vec(any::<bool>(), index).prop_map(|picks| {
                    picks
                        .iter()
                        .enumerate()
                        .filter(|(_, picked)| **picked)
                        .map(|(up, _)| up)
                        .collect::<Vec<usize>>()
                })
            })
            .collect();
        nodes
    })
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Succeed,
    FailUser,
    FailSystem,
    /// The propeller parks the attempt behind a limit (WAITING_FOR_RESOURCES) or lets a parked one run.
    WaitOrDispatch,
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![6 => Just(Outcome::Succeed), 1 => Just(Outcome::FailUser), 1 => Just(Outcome::FailSystem), 2 => Just(Outcome::WaitOrDispatch)]
}

struct Simulation {
    fold: PartitionFold,
    log: Vec<(EventMeta, ExecutionEvent)>,
    id: ExecutionId,
    now: i64,
}

impl Simulation {
    fn offer(&mut self, meta: EventMeta, event: ExecutionEvent) -> AppliedEvent {
        let verdict = self.fold.apply(&meta, &event);
        self.log.push((meta, event));
        verdict
    }

    fn append_decisions(&mut self, events: Vec<ExecutionEvent>) {
        for event in events {
            let seq = self.fold.executions[&self.id].last_seq + 1;
            let verdict = self.offer(EventMeta { seq, writer_epoch: 1 }, event);
            assert_eq!(verdict, AppliedEvent::Accepted);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn executions_end_right_and_replay_gives_the_live_state(
        upstream in dag(),
        x in -100i64..100,
        user_retries in 0u32..3,
        system_retries in 0u32..3,
        choices in proptest::collection::vec((any::<usize>(), outcome()), 0..60),
        max_parallelism in proptest::option::of(1u32..4),
        complete_others in any::<bool>(),
        cache_hits in proptest::collection::vec(any::<bool>(), 0..40),
    ) {
        let retries = RetryPolicy { user: user_retries, system: system_retries };
        let on_failure = if complete_others { FailurePolicy::CompleteOthers } else { FailurePolicy::FailFast };
        let workflow = build(&upstream, retries, max_parallelism, on_failure);
        let id = ExecutionId { project: "p".into(), domain: "d".into(), name: "e".into() };
        let mut sim = Simulation { fold: PartitionFold::default(), log: Vec::new(), id: id.clone(), now: 0 };
        sim.offer(EventMeta { seq: 1, writer_epoch: 1 }, ExecutionEvent::PartitionClaimed { partition: 0, epoch: 1, owner: "o".into(), at: 0 });
        sim.offer(EventMeta { seq: 1, writer_epoch: 0 }, ExecutionEvent::ExecutionRequested { overwrite_cache: false, notifications: None, recovery: None, parent: None,
            execution: id.clone(), request_id: "r".into(), workflow: Box::new(workflow.clone()),
            inputs: [("x".to_string(), Value::Integer(x))].into(), launch_plan: None, requested_at: 0, scheduled_at: None,
            labels: Default::default(),
        });
        let values_by_original_index = expected_values(&upstream, x);
        let mut exhausted = false;
        let mut failures: BTreeMap<(usize, bool), u32> = BTreeMap::new();
        let mut choices = choices.into_iter();
        // Like the propeller with a catalog, some starts are decided as cache hits of the right outputs.
        let mut cache_hits = cache_hits.into_iter();
        for _step in 0..10_000 {
            sim.now += 1;
            // Like the propeller, decide again after applying decisions until nothing follows (a node
            // failing under `complete_others` is followed by the finish once nothing else can run).
            for _round in 0..4 {
                let state = &sim.fold.executions[&id];
                let decisions: Vec<ExecutionEvent> = decide(state, sim.now)
                    .into_iter()
                    .map(|event| match event {
                        ExecutionEvent::AttemptStarted { node, attempt, at, .. } if cache_hits.next().unwrap_or(false) => {
                            let inputs = state.node_inputs(node).expect("inputs of a ready node resolve");
                            let sum: i64 = inputs.values().map(|v| match v { Value::Integer(i) => *i, _ => 0 }).sum();
                            ExecutionEvent::NodeCacheHit {
                                execution: id.clone(), node, attempt, at,
                                outputs: [("n".to_string(), Value::Integer(sum + 1))].into(),
                                cache: CacheOutcome { key: format!("k{node}"), status: CacheStatus::Hit, source: None },
                            }
                        }
                        other => other,
                    })
                    .collect();
                if decisions.is_empty() {
                    break;
                }
                sim.append_decisions(decisions);
            }
            let state = &sim.fold.executions[&id];
            if state.phase.is_terminal() {
                break;
            }
            let running: Vec<(usize, u32)> = state.running_attempts().collect();
            if running.is_empty() {
                // Only cache hits were decided this round: decide again.
                continue;
            }
            if let Some(max) = max_parallelism {
                prop_assert!(running.len() <= max as usize, "{} nodes running over max_parallelism {max}", running.len());
            }
            let (pick, outcome) = choices.next().unwrap_or((0, Outcome::Succeed));
            let (node, attempt) = running[pick % running.len()];
            let event = match outcome {
                Outcome::WaitOrDispatch if state.nodes[node].phase == NodePhase::WaitingForResources => {
                    ExecutionEvent::AttemptDispatched { execution: id.clone(), node, attempt, at: sim.now }
                }
                Outcome::WaitOrDispatch => {
                    prop_assert_eq!(state.nodes[node].phase, NodePhase::Running);
                    ExecutionEvent::AttemptWaiting { execution: id.clone(), node, attempt, reason: "executor capacity".into(), at: sim.now }
                }
                Outcome::Succeed => {
                    let inputs = state.node_inputs(node).expect("inputs of a started node resolve");
                    let sum: i64 = inputs.values().map(|v| match v { Value::Integer(i) => *i, _ => 0 }).sum();
                    ExecutionEvent::AttemptSucceeded { cache: None, execution: id.clone(), node, attempt, outputs: [("n".to_string(), Value::Integer(sum + 1))].into(), at: sim.now }
                }
                Outcome::FailUser | Outcome::FailSystem => {
                    let system = matches!(outcome, Outcome::FailSystem);
                    let count = failures.entry((node, system)).or_default();
                    *count += 1;
                    if *count > if system { system_retries } else { user_retries } {
                        exhausted = true;
                    }
                    let kind = if system { ErrorKind::System } else { ErrorKind::User };
                    ExecutionEvent::AttemptFailed { execution: id.clone(), node, attempt, kind, message: "boom".into(), at: sim.now }
                }
            };
            let parks = matches!(event, ExecutionEvent::AttemptWaiting { .. });
            sim.append_decisions(vec![event]);
            if parks {
                let parked = &sim.fold.executions[&id].nodes[node];
                prop_assert_eq!(parked.phase, NodePhase::WaitingForResources);
                prop_assert_eq!(parked.attempts.last().and_then(|a| a.waiting_for.as_deref()), Some("executor capacity"));
                prop_assert_eq!(sim.fold.executions[&id].running_attempts().count(), running.len(), "a waiting attempt still holds its place");
            }
        }
        let live = sim.fold.clone();
        let state = &live.executions[&id];
        prop_assert!(state.phase.is_terminal(), "execution did not finish");
        prop_assert!(state.nodes.iter().all(|n| n.phase != NodePhase::WaitingForResources), "a finished execution has nothing waiting");
        if exhausted {
            prop_assert_eq!(state.phase, ExecutionPhase::Failed);
            prop_assert!(state.error.as_deref().unwrap_or("").contains("retries used up"));
            if complete_others {
                // Every node that does not depend (transitively) on a failed node still ran to success.
                let mut tainted: Vec<bool> = state.nodes.iter().map(|n| n.phase == NodePhase::Failed || n.phase == NodePhase::TimedOut).collect();
                for (index, node) in state.workflow.nodes.iter().enumerate() {
                    if node.upstream.iter().any(|&up| tainted[up]) {
                        tainted[index] = true;
                    }
                }
                for (index, node) in state.nodes.iter().enumerate() {
                    if !tainted[index] {
                        prop_assert_eq!(node.phase, NodePhase::Succeeded, "node {} of an independent branch", index);
                    }
                }
            }
        } else {
            prop_assert_eq!(state.phase, ExecutionPhase::Succeeded);
            let expected: Outputs = [("result".to_string(), Value::Integer(values_by_original_index[upstream.len() - 1]))].into();
            prop_assert_eq!(&state.outputs, &expected);
        }
        // Replay: folding the log from scratch gives exactly the live state, and a second pass changes nothing.
        let mut replayed = PartitionFold::default();
        for (meta, event) in &sim.log {
            replayed.apply(meta, event);
        }
        prop_assert_eq!(&replayed, &live);
        for (meta, event) in &sim.log {
            let verdict = replayed.apply(meta, event);
            prop_assert!(matches!(verdict, AppliedEvent::Duplicate | AppliedEvent::Fenced | AppliedEvent::Ignored(_)), "{:?}", verdict);
        }
        prop_assert_eq!(&replayed, &live);
    }
}

#[test]
fn ready_nodes_start_together_and_a_stale_owner_is_fenced() {
    let workflow = build(
        &[vec![], vec![], vec![0, 1]],
        RetryPolicy::default(),
        None,
        FailurePolicy::FailFast,
    );
    let id = ExecutionId {
        project: "p".into(),
        domain: "d".into(),
        name: "e".into(),
    };
    let mut sim = Simulation {
        fold: PartitionFold::default(),
        log: Vec::new(),
        id: id.clone(),
        now: 0,
    };
    sim.offer(
        EventMeta {
            seq: 1,
            writer_epoch: 1,
        },
        ExecutionEvent::PartitionClaimed {
            partition: 0,
            epoch: 1,
            owner: "a".into(),
            at: 0,
        },
    );
    sim.offer(
        EventMeta {
            seq: 1,
            writer_epoch: 0,
        },
        ExecutionEvent::ExecutionRequested {
            overwrite_cache: false,
            notifications: None,
            recovery: None,
            parent: None,
            execution: id.clone(),
            request_id: "r".into(),
            workflow: Box::new(workflow),
            inputs: [("x".to_string(), Value::Integer(1))].into(),
            launch_plan: None,
            requested_at: 0,
            scheduled_at: None,
            labels: Default::default(),
        },
    );
    let first = decide(&sim.fold.executions[&id], 1);
    let started: Vec<usize> = first
        .iter()
        .filter_map(|e| match e {
            ExecutionEvent::AttemptStarted { node, .. } => Some(*node),
            _ => None,
        })
        .collect();
    assert_eq!(started, vec![0, 1], "both roots start in the first decision");
    sim.append_decisions(first);
    // A new owner claims epoch 2; a late decision of the old owner (epoch 1) must be discarded.
    sim.offer(
        EventMeta {
            seq: 2,
            writer_epoch: 2,
        },
        ExecutionEvent::PartitionClaimed {
            partition: 0,
            epoch: 2,
            owner: "b".into(),
            at: 2,
        },
    );
    let before = sim.fold.clone();
    let late = ExecutionEvent::AttemptSucceeded {
        cache: None,
        execution: id.clone(),
        node: 0,
        attempt: 1,
        outputs: Outputs::new(),
        at: 3,
    };
    let seq = before.executions[&id].last_seq + 1;
    assert_eq!(
        sim.offer(EventMeta { seq, writer_epoch: 1 }, late),
        AppliedEvent::Fenced
    );
    assert_eq!(sim.fold, before);
}

#[test]
fn terminate_aborts_running_attempts_and_skips_the_rest() {
    let workflow = build(
        &[vec![], vec![0]],
        RetryPolicy::default(),
        None,
        FailurePolicy::FailFast,
    );
    let id = ExecutionId {
        project: "p".into(),
        domain: "d".into(),
        name: "e".into(),
    };
    let mut sim = Simulation {
        fold: PartitionFold::default(),
        log: Vec::new(),
        id: id.clone(),
        now: 0,
    };
    sim.offer(
        EventMeta {
            seq: 1,
            writer_epoch: 1,
        },
        ExecutionEvent::PartitionClaimed {
            partition: 0,
            epoch: 1,
            owner: "a".into(),
            at: 0,
        },
    );
    sim.offer(
        EventMeta {
            seq: 1,
            writer_epoch: 0,
        },
        ExecutionEvent::ExecutionRequested {
            overwrite_cache: false,
            notifications: None,
            recovery: None,
            parent: None,
            execution: id.clone(),
            request_id: "r".into(),
            workflow: Box::new(workflow),
            inputs: [("x".to_string(), Value::Integer(1))].into(),
            launch_plan: None,
            requested_at: 0,
            scheduled_at: None,
            labels: Default::default(),
        },
    );
    let decisions = decide(&sim.fold.executions[&id], 1);
    sim.append_decisions(decisions);
    sim.offer(
        EventMeta {
            seq: 1,
            writer_epoch: 0,
        },
        ExecutionEvent::TerminateRequested {
            execution: id.clone(),
            reason: "user".into(),
            requested_at: 2,
        },
    );
    let decisions = decide(&sim.fold.executions[&id], 3);
    sim.append_decisions(decisions);
    let state = &sim.fold.executions[&id];
    assert_eq!(state.phase, ExecutionPhase::Aborted);
    assert_eq!(state.nodes[0].phase, aloft_core::NodePhase::Aborted);
    assert_eq!(state.nodes[1].phase, aloft_core::NodePhase::Skipped);
    assert!(
        decide(state, 4).is_empty(),
        "a finished execution decides nothing"
    );
}
