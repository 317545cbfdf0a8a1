//! Subworkflow, branch, gate, map and dynamic nodes through the compiler and the state machine: what runs, what is
//! SKIPPED, what the outputs are, how gates wait and time out, what a bad spec is told, and (as a property
//! over random inputs, completion orders and signal timings) that replaying the events from scratch gives
//! exactly the live state.
//!
//! Over 600 lines: every node kind through the compiler and the state machine, sharing one task registry and
//! the replay property.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;

use aloft_core::compiler::{compile_workflow_with, CompiledWorkflow, Registry};
use aloft_core::events::{ExecutionEvent, Outputs};
use aloft_core::spec::{Interface, RetryPolicy, TaskKind, TaskRef, TaskSpec, WorkflowSpec};
use aloft_core::state::{decide, AppliedEvent, EventMeta, ExecutionPhase, NodePhase, PartitionFold};
use aloft_core::{ExecutionId, Identifier, LiteralType, Value};
use proptest::prelude::*;

fn identifier(name: &str) -> Identifier {
    Identifier {
        project: "p".into(),
        domain: "d".into(),
        name: name.into(),
        version: "1".into(),
    }
}

/// `inc` adds one to `n`; `add` sums `a` and `b`; `noop` has no interface.
fn task(name: &str) -> Option<TaskSpec> {
    let integer = |names: &[&str]| -> BTreeMap<String, LiteralType> {
        names
            .iter()
            .map(|n| (n.to_string(), LiteralType::Integer))
            .collect()
    };
    let interface = match name {
        "inc" => Interface {
            inputs: integer(&["n"]),
            outputs: integer(&["n"]),
            ..Default::default()
        },
        "add" => Interface {
            inputs: integer(&["a", "b"]),
            outputs: integer(&["n"]),
            ..Default::default()
        },
        "noop" | "spot" => Interface::default(),
        "sized" => Interface {
            inputs: [("sample".to_string(), LiteralType::Struct)].into(),
            ..Default::default()
        },
        "planner" | "bad_planner" => Interface {
            inputs: integer(&["n"]),
            outputs: [("workflow".to_string(), LiteralType::Struct)].into(),
            ..Default::default()
        },
        _ => return None,
    };
    Some(TaskSpec {
        name: name.into(),
        version: Some("1".into()),
        interface,
        run: TaskKind::Noop,
        // `spot` may be interrupted, and has two system retries.
        retries: RetryPolicy {
            user: 0,
            system: if name == "spot" { 2 } else { 3 },
        },
        timeout: None,
        cache: None,
        resources: None,
        interruptible: name == "spot",
        secrets: Vec::new(),
    })
}

/// What a task attempt of this test computes from its inputs.
fn run_task(task: &str, inputs: &Outputs) -> Outputs {
    let integer = |name: &str| match inputs.get(name) {
        Some(Value::Integer(i)) => *i,
        other => panic!("input {name} of {task} is {other:?}"),
    };
    match task {
        "inc" => [("n".to_string(), Value::Integer(integer("n") + 1))].into(),
        "add" => [("n".to_string(), Value::Integer(integer("a") + integer("b")))].into(),
        // Plans inc, then a branch: add 100 above 10, else inc again. The bad planner uses a task it may not.
        "planner" | "bad_planner" => {
            let first_task = if task == "planner" { "inc" } else { "square" };
            let plan = serde_json::json!({
                "name": "planned",
                "interface": {"inputs": {"n": "integer"}, "outputs": {"total": "integer"}},
                "nodes": [
                    {"id": "a", "task": first_task, "inputs": {"n": "inputs.n"}},
                    {"id": "pick", "branch": {
                        "cases": [{"if": "a.n > 10", "then": {"id": "big", "task": "add", "inputs": {"a": "a.n", "b": {"value": 100}}}}],
                        "else": {"id": "small", "task": "inc", "inputs": {"n": "a.n"}}
                    }}
                ],
                "outputs": {"total": "pick.n"}
            });
            [("workflow".to_string(), Value::Struct(plan))].into()
        }
        _ => Outputs::new(),
    }
}

/// Compiles YAML workflows in order; each may use the ones before it as subworkflows.
fn compile(documents: &[&str]) -> Result<CompiledWorkflow, String> {
    let mut registered: BTreeMap<String, CompiledWorkflow> = BTreeMap::new();
    let mut last = None;
    for text in documents {
        // Through JSON, as admin receives specs (serde_yaml wants YAML tags for enums written as maps).
        let value: serde_json::Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        let spec: WorkflowSpec = serde_json::from_value(value).map_err(|e| e.to_string())?;
        let workflows = registered.clone();
        let registry = Registry {
            task: &|r: &TaskRef| task(&r.name).map(|t| (identifier(&r.name), t)),
            workflow: &|r: &TaskRef| workflows.get(&r.name).map(|w| (identifier(&r.name), w.clone())),
            launch_plan: &|r: &TaskRef| {
                // `NAME-plan` is a launch plan of workflow NAME fixing nothing, with n = 1 by default.
                let workflow = workflows.get(r.name.strip_suffix("-plan")?)?;
                Some(aloft_core::compiler::ChildPlan {
                    plan: identifier(&r.name),
                    workflow: workflow.clone(),
                    default_inputs: [("n".to_string(), Value::Integer(1))].into(),
                    fixed_inputs: BTreeMap::new(),
                })
            },
        };
        let compiled =
            compile_workflow_with(identifier(&spec.name), &spec, &registry).map_err(|e| e.to_string())?;
        registered.insert(spec.name.clone(), compiled.clone());
        last = Some(compiled);
    }
    last.ok_or_else(|| "no documents".to_string())
}

/// Asserts the documents do not compile, with an error that says `expected`.
fn assert_refused(documents: &[&str], expected: &str) {
    let error = compile(documents).unwrap_err();
    assert!(error.contains(expected), "expected {expected:?} in: {error}");
}

/// The one item `inc` fails on, so maps can be shown tolerating (or not) a failed item.
const UNLUCKY: i64 = 13_013;

struct Run {
    fold: PartitionFold,
    log: Vec<(EventMeta, ExecutionEvent)>,
    id: ExecutionId,
    now: i64,
}

impl Run {
    fn start(workflow: &CompiledWorkflow, inputs: Outputs) -> Run {
        Run::from_request(ExecutionEvent::ExecutionRequested {
            execution: ExecutionId {
                project: "p".into(),
                domain: "d".into(),
                name: "e".into(),
            },
            request_id: "r".into(),
            workflow: Box::new(workflow.clone()),
            inputs,
            launch_plan: None,
            requested_at: 0,
            scheduled_at: None,
            overwrite_cache: false,
            notifications: None,
            recovery: None,
            parent: None,
            labels: Default::default(),
        })
    }

