//! The Kafka backend, through rdkafka: an idempotent producer with `acks=all`, assign-based readers for
//! replay and projections, and a consumer group used for partition ownership.
//!
//! Works with any Kafka-compatible broker (tested against tansu). Kafka transactions are not used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::{Error, EventLog, GroupMembership, Position, Record, RecordStream, Result};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an empty assignment may wait for the assignment that usually follows it.
const REBALANCE_SETTLE: Duration = Duration::from_secs(3);
/// How long a member holds no partition before it rejoins the group (see `KafkaMembership`).
const IDLE_REJOIN: Duration = Duration::from_secs(10);
/// The least time between two rejoins after rebalances that left this member's partitions as they were.
const UNCHANGED_REJOIN_COOLDOWN: Duration = Duration::from_secs(30);

fn kafka_error(context: &str) -> impl Fn(KafkaError) -> Error + '_ {
    move |error| Error::Kafka(format!("{context}: {error}"))
}

pub struct KafkaLog {
    brokers: String,
    producer: FutureProducer,
    metadata: Arc<BaseConsumer>,
    partition_counts: Mutex<HashMap<String, u32>>,
}

impl KafkaLog {
    /// Connects to the brokers and checks they answer, so a wrong address fails at start with a clear error.
    pub async fn connect(brokers: &str) -> Result<KafkaLog> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("socket.nagle.disable", "true")
            // One record per batch: tansu 0.6 reports a wrong high watermark after a multi-record batch
            // and returns nothing when a fetch starts inside one (found by tests/conformance.rs).
            .set("batch.num.messages", "1")
            .set("message.timeout.ms", "30000")
            .set("queue.buffering.max.messages", "1000000")
            .create()
            .map_err(kafka_error("creating the producer"))?;
        let metadata: BaseConsumer = reader_config(brokers)
            .create()
            .map_err(kafka_error("creating a client"))?;
        let metadata = Arc::new(metadata);
        let probe = Arc::clone(&metadata);
        tokio::task::spawn_blocking(move || probe.fetch_metadata(None, METADATA_TIMEOUT))
            .await
            .map_err(|e| Error::Kafka(e.to_string()))?
            .map_err(|e| Error::Kafka(format!("cannot reach the Kafka brokers at {brokers}: {e}")))?;
        Ok(KafkaLog {
            brokers: brokers.to_string(),
            producer,
            metadata,
            partition_counts: Mutex::new(HashMap::new()),
        })
    }

    async fn fetch_partition_count(&self, topic: &str) -> Result<Option<u32>> {
        let metadata = Arc::clone(&self.metadata);
        let topic_name = topic.to_string();
        let fetched =
            tokio::task::spawn_blocking(move || metadata.fetch_metadata(Some(&topic_name), METADATA_TIMEOUT))
                .await
                .map_err(|e| Error::Kafka(e.to_string()))?
                .map_err(kafka_error("fetching topic metadata"))?;
        let count = fetched
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len() as u32)
            .filter(|count| *count > 0);
        Ok(count)
    }
}

