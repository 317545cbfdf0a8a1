//! Partition ownership through a Kafka consumer group: joining, the assignments rebalances hand out (settled
//! before they are reported), and rejoining when a member holds nothing, a rebalance changed nothing, the
//! coordinator's view of the group is astray, or a partition is stalled (its owner's beats stopped while
//! its log grew; see `liveness.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::ClientContext;
use tokio::sync::mpsc;

use super::client::kafka_error;
use super::liveness::Liveness;
use crate::{Error, GroupMembership, Result};

/// How long an empty assignment may wait for the assignment that usually follows it.
const REBALANCE_SETTLE: Duration = Duration::from_secs(3);
/// How long a member holds no partition before it rejoins the group (see `KafkaMembership`).
const IDLE_REJOIN: Duration = Duration::from_secs(10);
/// The least time between two rejoins after rebalances that left this member's partitions as they were.
const UNCHANGED_REJOIN_COOLDOWN: Duration = Duration::from_secs(30);
/// How long an overlapping assignment may last (a rebalance in progress ends it) before the member rejoins.
const OVERLAP_PATIENCE: Duration = Duration::from_secs(5);
/// How often a member holding partitions checks the coordinator's view of it (see `astray`).
pub(super) const SHARE_CHECK: Duration = Duration::from_secs(15);

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

/// How many members a group has, counted by client id (see `KafkaMembership::astray`).
fn live_members<'a>(client_ids: impl Iterator<Item = &'a str>) -> usize {
    client_ids.collect::<std::collections::HashSet<_>>().len()
}

