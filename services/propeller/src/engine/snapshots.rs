//! Snapshots of owned partitions: the state of each claimed partition is stored now and then (in the
//! background), and a newly assigned partition starts from its newest usable snapshot and replays only the
//! tail of the log.

use std::collections::HashMap;

use aloft_core::state::PartitionFold;
use tracing::{debug, info, warn};

use super::partition::PartitionRuntime;

/// Where the engine stores the state of its partitions, and how often.
#[derive(Clone)]
pub struct SnapshotOptions {
    pub store: aloft_store::Store,
    pub interval: std::time::Duration,
}

/// Stores the state of every partition this propeller owns and has claimed, as of the records read so
/// far (decisions applied on acknowledgement but not read back yet are folded again, as duplicates).
pub fn take_snapshots(
    options: &SnapshotOptions,
    topic: &str,
    partitions: &mut HashMap<u32, PartitionRuntime>,
) {
    for (&partition, runtime) in partitions {
        let position = (runtime.next_offset, runtime.fold.epoch);
        if !runtime.active || runtime.snapshotted == Some(position) {
            continue;
        }
        runtime.snapshotted = Some(position);
        let state_json = match runtime.fold.to_snapshot().map(String::from_utf8) {
            Ok(Ok(json)) => json,
            Ok(Err(error)) => {
                warn!(partition, %error, "snapshot is not UTF-8; skipped");
                continue;
            }
            Err(error) => {
                warn!(partition, %error, "cannot encode a snapshot; skipped");
                continue;
            }
        };
        let snapshot = aloft_store::snapshots::Snapshot {
            next_offset: runtime.next_offset,
            epoch: runtime.fold.epoch,
            state_json,
            taken_at: chrono::Utc::now().timestamp_millis(),
        };
        let (store, topic) = (options.store.clone(), topic.to_string());
        tokio::spawn(async move {
            match store.save_snapshot(&topic, partition, &snapshot).await {
                Ok(()) => debug!(
                    partition,
                    offset = snapshot.next_offset,
                    bytes = snapshot.state_json.len(),
                    "snapshot stored"
                ),
                Err(error) => warn!(partition, %error, "cannot store a snapshot"),
            }
        });
    }
}

/// The newest stored state of `partition` and the offset to replay from, if one is stored and usable;
/// otherwise the partition is replayed from offset 0.
pub async fn restore_snapshot(
    options: Option<&SnapshotOptions>,
    topic: &str,
    partition: u32,
    end: u64,
) -> Option<(PartitionFold, u64)> {
    let store = &options?.store;
    let started = std::time::Instant::now();
    let snapshot = match store.load_snapshot(topic, partition).await {
        Ok(snapshot) => snapshot?,
        Err(error) => {
            warn!(partition, %error, "cannot read the partition's snapshot; replaying it from offset 0");
            return None;
        }
    };
    if snapshot.next_offset > end {
        warn!(
            partition,
            snapshot_offset = snapshot.next_offset,
            end,
            "the snapshot is ahead of the log (a new topic?); replaying from offset 0"
        );
        return None;
    }
    match PartitionFold::from_snapshot(snapshot.state_json.as_bytes()) {
        Ok(fold) => {
            info!(
                partition,
                offset = snapshot.next_offset,
                epoch = snapshot.epoch,
                executions = fold.executions.len(),
                millis = started.elapsed().as_millis() as u64,
                "restored partition from its snapshot; replaying the tail"
            );
            Some((fold, snapshot.next_offset))
        }
        Err(error) => {
            warn!(partition, %error, "the snapshot is unreadable; replaying from offset 0");
            None
        }
    }
}