    /// A run of the execution `request` asks for (a child's request, as its parent's owner appends it).
    fn from_request(request: ExecutionEvent) -> Run {
        let Some(id) = request.execution().cloned() else {
            panic!("not a request: {request:?}");
        };
        let mut run = Run {
            fold: PartitionFold::default(),
            log: Vec::new(),
            id,
            now: 0,
        };
        run.offer(
            EventMeta {
                seq: 1,
                writer_epoch: 1,
            },
            ExecutionEvent::PartitionClaimed {
                partition: 0,
                epoch: 1,
                owner: "o".into(),
                at: 0,
            },
        );
        run.offer(
            EventMeta {
                seq: 0,
                writer_epoch: 0,
            },
            request,
        );
        run
    }

    fn offer(&mut self, meta: EventMeta, event: ExecutionEvent) -> AppliedEvent {
        let verdict = self.fold.apply(&meta, &event);
        self.log.push((meta, event));
        verdict
    }

    fn state(&self) -> &aloft_core::ExecutionState {
        &self.fold.executions[&self.id]
    }

    /// Decides and appends until nothing follows.
    fn settle(&mut self) {
        loop {
            let decisions = decide(self.state(), self.now);
            if decisions.is_empty() {
                return;
            }
            for event in decisions {
                let seq = self.state().last_seq + 1;
                assert_eq!(
                    self.offer(EventMeta { seq, writer_epoch: 1 }, event),
                    AppliedEvent::Accepted
                );
            }
        }
    }

    fn signal(&mut self, signal: &str, value: Value) {
        let event = ExecutionEvent::SignalReceived {
            execution: self.id.clone(),
            signal: signal.into(),
            value,
            requested_at: self.now,
        };
        assert_eq!(
            self.offer(
                EventMeta {
                    seq: 0,
                    writer_epoch: 0
                },
                event
            ),
            AppliedEvent::Accepted
        );
    }

    /// Completes the `pick`-th running attempt (mod their count); false when none runs. `inc` of `UNLUCKY` fails.
    fn complete_one(&mut self, pick: usize) -> bool {
        let running: Vec<(usize, u32)> = self.state().running_attempts().collect();
        if running.is_empty() {
            return false;
        }
        let (node, attempt) = running[pick % running.len()];
        let state = self.state();
        let inputs = state.node_inputs(node).unwrap();
        let task = &state.workflow.nodes[node].task.name;
        let seq = state.last_seq + 1;
        let event = if task == "inc" && inputs.get("n") == Some(&Value::Integer(UNLUCKY)) {
            ExecutionEvent::AttemptFailed {
                execution: self.id.clone(),
                node,
                attempt,
                kind: aloft_core::events::ErrorKind::User,
                message: "unlucky".into(),
                at: self.now,
            }
        } else {
            ExecutionEvent::AttemptSucceeded {
                execution: self.id.clone(),
                node,
                attempt,
                outputs: run_task(task, &inputs),
                at: self.now,
                cache: None,
            }
        };
        assert_eq!(
            self.offer(EventMeta { seq, writer_epoch: 1 }, event),
            AppliedEvent::Accepted
        );
        true
    }

    /// Completes every running attempt at once (a round); false when none runs.
    fn complete_all(&mut self) -> bool {
        let running = self.state().running_attempts().count();
        for _ in 0..running {
            self.complete_one(0);
        }
        running > 0
    }

    /// Runs every attempt to success, advancing the clock by 10 ms whenever nothing runs, until the
    /// execution ends or `until` (millis) passes.
    fn run_until(&mut self, until: i64) {
        while self.now <= until {
            self.settle();
            if self.state().phase.is_terminal() {
                return;
            }
            if !self.complete_one(0) {
                self.now += 10;
            }
        }
    }

    fn phase_of(&self, node_id: &str) -> NodePhase {
        let state = self.state();
        let index = state.workflow.nodes.iter().position(|n| n.id == node_id);
        state.nodes[index.unwrap_or_else(|| panic!("no node {node_id}"))].phase
    }

    fn assert_replay_gives_the_live_state(&self) {
        let mut replayed = PartitionFold::default();
        for (meta, event) in &self.log {
            replayed.apply(meta, event);
        }
        assert_eq!(replayed, self.fold);
    }
}

fn x(value: i64) -> Outputs {
    [("x".to_string(), Value::Integer(value))].into()
}

const BRANCHY: &str = r#"
name: branchy
interface: {inputs: {x: integer}, outputs: {result: integer}}
nodes:
  - id: prep
    task: inc
    inputs: {n: inputs.x}
  - id: pick
    branch:
      cases:
        - if: "prep.n > 10"
          then: {id: big, task: add, inputs: {a: prep.n, b: {value: 100}}}
        - if: "prep.n > 0 and inputs.x != 4"
          then: {id: small, task: inc, inputs: {n: prep.n}}
      else: {id: other, task: add, inputs: {a: inputs.x, b: {value: -1000}}}
  - id: after
    task: inc
    inputs: {n: pick.n}
outputs: {result: after.n}
"#;

#[test]
fn a_branch_runs_the_first_matching_case_and_skips_the_others() {
    let workflow = compile(&[BRANCHY]).unwrap();
    for (input, taken, result) in [
        (20, "pick/big", 21 + 100 + 1),
        (3, "pick/small", 4 + 1 + 1),
        (4, "pick/other", 4 - 1000 + 1),
        (-5, "pick/other", -5 - 1000 + 1),
    ] {
        let mut run = Run::start(&workflow, x(input));
        run.run_until(1_000);
        let state = run.state();
        assert_eq!(
            state.phase,
            ExecutionPhase::Succeeded,
            "x={input}: {:?}",
            state.error
        );
        assert_eq!(state.outputs["result"], Value::Integer(result), "x={input}");
        for case in ["pick/big", "pick/small", "pick/other"] {
            let expected = if case == taken {
                NodePhase::Succeeded
            } else {
                NodePhase::Skipped
            };
            assert_eq!(run.phase_of(case), expected, "x={input}: {case}");
        }
        assert_eq!(run.phase_of("pick"), NodePhase::Succeeded);
        run.assert_replay_gives_the_live_state();
    }
}

