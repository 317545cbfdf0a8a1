//! Projects `aloft.executions` (succeeded attempts, execution inputs and phases) and evictions on
//! `aloft.registry` into the catalog's tables. Each batch is one SQL transaction that also stores the next
//! offset of every partition it touched, so a restarted catalog catches up exactly, and dropping the
//! tables and replaying from offset 0 rebuilds the same rows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aloft_eventlog::{Envelope, EventLog, Payload, Topics};
use aloft_store::catalog::{
    apply_execution_event, apply_registry_event, load_offsets, save_offset, WorkflowCache,
};
use aloft_store::projection::LoggedEvent;
use aloft_store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use crate::metrics;

/// Next offset to project per `(topic, partition)`.
pub type Progress = HashMap<(String, u32), u64>;

const BATCH: usize = 500;

pub async fn run(
    store: Store,
    log: Arc<dyn EventLog>,
    topics: Topics,
    progress: watch::Sender<Progress>,
    shutdown: CancellationToken,
) {
    loop {
        match project_until_shutdown(&store, &log, &topics, &progress, &shutdown).await {
            Ok(()) => return,
            Err(error) => {
                error!(%error, "catalog projector failed; resuming from the last committed offsets");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

async fn project_until_shutdown(
    store: &Store,
    log: &Arc<dyn EventLog>,
    topics: &Topics,
    progress: &watch::Sender<Progress>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut offsets: HashMap<(String, u32), (u64, u64)> = HashMap::new();
    for (topic, partition, next_offset, epoch) in load_offsets(store.pool()).await? {
        offsets.insert((topic, partition), (next_offset, epoch));
    }
    let mut partitions = vec![(topics.registry.clone(), 0u32)];
    for partition in 0..log.partition_count(&topics.executions).await? {
        partitions.push((topics.executions.clone(), partition));
    }
    let starts: Vec<(String, u32, u64)> = partitions
        .into_iter()
        .map(|(topic, partition)| {
            let next = offsets.entry((topic.clone(), partition)).or_insert((0, 0)).0;
            (topic, partition, next)
        })
        .collect();
    progress.send_replace(offsets.iter().map(|(k, (next, _))| (k.clone(), *next)).collect());
    let mut reader = log.read(starts).await?;
    let mut workflows = WorkflowCache::default();
    loop {
        let records = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            records = reader.next_batch(BATCH) => records?,
        };
        let mut tx = store.pool().begin().await?;
        let mut touched: HashMap<(String, u32), (u64, u64)> = HashMap::new();
        for record in &records {
            let key = (record.topic.clone(), record.partition);
            let (next_offset, mut epoch) = touched
                .get(&key)
                .copied()
                .or_else(|| offsets.get(&key).copied())
                .unwrap_or((0, 0));
            if record.offset < next_offset {
                continue;
            }
            match Envelope::decode(&record.payload) {
                Err(decode_error) => {
                    warn!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %decode_error, "skipping an undecodable record");
                }
                Ok(envelope) => match &envelope.payload {
                    Payload::Schedule(_) => {}
                    Payload::Registry(event) => {
                        apply_registry_event(&mut tx, event).await?;
                        metrics::EVENTS_PROJECTED.increment(&[("topic", "registry")], 1.0);
                    }
                    Payload::Execution(event) => {
                        let logged = LoggedEvent {
                            partition: record.partition,
                            offset: record.offset,
                            stream: &envelope.stream,
                            seq: envelope.seq,
                            writer_epoch: envelope.writer_epoch,
                            occurred_at: envelope.occurred_at,
                            event,
                        };
                        apply_execution_event(&mut tx, &mut workflows, &mut epoch, &logged).await?;
                        metrics::EVENTS_PROJECTED.increment(&[("topic", "executions")], 1.0);
                    }
                },
            }
            touched.insert(key, (record.offset + 1, epoch));
        }
        for ((topic, partition), (next_offset, epoch)) in &touched {
            save_offset(&mut tx, topic, *partition, *next_offset, *epoch).await?;
        }
        if let Err(commit_error) = tx.commit().await {
            // The in-memory workflows may hold executions the rollback forgot; start again from the tables.
            return Err(commit_error.into());
        }
        progress.send_modify(|progress| {
            for (key, (next_offset, _)) in &touched {
                progress.insert(key.clone(), *next_offset);
            }
        });
        offsets.extend(touched);
    }
}
