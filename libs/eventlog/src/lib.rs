//! The event log: the `EventLog` trait, the `Envelope` every record carries, and two backends — Kafka
//! through rdkafka (production) and an embedded single-file log (`aloft dev`, unit tests). Both pass one
//! conformance suite (`tests/conformance.rs`).
//!
//! This crate moves bytes and envelopes; it knows nothing of what events mean (that is `aloft-core`).

pub mod embedded;
pub mod envelope;
mod error;
pub mod kafka;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;

pub use envelope::{Envelope, Payload, SCHEMA_VERSION};
pub use error::{Error, Result};

/// The most partitions a topic may have (`--partitions` is checked against it). The embedded log refuses a
/// topic with more, and treats a file's topic frame asking for more as corrupt rather than allocating it.
pub const MAX_PARTITIONS: u32 = 1024;

/// The most bytes of key and payload one record may have, in every backend. librdkafka refuses a message
/// over 1,000,000 bytes (`message.max.bytes`) with its framing included; this leaves room for that, so a
/// record is refused here, by its size and with the same error everywhere, before any of its batch is sent.
pub const MAX_RECORD_BYTES: usize = 960 * 1024;

/// Refuses a batch holding a record over `MAX_RECORD_BYTES` (checked before anything of it is written).
pub(crate) fn check_record_sizes(topic: &str, records: &[(String, Vec<u8>)]) -> Result<()> {
    match records
        .iter()
        .map(|(key, payload)| key.len() + payload.len())
        .find(|bytes| *bytes > MAX_RECORD_BYTES)
    {
        Some(bytes) => Err(Error::RecordTooLarge {
            topic: topic.to_string(),
            bytes,
            max: MAX_RECORD_BYTES,
        }),
        None => Ok(()),
    }
}

/// How long a readiness probe (`probe_end_offset`) gives the log to answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the log failed a readiness probe.
#[derive(Debug, thiserror::Error)]
pub enum Unanswered {
    #[error("event log unreachable: {0}")]
    Unreachable(Error),
    #[error("the event log did not answer within 2 s")]
    Slow,
}

/// The end offset of `topic`'s first partition, if the log answers within `PROBE_TIMEOUT`. Every service's
/// readiness asks it: a service cut off from the broker is degraded (it cannot write, or falls behind).
pub async fn probe_end_offset(log: &dyn EventLog, topic: &str) -> std::result::Result<u64, Unanswered> {
    match tokio::time::timeout(PROBE_TIMEOUT, log.end_offset(topic, 0)).await {
        Ok(Ok(end)) => Ok(end),
        Ok(Err(error)) => Err(Unanswered::Unreachable(error)),
        Err(_) => Err(Unanswered::Slow),
    }
}

/// One record read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub key: String,
    pub payload: Vec<u8>,
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub partition: u32,
    pub offset: u64,
}

/// A partitioned, append-only log with consumer groups.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Creates the topic with `partitions` partitions if it does not exist yet.
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()>;

    async fn partition_count(&self, topic: &str) -> Result<u32>;

    /// Appends records to one partition. They are enqueued, in order, before this returns; the future
    /// resolves once the log has acknowledged all of them. Callers may enqueue the next batch without
    /// waiting: order within a partition is kept.
    fn append_batch(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<(String, Vec<u8>)>,
    ) -> BoxFuture<'static, Result<Vec<Position>>>;

    /// The offset the next record appended to this partition will get.
    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64>;

    /// Reads the given `(topic, partition, from_offset)` partitions, in order within each partition.
    async fn read(&self, starts: Vec<(String, u32, u64)>) -> Result<Box<dyn RecordStream>>;

    /// Joins the consumer group `group` on `topic`. The membership reports which partitions this member
    /// owns; dropping it leaves the group.
    async fn join_group(&self, group: &str, topic: &str, member: &str) -> Result<Box<dyn GroupMembership>>;

    /// Stores the next offset to read for `group` on a partition.
    async fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> Result<()>;

    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>>;
}

#[async_trait]
pub trait RecordStream: Send {
    /// Waits for at least one record and returns up to `max` that are available now.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>>;
}

#[async_trait]
pub trait GroupMembership: Send {
    /// Waits until this member's assignment changes and returns the complete new set of partitions.
    async fn next_assignment(&mut self) -> Result<Vec<u32>>;

    /// Another member claimed `partition`, which this member was assigned: the group's assignments overlap
    /// (a broker may hand one partition to two members and another to none after an outage). A membership
    /// that can ask for a fresh assignment does so if the overlap outlasts a rebalance.
    fn report_overlap(&mut self, _partition: u32) {}
}

impl dyn EventLog {
    /// Appends one record to the partition its key maps to, and waits for the acknowledgement.
    pub async fn append(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<Position> {
        let partitions = self.partition_count(topic).await?;
        let partition = partition_for_key(key, partitions);
        let positions = self
            .append_batch(topic, partition, vec![(key.to_string(), payload)])
            .await?;
        positions.into_iter().next().ok_or(Error::Closed)
    }
}

/// The partition for a key: FNV-1a, identical for every backend and every client, so all events of one
/// execution land in one partition whoever writes them.
pub fn partition_for_key(key: &str, partitions: u32) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(partitions.max(1))) as u32
}

/// Which backend to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogBackend {
    /// An embedded log in `dir/events.log`.
    Embedded { dir: PathBuf },
    /// A Kafka-compatible broker.
    Kafka { brokers: String },
}

/// Topic names; the prefix lets tests and tenants of one broker stay apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub registry: String,
    pub executions: String,
    /// The scheduler's progress; one partition, whose owner in the scheduler group is the leader.
    pub schedules: String,
    /// The notifier's record of every delivery attempt, keyed by execution.
    pub deliveries: String,
    pub prefix: String,
}

impl Topics {
    pub fn with_prefix(prefix: &str) -> Topics {
        Topics {
            registry: format!("{prefix}aloft.registry"),
            executions: format!("{prefix}aloft.executions"),
            schedules: format!("{prefix}aloft.schedules"),
            deliveries: format!("{prefix}aloft.deliveries"),
            prefix: prefix.to_string(),
        }
    }

    /// A consumer group name under this deployment's prefix.
    pub fn group(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// Opens the configured backend and creates Aloft's topics: one partition for the registry (a total order of
/// registrations), `execution_partitions` for executions and for deliveries, one for the scheduler's
/// progress.
pub async fn open(
    backend: &LogBackend,
    topics: &Topics,
    execution_partitions: u32,
) -> Result<Arc<dyn EventLog>> {
    let log: Arc<dyn EventLog> = match backend {
        LogBackend::Embedded { dir } => Arc::new(embedded::EmbeddedLog::open(dir)?),
        LogBackend::Kafka { brokers } => Arc::new(kafka::KafkaLog::connect(brokers).await?),
    };
    log.ensure_topic(&topics.registry, 1).await?;
    log.ensure_topic(&topics.executions, execution_partitions).await?;
    log.ensure_topic(&topics.schedules, 1).await?;
    log.ensure_topic(&topics.deliveries, execution_partitions).await?;
    Ok(log)
}
