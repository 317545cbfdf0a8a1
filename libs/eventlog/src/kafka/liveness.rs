//! The liveness of each partition's owner, kept where every member can read it: a side consumer group on
//! the broker. The owner of a partition commits the partition's end offset there every `BEAT_INTERVAL` (a
//! beat). Any member can then see a partition that is *stalled*: its log held records past its last beat,
//! and a whole check interval later no owner had beaten past them. Work arrived and nobody reads it.
//!
//! This is the one sign of an unowned partition that does not depend on the group coordinator's own view:
//! tansu 0.6 can leave a partition assigned to no live member after a broker stop, and answers
//! DescribeGroups with no members, so the checks of `membership.rs` that read the coordinator's view find
//! nothing there (found by the fault harness: one partition without an owner for 97 s).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::client::kafka_error;
use crate::Result;

/// How often an owner commits the end offsets of the partitions it holds. Several beats fit in one check
/// interval of the membership, so one slow or lost beat does not make a live owner look stalled.
pub(super) const BEAT_INTERVAL: Duration = Duration::from_secs(3);
/// How long one request of a beat or a check may take before it is given up (the next one tries again).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The side group's name for a membership group: the liveness of `aloft-propeller`'s partitions is kept in
/// `aloft-propeller-liveness`.
pub(super) fn liveness_group(group: &str) -> String {
    format!("{group}-liveness")
}

/// One member's side of the liveness group: the task that beats for the partitions it holds, and what its
/// last check saw.
pub(super) struct Liveness {
    consumer: Arc<BaseConsumer>,
    topic: String,
    held: Arc<Mutex<Vec<u32>>>,
    beater: tokio::task::JoinHandle<()>,
    /// The topic's partition count, read once (Aloft never changes it).
    partitions: Option<u32>,
    /// Each partition's end offset at the last check.
    ends_before: HashMap<u32, u64>,
}

impl Liveness {
    /// Starts beating for this member (nothing until `hold` names partitions). `config` is the membership's;
    /// only its brokers are used.
    pub(super) fn start(config: &ClientConfig, group: &str, topic: &str) -> Result<Liveness> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set(
                "bootstrap.servers",
                config.get("bootstrap.servers").unwrap_or_default(),
            )
            .set("group.id", liveness_group(group))
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka_error("creating the liveness client"))?;
        let consumer = Arc::new(consumer);
        let held = Arc::new(Mutex::new(Vec::new()));
        let beater = tokio::spawn(beat(Arc::clone(&consumer), topic.to_string(), Arc::clone(&held)));
        Ok(Liveness {
            consumer,
            topic: topic.to_string(),
            held,
            beater,
            partitions: None,
            ends_before: HashMap::new(),
        })
    }

    /// The partitions this member holds from now on (the assignment it last reported, empty included).
    pub(super) fn hold(&self, partitions: &[u32]) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = partitions.to_vec();
    }

    /// The topic's partition count, once a check has read it.
    pub(super) fn partition_count(&self) -> Option<u32> {
        self.partitions
    }

    /// Why the group should be assigned anew, if a partition is stalled (see the module's doc). Reads every
    /// partition's end offset and last beat; a broker that does not answer stalls nothing.
    pub(super) async fn stalled(&mut self) -> Option<String> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        let known = self.partitions;
        let looked = tokio::task::spawn_blocking(move || look(&consumer, &topic, known)).await;
        let Looked {
            partitions,
            ends,
            beats,
        } = match looked {
            Ok(Ok(looked)) => looked,
            Ok(Err(error)) => {
                tracing::debug!(%error, topic = %self.topic, "checking the partitions' beats");
                return None;
            }
            Err(_) => return None,
        };
        self.partitions = Some(partitions);
        let stalled = stalled_partitions(&self.ends_before, &beats);
        tracing::debug!(topic = %self.topic, ?ends, ?beats, ?stalled, "the partitions' beats");
        self.ends_before = ends;
        (!stalled.is_empty()).then(|| {
            format!(
                "partitions {stalled:?} had records no owner has read for over {} s (the group may have assigned them to a member that is gone)",
                super::membership::SHARE_CHECK.as_secs()
            )
        })
    }
}

impl Drop for Liveness {
    fn drop(&mut self) {
        self.beater.abort();
    }
}

/// Every `BEAT_INTERVAL`: the end offsets of the partitions `held` names, committed to the liveness group.
async fn beat(consumer: Arc<BaseConsumer>, topic: String, held: Arc<Mutex<Vec<u32>>>) {
    loop {
        tokio::time::sleep(BEAT_INTERVAL).await;
        let partitions = held.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if partitions.is_empty() {
            continue;
        }
        let consumer = Arc::clone(&consumer);
        let topic = topic.clone();
        let beaten = tokio::task::spawn_blocking(move || commit_ends(&consumer, &topic, &partitions)).await;
        if let Ok(Err(error)) = beaten {
            tracing::debug!(%error, "beating for the partitions held");
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

#[cfg(test)]
mod tests {
    use super::stalled_partitions;
    use std::collections::HashMap;

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
