//! The attempt service: everything about task attempts once the engine has decided (and the log has
//! acknowledged) that they start. It owns the fair-queue dispatcher, the resource-pool acquisition, the
//! running attempts and their executors; the engine talks to it through an [`AttemptsHandle`] and hears
//! back on a channel of [`AttemptReport`]s, so no Redis, catalog or executor round trip is ever awaited on
//! the engine's loop.
//!
//! Options -> Service -> Handle: [`AttemptOptions::build`] gives the service, whose `run` owns its loop,
//! and a cheap handle. The service stops when every handle is dropped; attempts it leaves running keep
//! running (a non-interruptible attempt is re-attached by the next owner).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aloft_core::events::ErrorKind;
use aloft_core::ExecutionId;
use aloft_fairq::{Dispatcher, Tenant, TenantPolicy, WaitReason};
use aloft_telemetry::trace::Span;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::compute::{ComputeCapacity, ComputeLedger};
use crate::disk::DiskGuard;
use crate::executor::{AttemptOutcome, AttemptRequest, Executors};
use crate::memo::{self, Catalog, MemoOptions, MemoizedAttempt, PriorLookup};
use crate::metrics;
use crate::pools::{HeldTokens, PoolAccess};

/// How often tenants blocked on a full resource pool try again: tokens freed by other replicas or by an
/// expired lease are not announced to this one.
const POOL_RETRY: Duration = Duration::from_millis(200);

/// One attempt of one node of one execution, as the engine keys it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttemptKey {
    pub execution: ExecutionId,
    pub node: usize,
    pub attempt: u32,
}

impl AttemptKey {
    pub fn tenant(&self) -> Tenant {
        Tenant::new(&self.execution.project, &self.execution.domain)
    }
}

/// An attempt whose `AttemptStarted` is applied, to run once its tenant gets a slot (and the resource
/// pools its task declares).
pub struct AttemptToRun {
    pub partition: u32,
    pub key: AttemptKey,
    pub request: AttemptRequest,
    pub overwrite_cache: bool,
    /// The cache lookup the engine already made for it.
    pub prior: Option<PriorLookup>,
    /// The platform may interrupt it (its `AttemptStarted` says so).
    pub interruptible: bool,
    /// The execution's trace context: the attempt's span joins it.
    pub traceparent: String,
}

/// An attempt the log says is running but that this propeller did not start (a previous owner did).
pub struct AttemptToReattach {
    pub partition: u32,
    pub key: AttemptKey,
    pub request: AttemptRequest,
    pub interruptible: bool,
}

/// How an attempt this propeller ran or followed ended.
pub struct AttemptFinished {
    pub partition: u32,
    pub key: AttemptKey,
    pub memoized: MemoizedAttempt,
    /// The platform interrupted it while the propeller stopped: recorded as a system error, retried at once.
    pub interrupted: bool,
}

/// What the service tells the engine; each becomes an event the engine sequences and appends.
pub enum AttemptReport {
    /// An attempt announced as waiting got its slot and started (`AttemptDispatched`).
    Dispatched {
        partition: u32,
        key: AttemptKey,
    },
    /// A newly queued attempt cannot start yet, and why (`AttemptWaiting`).
    Waiting {
        partition: u32,
        key: AttemptKey,
        reason: String,
    },
    /// A re-attach found nothing to follow: the attempt is lost and is retried as a system error.
    Lost {
        partition: u32,
        key: AttemptKey,
    },
    Finished(AttemptFinished),
}

enum Command {
    Run(Box<AttemptToRun>),
    Reattach(Box<AttemptToReattach>),
    CancelExecution(ExecutionId),
    CancelPartition(u32),
    /// Stop interruptible attempts (they report `interrupted`); answers how many.
    Interrupt(tokio::sync::oneshot::Sender<usize>),
}

/// The engine's side of the service: cheap to clone, every call returns at once.
#[derive(Clone)]
pub struct AttemptsHandle {
    commands: mpsc::UnboundedSender<Command>,
}

impl AttemptsHandle {
    /// Queues `attempt` in its tenant's queue.
    pub fn run(&self, attempt: AttemptToRun) {
        let _ = self.commands.send(Command::Run(Box::new(attempt)));
    }

    /// Follows an attempt a previous owner started (or reports it `Lost`).
    pub fn reattach(&self, attempt: AttemptToReattach) {
        let _ = self.commands.send(Command::Reattach(Box::new(attempt)));
    }

