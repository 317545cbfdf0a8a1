//! The engine on its own, over the embedded log: how it claims partitions, fences a paused owner's late
//! decisions, follows up what it applies (attempts run after their start, an ended execution cancels what
//! still runs) and what it does to its attempts when it stops.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aloft_core::compiler::compile_workflow;
use aloft_core::events::{ErrorKind, ExecutionEvent};
use aloft_core::spec::{Interface, RetryPolicy, TaskKind, TaskRef, TaskSpec, WorkflowSpec};
use aloft_core::state::ExecutionPhase;
use aloft_core::{ExecutionId, Identifier, StreamId};
use aloft_eventlog::{Envelope, EventLog, LogBackend, Payload, Topics};
use aloft_propeller::PropellerOptions;
use tokio_util::sync::CancellationToken;

fn identifier(name: &str) -> Identifier {
    Identifier {
        project: "p".into(),
        domain: "d".into(),
        name: name.into(),
        version: "1".into(),
    }
}

/// `noop` succeeds at once; `nap` sleeps a minute; `spot-nap` too, and the platform may interrupt it.
fn task(name: &str) -> Option<TaskSpec> {
    let run = match name {
        "noop" => TaskKind::Noop,
        "nap" | "spot-nap" => TaskKind::Sleep {
            duration: "60s".into(),
        },
        _ => return None,
    };
    Some(TaskSpec {
        name: name.into(),
        version: Some("1".into()),
        interface: Interface::default(),
        run,
        retries: RetryPolicy::default(),
        timeout: None,
        cache: None,
        resources: None,
        interruptible: name == "spot-nap",
        secrets: Vec::new(),
    })
}

/// A workflow of `tasks` one after the other.
fn chain(name: &str, tasks: &[&str]) -> aloft_core::CompiledWorkflow {
    let nodes: Vec<serde_json::Value> = tasks
        .iter()
        .enumerate()
        .map(|(index, task)| {
            let after: Vec<String> = (index > 0)
                .then(|| format!("n{}", index - 1))
                .into_iter()
                .collect();
            serde_json::json!({"id": format!("n{index}"), "task": task, "after": after})
        })
        .collect();
    let spec: WorkflowSpec = serde_json::from_value(serde_json::json!({
        "name": name,
        "interface": {"inputs": {}, "outputs": {}},
        "nodes": nodes,
        "outputs": {}
    }))
    .unwrap();
    compile_workflow(identifier(name), &spec, &|r: &TaskRef| {
        task(&r.name).map(|t| (identifier(&r.name), t))
    })
    .unwrap()
}