#[test]
fn a_branch_without_else_that_matches_nothing_fails_saying_so() {
    let spec = BRANCHY.replace(
        "      else: {id: other, task: add, inputs: {a: inputs.x, b: {value: -1000}}}\n",
        "",
    );
    let workflow = compile(&[&spec]).unwrap();
    let mut run = Run::start(&workflow, x(-5));
    run.run_until(1_000);
    let state = run.state();
    assert_eq!(state.phase, ExecutionPhase::Failed);
    let error = state.error.clone().unwrap_or_default();
    assert!(
        error.contains("\"pick\"")
            && error.contains("no case matched")
            && error.contains("prep.n > 10 is false")
            && error.contains("no else"),
        "{error}"
    );
    assert_eq!(run.phase_of("pick"), NodePhase::Failed);
    run.assert_replay_gives_the_live_state();
}

const PLUS_TWO: &str = r#"
name: plus_two
interface: {inputs: {n: integer}, outputs: {n: integer}}
nodes:
  - {id: a, task: inc, inputs: {n: inputs.n}}
  - {id: b, task: inc, inputs: {n: a.n}}
outputs: {n: b.n}
"#;

#[test]
fn a_subworkflow_runs_inlined_under_its_node_and_its_outputs_are_the_nodes() {
    let parent = r#"
name: parent
interface: {inputs: {x: integer}, outputs: {result: integer}}
nodes:
  - {id: twice, workflow: plus_two, inputs: {n: inputs.x}}
  - {id: last, task: inc, inputs: {n: twice.n}}
outputs: {result: last.n}
"#;
    let workflow = compile(&[PLUS_TWO, parent]).unwrap();
    let ids: Vec<&str> = workflow.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["twice/a", "twice/b", "twice", "last"]);
    let mut run = Run::start(&workflow, x(5));
    run.run_until(1_000);
    assert_eq!(run.state().outputs["result"], Value::Integer(8));
    for node in ["twice/a", "twice/b", "twice", "last"] {
        assert_eq!(run.phase_of(node), NodePhase::Succeeded, "{node}");
    }
    run.assert_replay_gives_the_live_state();
}

#[test]
fn nested_kinds_a_subworkflow_in_a_case_and_a_branch_in_a_subworkflow() {
    let chooser = r#"
name: chooser
interface: {inputs: {n: integer}, outputs: {n: integer}}
nodes:
  - id: choose
    branch:
      cases:
        - if: "inputs.n >= 100"
          then: {id: deep, workflow: plus_two, inputs: {n: inputs.n}}
      else: {id: shallow, task: inc, inputs: {n: inputs.n}}
outputs: {n: choose.n}
"#;
    let top = r#"
name: top
interface: {inputs: {x: integer}, outputs: {result: integer}}
nodes:
  - {id: inner, workflow: chooser, inputs: {n: inputs.x}}
outputs: {result: inner.n}
"#;
    let workflow = compile(&[PLUS_TWO, chooser, top]).unwrap();
    let ids: Vec<&str> = workflow.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "inner/choose/deep/a",
            "inner/choose/deep/b",
            "inner/choose/deep",
            "inner/choose/shallow",
            "inner/choose",
            "inner"
        ]
    );
    for (input, result, skipped) in [(100, 102, "inner/choose/shallow"), (7, 8, "inner/choose/deep/a")] {
        let mut run = Run::start(&workflow, x(input));
        run.run_until(1_000);
        assert_eq!(
            run.state().phase,
            ExecutionPhase::Succeeded,
            "{:?}",
            run.state().error
        );
        assert_eq!(run.state().outputs["result"], Value::Integer(result));
        assert_eq!(run.phase_of(skipped), NodePhase::Skipped);
        if input == 7 {
            // Every node of the case not taken is skipped, nested ones too.
            assert_eq!(run.phase_of("inner/choose/deep/b"), NodePhase::Skipped);
            assert_eq!(run.phase_of("inner/choose/deep"), NodePhase::Skipped);
        }
        run.assert_replay_gives_the_live_state();
    }
}

const GATED: &str = r#"
name: gated
interface: {inputs: {x: integer}, outputs: {result: integer}}
nodes:
  - {id: nap, gate: {sleep: 50ms}}
  - {id: count, gate: {signal: {name: count, type: integer, timeout: 1s}}, after: [nap]}
  - {id: review, gate: {approve: {}}, after: [count]}
  - {id: sum, task: add, inputs: {a: inputs.x, b: count.value}, after: [review]}
outputs: {result: sum.n}
"#;

#[test]
fn gates_wait_for_their_time_their_signal_and_their_approval() {
    let workflow = compile(&[GATED]).unwrap();
    let mut run = Run::start(&workflow, x(1));
    run.run_until(40);
    assert_eq!(run.phase_of("nap"), NodePhase::Running, "the sleep has not ended");
    run.run_until(200);
    assert_eq!(run.phase_of("nap"), NodePhase::Succeeded);
    assert_eq!(run.phase_of("count"), NodePhase::Running, "waits for its signal");
    run.signal("count", Value::Integer(41));
    run.run_until(300);
    assert_eq!(run.phase_of("count"), NodePhase::Succeeded);
    assert_eq!(
        run.phase_of("review"),
        NodePhase::Running,
        "waits for its approval, with no timeout"
    );
    run.run_until(5_000);
    assert_eq!(run.phase_of("review"), NodePhase::Running);
    run.signal("approve:review", Value::Boolean(true));
    run.run_until(6_000);
    assert_eq!(run.state().phase, ExecutionPhase::Succeeded);
    assert_eq!(run.state().outputs["result"], Value::Integer(42));
    run.assert_replay_gives_the_live_state();
}

#[test]
fn a_gate_times_out_and_fails_the_execution_and_an_early_signal_opens_it_at_once() {
    let workflow = compile(&[GATED]).unwrap();
    let mut run = Run::start(&workflow, x(1));
    run.run_until(2_000);
    assert_eq!(run.state().phase, ExecutionPhase::Failed);
    assert_eq!(run.phase_of("count"), NodePhase::TimedOut);
    let error = run.state().error.clone().unwrap_or_default();
    assert!(
        error.contains("timed out waiting for signal \"count\""),
        "{error}"
    );
    run.assert_replay_gives_the_live_state();

    let mut early = Run::start(&workflow, x(1));
    early.signal("count", Value::Integer(1));
    early.signal("approve:review", Value::Boolean(true));
    early.run_until(2_000);
    assert_eq!(early.state().phase, ExecutionPhase::Succeeded);
    assert_eq!(early.state().outputs["result"], Value::Integer(2));
}

