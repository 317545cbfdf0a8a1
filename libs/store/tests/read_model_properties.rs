//! Property: admin's read model of an execution equals a rendering of its core state after every batch.
//!
//! Random executions of a workflow with every node kind (tasks with retries and cache hits, a branch, a
//! subworkflow, gates answered by signals and an approval, a map, a dynamic node, a launch-plan node with its
//! child execution) are run by core's `decide`, with attempts that succeed, fail, wait for resources and are
//! dispatched in a random order, and a terminate request now and then. Their log also holds duplicates of
//! earlier events and a stale owner's fenced decisions. It is projected in random batches (some rolled back
//! and projected again, with a state cache so small that states are rebuilt from the history rows), and
//! after every committed batch the rows must equal `execution_rows::render` of the state an independent fold
//! of the same log reaches. Last, a replay from scratch gives the same rows again.
//!
//! Over 600 lines: the simulation that writes such logs (a propeller's decisions, a child's launch and end,
//! duplicates, a takeover) is most of it, and serves only this property.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;

use aloft_core::cache::{CacheOutcome, CacheStatus};
use aloft_core::compiler::{compile_workflow_with, ChildPlan, CompiledWorkflow, Registry};
use aloft_core::events::{ErrorKind, ExecutionEvent, Outputs};
use aloft_core::spec::{Interface, RetryPolicy, TaskKind, TaskRef, TaskSpec, WorkflowSpec};
use aloft_core::state::{decide, AppliedEvent, EventMeta, NodePhase, PartitionFold};
use aloft_core::{ExecutionId, Identifier, LiteralType, StreamId, Value};
use aloft_store::execution_rows;
use aloft_store::projection::{ExecutionReadModels, LoggedEvent};
use aloft_store::Store;
use proptest::prelude::*;

fn identifier(name: &str) -> Identifier {
    Identifier {
        project: "p".into(),
        domain: "d".into(),
        name: name.into(),
        version: "1".into(),
    }
}

/// `inc` adds one to `n`, `add` sums `a` and `b`, `planner` plans a small workflow for a dynamic node.
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
        "planner" => Interface {
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
        retries: RetryPolicy { user: 1, system: 2 },
        timeout: None,
        cache: None,
        resources: None,
        interruptible: false,
        secrets: Vec::new(),
    })
}

fn run_task(task: &str, inputs: &Outputs) -> Outputs {
    let integer = |name: &str| match inputs.get(name) {
        Some(Value::Integer(i)) => *i,
        _ => 0,
    };
    match task {
        "inc" => [("n".to_string(), Value::Integer(integer("n") + 1))].into(),
        "add" => [("n".to_string(), Value::Integer(integer("a") + integer("b")))].into(),
        "planner" => {
            let plan = serde_json::json!({
                "name": "planned",
                "interface": {"inputs": {"n": "integer"}, "outputs": {"total": "integer"}},
                "nodes": [
                    {"id": "a", "task": "inc", "inputs": {"n": "inputs.n"}},
                    {"id": "b", "task": "add", "inputs": {"a": "a.n", "b": "inputs.n"}}
                ],
                "outputs": {"total": "b.n"}
            });
            [("workflow".to_string(), Value::Struct(plan))].into()
        }
        _ => Outputs::new(),
    }
}

const PLUS_TWO: &str = r#"
name: plus_two
interface: {inputs: {n: integer}, outputs: {n: integer}}
nodes:
  - {id: a, task: inc, inputs: {n: inputs.n}}
  - {id: b, task: inc, inputs: {n: a.n}}
outputs: {n: b.n}
"#;

const TOP: &str = r#"
name: top
interface: {inputs: {x: integer}, outputs: {result: integer}}
nodes:
  - {id: nap, gate: {sleep: 30ms}}
  - {id: offset, gate: {signal: {name: offset, type: integer}}}
  - {id: review, gate: {approve: {}}, after: [nap]}
  - {id: sub, workflow: plus_two, inputs: {n: inputs.x}}
  - {id: kid, launch_plan: plus_two-plan, inputs: {n: inputs.x}}
  - {id: many, map: {task: inc, over: n, concurrency: 2}, inputs: {n: {value: [1, 2, 3]}}, after: [nap]}
  - {id: planned, dynamic: {task: planner, uses: [inc, add], outputs: {total: integer}}, inputs: {n: inputs.x}}
  - id: pick
    branch:
      cases:
        - if: "sub.n > 5"
          then: {id: big, task: add, inputs: {a: sub.n, b: offset.value}}
      else: {id: small, task: inc, inputs: {n: kid.n}}
  - {id: last, task: add, inputs: {a: pick.n, b: planned.total}, after: [review, many]}
