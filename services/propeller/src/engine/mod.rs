//! The propeller's loop. It owns partitions of `aloft.executions` through the consumer group; every event
//! of an owned partition goes through the pure `apply`, and once the partition is claimed
//! (`partition.rs`), `decide`, whose decisions are appended to the same partition.
//!
//! The loop owns partitions and decisions only. Attempts live behind the attempt service's handle
//! (`crate::attempts`): the loop tells it what to run or cancel and hears back what was dispatched, is
//! waiting, was lost or finished. Cached starts pass the cache gate (`cache_gate.rs`); snapshots are
//! stored and restored by `snapshots.rs`; offloaded lists a map expands are fetched by `fetches.rs`, and
//! decisions too large for an event have their gathered values offloaded by `offloads.rs` (their follow-ups
//! are `data_followups.rs`). None of them calls back into the engine: they return plain values.
//!
//! Own decisions are applied when the broker acknowledges them (acknowledgements are handled in append
//! order, which is log order) or when they are read back, whichever comes first; the admission rule makes
//! the second a duplicate. Side effects (starting or cancelling attempts) follow the application, so they
//! happen only after the deciding event is acknowledged. Requests from admin commute with decisions
//! (`aloft_core::state`), so applying on acknowledgement gives the same state as replaying the log.
//!
//! Why this file is over 600 lines: it is the loop and the follow-ups it carries out, each a short step that
//! joins partitions, the attempt service and the log; every part with state of its own (a partition's fold,
//! sequencing and activation; the cache gate; snapshots; the attempts) lives in its own module.

mod cache_gate;
mod data_followups;
mod fetches;
mod offloads;
mod partition;
mod snapshots;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aloft_core::events::{ErrorKind, ExecutionEvent};
use aloft_core::state::{decide, EventMeta, ResolveError};
use aloft_core::{ExecutionId, StreamId};
use aloft_eventlog::{Envelope, EventLog, Payload, Position, Record, RecordStream};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::attempts::{AttemptFinished, AttemptKey, AttemptReport, AttemptToRun, AttemptsHandle};
use crate::metrics;
use cache_gate::{CacheGate, LookupDone};
use fetches::{AfterFetch, Fetches};
use offloads::Offloads;
use partition::{attempt_request, Activation, AfterEvent, PartitionRuntime, Sequenced, Unsequenced};
pub use snapshots::SnapshotOptions;

const READ_BATCH: usize = 1000;
/// Executions with more nodes than this are not copied to decide along with attempt results (a copy per
/// result would cost more than the round trip it saves).
const DECIDE_WITH_RESULTS_MAX_NODES: usize = 2_000;
/// At most this many attempt reports are handled in one go.
const REPORT_BATCH: usize = 1000;
/// The most encoded envelope bytes one appended record holds (brokers refuse records over 1 MB by default).
const RECORD_BYTES: usize = 256 * 1024;
/// How often waiting gates are checked for an ended sleep or a timeout (the resolution of gate timers).
const GATE_TICK: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a stopping propeller waits for its interrupted attempts (and decisions already sent) to be
/// acknowledged before it exits anyway.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An append in flight, resolved in the order appends were enqueued.
struct Acknowledged {
    partition: u32,
    /// Our decisions, applied on acknowledgement. Empty for a claim: whether a claim won can only be
    /// known by reading it back in log order.
    decisions: Vec<(EventMeta, ExecutionEvent)>,
    result: aloft_eventlog::Result<Vec<Position>>,
}

/// Which partitions the engine may own: those of `topic` the consumer group `group` gives member `member`.
pub struct Membership {
    pub topic: String,
    pub group: String,
    pub member: String,
}

/// What the engine works with besides its log and membership.
pub struct EngineParts {
    /// The attempt service's handle and the reports it sends.
    pub attempts: AttemptsHandle,
    pub reports: mpsc::UnboundedReceiver<AttemptReport>,
    /// The catalog cached starts ask before they are decided (none: cached tasks just run).
    pub catalog: Option<Arc<dyn crate::memo::Catalog>>,
    pub snapshots: Option<SnapshotOptions>,
    /// Where offloaded values the engine reads (a map's list) are fetched from.
    pub blobs: Option<aloft_blobstore::BlobStore>,
}