/// The partitions of `topic` in a member's assignment as DescribeGroups gives it (the consumer protocol's
/// `Assignment`: version i16, then topics, each a string and an array of i32 partitions, then user data);
/// `None` for bytes that are not one.
fn assigned_partitions(bytes: &[u8], topic: &str) -> Option<Vec<u32>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if bytes.len() < n {
            return None;
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Some(head)
    }
    fn int32(bytes: &mut &[u8]) -> Option<i32> {
        Some(i32::from_be_bytes(take(bytes, 4)?.try_into().ok()?))
    }
    let mut rest = bytes;
    take(&mut rest, 2)?; // version
    let topics = int32(&mut rest)?;
    let mut partitions = Vec::new();
    for _ in 0..topics.max(0) {
        let name_length = i16::from_be_bytes(take(&mut rest, 2)?.try_into().ok()?);
        let name = take(&mut rest, usize::try_from(name_length).ok()?)?;
        let count = int32(&mut rest)?;
        for _ in 0..count.max(0) {
            let partition = int32(&mut rest)?;
            if name == topic.as_bytes() {
                partitions.push(u32::try_from(partition).ok()?);
            }
        }
    }
    partitions.sort_unstable();
    Some(partitions)
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
    /// When the member last checked the coordinator's view of it, and whether that view was astray then
    /// (two checks in a row make it rejoin; see `astray`).
    share_checked_at: Instant,
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
        let group = config.get("group.id").unwrap_or_default().to_string();
        let liveness = Liveness::start(&config, &group, topic)?;
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

    /// Whether this member should rejoin because the group's coordinator sees it differently:
    ///
    /// - it holds fewer partitions than an even split among the group's live members gives each. tansu 0.6
    ///   can evict a member whose session ended (its broker stopped past the session timeout) without
    ///   handing its partitions out, and no later rebalance may change this member's share, so the
    ///   unchanged-rebalance rule never fires: the evicted member's partitions then have no owner at all
    ///   (found by the fault harness: a partition's executions waited minutes). Counting the group's members
    ///   (DescribeGroups) shows it: with P partitions and M members every member holds at least P / M.
    ///   Members are counted by client id (the member's name): an evicted member can stay listed beside the
    ///   fresh member id it rejoined under, and counting both would lower the share.
    /// - the coordinator assigns this member's client id partitions it was never told of: a rebalance it
    ///   took no part in (its session had timed out) gave them to it, and nobody reads them (seen by the
    ///   fault harness after a broker stop: one partition unowned for 97 s).
    ///
    /// Both need DescribeGroups. tansu 0.6 answers it with no members (and librdkafka's group listing
    /// fails against it), so on tansu this check finds nothing; there the partitions' beats
    /// (`Liveness::stalled`) show an unowned partition instead.
    async fn astray(&self) -> Option<String> {
        let consumer = Arc::clone(&self.joined.consumer);
        let topic = self.topic.clone();
        let group = self.config.get("group.id").unwrap_or_default().to_string();
        let me = self.config.get("client.id").unwrap_or_default().to_string();
        let known_partitions = self.liveness.partition_count();
        let looked = tokio::task::spawn_blocking(move || {
            let groups = consumer
                .fetch_group_list(Some(group.as_str()), Duration::from_secs(5))
                .inspect_err(|error| tracing::debug!(%error, "describing the group"))
                .ok()?;
            let Some(described) = groups.groups().iter().find(|g| g.name() == group) else {
                tracing::debug!(group, "the group is not among the groups described");
                return None;
            };
            let members: Vec<(String, Option<Vec<u32>>)> = described
                .members()
                .iter()
                .map(|m| {
                    let assigned = m
                        .assignment()
                        .and_then(|bytes| assigned_partitions(bytes, &topic));
                    (m.client_id().to_string(), assigned)
                })
                .collect();
            let partitions = match known_partitions {
                Some(count) => count as usize,
                None => consumer
                    .fetch_metadata(Some(topic.as_str()), Duration::from_secs(5))
                    .ok()?
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic)
                    .map(|t| t.partitions().len())?,
            };
            Some((members, partitions))
        })
        .await;
        let Ok(Some((members, partitions))) = looked else {
            return None;
        };
        tracing::debug!(topic = %self.topic, ?members, partitions, holding = ?self.holding, "the group as its coordinator describes it");
        let live = live_members(members.iter().map(|(client, _)| client.as_str()));
        if live > 0 && self.holding.len() < partitions / live {
            return Some(format!(
                "this member holds {} of {partitions} partitions, less than its share among {live} members (a member may have been evicted with its partitions)",
                self.holding.len()
            ));
        }
        let unknown: Vec<u32> = members
            .iter()
            .filter(|(client, _)| *client == me)
            .filter_map(|(_, assigned)| assigned.as_ref())
            .flatten()
            .filter(|partition| !self.holding.contains(partition))
            .copied()
            .collect();
        (!unknown.is_empty()).then(|| {
            format!("the group's coordinator assigns this member partitions {unknown:?} it was never given (a rebalance happened without it)")
        })
    }

    /// Whether the last rejoin this member chose (not one for holding nothing) is at least
    /// `UNCHANGED_REJOIN_COOLDOWN` ago.
    fn deliberate_rejoin_cooled_down(&self) -> bool {
        self.deliberate_rejoin_at
            .is_none_or(|at| at.elapsed() >= UNCHANGED_REJOIN_COOLDOWN)
    }

    /// Whether a rejoin for a stalled partition may happen now: the cooldown doubles with each such rejoin
    /// that left a partition stalled, up to 8 times. One rejoin ends what tansu leaves behind; a partition
    /// that stays stalled is owned by a member that does not beat (a propeller of a build from before the
    /// beats, during a rolling upgrade), and rejoining every 30 s would only churn the group.
    fn stall_rejoin_cooled_down(&self) -> bool {
        let cooldown = UNCHANGED_REJOIN_COOLDOWN * (1 << self.stall_rejoins.min(3));
        self.deliberate_rejoin_at
            .is_none_or(|at| at.elapsed() >= cooldown)
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
    /// partition is stalled (records nobody has read for a check interval) or the coordinator's view of it
    /// is astray, under the same cooldown. With Kafka a rebalance rarely leaves a member's
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
                    // A stalled partition is already two observations a check interval apart, so it
                    // rejoins at once; the coordinator's view must be astray on two checks in a row.
                    let stalled = self.liveness.stalled().await;
                    if stalled.is_none() {
                        self.stall_rejoins = 0;
                    }
                    let astray = self.astray().await;
                    let cooled_down = self.deliberate_rejoin_cooled_down();
                    match (stalled, astray) {
                        (Some(why), _) if self.stall_rejoin_cooled_down() => {
                            tracing::info!(topic = %self.topic, partitions = ?self.holding, "{why}; rejoining the group");
                            self.astray_before = false;
                            self.stall_rejoins += 1;
                            self.rejoin_deliberately()?;
                        }
                        (Some(_), _) => {}
                        (_, Some(why)) if self.astray_before && cooled_down => {
                            tracing::info!(topic = %self.topic, partitions = ?self.holding, "{why}; rejoining the group");
                            self.astray_before = false;
                            self.rejoin_deliberately()?;
                        }
                        (_, astray) => self.astray_before = astray.is_some(),
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
    use super::{assigned_partitions, live_members};

    /// A consumer-protocol assignment of `topics`, as a coordinator hands it out.
    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut bytes = 0i16.to_be_bytes().to_vec();
        bytes.extend((topics.len() as i32).to_be_bytes());
        for (name, partitions) in topics {
            bytes.extend((name.len() as i16).to_be_bytes());
            bytes.extend(name.as_bytes());
            bytes.extend((partitions.len() as i32).to_be_bytes());
            for partition in *partitions {
                bytes.extend(partition.to_be_bytes());
            }
        }
        bytes.extend((-1i32).to_be_bytes()); // no user data
        bytes
    }

    #[test]
    fn an_assignment_is_read_for_its_topic_and_garbage_is_refused() {
        let bytes = assignment(&[("other", &[5]), ("executions", &[2, 0])]);
        assert_eq!(assigned_partitions(&bytes, "executions"), Some(vec![0, 2]));
        assert_eq!(assigned_partitions(&bytes, "absent"), Some(vec![]));
        assert_eq!(
            assigned_partitions(&bytes[..bytes.len() - 9], "executions"),
            None,
            "cut short"
        );
        assert_eq!(assigned_partitions(&[], "executions"), None);
        let negative = assignment(&[("executions", &[-1])]);
        assert_eq!(assigned_partitions(&negative, "executions"), None);
    }

    #[test]
    fn a_member_listed_twice_under_two_member_ids_counts_once() {
        assert_eq!(live_members(["p1", "p2", "p2"].into_iter()), 2);
        assert_eq!(live_members(std::iter::empty()), 0);
    }
}
