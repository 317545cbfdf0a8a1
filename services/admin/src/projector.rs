//! Projects `aloft.registry` and `aloft.executions` into the read models. Each batch is one SQL transaction
//! that also stores the next offset of every partition it touched, so a crash never applies an event twice
//! or skips one, and dropping the tables and replaying from offset 0 rebuilds the same rows.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aloft_eventlog::{Envelope, EventLog, Payload, Topics};
use aloft_store::projection::{
    apply_execution_event, apply_registry_event, load_offsets, save_offset, LoggedEvent,
};
use aloft_store::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

/// Next offset to project per `(topic, partition)`; read-your-writes waits on it.
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
                error!(%error, "projector failed; resuming from the last committed offsets");
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
    let mut starts = vec![(topics.registry.clone(), 0u32)];
    for partition in 0..log.partition_count(&topics.executions).await? {
        starts.push((topics.executions.clone(), partition));
    }
    let starts: Vec<(String, u32, u64)> = starts
        .into_iter()
        .map(|(topic, partition)| {
            let next = offsets
                .get(&(topic.clone(), partition))
                .map(|(next, _)| *next)
                .unwrap_or(0);
            offsets.entry((topic.clone(), partition)).or_insert((0, 0));
            (topic, partition, next)
        })
        .collect();
    progress.send_replace(offsets.iter().map(|(k, (next, _))| (k.clone(), *next)).collect());
    let mut reader = log.read(starts).await?;
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
                    // The record stays in the log for inspection; it cannot be projected.
                    warn!(topic = %record.topic, partition = record.partition, offset = record.offset, error = %decode_error, "skipping an undecodable record");
                }
                Ok(envelope) => match &envelope.payload {
                    // The scheduler's progress is not projected (scheduled executions carry their time).
                    Payload::Schedule(_) => {}
                    Payload::Registry(event) => apply_registry_event(&mut tx, record.offset, event).await?,
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
                        let verdict = apply_execution_event(&mut tx, &mut epoch, &logged).await?;
                        if verdict == aloft_core::AppliedEvent::Accepted {
                            let phase = match event {
                                aloft_core::ExecutionEvent::ExecutionRequested { .. } => Some("QUEUED"),
                                aloft_core::ExecutionEvent::ExecutionStarted { .. } => Some("RUNNING"),
                                aloft_core::ExecutionEvent::ExecutionFinished { phase, .. } => {
                                    Some(phase.as_str())
                                }
                                _ => None,
                            };
                            if let Some(phase) = phase {
                                crate::metrics::EXECUTION_PHASES.increment(&[("phase", phase)], 1.0);
                            }
                        }
                    }
                },
            }
            touched.insert(key, (record.offset + 1, epoch));
        }
        for ((topic, partition), (next_offset, epoch)) in &touched {
            save_offset(&mut tx, topic, *partition, *next_offset, *epoch).await?;
        }
        tx.commit().await?;
        crate::metrics::PROJECTION_BATCHES.increment(&[], 1.0);
        for record in &records {
            let topic = if record.topic == topics.registry {
                "registry"
            } else {
                "executions"
            };
            crate::metrics::EVENTS_PROJECTED.increment(&[("topic", topic)], 1.0);
        }
        progress.send_modify(|progress| {
            for (key, (next_offset, _)) in &touched {
                progress.insert(key.clone(), *next_offset);
            }
        });
        offsets.extend(touched);
    }
}
