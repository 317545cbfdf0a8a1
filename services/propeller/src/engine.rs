//! The propeller's loop. It owns partitions of `aloft.executions` through the consumer group; every event
//! of an owned partition goes through the pure `apply`, and once the partition is claimed, `decide`, whose
//! decisions are appended to the same partition.
//!
//! Ownership: after reading a newly assigned partition to its end, the owner appends
//! `PartitionClaimed{epoch = last + 1}` and starts deciding only when it reads its own claim back, in log
//! order. A paused old owner's later decisions carry the old epoch and are discarded by every reader.
//!
//! Own decisions are applied when the broker acknowledges them (acknowledgements are handled in append
//! order, which is log order) or when they are read back, whichever comes first; the admission rule makes
//! the second a duplicate. Side effects (starting or cancelling attempts) follow the application, so they
//! happen only after the deciding event is acknowledged. Requests from admin commute with decisions
//! (`aloft_core::state`), so applying on acknowledgement gives the same state as replaying the log.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use aloft_core::cache::{CacheOutcome, CacheStatus};
use aloft_core::events::{ErrorKind, ExecutionEvent, Outputs};
use aloft_core::state::{decide, AppliedEvent, EventMeta, ExecutionState, PartitionFold};
use aloft_core::ExecutionId;
use aloft_eventlog::{Envelope, EventLog, Payload, Position, Record, RecordStream};
use aloft_fairq::{Dispatcher, Tenant, TenantPolicy};
use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::executor::{AttemptOutcome, AttemptRequest, Executors};
use crate::memo::{self, Catalog, MemoOptions, MemoizedAttempt, PriorLookup};
use crate::metrics;
use aloft_telemetry::trace::Span;

const READ_BATCH: usize = 1000;
/// Executions with more nodes than this are not copied to decide along with attempt results (a copy per
/// result would cost more than the round trip it saves).
const DECIDE_WITH_RESULTS_MAX_NODES: usize = 2_000;
/// At most this many finished attempts are recorded in one go.
const FINISHED_BATCH: usize = 1000;
/// The most encoded envelope bytes one appended record holds (brokers refuse records over 1 MB by default).
const RECORD_BYTES: usize = 256 * 1024;

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AttemptKey {
    execution: ExecutionId,
    node: usize,
    attempt: u32,
}

struct AttemptFinished {
    partition: u32,
    key: AttemptKey,
    memoized: MemoizedAttempt,
    /// It gave resource-pool tokens back: tenants waiting on pools may try again.
    released_pools: bool,
    /// Started by a previous owner and re-attached: it held no slot of this propeller's dispatcher.
    reattached: bool,
}

/// How attempts run: the executors, and the catalog that memoizes cached tasks (none: they always run).
#[derive(Clone)]
pub struct AttemptRunner {
    pub executors: Executors,
    pub catalog: Option<Arc<dyn Catalog>>,
    pub memo: MemoOptions,
    /// Resource pools attempts hold while they run.
    pub pools: crate::pools::PoolAccess,
}

/// An attempt whose `AttemptStarted` is applied, waiting in its tenant's queue for an executor slot (and
/// the resource pools its task declares).
struct QueuedAttempt {
    partition: u32,
    key: AttemptKey,
    request: AttemptRequest,
    overwrite_cache: bool,
    queued_at: std::time::Instant,
    /// The cache lookup the engine already made for it.
    prior: Option<PriorLookup>,
    /// The platform may interrupt it (its `AttemptStarted` says so).
    interruptible: bool,
}

/// A cache lookup made before a cached node's `AttemptStarted` is decided (`memo::looked_up_before_start`).
enum CacheLookup {
    InFlight,
    /// Decided as one `NodeCacheHit` at the next decision, instead of the start.
    Hit {
        outputs: Outputs,
        outcome: CacheOutcome,
    },
    /// The attempt runs, without asking again.
    Prior(PriorLookup),
}

struct LookupDone {
    partition: u32,
    key: AttemptKey,
    lookup: CacheLookup,
}

/// How often tenants blocked on a full resource pool try again: tokens freed by other replicas or by an
/// expired lease are not announced to this one.
const POOL_RETRY: std::time::Duration = std::time::Duration::from_millis(200);
/// How often waiting gates are checked for an ended sleep or a timeout (the resolution of gate timers).
const GATE_TICK: std::time::Duration = std::time::Duration::from_millis(100);
/// How long a stopping propeller waits for its interrupted attempts (and decisions already sent) to be
/// acknowledged before it exits anyway.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An attempt this propeller runs or follows: how to stop it, and whether the platform may interrupt it.
struct RunningAttempt {
    cancel: CancellationToken,
    interruptible: bool,
}

/// How this propeller shares its executor slots between tenants.
pub struct Fairness {
    /// Attempts running at once on this propeller (`usize::MAX`: no limit).
    pub capacity: usize,
    /// Tenant weights and quotas as they are set (read from the registry).
    pub quotas: mpsc::UnboundedReceiver<(Tenant, TenantPolicy)>,
}

fn tenant_of(execution: &ExecutionId) -> Tenant {
    Tenant::new(&execution.project, &execution.domain)
}

/// An append in flight, resolved in the order appends were enqueued.
struct Acknowledged {
    partition: u32,
    /// Our decisions, applied on acknowledgement. Empty for a claim: whether a claim won can only be
    /// known by reading it back in log order.
    decisions: Vec<(EventMeta, ExecutionEvent)>,
    result: aloft_eventlog::Result<Vec<Position>>,
}

/// What must follow the application of one event.
enum AfterEvent {
    Nothing,
    Claim,
    Activated,
    /// Another owner claimed the partition: stop the work started for it.
    StandDown,
    Decide {
        execution: ExecutionId,
        start_attempt: Option<(usize, u32)>,
        finished: bool,
    },
}