fn reader_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        // Readers are assign-based and never commit; the group id is required by librdkafka but unused.
        .set("group.id", format!("aloft-reader-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // tansu 0.6 sleeps out the whole wait on every fetch, even when it has data: this bounds both the
        // latency of reading new records and the broker's CPU spent on idle polls (0 costs ~20% of a core).
        .set("fetch.wait.max.ms", "10")
        .set("socket.nagle.disable", "true")
        .set("fetch.min.bytes", "1");
    config
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<()> {
        if let Some(count) = self.fetch_partition_count(topic).await? {
            self.partition_counts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(topic.to_string(), count);
            return Ok(());
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .map_err(kafka_error("creating the admin client"))?;
        let new_topic = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(1));
        let results = admin
            .create_topics(
                [&new_topic],
                &AdminOptions::new().operation_timeout(Some(METADATA_TIMEOUT)),
            )
            .await
            .map_err(kafka_error("creating topics"))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(Error::Kafka(format!("creating topic {name}: {code}"))),
            }
        }
        // Topic creation is asynchronous on the broker: wait until its metadata shows every partition.
        for _ in 0..100 {
            if let Some(count) = self.fetch_partition_count(topic).await? {
                self.partition_counts
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(topic.to_string(), count);
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::Kafka(format!(
            "topic {topic} was created but its metadata never appeared"
        )))
    }

    async fn partition_count(&self, topic: &str) -> Result<u32> {
        if let Some(count) = self
            .partition_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
        {
            return Ok(*count);
        }
        let count = self
            .fetch_partition_count(topic)
            .await?
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))?;
        self.partition_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_string(), count);
        Ok(count)
    }

    fn append_batch(
        &self,
        topic: &str,
        partition: u32,
        records: Vec<(String, Vec<u8>)>,
    ) -> BoxFuture<'static, Result<Vec<Position>>> {
        let mut deliveries = Vec::with_capacity(records.len());
        for (key, payload) in &records {
            let mut attempts = 0;
            loop {
                let record = FutureRecord::to(topic)
                    .partition(partition as i32)
                    .key(key.as_str())
                    .payload(payload.as_slice());
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    // The local queue is full: give librdkafka a moment to drain it. Order is kept because
                    // nothing later has been enqueued yet.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                        if attempts < 5000 =>
                    {
                        attempts += 1;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((error, _)) => {
                        let error =
                            Error::Kafka(format!("enqueueing a record for {topic}/{partition}: {error}"));
                        return futures::future::ready(Err(error)).boxed();
                    }
                }
            }
        }
        let topic = topic.to_string();
        async move {
            let mut positions = Vec::with_capacity(deliveries.len());
            for delivery in deliveries {
                match delivery.await {
                    Ok(Ok((partition, offset))) => positions.push(Position {
                        partition: partition as u32,
                        offset: offset as u64,
                    }),
                    Ok(Err((error, _))) => {
                        return Err(Error::Kafka(format!("appending to {topic}: {error}")))
                    }
                    Err(_) => return Err(Error::Closed),
                }
            }
            Ok(positions)
        }
        .boxed()
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<u64> {
        let metadata = Arc::clone(&self.metadata);
        let topic = topic.to_string();
        let (_, high) = tokio::task::spawn_blocking(move || {
            metadata.fetch_watermarks(&topic, partition as i32, METADATA_TIMEOUT)
        })
        .await
        .map_err(|e| Error::Kafka(e.to_string()))?
        .map_err(kafka_error("fetching watermarks"))?;
        Ok(high.max(0) as u64)
    }

    async fn read(&self, starts: Vec<(String, u32, u64)>) -> Result<Box<dyn RecordStream>> {
        let consumer: StreamConsumer = reader_config(&self.brokers)
            .create()
            .map_err(kafka_error("creating a reader"))?;
        let mut assignment = TopicPartitionList::new();
        for (topic, partition, offset) in &starts {
            assignment
                .add_partition_offset(topic, *partition as i32, Offset::Offset(*offset as i64))
                .map_err(kafka_error("building the assignment"))?;
        }
        consumer
            .assign(&assignment)
            .map_err(kafka_error("assigning partitions"))?;
        let mut expected: HashMap<String, HashMap<u32, u64>> = HashMap::new();
        for (topic, partition, offset) in starts {
            expected.entry(topic).or_default().insert(partition, offset);
        }
        Ok(Box::new(KafkaReader {
            consumer,
            expected,
            gaps: HashMap::new(),
        }))
    }

    async fn join_group(&self, group: &str, topic: &str, member: &str) -> Result<Box<dyn GroupMembership>> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("client.id", member)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            // Short sessions so a killed owner's partitions move on within seconds.
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("partition.assignment.strategy", "roundrobin");
        // librdkafka debug contexts (e.g. "cgrp") for diagnosing group membership; logged at debug level.
        if let Ok(contexts) = std::env::var("ALOFT_KAFKA_DEBUG") {
            config.set("debug", contexts);
        }
        let joined = GroupMember::join(&config, topic)?;
        Ok(Box::new(KafkaMembership {
            config,
            topic: topic.to_string(),
            joined,
            holds_partitions: false,
            idle_since: Instant::now(),
            holding: Vec::new(),
            rebalanced: false,
            unchanged_rejoin_at: None,
            pending: None,
        }))
    }

    async fn commit(&self, group: &str, topic: &str, partition: u32, next_offset: u64) -> Result<()> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka_error("creating a committer"))?;
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(topic, partition as i32, Offset::Offset(next_offset as i64))
            .map_err(kafka_error("building offsets"))?;
        tokio::task::spawn_blocking(move || consumer.commit(&offsets, CommitMode::Sync))
            .await
            .map_err(|e| Error::Kafka(e.to_string()))?
            .map_err(kafka_error("committing offsets"))
    }

    async fn committed(&self, group: &str, topic: &str, partition: u32) -> Result<Option<u64>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka_error("creating a committer"))?;
        let mut wanted = TopicPartitionList::new();
        wanted.add_partition(topic, partition as i32);
        let committed =
            tokio::task::spawn_blocking(move || consumer.committed_offsets(wanted, METADATA_TIMEOUT))
                .await
                .map_err(|e| Error::Kafka(e.to_string()))?
                .map_err(kafka_error("reading committed offsets"))?;
        Ok(committed
            .elements()
            .first()
            .and_then(|element| match element.offset() {
                Offset::Offset(offset) if offset >= 0 => Some(offset as u64),
                _ => None,
            }))
    }
}