#[test]
fn complete_others_lets_a_waiting_gate_and_what_follows_it_finish_before_failing() {
    let patient = |policy: &str| {
        compile(&[&format!(
            "name: patient\non_failure: {policy}\ninterface: {{inputs: {{x: integer}}}}\nnodes:\n\
             \x20 - {{id: doomed, task: inc, inputs: {{n: inputs.x}}}}\n\
             \x20 - {{id: nap, gate: {{sleep: 500ms}}}}\n\
             \x20 - {{id: after_nap, task: noop, after: [nap]}}\n"
        )])
        .unwrap()
    };
    let mut run = Run::start(&patient("complete_others"), x(UNLUCKY));
    run.run_until(300);
    assert_eq!(run.phase_of("doomed"), NodePhase::Failed);
    assert_eq!(run.phase_of("nap"), NodePhase::Running);
    assert_eq!(
        run.state().phase,
        ExecutionPhase::Running,
        "the sleeping gate is let finish"
    );
    run.run_until(2_000);
    assert_eq!(run.phase_of("nap"), NodePhase::Succeeded);
    assert_eq!(run.phase_of("after_nap"), NodePhase::Succeeded);
    assert_eq!(run.state().phase, ExecutionPhase::Failed);
    let error = run.state().error.clone().unwrap_or_default();
    assert!(error.starts_with("node \"doomed\""), "{error}");
    run.assert_replay_gives_the_live_state();

    let mut fail_fast = Run::start(&patient("fail_fast"), x(UNLUCKY));
    fail_fast.run_until(300);
    assert_eq!(fail_fast.state().phase, ExecutionPhase::Failed);
    assert_eq!(fail_fast.phase_of("after_nap"), NodePhase::Skipped);
}

#[test]
fn bad_node_kinds_are_refused_with_what_is_wrong() {
    let cases: Vec<(String, &str)> = vec![
        (
            BRANCHY.replace("prep.n > 10", "prep.n > 'ten'"),
            "compares integer with string",
        ),
        (BRANCHY.replace("prep.n > 10", "prep.n >"), "expected a value"),
        (
            BRANCHY.replace("prep.n > 10", "ghost.n > 10"),
            "unknown node \"ghost\"",
        ),
        (
            BRANCHY.replace(
                "{id: other, task: add, inputs: {a: inputs.x, b: {value: -1000}}}",
                "{id: other, task: noop}",
            ),
            "has no output \"n\"",
        ),
        (
            BRANCHY.replace("{id: small, task: inc", "{id: big, task: inc"),
            "case node id \"big\" is used more than once",
        ),
        (GATED.replace("{sleep: 50ms}", "{sleep: soon}"), "gate sleep"),
        (
            GATED.replace(
                "{id: nap, gate: {sleep: 50ms}}",
                "{id: nap, gate: {sleep: 50ms}, inputs: {n: inputs.x}}",
            ),
            "a gate takes no inputs",
        ),
        (
            GATED.replace("timeout: 1s", "timeout: 0s"),
            "gate timeout must be positive",
        ),
        (
            GATED.replace(
                "{id: nap, gate: {sleep: 50ms}}",
                "{id: nap, task: noop, gate: {sleep: 50ms}}",
            ),
            "more than one of task, workflow, launch_plan, branch, gate, map and dynamic",
        ),
        (
            GATED.replace("{id: nap, gate: {sleep: 50ms}}", "{id: nap}"),
            "must set one of task, workflow, launch_plan, branch, gate, map or dynamic",
        ),
        (
            GATED.replace("name: count, type", "name: \"no:colon\", type"),
            "signal name",
        ),
    ];
    for (spec, expected) in cases {
        assert_refused(&[&spec], expected);
    }
    let unknown = "name: u\nnodes: [{id: s, workflow: nowhere}]\n";
    assert_refused(&[unknown], "workflow \"nowhere\" is not registered");
}

fn mapped(settings: &str) -> CompiledWorkflow {
    let spec = format!(
        r#"
name: mapped
interface: {{inputs: {{xs: "list<integer>"}}, outputs: {{ns: {}}}}}
nodes:
  - {{id: m, map: {{task: inc, over: n{settings}}}, inputs: {{n: inputs.xs}}}}
outputs: {{ns: m.n}}
"#,
        if settings.contains("min_success_ratio") {
            "\"list<optional<integer>>\""
        } else {
            "\"list<integer>\""
        }
    );
    compile(&[&spec]).unwrap()
}

fn list(items: &[i64]) -> Outputs {
    let values = items.iter().map(|i| Value::Integer(*i)).collect();
    [("xs".to_string(), Value::List(values))].into()
}

#[test]
fn a_map_runs_its_task_per_item_within_its_concurrency_and_gathers_lists_in_order() {
    let workflow = mapped(", concurrency: 2");
    let mut run = Run::start(&workflow, list(&[5, 1, 7, 3, 9]));
    let mut most_running = 0;
    while !run.state().phase.is_terminal() && run.now < 1_000 {
        run.settle();
        most_running = most_running.max(run.state().running_attempts().count());
        // Finish the newest first, so items end out of order.
        if !run.complete_one(usize::MAX) {
            run.now += 10;
        }
    }
    assert_eq!(most_running, 2, "concurrency 2");
    assert_eq!(
        run.state().phase,
        ExecutionPhase::Succeeded,
        "{:?}",
        run.state().error
    );
    let expected: Vec<Value> = [6, 2, 8, 4, 10].iter().map(|i| Value::Integer(*i)).collect();
    assert_eq!(run.state().outputs["ns"], Value::List(expected));
    assert_eq!(run.phase_of("m[4]"), NodePhase::Succeeded);
    run.assert_replay_gives_the_live_state();

    let mut empty = Run::start(&workflow, list(&[]));
    empty.run_until(100);
    assert_eq!(empty.state().outputs["ns"], Value::List(vec![]));
}

#[test]
fn min_success_ratio_decides_whether_failed_items_fail_the_map() {
    let tolerant = mapped(", min_success_ratio: 0.6");
    let mut run = Run::start(&tolerant, list(&[1, UNLUCKY, 3]));
    run.run_until(1_000);
    assert_eq!(
        run.state().phase,
        ExecutionPhase::Succeeded,
        "{:?}",
        run.state().error
    );
    assert_eq!(
        run.state().outputs["ns"],
        Value::List(vec![Value::Integer(2), Value::None, Value::Integer(4)])
    );
    assert_eq!(run.phase_of("m[1]"), NodePhase::Failed);
    run.assert_replay_gives_the_live_state();

    let strict = mapped("");
    let mut run = Run::start(&strict, list(&[1, UNLUCKY, 3]));
    run.run_until(1_000);
    assert_eq!(run.state().phase, ExecutionPhase::Failed);
    let error = run.state().error.clone().unwrap_or_default();
    assert!(
        error.contains("2 of 3 items succeeded, below min_success_ratio 1") && error.contains("m[1]"),
        "{error}"
    );
    run.assert_replay_gives_the_live_state();
}