#[derive(Default)]
struct PartitionRuntime {
    fold: PartitionFold,
    next_offset: u64,
    /// The end of the partition when it was assigned: reading up to here is catching up.
    catch_up_end: u64,
    claimed_epoch: Option<u64>,
    /// Our claim was read back and is the partition's current epoch.
    active: bool,
    /// Highest seq appended per execution and not applied yet: decide again only once it is.
    pending: HashMap<ExecutionId, u64>,
    /// Each live execution's trace context (from its request's envelope): decisions and attempt spans
    /// join the execution's trace.
    traces: HashMap<ExecutionId, String>,
    /// `(next_offset, epoch)` of the last snapshot stored: an idle partition is not stored again.
    snapshotted: Option<(u64, u64)>,
}

/// Which partitions the engine may own: those of `topic` the consumer group `group` gives member `member`.
pub struct Membership {
    pub topic: String,
    pub group: String,
    pub member: String,
}

/// Where the engine stores the state of its partitions, and how often.
#[derive(Clone)]
pub struct SnapshotOptions {
    pub store: aloft_store::Store,
    pub interval: std::time::Duration,
}

pub struct Engine {
    snapshots: Option<SnapshotOptions>,
    log: Arc<dyn EventLog>,
    topic: String,
    member: String,
    runner: AttemptRunner,
    partitions: HashMap<u32, PartitionRuntime>,
    running: HashMap<AttemptKey, RunningAttempt>,
    /// Attempts stopped because the platform interrupted them: their end is recorded as a system error.
    interrupting: HashSet<AttemptKey>,
    finished_tx: mpsc::UnboundedSender<AttemptFinished>,
    in_flight: FuturesOrdered<BoxFuture<'static, Acknowledged>>,
    /// Attempts waiting for a slot, per tenant (weighted deficit round robin).
    dispatcher: Dispatcher<QueuedAttempt>,
    /// The attempts in the dispatcher, each with whether `AttemptWaiting` was appended for it (then its
    /// start is announced with `AttemptDispatched`).
    queued: HashMap<AttemptKey, bool>,
    /// Attempts queued since the last pump, in queue order: those it cannot start are announced waiting.
    newly_queued: Vec<(u32, AttemptKey)>,
    /// Something may start: pump once the current event is handled.
    pump_wanted: bool,
    /// Lookups of cached nodes about to start, by the attempt they are for.
    cache_lookups: HashMap<AttemptKey, CacheLookup>,
    lookup_tx: mpsc::UnboundedSender<LookupDone>,
}

