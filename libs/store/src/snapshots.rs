//! Propeller snapshots: one row per partition of the executions topic, replaced by each newer snapshot.

use sqlx::Row;

use crate::{Result, Store};

/// A partition's folded state as of `next_offset`, written by the owner of `epoch`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub next_offset: u64,
    pub epoch: u64,
    pub state_json: String,
    pub taken_at: i64,
}

impl Store {
    /// Stores `snapshot` unless a newer one (a later offset) is already stored.
    pub async fn save_snapshot(&self, topic: &str, partition: u32, snapshot: &Snapshot) -> Result<()> {
        sqlx::query(
            "INSERT INTO propeller_snapshots (topic, log_partition, next_offset, epoch, state_json, taken_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (topic, log_partition) DO UPDATE SET next_offset = excluded.next_offset, \
             epoch = excluded.epoch, state_json = excluded.state_json, taken_at = excluded.taken_at \
             WHERE propeller_snapshots.next_offset <= excluded.next_offset",
        )
        .bind(topic)
        .bind(partition as i64)
        .bind(snapshot.next_offset as i64)
        .bind(snapshot.epoch as i64)
        .bind(&snapshot.state_json)
        .bind(snapshot.taken_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn load_snapshot(&self, topic: &str, partition: u32) -> Result<Option<Snapshot>> {
        let row = sqlx::query(
            "SELECT next_offset, epoch, state_json, taken_at FROM propeller_snapshots \
             WHERE topic = $1 AND log_partition = $2",
        )
        .bind(topic)
        .bind(partition as i64)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(Snapshot {
                next_offset: row.try_get::<i64, _>("next_offset")?.max(0) as u64,
                epoch: row.try_get::<i64, _>("epoch")?.max(0) as u64,
                state_json: row.try_get("state_json")?,
                taken_at: row.try_get("taken_at")?,
            })
        })
        .transpose()
    }
}
