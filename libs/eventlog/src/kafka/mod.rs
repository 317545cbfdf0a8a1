//! The Kafka backend, through rdkafka: an idempotent producer with `acks=all`, assign-based readers for
//! replay and projections, and a consumer group used for partition ownership.
//!
//! Works with any Kafka-compatible broker (tested against tansu). Kafka transactions are not used. The
//! readers are `reader.rs`, the group membership `membership.rs` (its owners' beats in `liveness.rs`);
//! `client.rs` holds what they share.

mod client;
mod liveness;
mod membership;
mod reader;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::{Error, EventLog, GroupMembership, Position, RecordStream, Result};
use client::{kafka_error, METADATA_TIMEOUT};
use membership::KafkaMembership;
use reader::KafkaReader;

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
        if let Err(error) = crate::check_record_sizes(topic, &records) {
            return futures::future::ready(Err(error)).boxed();
        }
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
        Ok(Box::new(KafkaReader::new(consumer, expected)))
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
        Ok(Box::new(KafkaMembership::join(config, topic)?))
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