/// How long a gap in a partition's offsets is re-read before it is taken as real.
const GAP_PATIENCE: Duration = Duration::from_secs(5);

/// Reads assigned partitions from given offsets, and never skips a record: offsets in a partition are
/// contiguous here (no transactions, no compaction), so a record past the next expected offset means the
/// broker served a later batch before an earlier one was readable (tansu 0.6's memory storage raises the
/// high watermark before it stores the batch). The reader then seeks back and reads the gap again, until it
/// fills or `GAP_PATIENCE` passes (then it is logged and accepted).
struct KafkaReader {
    consumer: StreamConsumer,
    /// The next offset wanted, per topic and partition (looked up by `&str`: no allocation per record).
    expected: HashMap<String, HashMap<u32, u64>>,
    /// A gap being re-read, per topic and partition: the offset it starts at and when it was first seen.
    gaps: HashMap<String, HashMap<u32, (u64, Instant)>>,
}

impl KafkaReader {
    /// Whether `record` is the next one of its partition (else it is dropped: a repeat after a seek back, or
    /// a record past a gap, which is then re-read).
    fn accept(&mut self, record: &Record) -> bool {
        let partition = record.partition;
        let Some(wanted) = self
            .expected
            .get(&record.topic)
            .and_then(|partitions| partitions.get(&partition))
            .copied()
        else {
            self.set_expected(record);
            return true;
        };
        if record.offset < wanted {
            return false;
        }
        if record.offset > wanted {
            let gaps = self.gaps.entry(record.topic.clone()).or_default();
            let first_seen = match gaps.get(&partition) {
                Some(&(offset, since)) if offset == wanted => since,
                _ => {
                    gaps.insert(partition, (wanted, Instant::now()));
                    Instant::now()
                }
            };
            if first_seen.elapsed() < GAP_PATIENCE {
                tracing::debug!(topic = %record.topic, partition, wanted, got = record.offset, "a record arrived past a gap; reading the gap again");
                if let Err(error) = self.consumer.seek(
                    &record.topic,
                    partition as i32,
                    Offset::Offset(wanted as i64),
                    METADATA_TIMEOUT,
                ) {
                    tracing::warn!(topic = %record.topic, partition, %error, "cannot seek back to a gap");
                }
                return false;
            }
            tracing::warn!(topic = %record.topic, partition, wanted, got = record.offset, "offsets {wanted}..{} never arrived; going on without them", record.offset);
        }
        if let Some(gaps) = self.gaps.get_mut(&record.topic) {
            gaps.remove(&partition);
        }
        self.set_expected(record);
        true
    }