    /// Drops the queued attempts of `execution` and cancels its running ones (they report `Cancelled`).
    pub fn cancel_execution(&self, execution: ExecutionId) {
        let _ = self.commands.send(Command::CancelExecution(execution));
    }

    /// Drops the queued attempts of `partition` and cancels its running ones: another owner has it now.
    pub fn cancel_partition(&self, partition: u32) {
        let _ = self.commands.send(Command::CancelPartition(partition));
    }

    /// Interrupts every interruptible attempt; answers how many will report `interrupted`.
    pub async fn interrupt_interruptible(&self) -> usize {
        let (answer, answered) = tokio::sync::oneshot::channel();
        if self.commands.send(Command::Interrupt(answer)).is_err() {
            return 0;
        }
        answered.await.unwrap_or(0)
    }
}

/// How attempts run and share this propeller's slots.
pub struct AttemptOptions {
    pub executors: Executors,
    /// The catalog that memoizes cached tasks (none: they always run).
    pub catalog: Option<Arc<dyn Catalog>>,
    pub memo: MemoOptions,
    /// Resource pools attempts hold while they run.
    pub pools: PoolAccess,
    /// Attempts running at once on this propeller (`usize::MAX`: no limit).
    pub capacity: usize,
    /// The CPU, memory and GPUs attempts' requests are admitted against.
    pub compute: ComputeCapacity,
    /// The work directory's free space, which attempts that write there are admitted against.
    pub disk: DiskGuard,
    /// How long an ended attempt's directory stays before it is removed.
    pub attempt_dir_retention: Duration,
    /// Tenant weights and quotas as they are set (read from the registry).
    pub quotas: mpsc::UnboundedReceiver<(Tenant, TenantPolicy)>,
    /// This propeller's member id, named in the message of an interrupted attempt.
    pub member: String,
}

impl AttemptOptions {
    /// The service, its handle and the channel it reports on.
    pub fn build(
        self,
    ) -> (
        AttemptService,
        AttemptsHandle,
        mpsc::UnboundedReceiver<AttemptReport>,
    ) {
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (reports, reports_rx) = mpsc::unbounded_channel();
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        let service = AttemptService {
            dispatcher: Dispatcher::new(self.capacity),
            compute: ComputeLedger::new(self.compute),
            options: self,
            queued: HashMap::new(),
            newly_queued: Vec::new(),
            running: HashMap::new(),
            interrupting: HashSet::new(),
            commands,
            reports,
            finished_tx,
            finished_rx,
        };
        (
            service,
            AttemptsHandle {
                commands: commands_tx,
            },
            reports_rx,
        )
    }
}

struct QueuedAttempt {
    attempt: AttemptToRun,
    queued_at: Instant,
}

/// An attempt this propeller runs or follows: how to stop it, and whether the platform may interrupt it.
struct RunningAttempt {
    partition: u32,
    cancel: CancellationToken,
    interruptible: bool,
}

/// An attempt task's end, before the service has freed what it held.
struct Ended {
    partition: u32,
    key: AttemptKey,
    memoized: MemoizedAttempt,
    /// Started by this propeller's dispatcher (a re-attached one holds no slot).
    held_slot: bool,
    released_pools: bool,
}

pub struct AttemptService {
    options: AttemptOptions,
    /// Attempts waiting for a slot, per tenant (weighted deficit round robin).
    dispatcher: Dispatcher<QueuedAttempt>,
    /// What running attempts hold of this propeller's CPU, memory and GPUs.
    compute: ComputeLedger<AttemptKey>,
    /// The attempts in the dispatcher, each with whether it was announced waiting (then its start is
    /// announced as dispatched).
    queued: HashMap<AttemptKey, bool>,
    /// Attempts queued since the last pump, in queue order: those it cannot start are announced waiting.
    newly_queued: Vec<(u32, AttemptKey)>,
    running: HashMap<AttemptKey, RunningAttempt>,
    /// Attempts stopped because the platform interrupted them: their end is reported as interrupted.
    interrupting: HashSet<AttemptKey>,
    commands: mpsc::UnboundedReceiver<Command>,
    reports: mpsc::UnboundedSender<AttemptReport>,
    finished_tx: mpsc::UnboundedSender<Ended>,
    finished_rx: mpsc::UnboundedReceiver<Ended>,
}

