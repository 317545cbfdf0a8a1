//! What the Kafka backend's parts share: how long metadata requests may take, and how a client error is
//! reported.

use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::Error;

pub(super) const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn kafka_error(context: &str) -> impl Fn(KafkaError) -> Error + '_ {
    move |error| Error::Kafka(format!("{context}: {error}"))
}