#[test]
fn a_map_over_ten_thousand_items_completes() {
    let workflow = mapped(", concurrency: 500");
    let items: Vec<i64> = (100..10_100).collect();
    let mut run = Run::start(&workflow, list(&items));
    while !run.state().phase.is_terminal() {
        run.settle();
        if !run.complete_all() {
            run.now += 10;
        }
        assert!(run.now < 1_000, "the map stalled");
    }
    assert_eq!(
        run.state().phase,
        ExecutionPhase::Succeeded,
        "{:?}",
        run.state().error
    );
    let Value::List(values) = &run.state().outputs["ns"] else {
        panic!("not a list");
    };
    assert_eq!(values.len(), 10_000);
    assert_eq!(values[9_999], Value::Integer(10_100));
}

#[test]
fn bad_maps_are_refused_with_what_is_wrong() {
    let base = r#"
name: bad_map
interface: {inputs: {x: integer, xs: "list<integer>"}}
nodes:
  - {id: m, map: {task: inc, over: n}, inputs: {n: inputs.xs}}
"#;
    for (from, to, expected) in [
        (
            "n: inputs.xs",
            "n: inputs.x",
            "input \"n\" has type list<integer>, but is bound to workflow input \"x\" of type integer",
        ),
        (
            "over: n}",
            "over: m}",
            "map over \"m\": task inc has no input of that name",
        ),
        (
            "over: n}",
            "over: n, concurrency: 0}",
            "map concurrency must be at least 1",
        ),
        (
            "over: n}",
            "over: n, min_success_ratio: 1.5}",
            "min_success_ratio must be above 0 and at most 1",
        ),
        ("task: inc", "task: nope", "task \"nope\" is not registered"),
    ] {
        assert_refused(&[&base.replace(from, to)], expected);
    }
}

const PLANNED: &str = r#"
name: planned_top
interface: {inputs: {x: integer}, outputs: {result: integer}}
nodes:
  - id: plan
    dynamic: {task: planner, uses: [inc, add], outputs: {total: integer}}
    inputs: {n: inputs.x}
  - {id: last, task: inc, inputs: {n: plan.total}}
outputs: {result: last.n}
"#;

#[test]
fn a_dynamic_node_runs_the_workflow_its_planner_wrote_branch_included() {
    let workflow = compile(&[PLANNED]).unwrap();
    for (input, result, taken, skipped) in [
        (20, 21 + 100 + 1, "plan/pick/big", "plan/pick/small"),
        (1, 2 + 1 + 1, "plan/pick/small", "plan/pick/big"),
    ] {
        let mut run = Run::start(&workflow, x(input));
        run.run_until(1_000);
        assert_eq!(
            run.state().phase,
            ExecutionPhase::Succeeded,
            "{:?}",
            run.state().error
        );
        assert_eq!(run.state().outputs["result"], Value::Integer(result));
        for node in ["plan/plan", "plan/a", "plan/pick", taken, "plan", "last"] {
            assert_eq!(run.phase_of(node), NodePhase::Succeeded, "{node}");
        }
        assert_eq!(run.phase_of(skipped), NodePhase::Skipped);
        run.assert_replay_gives_the_live_state();
    }
}

#[test]
fn a_plan_that_does_not_compile_fails_the_node_with_the_compile_error_before_anything_runs() {
    let workflow = compile(&[&PLANNED.replace("task: planner", "task: bad_planner")]).unwrap();
    let mut run = Run::start(&workflow, x(3));
    run.run_until(1_000);
    assert_eq!(run.state().phase, ExecutionPhase::Failed);
    let error = run.state().error.clone().unwrap_or_default();
    assert!(
        error.contains("the planned workflow does not compile")
            && error.contains("task \"square\" is not registered")
            && error.contains("it may use the tasks: add, inc"),
        "{error}"
    );
    assert_eq!(
        run.state().nodes.len(),
        workflow.nodes.len(),
        "no planned node was added"
    );
    run.assert_replay_gives_the_live_state();

    for (from, to, expected) in [
        (
            "task: planner",
            "task: inc",
            "the planner task inc needs an output `workflow` of type struct",
        ),
        (
            "uses: [inc, add]",
            "uses: [inc, nope]",
            "task \"nope\" is not registered",
        ),
    ] {
        assert_refused(&[&PLANNED.replace(from, to)], expected);
    }
}

#[test]
fn a_launch_plan_node_runs_a_linked_child_execution_and_takes_its_outputs() {
    let parent = r#"
name: parent
interface: {inputs: {x: integer}, outputs: {result: integer}}
nodes:
  - {id: kid, launch_plan: plus_two-plan, inputs: {n: inputs.x}}
  - {id: defaulted, launch_plan: plus_two-plan}
  - {id: after, task: add, inputs: {a: kid.n, b: defaulted.n}}
outputs: {result: after.n}
"#;
    let workflow = compile(&[PLUS_TWO, parent]).unwrap();
    let mut run = Run::start(&workflow, x(10));
    run.settle();
    for node_id in ["kid", "defaulted"] {
        assert_eq!(
            run.phase_of(node_id),
            NodePhase::Running,
            "{node_id} waits for its child"
        );
    }
    let children: Vec<(usize, ExecutionId)> = run
        .state()
        .running_children()
        .map(|(node, child)| (node, child.clone()))
        .collect();
    assert_eq!(children.len(), 2);
    assert_eq!(children[0].1.name, "e-kid", "named after the parent and the node");
    for (node, child) in children {
        let request = run.state().child_request(node, run.now).unwrap();
        let mut child_run = Run::from_request(request);
        assert_eq!(
            child_run.state().parent.as_ref().map(|p| p.node),
            Some(node),
            "the child knows its parent"
        );
        child_run.run_until(1_000);
        let child_state = child_run.state();
        assert_eq!(child_state.phase, ExecutionPhase::Succeeded);
        let finished = ExecutionEvent::ChildFinished {
            execution: run.id.clone(),
            node,
            child,
            phase: child_state.phase,
            outputs: child_state.outputs.clone(),
            error: None,
            requested_at: run.now,
        };
        assert_eq!(
            run.offer(
                EventMeta {
                    seq: 0,
                    writer_epoch: 0
                },
                finished
            ),
            AppliedEvent::Accepted
        );
    }
    run.run_until(1_000);
    // kid: 10 + 2; defaulted: the plan's default 1 + 2.
    assert_eq!(run.state().outputs["result"], Value::Integer(12 + 3));
    run.assert_replay_gives_the_live_state();

    let fixed_spec = parent.replace(
        "plus_two-plan, inputs: {n: inputs.x}",
        "nowhere-plan, inputs: {n: inputs.x}",
    );
    assert_refused(
        &[PLUS_TWO, &fixed_spec],
        "launch plan \"nowhere-plan\" is not registered",
    );
}

