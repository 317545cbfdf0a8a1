//! Partition ownership through a Kafka consumer group: joining, the assignments rebalances hand out (settled
//! before they are reported), and rejoining when a member holds nothing or a rebalance changed nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::ClientContext;
use tokio::sync::mpsc;

use super::client::kafka_error;
use crate::{Error, GroupMembership, Result};

/// How long an empty assignment may wait for the assignment that usually follows it.
const REBALANCE_SETTLE: Duration = Duration::from_secs(3);
/// How long a member holds no partition before it rejoins the group (see `KafkaMembership`).
const IDLE_REJOIN: Duration = Duration::from_secs(10);
/// The least time between two rejoins after rebalances that left this member's partitions as they were.
const UNCHANGED_REJOIN_COOLDOWN: Duration = Duration::from_secs(30);
/// How long an overlapping assignment may last (a rebalance in progress ends it) before the member rejoins.
const OVERLAP_PATIENCE: Duration = Duration::from_secs(5);
/// How often a member holding partitions checks it holds at least its share of them (see `below_share`).
const SHARE_CHECK: Duration = Duration::from_secs(15);

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

/// One join of the group: its consumer, the task polling it, and the assignments it reports.
struct GroupMember {
    consumer: Arc<StreamConsumer<MembershipContext>>,
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
        let consumer = Arc::new(consumer);
        let polling = Arc::clone(&consumer);
        // The group consumer only tracks ownership: its partitions are paused on assignment and any record
        // that slips through is dropped (owners read their partitions with their own readers). Polling keeps
        // the membership alive and runs the rebalance callbacks.
        let poller = tokio::spawn(async move {
            loop {
                if let Err(error) = polling.recv().await {
                    tracing::debug!(%error, "group membership poll");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        });
        Ok(GroupMember {
            consumer,
            receiver,
            poller,
        })
    }
}

/// How many members a group has, counted by client id (see `KafkaMembership::below_share`).
fn live_members<'a>(client_ids: impl Iterator<Item = &'a str>) -> usize {
    client_ids.collect::<std::collections::HashSet<_>>().len()
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
    /// When the member last checked its share, and whether it was below it then (two checks in a row
    /// make it rejoin).
    share_checked_at: Instant,
    below_share_before: bool,
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
        Ok(KafkaMembership {
            config,
            topic: topic.to_string(),
            joined,
            holds_partitions: false,
            idle_since: Instant::now(),
            holding: Vec::new(),
            rebalanced: false,
            deliberate_rejoin_at: None,
            share_checked_at: Instant::now(),
            below_share_before: false,
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

    /// Whether this member holds fewer partitions than an even split among the group's live members gives
    /// each. tansu 0.6 can evict a member whose session ended (its broker stopped past the session timeout)
    /// without handing its partitions out, and no later rebalance may change this member's share, so the
    /// unchanged-rebalance rule never fires: the evicted member's partitions then have no owner at all
    /// (found by the fault harness: a partition's executions waited minutes). Counting the group's members
    /// (DescribeGroups) shows it: with P partitions and M members every member holds at least P / M.
    /// Members are counted by client id (the member's name): a member evicted while it kept running can
    /// stay listed beside the fresh member id it rejoined under, and counting both would lower the share
    /// below what the live members hold (seen once by the fault harness after a broker stop).
    async fn below_share(&self) -> bool {
        let consumer = Arc::clone(&self.joined.consumer);
        let topic = self.topic.clone();
        let group = self.config.get("group.id").unwrap_or_default().to_string();
        let held = self.holding.len();
        let counted = tokio::task::spawn_blocking(move || {
            let members = consumer
                .fetch_group_list(Some(group.as_str()), Duration::from_secs(5))
                .ok()?
                .groups()
                .iter()
                .find(|g| g.name() == group)
                .map(|g| live_members(g.members().iter().map(|m| m.client_id())))?;
            let partitions = consumer
                .fetch_metadata(Some(topic.as_str()), Duration::from_secs(5))
                .ok()?
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .map(|t| t.partitions().len())?;
            Some((members, partitions))
        })
        .await;
        match counted {
            Ok(Some((members, partitions))) if members > 0 => held < partitions / members,
            _ => false,
        }
    }

    /// Whether the last rejoin this member chose (not one for holding nothing) is at least
    /// `UNCHANGED_REJOIN_COOLDOWN` ago.
    fn deliberate_rejoin_cooled_down(&self) -> bool {
        self.deliberate_rejoin_at
            .is_none_or(|at| at.elapsed() >= UNCHANGED_REJOIN_COOLDOWN)
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
    /// (at most once per `UNCHANGED_REJOIN_COOLDOWN`). With Kafka a rebalance rarely leaves a member's
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
                Some((_, settle_until)) => *settle_until,
                None if !self.holds_partitions => self.idle_since + IDLE_REJOIN,
                None => match self.overlap {
                    Some((_, at)) => (at + OVERLAP_PATIENCE).min(self.share_checked_at + SHARE_CHECK),
                    None => self.share_checked_at + SHARE_CHECK,
                },
            };
            let received = tokio::time::timeout_at(deadline.into(), self.joined.receiver.recv()).await;
            match received {
                Ok(Some(assignment)) => self.receive(assignment),
                Ok(None) => return Err(Error::Closed),
                Err(_) if self.pending.is_none() && self.overlap_outlasted() => {
                    let partition = self.overlap.take().map(|(partition, _)| partition);
                    tracing::info!(
                        topic = %self.topic,
                        ?partition,
                        "another member owns a partition the group still assigns to this one; rejoining the group"
                    );
                    self.rejoin_deliberately()?;
                }
                Err(_) if self.pending.is_none() && self.holds_partitions => {
                    self.share_checked_at = Instant::now();
                    let below = self.below_share().await;
                    let cooled_down = self.deliberate_rejoin_cooled_down();
                    if below && self.below_share_before && cooled_down {
                        tracing::info!(
                            topic = %self.topic,
                            partitions = ?self.holding,
                            "this member holds less than its share of the partitions (a member may have been evicted with its partitions); rejoining the group"
                        );
                        self.below_share_before = false;
                        self.rejoin_deliberately()?;
                    } else {
                        self.below_share_before = below;
                    }
                }
                Err(_) if self.pending.is_none() => {
                    tracing::debug!(topic = %self.topic, "no partitions for a while; rejoining the group");
                    self.rejoin()?;
                }
                Err(_) => {}
            }
        }
    }

    fn report_overlap(&mut self, partition: u32) {
        if self.overlap.is_none() && self.holding.contains(&partition) {
            self.overlap = Some((partition, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::live_members;

    #[test]
    fn a_member_listed_twice_under_two_member_ids_counts_once() {
        assert_eq!(live_members(["p1", "p2", "p2"].into_iter()), 2);
        assert_eq!(live_members(std::iter::empty()), 0);
    }
}