outputs: {result: last.n}
"#;

fn compile() -> CompiledWorkflow {
    let mut registered: BTreeMap<String, CompiledWorkflow> = BTreeMap::new();
    let mut last = None;
    for text in [PLUS_TWO, TOP] {
        let value: serde_json::Value = serde_yaml::from_str(text).unwrap();
        let spec: WorkflowSpec = serde_json::from_value(value).unwrap();
        let workflows = registered.clone();
        let registry = Registry {
            task: &|r: &TaskRef| task(&r.name).map(|t| (identifier(&r.name), t)),
            workflow: &|r: &TaskRef| workflows.get(&r.name).map(|w| (identifier(&r.name), w.clone())),
            launch_plan: &|r: &TaskRef| {
                let workflow = workflows.get(r.name.strip_suffix("-plan")?)?;
                Some(ChildPlan {
                    plan: identifier(&r.name),
                    workflow: workflow.clone(),
                    default_inputs: BTreeMap::new(),
                    fixed_inputs: BTreeMap::new(),
                })
            },
        };
        let compiled = compile_workflow_with(identifier(&spec.name), &spec, &registry).unwrap();
        registered.insert(spec.name.clone(), compiled.clone());
        last = Some(compiled);
    }
    last.unwrap()
}

/// One event of the log, as the projector reads it.
#[derive(Clone)]
struct Logged {
    stream: String,
    seq: u64,
    writer_epoch: u64,
    event: ExecutionEvent,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// The propeller completes the `pick`-th running attempt this way.
    Complete(usize, Outcome),
    /// A signal or approval arrives.
    Signal,
    /// An earlier event is read again (a producer's retry).
    Duplicate(usize),
    /// A new owner claims the partition; the old one's next decision is fenced.
    Takeover,
    /// A user asks to stop an execution.
    Terminate,
    /// Time passes (sleeps end).
    Tick,
}

#[derive(Debug, Clone, Copy)]
enum Outcome {
    Succeed,
    Fail,
    WaitOrDispatch,
}

fn step() -> impl Strategy<Value = Step> {
    let outcome = prop_oneof![6 => Just(Outcome::Succeed), 1 => Just(Outcome::Fail), 2 => Just(Outcome::WaitOrDispatch)];
    prop_oneof![
        12 => (any::<usize>(), outcome).prop_map(|(pick, outcome)| Step::Complete(pick, outcome)),
        2 => Just(Step::Signal),
        2 => any::<usize>().prop_map(Step::Duplicate),
        1 => Just(Step::Takeover),
        1 => Just(Step::Terminate),
        2 => Just(Step::Tick),
    ]
}

/// Runs executions the way a propeller would, recording every event it appends.
struct Simulation {
    fold: PartitionFold,
    log: Vec<Logged>,
    epoch: u64,
    now: i64,
    signals_sent: usize,
    cache_hits: Vec<bool>,
}

impl Simulation {
    fn offer(&mut self, logged: Logged) -> AppliedEvent {
        let meta = EventMeta {
            seq: logged.seq,
            writer_epoch: logged.writer_epoch,
        };
        let verdict = self.fold.apply(&meta, &logged.event);
        self.log.push(logged);
        verdict
    }

    fn claim(&mut self) {
        self.epoch += 1;
        let claim = ExecutionEvent::PartitionClaimed {
            partition: 0,
            epoch: self.epoch,
            owner: format!("owner-{}", self.epoch),
            at: self.now,
        };
        self.offer(Logged {
            stream: StreamId::Partition(0).to_string(),
            seq: self.epoch,
            writer_epoch: self.epoch,
            event: claim,
        });
    }

    fn request(&mut self, request: ExecutionEvent) {
        let id = request.execution().unwrap().clone();
        self.offer(Logged {
            stream: StreamId::request(&id, "launch").to_string(),
            seq: 0,
            writer_epoch: 0,
            event: request,
        });
    }