pub struct Engine {
    snapshots: Option<SnapshotOptions>,
    log: Arc<dyn EventLog>,
    topic: String,
    member: String,
    partitions: HashMap<u32, PartitionRuntime>,
    attempts: AttemptsHandle,
    /// Attempts handed to the attempt service (to run or to re-attach) and not reported ended: an attempt
    /// the log says runs but that is not here was lost with a previous owner.
    handed: HashSet<AttemptKey>,
    in_flight: FuturesOrdered<BoxFuture<'static, Acknowledged>>,
    cache_gate: CacheGate,
    fetches: Fetches,
    offloads: Offloads,
    /// Partitions this member was assigned that another member claimed since the loop last told the
    /// membership (`GroupMembership::report_overlap`).
    overlaps: Vec<u32>,
}

impl Engine {
    /// Runs until `shutdown` is cancelled: joins the group, follows assignments, folds and decides.
    pub async fn run(
        log: Arc<dyn EventLog>,
        membership: Membership,
        parts: EngineParts,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let Membership { topic, group, member } = membership;
        let EngineParts {
            attempts,
            mut reports,
            catalog,
            snapshots,
            blobs,
        } = parts;
        let (cache_gate, mut lookup_answers) = CacheGate::new(catalog);
        let (fetches, mut fetched_values) = Fetches::new(blobs.clone());
        let (offloads, mut offloaded_decisions) = Offloads::new(blobs);
        let mut membership = log.join_group(&group, &topic, &member).await?;
        let snapshot_interval = snapshots
            .as_ref()
            .map_or(std::time::Duration::from_secs(3600), |s| s.interval);
        let mut engine = Engine {
            snapshots,
            log,
            topic,
            member,
            partitions: HashMap::new(),
            attempts,
            handed: HashSet::new(),
            in_flight: FuturesOrdered::new(),
            cache_gate,
            fetches,
            offloads,
            overlaps: Vec::new(),
        };
        info!(member = %engine.member, topic = %engine.topic, "propeller joined the group");
        let mut reader: Option<Box<dyn RecordStream>> = None;
        let mut lag_tick = tokio::time::interval(std::time::Duration::from_secs(5));
        lag_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut snapshot_tick = tokio::time::interval(snapshot_interval);
        snapshot_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        snapshot_tick.tick().await;
        let mut gate_tick = tokio::time::interval(GATE_TICK);
        gate_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_records = async {
                match reader.as_mut() {
                    Some(reader) => reader.next_batch(READ_BATCH).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                assignment = membership.next_assignment() => {
                    let assignment = assignment?;
                    reader = engine.reassign(assignment.into_iter().collect(), &HashSet::new()).await?;
                }
                records = next_records => {
                    for record in records? {
                        engine.on_record(record);
                    }
                    for partition in std::mem::take(&mut engine.overlaps) {
                        membership.report_overlap(partition);
                    }
                }
                Some(acknowledged) = engine.in_flight.next(), if !engine.in_flight.is_empty() => {
                    match acknowledged.result {
                        Ok(_) => engine.on_acknowledged(acknowledged.partition, acknowledged.decisions),
                        Err(error) => {
                            error!(partition = acknowledged.partition, %error, "append failed; rebuilding the partition from the log");
                            let owned: HashSet<u32> = engine.partitions.keys().copied().collect();
                            reader = engine.reassign(owned, &HashSet::from([acknowledged.partition])).await?;
                        }
                    }
                }
                Some(report) = reports.recv() => {
                    // Reports that arrived together are recorded together: one record per execution.
                    let mut batch = vec![report];
                    while batch.len() < REPORT_BATCH {
                        match reports.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    engine.on_reports(batch);
                }
                Some(done) = lookup_answers.recv() => {
                    // Lookups answered together are decided together (one append per execution).
                    let mut answered = vec![done];
                    while let Ok(more) = lookup_answers.try_recv() {
                        answered.push(more);
                    }
                    engine.on_lookups_answered(answered);
                }
                Some(fetched) = fetched_values.recv() => engine.on_fetched(fetched),
                Some(offloaded) = offloaded_decisions.recv() => engine.on_offloaded(offloaded),
                _ = lag_tick.tick() => engine.publish_lag(),
                _ = gate_tick.tick() => engine.decide_due_gates(),
                _ = snapshot_tick.tick(), if engine.snapshots.is_some() => {
                    if let Some(options) = &engine.snapshots {
                        snapshots::take_snapshots(options, &engine.topic, &mut engine.partitions);
                    }
                }
            }
        }
        engine.drain(&mut reports).await;
        Ok(())
    }

    /// Stopping: interruptible attempts are interrupted (killed, and recorded as system errors so the next
    /// owner retries them at once); the others are left running, for the next owner on this machine to
    /// re-attach to (elsewhere it finds them lost and retries them). Waits, bounded, for those records and
    /// for the decisions already sent to be acknowledged; nothing new is decided or started.
    async fn drain(&mut self, reports: &mut mpsc::UnboundedReceiver<AttemptReport>) {
        let mut interrupted_unrecorded = self.attempts.interrupt_interruptible().await;
        info!(
            member = %self.member,
            interrupted = interrupted_unrecorded,
            left_running = self.handed.len().saturating_sub(interrupted_unrecorded),
            "propeller stopping: interrupting interruptible attempts, leaving the others running for the next owner"
        );
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while interrupted_unrecorded > 0 || !self.in_flight.is_empty() {
            tokio::select! {
                Some(report) = reports.recv(), if interrupted_unrecorded > 0 => {
                    if let AttemptReport::Finished(finished) = report {
                        if finished.interrupted {
                            interrupted_unrecorded -= 1;
                        }
                        if let Some((partition, execution, event)) = self.attempt_result(finished) {
                            self.append_decisions(partition, &execution, vec![event]);
                        }
                    }
                }
                Some(acknowledged) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    if let Err(error) = acknowledged.result {
                        warn!(partition = acknowledged.partition, %error, "an append failed while stopping; the next owner decides again");
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    warn!(
                        interrupted_unrecorded,
                        appends_unacknowledged = self.in_flight.len(),
                        "stopping without waiting longer; the next owner finds these attempts lost and retries them"
                    );
                    break;
                }
            }
        }
    }

    /// Moves to a new set of owned partitions (`reset` ones are rebuilt from offset 0) and opens a reader.
    /// A partition kept whose claim another owner won is rebuilt too, and claimed again: the group assigned
    /// it here anew after the overlap.
    async fn reassign(
        &mut self,
        owned: HashSet<u32>,
        reset: &HashSet<u32>,
    ) -> anyhow::Result<Option<Box<dyn RecordStream>>> {
        let lost: Vec<u32> = self
            .partitions
            .iter()
            .filter(|(p, runtime)| !owned.contains(p) || reset.contains(p) || runtime.claim_lost)
            .map(|(p, _)| *p)
            .collect();
        for partition in lost {
            // Another owner will mark these attempts lost and retry them; stop doing the work twice.
            self.cancel_attempts_of_partition(partition);
            if self.partitions.remove(&partition).is_some() {
                info!(partition, "released partition");
            }
        }
        for &partition in &owned {
            if self.partitions.contains_key(&partition) {
                continue;
            }
            let end = self.log.end_offset(&self.topic, partition).await?;
            let restored =
                snapshots::restore_snapshot(self.snapshots.as_ref(), &self.topic, partition, end).await;
            let runtime = PartitionRuntime::assigned(end, restored);
            info!(
                partition,
                from_offset = runtime.next_offset,
                end_offset = end,
                "assigned partition; catching up"
            );
            let caught_up = runtime.caught_up();
            self.partitions.insert(partition, runtime);
            if caught_up {
                self.claim(partition);
            }
        }
        self.publish_partition_gauges();
        if self.partitions.is_empty() {
            return Ok(None);
        }
        let starts = self
            .partitions
            .iter()
            .map(|(p, rt)| (self.topic.clone(), *p, rt.next_offset))
            .collect();
        Ok(Some(self.log.read(starts).await?))
    }

    /// Sets the lag gauge (records on owned partitions not folded yet) from the log's end offsets, in the
    /// background so a slow broker never stalls the engine.
    fn publish_lag(&self) {
        let positions: Vec<(u32, u64)> = self
            .partitions
            .iter()
            .map(|(partition, runtime)| (*partition, runtime.next_offset))
            .collect();
        let (log, topic) = (Arc::clone(&self.log), self.topic.clone());
        tokio::spawn(async move {
            let mut lag = 0u64;
            for (partition, next_offset) in positions {
                match log.end_offset(&topic, partition).await {
                    Ok(end) => lag += end.saturating_sub(next_offset),
                    Err(error) => {
                        warn!(partition, %error, "cannot read the end offset for the lag metric");
                        return;
                    }
                }
            }
            metrics::LAG.set(&[], lag as f64);
        });
    }

    fn publish_partition_gauges(&self) {
        let active = self.partitions.values().filter(|runtime| runtime.active).count();
        metrics::PARTITIONS_OWNED.set(&[], self.partitions.len() as f64);
        metrics::PARTITIONS_ACTIVE.set(&[], active as f64);
    }

    fn claim(&mut self, partition: u32) {
        let Some(epoch) = self
            .partitions
            .get_mut(&partition)
            .and_then(PartitionRuntime::epoch_to_claim)
        else {
            return;
        };
        let at = now_millis();
        let stream = StreamId::Partition(partition).to_string();
        let envelope = Envelope {
            stream: stream.clone(),
            seq: epoch,
            writer_epoch: epoch,
            occurred_at: at,
            traceparent: String::new(),
            payload: Payload::Execution(ExecutionEvent::PartitionClaimed {
                partition,
                epoch,
                owner: self.member.clone(),
                at,
            }),
            principal: None,
        };
        let record = match envelope.encode() {
            Ok(record) => record,
            Err(error) => {
                error!(partition, %error, "cannot encode the partition claim");
                return;
            }
        };
        info!(partition, epoch, "claiming partition");
        self.append(partition, vec![(stream, record)], Vec::new());
    }

    fn append(
        &mut self,
        partition: u32,
        records: Vec<(String, Vec<u8>)>,
        decisions: Vec<(EventMeta, ExecutionEvent)>,
    ) {
        let acknowledgement = self.log.append_batch(&self.topic, partition, records);
        self.in_flight.push_back(
            async move {
                Acknowledged {
                    partition,
                    decisions,
                    result: acknowledgement.await,
                }
            }
            .boxed(),
        );
    }

    fn on_acknowledged(&mut self, partition: u32, decisions: Vec<(EventMeta, ExecutionEvent)>) {
        for (meta, event) in decisions {
            let Some(runtime) = self.partitions.get_mut(&partition) else {
                return;
            };
            let after = runtime.fold_event(&self.member, &meta, &event, true);
            self.follow_up(partition, after);
        }
    }

    fn on_record(&mut self, record: Record) {
        let partition = record.partition;
        for after in self.fold_record(record) {
            self.follow_up(partition, after);
        }
    }

    fn follow_up(&mut self, partition: u32, after: AfterEvent) {
        match after {
            AfterEvent::Nothing => {}
            AfterEvent::Claim => self.claim(partition),
            AfterEvent::Activated => {
                self.publish_partition_gauges();
                self.on_activated(partition);
            }
            AfterEvent::StandDown => {
                self.publish_partition_gauges();
                self.cancel_attempts_of_partition(partition);
                self.overlaps.push(partition);
            }
            AfterEvent::ClaimLost => self.overlaps.push(partition),
            AfterEvent::Decide {
                execution,
                start_attempt,
                finished,
                requests,
            } => {
                self.send_requests(requests);
                if let Some((node, attempt)) = start_attempt {
                    self.start_attempt(partition, &execution, node, attempt);
                }
                if finished {
                    self.cancel_attempts_of(&execution);
                }
                self.decide_and_append(partition, &execution);
            }
        }
    }

    /// Folds every envelope of `record` (see `PartitionRuntime::fold_record`), saying what must follow each.
    fn fold_record(&mut self, record: Record) -> Vec<AfterEvent> {
        match self.partitions.get_mut(&record.partition) {
            Some(runtime) => runtime.fold_record(&self.member, record),
            None => Vec::new(),
        }
    }

    /// After our claim: attempts the log says are running but that are not handed to the attempt service
    /// were started by the previous owner: they are re-attached where their process still runs here, and
    /// otherwise fail as system errors (lost), retried within the system budget.
    fn on_activated(&mut self, partition: u32) {
        let Some(runtime) = self.partitions.get(&partition) else {
            return;
        };
        let Activation {
            requests,
            to_follow,
            unresolvable,
            to_decide,
        } = runtime.activation(partition, &self.handed);
        self.send_requests(requests);
        for attempt in to_follow {
            self.handed.insert(attempt.key.clone());
            self.attempts.reattach(attempt);
        }
        for key in unresolvable {
            let needed = runtime_fetches_needed(&self.partitions, partition, &key.execution);
            if needed.is_empty() {
                self.record_lost(partition, key);
            } else {
                // Its inputs are elements of an offloaded list: followed once the list is fetched.
                let execution = key.execution.clone();
                self.fetches.request(partition, &execution, needed);
                self.fetches.wait(&execution, AfterFetch::Reattach(key));
            }
        }
        for execution in to_decide {
            self.decide_and_append(partition, &execution);
        }
    }

    /// An attempt the log says runs but that nothing here can follow: it fails as a system error.
    fn record_lost(&mut self, partition: u32, key: AttemptKey) {
        warn!(execution = %key.execution, node = key.node, attempt = key.attempt, "task attempt lost, retrying");
        let event = ExecutionEvent::AttemptFailed {
            execution: key.execution.clone(),
            node: key.node,
            attempt: key.attempt,
            kind: ErrorKind::System,
            message: "attempt lost: its propeller stopped or lost the partition".to_string(),
            at: now_millis(),
        };
        self.append_decisions(partition, &key.execution, vec![event]);
    }

    /// Decides again every execution with a gate whose sleep ended or whose wait timed out; signals need
    /// no tick (their request is folded like any event and decided at once).
    fn decide_due_gates(&mut self) {
        let now = now_millis();
        let due: Vec<(u32, ExecutionId)> = self
            .partitions
            .iter()
            .filter(|(_, runtime)| runtime.active)
            .flat_map(|(partition, runtime)| {
                runtime
                    .fold
                    .executions
                    .iter()
                    .filter(move |(_, state)| state.next_gate_deadline().is_some_and(|at| at <= now))
                    .map(move |(execution, _)| (*partition, execution.clone()))
            })
            .collect();
        for (partition, execution) in due {
            self.decide_and_append(partition, &execution);
        }
    }

    /// Appends requests for other executions (a child to launch, a parent to tell, a child to terminate)
    /// to their partitions, in the background: each is idempotent and sent again by whoever takes over.
    fn send_requests(&self, requests: Vec<ExecutionEvent>) {
        for request in requests {
            let Some(target) = request.execution().cloned() else {
                continue;
            };
            let (log, topic) = (Arc::clone(&self.log), self.topic.clone());
            tokio::spawn(async move {
                let key = target.partition_key();
                // One request of each kind per target: a repeat (after a take-over) is the same stream.
                let stream = StreamId::request(&target, request.kind());
                let envelope = Envelope::unsequenced(
                    stream.to_string(),
                    request.occurred_at(),
                    Payload::Execution(request),
                );
                let appended = match envelope.encode() {
                    Ok(record) => log.append(&topic, &key, record).await,
                    Err(error) => Err(error),
                };
                if let Err(error) = appended {
                    warn!(execution = %target, %error, "could not append a request; it is sent again on takeover");
                }
            });
        }
    }

    /// Whether `execution` waits for the blob store (a fetch, or decisions being offloaded): nothing more is
    /// decided for it meanwhile.
    fn awaits_store(&self, execution: &ExecutionId) -> bool {
        self.fetches.is_fetching(execution) || self.offloads.is_offloading(execution)
    }

    fn decide_and_append(&mut self, partition: u32, execution: &ExecutionId) {
        let Some(runtime) = self.partitions.get(&partition) else {
            return;
        };
        if runtime.pending.contains_key(execution) {
            return;
        }
        let Some(state) = runtime.fold.executions.get(execution) else {
            return;
        };
        if self.awaits_store(execution) {
            return;
        }
        let needed = state.fetches_needed();
        if !needed.is_empty() {
            self.fetches.request(partition, execution, needed);
            return;
        }
        let decisions = decide(state, now_millis());
        let traceparent = runtime.trace_of(execution);
        let decisions = self.cache_gate.filter(partition, state, &traceparent, decisions);
        if !decisions.is_empty() {
            self.append_decisions(partition, execution, decisions);
        }
    }

    /// Records the catalog's answers and decides again for their executions.
    fn on_lookups_answered(&mut self, answered: Vec<LookupDone>) {
        for (partition, execution) in self.cache_gate.answered(answered) {
            self.decide_and_append(partition, &execution);
        }
    }

    /// Sequences decisions after everything already appended for the execution and appends them in order.
    /// Decisions too large for one event (the gathered outputs of a huge map, say) have their large values
    /// offloaded first (`offloads`), and are appended when that is done; those that stay too large fail the
    /// execution: deciding them again would make them again, and the partition would never move on.
    fn append_decisions(&mut self, partition: u32, execution: &ExecutionId, events: Vec<ExecutionEvent>) {
        self.append_or_offload(partition, execution, events, true);
    }

    fn append_or_offload(
        &mut self,
        partition: u32,
        execution: &ExecutionId,
        events: Vec<ExecutionEvent>,
        may_offload: bool,
    ) {
        let Some(runtime) = self.partitions.get_mut(&partition) else {
            return;
        };
        let sequenced = match runtime.sequence(execution, events, RECORD_BYTES) {
            Err(Unsequenced::TooLarge { kinds, bytes, events }) => {
                let events = match runtime.fold.executions.get(execution) {
                    Some(state) if may_offload => match self.offloads.offload(partition, state, events) {
                        Ok(()) => {
                            info!(execution = %execution, kinds, bytes, "offloading the large values of decisions");
                            return;
                        }
                        Err(events) => events,
                    },
                    _ => events,
                };
                drop(events);
                let error = format!(
                    "the engine's decision ({kinds}) encodes to {bytes} bytes, more than the {} bytes an event \
                     may be: values travel inline in events, so pass large data between tasks as blobs",
                    aloft_eventlog::MAX_RECORD_BYTES
                );
                warn!(execution = %execution, %error, "failing the execution");
                let failure = execution_failed(execution, error);
                runtime.sequence(execution, vec![failure], RECORD_BYTES)
            }
            sequenced => sequenced,
        };
        match sequenced {
            Ok(Some(Sequenced { records, decisions })) => {
                metrics::DECISIONS_APPENDED.increment(&[], decisions.len() as f64);
                self.append(partition, records, decisions);
            }
            Ok(None) => {}
            // Nothing was appended: the state stays as it was, and the decision is made again.
            Err(Unsequenced::Encode(error)) => {
                error!(execution = %execution, %error, "cannot encode decisions; not appended")
            }
            // Only the failure above comes here, and it holds no values: it cannot be over the limit.
            Err(Unsequenced::TooLarge { kinds, bytes, .. }) => {
                error!(execution = %execution, kinds, bytes, "decisions too large for one event; not appended")
            }
        }
    }

    /// Hands an attempt whose `AttemptStarted` is applied to the attempt service, or fails it when its
    /// inputs do not resolve.
    fn start_attempt(&mut self, partition: u32, execution: &ExecutionId, node: usize, attempt: u32) {
        let key = AttemptKey {
            execution: execution.clone(),
            node,
            attempt,
        };
        if self.handed.contains(&key) {
            return;
        }
        let prior = self.cache_gate.take_prior(&key);
        let Some(runtime) = self.partitions.get(&partition) else {
            return;
        };
        let Some(state) = runtime.fold.executions.get(execution) else {
            return;
        };
        let request = match attempt_request(state, node, attempt) {
            Ok(request) => request,
            Err(message) => {
                // An element of an offloaded list: started once the list is fetched.
                let needed = match message {
                    ResolveError::Offloaded { .. } => state.fetches_needed(),
                    _ => Vec::new(),
                };
                if !needed.is_empty() {
                    self.fetches.request(partition, execution, needed);
                    self.fetches.wait(execution, AfterFetch::Start { node, attempt });
                    return;
                }
                let event = ExecutionEvent::AttemptFailed {
                    execution: execution.clone(),
                    node,
                    attempt,
                    kind: ErrorKind::System,
                    message: format!("cannot resolve inputs: {message}"),
                    at: now_millis(),
                };
                self.append_decisions(partition, execution, vec![event]);
                return;
            }
        };
        let attempt = AttemptToRun {
            partition,
            key: key.clone(),
            request,
            overwrite_cache: state.overwrite_cache,
            prior,
            interruptible: state.nodes[node].is_interruptible(attempt),
            traceparent: runtime.trace_of(execution),
        };
        self.handed.insert(key);
        self.attempts.run(attempt);
    }

    fn cancel_attempts_of_partition(&mut self, partition: u32) {
        self.attempts.cancel_partition(partition);
        let Some(runtime) = self.partitions.get(&partition) else {
            return;
        };
        let executions = &runtime.fold.executions;
        self.cache_gate
            .forget(|execution| executions.contains_key(execution));
        self.handed.retain(|key| !executions.contains_key(&key.execution));
    }

    fn cancel_attempts_of(&mut self, execution: &ExecutionId) {
        self.attempts.cancel_execution(execution.clone());
        self.cache_gate.forget(|other| other == execution);
        self.handed.retain(|key| &key.execution != execution);
    }

    /// Appends what the attempt service reports: waits and dispatches as they come, and the results of
    /// finished attempts, those of one execution together with what they decide.
    fn on_reports(&mut self, batch: Vec<AttemptReport>) {
        // Per execution, in the order they came; executions are independent streams, so their records may go
        // out in any order.
        let mut results: HashMap<(u32, ExecutionId), Vec<ExecutionEvent>> = HashMap::new();
        for report in batch {
            let (partition, execution, event) = match report {
                AttemptReport::Finished(finished) => {
                    let Some(result) = self.attempt_result(finished) else {
                        continue;
                    };
                    result
                }
                AttemptReport::Lost { partition, key } => {
                    self.handed.remove(&key);
                    if self
                        .partitions
                        .get(&partition)
                        .is_some_and(|runtime| runtime.active)
                    {
                        self.record_lost(partition, key);
                    }
                    continue;
                }
                AttemptReport::Dispatched { partition, key } => (
                    partition,
                    key.execution.clone(),
                    ExecutionEvent::AttemptDispatched {
                        execution: key.execution,
                        node: key.node,
                        attempt: key.attempt,
                        at: now_millis(),
                    },
                ),
                AttemptReport::Waiting {
                    partition,
                    key,
                    reason,
                } => (
                    partition,
                    key.execution.clone(),
                    ExecutionEvent::AttemptWaiting {
                        execution: key.execution,
                        node: key.node,
                        attempt: key.attempt,
                        reason,
                        at: now_millis(),
                    },
                ),
            };
            results.entry((partition, execution)).or_default().push(event);
        }
        for ((partition, execution), mut events) in results {
            // Waits and dispatches change nothing to decide; results may.
            if events.iter().any(is_attempt_result) {
                let decided = self.decided_after(partition, &execution, &events);
                events.extend(decided);
            }
            self.append_decisions(partition, &execution, events);
        }
    }

    /// What the state machine decides once attempt `results` of `execution` are folded (see
    /// `PartitionRuntime::decided_after`); nothing when a start it decides must first ask the cache.
    fn decided_after(
        &self,
        partition: u32,
        execution: &ExecutionId,
        results: &[ExecutionEvent],
    ) -> Vec<ExecutionEvent> {
        let Some(runtime) = self.partitions.get(&partition) else {
            return Vec::new();
        };
        if self.awaits_store(execution) {
            return Vec::new();
        }
        runtime.decided_after(
            execution,
            results,
            DECIDE_WITH_RESULTS_MAX_NODES,
            now_millis(),
            |state, node| self.cache_gate.holds_back(state, node),
        )
    }

    /// The event that records how `finished` ended, if its execution still waits for it here.
    fn attempt_result(&mut self, finished: AttemptFinished) -> Option<(u32, ExecutionId, ExecutionEvent)> {
        self.handed.remove(&finished.key);
        let partition = finished.partition;
        let event = self.partitions.get(&partition)?.result_event(finished)?;
        let execution = event.execution()?.clone();
        Some((partition, execution, event))
    }
}

fn is_attempt_result(event: &ExecutionEvent) -> bool {
    matches!(
        event,
        ExecutionEvent::AttemptSucceeded { .. } | ExecutionEvent::AttemptFailed { .. }
    )
}

/// What `execution` (of `partition`) needs fetched before it can go on.
fn runtime_fetches_needed(
    partitions: &HashMap<u32, PartitionRuntime>,
    partition: u32,
    execution: &ExecutionId,
) -> Vec<aloft_core::Value> {
    partitions
        .get(&partition)
        .and_then(|runtime| runtime.fold.executions.get(execution))
        .map(|state| state.fetches_needed())
        .unwrap_or_default()
}

/// The decision that fails `execution` with `error`.
fn execution_failed(execution: &ExecutionId, error: String) -> ExecutionEvent {
    ExecutionEvent::ExecutionFinished {
        execution: execution.clone(),
        phase: aloft_core::ExecutionPhase::Failed,
        outputs: aloft_core::events::Outputs::new(),
        error: Some(error),
        at: now_millis(),
    }
}
