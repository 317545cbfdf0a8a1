//! What the Kafka backend's parts share: how long metadata requests may take, and how a client error is
//! reported.

use std::time::Duration;

use rdkafka::error::KafkaError;

use crate::Error;

pub(super) const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn kafka_error(context: &str) -> impl Fn(KafkaError) -> Error + '_ {
    move |error| Error::Kafka(format!("{context}: {error}"))
}

/// Whether a consumer error only says the broker is out of reach for now (down, restarting, paused, a
/// leader moving): librdkafka reconnects by itself, so a reader waits instead of failing its caller (which
/// would stop a propeller or a projection for an outage that heals).
pub(super) fn is_transient(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        error.rdkafka_error_code(),
        Some(
            Code::AllBrokersDown
                | Code::BrokerTransportFailure
                | Code::Resolve
                | Code::NetworkException
                | Code::RequestTimedOut
                | Code::OperationTimedOut
                | Code::LeaderNotAvailable
                | Code::NotLeaderForPartition
                | Code::BrokerNotAvailable
                | Code::CoordinatorNotAvailable
                | Code::NotCoordinator
        )
    )
}

/// Logs a transient broker error at most once per `OUTAGE_LOG_INTERVAL` per reader, so an outage of
/// minutes is a few warnings, not thousands.
pub(super) struct OutageLog {
    last: Option<std::time::Instant>,
}

const OUTAGE_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl OutageLog {
    pub(super) fn new() -> OutageLog {
        OutageLog { last: None }
    }

    pub(super) fn note(&mut self, context: &str, error: &KafkaError) {
        if self.last.is_none_or(|at| at.elapsed() >= OUTAGE_LOG_INTERVAL) {
            tracing::warn!(%error, "{context}: the broker is out of reach; waiting for it to return");
            self.last = Some(std::time::Instant::now());
        }
    }
}