    fn append(&mut self, id: &ExecutionId, event: ExecutionEvent) {
        let seq = self.fold.executions[id].last_seq + 1;
        let verdict = self.offer(Logged {
            stream: StreamId::Execution(id.clone()).to_string(),
            seq,
            writer_epoch: self.epoch,
            event,
        });
        assert_eq!(verdict, AppliedEvent::Accepted);
    }

    fn ids(&self) -> Vec<ExecutionId> {
        let mut ids: Vec<ExecutionId> = self.fold.executions.keys().cloned().collect();
        ids.sort_by(|a, b| a.name.cmp(&b.name));
        ids
    }

    /// Decides and appends until nothing follows, for every execution; launches children as they are decided
    /// and reports ended children to their parents.
    fn settle(&mut self) {
        for _ in 0..50 {
            let mut quiet = true;
            for id in self.ids() {
                let state = &self.fold.executions[&id];
                let decisions: Vec<ExecutionEvent> = decide(state, self.now)
                    .into_iter()
                    .map(|event| match event {
                        ExecutionEvent::AttemptStarted {
                            node, attempt, at, ..
                        } if self.cache_hits.pop().unwrap_or(false) => {
                            let inputs = state.node_inputs(node).unwrap();
                            ExecutionEvent::NodeCacheHit {
                                execution: id.clone(),
                                node,
                                attempt,
                                at,
                                outputs: run_task(&state.workflow.nodes[node].task.name, &inputs),
                                cache: CacheOutcome {
                                    key: format!("k{node}"),
                                    status: CacheStatus::Hit,
                                    source: None,
                                },
                            }
                        }
                        other => other,
                    })
                    .collect();
                for event in decisions {
                    quiet = false;
                    let launched = match &event {
                        ExecutionEvent::ChildLaunched { node, .. } => Some(*node),
                        _ => None,
                    };
                    self.append(&id, event);
                    if let Some(node) = launched {
                        let request = self.fold.executions[&id].child_request(node, self.now).unwrap();
                        self.request(request);
                    }
                }
                let state = &self.fold.executions[&id];
                if let (true, Some(parent)) = (state.phase.is_terminal(), state.parent.clone()) {
                    let parent_state = &self.fold.executions[&parent.execution];
                    if parent_state.nodes[parent.node].child_result.is_none()
                        && !parent_state.phase.is_terminal()
                    {
                        let finished = ExecutionEvent::ChildFinished {
                            execution: parent.execution.clone(),
                            node: parent.node,
                            child: id.clone(),
                            phase: state.phase,
                            outputs: state.outputs.clone(),
                            error: state.error.clone(),
                            requested_at: self.now,
                        };
                        self.request(finished);
                        quiet = false;
                    }
                }
            }
            if quiet {
                return;
            }
        }
    }

    fn running(&self) -> Vec<(ExecutionId, usize, u32)> {
        self.ids()
            .into_iter()
            .flat_map(|id| {
                let attempts: Vec<(usize, u32)> = self.fold.executions[&id].running_attempts().collect();
                attempts
                    .into_iter()
                    .map(move |(node, attempt)| (id.clone(), node, attempt))
            })
            .collect()
    }

