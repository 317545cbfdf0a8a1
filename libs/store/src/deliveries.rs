//! Admin's read model of `aloft.deliveries` (`delivery_events`): every delivery attempt the notifier made,
//! shown in an execution's history.

use aloft_core::notify::DeliveryEvent;
use aloft_core::ExecutionId;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::{to_json, Result};

/// Admin's projection of `aloft.deliveries`: one row per attempt (a re-published attempt changes nothing).
pub async fn apply_delivery_event(conn: &mut AnyConnection, event: &DeliveryEvent) -> Result<()> {
    let DeliveryEvent::DeliveryAttempted {
        delivery_id,
        execution,
        attempt,
        outcome,
        at,
        ..
    } = event;
    let kind = match outcome {
        aloft_core::notify::DeliveryOutcome::Delivered => "DeliveryDelivered",
        aloft_core::notify::DeliveryOutcome::WillRetry { .. } => "DeliveryWillRetry",
        aloft_core::notify::DeliveryOutcome::GaveUp { .. } => "DeliveryGaveUp",
    };
    sqlx::query(
        "INSERT INTO delivery_events (delivery_id, attempt, project, domain, execution, occurred_at, kind, \
         summary, payload_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING",
    )
    .bind(delivery_id)
    .bind(*attempt as i64)
    .bind(&execution.project)
    .bind(&execution.domain)
    .bind(&execution.name)
    .bind(*at)
    .bind(kind)
    .bind(event.summary())
    .bind(to_json(event))
    .execute(conn)
    .await?;
    Ok(())
}

/// A projected delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryEventRow {
    pub delivery_id: String,
    pub attempt: u32,
    pub occurred_at: i64,
    pub kind: String,
    pub summary: String,
    pub payload_json: String,
}

pub async fn delivery_events_of(pool: &AnyPool, id: &ExecutionId) -> Result<Vec<DeliveryEventRow>> {
    let rows = sqlx::query(
        "SELECT delivery_id, attempt, occurred_at, kind, summary, payload_json, execution FROM delivery_events \
         WHERE project = $1 AND domain = $2 AND execution = $3 ORDER BY occurred_at, delivery_id, attempt",
    )
    .bind(&id.project)
    .bind(&id.domain)
    .bind(&id.name)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| delivery_row(row).map(|(row, _)| row))
        .collect()
}

/// The delivery events of a project and domain, newest first (at most `limit`), each with the name of the
/// execution it notifies about.
pub async fn recent_delivery_events(
    pool: &AnyPool,
    project: &str,
    domain: &str,
    limit: u32,
) -> Result<Vec<(DeliveryEventRow, String)>> {
    let rows = sqlx::query(
        "SELECT delivery_id, attempt, occurred_at, kind, summary, payload_json, execution FROM delivery_events \
         WHERE project = $1 AND domain = $2 ORDER BY occurred_at DESC, delivery_id, attempt DESC LIMIT $3",
    )
    .bind(project)
    .bind(domain)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(delivery_row).collect()
}

fn delivery_row(row: &sqlx::any::AnyRow) -> Result<(DeliveryEventRow, String)> {
    Ok((
        DeliveryEventRow {
            delivery_id: row.try_get(0)?,
            attempt: row.try_get::<i64, _>(1)? as u32,
            occurred_at: row.try_get(2)?,
            kind: row.try_get(3)?,
            summary: row.try_get(4)?,
            payload_json: row.try_get(5)?,
        },
        row.try_get(6)?,
    ))
}