#[test]
fn a_failed_child_fails_its_node_with_the_childs_error() {
    let parent = "name: parent\nnodes: [{id: kid, launch_plan: plus_two-plan}]\n";
    let workflow = compile(&[PLUS_TWO, parent]).unwrap();
    let mut run = Run::start(&workflow, Outputs::new());
    run.settle();
    let (node, child) = run
        .state()
        .running_children()
        .map(|(n, c)| (n, c.clone()))
        .next()
        .unwrap();
    let finished = ExecutionEvent::ChildFinished {
        execution: run.id.clone(),
        node,
        child,
        phase: ExecutionPhase::Failed,
        outputs: Outputs::new(),
        error: Some("node \"a\" exploded".into()),
        requested_at: 5,
    };
    run.offer(
        EventMeta {
            seq: 0,
            writer_epoch: 0,
        },
        finished,
    );
    run.run_until(100);
    assert_eq!(run.state().phase, ExecutionPhase::Failed);
    let error = run.state().error.clone().unwrap_or_default();
    assert!(
        error.contains("child execution p/d/e-kid ended FAILED: node \"a\" exploded"),
        "{error}"
    );
}

#[test]
fn a_map_inside_a_subworkflow_and_a_node_timeout_override() {
    let squares = r#"
name: squares
interface: {inputs: {xs: "list<integer>"}, outputs: {ns: "list<integer>"}}
nodes:
  - {id: each, map: {task: inc, over: n, concurrency: 2}, inputs: {n: inputs.xs}, timeout: 5m}
outputs: {ns: each.n}
"#;
    let top = r#"
name: top
interface: {outputs: {ns: "list<integer>"}}
nodes:
  - {id: inner, workflow: squares, inputs: {xs: {value: [1, 2, 3]}}}
  - {id: quick, task: noop, timeout: 30s}
outputs: {ns: inner.ns}
"#;
    let workflow = compile(&[squares, top]).unwrap();
    let node = |id: &str| workflow.nodes.iter().find(|n| n.id == id).unwrap();
    assert_eq!(
        node("quick").task.timeout.as_deref(),
        Some("30s"),
        "the node's timeout replaces the task's"
    );
    let Some(aloft_core::compiler::Control::Map(map)) = &node("inner/each").control else {
        panic!("inner/each is a map");
    };
    assert_eq!(
        map.task.timeout.as_deref(),
        Some("5m"),
        "each item runs with the map node's timeout"
    );
    let mut run = Run::start(&workflow, Outputs::new());
    run.run_until(1_000);
    assert_eq!(
        run.state().phase,
        ExecutionPhase::Succeeded,
        "{:?}",
        run.state().error
    );
    let expected: Vec<Value> = [2, 3, 4].iter().map(|i| Value::Integer(*i)).collect();
    assert_eq!(run.state().outputs["ns"], Value::List(expected));
    assert_eq!(run.phase_of("inner/each[2]"), NodePhase::Succeeded);
    run.assert_replay_gives_the_live_state();

    for (from, to, expected) in [
        ("timeout: 30s", "timeout: soon", "\"quick\": timeout"),
        ("timeout: 30s", "timeout: 0s", "timeout must be positive"),
    ] {
        assert_refused(&[squares, &top.replace(from, to)], expected);
    }
    let gate = "name: g\nnodes: [{id: wait, gate: {sleep: 1s}, timeout: 5s}]\n";
    assert_refused(&[gate], "only task and map nodes take a timeout");
}

/// Whether each attempt of `node_id` started interruptible, in attempt order.
fn interruptible_attempts(run: &Run, node_id: &str) -> Vec<bool> {
    let state = run.state();
    let index = state.workflow.nodes.iter().position(|n| n.id == node_id).unwrap();
    state.nodes[index]
        .attempts
        .iter()
        .map(|a| a.interruptible)
        .collect()
}

#[test]
fn interruptible_attempts_run_so_until_the_last_system_retry_which_does_not() {
    let spec = "name: w\nnodes: [{id: a, task: spot}]\n";
    let workflow = compile(&[spec]).unwrap();
    let mut run = Run::start(&workflow, Outputs::new());
    // Interrupted twice (system errors): the budget is 2, so the third and last attempt is not interruptible.
    for _ in 0..2 {
        run.settle();
        let (node, attempt) = run.state().running_attempts().next().unwrap();
        let seq = run.state().last_seq + 1;
        let interrupted = ExecutionEvent::AttemptFailed {
            execution: run.id.clone(),
            node,
            attempt,
            kind: aloft_core::events::ErrorKind::System,
            message: "interrupted: propeller stopped".into(),
            at: run.now,
        };
        run.offer(EventMeta { seq, writer_epoch: 1 }, interrupted);
    }
    run.run_until(1_000);
    assert_eq!(run.state().phase, ExecutionPhase::Succeeded);
    assert_eq!(interruptible_attempts(&run, "a"), [true, true, false]);
    run.assert_replay_gives_the_live_state();
}