    fn take(&mut self, step: Step, top: &ExecutionId) {
        match step {
            Step::Complete(pick, outcome) => {
                let running = self.running();
                if running.is_empty() {
                    self.now += 10;
                    return;
                }
                let (id, node, attempt) = running[pick % running.len()].clone();
                let state = &self.fold.executions[&id];
                let event = match outcome {
                    Outcome::WaitOrDispatch if state.nodes[node].phase == NodePhase::WaitingForResources => {
                        ExecutionEvent::AttemptDispatched {
                            execution: id.clone(),
                            node,
                            attempt,
                            at: self.now,
                        }
                    }
                    Outcome::WaitOrDispatch => ExecutionEvent::AttemptWaiting {
                        execution: id.clone(),
                        node,
                        attempt,
                        reason: "pool warehouse: 4 of 4 tokens in use".into(),
                        at: self.now,
                    },
                    Outcome::Fail => ExecutionEvent::AttemptFailed {
                        execution: id.clone(),
                        node,
                        attempt,
                        kind: if pick % 2 == 0 {
                            ErrorKind::User
                        } else {
                            ErrorKind::System
                        },
                        message: format!("attempt {attempt} of node {node} failed"),
                        at: self.now,
                    },
                    Outcome::Succeed => {
                        let inputs = state.node_inputs(node).unwrap();
                        let cache = (pick % 3 == 0).then(|| CacheOutcome {
                            key: format!("k{node}"),
                            status: CacheStatus::Populated,
                            source: None,
                        });
                        ExecutionEvent::AttemptSucceeded {
                            execution: id.clone(),
                            node,
                            attempt,
                            outputs: run_task(&state.workflow.nodes[node].task.name, &inputs),
                            at: self.now,
                            cache,
                        }
                    }
                };
                self.append(&id, event);
            }
            Step::Signal => {
                let (name, value) = match self.signals_sent {
                    0 => ("offset", Value::Integer(7)),
                    1 => ("approve:review", Value::Boolean(true)),
                    _ => return,
                };
                self.signals_sent += 1;
                let signal = ExecutionEvent::SignalReceived {
                    execution: top.clone(),
                    signal: name.into(),
                    value,
                    requested_at: self.now,
                };
                self.request(signal);
            }
            Step::Duplicate(pick) => {
                let again = self.log[pick % self.log.len()].clone();
                self.offer(again);
            }
            Step::Takeover => {
                let stale_epoch = self.epoch;
                self.claim();
                // The old owner, not yet aware, appends one more decision: fenced by the new epoch.
                if let Some((id, node, attempt)) = self.running().first().cloned() {
                    let seq = self.fold.executions[&id].last_seq + 1;
                    let stale = ExecutionEvent::AttemptSucceeded {
                        execution: id.clone(),
                        node,
                        attempt,
                        outputs: Outputs::new(),
                        at: self.now,
                        cache: None,
                    };
                    let verdict = self.offer(Logged {
                        stream: StreamId::Execution(id.clone()).to_string(),
                        seq,
                        writer_epoch: stale_epoch,
                        event: stale,
                    });
                    assert_eq!(verdict, AppliedEvent::Fenced);
                }
            }
            Step::Terminate => {
                let ids = self.ids();
                let id = &ids[self.log.len() % ids.len()];
                let terminate = ExecutionEvent::TerminateRequested {
                    execution: id.clone(),
                    reason: "stopped by the test".into(),
                    requested_at: self.now,
                };
                self.request(terminate);
            }
            Step::Tick => self.now += 25,
        }
    }
}

fn logged_at(offset: usize, logged: &Logged) -> LoggedEvent<'_> {
    LoggedEvent {
        partition: 0,
        offset: offset as u64,
        index: 0,
        stream: &logged.stream,
        seq: logged.seq,
        writer_epoch: logged.writer_epoch,
        occurred_at: logged.event.occurred_at(),
        traceparent: "",
        event: &logged.event,
        principal: None,
    }
}

/// Projects `log[range]` in one transaction; commits it, or rolls it back when `roll_back`.
async fn project(
    store: &Store,
    models: &mut ExecutionReadModels,
    epoch: &mut u64,
    log: &[Logged],
    range: std::ops::Range<usize>,
    roll_back: bool,
) {
    let epoch_before = *epoch;
    let mut tx = store.pool().begin().await.unwrap();
    for offset in range {
        models
            .apply(&mut tx, epoch, &logged_at(offset, &log[offset]))
            .await
            .unwrap();
    }
    models.flush(&mut tx).await.unwrap();
    if roll_back {
        tx.rollback().await.unwrap();
        models.rolled_back();
        *epoch = epoch_before;
    } else {
        tx.commit().await.unwrap();
        models.committed();
    }
}