    fn set_expected(&mut self, record: &Record) {
        match self.expected.get_mut(&record.topic) {
            Some(partitions) => {
                partitions.insert(record.partition, record.offset + 1);
            }
            None => {
                self.expected.insert(
                    record.topic.clone(),
                    HashMap::from([(record.partition, record.offset + 1)]),
                );
            }
        }
    }
}

#[async_trait]
impl RecordStream for KafkaReader {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>> {
        let mut batch = Vec::new();
        while batch.is_empty() {
            let first = to_record(&self.consumer.recv().await.map_err(kafka_error("reading"))?);
            if self.accept(&first) {
                batch.push(first);
            }
        }
        while batch.len() < max {
            match self.consumer.recv().now_or_never() {
                Some(Ok(message)) => {
                    let record = to_record(&message);
                    drop(message);
                    if self.accept(&record) {
                        batch.push(record);
                    }
                }
                Some(Err(error)) => return Err(Error::Kafka(format!("reading: {error}"))),
                None => break,
            }
        }
        Ok(batch)
    }
}

fn to_record(message: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    Record {
        topic: message.topic().to_string(),
        partition: message.partition() as u32,
        offset: message.offset() as u64,
        key: message
            .key()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .unwrap_or_default(),
        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

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
    _consumer: Arc<StreamConsumer<MembershipContext>>,
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
            _consumer: consumer,
            receiver,
            poller,
        })
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

struct KafkaMembership {
    config: ClientConfig,
    topic: String,
    joined: GroupMember,
    holds_partitions: bool,
    idle_since: Instant,
    /// The partitions of the last non-empty assignment reported (a rebalance may report none in between).
    holding: Vec<u32>,
    /// Whether the group rebalanced (an assignment arrived) since the last reported one.
    rebalanced: bool,
    /// When this member last rejoined because a rebalance left its partitions unchanged.
    unchanged_rejoin_at: Option<Instant>,
    /// An assignment received but not reported yet, and until when an empty one waits for the next.
    /// Kept here, not in the future, so `next_assignment` is cancel-safe inside `select!`.
    pending: Option<(Vec<u32>, Instant)>,
}

impl KafkaMembership {
    fn receive(&mut self, assignment: Vec<u32>) {
        self.pending = Some((assignment, Instant::now() + REBALANCE_SETTLE));
        self.rebalanced = true;
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
                    let cooled_down = self
                        .unchanged_rejoin_at
                        .is_none_or(|at| at.elapsed() >= UNCHANGED_REJOIN_COOLDOWN);
                    if unchanged && self.rebalanced && cooled_down {
                        tracing::info!(
                            topic = %self.topic,
                            partitions = ?assignment,
                            "the group rebalanced and left this member's partitions as they were (a member may have left without its partitions being handed out); rejoining the group"
                        );
                        self.unchanged_rejoin_at = Some(Instant::now());
                        self.rejoin()?;
                    }
                    self.rebalanced = false;
                    self.holds_partitions = !assignment.is_empty();
                    if self.holds_partitions {
                        self.holding = assignment.clone();
                    }
                    return Ok(assignment);
                }
            }
            let deadline = match &self.pending {
                Some((_, settle_until)) => Some(*settle_until),
                None if !self.holds_partitions => Some(self.idle_since + IDLE_REJOIN),
                None => None,
            };
            let received = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline.into(), self.joined.receiver.recv()).await,
                None => Ok(self.joined.receiver.recv().await),
            };
            match received {
                Ok(Some(assignment)) => self.receive(assignment),
                Ok(None) => return Err(Error::Closed),
                Err(_) if self.pending.is_none() => {
                    tracing::debug!(topic = %self.topic, "no partitions for a while; rejoining the group");
                    self.rejoin()?;
                }
                Err(_) => {}
            }
        }
    }
}
