//! The projector loop every derived table set shares (admin's read models, the catalog, the notifier):
//! read `aloft.registry` and every partition of `aloft.executions` (and `aloft.deliveries` for admin) from
//! the committed offsets, apply the records read in SQL transactions of at most `EVENTS_PER_TRANSACTION`
//! events, each also storing the next offset of every partition it touched, and publish the progress. A crash therefore never applies an event twice or skips one, and dropping the tables and
//! replaying from offset 0 rebuilds the same rows. What a record does to the tables is the `Projection`'s.

use aloft_telemetry::ops::NotReady;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aloft_eventlog::{Envelope, EventLog, Record, Topics};
use futures::future::BoxFuture;
use sqlx::AnyConnection;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::projection::{load_offsets, save_offset, OffsetsTable};
use crate::{Result, Store};

/// Next offset to project per `(topic, partition)`.
pub type Progress = HashMap<(String, u32), u64>;

/// Records read from the log at once.
const BATCH: usize = 500;
/// Events one transaction applies at most (a record may hold many): on SQLite the projector's transaction holds
/// the one connection the API reads through too, so a long one would stall `aloft get` for its duration.
const EVENTS_PER_TRANSACTION: usize = 2_000;

/// What one set of derived tables does with each record, inside the batch's transaction.
pub trait Projection: Send {
    /// Where this projection commits its offsets.
    fn offsets_table(&self) -> OffsetsTable;

    /// Whether this projection also reads `aloft.deliveries` (admin shows delivery attempts in history).
    fn reads_deliveries(&self) -> bool {
        false
    }

    /// Applies one decoded envelope, the `index`-th of `record` (a propeller may append several in one
    /// record). `partition_epoch` is the fencing epoch of the record's partition (moved by claims on
    /// `aloft.executions`), stored with the offsets.
    fn apply<'a>(
        &'a mut self,
        connection: &'a mut AnyConnection,
        record: &'a Record,
        index: u32,
        envelope: &'a Envelope,
        partition_epoch: &'a mut u64,
    ) -> BoxFuture<'a, Result<()>>;

    /// Writes what the batch's events left for the end (admitted seqs, rows inserted together), inside its
    /// transaction, just before it commits.
    fn before_commit<'a>(&'a mut self, _connection: &'a mut AnyConnection) -> BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// After a batch committed: what was written is stored now (and metrics).
    fn committed(&mut self, _records: &[Record]) {}

    /// After a failed batch: forget in-memory state the rolled-back transaction may have left behind.
    fn rolled_back(&mut self) {}
}

/// Why a service that serves from projected tables is not ready.
#[derive(Debug, thiserror::Error)]
enum Unready {
    #[error("still starting: the API does not serve yet")]
    Starting,
    #[error("database unreachable: {0}")]
    Database(sqlx::Error),
    #[error("database did not answer within 2 s")]
    DatabaseSlow,
    #[error("the projector has not started")]
    ProjectorNotStarted,
}

/// The readiness of a service that serves from projected tables: its API serves (`serving`, set once
/// start-up is done), its database and the event log (`topic`'s first partition) answer within 2 s, and its
/// projector has started (loaded its offsets). While the broker is out of reach the service is degraded:
/// it serves reads from its tables but cannot write, so it says not ready. Shaped for
/// `aloft_telemetry::ops::ReadinessCheck`.
pub fn readiness(
    store: Store,
    log: Arc<dyn EventLog>,
    topic: String,
    progress: watch::Receiver<Progress>,
    serving: Arc<std::sync::atomic::AtomicBool>,
) -> impl Fn() -> BoxFuture<'static, std::result::Result<(), NotReady>> + Send + Sync {
    move || {
        let pool = store.pool().clone();
        let (log, topic) = (Arc::clone(&log), topic.clone());
        let started = !progress.borrow().is_empty();
        let serving = serving.load(std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if !serving {
                return Err(NotReady::because(Unready::Starting));
            }
            let probe = sqlx::query("SELECT 1").execute(&pool);
            match tokio::time::timeout(Duration::from_secs(2), probe).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(NotReady::because(Unready::Database(error))),
                Err(_) => return Err(NotReady::because(Unready::DatabaseSlow)),
            }
            aloft_eventlog::probe_end_offset(log.as_ref(), &topic)
                .await
                .map_err(NotReady::because)?;
            if started {
                Ok(())
            } else {
                Err(NotReady::because(Unready::ProjectorNotStarted))
            }
        })
    }
}

