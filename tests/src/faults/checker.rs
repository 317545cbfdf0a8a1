//! The checker: after a run, reads the raw log, the read models (through admin's API) and the runs file,
//! and counts every way the run could have gone wrong. `Report::violations` lists what must be zero.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use aloft_core::state::{EventMeta, PartitionFold};
use aloft_core::ExecutionId;
use aloft_eventlog::envelope::{Envelope, Payload};
use aloft_proto::v1 as wire;

use super::workload::{execution_id, Launched, Workload, CALL_TIMEOUT, POOL_LIMIT};
use super::Injected;
use crate::{all_executions, read_topic, AdminClient};

/// What the checker found.
#[derive(Debug, Default)]
pub struct Report {
    pub launch_outcomes: BTreeMap<String, usize>,
    /// Executions checked: every accepted launch, every unanswered one that exists, every scheduled one.
    pub executions: usize,
    pub succeeded: usize,
    /// Acknowledged launches admin has no record of.
    pub lost: Vec<String>,
    /// Executions that ended in another phase than SUCCEEDED, or had not ended, with why.
    pub not_succeeded: Vec<String>,
    /// (execution, node) with more than one NodeSucceeded in their history.
    pub nodes_succeeded_twice: Vec<String>,
    /// Runs of one attempt beyond its first (a propeller killed while it ran, the attempt re-run).
    pub duplicate_attempt_runs: usize,
    pub histories_with_gaps: Vec<String>,
    /// Executions whose read model differs from a replay of the log from offset 0.
    pub projection_diffs: Vec<String>,
    pub max_pool_holders: usize,
    /// The holders when the most held at once: `execution/attempt start..end` (milliseconds).
    pub pool_holders_at_most: Vec<String>,
    /// Scheduled times fired more than once.
    pub schedule_duplicates: Vec<i64>,
    /// Scheduled times skipped (the plan catches up on every missed time): gaps between fired times.
    pub schedule_gaps: Vec<String>,
    pub scheduled_fires: usize,
    /// Names of the executions the checker read (launched and scheduled).
    pub existing: BTreeSet<String>,
    /// Webhooks received for the launched executions (each asks for one when it ends).
    pub notifications_delivered: usize,
    /// Ended launched executions no webhook arrived for.
    pub notifications_missing: Vec<String>,
    /// Executions whose webhook arrived more than once, with how often (the notifier delivers at least
    /// once: a delivery sent but not recorded before a fault is sent again, with the same `delivery_id`).
    /// Executions whose one delivery was sent more than once (a resend after the notifier died between the
    /// send and its record).
    pub notifications_repeated: Vec<String>,
    /// Executions notified by more than one delivery: never right.
    pub notifications_doubled: Vec<String>,
    pub faults: Vec<Injected>,
    /// Launch to start of every checked execution: (created at, milliseconds to its start).
    pub launch_to_start: Vec<(i64, i64)>,
    /// The execution that waited longest from its launch to its start, how long, and its partition.
    pub slowest_start: Option<(String, i64, u32)>,
    pub wall: Duration,
    /// Succeeded executions per minute of launching (all that succeeded, drained ones included).
    pub throughput_per_minute: f64,
    /// When each succeeded execution finished.
    pub finished_at_millis: Vec<i64>,
    /// Executions that succeeded while launches were still coming, per minute of launching: what the
    /// fleet kept up with, which a saturating rate (`ALOFT_FAULTS_LAUNCH_INTERVAL_MS`) holds below the
    /// offered rate, and the figure compared with a run without faults.
    pub finished_while_launching_per_minute: f64,
}

impl Report {
    /// Whether the checker found the execution `name` (a launch that was accepted, or refused but landed).
    fn launch_existed(&self, name: &str) -> bool {
        self.existing.contains(name)
    }

