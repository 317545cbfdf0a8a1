//! Publishes recorded attempts to `aloft.deliveries` (keyed by execution, one stream per delivery with the
//! attempt number as its sequence). Attempts are recorded in the database first, so a log that is briefly
//! unreachable delays the events but never loses them; a crash after appending and before marking them
//! appends them again, which readers recognise by `(delivery id, attempt)`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::store::{mark_published, unpublished_attempts};
use aloft_core::notify::DeliveryEvent;
use aloft_eventlog::{partition_for_key, Envelope, EventLog, Payload, Topics};
use aloft_store::Store;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// `(delivery id, attempt, partition key, encoded envelope)` of one attempt on its way to the log.
type OutgoingAttempt = (String, u32, String, Vec<u8>);

/// Publishes until `shutdown`, then once more so attempts recorded while stopping are not left behind.
pub async fn run(
    store: Store,
    log: Arc<dyn EventLog>,
    topics: Topics,
    attempts_recorded: Arc<Notify>,
    shutdown: CancellationToken,
) {
    loop {
        let stopping = shutdown.is_cancelled();
        match publish_pending(&store, &log, &topics).await {
            Ok(published) if published > 0 && !stopping => continue,
            Ok(_) => {}
            Err(error) => warn!(%error, "cannot publish delivery attempts yet; retrying"),
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = attempts_recorded.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn publish_pending(store: &Store, log: &Arc<dyn EventLog>, topics: &Topics) -> anyhow::Result<usize> {
    let pending = unpublished_attempts(store.pool(), 500).await?;
    if pending.is_empty() {
        return Ok(0);
    }
    let partitions = log.partition_count(&topics.deliveries).await?;
    let mut batches: BTreeMap<u32, Vec<OutgoingAttempt>> = BTreeMap::new();
    for (delivery_id, attempt, event) in pending {
        let DeliveryEvent::DeliveryAttempted { execution, at, .. } = &event;
        let key = execution.partition_key();
        let envelope = Envelope {
            stream: event.stream(),
            seq: u64::from(attempt),
            writer_epoch: 0,
            occurred_at: *at,
            traceparent: String::new(),
            payload: Payload::Delivery(event.clone()),
            principal: None,
        };
        batches
            .entry(partition_for_key(&key, partitions))
            .or_default()
            .push((delivery_id, attempt, key, envelope.encode()?));
    }
    let mut published = 0;
    for (partition, batch) in batches {
        let records = batch
            .iter()
            .map(|(_, _, key, bytes)| (key.clone(), bytes.clone()))
            .collect();
        log.append_batch(&topics.deliveries, partition, records).await?;
        for (delivery_id, attempt, _, _) in &batch {
            mark_published(store.pool(), delivery_id, *attempt).await?;
        }
        published += batch.len();
    }
    Ok(published)
}