#[test]
fn a_node_overrides_its_tasks_interruptible_flag_and_a_maps_items_take_it() {
    let spec = r#"
name: w
interface: {inputs: {xs: "list<integer>"}}
nodes:
  - {id: pinned, task: spot, interruptible: false}
  - {id: spare, task: inc, inputs: {n: {value: 1}}, interruptible: true}
  - {id: plain, task: spot}
  - {id: m, map: {task: inc, over: n}, inputs: {n: inputs.xs}, interruptible: true}
"#;
    let workflow = compile(&[spec]).unwrap();
    let mut run = Run::start(&workflow, list(&[1, 2]));
    run.run_until(1_000);
    assert_eq!(run.state().phase, ExecutionPhase::Succeeded);
    for (node, expected) in [
        ("pinned", false),
        ("spare", true),
        ("plain", true),
        ("m[0]", true),
        ("m[1]", true),
    ] {
        assert_eq!(interruptible_attempts(&run, node), [expected], "node {node}");
    }
    run.assert_replay_gives_the_live_state();
    let gate = "name: g\nnodes: [{id: wait, gate: {sleep: 1s}, interruptible: true}]\n";
    let error = compile(&[gate]).unwrap_err();
    assert!(
        error.contains("\"wait\"") && error.contains("only task and map nodes take an interruptible flag"),
        "{error}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Random inputs, completion orders and signal timings over a workflow with every kind (a branch whose
    /// cases are a task, a subworkflow and a nested branch; gates; a subworkflow holding a branch): the
    /// execution ends with the outputs a direct computation gives, and replay gives the live state.
    #[test]
    fn every_kind_ends_right_and_replays_to_the_live_state(
        input in -300i64..300,
        picks in proptest::collection::vec(any::<usize>(), 0..40),
        signal_at in 0i64..400,
        approve_first in any::<bool>(),
        snapshot_at_percent in 0usize..=100,
    ) {
        let chooser = r#"
name: chooser
interface: {inputs: {n: integer}, outputs: {n: integer}}
nodes:
  - id: choose
    branch:
      cases:
        - if: "inputs.n >= 100"
          then: {id: deep, workflow: plus_two, inputs: {n: inputs.n}}
      else: {id: shallow, task: inc, inputs: {n: inputs.n}}
outputs: {n: choose.n}
"#;
        let top = r#"
name: top
interface: {inputs: {x: integer}, outputs: {result: integer}}
nodes:
  - {id: nap, gate: {sleep: 30ms}}
  - {id: offset, gate: {signal: {name: offset, type: integer}}}
  - {id: review, gate: {approve: {}}, after: [nap]}
  - {id: left, workflow: chooser, inputs: {n: inputs.x}}
  - {id: right, task: inc, inputs: {n: inputs.x}, after: [review]}
  - {id: many, map: {task: inc, over: n, concurrency: 2}, inputs: {n: {value: [1, 2, 3, 4]}}, after: [nap]}
  - {id: planned, dynamic: {task: planner, uses: [inc, add], outputs: {total: integer}}, inputs: {n: inputs.x}}
  - id: pick
    branch:
      cases:
        - if: "left.n > right.n or inputs.x < -200"
          then: {id: sum, task: add, inputs: {a: left.n, b: offset.value}}
        - if: "left.n == right.n"
          then: {id: nested, branch: {cases: [{if: "inputs.x > 0", then: {id: pos, workflow: plus_two, inputs: {n: offset.value}}}], else: {id: neg, task: inc, inputs: {n: offset.value}}}}
      else: {id: plain, task: inc, inputs: {n: right.n}}
outputs: {result: pick.n}
"#;
        let workflow = compile(&[PLUS_TWO, chooser, top]).unwrap();
        let offset = 7i64;
        let left = if input >= 100 { input + 2 } else { input + 1 };
        let right = input + 1;
        let expected = if left > right || input < -200 {
            left + offset
        } else if left == right {
            if input > 0 { offset + 2 } else { offset + 1 }
        } else {
            right + 1
        };
        let mut run = Run::start(&workflow, x(input));
        let mut picks = picks.into_iter();
        let (mut signalled, mut approved) = (false, false);
        while run.now < 10_000 {
            run.settle();
            if run.state().phase.is_terminal() {
                break;
            }
            if !signalled && run.now >= signal_at {
                run.signal("offset", Value::Integer(offset));
                signalled = true;
            }
            let review_waits = run.phase_of("review") == NodePhase::Running;
            if !approved && (approve_first || review_waits) {
                run.signal("approve:review", Value::Boolean(true));
                approved = true;
            }
            if !run.complete_one(picks.next().unwrap_or(0)) {
                run.now += 10;
            }
        }
        let state = run.state();
        prop_assert_eq!(state.phase, ExecutionPhase::Succeeded, "{:?}", state.error);
        prop_assert_eq!(&state.outputs["result"], &Value::Integer(expected));
        let planned = state.workflow.nodes.iter().position(|n| n.id == "planned").unwrap();
        let planned_total = if input + 1 > 10 { input + 1 + 100 } else { input + 2 };
        prop_assert_eq!(state.nodes[planned].outputs.as_ref().map(|o| o["total"].clone()), Some(Value::Integer(planned_total)));
        let many = state.workflow.nodes.iter().position(|n| n.id == "many").unwrap();
        let gathered: Vec<Value> = [2, 3, 4, 5].iter().map(|i| Value::Integer(*i)).collect();
        prop_assert_eq!(state.nodes[many].outputs.as_ref().map(|o| o["n"].clone()), Some(Value::List(gathered)));
        let done = state.nodes.iter().all(|n| matches!(n.phase, NodePhase::Succeeded | NodePhase::Skipped));
        prop_assert!(done, "every node succeeded or was skipped");
        let mut replayed = PartitionFold::default();
        for (meta, event) in &run.log {
            replayed.apply(meta, event);
        }
        prop_assert_eq!(&replayed, &run.fold);
        // A snapshot taken anywhere, restored, then folding the tail gives the live state too.
        let cut = run.log.len() * snapshot_at_percent / 100;
        let mut head = PartitionFold::default();
        for (meta, event) in &run.log[..cut] {
            head.apply(meta, event);
        }
        let mut restored = PartitionFold::from_snapshot(&head.to_snapshot().unwrap()).unwrap();
        prop_assert_eq!(&restored, &head);
        for (meta, event) in &run.log[cut..] {
            restored.apply(meta, event);
        }
        prop_assert_eq!(&restored, &run.fold);
    }
}

fn offloaded(value_type: &str) -> Value {
    Value::Offloaded {
        uri: "s3://b/p/d/e/n/1/x.value".into(),
        size: 1_048_576,
        digest: "sha256:00".into(),
        value_type: value_type.parse().unwrap(),
    }
}

/// The outputs the engine reads whole while applying an event (a dynamic node's plan) are known per node, so
/// executors keep them inline. A branch's operand or a map's list may be offloaded: the engine waits until it
/// is fetched, then decides on the value. Other offloaded values pass through the engine untouched.
#[test]
fn the_engine_names_the_outputs_it_reads_and_waits_for_offloaded_ones() {
    let planned = compile(&[r#"
name: planned
interface: {inputs: {x: integer}, outputs: {total: integer}}
nodes:
  - {id: planned, dynamic: {task: planner, uses: [inc, add], outputs: {total: integer}}, inputs: {n: inputs.x}}
outputs: {total: planned.total}
"#])
    .unwrap();
    let run = Run::start(&planned, x(1));
    let state = run.state();
    let planner = state
        .workflow
        .nodes
        .iter()
        .position(|n| n.task.name == "planner")
        .unwrap();
    assert_eq!(
        state.outputs_read_by_the_engine(planner),
        ["workflow".to_string()].into(),
        "the dynamic node's expansion reads its planner's plan"
    );

    // The branch's operand arrives offloaded: the branch waits for it to be fetched, then decides on it.
    let mapped_prep = compile(&[r#"
name: read
interface: {inputs: {x: integer}, outputs: {ns: integer}}
nodes:
  - {id: prep, task: inc, inputs: {n: inputs.x}}
  - {id: pick, branch: {cases: [{if: "prep.n > 3", then: {id: big, task: inc, inputs: {n: prep.n}}}], else: {id: small, task: inc, inputs: {n: prep.n}}}}
  - {id: also, task: add, inputs: {a: prep.n, b: pick.n}}
outputs: {ns: also.n}
"#])
    .unwrap();
    let mut run = Run::start(&mapped_prep, x(1));
    let state = run.state();
    let prep = state.workflow.nodes.iter().position(|n| n.id == "prep").unwrap();
    assert!(
        state.outputs_read_by_the_engine(prep).is_empty(),
        "a condition's operand need not travel inline"
    );
    run.settle();
    let (prep, attempt) = run.state().running_attempts().next().unwrap();
    let seq = run.state().last_seq + 1;
    let operand = offloaded("integer");
    run.offer(
        EventMeta { seq, writer_epoch: 1 },
        ExecutionEvent::AttemptSucceeded {
            execution: run.id.clone(),
            node: prep,
            attempt,
            outputs: [("n".to_string(), operand.clone())].into(),
            at: 0,
            cache: None,
        },
    );
    run.settle();
    assert_eq!(run.phase_of("pick"), NodePhase::Pending, "the branch waits");
    assert_eq!(run.state().fetches_needed(), vec![operand.clone()]);
    let Value::Offloaded { uri, .. } = &operand else {
        unreachable!()
    };
    run.fold
        .executions
        .get_mut(&run.id)
        .unwrap()
        .store_fetched(uri.clone(), Value::Integer(5));
    run.settle();
    let decided = run
        .log
        .iter()
        .find_map(|(_, event)| match event {
            ExecutionEvent::BranchTaken { condition, .. } => Some(condition.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(decided, "prep.n > 3", "decided on the fetched value, 5");
    assert_eq!(run.phase_of("pick/small"), NodePhase::Skipped);
    run.assert_replay_gives_the_live_state();

    // A map's list arrives offloaded: the map waits until the propeller has fetched the list, then expands,
    // and its items read their elements from the fetched list. The log holds no copy of the list, so
    // replaying it gives the same state without one.
    let workflow = mapped("");
    assert!(
        workflow.inputs_read_by_the_engine().is_empty(),
        "a map's list need not travel inline"
    );
    let list = offloaded("list<integer>");
    let mut run = Run::start(&workflow, [("xs".to_string(), list.clone())].into());
    run.run_until(100);
    assert_eq!(run.phase_of("m"), NodePhase::Queued, "the map waits for its list");
    assert_eq!(run.state().fetches_needed(), vec![list.clone()]);
    let Value::Offloaded { uri, .. } = &list else {
        unreachable!()
    };
    let elements = Value::List([4, 5, 6].map(Value::Integer).to_vec());
    run.fold
        .executions
        .get_mut(&run.id)
        .unwrap()
        .store_fetched(uri.clone(), elements.clone());
    assert!(run.state().fetches_needed().is_empty());
    run.run_until(1_000);
    assert_eq!(run.state().phase, ExecutionPhase::Succeeded);
    assert_eq!(
        run.state().outputs["ns"],
        Value::List([5, 6, 7].map(Value::Integer).to_vec())
    );
    run.assert_replay_gives_the_live_state();

    // Another owner that replayed the log needs the list again before an item can start.
    let mut fresh = Run::start(&workflow, [("xs".to_string(), list.clone())].into());
    fresh.run_until(100);
    fresh
        .fold
        .executions
        .get_mut(&fresh.id)
        .unwrap()
        .store_fetched(uri.clone(), elements);
    fresh.settle();
    let item = fresh
        .state()
        .workflow
        .nodes
        .iter()
        .position(|n| n.id == "m[1]")
        .unwrap();
    fresh.fold.executions.get_mut(&fresh.id).unwrap().forget_fetched();
    assert_eq!(fresh.state().fetches_needed(), vec![list]);
    assert!(
        fresh.state().node_inputs(item).is_err(),
        "an item's element is not known until its list is fetched"
    );
}

/// The items of a map over an offloaded list that name their own resources (`item_resources`) get them when
/// they run: the map expanded without the list, so each attempt's task is filled in from its element then.
#[test]
fn items_of_an_offloaded_list_ask_for_the_resources_they_name() {
    let workflow = compile(&[r#"
name: sized-fan
interface: {inputs: {samples: "list<struct>"}}
nodes:
  - {id: m, map: {task: sized, over: sample, item_resources: {memory: "{{item.memory}}"}}, inputs: {sample: inputs.samples}}
"#])
    .unwrap();
    let list = offloaded("list<struct>");
    let mut run = Run::start(&workflow, [("samples".to_string(), list.clone())].into());
    run.settle();
    let Value::Offloaded { uri, .. } = &list else {
        unreachable!()
    };
    let samples = ["96Mi", "16Mi"]
        .map(|memory| Value::Struct(serde_json::json!({"memory": memory})))
        .to_vec();
    run.fold
        .executions
        .get_mut(&run.id)
        .unwrap()
        .store_fetched(uri.clone(), Value::List(samples));
    run.settle();
    let state = run.state();
    let memory = |id: &str| {
        let node = state.workflow.nodes.iter().position(|n| n.id == id).unwrap();
        state
            .attempt_task(node)
            .unwrap()
            .resources
            .unwrap()
            .memory
            .unwrap()
    };
    assert_eq!(memory("m[0]"), "96Mi");
    assert_eq!(memory("m[1]"), "16Mi");
    run.assert_replay_gives_the_live_state();
}