    /// Every broken invariant, one line each; empty when the run passed.
    pub fn violations(&self) -> Vec<String> {
        let mut found = Vec::new();
        let mut list = |what: &str, items: &[String]| {
            if !items.is_empty() {
                let shown: Vec<&str> = items.iter().take(10).map(String::as_str).collect();
                let more = if items.len() > 10 { "; ..." } else { "" };
                found.push(format!("{what} ({}): {}{more}", items.len(), shown.join("; ")));
            }
        };
        // Under faults a launch may only be refused as UNAVAILABLE (a dependency is down): any other
        // refusal means the workload itself is wrong and the run checks nothing.
        let wrongly_refused: Vec<String> = self
            .launch_outcomes
            .iter()
            .filter(|(outcome, _)| {
                outcome.starts_with("refused") && outcome.as_str() != "refused Unavailable"
            })
            .map(|(outcome, count)| format!("{count} {outcome}"))
            .collect();
        list(
            "launches refused for another reason than an outage",
            &wrongly_refused,
        );
        list("acknowledged launches lost", &self.lost);
        list("executions not succeeded", &self.not_succeeded);
        list("nodes succeeded twice", &self.nodes_succeeded_twice);
        list("histories with gaps", &self.histories_with_gaps);
        list("read models differing from a replay", &self.projection_diffs);
        list("scheduled times skipped", &self.schedule_gaps);
        list("notifications never delivered", &self.notifications_missing);
        list(
            "executions notified by more than one delivery",
            &self.notifications_doubled,
        );
        if self.max_pool_holders > POOL_LIMIT as usize {
            found.push(format!(
                "pool limit {POOL_LIMIT} exceeded: {} held at once ({})",
                self.max_pool_holders,
                self.pool_holders_at_most.join(", ")
            ));
        }
        if !self.schedule_duplicates.is_empty() {
            found.push(format!(
                "scheduled times fired twice: {:?}",
                self.schedule_duplicates
            ));
        }
        found
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "fault harness summary ({:.0} s)", self.wall.as_secs_f64())?;
        writeln!(f, "  launches: {:?}", self.launch_outcomes)?;
        writeln!(
            f,
            "  executions checked {}, succeeded {} ({:.1}/min), scheduled fires {}",
            self.executions, self.succeeded, self.throughput_per_minute, self.scheduled_fires
        )?;
        writeln!(
            f,
            "  throughput while launching: {:.1} succeeded/min",
            self.finished_while_launching_per_minute
        )?;
        writeln!(
            f,
            "  lost {}, not succeeded {}, nodes succeeded twice {}, histories with gaps {}, projection diffs {}",
            self.lost.len(),
            self.not_succeeded.len(),
            self.nodes_succeeded_twice.len(),
            self.histories_with_gaps.len(),
            self.projection_diffs.len()
        )?;
        writeln!(
            f,
            "  attempt runs duplicated by a fault {} (an attempt running when its propeller died runs again)",
            self.duplicate_attempt_runs
        )?;
        writeln!(
            f,
            "  pool: at most {} of {POOL_LIMIT} tokens held at once; scheduled times fired twice {}, skipped {}",
            self.max_pool_holders,
            self.schedule_duplicates.len(),
            self.schedule_gaps.len()
        )?;
        writeln!(
            f,
            "  notifications: {} webhooks delivered, {} executions without one, {} by two deliveries, {} resent \
             (the notifier killed between a send and its record){}",
            self.notifications_delivered,
            self.notifications_missing.len(),
            self.notifications_doubled.len(),
            self.notifications_repeated.len(),
            if self.notifications_repeated.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.notifications_repeated.join(", "))
            }
        )?;
        let mut all: Vec<i64> = self.launch_to_start.iter().map(|(_, ms)| *ms).collect();
        let ms = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{} ms", d.as_millis()));
        writeln!(
            f,
            "  launch to start: p50 {}, p99 {}, longest {} (an execution on a partition nobody owns waits so long)",
            ms(super::quantile(&mut all, 0.5)),
            ms(super::quantile(&mut all, 0.99)),
            match &self.slowest_start {
                Some((name, ms, partition)) => format!("{ms} ms ({name}, partition {partition})"),
                None => "-".to_string(),
            }
        )?;
        writeln!(f, "  faults injected {}:", self.faults.len())?;
        for fault in &self.faults {
            let recovered = match fault.recovered_after {
                Some(after) => format!("next execution succeeded {:.1} s after", after.as_secs_f64()),
                None => "no execution launched after it succeeded".to_string(),
            };
            writeln!(
                f,
                "    t={:>6.1}s  {:<48} {recovered}; launch-to-start p99 {} during, {} after",
                fault.at_seconds,
                fault.fault.name(),
                ms(fault.p99_during),
                ms(fault.p99_after)
            )?;
        }
        // Per kind: recovery seconds, launch-to-start p99s during, and after.
        type Figures = (Vec<f64>, Vec<i64>, Vec<i64>);
        let mut by_kind: BTreeMap<super::Fault, Figures> = BTreeMap::new();
        for fault in &self.faults {
            let entry = by_kind.entry(fault.fault).or_default();
            if let Some(after) = fault.recovered_after {
                entry.0.push(after.as_secs_f64());
            }
            entry.1.extend(fault.p99_during.map(|d| d.as_millis() as i64));
            entry.2.extend(fault.p99_after.map(|d| d.as_millis() as i64));
        }
        writeln!(
            f,
            "  per kind (times, recovery min-max, worst launch-to-start p99 during / after):"
        )?;
        for (kind, (recovered, during, after)) in by_kind {
            let (low, high) = recovered
                .iter()
                .fold((f64::MAX, 0f64), |(low, high), s| (low.min(*s), high.max(*s)));
            writeln!(
                f,
                "    {:<48} {} x, recovered in {:.1}-{:.1} s; {} / {} ms",
                kind.name(),
                recovered.len(),
                if recovered.is_empty() { 0.0 } else { low },
                high,
                during.iter().max().copied().unwrap_or(0),
                after.iter().max().copied().unwrap_or(0)
            )?;
        }
        Ok(())
    }
}

