//! Assign-based readers of the Kafka backend (replay, projections, the propeller's partitions), which never
//! skip a record.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::Offset;

use super::client::{is_transient, kafka_error, OutageLog, METADATA_TIMEOUT};
use crate::{Error, Record, RecordStream, Result};

/// How long a gap in a partition's offsets is re-read before it is taken as real.
const GAP_PATIENCE: Duration = Duration::from_secs(5);

/// Reads assigned partitions from given offsets, and never skips a record: offsets in a partition are
/// contiguous here (no transactions, no compaction), so a record past the next expected offset means the
/// broker served a later batch before an earlier one was readable (tansu 0.6's memory storage raises the
/// high watermark before it stores the batch). The reader then seeks back and reads the gap again, until it
/// fills or `GAP_PATIENCE` passes (then it is logged and accepted).
pub(super) struct KafkaReader {
    consumer: StreamConsumer,
    /// The next offset wanted, per topic and partition (looked up by `&str`: no allocation per record).
    expected: HashMap<String, HashMap<u32, u64>>,
    /// A gap being re-read, per topic and partition: the offset it starts at and when it was first seen.
    gaps: HashMap<String, HashMap<u32, (u64, Instant)>>,
    outage: OutageLog,
}

impl KafkaReader {
    /// A reader of `consumer`'s assignment, wanting `expected` next (offset by topic and partition).
    pub(super) fn new(consumer: StreamConsumer, expected: HashMap<String, HashMap<u32, u64>>) -> KafkaReader {
        KafkaReader {
            consumer,
            expected,
            gaps: HashMap::new(),
            outage: OutageLog::new(),
        }
    }

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
            let first = match self.consumer.recv().await {
                Ok(message) => to_record(&message),
                // librdkafka reconnects on its own; the next record (or error) comes when it has.
                Err(error) if is_transient(&error) => {
                    self.outage.note("reading", &error);
                    continue;
                }
                Err(error) => return Err(kafka_error("reading")(error)),
            };
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
                Some(Err(error)) if is_transient(&error) => {
                    self.outage.note("reading", &error);
                    break;
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