/// Projects until `shutdown` is cancelled; after an error it resumes from the last committed offsets.
pub async fn run<P: Projection>(
    mut projection: P,
    store: Store,
    log: Arc<dyn EventLog>,
    topics: Topics,
    progress: watch::Sender<Progress>,
    shutdown: CancellationToken,
) {
    loop {
        match project_until_shutdown(&mut projection, &store, &log, &topics, &progress, &shutdown).await {
            Ok(()) => return,
            Err(failure) => {
                projection.rolled_back();
                error!(error = %failure, "projector failed; resuming from the last committed offsets");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum LoopError {
    #[error(transparent)]
    Store(#[from] crate::Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("event log: {0}")]
    Log(#[from] aloft_eventlog::Error),
}

async fn project_until_shutdown<P: Projection>(
    projection: &mut P,
    store: &Store,
    log: &Arc<dyn EventLog>,
    topics: &Topics,
    progress: &watch::Sender<Progress>,
    shutdown: &CancellationToken,
) -> Result<(), LoopError> {
    let table = projection.offsets_table();
    let mut offsets: HashMap<(String, u32), (u64, u64)> = HashMap::new();
    for (topic, partition, next_offset, epoch) in load_offsets(store.pool(), table).await? {
        offsets.insert((topic, partition), (next_offset, epoch));
    }
    let mut partitions = vec![(topics.registry.clone(), 0u32)];
    for partition in 0..log.partition_count(&topics.executions).await? {
        partitions.push((topics.executions.clone(), partition));
    }
    if projection.reads_deliveries() {
        for partition in 0..log.partition_count(&topics.deliveries).await? {
            partitions.push((topics.deliveries.clone(), partition));
        }
    }
    let starts: Vec<(String, u32, u64)> = partitions
        .into_iter()
        .map(|(topic, partition)| {
            let next = offsets.entry((topic.clone(), partition)).or_insert((0, 0)).0;
            (topic, partition, next)
        })
        .collect();
    progress.send_replace(
        offsets
            .iter()
            .map(|(key, (next, _))| (key.clone(), *next))
            .collect(),
    );
    let mut reader = log.read(starts).await?;
    crate::metrics::register();
    let projection_name = table.projection();
    let mut lag_tick = tokio::time::interval(Duration::from_secs(5));
    lag_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let records = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = lag_tick.tick() => {
                publish_lag(log, &offsets, projection_name, topics).await;
                continue;
            }
            records = reader.next_batch(BATCH) => records?,
        };
        let mut rest: &[Record] = &records;
        while !rest.is_empty() {
            let projected =
                project_in_one_transaction(projection, store, rest, &mut offsets, progress).await?;
            rest = &rest[projected..];
        }
    }
}

/// Applies the first of `records` in one transaction, up to `EVENTS_PER_TRANSACTION` events (at least one
/// record), commits them with the offsets they reach, and publishes the progress. Returns how many records it
/// projected.
async fn project_in_one_transaction<P: Projection>(
    projection: &mut P,
    store: &Store,
    records: &[Record],
    offsets: &mut HashMap<(String, u32), (u64, u64)>,
    progress: &watch::Sender<Progress>,
) -> Result<usize, LoopError> {
    let table = projection.offsets_table();
    let mut newest_event_at = i64::MIN;
    let mut tx = store.pool().begin().await?;
    let mut touched: HashMap<(String, u32), (u64, u64)> = HashMap::new();
    let (mut projected, mut events) = (0, 0);
    for record in records {
        if events >= EVENTS_PER_TRANSACTION {
            break;
        }
        projected += 1;
        let key = (record.topic.clone(), record.partition);
        let (next_offset, mut epoch) = touched
            .get(&key)
            .copied()
            .or_else(|| offsets.get(&key).copied())
            .unwrap_or((0, 0));
        if record.offset < next_offset {
            continue;
        }
        match Envelope::decode_all(&record.payload) {
            // The record stays in the log for inspection; it cannot be projected.
            Err(decode_error) => {
                warn!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %decode_error, "skipping an undecodable record");
            }
            Ok(envelopes) => {
                events += envelopes.len();
                for (index, envelope) in envelopes.iter().enumerate() {
                    newest_event_at = newest_event_at.max(envelope.occurred_at);
                    projection
                        .apply(&mut tx, record, index as u32, envelope, &mut epoch)
                        .await?
                }
            }
        }
        touched.insert(key, (record.offset + 1, epoch));
    }
    projection.before_commit(&mut tx).await?;
    for ((topic, partition), (next_offset, epoch)) in &touched {
        save_offset(&mut tx, table, topic, *partition, *next_offset, *epoch).await?;
    }
    tx.commit().await?;
    if newest_event_at != i64::MIN {
        let latency = (now_millis() - newest_event_at).max(0) as f64 / 1000.0;
        crate::metrics::APPLY_LATENCY.set(&[("projection", table.projection())], latency);
    }
    projection.committed(&records[..projected]);
    progress.send_modify(|progress| {
        for (key, (next_offset, _)) in &touched {
            progress.insert(key.clone(), *next_offset);
        }
    });
    offsets.extend(touched);
    Ok(projected)
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// A topic's name in metric labels, without the deployment's prefix.
pub fn topic_label(topics: &Topics, topic: &str) -> &'static str {
    if topic == topics.registry {
        "registry"
    } else if topic == topics.executions {
        "executions"
    } else if topic == topics.deliveries {
        "deliveries"
    } else {
        "other"
    }
}

/// Sets the lag gauge per topic from the log's end offsets; a log that does not answer leaves it as it was.
async fn publish_lag(
    log: &Arc<dyn EventLog>,
    offsets: &HashMap<(String, u32), (u64, u64)>,
    projection: &'static str,
    topics: &Topics,
) {
    for topic in [&topics.registry, &topics.executions, &topics.deliveries] {
        let label = topic_label(topics, topic);
        let mut lag = 0u64;
        let mut read_any = false;
        for ((offset_topic, partition), (next_offset, _)) in offsets {
            if offset_topic != topic {
                continue;
            }
            match log.end_offset(topic, *partition).await {
                Ok(end) => {
                    lag += end.saturating_sub(*next_offset);
                    read_any = true;
                }
                Err(error) => {
                    warn!(%topic, partition, %error, "cannot read the end offset for the lag metric");
                    return;
                }
            }
        }
        if read_any {
            crate::metrics::PROJECTION_LAG.set(&[("projection", projection), ("topic", label)], lag as f64);
        }
    }
}