/// Execution `name` as admin answers it, within the harness's call timeout.
pub async fn get_execution(client: &mut AdminClient, name: &str) -> Result<wire::Execution, tonic::Status> {
    let request = wire::GetExecutionRequest {
        id: Some(execution_id(name)),
        ..Default::default()
    };
    match tokio::time::timeout(CALL_TIMEOUT, client.get_execution(request)).await {
        Ok(answer) => answer.map(|response| response.into_inner()),
        Err(_) => Err(tonic::Status::deadline_exceeded("no answer")),
    }
}

/// Every scheduled execution (fired by the launch plan's schedule).
pub async fn scheduled_executions(client: &mut AdminClient) -> Vec<wire::Execution> {
    let mut all = all_executions(client).await;
    all.retain(|e| e.scheduled_at_millis != 0);
    all
}

/// The names the checker looks at: accepted and unanswered launches, and scheduled executions.
pub async fn names_to_check(
    client: &mut AdminClient,
    workload: &Workload,
) -> (Vec<String>, Vec<wire::Execution>) {
    let mut names: Vec<String> = workload
        .launches
        .iter()
        .filter(|l| l.outcome.may_exist())
        .map(|l| l.name.clone())
        .collect();
    let scheduled = scheduled_executions(client).await;
    names.extend(
        scheduled
            .iter()
            .filter_map(|e| e.id.as_ref().map(|id| id.name.clone())),
    );
    (names, scheduled)
}

/// Checks the run; `log` is the deployment's event log.
pub async fn check(
    client: &mut AdminClient,
    log: &dyn aloft_eventlog::EventLog,
    topics: &aloft_eventlog::Topics,
    workload: &Workload,
) -> Report {
    let mut report = Report {
        launch_outcomes: workload.outcomes(),
        ..Default::default()
    };
    let (names, scheduled) = names_to_check(client, workload).await;
    let acknowledged: BTreeSet<&str> = workload
        .launches
        .iter()
        .filter(|l| l.outcome == Launched::Accepted)
        .map(|l| l.name.as_str())
        .chain(
            scheduled
                .iter()
                .filter_map(|e| e.id.as_ref().map(|id| id.name.as_str())),
        )
        .collect();
    let replayed = replay(log, &topics.executions).await;
    let mut read_models = BTreeMap::new();
    for name in &names {
        match get_execution(client, name).await {
            Ok(execution) => {
                read_models.insert(name.clone(), execution);
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                if acknowledged.contains(name.as_str()) {
                    report.lost.push(name.clone());
                }
            }
            Err(status) => report
                .not_succeeded
                .push(format!("{name}: cannot be read: {status}")),
        }
    }
    report.executions = read_models.len();
    report.existing = read_models.keys().cloned().collect();
    report.launch_to_start = read_models
        .values()
        .filter(|e| e.started_at_millis != 0)
        .map(|e| (e.created_at_millis, e.started_at_millis - e.created_at_millis))
        .collect();
    report.slowest_start = read_models
        .iter()
        .filter(|(_, e)| e.started_at_millis != 0)
        .max_by_key(|(_, e)| e.started_at_millis - e.created_at_millis)
        .map(|(name, e)| {
            let waited = e.started_at_millis - e.created_at_millis;
            (name.clone(), waited, crate::partition_of(name))
        });
    for (name, execution) in &read_models {
        if execution.phase == wire::ExecutionPhase::Succeeded as i32 {
            report.succeeded += 1;
            report.finished_at_millis.push(execution.finished_at_millis);
        } else {
            let phase = wire::ExecutionPhase::try_from(execution.phase)
                .map(|p| p.as_str_name())
                .unwrap_or("unknown");
            report
                .not_succeeded
                .push(format!("{name}: {phase} {}", execution.error));
        }
        check_history(client, name, &mut report).await;
        match replayed.get(name) {
            None => report
                .projection_diffs
                .push(format!("{name}: not in the replayed log")),
            Some(state) => {
                if let Some(diff) = compare(state, execution) {
                    report.projection_diffs.push(format!("{name}: {diff}"));
                }
            }
        }
    }
    count_runs(&workload.runs, &mut report);
    let scheduled_times: Vec<i64> = scheduled.iter().map(|e| e.scheduled_at_millis).collect();
    report.scheduled_fires = scheduled_times.len();
    let mut seen = BTreeSet::new();
    report.schedule_duplicates = scheduled_times.into_iter().filter(|t| !seen.insert(*t)).collect();
    let fired: Vec<i64> = seen.into_iter().collect();
    report.schedule_gaps = fired
        .windows(2)
        .filter(|pair| pair[1] - pair[0] != 60_000)
        .map(|pair| format!("{} -> {}", pair[0], pair[1]))
        .collect();
    report
}