impl Engine {
    /// Runs until `shutdown` is cancelled: joins the group, follows assignments, folds and decides.
    pub async fn run(
        log: Arc<dyn EventLog>,
        membership: Membership,
        runner: AttemptRunner,
        fairness: Fairness,
        snapshots: Option<SnapshotOptions>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let Membership { topic, group, member } = membership;
        let Fairness { capacity, mut quotas } = fairness;
        let (finished_tx, mut finished_rx) = mpsc::unbounded_channel();
        let (lookup_tx, mut lookup_rx) = mpsc::unbounded_channel();
        let mut membership = log.join_group(&group, &topic, &member).await?;
        let snapshot_interval = snapshots
            .as_ref()
            .map_or(std::time::Duration::from_secs(3600), |s| s.interval);
        let mut engine = Engine {
            snapshots,
            log,
            topic,
            member,
            runner,
            partitions: HashMap::new(),
            running: HashMap::new(),
            interrupting: HashSet::new(),
            finished_tx,
            in_flight: FuturesOrdered::new(),
            dispatcher: Dispatcher::new(capacity),
            queued: HashMap::new(),
            newly_queued: Vec::new(),
            pump_wanted: false,
            cache_lookups: HashMap::new(),
            lookup_tx,
        };
        info!(member = %engine.member, topic = %engine.topic, "propeller joined the group");
        let mut reader: Option<Box<dyn RecordStream>> = None;
        let mut lag_tick = tokio::time::interval(std::time::Duration::from_secs(5));
        lag_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pool_retry_tick = tokio::time::interval(POOL_RETRY);
        pool_retry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut snapshot_tick = tokio::time::interval(snapshot_interval);
        snapshot_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        snapshot_tick.tick().await;
        let mut gate_tick = tokio::time::interval(GATE_TICK);
        gate_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if engine.pump_wanted {
                engine.pump().await;
            }
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
                Some(finished) = finished_rx.recv() => {
                    // Results that arrived together are recorded together: one record per execution.
                    let mut finished = vec![finished];
                    while finished.len() < FINISHED_BATCH {
                        match finished_rx.try_recv() {
                            Ok(more) => finished.push(more),
                            Err(_) => break,
                        }
                    }
                    engine.on_attempts_finished(finished);
                }
                Some(done) = lookup_rx.recv() => {
                    // Lookups answered together are decided together (one append per execution).
                    let mut answered = vec![done];
                    while let Ok(more) = lookup_rx.try_recv() {
                        answered.push(more);
                    }
                    engine.on_lookups_answered(answered);
                }
                _ = lag_tick.tick() => engine.publish_lag(),
                _ = gate_tick.tick() => engine.decide_due_gates(),
                _ = snapshot_tick.tick(), if engine.snapshots.is_some() => engine.take_snapshots(),
                _ = pool_retry_tick.tick() => {
                    if engine.dispatcher.retry_blocked() {
                        engine.pump_wanted = true;
                    }
                }
                Some((tenant, policy)) = quotas.recv() => {
                    info!(%tenant, weight = policy.weight, max_running = ?policy.max_running, "tenant quota applied");
                    engine.dispatcher.set_policy(&tenant, policy);
                    engine.pump_wanted = true;
                }
            }
        }
        engine.drain(&mut finished_rx).await;
        Ok(())
    }

    /// Stopping: interruptible attempts are interrupted (killed, and recorded as system errors so the next
    /// owner retries them at once); the others are left running, for the next owner on this machine to
    /// re-attach to (elsewhere it finds them lost and retries them). Waits, bounded, for those records and
    /// for the decisions already sent to be acknowledged; nothing new is decided or started.
    async fn drain(&mut self, finished_rx: &mut mpsc::UnboundedReceiver<AttemptFinished>) {
        for (key, running) in &self.running {
            if running.interruptible {
                running.cancel.cancel();
                self.interrupting.insert(key.clone());
            }
        }
        info!(
            member = %self.member,
            interrupted = self.interrupting.len(),
            left_running = self.running.len() - self.interrupting.len(),
            "propeller stopping: interrupting interruptible attempts, leaving the others running for the next owner"
        );
        let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
        while !self.interrupting.is_empty() || !self.in_flight.is_empty() {
            tokio::select! {
                Some(finished) = finished_rx.recv(), if !self.interrupting.is_empty() => {
                    self.record_attempt_finished(finished);
                }
                Some(acknowledged) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    if let Err(error) = acknowledged.result {
                        warn!(partition = acknowledged.partition, %error, "an append failed while stopping; the next owner decides again");
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    warn!(
                        interrupted_unrecorded = self.interrupting.len(),
                        appends_unacknowledged = self.in_flight.len(),
                        "stopping without waiting longer; the next owner finds these attempts lost and retries them"
                    );
                    break;
                }
            }
        }
    }

    /// Moves to a new set of owned partitions (`reset` ones are rebuilt from offset 0) and opens a reader.
    async fn reassign(
        &mut self,
        owned: HashSet<u32>,
        reset: &HashSet<u32>,
    ) -> anyhow::Result<Option<Box<dyn RecordStream>>> {
        let lost: Vec<u32> = self
            .partitions
            .keys()
            .copied()
            .filter(|p| !owned.contains(p) || reset.contains(p))
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
            let mut runtime = PartitionRuntime {
                catch_up_end: end,
                ..Default::default()
            };
            let store = self.snapshots.as_ref().map(|s| s.store.clone());
            if let Some((fold, next_offset)) =
                restore_snapshot(store, self.topic.clone(), partition, end).await
            {
                runtime.fold = fold;
                runtime.next_offset = next_offset;
            }
            info!(
                partition,
                from_offset = runtime.next_offset,
                end_offset = end,
                "assigned partition; catching up"
            );
            let caught_up = runtime.next_offset >= end;
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
        let Some(runtime) = self.partitions.get_mut(&partition) else {
            return;
        };
        let epoch = runtime.fold.epoch + 1;
        // The envelopes of one record are folded before their follow-ups run, so several may ask to claim.
        if runtime.claimed_epoch == Some(epoch) {
            return;
        }
        runtime.claimed_epoch = Some(epoch);
        let at = now_millis();
        let envelope = Envelope {
            stream: format!("partition/{partition}"),
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
        };
        info!(partition, epoch, "claiming partition");
        self.append(
            partition,
            vec![(format!("partition/{partition}"), envelope.encode())],
            Vec::new(),
        );
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
            let after = self.fold_event(partition, &meta, &event, true);
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
            }
            AfterEvent::Decide {
                execution,
                start_attempt,
                finished,
            } => {
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

    /// Folds every envelope of `record` (a propeller may append several together), saying what must follow
    /// each.
    fn fold_record(&mut self, record: Record) -> Vec<AfterEvent> {
        let partition = record.partition;
        let Some(runtime) = self.partitions.get_mut(&partition) else {
            return Vec::new();
        };
        if record.offset < runtime.next_offset {
            return Vec::new();
        }
        runtime.next_offset = record.offset + 1;
        let caught_up = record.offset + 1 >= runtime.catch_up_end;
        let envelopes = match Envelope::decode_all(&record.payload) {
            Ok(envelopes) => envelopes,
            Err(error) => {
                error!(partition, offset = record.offset, %error, "skipping an undecodable record");
                return Vec::new();
            }
        };
        let mut follow_ups = Vec::with_capacity(envelopes.len());
        for envelope in envelopes {
            let Payload::Execution(event) = &envelope.payload else {
                continue;
            };
            if let ExecutionEvent::ExecutionRequested { execution, .. } = event {
                if !envelope.traceparent.is_empty() {
                    if let Some(runtime) = self.partitions.get_mut(&partition) {
                        runtime
                            .traces
                            .insert(execution.clone(), envelope.traceparent.clone());
                    }
                }
            }
            let meta = EventMeta {
                seq: envelope.seq,
                writer_epoch: envelope.writer_epoch,
            };
            follow_ups.push(self.fold_event(partition, &meta, event, caught_up));
        }
        follow_ups
    }

    /// Applies one event to its partition's fold and says what must follow.
    fn fold_event(
        &mut self,
        partition: u32,
        meta: &EventMeta,
        event: &ExecutionEvent,
        caught_up: bool,
    ) -> AfterEvent {
        let Some(runtime) = self.partitions.get_mut(&partition) else {
            return AfterEvent::Nothing;
        };
        let verdict = runtime.fold.apply(meta, event);
        if verdict == AppliedEvent::Accepted {
            metrics::EVENTS_APPLIED.increment(&[], 1.0);
        }
        if verdict == AppliedEvent::Fenced {
            debug!(partition, kind = event.kind(), "discarded a fenced event");
        }
        if let ExecutionEvent::PartitionClaimed { epoch, owner, .. } = event {
            if verdict == AppliedEvent::Accepted {
                if *owner == self.member && Some(*epoch) == runtime.claimed_epoch {
                    info!(partition, epoch, "partition claimed; deciding");
                    runtime.active = true;
                    return AfterEvent::Activated;
                }
                if runtime.active {
                    warn!(partition, epoch, owner = %owner, "partition claimed by another owner; standing down");
                    runtime.active = false;
                    runtime.pending.clear();
                    return AfterEvent::StandDown;
                }
            }
            if runtime.claimed_epoch.is_none() && caught_up {
                return AfterEvent::Claim;
            }
            return AfterEvent::Nothing;
        }
        if runtime.claimed_epoch.is_none() && caught_up {
            return AfterEvent::Claim;
        }
        if !runtime.active || verdict != AppliedEvent::Accepted {
            return AfterEvent::Nothing;
        }
        let Some(execution) = event.execution().cloned() else {
            return AfterEvent::Nothing;
        };
        if let Some(state) = runtime.fold.executions.get(&execution) {
            let requests = aloft_core::children::requests_after(state, event);
            self.send_requests(requests);
        }
        let Some(runtime) = self.partitions.get_mut(&partition) else {
            return AfterEvent::Nothing;
        };
        if !event.is_request()
            && runtime
                .pending
                .get(&execution)
                .is_some_and(|pending| meta.seq >= *pending)
        {
            runtime.pending.remove(&execution);
        }
        let start_attempt = match event {
            ExecutionEvent::AttemptStarted { node, attempt, .. } => Some((*node, *attempt)),
            _ => None,
        };
        let finished = matches!(event, ExecutionEvent::ExecutionFinished { .. });
        if finished {
            runtime.traces.remove(&execution);
        }
        AfterEvent::Decide {
            execution,
            start_attempt,
            finished,
        }
    }

    /// After our claim: attempts the log says are running but that no longer run here were lost with the
    /// previous owner; they fail as system errors and are retried within the system budget.
    fn on_activated(&mut self, partition: u32) {
        let Some(runtime) = self.partitions.get(&partition) else {
            return;
        };
        let mut lost = Vec::new();
        let mut to_decide = Vec::new();
        let mut requests = Vec::new();
        for (execution, state) in &runtime.fold.executions {
            requests.extend(aloft_core::children::requests_to_resend(state));
            if state.phase.is_terminal() {
                continue;
            }
            to_decide.push(execution.clone());
            for (node, attempt) in state.running_attempts() {
                let key = AttemptKey {
                    execution: execution.clone(),
                    node,
                    attempt,
                };
                if !self.running.contains_key(&key) {
                    lost.push(key);
                }
            }
        }
        self.send_requests(requests);
        for key in lost {
            if self.reattach(partition, &key) {
                info!(execution = %key.execution, node = key.node, attempt = key.attempt, "re-attached to a task process started by the previous owner");
                continue;
            }
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
        for execution in to_decide {
            self.decide_and_append(partition, &execution);
        }
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

    /// Stores the state of every partition this propeller owns and has claimed, as of the records read so
    /// far (decisions applied on acknowledgement but not read back yet are folded again, as duplicates).
    fn take_snapshots(&mut self) {
        let Some(options) = &self.snapshots else {
            return;
        };
        for (&partition, runtime) in &mut self.partitions {
            let position = (runtime.next_offset, runtime.fold.epoch);
            if !runtime.active || runtime.snapshotted == Some(position) {
                continue;
            }
            runtime.snapshotted = Some(position);
            let state_json = match runtime.fold.to_snapshot().map(String::from_utf8) {
                Ok(Ok(json)) => json,
                Ok(Err(error)) => {
                    warn!(partition, %error, "snapshot is not UTF-8; skipped");
                    continue;
                }
                Err(error) => {
                    warn!(partition, %error, "cannot encode a snapshot; skipped");
                    continue;
                }
            };
            let snapshot = aloft_store::snapshots::Snapshot {
                next_offset: runtime.next_offset,
                epoch: runtime.fold.epoch,
                state_json,
                taken_at: now_millis(),
            };
            let (store, topic) = (options.store.clone(), self.topic.clone());
            tokio::spawn(async move {
                match store.save_snapshot(&topic, partition, &snapshot).await {
                    Ok(()) => debug!(
                        partition,
                        offset = snapshot.next_offset,
                        bytes = snapshot.state_json.len(),
                        "snapshot stored"
                    ),
                    Err(error) => warn!(partition, %error, "cannot store a snapshot"),
                }
            });
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
                let envelope = Envelope::unsequenced(
                    format!("request/{key}/{}", request.kind()),
                    request.occurred_at(),
                    Payload::Execution(request),
                );
                if let Err(error) = log.append(&topic, &key, envelope.encode()).await {
                    warn!(execution = %target, %error, "could not append a request; it is sent again on takeover");
                }
            });
        }
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
        let decisions = decide(state, now_millis());
        let decisions = self.through_cache(partition, execution, decisions);
        if !decisions.is_empty() {
            self.append_decisions(partition, execution, decisions);
        }
    }

    /// Holds back the start of each cached node (`memo::looked_up_before_start`) until the catalog has
    /// answered: a hit is then decided instead of the start, as one `NodeCacheHit` with the stored outputs;
    /// a miss or an unreachable catalog starts the attempt, which runs without asking again.
    fn through_cache(
        &mut self,
        partition: u32,
        execution: &ExecutionId,
        decisions: Vec<ExecutionEvent>,
    ) -> Vec<ExecutionEvent> {
        let Some(catalog) = self.runner.catalog.clone() else {
            return decisions;
        };
        let Some(runtime) = self.partitions.get(&partition) else {
            return decisions;
        };
        let Some(state) = runtime.fold.executions.get(execution) else {
            return decisions;
        };
        let mut kept = Vec::with_capacity(decisions.len());
        let mut to_look_up = Vec::new();
        let mut decided_hits = Vec::new();
        for event in decisions {
            let ExecutionEvent::AttemptStarted {
                node, attempt, at, ..
            } = &event
            else {
                kept.push(event);
                continue;
            };
            let (node, attempt, at) = (*node, *attempt, *at);
            let task = &state.workflow.nodes[node].task;
            if !memo::looked_up_before_start(task, state.overwrite_cache) {
                kept.push(event);
                continue;
            }
            let key = AttemptKey {
                execution: execution.clone(),
                node,
                attempt,
            };
            match self.cache_lookups.get(&key) {
                Some(CacheLookup::Hit { outputs, outcome }) => {
                    kept.push(ExecutionEvent::NodeCacheHit {
                        execution: execution.clone(),
                        node,
                        attempt,
                        outputs: outputs.clone(),
                        cache: outcome.clone(),
                        at,
                    });
                    decided_hits.push(key);
                }
                Some(CacheLookup::Prior(_)) => kept.push(event),
                Some(CacheLookup::InFlight) => {}
                None => {
                    // Inputs that do not resolve fail the attempt in `start_attempt`.
                    let cache_key = state
                        .node_inputs(node)
                        .ok()
                        .and_then(|inputs| memo::key_for(execution, task, &inputs));
                    match cache_key {
                        Some(cache_key) => to_look_up.push((key, cache_key, task.name.clone())),
                        None => kept.push(event),
                    }
                }
            }
        }
        for key in decided_hits {
            self.cache_lookups.remove(&key);
        }
        let parent = runtime.traces.get(execution).cloned().unwrap_or_default();
        for (key, cache_key, task) in to_look_up {
            self.cache_lookups.insert(key.clone(), CacheLookup::InFlight);
            let span = Span::start(
                "propeller.cache_lookup",
                &parent,
                false,
                &[
                    ("aloft.execution", key.execution.to_string()),
                    ("aloft.node", state.workflow.nodes[key.node].id.clone()),
                    ("aloft.task", task),
                ],
            );
            let (catalog, answered) = (Arc::clone(&catalog), self.lookup_tx.clone());
            tokio::spawn(async move {
                let answer = span
                    .scope(async { catalog.get_or_reserve(&cache_key, None).await })
                    .await;
                drop(span);
                let lookup = match answer {
                    Ok(memo::Lookup::Hit { outputs, source }) => CacheLookup::Hit {
                        outputs,
                        outcome: CacheOutcome {
                            key: cache_key,
                            status: CacheStatus::Hit,
                            source: Some(source),
                        },
                    },
                    Ok(_) => CacheLookup::Prior(PriorLookup::Missed),
                    Err(error) => CacheLookup::Prior(PriorLookup::Failed(error)),
                };
                let _ = answered.send(LookupDone {
                    partition,
                    key,
                    lookup,
                });
            });
        }
        kept
    }

    /// Records the catalog's answers and decides again for their executions.
    fn on_lookups_answered(&mut self, answered: Vec<LookupDone>) {
        let mut to_decide: Vec<(u32, ExecutionId)> = Vec::new();
        for LookupDone {
            partition,
            key,
            lookup,
        } in answered
        {
            // Still wanted only while in flight (dropped when the execution ended or the partition moved).
            let Some(entry @ CacheLookup::InFlight) = self.cache_lookups.get_mut(&key) else {
                continue;
            };
            if matches!(lookup, CacheLookup::Hit { .. }) {
                metrics::CACHE_LOOKUPS.increment(&[("result", "hit")], 1.0);
            }
            *entry = lookup;
            let wanted = (partition, key.execution);
            if !to_decide.contains(&wanted) {
                to_decide.push(wanted);
            }
        }
        for (partition, execution) in to_decide {
            self.decide_and_append(partition, &execution);
        }
    }

    /// Sequences decisions after everything already appended for the execution and appends them in order.
    fn append_decisions(&mut self, partition: u32, execution: &ExecutionId, events: Vec<ExecutionEvent>) {
        let Some(runtime) = self.partitions.get_mut(&partition) else {
            return;
        };
        let Some(state) = runtime.fold.executions.get(execution) else {
            return;
        };
        let mut seq = runtime
            .pending
            .get(execution)
            .copied()
            .unwrap_or(0)
            .max(state.last_seq);
        let epoch = runtime.fold.epoch;
        let traceparent = runtime.traces.get(execution).cloned().unwrap_or_default();
        let stream = execution.stream();
        let key = execution.partition_key();
        let envelopes: Vec<Envelope> = events
            .into_iter()
            .map(|event| {
                seq += 1;
                Envelope {
                    stream: stream.clone(),
                    seq,
                    writer_epoch: epoch,
                    occurred_at: event.occurred_at(),
                    traceparent: traceparent.clone(),
                    payload: Payload::Execution(event),
                }
            })
            .collect();
        // As few records as hold them: a broker's cost is per record, and a 10,000-item map decides
        // thousands of starts and results.
        let records = Envelope::pack(&envelopes, RECORD_BYTES)
            .into_iter()
            .map(|payload| (key.clone(), payload))
            .collect();
        let decisions: Vec<(EventMeta, ExecutionEvent)> = envelopes
            .into_iter()
            .filter_map(|envelope| match envelope.payload {
                Payload::Execution(event) => Some((
                    EventMeta {
                        seq: envelope.seq,
                        writer_epoch: envelope.writer_epoch,
                    },
                    event,
                )),
                _ => None,
            })
            .collect();
        runtime.pending.insert(execution.clone(), seq);
        metrics::DECISIONS_APPENDED.increment(&[], decisions.len() as f64);
        self.append(partition, records, decisions);
    }

    fn start_attempt(&mut self, partition: u32, execution: &ExecutionId, node: usize, attempt: u32) {
        let key = AttemptKey {
            execution: execution.clone(),
            node,
            attempt,
        };
        if self.running.contains_key(&key) {
            return;
        }
        let prior = match self.cache_lookups.remove(&key) {
            Some(CacheLookup::Prior(prior)) => Some(prior),
            _ => None,
        };
        let Some(state) = self
            .partitions
            .get(&partition)
            .and_then(|rt| rt.fold.executions.get(execution))
        else {
            return;
        };
        let request = match attempt_request(state, node, attempt) {
            Ok(request) => request,
            Err(message) => {
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
        let overwrite_cache = state.overwrite_cache;
        let interruptible = state.nodes[node].is_interruptible(attempt);
        if self.queued.insert(key.clone(), false).is_some() {
            return;
        }
        self.newly_queued.push((partition, key.clone()));
        self.dispatcher.push(
            &tenant_of(execution),
            QueuedAttempt {
                partition,
                key,
                request,
                overwrite_cache,
                queued_at: std::time::Instant::now(),
                prior,
                interruptible,
            },
        );
        self.publish_tenant_gauges(&tenant_of(execution));
        self.pump_wanted = true;
    }

    fn publish_tenant_gauges(&self, tenant: &Tenant) {
        let label = tenant.to_string();
        metrics::TENANT_QUEUED.set(&[("tenant", &label)], self.dispatcher.queued(tenant) as f64);
        metrics::TENANT_RUNNING.set(
            &[("tenant", &label)],
            f64::from(self.dispatcher.running_of(tenant)),
        );
    }

    /// Starts queued attempts while the dispatcher has slots for them, in its fair order, taking the
    /// resource pools each declares first (a tenant whose next attempt finds its pool full is passed over
    /// until tokens free up, holding no slot). Then announces the attempts that could not start.
    async fn pump(&mut self) {
        self.pump_wanted = false;
        while let Some(candidate) = self.dispatcher.peek() {
            let queued = candidate.item;
            let wanted = queued
                .request
                .task
                .resources
                .as_ref()
                .map(|resources| resources.pools.clone())
                .unwrap_or_default();
            let mut tokens = None;
            if !wanted.is_empty() {
                let holder = format!(
                    "{}/{}/{}",
                    queued.key.execution, queued.request.node_id, queued.key.attempt
                );
                match self.runner.pools.try_acquire(&holder, &wanted).await {
                    Ok(held) => tokens = Some(held),
                    Err(pool) => {
                        self.dispatcher.blocked(&pool);
                        continue;
                    }
                }
            }
            let Some((tenant, queued)) = self.dispatcher.start() else {
                break;
            };
            let announced = self.queued.remove(&queued.key).unwrap_or(false);
            metrics::TENANT_WAIT_SECONDS.increment(
                &[("tenant", &tenant.to_string())],
                queued.queued_at.elapsed().as_secs_f64(),
            );
            self.publish_tenant_gauges(&tenant);
            if announced {
                let event = ExecutionEvent::AttemptDispatched {
                    execution: queued.key.execution.clone(),
                    node: queued.key.node,
                    attempt: queued.key.attempt,
                    at: now_millis(),
                };
                self.append_decisions(queued.partition, &queued.key.execution.clone(), vec![event]);
            }
            self.spawn_attempt(queued, tokens);
        }
        self.announce_waiting();
        metrics::ATTEMPTS_QUEUED.set(&[], self.queued.len() as f64);
    }

    /// Appends `AttemptWaiting` for each attempt queued since the last pump that is still queued: the
    /// limit its tenant waits for and its place in the tenant's queue (new attempts are at the back).
    fn announce_waiting(&mut self) {
        let still_queued: Vec<(u32, AttemptKey)> = std::mem::take(&mut self.newly_queued)
            .into_iter()
            .filter(|(_, key)| self.queued.contains_key(key))
            .collect();
        if still_queued.is_empty() {
            return;
        }
        let mut new_per_tenant: HashMap<Tenant, usize> = HashMap::new();
        for (_, key) in &still_queued {
            *new_per_tenant.entry(tenant_of(&key.execution)).or_default() += 1;
        }
        let mut seen_per_tenant: HashMap<Tenant, usize> = HashMap::new();
        let mut events = Vec::new();
        for (partition, key) in still_queued {
            let tenant = tenant_of(&key.execution);
            let queue_length = self.dispatcher.queued(&tenant);
            let seen = seen_per_tenant.entry(tenant.clone()).or_default();
            let new_of_tenant = new_per_tenant.get(&tenant).copied().unwrap_or(0);
            let position = queue_length.saturating_sub(new_of_tenant) + *seen + 1;
            *seen += 1;
            let Some(limit) = self.dispatcher.wait_reason(&tenant) else {
                continue;
            };
            let reason = format!("{limit}; position {position} of {queue_length} in {tenant}'s queue");
            if let Some(announced) = self.queued.get_mut(&key) {
                *announced = true;
            }
            events.push((partition, key, reason));
        }
        for (partition, key, reason) in events {
            let event = ExecutionEvent::AttemptWaiting {
                execution: key.execution.clone(),
                node: key.node,
                attempt: key.attempt,
                reason,
                at: now_millis(),
            };
            self.append_decisions(partition, &key.execution, vec![event]);
        }
    }

    fn spawn_attempt(&mut self, queued: QueuedAttempt, tokens: Option<crate::pools::HeldTokens>) {
        let QueuedAttempt {
            partition,
            key,
            request,
            overwrite_cache,
            prior,
            interruptible,
            ..
        } = queued;
        debug!(execution = %key.execution, node = %request.node_id, attempt = key.attempt, "starting attempt");
        let cancel = CancellationToken::new();
        self.running.insert(
            key.clone(),
            RunningAttempt {
                cancel: cancel.clone(),
                interruptible,
            },
        );
        metrics::ATTEMPTS_STARTED.increment(&[], 1.0);
        let runner = self.runner.clone();
        let finished_tx = self.finished_tx.clone();
        let parent = self
            .partitions
            .get(&partition)
            .and_then(|runtime| runtime.traces.get(&key.execution))
            .cloned()
            .unwrap_or_default();
        let mut span = Span::start(
            "propeller.attempt",
            &parent,
            false,
            &[
                ("aloft.execution", key.execution.to_string()),
                ("aloft.node", request.node_id.clone()),
                ("aloft.attempt", key.attempt.to_string()),
                ("aloft.task", request.task.name.clone()),
            ],
        );
        tokio::spawn(async move {
            let memoized = span
                .scope(memo::run_attempt(
                    runner.executors,
                    runner.catalog,
                    runner.memo,
                    request,
                    overwrite_cache,
                    prior,
                    cancel,
                ))
                .await;
            if let AttemptOutcome::Failed { message, .. } = &memoized.outcome {
                span.fail(message);
            }
            drop(span);
            let released_pools = tokens.is_some();
            if let Some(tokens) = tokens {
                tokens.release().await;
            }
            let _ = finished_tx.send(AttemptFinished {
                partition,
                key,
                memoized,
                released_pools,
                reattached: false,
            });
        });
    }

    /// Follows an attempt the log says is running but that no longer runs here, if its process still runs
    /// on this machine or recorded how it ended (`Executors::reattach`); it then reports like any other
    /// attempt. It holds no executor slot or pool tokens of this propeller.
    fn reattach(&mut self, partition: u32, key: &AttemptKey) -> bool {
        let Some(state) = self
            .partitions
            .get(&partition)
            .and_then(|rt| rt.fold.executions.get(&key.execution))
        else {
            return false;
        };
        let Ok(request) = attempt_request(state, key.node, key.attempt) else {
            return false;
        };
        let interruptible = state.nodes[key.node].is_interruptible(key.attempt);
        let cancel = CancellationToken::new();
        let Some(waiting) = self.runner.executors.reattach(request, cancel.clone()) else {
            return false;
        };
        self.running.insert(
            key.clone(),
            RunningAttempt {
                cancel,
                interruptible,
            },
        );
        let (finished_tx, key) = (self.finished_tx.clone(), key.clone());
        tokio::spawn(async move {
            let outcome = waiting.await;
            let _ = finished_tx.send(AttemptFinished {
                partition,
                key,
                memoized: MemoizedAttempt {
                    outcome,
                    cache: None,
                    finished_at: now_millis(),
                },
                released_pools: false,
                reattached: true,
            });
        });
        true
    }

    fn cancel_attempts_of_partition(&mut self, partition: u32) {
        for removed in self
            .dispatcher
            .remove_where(|queued| queued.partition == partition)
        {
            self.queued.remove(&removed.key);
        }
        let Some(runtime) = self.partitions.get(&partition) else {
            return;
        };
        self.cache_lookups
            .retain(|key, _| !runtime.fold.executions.contains_key(&key.execution));
        self.running.retain(|key, running| {
            let belongs = runtime.fold.executions.contains_key(&key.execution);
            if belongs {
                running.cancel.cancel();
            }
            !belongs
        });
    }

    fn cancel_attempts_of(&mut self, execution: &ExecutionId) {
        self.cache_lookups.retain(|key, _| &key.execution != execution);
        for removed in self
            .dispatcher
            .remove_where(|queued| &queued.key.execution == execution)
        {
            self.queued.remove(&removed.key);
        }
        for (key, running) in &self.running {
            if &key.execution == execution {
                running.cancel.cancel();
            }
        }
    }

    /// Frees the slots of finished attempts and appends their results, those of one execution together.
    fn on_attempts_finished(&mut self, batch: Vec<AttemptFinished>) {
        // Per execution, in the order they finished (executions are independent streams).
        let mut results: HashMap<(u32, ExecutionId), Vec<ExecutionEvent>> = HashMap::new();
        for finished in batch {
            if !finished.reattached {
                // Its slot is free: the dispatcher picks who runs next.
                let tenant = tenant_of(&finished.key.execution);
                self.dispatcher.finished(&tenant);
                if finished.released_pools {
                    self.dispatcher.retry_blocked();
                }
                self.publish_tenant_gauges(&tenant);
                self.pump_wanted = true;
            }
            let Some((partition, execution, event)) = self.attempt_result(finished) else {
                continue;
            };
            results.entry((partition, execution)).or_default().push(event);
        }
        for ((partition, execution), mut events) in results {
            let decided = self.decided_after(partition, &execution, &events);
            events.extend(decided);
            self.append_decisions(partition, &execution, events);
        }
    }

    /// What the state machine decides once attempt `results` of `execution` are folded, so that they go out
    /// in the same record as the results (a record is appended whole or not at all, and its decisions take
    /// effect on acknowledgement, as always): a chain's next start then costs no round trip of its own.
    /// Decided on a copy; nothing when `execution` has appends in flight (its state is not final yet), when
    /// it is too large to copy per result, or when a start must first ask the cache (`through_cache`).
    fn decided_after(
        &self,
        partition: u32,
        execution: &ExecutionId,
        results: &[ExecutionEvent],
    ) -> Vec<ExecutionEvent> {
        let Some(runtime) = self.partitions.get(&partition) else {
            return Vec::new();
        };
        if !runtime.active || runtime.pending.contains_key(execution) {
            return Vec::new();
        }
        let Some(state) = runtime.fold.executions.get(execution) else {
            return Vec::new();
        };
        if state.nodes.len() > DECIDE_WITH_RESULTS_MAX_NODES {
            return Vec::new();
        }
        let mut next = state.clone();
        for result in results {
            next.apply(result);
        }
        let decisions = decide(&next, now_millis());
        let asks_cache = |event: &ExecutionEvent| match event {
            ExecutionEvent::AttemptStarted { node, .. } => {
                memo::looked_up_before_start(&next.workflow.nodes[*node].task, next.overwrite_cache)
            }
            _ => false,
        };
        if self.runner.catalog.is_some() && decisions.iter().any(asks_cache) {
            return Vec::new();
        }
        decisions
    }

    fn record_attempt_finished(&mut self, finished: AttemptFinished) {
        if let Some((partition, execution, event)) = self.attempt_result(finished) {
            self.append_decisions(partition, &execution, vec![event]);
        }
    }

    /// The event that records how `finished` ended, if its execution still waits for it here.
    fn attempt_result(
        &mut self,
        mut finished: AttemptFinished,
    ) -> Option<(u32, ExecutionId, ExecutionEvent)> {
        self.running.remove(&finished.key);
        if self.interrupting.remove(&finished.key) && finished.memoized.outcome == AttemptOutcome::Cancelled {
            finished.memoized.outcome = AttemptOutcome::Failed {
                kind: ErrorKind::System,
                message: format!(
                    "interrupted: propeller {} stopped while the attempt ran (it is interruptible)",
                    self.member
                ),
            };
            finished.memoized.finished_at = now_millis();
        }
        let outcome = match &finished.memoized.outcome {
            AttemptOutcome::Succeeded(_) => "succeeded",
            AttemptOutcome::Failed {
                kind: ErrorKind::User,
                ..
            } => "user",
            AttemptOutcome::Failed {
                kind: ErrorKind::Timeout,
                ..
            } => "timeout",
            AttemptOutcome::Failed {
                kind: ErrorKind::System,
                ..
            } => "system",
            AttemptOutcome::Cancelled => "cancelled",
        };
        metrics::ATTEMPTS_FINISHED.increment(&[("outcome", outcome)], 1.0);
        let AttemptKey {
            execution,
            node,
            attempt,
        } = finished.key;
        let runtime = self.partitions.get(&finished.partition)?;
        if !runtime.active {
            return None;
        }
        let still_running = runtime
            .fold
            .executions
            .get(&execution)
            .and_then(|state| state.nodes.get(node))
            .and_then(|n| n.running_attempt())
            .is_some_and(|a| a.number == attempt);
        if !still_running {
            return None;
        }
        let at = finished.memoized.finished_at;
        let event = match finished.memoized.outcome {
            AttemptOutcome::Succeeded(outputs) => ExecutionEvent::AttemptSucceeded {
                execution: execution.clone(),
                node,
                attempt,
                outputs,
                at,
                cache: finished.memoized.cache,
            },
            AttemptOutcome::Failed { kind, message } => ExecutionEvent::AttemptFailed {
                execution: execution.clone(),
                node,
                attempt,
                kind,
                message,
                at,
            },
            AttemptOutcome::Cancelled => return None,
        };
        Some((finished.partition, execution, event))
    }
}

/// What an executor needs to run attempt `attempt` of `node`; an error when its inputs do not resolve.
fn attempt_request(state: &ExecutionState, node: usize, attempt: u32) -> Result<AttemptRequest, String> {
    let compiled = &state.workflow.nodes[node];
    Ok(AttemptRequest {
        execution: state.id.clone(),
        node_id: compiled.id.clone(),
        attempt,
        task: compiled.task.clone(),
        task_version: compiled.task_id.version.clone(),
        inputs: state.node_inputs(node)?,
    })
}

/// The newest stored state of `partition` and the offset to replay from, if one is stored and usable;
/// otherwise the partition is replayed from offset 0.
async fn restore_snapshot(
    store: Option<aloft_store::Store>,
    topic: String,
    partition: u32,
    end: u64,
) -> Option<(PartitionFold, u64)> {
    let store = store?;
    let started = std::time::Instant::now();
    let snapshot = match store.load_snapshot(&topic, partition).await {
        Ok(snapshot) => snapshot?,
        Err(error) => {
            warn!(partition, %error, "cannot read the partition's snapshot; replaying it from offset 0");
            return None;
        }
    };
    if snapshot.next_offset > end {
        warn!(
            partition,
            snapshot_offset = snapshot.next_offset,
            end,
            "the snapshot is ahead of the log (a new topic?); replaying from offset 0"
        );
        return None;
    }
    match PartitionFold::from_snapshot(snapshot.state_json.as_bytes()) {
        Ok(fold) => {
            info!(
                partition,
                offset = snapshot.next_offset,
                epoch = snapshot.epoch,
                executions = fold.executions.len(),
                millis = started.elapsed().as_millis() as u64,
                "restored partition from its snapshot; replaying the tail"
            );
            Some((fold, snapshot.next_offset))
        }
        Err(error) => {
            warn!(partition, %error, "the snapshot is unreadable; replaying from offset 0");
            None
        }
    }
}
