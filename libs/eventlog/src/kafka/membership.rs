//! Partition ownership through a Kafka consumer group: joining, the assignments rebalances hand out (settled
//! before they are reported), and rejoining when a member holds nothing, a rebalance changed nothing, the
//! coordinator's view of the group is astray, or a partition is stalled (its owner's beats stopped while
//! its log grew; see `liveness.rs`).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::ClientContext;
use tokio::sync::mpsc;

use super::client::kafka_error;
use super::liveness::{Liveness, Verdict};
use crate::{Error, GroupMembership, Result};

/// How long an empty assignment may wait for the assignment that usually follows it.
const REBALANCE_SETTLE: Duration = Duration::from_secs(3);
/// How long a member holds no partition before it rejoins the group (see `KafkaMembership`).
const IDLE_REJOIN: Duration = Duration::from_secs(10);
/// The least time between two rejoins after rebalances that left this member's partitions as they were.
const UNCHANGED_REJOIN_COOLDOWN: Duration = Duration::from_secs(30);
/// How long an overlapping assignment may last (a rebalance in progress ends it) before the member rejoins.
const OVERLAP_PATIENCE: Duration = Duration::from_secs(5);

struct MembershipContext {
    sender: mpsc::UnboundedSender<Vec<u32>>,
}

impl ClientContext for MembershipContext {}

impl ConsumerContext for MembershipContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assignment) => {
                let mut partitions: Vec<u32> = assignment
                    .elements()
                    .iter()
                    .map(|element| element.partition() as u32)
                    .collect();
                partitions.sort_unstable();
                if let Err(error) = consumer.pause(assignment) {
                    tracing::debug!(%error, "pausing membership partitions");
                }
                let _ = self.sender.send(partitions);
            }
            Rebalance::Revoke(_) => {
                let _ = self.sender.send(Vec::new());
            }
            Rebalance::Error(error) => tracing::warn!(%error, "consumer group rebalance failed"),
        }
    }
}

/// What woke a membership waiting for its next assignment.
enum Woken {
    Assignment(Option<Vec<u32>>),
    Checked(Verdict),
    Deadline,
}

/// One join of the group: the task polling its consumer (which owns the consumer: aborting it leaves the
/// group), and the assignments it reports.
struct GroupMember {
    receiver: mpsc::UnboundedReceiver<Vec<u32>>,
    poller: tokio::task::JoinHandle<()>,
}