struct Harness {
    log: Arc<dyn EventLog>,
    topics: Topics,
    work: tempfile::TempDir,
    _dir: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let topics = Topics::with_prefix("");
        let backend = LogBackend::Embedded {
            dir: dir.path().to_path_buf(),
        };
        let log = aloft_eventlog::open(&backend, &topics, 1).await.unwrap();
        Harness {
            log,
            topics,
            work: tempfile::tempdir().unwrap(),
            _dir: dir,
        }
    }

    /// Starts a propeller named `member`; cancel the token to stop it, then await the handle.
    fn start(&self, member: &str) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
        start_propeller(&self.log, &self.topics, self.work.path(), member)
    }

    async fn request(&self, name: &str, tasks: &[&str]) -> ExecutionId {
        let execution = ExecutionId {
            project: "p".into(),
            domain: "d".into(),
            name: name.into(),
        };
        let event = ExecutionEvent::ExecutionRequested {
            execution: execution.clone(),
            request_id: name.into(),
            workflow: Box::new(chain(name, tasks)),
            inputs: Default::default(),
            launch_plan: None,
            requested_at: 1,
            scheduled_at: None,
            overwrite_cache: false,
            notifications: None,
            recovery: None,
            parent: None,
            labels: Default::default(),
        };
        self.append_request(&execution, event).await;
        execution
    }

    async fn append_request(&self, execution: &ExecutionId, event: ExecutionEvent) {
        let stream = StreamId::request(execution, format!("{}-{}", event.kind(), event.occurred_at()));
        let envelope =
            Envelope::unsequenced(stream.to_string(), event.occurred_at(), Payload::Execution(event));
        self.log
            .append(
                &self.topics.executions,
                &execution.partition_key(),
                envelope.encode().unwrap(),
            )
            .await
            .unwrap();
    }

    /// Every envelope on the executions topic so far, in log order.
    async fn envelopes(&self) -> Vec<Envelope> {
        let end = self.log.end_offset(&self.topics.executions, 0).await.unwrap();
        let mut reader = self
            .log
            .read(vec![(self.topics.executions.clone(), 0, 0)])
            .await
            .unwrap();
        let mut envelopes = Vec::new();
        let mut read = 0;
        while read < end {
            for record in reader.next_batch(1000).await.unwrap() {
                read = record.offset + 1;
                envelopes.extend(Envelope::decode_all(&record.payload).unwrap());
            }
        }
        envelopes
    }

    /// Waits until some event on the log satisfies `wanted`, and returns it with its envelope.
    async fn wait_for(&self, what: &str, wanted: impl Fn(&Envelope, &ExecutionEvent) -> bool) -> Envelope {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(found) = self
                .envelopes()
                .await
                .into_iter()
                .find(|envelope| match &envelope.payload {
                    Payload::Execution(event) => wanted(envelope, event),
                    _ => false,
                })
            {
                return found;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:#?}",
                self.kinds().await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kinds(&self) -> Vec<String> {
        self.envelopes()
            .await
            .iter()
            .map(|envelope| match &envelope.payload {
                Payload::Execution(event) => format!(
                    "{} {}#{} e{}",
                    event.kind(),
                    envelope.stream,
                    envelope.seq,
                    envelope.writer_epoch
                ),
                _ => "other".into(),
            })
            .collect()
    }
}

fn start_propeller(
    log: &Arc<dyn EventLog>,
    topics: &Topics,
    work: &Path,
    member: &str,
) -> (CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let options = PropellerOptions::new(topics.clone(), member.into(), work.to_path_buf());
    let shutdown = CancellationToken::new();
    let handle = tokio::spawn(aloft_propeller::run(options, Arc::clone(log), shutdown.clone()));
    (shutdown, handle)
}

fn finished_phase(event: &ExecutionEvent) -> Option<ExecutionPhase> {
    match event {
        ExecutionEvent::ExecutionFinished { phase, .. } => Some(*phase),
        _ => None,
    }
}

fn is_claim_by(event: &ExecutionEvent, member: &str, wanted_epoch: u64) -> bool {
    matches!(event, ExecutionEvent::PartitionClaimed { owner, epoch, .. } if owner == member && *epoch == wanted_epoch)
}

#[tokio::test]
async fn an_owner_claims_with_the_next_epoch_decides_under_it_and_its_successor_claims_the_one_after() {
    let harness = Harness::new().await;
    let (stop, running) = harness.start("first");
    let execution = harness.request("two-steps", &["noop", "noop"]).await;
    harness
        .wait_for("the execution to succeed", |_, event| {
            finished_phase(event) == Some(ExecutionPhase::Succeeded)
        })
        .await;
    let envelopes = harness.envelopes().await;
    let claim_at = envelopes
        .iter()
        .position(|envelope| matches!(&envelope.payload, Payload::Execution(event) if is_claim_by(event, "first", 1)))
        .expect("the first owner claims epoch 1");
    let decisions: Vec<&Envelope> = envelopes
        .iter()
        .filter(|envelope| envelope.stream == StreamId::Execution(execution.clone()).to_string())
        .collect();
    assert!(
        decisions.len() >= 6,
        "started, 2 x (attempt started, succeeded), finished"
    );
    for (index, decision) in decisions.iter().enumerate() {
        assert_eq!(decision.writer_epoch, 1, "decisions carry the owner's epoch");
        assert_eq!(decision.seq, index as u64 + 1, "decision seqs are gap-free");
    }
    let first_decision = envelopes
        .iter()
        .position(|e| e.stream == decisions[0].stream)
        .unwrap();
    assert!(
        claim_at < first_decision,
        "nothing is decided before the claim is read back"
    );
    stop.cancel();
    running.await.unwrap().unwrap();

    let (stop, running) = harness.start("second");
    harness
        .wait_for("the successor's claim", |_, event| {
            is_claim_by(event, "second", 2)
        })
        .await;
    stop.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_paused_owners_late_decision_is_fenced_and_the_execution_runs_on() {
    let harness = Harness::new().await;
    let (stop, running) = harness.start("owner");
    let execution = harness.request("fenced", &["noop", "nap"]).await;
    let started = harness
        .wait_for("the nap to start", |_, event| {
            matches!(event, ExecutionEvent::AttemptStarted { node: 1, .. })
        })
        .await;
    // An owner of epoch 0 (before this one's claim) decides, late, that the nap failed: it carries the
    // next seq, so only its epoch can keep it out.
    let late = Envelope {
        stream: started.stream.clone(),
        seq: started.seq + 1,
        writer_epoch: 0,
        occurred_at: 5,
        traceparent: String::new(),
        payload: Payload::Execution(ExecutionEvent::ExecutionFinished {
            execution: execution.clone(),
            phase: ExecutionPhase::Failed,
            outputs: Default::default(),
            error: Some("a late decision of a paused owner".into()),
            at: 5,
        }),
        principal: None,
    };
    harness
        .log
        .append(
            &harness.topics.executions,
            &execution.partition_key(),
            late.encode().unwrap(),
        )
        .await
        .unwrap();
    // The execution is still live: terminating it is decided by the current owner, under its epoch.
    harness
        .append_request(
            &execution,
            ExecutionEvent::TerminateRequested {
                execution: execution.clone(),
                reason: "enough".into(),
                requested_at: 6,
            },
        )
        .await;
    let finished = harness
        .wait_for("the current owner's end of the execution", |envelope, event| {
            finished_phase(event).is_some() && envelope.writer_epoch == 1
        })
        .await;
    let Payload::Execution(ExecutionEvent::ExecutionFinished { phase, .. }) = finished.payload else {
        unreachable!()
    };
    assert_eq!(
        phase,
        ExecutionPhase::Aborted,
        "the fenced failure did not end it"
    );
    assert!(finished.seq > started.seq, "{finished:?}");
    stop.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_ended_execution_cancels_its_running_attempt_which_reports_nothing() {
    let harness = Harness::new().await;
    let (stop, running) = harness.start("owner");
    let execution = harness.request("terminated", &["nap"]).await;
    harness
        .wait_for("the nap to start", |_, event| {
            matches!(event, ExecutionEvent::AttemptStarted { .. })
        })
        .await;
    let asked = Instant::now();
    harness
        .append_request(
            &execution,
            ExecutionEvent::TerminateRequested {
                execution: execution.clone(),
                reason: "not needed".into(),
                requested_at: 2,
            },
        )
        .await;
    harness
        .wait_for("the execution to be aborted", |_, event| {
            finished_phase(event) == Some(ExecutionPhase::Aborted)
        })
        .await;
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "aborted without waiting out the minute-long nap"
    );
    // The cancelled attempt adds no result after the execution ended.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let kinds = harness.kinds().await;
    let finished_at = kinds
        .iter()
        .position(|kind| kind.starts_with("ExecutionFinished"))
        .unwrap();
    assert!(
        kinds[finished_at + 1..]
            .iter()
            .all(|kind| !kind.starts_with("Attempt")),
        "{kinds:#?}"
    );
    stop.cancel();
    running.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_stopping_owner_interrupts_interruptible_attempts_and_leaves_the_others_running() {
    let harness = Harness::new().await;
    let (stop, running) = harness.start("owner");
    let spot = harness.request("spot", &["spot-nap"]).await;
    let steady = harness.request("steady", &["nap"]).await;
    for execution in [&spot, &steady] {
        let stream = StreamId::Execution(execution.clone()).to_string();
        harness
            .wait_for("both naps to start", |envelope, event| {
                envelope.stream == stream && matches!(event, ExecutionEvent::AttemptStarted { .. })
            })
            .await;
    }
    stop.cancel();
    running.await.unwrap().unwrap();
    let results: BTreeMap<String, (ErrorKind, String)> = harness
        .envelopes()
        .await
        .into_iter()
        .filter_map(|envelope| match envelope.payload {
            Payload::Execution(ExecutionEvent::AttemptFailed {
                execution,
                kind,
                message,
                ..
            }) => Some((execution.name, (kind, message))),
            _ => None,
        })
        .collect();
    let (kind, message) = results
        .get("spot")
        .expect("the interruptible attempt is recorded as interrupted");
    assert_eq!(*kind, ErrorKind::System);
    assert!(
        message.contains("interrupted") && message.contains("owner"),
        "{message}"
    );
    assert!(
        !results.contains_key("steady"),
        "the other attempt is left running: {results:?}"
    );
}

/// The embedded log with a group membership the test drives: it hands out the assignments the test sends
/// and records the overlaps the engine reports (as a broker's quirky consumer group would, after an outage).
struct ScriptedGroupLog {
    log: Arc<dyn EventLog>,
    assignments: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Vec<u32>>>>,
    overlaps: Arc<std::sync::Mutex<Vec<u32>>>,
}

struct ScriptedMembership {
    assignments: tokio::sync::mpsc::UnboundedReceiver<Vec<u32>>,
    overlaps: Arc<std::sync::Mutex<Vec<u32>>>,
}

#[async_trait::async_trait]
impl aloft_eventlog::GroupMembership for ScriptedMembership {
    async fn next_assignment(&mut self) -> aloft_eventlog::Result<Vec<u32>> {
        self.assignments.recv().await.ok_or(aloft_eventlog::Error::Closed)
    }

    fn report_overlap(&mut self, partition: u32) {
        self.overlaps.lock().unwrap().push(partition);
    }
}

#[async_trait::async_trait]
impl EventLog for ScriptedGroupLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> aloft_eventlog::Result<()> {
        self.log.ensure_topic(topic, partitions).await
    }
    async fn partition_count(&self, topic: &str) -> aloft_eventlog::Result<u32> {
        self.log.partition_count(topic).await
    }
    fn append_batch(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<(String, Vec<u8>)>,
    ) -> futures::future::BoxFuture<'static, aloft_eventlog::Result<Vec<aloft_eventlog::Position>>> {
        self.log.append_batch(topic, partition, records)
    }
    async fn end_offset(&self, topic: &str, partition: u32) -> aloft_eventlog::Result<u64> {
        self.log.end_offset(topic, partition).await
    }
    async fn read(
        &self,
        starts: Vec<(String, u32, u64)>,
    ) -> aloft_eventlog::Result<Box<dyn aloft_eventlog::RecordStream>> {
        self.log.read(starts).await
    }
    async fn join_group(
        &self,
        _group: &str,
        _topic: &str,
        _member: &str,
    ) -> aloft_eventlog::Result<Box<dyn aloft_eventlog::GroupMembership>> {
        let assignments = self
            .assignments
            .lock()
            .unwrap()
            .take()
            .expect("one member joins the scripted group");
        Ok(Box::new(ScriptedMembership {
            assignments,
            overlaps: Arc::clone(&self.overlaps),
        }))
    }
    async fn commit(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
        next_offset: u64,
    ) -> aloft_eventlog::Result<()> {
        self.log.commit(group, topic, partition, next_offset).await
    }
    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partition: u32,
    ) -> aloft_eventlog::Result<Option<u64>> {
        self.log.committed(group, topic, partition).await
    }
}

