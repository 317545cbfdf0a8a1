//! The scheduler's loop: follow the registry, lead or stand by, fire what is due.

use std::collections::HashMap;
use std::sync::Arc;

use aloft_core::compiler::CompiledWorkflow;
use aloft_core::events::{ExecutionEvent, Outputs, RegistryEvent, ScheduleEvent};
use aloft_core::schedule::{Schedule, ScheduleSpec};
use aloft_core::{ExecutionId, Identifier, Value};
use aloft_eventlog::{partition_for_key, Envelope, EventLog, Payload, RecordStream, Topics};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::plan::plan;

/// Catch-up rate: at most this many fires per schedule per pass, and passes over a backlog at least
/// `BACKLOG_PASS_INTERVAL` apart (1,000 fires per second per schedule).
const FIRES_PER_PASS: usize = 100;
const BACKLOG_PASS_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub topics: Topics,
    pub member_id: String,
    /// Progress events between two cursor snapshots.
    pub snapshot_every: u64,
}

impl SchedulerOptions {
    pub fn new(topics: Topics, member_id: String) -> SchedulerOptions {
        SchedulerOptions {
            topics,
            member_id,
            snapshot_every: 1000,
        }
    }
}

/// What the scheduler has done, for operators and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SchedulerProgress {
    pub leader: bool,
    /// Every fire due at this clock time was appended, for the registry read up to `registry_offset`
    /// (leader only; cleared by new registry records and leadership changes until the next pass).
    pub processed_until: Option<DateTime<Utc>>,
    /// How much of the registry has been read.
    pub registry_offset: u64,
    pub fired: u64,
    /// Where the current leader started reading `aloft.schedules` (a snapshot's offset, or 0).
    pub cursors_loaded_from: u64,
}

#[derive(Clone)]
pub struct SchedulerHandle {
    pub progress: watch::Receiver<SchedulerProgress>,
}

struct ScheduledPlan {
    id: Identifier,
    workflow: Identifier,
    default_inputs: Outputs,
    fixed_inputs: Outputs,
    spec: ScheduleSpec,
    schedule: Schedule,
    active_since: Option<i64>,
}

pub struct Scheduler {
    options: SchedulerOptions,
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
    progress: watch::Sender<SchedulerProgress>,
    plans: HashMap<Identifier, ScheduledPlan>,
    workflows: HashMap<Identifier, Arc<CompiledWorkflow>>,
    cursors: HashMap<Identifier, i64>,
    events_since_snapshot: u64,
}

/// The execution a schedule fires for `scheduled_at`: the same name whoever fires it.
pub fn execution_name(launch_plan: &Identifier, scheduled_at: DateTime<Utc>) -> String {
    let stamp = scheduled_at.format("%Y%m%dt%H%M").to_string();
    if launch_plan.name.len() <= 45 {
        return format!("{}-{stamp}", launch_plan.name);
    }
    // Long names are cut; a hash of the full name keeps them apart.
    let digest = hex::encode(&Sha256::digest(launch_plan.name.as_bytes())[..4]);
    format!("{}-{digest}-{stamp}", &launch_plan.name[..36])
}