impl GroupMember {
    fn join(config: &ClientConfig, topic: &str) -> Result<GroupMember> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let consumer: StreamConsumer<MembershipContext> = config
            .create_with_context(MembershipContext { sender })
            .map_err(kafka_error("joining the consumer group"))?;
        consumer.subscribe(&[topic]).map_err(kafka_error("subscribing"))?;
        // The group consumer only tracks ownership: its partitions are paused on assignment and any record
        // that slips through is dropped (owners read their partitions with their own readers). Polling keeps
        // the membership alive and runs the rebalance callbacks.
        let poller = tokio::spawn(async move {
            loop {
                if let Err(error) = consumer.recv().await {
                    tracing::debug!(%error, "group membership poll");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Ok(GroupMember { receiver, poller })
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

pub(super) struct KafkaMembership {
    config: ClientConfig,
    topic: String,
    joined: GroupMember,
    holds_partitions: bool,
    idle_since: Instant,
    /// The partitions of the last non-empty assignment reported (a rebalance may report none in between).
    holding: Vec<u32>,
    /// Whether the group rebalanced (an assignment arrived) since the last reported one.
    rebalanced: bool,
    /// When this member last rejoined by its own choice (unchanged rebalance, overlap, below its share).
    deliberate_rejoin_at: Option<Instant>,
    /// Whether the last check found the coordinator's view of this member astray (two checks in a row make
    /// it rejoin; see `liveness::coordinator_view`).
    astray_before: bool,
    /// This member's beats for the partitions it holds, and its view of every partition's beats.
    liveness: Liveness,
    /// Rejoins for a stalled partition since a check last found none stalled.
    stall_rejoins: u32,
    /// A partition of this member's assignment another member claimed, and when it was reported: if it is
    /// still assigned here `OVERLAP_PATIENCE` later, the member rejoins.
    overlap: Option<(u32, Instant)>,
    /// An assignment received but not reported yet, and until when an empty one waits for the next.
    /// Kept here, not in the future, so `next_assignment` is cancel-safe inside `select!`.
    pending: Option<(Vec<u32>, Instant)>,
}

impl KafkaMembership {
    /// Joins the group `config` names, on `topic`.
    pub(super) fn join(config: ClientConfig, topic: &str) -> Result<KafkaMembership> {
        let joined = GroupMember::join(&config, topic)?;
        let liveness = Liveness::start(&config, topic)?;
        Ok(KafkaMembership {
            config,
            topic: topic.to_string(),
            joined,
            holds_partitions: false,
            idle_since: Instant::now(),
            holding: Vec::new(),
            rebalanced: false,
            deliberate_rejoin_at: None,
            astray_before: false,
            liveness,
            stall_rejoins: 0,
            overlap: None,
            pending: None,
        })
    }

    /// Whether a reported overlap is still in this member's assignment after `OVERLAP_PATIENCE`.
    fn overlap_outlasted(&self) -> bool {
        match self.overlap {
            Some((partition, at)) => at.elapsed() >= OVERLAP_PATIENCE && self.holding.contains(&partition),
            None => false,
        }
    }

    fn receive(&mut self, assignment: Vec<u32>) {
        self.pending = Some((assignment, Instant::now() + REBALANCE_SETTLE));
        self.rebalanced = true;
    }

    /// Acts on a check's verdict (see `liveness.rs`). A stalled partition is already two observations a
    /// check interval apart, so it makes the member rejoin at once; the coordinator's view must be astray
    /// on two checks in a row. Neither acts while an assignment is settling or the member holds nothing.
    fn judge(&mut self, verdict: Verdict) -> Result<()> {
        if verdict.stalled.is_none() {
            self.stall_rejoins = 0;
        }
        if self.pending.is_some() || !self.holds_partitions {
            return Ok(());
        }
        match verdict {
            Verdict {
                stalled: Some(why), ..
            } => {
                if self.stall_rejoin_cooled_down() {
                    tracing::info!(topic = %self.topic, partitions = ?self.holding, "{why}; rejoining the group");
                    self.astray_before = false;
                    self.stall_rejoins += 1;
                    self.rejoin_deliberately()?;
                }
            }
            Verdict {
                astray: Some(why), ..
            } if self.astray_before && self.deliberate_rejoin_cooled_down() => {
                tracing::info!(topic = %self.topic, partitions = ?self.holding, "{why}; rejoining the group");
                self.astray_before = false;
                self.rejoin_deliberately()?;
            }
            Verdict { astray, .. } => self.astray_before = astray.is_some(),
        }
        Ok(())
    }

    /// Whether the last rejoin this member chose (not one for holding nothing) is at least
    /// `UNCHANGED_REJOIN_COOLDOWN` ago.
    fn deliberate_rejoin_cooled_down(&self) -> bool {
        self.rejoined_longer_ago_than(UNCHANGED_REJOIN_COOLDOWN)
    }

    /// Whether this member's last chosen rejoin is at least `cooldown` ago (or never happened).
    fn rejoined_longer_ago_than(&self, cooldown: Duration) -> bool {
        self.deliberate_rejoin_at
            .is_none_or(|at| at.elapsed() >= cooldown)
    }

    /// Whether a rejoin for a stalled partition may happen now: the cooldown doubles with each such rejoin
    /// that left a partition stalled, up to 8 times. One rejoin ends what tansu leaves behind; a partition
    /// that stays stalled is owned by a member that does not beat (a propeller of a build from before the
    /// beats, during a rolling upgrade), and rejoining every 30 s would only churn the group.
    fn stall_rejoin_cooled_down(&self) -> bool {
        self.rejoined_longer_ago_than(UNCHANGED_REJOIN_COOLDOWN * (1 << self.stall_rejoins.min(3)))
    }

    /// A rejoin this member chose (an unchanged rebalance, an overlap, less than its share): remembered, so
    /// the next such rejoin waits out the cooldown.
    fn rejoin_deliberately(&mut self) -> Result<()> {
        self.deliberate_rejoin_at = Some(Instant::now());
        self.rejoin()
    }

    /// Leaves the group and joins it again under a fresh member id, which makes the coordinator assign anew.
    fn rejoin(&mut self) -> Result<()> {
        self.joined = GroupMember::join(&self.config, &self.topic)?;
        self.idle_since = Instant::now();
        Ok(())
    }
}

#[async_trait]
impl GroupMembership for KafkaMembership {
    /// With eager rebalancing a revoke (empty) is followed by the new assignment once the group has
    /// synced: only the settled state is reported, so an owner that keeps its partitions does not drop and
    /// rebuild them (and their running attempts) in between.
    ///
    /// tansu 0.6 evicts a dead member without handing its partitions out: the survivors are told to rejoin,
    /// get back exactly what they held, and the dead member's partitions have no owner until a member joins
    /// the group. So a member rejoins under a fresh member id, which makes the coordinator assign everything
    /// again, when it held nothing for `IDLE_REJOIN`, or when a rebalance left its partitions as they were
    /// (at most once per `UNCHANGED_REJOIN_COOLDOWN`). A member holding partitions also rejoins when a
    /// partition is stalled (records nobody has read for a check interval; the cooldown doubles while stalls
    /// persist) or the coordinator's view of it is astray (see `judge`). With Kafka a rebalance rarely leaves a member's
    /// round-robin share unchanged, and one more rebalance is then all it costs.
    async fn next_assignment(&mut self) -> Result<Vec<u32>> {
        loop {
            while let Ok(assignment) = self.joined.receiver.try_recv() {
                self.receive(assignment);
            }
            if let Some((assignment, settle_until)) = &self.pending {
                if !assignment.is_empty() || Instant::now() >= *settle_until {
                    let assignment = self
                        .pending
                        .take()
                        .map(|(assignment, _)| assignment)
                        .unwrap_or_default();
                    if assignment.is_empty() && self.holds_partitions {
                        self.idle_since = Instant::now();
                    }
                    let unchanged = !assignment.is_empty() && assignment == self.holding;
                    let cooled_down = self.deliberate_rejoin_cooled_down();
                    if unchanged && self.rebalanced && cooled_down {
                        tracing::info!(
                            topic = %self.topic,
                            partitions = ?assignment,
                            "the group rebalanced and left this member's partitions as they were (a member may have left without its partitions being handed out); rejoining the group"
                        );
                        self.rejoin_deliberately()?;
                    }
                    self.rebalanced = false;
                    self.holds_partitions = !assignment.is_empty();
                    self.liveness.hold(&assignment);
                    if self.holds_partitions {
                        self.holding = assignment.clone();
                    }
                    if self
                        .overlap
                        .is_some_and(|(partition, _)| !assignment.contains(&partition))
                    {
                        self.overlap = None;
                    }
                    return Ok(assignment);
                }
            }
            let deadline = match &self.pending {
                Some((_, settle_until)) => Some(*settle_until),
                None if !self.holds_partitions => Some(self.idle_since + IDLE_REJOIN),
                None => self.overlap.map(|(_, at)| at + OVERLAP_PATIENCE),
            };
            let until_deadline = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                    None => std::future::pending().await,
                }
            };
            // Every branch is cancel-safe: the caller drops this future whenever a record arrives.
            let woken = tokio::select! {
                assignment = self.joined.receiver.recv() => Woken::Assignment(assignment),
                Some(verdict) = self.liveness.next_verdict() => Woken::Checked(verdict),
                _ = until_deadline => Woken::Deadline,
            };
            match woken {
                Woken::Assignment(Some(assignment)) => self.receive(assignment),
                Woken::Assignment(None) => return Err(Error::Closed),
                Woken::Checked(verdict) => self.judge(verdict)?,
                Woken::Deadline if self.pending.is_none() && self.overlap_outlasted() => {
                    let partition = self.overlap.take().map(|(partition, _)| partition);
                    tracing::info!(
                        topic = %self.topic,
                        ?partition,
                        "another member owns a partition the group still assigns to this one; rejoining the group"
                    );
                    self.rejoin_deliberately()?;
                }
                Woken::Deadline if self.pending.is_none() && !self.holds_partitions => {
                    tracing::debug!(topic = %self.topic, "no partitions for a while; rejoining the group");
                    self.rejoin()?;
                }
                Woken::Deadline => {}
            }
        }
    }

    fn report_overlap(&mut self, partition: u32) {
        if self.overlap.is_none() && self.holding.contains(&partition) {
            self.overlap = Some((partition, Instant::now()));
        }
    }
}