#[tokio::test]
async fn an_owner_outbid_by_another_claim_reports_the_overlap_and_claims_again_when_the_group_reassigns_it() {
    let harness = Harness::new().await;
    let (assign, assignments) = tokio::sync::mpsc::unbounded_channel();
    let overlaps = Arc::new(std::sync::Mutex::new(Vec::new()));
    let scripted: Arc<dyn EventLog> = Arc::new(ScriptedGroupLog {
        log: Arc::clone(&harness.log),
        assignments: std::sync::Mutex::new(Some(assignments)),
        overlaps: Arc::clone(&overlaps),
    });
    let (stop, running) = start_propeller(&scripted, &harness.topics, harness.work.path(), "owner");
    assign.send(vec![0]).unwrap();
    harness
        .wait_for("the owner's claim", |_, event| is_claim_by(event, "owner", 1))
        .await;

    // A member the broker also handed partition 0 claims it: the owner stands down and says so.
    let ghost = Envelope {
        stream: StreamId::Partition(0).to_string(),
        seq: 2,
        writer_epoch: 2,
        occurred_at: 2,
        traceparent: String::new(),
        payload: Payload::Execution(ExecutionEvent::PartitionClaimed {
            partition: 0,
            epoch: 2,
            owner: "ghost".into(),
            at: 2,
        }),
        principal: None,
    };
    harness
        .log
        .append_batch(
            &harness.topics.executions,
            0,
            vec![(StreamId::Partition(0).to_string(), ghost.encode().unwrap())],
        )
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !overlaps.lock().unwrap().contains(&0) {
        assert!(Instant::now() < deadline, "the owner never reported the overlap");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The ghost went away without deciding anything; the group hands the owner the same partition again.
    let execution = harness.request("after-the-overlap", &["noop"]).await;
    assign.send(vec![0]).unwrap();
    harness
        .wait_for("the owner's new claim", |_, event| is_claim_by(event, "owner", 3))
        .await;
    let stream = StreamId::Execution(execution.clone()).to_string();
    let finished = harness
        .wait_for(
            "the execution to succeed under the new claim",
            |envelope, event| {
                envelope.stream == stream && finished_phase(event) == Some(ExecutionPhase::Succeeded)
            },
        )
        .await;
    assert_eq!(finished.writer_epoch, 3);
    stop.cancel();
    running.await.unwrap().unwrap();
}