impl AttemptService {
    /// Runs until every handle is dropped (the engine stopped).
    pub async fn run(mut self) {
        let mut pool_retry_tick = tokio::time::interval(POOL_RETRY);
        pool_retry_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let pump_wanted = tokio::select! {
                command = self.commands.recv() => {
                    let Some(command) = command else { break };
                    let mut pump_wanted = self.on_command(command);
                    // Commands sent together are handled before one pump, as the engine sends them.
                    while let Ok(command) = self.commands.try_recv() {
                        pump_wanted |= self.on_command(command);
                    }
                    pump_wanted
                }
                Some(ended) = self.finished_rx.recv() => {
                    let mut pump_wanted = self.on_ended(ended);
                    while let Ok(ended) = self.finished_rx.try_recv() {
                        pump_wanted |= self.on_ended(ended);
                    }
                    pump_wanted
                }
                _ = pool_retry_tick.tick() => self.dispatcher.retry_blocked(),
                Some((tenant, policy)) = self.options.quotas.recv() => {
                    info!(%tenant, weight = policy.weight, max_running = ?policy.max_running, "tenant quota applied");
                    self.dispatcher.set_policy(&tenant, policy);
                    true
                }
            };
            if pump_wanted {
                self.pump().await;
            }
        }
    }

    /// Handles one command; says whether something may start now.
    fn on_command(&mut self, command: Command) -> bool {
        match command {
            Command::Run(attempt) => self.enqueue(*attempt),
            Command::Reattach(attempt) => {
                self.reattach(*attempt);
                false
            }
            Command::CancelExecution(execution) => {
                self.cancel_where(|(_, key)| key.execution == execution);
                false
            }
            Command::CancelPartition(partition) => {
                self.cancel_where(|(attempt_partition, _)| *attempt_partition == partition);
                false
            }
            Command::Interrupt(answer) => {
                for (key, running) in &self.running {
                    if running.interruptible {
                        running.cancel.cancel();
                        self.interrupting.insert(key.clone());
                    }
                }
                let _ = answer.send(self.interrupting.len());
                false
            }
        }
    }

    fn enqueue(&mut self, attempt: AttemptToRun) -> bool {
        if self.running.contains_key(&attempt.key) || self.queued.insert(attempt.key.clone(), false).is_some()
        {
            return false;
        }
        let tenant = attempt.key.tenant();
        self.newly_queued.push((attempt.partition, attempt.key.clone()));
        self.dispatcher.push(
            &tenant,
            QueuedAttempt {
                attempt,
                queued_at: Instant::now(),
            },
        );
        self.publish_tenant_gauges(&tenant);
        true
    }

    /// Drops queued and cancels running attempts whose `(partition, key)` matches.
    fn cancel_where(&mut self, matches: impl Fn(&(u32, &AttemptKey)) -> bool) {
        for removed in self
            .dispatcher
            .remove_where(|queued| matches(&(queued.attempt.partition, &queued.attempt.key)))
        {
            self.queued.remove(&removed.attempt.key);
        }
        // Forgotten at once: should the partition come back, the attempt is re-attached or found lost.
        self.running.retain(|key, running| {
            let cancelled = matches(&(running.partition, key));
            if cancelled {
                running.cancel.cancel();
            }
            !cancelled
        });
    }

    /// Starts queued attempts while the dispatcher has slots for them, in its fair order, taking the
    /// resource pools each declares first (a tenant whose next attempt finds its pool full is passed over
    /// until tokens free up, holding no slot). Then announces the attempts that could not start.
    async fn pump(&mut self) {
        while let Some(candidate) = self.dispatcher.peek() {
            let attempt = &candidate.item.attempt;
            let compute = attempt
                .request
                .task
                .resources
                .as_ref()
                .map(|resources| resources.requests())
                .unwrap_or_default();
            if let Some(shortage) = self.compute.shortage(&compute) {
                self.dispatcher.blocked_by(WaitReason::Compute { shortage });
                continue;
            }
            if self.options.executors.writes_work_dir(&attempt.request.task) {
                if let Some(shortage) = self.options.disk.shortage() {
                    self.dispatcher.blocked_by(WaitReason::Compute { shortage });
                    continue;
                }
            }
            let wanted: BTreeMap<String, u32> = attempt
                .request
                .task
                .resources
                .as_ref()
                .map(|resources| resources.pools.clone())
                .unwrap_or_default();
            let mut tokens = None;
            if !wanted.is_empty() {
                let holder = attempt.request.id().to_string();
                match self.options.pools.try_acquire(&holder, &wanted).await {
                    Ok(held) => tokens = Some(held),
                    Err(busy) => {
                        self.dispatcher.blocked(&busy.pool);
                        continue;
                    }
                }
            }
            let Some((tenant, queued)) = self.dispatcher.start() else {
                break;
            };
            let announced = self.queued.remove(&queued.attempt.key).unwrap_or(false);
            let tenant_label = tenant.to_string();
            let waited = queued.queued_at.elapsed().as_secs_f64();
            metrics::TENANT_WAIT_SECONDS.increment(&[("tenant", &tenant_label)], waited);
            metrics::QUEUE_WAIT.observe(&[("tenant", &tenant_label)], waited);
            self.publish_tenant_gauges(&tenant);
            self.compute.hold(queued.attempt.key.clone(), compute);
            if announced {
                let _ = self.reports.send(AttemptReport::Dispatched {
                    partition: queued.attempt.partition,
                    key: queued.attempt.key.clone(),
                });
            }
            self.spawn(queued.attempt, tokens);
        }
        self.announce_waiting();
        metrics::ATTEMPTS_QUEUED.set(&[], self.queued.len() as f64);
    }

    /// Reports `Waiting` for each attempt queued since the last pump that is still queued: the limit its
    /// tenant waits for and its place in the tenant's queue (new attempts are at the back).
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
            *new_per_tenant.entry(key.tenant()).or_default() += 1;
        }
        let mut seen_per_tenant: HashMap<Tenant, usize> = HashMap::new();
        for (partition, key) in still_queued {
            let tenant = key.tenant();
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
            let _ = self.reports.send(AttemptReport::Waiting {
                partition,
                key,
                reason,
            });
        }
    }

    fn spawn(&mut self, attempt: AttemptToRun, tokens: Option<HeldTokens>) {
        let AttemptToRun {
            partition,
            key,
            request,
            overwrite_cache,
            prior,
            interruptible,
            traceparent,
        } = attempt;
        debug!(execution = %key.execution, node = %request.node_id, attempt = key.attempt, "starting attempt");
        let cancel = CancellationToken::new();
        self.running.insert(
            key.clone(),
            RunningAttempt {
                partition,
                cancel: cancel.clone(),
                interruptible,
            },
        );
        metrics::ATTEMPTS_STARTED.increment(&[], 1.0);
        let mut span = Span::start(
            "propeller.attempt",
            &traceparent,
            false,
            &[
                ("aloft.execution", key.execution.to_string()),
                ("aloft.node", request.node_id.clone()),
                ("aloft.attempt", key.attempt.to_string()),
                ("aloft.task", request.task.name.clone()),
            ],
        );
        let executors = self.options.executors.clone();
        // A task that failed while the work directory's filesystem was full is told apart from one that
        // failed by itself: its retry comes from the system budget and waits for space.
        let disk = executors
            .writes_work_dir(&request.task)
            .then(|| self.options.disk.clone());
        let clean_up = self.clean_up_later(&request);
        let catalog = self.options.catalog.clone();
        let memo_options = self.options.memo.clone();
        let finished = self.finished_tx.clone();
        tokio::spawn(async move {
            let mut memoized = span
                .scope(memo::run_attempt(
                    executors,
                    catalog,
                    memo_options,
                    request,
                    overwrite_cache,
                    prior,
                    cancel,
                ))
                .await;
            if let Some(disk) = disk {
                memoized.outcome = failed_for_want_of_disk(memoized.outcome, &disk);
            }
            if let AttemptOutcome::Failed { message, .. } = &memoized.outcome {
                span.fail(message);
            }
            drop(span);
            let released_pools = tokens.is_some();
            if let Some(tokens) = tokens {
                tokens.release().await;
            }
            let _ = finished.send(Ended {
                partition,
                key,
                memoized,
                held_slot: true,
                released_pools,
            });
            clean_up.await;
        });
    }

    /// Notes that the attempt of `request` ended and removes what it left in the work directory,
    /// `attempt_dir_retention` after: by then its end is on the log, and a successor that took over sooner
    /// still found it.
    /// Only the executor is held while it waits, not the request.
    fn clean_up_later(
        &self,
        request: &AttemptRequest,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let executor = self
            .options
            .executors
            .for_task(&request.task)
            .ok()
            .filter(|executor| executor.writes_work_dir());
        let attempt = request.id();
        let retention = self.options.attempt_dir_retention;
        async move {
            if let Some(executor) = executor {
                executor.record_end(&attempt).await;
                tokio::time::sleep(retention).await;
                executor.clean_up(&attempt).await;
            }
        }
    }

    /// Follows an attempt whose process still runs on this machine or recorded how it ended
    /// (`TaskExecutor::reattach`); it then reports like any other attempt, holding no slot or pool tokens.
    fn reattach(&mut self, attempt: AttemptToReattach) {
        let AttemptToReattach {
            partition,
            key,
            request,
            interruptible,
        } = attempt;
        if self.running.contains_key(&key) {
            return;
        }
        let cancel = CancellationToken::new();
        let request_resources = request.task.resources.clone();
        let clean_up = self.clean_up_later(&request);
        let Some(waiting) = self.options.executors.reattach(request, cancel.clone()) else {
            let _ = self.reports.send(AttemptReport::Lost { partition, key });
            return;
        };
        info!(execution = %key.execution, node = key.node, attempt = key.attempt, "re-attached to a task process started by the previous owner");
        if let Some(resources) = &request_resources {
            self.compute.hold(key.clone(), resources.requests());
        }
        self.running.insert(
            key.clone(),
            RunningAttempt {
                partition,
                cancel,
                interruptible,
            },
        );
        let finished = self.finished_tx.clone();
        tokio::spawn(async move {
            let outcome = waiting.await;
            let _ = finished.send(Ended {
                partition,
                key,
                memoized: MemoizedAttempt {
                    outcome,
                    cache: None,
                    finished_at: chrono::Utc::now().timestamp_millis(),
                },
                held_slot: false,
                released_pools: false,
            });
            clean_up.await;
        });
    }

    /// Frees what an attempt held and reports its end; says whether something may start now.
    fn on_ended(&mut self, mut ended: Ended) -> bool {
        if ended.held_slot {
            let tenant = ended.key.tenant();
            self.dispatcher.finished(&tenant);
            if ended.released_pools {
                self.dispatcher.retry_blocked();
            }
            self.publish_tenant_gauges(&tenant);
        }
        self.running.remove(&ended.key);
        // Freed compute lets an attempt waiting for it start (a re-attached attempt holds no slot).
        let freed_compute = self.compute.release(&ended.key);
        if freed_compute {
            self.dispatcher.retry_blocked();
        }
        let interrupted = self.interrupting.remove(&ended.key);
        if interrupted && ended.memoized.outcome == AttemptOutcome::Cancelled {
            ended.memoized.outcome = AttemptOutcome::Failed {
                kind: ErrorKind::System,
                message: format!(
                    "interrupted: propeller {} stopped while the attempt ran (it is interruptible)",
                    self.options.member
                ),
            };
            ended.memoized.finished_at = chrono::Utc::now().timestamp_millis();
        }
        metrics::ATTEMPTS_FINISHED.increment(&[("outcome", ended.memoized.outcome.label())], 1.0);
        let _ = self.reports.send(AttemptReport::Finished(AttemptFinished {
            partition: ended.partition,
            key: ended.key,
            memoized: ended.memoized,
            interrupted,
        }));
        ended.held_slot || freed_compute
    }

    fn publish_tenant_gauges(&self, tenant: &Tenant) {
        let label = tenant.to_string();
        metrics::TENANT_QUEUED.set(&[("tenant", &label)], self.dispatcher.queued(tenant) as f64);
        metrics::TENANT_RUNNING.set(
            &[("tenant", &label)],
            f64::from(self.dispatcher.running_of(tenant)),
        );
    }
}

/// `outcome`, made a system error when the task failed by itself while the work directory's filesystem was
/// short of space (its writes most likely failed for that): it is retried from the system budget, and the
/// retry waits until there is room.
fn failed_for_want_of_disk(outcome: AttemptOutcome, disk: &DiskGuard) -> AttemptOutcome {
    match outcome {
        AttemptOutcome::Failed {
            kind: ErrorKind::User,
            message,
        } => match disk.shortage() {
            Some(shortage) => AttemptOutcome::Failed {
                kind: ErrorKind::System,
                message: format!(
                    "{message} (it failed short of space, {shortage}: retried as a system error)"
                ),
            },
            None => AttemptOutcome::Failed {
                kind: ErrorKind::User,
                message,
            },
        },
        other => other,
    }
}
