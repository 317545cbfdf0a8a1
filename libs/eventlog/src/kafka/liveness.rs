//! What a member of the ownership group watches besides its own assignment, in a task of its own (the
//! membership's future is dropped by its caller's `select!` whenever a record arrives, so a check awaited
//! there would rarely finish under load):
//!
//! - **Beats.** The owner of a partition commits the partition's end offset to a side consumer group every
//!   `BEAT_INTERVAL`. A partition is *stalled* when its log held records past its last beat at one check and
//!   no owner had beaten past them by the next, a check interval later: work arrived and nobody reads it.
//!   This is the sign of an unowned partition that needs nothing of the group coordinator: tansu 0.6 can leave
//!   a partition assigned to no live member after a broker stop, and answers DescribeGroups with no members
//!   (found by the fault harness: one partition without an owner for 97 s).
//! - **The coordinator's view** (DescribeGroups): a member holding less than an even share, or assigned
//!   partitions it was never told of. This acts on Kafka; on tansu it finds nothing.
//!
//! Each check's findings go to the membership as a `Verdict`, which decides whether to rejoin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::client::kafka_error;
use crate::Result;

/// How often an owner commits the end offsets of the partitions it holds. Several beats fit in one check
/// interval, so one slow or lost beat does not make a live owner look stalled.
pub(super) const BEAT_INTERVAL: Duration = Duration::from_secs(3);
/// How often a member holding partitions checks the beats and the coordinator's view. Longer than a
/// takeover after a member dies (6 s session, 3 s settle, then a beat), so a partition on its way to a new
/// owner is not taken for stalled.
pub(super) const CHECK_INTERVAL: Duration = Duration::from_secs(15);
/// How long one request of a beat or a check may take before it is given up (the next one tries again).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The side group's name for a membership group: the beats of `aloft-propeller`'s partitions are kept in
/// `aloft-propeller-liveness`.
pub(super) fn liveness_group(group: &str) -> String {
    format!("{group}-liveness")
}

/// What one check found, each with the reason a rejoin would log.
#[derive(Debug, Default)]
pub(super) struct Verdict {
    /// Partitions with records no owner has beaten past for a check interval.
    pub(super) stalled: Option<String>,
    /// The coordinator sees this member differently than it sees itself.
    pub(super) astray: Option<String>,
}

/// Who is watching: the group, the topic, and this member's name in it.
#[derive(Clone)]
struct Watched {
    group: String,
    topic: String,
    member: String,
}

/// This member's watcher: the partitions it holds (which it beats for) and the verdicts of its checks.
pub(super) struct Liveness {
    held: Arc<Mutex<Vec<u32>>>,
    verdicts: mpsc::UnboundedReceiver<Verdict>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Liveness {
    /// Starts watching for member `config`'s `client.id` of its `group.id` on `topic` (nothing is beaten
    /// or checked until `hold` names partitions). Only the brokers of `config` are used for the watcher's
    /// own client.
    pub(super) fn start(config: &ClientConfig, topic: &str) -> Result<Liveness> {
        let group = config.get("group.id").unwrap_or_default().to_string();
        let consumer: BaseConsumer = ClientConfig::new()
            .set(
                "bootstrap.servers",
                config.get("bootstrap.servers").unwrap_or_default(),
            )
            .set("group.id", liveness_group(&group))
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka_error("creating the liveness client"))?;
        let watched = Watched {
            group,
            topic: topic.to_string(),
            member: config.get("client.id").unwrap_or_default().to_string(),
        };
        let held = Arc::new(Mutex::new(Vec::new()));
        let (sender, verdicts) = mpsc::unbounded_channel();
        let watcher = tokio::spawn(watch(Arc::new(consumer), watched, Arc::clone(&held), sender));
        Ok(Liveness {
            held,
            verdicts,
            watcher,
        })
    }

    /// The partitions this member holds from now on (the assignment it last reported, empty included).
    pub(super) fn hold(&self, partitions: &[u32]) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = partitions.to_vec();
    }

    /// The newest verdict once a check has given one (older ones queued meanwhile are dropped: a membership
    /// that was busy acts on what the group looks like now). Cancel-safe: nothing is taken until `recv`
    /// has completed.
    pub(super) async fn next_verdict(&mut self) -> Option<Verdict> {
        let mut verdict = self.verdicts.recv().await?;
        while let Ok(newer) = self.verdicts.try_recv() {
            verdict = newer;
        }
        Some(verdict)
    }
}