/// The execution a webhook body is about, and its delivery id; `None` for a body that is not one.
pub fn webhook_of(body: &str) -> Option<(String, String)> {
    let json = serde_json::from_str::<serde_json::Value>(body).ok()?;
    let execution = json["execution"].as_str()?.to_string();
    Some((execution, json["delivery_id"].to_string()))
}

/// Compares the webhooks received (their JSON bodies) with the launched executions that ended: each must
/// have had one; repeats are counted.
pub fn check_notifications(report: &mut Report, workload: &Workload, bodies: &[String]) {
    let mut received: HashMap<String, (usize, BTreeSet<String>)> = HashMap::new();
    for (name, delivery) in bodies.iter().filter_map(|body| webhook_of(body)) {
        let entry = received.entry(name).or_default();
        entry.0 += 1;
        entry.1.insert(delivery);
    }
    let launched: BTreeSet<&str> = workload
        .launches
        .iter()
        .filter(|launch| launch.outcome.may_exist())
        .map(|launch| launch.name.as_str())
        .collect();
    let not_ended: BTreeSet<&str> = report
        .not_succeeded
        .iter()
        .filter_map(|line| line.split(':').next())
        .collect();
    for name in &launched {
        match received.get(*name) {
            Some((times, deliveries)) => {
                report.notifications_delivered += 1;
                // The same delivery sent again is the notifier's at-least-once resend (killed between a
                // send and its record); two deliveries for one execution's end would be a bug.
                if deliveries.len() > 1 {
                    report
                        .notifications_doubled
                        .push(format!("{name}: {} deliveries", deliveries.len()));
                } else if *times > 1 {
                    report
                        .notifications_repeated
                        .push(format!("{name}: sent {times} times"));
                }
            }
            // Launches refused as UNAVAILABLE that never landed have nothing to notify; those that exist
            // and ended do.
            None if report.launch_existed(name) && !not_ended.contains(name) => {
                report.notifications_missing.push(name.to_string())
            }
            None => {}
        }
    }
}

async fn check_history(client: &mut AdminClient, name: &str, report: &mut Report) {
    let request = wire::GetExecutionRequest {
        id: Some(execution_id(name)),
        ..Default::default()
    };
    let history = match tokio::time::timeout(CALL_TIMEOUT, client.get_execution_history(request)).await {
        Ok(Ok(history)) => history.into_inner().events,
        _ => {
            report
                .histories_with_gaps
                .push(format!("{name}: history unreadable"));
            return;
        }
    };
    let decisions: Vec<&wire::HistoryEvent> = history
        .iter()
        .filter(|e| aloft_core::StreamId::is_execution(&e.stream))
        .collect();
    let gap_free = decisions.iter().enumerate().all(|(i, e)| e.seq == i as u64 + 1)
        && decisions.last().map(|e| e.kind.as_str()) == Some("ExecutionFinished");
    if !gap_free {
        let seqs: Vec<u64> = decisions.iter().map(|e| e.seq).collect();
        report.histories_with_gaps.push(format!("{name}: seqs {seqs:?}"));
    }
    let mut succeeded: HashMap<u64, usize> = HashMap::new();
    for event in history.iter().filter(|e| e.kind == "NodeSucceeded") {
        let payload: serde_json::Value = serde_json::from_str(&event.payload_json).unwrap_or_default();
        let node = payload
            .pointer("/NodeSucceeded/node")
            .or_else(|| payload.get("node"))
            .and_then(|n| n.as_u64())
            .unwrap_or(u64::MAX);
        *succeeded.entry(node).or_default() += 1;
    }
    for (node, times) in succeeded {
        if times > 1 {
            report
                .nodes_succeeded_twice
                .push(format!("{name} node {node}: {times} times"));
        }
    }
}