/// The rows of every execution `fold` knows equal the rendering of its state.
async fn assert_rows_render(store: &Store, fold: &PartitionFold, when: &str) {
    let mut conn = store.pool().acquire().await.unwrap();
    for (id, state) in &fold.executions {
        let rows = execution_rows::read(&mut conn, id).await.unwrap();
        let expected = execution_rows::render(state);
        let Some(rows) = rows else {
            panic!("{when}: no rows for {id}");
        };
        assert_eq!(rows.execution, expected.execution, "{when}: execution {id}");
        assert_eq!(
            rows.nodes.len(),
            expected.nodes.len(),
            "{when}: node rows of {id}"
        );
        for (row, expected) in rows.nodes.iter().zip(&expected.nodes) {
            assert_eq!(row, expected, "{when}: node {} of {id}", expected.node_id);
        }
        assert_eq!(rows.attempts, expected.attempts, "{when}: attempts of {id}");
    }
}

async fn check(
    steps: Vec<Step>,
    batch_sizes: Vec<usize>,
    roll_backs: Vec<bool>,
    cache_hits: Vec<bool>,
    tiny_cache: bool,
) {
    let workflow = compile();
    let top = ExecutionId {
        project: "p".into(),
        domain: "d".into(),
        name: "e".into(),
    };
    let mut sim = Simulation {
        fold: PartitionFold::default(),
        log: Vec::new(),
        epoch: 0,
        now: 0,
        signals_sent: 0,
        cache_hits,
    };
    sim.claim();
    sim.request(ExecutionEvent::ExecutionRequested {
        execution: top.clone(),
        request_id: "r".into(),
        workflow: Box::new(workflow),
        inputs: [("x".to_string(), Value::Integer(4))].into(),
        launch_plan: None,
        requested_at: 0,
        scheduled_at: None,
        overwrite_cache: false,
        notifications: None,
        recovery: None,
        parent: None,
        labels: Default::default(),
    });
    let mut steps = steps.into_iter();
    for _ in 0..400 {
        sim.settle();
        if sim
            .ids()
            .iter()
            .all(|id| sim.fold.executions[id].phase.is_terminal())
        {
            break;
        }
        let next = steps.next().unwrap_or(Step::Complete(0, Outcome::Succeed));
        // Once the random steps are used up, answer the gates so the executions can end.
        if steps.len() == 0 && sim.signals_sent < 2 {
            sim.take(Step::Signal, &top);
        }
        sim.take(next, &top);
        if sim.running().is_empty() {
            sim.now += 10;
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("rows.db").display()))
        .await
        .unwrap();
    let mut models = ExecutionReadModels::with_cached_executions(if tiny_cache { 1 } else { 64 });
    // An independent fold of the log up to each batch's end: what the rows must render.
    let mut fold = PartitionFold::default();
    let mut epoch = 0;
    let mut start = 0;
    let mut sizes = batch_sizes.into_iter().cycle();
    let mut roll_backs = roll_backs.into_iter();
    while start < sim.log.len() {
        let end = (start + sizes.next().unwrap_or(7).max(1)).min(sim.log.len());
        if roll_backs.next().unwrap_or(false) {
            project(&store, &mut models, &mut epoch, &sim.log, start..end, true).await;
        }
        project(&store, &mut models, &mut epoch, &sim.log, start..end, false).await;
        for logged in &sim.log[start..end] {
            let meta = EventMeta {
                seq: logged.seq,
                writer_epoch: logged.writer_epoch,
            };
            fold.apply(&meta, &logged.event);
        }
        assert_rows_render(&store, &fold, &format!("after the batch ending at offset {end}")).await;
        start = end;
    }
    assert_eq!(
        fold, sim.fold,
        "the independent fold reached the simulation's state"
    );

    // Replay: emptied tables, one fresh projection of the whole log, the same rows.
    store.drop_projections().await.unwrap();
    let mut replay = ExecutionReadModels::default();
    let mut epoch = 0;
    project(&store, &mut replay, &mut epoch, &sim.log, 0..sim.log.len(), false).await;
    assert_rows_render(&store, &fold, "after a replay from offset 0").await;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_read_model_renders_the_core_state_after_every_batch(
        steps in proptest::collection::vec(step(), 0..120),
        batch_sizes in proptest::collection::vec(1usize..40, 1..8),
        roll_backs in proptest::collection::vec(proptest::bool::weighted(0.15), 0..30),
        cache_hits in proptest::collection::vec(proptest::bool::weighted(0.2), 0..30),
        tiny_cache in any::<bool>(),
    ) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(check(steps, batch_sizes, roll_backs, cache_hits, tiny_cache));
    }
}