impl Drop for Liveness {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// Beats every `BEAT_INTERVAL` and checks every `CHECK_INTERVAL` while this member holds partitions.
async fn watch(
    consumer: Arc<BaseConsumer>,
    watched: Watched,
    held: Arc<Mutex<Vec<u32>>>,
    verdicts: mpsc::UnboundedSender<Verdict>,
) {
    let mut beats = tokio::time::interval(BEAT_INTERVAL);
    let mut checks = tokio::time::interval(CHECK_INTERVAL);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    checks.tick().await; // the first tick is at once: the first check comes one interval after the start
    let mut partitions: Option<u32> = None;
    let mut ends_before: HashMap<u32, u64> = HashMap::new();
    loop {
        let beat = tokio::select! {
            _ = beats.tick() => true,
            _ = checks.tick() => false,
        };
        let holding = held.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if holding.is_empty() {
            // Nothing to beat for, and a member holding nothing rejoins by itself; the next check after it
            // holds partitions again starts afresh.
            ends_before.clear();
            continue;
        }
        let (client, watching) = (Arc::clone(&consumer), watched.clone());
        if beat {
            let beaten =
                tokio::task::spawn_blocking(move || commit_ends(&client, &watching.topic, &holding)).await;
            if let Ok(Err(error)) = beaten {
                tracing::debug!(%error, "beating for the partitions held");
            }
            continue;
        }
        let looked = tokio::task::spawn_blocking(move || {
            let looked = look(&client, &watching.topic, partitions);
            let view = coordinator_view(&client, &watching, &holding, looked.as_ref().ok());
            (looked, view)
        })
        .await;
        let Ok((looked, astray)) = looked else {
            continue;
        };
        let stalled = match looked {
            Ok(Looked {
                partitions: count,
                ends,
                beats,
            }) => {
                partitions = Some(count);
                let stalled = stalled_partitions(&ends_before, &beats);
                tracing::debug!(topic = %watched.topic, ?ends, ?beats, ?stalled, "the partitions' beats");
                ends_before = ends;
                (!stalled.is_empty()).then(|| {
                    format!(
                        "partitions {stalled:?} had records no owner has read for over {} s (the group may have assigned them to a member that is gone)",
                        CHECK_INTERVAL.as_secs()
                    )
                })
            }
            Err(error) => {
                tracing::debug!(%error, topic = %watched.topic, "checking the partitions' beats");
                None
            }
        };
        if verdicts.send(Verdict { stalled, astray }).is_err() {
            return;
        }
    }
}

fn commit_ends(consumer: &BaseConsumer, topic: &str, partitions: &[u32]) -> Result<()> {
    let mut offsets = TopicPartitionList::new();
    for &partition in partitions {
        let (_, end) = consumer
            .fetch_watermarks(topic, partition as i32, REQUEST_TIMEOUT)
            .map_err(kafka_error("reading a partition's end offset"))?;
        offsets
            .add_partition_offset(topic, partition as i32, Offset::Offset(end))
            .map_err(kafka_error("building the beat"))?;
    }
    consumer
        .commit(&offsets, CommitMode::Sync)
        .map_err(kafka_error("committing the beat"))
}

/// What one check reads: the topic's partition count, each partition's end offset, and the last beat of
/// each partition that has one.
struct Looked {
    partitions: u32,
    ends: HashMap<u32, u64>,
    beats: HashMap<u32, u64>,
}

/// Reads what a check needs (`known`: the partition count, when an earlier check read it).
fn look(consumer: &BaseConsumer, topic: &str, known: Option<u32>) -> Result<Looked> {
    let partitions = match known {
        Some(count) => count,
        None => consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(kafka_error("reading the topic's metadata"))?
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map(|t| t.partitions().len() as u32)
            .unwrap_or(0),
    };
    let mut ends = HashMap::new();
    let mut wanted = TopicPartitionList::new();
    for partition in 0..partitions {
        let (_, end) = consumer
            .fetch_watermarks(topic, partition as i32, REQUEST_TIMEOUT)
            .map_err(kafka_error("reading a partition's end offset"))?;
        ends.insert(partition, end.max(0) as u64);
        wanted.add_partition(topic, partition as i32);
    }
    let committed = consumer
        .committed_offsets(wanted, REQUEST_TIMEOUT)
        .map_err(kafka_error("reading the partitions' beats"))?;
    let beats = committed
        .elements()
        .iter()
        .filter_map(|element| match element.offset() {
            Offset::Offset(offset) if offset >= 0 => Some((element.partition() as u32, offset as u64)),
            _ => None,
        })
        .collect();
    Ok(Looked {
        partitions,
        ends,
        beats,
    })
}

/// The partitions whose last beat is below the end offset the previous check saw: records were there a
/// check interval ago and no owner has beaten past them since. A partition without a beat is never stalled:
/// no owner of it has beaten yet (a fresh fleet, or a member of a build from before the beats).
fn stalled_partitions(ends_before: &HashMap<u32, u64>, beats: &HashMap<u32, u64>) -> Vec<u32> {
    let mut stalled: Vec<u32> = beats
        .iter()
        .filter(|(partition, beat)| ends_before.get(partition).is_some_and(|end| *beat < end))
        .map(|(partition, _)| *partition)
        .collect();
    stalled.sort_unstable();
    stalled
}

/// Whether the group's coordinator sees this member (holding `holding`) differently than it sees itself:
///
/// - it holds fewer partitions than an even split among the group's live members gives each. tansu 0.6
///   can evict a member whose session ended (its broker stopped past the session timeout) without handing
///   its partitions out, and no later rebalance may change this member's share, so the unchanged-rebalance
///   rule never fires. With P partitions and M members every member holds at least P / M. Members are
///   counted by client id (the member's name): an evicted member can stay listed beside the fresh member
///   id it rejoined under, and counting both would lower the share.
/// - the coordinator assigns this member's client id partitions it was never told of: a rebalance it took
///   no part in (its session had timed out) gave them to it, and nobody reads them.
///
/// Both need DescribeGroups, which tansu 0.6 answers with no members (and librdkafka's group listing fails
/// against it): there this finds nothing, and the beats show an unowned partition instead.
fn coordinator_view(
    consumer: &BaseConsumer,
    watched: &Watched,
    holding: &[u32],
    looked: Option<&Looked>,
) -> Option<String> {
    let groups = consumer
        .fetch_group_list(Some(watched.group.as_str()), REQUEST_TIMEOUT)
        .inspect_err(|error| tracing::debug!(%error, "describing the group"))
        .ok()?;
    let Some(described) = groups.groups().iter().find(|g| g.name() == watched.group) else {
        tracing::debug!(group = %watched.group, "the group is not among the groups described");
        return None;
    };
    let members: Vec<(String, Option<Vec<u32>>)> = described
        .members()
        .iter()
        .map(|m| {
            let assigned = m
                .assignment()
                .and_then(|bytes| assigned_partitions(bytes, &watched.topic));
            (m.client_id().to_string(), assigned)
        })
        .collect();
    let partitions = looked?.partitions as usize;
    tracing::debug!(topic = %watched.topic, ?members, partitions, ?holding, "the group as its coordinator describes it");
    let live = live_members(members.iter().map(|(client, _)| client.as_str()));
    if live > 0 && holding.len() < partitions / live {
        return Some(format!(
            "this member holds {} of {partitions} partitions, less than its share among {live} members (a member may have been evicted with its partitions)",
            holding.len()
        ));
    }
    let unknown: Vec<u32> = members
        .iter()
        .filter(|(client, _)| *client == watched.member)
        .filter_map(|(_, assigned)| assigned.as_ref())
        .flatten()
        .filter(|partition| !holding.contains(partition))
        .copied()
        .collect();
    (!unknown.is_empty()).then(|| {
        format!("the group's coordinator assigns this member partitions {unknown:?} it was never given (a rebalance happened without it)")
    })
}

/// How many members a group has, counted by client id (see `coordinator_view`).
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

#[cfg(test)]
mod tests {
    use super::{assigned_partitions, live_members, stalled_partitions};
    use std::collections::HashMap;

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

    #[test]
    fn a_partition_is_stalled_only_when_records_seen_a_check_ago_are_still_unbeaten() {
        let ends_before = HashMap::from([(0, 10), (1, 10), (2, 10), (3, 0)]);
        let beats = HashMap::from([
            (0, 10), // beaten up to what was there: alive, idle since
            (1, 14), // beaten past it: alive and busy
            (2, 7),  // records 7-9 were there a check ago and nobody has beaten past them
            (3, 0),  // nothing was there
        ]);
        assert_eq!(stalled_partitions(&ends_before, &beats), vec![2]);
    }

    #[test]
    fn nothing_is_stalled_on_the_first_check_or_without_beats() {
        let beats = HashMap::from([(0, 3)]);
        assert!(
            stalled_partitions(&HashMap::new(), &beats).is_empty(),
            "no earlier check"
        );
        let ends_before = HashMap::from([(0, 10), (1, 10)]);
        assert!(
            stalled_partitions(&ends_before, &HashMap::new()).is_empty(),
            "no owner has beaten yet"
        );
    }
}