/// Folds the executions topic from offset 0 with core's admission and `apply`, partition by partition,
/// as a fresh reader would.
async fn replay(
    log: &dyn aloft_eventlog::EventLog,
    topic: &str,
) -> HashMap<String, aloft_core::ExecutionState> {
    let mut folds: BTreeMap<u32, PartitionFold> = BTreeMap::new();
    for record in read_topic(log, topic).await {
        let fold = folds.entry(record.partition).or_default();
        let Ok(envelopes) = Envelope::decode_all(&record.payload) else {
            continue;
        };
        for envelope in envelopes {
            if let Payload::Execution(event) = &envelope.payload {
                let meta = EventMeta {
                    seq: envelope.seq,
                    writer_epoch: envelope.writer_epoch,
                };
                fold.apply(&meta, event);
            }
        }
    }
    folds
        .into_values()
        .flat_map(|fold| fold.executions.into_iter())
        .map(|(id, state): (ExecutionId, _)| (id.name.clone(), state))
        .collect()
}

/// The first difference between the replayed state and the read model: the execution's phase, then each
/// node's phase.
fn compare(state: &aloft_core::ExecutionState, execution: &wire::Execution) -> Option<String> {
    let replayed_phase = wire::ExecutionPhase::from(state.phase) as i32;
    if replayed_phase != execution.phase {
        return Some(format!(
            "phase {:?} in the replay, {:?} in the read model",
            state.phase, execution.phase
        ));
    }
    let read: HashMap<&str, i32> = execution
        .nodes
        .iter()
        .map(|n| (n.node_id.as_str(), n.phase))
        .collect();
    for (index, node) in state.nodes.iter().enumerate() {
        let id = state.workflow.nodes[index].id.as_str();
        let replayed = wire::NodePhase::from(node.phase) as i32;
        match read.get(id) {
            Some(phase) if *phase == replayed => {}
            Some(phase) => {
                return Some(format!(
                    "node {id}: {:?} in the replay, {phase} in the read model",
                    node.phase
                ))
            }
            None => return Some(format!("node {id} is missing from the read model")),
        }
    }
    None
}

/// What the runs file says of one attempt of the pooled task.
#[derive(Default)]
struct PoolHold {
    start: Option<i64>,
    last_tick: Option<i64>,
    /// Its end or its stop (SIGTERM), when it recorded one.
    end: Option<i64>,
}

/// Reads the runs file: duplicate runs of one attempt, and how many pooled tasks held a token at once.
fn count_runs(path: &std::path::Path, report: &mut Report) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut attempts: HashMap<&str, usize> = HashMap::new();
    // Per attempt of the pooled task: when it started and when it was last seen holding the token (its end,
    // its stop, or its last tick).
    let mut held: BTreeMap<&str, PoolHold> = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["pool", attempt, "start", at] => held.entry(attempt).or_default().start = at.parse().ok(),
            ["pool", attempt, "tick", at] => {
                let hold = held.entry(attempt).or_default();
                hold.last_tick = hold.last_tick.max(at.parse().ok());
            }
            ["pool", attempt, "end" | "stopped", at] => {
                held.entry(attempt).or_default().end = at.parse().ok()
            }
            [_, _, _] => *attempts.entry(line).or_default() += 1,
            _ => {}
        }
    }
    report.duplicate_attempt_runs = attempts.values().map(|runs| runs - 1).sum();
    // A SIGKILLed attempt is known to hold its token until its last tick (it died within 25 ms of it).
    let spans: Vec<(&str, i64, i64)> = held
        .iter()
        .filter_map(|(attempt, hold)| {
            let start = hold.start?;
            let until = hold.end.or(hold.last_tick).unwrap_or(start);
            Some((*attempt, start, until))
        })
        .collect();
    let mut pool_events: Vec<(i64, i32, usize)> = spans
        .iter()
        .enumerate()
        .flat_map(|(index, (_, start, end))| [(*start, 1, index), (*end, -1, index)])
        .collect();
    // Ends before starts at the same millisecond: a token handed straight on is not two holders.
    pool_events.sort();
    let mut holders: BTreeSet<usize> = BTreeSet::new();
    for (_, change, index) in pool_events {
        if change > 0 {
            holders.insert(index);
        } else {
            holders.remove(&index);
        }
        if holders.len() > report.max_pool_holders {
            report.max_pool_holders = holders.len();
            report.pool_holders_at_most = holders
                .iter()
                .map(|&i| format!("{} {}..{}", spans[i].0, spans[i].1, spans[i].2))
                .collect();
        }
    }
}