impl Scheduler {
    pub fn new(
        options: SchedulerOptions,
        log: Arc<dyn EventLog>,
        clock: Arc<dyn Clock>,
    ) -> (Scheduler, SchedulerHandle) {
        let (progress, receiver) = watch::channel(SchedulerProgress::default());
        let scheduler = Scheduler {
            options,
            log,
            clock,
            progress,
            plans: HashMap::new(),
            workflows: HashMap::new(),
            cursors: HashMap::new(),
            events_since_snapshot: 0,
        };
        (scheduler, SchedulerHandle { progress: receiver })
    }

    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let topics = self.options.topics.clone();
        let mut registry = self.log.read(vec![(topics.registry.clone(), 0, 0)]).await?;
        let mut membership = self
            .log
            .join_group(
                &topics.group("aloft-scheduler"),
                &topics.schedules,
                &self.options.member_id,
            )
            .await?;
        info!(member = %self.options.member_id, "scheduler started; waiting for leadership");
        let mut leader = false;
        let mut backlog = false;
        loop {
            let clock = Arc::clone(&self.clock);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                assignment = membership.next_assignment() => {
                    let now_leader = assignment?.contains(&0);
                    if now_leader && !leader {
                        self.load_cursors().await?;
                        info!(member = %self.options.member_id, schedules = self.cursors.len(), "scheduler is the leader");
                    } else if !now_leader && leader {
                        info!(member = %self.options.member_id, "scheduler lost leadership; standing by");
                    }
                    leader = now_leader;
                    // What was processed before belongs to another leadership; the pass below says anew.
                    self.progress.send_modify(|p| {
                        p.leader = leader;
                        p.processed_until = None;
                    });
                    crate::metrics::LEADER.set(&[], if leader { 1.0 } else { 0.0 });
                }
                records = registry.next_batch(1000) => {
                    for record in records? {
                        self.apply_registry_record(&record.payload);
                        // New plans may be due: "processed until" holds again only after the next pass,
                        // which runs right below with them.
                        self.progress.send_modify(|p| {
                            p.registry_offset = record.offset + 1;
                            p.processed_until = None;
                        });
                    }
                }
                _ = clock.tick(), if !backlog => {}
                _ = tokio::time::sleep(BACKLOG_PASS_INTERVAL), if backlog => {}
            }
            if leader {
                let now = self.clock.now();
                backlog = self.fire_due(now).await?;
                if !backlog {
                    self.progress.send_modify(|p| p.processed_until = Some(now));
                }
            }
        }
        Ok(())
    }

    fn apply_registry_record(&mut self, payload: &[u8]) {
        let envelope = match Envelope::decode(payload) {
            Ok(envelope) => envelope,
            Err(error) => {
                warn!(%error, "skipping an undecodable registry record");
                return;
            }
        };
        let Payload::Registry(event) = envelope.payload else {
            return;
        };
        match event {
            RegistryEvent::WorkflowRegistered { id, compiled, .. } => {
                self.workflows.entry(id).or_insert_with(|| Arc::new(*compiled));
            }
            RegistryEvent::LaunchPlanRegistered {
                id,
                spec,
                workflow,
                default_inputs,
                fixed_inputs,
                ..
            } => {
                let Some(schedule_spec) = spec.schedule else {
                    return;
                };
                match schedule_spec.compile() {
                    Ok(schedule) => {
                        self.plans.entry(id.clone()).or_insert(ScheduledPlan {
                            id,
                            workflow,
                            default_inputs,
                            fixed_inputs,
                            spec: schedule_spec,
                            schedule,
                            active_since: None,
                        });
                    }
                    Err(error) => warn!(launch_plan = %id, %error, "ignoring an invalid schedule"),
                }
            }
            RegistryEvent::LaunchPlanActivated { id, at } => {
                for plan in self.plans.values_mut() {
                    let same_name = plan.id.project == id.project
                        && plan.id.domain == id.domain
                        && plan.id.name == id.name;
                    if same_name && plan.id != id {
                        plan.active_since = None;
                    }
                }
                if let Some(plan) = self.plans.get_mut(&id) {
                    plan.active_since.get_or_insert(at);
                }
            }
            RegistryEvent::LaunchPlanDeactivated { id, .. } => {
                if let Some(plan) = self.plans.get_mut(&id) {
                    plan.active_since = None;
                }
            }
            RegistryEvent::ProjectRegistered { .. }
            | RegistryEvent::TaskRegistered { .. }
            | RegistryEvent::CacheEvicted { .. }
            | RegistryEvent::NotificationDefaultsSet { .. }
            | RegistryEvent::TenantQuotaSet { .. }
            | RegistryEvent::PoolDefined { .. }
            | RegistryEvent::ApiKeyCreated { .. }
            | RegistryEvent::ApiKeyRevoked { .. }
            | RegistryEvent::RoleBindingSet { .. } => {}
        }
    }

    /// Rebuilds every cursor from `aloft.schedules`, starting at the last snapshot (the new leader's
    /// starting point).
    async fn load_cursors(&mut self) -> anyhow::Result<()> {
        let topic = self.options.topics.schedules.clone();
        let snapshot_group = self.options.topics.group("aloft-scheduler-snapshots");
        let start = self.log.committed(&snapshot_group, &topic, 0).await?.unwrap_or(0);
        let end = self.log.end_offset(&topic, 0).await?;
        self.cursors.clear();
        self.events_since_snapshot = 0;
        self.progress.send_modify(|p| p.cursors_loaded_from = start);
        if start >= end {
            return Ok(());
        }
        let mut reader: Box<dyn RecordStream> = self.log.read(vec![(topic, 0, start)]).await?;
        let mut next = start;
        while next < end {
            for record in reader.next_batch(10_000).await? {
                next = record.offset + 1;
                if let Ok(Envelope {
                    payload: Payload::Schedule(event),
                    ..
                }) = Envelope::decode(&record.payload)
                {
                    self.advance_cursors(&event);
                }
            }
        }
        Ok(())
    }

    fn advance_cursors(&mut self, event: &ScheduleEvent) {
        for (launch_plan, reached) in event.cursors() {
            let cursor = self.cursors.entry(launch_plan.clone()).or_insert(i64::MIN);
            *cursor = (*cursor).max(reached);
        }
    }

    /// Appends every cursor and commits its offset for a member-less snapshot group (Kafka refuses commits
    /// from non-members of an active group), so the next leader reads only what follows it.
    async fn snapshot(&mut self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let topics = self.options.topics.clone();
        let mut cursors: Vec<(Identifier, i64)> =
            self.cursors.iter().map(|(id, at)| (id.clone(), *at)).collect();
        cursors.sort();
        let event = ScheduleEvent::ScheduleCursors {
            cursors,
            at: now.timestamp_millis(),
        };
        let stream = event.stream();
        let envelope =
            Envelope::unsequenced(stream.clone(), now.timestamp_millis(), Payload::Schedule(event));
        let positions = self
            .log
            .append_batch(&topics.schedules, 0, vec![(stream, envelope.encode()?)])
            .await?;
        if let Some(position) = positions.first() {
            let snapshot_group = topics.group("aloft-scheduler-snapshots");
            self.log
                .commit(&snapshot_group, &topics.schedules, 0, position.offset)
                .await?;
            info!(
                offset = position.offset,
                schedules = self.cursors.len(),
                "stored a cursor snapshot"
            );
        }
        self.events_since_snapshot = 0;
        Ok(())
    }

    /// Appends the fires due at `now`; returns whether a backlog remains.
    async fn fire_due(&mut self, now: DateTime<Utc>) -> anyhow::Result<bool> {
        let active = self
            .plans
            .values()
            .filter(|plan| plan.active_since.is_some())
            .count();
        crate::metrics::ACTIVE_SCHEDULES.set(&[], active as f64);
        let topics = self.options.topics.clone();
        let partitions = self.log.partition_count(&topics.executions).await?;
        let mut requests = Vec::new();
        let mut progress_events = Vec::new();
        let mut fires = Vec::new();
        let mut backlog = false;
        for plan_entry in self.plans.values() {
            let Some(active_since) = plan_entry.active_since else {
                continue;
            };
            let Some(workflow) = self.workflows.get(&plan_entry.workflow) else {
                continue;
            };
            let cursor_millis = self
                .cursors
                .get(&plan_entry.id)
                .copied()
                .unwrap_or(i64::MIN)
                .max(active_since);
            let Some(cursor) = DateTime::from_timestamp_millis(cursor_millis) else {
                continue;
            };
            let fire_plan = plan(
                &plan_entry.schedule,
                plan_entry.spec.catch_up,
                plan_entry.spec.catch_up_max(),
                cursor,
                now,
            );
            if let Some((through, count)) = fire_plan.skip_through {
                info!(launch_plan = %plan_entry.id, count, through = %through, "skipping missed fire times");
                progress_events.push(ScheduleEvent::ScheduleSkipped {
                    launch_plan: plan_entry.id.clone(),
                    through: through.timestamp_millis(),
                    count,
                    at: now.timestamp_millis(),
                });
            }
            backlog |= fire_plan.fire.len() > FIRES_PER_PASS;
            for scheduled_at in fire_plan.fire.into_iter().take(FIRES_PER_PASS) {
                let execution = ExecutionId {
                    project: plan_entry.id.project.clone(),
                    domain: plan_entry.id.domain.clone(),
                    name: execution_name(&plan_entry.id, scheduled_at),
                };
                let mut inputs = plan_entry.default_inputs.clone();
                inputs.extend(plan_entry.fixed_inputs.clone());
                if let Some(kickoff) = &plan_entry.spec.kickoff_time_input {
                    inputs.insert(kickoff.clone(), Value::Datetime(scheduled_at));
                }
                let request_id = format!("schedule:{}:{}", plan_entry.id, scheduled_at.timestamp_millis());
                let event = ExecutionEvent::ExecutionRequested {
                    execution: execution.clone(),
                    request_id: request_id.clone(),
                    workflow: Box::new((**workflow).clone()),
                    inputs,
                    launch_plan: Some(plan_entry.id.clone()),
                    requested_at: now.timestamp_millis(),
                    scheduled_at: Some(scheduled_at.timestamp_millis()),
                    overwrite_cache: false,
                    notifications: None,
                    recovery: None,
                    parent: None,
                    labels: Default::default(),
                };
                let key = execution.partition_key();
                // The audit trail says the schedule launched it, as which service.
                let mut envelope = Envelope::unsequenced(
                    aloft_core::StreamId::request(&execution, request_id.as_str()).to_string(),
                    now.timestamp_millis(),
                    Payload::Execution(event),
                )
                .by(Some(aloft_core::principal::Principal {
                    subject: "service:scheduler".to_string(),
                    name: format!("schedule {}", plan_entry.id),
                    via: aloft_core::principal::AuthMethod::Service,
                }));
                // A fired execution's trace starts here (there is no API call).
                let span = aloft_telemetry::trace::Span::start(
                    "scheduler.fire",
                    "",
                    false,
                    &[
                        ("aloft.launch_plan", plan_entry.id.to_string()),
                        ("aloft.execution", execution.to_string()),
                    ],
                );
                envelope.traceparent = span.traceparent().to_string();
                requests.push((partition_for_key(&key, partitions), key, envelope.encode()?));
                fires.push((plan_entry.id.clone(), scheduled_at.timestamp_millis(), execution));
            }
        }
        if progress_events.is_empty() && fires.is_empty() {
            return Ok(backlog);
        }
        // Requests first, all acknowledged, then the progress that says they were fired: a crash in between
        // makes the next leader fire them again, under the same names.
        let acknowledgements: Vec<_> = requests
            .into_iter()
            .map(|(partition, key, payload)| {
                self.log
                    .append_batch(&topics.executions, partition, vec![(key, payload)])
            })
            .collect();
        let fired = acknowledgements.len() as u64;
        for acknowledgement in futures::future::join_all(acknowledgements).await {
            acknowledgement?;
        }
        // Stamped once the requests are acknowledged: fired_at - scheduled_at is the fire lag.
        let fired_at = self.clock.now().timestamp_millis();
        progress_events.extend(fires.into_iter().map(|(launch_plan, scheduled_at, execution)| {
            ScheduleEvent::ScheduleFired {
                launch_plan,
                scheduled_at,
                execution,
                fired_at,
            }
        }));
        let records = progress_events
            .iter()
            .map(|event| {
                let stream = event.stream();
                let envelope = Envelope::unsequenced(
                    stream.clone(),
                    now.timestamp_millis(),
                    Payload::Schedule(event.clone()),
                );
                Ok((stream, envelope.encode()?))
            })
            .collect::<Result<Vec<_>, aloft_eventlog::Error>>()?;
        self.log.append_batch(&topics.schedules, 0, records).await?;
        self.events_since_snapshot += progress_events.len() as u64;
        for event in &progress_events {
            self.advance_cursors(event);
        }
        self.progress.send_modify(|p| p.fired += fired);
        crate::metrics::FIRES.increment(&[], fired as f64);
        if self.events_since_snapshot >= self.options.snapshot_every {
            self.snapshot(now).await?;
        }
        Ok(backlog)
    }
}
